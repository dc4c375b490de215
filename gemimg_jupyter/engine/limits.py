"""The shared limits every job runs under: request rates, unfinished tasks, money.

- :class:`TokenBucket` and :class:`RateGate`: submits and status queries per
  second; a 429 pauses the whole lane.
- :class:`Window`: how many tasks may be unfinished at the gateway at once
  (adaptive: it learns the gateway's cap from its 429s).
- :class:`Line`: places handed out first come, first served (the window's
  places, the submit turns: :func:`submit_turns`).
- :class:`Reservations`: ``max_cost_usd``, each submit's price reserved before it is sent (the session's ``budget.Budget`` answers the questions asked before a run).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from gemimg_jupyter.domain.errors import BudgetExceededError
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.gateway.client import Category

if TYPE_CHECKING:
    from gemimg_jupyter.engine.record import JobRecord


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

    def paused_for(self) -> float:
        """Seconds the bucket stays paused (0 when it is not)."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (after a 429 with ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


class RateGate:
    """Shared limits for every job of a session (implements ``client_http.RequestGate``).

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
        #: the longest pause a ``Retry-After`` may put on a lane (``max_retry_after``)
        self.max_pause = settings.retry_policy.max_retry_after
        self._asked: dict[str, float] = {}  # the Retry-After behind each lane's latest pause, as the gateway asked
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
        """Pause the whole lane after a 429 for its ``Retry-After``, at most :attr:`max_pause`."""
        with self._lock:
            self.counts["rate_limited"] += 1
            self._asked[category] = seconds
        bucket = self._buckets.get(category)
        if bucket is not None:
            bucket.pause(min(seconds, self.max_pause))

    def asked(self, category: Category) -> float | None:
        """The ``Retry-After`` the gateway asked for behind the lane's pause now (``None``: the lane is not paused)."""
        bucket = self._buckets.get(category)
        if bucket is None or bucket.paused_for() <= 0:
            return None
        with self._lock:
            return self._asked.get(category)


class Line:
    """Places handed out first come, first served.

    A job that finds no free place waits in line. A place that frees up is
    handed to the job at the front of the line before it is woken (through
    ``wake``), so no job that comes later takes it meanwhile. A job that gave
    its place back for a while (a refused submit) comes back to the front of
    the line, not the end. ``size()`` is read at each take and release.
    """

    def __init__(self, size: Callable[[], float], wake: Callable[[JobRecord], None]) -> None:
        self._size = size
        self._wake = wake
        self._held: set[JobRecord] = set()
        self._waiting: deque[JobRecord] = deque()  # the line, front first (an entry not in ``_queued`` is stale)
        self._queued: set[JobRecord] = set()
        #: guards the line; an owner may change what ``size()`` reads under it
        self.lock = threading.Lock()

    @property
    def held(self) -> int:
        """How many places are taken."""
        return len(self._held)

    def take(self, rec: JobRecord, *, first: bool = False) -> bool:
        """Give the job a place (``True``), or put it in line to be handed one when one frees up (``False``).

        ``first``: the job had a place and gave it back for a while; it waits at the front of the line.
        """
        with self.lock:
            if rec in self._held:
                return True
            if not self._queued and len(self._held) < self._size():
                self._held.add(rec)
                return True
            if rec not in self._queued:
                self._queued.add(rec)
                if first:
                    self._waiting.appendleft(rec)
                else:
                    self._waiting.append(rec)
            return False

    def release(self, rec: JobRecord, *, freed: Callable[[], None] | None = None) -> None:
        """The job leaves: its place goes to the front of the line (or its spot in line is given up).

        ``freed()`` runs under :attr:`lock` when the job did hold a place, before the place is handed on.
        """
        wake: list[JobRecord] = []
        with self.lock:
            self._queued.discard(rec)
            if rec not in self._held:
                return
            self._held.discard(rec)
            if freed is not None:
                freed()
            while self._queued and len(self._held) < self._size():
                waiter = self._waiting.popleft()
                if waiter not in self._queued:  # stale: it left the line, or was put in again
                    continue
                self._queued.discard(waiter)
                if not waiter.done():
                    self._held.add(waiter)  # handed over: its next take() finds it
                    wake.append(waiter)
        for waiter in wake:
            self._wake(waiter)


#: How far ahead jobs may hold submit tokens, in seconds of the submit rate (see :func:`submit_turns`).
SUBMIT_AHEAD_S = 1.0


def submit_turns(settings: Settings) -> int:
    """How many jobs may hold a submit token at once, from the token to the gateway's answer.

    A second of the submit rate (at least 4): enough that the lane never idles while the next job in line
    wakes up, and short enough that a job refused with 429 and put back at the front of the line goes out
    about a second later, not after every token reserved to the end of the sweep.
    """
    return max(4, math.ceil(settings.submit_rate * SUBMIT_AHEAD_S))


class Window:
    """The adaptive window of unfinished tasks.

    It starts at the submit burst, halves on a submit 429, grows by one as
    tasks finish, and stays under ``max_in_flight`` only when that is set.
    A job holds one place from its submit until the gateway has finished
    its task; a job that finds no place waits in a :class:`Line` and is
    handed the next place that frees up, in turn.
    """

    def __init__(self, settings: Settings, wake: Callable[[JobRecord], None]) -> None:
        self._size = float(max(1, settings.submit_burst))
        self._ceiling = float(settings.max_in_flight) if settings.max_in_flight else math.inf
        self._line = Line(lambda: self.size, wake)
        self._last_shrink = 0.0
        self._floor = 1.0  # unfinished tasks when the gateway last accepted a submit: it took that many
        self._lock = self._line.lock

    @property
    def size(self) -> float:
        """How many unfinished tasks may be out at once right now."""
        return min(self._size, self._ceiling)

    @property
    def _unfinished(self) -> int:
        return self._line.held

    def take(self, rec: JobRecord, *, first: bool = False) -> bool:
        """Give the job a place (``True``), or put it in line to be handed one when one frees up (``False``).

        ``first``: the job had a place and gave it back (a refused submit); it waits at the front of the line.
        """
        return self._line.take(rec, first=first)

    def release(self, rec: JobRecord, *, grew: bool = False) -> None:
        """The job leaves: its place (``grew``: its task finished, so the window grows by one) goes to the job at
        the front of the line, or its spot in line is given up."""
        self._line.release(rec, freed=self._grow if grew else None)

    def _grow(self) -> None:
        self._size = min(self._size + 1.0, 1e6)

    def shrink(self) -> None:
        """A submit 429: halve the window, but never below what the gateway last accepted.

        At most once per second, and never under the number of unfinished
        tasks at the last accepted submit: a server that caps unfinished tasks
        at C accepts only below C, so the window settles at C; random 429s
        (a storm, a quota blip) come at any level and barely move it.
        """
        with self._lock:
            now = time.monotonic()
            if now - self._last_shrink >= 1.0:
                self._size = max(1.0, self._floor, min(self._size, self._unfinished) / 2)
                self._last_shrink = now

    def accepted(self) -> None:
        """The gateway accepted a submit: it takes at least as many unfinished tasks as there are now."""
        with self._lock:
            self._floor = float(self._unfinished)


class Reservations:
    """``max_cost_usd`` for one runner: each submit reserves its price first, so no number in flight can pass it."""

    def __init__(self) -> None:
        self._committed = 0.0  # reserved or spent by this runner's submits
        self._lock = threading.Lock()

    def reserve(self, rec: JobRecord, limit: float | None) -> None:
        """Reserve the job's price before its submit (once); raise :class:`BudgetExceededError` if it passes ``limit``."""
        price = rec.job.params.price_usd or 0.0
        with self._lock:
            if rec.reserved or limit is None:
                return
            if self._committed + price > limit + 1e-9:
                raise BudgetExceededError(price, self._committed, limit)
            self._committed += price
            rec.reserved = price

    def carry(self, usd: float) -> None:
        """Count ``usd`` spent before this runner started (the session it replaced) against the limit."""
        with self._lock:
            self._committed += max(0.0, usd)

    def settle(self, rec: JobRecord) -> None:
        """At the end: the reservation becomes what the job really cost ($0 if never accepted or refunded)."""
        job = rec.job
        with self._lock:
            if rec.reserved:
                self._committed += (job.cost_usd if job.paid else 0.0) - rec.reserved
            rec.reserved = 0.0
