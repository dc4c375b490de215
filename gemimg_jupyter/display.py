"""What a ``%%gemimg`` cell (and the panel) shows: live views and rich tables.

Live views
----------
:class:`JobView` and :class:`SweepView` are *one* notebook output each. The
output is created in the main thread with ``display(..., display_id=True)``
(:meth:`LiveView.show`); from then on the job listeners, which run in the job
runner's worker threads, only call :meth:`LiveView.refresh`, which updates
that output in place by its display id. Nothing here prints, and nothing in a
background thread ever creates a new output, so output cannot land in another
cell.

A job's output goes ``status line → image`` (or ``→ one-line error``); a
sweep's output is the labelled grid, re-rendered at most every
``min_interval`` seconds while results arrive, and always once more in its
final state. A small shared ticker keeps the elapsed time of running views
moving when the gateway is quiet.

Every image output is a plain ``image/png`` (it renders on GitHub, nbviewer
and VS Code) with the provenance in its display metadata under ``gemimg``
(single images) or ``gemimg_sweep`` (grids). Prompt text that goes into HTML
always passes through :func:`html.escape`.

Snapshots
---------
:func:`jobs_table`, :func:`cost_report`, :func:`models_table`,
:func:`config_table` and :func:`history_strip` return small objects with a
``_repr_mimebundle_`` (HTML + text, or PNG + text) for the ``%gemimg``
subcommands to return.

This module may import ``IPython.display`` (lazily, in :meth:`LiveView.show`);
it never imports ipywidgets.
"""

from __future__ import annotations

import base64
import html
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from .errors import (
    GemimgError,
    InvalidImageError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    redact,
)
from .grid import draw_star
from .images import png_bytes, thumbnail
from .models import JobState, ModelSpec, shown_text
from .text import format_usd as _usd

if TYPE_CHECKING:  # pragma: no cover
    from IPython.display import DisplayHandle

    from .jobs import Job
    from .lineage import Lineage
    from .session import SweepResult
    from .store import LedgerRow

__all__ = [
    "INTERRUPT_LINE",
    "STALE_NOTE",
    "THEME_CSS",
    "TONE_COLORS",
    "Bundle",
    "ImageStrip",
    "JobView",
    "LiveView",
    "RichText",
    "SweepView",
    "config_table",
    "cost_report",
    "display_path",
    "error_line",
    "history_strip",
    "image_html",
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

#: ``(data, metadata)`` as ``display(..., raw=True)`` takes them.
Bundle = tuple[dict[str, Any], dict[str, Any]]

PROMPT_CHARS = 72
#: The status line quotes at most this much of the prompt (all of it is in the tooltip).
STATUS_PROMPT_CHARS = 48
#: Text colours with at least 4.5:1 contrast on JupyterLab's light (white) and dark (#111, #212121)
#: cell backgrounds; the dark set applies when the front end says its theme is dark
#: (``data-jp-theme-light="false"``, set by JupyterLab and Notebook 7). A front end that drops the
#: ``<style>`` (an untrusted output) shows the theme's own text colour instead: still legible.
TONE_COLORS = {
    "run": ("#1565c0", "#64b5f6"),
    "ok": ("#2e7d32", "#66bb6a"),
    "warn": ("#9a6700", "#ffb74d"),
    "error": ("#c62828", "#ef5350"),
    "muted": ("#616161", "#bdbdbd"),
}
THEME_CSS = (
    "<style>"
    + "".join(f".gemimg-tone-{k}{{color:{light}}}" for k, (light, _dark) in TONE_COLORS.items())
    + "".join(
        f"[data-jp-theme-light=false] .gemimg-tone-{k}{{color:{dark}}}" for k, (_light, dark) in TONE_COLORS.items()
    )
    + ".gemimg-prompt-cut{display:inline-block;max-width:36ch;overflow:hidden;text-overflow:ellipsis;"
    "white-space:nowrap;vertical-align:bottom}"
    "</style>"
)
#: What a live output's saved state says, in case the page was reloaded while it ran: the front end
#: has then forgotten the display id, and this output will not change any more.
STALE_NOTE = "if this line is stale, re-run the cell: finished images come from the cache for $0"
#: Prices are written with "$": two of them in one HTML output would be typeset as LaTeX by JupyterLab.
_NO_MATH = "mathjax_ignore tex2jax_ignore"
_MONO = "font-family: var(--jp-code-font-family, monospace); font-size: 12px;"


# ---------------------------------------------------------------- small helpers


def _short(text: str, limit: int = PROMPT_CHARS) -> str:
    """The first line of ``text``, ellipsized to ``limit`` characters."""
    one = shown_text(" ".join(text.split()))
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes} min {seconds:02d} s"


def display_path(path: str | os.PathLike[str] | None) -> str | None:
    """``path`` relative to the working directory when it lies below it.

    Notebooks run with the notebook's folder as working directory, so saved
    notebooks then carry portable ``gemimg_outputs/images/…`` paths.
    """
    if path is None:
        return None
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def live_updates_supported() -> bool:
    """True when the running shell can update an output in place.

    A terminal IPython's plain display publisher would *print* every update
    (from a background thread); there the view shows once and stays still.
    """
    try:
        from IPython import get_ipython
        from IPython.core.displaypub import DisplayPublisher
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    if shell is None:
        return False
    return type(shell.display_pub) is not DisplayPublisher


# ---------------------------------------------------------------- errors


_RETRY_SUFFIX = "; it will be retried"


def error_line(err: BaseException) -> str:
    """One line saying what went wrong and what to do, with no secret in it."""
    text = " ".join(str(err).split())
    if isinstance(err, (RateLimitError, ServerError)) and text.endswith(_RETRY_SUFFIX):
        text = text[: -len(_RETRY_SUFFIX)] + "; gave up after retrying, try again in a minute"
    elif isinstance(err, TaskFailedError) and "refund" not in text:
        text += f" ({err.hint})"
    elif isinstance(err, InvalidImageError) and "--fresh" not in text:
        text += f"; {err.hint}"
    if not isinstance(err, GemimgError):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return redact(text or type(err).__name__)


def job_error_line(job: Job) -> str:
    """The one-line error of a job that ended without an image."""
    if job.exception is not None:
        return error_line(job.exception)
    return redact(" ".join((job.error or f"ended {job.state.value}").split()))


# ---------------------------------------------------------------- one job


def status_text(job: Job) -> str:
    """``◑ in_progress · 4.2 s · 45% · $0.05 · job ab12cd · 16:9 1K · "a fox…"``."""
    state = job.state
    parts = [f"{state.icon} {state.value}", _seconds(job.elapsed)]
    if not state.is_terminal:
        parts.append(f"{job.progress}%")
    parts.append("$0 (cached)" if state is JobState.CACHED else _usd(job.cost_usd))
    parts.append(f"job {job.id}")
    parts.append(f"{job.params.size} {job.params.resolution}")
    if job.repeat:
        parts.append(f"repeat {job.repeat}")
    parts.append(f"“{_short(job.params.prompt, STATUS_PROMPT_CHARS)}”")
    return "gemimg " + " · ".join(parts)


def _tone(state: JobState, unfinished: str = "run") -> str:
    """The theme tone of a state's word, from :class:`JobState`'s classifications (a timeout only warns)."""
    if state.has_image:
        return "ok"
    if state is JobState.TIMEOUT:
        return "warn"
    if state.shown_as_failed:
        return "error"
    return "muted" if state.is_terminal else unfinished


def _quoted_prompt(prompt: str, limit: int) -> str:
    """The prompt, shortened and escaped, in a span that also ellipsizes when the output is narrow."""
    return f'<span class="gemimg-prompt-cut" title="{html.escape(shown_text(prompt))}">“{html.escape(_short(prompt, limit))}”</span>'


def status_html(job: Job) -> str:
    """The status line as HTML (every piece of user text escaped).

    A running job's line carries :data:`STALE_NOTE` under it, in small muted
    text: the saved notebook keeps this state if the page is reloaded before
    the job ends, and the note says how to bring the output up to date for $0.
    """
    state = job.state
    bits = [
        f'<b class="gemimg-tone-{_tone(state)}">{html.escape(state.icon)} {html.escape(state.value)}</b>',
        html.escape(_seconds(job.elapsed)),
    ]
    if not state.is_terminal:
        bits.append(
            f'<progress value="{int(job.progress)}" max="100" style="width:80px;height:10px;vertical-align:middle">'
            f"</progress> {int(job.progress)}%"
        )
    bits.append(html.escape("$0 (cached)" if state is JobState.CACHED else _usd(job.cost_usd)))
    bits.append(f"job <code>{html.escape(job.id)}</code>")
    bits.append(f'<span style="white-space:nowrap">{html.escape(f"{job.params.size} {job.params.resolution}")}</span>')
    bits.append(_quoted_prompt(job.params.prompt, STATUS_PROMPT_CHARS))
    note = (
        ""
        if state.is_terminal
        else f'<div class="gemimg-stale-note gemimg-tone-muted" style="font-size:11px">{html.escape(STALE_NOTE)}</div>'
    )
    return f'{THEME_CSS}<div class="gemimg-status {_NO_MATH}" style="{_MONO}">' + " · ".join(bits) + f"{note}</div>"


def _error_bundle(job: Job) -> Bundle:
    state = job.state
    line = job_error_line(job)
    text = f"gemimg {state.icon} {state.value} after {_seconds(job.elapsed)} (job {job.id}): {line}"
    markup = (
        f'{THEME_CSS}<div class="gemimg-error {_NO_MATH} gemimg-tone-{_tone(state, "error")}" style="{_MONO}">'
        f"<b>{html.escape(state.icon)} {html.escape(state.value)}</b> after "
        f"{html.escape(_seconds(job.elapsed))} (job <code>{html.escape(job.id)}</code>): {html.escape(line)}"
        f'<span class="gemimg-tone-muted"> · {_quoted_prompt(job.params.prompt, 40)}</span></div>'
    )
    return {"text/plain": text, "text/html": markup}, {"gemimg_status": {"job": job.id, "state": state.value}}


def image_html(png: bytes, alt: str, note: str = "") -> str:
    """The PNG as an ``<img>`` with alternative text (escaped), for front ends and exports that show HTML.

    The same bytes stay in the bundle as plain ``image/png`` for renderers that
    prefer it or drop HTML. ``note`` (escaped) goes under the image in small muted text.
    """
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    below = (
        f'<div class="gemimg-tone-muted {_NO_MATH}" style="{_MONO} font-size:11px">{html.escape(note)}</div>'
        if note
        else ""
    )
    return (
        f'<img class="gemimg-image" src="{src}" alt="{html.escape(alt)}" '
        f'style="max-width:100%;height:auto">{THEME_CSS if note else ""}{below}'
    )


def image_metadata(job: Job) -> dict[str, Any]:
    """Provenance of a finished job for the display metadata (never the key).

    The job's provenance, plus where the full-size file is (``path``), its
    pixel size (``image_size``), the job id and whether it came from the cache.
    """
    meta: dict[str, Any] = dict(job.provenance)
    meta.setdefault("params", job.params.describe())
    meta["path"] = display_path(job.path)
    meta["job_id"] = job.id
    meta["cached"] = job.cached
    try:
        meta["image_size"] = list(job.image.size)
    except (GemimgError, OSError):
        meta["image_size"] = list(job.params.pixel_size)
    return meta


def job_bundle(job: Job, *, preview_size: int = 768) -> Bundle:
    """The job as it is now: a status line, the image, or a one-line error.

    Parameters
    ----------
    job : Job
        The job.
    preview_size : int
        Long side of the preview PNG.

    Returns
    -------
    Bundle
        ``(data, metadata)``: ``text/plain`` + ``text/html`` while running or
        after a failure; ``image/png`` + ``text/plain`` with the provenance
        under ``metadata["image/png"]["gemimg"]`` once the image is there.
    """
    state = job.state
    if state.has_image:
        try:
            png = job.preview_png(preview_size)
            meta = image_metadata(job)
        except (GemimgError, OSError) as exc:
            text = f"gemimg ✗ the image of job {job.id} could not be read: {error_line(exc)}"
            return {
                "text/plain": text,
                "text/html": f'{THEME_CSS}<div class="gemimg-tone-error {_NO_MATH}" style="{_MONO}">{html.escape(text)}</div>',
            }, {}
        w, h = meta["image_size"]
        where = meta["path"] or "?"
        note = " (cached)" if job.cached else ""
        text = f"<gemimg image {job.id} {w}×{h}{note}: {where}>"
        alt = f"{job.params.size} image {w}×{h}: {' '.join(job.params.prompt.split())}"
        return {"image/png": png, "text/html": image_html(png, alt), "text/plain": text}, {
            "image/png": {"gemimg": meta}
        }
    if state.is_terminal:
        return _error_bundle(job)
    return {"text/plain": status_text(job), "text/html": status_html(job)}, {}


# ---------------------------------------------------------------- a sweep


def _stack(images: Sequence[Image.Image], gap: int = 12) -> Image.Image:
    if len(images) == 1:
        return images[0]
    width = max(im.width for im in images)
    height = sum(im.height for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    y = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (0, y))
        y += im.height + gap
    return canvas


def sweep_bundle(result: SweepResult, *, final: bool = False) -> Bundle:
    """The sweep's grid(s) as one PNG (Z grids stacked), with its progress and provenance."""
    grids = result.grids()
    png = png_bytes(_stack(grids), optimize=final)
    meta = result.describe()
    for cell in meta.get("cells", []):
        cell["path"] = display_path(cell.get("path"))
    progress = result.progress_text()
    text = f"<gemimg sweep {result.id}: {progress}"
    if final and result.paths:
        shown = [display_path(p) for p in result.paths]
        meta["grid_paths"] = shown
        text += f"; grid saved to {', '.join(p for p in shown if p)}"
    axes = " × ".join(f"{a['name']} ({', '.join(map(str, a['values']))})" for a in meta.get("axes", []))
    prompt = " ".join(str(result.plan.common.get("prompt") or result.plan.base.prompt).split())
    alt = f"comparison grid, {progress}" + (f", {axes}" if axes else "") + (f": {prompt}" if prompt else "")
    note = "" if final else f"{progress} · {STALE_NOTE}"
    markup = image_html(png, alt, note)
    return {"image/png": png, "text/html": markup, "text/plain": text + ">"}, {"image/png": {"gemimg_sweep": meta}}


# ---------------------------------------------------------------- live views


class LiveView:
    """One notebook output that follows something running in the background.

    Subclasses supply :meth:`bundle` (the current rendering) and
    :meth:`is_final`. :meth:`show` must be called in the main thread; it
    creates the output. :meth:`refresh` may be called from any thread; it
    updates that output (throttled to ``min_interval`` seconds, the final state
    always rendered).
    """

    #: Seconds between two renders while not final (0: render every change).
    min_interval: float = 0.0
    #: Re-render running views this often so the elapsed time moves.
    tick_interval: float = 1.0

    def __init__(self) -> None:
        self._handle: DisplayHandle | None = None
        self._lock = threading.RLock()
        self._final = threading.Event()
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._live = False
        self._closed = False
        self._shown_in: int | None = None
        self.renders = 0

    # -- to implement -------------------------------------------------------------------

    def bundle(self) -> Bundle:  # pragma: no cover - abstract
        """The current ``(data, metadata)``."""
        raise NotImplementedError

    def is_final(self) -> bool:  # pragma: no cover - abstract
        """True once nothing will change any more."""
        raise NotImplementedError

    def target(self) -> Any:  # pragma: no cover - abstract
        """The job or sweep this view follows."""
        raise NotImplementedError

    # -- the output ---------------------------------------------------------------------

    @property
    def display_id(self) -> str | None:
        """The display id of the output, once shown."""
        return self._handle.display_id if self._handle is not None else None

    def show(self) -> None:
        """Create the output (main thread only) and start following changes."""
        from IPython import get_ipython
        from IPython.display import display

        with self._lock:
            final = self.is_final()
            data, md = self.bundle()
            self._handle = display(data, metadata=md, raw=True, display_id=True)
            self._last = time.monotonic()
            self.renders += 1
            self._live = live_updates_supported()
            shell = get_ipython()
            self._shown_in = getattr(shell, "execution_count", None)
            if final:
                self._final.set()
        if not self._final.is_set() and self._live:
            _TICKER.add(self)

    def refresh(self) -> None:
        """Update the output to the current state (any thread; never creates an output)."""
        with self._lock:
            if self._handle is None or self._closed or self._final.is_set():
                return
            final = self.is_final()
            if not self._live:
                if final:
                    self._final.set()
                return
            wait = self.min_interval - (time.monotonic() - self._last)
            if not final and wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._deferred)
                    self._timer.daemon = True
                    self._timer.start()
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            data, md = self.bundle()
            self._handle.update(data, metadata=md, raw=True)
            self._last = time.monotonic()
            self.renders += 1
            if final:
                self._final.set()

    def tick_due(self, now: float) -> bool:
        """True when the last render is at least :attr:`tick_interval` old (the ticker then refreshes)."""
        return now - self._last >= self.tick_interval

    def _deferred(self) -> None:
        with self._lock:
            self._timer = None
        self.refresh()

    def _on_change(self, _item: object) -> None:
        self.refresh()

    def wait_final(self, timeout: float | None = None) -> bool:
        """Block until the final state has been rendered (``False`` on timeout)."""
        if self._handle is None:
            return True
        return self._final.wait(timeout)

    @property
    def finished(self) -> bool:
        """True once the final state is on screen (or there is no screen)."""
        return self._handle is None or self._final.is_set() or self._closed

    def close(self) -> None:
        """Stop following (the output stays as it is)."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        _TICKER.discard(self)

    # -- as a value (``_`` after a %%gemimg cell) ----------------------------------------

    def _ipython_display_(self) -> None:
        from IPython import get_ipython

        shell = get_ipython()
        if self._handle is not None and getattr(shell, "execution_count", None) == self._shown_in:
            if not self._live:  # a terminal has printed "Out[n]:" already: say where things are now
                from IPython.display import display

                display({"text/plain": self.bundle()[0]["text/plain"]}, raw=True)
            return  # the cell that created this view already shows it
        fresh = self.clone()
        fresh.show()
        fresh.attach()

    def clone(self) -> LiveView:  # pragma: no cover - abstract
        """A new, not yet shown view of the same target."""
        raise NotImplementedError

    def attach(self) -> None:  # pragma: no cover - abstract
        """Subscribe to the followed object's changes."""
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        # only called for names the view lacks: fall through to the job or sweep
        followed = self.__dict__.get("job") or self.__dict__.get("sweep")
        if name.startswith("_") or followed is None:
            raise AttributeError(name)
        return getattr(followed, name)


class JobView(LiveView):
    """The live output of one job: status line, then the image (or the error).

    Parameters
    ----------
    job : Job
        The job to follow.
    preview_size : int
        Long side in pixels of the preview PNG put in the notebook (the
        full-size image stays on disk; its path is in the metadata).

    Notes
    -----
    Attribute access falls through to the job, so ``_.image`` or
    ``_.result()`` work on the value of a ``%%gemimg`` cell.
    """

    def __init__(self, job: Job, *, preview_size: int = 768) -> None:
        super().__init__()
        self.job = job
        self.preview_size = preview_size

    def target(self) -> Job:
        """The job."""
        return self.job

    def bundle(self) -> Bundle:
        """See :func:`job_bundle`."""
        return job_bundle(self.job, preview_size=self.preview_size)

    def is_final(self) -> bool:
        """The job has ended."""
        return self.job.done()

    def clone(self) -> JobView:
        """A new view of the same job."""
        return JobView(self.job, preview_size=self.preview_size)

    def attach(self) -> None:
        """Follow the job (a finished job renders at once)."""
        self.job.add_listener(self._on_change)

    def __repr__(self) -> str:
        return f"<JobView of {self.job!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        return self.bundle()


class SweepView(LiveView):
    """The live output of a sweep: its grid, re-drawn as results arrive.

    Parameters
    ----------
    sweep : SweepResult
        The sweep to follow.
    min_interval : float
        Seconds between two re-renders while results arrive; the final grid
        is always rendered at once.

    Notes
    -----
    ``view.sweep`` is the :class:`~gemimg_jupyter.session.SweepResult`; other
    attributes fall through to it (``_.result()`` waits, ``_.table()``…).
    """

    def __init__(self, sweep: SweepResult, *, min_interval: float = 0.5) -> None:
        super().__init__()
        self.sweep = sweep
        self.min_interval = max(0.0, float(min_interval))

    def target(self) -> SweepResult:
        """The sweep."""
        return self.sweep

    def bundle(self) -> Bundle:
        """See :func:`sweep_bundle`."""
        return sweep_bundle(self.sweep, final=self.is_final())

    def is_final(self) -> bool:
        """Every job has ended and the grid has been saved."""
        return self.sweep.done() and self.sweep.wait(0)

    def clone(self) -> SweepView:
        """A new view of the same sweep."""
        return SweepView(self.sweep, min_interval=self.min_interval)

    def attach(self) -> None:
        """Follow every job of the sweep."""
        for job in self.sweep.jobs:
            job.add_listener(self._on_change)

    def __repr__(self) -> str:
        return f"<SweepView of {self.sweep!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        return self.bundle()


class _Ticker:
    """One daemon thread that re-renders running views about once a second."""

    def __init__(self) -> None:
        self._views: set[LiveView] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, view: LiveView) -> None:
        with self._lock:
            self._views.add(view)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gemimg-ticker", daemon=True)
                self._thread.start()

    def discard(self, view: LiveView) -> None:
        with self._lock:
            self._views.discard(view)

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            with self._lock:
                views = [v for v in self._views if not v.finished]
                self._views = set(views)
                if not views:
                    self._thread = None
                    return
            now = time.monotonic()
            for view in views:
                if view.tick_due(now):
                    view.refresh()


_TICKER = _Ticker()


# ---------------------------------------------------------------- interrupted waits

#: What a cell says when Ctrl-C (or the interrupt button) stops its wait; one short line.
INTERRUPT_LINE = "gemimg: stopped waiting; the jobs keep running (%gemimg jobs, %gemimg cancel)"


def show_interrupt_note(jobs: Sequence[Job], text: str = INTERRUPT_LINE) -> None:
    """Show ``text`` as one output (main thread) that empties itself once every job in ``jobs`` has ended.

    The line is true while the jobs run; under a finished image or grid it
    would only mislead. Where outputs cannot be updated (a terminal) it is
    printed once and stays.
    """
    from IPython.display import display

    handle = display({"text/plain": text}, raw=True, display_id=True)
    if handle is None or not live_updates_supported():
        return
    lock = threading.Lock()
    cleared = False

    def on_change(_job: object) -> None:
        nonlocal cleared
        if not all(job.done() for job in jobs):
            return
        with lock:
            if cleared:
                return
            cleared = True
        handle.update({"text/plain": ""}, raw=True)

    for job in jobs:
        job.add_listener(on_change)


# ---------------------------------------------------------------- snapshots


class RichText:
    """Text with an HTML twin, for tables and reports."""

    def __init__(self, text: str, markup: str | None = None) -> None:
        self.text = text
        self.html = markup

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": self.text}
        if self.html is not None:
            data["text/html"] = self.html
        return data


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = "") -> RichText:
    cells = [[("—" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = min(max(widths[i], len(value)), 60)
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(_short(v, widths[i]).ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    head = "".join(f'<th style="text-align:left">{html.escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align:left;white-space:nowrap">{html.escape(v)}</td>' for v in row) + "</tr>"
        for row in cells
    )
    caption = f"<caption style='text-align:left'>{html.escape(title)}</caption>" if title else ""
    markup = f'<table class="gemimg-table {_NO_MATH}" style="{_MONO}">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return RichText("\n".join(lines), markup)


def _pairs(title: str, rows: Sequence[tuple[str, str]]) -> RichText:
    width = max(len(k) for k, _ in rows)
    text = "\n".join([title, *(f"  {k.ljust(width)}  {v}" for k, v in rows)])
    body = "".join(
        f'<tr><th style="text-align:left">{html.escape(k)}</th><td style="text-align:left">{html.escape(v)}</td></tr>'
        for k, v in rows
    )
    caption = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>"
    return RichText(
        text, f'<table class="gemimg-table {_NO_MATH}" style="{_MONO}">{caption}<tbody>{body}</tbody></table>'
    )


def jobs_table(jobs: Iterable[Job]) -> RichText:
    """This session's jobs and their states."""
    rows = []
    for job in jobs:
        d = job.describe()
        sampling = "" if d["temperature"] is None else f"{d['temperature']:g}/{d['top_p']:g}"
        last = job_error_line(job) if job.state.is_terminal and not job.state.has_image else display_path(job.path)
        rows.append(
            [
                d["id"],
                d["state"],
                f"{d['progress']}%",
                f"{d['size']} {d['resolution']}",
                sampling,
                d["repeat"],
                job.sweep_id or "",
                _usd(d["cost_usd"]),
                _seconds(job.elapsed),
                _short(d["prompt"], 40),
                last or "",
            ]
        )
    if not rows:
        return RichText("gemimg: no jobs in this session yet", "<i>gemimg: no jobs in this session yet</i>")
    headers = [
        "id",
        "state",
        "progress",
        "size",
        "temp/top_p",
        "repeat",
        "sweep",
        "cost",
        "elapsed",
        "prompt",
        "result",
    ]
    return _table(headers, rows, title=f"{len(rows)} job{'s' if len(rows) != 1 else ''} in this session")


def cost_report(cost: Mapping[str, Any]) -> RichText:
    """Spent, saved by the cache and the budget (from ``Session.cost()``)."""
    budget = cost.get("budget_usd")
    spent = float(cost.get("spent_usd") or 0.0)
    left = "" if budget is None else f" ({_usd(max(0.0, budget - spent))} left)"
    simulated = cost.get("backend") == "sim"
    spent_text = f"{_usd(spent)} over {cost.get('requests', 0)} request(s)"
    rows = [
        ("spent this session", f"simulated {spent_text}, not charged" if simulated else spent_text),
        ("saved by the cache", f"{_usd(cost.get('saved_usd') or 0.0)} ({cost.get('cache_hits', 0)} hit(s))"),
        ("budget", ("none (set %config GemimgMagics.max_cost_usd)" if budget is None else _usd(budget)) + left),
        (
            "all time (ledger)",
            f"{_usd(cost.get('ledger_spent_usd') or 0.0)} for {cost.get('ledger_images', 0)} image(s)",
        ),
        (
            "backend",
            str(cost.get("backend", "?")) + (" (simulated, nothing is charged)" if simulated else ""),
        ),
    ]
    return _pairs("gemimg cost", rows)


def models_table(models: Mapping[str, ModelSpec], *, default: str | None = None) -> RichText:
    """The model registry: sizes, resolutions, limits and price of each model."""
    rows = []
    for spec in models.values():
        name = spec.id + (" (default)" if spec.id == default else "")
        if spec.aliases:
            name += f" [alias {', '.join(spec.aliases)}]"
        rows.append(
            [
                name,
                ", ".join(spec.sizes),
                ", ".join(spec.resolutions),
                f"{spec.max_refs} × ≤{spec.max_ref_bytes / 1e6:g} MB",
                "temperature, top_p" if spec.sampling else "—",
                "no published price" if spec.price_usd is None else f"{_usd(spec.price_usd, places=4)}/image",
                spec.note,
            ]
        )
    headers = ["model", "sizes", "resolutions", "references", "sampling", "price", "note"]
    table = _table(headers, rows, title="gemimg models")
    # sizes lists are long: do not ellipsize them in the text version
    lines = [
        f"{r[0]}\n  sizes: {r[1]}\n  resolutions: {r[2]} · references: {r[3]} · sampling: {r[4]} · {r[5]}"
        + (f"\n  note: {r[6]}" if r[6] else "")
        for r in rows
    ]
    return RichText("gemimg models\n" + "\n".join(lines), table.html)


def config_table(rows: Sequence[tuple[str, object, str]]) -> RichText:
    """Effective defaults: ``(name, value, where it comes from / help)`` rows."""
    return _table(
        ["setting", "value", "about"],
        [[n, repr(v) if isinstance(v, str) else v, h] for n, v, h in rows],
        title="gemimg defaults (%config GemimgMagics.<name> = value)",
    )


# ---------------------------------------------------------------- history strip


class ImageStrip:
    """A PNG contact sheet with a text listing and the files in its metadata."""

    def __init__(self, png: bytes, text: str, items: list[dict[str, Any]]) -> None:
        self.png = png
        self.text = text
        self.items = items

    def __repr__(self) -> str:
        return self.text

    def _repr_png_(self) -> bytes:
        return self.png

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        alt = "; ".join(f"{i + 1}. {' '.join(str(it.get('prompt', '')).split())}" for i, it in enumerate(self.items))
        data = {
            "image/png": self.png,
            "text/html": image_html(self.png, f"image history: {alt}"),
            "text/plain": self.text,
        }
        return data, {"image/png": {"gemimg_history": self.items}}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def history_strip(
    rows: Sequence[LedgerRow],
    *,
    thumb: int = 160,
    per_row: int = 6,
    picked: Iterable[str] = (),
    title: str | None = None,
) -> ImageStrip | RichText:
    """Recent images as a thumbnail strip (newest first), built with Pillow.

    Parameters
    ----------
    rows : sequence of LedgerRow
        Finished ledger rows (``Session.history()``); rows whose file is gone are skipped.
    thumb : int
        Long side of each thumbnail in pixels.
    per_row : int
        Thumbnails per row before the strip wraps.
    picked : iterable of str
        ``client_business_id`` of picked images: they carry a star.
    title : str, optional
        The first line of the text listing (default: ``N newest image(s)``).

    Returns
    -------
    ImageStrip or RichText
        The contact sheet (PNG, a text listing, the files in the metadata),
        or a one-line note when there is nothing to show.
    """
    items: list[dict[str, Any]] = []
    thumbs: list[Image.Image] = []
    stars = set(picked)
    for row in rows:
        if not row.path:
            continue
        try:
            with Image.open(row.path) as img:
                img.load()
                thumbs.append(thumbnail(img, thumb))
        except OSError:
            continue
        params = row.params
        items.append(
            {
                "path": display_path(row.path),
                "prompt": params.get("prompt", ""),
                "size": params.get("size"),
                "model": params.get("model"),
                "task_id": row.task_id,
                "finished": row.finished,
                "picked": row.cbid in stars,
            }
        )
    if not thumbs:
        return RichText("gemimg: no images in the store yet", "<i>gemimg: no images in the store yet</i>")
    label_h = 18
    cols = min(per_row, len(thumbs))
    nrows = math.ceil(len(thumbs) / cols)
    pad = 6
    cell_w, cell_h = thumb + pad, thumb + label_h + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, nrows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(11)
    for i, (img, item) in enumerate(zip(thumbs, items, strict=True)):
        x = pad + (i % cols) * cell_w
        y = pad + (i // cols) * cell_h
        sheet.paste(img, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2))
        if item["picked"]:
            draw_star(draw, x + (thumb + img.width) // 2 - 14, y + (thumb - img.height) // 2 + 14, 10)
        caption = f"{i + 1}. {_short(str(item['prompt']), 24)}"
        draw.text((x, y + thumb + 3), caption, fill="#333333", font=font)
    lines = [
        f"{i + 1}. {'★ ' if it['picked'] else ''}{_short(str(it['prompt']), 50)} ({it['size']}) → {it['path']}"
        for i, it in enumerate(items)
    ]
    text = f"gemimg history: {title or f'{len(items)} newest image(s)'}\n" + "\n".join(lines)
    return ImageStrip(png_bytes(sheet, optimize=True), text, items)


# ---------------------------------------------------------------- edit chains


class LineageOutput:
    """An edit chain as a labelled strip (PNG) above its table (HTML), with a text twin."""

    def __init__(self, png: bytes, table: RichText, rows: list[dict[str, Any]]) -> None:
        self.png = png
        self.table = table
        self.rows = rows

    def __repr__(self) -> str:
        return self.table.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        uri = "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")
        markup = f'<div class="gemimg-lineage"><img src="{uri}" alt="edit chain"><br>{self.table.html}</div>'
        data = {"text/html": markup, "image/png": self.png, "text/plain": self.table.text}
        return data, {"image/png": {"gemimg_lineage": self.rows}}


def lineage_output(chain: Lineage, *, thumb: int = 200) -> LineageOutput:
    """What ``%gemimg lineage`` shows: the strip (step number and prompt under each image) and a table."""
    rows = chain.table()
    table_rows = []
    for step, r in zip(chain.steps, rows, strict=True):
        sampling = "" if r["temperature"] is None else f" · t {r['temperature']:g} · top_p {r['top_p']:g}"
        star = " ★" if step.row.cbid in chain.picked else ""
        table_rows.append(
            [
                f"{r['step']}{star}",
                r["id"],
                _short(r["prompt"], 50),
                f"{r['size']} {r['resolution']}{sampling} · {r['references']} ref",
                _usd(r["cost_usd"]),
                display_path(r["path"]) or r["state"],
            ]
        )
    title = f"edit chain: {len(rows)} step{'s' if len(rows) != 1 else ''}, root first"
    if chain.broken:
        title += f" ({chain.broken})"
    table = _table(["step", "id", "prompt", "parameters", "cost", "file"], table_rows, title=title)
    return LineageOutput(png_bytes(chain.strip(thumb), optimize=True), table, rows)
