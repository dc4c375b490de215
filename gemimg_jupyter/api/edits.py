"""Edit chains, picks and reports of a session's images (docs/editing.md).

:class:`Edits` is the :class:`~gemimg_jupyter.api.session.Session`'s collaborator for everything that
names an image after it was made: finding its ledger row (from a result, a job id or a task id,
after a restart too), using it as the source of an edit, its lineage, picking it, and the HTML
reports. The session's public methods (``find``, ``edit_source``, ``lineage``, ``pick`` …)
delegate here; the ledger is the only state. Of the session it sees only :class:`EditsOwner`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from gemimg_jupyter.api.lineage import Lineage, edit_reference, ledger_cbid, lineage, row_of
from gemimg_jupyter.api.report import lineage_report
from gemimg_jupyter.api.results import SweepResult, report_target, write_report
from gemimg_jupyter.domain.errors import GemimgError, ValidationError
from gemimg_jupyter.domain.models import JobState, ReferenceImage
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.engine import Job
from gemimg_jupyter.ledger.picks import Pick, Picks
from gemimg_jupyter.ledger.restart import WaitingEdits
from gemimg_jupyter.ledger.store import LedgerRow, Store

__all__ = ["Edits", "EditsOwner"]

log = logging.getLogger(__name__)


#: How many edit sources (decoded, hashed reference images) a session keeps at most.
SOURCES_KEPT = 4


class EditsOwner(Protocol):
    """What :class:`Edits` asks of its session (implemented by ``api.session.Session``)."""

    @property
    def closed(self) -> bool: ...

    @property
    def sweeps(self) -> Sequence[SweepResult]: ...

    def find_job(self, job_id: str) -> Job | None: ...

    def sweep_of(self, sweep_id: str) -> SweepResult | None: ...

    @property
    def settings(self) -> Settings: ...


class Edits:
    """Find, edit, pick and report the images of one session's output folder."""

    def __init__(self, session: EditsOwner, store: Store, pickbook: Picks) -> None:
        self.session = session
        self.store = store
        self.pickbook = pickbook
        # the last few edit sources, by (cbid, file, its mtime): a panel asks on every keystroke while it edits
        self._sources: dict[tuple[str, str, int], tuple[ReferenceImage, dict[str, Any]]] = {}
        self._sources_lock = threading.Lock()

    def find(self, target: object) -> LedgerRow:
        """The ledger row of ``target``; see :meth:`Session.find`."""
        if self.session.closed:  # one clear line, not the closed ledger's sqlite3 error (a panel's late tick)
            raise GemimgError("this session is closed; use the session that replaced it, or a new one")
        if isinstance(target, LedgerRow):
            return target
        row: LedgerRow | None = None
        if isinstance(target, Job):
            row = row_of(self.store, target)
            what = f"job {target.id} ({target.state.value})"
        elif isinstance(target, str):
            live = self.session.find_job(target.strip())
            row = row_of(self.store, live) if live is not None else self.store.find(target)
            what = f"{target!r}"
        else:
            raise ValidationError(
                "name an image by its result, job id or task id", field="image", value=type(target).__name__
            )
        if row is None and isinstance(target, str):
            self._refuse_sweep_id(target.strip())
            self._refuse_waiting_edit(target.strip())
        if row is None:
            raise ValidationError(
                f"{what} is not in the ledger (yet); name a result, a job id (see Session.jobs()) or a task id",
                field="image",
                value=str(target),
            )
        return row

    def sweep_named(self, target: object) -> SweepResult | None:
        """The sweep whose id ``target`` is, if any: this session's, or an earlier one's rebuilt from the ledger."""
        return self.session.sweep_of(target) if isinstance(target, str) else None

    def _refuse_sweep_id(self, ident: str) -> None:
        """A sweep id where one image is wanted: one line naming its images (a sweep of an earlier session too)."""
        sweep = self.sweep_named(ident)
        if sweep is None:
            return
        ids = [job.id for job in sweep.jobs]
        when = "" if any(s is sweep for s in self.session.sweeps) else " of an earlier session"
        shown = ", ".join(ids[:6]) + (", …" if len(ids) > 6 else "")
        raise ValidationError(
            f"{ident!r} is a sweep{when}, not one image; name one of its {len(ids)} images by job id: {shown}",
            field="image",
            value=ident,
        )

    def _refuse_waiting_edit(self, ident: str) -> None:
        """The id of an edit an earlier session queued behind a parent that had no image yet: one line saying so."""
        entry = WaitingEdits(self.store).find(ident) if ident else None
        if entry is not None:
            raise ValidationError(
                f"{ident!r} is an edit still waiting for job {entry.parent[-6:]}; Session.resume() sends it when"
                " that image lands",
                field="image",
                value=ident,
            )

    def edit_source(self, target: object) -> tuple[ReferenceImage, dict[str, Any]]:
        """The image to edit as a reference, and the ``parent`` record; see :meth:`Session.edit_source`.

        A parent job of this session that is still running is waited for first (Run All of an edit
        chain needs no ``--wait``); one that ends without an image refuses the edit, before anything is paid.
        """
        live = self.session.find_job(target.strip()) if isinstance(target, str) else target
        if isinstance(live, Job) and not live.done():
            self._wait_for_parent(live)
        row = self.find(target)
        try:
            stamp = (row.cbid, str(row.path), Path(str(row.path)).stat().st_mtime_ns)
        except OSError:
            return edit_reference(row)  # it refuses a row without its image file, in one line
        with self._sources_lock:
            known = self._sources.get(stamp)
        if known is None:
            known = edit_reference(row)
            with self._sources_lock:
                while len(self._sources) >= SOURCES_KEPT:
                    del self._sources[next(iter(self._sources))]
                self._sources[stamp] = known
        return known[0], dict(known[1])

    def unfinished_parent(self, target: object) -> Job | None:
        """The job ``target`` names when it is this session's and still running (its edit then queues behind it)."""
        live = self.session.find_job(target.strip()) if isinstance(target, str) else target
        return live if isinstance(live, Job) and not live.done() else None

    def _wait_for_parent(self, job: Job) -> None:
        """Block until ``job`` ends (its own deadline bounds it); refuse an edit of a job that has no image."""
        limit = self.session.settings.job_timeout + 30.0  # its deadline, plus the time to write it down
        if not job.wait(limit):
            raise ValidationError(
                f"job {job.id} is still {job.state.value} after {limit:g} s; edit it once it has its image",
                field="edit",
                value=job.id,
            )
        if not job.state.has_image:
            reason = f": {job.error}" if job.error else ""
            raise ValidationError(
                f"job {job.id} ended {job.state.value}{reason}; its edit was not sent (0 requests paid)",
                field="edit",
                value=job.id,
            )

    def lineage(self, target: object) -> Lineage:
        """The chain of edits from the root to ``target`` (from the ledger alone)."""
        return lineage(self.store, self.find(target), picked=self.pickbook.cbids())

    def pick(self, target: object, note: str | None = None) -> Pick:
        """Pick an image; see :meth:`Session.pick`."""
        row = self.find(target)
        if row.state != JobState.DONE:
            raise ValidationError(f"image {row.cbid[-6:]} is {row.state}, not done", field="pick", value=row.cbid[-6:])
        if not row.path or not Path(str(row.path)).is_file():
            raise ValidationError(
                f"image {row.cbid[-6:]} is no longer at {row.path} (moved or deleted); put it back to pick it",
                field="pick",
                value=row.cbid[-6:],
            )
        pick = self.pickbook.add(row, note)
        self.redraw_grids_with(row.cbid)
        return pick

    def unpick(self, target: object) -> bool:
        """Remove a pick; ``False`` if it was not picked."""
        row = self.find(target)
        gone = self.pickbook.remove(row)
        self.redraw_grids_with(row.cbid)
        return gone

    def redraw_grids_with(self, cbid: str) -> None:
        """Saved grids of the session's sweeps that show the image get its star (or lose it)."""
        for sweep in self.session.sweeps:
            if any(j.state.has_image and ledger_cbid(j) == cbid for j in sweep.jobs):
                try:
                    sweep.redraw_saved()
                except OSError:
                    log.warning("could not redraw the saved grid of sweep %s", sweep.id, exc_info=True)

    def is_picked(self, target: object) -> bool:
        """Whether an image is picked (an unknown image is not)."""
        try:
            return self.pickbook.get(self.find(target).cbid) is not None
        except ValidationError:
            return False

    def picks(self) -> list[Pick]:
        """Every picked image of the output folder, newest first."""
        return self.pickbook.all()

    def children_count(self) -> dict[str, int]:
        """How many finished edits each image has (``client_business_id`` → count)."""
        return self.store.edit_counts()

    def save_report(self, target: object, path: str | Path | None = None) -> Path:
        """Write the HTML report of a sweep, or of an image's edit chain; see :meth:`Session.save_report`."""
        sweep = target if isinstance(target, SweepResult) else self.sweep_named(target)
        if sweep is not None:
            return sweep.save_report(path)
        chain = self.lineage(target)
        name = f"lineage_{chain.steps[-1].row.cbid[-6:]}.html"
        out = report_target(path, self.store.root / "reports" / name)
        return write_report(out, lineage_report(chain, out.parent, self.pickbook.all()))
