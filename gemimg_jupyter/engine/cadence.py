"""When to look at a task next: :class:`PollSchedule`, the polling cadence and progress/ETA model.

No threads or sockets of its own. The collect phase (:mod:`.collect`) tells it
what it saw and asks it when to look again; until this session has seen tasks end,
a *prior* (the ledger's past durations for the task's model and resolution, asked
once per kind) or the backend's documented typical time places the first looks.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
from collections import deque
from collections.abc import Callable, Sequence

from gemimg_jupyter.domain.settings import Settings

log = logging.getLogger(__name__)

#: What a task is: ``(model, resolution)``; tasks of one kind take about as long as each other.
Kind = tuple[str, str]
#: Past durations (seconds from submit to the image on disk) of tasks of one kind, e.g. from the ledger.
Prior = Callable[[str, str], Sequence[float]]
#: Fewer past durations than this are no prior (and too few to learn from in the session either).
MIN_HISTORY = 3
#: With a prior only, the first look comes at this share of the fastest tenth of past durations (chosen with
#: a model of the cadence over 4–12 s tasks: 0.8 made ~2.7 looks a task but detected ~0.1 s later; 0.6 ~3.2).
PRIOR_FIRST_LOOK = 0.6


class PollSchedule:
    """When to look at a task next: the cadence and the progress/ETA model, with no threads or sockets.

    It learns from what the runner tells it: :meth:`observe` for each status
    round trip, :meth:`completed` when a task is seen done (with the looks it
    took). :meth:`next_delay` is a pure function of that memory and its
    arguments (plus jitter from ``rng``).
    """

    def __init__(
        self,
        settings: Settings,
        rng: random.Random | None = None,
        *,
        prior: Prior | None = None,
        typical: tuple[float, float] | None = None,
    ) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        #: durations of past tasks of a kind (the ledger's), asked once per kind, used until this session has its own
        self._prior = prior
        self._priors: dict[Kind, list[float]] = {}
        self._prior_lock = threading.Lock()
        #: the backend's documented typical task time (low, high) in seconds: the first look of a task with no past
        self.typical = typical
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

    def prior(self, kind: Kind) -> list[float]:
        """The sorted past durations of tasks of ``kind`` (read once per kind; empty when there are too few)."""
        with self._prior_lock:
            known = self._priors.get(kind)
            if known is None:
                try:
                    found = sorted(self._prior(*kind)) if self._prior is not None else []
                except Exception:  # a ledger that cannot be read now leaves the cadence as it was
                    log.debug("no past durations for %s", kind, exc_info=True)
                    found = []
                known = self._priors[kind] = found if len(found) >= MIN_HISTORY else []
            return known

    def first_delay(self, kind: Kind | None = None, elapsed: float = 0.0) -> float:
        """When to look first at a task submitted ``elapsed`` seconds ago, before any jitter (see :meth:`next_delay`)."""
        s = self.settings
        history = self._history(kind)
        if len(history) >= MIN_HISTORY:  # two looks before the fastest tasks end give a rate
            early = history[len(history) // 10]
            own = len(self._durations) >= MIN_HISTORY
            # a prior's durations count the download too, and a rate is still to be measured: a little sooner
            factor = (0.3 if sum(self._rated) >= 2 else 0.8) if own else PRIOR_FIRST_LOOK
            return max(s.poll_first, factor * early - elapsed)
        delay = 1.5 * s.poll_first  # nothing known: queued anyway
        if self.typical is not None:  # the backend's documented typical time: no task of it ends much sooner
            delay = max(delay, min(s.poll_max, 0.8 * self.typical[0]))
        return delay

    def _history(self, kind: Kind | None) -> list[float]:
        """This session's durations, or (fewer than :data:`MIN_HISTORY` yet) the prior of ``kind``."""
        history = sorted(self._durations)
        if len(history) < MIN_HISTORY and kind is not None:
            return self.prior(kind) or history
        return history

    def next_delay(
        self,
        elapsed: float,
        progress: int,
        first: bool,
        looks: Sequence[tuple[float, int]] = (),
        kind: Kind | None = None,
    ) -> float:
        """When to look next: sparse early, dense around the expected completion.

        When the server's progress rises between looks (``looks``: seconds
        since submit and progress of each earlier look), the completion is
        extrapolated from its rate to the highest progress finished tasks
        reached, and the next look goes one standard error after it (with one
        more look on the way when that error is large). The first two looks
        go early enough to catch the fastest tasks still running. Otherwise the expected
        duration comes from the progress (elapsed × 100 / progress) and the
        durations seen so far in this session. Until it has some, the first
        look comes shortly before the fastest past tasks of the same ``kind``
        (model, resolution) ended, from the prior (the ledger); the later looks
        do not lean on the prior (it counts the download too and cannot say
        how the server's progress runs). Never sooner than ``poll_min``
        after the last look, never later than ``poll_max``; always jittered.
        """
        if first:
            return self._jitter(self.first_delay(kind, elapsed))
        s = self.settings
        history = sorted(self._durations)  # the later looks follow this session's own tasks only (see first_delay)
        early = history[len(history) // 10] if len(history) >= MIN_HISTORY else None
        rising = sum(self._rated) >= 2  # progress has been a usable clock on recent tasks
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
        if len(history) >= MIN_HISTORY:
            estimates.append(statistics.median(history))
        if not estimates:
            return self._jitter(min(s.poll_max, max(s.poll_min, elapsed)))
        expected = min(estimates) if len(estimates) == 1 else statistics.fmean(estimates)
        remaining = expected - elapsed
        if remaining > 2 * s.poll_min:
            delay = 0.75 * remaining
            if (
                len(history) < MIN_HISTORY
            ):  # nothing finished yet: a progress-only guess ignores queue time, so look again soon
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
