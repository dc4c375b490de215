"""Live views: one notebook output per job or sweep, updated in place.

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

Every image output stores its image once, as an ``<img>`` with alt text in
``text/html`` (:func:`~.renderers.image_bundle`; JupyterLab's ``image/png``
renderer sets no alt), with the provenance in its display metadata under
``metadata["text/html"]``, key ``gemimg`` (single images) or ``gemimg_sweep`` (grids). Prompt text that goes into HTML
always passes through :func:`html.escape`.

This module may import ``IPython.display`` (lazily, in :meth:`LiveView.show`);
it never imports ipywidgets.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gemimg_jupyter.api import SUSPECT_MARK, GemimgError, JobState, png_bytes, shown_text, stored_size
from gemimg_jupyter.api import format_usd as _usd

if TYPE_CHECKING:  # pragma: no cover
    from IPython.display import DisplayHandle

    from gemimg_jupyter.api import Job, SweepResult
from gemimg_jupyter.api import side_by_side
from gemimg_jupyter.display.renderers import (
    MONO,
    NO_MATH,
    STALE_NOTE,
    STATUS_PROMPT_CHARS,
    THEME_CSS,
    Bundle,
    display_path,
    error_line,
    format_seconds,
    image_bundle,
    job_error_line,
    live_updates_supported,
    shorten,
)

__all__ = [
    "INTERRUPT_LINE",
    "JobView",
    "LiveView",
    "SweepView",
    "image_metadata",
    "job_bundle",
    "show_interrupt_note",
    "status_html",
    "status_text",
    "sweep_bundle",
]


# ---------------------------------------------------------------- one job


def status_text(job: Job) -> str:
    """``◑ in_progress · 4.2 s · 45% · $0.05 · job ab12cd · 16:9 1K · "a fox…"``."""
    state = job.state
    parts = [f"{state.icon} {state.value}", format_seconds(job.elapsed)]
    if job.waiting_for:
        parts.append(f"waiting for job {job.waiting_for}")
    elif not state.is_terminal:
        parts.append(f"{job.progress}%")
        parts.extend(job.notes)  # what the job waits for (a long Retry-After …), while it waits
    parts.append("$0 (cached)" if state is JobState.CACHED else _usd(job.cost_usd))
    parts.append(f"job {job.id}")
    parts.append(f"{job.params.size} {job.params.resolution}")
    if job.repeat:
        parts.append(f"repeat {job.repeat}")
    if job.suspect:
        parts.append(f"{SUSPECT_MARK} suspect: {job.suspect}")
    parts.append(f"“{shorten(job.params.prompt, STATUS_PROMPT_CHARS)}”")
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
    return f'<span class="gemimg-prompt-cut" title="{html.escape(shown_text(prompt))}">“{html.escape(shorten(prompt, limit))}”</span>'


def status_html(job: Job) -> str:
    """The status line as HTML (every piece of user text escaped).

    A running job's line carries :data:`STALE_NOTE` under it, in small muted
    text: the saved notebook keeps this state if the page is reloaded before
    the job ends, and the note says how to bring the output up to date for $0.
    """
    state = job.state
    bits = [
        f'<b class="gemimg-tone-{_tone(state)}">{html.escape(state.icon)} {html.escape(state.value)}</b>',
        html.escape(format_seconds(job.elapsed)),
    ]
    if job.waiting_for:
        bits.append(f"waiting for job <code>{html.escape(job.waiting_for)}</code>")
    elif not state.is_terminal:
        bits.append(
            f'<progress value="{int(job.progress)}" max="100" style="width:80px;height:10px;vertical-align:middle">'
            f"</progress> {int(job.progress)}%"
        )
        bits.extend(f'<span class="gemimg-tone-warn">{html.escape(note)}</span>' for note in job.notes)
    bits.append(html.escape("$0 (cached)" if state is JobState.CACHED else _usd(job.cost_usd)))
    bits.append(f"job <code>{html.escape(job.id)}</code>")
    bits.append(f'<span style="white-space:nowrap">{html.escape(f"{job.params.size} {job.params.resolution}")}</span>')
    if job.suspect:
        tip = html.escape(f"paid, but {job.suspect}: kept, flagged (nothing is deleted)")
        bits.append(
            f'<b class="gemimg-tone-warn gemimg-suspect" title="{tip}">{SUSPECT_MARK} suspect: {html.escape(job.suspect)}</b>'
        )
    bits.append(_quoted_prompt(job.params.prompt, STATUS_PROMPT_CHARS))
    note = (
        ""
        if state.is_terminal
        else f'<div class="gemimg-stale-note gemimg-tone-muted" style="font-size:11px">{html.escape(STALE_NOTE)}</div>'
    )
    return f'{THEME_CSS}<div class="gemimg-status {NO_MATH}" style="{MONO}">' + " · ".join(bits) + f"{note}</div>"


def _error_bundle(job: Job) -> Bundle:
    state = job.state
    line = job_error_line(job)
    text = f"gemimg {state.icon} {state.value} after {format_seconds(job.elapsed)} (job {job.id}): {line}"
    markup = (
        f'{THEME_CSS}<div class="gemimg-error {NO_MATH} gemimg-tone-{_tone(state, "error")}" style="{MONO}">'
        f"<b>{html.escape(state.icon)} {html.escape(state.value)}</b> after "
        f"{html.escape(format_seconds(job.elapsed))} (job <code>{html.escape(job.id)}</code>): {html.escape(line)}"
        f'<span class="gemimg-tone-muted"> · {_quoted_prompt(job.params.prompt, 40)}</span></div>'
    )
    return {"text/plain": text, "text/html": markup}, {"gemimg_status": {"job": job.id, "state": state.value}}


def image_metadata(job: Job) -> dict[str, Any]:
    """Provenance of a finished job for the display metadata (never the key).

    The job's provenance, plus where the full-size file is (``path``), its
    pixel size (``image_size``), the job id and whether it came from the cache.
    """
    meta: dict[str, Any] = dict(job.provenance)
    meta.setdefault("params", job.params.as_dict())
    meta["path"] = display_path(job.path)
    meta["job_id"] = job.id
    meta["cached"] = job.cached
    meta["image_size"] = list(stored_size(job.path) or job.params.pixel_size)
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
        after a failure; ``text/html`` (the ``<img>`` with alt text) + ``text/plain`` with the
        provenance under ``metadata["text/html"]["gemimg"]`` once the image is there.
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
                "text/html": f'{THEME_CSS}<div class="gemimg-tone-error {NO_MATH}" style="{MONO}">{html.escape(text)}</div>',
            }, {}
        w, h = meta["image_size"]
        where = meta["path"] or "?"
        note = " (cached)" if job.cached else ""
        flag = f"{SUSPECT_MARK} suspect: {job.suspect} (paid; kept, not deleted)" if job.suspect else ""
        own = "; ".join(job.notes)  # the job's own notes (the size it came back in …), here and nowhere else
        text = f"<gemimg image {job.id} {w}×{h}{note}: {where}>" + (f" {flag}" if flag else "")
        text += f"\ngemimg: job {job.id}: {own}" if own else ""
        alt = f"{job.params.size} image {w}×{h}: {' '.join(job.params.prompt.split())}"
        shown = " · ".join(s for s in (flag, f"job {job.id}: {own}" if own else "") if s)
        return image_bundle(png, alt, text, {"gemimg": meta}, note=shown, tone="warn" if flag else "muted")
    if state.is_terminal:
        return _error_bundle(job)
    return {"text/plain": status_text(job), "text/html": status_html(job)}, {}


# ---------------------------------------------------------------- a sweep


def sweep_bundle(result: SweepResult, *, final: bool = False) -> Bundle:
    """The sweep's grid(s) as one PNG (Z grids side by side, wrapping when wide), with its progress and provenance."""
    grids = result.grids()
    png = png_bytes(side_by_side(grids), optimize=final)
    meta = result.provenance()
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
    return image_bundle(png, alt, text + ">", {"gemimg_sweep": meta}, note)


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

    def settle(self) -> None:
        """Send the final render once more from the calling thread (a cell that waited for this view).

        Headless runners (nbclient, papermill, ``nbconvert --execute``) keep only the messages of the
        cell that is running, so a final render a worker thread sent while another cell ran can be
        lost from the saved notebook; the same update sent by the waiting cell is kept. A front end
        that already showed it sees the same output again.
        """
        with self._lock:
            if self._handle is None or self._closed or not self._live or not self._final.is_set():
                return
            data, md = self.bundle()
            self._handle.update(data, metadata=md, raw=True)

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
    ``view.sweep`` is the :class:`~gemimg_jupyter.api.session.SweepResult`; other
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
        """Follow every job of the sweep (those its background claim adds later too)."""
        self.sweep.add_listener(self._on_change)

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
