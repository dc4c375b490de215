"""What a restart must not forget (schema version 6, see :mod:`.schema`): queued edits, and cache hits' ids.

``waiting_edits``: an edit of an image still being made has no ``jobs`` row until its parent lands (its
request key depends on the parent's bytes). Its own request (prompt and parameters as the session takes
them) and its parent's ``client_business_id`` are kept here from the moment it is queued until it claims
its row or ends; ``resume`` in a later process takes the ones whose owner is gone, one process each
(the take is one fenced ``UPDATE``).

``aliases``: a cache hit is a job with an id of its own but no row (nothing was paid); its id, the row
its image came from and its sweep are kept here (written with the next group commit, never waited for),
so an id a status line or a grid showed keeps naming the image after a restart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gemimg_jupyter.ledger.store import LedgerRow, Store

__all__ = ["Aliases", "WaitingEdit", "WaitingEdits"]


@dataclass(frozen=True)
class WaitingEdit:
    """One queued edit: its id, its parent's ``client_business_id`` and its request (plain data)."""

    cbid: str
    parent: str
    request: dict[str, Any]
    owner: str | None
    created: float

    @property
    def id(self) -> str:
        """The short job id it was shown with."""
        return self.cbid[-6:]


class WaitingEdits:
    """The edits of one output folder that wait for their parent's image."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def keep(self, cbid: str, parent: str, request: Mapping[str, Any], backend: str) -> None:
        """Write down a queued edit (durably: it returns once it is on disk), owned by this process."""
        text = json.dumps(dict(request), sort_keys=True)
        with self.store._tx() as db:
            db.execute(  # the same edit queued again (a re-run) replaces the one an earlier process left
                "DELETE FROM waiting_edits WHERE parent = ? AND request = ? AND backend = ?", (parent, text, backend)
            )
            db.execute(
                "INSERT OR REPLACE INTO waiting_edits (cbid, parent, request, backend, owner, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (cbid, parent, text, backend, self.store.owner, time.time()),
            )

    def forget(self, cbid: str) -> None:
        """The edit claimed its row, or ended: it waits no more."""
        with self.store._tx() as db:
            db.execute("DELETE FROM waiting_edits WHERE cbid = ?", (cbid,))

    def orphans(self, backend: str) -> list[WaitingEdit]:
        """Queued edits of ``backend`` whose owner is gone, oldest first."""
        with self.store._read() as db:
            found = db.execute(
                "SELECT * FROM waiting_edits WHERE backend = ? ORDER BY created, rowid", (backend,)
            ).fetchall()
        return [e for e in map(_edit, found) if e.owner != self.store.owner and not self.store.owner_alive(e.owner)]

    def find(self, ident: str) -> WaitingEdit | None:
        """A queued edit by its id (short or ``client_business_id``)."""
        with self.store._read() as db:
            r = db.execute(
                "SELECT * FROM waiting_edits WHERE cbid = ? OR substr(cbid, -6) = ? LIMIT 1", (ident, ident.lower())
            ).fetchone()
        return _edit(r) if r is not None else None

    def take(self, edit: WaitingEdit) -> bool:
        """Make ``edit`` this process's; ``False`` when another process took it first."""
        with self.store._tx() as db:
            done = db.execute(
                "UPDATE waiting_edits SET owner = ? WHERE cbid = ? AND owner IS ?",
                (self.store.owner, edit.cbid, edit.owner),
            )
            return done.rowcount == 1


def _edit(r: sqlite3.Row) -> WaitingEdit:
    return WaitingEdit(r["cbid"], r["parent"], json.loads(r["request"]), r["owner"], float(r["created"]))


class Aliases:
    """Cache hits' ids and the rows their images are from."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def remember(self, cbid: str, source: str, sweep_id: str | None, created: float) -> None:
        """Write down a cache hit (in the next group commit; nothing waits for it)."""

        def change(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR IGNORE INTO aliases (cbid, source, sweep_id, created) VALUES (?, ?, ?, ?)",
                (cbid, source, sweep_id, created),
            )

        self.store.commits.submit(change, durable=False)

    def of_sweep(self, sweep_id: str) -> list[tuple[str, float, LedgerRow]]:
        """A sweep's cache hits, oldest first: each one's id, when it was made, and the row its image is from."""
        with self.store._read() as db:
            found = db.execute(
                "SELECT cbid, source, created FROM aliases WHERE sweep_id = ? ORDER BY created, rowid", (sweep_id,)
            ).fetchall()
        out = []
        for cbid, source, created in found:
            row = self.store.get(str(source))
            if row is not None:
                out.append((str(cbid), float(created), row))
        return out
