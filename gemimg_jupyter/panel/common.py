"""The panel's constants and pure helpers (no widget state): notes, the reproducing cell, HTML lines, one run."""

from __future__ import annotations

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

from gemimg_jupyter.api import (
    CONTROL_PARAMS,
    MODELS,
    PIXELS_1K,
    GemimgError,
    Job,
    JobState,
    ModelSpec,
    ParamSpec,
    Result,
    Session,
    SweepPlan,
    SweepResult,
    count_jobs,
    format_usd,
    load_thumbnail,
    pixel_size,
    png_bytes,
)
from gemimg_jupyter.display import THEME_CSS, error_line
from gemimg_jupyter.display.renderers import display_path

HISTORY_SLOTS = 12
HISTORY_THUMB = 96
REF_THUMB = 72
DETAIL_LONG_SIDE = 768
GRID_CELL = 320
TICK_SECONDS = 0.5
#: While a sweep runs, its grid is drawn again (tiles showing their progress) at most once per this many seconds.
GRID_REDRAW_SECONDS = 1.0
DESC = {"description_width": "92px"}
FULL = {"width": "100%"}
ALL_RESOLUTIONS: tuple[str, ...] = tuple(
    sorted({r for spec in MODELS.values() for r in spec.resolutions}, key=lambda r: float(r.rstrip("K")))
)
ALL_SIZES: tuple[str, ...] = tuple(s for s in PIXELS_1K if any(s in spec.sizes for spec in MODELS.values()))
AXIS_HINTS: dict[str, str] = {
    "temperature": "0.2,0.8,1.4  or  0.2-1.4 [4]",
    "top_p": "0.8,0.9,1.0",
    "size": "1:1,16:9",
    "resolution": "1K,2K",
    "model": "gemini-2.5-flash-image-official,gemini-3.1-flash-image-preview",
    "prompt": "fox|cat|owl  (the first must be in the prompt)",
    "ref": "none|a.png|a.png+b.png",
}
#: The states whose cell button names the state while it has no progress to show yet.
EARLY_STATES = (JobState.QUEUED, JobState.UPLOADING, JobState.SUBMITTING)


def cell_mark(job: Job) -> str:
    """A cell button's mark, from :class:`JobState`'s classifications: ``✓``, ``✗ failed``, ``⊘ blocked``, ``45%``."""
    state = job.state
    if state.has_image:
        return "✓ cached" if state is JobState.CACHED else "✓"
    if state.is_terminal:
        return f"{'⊘' if state.icon == '⊘' else '✗'} {state.value}"
    return state.value if state in EARLY_STATES else f"{job.progress}%"


def cell_style(state: JobState) -> str:
    """A cell button's style: green with an image, red for a failure, amber when cancelled."""
    if state.has_image:
        return "success"
    if state.shown_as_failed:
        return "danger"
    if state.is_terminal:
        return "warning"
    return "" if state is JobState.QUEUED else "info"


#: Message levels as the display layer's theme-aware tones (4.5:1 in light and dark); "info" is the theme's text colour.
TONES = frozenset({"ok", "warn", "error"})
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
    # nothing cut: the detail image fits a narrow column, labels and captions wrap, "stop editing" keeps its width
    ".gemimg-panel img.gemimg-detail-image{max-width:min(360px,calc(100% - 12px))!important}"
    ".gemimg-panel .gemimg-progress-text{white-space:normal;height:auto;min-width:0;line-height:1.3}"
    ".gemimg-panel .gemimg-history-open{white-space:normal;height:auto;min-height:24px;line-height:1.25;"
    "overflow-wrap:anywhere;padding:2px 4px}"
    ".gemimg-panel .gemimg-edit-clear{flex:0 0 auto;min-width:max-content}"
    ".gemimg-panel .widget-hbox:has(> .gemimg-edit-clear){flex-wrap:wrap}"
    # cell buttons: white text at ≥ 4.5:1 on every state colour (ipywidgets' green is 4.12:1, blue 3.86:1)
    ".gemimg-panel .gemimg-cell.mod-success{background-color:#2e7d32;color:#fff}"
    ".gemimg-panel .gemimg-cell.mod-info{background-color:#0277bd;color:#fff}"
    ".gemimg-panel .gemimg-cell.mod-warning{background-color:#b45309;color:#fff}"
    ".gemimg-panel .gemimg-cell.mod-danger{background-color:#b71c1c;color:#fff}"
    # the Advanced section's title: the theme's main text colour (the accordion's default is 4.2–4.4:1)
    ".gemimg-panel .gemimg-advanced .jupyter-widget-Collapse-header,"
    ".gemimg-panel .gemimg-advanced .jupyter-widget-Collapse-header span,"
    ".gemimg-panel .gemimg-advanced .lm-Collapse-header,.gemimg-panel .gemimg-advanced .p-Collapse-header"
    "{color:var(--jp-ui-font-color1)}"
    "</style>"
)


# ------------------------------------------------------------------ pure helpers


def model_notes(spec: ModelSpec) -> list[str]:
    """What the model does not offer, and why, as plain-text lines.

    Parameters
    ----------
    spec : ModelSpec
        The model from :data:`~gemimg_jupyter.domain.models.MODELS`.

    Returns
    -------
    list of str
        For example ``"2K/4K: not available on gemini-2.5-flash-image-official
        (1K-class model)"``.
    """
    notes: list[str] = []
    missing_res = [r for r in ALL_RESOLUTIONS if r not in spec.resolutions]
    if missing_res:
        why = (
            f"{spec.resolutions[0]}-class model"
            if len(spec.resolutions) == 1
            else f"offers {', '.join(spec.resolutions)}"
        )
        notes.append(f"{'/'.join(missing_res)}: not available on {spec.id} ({why})")
    missing_sizes = [s for s in ALL_SIZES if s not in spec.sizes]
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
    for control in CONTROL_PARAMS:
        if state.get(control.name) is not None and control.axis not in swept:
            parts += control_option(control, state[control.name])
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


def control_option(control: ParamSpec, value: object) -> list[str]:
    """A control's ``%%gemimg`` option for ``value``: ``["--thinking", "high"]``, ``["--search"]``, one
    ``--safety`` per setting; spelt canonically when the value checks, as given when it does not."""
    assert control.option is not None, f"control {control.name} has an option"
    try:
        checked = control.check_control(value)
    except GemimgError:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [part for item in items for part in (control.option, str(item))]
    if control.kind == "flag":
        return [control.option] if checked else []
    if control.kind == "pairs":
        return [part for item in control.value_label(checked).split(",") for part in (control.option, item)]
    return [control.option, str(checked)]


def size_label(size: str, resolution: str) -> str:
    try:
        w, h = pixel_size(size, resolution)
    except KeyError:
        return size
    return f"{size} · {w}×{h}"


def shape_html(size: str, resolution: str) -> str:
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


def message_html(text: str, level: str = "info") -> str:
    if level not in TONES:
        return f'<div style="line-height:1.35;white-space:pre-wrap">{html.escape(text)}</div>'
    return (
        f'{THEME_CSS}<div class="gemimg-tone-{level}" style="line-height:1.35;white-space:pre-wrap">'
        f"{html.escape(text)}</div>"
    )


def header_html(session: Session) -> str:
    """The panel's header: its name, the backend badge (simulated or paid) and the output folder."""
    badge = (
        "simulator · simulated images, not charged"
        if session.backend == "sim"
        else "ToAPIs gateway · real images, paid"
    )
    return (
        f"{PANEL_CSS}{THEME_CSS}"
        '<div style="display:flex;align-items:baseline;gap:10px;flex-wrap:wrap">'
        '<span style="font-size:15px;font-weight:600">gemimg panel</span>'
        '<span style="font-size:11.5px;padding:1px 6px;border-radius:8px;'
        f'background:var(--jp-layout-color2,#eee)">{html.escape(badge)}</span>'
        '<span style="font-size:11px;color:var(--jp-ui-font-color2,#666)">output: '
        f"{html.escape(shown_path(session.store_root))}</span></div>"
    )


def model_label(spec: ModelSpec) -> str:
    """A model as the model dropdown lists it: its id and its price per image."""
    price = f"{format_usd(spec.price_usd, places=3)}/image" if spec.price_usd is not None else "price n/a"
    return f"{spec.id} · {price}"


def notes_html(lines: Sequence[str]) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (
        '<ul style="margin:2px 0 0 0;padding-left:18px;font-size:11.5px;'
        f'color:var(--jp-ui-font-color2,#666);line-height:1.4">{items}</ul>'
    )


#: How a section makes a widget: :meth:`.state.Widgets.make` ``(factory, css_class, **kwargs)``, kept for ``close``.
Make = Callable[..., Any]


def button(
    make: Make,
    css: str | None,
    label: str = "",
    tip: str | None = None,
    *,
    icon: str = "",
    toggle: bool = False,
    hidden: bool = False,
    width: str = "auto",
    height: str | None = None,
    **kwargs: Any,
) -> Any:
    """A panel button (a :class:`~ipywidgets.ToggleButton` with ``toggle``): label, tooltip, icon and CSS size.

    ``hidden`` ones start with ``display: none`` until their section shows them; ``kwargs`` go to the
    widget (``disabled``, ``button_style``).
    """
    layout = {"width": width, **({"height": height} if height else {}), **({"display": "none"} if hidden else {})}
    if tip is not None:
        kwargs["tooltip"] = tip
    factory = W.ToggleButton if toggle else W.Button
    return make(factory, css, description=label, icon=icon, layout=W.Layout(**layout), **kwargs)


def image(
    make: Make,
    css: str | None,
    value: bytes = b"",
    *,
    width: str = "auto",
    height: str = "auto",
    hidden: bool = False,
    **layout: str,
) -> Any:
    """A PNG image widget, sized by CSS keywords (``max_width``, ``object_fit`` …); ``hidden`` as for :func:`button`."""
    if hidden:
        layout["display"] = "none"
    return make(W.Image, css, value=value, format="png", layout=W.Layout(width=width, height=height, **layout))


def heading(text: str) -> W.HTML:
    return W.HTML(f'<div style="font-weight:600;margin:6px 0 2px 0">{html.escape(text)}</div>')


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path relative to the working directory when it is inside it (shorter, and portable in a cell)."""
    return display_path(path) or str(path)


def safe_name(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "reference"
    return base[-60:]


def png_thumb(data_or_path: bytes | str | os.PathLike[str], long_side: int) -> bytes:
    return png_bytes(load_thumbnail(data_or_path, long_side))


def params_html(params: Mapping[str, Any], extra: Sequence[tuple[str, str]] = ()) -> str:
    rows: list[tuple[str, str]] = []
    size, res = str(params.get("size", "")), str(params.get("resolution", ""))
    rows.append(("model", str(params.get("model", ""))))
    rows.append(("size", f"{size_label(size, res)} ({res})" if size else ""))
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


def shown_error(exc: BaseException) -> str:
    """An error as the panel shows it: a core error as ``%%gemimg`` does (its hint in magic words), others as their text."""
    return error_line(exc) if isinstance(exc, GemimgError) else str(exc)


def allow_label(confirm_above_usd: float | None) -> str:
    """The "allow" box's label: the threshold above which a run needs it ticked."""
    return "allow" if confirm_above_usd is None else f"allow over {format_usd(confirm_above_usd)}"


def job_state_word(job: Job) -> str:
    """The one word the bar and the detail card both use for a job's state."""
    return "cached" if job.cached else job.state.value.replace("_", " ")


def cell_label(plan: SweepPlan, index: int) -> str:
    cell = plan.cells[index]
    label = " · ".join(cell.labels[name] for name in plan.varying) or "image"
    if plan.repeats > 1:
        label += f" #{cell.repeat + 1}"
    return label


# ------------------------------------------------------------------ one run of Generate


class Run:
    """What one press of Generate started: the one result the session returned, and the panel's own bookkeeping.

    ``result`` is what the session gave back (a :class:`~gemimg_jupyter.api.results.Result`): the
    :class:`~gemimg_jupyter.engine.Job` of a single image or the :class:`SweepResult` of a sweep. Its
    jobs, counts, cost and cancel are the result's, so the panel and ``%%gemimg`` agree by
    construction; when the run started and ended, the stop event and the lock are the panel's.
    """

    def __init__(self, plan: SweepPlan, state: Mapping[str, Any]) -> None:
        self.plan = plan
        self.state = dict(state)
        self.kind = "single" if not plan.axes and plan.repeats == 1 else "sweep"
        self.result: Result | None = None  # set (under ``lock``) once the session has returned it
        self.started = time.monotonic()
        self.ended: float | None = None
        self.cancelled = False
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.settled = threading.Event()

    @property
    def sweep(self) -> SweepResult | None:
        """The sweep's result, or ``None`` for a single image (or before the session returned)."""
        with self.lock:
            result = self.result
        return result if isinstance(result, SweepResult) else None

    @property
    def jobs(self) -> list[Job]:
        """The result's jobs in cell order (none before the session returned)."""
        with self.lock:
            result = self.result
        if isinstance(result, SweepResult):
            return list(result.jobs)
        return [result] if isinstance(result, Job) else []

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def finished(self) -> bool:
        with self.lock:
            result = self.result
        return result is not None and result.done()

    def cancel(self) -> tuple[int, int]:
        """Cancel through the result: how many were stopped before being sent, and how many are paid.

        The paid ones (submitted, not ended) are still downloaded, as the result's ``cancel()`` promises.
        """
        with self.lock:
            result = self.result
        if result is None:
            return 0, 0
        self.cancelled = True
        stopped = int(result.cancel())  # a job says True/False, a sweep how many
        paid = sum(1 for job in self.jobs if not job.done() and job.task_id is not None)
        return stopped, paid

    def counts(self) -> dict[str, Any]:
        """``total``, ``done``, ``cached``, ``failed``, ``pending`` and ``cost_usd``, as the result counts them.

        A sweep's are its :meth:`SweepResult.counts` (what ``%%gemimg`` shows); one image's are its job's.
        """
        return count_jobs(self.jobs)
