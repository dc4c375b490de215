"""gemimg_jupyter: Gemini image generation from Jupyter.

``%load_ext gemimg_jupyter`` registers the ``%%gemimg`` cell magic and the
``%gemimg`` line magic. The same engine is a plain Python API::

    import gemimg_jupyter as gi
    res = gi.generate("a paper-cut fox", size="16:9")
    grid = gi.sweep("a paper-cut fox", temperature=[0.2, 0.8], size=["1:1", "16:9"])

Importing the package loads the core (Pillow, requests) but never IPython or
ipywidgets; those come with ``%load_ext`` and ``Panel``.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from gemimg_jupyter._version import __version__

# The engine's threads log what happens to each job (naming it) and put what the user must see in that job's
# own status line; without a handler of the application's, nothing is printed from a background thread into
# whichever cell happens to run (Python's last-resort handler would write warnings to the current stderr).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "Settings": "domain.settings",
    "RetryPolicy": "domain.settings",
    "GenerationParams": "domain.models",
    "MODELS": "domain.models",
    "Session": "api.session",
    "Result": "api.results",
    "SweepResult": "api.results",
    "get_session": "api.session",
    "reset_session": "api.session",
    "Panel": "panel",
    "errors": "domain.errors",
    "pair": "plans.plan",
}

__all__ = [
    *sorted(_LAZY),
    "__version__",
    "compare",
    "generate",
    "load_ipython_extension",
    "picks",
    "sweep",
    "unload_ipython_extension",
]

if TYPE_CHECKING:  # pragma: no cover
    from gemimg_jupyter.api.session import Result, Session, SweepResult, get_session, reset_session  # noqa: F401
    from gemimg_jupyter.domain import errors  # noqa: F401
    from gemimg_jupyter.domain.models import MODELS, GenerationParams  # noqa: F401
    from gemimg_jupyter.domain.settings import RetryPolicy, Settings  # noqa: F401
    from gemimg_jupyter.panel import Panel  # noqa: F401

from gemimg_jupyter.api.compare import Comparison, compare_targets, set_viewer  # noqa: E402
from gemimg_jupyter.api.session import generate, get_session, picks, sweep  # noqa: E402


def compare(*targets: object, picked: bool = False, title: str = "") -> Comparison:
    """The interactive comparison view of a sweep, of several results or job ids, or (``picked=True``) the picks.

    In a notebook it shows the grid with live tiles, the full-size image and its parameters on
    click, and two selected images side by side, swiped, faded or differenced under one zoom
    (see docs/sweeps.md); elsewhere it is a static grid.
    """
    return compare_targets(get_session(), targets, picked=picked, title=title)


def _show_comparison(comparison: Comparison) -> None:
    """The display face's view, imported when a comparison is first shown (the core never imports a face)."""
    from gemimg_jupyter.display.compare import show_comparison

    show_comparison(comparison)


set_viewer(_show_comparison)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gemimg_jupyter' has no attribute {name!r}")
    mod = importlib.import_module(f".{module}", __name__)
    return mod if module.rsplit(".", 1)[-1] == name else getattr(mod, name)


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext gemimg_jupyter``."""
    from gemimg_jupyter.magics.extension import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext gemimg_jupyter``: stops the job runner cleanly."""
    from gemimg_jupyter.magics.extension import unload_ipython_extension as _unload

    _unload(ipython)
