"""The ledger's side of a job: the row it asks for, the row it is given, and rows of other processes.

The ledger decides who pays (``Store.claim_many``): a new row pays, a stored
image is a cache hit, a row another live process works on is *adopted*
(followed here, :func:`follow`, until its image is there), and a row whose
owner is gone is *taken over*. :func:`job_from_row` rebuilds a job from an
unfinished row for ``resume``.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from gemimg_jupyter.domain.errors import APIConnectionError, APIError, JobError, JobTimeoutError, TaskLostError
from gemimg_jupyter.domain.models import (
    IMAGE_STATES,
    PENDING_STATES,
    RESUMABLE_STATES,
    TERMINAL_STATES,
    GenerationParams,
    JobState,
    ReferenceImage,
    state_values,
)
from gemimg_jupyter.draw.images import read_provenance
from gemimg_jupyter.engine.handle import Job, JobOwner
from gemimg_jupyter.engine.record import JobRecord, parent_of
from gemimg_jupyter.engine.shared import Engine, ask_by_business_id, check_cancel
from gemimg_jupyter.engine.transitions import Transitions
from gemimg_jupyter.ledger.store import Claim, LedgerRow

#: Ledger states of a row another process ended, and what a follower shows while it runs.
ENDED = frozenset(state_values(TERMINAL_STATES - IMAGE_STATES - RESUMABLE_STATES))
FOLLOWED = {state.value: state for state in PENDING_STATES}


def ledger_request(job: Job, backend: str) -> dict[str, Any]:
    """What the job asks the ledger for (``Store.claim_many``'s request)."""
    urls = [r.url for r in job.params.references if r.url is not None]
    return {
        "cbid": job.cbid,
        "key": job.key,
        "repeat": job.repeat,
        "params": {**job.params.as_dict(), "reference_urls": urls, **parent_of(job)},
        "backend": backend,
        "price_usd": job.params.price_usd,
        "sweep_id": job.sweep_id,
    }


def take_claim(job: Job, claim: Claim) -> None:
    """Make the job the ledger row it was given (adopted, taken over or lost); a new or cached claim changes
    nothing here."""
    row = claim.row
    if row is not None and claim.kind == "lost":
        job.cbid, job.sweep_id = row.cbid, job.sweep_id or row.sweep_id
        return
    if row is None or claim.kind not in ("adopt", "takeover"):
        return
    job.cbid = row.cbid
    job.task_id = row.task_id
    job.submitted_at = row.submitted
    job.sweep_id = job.sweep_id or row.sweep_id
    if claim.kind == "takeover" and row.task_id is not None:
        job.cost_usd = paid_for(row)
    job.state = JobState.SUBMITTED if row.task_id else JobState.QUEUED


def paid_for(row: LedgerRow) -> float:
    """What a submitted row's task cost (its billed cost, else its price)."""
    return row.cost_usd if row.cost_usd is not None else (row.price_usd or 0.0)


def finish_from_store(record: Transitions, rec: JobRecord, row: LedgerRow) -> None:
    """End the job with the image a finished row points at (a cache hit: $0 here)."""
    assert row.path is not None
    job = rec.job
    job.path, job.task_id, job.progress = Path(row.path), row.task_id, 100
    job.provenance = provenance_from_file(job.path)
    record.finish(rec, JobState.CACHED)


def finish_lost(record: Transitions, rec: JobRecord, row: LedgerRow) -> None:
    """End the job at once ``lost``: the row says its request was paid before and cannot be collected ($0 here).

    Not paid again: the ledger already counts its price; ``fresh`` pays for it again.
    """
    job = rec.job
    job.error = f"paid before (business id {row.cbid}) and lost: the gateway could not find its task; not paid again"
    job.exception = TaskLostError(job.error, hint="fresh=True pays for it again")
    record.finish(rec, JobState.LOST, ledger=False)


def find_lost(e: Engine, rec: JobRecord, row: LedgerRow) -> Generator[float | None, None, bool]:
    """A request paid before and lost: ask the gateway for it by business id once more (through the query lane).

    Found (its look-up was only late), the row is this process's again, ``submitted``: ``True``, collect it
    ($0 here: nothing is sent). Not found, the job ends ``lost`` at once (:func:`finish_lost`): ``False``.
    """
    job = rec.job
    try:
        found = yield from ask_by_business_id(e, rec, row.cbid)
    except (APIError, APIConnectionError):
        found = None
    took = e.store.revive(row.cbid, found.id) if found is not None else None
    if found is None or took is None:
        finish_lost(e.record, rec, row)
        return False
    job.task_id, job.submitted_at, job.cost_usd = found.id, took.submitted, paid_for(took)
    e.record.set_state(rec, JobState.SUBMITTED)
    return True


def follow(e: Engine, rec: JobRecord, deadline: float) -> Generator[float | None, None, bool]:
    """Follow a row another live process works on; ``True`` once it ended, ``False`` after taking it over."""
    job = rec.job
    every = min(1.0, max(e.settings.poll_min, 0.2))
    while True:
        check_cancel(rec)
        row = e.store.get(job.cbid)
        if row is not None and row.state == "done" and row.path and Path(row.path).is_file():
            finish_from_store(e.record, rec, row)  # the other process paid; here it is free
            return True
        if row is not None and row.state in ENDED:
            job.error = row.error or f"the request ended {row.state} in another process"
            job.exception = JobError(job.error, task_id=row.task_id)
            e.record.finish(rec, JobState(row.state))
            return True
        if row is None or row.state == "timeout" or not e.store.owner_alive(row.owner):
            took = e.store.take_over(job.cbid)
            if took is not None:
                rec.adopt = None
                job.task_id, job.submitted_at = took.task_id, took.submitted
                if took.task_id is not None:
                    job.cost_usd = paid_for(took)
                return False
        elif row.state in FOLLOWED:
            e.record.set_state(rec, FOLLOWED[row.state])
        if time.monotonic() > deadline:
            raise JobTimeoutError(
                f"job {job.id}: another process is still making this image; run the cell again to pick it up",
                task_id=job.task_id,
            )
        yield every
        e.woke(rec)


def provenance_from_file(path: Path) -> dict[str, Any]:
    """The provenance written into a stored PNG (``{}`` when it cannot be read)."""
    try:
        return read_provenance(path)
    except (OSError, ValueError):
        return {}


def job_from_row(row: LedgerRow, owner: JobOwner | None = None) -> JobRecord | None:
    """A job for an unfinished ledger row (``None`` when its stored parameters are unreadable)."""
    p: Mapping[str, Any] = row.params
    try:
        urls = list(p.get("reference_urls", []))
        hashes = list(p.get("references", [])) or [None] * len(urls)
        refs = tuple(
            ReferenceImage(sha256=h or ReferenceImage.from_url(u).sha256, name=u.rsplit("/", 1)[-1], url=u)
            for h, u in zip(hashes, urls, strict=False)
        )
        params = GenerationParams.from_stored(p, refs)
    except (KeyError, TypeError, ValueError):
        return None
    rec = JobRecord(
        params, repeat=row.repeat, sweep_id=row.sweep_id, cbid=row.cbid, parent=p.get("parent"), owner=owner
    )
    job = rec.job
    job.key = row.key
    job.task_id = row.task_id
    job.submitted_at = row.submitted
    job.created = row.created
    if row.task_id is not None:
        job.cost_usd = paid_for(row)  # the billed cost when the gateway gave one, like a takeover or a follow
        job.state = JobState.SUBMITTED
    return rec
