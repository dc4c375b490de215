"""The ledger (SQLite) and the image files, with provenance.

Layout of the output directory::

    gemimg_outputs/
        ledger.sqlite3          one row per requested image, the uploads, owners and picks (WAL mode, safe
                                across processes; the rollback journal on a network or FUSE file system)
        images/20261123-214501_paper-cut-fox_t0.8_16x9_ab12cd.png
        grids/…                 saved sweep grids

A row is written *before* the submit, with its ``client_business_id``; image
files are written to a temporary name and renamed into place before the row
points at them, so a crash never leaves a half file or a row pointing at a
missing one.

:class:`Store` is the one public face, and it holds the ledger's state: the
output folder, its owner id, the one SQLite connection and the lock around it,
and its :class:`~.leases.Heartbeat`. The SQL lives in functions over that
connection beside it, each called with the lock held (or inside the store's
write transaction): :mod:`.schema` (opening, self-check, migrations, a deleted
ledger written again; :class:`LedgerRow`), :mod:`.leases` (live owners,
handing rows back, the heartbeat thread), :mod:`.claims` (who pays: claim,
adopt, take over), :mod:`.queries` (rows, cache keys, history, money) and
:mod:`.files` (safe names, atomic writes). :mod:`.picks` keeps the picks in the
same ledger, through the same connection.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gemimg_jupyter.domain.errors import LedgerError
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.draw.images import read_provenance
from gemimg_jupyter.ledger import claims, leases, queries
from gemimg_jupyter.ledger.claims import Claim
from gemimg_jupyter.ledger.files import remove_leftovers, safe_filename, slug, unique_path, write_atomic
from gemimg_jupyter.ledger.group import GroupCommit, Write
from gemimg_jupyter.ledger.schema import (
    HOST,
    RESUMABLE_STATES,
    SCHEMA_VERSION,
    LedgerRow,
    busy_line,
    check_writable,
    file_identity,
    immediate,
    is_busy,
    make_dirs,
    network_filesystem,
    open_ledger,
    register_owner,
    reopen_deleted,
)
from gemimg_jupyter.ledger.sidecar import record_facts, suspect_split, suspects, write_kept

__all__ = [
    "RESUMABLE_STATES",
    "SCHEMA_VERSION",
    "Claim",
    "LedgerRow",
    "Store",
    "safe_filename",
    "slug",
    "write_atomic",
]

log = logging.getLogger(__name__)

#: How long an uploaded reference URL is reused (results live 24 h; uploads are documented nowhere).
UPLOAD_MAX_AGE = 24 * 3600.0


class Store:
    """Ledger plus image files under one output directory.

    Safe to share between threads (one connection behind a lock) and between
    processes (SQLite WAL with a busy timeout; each write is one transaction).
    The ledger is the source of truth every process consults before it pays:
    :meth:`claim_many` decides, in one ``BEGIN IMMEDIATE`` transaction, whether
    a request is new, cached, another live owner's (adopt) or a dead owner's
    (take over). Each Store is one owner; :meth:`start_heartbeat` keeps its
    lease alive, and :meth:`close` hands its unfinished rows back.

    Opening checks everything once: the folder is writable (a probe file is
    written and removed), the ledger is a gemimg ledger of a known schema
    version (older ones are migrated forward, newer ones refused); any problem
    is one :class:`ConfigError` line naming the path and what to do.

    Inside the ledger package, :meth:`_read` (the connection, behind the lock)
    and :meth:`_tx` (one write transaction) are the only ways to the
    connection; a ledger deleted while in use is written again first.
    """

    #: Seconds between heartbeats, and how long an owner without one counts as alive.
    heartbeat_s = 2.0
    lease_s = 10.0
    #: How long a write waits for another process's write transaction before it fails (a busy ledger).
    busy_s = 5.0
    _UPDATABLE = frozenset(
        {
            "state",
            "task_id",
            "cost_usd",
            "submitted",
            "finished",
            "expires_at",
            "path",
            "error",
            "params",
            "owner",
            "sent",
        }
    )

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.images_dir = self.root / "images"
        self.grids_dir = self.root / "grids"
        self.ledger_path = self.root / "ledger.sqlite3"
        self.owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._heartbeat = leases.Heartbeat()
        self._closed = False
        #: the rows this owner holds, with the fencing token (generation) it took each with
        self._held: dict[str, int] = {}
        self._beat_db: sqlite3.Connection | None = None  # the heartbeat's own connection
        #: fenced writes of paid rows a busy ledger could not take yet, by cbid (written by :meth:`flush`)
        self._unwritten: dict[str, dict[str, Any]] = {}
        make_dirs(self.root, self.images_dir, self.grids_dir)
        check_writable(self.root, self.images_dir, self.ledger_path)
        remove_leftovers(self.root, self.images_dir, self.grids_dir)
        #: the network or FUSE file system the folder is on (``None``: a local disk), and the one line saying so
        self.network_fs = network_filesystem(self.root)
        self.notice: str | None = None
        if self.network_fs is not None:
            self.notice = (
                f"the output folder {self.root} is on a network file system ({self.network_fs}): the ledger uses "
                "SQLite's rollback journal instead of WAL, and two machines must not share this folder"
            )
            log.warning("%s", self.notice)
        self._db = open_ledger(
            self.ledger_path, self.images_dir, self.owner, busy_s=self.busy_s, network=self.network_fs is not None
        )
        self._identity = file_identity(self.ledger_path)
        #: row changes, committed in batches (see :mod:`.group`): durable ones still return only once on disk
        self.commits = GroupCommit(self._write_batch, self._lock)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def close(self) -> None:
        """Stop the heartbeat, write queued changes, hand this owner's unfinished rows back, close the database."""
        self.commits.stop()
        with self._lock:
            if self._closed:
                return
            try:
                self.commits.drain()
            except sqlite3.Error:
                log.warning("could not write the queued ledger changes", exc_info=True)
            self._closed = True
            self._heartbeat.stop()
            if self._beat_db is not None:
                self._beat_db.close()
            if not self.flush():
                log.warning(
                    "the ledger %s is busy: %d rows keep an older state", self.ledger_path, len(self._unwritten)
                )
            try:
                self.release()
                self._db.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
                self._db.commit()
            except sqlite3.Error:
                log.debug("could not release the ledger rows", exc_info=True)
            self._db.close()

    # ---- the connection -------------------------------------------------------------------

    def _ensure_alive(self) -> None:
        """Notice a deleted output folder or ledger: recreate both, carrying the rows over, never a dead file."""
        if self._identity is not None and file_identity(self.ledger_path) == self._identity:
            return
        make_dirs(self.root, self.images_dir, self.grids_dir)
        self._db = reopen_deleted(
            self._db, self.ledger_path, self.images_dir, self.owner, busy_s=self.busy_s,
            network=self.network_fs is not None,
        )  # fmt: skip
        self._identity = file_identity(self.ledger_path)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The connection, behind the lock, for statements that only read (queued changes are written first)."""
        with self._lock:
            if self.commits.pending():
                self.commits.drain()
            yield self._db

    @contextmanager
    def _tx(self, *, queued_first: bool = True) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction behind the lock: committed at the end, rolled back on any error.

        ``queued_first``: queued row changes are written before it, so the ledger sees changes in their
        order. The group commit's own batch passes ``False``: a batch written from inside another batch
        would mark the outer batch's changes committed before they are (its waiters would return early).
        """
        with self._lock:
            self._ensure_alive()
            if queued_first and self.commits.pending():
                self.commits.drain()
            with immediate(self._db) as db:
                yield db

    def _write_batch(self, writes: Sequence[Write]) -> None:
        """Queued row changes (:attr:`commits`), in one transaction of the one write path, :meth:`_tx`."""
        if self._closed:
            raise sqlite3.ProgrammingError("the ledger is closed")
        with self._tx(queued_first=False) as db:
            for write in writes:
                write(db)

    # ---- owner and lease ------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        """Renew this owner's lease every :attr:`heartbeat_s` seconds from a daemon thread."""
        self._heartbeat.start(self.beat, self.heartbeat_s)

    def stop_heartbeat(self) -> None:
        """Stop renewing the lease (rows stay this owner's until :meth:`release` or the lease runs out)."""
        self._heartbeat.stop()

    def beat(self) -> None:
        """Renew this owner's lease once (never recreates a deleted ledger).

        On a connection of its own, without the store's lock: a long transaction of this process (or a
        busy ledger) never starves the heartbeat, so the lease means "this process is running", no more.
        """
        if self._closed or file_identity(self.ledger_path) != self._identity:
            return
        if self._beat_db is None:
            self._beat_db = sqlite3.connect(self.ledger_path, timeout=self.heartbeat_s, check_same_thread=False)
        with self._beat_db as db:
            register_owner(db, self.owner)
        if self._unwritten:
            self.flush()

    def _live_owners(self, db: sqlite3.Connection) -> set[str]:
        return leases.live_owners(db, self.owner, self.lease_s)

    def owner_alive(self, owner: str | None) -> bool:
        """True when ``owner`` still holds its lease."""
        if owner is None:
            return False
        with self._read() as db:
            return owner in self._live_owners(db)

    def release(self, cbids: Sequence[str] | None = None) -> None:
        """Hand rows back (all of this owner's unfinished ones by default): anyone may take them over at once."""
        if cbids is not None and not cbids:
            return
        with self._tx() as db:
            leases.release(db, self.owner, cbids)

    # ---- claims ---------------------------------------------------------------------------

    def claim_many(self, requests: Sequence[Mapping[str, Any]], *, fresh: bool = False) -> list[Claim]:
        """Decide, atomically and for every process at once, who pays for each request.

        Each request is a mapping with ``cbid``, ``key``, ``repeat``, ``params``,
        ``backend``, ``price_usd`` and ``sweep_id``. Without ``fresh``: a finished
        image is ``cached``; an unfinished row of a live owner is ``adopt``; one
        whose owner is gone becomes this owner's (``takeover``); otherwise a new
        ``queued`` row is written (``new``). With ``fresh`` every request is new.
        """
        now = time.time()
        with self._one_line(), self._tx() as db:
            live = self._live_owners(db)
            found = claims.claim_many(db, self.root, self.owner, live, requests, fresh=fresh, now=now)
            for req, claim in zip(requests, found, strict=True):
                if claim.kind == "new":
                    self._held[req["cbid"]] = 0
                elif claim.kind == "takeover" and claim.row is not None:
                    self._held[claim.row.cbid] = claim.row.generation
            return found

    @contextmanager
    def _one_line(self) -> Iterator[None]:
        """A ledger another process keeps busy past :attr:`busy_s` becomes one ``LedgerBusyError`` line naming that
        process, a full disk one :class:`LedgerError` line (both still ``sqlite3.OperationalError``)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if isinstance(exc, LedgerError):
                raise
            if is_busy(exc):
                with self._lock:
                    line = busy_line(self._db, self.ledger_path, self.owner)
                raise line from None
            if "full" in text or "disk I/O" in text:
                raise LedgerError(
                    f"the ledger {self.ledger_path} cannot be written ({text}); nothing was sent",
                    hint="free some space on that disk, or set GEMIMG_OUTPUT_DIR to another folder",
                ) from None
            raise

    def take_over(self, cbid: str) -> LedgerRow | None:
        """Make an unfinished row whose owner is gone this owner's; ``None`` if its owner is alive or it ended.

        A take-over bumps the row's fencing token (``generation``): whoever held it before can no longer
        mark it ``submitting`` (pay) nor write its end.
        """
        with self._one_line(), self._tx() as db:
            row = claims.take_over(db, self.root, self.owner, self._live_owners(db), cbid)
            if row is not None:
                self._held[cbid] = row.generation
            return row

    def revive(self, cbid: str, task_id: str) -> LedgerRow | None:
        """Make a ``lost`` row this owner's again with the task the gateway found after all (a re-run's look-up);
        ``None`` when it is not ``lost`` any more. Bumps the fencing token, like a take-over."""
        with self._one_line(), self._tx() as db:
            row = claims.revive(db, self.root, self.owner, cbid, task_id, time.time())
            if row is not None:
                self._held[cbid] = row.generation
            return row

    def holds(self, cbid: str) -> bool:
        """Whether this owner still holds the row at the fencing token it took it with (no other process took it)."""
        gen = self._held.get(cbid)
        if gen is None:
            return False
        with self._lock:  # no queued change moves a row's owner or token: they need not be written first
            r = self._db.execute("SELECT owner, generation FROM jobs WHERE cbid = ?", (cbid,)).fetchone()
        return r is not None and r["owner"] == self.owner and int(r["generation"]) == gen

    def fenced_update(self, cbid: str, *, durable: bool = True, **fields: Any) -> bool:
        """:meth:`update`, but only while this owner holds the row at its fencing token; ``False``: it lost the row.

        Every write of a job that pays or ends goes through here: a process paused past its lease (its row
        taken over meanwhile) learns it here, in the same transaction, and stops before paying.
        ``durable=False``: queued for the next batch (a state nothing waits for), still fenced when written;
        whether the row was held is not known yet, so it returns ``True``.
        """
        gen = self._held.get(cbid)
        if gen is None:
            return False
        columns = self._columns(fields)
        held: list[bool] = []  # the verdict of the try that committed (a failed batch is tried again alone)

        def change(db: sqlite3.Connection) -> None:
            held.append(claims.fenced_update(db, self.owner, gen, cbid, columns))

        self.commits.submit(change, durable=durable)  # shares its transaction and fsync with other rows' writes
        return held[-1] if durable else True

    def defer(self, cbid: str, fields: dict[str, Any]) -> None:
        """Keep a fenced write of a paid row that a busy ledger refused; :meth:`flush` (the heartbeat, the next
        write, closing) writes it. A later write of the same row is merged over it, never in place of it."""
        with self._lock:
            self._unwritten[cbid] = {**self._unwritten.get(cbid, {}), **fields}

    def take_deferred(self, cbid: str) -> dict[str, Any]:
        """The deferred write of ``cbid`` (removed: the caller writes it with its own)."""
        if cbid not in self._unwritten:  # the usual case, without queueing for the lock (see flush)
            return {}
        with self._lock:
            return self._unwritten.pop(cbid, {})

    def flush(self) -> bool:
        """Write the deferred writes (fenced; a task id always, whoever holds the row now); ``True``: none left."""
        # under the lock, so a newer write of the same row (take_deferred) cannot overtake an older one; holding
        # the lock, this thread writes the group commit itself (see GroupCommit._wait_for). Nothing deferred (the
        # usual case): return without the lock, which a batch holds through its fsync. A row's write is deferred
        # only by the thread that handles its job, so that thread sees its own; others' are theirs to write.
        if not self._unwritten:
            return True
        with self._lock:
            for cbid, fields in list(self._unwritten.items()):
                try:
                    if not self.fenced_update(cbid, **dict(fields)) and fields.get("task_id"):
                        self.keep_task_id(cbid, fields["task_id"], fields.get("submitted"))
                except (sqlite3.Error, OSError):
                    return False
                self._unwritten.pop(cbid, None)
            return True

    def unwritten(self) -> int:
        """How many rows keep a write the ledger could not take yet."""
        with self._lock:
            return len(self._unwritten)

    def keep_task_id(self, cbid: str, task_id: str, submitted: float | None) -> None:
        """Write a paid task's id into its row if the row has none yet, whoever holds the row now."""
        with self._tx() as db:
            claims.keep_task_id(db, cbid, task_id, submitted)

    def orphans(self, backend: str | None = None) -> list[LedgerRow]:
        """Unfinished rows whose owner is gone (the only ones ``resume`` may take)."""
        with self._read() as db:
            live = self._live_owners(db)
        return [r for r in self.pending(backend) if r.owner is None or (r.owner not in live)]

    # ---- rows -----------------------------------------------------------------------------

    def add(
        self,
        *,
        cbid: str,
        key: str,
        repeat: int,
        params: Mapping[str, Any],
        backend: str,
        price_usd: float | None,
        sweep_id: str | None = None,
    ) -> None:
        """Write the row for a request that is about to be submitted."""
        request = {"cbid": cbid, "key": key, "repeat": repeat, "params": params, "backend": backend,
                   "price_usd": price_usd, "sweep_id": sweep_id}  # fmt: skip
        with self._tx() as db:
            claims.insert(db, self.owner, request, JobState.SUBMITTING.value, time.time())
            self._held[cbid] = 0

    def update(self, cbid: str, *, durable: bool = True, **fields: Any) -> None:
        """Change some columns of one row (not fenced), in the next group commit (:mod:`.group`).

        ``durable`` (default): returns once the change is on disk. ``durable=False``: for a change
        nothing depends on (it is written within :attr:`.GroupCommit.delay` s, or before the next read).
        """
        fields = self._columns(fields)
        if not fields:
            return
        sql = f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in fields)} WHERE cbid = ?"  # noqa: S608 - names are whitelisted
        args = (*fields.values(), cbid)

        def change(db: sqlite3.Connection) -> None:
            db.execute(sql, args)

        self.commits.submit(change, durable=durable)

    def _columns(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Checked column values as stored: paths relative to the output folder, params as JSON."""
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if fields.get("path"):  # kept relative to the output folder, so the folder can be moved
            path = Path(fields["path"])
            fields["path"] = str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)
        if "params" in fields:
            fields["params"] = json.dumps(dict(fields["params"]), sort_keys=True)
        return fields

    def get(self, cbid: str) -> LedgerRow | None:
        """One row by its ``client_business_id``."""
        with self._read() as db:
            return queries.get(db, self.root, cbid)

    def rows(
        self, *, states: tuple[str, ...] | None = None, sweep_id: str | None = None, limit: int | None = None
    ) -> list[LedgerRow]:
        """Rows, newest first, optionally filtered."""
        with self._read() as db:
            return queries.rows(db, self.root, states=states, sweep_id=sweep_id, limit=limit)

    def pending(self, backend: str | None = None) -> list[LedgerRow]:
        """Rows that were started but never finished (for ``resume``)."""
        with self._read() as db:
            return queries.pending(db, self.root, backend)

    def lookup(self, key: str) -> LedgerRow | None:
        """The newest finished row for a request key whose image file still exists."""
        with self._read() as db:
            return queries.newest_image(db, self.root, key)

    def cached_keys(self, keys: list[str], *, running: bool = True, backend: str | None = None) -> set[str]:
        """Which of ``keys`` cost nothing now: a stored image, or (``running``) an unfinished row to adopt or finish.

        With ``backend``, only that backend's unfinished rows count, as in ``claim_many`` (a simulator's
        row is never adopted by a gateway session). One query per 500 keys, not one per key.
        """
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            with self._read() as db:  # the lock is let go between the chunks
                found |= queries.cached_among(
                    db, self.root, keys[start : start + 500], running=running, backend=backend
                )
        return found

    def lost_keys(self, keys: list[str], *, backend: str | None = None) -> set[str]:
        """Which of ``keys`` were paid for and lost (a ``lost`` row): not paid again unless ``fresh``."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            with self._read() as db:
                found |= queries.lost_among(db, keys[start : start + 500], backend=backend)
        return found

    def totals(self) -> dict[str, float]:
        """Money in the ledger: ``spent`` (settled or in flight, not refunded) and counts."""
        with self._read() as db:
            return queries.totals(db)

    def find(self, ident: str) -> LedgerRow | None:
        """A row by ``client_business_id``, task id, or short job id (the cbid's last 6 characters).

        Finished rows win over unfinished ones, newer over older.
        """
        with self._read() as db:
            return queries.find(db, self.root, ident)

    def edit_counts(self) -> dict[str, int]:
        """How many finished edits each image has (parent ``client_business_id`` → children), one query."""
        with self._read() as db:
            return queries.edit_counts(db)

    def durations(self, backend: str, model: str, resolution: str) -> list[float]:
        """How long the newest images of ``model`` at ``resolution`` took, submit to disk (the polling's prior)."""
        with self._read() as db:
            return queries.durations(db, backend, model, resolution)

    def progress_end(self, backend: str, model: str, resolution: str) -> tuple[float, float] | None:
        """Where the server's progress stood when tasks of ``model`` at ``resolution`` ended, ``(low, high)``."""
        with self._read() as db:
            row = db.execute(
                "SELECT low, high FROM progress_ends WHERE backend = ? AND model = ? AND resolution = ?",
                (backend, model, resolution),
            ).fetchone()
        return (float(row[0]), float(row[1])) if row else None

    def keep_progress_end(self, backend: str, model: str, resolution: str, low: float, high: float) -> None:
        """Remember where the progress of finished tasks of ``model`` at ``resolution`` ended (the polling's)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO progress_ends (backend, model, resolution, low, high, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (backend, model, resolution, low, high, time.time()),
            )

    def history(self, limit: int = 12) -> list[LedgerRow]:
        """The newest finished images whose files exist."""
        with self._read() as db:
            return queries.history(db, self.root, limit)

    # ---- uploads --------------------------------------------------------------------------

    def upload_url(self, sha256: str, backend: str) -> str | None:
        """The URL a reference with this content was uploaded to less than ``UPLOAD_MAX_AGE`` seconds ago.

        Nothing documents how long an uploaded URL lives; an older upload is
        not trusted (the reference is uploaded again, which is free).
        """
        with self._read() as db:
            row = db.execute(
                "SELECT url FROM uploads WHERE sha256 = ? AND backend = ? AND created > ?",
                (sha256, backend, time.time() - UPLOAD_MAX_AGE),
            ).fetchone()
        return str(row["url"]) if row else None

    def remember_upload(self, sha256: str, backend: str, url: str) -> None:
        """Record where a reference was uploaded."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (sha256, backend, url, created) VALUES (?, ?, ?, ?)",
                (sha256, backend, url, time.time()),
            )

    # ---- files ----------------------------------------------------------------------------

    def write_image(self, data: bytes, name: str, provenance: Mapping[str, Any], *, folder: str = "images") -> Path:
        """Write the gateway's bytes unchanged, with ``provenance`` in a ``<image>.json`` sidecar; returns the path.

        The extension becomes the bytes' own format's (see :mod:`.sidecar`); the
        file's facts (hash, format, credentials, suspect) also go into the ledger.
        """
        with self._lock:
            self._ensure_alive()
        path = write_kept(self.root / folder, data, name, provenance)
        cbid = provenance.get("client_business_id")
        if cbid:
            facts = provenance.get("file") or read_provenance(path).get("file", {})  # write_kept fills it when absent
            # the sidecar holds the same facts; a busy ledger only delays them (logged by the group commit)
            self.commits.submit(lambda db: record_facts(db, str(cbid), facts), durable=False)
        return path

    def suspect_split(self) -> dict[str, Any]:
        """Paid images split into usable and suspect (``suspect_images``, ``suspect_usd``, ``suspect_reasons``)."""
        with self._read() as db:
            return suspect_split(db)

    def suspects(self, cbids: Iterable[str]) -> dict[str, str]:
        """Why each of these rows' images looks unusable (``cbid`` → reason), for the suspect ones only."""
        with self._read() as db:
            return suspects(db, cbids)

    def write_bytes(self, data: bytes, name: str, *, folder: str = "images") -> Path:
        """Write bytes under ``folder`` atomically (temp file, fsync, rename); returns the path."""
        directory = self.root / folder
        with self._lock:
            self._ensure_alive()
        directory.mkdir(parents=True, exist_ok=True)
        return write_atomic(unique_path(directory, name), data)
