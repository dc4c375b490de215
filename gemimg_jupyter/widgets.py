"""The ipywidgets control panel, kept importable here: it lives in :mod:`gemimg_jupyter.panel`.

``from gemimg_jupyter.widgets import Panel`` (the magic, tests and docs use it) is
``from gemimg_jupyter.panel import Panel``.
"""

from __future__ import annotations

from .panel import (
    DETAIL_LONG_SIDE,
    GRID_CELL,
    HISTORY_SLOTS,
    HISTORY_THUMB,
    PANEL_CSS,
    REF_THUMB,
    TICK_SECONDS,
    Panel,
    magic_cell,
    model_notes,
)

__all__ = [
    "DETAIL_LONG_SIDE",
    "GRID_CELL",
    "HISTORY_SLOTS",
    "HISTORY_THUMB",
    "PANEL_CSS",
    "REF_THUMB",
    "TICK_SECONDS",
    "Panel",
    "magic_cell",
    "model_notes",
]
