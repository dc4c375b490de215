"""When to look at a task next: :class:`PollSchedule`, the polling cadence and progress/ETA model.

No threads or sockets of its own. The collect phase (:mod:`.collect`) tells it
what it saw and asks it when to look again; until this session has seen tasks end,
a *prior* (the ledger's past durations for the task's model and resolution, asked
once per kind) or the backend's documented typical time places the first looks.

It also learns where the server's progress stands when a task ends (the *end*
of the progress, per kind): each finished task brackets it between the highest
progress it showed and what its rate says the progress reached by the look that
saw it done. The bracket is kept in the ledger too (``ends``/``keep_end``), so
the progress extrapolation is right from the first batch of a new session on.
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
#: Where the progress of finished tasks of one kind stood at their end, ``(low, high)``, e.g. from the ledger.
EndPrior = Callable[[str, str], tuple[float, float] | None]
#: Keeps a kind's ``(low, high)`` end of progress (e.g. in the ledger), called when the bracket narrows.
KeepEnd = Callable[[str, str, float, float], None]
#: The end of the progress before anything is known: the progress scale's top.
TOP = 100.0
#: A bracket of the end of progress at most this wide is narrow: the extrapolation aims one past its low side
#: (a look that lands short costs one more look; the high side is a loose bound, about a round of looks wide).
NARROW = 10.0
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
        ends: EndPrior | None = None,
        keep_end: KeepEnd | None = None,
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
        #: per kind, where the progress stands when a task ends: (low, high); the ledger's, then this session's
        self._ends: dict[Kind | None, tuple[float, float]] = {}
        self._asked_ends: set[Kind] = set()
        self._end_prior = ends
        self._keep_end = keep_end
        self._kept: dict[Kind, tuple[float, float]] = {}  # per kind, the bracket the ledger holds (read or written)
        self._keep_lock = threading.Lock()  # one write at a time, each of the newest bracket
        self._rated: deque[bool] = deque(maxlen=20)  # whether progress rose between looks on recent tasks
        self._rtts: deque[float] = deque(maxlen=20)  # round trips of recent status queries

    def observe(self, rtt: float) -> None:
        """One status query took ``rtt`` seconds."""
        self._rtts.append(rtt)

    def completed(self, seen: float, looks: Sequence[tuple[float, int]], kind: Kind | None = None) -> None:
        """A task of ``kind`` was seen completed ``seen`` seconds after its submit, after ``looks``."""
        self._durations.append(seen)
        ups = [p for _, p in looks if 0 < p < 100]
        if ups:
            self._rated.append(ups[-1] > ups[0])
            self._learn_end(kind, self.task_end(seen, looks))

    def task_end(self, seen: float, looks: Sequence[tuple[float, int]]) -> tuple[float, float]:
        """Where the progress of one finished task stood at its end: ``(low, high)``.

        Low: the highest progress it showed (the server's progress only rises).
        High: the last progress it showed, plus one (progress is whole numbers),
        plus what the fastest rate its looks allow adds by the look that saw it
        done (``seen``, and a round trip for where in it the server looked);
        the top of the scale when its progress did not rise between two looks.
        """
        ups = [(t, p) for t, p in looks if 0 < p < 100]
        low = float(max(p for _, p in ups))
        (t0, p0), (t1, p1) = ups[0], ups[-1]
        if p1 <= p0 or t1 <= t0:
            return low, TOP
        clock = statistics.median(self._rtts) if self._rtts else 0.0
        fastest = (p1 + 1 - p0) / max(t1 - t0 - clock, 0.5 * (t1 - t0))
        return low, min(TOP, max(low, p1 + 1 + fastest * (seen - t1 + clock)))

    def progress_end(self, kind: Kind | None) -> tuple[float, float] | None:
        """Where the progress of tasks of ``kind`` stands when they end, ``(low, high)``; ``None`` when unknown.

        This session's bracket, or (none yet) the ledger's, asked once per kind.
        """
        with self._prior_lock:
            if kind is not None and kind not in self._asked_ends and kind not in self._ends:
                self._asked_ends.add(kind)
                try:
                    found = self._end_prior(*kind) if self._end_prior is not None else None
                except Exception:  # a ledger that cannot be read now leaves the cadence as it was
                    log.debug("no end of progress for %s", kind, exc_info=True)
                    found = None
                if found is not None and 0 < found[0] <= found[1] <= TOP:
                    self._ends[kind] = self._kept[kind] = (float(found[0]), float(found[1]))
            return self._ends.get(kind)

    def _learn_end(self, kind: Kind | None, task: tuple[float, float]) -> None:
        """Narrow the kind's bracket with one finished task's; a task outside it starts it again (the server
        changed); a narrower bracket is kept (``keep_end``)."""
        known = self.progress_end(kind)
        with self._prior_lock:
            if known is None or task[0] > known[1] or task[1] < known[0]:
                new = task
            else:
                new = (max(known[0], task[0]), min(known[1], task[1]))
            self._ends[kind] = new
        if kind is not None and self._keep_end is not None:
            self._keep(kind, self._keep_end)

    def _keep(self, kind: Kind, keep_end: KeepEnd) -> None:
        """Write the kind's bracket to the ledger when it moved by half a point or more from what the ledger
        holds (small moves add up: they are measured from the last write, not from the last task)."""
        with self._keep_lock:  # writes in turn, each of the newest bracket: an older one never lands last
            with self._prior_lock:
                new, kept = self._ends[kind], self._kept.get(kind)
            if kept is not None and abs(new[0] - kept[0]) < 0.5 and abs(new[1] - kept[1]) < 0.5:
                return
            try:
                keep_end(kind[0], kind[1], new[0], new[1])
                self._kept[kind] = new
            except Exception:  # the session keeps it; the ledger learns it next time
                log.debug("could not keep the end of progress for %s", kind, exc_info=True)

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
        extrapolated from its rate to where the progress of finished tasks of
        ``kind`` ended (:meth:`progress_eta`), and the next look goes one
        standard error after it (with one more look on the way when that
        error is large). The first two looks go early enough to catch the
        fastest tasks still running. Otherwise the expected duration comes
        from the progress (elapsed × 100 / progress) and the durations seen so
        far in this session. Until it has some, the first look comes shortly
        before the fastest past tasks of the same ``kind`` (model, resolution)
        ended, from the prior (the ledger); the second look leans on the prior
        only when the ledger also knows where the progress of that kind ends
        (then progress rose on its tasks before). Never sooner than ``poll_min``
        after the last look, never later than ``poll_max``; always jittered.
        """
        if first:
            return self._jitter(self.first_delay(kind, elapsed))
        s = self.settings
        history = sorted(self._durations)  # the later looks follow this session's own tasks only (see first_delay)
        early = history[len(history) // 10] if len(history) >= MIN_HISTORY else None
        rising = sum(self._rated) >= 2  # progress has been a usable clock on recent tasks
        if early is None and kind is not None and self.prior(kind):
            # no own tasks yet: the ledger's durations, if it also knows where the progress of this kind ends
            # (so it rose on tasks before); the fastest such tasks still run at the second look, which sets the rate
            end = self.progress_end(kind)
            if end is not None and end[1] < TOP:
                prior = self.prior(kind)
                early, rising = prior[len(prior) // 10], True
        since = elapsed - looks[-1][0] if looks else 0.0
        soonest = max(0.05, s.poll_min - since)
        eta = self.progress_eta(looks, kind)
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

    def progress_eta(self, looks: Sequence[tuple[float, int]], kind: Kind | None = None) -> tuple[float, float] | None:
        """Completion time (seconds since submit) and its uncertainty, from the progress rate.

        The rate comes from the first and last in-progress looks. The end is
        one past the highest progress finished tasks of ``kind`` showed, when
        what they showed brackets their end narrowly (:meth:`progress_end`; a
        look that comes too soon shows more, and the next tasks aim further).
        Otherwise only 85 % of the way to 100 is trusted, kept within the
        bracket when there is one.
        """
        ups = [(t, p) for t, p in looks if 0 < p < 100]
        if len(ups) < 2 or ups[-1][1] <= ups[0][1] or ups[-1][0] <= ups[0][0]:
            return None
        (t0, p0), (t1, p1) = ups[0], ups[-1]
        rate = (p1 - p0) / (t1 - t0)
        low, high = self.progress_end(kind) or (0.0, TOP)
        if p1 < low and high - low <= NARROW:  # one past the highest progress a finished task showed
            end = low + 1.0
        elif high < TOP and p1 + 1 <= high:  # 85 % of the way to 100, within what finished tasks showed
            end = min(high, max(low + 1.0, p1 + 0.5 + 0.85 * (TOP - p1 - 0.5)))
        else:  # nothing known: only 85 % of the way to 100 is trusted
            return t1 + 0.85 * (TOP - p1 - 0.5) / rate, 0.0
        left = (end - p1 - 0.5) / rate
        # the server looked somewhere within the round trip; progress is whole numbers
        clock = statistics.median(self._rtts) / 12**0.5 if self._rtts else 0.0
        slope = (1 / 6) / (p1 - p0) ** 2 + 2 * (clock / (t1 - t0)) ** 2
        spread = ((1 / 6) / rate**2 + left**2 * slope + clock**2) ** 0.5
        return t1 + left, spread

    def _jitter(self, seconds: float) -> float:
        return max(0.05, seconds * self._rng.uniform(0.9, 1.1))
