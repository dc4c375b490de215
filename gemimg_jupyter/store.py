"""The ledger (SQLite) and the image files, with provenance.

Layout of the output directory::

    gemimg_outputs/
        ledger.sqlite3          one row per requested image (WAL mode, safe across processes)
        images/20261123-214501_paper-cut-fox_t0.8_16x9_ab12cd.png
        grids/…                 saved sweep grids

A row is written *before* the submit, with its ``client_business_id``; image
files are written to a temporary name and renamed into place before the row
points at them, so a crash never leaves a half file or a row pointing at a
missing one.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import sqlite3
import tempfile
import threading
import time
import unicodedata
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .images import embed_provenance, read_provenance

__all__ = ["Claim", "LedgerRow", "Store", "read_provenance", "safe_filename", "write_atomic"]

log = logging.getLogger(__name__)

#: How long an uploaded reference URL is reused (results live 24 h; uploads are documented nowhere).
UPLOAD_MAX_AGE = 24 * 3600.0
PENDING_STATES = ("queued", "uploading", "submitting", "submitted", "in_progress", "downloading", "timeout")
#: The ledger's schema version (``PRAGMA user_version``); :data:`_MIGRATIONS` carries older ledgers forward.
SCHEMA_VERSION = 2
_HOST = socket.gethostname()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    cbid        TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    repeat      INTEGER NOT NULL DEFAULT 0,
    sweep_id    TEXT,
    state       TEXT NOT NULL,
    task_id     TEXT,
    params      TEXT NOT NULL,
    backend     TEXT NOT NULL,
    price_usd   REAL,
    cost_usd    REAL,
    created     REAL NOT NULL,
    submitted   REAL,
    finished    REAL,
    expires_at  INTEGER,
    path        TEXT,
    error       TEXT,
    owner       TEXT
);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs(key, state);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS uploads (
    sha256      TEXT NOT NULL,
    backend     TEXT NOT NULL,
    url         TEXT NOT NULL,
    created     REAL NOT NULL,
    PRIMARY KEY (sha256, backend)
);
"""
# Version 2: every row has an owner (the process and session that works on it), and owners renew a heartbeat.
_OWNERS = """
CREATE TABLE IF NOT EXISTS owners (
    owner       TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    heartbeat   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner);
"""
_JOB_COLUMNS = frozenset(
    {"cbid", "key", "repeat", "sweep_id", "state", "task_id", "params", "backend", "price_usd", "cost_usd",
     "created", "submitted", "finished", "expires_at", "path", "error"}
)  # fmt: skip


def _to_v2(db: sqlite3.Connection) -> None:
    if "owner" not in _columns(db, "jobs"):
        db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
    db.executescript(_OWNERS)


#: ``_MIGRATIONS[v]`` turns a version-``v`` ledger into version ``v + 1`` (version 1 had no ``user_version``).
_MIGRATIONS = {1: _to_v2}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the old way, once, at import
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


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


@dataclass(frozen=True)
class LedgerRow:
    """One requested image as the ledger knows it."""

    cbid: str
    key: str
    repeat: int
    sweep_id: str | None
    state: str
    task_id: str | None
    params: dict[str, Any]
    backend: str
    price_usd: float | None
    cost_usd: float | None
    created: float
    submitted: float | None
    finished: float | None
    expires_at: int | None
    path: str | None
    error: str | None
    owner: str | None = None


_WORD = re.compile(r"[a-z0-9]+")


def slug(text: str, limit: int = 40) -> str:
    """Lowercase ASCII words joined by ``-``, at most ``limit`` characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    out = ""
    for word in _WORD.findall(ascii_text):
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or "image"


def safe_filename(params: Mapping[str, Any], token: str, when: float | None = None) -> str:
    """A readable, safe file name such as ``20261123-214501_paper-cut-fox_t0.8_16x9_ab12cd.png``.

    Only ``[a-z0-9._-]`` survive from the prompt, so nothing can escape the
    output directory or carry control characters; the length is bounded.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when or time.time()))
    parts = [stamp, slug(str(params.get("prompt", "")))]
    if params.get("temperature") is not None:
        parts.append(f"t{params['temperature']:g}")
    parts.append(str(params.get("size", "1:1")).replace(":", "x"))
    if params.get("resolution") not in (None, "1K"):
        parts.append(str(params["resolution"]).lower())
    parts.append(re.sub(r"[^a-z0-9]", "", token.lower())[:6] or "x")
    return "_".join(parts) + ".png"


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
    """

    #: Seconds between heartbeats, and how long an owner without one counts as alive.
    heartbeat_s = 2.0
    lease_s = 10.0

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.images_dir = self.root / "images"
        self.grids_dir = self.root / "grids"
        self.ledger_path = self.root / "ledger.sqlite3"
        self.owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._closed = False
        self._make_dirs()
        self._probe()
        self._db = self._open()
        self._inode = self._ledger_inode()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ---- opening ----------------------------------------------------------------------------

    def _refuse(self, what: str, todo: str) -> ConfigError:
        return ConfigError(f"{what}; {todo}")

    def _make_dirs(self) -> None:
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            self.grids_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._refuse(
                f"the output directory {self.root} cannot be used ({exc.strerror or type(exc).__name__})",
                "set GEMIMG_OUTPUT_DIR (or %config GemimgMagics.output_dir) to a folder you can write to",
            ) from None

    def _probe(self) -> None:
        """Write and remove a small file in the folder and in images/: unwritable or full fails here, once."""
        for folder in (self.root, self.images_dir):
            probe = folder / f".probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            try:
                with open(probe, "wb") as fh:
                    fh.write(b"\0" * 65536)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
                raise self._refuse(
                    f"the output directory {folder} is {'full' if full else 'not writable'} "
                    f"({exc.strerror or type(exc).__name__})",
                    "free some space there"
                    if full
                    else "fix its permissions or set GEMIMG_OUTPUT_DIR to another folder",
                ) from None
            finally:
                with suppress(OSError):
                    probe.unlink(missing_ok=True)
        ledger = self.ledger_path
        if ledger.exists() and not os.access(ledger, os.R_OK | os.W_OK):
            raise self._refuse(
                f"the ledger {ledger} is not readable and writable",
                "fix its permissions, or set GEMIMG_OUTPUT_DIR to another folder",
            )

    def _open(self) -> sqlite3.Connection:
        path = self.ledger_path
        move = f"move {path} away (your images in {self.images_dir} stay) or set GEMIMG_OUTPUT_DIR to another folder"
        try:
            db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._refuse(f"the ledger {path} cannot be opened ({exc})", move) from None
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            check = db.execute("PRAGMA quick_check(1)").fetchone()
            if check is None or str(check[0]) != "ok":
                raise sqlite3.DatabaseError(str(check[0]) if check else "no answer")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version > SCHEMA_VERSION:
                db.close()
                raise self._refuse(
                    f"the ledger {path} was written by a newer gemimg_jupyter (schema {version}, this one knows "
                    f"{SCHEMA_VERSION})",
                    "upgrade gemimg_jupyter (pip install -U gemimg_jupyter) or set GEMIMG_OUTPUT_DIR to another folder",
                )
            if version == 0 and tables:
                if "jobs" not in tables or not _columns(db, "jobs") >= _JOB_COLUMNS:
                    db.close()
                    raise self._refuse(f"{path} is an SQLite file but not a gemimg ledger", move)
                version = 1  # a ledger from before schema versions
            db.execute("PRAGMA journal_mode=WAL")
            with self._lock:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if version == 0:
                        for statement in (_SCHEMA + _OWNERS).split(";"):
                            if statement.strip():
                                db.execute(statement)
                    else:
                        for v in range(version, SCHEMA_VERSION):
                            _MIGRATIONS[v](db)
                        for statement in _SCHEMA.split(";"):  # tables added since (IF NOT EXISTS)
                            if statement.strip():
                                db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    db.execute(
                        "INSERT OR REPLACE INTO owners (owner, host, pid, heartbeat) VALUES (?, ?, ?, ?)",
                        (self.owner, _HOST, os.getpid(), time.time()),
                    )
                    db.execute("DELETE FROM owners WHERE heartbeat < ?", (time.time() - 86400,))
                    db.commit()
                except BaseException:
                    db.rollback()
                    raise
        except ConfigError:
            raise
        except sqlite3.OperationalError as exc:
            db.close()
            text = str(exc)
            if "readonly" in text or "read-only" in text or "disk" in text or "full" in text:
                raise self._refuse(
                    f"the ledger {path} cannot be written ({text})",
                    "free some space or fix the folder's permissions, or set GEMIMG_OUTPUT_DIR to another folder",
                ) from None
            raise self._refuse(f"the ledger {path} cannot be used ({text})", move) from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._refuse(f"the ledger {path} is damaged or not a database ({exc})", move) from None
        return db

    def _ledger_inode(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.ledger_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _ensure_alive(self) -> None:
        """Notice a deleted output folder or ledger: recreate both, carrying the rows over, never a dead file."""
        if self._inode is not None and self._ledger_inode() == self._inode:
            return
        log.warning("the ledger %s was deleted while in use; writing a new one there", self.ledger_path)
        self._make_dirs()
        old = self._db
        try:
            if not self.ledger_path.exists():
                old.execute("VACUUM INTO ?", (str(self.ledger_path),))  # the rows this process still sees
        except sqlite3.Error:
            log.warning("could not carry the old rows over", exc_info=True)
        old.close()
        self._db = self._open()
        self._inode = self._ledger_inode()

    def close(self) -> None:
        """Stop the heartbeat, hand this owner's unfinished rows back, close the database."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._beat_stop.set()
            try:
                self.release()
                self._db.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
                self._db.commit()
            except sqlite3.Error:
                log.debug("could not release the ledger rows", exc_info=True)
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._ensure_alive()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    # ---- owners ---------------------------------------------------------------------------

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
            self._db.execute(
                "INSERT OR REPLACE INTO owners (owner, host, pid, heartbeat) VALUES (?, ?, ?, ?)",
                (self.owner, _HOST, os.getpid(), time.time()),
            )
            self._db.commit()

    def _live_owners(self, db: sqlite3.Connection) -> set[str]:
        """Owners whose lease holds: a recent heartbeat, and on this host a process that still exists."""
        now = time.time()
        live = {self.owner}
        for r in db.execute("SELECT owner, host, pid, heartbeat FROM owners"):
            if r["heartbeat"] < now - self.lease_s:
                continue
            if r["host"] == _HOST and not _pid_alive(int(r["pid"])):
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
        marks = ", ".join("?" * len(PENDING_STATES))
        sql = f"UPDATE jobs SET owner = NULL WHERE owner = ? AND state IN ({marks})"  # noqa: S608 - placeholders
        args: list[Any] = [self.owner, *PENDING_STATES]
        if cbids is not None:
            if not cbids:
                return
            sql += f" AND cbid IN ({', '.join('?' * len(cbids))})"
            args += list(cbids)
        with self._tx() as db:
            db.execute(sql, args)

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
        pending = ", ".join("?" * len(PENDING_STATES))
        with self._tx() as db:
            live = self._live_owners(db)
            for req in requests:
                if not fresh:
                    claim = self._decide(db, req, live, pending)
                    if claim is not None:
                        out.append(claim)
                        continue
                db.execute(
                    "INSERT INTO jobs (cbid, key, repeat, sweep_id, state, params, backend, price_usd, created, owner)"
                    " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                    (
                        req["cbid"],
                        req["key"],
                        req["repeat"],
                        req.get("sweep_id"),
                        json.dumps(dict(req["params"]), sort_keys=True),
                        req["backend"],
                        req.get("price_usd"),
                        now,
                        self.owner,
                    ),
                )
                out.append(Claim("new"))
        return out

    def _decide(self, db: sqlite3.Connection, req: Mapping[str, Any], live: set[str], pending: str) -> Claim | None:
        for r in db.execute(
            "SELECT * FROM jobs WHERE key = ? AND state = 'done' AND path IS NOT NULL ORDER BY finished DESC",
            (req["key"],),
        ):
            row = self._row(r)
            if row.path and Path(row.path).is_file():
                return Claim("cached", row)
        rows = db.execute(
            f"SELECT * FROM jobs WHERE key = ? AND backend = ? AND state IN ({pending})"  # noqa: S608 - placeholders
            " ORDER BY (task_id IS NULL), created",
            (req["key"], req["backend"], *PENDING_STATES),
        ).fetchall()
        for r in rows:
            if r["owner"] is not None and r["owner"] != self.owner and r["owner"] in live:
                return Claim("adopt", self._row(r))
        for r in rows:
            db.execute("UPDATE jobs SET owner = ? WHERE cbid = ?", (self.owner, r["cbid"]))
            return Claim("takeover", self._row(r))
        return None

    def take_over(self, cbid: str) -> LedgerRow | None:
        """Make an unfinished row whose owner is gone this owner's; ``None`` if its owner is alive or it ended."""
        with self._tx() as db:
            r = db.execute("SELECT * FROM jobs WHERE cbid = ?", (cbid,)).fetchone()
            if r is None or r["state"] not in PENDING_STATES:
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
        state: str = "submitting",
    ) -> None:
        """Write the row for a request that is about to be submitted."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (cbid, key, repeat, sweep_id, state, params, backend, price_usd, created, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cbid,
                    key,
                    repeat,
                    sweep_id,
                    state,
                    json.dumps(dict(params), sort_keys=True),
                    backend,
                    price_usd,
                    time.time(),
                    self.owner,
                ),
            )

    _UPDATABLE = frozenset(
        {"state", "task_id", "cost_usd", "submitted", "finished", "expires_at", "path", "error", "params", "owner"}
    )

    def update(self, cbid: str, **fields: Any) -> None:
        """Change some columns of one row."""
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if not fields:
            return
        if fields.get("path"):  # kept relative to the output folder, so the folder can be moved
            path = Path(fields["path"])
            fields["path"] = str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)
        if "params" in fields:
            fields["params"] = json.dumps(dict(fields["params"]), sort_keys=True)
        cols = ", ".join(f"{name} = ?" for name in fields)
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE cbid = ?", (*fields.values(), cbid))  # noqa: S608 - names are whitelisted

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
        rows = self.rows(states=PENDING_STATES)
        return [r for r in rows if backend is None or r.backend == backend]

    def lookup(self, key: str) -> LedgerRow | None:
        """The newest finished row for a request key whose image file still exists."""
        with self._lock:
            found = self._db.execute(
                "SELECT * FROM jobs WHERE key = ? AND state = 'done' AND path IS NOT NULL ORDER BY finished DESC",
                (key,),
            ).fetchall()
        for r in found:
            row = self._row(r)
            if row.path and Path(row.path).is_file():
                return row
        return None

    def cached_keys(self, keys: list[str], *, running: bool = True) -> set[str]:
        """Which of ``keys`` cost nothing now: a stored image, or (``running``) an unfinished row to adopt or finish.

        One query per 500 keys, not one per key.
        """
        found: set[str] = set()
        pending = ", ".join(f"'{state}'" for state in PENDING_STATES) if running else "''"
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, path, state FROM jobs WHERE key IN ({marks}) AND"  # noqa: S608 - only placeholders
                    f" ((state = 'done' AND path IS NOT NULL) OR state IN ({pending}))",
                    chunk,
                ).fetchall()
            found.update(r["key"] for r in rows if r["state"] != "done" or (self.root / r["path"]).is_file())
        return found

    def totals(self) -> dict[str, float]:
        """Money in the ledger: ``spent`` (settled or in flight, not refunded) and counts."""
        with self._lock:
            r = self._db.execute(
                "SELECT"
                " COALESCE(SUM(CASE WHEN state IN ('done','downloading','submitted','in_progress','timeout','expired')"
                "   THEN COALESCE(cost_usd, price_usd, 0) ELSE 0 END), 0) AS spent,"
                " SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS done,"
                " SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed,"
                " COUNT(*) AS total FROM jobs"
            ).fetchone()
        return {
            "spent": float(r["spent"] or 0),
            "done": float(r["done"] or 0),
            "failed": float(r["failed"] or 0),
            "total": float(r["total"] or 0),
        }

    # ---- uploads --------------------------------------------------------------------------

    def upload_url(self, sha256: str, backend: str, *, max_age: float = UPLOAD_MAX_AGE) -> str | None:
        """The URL a reference with this content was uploaded to less than ``max_age`` seconds ago.

        Nothing documents how long an uploaded URL lives; an older upload is
        not trusted (the reference is uploaded again, which is free).
        """
        with self._lock:
            row = self._db.execute(
                "SELECT url FROM uploads WHERE sha256 = ? AND backend = ? AND created > ?",
                (sha256, backend, time.time() - max_age),
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
        """Write ``data`` as PNG with provenance, atomically; returns the path."""
        return self.write_bytes(embed_provenance(data, provenance), name, folder=folder)

    def write_bytes(self, data: bytes, name: str, *, folder: str = "images") -> Path:
        """Write bytes under ``folder`` atomically (temp file, fsync, rename); returns the path."""
        directory = self.root / folder
        with self._lock:
            self._ensure_alive()
        directory.mkdir(parents=True, exist_ok=True)
        safe = Path(name).name
        if not safe or safe in (".", "..") or safe != name:
            raise ValueError(f"unsafe file name {name!r}")
        target = directory / safe
        if target.exists():
            stem, suffix = target.stem, target.suffix
            n = 2
            while (directory / f"{stem}-{n}{suffix}").exists():
                n += 1
            target = directory / f"{stem}-{n}{suffix}"
        return write_atomic(target, data)

    def _row(self, r: sqlite3.Row) -> LedgerRow:
        return _row(r, self.root)

    def history(self, limit: int = 12) -> list[LedgerRow]:
        """The newest finished images whose files exist."""
        rows = self.rows(states=("done",), limit=limit * 2)
        return [r for r in rows if r.path and Path(r.path).is_file()][:limit]


def _heartbeat(ref: weakref.ref[Store], stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        store = ref()
        if store is None:
            return
        try:
            store.beat()
        except (sqlite3.Error, OSError):
            log.debug("heartbeat failed", exc_info=True)
        del store


def _params(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}  # an unreadable row: resume marks it failed, the cache never matches it
    return value if isinstance(value, dict) else {}


def write_atomic(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a temporary file in its folder (fsync, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # the user's umask, like any other file they write (not mkstemp's 0600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _row(r: sqlite3.Row, root: Path) -> LedgerRow:
    return LedgerRow(
        cbid=r["cbid"],
        key=r["key"],
        repeat=r["repeat"],
        sweep_id=r["sweep_id"],
        state=r["state"],
        task_id=r["task_id"],
        params=_params(r["params"]),
        backend=r["backend"],
        price_usd=r["price_usd"],
        cost_usd=r["cost_usd"],
        created=r["created"],
        submitted=r["submitted"],
        finished=r["finished"],
        expires_at=r["expires_at"],
        path=str(root / r["path"]) if r["path"] else None,
        error=r["error"],
        owner=r["owner"] if "owner" in r.keys() else None,  # noqa: SIM118 - sqlite3.Row has no __contains__
    )
