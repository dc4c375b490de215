"""The ipywidgets control panel: ``%gemimg panel`` and ``gemimg_jupyter.Panel()``.

One module per section, each a class that owns its widgets and handles their events:
:mod:`.parameters` (prompt and parameters), :mod:`.advanced` (the gateway's controls, from the
parameter table), :mod:`.references` (reference images, the image being
edited), :mod:`.sweep` (sweep axes, plan line, reproducing cell), :mod:`.results` (Generate, Cancel,
progress, the result), :mod:`.detail` (one image, edit, pick) and :mod:`.history`. :mod:`.state`
holds what they share (one :class:`~.state.PanelState`: the session getter, the current run, the
request chosen in it, the image being edited; the widget book; the message line) and :mod:`.common`
the pure helpers. :class:`Panel` builds the sections, hands each the state and the callbacks it
calls the others through, and lays them out; a section never reaches into another.

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
    │ textarea                    │ │ upload · path or URL · ✕  │
    │ Parameters                  │ │ Sweep                      │
    │ model / size / resolution   │ │ X: param + values          │
    │ temperature / top-p/repeats │ │ Y: param + values          │
    │ notes (what is disabled, why)│ │ plan: N requests, ≈ $…    │
    └─────────────────────────────┘ └────────────────────────────┘
    ▸ Advanced (collapsed): the controls the chosen model takes (thinking, search, format …)
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

from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import (
    CONFIRM_ABOVE_USD,
    Axis,
    GemimgError,
    Job,
    LedgerRow,
    ReferenceImage,
    Session,
    SweepPlan,
    get_model,
    get_session,
    latest,
    plural,
)
from gemimg_jupyter.display import error_line
from gemimg_jupyter.panel.advanced import AdvancedSection
from gemimg_jupyter.panel.common import (
    DETAIL_LONG_SIDE,
    GRID_CELL,
    HISTORY_SLOTS,
    HISTORY_THUMB,
    PANEL_CSS,
    REF_THUMB,
    TICK_SECONDS,
    header_html,
    magic_cell,
    model_notes,
)
from gemimg_jupyter.panel.detail import DetailSection
from gemimg_jupyter.panel.history import HistorySection
from gemimg_jupyter.panel.parameters import ParametersSection
from gemimg_jupyter.panel.references import ReferencesSection
from gemimg_jupyter.panel.results import ResultsSection
from gemimg_jupyter.panel.state import MessageLine, PanelState
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
    "PanelState",
    "magic_cell",
    "model_notes",
]


class _Owned:
    """``panel.<name>``: the widget of that name that one section owns (what tests, docs and notebooks drive)."""

    def __init__(self, section: str) -> None:
        self._section = section
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, panel: object, owner: type | None = None) -> Any:
        if panel is None:
            return self
        return getattr(getattr(panel, self._section), self._name)

    def __set__(self, panel: object, value: object) -> None:
        raise AttributeError(f"panel.{self._name} is a widget the panel owns; set its value instead")


class Panel:
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
    Every control a test touches carries a ``gemimg-…`` CSS class, and is reached as
    ``panel.<name>`` (``panel.prompt``, ``panel.generate_button`` …) though a section owns it.
    ``panel.state`` (:class:`~.state.PanelState`) is what the sections share: the current run, the
    image being edited, every widget made.
    """

    # the widgets, each owned by one section
    header = _Owned("_heading")
    prompt = _Owned("_parameters")
    model = _Owned("_parameters")
    size = _Owned("_parameters")
    size_shape = _Owned("_parameters")
    resolution = _Owned("_parameters")
    temperature = _Owned("_parameters")
    top_p = _Owned("_parameters")
    repeats = _Owned("_parameters")
    model_notes = _Owned("_parameters")
    advanced = _Owned("_advanced")
    controls = _Owned("_advanced")  # a dict: control name -> the widget holding its value
    control_ticks = _Owned("_advanced")  # a dict: int control name -> the box saying whether it is sent
    upload = _Owned("_references")
    ref_count = _Owned("_references")
    ref_box = _Owned("_references")
    ref_message = _Owned("_references")
    ref_source = _Owned("_references")  # a file path or URL typed in (Colab's upload fails for files ≥ 1 MB)
    ref_add = _Owned("_references")
    edit_note = _Owned("_references")
    edit_clear = _Owned("_references")
    x_axis = _Owned("_sweep")
    x_values = _Owned("_sweep")
    x_error = _Owned("_sweep")
    y_axis = _Owned("_sweep")
    y_values = _Owned("_sweep")
    y_error = _Owned("_sweep")
    plan_html = _Owned("_sweep")
    magic = _Owned("_sweep")
    message = _Owned("_messages")
    generate_button = _Owned("_results")
    cancel_button = _Owned("_results")
    fresh = _Owned("_results")
    confirm = _Owned("_results")
    generate_note = _Owned("_results")
    compare_button = _Owned("_results")
    compare_box = _Owned("_results")
    progress = _Owned("_results")
    progress_text = _Owned("_results")
    result_image = _Owned("_results")
    result_hint = _Owned("_results")
    cells = _Owned("_results")
    detail_image = _Owned("_detail")
    detail_html = _Owned("_detail")
    detail_edit = _Owned("_detail")
    detail_pick = _Owned("_detail")
    history_refresh = _Owned("_history")
    history_box = _Owned("_history")
    history_hint = _Owned("_history")
    session_cost = _Owned("_history")
    history_buttons = _Owned("_history")

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

            def session_of() -> Session:
                return latest(given)
        else:
            session_of = session or get_session
        #: What the sections share (the session getter, the current run, the image being edited …).
        self.state = PanelState(session_of, confirm_above_usd, cell_size)
        self._build(prompt)
        self._parameters.fit_to_model()
        if defaults:
            self._parameters.apply_defaults(defaults)
        self._history.refresh()

    def _build(self, prompt: str) -> None:
        """Build the sections, each handed the state and the callbacks it calls the others through; lay them out."""
        state = self.state
        self._heading = _Heading(state)
        self._messages = MessageLine(state.widgets)
        say = self._messages.say
        self._parameters = ParametersSection(
            state, prompt, say=say, on_change=self._on_change, on_model_change=self._on_model_change
        )
        self._advanced = AdvancedSection(state, on_change=self._on_change)
        self._references = ReferencesSection(state, model_spec=self._parameters.spec, on_change=self._on_change)
        self._sweep = SweepSection(state, on_change=self._on_change, on_axes_change=self._on_axes_change)
        self._detail = DetailSection(state, say=say, on_edit=self._edit_from_detail, on_pick=self._on_pick)
        self._results = ResultsSection(
            state,
            self._messages,
            self._detail,
            read_state=self.read_state,
            plan=self.plan,
            on_change=self._on_change,
            on_start=self._heading.refresh,
            on_finished=self._on_finished,
        )
        self._history = HistorySection(state, show_row=self._detail.show_row)
        right = W.VBox(
            [*self._references.widgets, *self._sweep.widgets],
            layout=W.Layout(flex="1 1 360px", min_width="280px", padding="0 6px 0 0"),
        )
        self.widget = W.VBox(
            [
                self.header,
                W.HBox([self._parameters.column, right], layout=W.Layout(flex_flow="row wrap", width="100%")),
                *self._advanced.widgets,
                self._results.status,
                *self._results.widgets,
                *self._detail.widgets,
                *self._sweep.reproduce,
                *self._history.widgets,
            ],
            layout=W.Layout(
                width="100%", max_width="960px", padding="8px", border="1px solid var(--jp-border-color2, #ddd)"
            ),
        )
        self.widget.add_class("gemimg-panel")

    # ---- what one section's change does to the others ------------------------------------

    def _on_change(self) -> None:
        """Any control changed: refresh the shape preview, plan line and magic text."""
        if self.state.updating or self.state.closed:
            return
        values = self.read_state()
        self._parameters.show_shape(values["size"], values["resolution"])
        self._sweep.show_cell(values)
        self._update_plan(values)
        self._results.show_generate_note(self._edit_sweep_note(values))

    def _edit_sweep_note(self, values: Mapping[str, Any]) -> str:
        """What Generate does when an image is being edited and the sweep builder is set ("" otherwise)."""
        if not values.get("edit") or not values["axes"]:
            return ""
        try:
            plan = self.plan(values)
        except GemimgError:
            return f"Editing {values['edit']} with the sweep set: Generate runs one edit per sweep cell."
        cost = plan.summary().rsplit(", ", 1)[-1]
        return (
            f"Editing {values['edit']} with the sweep set: Generate runs {plural(plan.n_requests, 'edit')} "
            f"(one per sweep cell, {cost}). Set X to “— none —” for one edit."
        )

    def _update_plan(self, values: Mapping[str, Any]) -> None:
        self._results.show_confirm(self._sweep.update_plan(values))

    def _on_model_change(self) -> None:
        self._parameters.update_enabled(self._sweep.swept())
        self._advanced.fit(self._parameters.spec(), self._sweep.swept())
        self._references.update_ui()
        self._on_change()

    def _on_axes_change(self) -> None:
        self._parameters.update_enabled(self._sweep.swept())
        self._advanced.fit(self._parameters.spec(), self._sweep.swept())
        self._on_change()

    def _edit_from_detail(self, row: LedgerRow) -> None:
        try:
            self.set_edit(row)
        except GemimgError as exc:
            self._messages.say(error_line(exc), "error")
            return
        self._parameters.ask_what_to_change()

    def _on_pick(self) -> None:
        self._history.refresh()
        run = self.state.run
        if run is not None and run.sweep is not None:
            self._results.refresh(run, heavy=True)  # the grid shows the star

    def _on_finished(self) -> None:
        run, editing = self.state.run, self.state.edit_row
        edited = run is not None and editing is not None and run.state.get("edit") == editing.cbid[-6:]
        if edited and run is not None and any(job.state.has_image for job in run.jobs):  # a failed edit stays set
            self._references.set_edit(None)  # the edit ran: the next Generate starts from the prompt again
        self._history.refresh()
        if not self.state.closed:
            self._update_plan(self.read_state())  # what is cached has changed

    # ---- display ----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<gemimg Panel backend={self.session.backend} prompt={self.prompt.value[:30]!r}>"

    def close(self) -> None:
        """Stop the ticker and close every widget of the panel (jobs keep running)."""
        self.state.closed = True
        if self.state.run is not None:
            self.state.run.stop.set()
        self.state.widgets.close()

    # ---- the session, the run -----------------------------------------------------------

    @property
    def session(self) -> Session:
        """The session the panel runs on, asked for each time it is needed (see :attr:`PanelState.session`)."""
        return self.state.session

    @property
    def confirm_above_usd(self) -> float | None:
        """A sweep estimated above this many USD needs the "allow" box ticked (``None``: never ask)."""
        return self.state.confirm_above_usd

    @property
    def cell_size(self) -> int:
        """Pixel size of one cell of a sweep grid."""
        return self.state.cell_size

    @property
    def busy(self) -> bool:
        """True while the last Generate is still running (Generate is refused meanwhile)."""
        return self.state.busy

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the last run has finished and the panel shows its outcome.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most.

        Returns
        -------
        bool
            ``False`` if ``timeout`` passed first; ``True`` when idle.
        """
        run = self.state.run
        return True if run is None else run.settled.wait(timeout)

    # ---- state (D2: controls -> plain dict -> core) ---------------------------------------

    @property
    def references(self) -> tuple[ReferenceImage, ...]:
        """The reference images currently attached (validated by the core)."""
        return self._references.references

    def read_state(self) -> dict[str, Any]:
        """The controls as plain values: what the core is called with.

        Returns
        -------
        dict
            ``prompt``, ``model``, ``size``, ``resolution``, ``temperature`` and
            ``top_p`` (``None`` for models without sampling), ``repeats``,
            ``references`` (ReferenceImage tuple), ``reference_paths``,
            ``axes`` (``(name, values text)`` pairs, X first), ``fresh``, ``confirm``, and each
            control of the "Advanced" section by name (``thinking`` …; ``None``: not set, not taken
            by the model or swept).
        """
        spec = get_model(self.model.value)
        axes: list[tuple[str, str]] = []
        if self.x_axis.value:
            axes.append((self.x_axis.value, self.x_values.value))
            if self.y_axis.value:
                axes.append((self.y_axis.value, self.y_values.value))
        edit = self.state.edit_row
        return {
            "prompt": self.prompt.value,
            "model": spec.id,
            "size": self.size.value,
            "resolution": self.resolution.value,
            "temperature": round(float(self.temperature.value), 4) if spec.sampling else None,
            "top_p": round(float(self.top_p.value), 4) if spec.sampling else None,
            "repeats": int(self.repeats.value),
            "references": self._references.references,
            "reference_paths": self._references.paths,
            "axes": tuple(axes),
            "fresh": bool(self.fresh.value),
            "confirm": bool(self.confirm.value),
            "edit": edit.cbid[-6:] if edit is not None else None,
            **self._advanced.values(spec, self._sweep.swept()),
        }

    def parse_axes(self, state: Mapping[str, Any]) -> tuple[list[Axis], dict[str, str]]:
        """The sweep axes of ``state`` parsed by the core, and the message for each that did not parse.

        See :meth:`.sweep.SweepSection.parse_axes`.
        """
        return self._sweep.parse_axes(state)

    def plan(self, state: Mapping[str, Any] | None = None) -> SweepPlan:
        """The validated plan for the current settings (raises the core's errors).

        Parameters
        ----------
        state : mapping, optional
            Defaults to :meth:`read_state`.
        """
        return self._sweep.plan(state or self.read_state())

    def magic_text(self) -> str:
        """The ``%%gemimg`` cell that reproduces the current settings."""
        return magic_cell(self.read_state())

    def set_edit(self, target: Job | LedgerRow | None) -> None:
        """Edit ``target`` in the next run (its image goes first among the references); ``None`` stops editing."""
        self._references.set_edit(target)


class _Heading:
    """The panel's header: its name, the backend badge and the output folder, refreshed on each Generate."""

    def __init__(self, state: PanelState) -> None:
        self._state = state
        self.header = state.widgets.make(W.HTML, "gemimg-header", value=header_html(state.session))

    def refresh(self) -> None:
        self.header.value = header_html(self._state.session)
