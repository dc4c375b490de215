"""Background jobs: submit, poll and download without blocking the caller.

:class:`JobRunner` owns a small thread pool (the in-flight cap), a shared
:class:`RateGate` (token buckets for submits and status queries; a 429 pauses
the whole lane), and the polling cadence. Each :class:`Job` is one requested
image; it notifies plain-callable listeners on every change, so the display
layer and the panel never have to be known here.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import sqlite3
import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from PIL import Image

from ._version import __version__
from .client import Category, ToAPIsClient
from .errors import (
    APIConnectionError,
    BudgetExceededError,
    ConfigError,
    ContentBlockedError,
    GemimgError,
    InvalidImageError,
    JobCancelled,
    JobError,
    JobTimeoutError,
    RateLimitError,
    ServerError,
    TaskBlockedError,
    TaskExpiredError,
    TaskFailedError,
)
from .images import load_thumbnail, png_bytes, read_provenance, thumbnail
from .models import (
    IMAGE_STATES,
    RESUMABLE_STATES,
    TERMINAL_STATES,
    GenerationParams,
    JobState,
    ReferenceImage,
    TaskStatus,
    state_values,
)
from .settings import Settings
from .store import LedgerRow, Store, safe_filename

__all__ = ["Job", "JobRunner", "Listener", "PollSchedule", "RateGate", "TokenBucket"]

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

    def reserve(self) -> float:
        """Take a token now, perhaps ahead of time; return the seconds until it is valid (never blocks)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 and self.rate > 0 else 0.0
            return max(wait, self._paused_until - now)

    def refund(self) -> None:
        """Give back a token whose request was refused with 429 (the gateway did not count it)."""
        with self._lock:
            self._tokens = min(float(self.burst), self._tokens + 1)

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (after a 429 with ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


class RateGate:
    """Shared limits for every job of a session (implements ``client.RequestGate``).

    Built once by the :class:`~.session.Session` and handed to the client and
    the runner. The runner's jobs never block a thread on a bucket: they
    :meth:`reserve` a token, wait for it in the scheduler, and send the
    request under a :meth:`ticket`, which :meth:`acquire` honours at once.
    """

    def __init__(self, settings: Settings) -> None:
        self._buckets: dict[str, TokenBucket] = {
            "submit": TokenBucket(settings.submit_rate, settings.submit_burst),
            "query": TokenBucket(settings.query_rate, settings.query_burst),
        }
        self.counts: dict[str, int] = {"submit": 0, "query": 0, "upload": 0, "download": 0, "rate_limited": 0}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.stop = threading.Event()

    def reserve(self, category: Category) -> float:
        """Take a token of ``category`` without blocking; seconds until the request may go."""
        bucket = self._buckets.get(category)
        return bucket.reserve() if bucket is not None else 0.0

    def refund(self, category: Category) -> None:
        """A request of ``category`` was refused with 429: its token goes back to the bucket."""
        bucket = self._buckets.get(category)
        if bucket is not None:
            bucket.refund()

    @contextmanager
    def ticket(self, category: Category) -> Iterator[None]:
        """Within this block, this thread's next ``acquire(category)`` uses the token already reserved."""
        self._local.ticket = category
        try:
            yield
        finally:
            self._local.ticket = None

    def acquire(self, category: Category) -> None:
        """Wait for the lane of ``category`` (unless a ticket was reserved), then count the request."""
        bucket = self._buckets.get(category)
        if getattr(self._local, "ticket", None) == category:
            self._local.ticket = None
        elif bucket is not None:
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
        self.session: Any = None
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
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._cancel = False
        self._drop = False
        self._adopt: LedgerRow | None = None  # another live process's row this job follows
        self._steps: Generator[float | None, None, None] | None = None  # the job as a state machine
        self._step_lock = threading.Lock()
        self._token = -1  # its entry in the scheduler's heap (older entries are stale)
        self._waker: Callable[[], None] | None = None
        self._slot = False  # holds one place in the runner's window of unfinished tasks
        self._reserved = 0.0  # budget reserved for its submit
        self._unsent = False  # its row is known to be "queued": no earlier try can have reached the gateway
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

    def wait_for(self, state: JobState | str, timeout: float) -> bool:
        """Block until the job is in ``state`` (``True``), or it ended elsewhere or ``timeout`` passed (``False``)."""
        target = JobState(state)
        with self._changed:
            self._changed.wait_for(lambda: self.state is target or self._done.is_set(), timeout)
        return self.state is target

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
                cached = load_thumbnail(self.path, long_side)
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
        if self._waker is not None:
            self._waker()
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
        if self.session is None:
            raise JobError(f"job {self.id} belongs to no session; use Session.pick/edit with it")
        return self.session

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


class _Retry(Exception):
    """Internal: not an answer yet (e.g. completed without a URL); look again."""


#: How an exception ends a job, first match wins (anything else is an internal error).
_FINAL_STATES: tuple[tuple[type[BaseException], JobState], ...] = (
    (JobCancelled, JobState.CANCELLED),
    (TaskBlockedError, JobState.BLOCKED),
    (ContentBlockedError, JobState.BLOCKED),  # refused at submit: no task, nothing charged
    (TaskFailedError, JobState.FAILED),
    (TaskExpiredError, JobState.EXPIRED),
    (JobTimeoutError, JobState.TIMEOUT),
    (GemimgError, JobState.FAILED),
)
#: Ledger states of a row another process ended, and what a follower shows while it runs.
_ENDED = frozenset(state_values(TERMINAL_STATES - IMAGE_STATES - RESUMABLE_STATES))
_FOLLOWED = {
    "queued": JobState.QUEUED,
    "uploading": JobState.UPLOADING,
    "submitting": JobState.SUBMITTING,
    "submitted": JobState.SUBMITTED,
    "in_progress": JobState.IN_PROGRESS,
    "downloading": JobState.DOWNLOADING,
}
_UNKNOWN_LIMIT = 5


def _final_state(exc: BaseException) -> JobState | None:
    return next((state for kind, state in _FINAL_STATES if isinstance(exc, kind)), None)


_Steps = Generator[float | None, None, None]


class PollSchedule:
    """When to look at a task next: the cadence and the progress/ETA model, with no threads or sockets.

    It learns from what the runner tells it: :meth:`observe` for each status
    round trip, :meth:`completed` when a task is seen done (with the looks it
    took). :meth:`next_delay` is a pure function of that memory and its
    arguments (plus jitter from ``rng``).
    """

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._durations: deque[float] = deque(maxlen=50)
        self._peaks: deque[int] = deque(maxlen=50)  # the highest in-progress value each finished task showed
        self._rated: deque[bool] = deque(maxlen=20)  # whether progress rose between looks on recent tasks
        self._rtts: deque[float] = deque(maxlen=20)  # round trips of recent status queries

    def observe(self, rtt: float) -> None:
        """One status query took ``rtt`` seconds."""
        self._rtts.append(rtt)

    def completed(self, seen: float, looks: Sequence[tuple[float, int]]) -> None:
        """A task was seen completed ``seen`` seconds after its submit, after ``looks``."""
        self._durations.append(seen)
        ups = [p for _, p in looks if 0 < p < 100]
        if ups:
            self._peaks.append(max(ups))
            self._rated.append(ups[-1] > ups[0])

    def next_delay(self, elapsed: float, progress: int, first: bool, looks: Sequence[tuple[float, int]] = ()) -> float:
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
            delay = s.poll_first if early is not None else 1.5 * s.poll_first  # nothing known: queued anyway
            if early is not None:  # two looks before the fastest tasks end give a rate
                delay = max(delay, (0.3 if rising else 0.8) * early - elapsed)
            return self._jitter(delay)
        since = elapsed - looks[-1][0] if looks else 0.0
        soonest = max(0.05, s.poll_min - since)
        eta = self.progress_eta(looks)
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
            return self._jitter(min(s.poll_max, max(s.poll_min, elapsed)))
        expected = min(estimates) if len(estimates) == 1 else statistics.fmean(estimates)
        remaining = expected - elapsed
        if remaining > 2 * s.poll_min:
            delay = 0.75 * remaining
            if len(history) < 3:  # nothing finished yet: a progress-only guess ignores queue time, so look again soon
                delay = min(delay, max(s.poll_min, elapsed))
            return self._jitter(min(s.poll_max, max(s.poll_min, delay)))
        return self._jitter(s.poll_min)

    def progress_eta(self, looks: Sequence[tuple[float, int]]) -> tuple[float, float] | None:
        """Completion time (seconds since submit) and its uncertainty, from the progress rate.

        The rate comes from the first and last in-progress looks; the end is
        the highest progress finished tasks showed plus one (100 until some
        have finished, and then only 85 % of the way is trusted).
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
            return t1 + 0.85 * left, 0.0
        # the server looked somewhere within the round trip; progress is whole numbers
        clock = statistics.median(self._rtts) / 12**0.5 if self._rtts else 0.0
        slope = (1 / 6) / (p1 - p0) ** 2 + 2 * (clock / (t1 - t0)) ** 2
        spread = ((1 / 6) / rate**2 + left**2 * slope + clock**2) ** 0.5
        return t1 + left, spread

    def _jitter(self, seconds: float) -> float:
        return max(0.05, seconds * self._rng.uniform(0.9, 1.1))


class JobRunner:
    """Runs jobs as state machines: one scheduler thread, a small I/O pool, shared limits.

    Each job is a generator that yields how long to wait before its next step
    (``None``: until woken). The scheduler keeps a heap of due times and hands
    due steps to an I/O pool sized by the rates, not by the number of jobs,
    so 1,000 unfinished tasks are 1,000 heap entries, not 1,000 threads.
    Unfinished tasks are limited by an adaptive window: it starts at the
    submit burst, halves on a submit 429, grows by one as tasks finish, and
    stays under ``max_in_flight`` only when that is set.

    Parameters
    ----------
    client : ToAPIsClient
        The gateway client.
    store : Store
        Ledger and image files.
    settings : Settings
        In-flight cap, rates, polling cadence, deadline.
    backend : str
        ``"sim"`` or ``"toapis"``: recorded in the ledger and provenance.
    gate : RateGate, optional
        The session's rate gate, shared with the client (built here when not given).
    """

    def __init__(
        self, client: ToAPIsClient, store: Store, settings: Settings, *, backend: str, gate: RateGate | None = None
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.backend = backend
        self.gate = gate or RateGate(settings)
        if client.gate is not self.gate:
            client.gate = self.gate
        self._pool = ThreadPoolExecutor(max_workers=io_threads(settings), thread_name_prefix="gemimg-io")
        # downloads and writes have their own few threads, so status queries never wait behind them
        self._downloads = ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS, thread_name_prefix="gemimg-dl")
        self._heap: list[tuple[float, int, Job]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._scheduler: threading.Thread | None = None
        self._window = float(max(1, settings.submit_burst))
        self._ceiling = float(settings.max_in_flight) if settings.max_in_flight else math.inf
        self._unfinished = 0
        self._waiting: deque[Job] = deque()
        self._last_shrink = 0.0
        self._floor = 1.0  # unfinished tasks when the gateway last accepted a submit: it took that many
        self._committed = 0.0  # budget reserved or spent by this runner's submits
        self._jobs: dict[str, Job] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._upload_locks: dict[str, threading.Lock] = {}
        self._closed = False
        self._rng = random.Random()
        self.polls = PollSchedule(settings, self._rng)
        store.start_heartbeat()
        self.session: Any = None  # the Session, handed to every Job (for edit, pick, lineage)

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
        """Start one job and return at once (a cache hit returns a finished job)."""
        return self.submit_many([(params, repeat)], fresh=fresh, sweep_id=sweep_id, listeners=listeners, parent=parent)[
            0
        ]

    def submit_many(
        self,
        items: Sequence[tuple[GenerationParams, int]],
        *,
        fresh: bool = False,
        sweep_id: str | None = None,
        listeners: Sequence[Listener] = (),
        parent: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Start jobs for ``(params, repeat)`` pairs; the ledger decides who pays, in one transaction.

        A request already running in this session is shared; one another live
        process works on is adopted (followed, its image used); one whose owner
        is gone is taken over; a stored image is a cache hit. Only the rest are
        new jobs that pay. ``parent`` (``cbid``, ``key``, ``sha256``) names the
        image these edit.
        """
        if self._closed:
            raise JobError("the job runner is shut down; load the extension again")
        out: list[Job] = []
        new: list[Job] = []
        batch: dict[str, Job] = {}
        for params, repeat in items:
            key = params.cache_key(repeat)
            shared = None if fresh else (batch.get(key) or self._running(key))
            if shared is not None:  # the same request already running: share it instead of paying twice
                for listener in listeners:
                    shared.add_listener(listener)
                out.append(shared)
                continue
            job = Job(params, repeat=repeat, sweep_id=sweep_id, backend=self.backend, parent=parent)
            batch[key] = job
            new.append(job)
            out.append(job)
        claims = self.store.claim_many([self._request(job) for job in new], fresh=fresh)
        for job, claim in zip(new, claims, strict=True):
            row = claim.row
            if row is not None and claim.kind in ("adopt", "takeover"):
                job.cbid = row.cbid
                job.task_id = row.task_id
                job.submitted_at = row.submitted
                job.sweep_id = job.sweep_id or row.sweep_id
                if claim.kind == "takeover" and row.task_id is not None:
                    job.cost_usd = row.cost_usd if row.cost_usd is not None else (row.price_usd or 0.0)
                job.state = JobState.SUBMITTED if row.task_id else JobState.QUEUED
            self._register(job)
            for listener in listeners:
                job.add_listener(listener)
            if claim.kind == "cached" and row is not None and row.path:
                job.path = Path(row.path)
                job.task_id = row.task_id
                job.provenance = _provenance_from_file(job.path)
                job.progress = 100
                self._finish(job, JobState.CACHED)
                continue
            job._adopt = row if claim.kind == "adopt" else None
            job._unsent = claim.kind == "new" or (row is not None and row.state == "queued")
            self._start(job)
        return out

    def _running(self, key: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.key == key and not j.done() and not j._cancel), None)

    def _request(self, job: Job) -> dict[str, Any]:
        urls = [r.url for r in job.params.references if r.url is not None]
        return {
            "cbid": job.cbid,
            "key": job.key,
            "repeat": job.repeat,
            "params": {**job.params.as_dict(), "reference_urls": urls, **_parent_of(job)},
            "backend": self.backend,
            "price_usd": job.params.price_usd,
            "sweep_id": job.sweep_id,
        }

    def _register(self, job: Job) -> None:
        """Give the job a short id unique in this runner (grown on a collision) and list it."""
        with self._lock:
            n, extra = 6, 0
            while True:
                short = job.cbid[-n:] if n <= len(job.cbid) else f"{job.cbid[-6:]}-{extra}"
                if short not in self._jobs:
                    break
                if n <= len(job.cbid):
                    n += 1
                else:
                    extra += 1
            job.id = short
            job.session = self.session
            self._jobs[short] = job

    def resume(self) -> list[Job]:
        """Pick up unfinished ledger rows whose owner is gone (never a live process's)."""
        started: list[Job] = []
        known = {j.cbid for j in self.jobs if not j.done()}
        for row in self.store.orphans(self.backend):
            if row.cbid in known:
                continue
            job = _job_from_row(row, self.backend)
            if job is None:
                self.store.update(row.cbid, state="failed", error="cannot resume: the stored parameters are unreadable")
                continue
            if self.store.take_over(row.cbid) is None:  # another process took it first
                continue
            self._register(job)
            self._start(job)
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
        """Stop: unfinished jobs stay in the ledger, handed back so a re-run or ``resume`` takes them at once."""
        self._closed = True
        self.store.stop_heartbeat()
        self.gate.stop.set()
        self.client.interrupt()
        for job in self.jobs:
            job._wake.set()
        with self._cv:
            self._cv.notify_all()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._downloads.shutdown(wait=wait, cancel_futures=True)
        try:
            self.store.release()
        except (sqlite3.Error, OSError, ConfigError):
            log.debug("could not hand the rows back", exc_info=True)
        for job in self.jobs:
            if not job.done():
                job.error = "stopped when the runner shut down; %gemimg resume finishes it"
                job.exception = JobCancelled(job.error, task_id=job.task_id)
                self._finish(job, JobState.CANCELLED, ledger=False)

    @property
    def stats(self) -> dict[str, int]:
        """Requests sent so far by category."""
        return dict(self.gate.counts)

    @property
    def window(self) -> float:
        """How many unfinished tasks may be out at once right now."""
        return min(self._window, self._ceiling)

    # ---- the scheduler --------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        job._steps = self._drive(job)
        job._waker = lambda: self._schedule(job, 0.0)
        with self._cv:
            if self._scheduler is None:
                self._scheduler = threading.Thread(target=self._schedule_loop, name="gemimg-scheduler", daemon=True)
                self._scheduler.start()
        self._schedule(job, 0.0)

    def _schedule(self, job: Job, delay: float) -> None:
        with self._cv:
            job._token = next(self._seq)
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), job._token, job))
            self._cv.notify()

    def _schedule_loop(self) -> None:
        while True:
            ready: list[Job] = []
            with self._cv:
                while not self._closed:
                    now = time.monotonic()
                    while self._heap and self._heap[0][0] <= now:
                        _, token, job = heapq.heappop(self._heap)
                        if token == job._token:
                            ready.append(job)
                    if ready:
                        break
                    self._cv.wait(self._heap[0][0] - now if self._heap else None)
                if self._closed:
                    return
            for job in ready:
                try:
                    self._pool.submit(self._step, job)
                except RuntimeError:  # the pool shut down
                    return

    def _step(self, job: Job) -> None:
        """Run the job to its next wait; schedule it again (or leave it parked until woken)."""
        with job._step_lock:
            steps = job._steps
            if steps is None or job.done():
                return
            try:
                delay = steps.send(None)
            except StopIteration:
                job._steps = None
                return
            except BaseException as exc:  # noqa: BLE001 - a job must always end, whatever happened
                job._steps = None
                self._abort(job, exc)
                return
            if delay is None:
                return  # parked: a free slot or a cancel wakes it
            if delay == _TO_DOWNLOADS:
                with suppress(RuntimeError):  # after shutdown the job stays in the ledger
                    self._downloads.submit(self._step, job)
                return
            if job._wake.is_set():
                delay = 0.0
        self._schedule(job, delay)

    def _woke(self, job: Job) -> None:
        job._wake.clear()
        if self._closed:
            raise _Stopped

    # ---- the window and the budget ---------------------------------------------------------

    def _take_slot(self, job: Job) -> bool:
        with self._lock:
            if job._slot:
                return True
            if self._unfinished < self.window:
                self._unfinished += 1
                job._slot = True
                return True
            if job not in self._waiting:
                self._waiting.append(job)
            return False

    def _release_slot(self, job: Job, *, grew: bool = False) -> None:
        wake: list[Job] = []
        with self._lock:
            if not job._slot:
                return
            job._slot = False
            self._unfinished -= 1
            if grew:
                self._window = min(self._window + 1.0, 1e6)
            free = int(self.window - self._unfinished)
            while self._waiting and len(wake) < free:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    wake.append(waiter)
        for waiter in wake:
            self._schedule(waiter, 0.0)

    def _shrink_window(self) -> None:
        """A submit 429: halve the window, but never below what the gateway last accepted.

        At most once per second, and never under the number of unfinished
        tasks at the last accepted submit: a server that caps unfinished tasks
        at C accepts only below C, so the window settles at C; random 429s
        (a storm, a quota blip) come at any level and barely move it.
        """
        with self._lock:
            now = time.monotonic()
            if now - self._last_shrink >= 1.0:
                self._window = max(1.0, self._floor, min(self._window, self._unfinished) / 2)
                self._last_shrink = now

    def _accepted(self) -> None:
        with self._lock:
            self._floor = float(self._unfinished)

    def _reserve_budget(self, job: Job) -> None:
        """Reserve the job's price before its submit, so any number in flight cannot pass ``max_cost_usd``."""
        budget = self.settings.max_cost_usd
        price = job.params.price_usd or 0.0
        with self._lock:
            if job._reserved or budget is None:
                return
            if self._committed + price > budget + 1e-9:
                raise BudgetExceededError(price, self._committed, budget)
            self._committed += price
            job._reserved = price

    def _settle_budget(self, job: Job) -> None:
        """At the end: the reservation becomes what the job really cost ($0 if never accepted or refunded)."""
        with self._lock:
            if self.settings.max_cost_usd is not None and job._reserved:
                self._committed += (job.cost_usd if job.task_id else 0.0) - job._reserved
            job._reserved = 0.0

    # ---- the worker -----------------------------------------------------------------------

    def _notify(self, job: Job) -> None:
        with job._changed:
            job._changed.notify_all()
        for listener in (*job._listeners, *self._listeners):
            _safe_call(listener, job)

    def _set(self, job: Job, state: JobState, progress: int | None = None) -> None:
        changed = job.state is not state or (progress is not None and progress != job.progress)
        job.state = state
        if progress is not None:
            job.progress = progress
        if changed:
            self._notify(job)

    def _transition(self, job: Job, state: JobState, progress: int | None = None, **row: Any) -> None:
        """Move a job to ``state``: the ledger row first (state plus ``row`` columns), then memory and listeners."""
        self.store.update(job.cbid, state=state.value, **row)
        self._set(job, state, progress)

    def _finish(self, job: Job, state: JobState, *, ledger: bool = True, **row: Any) -> None:
        job.finished_at = time.time()
        self._release_slot(job)
        self._settle_budget(job)
        if ledger and state is not JobState.CACHED and job._adopt is None:
            if state is JobState.TIMEOUT:
                row["owner"] = None  # resumable: anyone (a re-run, resume) may take it over at once
            try:
                self.store.update(job.cbid, state=state.value, finished=job.finished_at, error=job.error, **row)
            except (sqlite3.Error, OSError) as exc:  # the job still ends; the row stays unfinished, so resumable
                log.warning("job %s: could not write its end to the ledger: %s", job.id, exc)
        job.state = state
        job._done.set()
        self._notify(job)

    def _abort(self, job: Job, exc: BaseException) -> None:
        """End a job that an unexpected error escaped from (it must end, whatever happened)."""
        if not job.done():
            if not isinstance(exc, Exception):
                job.error = f"stopped: {type(exc).__name__}"
            job.exception = job.exception or JobError(job.error or "stopped", task_id=job.task_id)
            job.finished_at = time.time()
            self._release_slot(job)
            job.state = JobState.TIMEOUT if job.task_id else JobState.CANCELLED
            job._done.set()
            self._notify(job)
        if not self._closed:
            log.debug("job %s ended by an unexpected error", job.id, exc_info=(type(exc), exc, exc.__traceback__))

    def _drive(self, job: Job) -> _Steps:
        """The job from start to end, as steps; every exception ends in its final state (see ``_FINAL_STATES``)."""
        try:
            yield from self._work(job)
        except _Stopped:
            return
        except Exception as exc:
            state = _final_state(exc)
            if state is None:
                log.exception("job %s failed unexpectedly", job.id)
                job.error = f"internal error: {type(exc).__name__}: {exc}"
                job.exception = JobError(job.error, task_id=job.task_id)
                state = JobState.FAILED if job.task_id is None else JobState.TIMEOUT
            else:
                job.error, job.exception = str(exc), exc if isinstance(exc, GemimgError) else None
            if job.task_id is None:
                job.cost_usd = 0.0  # nothing was paid
            self._finish(job, state, cost_usd=job.cost_usd)

    def _check_cancel(self, job: Job) -> None:
        if job._cancel and (job.task_id is None or job._drop or job._adopt is not None):
            what = "dropped after submit (it is still paid for)" if job.task_id else "cancelled before submit"
            raise JobCancelled(f"job {job.id} {what}", task_id=job.task_id)

    def _stop_now(self, job: Job) -> bool:
        return self._closed or (job._cancel and job._drop)

    def _work(self, job: Job) -> _Steps:
        if self._closed:
            raise _Stopped
        deadline = time.monotonic() + self.settings.job_timeout
        if job._adopt is not None and (yield from self._follow(job, deadline)):
            return
        if job.task_id is None:
            yield from self._submit(job)
            deadline = time.monotonic() + self.settings.job_timeout  # waiting for a turn is not the task's time
        yield from self._collect(job, deadline)

    def _submit(self, job: Job) -> _Steps:
        """Upload references, wait for a place in the window and a submit token, submit once.

        A 429 costs nothing and fails nothing: the window halves, the lane
        pauses for ``Retry-After``, the job tries again (however long the
        gateway refuses: nothing is paid meanwhile, and cancel stops it). After an answer that
        may hide an accepted task (connection error, 5xx), the next try first
        looks the task up by its ``client_business_id``.
        """
        urls = self._upload_refs(job)
        tries = 0
        while job.task_id is None:
            self._check_cancel(job)
            while not self._take_slot(job):
                yield None  # parked until a task finishes
                self._woke(job)
                self._check_cancel(job)
            self._reserve_budget(job)
            wait = self.gate.reserve("submit")
            if wait > 0:
                yield wait
                self._woke(job)
                self._check_cancel(job)
            try:
                row = None if job._unsent else self.store.get(job.cbid)
                if row is not None and row.state in ("submitting", "uploading"):
                    # this or a dead owner's earlier try may have reached the gateway: look before paying again
                    found = self.client.find_by_business_id(job.cbid)
                    if found is not None:
                        job.task_id = found.id
                        job.submitted_at = row.submitted or time.time()
                        job.cost_usd = job.params.price_usd or 0.0
                        self._transition(job, JobState.SUBMITTED, task_id=found.id, submitted=job.submitted_at)
                        break
                params = {**job.params.as_dict(), "reference_urls": list(urls), **_parent_of(job)}
                self._transition(job, JobState.SUBMITTING, params=params)
                with self.gate.ticket("submit"):
                    status = self.client.submit(job.params, client_business_id=job.cbid, image_urls=urls, tries=1)
            except RateLimitError as exc:
                self.gate.refund("submit")
                self._release_slot(job)
                self._shrink_window()
                pause = exc.retry_after if exc.retry_after is not None else self.settings.retry.base
                if job._unsent:  # a clear refusal of the only try: no look-up needed before the next one
                    self._transition(job, JobState.QUEUED)
                else:  # an earlier, ambiguous try may still have reached the gateway: the row stays "submitting"
                    self._set(job, JobState.QUEUED)
                yield min(pause, self.settings.retry.max_retry_after)
                self._woke(job)
                continue
            except (APIConnectionError, ServerError) as exc:
                job._unsent = False  # it may have reached the gateway: look it up before the next try
                tries += 1
                if tries >= self.settings.retry.max_tries:
                    raise
                yield self.settings.retry.delay(tries, exc.__dict__.get("retry_after"), rng=self._rng)
                self._woke(job)
                continue
            self._accepted()
            job.task_id = status.id
            job.submitted_at = time.time()
            job.cost_usd = job.params.price_usd or 0.0  # spent the moment the gateway accepts it
            self._transition(job, JobState.SUBMITTED, task_id=status.id, submitted=job.submitted_at)

    def _follow(self, job: Job, deadline: float) -> Generator[float | None, None, bool]:
        """Follow a row another live process works on; ``True`` once it ended, ``False`` after taking it over."""
        every = min(1.0, max(self.settings.poll_min, 0.2))
        while True:
            self._check_cancel(job)
            row = self.store.get(job.cbid)
            if row is not None and row.state == "done" and row.path and Path(row.path).is_file():
                job.path, job.task_id, job.progress = Path(row.path), row.task_id, 100
                job.provenance = _provenance_from_file(job.path)
                self._finish(job, JobState.CACHED)  # the other process paid; here it is free
                return True
            if row is not None and row.state in _ENDED:
                job.error = row.error or f"the request ended {row.state} in another process"
                job.exception = JobError(job.error, task_id=row.task_id)
                self._finish(job, JobState(row.state))
                return True
            if row is None or row.state == "timeout" or not self.store.owner_alive(row.owner):
                took = self.store.take_over(job.cbid)
                if took is not None:
                    job._adopt = None
                    job.task_id, job.submitted_at = took.task_id, took.submitted
                    if took.task_id is not None:
                        job.cost_usd = took.cost_usd if took.cost_usd is not None else (took.price_usd or 0.0)
                    return False
            elif row.state in _FOLLOWED:
                self._set(job, _FOLLOWED[row.state])
            if time.monotonic() > deadline:
                raise JobTimeoutError(
                    f"job {job.id}: another process is still making this image; run the cell again to pick it up",
                    task_id=job.task_id,
                )
            yield every
            self._woke(job)

    def _collect(self, job: Job, deadline: float) -> _Steps:
        """Poll, download and write: after payment only a verdict ends the job without its image.

        Anything else (HTML or non-JSON answers, a 404 on a result before it
        expires, connection errors, timeouts, disk errors) is tried again with
        backoff until the job's deadline; then the row stays resumable, with
        the last problem as its reason.
        """
        assert job.task_id is not None
        problem: BaseException | None = None
        tries = 0
        while True:
            try:
                status = yield from self._poll(job, deadline, problem)
                self._release_slot(job, grew=True)  # the gateway has finished it: room for one more
                problem = None
                if status.cost_usd:  # never zero a billed cost
                    job.cost_usd = status.cost_usd
                job.expires_at = status.expires_at
                if status.expires_at is not None and time.time() > status.expires_at:
                    raise TaskExpiredError(
                        f"the result of task {status.id} expired before it was downloaded", task_id=status.id
                    )
                if not status.url:
                    raise _Retry(f"task {status.id} completed without an image URL")
                self._transition(job, JobState.DOWNLOADING, 100, expires_at=status.expires_at, cost_usd=job.cost_usd)
                yield _TO_DOWNLOADS
                self._woke(job)
                data = self.client.download(
                    status.url,
                    expected=job.params.pixel_size,
                    deadline=deadline,
                    cancelled=lambda: self._stop_now(job),
                    tries=1,
                )
                job.provenance = self._provenance(job, status)
                note = getattr(data, "note", None)  # paid for and kept, though not the size asked for
                if note:
                    job.provenance["size_note"] = note
                name = safe_filename(job.params.as_dict(), job.id, job.submitted_at)
                job.path = self.store.write_image(data, name, job.provenance)
                self._finish(job, JobState.DONE, path=str(job.path), cost_usd=job.cost_usd)
                return
            except _Stopped:
                raise
            except JobCancelled:
                raise
            except TaskExpiredError as exc:
                if job.expires_at is not None and time.time() > job.expires_at:
                    raise
                problem = exc  # a result URL that 404s before its expires_at: a CDN not in sync yet
            except (JobTimeoutError, TaskFailedError):
                raise
            except InvalidImageError as exc:  # the client already downloaded it three times: leave it resumable
                raise JobTimeoutError(
                    f"task {job.task_id}: {exc}; it stays in the ledger: %gemimg resume or a re-run tries again",
                    task_id=job.task_id,
                ) from None
            except (GemimgError, OSError, sqlite3.Error, _Retry) as exc:
                problem = exc
                if isinstance(exc, RateLimitError):
                    self.gate.refund("query")
            if self._stop_now(job):
                raise JobCancelled(f"job {job.id} dropped after submit (it is still paid for)", task_id=job.task_id)
            tries += 1
            self._set(job, JobState.IN_PROGRESS, job.progress)
            wait = self.settings.retry.delay(tries, getattr(problem, "retry_after", None), rng=self._rng)
            wait = min(wait, self.settings.poll_max, max(0.0, deadline - time.monotonic()))
            log.info("job %s: trying again in %.1fs after: %s", job.id, wait, problem)
            yield wait
            self._woke(job)
            self._check_cancel(job)
            if time.monotonic() >= deadline:
                raise self._overdue(job, problem)

    def _overdue(self, job: Job, problem: BaseException | None) -> JobTimeoutError:
        reason = f" (last problem: {str(problem).splitlines()[0] if str(problem) else type(problem).__name__})"
        return JobTimeoutError(
            f"task {job.task_id} has no image after {self.settings.job_timeout:g}s"
            f"{reason if problem is not None else ''}; it stays in the ledger: run the cell again or "
            "%gemimg resume to collect it",
            task_id=job.task_id,
        )

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

    def _poll(
        self, job: Job, deadline: float, problem: BaseException | None = None
    ) -> Generator[float | None, None, TaskStatus]:
        """Look until the task completes (returned) or fails (raised); after a ``problem`` the first look is now.

        Each look is one status query with a read deadline of seconds; its
        errors go up to :meth:`_collect`, which retries them. Five answers in
        a row with an undocumented status fail the job, naming the status.
        """
        assert job.task_id is not None
        start = job.submitted_at or time.time()
        first = problem is None
        looks: list[tuple[float, int]] = []  # (seconds since submit, progress) of every look so far
        unknown = 0
        while True:
            elapsed = time.time() - start
            delay = self.polls.next_delay(elapsed, job.progress, first, looks) if problem is None or looks else 0.0
            if time.monotonic() + delay > deadline:
                yield max(0.0, deadline - time.monotonic())
                self._woke(job)
                self._check_cancel(job)
                raise self._overdue(job, problem)
            yield delay
            self._woke(job)
            self._check_cancel(job)
            wait = self.gate.reserve("query")  # the query bucket is shared by every job, however many
            if wait > 0:
                yield wait
                self._woke(job)
                self._check_cancel(job)
            first = False
            asked = time.time()
            with self.gate.ticket("query"):
                status = self.client.status(job.task_id, tries=1)
            answered = time.time()
            self.polls.observe(answered - asked)
            seen = (asked + answered) / 2 - start
            if status.status == "completed":
                self.polls.completed(seen, looks)
                return status
            if status.status == "failed":
                self._release_slot(job)
                job.cost_usd = status.cost_usd or 0.0  # the gateway's billing: a refund is $0
                reason = status.error_message or "no reason given"
                code = f" [{status.error_code}]" if status.error_code else ""
                kind = TaskBlockedError if status.blocked else TaskFailedError
                what = "refused the request" if status.blocked else "reported the task failed"
                raise kind(f"the gateway {what}{code}: {reason}", task_id=job.task_id, code=status.error_code)
            if status.status == "unknown":
                unknown += 1
                if unknown >= _UNKNOWN_LIMIT:  # a verdict of sorts: polling until the deadline would not help
                    self._release_slot(job)
                    raise TaskFailedError(
                        f"the gateway answered task {job.task_id} with a status it does not document, "
                        f"{status.raw_status!r}, {unknown} times in a row; the job ends here and keeps its cost "
                        "(python -m gemimg_jupyter.probe shows what the gateway says)",
                        task_id=job.task_id,
                        code="unknown_status",
                    )
            else:
                unknown = 0
            state = JobState.IN_PROGRESS if status.status == "in_progress" else JobState.SUBMITTED
            looks.append((seen, status.progress if state is JobState.IN_PROGRESS else 0))
            self._set(job, state, max(job.progress, min(99, status.progress)))

    def _provenance(self, job: Job, status: TaskStatus) -> dict[str, Any]:
        return {
            "generator": f"gemimg_jupyter {__version__}",
            "backend": self.backend,
            "params": job.params.as_dict(),
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


def io_threads(settings: Settings) -> int:
    """The I/O pool's size, from the rates (requests per second × a short round trip), not from the job count."""
    return max(8, min(24, math.ceil(settings.submit_rate + settings.query_rate / 5)))


DOWNLOAD_THREADS = 8
_TO_DOWNLOADS = -1.0  # a step's answer meaning "go on in the download pool, now"


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
