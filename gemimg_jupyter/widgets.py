"""The ipywidgets control panel, kept importable here: it lives in :mod:`gemimg_jupyter.panel`.

``from gemimg_jupyter.widgets import Panel`` (the magic, tests and docs use it) is
``from gemimg_jupyter.panel import Panel``.
"""

from __future__ import annotations

from . import panel as _panel
from .panel import *  # noqa: F403  (the names are the panel package's own __all__, listed once there)

__all__ = list(_panel.__all__)
