"""The ipywidgets control panel: ``%gemimg panel`` and ``gemimg_jupyter.Panel()``.

One module per section, each a mixin that builds its widgets and handles their events:
:mod:`.parameters` (prompt and parameters), :mod:`.references` (reference images, the image being
edited), :mod:`.sweep` (sweep axes, plan line, reproducing cell), :mod:`.results` (Generate, Cancel,
progress, the result), :mod:`.detail` (one image, edit, pick) and :mod:`.history`; :mod:`.base` holds
their shared state and :mod:`.common` the pure helpers. :class:`Panel` composes them.

The panel is a thin skin over the core. It reads its controls into a plain
dict (:meth:`Panel.read_state`), and everything that matters is done by the
:class:`~gemimg_jupyter.api.session.Session` it is bound to (the same default
session as the magics): validation (:meth:`Session.params`), planning and
cost (:meth:`Session.plan`, :meth:`SweepPlan.summary`), running
(:meth:`Session.submit`, :meth:`Session.sweep`), grids
(:meth:`SweepResult.grid`) and history (:meth:`Session.history`).

Layout (top to bottom, two columns that wrap under each other below ~760 px)::

    header: "gemimg panel" · backend badge
    ┌ Prompt ─────────────────────┐ ┌ References ───────────────┐
    │ textarea                    │ │ upload · thumbnails · ✕   │
    │ Parameters                  │ │ Sweep                      │
    │ model / size / resolution   │ │ X: param + values          │
    │ temperature / top-p/repeats │ │ Y: param + values          │
    │ notes (what is disabled, why)│ │ plan: N requests, ≈ $…    │
    └─────────────────────────────┘ └────────────────────────────┘
    [Generate] [Cancel] [fresh] [confirm]     progress bar · text    (fixed height)
    Result: the image or the labelled grid; one button per request
    Detail: the full image of the chosen request and its parameters
    Reproduce: the ``%%gemimg`` cell for the current settings
    History: the newest stored images

Threads: job listeners run in worker threads; they only set traits of
widgets that were created in the main thread (``Image.value``,
``IntProgress.value``, ``Button.description`` …) and never print or use
``with output:``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import CONFIRM_ABOVE_USD, LedgerRow, ReferenceImage, Session, get_model, get_session, latest
from gemimg_jupyter.panel.common import (
    DETAIL_LONG_SIDE,
    GRID_CELL,
    HISTORY_SLOTS,
    HISTORY_THUMB,
    PANEL_CSS,
    REF_THUMB,
    TICK_SECONDS,
    Run,
    magic_cell,
    model_notes,
)
from gemimg_jupyter.panel.detail import DetailSection
from gemimg_jupyter.panel.history import HistorySection
from gemimg_jupyter.panel.parameters import ParametersSection
from gemimg_jupyter.panel.references import ReferencesSection
from gemimg_jupyter.panel.results import ResultsSection
from gemimg_jupyter.panel.sweep import SweepSection

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


class Panel(ParametersSection, ReferencesSection, SweepSection, ResultsSection, DetailSection, HistorySection):
    """The control panel, bound to a :class:`~gemimg_jupyter.api.session.Session`.

    Parameters
    ----------
    session : Session or callable, optional
        A session, or a function returning the current one (``%gemimg panel``
        passes the extension's ``session`` method). Defaults to
        :func:`~gemimg_jupyter.api.session.get_session`, the session the magics and
        ``gi.generate`` use, so all see the same store, jobs and costs. When
        ``%gemimg login``, ``%gemimg backend``, ``Session.with_settings`` or
        ``reset_session`` replace the session, the panel follows: a function is
        asked each time, a given session is followed to the one that replaced it.
    prompt : str, optional
        Initial prompt text.
    defaults : mapping, optional
        Initial ``model``, ``size``, ``resolution``, ``temperature`` and
        ``top_p`` (``%gemimg panel`` passes the ``%config GemimgMagics``
        values); ``None`` values and values the model does not take are skipped.
    confirm_above_usd : float or None, optional
        A sweep estimated above this many USD needs the "allow" box ticked
        (``None``: never ask). Defaults to
        :data:`~gemimg_jupyter.plans.plan.CONFIRM_ABOVE_USD`; ``%gemimg panel``
        passes ``%config GemimgMagics.confirm_above_usd``.
    cell_size : int, optional
        Pixel size of one cell of a sweep grid (default :data:`GRID_CELL`);
        ``%gemimg panel`` passes ``%config GemimgMagics.cell_size``.

    Examples
    --------
    >>> from gemimg_jupyter import Panel
    >>> panel = Panel()          # doctest: +SKIP
    >>> panel                    # doctest: +SKIP

    Notes
    -----
    ``panel.widget`` is the root ``VBox``; displaying the panel displays it.
    Every control a test touches carries a ``gemimg-…`` CSS class.
    """

    def __init__(
        self,
        session: Session | Callable[[], Session] | None = None,
        *,
        prompt: str = "",
        defaults: Mapping[str, Any] | None = None,
        confirm_above_usd: float | None = CONFIRM_ABOVE_USD,
        cell_size: int = GRID_CELL,
    ) -> None:
        if isinstance(session, Session):
            given = session
            self._session_of: Callable[[], Session] = lambda: latest(given)
        else:
            self._session_of = session or get_session
        self.confirm_above_usd = confirm_above_usd
        self.cell_size = cell_size
        self._widgets: list[W.Widget] = []
        self._references: list[ReferenceImage] = []
        self._reference_paths: list[str] = []
        self._run: Run | None = None
        self._selected: int | None = None
        self._updating = False
        self._closed = False
        self._render_lock = threading.RLock()
        self._thumbs: dict[str, bytes] = {}
        self._history_rows: list[Any] = []
        self._cell_buttons: list[W.Button] = []
        self._detail_row: LedgerRow | None = None  # the image the detail view shows (for edit and pick)
        self._edit_row: LedgerRow | None = None  # the image being edited: the first reference of the next run
        self._build(prompt)
        self._on_model_change()
        if defaults:
            self._apply_defaults(defaults)
        self._refresh_history()

    def _build(self, prompt: str) -> None:
        """Build the sections top to bottom (the order of the widgets) and lay them out."""
        spec = get_model(self.session.settings.model)
        self.header = self._w(W.HTML, "gemimg-header", value=self._header_html())
        left = self._build_parameters(prompt, spec)
        right = W.VBox(
            [*self._build_references(), *self._build_sweep()],
            layout=W.Layout(flex="1 1 360px", min_width="280px", padding="0 6px 0 0"),
        )
        status = self._build_status()
        self.widget = W.VBox(
            [
                self.header,
                W.HBox([left, right], layout=W.Layout(flex_flow="row wrap", width="100%")),
                status,
                *self._build_results(),
                *self._build_reproduce(),
                *self._build_history(),
            ],
            layout=W.Layout(
                width="100%", max_width="960px", padding="8px", border="1px solid var(--jp-border-color2, #ddd)"
            ),
        )
        self.widget.add_class("gemimg-panel")

    # ---- display ----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<gemimg Panel backend={self.session.backend} prompt={self.prompt.value[:30]!r}>"

    def close(self) -> None:
        """Stop the ticker and close every widget of the panel (jobs keep running)."""
        self._closed = True
        if self._run is not None:
            self._run.stop.set()
        for widget in reversed(self._widgets):
            widget.close()

    # ---- state (D2: controls -> plain dict -> core) ---------------------------------------

    @property
    def references(self) -> tuple[ReferenceImage, ...]:
        """The reference images currently attached (validated by the core)."""
        return tuple(self._references)

    def read_state(self) -> dict[str, Any]:
        """The controls as plain values: what the core is called with.

        Returns
        -------
        dict
            ``prompt``, ``model``, ``size``, ``resolution``, ``temperature`` and
            ``top_p`` (``None`` for models without sampling), ``repeats``,
            ``references`` (ReferenceImage tuple), ``reference_paths``,
            ``axes`` (``(name, values text)`` pairs, X first), ``fresh``, ``confirm``.
        """
        spec = get_model(self.model.value)
        axes: list[tuple[str, str]] = []
        if self.x_axis.value:
            axes.append((self.x_axis.value, self.x_values.value))
            if self.y_axis.value:
                axes.append((self.y_axis.value, self.y_values.value))
        return {
            "prompt": self.prompt.value,
            "model": spec.id,
            "size": self.size.value,
            "resolution": self.resolution.value,
            "temperature": round(float(self.temperature.value), 4) if spec.sampling else None,
            "top_p": round(float(self.top_p.value), 4) if spec.sampling else None,
            "repeats": int(self.repeats.value),
            "references": tuple(self._references),
            "reference_paths": tuple(self._reference_paths),
            "axes": tuple(axes),
            "fresh": bool(self.fresh.value),
            "confirm": bool(self.confirm.value),
            "edit": self._edit_row.cbid[-6:] if self._edit_row is not None else None,
        }
