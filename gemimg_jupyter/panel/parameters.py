"""The panel's left column: the prompt and the parameters, and what a model change does to them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import (
    MAX_REPEATS,
    MODELS,
    PARAMS,
    SAMPLING_PARAMS,
    GemimgError,
    ModelSpec,
    ParamSpec,
    get_model,
)
from gemimg_jupyter.panel.common import (
    DESC,
    FULL,
    heading,
    model_label,
    model_notes,
    notes_html,
    shape_html,
    size_label,
)
from gemimg_jupyter.panel.state import PanelState


class ParametersSection:
    """The prompt, model, size, resolution, sampling sliders and repeats; the model's notes.

    Parameters
    ----------
    state : PanelState
        The panel's shared state (the session, the ``updating`` flag, the widget book).
    prompt : str
        The prompt's first text.
    say : callable
        The panel's message line (a size the new model lacks is said there).
    on_change : callable
        Called when a value changed (the panel refreshes its plan line and cell).
    on_model_change : callable
        Called once a new model's options are in place (the panel fits the rest of it to the model).
    """

    def __init__(
        self,
        state: PanelState,
        prompt: str,
        *,
        say: Callable[[str, str], None],
        on_change: Callable[[], None],
        on_model_change: Callable[[], None],
    ) -> None:
        self._state = state
        self._make = state.widgets.make
        self._say = say
        self._changed = on_change
        self._model_changed = on_model_change
        self.prompt = self._make(
            W.Textarea,
            "gemimg-prompt",
            value=prompt,
            placeholder="Describe the image, e.g. A studio photo of a teapot on a marble table, soft daylight",
            rows=4,
            layout=W.Layout(width="100%", height="88px"),
        )
        self._build_controls(get_model(state.session.settings.model))
        self.column = W.VBox(
            [
                heading("Prompt"),
                self.prompt,
                heading("Parameters"),
                self.model,
                W.HBox([self.size, self.size_shape], layout=W.Layout(width="100%", align_items="center")),
                self.resolution,
                self.temperature,
                self.top_p,
                self.repeats,
                self.model_notes,
            ],
            layout=W.Layout(flex="1 1 420px", min_width="280px", margin="0 16px 0 0"),
        )
        self.model.observe(self.fit_to_model, names="value")
        for control in (self.prompt, self.size, self.temperature, self.top_p, self.repeats):
            control.observe(lambda _change: self._changed(), names="value")
        self.resolution.observe(self._on_resolution_change, names="value")

    def _build_controls(self, spec: ModelSpec) -> None:
        self.model = self._make(
            W.Dropdown,
            "gemimg-model",
            options=[(model_label(m), m.id) for m in MODELS.values()],
            value=spec.id,
            description="model",
            style=DESC,
            layout=W.Layout(**FULL),
        )
        self.size = self._make(
            W.Dropdown,
            "gemimg-size",
            options=[],
            description="size",
            style=DESC,
            layout=W.Layout(width="auto", flex="1 1 auto"),
        )
        self.size_shape = self._make(W.HTML, "gemimg-size-shape", layout=W.Layout(width="130px", min_width="130px"))
        self.resolution = self._make(
            W.Dropdown, "gemimg-resolution", options=[], description="resolution", style=DESC, layout=W.Layout(**FULL)
        )
        self.temperature = self._slider(PARAMS["temperature"])
        self.top_p = self._slider(PARAMS["top_p"])
        self.repeats = self._make(
            W.BoundedIntText,
            "gemimg-repeats",
            value=1,
            min=1,
            max=MAX_REPEATS,
            description="repeats",
            tooltip=f"samples per setting (1–{MAX_REPEATS}); Gemini has no seed",
            style=DESC,
            layout=W.Layout(width="180px"),
        )
        self.model_notes = self._make(W.HTML, "gemimg-model-notes", layout=W.Layout(**FULL))

    def _slider(self, param: ParamSpec) -> W.FloatSlider:
        """A slider over the parameter's bounds, at its default, labelled and stepped as the table says."""
        assert param.bounds is not None, f"{param.name} is not a number"
        return self._make(
            W.FloatSlider,
            f"gemimg-{param.label}",
            value=param.default,
            min=param.bounds[0],
            max=param.bounds[1],
            step=param.step,
            readout_format=".2f",
            description=param.label,
            style=DESC,
            layout=W.Layout(**FULL),
        )

    def spec(self) -> ModelSpec:
        """The chosen model."""
        return get_model(self.model.value)

    def apply_defaults(self, defaults: Mapping[str, Any]) -> None:
        """Set the controls from ``%config``-style defaults, skipping what does not fit."""
        model = defaults.get("model")
        if model:
            with contextlib.suppress(GemimgError):
                self.model.value = get_model(str(model)).id
        spec = get_model(self.model.value)
        res = defaults.get("resolution")
        if res and str(res).upper() in spec.resolutions:
            self.resolution.value = str(res).upper()
        size = defaults.get("size")
        if size and str(size).replace("x", ":") in spec.sizes:
            self.size.value = str(size).replace("x", ":")
        for param in SAMPLING_PARAMS:
            slider, value = getattr(self, param.name), defaults.get(param.name)
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if slider.min <= number <= slider.max:
                slider.value = number

    def fit_to_model(self, _change: Any = None) -> None:
        """The model changed (or the panel starts): fit resolution and size to it, show its notes, tell the panel."""
        spec = get_model(self.model.value)
        self._state.updating = True
        try:
            old_res = self.resolution.value
            new_res = old_res if old_res in spec.resolutions else spec.default_resolution
            self.resolution.options = list(spec.resolutions)
            self.resolution.value = new_res
            self._set_size_options(spec, new_res)
        finally:
            self._state.updating = False
        self.model_notes.value = notes_html(model_notes(spec))
        self._model_changed()

    def _set_size_options(self, spec: ModelSpec, resolution: str) -> None:
        old = self.size.value
        value = old if old in spec.sizes else ("1:1" if "1:1" in spec.sizes else spec.sizes[0])
        self.size.options = [(size_label(s, resolution), s) for s in spec.sizes]
        self.size.value = value
        if old and old != value:
            self._say(f"size {old} is not available on {spec.id}; switched to {value}", "warn")

    def _on_resolution_change(self, _change: Any = None) -> None:
        if self._state.updating:
            return
        self._state.updating = True
        try:
            self._set_size_options(get_model(self.model.value), self.resolution.value)
        finally:
            self._state.updating = False
        self._changed()

    def update_enabled(self, swept: Collection[str]) -> None:
        """Grey out what the model does not take and what a sweep axis (``swept``) overrides."""
        spec = get_model(self.model.value)
        self.size.disabled = "size" in swept
        self.resolution.disabled = "resolution" in swept or len(spec.resolutions) == 1
        self.temperature.disabled = not spec.sampling or "temperature" in swept
        self.top_p.disabled = not spec.sampling or "top_p" in swept

    def show_shape(self, size: str, resolution: str) -> None:
        """The pixel shape next to the size dropdown."""
        self.size_shape.value = shape_html(size, resolution)

    def ask_what_to_change(self) -> None:
        """An edit began: empty the prompt, say what to write there and put the cursor in it."""
        self.prompt.value = ""
        self.prompt.placeholder = "what to change, e.g. make the background a night sky"
        self.prompt.focus()
