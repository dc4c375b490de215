"""Where the jobs' steps run: one scheduler thread and two bounded pools (:class:`Lanes`).

Each job is a generator of steps (:data:`~.record.Steps`) that yields how
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
from gemimg_jupyter.engine.record import JobRecord, Steps

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

    ``abort(rec, exc)`` ends a job that an unexpected error escaped from
    (a job must always end, whatever happened).
    """

    def __init__(self, settings: Settings, abort: Callable[[JobRecord, BaseException], None]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=io_threads(settings), thread_name_prefix="gemimg-io")
        self._downloads = ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS, thread_name_prefix="gemimg-dl")
        self._heap: list[tuple[float, int, JobRecord]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._scheduler: threading.Thread | None = None
        self._abort = abort
        #: set by :meth:`close`: every job's next wake-up ends its steps
        self.closed = False

    def start(self, rec: JobRecord, steps: Steps) -> None:
        """Run ``steps`` as the job's state machine, its first step now."""
        rec.steps = steps
        rec.waker = lambda: self.schedule(rec, 0.0)
        with self._cv:
            if self._scheduler is None:
                self._scheduler = threading.Thread(target=self._schedule_loop, name="gemimg-scheduler", daemon=True)
                self._scheduler.start()
        self.schedule(rec, 0.0)

    def schedule(self, rec: JobRecord, delay: float) -> None:
        """Run the job's next step in ``delay`` seconds (an earlier entry for it becomes stale)."""
        with self._cv:
            rec.token = next(self._seq)
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), rec.token, rec))
            self._cv.notify()

    def woke(self, rec: JobRecord) -> None:
        """Called by a step after each wait: clears the job's wake-up, ends it if the runner is shutting down."""
        rec.wake.clear()
        if self.closed:
            raise Stopped

    def close(self) -> None:
        """From now on no step is handed out and every job's next wake-up ends its steps."""
        self.closed = True

    def shutdown(self, records: Iterable[JobRecord], *, wait: bool) -> None:
        """Wake every job and the scheduler so they see :attr:`closed`, and stop the pools."""
        self.close()
        for rec in records:
            rec.wake.set()
        with self._cv:
            self._cv.notify_all()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._downloads.shutdown(wait=wait, cancel_futures=True)

    def _schedule_loop(self) -> None:
        while True:
            ready: list[JobRecord] = []
            with self._cv:
                while not self.closed:
                    now = time.monotonic()
                    while self._heap and self._heap[0][0] <= now:
                        _, token, rec = heapq.heappop(self._heap)
                        if token == rec.token:
                            ready.append(rec)
                    if ready:
                        break
                    self._cv.wait(self._heap[0][0] - now if self._heap else None)
                if self.closed:
                    return
            for rec in ready:
                try:
                    self._pool.submit(self._step, rec)
                except RuntimeError:  # the pool shut down
                    return

    def _step(self, rec: JobRecord) -> None:
        """Run the job to its next wait; schedule it again (or leave it parked until woken)."""
        with rec.step_lock:
            steps = rec.steps
            if steps is None or rec.done():
                return
            try:
                delay = steps.send(None)
            except StopIteration:
                rec.steps = None
                return
            except BaseException as exc:  # a job must always end, whatever happened
                rec.steps = None
                self._abort(rec, exc)
                if not self.closed:
                    log.debug(
                        "job %s ended by an unexpected error", rec.job.id, exc_info=(type(exc), exc, exc.__traceback__)
                    )
                return
            if delay is None:
                return  # parked: a free slot or a cancel wakes it
            if delay == TO_DOWNLOADS:
                with suppress(RuntimeError):  # after shutdown the job stays in the ledger
                    self._downloads.submit(self._step, rec)
                return
            if rec.wake.is_set():
                delay = 0.0
        self.schedule(rec, delay)
