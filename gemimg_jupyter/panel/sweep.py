"""The panel's sweep builder, its live plan line and the reproducing ``%%gemimg`` cell."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import (
    AXIS_NAMES,
    CONTROL_PARAMS,
    VALUE_PARAMS,
    Axis,
    GemimgError,
    SweepPlan,
    format_usd,
    load_reference,
    parse_axis,
)
from gemimg_jupyter.display import error_line
from gemimg_jupyter.panel.common import AXIS_HINTS, DESC, FULL, heading, magic_cell, message_html
from gemimg_jupyter.panel.state import PanelState


class SweepSection:
    """The X and Y sweep axes, the plan line (requests, cached, cost) and the reproduce box.

    Parameters
    ----------
    state : PanelState
        The panel's shared state (the session, the confirmation threshold, the image being edited).
    on_change : callable
        Called when an axis's values changed (the panel refreshes the plan line and the cell).
    on_axes_change : callable
        Called when an axis's parameter changed (the panel greys out what the axes override).
    """

    def __init__(self, state: PanelState, *, on_change: Callable[[], None], on_axes_change: Callable[[], None]) -> None:
        self._state = state
        self._make = state.widgets.make
        self._changed = on_change
        self._axes_changed = on_axes_change
        axis_options = [("— none —", ""), *[(name, name) for name in AXIS_NAMES]]
        self.x_axis, self.x_values, self.x_error = self._build_axis("x", "X (across)", axis_options, disabled=False)
        self.y_axis, self.y_values, self.y_error = self._build_axis("y", "Y (down)", axis_options, disabled=True)
        self.plan_html = self._make(W.HTML, "gemimg-plan", layout=W.Layout(width="100%", min_height="40px"))
        for control in (self.x_axis, self.y_axis):
            control.observe(self._on_axis_change, names="value")
        for control in (self.x_values, self.y_values):
            control.observe(lambda _change: self._changed(), names="value")
        self.widgets: list[W.Widget] = [
            heading("Sweep (optional)"),
            self.x_axis,
            self.x_values,
            self.x_error,
            self.y_axis,
            self.y_values,
            self.y_error,
            heading("Plan"),
            self.plan_html,
        ]
        self.magic = self._make(
            W.Textarea,
            "gemimg-magic",
            rows=4,
            layout=W.Layout(width="100%", height="92px"),
            tooltip="the %%gemimg cell that reproduces these settings; copy it into a cell",
        )
        #: The ``%%gemimg`` cell that reproduces the settings (laid out under the result).
        self.reproduce: list[W.Widget] = [heading("Reproduce as a cell"), self.magic]

    def swept(self) -> set[str]:
        """The parameters the axes set (Y counts only under an X)."""
        x, y = self.x_axis.value, self.y_axis.value
        return {x, y if x else ""} - {""}

    def _build_axis(self, which: str, label: str, options: list[tuple[str, str]], *, disabled: bool) -> tuple[Any, ...]:
        """One axis's row: the parameter dropdown, its values (enabled once a parameter is picked) and its error."""
        css = f"gemimg-sweep-{which}"
        axis = self._make(
            W.Dropdown,
            f"{css}-axis",
            options=options,
            value="",
            description=label,
            style=DESC,
            disabled=disabled,
            layout=W.Layout(width="260px"),
        )
        values = self._make(
            W.Text,
            f"{css}-values",
            placeholder="values",
            description="values",
            disabled=True,
            style=DESC,
            layout=W.Layout(**FULL),
        )
        return axis, values, self._make(W.HTML, f"{css}-error", layout=W.Layout(**FULL))

    def parse_axes(self, state: Mapping[str, Any]) -> tuple[list[Axis], dict[str, str]]:
        """Parse the sweep axes with the core's :func:`~gemimg_jupyter.plans.plan.parse_axis`.

        Returns
        -------
        axes : list of Axis
            The axes that parsed (an axis with no values yet is skipped).
        errors : dict
            ``"x"``/``"y"`` to the core's message for the axes that did not.
        """
        axes: list[Axis] = []
        errors: dict[str, str] = {}
        for which, (name, values) in zip("xy", state["axes"], strict=False):
            if not values.strip():
                continue
            try:
                axes.append(parse_axis(f"{name}={values}", resolve_ref=load_reference))
            except GemimgError as exc:
                errors[which] = error_line(exc)
        return axes, errors

    def plan(self, state: Mapping[str, Any], axes: Sequence[Axis] | None = None) -> SweepPlan:
        """The validated plan for the settings ``state`` (raises the core's errors).

        Parameters
        ----------
        state : mapping
            The panel's :meth:`~gemimg_jupyter.panel.Panel.read_state`.
        axes : sequence of Axis, optional
            The state's axes already parsed (:meth:`parse_axes`), so they are not read twice.
        """
        if axes is None:
            axes = [parse_axis(f"{n}={v}", resolve_ref=load_reference) for n, v in state["axes"]]
        values = {param.name: state[param.name] for param in VALUE_PARAMS}  # model, size, resolution, sampling
        values |= {c.name: state[c.name] for c in CONTROL_PARAMS if state.get(c.name) is not None}  # the controls set
        references = list(state["references"])
        return self._state.session.plan(
            state["prompt"],
            axes=axes,
            repeats=state["repeats"],
            reference_images=references,
            edit=self._state.edit_row,
            **values,
        )

    def _on_axis_change(self, _change: Any = None) -> None:
        x, y = self.x_axis.value, self.y_axis.value
        self.x_values.disabled = not x
        self.x_values.placeholder = AXIS_HINTS.get(x, "values") if x else "pick a parameter first"
        self.y_axis.disabled = not x
        self.y_values.disabled = not (x and y)
        self.y_values.placeholder = AXIS_HINTS.get(y, "values") if (x and y) else "pick a parameter first"
        self._axes_changed()

    def show_cell(self, state: Mapping[str, Any]) -> None:
        """The ``%%gemimg`` cell for the settings ``state``."""
        self.magic.value = magic_cell(state)

    def update_plan(self, state: Mapping[str, Any]) -> bool:
        """The live plan line: requests, cached, estimated cost, or the core's error.

        Returns
        -------
        bool
            True when the run is over the confirmation threshold (the "allow" box must be ticked).
        """
        axes, errors = self.parse_axes(state)
        self.x_error.value = message_html(errors["x"], "error") if "x" in errors else ""
        self.y_error.value = message_html(errors["y"], "error") if "y" in errors else ""
        needs_confirm = False
        if errors:
            self.plan_html.value = message_html("Fix the sweep values above to see the plan.", "warn")
        elif any(not values.strip() for _name, values in state["axes"]):
            self.plan_html.value = message_html("Enter the sweep values (see the hint in the box).", "info")
        elif not state["prompt"].strip():
            self.plan_html.value = message_html("Write a prompt to see the plan and its cost.", "info")
        else:
            try:
                plan = self.plan(state, axes)
                threshold = self._state.confirm_above_usd
                quote = self._state.session.quote(plan, fresh=state["fresh"], confirm_above_usd=threshold)
                needs_confirm = quote.needs_confirmation
                over = format_usd(threshold or 0.0)  # needs_confirm implies a threshold
                extra = f"\nover {over}: tick “allow” to run it" if needs_confirm else ""
                self.plan_html.value = message_html(quote.summary + extra, "warn" if needs_confirm else "ok")
            except GemimgError as exc:
                self.plan_html.value = message_html(error_line(exc), "error")
        return needs_confirm
