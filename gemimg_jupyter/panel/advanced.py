"""The panel's "Advanced" section: the gateway's controls (thinking, search, format …), generated from the table.

Every widget here comes from a row of :data:`~gemimg_jupyter.api.CONTROL_PARAMS` (``control=True``),
made by its ``kind``: a ``choice`` is a dropdown (its first entry, "default", sends nothing), an
``int`` a tick box that sends a bounded whole number (typing a number ticks it), a ``flag`` a tick
box (off sends nothing, as the magic's ``--search`` does), ``pairs`` a text of
``CATEGORY=THRESHOLD`` settings separated by commas. Only the controls the chosen model takes
(:meth:`~gemimg_jupyter.api.ModelSpec.takes`) are shown and read; one a sweep axis sets is greyed
out. Values go to the core as given: the session checks them (a bad value or combination — image
search without search, a quality without JPEG — is the core's one line, in the plan line and the
message line, before any request). A new control is a new row of the table, not panel code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import CONTROL_PARAMS, ModelSpec, ParamSpec
from gemimg_jupyter.panel.common import DESC, FULL, notes_html
from gemimg_jupyter.panel.state import PanelState

#: What a ``choice`` dropdown shows for "send nothing" (the model's own default).
UNSET = "— default —"


class AdvancedSection:
    """The controls of the parameter table, collapsed under "Advanced", fitted to the chosen model.

    Parameters
    ----------
    state : PanelState
        The panel's shared state (the widget book, the ``updating`` flag).
    on_change : callable
        Called when a value changed (the panel refreshes its plan line and cell).

    Attributes
    ----------
    controls : dict
        Control name to the widget holding its value (``Dropdown``, ``BoundedIntText``, ``Checkbox``, ``Text``).
    control_ticks : dict
        For ``int`` controls, the tick box that says whether the number is sent.
    advanced : ipywidgets.Accordion
        The section, collapsed until opened.
    """

    def __init__(self, state: PanelState, *, on_change: Callable[[], None]) -> None:
        self._state = state
        self._make = state.widgets.make
        self._changed = on_change
        self.controls: dict[str, W.Widget] = {}
        self.control_ticks: dict[str, W.Checkbox] = {}
        self._rows: dict[str, W.Widget] = {}
        for spec in CONTROL_PARAMS:
            self._rows[spec.name] = self._build_row(spec)
        self.advanced_note = self._make(W.HTML, "gemimg-advanced-note", layout=W.Layout(**FULL))
        box = W.VBox([*self._rows.values(), self.advanced_note], layout=W.Layout(width="100%"))
        self.advanced = self._make(W.Accordion, "gemimg-advanced", children=[box], titles=("Advanced",))
        self.advanced.selected_index = None  # collapsed
        #: What the panel lays out.
        self.widgets: list[W.Widget] = [self.advanced]

    def _build_row(self, spec: ParamSpec) -> W.Widget:
        """One control's row, made by its kind; its value widget goes to :attr:`controls`."""
        css = f"gemimg-advanced-{spec.label}"
        tip = f"{spec.described} ({spec.option}; gateway: metadata.{spec.wire})"
        if spec.kind == "choice":
            options = [(UNSET, ""), *[(c, c) for c in spec.choices]]
            widget = self._make(
                W.Dropdown, css, options=options, value="", description=spec.label, tooltip=tip, style=DESC
            )
            row = widget
        elif spec.kind == "int":
            assert spec.bounds is not None, f"{spec.name} has bounds"
            lo, hi = int(spec.bounds[0]), int(spec.bounds[1])
            tick = self._make(W.Checkbox, f"{css}-on", value=False, description=spec.label, indent=False, tooltip=tip)
            tick.layout.width = "170px"
            widget = self._make(W.BoundedIntText, css, value=hi, min=lo, max=hi, tooltip=f"{lo}–{hi}")
            widget.layout.width = "140px"
            widget.observe(lambda _change, tick=tick: self._tick(tick), names="value")
            tick.observe(lambda _change: self._changed(), names="value")
            self.control_ticks[spec.name] = tick
            row = W.HBox([tick, widget])
        elif spec.kind == "flag":
            widget = self._make(W.Checkbox, css, value=False, description=spec.label, tooltip=tip, style=DESC)
            row = widget
        else:
            assert spec.kind == "pairs", f"{spec.name}: no widget for kind {spec.kind!r}"
            placeholder = "e.g. HATE_SPEECH=OFF, HARASSMENT=BLOCK_ONLY_HIGH"
            widget = self._make(W.Text, css, placeholder=placeholder, description=spec.label, tooltip=tip, style=DESC)
            widget.layout = W.Layout(**FULL)
            row = widget
        if spec.kind != "int":
            widget.observe(lambda _change: self._changed(), names="value")
        self.controls[spec.name] = widget
        return row

    def _tick(self, tick: W.Checkbox) -> None:
        """A number was typed: it is meant to be sent (ticking calls the panel back)."""
        if tick.value:
            self._changed()
        else:
            tick.value = True

    def fit(self, spec: ModelSpec, swept: Collection[str] = ()) -> None:
        """Show only what ``spec`` takes; grey out a control a sweep axis sets."""
        taken = [c for c in CONTROL_PARAMS if spec.takes(c.name)]
        for control in CONTROL_PARAMS:
            self._rows[control.name].layout.display = None if control in taken else "none"
            off = control.axis in swept
            self.controls[control.name].disabled = off
            if control.name in self.control_ticks:
                self.control_ticks[control.name].disabled = off
        if not taken:
            note = f"{spec.id} takes none of the gateway's controls."
        else:
            note = f"{spec.id} takes: {', '.join(c.label for c in taken)}. Left at default, nothing is sent."
        self.advanced_note.value = notes_html([note])

    def values(self, spec: ModelSpec, swept: Collection[str] = ()) -> dict[str, Any]:
        """Every control by name: its value as given when ``spec`` takes it and it is set, else ``None``.

        The values are the core's to check (:meth:`~gemimg_jupyter.api.Session.params`);
        ``pairs`` text is split at commas into ``CATEGORY=THRESHOLD`` items.
        """
        return {
            c.name: (self._value(c) if spec.takes(c.name) and c.axis not in swept else None) for c in CONTROL_PARAMS
        }

    def _value(self, spec: ParamSpec) -> Any:
        value = self.controls[spec.name].value
        if spec.kind == "choice":
            return value or None
        if spec.kind == "int":
            return int(value) if self.control_ticks[spec.name].value else None
        if spec.kind == "flag":
            return True if value else None
        items = [item.strip() for item in str(value).split(",") if item.strip()]
        return items or None
