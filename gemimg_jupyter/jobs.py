"""Background jobs: submit, poll and download without blocking the caller.

:class:`JobRunner` owns a small thread pool (the in-flight cap), a shared
:class:`RateGate` (token buckets for submits and status queries; a 429 pauses
the whole lane), and the polling cadence. Each :class:`Job` is one requested
image; it notifies plain-callable listeners on every change, so the display
layer and the panel never have to be known here.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from . import __version__
from .client import Category, ToAPIsClient
from .errors import (
    GemimgError,
    JobCancelled,
    JobError,
    JobTimeoutError,
    TaskExpiredError,
    TaskFailedError,
)
from .images import png_bytes, read_provenance, thumbnail
from .models import GenerationParams, JobState, ReferenceImage, TaskStatus
from .settings import Settings
from .store import LedgerRow, Store, safe_filename

__all__ = ["Job", "JobRunner", "Listener", "RateGate", "TokenBucket"]

log = logging.getLogger(__name__)

Listener = Callable[["Job"], None]
PREVIEW_LONG_SIDE = 768


class TokenBucket:
    """A token bucket (``rate`` per second, ``burst`` deep) that can be paused."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def _wait_needed(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if now < self._paused_until:
            return self._paused_until - now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate if self.rate > 0 else 1.0

    def acquire(self, stop: threading.Event | None = None) -> None:
        """Block until a token is available (or ``stop`` is set)."""
        while True:
            with self._lock:
                wait = self._wait_needed()
            if wait <= 0:
                return
            if stop is not None:
                if stop.wait(wait):
                    return
            else:
                time.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (after a 429 with ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


class RateGate:
    """Shared limits for every job of a session (implements ``client.RequestGate``)."""

    def __init__(self, settings: Settings) -> None:
        self._buckets: dict[str, TokenBucket] = {
            "submit": TokenBucket(settings.submit_rate, settings.submit_burst),
            "query": TokenBucket(settings.query_rate, settings.query_burst),
        }
        self.counts: dict[str, int] = {"submit": 0, "query": 0, "upload": 0, "download": 0, "rate_limited": 0}
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def acquire(self, category: Category) -> None:
        """Wait for the lane of ``category``, then count the request."""
        bucket = self._buckets.get(category)
        if bucket is not None:
            bucket.acquire(self.stop)
        with self._lock:
            self.counts[category] = self.counts.get(category, 0) + 1

    def penalize(self, category: Category, seconds: float) -> None:
        """Pause the whole lane after a 429."""
        with self._lock:
            self.counts["rate_limited"] += 1
        bucket = self._buckets.get(category)
        if bucket is not None:
            bucket.pause(seconds)


class Job:
    """One requested image, running in the background.

    The object is also the user's result handle: ``job.result()`` waits and
    returns the job, ``job.image`` is the ``PIL.Image``, ``job.path`` the PNG
    on disk, ``job.params`` what was asked for.
    """

    def __init__(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        sweep_id: str | None = None,
        backend: str = "sim",
        cbid: str | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> None:
        self.params = params
        #: the image this one edits (``cbid``, ``key``, ``sha256``), recorded in the ledger and the PNG
        self.parent: dict[str, Any] | None = dict(parent) if parent else None
        #: the session that made this job (for ``edit``, ``pick``, ``lineage``); set by the runner
        self.owner: Any = None
        self.repeat = repeat
        self.sweep_id = sweep_id
        self.backend = backend
        self.key = params.cache_key(repeat)
        self.cbid = cbid or f"gemimg-{uuid.uuid4().hex}"
        self.id = self.cbid[-6:]
        self.state = JobState.QUEUED
        self.progress = 0
        self.task_id: str | None = None
        self.error: str | None = None
        self.exception: GemimgError | None = None
        self.path: Path | None = None
        self.cost_usd = 0.0
        self.created = time.time()
        self.submitted_at: float | None = None
        self.finished_at: float | None = None
        self.expires_at: int | None = None
        self.provenance: dict[str, Any] = {}
        self._listeners: list[Listener] = []
        self._done = threading.Event()
        self._wake = threading.Event()
        self._cancel = False
        self._drop = False
        self._image: Image.Image | None = None
        self._preview: bytes | None = None
        self._thumbs: dict[int, Image.Image] = {}
        self._lock = threading.Lock()

    # ---- the result handle ----------------------------------------------------------------

    @property
    def status(self) -> str:
        """The state as text (``queued`` … ``done``)."""
        return self.state.value

    @property
    def cached(self) -> bool:
        """True when the image came from the store without a request."""
        return self.state is JobState.CACHED

    @property
    def elapsed(self) -> float:
        """Seconds since the job was created (until it finished)."""
        return (self.finished_at or time.time()) - self.created

    def done(self) -> bool:
        """True once the job is in a terminal state."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; ``False`` if ``timeout`` passed first."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Job:
        """Wait for the image and return this job; raise the job's error if it has none."""
        if not self._done.wait(timeout):
            raise JobTimeoutError(
                f"job {self.id} is still {self.state.value} after {timeout:g}s; it keeps running in the background",
                task_id=self.task_id,
            )
        if not self.state.has_image:
            raise self.exception or JobError(f"job {self.id} ended {self.state.value}", task_id=self.task_id)
        return self

    @property
    def image(self) -> Image.Image:
        """The full-size image (loaded from disk on first use)."""
        if not self.state.has_image or self.path is None:
            raise JobError(f"job {self.id} has no image yet ({self.state.value}); call .result() to wait for it")
        if self._image is None:
            with Image.open(self.path) as img:
                img.load()
                self._image = img
        return self._image

    def thumbnail(self, long_side: int = 320, *, keep: bool = True) -> Image.Image:
        """A small copy for grids and galleries, without keeping the full image in memory.

        ``keep=False`` does not cache it (the preview only needs its PNG bytes).
        """
        cached = self._thumbs.get(long_side)
        if cached is None:
            if self._image is not None:
                cached = thumbnail(self._image, long_side)
            else:
                if not self.state.has_image or self.path is None:
                    raise JobError(f"job {self.id} has no image yet ({self.state.value})")
                with Image.open(self.path) as img:
                    img.draft("RGB", (long_side, long_side))  # cheap downscale for JPEG-like sources
                    cached = thumbnail(img, long_side)
            if keep:
                self._thumbs[long_side] = cached
        return cached

    def preview_png(self, long_side: int = PREVIEW_LONG_SIDE) -> bytes:
        """A notebook-sized PNG (full-size images stay on disk)."""
        if self._preview is None:
            self._preview = png_bytes(self.thumbnail(long_side, keep=False))
        return self._preview

    def cancel(self, *, drop: bool = False) -> bool:
        """Cancel: stops the job if it was not submitted yet.

        A submitted task is paid for, so it is still downloaded unless
        ``drop=True``. Returns ``True`` if the job will end ``cancelled``.
        """
        with self._lock:
            if self._done.is_set():
                return False
            self._cancel = True
            self._drop = self._drop or drop
            will = self.task_id is None or drop
        self._wake.set()
        return will

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(job)`` on every change of state or progress (from a worker thread)."""
        self._listeners.append(listener)
        if self._done.is_set():
            _safe_call(listener, self)

    def describe(self) -> dict[str, Any]:
        """Plain data for tables (``%gemimg jobs``, ``SweepResult.table()``)."""
        return {
            "id": self.id,
            "state": self.state.value,
            "progress": self.progress,
            "prompt": self.params.prompt,
            "model": self.params.model,
            "size": self.params.size,
            "resolution": self.params.resolution,
            "temperature": self.params.temperature,
            "top_p": self.params.top_p,
            "repeat": self.repeat,
            "task_id": self.task_id,
            "cost_usd": round(self.cost_usd, 4),
            "elapsed_s": round(self.elapsed, 1),
            "path": str(self.path) if self.path else None,
            "error": self.error,
        }

    # ---- iterate and pick (docs/editing.md) ---------------------------------------------

    def edit(self, prompt: str, **params: Any) -> Job:
        """A new image made from this one: it becomes the first reference, and the new result names it as parent.

        Takes the keyword arguments of ``Session.generate`` (``size``, more
        ``reference_images``, ``wait`` …); an edit asked for again is a cache hit.
        """
        return self._session().generate(prompt, edit=self, **params)  # type: ignore[no-any-return]

    def pick(self, note: str | None = None) -> Job:
        """Mark this image as a favourite (kept in the ledger and written into the PNG's provenance)."""
        self._session().pick(self, note=note)
        return self

    def unpick(self) -> Job:
        """Remove the mark :meth:`pick` set."""
        self._session().unpick(self)
        return self

    @property
    def picked(self) -> bool:
        """True when this image is picked (in the ledger, so it survives restarts)."""
        return bool(self._session().is_picked(self))

    def lineage(self) -> Any:
        """The chain of edits from the root image to this one (``lineage.Lineage``)."""
        return self._session().lineage(self)

    def _session(self) -> Any:
        if self.owner is None:
            raise JobError(f"job {self.id} belongs to no session; use Session.pick/edit with it")
        return self.owner

    def __repr__(self) -> str:
        extra = f", path={str(self.path)!r}" if self.path else (f", error={self.error!r}" if self.error else "")
        return f"<Job {self.id} {self.state.value} {self.params.size} {self.params.prompt[:40]!r}{extra}>"

    def _repr_png_(self) -> bytes | None:
        return self.preview_png() if self.state.has_image else None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = {"text/plain": repr(self)}
        meta: dict[str, Any] = {}
        if self.state.has_image:
            data["image/png"] = self.preview_png()
            meta["image/png"] = {"gemimg": self.provenance}
        return data, meta


def _safe_call(listener: Listener, job: Job) -> None:
    try:
        listener(job)
    except Exception:
        log.exception("a gemimg listener failed")


class _Stopped(Exception):
    """Internal: the runner is shutting down."""


class JobRunner:
    """Runs jobs in background threads with shared limits.

    Parameters
    ----------
    client : ToAPIsClient
        The gateway client; its gate is replaced by this runner's :class:`RateGate`.
    store : Store
        Ledger and image files.
    settings : Settings
        In-flight cap, rates, polling cadence, deadline.
    backend : str
        ``"sim"`` or ``"toapis"``: recorded in the ledger and provenance.
    """

    def __init__(self, client: ToAPIsClient, store: Store, settings: Settings, *, backend: str) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.backend = backend
        self.gate = RateGate(settings)
        client.gate = self.gate
        self._pool = ThreadPoolExecutor(max_workers=settings.max_in_flight, thread_name_prefix="gemimg-job")
        self._jobs: dict[str, Job] = {}
        self._listeners: list[Listener] = []
        self._durations: deque[float] = deque(maxlen=50)
        self._peaks: deque[int] = deque(maxlen=50)  # the highest in-progress value each finished task showed
        self._rated: deque[bool] = deque(maxlen=20)  # whether progress rose between looks on recent tasks
        self._rtts: deque[float] = deque(maxlen=20)  # round trips of recent status queries
        self._lock = threading.Lock()
        self._upload_locks: dict[str, threading.Lock] = {}
        self._closed = False
        self._rng = random.Random()
        self.owner: Any = None  # the Session, handed to every Job (for edit, pick, lineage)

    # ---- public ---------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(job)`` for every change of every job."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def jobs(self) -> list[Job]:
        """Every job of this runner, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def get(self, job_id: str) -> Job | None:
        """A job by its short id, task id or ``client_business_id``."""
        with self._lock:
            for job in self._jobs.values():
                if job_id in (job.id, job.cbid, job.task_id):
                    return job
        return None

    def submit(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        fresh: bool = False,
        sweep_id: str | None = None,
        listeners: Sequence[Listener] = (),
        parent: Mapping[str, Any] | None = None,
    ) -> Job:
        """Start one job and return at once (a cache hit returns a finished job).

        ``parent`` (``cbid``, ``key``, ``sha256``) names the image this one edits.
        """
        if self._closed:
            raise JobError("the job runner is shut down; load the extension again")
        key = params.cache_key(repeat)
        if not fresh:  # the same request already running: share it instead of paying twice
            with self._lock:
                running = next(
                    (j for j in self._jobs.values() if j.key == key and not j.done() and not j._cancel), None
                )
            if running is not None:
                for listener in listeners:
                    running.add_listener(listener)
                return running
        job = Job(params, repeat=repeat, sweep_id=sweep_id, backend=self.backend, parent=parent)
        job.owner = self.owner
        for listener in listeners:
            job.add_listener(listener)
        with self._lock:
            self._jobs[job.id] = job
        hit = None if fresh else self.store.lookup(job.key)
        if hit is not None and hit.path:
            job.path = Path(hit.path)
            job.task_id = hit.task_id
            job.provenance = _provenance_from_file(job.path)
            job.progress = 100
            self._finish(job, JobState.CACHED)
            return job
        self._pool.submit(self._run, job)
        return job

    def resume(self) -> list[Job]:
        """Pick up ledger rows that were started but never finished (after a restart)."""
        started: list[Job] = []
        known = {j.cbid for j in self.jobs}
        for row in self.store.pending(self.backend):
            if row.cbid in known:
                continue
            job = _job_from_row(row, self.backend)
            if job is None:
                self.store.update(row.cbid, state="failed", error="cannot resume: the stored parameters are unreadable")
                continue
            job.owner = self.owner
            with self._lock:
                self._jobs[job.id] = job
            self._pool.submit(self._run, job)
            started.append(job)
        return started

    def cancel(self, target: str | Job | Iterable[Job] = "all", *, drop: bool = False) -> int:
        """Cancel one job (by object or id), a sweep (by its id) or ``"all"``; returns how many will end cancelled."""
        if isinstance(target, Job):
            jobs: list[Job] = [target]
        elif isinstance(target, str):
            if target == "all":
                jobs = self.jobs
            else:
                jobs = [j for j in self.jobs if j.sweep_id == target]
                one = self.get(target)
                if one is not None:
                    jobs.append(one)
        else:
            jobs = list(target)
        return sum(job.cancel(drop=drop) for job in jobs if not job.done())

    def wait(self, jobs: Iterable[Job] | None = None, timeout: float | None = None) -> bool:
        """Wait until the given jobs (default: all) end; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in list(jobs) if jobs is not None else self.jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.wait(left):
                return False
        return True

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop: unfinished jobs stay in the ledger for ``resume``."""
        self._closed = True
        self.gate.stop.set()
        self.client.interrupt()
        for job in self.jobs:
            job._wake.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        for job in self.jobs:
            if not job.done():
                job.error = "stopped when the runner shut down; %gemimg resume finishes it"
                job.exception = JobCancelled(job.error, task_id=job.task_id)
                self._finish(job, JobState.CANCELLED, ledger=False)

    @property
    def stats(self) -> dict[str, int]:
        """Requests sent so far by category."""
        return dict(self.gate.counts)

    # ---- the worker -----------------------------------------------------------------------

    def _notify(self, job: Job) -> None:
        for listener in (*job._listeners, *self._listeners):
            _safe_call(listener, job)

    def _set(self, job: Job, state: JobState, progress: int | None = None) -> None:
        changed = job.state is not state or (progress is not None and progress != job.progress)
        job.state = state
        if progress is not None:
            job.progress = progress
        if changed:
            self._notify(job)

    def _finish(self, job: Job, state: JobState, *, ledger: bool = True, **row: Any) -> None:
        job.finished_at = time.time()
        if ledger and state is not JobState.CACHED:
            self.store.update(job.cbid, state=state.value, finished=job.finished_at, error=job.error, **row)
        job.state = state
        job._done.set()
        self._notify(job)

    def _sleep(self, job: Job, seconds: float) -> None:
        if job._wake.wait(max(0.0, seconds)):
            job._wake.clear()
        if self._closed:
            raise _Stopped

    def _run(self, job: Job) -> None:
        try:
            self._run_job(job)
        except Exception:
            if not self._closed:  # after shutdown the store may be closed under a late worker: the row stays for resume
                raise
            log.debug("job %s stopped by shutdown", job.id, exc_info=True)

    def _run_job(self, job: Job) -> None:
        try:
            self._work(job)
        except _Stopped:
            return
        except JobCancelled as exc:
            job.error, job.exception = str(exc), exc
            self._finish(job, JobState.CANCELLED)
        except TaskFailedError as exc:
            job.error, job.exception = str(exc), exc
            job.cost_usd = 0.0  # failed tasks are refunded
            self._finish(job, JobState.FAILED, cost_usd=0.0)
        except TaskExpiredError as exc:
            job.error, job.exception = str(exc), exc
            self._finish(job, JobState.EXPIRED)
        except JobTimeoutError as exc:
            job.error, job.exception = str(exc), exc
            self._finish(job, JobState.TIMEOUT)
        except GemimgError as exc:
            job.error, job.exception = str(exc), exc
            if job.task_id is None:
                job.cost_usd = 0.0
            self._finish(job, JobState.FAILED, cost_usd=job.cost_usd)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            job.error = f"internal error: {type(exc).__name__}: {exc}"
            job.exception = JobError(job.error, task_id=job.task_id)
            self._finish(job, JobState.FAILED)

    def _check_cancel(self, job: Job) -> None:
        if job._cancel and (job.task_id is None or job._drop):
            what = "dropped after submit (it is still paid for)" if job.task_id else "cancelled before submit"
            raise JobCancelled(f"job {job.id} {what}", task_id=job.task_id)

    def _work(self, job: Job) -> None:
        if self._closed:
            raise _Stopped
        deadline = time.monotonic() + self.settings.job_timeout
        self._check_cancel(job)
        if job.task_id is None and self.store.get(job.cbid) is not None:
            # resumed before its submit was confirmed: it may have reached the gateway
            found = self.client.find_by_business_id(job.cbid)
            if found is not None:
                job.task_id = found.id
                job.cost_usd = job.params.price_usd or 0.0
                self.store.update(
                    job.cbid, state="submitted", task_id=found.id, submitted=job.submitted_at or time.time()
                )
        if job.task_id is None:
            urls = self._upload_refs(job)
            if self.store.get(job.cbid) is None:
                self.store.add(
                    cbid=job.cbid,
                    key=job.key,
                    repeat=job.repeat,
                    params={**job.params.describe(), "reference_urls": list(urls), **_parent_of(job)},
                    backend=self.backend,
                    price_usd=job.params.price_usd,
                    sweep_id=job.sweep_id,
                )
            self._check_cancel(job)
            self._set(job, JobState.SUBMITTING)
            status = self.client.submit(job.params, client_business_id=job.cbid, image_urls=urls)
            job.task_id = status.id
            job.submitted_at = time.time()
            job.cost_usd = job.params.price_usd or 0.0
            self.store.update(job.cbid, state="submitted", task_id=status.id, submitted=job.submitted_at)
            self._set(job, JobState.SUBMITTED)
        status = self._poll(job, deadline)
        if status.cost_usd is not None:
            job.cost_usd = status.cost_usd
        job.expires_at = status.expires_at
        if status.expires_at is not None and time.time() > status.expires_at:
            raise TaskExpiredError(
                f"the result of task {status.id} expired before it was downloaded", task_id=status.id
            )
        if not status.url:
            raise TaskFailedError(f"task {status.id} completed without an image URL", task_id=status.id)
        self._set(job, JobState.DOWNLOADING, 100)
        self.store.update(job.cbid, state="downloading", expires_at=status.expires_at, cost_usd=job.cost_usd)
        data = self.client.download(status.url, expected=job.params.pixel_size)
        job.provenance = self._provenance(job, status)
        name = safe_filename(job.params.describe(), job.id, job.submitted_at)
        job.path = self.store.write_image(data, name, job.provenance)
        self._finish(job, JobState.DONE, path=str(job.path), cost_usd=job.cost_usd)

    def _upload_refs(self, job: Job) -> tuple[str, ...]:
        urls: list[str] = []
        refs: tuple[ReferenceImage, ...] = job.params.references
        if any(r.data is not None for r in refs):
            self._set(job, JobState.UPLOADING)
        for ref in refs:
            if ref.url is not None:
                urls.append(ref.url)
                continue
            assert ref.data is not None
            with self._upload_lock(ref.sha256):  # one upload per content, even from parallel jobs
                known = self.store.upload_url(ref.sha256, self.backend)
                if known is None:
                    ext = {"jpeg": "jpg"}.get(ref.format or "png", ref.format or "png")
                    known = self.client.upload_image(
                        ref.data, filename=f"ref-{ref.sha256[:8]}.{ext}", mime=ref.mime or "image/png"
                    )
                    self.store.remember_upload(ref.sha256, self.backend, known)
            urls.append(known)
            self._check_cancel(job)
        return tuple(urls)

    def _upload_lock(self, sha256: str) -> threading.Lock:
        with self._lock:
            return self._upload_locks.setdefault(sha256, threading.Lock())

    def _poll(self, job: Job, deadline: float) -> TaskStatus:
        assert job.task_id is not None
        start = job.submitted_at or time.time()
        first = True
        looks: list[tuple[float, int]] = []  # (seconds since submit, progress) of every look so far
        while True:
            elapsed = time.time() - start
            delay = self._next_delay(elapsed, job.progress, first, looks)
            if time.monotonic() + delay > deadline:
                left = max(0.0, deadline - time.monotonic())
                self._sleep(job, left)
                raise JobTimeoutError(
                    f"task {job.task_id} did not finish within {self.settings.job_timeout:g}s; "
                    "it stays in the ledger and %gemimg resume can still collect it",
                    task_id=job.task_id,
                )
            self._sleep(job, delay)
            self._check_cancel(job)
            first = False
            asked = time.time()
            status = self.client.status(job.task_id)
            answered = time.time()
            self._rtts.append(answered - asked)
            seen = (asked + answered) / 2 - start
            if status.status == "completed":
                self._durations.append(seen)
                ups = [p for _, p in looks if 0 < p < 100]
                if ups:
                    self._peaks.append(max(ups))
                    self._rated.append(ups[-1] > ups[0])
                return status
            if status.status == "failed":
                reason = status.error_message or "no reason given"
                code = f" [{status.error_code}]" if status.error_code else ""
                raise TaskFailedError(
                    f"the gateway reported the task failed{code}: {reason}", task_id=job.task_id, code=status.error_code
                )
            state = JobState.IN_PROGRESS if status.status == "in_progress" else JobState.SUBMITTED
            looks.append((seen, status.progress if state is JobState.IN_PROGRESS else 0))
            self._set(job, state, max(job.progress, min(99, status.progress)))

    def _next_delay(self, elapsed: float, progress: int, first: bool, looks: Sequence[tuple[float, int]] = ()) -> float:
        """When to look next: sparse early, dense around the expected completion.

        When the server's progress rises between looks (``looks``: seconds
        since submit and progress of each earlier look), the completion is
        extrapolated from its rate to the highest progress finished tasks
        reached, and the next look goes one standard error after it (with one
        more look on the way when that error is large). The first two looks
        go early enough to catch the fastest tasks still running. Otherwise the expected
        duration comes from the progress (elapsed × 100 / progress) and the
        durations seen so far in this session. Never sooner than ``poll_min``
        after the last look, never later than ``poll_max``; always jittered.
        """
        s = self.settings
        history = sorted(self._durations)
        early = history[len(history) // 10] if len(history) >= 3 else None
        rising = sum(self._rated) >= 2  # progress has been a usable clock on recent tasks
        if first:
            delay = s.poll_first
            if early is not None:  # two looks before the fastest tasks end give a rate
                delay = max(delay, (0.3 if rising else 0.8) * early - elapsed)
            return self._jitter(delay)
        since = elapsed - looks[-1][0] if looks else 0.0
        soonest = max(0.05, s.poll_min - since)
        eta = self._progress_eta(looks)
        if eta is not None:
            when, spread = eta
            if spread > 0.5 * s.poll_min and when - 3 * spread - elapsed > 2 * s.poll_min:
                return self._jitter(min(s.poll_max, when - 3 * spread - elapsed))  # a look on the way narrows it
            return min(s.poll_max, max(soonest, when + spread - elapsed)) + self._rng.uniform(0, 0.1 * s.poll_min)
        ups = [p for _, p in looks if 0 < p < 100]
        if rising and early is not None and len(ups) == 1 and 0.8 * early - elapsed >= soonest:
            return max(soonest, self._jitter(0.8 * early - elapsed))  # a second look before the fastest tasks end
        estimates: list[float] = []
        if 0 < progress < 100 and elapsed > 0.5:
            estimates.append(elapsed * 100.0 / progress)
        if len(history) >= 3:
            estimates.append(statistics.median(history))
        if not estimates:
            return self._jitter(min(s.poll_max, max(s.poll_min, 0.5 * elapsed)))
        expected = min(estimates) if len(estimates) == 1 else statistics.fmean(estimates)
        remaining = expected - elapsed
        if remaining > 2 * s.poll_min:
            delay = 0.75 * remaining
            if len(history) < 3:  # nothing finished yet: a progress-only guess ignores queue time, so look again soon
                delay = min(delay, max(s.poll_min, 0.5 * elapsed))
            return self._jitter(min(s.poll_max, max(s.poll_min, delay)))
        return self._jitter(s.poll_min)

    def _progress_eta(self, looks: Sequence[tuple[float, int]]) -> tuple[float, float] | None:
        """Completion time (seconds since submit) and its uncertainty, from the progress rate.

        The rate comes from the first and last in-progress looks; the end is
        the highest progress finished tasks showed plus one (100 until some
        have finished, and then only 70 % of the way is trusted).
        """
        ups = [(t, p) for t, p in looks if 0 < p < 100]
        if len(ups) < 2 or ups[-1][1] <= ups[0][1] or ups[-1][0] <= ups[0][0]:
            return None
        (t0, p0), (t1, p1) = ups[0], ups[-1]
        rate = (p1 - p0) / (t1 - t0)
        known = bool(self._peaks)
        end = max(min(100.0, max(self._peaks) + 1.0) if known else 100.0, p1 + 1.0)
        left = (end - p1 - 0.5) / rate
        if not known:
            return t1 + 0.7 * left, 0.0
        # the server looked somewhere within the round trip; progress is whole numbers
        clock = statistics.median(self._rtts) / 12**0.5 if self._rtts else 0.0
        slope = (1 / 6) / (p1 - p0) ** 2 + 2 * (clock / (t1 - t0)) ** 2
        spread = ((1 / 6) / rate**2 + left**2 * slope + clock**2) ** 0.5
        return t1 + left, spread

    def _jitter(self, seconds: float) -> float:
        return max(0.05, seconds * self._rng.uniform(0.9, 1.1))

    def _provenance(self, job: Job, status: TaskStatus) -> dict[str, Any]:
        return {
            "generator": f"gemimg_jupyter {__version__}",
            "backend": self.backend,
            "params": job.params.describe(),
            "references": [{"sha256": r.sha256, "name": r.name} for r in job.params.references],
            "repeat": job.repeat,
            "task_id": status.id,
            "client_business_id": job.cbid,
            "sweep_id": job.sweep_id,
            "submitted_at": job.submitted_at,
            "completed_at": status.completed_at,
            "downloaded_at": time.time(),
            "cost_usd": job.cost_usd,
            **_parent_of(job),
        }


def _parent_of(job: Job) -> dict[str, Any]:
    """``{"parent": …}`` for an edit, ``{}`` otherwise (merged into the ledger params and provenance)."""
    return {"parent": job.parent} if job.parent else {}


def _provenance_from_file(path: Path) -> dict[str, Any]:
    try:
        return read_provenance(path)
    except (OSError, ValueError):
        return {}


def _job_from_row(row: LedgerRow, backend: str) -> Job | None:
    p: Mapping[str, Any] = row.params
    try:
        urls = list(p.get("reference_urls", []))
        hashes = list(p.get("references", [])) or [None] * len(urls)
        refs = tuple(
            ReferenceImage(sha256=h or ReferenceImage.from_url(u).sha256, name=u.rsplit("/", 1)[-1], url=u)
            for h, u in zip(hashes, urls, strict=False)
        )
        params = GenerationParams(
            prompt=str(p["prompt"]),
            model=str(p["model"]),
            size=str(p["size"]),
            resolution=str(p["resolution"]),
            temperature=p.get("temperature"),
            top_p=p.get("top_p"),
            references=refs,
        )
    except (KeyError, TypeError, ValueError):
        return None
    job = Job(params, repeat=row.repeat, sweep_id=row.sweep_id, backend=backend, cbid=row.cbid, parent=p.get("parent"))
    job.key = row.key
    job.task_id = row.task_id
    job.submitted_at = row.submitted
    job.created = row.created
    if row.task_id is not None:
        job.cost_usd = row.price_usd or 0.0
        job.state = JobState.SUBMITTED
    return job
