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
from gemimg_jupyter.engine import JobRunner
from gemimg_jupyter.ledger.store import Store
from gemimg_jupyter.plans.plan import CONFIRM_ABOVE_USD, Quote, SweepPlan

__all__ = ["Budget"]


class Budget:
    """Costs and the spending limit of one session (its settings, ledger and runner)."""

    def __init__(self, settings: Settings, store: Store, runner: JobRunner) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner

    def quote(
        self, plan: SweepPlan, *, fresh: bool = False, confirm_above_usd: float | None = CONFIRM_ABOVE_USD
    ) -> Quote:
        """What ``plan`` would cost now (``fresh``: as if nothing were stored) and whether it needs a yes."""
        if fresh:
            return Quote(plan, frozenset(), 0, 0, plan.estimate_usd(), confirm_above_usd)
        keys = list(plan.keys)
        free = frozenset(self.store.cached_keys(keys, backend=self.runner.backend))
        stored = self.store.cached_keys(keys, running=False) if free else set()
        cached = plan.n_cached(stored)
        return Quote(plan, free, cached, plan.n_cached(free) - cached, plan.estimate_usd(free), confirm_above_usd)

    def estimate(self, params: Sequence[tuple[GenerationParams, int]]) -> tuple[float, int]:
        """Cost of the uncached requests among ``(params, repeat)`` pairs, and how many are cached."""
        cost, cached = 0.0, 0
        free = self.store.cached_keys([p.cache_key(repeat) for p, repeat in params], backend=self.runner.backend)
        for p, repeat in params:
            if p.cache_key(repeat) in free:
                cached += 1
            else:
                cost += p.price_usd or 0.0
        return cost, cached

    def spent_usd(self) -> float:
        """Money committed in this session (submitted, not refunded)."""
        return sum(
            job.cost_usd
            for job in self.runner.jobs
            if job.task_id is not None and not job.cached and job.state is not JobState.FAILED
        )

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
        return sum(1 for job in self.runner.jobs if job.cached)

    @property
    def saved_usd(self) -> float:
        """What those cache hits would have cost."""
        return sum(job.params.price_usd or 0.0 for job in self.runner.jobs if job.cached)

    def report(self, backend: str) -> dict[str, Any]:
        """Spent and saved in this session, the all-time ledger, and the budget (``Session.cost()``)."""
        totals = self.store.totals()
        return {
            "spent_usd": round(self.spent_usd(), 4),
            "saved_usd": round(self.saved_usd, 4),
            "cache_hits": self.cache_hits,
            "requests": sum(1 for j in self.runner.jobs if j.task_id is not None and not j.cached),
            "ledger_spent_usd": round(totals["spent"], 4),
            "ledger_images": int(totals["done"]),
            "budget_usd": self.settings.max_cost_usd,
            "backend": backend,
        }
