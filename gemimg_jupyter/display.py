"""What a ``%%gemimg`` cell (and the panel) shows: live views and rich tables.

The import path the rest of the package, the tests and the docs use; it
re-exports two modules:

- :mod:`gemimg_jupyter.live`: :class:`JobView` and :class:`SweepView`, one
  notebook output each, updated in place by its display id from the job
  runner's threads; the shared ticker; the note a stopped wait leaves.
- :mod:`gemimg_jupyter.renderers`: one-line errors, :func:`jobs_table`,
  :func:`cost_report`, :func:`models_table`, :func:`config_table`,
  :func:`history_strip`, edit chains and image HTML, small objects with a
  ``_repr_mimebundle_`` for the ``%gemimg`` subcommands to return.

Neither imports ipywidgets; prompt text that goes into HTML always passes
through :func:`html.escape`.
"""

from __future__ import annotations

from .live import (
    INTERRUPT_LINE,
    JobView,
    LiveView,
    SweepView,
    image_metadata,
    job_bundle,
    show_interrupt_note,
    status_html,
    status_text,
    sweep_bundle,
)
from .renderers import (
    PROMPT_CHARS,
    STALE_NOTE,
    STATUS_PROMPT_CHARS,
    THEME_CSS,
    TONE_COLORS,
    Bundle,
    ImageStrip,
    LineageOutput,
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
    "PROMPT_CHARS",
    "STALE_NOTE",
    "STATUS_PROMPT_CHARS",
    "THEME_CSS",
    "TONE_COLORS",
    "Bundle",
    "ImageStrip",
    "JobView",
    "LineageOutput",
    "LiveView",
    "RichText",
    "SweepView",
    "config_table",
    "cost_report",
    "display_path",
    "error_line",
    "history_strip",
    "image_html",
    "image_metadata",
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
