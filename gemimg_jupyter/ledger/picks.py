"""Picks: favourite images, kept in the ledger so they outlive the kernel.

A pick is one row of the ledger's ``picks`` table (part of its schema since
version 3, see :mod:`.schema`), keyed by the image's ``client_business_id``
(the row that paid for it)::

    picks (cbid TEXT PRIMARY KEY, note TEXT, picked_at REAL)

Picking also writes ``"pick": {"note", "picked_at"}`` into the image's
sidecar (``<image>.json``; unpicking removes it), replaced atomically; the
image file itself is never rewritten. Every process that shares the
output folder sees the same picks: the table lives in the shared SQLite file,
read and written through the store's one connection and lock (each write is
one transaction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gemimg_jupyter.ledger.sidecar import rewrite_sidecar
from gemimg_jupyter.ledger.store import LedgerRow, Store

__all__ = ["Pick", "Picks"]


@dataclass(frozen=True)
class Pick:
    """One picked image: its ledger row (``None`` if the row is gone), note and time."""

    cbid: str
    note: str | None
    picked_at: float
    row: LedgerRow | None

    @property
    def path(self) -> str | None:
        """The image file."""
        return self.row.path if self.row is not None else None


class Picks:
    """The picks of one output folder, in its store's ledger."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, row: LedgerRow, note: str | None = None) -> Pick:
        """Pick the image of ``row`` (picking again replaces the note)."""
        when = time.time()
        with self.store._tx() as db:
            db.execute("INSERT OR REPLACE INTO picks (cbid, note, picked_at) VALUES (?, ?, ?)", (row.cbid, note, when))
        _rewrite_provenance(row.path, {"note": note, "picked_at": when})
        return Pick(row.cbid, note, when, row)

    def remove(self, row: LedgerRow) -> bool:
        """Unpick; ``False`` if it was not picked."""
        with self.store._tx() as db:
            gone = db.execute("DELETE FROM picks WHERE cbid = ?", (row.cbid,)).rowcount > 0
        _rewrite_provenance(row.path, None)
        return gone

    def cbids(self) -> set[str]:
        """The ``client_business_id`` of every picked image (one query)."""
        with self.store._read() as db:
            return {str(r[0]) for r in db.execute("SELECT cbid FROM picks")}

    def get(self, cbid: str) -> Pick | None:
        """The pick of one image, if it is picked."""
        with self.store._read() as db:
            r = db.execute("SELECT cbid, note, picked_at FROM picks WHERE cbid = ?", (cbid,)).fetchone()
        return None if r is None else Pick(r[0], r[1], float(r[2] or 0), self.store.get(r[0]))

    def all(self) -> list[Pick]:
        """Every pick, newest first, with its ledger row."""
        with self.store._read() as db:
            found = db.execute("SELECT cbid, note, picked_at FROM picks ORDER BY picked_at DESC").fetchall()
        return [Pick(r[0], r[1], float(r[2] or 0), self.store.get(r[0])) for r in found]


def _rewrite_provenance(path: str | None, pick: dict[str, object] | None) -> None:
    """Set (or, with ``None``, remove) ``"pick"`` in an image's sidecar; the image stays as it is."""

    def change(prov: dict[str, Any]) -> bool:
        if pick is None:
            return prov.pop("pick", None) is not None
        prov["pick"] = pick
        return True

    rewrite_sidecar(path, change)
