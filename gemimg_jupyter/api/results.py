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
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image

from gemimg_jupyter.api.compare import Comparison
from gemimg_jupyter.api.lineage import ledger_cbid
from gemimg_jupyter.api.progress import shown_while_waiting
from gemimg_jupyter.api.report import SweepRun, sweep_report
from gemimg_jupyter.api.tables import Rows
from gemimg_jupyter.domain.durations import format_duration
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.text import format_usd
from gemimg_jupyter.draw.grid import (
    GridPage,
    PageCanvas,
    Tile,
    encode_grid_png,
    grid_for_plan,
    grid_page,
    page_index,
    plan_pages,
)
from gemimg_jupyter.draw.sheets import side_by_side
from gemimg_jupyter.engine import Job, Listener
from gemimg_jupyter.ledger.files import path_error, user_target, write_user_file
from gemimg_jupyter.ledger.picks import Picks
from gemimg_jupyter.ledger.store import Store, write_atomic
from gemimg_jupyter.plans.plan import SweepCell, SweepPlan

__all__ = ["Result", "SweepResult", "count_jobs", "ends_text", "report_target", "write_report"]

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


def count_jobs(jobs: Sequence[Job], owner: str | None = None) -> dict[str, Any]:
    """``total``, ``done``, ``cached``, ``blocked`` (refused by the gateway for their content), ``lost`` (paid,
    the image out of reach), ``failed`` (every other end but a cancel), ``cancelled``, ``pending`` and
    ``cost_usd`` of some jobs.

    With ``owner`` (a sweep id), a job another run started and this one shares (the same request, already
    running) counts as cached and its cost stays with the run that paid, as the plan line counted it.
    """
    c: dict[str, Any] = {"total": len(jobs), "done": 0, "cached": 0, "blocked": 0, "lost": 0, "failed": 0}
    c["cancelled"] = 0
    c |= {"pending": 0, "cost_usd": 0.0}
    for job in jobs:
        shared = owner is not None and job.sweep_id != owner
        if job.state is JobState.CACHED or (shared and job.state is JobState.DONE):
            c["cached"] += 1
        elif job.state is JobState.DONE:
            c["done"] += 1
        elif job.state is JobState.CANCELLED:
            c["cancelled"] += 1
        elif job.state is JobState.BLOCKED:
            c["blocked"] += 1
        elif job.state is JobState.LOST:
            c["lost"] += 1
        elif job.state.is_terminal:
            c["failed"] += 1
        else:
            c["pending"] += 1
        c["cost_usd"] += 0.0 if shared else job.cost_usd
    return c


def ends_text(c: dict[str, Any]) -> str:
    """``3/5 done (1 cached), 1 blocked, 1 lost (paid), 1 failed`` from :func:`count_jobs`' counts: refusals
    and paid-but-unreachable apart from errors."""
    text = f"{c['done'] + c['cached']}/{c['total']} done"
    if c["cached"]:
        text += f" ({c['cached']} cached)"
    if c["blocked"]:
        text += f", {c['blocked']} blocked"
    if c.get("lost"):
        text += f", {c['lost']} lost (paid)"
    if c["failed"]:
        text += f", {c['failed']} failed"
    return text


class SweepResult:
    """A running or finished sweep: its plan, its jobs, and the grid.

    ``grid()`` draws the labelled grid as it is now (pending cells show their
    state), ``table()`` gives one dict per image, ``save()`` writes the grid.
    """

    #: At most this many grid pages are kept drawn (in memory) while their cells land. None: with tiles that are
    #: pastes a page is drawn whole in ~0.1 s when its last cell lands, and one open canvas cost ~150 MB of peak
    #: RSS in a 1,000-image sweep (384 → 236 MB) for a tail 0.4 s shorter.
    MAX_CANVASES = 0
    #: zlib level of saved grid pages: 3 encodes a page 2–3× faster than the default 6 (files ~15 % larger).
    PAGE_PNG_LEVEL = 3
    #: The drawing thread reads the picks again after this many seconds (not for every landed cell).
    PICKS_EVERY_S = 5.0
    #: The drawing thread waits this long for the next ended cells before it ends (a thread per cell otherwise).
    LINGER_S = 0.5
    #: The longest a cancel (or a time limit) waits for a background claim to hand over its jobs.
    CLAIM_WAIT_S = 60.0

    def __init__(
        self,
        plan: SweepPlan,
        jobs: Sequence[Job],
        *,
        sweep_id: str,
        store: Store,
        cell_size: int = 320,
        dry_run: bool = False,
        theme: str = "light",
    ) -> None:
        self.plan = plan
        self._jobs = list(jobs)  # filled by follow(), maybe from a background claim (see ``jobs``)
        self.id = sweep_id
        self.cell_size = cell_size
        #: The grids' chrome: ``light`` or ``dark`` (``Settings.grid_theme``, resolved).
        self.theme = theme
        self.paths: list[Path] = []
        #: A dry run: the plan and its grid of placeholders, nothing sent (``--dry-run``).
        self.dry_run = dry_run
        #: Seconds after which submitting stopped (``--stop-after``), once that happened; else ``None``.
        self.stopped_after: float | None = None
        self._store = store
        self._saved = threading.Event()
        self._lock = threading.Lock()
        self._stop_timer: threading.Timer | None = None
        self._pages: list[GridPage] | None = None
        # saving as the sweep goes: each grid page is drawn and saved once, when its last cell ends
        self._ended: set[int] = set()  # id() of the jobs seen ending
        self._cells_of: dict[int, list[tuple[int, SweepCell]]] = {}  # id() of a job → (page position, cell)
        self._left: list[int] = []  # per page: cells not drawn yet (the drawing thread's alone)
        self._canvases: dict[int, PageCanvas] = {}  # pages being drawn tile by tile (the drawing thread's alone)
        self._page_paths: dict[int, Path] = {}
        self._finished = 0  # pages saved (or failed to)
        self._events: list[tuple[int, SweepCell, Job]] = []  # cells that ended, not drawn yet
        self._drawing = False
        self._more = threading.Condition(self._lock)  # the drawing thread waits here a moment for the next cells
        self._picks_read: tuple[float, set[str]] | None = None  # (when, picks) for the drawing thread
        self.started = time.time()
        # the claim in the background (``submit(..., background=executor)``): set once the jobs are in ``jobs``
        self._claimed = threading.Event()
        self._claimed.set()
        self._claiming = False  # the worker has begun claiming (a cancel from now on waits for its jobs)
        self._listeners: list[Listener] = []  # add_listener's, for jobs that come later
        self._cancel_early: bool | None = None  # a cancel (its ``drop``) that came before the jobs were in
        #: Why the background claim failed (nothing was sent then), else ``None``.
        self.claim_error: str | None = None
        if dry_run:
            self._saved.set()  # nothing to wait for, nothing to save

    # ---- state -----------------------------------------------------------------------------

    @property
    def jobs(self) -> list[Job]:
        """The sweep's jobs in cell order; while a background claim still makes them, this waits for them
        (at most :attr:`CLAIM_WAIT_S`; the claim of 5,000 takes about half a second)."""
        self._claimed.wait(self.CLAIM_WAIT_S)
        return self._jobs

    def counts(self) -> dict[str, Any]:
        """How many images are done, cached, failed, pending; money spent so far (see :func:`count_jobs`)."""
        return count_jobs(self._jobs, owner=self.id)

    def progress_text(self) -> str:
        """``7/12 done, 1 blocked, 1 failed, $0.34`` (cached images count as done; ``, 3 not sent`` after a stop).

        The money is what this sweep paid: an image it shares with another run still going counts as
        cached here (as the plan line said) and is paid in that run's line.
        """
        if self.dry_run:
            return f"dry run: {self.plan.n_requests:,} requests planned, nothing sent, $0"
        if not self._jobs:  # claiming in the background, or stopped before any job was made
            n = self.plan.n_requests
            if not self._claimed.is_set():
                return f"0/{n:,} done, {n:,} being claimed, {format_usd(0.0)}"
            why = "cancelled" if self._cancel_early is not None else f"not sent ({self.claim_error})"
            return f"0/{n:,} done, {n:,} {why}, nothing sent, {format_usd(0.0)}"
        c = self.counts()
        unsent = len(self.not_sent())
        text = ends_text(c)
        if c["cancelled"] - unsent:
            text += f", {c['cancelled'] - unsent} cancelled"
        text += f", {format_usd(c['cost_usd'])}"
        if unsent:
            text += f", {unsent:,} not sent (stopped after {format_duration(self.stopped_after or 0.0)}; run it again to send them)"
        return text

    def not_sent(self) -> list[Job]:
        """The jobs a time limit kept from being submitted (they cost nothing; a re-run sends them)."""
        if self.stopped_after is None:
            return []
        return [j for j in self._jobs if j.state is JobState.CANCELLED and j.task_id is None]

    def stop_after(self, seconds: float) -> None:
        """Stop *submitting* ``seconds`` from now: jobs not sent by then end cancelled and unpaid (:meth:`not_sent`)."""
        timer = threading.Timer(seconds, self._stop_submitting, args=(seconds,))
        timer.daemon = True
        timer.name = f"gemimg-stop-after-{self.id}"
        self._stop_timer = timer
        timer.start()

    def _stop_submitting(self, seconds: float) -> None:
        self._claimed.wait(self.CLAIM_WAIT_S)  # the jobs of a claim still running: stopped once they are in
        if self.done():
            return
        self.stopped_after = seconds
        for job in self._jobs:
            if not job.done() and job.task_id is None:
                job.cancel()

    def done(self) -> bool:
        """True when every job has ended (never while the claim is still making them)."""
        return self._claimed.is_set() and all(job.done() for job in self._jobs)

    def cancelling(self) -> bool:
        """True once a cancel came while the background claim ran (its jobs are cancelled before they start)."""
        return self._cancel_early is not None

    def claimed(self, timeout: float | None = 0.0) -> bool:
        """True once the sweep's jobs are in :attr:`jobs` (at once, unless the claim runs in the background);
        waits up to ``timeout`` seconds for that (``None``: as long as it takes)."""
        return self._claimed.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every job (and the saved grid); ``False`` if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._claimed.wait(timeout):  # a background claim: its jobs first, within the same deadline
            return False
        return self._wait_jobs(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @shown_while_waiting  # a one-line bar on a terminal (a script, terminal IPython); nothing elsewhere
    def _wait_jobs(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in self._jobs:
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
        """Cancel what has not been submitted yet (``drop=True``: stop collecting the rest too).

        Before the background claim has begun nothing is claimed, sent or paid: every request ends
        unsent. While it runs, the jobs are cancelled as soon as they are in (this waits for them).
        """
        during = False
        with self._lock:
            if not self._claimed.is_set():
                self._cancel_early, during = drop, True
                if not self._claiming:
                    return self.plan.n_requests
        if not self._claimed.wait(self.CLAIM_WAIT_S):
            return 0  # the worker cancels them itself when the claim ends
        # during the claim the runner cancelled its new jobs before they started: those that ended already count
        return sum(
            job.cancel(drop=drop) if not job.done() else during and job.state is JobState.CANCELLED
            for job in self._jobs
        )

    # ---- pictures and tables ---------------------------------------------------------------

    def tiles(self, only: Collection[int] | None = None) -> dict[int, Tile]:
        """One :class:`~.grid.Tile` per sweep cell index (thumbnails only); ``only`` those cell indexes."""
        out: dict[int, Tile] = {}
        if self.dry_run:
            for cell in self.plan.cells:
                price = cell.params.price_usd
                out[cell.index] = Tile(
                    state="planned", error=f"dry run · {format_usd(price, places=3, missing='price n/a')}"
                )
            return out
        picked = self.picked_cbids()
        for cell, job in zip(self.plan.cells, self._jobs, strict=False):
            if only is None or cell.index in only:
                out[cell.index] = self._tile(job, picked)
        return out

    def _tile(self, job: Job, picked: Collection[str]) -> Tile:
        """The tile of one job: its thumbnail (read from its small file), or its state."""
        if self.stopped_after is not None and job.state is JobState.CANCELLED and job.task_id is None:
            return Tile(state="not sent", error="time limit; run again to send")
        image = None
        if job.state.has_image:
            try:
                # read from its small file each time: a 1,000-image sweep keeps no 1,000 thumbnails in memory
                image = job.thumbnail(self.cell_size, keep=False)
            except (OSError, ValueError):
                image = None
        star = job.state.has_image and ledger_cbid(job) in picked
        suspect = job.suspect if job.state.has_image else None
        progress = f"{job.progress}%" if not job.done() and job.progress > 0 else None
        return Tile(state=job.state.value, image=image, error=job.error, picked=star, suspect=suspect, caption=progress)

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
        for at, target in enumerate(self.paths):
            write_atomic(target, self._page_png(at))

    def save_report(self, path: str | Path | None = None) -> Path:
        """Write the sweep as one self-contained HTML file (see :mod:`.report`); returns its path.

        Without ``path`` it goes to ``<output>/reports/``. Thumbnails are
        embedded; each links to its full-size file by a relative path.
        """
        target = report_target(path, self._store.root / "reports" / f"sweep_{self.id}.html")
        return write_report(target, sweep_report(self, target.parent, Picks(self._store).all()))

    def compare(self) -> Comparison:
        """The interactive comparison view of this sweep (a static grid where no widget can show)."""
        return Comparison.of_sweep(
            self.plan, self.jobs, sweep_id=self.id, picked=self.picked_cbids, static=lambda: side_by_side(self.grids())
        )

    def grid(self, z: int = 0, *, cell_size: int | None = None, page: int | None = None) -> Image.Image:
        """The labelled comparison grid for Z index ``z``, as it is now.

        A sweep too big for one readable grid has pages (:meth:`pages`): this draws ``page``
        (numbered from 1 over the whole sweep), by default the first page of ``z``.
        """
        size = cell_size or self.cell_size
        pages = self.pages()
        several = self.plan.shape[2] > 1 and not self.dry_run  # each Z grid counts its own cells
        footer = self._page_progress(pages[z]) if several and len(pages) == self.plan.shape[2] else self.progress_text()
        if len(pages) == self.plan.shape[2] and page is None:
            return grid_for_plan(self.plan, self.tiles(), z=z, cell_size=size, footer=footer, theme=self.theme)
        chosen = pages[page - 1] if page is not None else next(p for p in pages if p.z == z)
        index = self.page_index()
        on_page = {c.index for c in self.plan.cells if c.z == chosen.z and c.x in chosen.xs and c.y in chosen.ys}
        footer = f"{footer} · {index}" if index else footer
        return grid_page(self.plan, self.tiles(on_page), chosen, cell_size=size, footer=footer, theme=self.theme)

    def pages(self) -> list[GridPage]:
        """The grid pages: one per Z value while each fits :data:`~.grid.MAX_TILES_PER_PAGE` images, else more."""
        if self._pages is None:
            self._pages = plan_pages(self.plan)
        return self._pages

    def page_index(self) -> str:
        """One line naming what each grid page holds (empty when every Z grid is one page)."""
        pages = self.pages()
        return "" if len(pages) == self.plan.shape[2] else page_index(self.plan, pages)

    def grids(self) -> list[Image.Image]:
        """One grid per page: per Z value (a single grid for one or two axes), in pages of ≤ 100 images."""
        pages = self.pages()
        if len(pages) == self.plan.shape[2]:  # every Z grid fits on one page
            return [self.grid(z) for z in range(self.plan.shape[2])]
        return [self._draw_page(at) for at in range(len(pages))]

    def _cells_on(self, page: GridPage) -> set[int]:
        """The sweep cell indexes that ``page`` shows."""
        xs, ys = set(page.xs), set(page.ys)
        return {c.index for c in self.plan.cells if c.z == page.z and c.x in xs and c.y in ys}

    def _paged(self) -> bool:
        return len(self.pages()) != self.plan.shape[2]

    def _page_progress(self, page: GridPage) -> str:
        """The footer of a page (or Z grid) when the sweep has several: its own counts (it may be saved before
        the rest end)."""
        on_page = self._cells_on(page)
        jobs = [j for cell, j in zip(self.plan.cells, self._jobs, strict=False) if cell.index in on_page]
        c = count_jobs(jobs, owner=self.id)  # as progress_text counts: the Z grids' footers add up to it
        stopped = f", {c['cancelled']} cancelled or not sent" if c["cancelled"] else ""
        return f"{ends_text(c)}{stopped}, {format_usd(c['cost_usd'])} on this {'page' if self._paged() else 'grid'}"

    def _page_footer(self, page: GridPage) -> str:
        index = self.page_index()
        return f"{self._page_progress(page)} · {index}" if index else self._page_progress(page)

    def _draw_page(self, at: int) -> Image.Image:
        """Draw page ``at`` (0-based) from the thumbnails of its own cells only."""
        page = self.pages()[at]
        if not self._paged():
            return self.grid(page.z)
        tiles = self.tiles(self._cells_on(page))
        footer = self._page_footer(page)
        return grid_page(self.plan, tiles, page, cell_size=self.cell_size, footer=footer, theme=self.theme)

    def _page_png(self, at: int, image: Image.Image | None = None) -> bytes:
        """PNG bytes of page ``at`` (``image``: already drawn) with its provenance (a page describes its own cells)."""
        page = self.pages()[at]
        prov = self.provenance(only=self._cells_on(page) if self._paged() else None)
        extra = {"page": page.number, "progress": self._page_progress(page)} if self._paged() else {}
        drawn = image if image is not None else self._draw_page(at)
        return encode_grid_png(
            drawn, {**prov, "z": page.z, "params": self.plan.common} | extra, compress_level=self.PAGE_PNG_LEVEL
        )

    def _page_name(self, at: int) -> str:
        page = self.pages()[at]
        suffix = f"-z{page.z}" if self.plan.shape[2] > 1 else ""
        return suffix + (f"-p{page.number}" if self._paged() else "")

    def table(self) -> Rows:
        """One dict per image: the cell's axis values, parameters, path, state, cost.

        A list that shows itself as a table (HTML in a notebook, aligned text in a terminal).
        """
        rows = Rows()
        for cell, job in zip(self.plan.cells, self.jobs, strict=False):
            row = {"cell": cell.index, "x": cell.x, "y": cell.y, "z": cell.z, **cell.labels, **job.describe()}
            rows.append(row)
        return rows

    def provenance(self, only: Collection[int] | None = None) -> dict[str, Any]:
        """The sweep as plain data: the grid PNG's provenance and the display's metadata (``only``: those cells)."""
        return {
            "sweep_id": self.id,
            "axes": [
                {"name": a.name, "values": list(a.labels)}
                | ({"with": [{"name": m.name, "values": list(m.labels)} for m in a.partners]} if a.partners else {})
                for a in self.plan.axes
            ],
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
                for c, j in zip(self.plan.cells, self._jobs, strict=False)
                if only is None or c.index in only
            ],
            "progress": self.progress_text(),
        } | ({"pages": self.page_index()} if self.page_index() else {})

    def save(self, path: str | Path | None = None) -> list[Path]:
        """Write the grid(s) as PNG with provenance; returns the paths.

        Without ``path`` they go to ``<output>/grids/``. With several Z values
        the files get ``-z0``, ``-z1``… suffixes, pages ``-p1``, ``-p2``… Pages are
        drawn one at a time, so memory holds one page, however big the sweep.
        """
        return [self._save_page(at, path) for at in range(len(self.pages()))]

    def _save_page(self, at: int, path: str | Path | None = None, image: Image.Image | None = None) -> Path:
        data, suffix = self._page_png(at, image), self._page_name(at)
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
            return self._store.write_bytes(data, f"{stamp}_sweep_{self.id}{suffix}.png", folder="grids")
        target: str | Path = path
        if str(path).strip() and not Path(path).expanduser().is_dir():
            target = Path(path).expanduser()
            target = target.with_name(f"{target.stem}{suffix}{target.suffix or '.png'}")
        return write_user_file(target, data, f"sweep_{self.id}{suffix}.png")

    def submit_order(self) -> list[int]:
        """The sweep's cell indexes in the order they are sent: cell order, or page by page when the grid has pages.

        Page by page (each page's cells in cell order, its repeats last), the pages end one after another
        while the sweep runs and each is saved then, so the last image leaves one page to finish, not a
        band of pages that all wait for their last row.
        """
        cells = self.plan.cells
        if not self._paged():
            return list(range(len(cells)))
        page_of = {(x, y, p.z): at for at, p in enumerate(self.pages()) for x in p.xs for y in p.ys}
        return sorted(range(len(cells)), key=lambda i: (page_of[cells[i].position], cells[i].repeat, i))

    def submit(
        self,
        send: Callable[[list[tuple[GenerationParams, int]]], Sequence[Job]],
        listeners: Sequence[Listener] = (),
        *,
        background: Executor | None = None,
    ) -> None:
        """Send the sweep's requests through ``send`` in :meth:`submit_order` and :meth:`follow` the jobs it gives back.

        ``background``: the claim runs there (the session's claim worker) and this returns at once
        (:meth:`claimed` says when the jobs are in; :meth:`wait`, :meth:`done`, :meth:`cancel` and the
        progress line know it is running). ``send`` must not refuse anything then: every check that can
        refuse is made before.
        """
        if background is None:
            self._send(send, listeners)
            return
        self._claimed.clear()
        background.submit(self._claim_in_background, send, listeners)

    def _claim_in_background(
        self, send: Callable[[list[tuple[GenerationParams, int]]], Sequence[Job]], listeners: Sequence[Listener]
    ) -> None:
        """The background claim: nothing at all if a cancel came first; the jobs cancelled if it came meanwhile."""
        try:
            with self._lock:
                if self._cancel_early is not None:  # cancelled before anything was claimed: nothing sent or paid
                    self._saved.set()
                    return
                self._claiming = True
            self._send(send, listeners)
        except Exception as exc:
            log.exception("could not claim the requests of sweep %s", self.id)
            self.claim_error = f"{type(exc).__name__}: {exc}"
            self._saved.set()
        finally:
            self._claimed.set()
        drop = self._cancel_early
        if drop is not None:
            for job in self._jobs:
                if not job.done():
                    job.cancel(drop=drop)

    def _send(
        self, send: Callable[[list[tuple[GenerationParams, int]]], Sequence[Job]], listeners: Sequence[Listener]
    ) -> None:
        order = self.submit_order()
        cells = self.plan.cells
        sent = send([(cells[i].params, cells[i].repeat) for i in order])
        in_cell_order: dict[int, Job] = dict(zip(order, sent, strict=True))
        self.follow([in_cell_order[i] for i in range(len(cells))], listeners)

    def follow(self, jobs: Sequence[Job], listeners: Sequence[Listener] = ()) -> None:
        """Take the sweep's jobs (in cell order) and listen to them.

        A background thread draws each cell's tile as it ends (pasted into its page, which is
        drawn once: :class:`~.grid.PageCanvas`) and saves each page when its last cell has
        ended, so little is left to do when the sweep ends.
        """
        with self._lock:  # a listener added meanwhile (add_listener) reaches each job once
            self._jobs.extend(jobs)
            later = tuple(self._listeners)
        pages = self.pages()
        where = {(p.z, x, y): at for at, p in enumerate(pages) for x in p.xs for y in p.ys}
        self._left = [0] * len(pages)
        for cell, job in zip(self.plan.cells, self._jobs, strict=False):
            at = where[(cell.z, cell.x, cell.y)]
            self._cells_of.setdefault(id(job), []).append((at, cell))
            self._left[at] += 1
        for job in self._jobs:
            for listener in (self._on_job, *listeners, *later):
                job.add_listener(listener)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(job)`` on every change of any of the sweep's jobs, those a background claim adds later too."""
        with self._lock:
            self._listeners.append(listener)
            jobs = list(self._jobs)
        for job in jobs:
            job.add_listener(listener)

    def _on_job(self, job: Job) -> None:
        # O(1) per event: the ended cell goes to the drawing thread, which pastes its tile alone
        if not job.done():
            return
        with self._lock:
            if id(job) in self._ended or self._saved.is_set():
                return
            self._ended.add(id(job))
            self._events.extend((at, cell, job) for at, cell in self._cells_of.get(id(job), ()))
            if self._drawing or not self._events:
                self._more.notify()
                return
            self._drawing = True
        threading.Thread(target=self._draw_cells, name=f"gemimg-grid-{self.id}", daemon=True).start()

    def _draw_cells(self) -> None:
        """Draw the cells that ended, save the pages they complete; the last page sets :meth:`wait` free."""
        while True:
            with self._lock:
                if not self._events and not self._saved.is_set():
                    # linger: in a big sweep cells end every few milliseconds, and one thread drawing them
                    # all costs less than a thread started for each
                    self._more.wait(self.LINGER_S)
                batch, self._events = self._events, []
                if not batch:
                    self._drawing = False
                    return
            picked = self._drawing_picks() if self._paged() else set()
            for at, cell, job in batch:
                try:
                    self._draw_cell(at, cell, job, picked)
                except Exception:
                    log.exception("could not draw cell %d of the grid of sweep %s", cell.index, self.id)
                self._left[at] -= 1
                if self._left[at] == 0:
                    self._finish_page(at)
            with self._lock:
                if self._finished == len(self.pages()) and not self._events:
                    if self._stop_timer is not None:
                        self._stop_timer.cancel()
                    self.paths = [self._page_paths[i] for i in sorted(self._page_paths)]
                    self._saved.set()

    def _drawing_picks(self) -> set[str]:
        """The picks, as the drawing thread sees them: read again at most every few seconds.

        Reading them for every batch of landed cells queued the drawing thread behind the ledger's
        writers (a third of its time in a 1,000-image sweep); an image that just landed is rarely picked
        yet, and :meth:`redraw_saved` draws a later pick into the saved pages.
        """
        now = time.monotonic()
        if self._picks_read is None or now - self._picks_read[0] > self.PICKS_EVERY_S:
            self._picks_read = (now, self.picked_cbids())
        return self._picks_read[1]

    def _draw_cell(self, at: int, cell: SweepCell, job: Job, picked: Collection[str]) -> None:
        """Paste one ended cell into its page's canvas (made, with the tiles there so far, on the page's first)."""
        if not self._paged() or not PageCanvas.usable(self.plan):
            return  # a page of its own per Z value (≤ 100 images): drawn whole when it ends
        canvas = self._canvases.get(at)
        if canvas is not None:
            canvas.paste(cell, self._tile(job, picked))
        elif self._left[at] > 1 and len(self._canvases) < self.MAX_CANVASES:
            # more cells to come: draw the page once, paste the rest as they land (a few pages at a time:
            # each is ~30 MB; a page without a canvas is drawn whole when its last cell ends)
            page = self.pages()[at]
            tiles = self.tiles(self._cells_on(page))
            self._canvases[at] = PageCanvas(
                self.plan, tiles, page, cell_size=self.cell_size, footer="", theme=self.theme
            )

    def _finish_page(self, at: int) -> None:
        """Save page ``at``: its canvas with the final footer, or the page drawn whole."""
        canvas = self._canvases.pop(at, None)
        image = canvas.image if canvas is not None and canvas.finish(self._page_footer(self.pages()[at])) else None
        try:
            self._page_paths[at] = self._save_page(at, image=image)
        except Exception:
            log.exception("could not save page %d of the grid of sweep %s", at + 1, self.id)
        self._finished += 1

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

    def _a_sweep_is_a_sweep_run(sweep: SweepResult) -> SweepRun:
        return sweep


def report_target(path: str | Path | None, default: Path) -> Path:
    """Where a report goes: ``default`` (its folder created) without ``path``, else the checked ``path``.

    A folder gets the default name inside it; see :func:`~gemimg_jupyter.ledger.files.user_target`.
    """
    if path is not None:
        return user_target(path, default.name)
    try:
        default.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise path_error(f"cannot write {default}: {err.strerror or err}", default) from None
    return default


def write_report(target: Path, markup: str) -> Path:
    """Write an HTML report atomically at ``target`` (a regular file or a new name only); returns the path."""
    return write_user_file(target, markup.encode("utf-8"), target.name)
