"""Owners and their leases: which process (and session) works on which ledger row.

Each :class:`~gemimg_jupyter.ledger.store.Store` is one owner. It renews a heartbeat
in the ``owners`` table; an owner counts as alive while its heartbeat is
recent and, on this host, its process still exists. Rows whose owner is gone
may be taken over; :meth:`Leases.release` hands rows back at once.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from gemimg_jupyter.ledger.schema import HOST, RESUMABLE_STATES, LedgerBase, register_owner, sql_words

__all__ = ["Leases"]

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError included: the process exists, it is someone else's
        return True
    return True


def _heartbeat(ref: weakref.ref[Leases], stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        store = ref()
        if store is None:
            return
        try:
            store.beat()
        except (sqlite3.Error, OSError):
            log.debug("heartbeat failed", exc_info=True)
        del store


class Leases(LedgerBase):
    """The store's owner: a heartbeat that keeps its lease, the live owners, and handing rows back."""

    #: Seconds between heartbeats, and how long an owner without one counts as alive.
    heartbeat_s = 2.0
    lease_s = 10.0

    def start_heartbeat(self) -> None:
        """Renew this owner's lease every :attr:`heartbeat_s` seconds from a daemon thread."""
        if self._beat is not None:
            return
        self._beat_stop.clear()
        self._beat = threading.Thread(
            target=_heartbeat, args=(weakref.ref(self), self._beat_stop, self.heartbeat_s), name="gemimg-heartbeat",
            daemon=True,
        )  # fmt: skip
        self._beat.start()

    def stop_heartbeat(self) -> None:
        """Stop renewing the lease (rows stay this owner's until :meth:`release` or the lease runs out)."""
        self._beat_stop.set()
        self._beat = None

    def beat(self) -> None:
        """Renew this owner's lease once (never recreates a deleted ledger)."""
        with self._lock:
            if self._closed or self._ledger_inode() != self._inode:
                return
            register_owner(self._db, self.owner)
            self._db.commit()

    def _live_owners(self, db: sqlite3.Connection) -> set[str]:
        """Owners whose lease holds: a recent heartbeat, and on this host a process that still exists."""
        now = time.time()
        live = {self.owner}
        for r in db.execute("SELECT owner, host, pid, heartbeat FROM owners"):
            if r["heartbeat"] < now - self.lease_s:
                continue
            if r["host"] == HOST and not _pid_alive(int(r["pid"])):
                continue
            live.add(str(r["owner"]))
        return live

    def owner_alive(self, owner: str | None) -> bool:
        """True when ``owner`` still holds its lease."""
        if owner is None:
            return False
        with self._lock:
            return owner in self._live_owners(self._db)

    def release(self, cbids: Sequence[str] | None = None) -> None:
        """Hand rows back (all of this owner's unfinished ones by default): anyone may take them over at once."""
        sql = f"UPDATE jobs SET owner = NULL WHERE owner = ? AND state IN ({sql_words(RESUMABLE_STATES)})"  # noqa: S608 - state words
        args: list[Any] = [self.owner]
        if cbids is not None:
            if not cbids:
                return
            sql += f" AND cbid IN ({', '.join('?' * len(cbids))})"
            args += list(cbids)
        with self._tx() as db:
            db.execute(sql, args)
