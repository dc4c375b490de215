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

import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .images import embed_provenance, read_provenance

__all__ = ["LedgerRow", "Store", "read_provenance", "safe_filename", "write_atomic"]

PENDING_STATES = ("queued", "uploading", "submitting", "submitted", "in_progress", "downloading", "timeout")

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
    error       TEXT
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
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.images_dir = self.root / "images"
        self.grids_dir = self.root / "grids"
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            self.grids_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"the output directory {self.root} cannot be used ({exc.strerror or type(exc).__name__}); "
                "set GEMIMG_OUTPUT_DIR (or %config GemimgMagics.output_dir) to a folder you can write to"
            ) from None
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "ledger.sqlite3", timeout=30.0, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
            self._db.commit()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

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
                "INSERT INTO jobs (cbid, key, repeat, sweep_id, state, params, backend, price_usd, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )

    _UPDATABLE = frozenset({"state", "task_id", "cost_usd", "submitted", "finished", "expires_at", "path", "error"})

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

    def cached_keys(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have a stored image (one query per 500 keys, not one per key)."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, path FROM jobs WHERE state = 'done' AND path IS NOT NULL AND key IN ({marks})",  # noqa: S608 - only placeholders
                    chunk,
                ).fetchall()
            found.update(r["key"] for r in rows if (self.root / r["path"]).is_file())
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

    def upload_url(self, sha256: str, backend: str) -> str | None:
        """The URL a reference with this content was uploaded to before."""
        with self._lock:
            row = self._db.execute(
                "SELECT url FROM uploads WHERE sha256 = ? AND backend = ?", (sha256, backend)
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


def write_atomic(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a temporary file in its folder (fsync, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
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
        params=json.loads(r["params"]),
        backend=r["backend"],
        price_usd=r["price_usd"],
        cost_usd=r["cost_usd"],
        created=r["created"],
        submitted=r["submitted"],
        finished=r["finished"],
        expires_at=r["expires_at"],
        path=str(root / r["path"]) if r["path"] else None,
        error=r["error"],
    )
