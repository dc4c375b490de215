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

:class:`Store` is the one public face. Its parts live beside it:
:mod:`.store_ledger` (opening, self-check, migrations, a deleted ledger
written again; :class:`LedgerRow`), :mod:`.store_leases` (owners, heartbeat,
handing rows back), :mod:`.store_claims` (who pays: claim, adopt, take over,
orphans), :mod:`.store_queries` (rows, cache keys, history, money) and
:mod:`.store_files` (safe names, atomic writes).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.draw.images import read_provenance
from gemimg_jupyter.ledger.claims import Claim, Claims
from gemimg_jupyter.ledger.files import safe_filename, slug, unique_path, write_atomic
from gemimg_jupyter.ledger.schema import RESUMABLE_STATES, SCHEMA_VERSION, LedgerRow
from gemimg_jupyter.ledger.sidecar import FileFacts, write_kept

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


class Store(Claims):
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

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

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
            self._insert(db, request, JobState.SUBMITTING.value, time.time())

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

    # ---- uploads --------------------------------------------------------------------------

    def upload_url(self, sha256: str, backend: str) -> str | None:
        """The URL a reference with this content was uploaded to less than ``UPLOAD_MAX_AGE`` seconds ago.

        Nothing documents how long an uploaded URL lives; an older upload is
        not trusted (the reference is uploaded again, which is free).
        """
        with self._lock:
            row = self._db.execute(
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
            FileFacts(self.ledger_path).record(str(cbid), read_provenance(path).get("file", {}))
        return path

    def write_bytes(self, data: bytes, name: str, *, folder: str = "images") -> Path:
        """Write bytes under ``folder`` atomically (temp file, fsync, rename); returns the path."""
        directory = self.root / folder
        with self._lock:
            self._ensure_alive()
        directory.mkdir(parents=True, exist_ok=True)
        return write_atomic(unique_path(directory, name), data)
