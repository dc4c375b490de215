"""The session: settings, client, runner and store as one object, and the Python API.

::

    import gemimg_jupyter as gi
    hero = gi.generate("a studio photo of a teapot", size="16:9", wait=False)
    hero.result().image            # waits, then a PIL image
    fox = gi.sweep("a paper-cut fox", temperature=[0.2, 0.8, 1.4], size=["1:1", "16:9"], repeats=2)
    fox.grid()                     # the labelled comparison grid

The magics and the panel use the same default session (:func:`get_session`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .client import ToAPIsClient
from .errors import BudgetExceededError, ConfigError, ValidationError
from .grid import Tile, encode_grid_png, grid_for_plan
from .images import load_reference
from .jobs import Job, JobRunner, Listener
from .models import GenerationParams, JobState, ReferenceImage
from .progress import shown_while_waiting
from .settings import DEFAULT_BASE_URL, Secret, Settings
from .store import LedgerRow, Store
from .sweep import AXIS_NAMES, Axis, SweepPlan, axis_from_values, parse_axis, plan_sweep

__all__ = ["Result", "Session", "SweepResult", "generate", "get_session", "reset_session", "sweep"]

log = logging.getLogger(__name__)

Result = Job
SIM_KEY = "sim-local-key"
#: The built-in simulator answers in seconds, not the real gateway's 5–30 s, so demos feel live.
SIM_DEFAULTS: dict[str, Any] = {"latency": (1.5, 4.0)}
_PARAM_NAMES = ("model", "size", "resolution", "temperature", "top_p")


def _as_refs(sources: object) -> tuple[ReferenceImage, ...]:
    if sources is None:
        return ()
    if isinstance(sources, (str, bytes, bytearray, Path, Image.Image, ReferenceImage)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)):
        raise ValidationError(
            "reference",
            sources,
            "",
            detail=f"reference images must be paths, URLs, bytes or PIL images, not {type(sources).__name__}",
        )
    return tuple(load_reference(s) for s in sources)


class SweepResult:
    """A running or finished sweep: its plan, its jobs, and the grid.

    ``grid()`` draws the labelled grid as it is now (pending cells show their
    state), ``table()`` gives one dict per image, ``save()`` writes the grid.
    """

    def __init__(
        self, plan: SweepPlan, jobs: Sequence[Job], *, sweep_id: str, store: Store, cell_size: int = 320
    ) -> None:
        self.plan = plan
        self.jobs = list(jobs)
        self.id = sweep_id
        self.cell_size = cell_size
        self.paths: list[Path] = []
        self._store = store
        self._saved = threading.Event()
        self._lock = threading.Lock()
        self.started = time.time()

    # ---- state -----------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """How many images are done, cached, failed, pending; money spent so far."""
        c = {"total": len(self.jobs), "done": 0, "cached": 0, "failed": 0, "pending": 0, "cost_usd": 0.0}
        for job in self.jobs:
            if job.state is JobState.DONE:
                c["done"] += 1
            elif job.state is JobState.CACHED:
                c["cached"] += 1
            elif job.state.is_terminal:
                c["failed"] += 1
            else:
                c["pending"] += 1
            c["cost_usd"] += job.cost_usd
        return c

    def progress_text(self) -> str:
        """``7/12 done, 1 failed, $0.34`` (cached images count as done)."""
        c = self.counts()
        text = f"{c['done'] + c['cached']}/{c['total']} done"
        if c["cached"]:
            text += f" ({c['cached']} cached)"
        if c["failed"]:
            text += f", {c['failed']} failed"
        return text + f", ${c['cost_usd']:.2f}"

    def done(self) -> bool:
        """True when every job has ended."""
        return all(job.done() for job in self.jobs)

    @shown_while_waiting  # a one-line bar on a terminal (a script, terminal IPython); nothing elsewhere
    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every job (and the saved grid); ``False`` if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in self.jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.wait(left):
                return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._saved.wait(left if left is not None else 30)

    def result(self, timeout: float | None = None) -> SweepResult:
        """Wait, then return this sweep (failed cells stay in the grid as placeholders)."""
        self.wait(timeout)
        return self

    def cancel(self, *, drop: bool = False) -> int:
        """Cancel what has not been submitted yet (``drop=True``: stop collecting the rest too)."""
        return sum(job.cancel(drop=drop) for job in self.jobs if not job.done())

    # ---- pictures and tables ---------------------------------------------------------------

    def tiles(self) -> dict[int, Tile]:
        """One :class:`~.grid.Tile` per sweep cell index (thumbnails only)."""
        out: dict[int, Tile] = {}
        for cell, job in zip(self.plan.cells, self.jobs, strict=False):
            image = None
            if job.state.has_image:
                try:
                    image = job.thumbnail(self.cell_size)
                except (OSError, ValueError):
                    image = None
            out[cell.index] = Tile(state=job.state.value, image=image, error=job.error)
        return out

    def grid(self, z: int = 0, *, cell_size: int | None = None) -> Image.Image:
        """The labelled comparison grid for Z index ``z``, as it is now."""
        footer = self.progress_text()
        return grid_for_plan(self.plan, self.tiles(), z=z, cell_size=cell_size or self.cell_size, footer=footer)

    def grids(self) -> list[Image.Image]:
        """One grid per Z value (a single grid for one or two axes)."""
        return [self.grid(z) for z in range(self.plan.shape[2])]

    def table(self) -> list[dict[str, Any]]:
        """One dict per image: the cell's axis values, parameters, path, state, cost."""
        rows = []
        for cell, job in zip(self.plan.cells, self.jobs, strict=False):
            row = {"cell": cell.index, "x": cell.x, "y": cell.y, "z": cell.z, **cell.labels, **job.describe()}
            rows.append(row)
        return rows

    def describe(self) -> dict[str, Any]:
        """The sweep as plain data (display metadata and the grid PNG's provenance)."""
        return {
            "sweep_id": self.id,
            "axes": [{"name": a.name, "values": list(a.labels)} for a in self.plan.axes],
            "repeats": self.plan.repeats,
            "common": {k: v for k, v in self.plan.common.items() if k != "references"},
            "cells": [
                {
                    "cell": c.index,
                    "labels": c.labels,
                    "repeat": c.repeat,
                    "state": j.status,
                    "task_id": j.task_id,
                    "path": str(j.path) if j.path else None,
                }
                for c, j in zip(self.plan.cells, self.jobs, strict=False)
            ],
            "progress": self.progress_text(),
        }

    def save(self, path: str | Path | None = None) -> list[Path]:
        """Write the grid(s) as PNG with provenance; returns the paths.

        Without ``path`` they go to ``<output>/grids/``. With several Z values
        the files get ``-z0``, ``-z1``… suffixes.
        """
        prov = self.describe()
        paths: list[Path] = []
        for z, img in enumerate(self.grids()):
            data = encode_grid_png(img, {**prov, "z": z, "params": self.plan.common})
            suffix = f"-z{z}" if self.plan.shape[2] > 1 else ""
            if path is None:
                stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
                paths.append(self._store.write_bytes(data, f"{stamp}_sweep_{self.id}{suffix}.png", folder="grids"))
            else:
                target = Path(path)
                target = target.with_name(f"{target.stem}{suffix}{target.suffix or '.png'}")
                target.write_bytes(data)
                paths.append(target)
        return paths

    def _on_job(self, _job: Job) -> None:
        if self._saved.is_set() or not self.done():
            return
        with self._lock:
            if self._saved.is_set():
                return
            try:
                self.paths = self.save()
            except Exception:
                log.exception("could not save the grid of sweep %s", self.id)
            finally:
                self._saved.set()

    def __repr__(self) -> str:
        return f"<SweepResult {self.id} {self.plan.shape[0]}×{self.plan.shape[1]}×{self.plan.shape[2]} · {self.progress_text()}>"

    def _repr_png_(self) -> bytes:
        return encode_grid_png(self.grid())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {"image/png": self._repr_png_(), "text/plain": repr(self)},
            {"image/png": {"gemimg_sweep": self.describe()}},
        )


class Session:
    """Settings, client, runner and store for one notebook (or script).

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`. With no key (``auto``) or
        ``backend="sim"`` the built-in simulator is started on 127.0.0.1.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.backend = self.settings.resolved_backend
        self._sim: Any = None
        if self.backend == "toapis":
            key = self.settings.require_key()
            base_url = self.settings.base_url or DEFAULT_BASE_URL
        else:
            key = Secret(SIM_KEY)
            base_url = self.settings.base_url or self._start_sim()
        self.base_url = base_url
        self.client = ToAPIsClient(
            base_url,
            key,
            retry=self.settings.retry,
            timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            download_max_bytes=self.settings.download_max_bytes,
        )
        self.store = Store(self.settings.output_dir)
        self.runner = JobRunner(self.client, self.store, self.settings, backend=self.backend)
        self.sweeps: list[SweepResult] = []
        self._closed = False

    def _start_sim(self) -> str:
        from .sim import SimConfig, SimServer

        options = {**SIM_DEFAULTS, **dict(self.settings.sim_options)}
        self._sim = SimServer(config=SimConfig(**options))
        return str(self._sim.start())

    @property
    def sim(self) -> Any:
        """The in-process simulator (``None`` on the real backend)."""
        return self._sim

    def banner(self) -> str:
        """One line saying which backend is in use and, for the simulator, how to set a key."""
        if self.backend == "toapis":
            return f"gemimg: using ToAPIs at {self.base_url} (key from TOAPIS_API_KEY), output in {self.store.root}"
        where = "the built-in simulator" if self._sim is not None else f"a simulator at {self.base_url}"
        if self.settings.api_key is not None:  # a key is set, but GEMIMG_BACKEND=sim asked for the simulator
            return (
                f"gemimg: GEMIMG_BACKEND=sim, using {where} (images are simulated, cost $0). "
                "Unset it or run %gemimg backend toapis for real images."
            )
        return (
            f"gemimg: no API key set, using {where} (images are simulated, cost $0). "
            "Set TOAPIS_API_KEY or run %gemimg login for real images."
        )

    def __repr__(self) -> str:
        return f"<gemimg Session backend={self.backend} base_url={self.base_url} output={self.store.root}>"

    # ---- building requests -----------------------------------------------------------------

    def params(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        resolution: str | None = None,
        temperature: float | str | None = None,
        top_p: float | str | None = None,
        reference_images: object = (),
        defaults: Mapping[str, Any] | None = None,
    ) -> GenerationParams:
        """Validated parameters (raises :class:`ValidationError` before anything is sent)."""
        return GenerationParams.create(
            prompt,
            model=model,
            size=size,
            resolution=resolution,
            temperature=temperature,
            top_p=top_p,
            references=_as_refs(reference_images),
            defaults={"model": self.settings.model, **(defaults or {})},
        )

    def estimate(self, params: Sequence[tuple[GenerationParams, int]]) -> tuple[float, int]:
        """Cost of the uncached requests among ``(params, repeat)`` pairs, and how many are cached."""
        cost, cached = 0.0, 0
        for p, repeat in params:
            if self.store.lookup(p.cache_key(repeat)) is not None:
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

    def check_budget(self, estimate_usd: float) -> None:
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

    # ---- generating ------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        resolution: str | None = None,
        temperature: float | str | None = None,
        top_p: float | str | None = None,
        reference_images: object = (),
        fresh: bool = False,
        wait: bool = True,
        repeat: int = 0,
        listeners: Sequence[Listener] = (),
        defaults: Mapping[str, Any] | None = None,
    ) -> Job:
        """Generate one image. With ``wait=False`` it returns at once; ``.result()`` waits."""
        params = self.params(
            prompt,
            model=model,
            size=size,
            resolution=resolution,
            temperature=temperature,
            top_p=top_p,
            reference_images=reference_images,
            defaults=defaults,
        )
        return self.submit(params, repeat=repeat, fresh=fresh, wait=wait, listeners=listeners)

    def submit(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        fresh: bool = False,
        wait: bool = False,
        listeners: Sequence[Listener] = (),
    ) -> Job:
        """Run already-validated parameters (budget checked first)."""
        if self.settings.max_cost_usd is not None:  # the look-up is only worth it with a budget
            cost = (params.price_usd or 0.0) if fresh else self.estimate([(params, repeat)])[0]
            self.check_budget(cost)
        job = self.runner.submit(params, repeat=repeat, fresh=fresh, listeners=listeners)
        if wait:
            job.result()
        return job

    def plan(
        self,
        prompt: str,
        *,
        axes: Sequence[Axis | str] = (),
        repeats: int = 1,
        defaults: Mapping[str, Any] | None = None,
        resolve_ref: Callable[[str], ReferenceImage] | None = None,
        **kwargs: Any,
    ) -> SweepPlan:
        """Validate a sweep and return its plan, without running anything.

        Keyword arguments that are lists become axes (``temperature=[0.2, 0.8]``);
        scalars are fixed parameters (``size="16:9"``).
        """
        fixed: dict[str, Any] = {}
        all_axes: list[Axis] = []
        resolver = resolve_ref or load_reference
        for spec in axes:
            all_axes.append(spec if isinstance(spec, Axis) else parse_axis(spec, resolve_ref=resolver))
        for name, value in kwargs.items():
            if name == "reference_images":
                fixed[name] = value
            elif isinstance(value, (list, tuple, range)) and name in (*AXIS_NAMES, "top_p"):
                all_axes.append(axis_from_values(name, list(value), resolve_ref=resolver))
            elif name in _PARAM_NAMES:
                fixed[name] = value
            else:
                raise ValidationError(
                    name, value, "", detail=f"unknown sweep parameter {name!r}; use one of {', '.join(AXIS_NAMES)}"
                )
        base = self.params(prompt, defaults=defaults, **fixed)
        return plan_sweep(base, all_axes, repeats=repeats)

    def sweep(
        self,
        prompt: str,
        *,
        axes: Sequence[Axis | str] = (),
        repeats: int = 1,
        fresh: bool = False,
        wait: bool = True,
        yes: bool = False,
        confirm_above_usd: float | None = 1.0,
        cell_size: int = 320,
        listeners: Sequence[Listener] = (),
        defaults: Mapping[str, Any] | None = None,
        plan: SweepPlan | None = None,
        **kwargs: Any,
    ) -> SweepResult:
        """Run a parameter sweep and return its :class:`SweepResult`.

        The whole plan is validated first; above ``confirm_above_usd`` it needs
        ``yes=True``; it never goes past the budget.
        """
        plan = plan or self.plan(prompt, axes=axes, repeats=repeats, defaults=defaults, **kwargs)
        keys = [cell.key for cell in plan.cells]
        cached = set() if fresh else self.store.cached_keys(keys)
        estimate = plan.estimate_usd(cached) or 0.0
        if confirm_above_usd is not None and estimate > confirm_above_usd and not yes:
            raise ValidationError(
                "sweep",
                plan.n_requests,
                "",
                detail=(
                    f"this sweep would cost about ${estimate:.2f} ({plan.summary(cached)}), "
                    f"over the ${confirm_above_usd:.2f} confirmation threshold; add --yes (yes=True) to go ahead"
                ),
            )
        self.check_budget(estimate)
        sweep_id = uuid.uuid4().hex[:8]
        result = SweepResult(plan, [], sweep_id=sweep_id, store=self.store, cell_size=cell_size)
        all_listeners = [result._on_job, *listeners]
        for cell in plan.cells:
            job = self.runner.submit(cell.params, repeat=cell.repeat, fresh=fresh, sweep_id=sweep_id, listeners=())
            result.jobs.append(job)
        for job in result.jobs:
            for listener in all_listeners:
                job.add_listener(listener)
        self.sweeps.append(result)
        if wait:
            result.wait()
        return result

    # ---- managing --------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        """Every job of this session, oldest first."""
        return self.runner.jobs

    def cancel(self, target: str = "all", *, drop: bool = False) -> int:
        """Cancel a job (by id), a sweep (by id) or everything."""
        if target != "all" and self.runner.get(target) is None and not any(s.id == target for s in self.sweeps):
            known = ", ".join(j.id for j in self.runner.jobs[-8:]) or "none yet"
            raise ValidationError(
                "job", target, "", detail=f"no job or sweep {target!r} in this session; jobs: {known}"
            )
        return self.runner.cancel(target, drop=drop)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job and sweep grid is finished."""
        ok = self.runner.wait(timeout=timeout)
        for s in self.sweeps:
            ok = s.wait(timeout=5) and ok
        return ok

    def resume(self) -> list[Job]:
        """Finish ledger rows that were submitted but never downloaded (after a restart)."""
        return self.runner.resume()

    def pending_count(self) -> int:
        """Unfinished rows in the ledger for this backend (a hint to ``resume``)."""
        active = {j.cbid for j in self.runner.jobs}
        return sum(1 for row in self.store.pending(self.backend) if row.cbid not in active)

    def history(self, limit: int = 12) -> list[LedgerRow]:
        """The newest stored images."""
        return self.store.history(limit)

    def cost(self) -> dict[str, Any]:
        """Spent and saved in this session, the all-time ledger, and the budget."""
        totals = self.store.totals()
        return {
            "spent_usd": round(self.spent_usd(), 4),
            "saved_usd": round(self.saved_usd, 4),
            "cache_hits": self.cache_hits,
            "requests": sum(1 for j in self.runner.jobs if j.task_id is not None and not j.cached),
            "ledger_spent_usd": round(totals["spent"], 4),
            "ledger_images": int(totals["done"]),
            "budget_usd": self.settings.max_cost_usd,
            "backend": self.backend,
        }

    def close(self) -> None:
        """Stop the runner and the simulator; unfinished work stays in the ledger."""
        if self._closed:
            return
        self._closed = True
        self.runner.shutdown(wait=False)
        self.client.close()
        if self._sim is not None:
            self._sim.stop()
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULT: Session | None = None
_DEFAULT_LOCK = threading.Lock()


def get_session(settings: Settings | None = None) -> Session:
    """The shared default session (created from the environment on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT._closed:
            _DEFAULT = Session(settings)
        elif settings is not None and settings != _DEFAULT.settings:
            raise ConfigError("a session is already running with other settings; call reset_session() first")
        return _DEFAULT


def reset_session(settings: Settings | None = None) -> Session | None:
    """Close the default session; with ``settings``, start a new one."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is not None:
            _DEFAULT.close()
        _DEFAULT = Session(settings) if settings is not None else None
        return _DEFAULT


def generate(prompt: str, **kwargs: Any) -> Job:
    """Generate one image with the default session (see :meth:`Session.generate`)."""
    return get_session().generate(prompt, **kwargs)


def sweep(prompt: str, **kwargs: Any) -> SweepResult:
    """Run a sweep with the default session (see :meth:`Session.sweep`)."""
    return get_session().sweep(prompt, **kwargs)
