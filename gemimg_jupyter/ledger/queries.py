"""Reading the ledger: rows, the unfinished ones, the cache (by key), history and money.

Each function runs its statements on the store's connection, which the caller
passes in while it holds the store's lock; rows come back as
:class:`~gemimg_jupyter.ledger.schema.LedgerRow` with paths made absolute under
``root``, the output folder.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.ledger.schema import CHARGED_STATES, DONE, RESUMABLE_STATES, LedgerRow, row_from_sql, sql_words

__all__ = [
    "cached_among",
    "durations",
    "edit_counts",
    "find",
    "get",
    "history",
    "newest_image",
    "pending",
    "rows",
    "totals",
]

_FAILED = JobState.FAILED.value


def durations(
    db: sqlite3.Connection,
    backend: str,
    model: str,
    resolution: str,
    *,
    limit: int = 50,
    scan: int = 5000,
    longest: float = 600.0,
) -> list[float]:
    """Seconds from submit to the image on disk of the newest ``limit`` images of ``model`` at ``resolution``.

    Only paid images this backend made (``done``), among the newest ``scan`` rows (so the cost does not grow
    with the ledger); a row finished more than ``longest`` seconds after its submit (a kernel that died, a
    resume) says nothing about how long a task takes and is left out.
    """
    found = db.execute(
        "SELECT finished - submitted FROM jobs WHERE rowid > (SELECT COALESCE(MAX(rowid), 0) FROM jobs) - ? "
        "AND state = ? AND backend = ? AND submitted IS NOT NULL AND finished > submitted "
        "AND finished - submitted < ? AND json_extract(params, '$.model') = ? "
        "AND json_extract(params, '$.resolution') = ? ORDER BY finished DESC LIMIT ?",
        (scan, DONE, backend, longest, model, resolution, limit),
    ).fetchall()
    return [float(r[0]) for r in found]


def get(db: sqlite3.Connection, root: Path, cbid: str) -> LedgerRow | None:
    """One row by its ``client_business_id``."""
    row = db.execute("SELECT * FROM jobs WHERE cbid = ?", (cbid,)).fetchone()
    return row_from_sql(row, root) if row else None


def rows(
    db: sqlite3.Connection,
    root: Path,
    *,
    states: tuple[str, ...] | None = None,
    sweep_id: str | None = None,
    limit: int | None = None,
) -> list[LedgerRow]:
    """Rows, newest first, optionally filtered."""
    sql = "SELECT * FROM jobs"
    where: list[str] = []
    args: list[Any] = []
    if states:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        args += list(states)
    if sweep_id is not None:
        where.append("sweep_id = ?")
        args.append(sweep_id)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created DESC, rowid DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [row_from_sql(r, root) for r in db.execute(sql, args).fetchall()]


def pending(db: sqlite3.Connection, root: Path, backend: str | None = None) -> list[LedgerRow]:
    """Rows that were started but never finished (of ``backend``, or of any)."""
    return [r for r in rows(db, root, states=RESUMABLE_STATES) if backend is None or r.backend == backend]


def newest_image(db: sqlite3.Connection, root: Path, key: str) -> LedgerRow | None:
    """The newest finished row for ``key`` whose image file still exists."""
    for r in db.execute(
        "SELECT * FROM jobs WHERE key = ? AND state = ? AND path IS NOT NULL ORDER BY finished DESC",
        (key, DONE),
    ).fetchall():
        row = row_from_sql(r, root)
        if row.path and Path(row.path).is_file():
            return row
    return None


def cached_among(
    db: sqlite3.Connection, root: Path, keys: list[str], *, running: bool, backend: str | None
) -> set[str]:
    """Which of ``keys`` (at most 500, one query) cost nothing now: a stored image, or (``running``) an
    unfinished row (of ``backend``, when given) to adopt or finish."""
    pending_words = sql_words(RESUMABLE_STATES) if running else "''"
    same = "" if backend is None else " AND backend = ?"
    marks = ", ".join("?" * len(keys))
    found = db.execute(
        f"SELECT key, path, state FROM jobs WHERE key IN ({marks}) AND"  # noqa: S608 - only placeholders
        f" ((state = '{DONE}' AND path IS NOT NULL) OR (state IN ({pending_words}){same}))",
        [*keys, *([backend] if backend is not None else [])],
    ).fetchall()
    return {str(r["key"]) for r in found if r["state"] != DONE or (root / r["path"]).is_file()}


def lost_among(db: sqlite3.Connection, keys: list[str], *, backend: str | None) -> set[str]:
    """Which of ``keys`` (at most 500, one query) were paid for and lost (``lost`` rows, of ``backend`` when given)."""
    same = "" if backend is None else " AND backend = ?"
    marks = ", ".join("?" * len(keys))
    found = db.execute(
        f"SELECT DISTINCT key FROM jobs WHERE key IN ({marks}) AND state = ?{same}",  # noqa: S608 - only placeholders
        [*keys, JobState.LOST.value, *([backend] if backend is not None else [])],
    ).fetchall()
    return {str(r["key"]) for r in found}


def totals(db: sqlite3.Connection) -> dict[str, float]:
    """Money in the ledger: ``spent`` (settled or in flight, not refunded) and counts."""
    r = db.execute(
        "SELECT"  # noqa: S608 - state words only
        f" COALESCE(SUM(CASE WHEN state IN ({sql_words(CHARGED_STATES)})"
        "   THEN COALESCE(cost_usd, price_usd, 0) ELSE 0 END), 0) AS spent,"
        " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END) AS done,"
        " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END) AS failed,"
        " COUNT(*) AS total FROM jobs",
        (DONE, _FAILED),
    ).fetchone()
    return {name: float(r[name] or 0) for name in ("spent", "done", "failed", "total")}


def find(db: sqlite3.Connection, root: Path, ident: str) -> LedgerRow | None:
    """A row by ``client_business_id``, task id, or short job id (the cbid's last 6 characters).

    Finished rows win over unfinished ones, newer over older.
    """
    ident = ident.strip()
    if not ident:
        return None
    row = get(db, root, ident)
    if row is not None:
        return row
    found = db.execute(
        "SELECT * FROM jobs WHERE task_id = ? OR substr(cbid, -6) = ? ORDER BY (state = ?) DESC, created DESC LIMIT 1",
        (ident, ident.lower(), DONE),
    ).fetchone()
    if found:
        return row_from_sql(found, root)
    alias = db.execute(  # a cache hit's id: the row its image is from (schema 6)
        "SELECT source FROM aliases WHERE cbid = ? OR substr(cbid, -6) = ? ORDER BY created DESC LIMIT 1",
        (ident, ident.lower()),
    ).fetchone()
    return get(db, root, str(alias[0])) if alias else None


def edit_counts(db: sqlite3.Connection) -> dict[str, int]:
    """How many finished edits each image has (parent ``client_business_id`` → children), one query."""
    found = db.execute(
        "SELECT json_extract(params, '$.parent.cbid') AS parent, COUNT(*) FROM jobs"
        " WHERE state = ? AND params LIKE '%\"parent\"%' GROUP BY parent",
        (DONE,),
    ).fetchall()
    return {str(p): int(n) for p, n in found if p}


def history(db: sqlite3.Connection, root: Path, limit: int = 12) -> list[LedgerRow]:
    """The newest finished images whose files exist."""
    found = rows(db, root, states=(DONE,), limit=limit * 2)
    return [r for r in found if r.path and Path(r.path).is_file()][:limit]
