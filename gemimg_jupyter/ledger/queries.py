"""Reading the ledger: rows, the unfinished ones, the cache (by key), history and money."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.ledger.schema import CHARGED_STATES, DONE, RESUMABLE_STATES, LedgerBase, LedgerRow, sql_words

__all__ = ["Queries"]

_FAILED = JobState.FAILED.value


class Queries(LedgerBase):
    """The store's read side (each query is one statement behind the store's lock)."""

    def get(self, cbid: str) -> LedgerRow | None:
        """One row by its ``client_business_id``."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE cbid = ?", (cbid,)).fetchone()
        return self._row(row) if row else None

    def rows(
        self, *, states: tuple[str, ...] | None = None, sweep_id: str | None = None, limit: int | None = None
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
        with self._lock:
            found = self._db.execute(sql, args).fetchall()
        return [self._row(r) for r in found]

    def pending(self, backend: str | None = None) -> list[LedgerRow]:
        """Rows that were started but never finished (for ``resume``)."""
        rows = self.rows(states=RESUMABLE_STATES)
        return [r for r in rows if backend is None or r.backend == backend]

    def _newest_image(self, db: sqlite3.Connection, key: str) -> LedgerRow | None:
        """The newest finished row for ``key`` whose image file still exists (the caller holds the lock)."""
        for r in db.execute(
            "SELECT * FROM jobs WHERE key = ? AND state = ? AND path IS NOT NULL ORDER BY finished DESC",
            (key, DONE),
        ).fetchall():
            row = self._row(r)
            if row.path and Path(row.path).is_file():
                return row
        return None

    def lookup(self, key: str) -> LedgerRow | None:
        """The newest finished row for a request key whose image file still exists."""
        with self._lock:
            return self._newest_image(self._db, key)

    def cached_keys(self, keys: list[str], *, running: bool = True, backend: str | None = None) -> set[str]:
        """Which of ``keys`` cost nothing now: a stored image, or (``running``) an unfinished row to adopt or finish.

        With ``backend``, only that backend's unfinished rows count, as in ``claim_many`` (a simulator's
        row is never adopted by a gateway session). One query per 500 keys, not one per key.
        """
        found: set[str] = set()
        pending = sql_words(RESUMABLE_STATES) if running else "''"
        same = "" if backend is None else " AND backend = ?"
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, path, state FROM jobs WHERE key IN ({marks}) AND"  # noqa: S608 - only placeholders
                    f" ((state = '{DONE}' AND path IS NOT NULL) OR (state IN ({pending}){same}))",
                    [*chunk, *([backend] if backend is not None else [])],
                ).fetchall()
            found.update(r["key"] for r in rows if r["state"] != DONE or (self.root / r["path"]).is_file())
        return found

    def totals(self) -> dict[str, float]:
        """Money in the ledger: ``spent`` (settled or in flight, not refunded) and counts."""
        with self._lock:
            r = self._db.execute(
                "SELECT"  # noqa: S608 - state words only
                f" COALESCE(SUM(CASE WHEN state IN ({sql_words(CHARGED_STATES)})"
                "   THEN COALESCE(cost_usd, price_usd, 0) ELSE 0 END), 0) AS spent,"
                " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END) AS done,"
                " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END) AS failed,"
                " COUNT(*) AS total FROM jobs",
                (DONE, _FAILED),
            ).fetchone()
        return {name: float(r[name] or 0) for name in ("spent", "done", "failed", "total")}

    def find(self, ident: str) -> LedgerRow | None:
        """A row by ``client_business_id``, task id, or short job id (the cbid's last 6 characters).

        Finished rows win over unfinished ones, newer over older.
        """
        ident = ident.strip()
        if not ident:
            return None
        row = self.get(ident)
        if row is not None:
            return row
        with self._lock:
            found = self._db.execute(
                "SELECT * FROM jobs WHERE task_id = ? OR substr(cbid, -6) = ?"
                " ORDER BY (state = ?) DESC, created DESC LIMIT 1",
                (ident, ident.lower(), DONE),
            ).fetchone()
        return self._row(found) if found else None

    def edit_counts(self) -> dict[str, int]:
        """How many finished edits each image has (parent ``client_business_id`` → children), one query."""
        with self._lock:
            found = self._db.execute(
                "SELECT json_extract(params, '$.parent.cbid') AS parent, COUNT(*) FROM jobs"
                " WHERE state = ? AND params LIKE '%\"parent\"%' GROUP BY parent",
                (DONE,),
            ).fetchall()
        return {str(p): int(n) for p, n in found if p}

    def history(self, limit: int = 12) -> list[LedgerRow]:
        """The newest finished images whose files exist."""
        rows = self.rows(states=(DONE,), limit=limit * 2)
        return [r for r in rows if r.path and Path(r.path).is_file()][:limit]
