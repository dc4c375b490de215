"""Group commit for the ledger's row updates (:class:`GroupCommit`).

A 1,000-image sweep changes job states about 4,000 times. One ``BEGIN IMMEDIATE`` … ``COMMIT``
(with its fsync) per change, each behind the store's lock, had the engine's threads queueing on
that lock for a third of the run (issue #25). Here every change is queued; whoever needs its
change on disk becomes the *leader* if nobody is committing, takes **every** queued change and
writes them in one transaction through the store's one write path; the others wait for that
commit, and the next leader takes whatever queued up meanwhile. So a change that must be durable
still returns only once it is on disk, but many share one fsync.

The promise, per change:

* ``durable=True`` (the default, and every change that money depends on: ``submitting``, the task
  id, the end of a job): the call returns after the transaction holding it committed, or raises
  its error. Changes are committed in the order they were queued, so one change on disk means
  every change queued before it is too.
* ``durable=False`` (a state nothing depends on, e.g. ``downloading``, or file facts that the image's
  sidecar also keeps): queued, and committed with the next batch — the next durable change of any
  thread, the next read through the store, or at most :attr:`GroupCommit.delay` seconds later (by one
  flusher thread per ledger, started with the first such change; a timer thread per batch was 300
  threads started and ended in a 1,000-image sweep).
  Lost only if the process dies within that time, which leaves the row in its previous state,
  from which a resume does the right thing (it polls the task again).

Core module: no IPython, ipywidgets or traitlets.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["GroupCommit", "Write"]

log = logging.getLogger(__name__)

#: One queued change: it runs its statements on the connection, inside the batch's transaction.
Write = Callable[[sqlite3.Connection], None]
#: Writes the given changes in one transaction (the store's ``_tx``); raises if that failed.
Apply = Callable[[Sequence[Write]], None]


class GroupCommit:
    """Queue of ledger changes, committed in batches by whichever waiting thread leads (see the module)."""

    #: Seconds a change that is not durable may wait for a batch before the flusher commits it.
    delay = 0.05
    #: Seconds the flusher waits, idle, for the next such change before it ends (the next one starts another).
    linger = 2.0

    def __init__(self, apply: Apply, lock: threading.RLock) -> None:
        self._apply = apply
        self._store_lock = lock  # the store's lock: held while a batch is written (so batches are serial)
        self._cond_lock = threading.Lock()
        self._cond = threading.Condition(self._cond_lock)
        self._queue: list[tuple[int, Write, bool]] = []  # (sequence number, change, durable)
        self._queued = 0  # sequence number of the last change queued
        self._committed = 0  # every change up to this number is written (or failed: see _errors)
        self._errors: dict[int, BaseException] = {}
        self._leading = False
        # when the flusher writes what is queued if no durable change has by then (None: nothing waits for it)
        self._due: float | None = None
        self._wake = threading.Condition(self._cond_lock)  # the flusher's own wake-up, on the same lock
        self._flusher: threading.Thread | None = None
        self._stopped = False
        self.batches = 0  # transactions written (for benchmarks and tests)
        self.changes = 0  # changes written in them

    def pending(self) -> bool:
        """True while some queued change is not committed yet."""
        with self._cond:
            return bool(self._queue)

    def submit(self, write: Write, *, durable: bool = True) -> None:
        """Queue ``write``; with ``durable`` return once it is committed (raising its error), else at once."""
        with self._cond:
            self._queued += 1
            seq = self._queued
            self._queue.append((seq, write, durable))
            if not durable:
                if self._due is None and not self._stopped:
                    self._due = time.monotonic() + self.delay
                    if self._flusher is None:
                        self._flusher = threading.Thread(
                            target=self._flush_when_due, name="gemimg-ledger-commit", daemon=True
                        )
                        self._flusher.start()
                    else:
                        self._wake.notify()
                return
        self._wait_for(seq)

    def flush(self) -> None:
        """Commit every change queued so far (errors of changes nobody waits for are logged)."""
        with self._cond:
            target = self._queued
        self._wait_for(target, raise_error=False)

    def stop(self) -> None:
        """End the flusher (the store is closing; it writes what is queued itself)."""
        with self._cond:
            self._stopped = True
            self._wake.notify()

    def _flush_when_due(self) -> None:
        """The flusher: writes queued changes :attr:`delay` seconds after the first one nobody waits for."""
        while True:
            with self._cond:
                while not self._stopped and self._due is None:
                    if not self._wake.wait(self.linger) and self._due is None:
                        self._flusher = None  # idle: a ledger nobody writes to (or closes) keeps no thread
                        return
                while not self._stopped and self._due is not None and self._due > (now := time.monotonic()):
                    self._wake.wait(self._due - now)
                if self._stopped:
                    return
                self._due = None
            try:
                self.flush()
            except Exception:  # a background commit must not end the flusher silently
                log.warning("could not write queued ledger changes", exc_info=True)

    def _wait_for(self, seq: int, *, raise_error: bool = True) -> None:
        """Block until change ``seq`` is committed, leading a batch whenever nobody else is."""
        # a thread that holds the store's lock writes the batch itself: waiting for another leader, which
        # needs that lock to write, would never end
        mine = bool(getattr(self._store_lock, "_is_owned", lambda: False)())
        while True:
            with self._cond:
                while self._committed < seq and self._leading and not mine:
                    self._cond.wait()
                if self._committed >= seq:
                    error = self._errors.pop(seq, None) if raise_error else None  # a flush leaves it to its owner
                    if error is not None:
                        raise error
                    return
                if mine:
                    leading = False
                else:
                    self._leading = leading = True
            try:
                self.drain()
            finally:
                if leading:
                    with self._cond:
                        self._leading = False
                        self._cond.notify_all()

    def drain(self) -> None:
        """Write every queued change now, in one transaction (the caller may already hold the store's lock).

        If the batch fails, each change is tried alone, so one bad change fails only its own caller.
        """
        with self._store_lock:
            with self._cond:
                batch, self._queue = self._queue, []
            if not batch:
                return
            errors: dict[int, BaseException] = {}
            try:
                self._apply([write for _, write, _ in batch])
            except Exception:  # noqa: BLE001 - each change alone, below, says which failed
                for seq, write, durable in batch:
                    try:
                        self._apply([write])
                    except Exception as exc:  # noqa: BLE001 - handed to the change's own caller, or logged
                        if durable:
                            errors[seq] = exc
                        else:
                            log.warning("could not write a queued ledger change: %s", exc)
            with self._cond:
                self.batches += 1
                self.changes += len(batch)
                self._committed = max(self._committed, batch[-1][0])
                self._errors.update(errors)
                self._cond.notify_all()
