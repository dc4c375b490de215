"""Owners and their leases: which process (and session) works on which ledger row.

Each :class:`~gemimg_jupyter.ledger.store.Store` is one owner. A
:class:`Heartbeat` it holds renews the owner's lease in the ``owners`` table;
an owner counts as alive while its heartbeat is recent and, on this host, its
process still exists (:func:`live_owners`). Rows whose owner is gone may be
taken over; :func:`release` hands rows back at once.

The functions work on the store's connection, which the caller passes in
while it holds the store's lock (or inside its write transaction).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from gemimg_jupyter.ledger.schema import BOOT_ID, HOST, PID_NS, RESUMABLE_STATES, sql_words

__all__ = ["Heartbeat", "live_owners", "release", "same_pid_space"]

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError included: the process exists, it is someone else's
        return True
    return True


def same_pid_space(host: str, pid_ns: str, boot_id: str) -> bool:
    """Whether an owner's pid names a process here: the same host name, PID namespace and kernel boot.

    Two containers on one shared folder may have one host name (and even one pid) for different
    processes; without a namespace and boot id to compare (another OS), a pid is never trusted.
    """
    return host == HOST and bool(PID_NS) and pid_ns == PID_NS and bool(BOOT_ID) and boot_id == BOOT_ID


def live_owners(db: sqlite3.Connection, owner: str, lease_s: float) -> set[str]:
    """``owner`` and every owner whose lease holds: a heartbeat in the last ``lease_s`` seconds; where its pid
    means a process here (:func:`same_pid_space`), that process must still exist too (a shortcut for a
    kernel that died: its rows are taken over at once, not after the lease)."""
    now = time.time()
    live = {owner}
    for r in db.execute("SELECT owner, host, pid, heartbeat, pid_ns, boot_id FROM owners"):
        if r["heartbeat"] < now - lease_s:
            continue
        if same_pid_space(r["host"], r["pid_ns"], r["boot_id"]) and not _pid_alive(int(r["pid"])):
            continue
        live.add(str(r["owner"]))
    return live


def release(db: sqlite3.Connection, owner: str, cbids: Sequence[str] | None = None) -> None:
    """Hand ``owner``'s unfinished rows back (all of them, or those of ``cbids``): anyone may take them over."""
    sql = f"UPDATE jobs SET owner = NULL WHERE owner = ? AND state IN ({sql_words(RESUMABLE_STATES)})"  # noqa: S608 - state words
    args: list[Any] = [owner]
    if cbids is not None:
        sql += f" AND cbid IN ({', '.join('?' * len(cbids))})"
        args += list(cbids)
    db.execute(sql, args)


def _beat_until_stopped(beat: weakref.WeakMethod[Callable[[], None]], stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        renew = beat()
        if renew is None:  # its store is gone
            return
        try:
            renew()
        except (sqlite3.Error, OSError):
            log.debug("heartbeat failed", exc_info=True)
        del renew  # hold no reference to the store while waiting


class Heartbeat:
    """A daemon thread that calls a store's ``beat`` every few seconds, without keeping the store alive."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, beat: Callable[[], None], every: float) -> None:
        """Call the bound method ``beat`` every ``every`` seconds until :meth:`stop` (a second start does nothing)."""
        if self._thread is not None:
            return
        self._stop = threading.Event()  # a thread stopped earlier keeps its own, set, event
        self._thread = threading.Thread(
            target=_beat_until_stopped, args=(weakref.WeakMethod(beat), self._stop, every), name="gemimg-heartbeat",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        """Stop calling ``beat`` (the thread ends at its next wake-up)."""
        self._stop.set()
        self._thread = None
