"""Claims: who pays for each request, decided once for every process that shares the ledger.

:meth:`Claims.claim_many` decides, in one ``BEGIN IMMEDIATE`` transaction,
whether a request is new (this owner pays), cached (a finished image exists),
another live owner's (adopt: follow its row) or a dead owner's (take over:
finish it without paying again).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.ledger.leases import Leases
from gemimg_jupyter.ledger.queries import Queries
from gemimg_jupyter.ledger.schema import RESUMABLE_STATES, LedgerRow, sql_words

__all__ = ["Claim", "Claims"]

_QUEUED = JobState.QUEUED.value


@dataclass(frozen=True)
class Claim:
    """What the ledger decided for one request.

    ``new``: this owner pays for it (a fresh row was written); ``cached``: a
    finished image exists; ``adopt``: another live owner is working on it,
    follow its row; ``takeover``: an unfinished row whose owner is gone now
    belongs to this owner (finish it without paying again).
    """

    kind: Literal["new", "cached", "adopt", "takeover"]
    row: LedgerRow | None = None


class Claims(Leases, Queries):
    """The store's decisions over unfinished rows: claim, adopt, take over, and the orphans ``resume`` may take."""

    def _insert(self, db: sqlite3.Connection, req: Mapping[str, Any], state: str, created: float) -> None:
        """Write one request's row, owned by this owner (``req`` as for :meth:`claim_many`)."""
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
                self.owner,
            ),
        )

    def claim_many(self, requests: Sequence[Mapping[str, Any]], *, fresh: bool = False) -> list[Claim]:
        """Decide, atomically and for every process at once, who pays for each request.

        Each request is a mapping with ``cbid``, ``key``, ``repeat``, ``params``,
        ``backend``, ``price_usd`` and ``sweep_id``. Without ``fresh``: a finished
        image is ``cached``; an unfinished row of a live owner is ``adopt``; one
        whose owner is gone becomes this owner's (``takeover``); otherwise a new
        ``queued`` row is written (``new``). With ``fresh`` every request is new.
        """
        out: list[Claim] = []
        now = time.time()
        with self._tx() as db:
            live = self._live_owners(db)
            for req in requests:
                if not fresh:
                    claim = self._decide(db, req, live)
                    if claim is not None:
                        out.append(claim)
                        continue
                self._insert(db, req, _QUEUED, now)
                out.append(Claim("new"))
        return out

    def _decide(self, db: sqlite3.Connection, req: Mapping[str, Any], live: set[str]) -> Claim | None:
        cached = self._newest_image(db, req["key"])
        if cached is not None:
            return Claim("cached", cached)
        rows = db.execute(
            f"SELECT * FROM jobs WHERE key = ? AND backend = ? AND state IN ({sql_words(RESUMABLE_STATES)})"  # noqa: S608 - state words
            " ORDER BY (task_id IS NULL), created",
            (req["key"], req["backend"]),
        ).fetchall()
        for r in rows:
            if r["owner"] is not None and r["owner"] != self.owner and r["owner"] in live:
                return Claim("adopt", self._row(r))
        if rows:
            db.execute("UPDATE jobs SET owner = ? WHERE cbid = ?", (self.owner, rows[0]["cbid"]))
            return Claim("takeover", self._row(rows[0]))
        return None

    def take_over(self, cbid: str) -> LedgerRow | None:
        """Make an unfinished row whose owner is gone this owner's; ``None`` if its owner is alive or it ended."""
        with self._tx() as db:
            r = db.execute("SELECT * FROM jobs WHERE cbid = ?", (cbid,)).fetchone()
            if r is None or r["state"] not in RESUMABLE_STATES:
                return None
            if r["owner"] is not None and r["owner"] != self.owner and r["owner"] in self._live_owners(db):
                return None
            db.execute("UPDATE jobs SET owner = ? WHERE cbid = ?", (self.owner, cbid))
            return self._row(r)

    def orphans(self, backend: str | None = None) -> list[LedgerRow]:
        """Unfinished rows whose owner is gone (the only ones ``resume`` may take)."""
        with self._lock:
            live = self._live_owners(self._db)
        return [r for r in self.pending(backend) if r.owner is None or (r.owner not in live)]
