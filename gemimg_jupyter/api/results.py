"""What a run gives back: the :class:`Result` interface, and :class:`SweepResult` for a sweep.

One image is a :class:`~gemimg_jupyter.engine.Job`; a sweep is a :class:`SweepResult`. Both satisfy
:class:`Result`: ``done()``, ``wait(timeout)``, ``result(timeout)``, ``cancel(drop=)``, an ``id``
and a rich display, so code that only waits for and shows a run takes either.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image

from gemimg_jupyter.api.compare import Comparison
from gemimg_jupyter.api.lineage import ledger_cbid
from gemimg_jupyter.api.progress import shown_while_waiting
from gemimg_jupyter.api.tables import Rows
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.domain.text import format_usd
from gemimg_jupyter.draw.grid import Tile, encode_grid_png, grid_for_plan
from gemimg_jupyter.draw.sheets import stack
from gemimg_jupyter.engine import Job, Listener
from gemimg_jupyter.ledger.picks import Picks
from gemimg_jupyter.ledger.store import Store, write_atomic
from gemimg_jupyter.plans.plan import SweepPlan

__all__ = ["Result", "SweepResult", "count_jobs", "write_report"]

log = logging.getLogger(__name__)


@runtime_checkable
class Result(Protocol):
    """What one image (a :class:`~gemimg_jupyter.engine.Job`) and a sweep (a :class:`SweepResult`) both are.

    ``id`` names the run (``%gemimg wait ID``, ``Session.cancel(ID)``); ``done()`` says whether it has
    ended; ``wait(timeout)`` blocks at most ``timeout`` seconds and says whether it ended;
    ``result(timeout)`` waits and returns the finished run (a job raises its error, a sweep keeps
    failed cells as placeholders); ``cancel(drop=)`` stops what has not been sent (``drop=True``:
    stops collecting the rest too) and says how many it stopped; ``_repr_mimebundle_`` shows it.
    """

    @property
    def id(self) -> str: ...

    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def result(self, timeout: float | None = None) -> Result: ...

    def cancel(self, *, drop: bool = False) -> int: ...

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]: ...


def count_jobs(jobs: Sequence[Job]) -> dict[str, Any]:
    """``total``, ``done``, ``cached``, ``failed`` (every other end), ``pending`` and ``cost_usd`` of some jobs."""
    c = {"total": len(jobs), "done": 0, "cached": 0, "failed": 0, "pending": 0, "cost_usd": 0.0}
    for job in jobs:
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
        """How many images are done, cached, failed, pending; money spent so far (see :func:`count_jobs`)."""
        return count_jobs(self.jobs)

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
        prov = self.provenance()
        for z, (img, target) in enumerate(zip(self.grids(), self.paths, strict=False)):
            write_atomic(target, encode_grid_png(img, {**prov, "z": z, "params": self.plan.common}))

    def save_report(self, path: str | Path | None = None) -> Path:
        """Write the sweep as one self-contained HTML file (see :mod:`.report`); returns its path.

        Without ``path`` it goes to ``<output>/reports/``. Thumbnails are
        embedded; each links to its full-size file by a relative path.
        """
        from gemimg_jupyter.api.report import sweep_report

        target = Path(path) if path is not None else self._store.root / "reports" / f"sweep_{self.id}.html"
        return write_report(target, sweep_report(self, target.parent, Picks(self._store).all()))

    def compare(self) -> Comparison:
        """The interactive comparison view of this sweep (a static grid where no widget can show)."""
        return Comparison.of_sweep(
            self.plan, self.jobs, sweep_id=self.id, picked=self.picked_cbids, static=lambda: stack(self.grids())
        )

    def grid(self, z: int = 0, *, cell_size: int | None = None) -> Image.Image:
        """The labelled comparison grid for Z index ``z``, as it is now."""
        footer = self.progress_text()
        return grid_for_plan(self.plan, self.tiles(), z=z, cell_size=cell_size or self.cell_size, footer=footer)

    def grids(self) -> list[Image.Image]:
        """One grid per Z value (a single grid for one or two axes)."""
        return [self.grid(z) for z in range(self.plan.shape[2])]

    def table(self) -> Rows:
        """One dict per image: the cell's axis values, parameters, path, state, cost.

        A list that shows itself as a table (HTML in a notebook, aligned text in a terminal).
        """
        rows = Rows()
        for cell, job in zip(self.plan.cells, self.jobs, strict=False):
            row = {"cell": cell.index, "x": cell.x, "y": cell.y, "z": cell.z, **cell.labels, **job.describe()}
            rows.append(row)
        return rows

    def provenance(self) -> dict[str, Any]:
        """The sweep as plain data: the grid PNG's provenance and the display's metadata."""
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
        prov = self.provenance()
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

    def follow(self, jobs: Sequence[Job], listeners: Sequence[Listener] = ()) -> None:
        """Take the sweep's jobs (in cell order) and listen to them; the grid is saved once all have ended."""
        self.jobs.extend(jobs)
        for job in self.jobs:
            for listener in (self._on_job, *listeners):
                job.add_listener(listener)

    def _on_job(self, job: Job) -> None:
        # a progress event of an unfinished job cannot finish the sweep: O(1) for it, not a walk over every job
        if self._saved.is_set() or not job.done() or not self.done():
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
            {"image/png": {"gemimg_sweep": self.provenance()}},
        )


if TYPE_CHECKING:  # mypy checks here that both kinds of run satisfy Result

    def _both_are_results(job: Job, sweep: SweepResult) -> tuple[Result, Result]:
        return job, sweep


def write_report(target: Path, markup: str) -> Path:
    """Write an HTML report atomically (temporary file, then rename); returns the path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, markup.encode("utf-8"))
