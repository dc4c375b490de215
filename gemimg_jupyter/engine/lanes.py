"""Where the jobs' steps run: one scheduler thread and two bounded pools (:class:`Lanes`).

Each job is a generator of steps (:data:`~.handle.Steps`) that yields how
long to wait before its next step (``None``: until woken). The scheduler
keeps a heap of due times and hands due steps to an I/O pool sized by the
rates, not by the number of jobs, so 1,000 unfinished tasks are 1,000 heap
entries, not 1,000 threads. Downloads and file writes have a few threads of
their own, so a status query never waits behind a slow download.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.engine.handle import Job, Steps

log = logging.getLogger(__name__)

DOWNLOAD_THREADS = 8
TO_DOWNLOADS = -1.0  # a step's answer meaning "go on in the download pool, now"


class Stopped(Exception):
    """Internal: the runner is shutting down."""


def io_threads(settings: Settings) -> int:
    """The I/O pool's size, from the rates (requests per second × a short round trip), not from the job count."""
    return max(8, min(24, math.ceil(settings.submit_rate + settings.query_rate / 5)))


class Lanes:
    """The scheduler thread, its heap of due steps, and the I/O and download pools it hands them to.

    ``abort(job, exc)`` ends a job that an unexpected error escaped from
    (a job must always end, whatever happened).
    """

    def __init__(self, settings: Settings, abort: Callable[[Job, BaseException], None]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=io_threads(settings), thread_name_prefix="gemimg-io")
        self._downloads = ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS, thread_name_prefix="gemimg-dl")
        self._heap: list[tuple[float, int, Job]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._scheduler: threading.Thread | None = None
        self._abort = abort
        #: set by :meth:`close`: every job's next wake-up ends its steps
        self.closed = False

    def start(self, job: Job, steps: Steps) -> None:
        """Run ``steps`` as ``job``'s state machine, its first step now."""
        job._steps = steps
        job._waker = lambda: self.schedule(job, 0.0)
        with self._cv:
            if self._scheduler is None:
                self._scheduler = threading.Thread(target=self._schedule_loop, name="gemimg-scheduler", daemon=True)
                self._scheduler.start()
        self.schedule(job, 0.0)

    def schedule(self, job: Job, delay: float) -> None:
        """Run the job's next step in ``delay`` seconds (an earlier entry for it becomes stale)."""
        with self._cv:
            job._token = next(self._seq)
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), job._token, job))
            self._cv.notify()

    def woke(self, job: Job) -> None:
        """Called by a step after each wait: clears the job's wake-up, ends it if the runner is shutting down."""
        job._wake.clear()
        if self.closed:
            raise Stopped

    def close(self) -> None:
        """From now on no step is handed out and every job's next wake-up ends its steps."""
        self.closed = True

    def shutdown(self, jobs: Iterable[Job], *, wait: bool) -> None:
        """Wake every job and the scheduler so they see :attr:`closed`, and stop the pools."""
        self.close()
        for job in jobs:
            job._wake.set()
        with self._cv:
            self._cv.notify_all()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._downloads.shutdown(wait=wait, cancel_futures=True)

    def _schedule_loop(self) -> None:
        while True:
            ready: list[Job] = []
            with self._cv:
                while not self.closed:
                    now = time.monotonic()
                    while self._heap and self._heap[0][0] <= now:
                        _, token, job = heapq.heappop(self._heap)
                        if token == job._token:
                            ready.append(job)
                    if ready:
                        break
                    self._cv.wait(self._heap[0][0] - now if self._heap else None)
                if self.closed:
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
            except BaseException as exc:  # a job must always end, whatever happened
                job._steps = None
                self._abort(job, exc)
                if not self.closed:
                    log.debug(
                        "job %s ended by an unexpected error", job.id, exc_info=(type(exc), exc, exc.__traceback__)
                    )
                return
            if delay is None:
                return  # parked: a free slot or a cancel wakes it
            if delay == TO_DOWNLOADS:
                with suppress(RuntimeError):  # after shutdown the job stays in the ledger
                    self._downloads.submit(self._step, job)
                return
            if job._wake.is_set():
                delay = 0.0
        self.schedule(job, delay)
