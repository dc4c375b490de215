"""What a ``%%gemimg`` cell (and the panel) shows: live views and rich tables.

Live views
----------
:class:`JobView` and :class:`SweepView` are *one* notebook output each. The
output is created in the main thread with ``display(..., display_id=True)``
(:meth:`LiveView.show`); from then on the job listeners, which run in the job
runner's worker threads, only call :meth:`LiveView.refresh`, which updates
that output in place by its display id. Nothing here prints, and nothing in a
background thread ever creates a new output, so output cannot land in another
cell.

A job's output goes ``status line → image`` (or ``→ one-line error``); a
sweep's output is the labelled grid, re-rendered at most every
``min_interval`` seconds while results arrive, and always once more in its
final state. A small shared ticker keeps the elapsed time of running views
moving when the gateway is quiet.

Every image output is a plain ``image/png`` (it renders on GitHub, nbviewer
and VS Code) with the provenance in its display metadata under ``gemimg``
(single images) or ``gemimg_sweep`` (grids). Prompt text that goes into HTML
always passes through :func:`html.escape`.

Snapshots
---------
:func:`jobs_table`, :func:`cost_report`, :func:`models_table`,
:func:`config_table` and :func:`history_strip` return small objects with a
``_repr_mimebundle_`` (HTML + text, or PNG + text) for the ``%gemimg``
subcommands to return.

The code lives in two modules: :mod:`gemimg_jupyter.live` (the live views,
the ticker, the interrupt note) and :mod:`gemimg_jupyter.renderers` (the static
renderers). This module is the import path the rest of the package, the tests
and the docs use; it re-exports both.
"""

from __future__ import annotations

from .live import (
    INTERRUPT_LINE,
    JobView,
    LiveView,
    SweepView,
    job_bundle,
    show_interrupt_note,
    status_html,
    status_text,
    sweep_bundle,
)
from .renderers import (
    STALE_NOTE,
    THEME_CSS,
    TONE_COLORS,
    Bundle,
    ImageStrip,
    RichText,
    config_table,
    cost_report,
    display_path,
    error_line,
    history_strip,
    image_html,
    job_error_line,
    jobs_table,
    lineage_output,
    live_updates_supported,
    models_table,
)

__all__ = [
    "INTERRUPT_LINE",
    "STALE_NOTE",
    "THEME_CSS",
    "TONE_COLORS",
    "Bundle",
    "ImageStrip",
    "JobView",
    "LiveView",
    "RichText",
    "SweepView",
    "config_table",
    "cost_report",
    "display_path",
    "error_line",
    "history_strip",
    "image_html",
    "job_bundle",
    "job_error_line",
    "jobs_table",
    "lineage_output",
    "live_updates_supported",
    "models_table",
    "show_interrupt_note",
    "status_html",
    "status_text",
    "sweep_bundle",
]
