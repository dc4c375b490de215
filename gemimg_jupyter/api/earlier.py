"""What an earlier process left in the ledger: its sweeps, its unfinished jobs (issue #26, point 6).

Every id a grid, a status line or a report shows keeps working after a restart, from the ledger alone:

* a sweep id of an earlier session is rebuilt from its rows (:func:`past_sweep`): the axes are the
  parameters that differ between its rows, in the order the sweep wrote them (X changes fastest), so
  its grid, comparison and report come back without running anything;
* a job id (short, task or ``client_business_id``) of a job an earlier process left unfinished can be
  cancelled (:func:`cancel_rows`): a row never sent to the gateway ends ``cancelled`` (nothing was paid,
  and ``resume`` will not send it); one already sent was paid, cannot be stopped at the gateway, and is
  left for ``resume`` to collect unless ``drop`` says to give it up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from gemimg_jupyter.api.results import SweepResult
from gemimg_jupyter.domain.errors import GemimgError
from gemimg_jupyter.domain.models import GenerationParams, JobState, ReferenceImage
from gemimg_jupyter.draw.images import load_reference
from gemimg_jupyter.engine.handle import Job, Signals
from gemimg_jupyter.ledger.restart import Aliases, WaitingEdits
from gemimg_jupyter.ledger.store import LedgerRow, Store
from gemimg_jupyter.plans.axes import Axis
from gemimg_jupyter.plans.plan import SweepCell, SweepPlan

__all__ = [
    "CancelOutcome",
    "EditsHome",
    "cancel_rows",
    "job_of_row",
    "params_of_request",
    "past_sweep",
    "request_of",
    "resume_edits",
]

#: The row fields a sweep may vary, by axis name (controls are added per name).
_FIELDS = ("prompt", "model", "size", "resolution", "temperature", "top_p", "ref")


def params_of_row(row: LedgerRow) -> GenerationParams:
    """The parameters a row was made with (references by their hash, or their URL)."""
    p: Mapping[str, Any] = row.params
    urls = {ReferenceImage.from_url(u).sha256: u for u in p.get("reference_urls") or []}
    refs = tuple(
        ReferenceImage.from_url(urls[h]) if h in urls else ReferenceImage(sha256=str(h), name=str(h)[:8])
        for h in p.get("references") or []
    )
    return GenerationParams.from_stored({"prompt": "", "model": "", "size": "", "resolution": "", **p}, refs)


def job_of_row(row: LedgerRow, *, hit: str | None = None, sweep_id: str | None = None) -> Job:
    """A handle showing a ledger row as it is (no runner drives it; an ended row's handle is done).

    ``hit``: the id of a cache hit whose image ``row`` holds (the handle is that hit, ``cached``, $0).
    """
    signals = Signals()
    params = params_of_row(row)
    parent = row.params.get("parent")
    cbid, sweep = (hit, sweep_id) if hit else (row.cbid, row.sweep_id)
    job = Job(params, repeat=row.repeat, sweep_id=sweep, cbid=cbid, parent=parent, signals=signals)
    if hit:
        job.provenance = {"client_business_id": row.cbid}
        row = dataclasses.replace(row, state=JobState.CACHED.value, cost_usd=0.0, price_usd=0.0, task_id=None)
    job.key = row.key
    job.state = JobState(row.state)
    job.task_id, job.error = row.task_id, row.error
    job.path = Path(row.path) if row.path else None
    job.created, job.submitted_at, job.finished_at = row.created, row.submitted, row.finished
    if row.state != JobState.FAILED.value and (row.task_id or job.state.has_image):
        job.cost_usd = row.cost_usd if row.cost_usd is not None else (row.price_usd or 0.0)
    job.progress = 100 if job.state.has_image else 0
    if job.state.is_terminal:
        signals.done.set()
    return job


def _values(params: GenerationParams) -> dict[str, Any]:
    """What a sweep may vary: axis name → value (references as their hashes, controls by name)."""
    values: dict[str, Any] = {name: getattr(params, name) for name in _FIELDS if name != "ref"}
    values["ref"] = tuple(r.sha256 for r in params.references)
    values.update({name: value for name, value in params.controls})
    return values


def _label(name: str, value: Any, names: Mapping[str, str]) -> str:
    """A value's display label; references by their file or URL name (``names``: hash → name), else their hash."""
    if name == "ref":
        return "+".join(names.get(h, h[:8]) for h in value) or "none"
    if value is None:
        return "default"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _grouped(combos: list[dict[str, Any]]) -> list[list[str]]:
    """The varying axis names grouped by where they first change (X first; paired names share a group)."""
    first = combos[0]
    at_change: dict[int, list[str]] = {}
    for name in first:
        at = next((i for i, c in enumerate(combos) if c.get(name) != first.get(name)), None)
        if at is not None:
            at_change.setdefault(at, []).append(name)
    return [names for _, names in sorted(at_change.items())][:3]


def _axis(group: list[str], combos: list[dict[str, Any]], ref_names: Mapping[str, str]) -> tuple[Axis, list[Any]]:
    """One axis (its first name's values in the order they appear; the others paired on it) and those values."""
    order: list[Any] = []
    for c in combos:
        if c[group[0]] not in order:
            order.append(c[group[0]])
    members = []
    for name in group:
        values = [next(c[name] for c in combos if c[group[0]] == v) for v in order]
        members.append(Axis(name, tuple(values), tuple(_label(name, v, ref_names) for v in values)))
    return Axis(members[0].name, members[0].values, members[0].labels, tuple(members[1:])), order


def past_sweep(store: Store, sweep_id: str, *, cell_size: int = 320) -> SweepResult | None:
    """The sweep ``sweep_id`` of an earlier session, rebuilt from its ledger rows; ``None`` without rows."""
    own = [(r.created, r, None) for r in reversed(store.rows(sweep_id=sweep_id))]  # in the order it wrote them
    hits = [(when, r, cbid) for cbid, when, r in Aliases(store).of_sweep(sweep_id)]
    items = sorted(hits, key=lambda item: item[0]) + own if hits else own  # hits were made before any new row
    if not items:
        return None
    rows = [row for _, row, _ in items]
    params = [params_of_row(r) for r in rows]
    ref_names = {ref.sha256: ref.name for p in params for ref in p.references}
    combos: list[dict[str, Any]] = []
    known: set[str] = set()
    for values in (_values(p) for p in params):
        if repr(values) not in known:  # one per grid position, in the order the sweep wrote them
            known.add(repr(values))
            combos.append(values)
    groups = _grouped(combos)
    axes, orders = zip(*(_axis(group, combos, ref_names) for group in groups), strict=True) if groups else ((), ())
    cells: list[SweepCell] = []
    jobs: list[Job] = []
    for (_, row, hit), p in zip(items, params, strict=True):
        values = _values(p)
        pos = [order.index(values[group[0]]) for group, order in zip(groups, orders, strict=True)] + [0, 0, 0]
        shown = {n: values[n] for group in groups for n in group}
        labels = {n: _label(n, v, ref_names) for n, v in shown.items()}
        cells.append(SweepCell(len(cells), pos[0], pos[1], pos[2], row.repeat, p, shown, labels))
        jobs.append(job_of_row(row, hit=hit, sweep_id=sweep_id))
    plan = SweepPlan(base=params[0], axes=tuple(axes), repeats=max(r.repeat for r in rows) + 1, cells=tuple(cells))
    return SweepResult(plan, jobs, sweep_id=sweep_id, store=store, cell_size=cell_size)


class CancelOutcome:
    """What cancelling an earlier process's rows did: ``cancelled`` (never sent, free) and ``paid`` ones."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.paid: list[str] = []  # sent (paid) rows left for resume, or given up with drop
        self.busy: list[str] = []  # rows a live process works on: cancel them there
        self.ended: list[str] = []  # rows that had ended already

    def line(self, *, drop: bool = False) -> str:
        """One line saying what happened to each kind of row (``gemimg:`` is the caller's)."""
        parts = []
        if self.cancelled:
            parts.append(
                f"cancelled {_jobs(self.cancelled)} an earlier session left unsent (0 requests paid; resume skips them)"
            )
        if self.paid and drop:
            parts.append(f"gave up {_jobs(self.paid)} already sent and paid: resume will not collect them")
        elif self.paid:
            parts.append(
                f"{_jobs(self.paid)} already sent to the gateway and paid; the gateway cannot cancel a task, so"
                " Session.resume() still collects them — pass drop=True to give them up"
            )
        if self.busy:
            parts.append(f"{_jobs(self.busy)} belong to a kernel that is still running: cancel them there")
        if self.ended and not parts:
            parts.append(f"{_jobs(self.ended)} had already ended; nothing to cancel")
        return "; ".join(parts) or "nothing to cancel"


def _jobs(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:6]) + (", …" if len(ids) > 6 else "")
    return f"{len(ids)} job{'s' if len(ids) != 1 else ''} ({shown})"


def cancel_rows(store: Store, rows: Sequence[LedgerRow], *, drop: bool = False) -> CancelOutcome:
    """Cancel unfinished rows an earlier process left: each is taken over first (fenced), so no one else runs it.

    A row never sent ends ``cancelled`` ($0; ``resume`` skips it). A sent row was paid and the gateway
    has no cancel: it stays for ``resume`` to collect, unless ``drop`` (then it ends ``cancelled`` too,
    and its task id stays in the row).
    """
    out = CancelOutcome()
    for row in rows:
        if not JobState(row.state).is_resumable:
            out.ended.append(row.cbid[-6:])
            continue
        if store.owner_alive(row.owner) and row.owner != store.owner:
            out.busy.append(row.cbid[-6:])
            continue
        sent = row.task_id is not None or row.sent
        if sent and not drop:
            out.paid.append(row.cbid[-6:])
            continue
        took = store.take_over(row.cbid)
        if took is None:
            out.busy.append(row.cbid[-6:])
            continue
        why = "cancelled after a restart" + (" (paid; no longer collected)" if sent else " before it was sent")
        if store.fenced_update(row.cbid, state=JobState.CANCELLED.value, error=why, finished=time.time()):
            (out.paid if sent else out.cancelled).append(row.cbid[-6:])
    return out


# ---------------------------------------------------------------- edits queued behind a parent (point 4)


def request_of(
    params: GenerationParams, repeat: int, fresh: bool, keep: Callable[[bytes, str], Path]
) -> dict[str, Any]:
    """An edit's own request as plain data for the ledger (the parent image is not in it: it is added when the
    parent lands). A reference given as bytes is kept under the output folder by ``keep`` and named by its path."""
    refs = [
        ref.url if ref.url else str(keep(ref.data or b"", f"{ref.sha256[:16]}-{ref.name}")) for ref in params.references
    ]
    plain = params.as_dict()
    return {
        "prompt": params.prompt,
        "model": params.model,
        "size": params.size,
        "resolution": params.resolution,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "controls": plain.get("controls") or {},
        "references": refs,
        "repeat": repeat,
        "fresh": fresh,
    }


def params_of_request(request: Mapping[str, Any]) -> GenerationParams:
    """The parameters a queued edit was given (its own references read back from their URLs or files)."""
    refs = tuple(
        ReferenceImage.from_url(r) if r.startswith(("http://", "https://")) else load_reference(r)
        for r in request.get("references") or []
    )
    return GenerationParams.from_stored(request, refs)


class EditsHome(Protocol):
    """What :func:`resume_edits` asks of its session (``api.session.Session``)."""

    @property
    def store(self) -> Store: ...

    @property
    def waiting(self) -> WaitingEdits: ...

    @property
    def backend(self) -> str: ...

    def find_job(self, job_id: str) -> Job | None: ...

    def edit_when_ready(self, parent: Job | LedgerRow, request: Mapping[str, Any], cbid: str) -> Job: ...

    @property
    def say(self) -> Callable[[str], None]: ...


def resume_edits(session: EditsHome) -> list[Job]:
    """Take the queued edits an earlier process left (oldest first) and send each once its parent has landed.

    A parent this session is finishing (``resume`` took its row) or has finished: the edit queues behind it,
    or goes now. A parent a live process works on: the edit stays for that process. A parent that ended
    without an image (or is gone): the edit ends here, nothing sent, and one line says why.
    """
    started: list[Job] = []
    made: dict[str, Job] = {}
    for entry in session.waiting.orphans(session.backend):
        parent: Job | LedgerRow | None = made.get(entry.parent) or session.find_job(entry.parent)
        row = session.store.get(entry.parent) if parent is None else None
        if row is not None and JobState(row.state).is_resumable and session.store.owner_alive(row.owner):
            continue  # another running kernel makes the parent: its own resume (or re-run) sends the edit
        if not session.waiting.take(entry):
            continue  # another process took it first
        if parent is None and row is not None and row.state == JobState.DONE.value:
            parent = row
        if parent is None:
            why = (
                f"it ended {row.state}{': ' + row.error if row and row.error else ''}"
                if row
                else "it is not in the ledger"
            )
            session.waiting.forget(entry.cbid)
            session.say(f"edit {entry.id} of job {entry.parent[-6:]} was not sent: {why} (0 requests paid)")
            continue
        try:
            job = session.edit_when_ready(parent, entry.request, entry.cbid)
        except GemimgError as err:  # the parent ended without an image: the edit ends here, free
            session.waiting.forget(entry.cbid)
            session.say(f"edit {entry.id} was not sent: {err}")
            continue
        if job.waiting_for is None:  # sent now (its row is claimed): it waits no more
            session.waiting.forget(entry.cbid)  # (queued again, it is the same entry, forgotten when it claims)
        made[entry.cbid] = job
        started.append(job)
    return started
