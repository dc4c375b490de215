"""The session's money: what work would cost, what was spent and saved, and the budget.

:class:`Budget` is the :class:`~gemimg_jupyter.api.session.Session`'s collaborator for every
cost question. It reads the ledger (what is cached or already running) and the runner's jobs
(what this session committed); it never pays and never submits. ``Session.quote``,
``Session.estimate``, ``Session.check_budget``, ``Session.spent_usd`` and ``Session.cost``
delegate here, so the magic, the panel and ``Session.sweep`` agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gemimg_jupyter.domain.errors import BudgetExceededError
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.engine import Job, JobRunner
from gemimg_jupyter.ledger.store import Store
from gemimg_jupyter.plans.plan import CONFIRM_ABOVE_USD, Quote, SweepPlan

__all__ = ["Budget"]


class Budget:
    """Costs and the spending limit of one session (its settings, ledger and runner)."""

    def __init__(self, settings: Settings, store: Store, runner: JobRunner) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        #: The budget of the session this one replaced (a ``%config`` or ``with_settings`` change):
        #: its spending, hits and savings count here too, so a new limit never re-arms the money spent.
        self.before: Budget | None = None

    def follow(self, before: Budget) -> None:
        """Continue ``before``'s count: what it spent stays spent (and reserved in the runner)."""
        self.before = before
        self.runner.carry_spending(before.spent_usd())

    def _own_paid(self) -> list[Job]:
        return [j for j in self.runner.jobs if j.paid and not j.cached]

    def quote(
        self, plan: SweepPlan, *, fresh: bool = False, confirm_above_usd: float | None = CONFIRM_ABOVE_USD
    ) -> Quote:
        """What ``plan`` would cost now (``fresh``: as if nothing were stored) and whether it needs a yes."""
        left = self.left_usd()
        keys = list(plan.keys)
        lost = self.store.lost_keys(keys, backend=self.runner.backend)
        if fresh:  # as if nothing were stored: the lost ones are paid again, and the plan line says so
            return Quote(
                plan, frozenset(), 0, 0, plan.estimate_usd(), confirm_above_usd, left, plan.n_cached(lost), True
            )
        free = frozenset(self.store.cached_keys(keys, backend=self.runner.backend))
        stored = self.store.cached_keys(keys, running=False) if free else set()
        cached = plan.n_cached(stored)
        adopted = plan.n_cached(free) - cached
        lost -= free
        free |= lost  # paid before and lost: not paid again
        estimate = plan.estimate_usd(free)
        return Quote(plan, free, cached, adopted, estimate, confirm_above_usd, left, plan.n_cached(lost))

    def estimate(self, params: Sequence[tuple[GenerationParams, int]]) -> tuple[float, int]:
        """Cost of the uncached requests among ``(params, repeat)`` pairs, and how many are cached."""
        cost, cached = 0.0, 0
        keys = [p.cache_key(repeat) for p, repeat in params]
        free = self.store.cached_keys(keys, backend=self.runner.backend) | self.store.lost_keys(
            keys, backend=self.runner.backend
        )
        for p, repeat in params:
            if p.cache_key(repeat) in free:
                cached += 1
            else:
                cost += p.price_usd or 0.0
        return cost, cached

    def spent_usd(self) -> float:
        """Money committed in this session (submitted, not refunded), sessions it replaced included."""
        own = sum(job.cost_usd for job in self._own_paid() if job.state is not JobState.FAILED)
        return own + (self.before.spent_usd() if self.before is not None else 0.0)

    def left_usd(self) -> float | None:
        """What the budget still allows (``None``: no budget)."""
        budget = self.settings.max_cost_usd
        return None if budget is None else max(0.0, budget - self.spent_usd())

    @property
    def requests(self) -> int:
        """Paid requests sent in this session (sessions it replaced included)."""
        return len(self._own_paid()) + (self.before.requests if self.before is not None else 0)

    def check(self, estimate_usd: float) -> None:
        """Refuse work that would take spending past ``max_cost_usd``."""
        budget = self.settings.max_cost_usd
        if budget is None or estimate_usd <= 0:
            return
        spent = self.spent_usd()
        if spent + estimate_usd > budget + 1e-9:
            raise BudgetExceededError(estimate_usd, spent, budget)

    @property
    def cache_hits(self) -> int:
        """Images this session took from the store instead of paying for them."""
        own = sum(1 for job in self.runner.jobs if job.cached) + len(self._shared())
        return own + (self.before.cache_hits if self.before is not None else 0)

    def _shared(self) -> list[Any]:
        """Asks answered by a job already running (shared, paid once) that ended with its image."""
        return [job for job in self.runner.shared if job.state.has_image]

    @property
    def saved_usd(self) -> float:
        """What those cache hits would have cost."""
        own = sum(job.params.price_usd or 0.0 for job in (*(j for j in self.runner.jobs if j.cached), *self._shared()))
        return own + (self.before.saved_usd if self.before is not None else 0.0)

    def report(self, backend: str) -> dict[str, Any]:
        """Spent and saved in this session, the all-time ledger, and the budget (``Session.cost()``)."""
        totals = self.store.totals()
        return {
            "spent_usd": round(self.spent_usd(), 4),
            "saved_usd": round(self.saved_usd, 4),
            "cache_hits": self.cache_hits,
            "requests": self.requests,
            "ledger_spent_usd": round(totals["spent"], 4),
            "ledger_images": int(totals["done"]),
            "budget_usd": self.settings.max_cost_usd,
            "left_usd": None if (left := self.left_usd()) is None else round(left, 4),
            "backend": backend,
        }
