"""Claims: who pays for each request, decided once for every process that shares the ledger.

:func:`claim_many` decides, inside the caller's ``BEGIN IMMEDIATE``
transaction, whether a request is new (this owner pays), cached (a finished
image exists), another live owner's (adopt: follow its row) or a dead owner's
(take over: finish it without paying again). The functions take the store's
connection (in its write transaction), the output folder ``root``, this
``owner`` and the owners whose lease holds (``live``, from
:func:`~gemimg_jupyter.ledger.leases.live_owners`).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.ledger.queries import newest_image
from gemimg_jupyter.ledger.schema import RESUMABLE_STATES, LedgerRow, row_from_sql, sql_words

__all__ = ["Claim", "claim_many", "fenced_update", "insert", "keep_task_id", "revive", "take_over"]

_QUEUED = JobState.QUEUED.value
_LOST = JobState.LOST.value


@dataclass(frozen=True)
class Claim:
    """What the ledger decided for one request.

    ``new``: this owner pays for it (a fresh row was written); ``cached``: a
    finished image exists; ``adopt``: another live owner is working on it,
    follow its row; ``takeover``: an unfinished row whose owner is gone now
    belongs to this owner (finish it without paying again); ``lost``: it was
    paid for before and cannot be collected (not paid again, unless ``fresh``).
    """

    kind: Literal["new", "cached", "adopt", "takeover", "lost"]
    row: LedgerRow | None = None


def insert(db: sqlite3.Connection, owner: str, req: Mapping[str, Any], state: str, created: float) -> None:
    """Write one request's row, owned by ``owner`` (``req`` as for :func:`claim_many`)."""
    db.execute(
        "INSERT INTO jobs (cbid, key, repeat, sweep_id, state, params, backend, price_usd, created, owner)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            req["cbid"],
            req["key"],
            req["repeat"],
            req.get("sweep_id"),
            state,
            json.dumps(dict(req["params"]), sort_keys=True),
            req["backend"],
            req.get("price_usd"),
            created,
            owner,
        ),
    )


def claim_many(
    db: sqlite3.Connection,
    root: Path,
    owner: str,
    live: set[str],
    requests: Sequence[Mapping[str, Any]],
    *,
    fresh: bool,
    now: float,
) -> list[Claim]:
    """Decide who pays for each request (see :meth:`~gemimg_jupyter.ledger.store.Store.claim_many`)."""
    out: list[Claim] = []
    for req in requests:
        if not fresh:
            claim = _decide(db, root, owner, live, req)
            if claim is not None:
                out.append(claim)
                continue
        insert(db, owner, req, _QUEUED, now)
        out.append(Claim("new"))
    return out


def _decide(db: sqlite3.Connection, root: Path, owner: str, live: set[str], req: Mapping[str, Any]) -> Claim | None:
    cached = newest_image(db, root, req["key"])
    if cached is not None:
        return Claim("cached", cached)
    rows = db.execute(
        f"SELECT * FROM jobs WHERE key = ? AND backend = ? AND state IN ({sql_words(RESUMABLE_STATES)})"  # noqa: S608 - state words
        " ORDER BY (task_id IS NULL), created",
        (req["key"], req["backend"]),
    ).fetchall()
    for r in rows:
        if r["owner"] is not None and r["owner"] != owner and r["owner"] in live:
            return Claim("adopt", row_from_sql(r, root))
    if rows:
        return Claim("takeover", _seize(db, root, owner, rows[0]))
    lost = db.execute(
        "SELECT * FROM jobs WHERE key = ? AND backend = ? AND state = ? ORDER BY created DESC LIMIT 1",
        (req["key"], req["backend"], _LOST),
    ).fetchone()
    return None if lost is None else Claim("lost", row_from_sql(lost, root))


def _seize(db: sqlite3.Connection, root: Path, owner: str, r: sqlite3.Row) -> LedgerRow:
    """Make the row ``owner``'s with the next fencing token: its former owner's writes that pay now fail."""
    db.execute("UPDATE jobs SET owner = ?, generation = generation + 1 WHERE cbid = ?", (owner, r["cbid"]))
    row = row_from_sql(r, root)
    return dataclasses.replace(row, owner=owner, generation=row.generation + 1)


def take_over(db: sqlite3.Connection, root: Path, owner: str, live: set[str], cbid: str) -> LedgerRow | None:
    """Make the unfinished row ``cbid`` ``owner``'s unless a live owner holds it; ``None`` if alive or ended."""
    r = db.execute("SELECT * FROM jobs WHERE cbid = ?", (cbid,)).fetchone()
    if r is None or r["state"] not in RESUMABLE_STATES:
        return None
    if r["owner"] is not None and r["owner"] != owner and r["owner"] in live:
        return None
    return _seize(db, root, owner, r)


def revive(
    db: sqlite3.Connection, root: Path, owner: str, cbid: str, task_id: str, submitted: float
) -> LedgerRow | None:
    """Make a ``lost`` row ``owner``'s again, ``submitted`` with the task the gateway found after all (the next
    fencing token); ``None`` when the row is not ``lost`` any more (another process revived it first)."""
    cur = db.execute(
        "UPDATE jobs SET owner = ?, generation = generation + 1, state = ?, task_id = ?,"
        " submitted = COALESCE(submitted, ?), finished = NULL, error = NULL WHERE cbid = ? AND state = ?",
        (owner, JobState.SUBMITTED.value, task_id, submitted, cbid, _LOST),
    )
    if cur.rowcount != 1:
        return None
    return row_from_sql(db.execute("SELECT * FROM jobs WHERE cbid = ?", (cbid,)).fetchone(), root)


def fenced_update(db: sqlite3.Connection, owner: str, generation: int, cbid: str, fields: Mapping[str, Any]) -> bool:
    """Change the row only while ``owner`` holds it at ``generation`` (its fencing token); ``False``: it lost it.

    The transaction that marks a row ``submitting`` right before the POST goes through here: a process
    paused past its lease, whose row another process took over, stops before paying.
    """
    cols = ", ".join(f"{name} = ?" for name in fields)
    cur = db.execute(
        f"UPDATE jobs SET {cols} WHERE cbid = ? AND owner = ? AND generation = ?",  # noqa: S608 - whitelisted names
        (*fields.values(), cbid, owner, generation),
    )
    return cur.rowcount == 1


def keep_task_id(db: sqlite3.Connection, cbid: str, task_id: str, submitted: float | None) -> None:
    """Write a task id the gateway gave into a row that has none, whoever owns the row now (it was paid)."""
    db.execute(
        "UPDATE jobs SET task_id = ?, submitted = COALESCE(submitted, ?) WHERE cbid = ? AND task_id IS NULL",
        (task_id, submitted, cbid),
    )
