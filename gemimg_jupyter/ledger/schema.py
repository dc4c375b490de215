"""Opening the ledger: the schema, the self-check, migrations, and recreating a deleted ledger.

:func:`open_ledger` gives :class:`~gemimg_jupyter.ledger.store.Store` its one
SQLite connection: opening checks everything once (the folder is writable, the
file is a gemimg ledger of a known schema version, older ones are migrated
forward in one transaction, newer ones refused), every problem is one
:class:`~gemimg_jupyter.domain.errors.ConfigError` line naming the path and
what to do, and :func:`reopen_deleted` writes a ledger deleted while in use
again with the rows this process still sees. The schema holds every table of
the ledger (jobs, uploads, owners, picks, progress ends) under one :data:`SCHEMA_VERSION`.
The store's SQL state sets are built from
:class:`~gemimg_jupyter.domain.models.JobState` here.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gemimg_jupyter.domain.errors import ConfigError, LedgerBusyError
from gemimg_jupyter.domain.models import RESUMABLE_STATES as RESUMABLE
from gemimg_jupyter.domain.models import JobState, state_values

__all__ = ["RESUMABLE_STATES", "SCHEMA_VERSION", "LedgerRow", "immediate", "open_ledger", "reopen_deleted"]

log = logging.getLogger(__name__)

#: The ledger's schema version (``PRAGMA user_version``); :data:`_MIGRATIONS` carries older ledgers forward.
SCHEMA_VERSION = 7
#: The ledger states a process may still pick up (pending, or timed out with a task that may finish).
RESUMABLE_STATES = state_values(RESUMABLE)
#: The states whose price counts as spent: submitted and not refunded (settled, in flight, or paid and lost:
#: ``lost`` is a submit the gateway accepted and then could not find).
CHARGED_STATES = state_values(
    frozenset({JobState.SUBMITTED, JobState.IN_PROGRESS, JobState.DOWNLOADING, JobState.DONE}
              | {JobState.TIMEOUT, JobState.EXPIRED, JobState.LOST})
)  # fmt: skip
DONE = JobState.DONE.value
HOST = socket.gethostname()


def _read_id(path: str) -> str:
    """A kernel identity (``/proc/self/ns/pid``'s link, ``boot_id``'s text); ``""`` where there is none."""
    try:
        return os.readlink(path) if path.endswith("/ns/pid") else Path(path).read_text().strip()
    except OSError:
        return ""


#: This process's PID namespace and the kernel's boot: a pid means the same process only where both match.
PID_NS = _read_id("/proc/self/ns/pid")
BOOT_ID = _read_id("/proc/sys/kernel/random/boot_id")

#: File-system types where SQLite's WAL does not work and locks may not hold across machines (any ``fuse.*``
#: too: Google Drive in Colab, gcsfuse, sshfs …). ``fuseblk`` (a local NTFS disk) is not one.
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "davfs", "fuse"}
)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """``(mount point, file-system type)`` of each line of ``/proc/self/mountinfo`` text, in order."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) >= 5 and tail:  # "36 35 98:0 /root /mnt opts [tags] - fstype source opts"
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040 is a space
            out.append((point, tail[0]))
    return out


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The file-system type of the mount that holds ``path`` (the longest mount point above it; of two mounts on
    one point the later, which hides the other). ``None`` where ``/proc/self/mountinfo`` cannot be read."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    target, found, longest = str(path), None, -1
    for point, fstype in parse_mountinfo(mountinfo):
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= longest:
            found, longest = fstype, len(point)
    return found


def network_filesystem(root: Path, env: Mapping[str, str] | None = None, mountinfo: str | None = None) -> str | None:
    """The network or FUSE file-system type under ``root`` (``"nfs4"``, ``"fuse.drive"`` …); ``None`` on a local
    disk. ``GEMIMG_NETWORK_FS=1`` makes any folder count as one (``0``: none does), where detection is wrong."""
    env = os.environ if env is None else env
    forced = env.get("GEMIMG_NETWORK_FS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return "network (GEMIMG_NETWORK_FS=1)"
    if forced in ("0", "false", "no", "off"):
        return None
    fstype = filesystem_type(root, mountinfo)
    return fstype if fstype is not None and (fstype in NETWORK_FS or fstype.startswith("fuse.")) else None


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
# Version 3: the picks (stars and notes), until then a table ``ledger/picks.py`` created on its own, outside the
# versions; a version-2 ledger may already hold it, with this very definition, and keeps its rows.
_PICKS = """
CREATE TABLE IF NOT EXISTS picks (
    cbid        TEXT PRIMARY KEY,
    note        TEXT,
    picked_at   REAL
);
"""
#: What each stored file is (issue #22): its hash, format, size, content credentials and why it looks suspect.
_FILES = """
CREATE TABLE IF NOT EXISTS image_files (
    cbid        TEXT PRIMARY KEY,
    sha256      TEXT,
    format      TEXT,
    bytes       INTEGER,
    credentials TEXT,
    suspect     TEXT
);
"""
_JOB_COLUMNS = frozenset(
    {"cbid", "key", "repeat", "sweep_id", "state", "task_id", "params", "backend", "price_usd", "cost_usd",
     "created", "submitted", "finished", "expires_at", "path", "error"}
)  # fmt: skip


def sql_words(states: tuple[str, ...]) -> str:
    """State words as an SQL list of literals (``'queued', 'submitted'``); they are enum values, never user text."""
    return ", ".join(f"'{state}'" for state in states)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def _execute_all(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the open transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _to_v2(db: sqlite3.Connection) -> None:
    if "owner" not in _columns(db, "jobs"):
        db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
    _execute_all(db, _OWNERS)


def _to_v3(db: sqlite3.Connection) -> None:
    """The picks table joins the schema; one written beside a version-2 ledger stays, with its picks."""
    _execute_all(db, _PICKS)


def _to_v4(db: sqlite3.Connection) -> None:
    """The file facts join the schema; a table written beside a version-3 ledger by a development build stays."""
    _execute_all(db, _FILES)


# Version 5 (issue #21): each row carries a fencing token (``generation``, bumped by every take-over) and whether
# it ever reached ``submitting`` (``sent``: a try may have reached the gateway, so it is looked up before paying);
# each owner says in which PID namespace and kernel boot its pid means something.
_FENCING = """
ALTER TABLE jobs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE owners ADD COLUMN pid_ns TEXT NOT NULL DEFAULT '';
ALTER TABLE owners ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''
"""


def _to_v5(db: sqlite3.Connection) -> None:
    """Fencing tokens and the ``sent`` mark on rows; PID namespace and boot id on owners."""
    jobs, owners = _columns(db, "jobs"), _columns(db, "owners")
    for statement in _FENCING.split(";"):
        table, column = statement.split()[2], statement.split()[5]
        if column not in (jobs if table == "jobs" else owners):
            db.execute(statement)


# Version 6 (issue #26): what a restart must not forget. ``waiting_edits``: an edit queued behind a parent that
# had no image yet (it has no ``jobs`` row until the parent lands): its own parameters as the session takes them,
# and the parent's ``client_business_id``; ``resume`` sends it once the parent lands, or fails it, free.
# ``aliases``: a cache hit's job id (a ``client_business_id`` with no row of its own) and the row its image is
# from, with its sweep, so the id a status line or a grid showed for it still names the image later.
_RESTART = """
CREATE TABLE IF NOT EXISTS waiting_edits (
    cbid        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    request     TEXT NOT NULL,
    backend     TEXT NOT NULL,
    owner       TEXT,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    cbid        TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    sweep_id    TEXT,
    created     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS aliases_sweep ON aliases(sweep_id)
"""


def _to_v6(db: sqlite3.Connection) -> None:
    """Queued edits and cache hits' ids join the schema (new tables only; every row stays as it is)."""
    _execute_all(db, _RESTART)


# Version 7 (issue #25): where the server's progress stood when tasks of a kind (backend, model, resolution)
# ended, as a bracket (``low``: the highest progress a finished task showed; ``high``: what its rate says it
# reached by the look that saw it done), so a new session's polling extrapolates the progress to the right end.
_PROGRESS_ENDS = """
CREATE TABLE IF NOT EXISTS progress_ends (
    backend     TEXT NOT NULL,
    model       TEXT NOT NULL,
    resolution  TEXT NOT NULL,
    low         REAL NOT NULL,
    high        REAL NOT NULL,
    updated     REAL NOT NULL,
    PRIMARY KEY (backend, model, resolution)
)
"""


def _to_v7(db: sqlite3.Connection) -> None:
    """Where the progress of finished tasks ended joins the schema (a new table; every row stays as it is)."""
    _execute_all(db, _PROGRESS_ENDS)


#: ``_MIGRATIONS[v]`` turns a version-``v`` ledger into version ``v + 1`` (version 1 had no ``user_version``).
_MIGRATIONS = {1: _to_v2, 2: _to_v3, 3: _to_v4, 4: _to_v5, 5: _to_v6, 6: _to_v7}


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
    #: the row's fencing token: every take-over bumps it; a write that pays checks it (with the owner)
    generation: int = 0
    #: the row reached ``submitting`` once: a try may have reached the gateway, look it up before paying
    sent: bool = False


#: The columns a :class:`LedgerRow` takes as they are (``params``, ``path`` and ``owner`` are read by hand).
_PLAIN_COLUMNS = tuple(
    f.name for f in fields(LedgerRow) if f.name not in ("params", "path", "owner", "generation", "sent")
)


def _params(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}  # an unreadable row: resume marks it failed, the cache never matches it
    return value if isinstance(value, dict) else {}


def row_from_sql(r: sqlite3.Row, root: Path) -> LedgerRow:
    """A :class:`LedgerRow` from a ``jobs`` row; its path made absolute under ``root``."""
    keys = set(r.keys())
    return LedgerRow(
        **{name: r[name] for name in _PLAIN_COLUMNS},
        params=_params(r["params"]),
        path=str(root / r["path"]) if r["path"] else None,
        owner=r["owner"] if "owner" in keys else None,
        generation=int(r["generation"]) if "generation" in keys else 0,
        sent=bool(r["sent"]) if "sent" in keys else False,
    )


def refuse(what: str, todo: str) -> ConfigError:
    """The one line a problem with the output folder or the ledger shows: what is wrong; what to do."""
    return ConfigError(what, hint=todo)


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: committed at the end, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise


def register_owner(db: sqlite3.Connection, owner: str) -> None:
    """Write (or renew) ``owner``'s lease: this host, this process, now."""
    db.execute(
        "INSERT OR REPLACE INTO owners (owner, host, pid, heartbeat, pid_ns, boot_id) VALUES (?, ?, ?, ?, ?, ?)",
        (owner, HOST, os.getpid(), time.time(), PID_NS, BOOT_ID),
    )


def check_writable(root: Path, images_dir: Path, ledger: Path) -> None:
    """Write and remove a small file in the folder and in images/: unwritable or full fails here, once."""
    for folder in (root, images_dir):
        probe = folder / f".probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            with open(probe, "wb") as fh:
                fh.write(b"\0" * 65536)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            raise refuse(
                f"the output directory {folder} is {'full' if full else 'not writable'} "
                f"({exc.strerror or type(exc).__name__})",
                "free some space there" if full else "fix its permissions or set GEMIMG_OUTPUT_DIR to another folder",
            ) from None
        finally:
            with suppress(OSError):
                probe.unlink(missing_ok=True)
    if ledger.exists() and not os.access(ledger, os.R_OK | os.W_OK):
        raise refuse(
            f"the ledger {ledger} is not readable and writable",
            "fix its permissions, or set GEMIMG_OUTPUT_DIR to another folder",
        )


def _found_version(db: sqlite3.Connection, path: Path, move: str) -> int:
    """The schema version of the opened file (``1`` for a ledger from before versions); refuses what is not ours."""
    check = db.execute("PRAGMA quick_check(1)").fetchone()
    if check is None or str(check[0]) != "ok":
        raise sqlite3.DatabaseError(str(check[0]) if check else "no answer")
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version > SCHEMA_VERSION:
        raise refuse(
            f"the ledger {path} was written by a newer gemimg_jupyter (schema {version}, this one knows "
            f"{SCHEMA_VERSION})",
            "upgrade gemimg_jupyter (pip install -U gemimg_jupyter) or set GEMIMG_OUTPUT_DIR to another folder",
        )
    if version == 0 and tables:
        if "jobs" not in tables or not _columns(db, "jobs") >= _JOB_COLUMNS:
            raise refuse(f"{path} is an SQLite file but not a gemimg ledger", move)
        return 1
    return version


def _bring_up_to_date(db: sqlite3.Connection, version: int, owner: str) -> None:
    """Create or migrate the schema to :data:`SCHEMA_VERSION` and register ``owner``, in one transaction."""
    with immediate(db):
        if version == 0:
            _execute_all(db, _SCHEMA + _OWNERS + _PICKS + _FILES)
            _to_v5(db)
            _to_v6(db)
            _to_v7(db)
        else:
            for v in range(version, SCHEMA_VERSION):
                _MIGRATIONS[v](db)
            _execute_all(db, _SCHEMA)  # tables added since (IF NOT EXISTS)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        register_owner(db, owner)
        db.execute("DELETE FROM owners WHERE heartbeat < ?", (time.time() - 86400,))


def open_ledger(
    path: Path, images_dir: Path, owner: str, *, busy_s: float = 5.0, network: bool = False
) -> sqlite3.Connection:
    """Connect to the ledger at ``path``, check it, bring it to :data:`SCHEMA_VERSION` and register ``owner``.

    Another process's write transaction is waited for ``busy_s`` seconds at most; then one line names
    that process when the ledger knows it (:func:`busy_line`), never "move the ledger away". On a
    ``network`` file system the ledger keeps SQLite's rollback journal (``DELETE``): WAL needs shared
    memory that only works within one machine.
    """
    move = f"move {path} away (your images in {images_dir} stay) or set GEMIMG_OUTPUT_DIR to another folder"
    try:
        db = sqlite3.connect(path, timeout=busy_s, check_same_thread=False)
    except sqlite3.Error as exc:
        raise refuse(f"the ledger {path} cannot be opened ({exc})", move) from None
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
    try:
        version = _found_version(db, path, move)
        mode = "DELETE" if network else "WAL"
        got = str(db.execute(f"PRAGMA journal_mode={mode}").fetchone()[0])
        if got.upper() != mode:  # a WAL ledger another process still has open stays WAL until it closes
            log.warning("the ledger %s keeps journal mode %s (asked for %s)", path, got, mode)
        _bring_up_to_date(db, version, owner)
    except ConfigError:
        db.close()
        raise
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if is_busy(exc):
            line = busy_line(db, path, owner)
            db.close()
            raise line from None
        db.close()
        if "readonly" in text or "read-only" in text or "disk" in text or "full" in text:
            raise refuse(
                f"the ledger {path} cannot be written ({text})",
                "free some space or fix the folder's permissions, or set GEMIMG_OUTPUT_DIR to another folder",
            ) from None
        raise refuse(f"the ledger {path} cannot be used ({text})", move) from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise refuse(f"the ledger {path} is damaged or not a database ({exc})", move) from None
    return db


def busy_line(db: sqlite3.Connection, path: Path, owner: str) -> LedgerBusyError:
    """The one line for a ledger another process keeps busy: who (host and pid, from the owners it knows) and
    what to do (wait, or close that kernel); reading works while another process writes."""
    try:
        recent = db.execute(
            "SELECT host, pid FROM owners WHERE owner != ? AND heartbeat > ? ORDER BY heartbeat DESC LIMIT 3",
            (owner, time.time() - 60),
        ).fetchall()
    except sqlite3.Error:
        recent = []
    who = ", ".join(f"pid {r['pid']} on {r['host']}" for r in recent)
    return LedgerBusyError(
        f"the ledger {path} is busy: another process is writing to it"
        + (f" (it was last used by {who})" if who else ""),
        hint="wait a moment and run the cell again, or close the notebook or kernel that holds it",
    )


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds the lock (``database is locked``, ``… busy``)."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def make_dirs(root: Path, *folders: Path) -> None:
    """Create the output folder's sub-folders; a folder that cannot be made is one refusal line."""
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refuse(
            f"the output directory {root} cannot be used ({exc.strerror or type(exc).__name__})",
            "set GEMIMG_OUTPUT_DIR (or Settings(output_dir=...)) to a folder you can write to",
        ) from None


def file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``, ``None`` when it is gone: a ledger deleted (or replaced) shows here."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def reopen_deleted(
    old: sqlite3.Connection, path: Path, images_dir: Path, owner: str, *, busy_s: float = 5.0, network: bool = False
) -> sqlite3.Connection:
    """Write a deleted ledger again at ``path`` with the rows ``old`` still sees, close ``old``, open the new one."""
    log.warning("the ledger %s was deleted while in use; writing a new one there", path)
    try:
        if not path.exists():
            old.execute("VACUUM INTO ?", (str(path),))  # the rows this process still sees
    except sqlite3.Error:
        log.warning("could not carry the old rows over", exc_info=True)
    old.close()
    return open_ledger(path, images_dir, owner, busy_s=busy_s, network=network)
