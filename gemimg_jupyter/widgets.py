"""The ipywidgets control panel: ``%gemimg panel`` and ``gemimg_jupyter.Panel()``.

The panel is a thin skin over the core. It reads its controls into a plain
dict (:meth:`Panel.read_state`), and everything that matters is done by the
:class:`~gemimg_jupyter.session.Session` it is bound to (the same default
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

import contextlib
import functools
import html
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W

from .display import THEME_CSS, error_line
from .errors import GemimgError
from .images import load_reference, load_thumbnail, png_bytes
from .jobs import Job
from .models import MODELS, PIXELS_1K, JobState, ModelSpec, ReferenceImage, get_model, pixel_size, validate_references
from .plan import AXIS_NAMES, CONFIRM_ABOVE_USD, MAX_REPEATS, Axis, SweepPlan, parse_axis
from .session import Session, SweepResult, get_session
from .store import LedgerRow
from .text import format_usd, plural

__all__ = ["Panel", "magic_cell", "model_notes"]

HISTORY_SLOTS = 12
HISTORY_THUMB = 96
REF_THUMB = 72
DETAIL_LONG_SIDE = 768
GRID_CELL = 320
TICK_SECONDS = 0.5
_DESC = {"description_width": "92px"}
_FULL = {"width": "100%"}
_ALL_RESOLUTIONS: tuple[str, ...] = tuple(
    sorted({r for spec in MODELS.values() for r in spec.resolutions}, key=lambda r: float(r.rstrip("K")))
)
_ALL_SIZES: tuple[str, ...] = tuple(s for s in PIXELS_1K if any(s in spec.sizes for spec in MODELS.values()))
_AXIS_HINTS: dict[str, str] = {
    "temperature": "0.2,0.8,1.4  or  0.2-1.4 [4]",
    "top_p": "0.8,0.9,1.0",
    "size": "1:1,16:9",
    "resolution": "1K,2K",
    "model": "gemini-2.5-flash-image-official,gemini-3.1-flash-image-preview",
    "prompt": "fox|cat|owl  (the first must be in the prompt)",
    "ref": "none|a.png|a.png+b.png",
}
#: The states whose cell button names the state while it has no progress to show yet.
_EARLY_STATES = (JobState.QUEUED, JobState.UPLOADING, JobState.SUBMITTING)


def _cell_mark(job: Job) -> str:
    """A cell button's mark, from :class:`JobState`'s classifications: ``✓``, ``✗ failed``, ``⊘ blocked``, ``45%``."""
    state = job.state
    if state.has_image:
        return "✓ cached" if state is JobState.CACHED else "✓"
    if state.is_terminal:
        return f"{'⊘' if state.icon == '⊘' else '✗'} {state.value}"
    return state.value if state in _EARLY_STATES else f"{job.progress}%"


def _cell_style(state: JobState) -> str:
    """A cell button's style: green with an image, red for a failure, amber when cancelled."""
    if state.has_image:
        return "success"
    if state.shown_as_failed:
        return "danger"
    if state.is_terminal:
        return "warning"
    return "" if state is JobState.QUEUED else "info"


#: Message levels as the display layer's theme-aware tones (4.5:1 in light and dark); "info" is the theme's text colour.
_TONES = {"ok": "ok", "warn": "warn", "error": "error"}
#: The panel's own CSS, carried by its header: images keep their proportions (never stretched by the
#: flex boxes around them), and inputs given 100% width keep their 2 px widget margin inside the column.
PANEL_CSS = (
    "<style>"
    ".gemimg-panel img.gemimg-result-image,.gemimg-panel img.gemimg-detail-image"
    "{object-fit:contain;align-self:flex-start;flex:0 0 auto}"
    ".gemimg-panel .widget-inline-hbox,.gemimg-panel .widget-textarea,.gemimg-panel .widget-text"
    "{max-width:calc(100% - 2 * var(--jp-widgets-margin, 2px));box-sizing:border-box}"
    ".gemimg-panel .widget-dropdown > select{min-width:0;text-overflow:ellipsis}"
    ".gemimg-panel .gemimg-detail-params{min-width:0;overflow-wrap:anywhere}"
    ".gemimg-panel .gemimg-detail-params td:first-child{white-space:nowrap}"
    ".gemimg-panel .widget-hbox:has(> .gemimg-size-shape){flex-wrap:wrap}"
    "</style>"
)


# ------------------------------------------------------------------ pure helpers


def model_notes(spec: ModelSpec) -> list[str]:
    """What the model does not offer, and why, as plain-text lines.

    Parameters
    ----------
    spec : ModelSpec
        The model from :data:`~gemimg_jupyter.models.MODELS`.

    Returns
    -------
    list of str
        For example ``"2K/4K: not available on gemini-2.5-flash-image-official
        (1K-class model)"``.
    """
    notes: list[str] = []
    missing_res = [r for r in _ALL_RESOLUTIONS if r not in spec.resolutions]
    if missing_res:
        why = (
            f"{spec.resolutions[0]}-class model"
            if len(spec.resolutions) == 1
            else f"offers {', '.join(spec.resolutions)}"
        )
        notes.append(f"{'/'.join(missing_res)}: not available on {spec.id} ({why})")
    missing_sizes = [s for s in _ALL_SIZES if s not in spec.sizes]
    if missing_sizes:
        others = sorted({m.id for m in MODELS.values() for s in missing_sizes if s in m.sizes})
        notes.append(f"sizes {'/'.join(missing_sizes)}: not available on {spec.id} (offered by {', '.join(others)})")
    if not spec.sampling:
        notes.append(f"temperature/top-p: not used by {spec.id} (it takes no sampling controls)")
    formats = "/".join(f.upper() for f in spec.ref_formats)
    notes.append(f"references: up to {spec.max_refs} on {spec.id}, {formats}, ≤ {spec.max_ref_bytes / 1e6:g} MB each")
    if spec.price_usd is None:
        notes.append(f"{spec.id} has no published price: cost estimates are unknown")
    return notes


def magic_cell(state: Mapping[str, Any]) -> str:
    """The ``%%gemimg`` cell that reproduces a panel state.

    Parameters
    ----------
    state : mapping
        What :meth:`Panel.read_state` returns.

    Returns
    -------
    str
        A first line of options (swept parameters are left to their
        ``--sweep``) and the prompt below it.
    """
    swept = {name for name, _values in state.get("axes", ())}
    parts = ["%%gemimg", "--model", str(state["model"])]
    if "size" not in swept:
        parts += ["--size", str(state["size"])]
    if "resolution" not in swept:
        parts += ["--resolution", str(state["resolution"])]
    if state.get("temperature") is not None and "temperature" not in swept:
        parts += ["--temperature", f"{float(state['temperature']):g}"]
    if state.get("top_p") is not None and "top_p" not in swept:
        parts += ["--top-p", f"{float(state['top_p']):g}"]
    if state.get("edit"):
        parts += ["--edit", str(state["edit"])]
    if "ref" not in swept:
        for path in state.get("reference_paths", ()):
            parts += ["--ref", str(path)]
    for name, values in state.get("axes", ()):
        parts += ["--sweep", f"{name}={values.strip()}"]
    if int(state.get("repeats", 1)) > 1:
        parts += ["--repeats", str(int(state["repeats"]))]
    if state.get("fresh"):
        parts.append("--fresh")
    if state.get("confirm"):
        parts.append("--yes")
    line = " ".join(parts[:1] + [shlex.quote(p) for p in parts[1:]])
    return f"{line}\n{str(state.get('prompt', '')).strip()}"


def _size_label(size: str, resolution: str) -> str:
    try:
        w, h = pixel_size(size, resolution)
    except KeyError:
        return size
    return f"{size} · {w}×{h}"


def _shape_html(size: str, resolution: str) -> str:
    """A small rectangle in the aspect ratio, with the pixel size beside it."""
    try:
        w, h = pixel_size(size, resolution)
    except KeyError:
        return ""
    scale = 40 / max(w, h)
    bw, bh = max(4, round(w * scale)), max(4, round(h * scale))
    return (
        '<div style="display:flex;align-items:center;gap:6px;height:44px">'
        f'<div title="{html.escape(size)}" style="width:{bw}px;height:{bh}px;'
        'border:1.5px solid var(--jp-brand-color1,#1976d2);background:var(--jp-layout-color2,#eee)"></div>'
        f'<span style="font-size:11px;white-space:nowrap;color:var(--jp-ui-font-color2,#666)">{w}×{h} px</span></div>'
    )


def _html(text: str, level: str = "info") -> str:
    tone = _TONES.get(level)
    if tone is None:
        return f'<div style="line-height:1.35;white-space:pre-wrap">{html.escape(text)}</div>'
    return (
        f'{THEME_CSS}<div class="gemimg-tone-{tone}" style="line-height:1.35;white-space:pre-wrap">'
        f"{html.escape(text)}</div>"
    )


def _notes_html(lines: Sequence[str]) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (
        '<ul style="margin:2px 0 0 0;padding-left:18px;font-size:11.5px;'
        f'color:var(--jp-ui-font-color2,#666);line-height:1.4">{items}</ul>'
    )


def _heading(text: str) -> W.HTML:
    return W.HTML(f'<div style="font-weight:600;margin:6px 0 2px 0">{html.escape(text)}</div>')


def _shown_path(path: str | os.PathLike[str]) -> str:
    """A path relative to the working directory when it is inside it (shorter, and portable in a cell)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _safe_name(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "reference"
    return base[-60:]


def _png_thumb(data_or_path: bytes | str | os.PathLike[str], long_side: int) -> bytes:
    return png_bytes(load_thumbnail(data_or_path, long_side))


def _params_html(params: Mapping[str, Any], extra: Sequence[tuple[str, str]] = ()) -> str:
    rows: list[tuple[str, str]] = []
    size, res = str(params.get("size", "")), str(params.get("resolution", ""))
    rows.append(("model", str(params.get("model", ""))))
    rows.append(("size", f"{_size_label(size, res)} ({res})" if size else ""))
    for key, label in (("temperature", "temperature"), ("top_p", "top-p")):
        if params.get(key) is not None:
            rows.append((label, f"{float(params[key]):g}"))
    refs = params.get("references") or []
    if refs:
        rows.append(("references", str(len(refs))))
    rows.extend(extra)
    cells = "".join(
        f'<tr><td style="padding:0 8px 0 0;color:var(--jp-ui-font-color2,#666)">{html.escape(k)}</td>'
        f"<td>{html.escape(v)}</td></tr>"
        for k, v in rows
        if v
    )
    prompt = html.escape(str(params.get("prompt", "")))
    return (
        f'<table style="font-size:12px;line-height:1.45;border-collapse:collapse">{cells}</table>'
        f'<div style="font-size:12px;line-height:1.4;margin-top:4px;white-space:pre-wrap;max-height:8em;overflow:auto">'
        f"<b>prompt</b> {prompt}</div>"
    )


def _job_state_word(job: Job) -> str:
    """The one word the bar and the detail card both use for a job's state."""
    return "cached" if job.cached else job.status.replace("_", " ")


def _cell_label(plan: SweepPlan, index: int) -> str:
    cell = plan.cells[index]
    label = " · ".join(cell.labels[a.name] for a in plan.axes) or "image"
    if plan.repeats > 1:
        label += f" #{cell.repeat + 1}"
    return label


# ------------------------------------------------------------------ one run of Generate


class _Run:
    """What one press of Generate started (plain Python, no widgets)."""

    def __init__(self, session: Session, plan: SweepPlan, state: Mapping[str, Any]) -> None:
        self.session = session
        self.plan = plan
        self.state = dict(state)
        self.kind = "single" if not plan.axes and plan.repeats == 1 else "sweep"
        self.jobs: list[Job] = []
        self.sweep: SweepResult | None = None
        self.started = time.monotonic()
        self.ended: float | None = None
        self.cancelled = False
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.settled = threading.Event()

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def finished(self) -> bool:
        return bool(self.jobs) and all(job.done() for job in self.jobs)

    def cost_usd(self) -> float:
        return sum(job.cost_usd for job in self.jobs)


# ------------------------------------------------------------------ the panel


class Panel:
    """The control panel, bound to a :class:`~gemimg_jupyter.session.Session`.

    Parameters
    ----------
    session : Session, optional
        Defaults to :func:`~gemimg_jupyter.session.get_session`, the session
        the magics use, so both see the same store, jobs and costs. If the
        given session is closed later (``%gemimg login`` and ``%gemimg
        backend`` replace the default session), the panel moves on to the
        current default session.
    prompt : str, optional
        Initial prompt text.
    defaults : mapping, optional
        Initial ``model``, ``size``, ``resolution``, ``temperature`` and
        ``top_p`` (``%gemimg panel`` passes the ``%config GemimgMagics``
        values); ``None`` values and values the model does not take are skipped.

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
        self, session: Session | None = None, *, prompt: str = "", defaults: Mapping[str, Any] | None = None
    ) -> None:
        self._session = session
        if session is None:
            get_session()  # start the default session now, so the header shows its backend
        self._widgets: list[W.Widget] = []
        self._references: list[ReferenceImage] = []
        self._reference_paths: list[str] = []
        self._run: _Run | None = None
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

    def _apply_defaults(self, defaults: Mapping[str, Any]) -> None:
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
        for name, slider in (("temperature", self.temperature), ("top_p", self.top_p)):
            value = defaults.get(name)
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if slider.min <= number <= slider.max:
                slider.value = number

    # ---- construction -----------------------------------------------------------------

    def _w(self, factory: Callable[..., Any], css: str | None = None, **kwargs: Any) -> Any:
        """Create a widget, remember it (for :meth:`close`) and give it a stable class."""
        widget = factory(**kwargs)
        if css:
            widget.add_class(css)
        self._widgets.append(widget)
        return widget

    @property
    def session(self) -> Session:
        """The session the panel runs on.

        An injected session stays; otherwise this is the current default
        session, so ``%gemimg login`` or ``%gemimg backend`` (which replace
        it) take effect in the panel too.
        """
        own = self._session
        if own is not None and not own.closed:
            return own
        return get_session()

    def _header_html(self) -> str:
        s = self.session
        badge = (
            "simulator · simulated images, not charged" if s.backend == "sim" else "ToAPIs gateway · real images, paid"
        )
        return (
            f"{PANEL_CSS}{THEME_CSS}"
            '<div style="display:flex;align-items:baseline;gap:10px;flex-wrap:wrap">'
            '<span style="font-size:15px;font-weight:600">gemimg panel</span>'
            '<span style="font-size:11.5px;padding:1px 6px;border-radius:8px;'
            f'background:var(--jp-layout-color2,#eee)">{html.escape(badge)}</span>'
            '<span style="font-size:11px;color:var(--jp-ui-font-color2,#666)">output: '
            f"{html.escape(_shown_path(s.store_root))}</span></div>"
        )

    def _discard(self, widgets: Sequence[W.Widget]) -> None:
        """Close widgets that left the panel and forget them."""
        gone = {id(w) for w in widgets}
        for widget in widgets:
            widget.close()
        self._widgets = [w for w in self._widgets if id(w) not in gone]

    def _build(self, prompt: str) -> None:
        spec = get_model(self.session.settings.model)
        self.header = self._w(W.HTML, "gemimg-header", value=self._header_html())
        # -- prompt and parameters (left column)
        self.prompt = self._w(
            W.Textarea,
            "gemimg-prompt",
            value=prompt,
            placeholder="Describe the image, e.g. A studio photo of a teapot on a marble table, soft daylight",
            rows=4,
            layout=W.Layout(width="100%", height="88px"),
        )
        self.model = self._w(
            W.Dropdown,
            "gemimg-model",
            options=[(self._model_label(m), m.id) for m in MODELS.values()],
            value=spec.id,
            description="model",
            style=_DESC,
            layout=W.Layout(**_FULL),
        )
        self.size = self._w(
            W.Dropdown,
            "gemimg-size",
            options=[],
            description="size",
            style=_DESC,
            layout=W.Layout(width="auto", flex="1 1 auto"),
        )
        self.size_shape = self._w(W.HTML, "gemimg-size-shape", layout=W.Layout(width="130px", min_width="130px"))
        self.resolution = self._w(
            W.Dropdown, "gemimg-resolution", options=[], description="resolution", style=_DESC, layout=W.Layout(**_FULL)
        )
        self.temperature = self._w(
            W.FloatSlider,
            "gemimg-temperature",
            value=0.8,
            min=0.0,
            max=2.0,
            step=0.05,
            readout_format=".2f",
            description="temperature",
            style=_DESC,
            layout=W.Layout(**_FULL),
        )
        self.top_p = self._w(
            W.FloatSlider,
            "gemimg-top-p",
            value=0.95,
            min=0.0,
            max=1.0,
            step=0.01,
            readout_format=".2f",
            description="top-p",
            style=_DESC,
            layout=W.Layout(**_FULL),
        )
        self.repeats = self._w(
            W.BoundedIntText,
            "gemimg-repeats",
            value=1,
            min=1,
            max=MAX_REPEATS,
            description="repeats",
            tooltip=f"samples per setting (1–{MAX_REPEATS}); Gemini has no seed",
            style=_DESC,
            layout=W.Layout(width="180px"),
        )
        self.model_notes = self._w(W.HTML, "gemimg-model-notes", layout=W.Layout(**_FULL))
        left = W.VBox(
            [
                _heading("Prompt"),
                self.prompt,
                _heading("Parameters"),
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
        # -- references and sweep (right column)
        self.upload = self._w(
            W.FileUpload,
            "gemimg-upload",
            accept="image/jpeg,image/png,image/webp,.jpg,.jpeg,.png,.webp",
            multiple=True,
            description="Add reference",
            layout=W.Layout(width="180px"),
        )
        self.ref_count = self._w(W.HTML, "gemimg-ref-count")
        self.ref_box = self._w(
            W.HBox, "gemimg-refs", layout=W.Layout(flex_flow="row wrap", width="100%", min_height="4px")
        )
        self.ref_message = self._w(W.HTML, "gemimg-ref-message", layout=W.Layout(**_FULL))
        axis_options = [("— none —", ""), *[(name, name) for name in AXIS_NAMES]]
        self.x_axis = self._w(
            W.Dropdown,
            "gemimg-sweep-x-axis",
            options=axis_options,
            value="",
            description="X (across)",
            style=_DESC,
            layout=W.Layout(width="260px"),
        )
        self.x_values = self._w(
            W.Text,
            "gemimg-sweep-x-values",
            placeholder="values",
            description="values",
            disabled=True,
            style=_DESC,
            layout=W.Layout(**_FULL),
        )
        self.x_error = self._w(W.HTML, "gemimg-sweep-x-error", layout=W.Layout(**_FULL))
        self.y_axis = self._w(
            W.Dropdown,
            "gemimg-sweep-y-axis",
            options=axis_options,
            value="",
            description="Y (down)",
            style=_DESC,
            disabled=True,
            layout=W.Layout(width="260px"),
        )
        self.y_values = self._w(
            W.Text,
            "gemimg-sweep-y-values",
            placeholder="values",
            description="values",
            disabled=True,
            style=_DESC,
            layout=W.Layout(**_FULL),
        )
        self.y_error = self._w(W.HTML, "gemimg-sweep-y-error", layout=W.Layout(**_FULL))
        self.plan_html = self._w(W.HTML, "gemimg-plan", layout=W.Layout(width="100%", min_height="40px"))
        self.edit_note = self._w(W.HTML, "gemimg-edit-note", layout=W.Layout(display="none"))
        self.edit_clear = self._w(
            W.Button,
            "gemimg-edit-clear",
            description="✕ stop editing",
            layout=W.Layout(width="auto", display="none"),
        )
        self.edit_clear.on_click(lambda _b: self.set_edit(None))
        right = W.VBox(
            [
                _heading("Reference images"),
                W.HBox([self.upload, self.ref_count], layout=W.Layout(align_items="center")),
                W.HBox([self.edit_note, self.edit_clear], layout=W.Layout(align_items="center")),
                self.ref_box,
                self.ref_message,
                _heading("Sweep (optional)"),
                self.x_axis,
                self.x_values,
                self.x_error,
                self.y_axis,
                self.y_values,
                self.y_error,
                _heading("Plan"),
                self.plan_html,
            ],
            layout=W.Layout(flex="1 1 360px", min_width="280px", padding="0 6px 0 0"),
        )
        # -- actions and status (fixed height)
        self.generate_button = self._w(
            W.Button,
            "gemimg-generate",
            description="Generate",
            button_style="primary",
            icon="play",
            tooltip="validate, then submit (cached images come back at once, cost $0)",
            layout=W.Layout(width="130px"),
        )
        self.cancel_button = self._w(
            W.Button,
            "gemimg-cancel",
            description="Cancel",
            icon="stop",
            disabled=True,
            tooltip="cancel what is not submitted yet (submitted images are paid and still collected)",
            layout=W.Layout(width="110px"),
        )
        self.fresh = self._w(
            W.Checkbox,
            "gemimg-fresh",
            value=False,
            description="fresh samples",
            tooltip="ask for new images even when the store already has these (--fresh)",
            indent=False,
            layout=W.Layout(width="130px", margin="0 0 0 12px"),
        )
        self.confirm = self._w(
            W.Checkbox,
            "gemimg-confirm",
            value=False,
            description=f"allow over {format_usd(CONFIRM_ABOVE_USD)}",
            indent=False,
            layout=W.Layout(width="170px", visibility="hidden"),
        )
        self.progress = self._w(
            W.IntProgress, "gemimg-progress", value=0, min=0, max=100, layout=W.Layout(width="45%", min_width="160px")
        )
        self.progress_text = self._w(
            W.Label, "gemimg-progress-text", value="idle", layout=W.Layout(flex="1 1 auto", margin="0 0 0 8px")
        )
        self.message = self._w(W.HTML, "gemimg-message", layout=W.Layout(width="100%", height="40px", overflow="auto"))
        status = W.VBox(
            [
                W.HBox(
                    [self.generate_button, self.cancel_button, self.fresh, self.confirm],
                    layout=W.Layout(flex_flow="row wrap", align_items="center"),
                ),
                W.HBox([self.progress, self.progress_text], layout=W.Layout(align_items="center", width="100%")),
                self.message,
            ],
            layout=W.Layout(width="100%", min_height="112px", margin="8px 0 0 0"),
        )
        status.add_class("gemimg-status")
        # -- results
        self.result_image = self._w(
            W.Image,
            "gemimg-result-image",
            format="png",
            layout=W.Layout(width="auto", height="auto", max_width="100%", max_height="560px", display="none"),
        )
        self.result_hint = self._w(
            W.HTML, "gemimg-result-hint", value=_html("No result yet: write a prompt and press Generate.", "info")
        )
        self.cells = self._w(
            W.GridBox, "gemimg-cells", layout=W.Layout(width="100%", grid_gap="4px", margin="4px 0 0 0")
        )
        self.detail_image = self._w(
            W.Image,
            "gemimg-detail-image",
            format="png",
            layout=W.Layout(
                width="auto", height="auto", max_width="360px", max_height="360px", display="none", margin="0 12px 0 0"
            ),
        )
        self.detail_html = self._w(W.HTML, "gemimg-detail-params", layout=W.Layout(flex="1 1 240px"))
        self.detail_edit = self._w(
            W.Button,
            "gemimg-detail-edit",
            description="Edit this image",
            icon="pencil",
            tooltip="make this image the first reference of the next run, and write what to change",
            layout=W.Layout(width="auto", display="none"),
        )
        self.detail_pick = self._w(
            W.ToggleButton,
            "gemimg-detail-pick",
            description="☆ pick",
            tooltip="keep this image as a favourite (a star in grids and the history; lasts across restarts)",
            layout=W.Layout(width="auto", display="none"),
        )
        self.detail_edit.on_click(self._on_edit_click)
        self.detail_pick.observe(self._on_pick_toggle, names="value")
        detail = W.HBox([self.detail_image, self.detail_html], layout=W.Layout(flex_flow="row wrap", width="100%"))
        detail_actions = W.HBox([self.detail_edit, self.detail_pick], layout=W.Layout(flex_flow="row wrap"))
        self.magic = self._w(
            W.Textarea,
            "gemimg-magic",
            rows=4,
            layout=W.Layout(width="100%", height="92px"),
            tooltip="the %%gemimg cell that reproduces these settings; copy it into a cell",
        )
        self.history_refresh = self._w(
            W.Button,
            "gemimg-history-refresh",
            description="",
            icon="refresh",
            tooltip="refresh the history",
            layout=W.Layout(width="36px"),
        )
        self._history_images: list[W.Image] = []
        self._history_buttons: list[W.Button] = []
        slots = []
        for i in range(HISTORY_SLOTS):
            img = self._w(
                W.Image,
                None,
                format="png",
                layout=W.Layout(width=f"{HISTORY_THUMB}px", height=f"{HISTORY_THUMB * 3 // 4}px", object_fit="contain"),
            )
            btn = self._w(
                W.Button,
                "gemimg-history-open",
                description="",
                layout=W.Layout(width=f"{HISTORY_THUMB}px", height="24px"),
            )
            btn.on_click(functools.partial(self._on_history_click, i))
            slot = self._w(
                W.VBox,
                "gemimg-history-tile",
                children=[img, btn],
                layout=W.Layout(display="none", margin="0 6px 6px 0", align_items="center"),
            )
            self._history_images.append(img)
            self._history_buttons.append(btn)
            slots.append(slot)
        self.history_box = self._w(
            W.HBox, "gemimg-history", children=slots, layout=W.Layout(flex_flow="row wrap", width="100%")
        )
        self.history_hint = self._w(W.HTML, "gemimg-history-hint")
        self.session_cost = self._w(W.HTML, "gemimg-session-cost")

        self.widget = W.VBox(
            [
                self.header,
                W.HBox([left, right], layout=W.Layout(flex_flow="row wrap", width="100%")),
                status,
                _heading("Result"),
                self.result_hint,
                self.result_image,
                self.cells,
                detail,
                detail_actions,
                _heading("Reproduce as a cell"),
                self.magic,
                W.HBox([_heading("History"), self.history_refresh], layout=W.Layout(align_items="center")),
                self.history_hint,
                self.history_box,
                self.session_cost,
            ],
            layout=W.Layout(
                width="100%", max_width="960px", padding="8px", border="1px solid var(--jp-border-color2, #ddd)"
            ),
        )
        self.widget.add_class("gemimg-panel")

        # -- wiring (observers run in the main thread)
        self.model.observe(self._on_model_change, names="value")
        for control in (self.prompt, self.size, self.temperature, self.top_p, self.repeats, self.fresh, self.confirm):
            control.observe(self._on_change, names="value")
        self.resolution.observe(self._on_resolution_change, names="value")
        for control in (self.x_axis, self.y_axis):
            control.observe(self._on_axis_change, names="value")
        for control in (self.x_values, self.y_values):
            control.observe(self._on_change, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.generate_button.on_click(self._on_generate)
        self.cancel_button.on_click(self._on_cancel)
        self.history_refresh.on_click(lambda _b: self._refresh_history())

    @staticmethod
    def _model_label(spec: ModelSpec) -> str:
        price = f"{format_usd(spec.price_usd, places=3)}/image" if spec.price_usd is not None else "price n/a"
        return f"{spec.id} · {price}"

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

    def parse_axes(self, state: Mapping[str, Any]) -> tuple[list[Axis], dict[str, str]]:
        """Parse the sweep axes with the core's :func:`~gemimg_jupyter.plan.parse_axis`.

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
                errors[which] = str(exc)
        return axes, errors

    def plan(self, state: Mapping[str, Any] | None = None) -> SweepPlan:
        """The validated plan for the current settings (raises the core's errors).

        Parameters
        ----------
        state : mapping, optional
            Defaults to :meth:`read_state`.
        """
        state = state or self.read_state()
        axes: list[Axis] = [parse_axis(f"{n}={v}", resolve_ref=load_reference) for n, v in state["axes"]]
        return self.session.plan(
            state["prompt"],
            axes=axes,
            repeats=state["repeats"],
            model=state["model"],
            size=state["size"],
            resolution=state["resolution"],
            temperature=state["temperature"],
            top_p=state["top_p"],
            reference_images=list(state["references"]),
            edit=self._edit_row,
        )

    def magic_text(self) -> str:
        """The ``%%gemimg`` cell that reproduces the current settings."""
        return magic_cell(self.read_state())

    # ---- observers (main thread) ----------------------------------------------------------

    def _on_model_change(self, _change: Any = None) -> None:
        spec = get_model(self.model.value)
        self._updating = True
        try:
            old_res = self.resolution.value
            new_res = old_res if old_res in spec.resolutions else spec.default_resolution
            self.resolution.options = list(spec.resolutions)
            self.resolution.value = new_res
            self._set_size_options(spec, new_res)
            self._update_enabled()
        finally:
            self._updating = False
        notes = model_notes(spec)
        self.model_notes.value = _notes_html(notes)
        self._update_refs_ui()
        self._on_change()

    def _set_size_options(self, spec: ModelSpec, resolution: str) -> None:
        old = self.size.value
        value = old if old in spec.sizes else ("1:1" if "1:1" in spec.sizes else spec.sizes[0])
        self.size.options = [(_size_label(s, resolution), s) for s in spec.sizes]
        self.size.value = value
        if old and old != value:
            self.message.value = _html(f"size {old} is not available on {spec.id}; switched to {value}", "warn")

    def _on_resolution_change(self, _change: Any = None) -> None:
        if self._updating:
            return
        self._updating = True
        try:
            self._set_size_options(get_model(self.model.value), self.resolution.value)
        finally:
            self._updating = False
        self._on_change()

    def _on_axis_change(self, _change: Any = None) -> None:
        x, y = self.x_axis.value, self.y_axis.value
        self.x_values.disabled = not x
        self.x_values.placeholder = _AXIS_HINTS.get(x, "values") if x else "pick a parameter first"
        self.y_axis.disabled = not x
        self.y_values.disabled = not (x and y)
        self.y_values.placeholder = _AXIS_HINTS.get(y, "values") if (x and y) else "pick a parameter first"
        self._update_enabled()
        self._on_change()

    def _update_enabled(self) -> None:
        """Grey out what the model does not take and what a sweep axis overrides."""
        x, y = self.x_axis.value, self.y_axis.value
        swept = {x, y if x else ""}
        spec = get_model(self.model.value)
        self.size.disabled = "size" in swept
        self.resolution.disabled = "resolution" in swept or len(spec.resolutions) == 1
        self.temperature.disabled = not spec.sampling or "temperature" in swept
        self.top_p.disabled = not spec.sampling or "top_p" in swept

    def _on_change(self, _change: Any = None) -> None:
        """Any control changed: refresh the shape preview, plan line and magic text."""
        if self._updating or self._closed:
            return
        state = self.read_state()
        self.size_shape.value = _shape_html(state["size"], state["resolution"])
        self.magic.value = magic_cell(state)
        self._update_plan(state)

    def _update_plan(self, state: Mapping[str, Any]) -> None:
        """The live plan line: requests, cached, estimated cost, or the core's error."""
        _axes, errors = self.parse_axes(state)
        self.x_error.value = _html(errors["x"], "error") if "x" in errors else ""
        self.y_error.value = _html(errors["y"], "error") if "y" in errors else ""
        needs_confirm = False
        if errors:
            self.plan_html.value = _html("Fix the sweep values above to see the plan.", "warn")
        elif any(not values.strip() for _name, values in state["axes"]):
            self.plan_html.value = _html("Enter the sweep values (see the hint in the box).", "info")
        elif not state["prompt"].strip():
            self.plan_html.value = _html("Write a prompt to see the plan and its cost.", "info")
        else:
            try:
                plan = self.plan(state)
                quote = self.session.quote(plan, fresh=state["fresh"], confirm_above_usd=CONFIRM_ABOVE_USD)
                needs_confirm = quote.needs_confirmation
                extra = f"\nover {format_usd(CONFIRM_ABOVE_USD)}: tick “allow” to run it" if needs_confirm else ""
                self.plan_html.value = _html(quote.summary + extra, "warn" if needs_confirm else "ok")
            except GemimgError as exc:
                self.plan_html.value = _html(str(exc), "error")
        self.confirm.layout.visibility = "visible" if needs_confirm or self.confirm.value else "hidden"

    # ---- references -------------------------------------------------------------------------

    def _on_upload(self, change: Any) -> None:
        files = change["new"] if isinstance(change, Mapping) else change.new
        if not files:
            return
        messages: list[tuple[str, str]] = []
        spec = get_model(self.model.value)
        for item in files:
            name = str(item.get("name") or "upload")
            content = item.get("content", b"")
            data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
            try:
                ref = load_reference(data, name=name)
                validate_references(spec, [*self._references, ref])
            except GemimgError as exc:
                messages.append((str(exc) if name in str(exc) else f"{name}: {exc}", "error"))
                continue
            if any(r.sha256 == ref.sha256 for r in self._references):
                messages.append((f"{name} is already attached", "warn"))
                continue
            self._references.append(ref)
            self._reference_paths.append(self._save_reference(ref))
            messages.append((f"added {name} ({ref.size_bytes / 1024:.0f} KB, {ref.format})", "ok"))
        self.ref_message.value = "".join(_html(text, level) for text, level in messages)
        self._updating = True
        try:
            self.upload.value = ()  # let the same file be chosen again; the panel keeps its own copy
        finally:
            self._updating = False
        self._update_refs_ui()
        self._on_change()

    def _save_reference(self, ref: ReferenceImage) -> str:
        """Keep the bytes under ``<output>/references`` so the ``%%gemimg`` cell can name a path."""
        assert ref.data is not None
        fname = f"{ref.sha256[:10]}-{_safe_name(ref.name)}"
        try:
            path = self.session.remember_reference(ref.data, fname)
        except (OSError, ValueError):
            return ref.name
        return _shown_path(path)

    def _remove_reference(self, index: int, _button: Any = None) -> None:
        if 0 <= index < len(self._references):
            ref = self._references.pop(index)
            self._reference_paths.pop(index)
            self.ref_message.value = _html(f"removed {ref.name}", "info")
        self._update_refs_ui()
        self._on_change()

    def _update_refs_ui(self) -> None:
        spec = get_model(self.model.value)
        n, limit = len(self._references), spec.max_refs
        text = f"{n}/{limit} attached"
        level = "info"
        if n >= limit:
            text += f" · the most {spec.id} accepts"
        if n > limit:
            text = f"{n} attached; {spec.id} accepts at most {limit}: remove {n - limit}"
            level = "error"
        self.ref_count.value = _html(text, level)
        self.upload.disabled = n >= limit
        tiles = []
        old = list(self.ref_box.children)
        for i, ref in enumerate(self._references):
            assert ref.data is not None
            try:
                thumb = _png_thumb(ref.data, REF_THUMB)
            except (OSError, ValueError):
                thumb = b""
            img = self._w(
                W.Image, None, value=thumb, format="png", layout=W.Layout(width=f"{REF_THUMB}px", height="auto")
            )
            caption = self._w(
                W.HTML,
                None,
                value=f'<div style="font-size:11px;max-width:{REF_THUMB + 20}px;overflow:hidden;'
                f'text-overflow:ellipsis;white-space:nowrap" title="{html.escape(ref.name)}">{html.escape(ref.name)}</div>',
            )
            remove = self._w(
                W.Button,
                "gemimg-ref-remove",
                description="✕ remove",
                tooltip=f"remove {ref.name}",
                layout=W.Layout(width=f"{REF_THUMB + 20}px", height="24px"),
            )
            remove.on_click(functools.partial(self._remove_reference, i))
            tile = self._w(
                W.VBox,
                "gemimg-ref-tile",
                children=[img, caption, remove],
                layout=W.Layout(margin="0 8px 4px 0", align_items="center"),
            )
            tiles.append(tile)
        self.ref_box.children = tiles
        self._discard([child for widget in old for child in widget.children] + old)

    # ---- generate and cancel ----------------------------------------------------------------

    def _say(self, text: str, level: str = "info") -> None:
        self.message.value = _html(text, level)

    def _busy(self) -> bool:
        run = self._run
        return run is not None and not run.settled.is_set()

    @property
    def busy(self) -> bool:
        """True while the last Generate is still running (Generate is refused meanwhile)."""
        return self._busy()

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
        run = self._run
        return True if run is None else run.settled.wait(timeout)

    def _on_generate(self, _button: Any = None) -> None:
        if self._busy():
            self._say("A run is still in progress: wait for it to finish or press Cancel.", "warn")
            return
        self.header.value = self._header_html()
        state = self.read_state()
        try:
            plan = self.plan(state)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
            return
        session = self.session
        run = _Run(session, plan, state)
        self._run = run
        self._selected = 0 if run.kind == "single" else None
        self._prepare_results(run)
        self.generate_button.disabled = True
        self.cancel_button.disabled = False
        self._say(f"Submitting: {plan.summary()}", "info")
        listener = functools.partial(self._on_job, run)
        try:
            if run.kind == "single":
                parent = session.edit_source(self._edit_row)[1] if self._edit_row is not None else None
                job = session.submit(plan.cells[0].params, fresh=state["fresh"], listeners=[listener], parent=parent)
                with run.lock:
                    run.jobs = [job]
            else:
                result = session.sweep(
                    state["prompt"],
                    plan=plan,
                    wait=False,
                    fresh=state["fresh"],
                    yes=state["confirm"],
                    confirm_above_usd=CONFIRM_ABOVE_USD,
                    cell_size=GRID_CELL,
                    listeners=[listener],
                    edit=self._edit_row,
                )
                with run.lock:
                    run.sweep = result
                    run.jobs = list(result.jobs)
        except GemimgError as exc:
            self._run = None
            self.generate_button.disabled = False
            self.cancel_button.disabled = True
            self.progress_text.value = "idle"
            self._say(error_line(exc), "error")
            return
        self._say(f"Running: {plan.summary()}", "info")  # submitted; the bar and the card follow the jobs
        self._refresh(run, heavy=True)
        if run.ended is None:
            threading.Thread(target=self._tick, args=(run,), name="gemimg-panel-tick", daemon=True).start()

    def _on_cancel(self, _button: Any = None) -> None:
        run = self._run
        if run is None or run.ended is not None:
            self._say("Nothing is running.", "info")
            return
        run.cancelled = True
        stopped = run.session.cancel_jobs([job for job in run.jobs if not job.done()])
        paid = sum(1 for job in run.jobs if not job.done() and job.task_id is not None)
        text = f"Cancelled {plural(stopped, 'request')} that were not sent yet."
        if paid:
            text += f" {paid} already submitted (paid) will still be downloaded."
        self._say(text, "warn")
        self._refresh(run, heavy=False)

    # ---- progress (worker threads: trait sets only) -----------------------------------------

    def _on_job(self, run: _Run, job: Job) -> None:
        if run is not self._run or self._closed:
            return
        with run.lock:
            known = any(j is job for j in run.jobs)
        if known:
            self._refresh(run, heavy=job.done())

    def _tick(self, run: _Run) -> None:
        while not run.stop.wait(TICK_SECONDS):
            if self._closed or run is not self._run or run.ended is not None:
                return
            self._refresh(run, heavy=False)

    def _prepare_results(self, run: _Run) -> None:
        """Main thread: build one button per request (their traits change later from threads)."""
        plan = run.plan
        old = self._cell_buttons
        buttons = []
        for i in range(plan.n_requests):
            btn = self._w(
                W.Button,
                "gemimg-cell",
                description=f"{_cell_label(plan, i)} · queued",
                tooltip="click to see this image and its parameters",
                layout=W.Layout(width="auto", height="28px", overflow="hidden"),
            )
            btn.on_click(functools.partial(self._on_cell_click, run, i))
            buttons.append(btn)
        self._cell_buttons = buttons
        if run.kind == "single":
            self.cells.layout.grid_template_columns = "minmax(0, 260px)"
        else:
            nx = plan.shape[0] if plan.axes else min(plan.n_requests, 4)
            self.cells.layout.grid_template_columns = f"repeat({nx}, minmax(0, 1fr))"
        self.cells.children = buttons
        self._discard(old)
        self.result_image.layout.display = "none"
        self.result_hint.value = _html("Working… the result appears here as it arrives.", "info")
        self.detail_image.layout.display = "none"
        self.detail_html.value = (
            _html("Click a cell button above to see the full image and its parameters.", "info")
            if run.kind == "sweep"
            else ""
        )
        self.progress.value = 0
        self.progress.bar_style = ""

    def _refresh(self, run: _Run, *, heavy: bool) -> None:
        """Bring the progress, cell buttons and (``heavy``) the images up to date."""
        with self._render_lock:
            if run is not self._run or self._closed:
                return
            with run.lock:
                jobs = list(run.jobs)
            if not jobs:
                return
            for btn, job, i in zip(self._cell_buttons, jobs, range(len(jobs)), strict=False):
                btn.description = f"{_cell_label(run.plan, i)} · {_cell_mark(job)}"
                btn.button_style = _cell_style(job.state)
                btn.tooltip = job.error or f"{job.status}; click to see this image and its parameters"
            total = sum(100 if job.done() else job.progress for job in jobs)
            self.progress.value = int(total / len(jobs))
            finished = all(job.done() for job in jobs)
            if finished and run.ended is None:
                run.ended = time.monotonic()
            self.progress_text.value = self._progress_line(run, jobs)
            if heavy or finished:
                self._render_images(run, jobs)
            elif self._selected is not None and self._selected < len(jobs):
                self._show_job(run, self._selected, image=False)  # the card moves with the bar
            if finished and not run.stop.is_set():
                run.stop.set()
                try:
                    self._finish(run, jobs)
                finally:
                    run.settled.set()

    def _progress_line(self, run: _Run, jobs: Sequence[Job]) -> str:
        if run.sweep is not None:
            return f"{run.sweep.progress_text()} · {run.elapsed:.1f} s"
        job = jobs[0]
        pct = "" if job.done() else f" {job.progress}%"
        return f"{_job_state_word(job)}{pct} · {job.elapsed:.1f} s · {format_usd(job.cost_usd)}"

    def _render_images(self, run: _Run, jobs: Sequence[Job]) -> None:
        if run.kind == "single":
            job = jobs[0]
            if job.state.has_image:
                try:
                    self.result_image.value = job.preview_png()
                    self.result_image.layout.display = None
                    self.result_hint.value = ""
                except (OSError, ValueError, GemimgError) as exc:
                    self.result_hint.value = _html(f"the image could not be read: {exc}", "error")
            elif job.done():
                self.result_hint.value = _html(f"No image: {job.error or job.status}", "error")
        elif run.sweep is not None:
            try:
                self.result_image.value = png_bytes(run.sweep.grid())
                self.result_image.layout.display = None
                self.result_hint.value = ""
            except (OSError, ValueError, GemimgError) as exc:
                self.result_hint.value = _html(f"the grid could not be drawn: {exc}", "error")
        if self._selected is not None and self._selected < len(jobs):
            self._show_job(run, self._selected)

    def _finish(self, run: _Run, jobs: Sequence[Job]) -> None:
        ok = sum(1 for j in jobs if j.state.has_image)
        cached = sum(1 for j in jobs if j.cached)
        failed = [j for j in jobs if j.state.shown_as_failed]
        cancelled = sum(1 for j in jobs if j.state is JobState.CANCELLED)
        cost = format_usd(run.cost_usd())
        if run.sweep is not None:
            run.sweep.wait(timeout=10)  # the core saves the grid PNG in the last job's thread
        if failed:
            first = failed[0].error or failed[0].status
            text = f"{len(failed)} of {len(jobs)} failed: {first}"
            if ok:
                text += f" ({ok} succeeded)"
            self._say(text, "error")
            self.progress.bar_style = "danger"
        elif cancelled:
            self._say(
                f"Cancelled: {cancelled} not sent, {plural(ok, 'image')} kept, {cost}, {run.elapsed:.1f} s.", "warn"
            )
            self.progress.bar_style = "warning"
        else:
            extra = f", {cached} from the cache" if cached else ""
            where = ""
            if run.sweep is not None and run.sweep.paths:
                where = f"; grid saved to {_shown_path(run.sweep.paths[0])}"
            self._say(f"Done: {plural(ok, 'image')} in {run.elapsed:.1f} s, {cost}{extra}{where}.", "ok")
            self.progress.bar_style = "success"
        self.generate_button.disabled = False
        self.cancel_button.disabled = True
        self._refresh_history()
        if not self._closed:
            self._update_plan(self.read_state())  # what is cached has changed

    # ---- detail and history -------------------------------------------------------------------

    def _on_cell_click(self, run: _Run, index: int, _button: Any = None) -> None:
        if run is not self._run:
            return
        self._selected = index
        self._show_job(run, index)

    def _show_job(self, run: _Run, index: int, *, image: bool = True) -> None:
        with run.lock:
            if index >= len(run.jobs):
                return
            job = run.jobs[index]
        extra: list[tuple[str, str]] = [("state", _job_state_word(job))]
        if run.plan.repeats > 1:
            extra.append(("repeat", str(job.repeat + 1)))
        extra += [("cost", format_usd(job.cost_usd)), ("time", f"{job.elapsed:.1f} s")]
        if job.task_id:
            extra.append(("task", job.task_id))
        if job.path:
            extra.append(("file", _shown_path(job.path)))
        if job.error:
            extra.append(("error", job.error))
        self.detail_html.value = f"<div><b>{html.escape(_cell_label(run.plan, index))}</b></div>" + _params_html(
            job.params.describe(), extra
        )
        self._set_detail_row(job)
        if not image:
            return
        if job.state.has_image and run.kind == "sweep":
            try:
                self.detail_image.value = job.preview_png(DETAIL_LONG_SIDE)
                self.detail_image.layout.display = None
            except (OSError, ValueError, GemimgError):
                self.detail_image.layout.display = "none"
        else:
            self.detail_image.layout.display = "none"

    def _refresh_history(self) -> None:
        try:
            rows = self.session.history(HISTORY_SLOTS)
        except Exception as exc:  # noqa: BLE001 - a broken ledger must not break the panel
            self.history_hint.value = _html(f"history unavailable: {exc}", "warn")
            return
        self._history_rows = rows
        try:
            children, picked = self.session.children_count(), self.session.pickbook.cbids()
        except Exception:  # noqa: BLE001 - marks are extras; the history shows without them
            children, picked = {}, set()
        for i in range(HISTORY_SLOTS):
            slot_box = self._history_buttons[i]
            image = self._history_images[i]
            parent_layout = self.history_box.children[i].layout
            if i >= len(rows) or not rows[i].path:
                parent_layout.display = "none"
                continue
            row = rows[i]
            path = str(row.path)
            thumb = self._thumbs.get(path)
            if thumb is None:
                try:
                    thumb = _png_thumb(path, HISTORY_THUMB)
                except (OSError, ValueError):
                    parent_layout.display = "none"
                    continue
                self._thumbs[path] = thumb
            image.value = thumb
            p = row.params
            caption = str(p.get("size", ""))
            if p.get("temperature") is not None:
                caption += f" · t{float(p['temperature']):g}"
            edits = children.get(row.cbid, 0)
            if edits:  # marks go first: the caption is cut at the tile's width
                caption = f"✎{edits} {caption}"
            if row.cbid in picked:
                caption = "★ " + caption
            slot_box.description = caption
            slot_box.tooltip = str(p.get("prompt", ""))[:200] + (
                f" ({plural(edits, 'edit')} made from it)" if edits else ""
            )
            parent_layout.display = None
        self.history_hint.value = "" if rows else _html("No images yet: they appear here once generated.", "info")
        cost = self.session.cost()
        self.session_cost.value = (
            '<div style="font-size:11.5px;color:var(--jp-ui-font-color2,#666);margin-top:4px">'
            f"session: {'simulated ' if cost.get('backend') == 'sim' else ''}"
            f"{html.escape(format_usd(cost['spent_usd']))} spent"
            f"{', not charged' if cost.get('backend') == 'sim' else ''} · {cost['requests']} request(s) · "
            f"{cost['cache_hits']} cache hit(s), {html.escape(format_usd(cost['saved_usd']))} saved</div>"
        )

    # ---- edit this image, pick it (docs/editing.md) -----------------------------------------

    def _set_detail_row(self, target: Job | LedgerRow | None) -> None:
        """Show "Edit this image" and the pick toggle for a finished image, hide them otherwise."""
        row: LedgerRow | None = None
        if isinstance(target, LedgerRow):
            row = target
        elif target is not None and target.state.has_image:
            with contextlib.suppress(GemimgError):
                row = self.session.find(target)
        self._detail_row = row
        shown = None if row is not None and row.state == "done" else "none"
        self.detail_edit.layout.display = shown
        self.detail_pick.layout.display = shown
        picked = row is not None and self.session.is_picked(row)
        self._updating = True
        try:
            self.detail_pick.value = picked
            self.detail_pick.description = "★ picked" if picked else "☆ pick"
        finally:
            self._updating = False

    def set_edit(self, target: Job | LedgerRow | None) -> None:
        """Edit ``target`` in the next run (its image goes first among the references); ``None`` stops editing."""
        if target is None:
            self._edit_row = None
            self.edit_note.layout.display = self.edit_clear.layout.display = "none"
        else:
            row = target if isinstance(target, LedgerRow) else self.session.find(target)
            self.session.edit_source(row)  # refuses an image that cannot be edited, before anything changes
            self._edit_row = row
            where = html.escape(_shown_path(str(row.path)) if row.path else row.cbid, quote=True)
            self.edit_note.value = (
                f'<div title="{where}">'
                + _html(f"Editing {row.cbid[-6:]}: it goes first among the references", "info")
                + "</div>"
            )
            self.edit_note.layout.display = self.edit_clear.layout.display = None
        self._on_change()

    def _on_edit_click(self, _button: Any = None) -> None:
        if self._detail_row is None:
            return
        try:
            self.set_edit(self._detail_row)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
            return
        self.prompt.value = ""
        self.prompt.placeholder = "what to change, e.g. make the background a night sky"
        self.prompt.focus()

    def _on_pick_toggle(self, change: Any) -> None:
        if self._updating or self._detail_row is None:
            return
        row = self._detail_row
        try:
            if change["new"]:
                self.session.pick(row)
            else:
                self.session.unpick(row)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
        self._set_detail_row(row)
        self._refresh_history()
        run = self._run
        if run is not None and run.sweep is not None:
            self._refresh(run, heavy=True)  # the grid shows the star

    def _on_history_click(self, index: int, _button: Any = None) -> None:
        if index >= len(self._history_rows):
            return
        row = self._history_rows[index]
        extra = [("state", row.state), ("file", _shown_path(str(row.path)))]
        if row.task_id:
            extra.append(("task", row.task_id))
        self.detail_html.value = "<div><b>from the history</b></div>" + _params_html(row.params, extra)
        self._set_detail_row(row)
        try:
            self.detail_image.value = _png_thumb(str(row.path), DETAIL_LONG_SIDE)
            self.detail_image.layout.display = None
        except (OSError, ValueError):
            self.detail_image.layout.display = "none"
