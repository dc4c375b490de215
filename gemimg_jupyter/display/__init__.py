"""What a ``%%gemimg`` cell (and the panel) shows: live views and rich tables.

The import path the rest of the package, the tests and the docs use; it
re-exports two modules:

- :mod:`gemimg_jupyter.display.live`: :class:`JobView` and :class:`SweepView`, one
  notebook output each, updated in place by its display id from the job
  runner's threads; the shared ticker; the note a stopped wait leaves.
- :mod:`gemimg_jupyter.display.renderers`: one-line errors, :func:`jobs_table`,
  :func:`cost_report`, :func:`models_table`, :func:`config_table`,
  :func:`history_strip`, edit chains and image HTML, small objects with a
  ``_repr_mimebundle_`` for the ``%gemimg`` subcommands to return.

Neither imports ipywidgets; prompt text that goes into HTML always passes
through :func:`html.escape`.
"""

from __future__ import annotations

from gemimg_jupyter.display import live as _live
from gemimg_jupyter.display import renderers as _renderers
from gemimg_jupyter.display.live import *  # noqa: F403  (each module's names are listed once, in its own __all__)
from gemimg_jupyter.display.renderers import *  # noqa: F403

__all__ = [*_live.__all__, *_renderers.__all__]
