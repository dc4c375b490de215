"""The panel's sweep builder, its live plan line and the reproducing ``%%gemimg`` cell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import (
    AXIS_NAMES,
    VALUE_PARAMS,
    Axis,
    GemimgError,
    SweepPlan,
    format_usd,
    load_reference,
    parse_axis,
)
from gemimg_jupyter.display import error_line
from gemimg_jupyter.panel.base import PanelBase
from gemimg_jupyter.panel.common import AXIS_HINTS, DESC, FULL, heading, magic_cell, message_html, shape_html


class SweepSection(PanelBase):
    """The X and Y sweep axes, the plan line (requests, cached, cost) and the reproduce box."""

    def _build_sweep(self) -> list[W.Widget]:
        """The sweep and plan part of the right column, wired to the panel."""
        axis_options = [("— none —", ""), *[(name, name) for name in AXIS_NAMES]]
        self.x_axis, self.x_values, self.x_error = self._build_axis("x", "X (across)", axis_options, disabled=False)
        self.y_axis, self.y_values, self.y_error = self._build_axis("y", "Y (down)", axis_options, disabled=True)
        self.plan_html = self._w(W.HTML, "gemimg-plan", layout=W.Layout(width="100%", min_height="40px"))
        for control in (self.x_axis, self.y_axis):
            control.observe(self._on_axis_change, names="value")
        for control in (self.x_values, self.y_values):
            control.observe(self._on_change, names="value")
        return [
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

    def _build_axis(self, which: str, label: str, options: list[tuple[str, str]], *, disabled: bool) -> tuple[Any, ...]:
        """One axis's row: the parameter dropdown, its values (enabled once a parameter is picked) and its error."""
        css = f"gemimg-sweep-{which}"
        axis = self._w(
            W.Dropdown,
            f"{css}-axis",
            options=options,
            value="",
            description=label,
            style=DESC,
            disabled=disabled,
            layout=W.Layout(width="260px"),
        )
        values = self._w(
            W.Text,
            f"{css}-values",
            placeholder="values",
            description="values",
            disabled=True,
            style=DESC,
            layout=W.Layout(**FULL),
        )
        return axis, values, self._w(W.HTML, f"{css}-error", layout=W.Layout(**FULL))

    def _build_reproduce(self) -> list[W.Widget]:
        """The ``%%gemimg`` cell that reproduces the settings."""
        self.magic = self._w(
            W.Textarea,
            "gemimg-magic",
            rows=4,
            layout=W.Layout(width="100%", height="92px"),
            tooltip="the %%gemimg cell that reproduces these settings; copy it into a cell",
        )
        return [heading("Reproduce as a cell"), self.magic]

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

    def plan(self, state: Mapping[str, Any] | None = None, axes: Sequence[Axis] | None = None) -> SweepPlan:
        """The validated plan for the current settings (raises the core's errors).

        Parameters
        ----------
        state : mapping, optional
            Defaults to :meth:`read_state`.
        axes : sequence of Axis, optional
            The state's axes already parsed (:meth:`parse_axes`), so they are not read twice.
        """
        state = state or self.read_state()
        if axes is None:
            axes = [parse_axis(f"{n}={v}", resolve_ref=load_reference) for n, v in state["axes"]]
        values = {param.name: state[param.name] for param in VALUE_PARAMS}  # model, size, resolution, sampling
        references = list(state["references"])
        return self.session.plan(
            state["prompt"],
            axes=axes,
            repeats=state["repeats"],
            reference_images=references,
            edit=self._edit_row,
            **values,
        )

    def magic_text(self) -> str:
        """The ``%%gemimg`` cell that reproduces the current settings."""
        return magic_cell(self.read_state())

    def _on_axis_change(self, _change: Any = None) -> None:
        x, y = self.x_axis.value, self.y_axis.value
        self.x_values.disabled = not x
        self.x_values.placeholder = AXIS_HINTS.get(x, "values") if x else "pick a parameter first"
        self.y_axis.disabled = not x
        self.y_values.disabled = not (x and y)
        self.y_values.placeholder = AXIS_HINTS.get(y, "values") if (x and y) else "pick a parameter first"
        self._update_enabled()
        self._on_change()

    def _on_change(self, _change: Any = None) -> None:
        """Any control changed: refresh the shape preview, plan line and magic text."""
        if self._updating or self._closed:
            return
        state = self.read_state()
        self.size_shape.value = shape_html(state["size"], state["resolution"])
        self.magic.value = magic_cell(state)
        self._update_plan(state)

    def _update_plan(self, state: Mapping[str, Any]) -> None:
        """The live plan line: requests, cached, estimated cost, or the core's error."""
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
                quote = self.session.quote(plan, fresh=state["fresh"], confirm_above_usd=self.confirm_above_usd)
                needs_confirm = quote.needs_confirmation
                over = format_usd(self.confirm_above_usd or 0.0)  # needs_confirm implies a threshold
                extra = f"\nover {over}: tick “allow” to run it" if needs_confirm else ""
                self.plan_html.value = message_html(quote.summary + extra, "warn" if needs_confirm else "ok")
            except GemimgError as exc:
                self.plan_html.value = message_html(error_line(exc), "error")
        self.confirm.layout.visibility = "visible" if needs_confirm or self.confirm.value else "hidden"
