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

import dataclasses
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .client import ToAPIsClient
from .errors import BudgetExceededError, ConfigError, ValidationError
from .grid import Tile, encode_grid_png, grid_for_plan
from .images import load_reference
from .jobs import Job, JobRunner, Listener, RateGate
from .lineage import Lineage, edit_reference, edited_cbids, find_row, ledger_cbid, lineage, row_of
from .models import GenerationParams, JobState, ReferenceImage
from .params import PARAM_SPECS, VALUE_PARAMS, ParamKwargs, check_keywords
from .pickbook import Pick, Picks
from .plan import AXIS_NAMES, CONFIRM_ABOVE_USD, Axis, Quote, SweepPlan, axis_from_values, parse_axis, plan_sweep
from .progress import shown_while_waiting
from .settings import DEFAULT_BASE_URL, Secret, Settings
from .store import LedgerRow, Store, write_atomic
from .text import format_usd

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Result", "Session", "SweepResult", "generate", "get_session", "picks", "reset_session", "sweep"]

log = logging.getLogger(__name__)

Result = Job
SIM_KEY = "sim-local-key"
SIM_STATE = ".sim-state.jsonl"
#: The built-in simulator answers in seconds, not the real gateway's 5–30 s, so demos feel live.
SIM_DEFAULTS: dict[str, Any] = {"latency": (1.5, 4.0)}
#: The parameter keywords (``temperature``, ``size``, ``model``, ``reference_images`` …), from the parameter table.
_PARAM_NAMES = tuple(p.keyword for p in PARAM_SPECS if p.keyword)


def _as_refs(sources: object) -> tuple[ReferenceImage, ...]:
    if sources is None:
        return ()
    if isinstance(sources, (str, bytes, bytearray, Path, Image.Image, ReferenceImage)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)):
        raise ValidationError(
            f"reference images must be paths, URLs, bytes or PIL images, not {type(sources).__name__}",
            field="reference",
            value=sources,
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
        self.report_path: Path | None = None
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
        return text + f", {format_usd(c['cost_usd'])}"

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
        picked = self.picked_cbids()
        for cell, job in zip(self.plan.cells, self.jobs, strict=False):
            image = None
            if job.state.has_image:
                try:
                    image = job.thumbnail(self.cell_size)
                except (OSError, ValueError):
                    image = None
            star = job.state.has_image and ledger_cbid(job) in picked
            out[cell.index] = Tile(state=job.state.value, image=image, error=job.error, picked=star)
        return out

    # ---- picks and reports (docs/editing.md) -----------------------------------------------

    def __getitem__(self, index: int) -> Job:
        """The job of sweep cell ``index`` (cell order: X fastest, then Y, Z, repeats)."""
        return self.jobs[index]

    def __len__(self) -> int:
        return len(self.jobs)

    def picked_cbids(self) -> set[str]:
        """Which images of the ledger are picked (``client_business_id`` of each)."""
        try:
            return Picks(self._store).cbids()
        except (sqlite3.Error, OSError):  # a locked or closed ledger must not break a grid
            log.debug("could not read the picks", exc_info=True)
            return set()

    def redraw_saved(self) -> None:
        """Draw the saved grid files again in place (a pick or unpick changed a star)."""
        if not self._saved.is_set() or not self.paths:
            return
        prov = self.describe()
        for z, (img, target) in enumerate(zip(self.grids(), self.paths, strict=False)):
            write_atomic(target, encode_grid_png(img, {**prov, "z": z, "params": self.plan.common}))

    def save_report(self, path: str | Path | None = None) -> Path:
        """Write the sweep as one self-contained HTML file (see :mod:`.report`); returns its path.

        Without ``path`` it goes to ``<output>/reports/``. Thumbnails are
        embedded; each links to its full-size file by a relative path.
        """
        from .report import sweep_report

        target = Path(path) if path is not None else self._store.root / "reports" / f"sweep_{self.id}.html"
        self.report_path = write_report(target, sweep_report(self, target.parent, Picks(self._store).all()))
        return self.report_path

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
                    "state": j.state.value,
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
        key = self.settings.require_key() if self.backend == "toapis" else Secret(SIM_KEY)
        self.store = Store(self.settings.output_dir)  # first: a store that cannot work fails before anything starts
        try:
            if self.backend == "toapis":
                base_url = self.settings.base_url or DEFAULT_BASE_URL
            else:
                base_url = self.settings.base_url or self._start_sim()
            self.base_url = base_url
            self.gate = RateGate(self.settings)  # built once, shared by the client and the runner
            self.client = ToAPIsClient(
                base_url,
                key,
                retry=self.settings.retry,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                status_timeout=self.settings.status_timeout,
                download_timeout=self.settings.download_timeout,
                download_max_bytes=self.settings.download_max_bytes,
                gate=self.gate,
            )
            self.runner = JobRunner(self.client, self.store, self.settings, backend=self.backend, gate=self.gate)
            self.runner.session = self  # jobs reach their session for edit, pick, lineage
            self.pickbook = Picks(self.store)
        except BaseException:
            self._stop_sim()  # a failed load leaves no simulator behind
            self.store.close()
            raise
        self.sweeps: list[SweepResult] = []
        self._closed = False

    def _start_sim(self) -> str:
        from .sim import SimConfig, SimServer

        options = {**SIM_DEFAULTS, **dict(self.settings.sim_options)}
        # its tasks are kept beside the ledger, so a restarted kernel's simulator still knows them
        self._sim = SimServer(config=SimConfig(**options), state_file=self.store.root / SIM_STATE)
        return str(self._sim.start())

    def _stop_sim(self) -> None:
        if self._sim is not None:
            self._sim.stop()

    @property
    def sim(self) -> Any:
        """The in-process simulator (``None`` on the real backend)."""
        return self._sim

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (a panel then follows the new default session)."""
        return self._closed

    @property
    def store_root(self) -> Path:
        """The folder of the ledger, the images and the saved references."""
        return self.store.root

    def cached_keys(self, keys: Sequence[str]) -> set[str]:
        """The request keys among ``keys`` the ledger already holds an image for (a rerun costs $0)."""
        return self.store.cached_keys(list(keys))

    def remember_reference(self, data: bytes, name: str) -> Path:
        """Keep a reference image's bytes under ``<output>/references/name`` (written once, atomically)."""
        path = self.store.root / "references" / name
        return path if path.exists() else self.store.write_bytes(data, name, folder="references")

    def banner(self) -> str:
        """One line saying which backend is in use and, for the simulator, how to set a key."""
        if self.backend == "toapis":
            return f"gemimg: using ToAPIs at {self.base_url} (key from TOAPIS_API_KEY), output in {self.store.root}"
        where = "the built-in simulator" if self._sim is not None else f"a simulator at {self.base_url}"
        if self.settings.api_key is not None:  # a key is set, but GEMIMG_BACKEND=sim asked for the simulator
            return (
                f"gemimg: GEMIMG_BACKEND=sim, using {where} (simulated images, not charged). "
                "Unset it or run %gemimg backend toapis for real images."
            )
        return (
            f"gemimg: no API key set, using {where} (simulated images, not charged). "
            "Set TOAPIS_API_KEY or run %gemimg login for real images."
        )

    def __repr__(self) -> str:
        return f"<gemimg Session backend={self.backend} base_url={self.base_url} output={self.store.root}>"

    # ---- building requests -----------------------------------------------------------------

    def params(
        self, prompt: str, *, defaults: Mapping[str, Any] | None = None, **kwargs: Unpack[ParamKwargs]
    ) -> GenerationParams:
        """Validated parameters (raises :class:`ValidationError` before anything is sent).

        ``kwargs`` are the parameters of :data:`~.params.PARAM_SPECS` by keyword (``size="16:9"``,
        ``reference_images=[...]``).
        """
        check_keywords("Session.params", kwargs)
        values: dict[str, Any] = {p.name: kwargs.get(p.name) for p in VALUE_PARAMS}
        defaults = {"model": self.settings.model, **(defaults or {})}
        refs = _as_refs(kwargs.get("reference_images", ()))
        return GenerationParams.create(prompt, references=refs, defaults=defaults, **values)

    def estimate(self, params: Sequence[tuple[GenerationParams, int]]) -> tuple[float, int]:
        """Cost of the uncached requests among ``(params, repeat)`` pairs, and how many are cached."""
        cost, cached = 0.0, 0
        free = self.store.cached_keys([p.cache_key(repeat) for p, repeat in params])
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
        fresh: bool = False,
        wait: bool = True,
        repeat: int = 0,
        listeners: Sequence[Listener] = (),
        defaults: Mapping[str, Any] | None = None,
        edit: object = None,
        **kwargs: Unpack[ParamKwargs],
    ) -> Job:
        """Generate one image. With ``wait=False`` it returns at once; ``.result()`` waits.

        ``kwargs`` are the parameters (``size="16:9"``, ``temperature=0.4``,
        ``reference_images=[...]``; see :meth:`params`). ``edit`` (a result, a
        job id or a ledger row) makes that image the first reference and
        records it as the new image's parent.
        """
        check_keywords("Session.generate", kwargs)
        parent = None
        if edit is not None:
            ref, parent = self.edit_source(edit)
            kwargs["reference_images"] = (ref, *_as_refs(kwargs.get("reference_images", ())))
        params = self.params(prompt, defaults=defaults, **kwargs)
        return self.submit(params, repeat=repeat, fresh=fresh, wait=wait, listeners=listeners, parent=parent)

    def submit(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        fresh: bool = False,
        wait: bool = False,
        listeners: Sequence[Listener] = (),
        parent: Mapping[str, Any] | None = None,
    ) -> Job:
        """Run already-validated parameters (budget checked first)."""
        if self.settings.max_cost_usd is not None:  # the look-up is only worth it with a budget
            cost = (params.price_usd or 0.0) if fresh else self.estimate([(params, repeat)])[0]
            self.check_budget(cost)
        job = self.runner.submit(params, repeat=repeat, fresh=fresh, listeners=listeners, parent=parent)
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
        edit: object = None,
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
            if isinstance(value, (list, tuple, range)) and name in AXIS_NAMES:
                all_axes.append(axis_from_values(name, list(value), resolve_ref=resolver))
            elif name in _PARAM_NAMES:
                fixed[name] = value
            else:
                raise ValidationError(
                    f"unknown sweep parameter {name!r}; use one of {', '.join(AXIS_NAMES)}", field=name, value=value
                )
        if edit is not None:  # the edited image goes first in every cell, a swept ref= included
            ref = self.edit_source(edit)[0]
            fixed["reference_images"] = (ref, *_as_refs(fixed.get("reference_images")))
            all_axes = [
                dataclasses.replace(a, values=tuple((ref, *v) for v in a.values)) if a.name == "ref" else a
                for a in all_axes
            ]
        base = self.params(prompt, defaults=defaults, **fixed)
        return plan_sweep(base, all_axes, repeats=repeats)

    def quote(
        self, plan: SweepPlan, *, fresh: bool = False, confirm_above_usd: float | None = CONFIRM_ABOVE_USD
    ) -> Quote:
        """What ``plan`` would cost now (``fresh``: as if nothing were stored) and whether it needs a yes."""
        if fresh:
            return Quote(plan, frozenset(), 0, 0, plan.estimate_usd(), confirm_above_usd)
        keys = list(plan.keys)
        free = frozenset(self.store.cached_keys(keys))
        stored = self.store.cached_keys(keys, running=False) if free else set()
        cached = plan.n_cached(stored)
        return Quote(plan, free, cached, plan.n_cached(free) - cached, plan.estimate_usd(free), confirm_above_usd)

    def sweep(
        self,
        prompt: str,
        *,
        axes: Sequence[Axis | str] = (),
        repeats: int = 1,
        fresh: bool = False,
        wait: bool = True,
        yes: bool = False,
        confirm_above_usd: float | None = CONFIRM_ABOVE_USD,
        cell_size: int = 320,
        listeners: Sequence[Listener] = (),
        defaults: Mapping[str, Any] | None = None,
        plan: SweepPlan | None = None,
        edit: object = None,
        **kwargs: Any,
    ) -> SweepResult:
        """Run a parameter sweep and return its :class:`SweepResult`.

        The whole plan is validated first; above ``confirm_above_usd`` it needs
        ``yes=True``; it never goes past the budget.
        """
        plan = plan or self.plan(prompt, axes=axes, repeats=repeats, defaults=defaults, edit=edit, **kwargs)
        parent = self.edit_source(edit)[1] if edit is not None else None
        quote = self.quote(plan, fresh=fresh, confirm_above_usd=confirm_above_usd)
        if quote.needs_confirmation and not yes:
            raise quote.refusal()
        self.check_budget(quote.estimate_usd or 0.0)
        sweep_id = uuid.uuid4().hex[:8]
        result = SweepResult(plan, [], sweep_id=sweep_id, store=self.store, cell_size=cell_size)
        all_listeners = [result._on_job, *listeners]
        result.jobs.extend(
            self.runner.submit_many(
                [(cell.params, cell.repeat) for cell in plan.cells], fresh=fresh, sweep_id=sweep_id, parent=parent
            )
        )
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

    def find_job(self, job_id: str) -> Job | None:
        """This session's job with that id, if any."""
        return self.runner.get(job_id)

    def find_sweep(self, sweep_id: str) -> SweepResult | None:
        """This session's sweep with that id, if any."""
        return next((s for s in self.sweeps if s.id == sweep_id), None)

    def wait_jobs(self, jobs: Sequence[Job], timeout: float | None = None) -> bool:
        """Block until these jobs have ended (``False`` if ``timeout`` came first)."""
        return self.runner.wait(list(jobs), timeout=timeout)

    def cancel_jobs(self, jobs: Sequence[Job]) -> int:
        """Cancel these jobs; returns how many were stopped before being sent."""
        return self.runner.cancel(list(jobs))

    def cancel(self, target: str = "all", *, drop: bool = False) -> int:
        """Cancel a job (by id), a sweep (by id) or everything."""
        if target != "all" and self.runner.get(target) is None and not any(s.id == target for s in self.sweeps):
            known = ", ".join(j.id for j in self.runner.jobs[-8:]) or "none yet"
            raise ValidationError(
                f"no job or sweep {target!r} in this session; jobs: {known}", field="job", value=target
            )
        return self.runner.cancel(target, drop=drop)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job and sweep grid is finished."""
        ok = self.runner.wait(timeout=timeout)
        for s in self.sweeps:
            ok = s.wait(timeout=5) and ok
        return ok

    def resume(self) -> list[Job]:
        """Finish unfinished ledger rows whose owner is gone (a dead kernel's; never a live one's)."""
        return self.runner.resume()

    def pending_count(self) -> int:
        """Unfinished rows of this backend whose owner is gone (a hint to ``resume``; a re-run takes them too)."""
        active = {j.cbid for j in self.runner.jobs}
        return sum(1 for row in self.store.orphans(self.backend) if row.cbid not in active)

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

    # ---- edit chains and picks (docs/editing.md) ---------------------------------------------

    def find(self, target: object) -> LedgerRow:
        """The ledger row of an image: a result, a job id (short, task or ``client_business_id``) or a row.

        Works after a restart (from the ledger alone); raises
        :class:`ValidationError` when nothing matches.
        """
        if isinstance(target, LedgerRow):
            return target
        row: LedgerRow | None = None
        if isinstance(target, Job):
            row = row_of(self.store, target)
            what = f"job {target.id} ({target.state.value})"
        elif isinstance(target, str):
            live = self.runner.get(target.strip())
            row = row_of(self.store, live) if live is not None else find_row(self.store, target)
            what = f"{target!r}"
        else:
            raise ValidationError(
                "name an image by its result, job id or task id", field="image", value=type(target).__name__
            )
        if row is None:
            raise ValidationError(
                f"{what} is not in the ledger (yet); name a result, a job id (%gemimg jobs) or a task id",
                field="image",
                value=str(target),
            )
        return row

    def edit_source(self, target: object) -> tuple[ReferenceImage, dict[str, Any]]:
        """The image to edit as a reference, and the ``parent`` record (``cbid``, ``key``, ``sha256``)."""
        if isinstance(target, Job) and not target.done():
            raise ValidationError(
                f"job {target.id} has no image yet ({target.state.value}); wait for it first",
                field="edit",
                value=target.id,
            )
        return edit_reference(self.find(target))

    def edit(self, target: object, prompt: str, **kwargs: Any) -> Job:
        """Edit an image: ``generate(prompt, edit=target, **kwargs)``."""
        return self.generate(prompt, edit=target, **kwargs)

    def lineage(self, target: object) -> Lineage:
        """The chain of edits from the root to ``target`` (from the ledger alone)."""
        return lineage(self.store, self.find(target), picked=self.pickbook.cbids())

    def pick(self, target: object, *, note: str | None = None) -> Pick:
        """Pick an image (ledger ``picks`` table and the PNG's provenance); survives restarts."""
        row = self.find(target)
        if row.state != "done":
            raise ValidationError(f"image {row.cbid[-6:]} is {row.state}, not done", field="pick", value=row.cbid[-6:])
        pick = self.pickbook.add(row, note)
        self._redraw_grids_with(row.cbid)
        return pick

    def unpick(self, target: object) -> bool:
        """Remove a pick; ``False`` if it was not picked."""
        row = self.find(target)
        gone = self.pickbook.remove(row)
        self._redraw_grids_with(row.cbid)
        return gone

    def _redraw_grids_with(self, cbid: str) -> None:
        """Saved grids of this session's sweeps that show the image get its star (or lose it)."""
        for sweep in self.sweeps:
            if any(j.state.has_image and ledger_cbid(j) == cbid for j in sweep.jobs):
                try:
                    sweep.redraw_saved()
                except OSError:
                    log.warning("could not redraw the saved grid of sweep %s", sweep.id, exc_info=True)

    def is_picked(self, target: object) -> bool:
        """Whether an image is picked."""
        try:
            return self.pickbook.get(self.find(target).cbid) is not None
        except ValidationError:
            return False

    def picks(self) -> list[Pick]:
        """Every picked image of this output folder, newest first."""
        return self.pickbook.all()

    def children_count(self) -> dict[str, int]:
        """How many finished edits each image has (``client_business_id`` → count)."""
        return edited_cbids(self.store)

    def save_report(self, target: object, path: str | Path | None = None) -> Path:
        """Write the HTML report of a sweep, or of an image's edit chain; returns its path.

        Without ``path`` it goes to ``<output>/reports/``.
        """
        if isinstance(target, SweepResult):
            return target.save_report(path)
        from .report import lineage_report

        chain = self.lineage(target)
        name = f"lineage_{chain.steps[-1].row.cbid[-6:]}.html"
        out = Path(path) if path is not None else self.store.root / "reports" / name
        return write_report(out, lineage_report(chain, out.parent, self.pickbook.all()))

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
        if _DEFAULT is None or _DEFAULT.closed:
            _DEFAULT = Session(settings)
        elif settings is not None and settings != _DEFAULT.settings:
            raise ConfigError("a session is already running with other settings; call reset_session() first")
        return _DEFAULT


def reset_session(settings: Settings | None = None) -> Session | None:
    """Close the default session; with ``settings``, start a new one."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        new = Session(settings) if settings is not None else None  # may raise: the old session then stays
        if _DEFAULT is not None:
            _DEFAULT.close()
        _DEFAULT = new
        return _DEFAULT


def generate(prompt: str, **kwargs: Any) -> Job:
    """Generate one image with the default session (see :meth:`Session.generate`)."""
    return get_session().generate(prompt, **kwargs)


def sweep(prompt: str, **kwargs: Any) -> SweepResult:
    """Run a sweep with the default session (see :meth:`Session.sweep`)."""
    return get_session().sweep(prompt, **kwargs)


def picks() -> list[Pick]:
    """The picked images of the default session's output folder (see :meth:`Session.picks`)."""
    return get_session().picks()


def write_report(target: Path, markup: str) -> Path:
    """Write an HTML report atomically (temporary file, then rename); returns the path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, markup.encode("utf-8"))
