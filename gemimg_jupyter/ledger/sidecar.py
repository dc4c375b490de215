"""The image as the gateway sent it, and our provenance beside it in ``<image>.json``.

An image file is the gateway's bytes, unchanged, under the extension of their
own format (``.jpg``, ``.png``, ``.webp``): its hash is the hash of what was
paid for, and a C2PA manifest bound to those bytes stays intact. What we know
about it (prompt, parameters, model, task and business ids, cost, parent,
picks, size note, timestamps, package version, and :func:`~gemimg_jupyter.draw.formats.file_facts`)
is a JSON sidecar, written atomically *before* the image is renamed into place,
so an image never lacks its sidecar. Picks and notes rewrite the sidecar,
never the image.

Images written by earlier versions are PNGs with our ``gemimg`` iTXt chunk and
no sidecar; :func:`~gemimg_jupyter.draw.images.read_provenance` still reads them,
and the first rewrite (a pick) writes their sidecar, leaving the PNG as it is.

The facts also go into the ledger, in a table of their own (``image_files``,
keyed by the row's ``client_business_id``), so totals can split usable images
from suspect ones without opening files.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from gemimg_jupyter.draw.credentials import credentials_report
from gemimg_jupyter.draw.embed import embedded_copy
from gemimg_jupyter.draw.formats import EXTENSIONS, file_facts, sniff_format
from gemimg_jupyter.draw.images import read_provenance, sidecar_path, strip_provenance
from gemimg_jupyter.ledger.files import unique_path, write_atomic

__all__ = [
    "SIDECAR_VERSION",
    "export_copy",
    "image_info",
    "record_facts",
    "rewrite_sidecar",
    "suspect_split",
    "suspects",
    "write_kept",
    "write_sidecar",
]

#: Written into every sidecar, so a later version knows what it reads.
SIDECAR_VERSION = 1


def _encode(provenance: Mapping[str, Any]) -> bytes:
    body = {"sidecar_version": SIDECAR_VERSION, **provenance}
    return (json.dumps(body, sort_keys=True, indent=1, default=str) + "\n").encode("utf-8")


def write_sidecar(image: Path, provenance: Mapping[str, Any]) -> Path:
    """Write ``<image>.json`` atomically (temp file, fsync, rename); returns its path."""
    return write_atomic(sidecar_path(image), _encode(provenance))


def kept_name(data: bytes, name: str) -> str:
    """``name`` with the extension of the bytes' own format (unknown formats keep ``name``'s)."""
    ext = EXTENSIONS.get(sniff_format(data) or "")
    return str(Path(name).with_suffix(ext)) if ext else name


def write_kept(directory: Path, data: bytes, name: str, provenance: Mapping[str, Any]) -> Path:
    """Write ``data`` unchanged under ``directory`` (the name's extension made the format's) with its sidecar.

    The sidecar is renamed into place first, then the image: a crash in
    between leaves a sidecar without an image (harmless), never an image
    without its provenance. ``provenance["file"]`` is filled in when absent.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = unique_path(directory, kept_name(data, name))
    prov = dict(provenance)
    if "file" not in prov:  # not setdefault: that would hash and decode the bytes again every time
        prov["file"] = file_facts(data)
    write_sidecar(target, prov)
    return write_atomic(target, data)


def rewrite_sidecar(image: str | Path | None, change: Callable[[dict[str, Any]], bool]) -> None:
    """Apply ``change`` to an image's provenance and write it back to the sidecar (never to the image).

    ``change`` edits the dict in place and says whether anything changed. An
    image from an earlier version gets its sidecar now, from its PNG chunk.
    """
    if not image or not Path(image).is_file():
        return
    prov = read_provenance(image)
    if change(prov):
        prov.pop("sidecar_version", None)
        write_sidecar(Path(image), prov)


def image_info(image: str | Path) -> dict[str, Any]:
    """An image file's provenance with its file facts (worked out now for files from earlier versions).

    ``credentials`` is the content credentials line (:func:`~gemimg_jupyter.draw.credentials.credentials_report`:
    validated only when the optional c2pa-python is installed). ``stored_as`` says where the provenance was found: ``sidecar``, or
    ``png chunk`` for a PNG written by an earlier version (its facts are of
    the image without our chunks: the bytes the gateway sent, as far as they
    can be recovered).
    """
    path = Path(image)
    prov = read_provenance(path)
    info: dict[str, Any] = {"path": str(path), "stored_as": "sidecar" if sidecar_path(path).is_file() else "png chunk"}
    info.update(prov)
    if "file" not in info:
        info["file"] = file_facts(strip_provenance(path.read_bytes()))
    facts = info["file"] if isinstance(info["file"], dict) else {}
    where = facts.get("content_credentials")
    data = strip_provenance(path.read_bytes()) if where else None  # read again only to validate a manifest
    info["credentials"] = credentials_report(where, data, facts.get("media_type"))
    return info


def export_copy(image: str | Path, target: str | Path, *, embed: bool = True) -> Path:
    """Copy an image to ``target`` (its extension made the format's), with a sidecar saying it is an export.

    ``embed=True`` also writes ``parameters`` and our JSON into the copy (PNG,
    JPEG; see :mod:`~gemimg_jupyter.draw.embed`); the original is never touched.
    """
    source = Path(image)
    data = strip_provenance(source.read_bytes())  # an earlier version's PNG: the image without our old chunks
    prov = read_provenance(source)
    prov.pop("sidecar_version", None)
    prov["export"] = {"of": str(source), "sha256": file_facts(data)["sha256"], "at": time.time(), "embedded": embed}
    out = embedded_copy(data, prov) if embed else data
    dest = Path(target).expanduser()
    dest = dest.with_name(kept_name(out, dest.name))
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_sidecar(dest, prov)
    return write_atomic(dest, out)


# ---- the image_files table: functions over the store's connection (inside its lock or transaction)


def record_facts(db: sqlite3.Connection, cbid: str, facts: Mapping[str, Any]) -> None:
    """Keep the facts of the file written for the row ``cbid``."""
    db.execute(
        "INSERT OR REPLACE INTO image_files (cbid, sha256, format, bytes, credentials, suspect) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (cbid, facts.get("sha256"), facts.get("format"), facts.get("bytes"),
         facts.get("content_credentials"), facts.get("suspect")),
    )  # fmt: skip


def suspects(db: sqlite3.Connection, cbids: Iterable[str]) -> dict[str, str]:
    """Why each of these rows' images looks unusable (``cbid`` → reason), for the suspect ones only.

    Suspect images are few, so all of them are read and the wanted ones kept.
    """
    wanted = set(cbids)
    found = db.execute("SELECT cbid, suspect FROM image_files WHERE suspect IS NOT NULL").fetchall()
    return {str(c): str(r) for c, r in found if c in wanted}


def suspect_split(db: sqlite3.Connection) -> dict[str, Any]:
    """Paid images split into usable and suspect: ``suspect_images``, ``suspect_usd``, ``suspect_reasons``."""
    found = db.execute(
        "SELECT f.suspect, COALESCE(j.cost_usd, j.price_usd, 0) FROM image_files f "
        "JOIN jobs j ON j.cbid = f.cbid WHERE f.suspect IS NOT NULL AND j.state = 'done'"
    ).fetchall()
    return {
        "suspect_images": len(found),
        "suspect_usd": float(sum(float(c or 0) for _, c in found)),
        "suspect_reasons": sorted({str(r).split(":")[0] for r, _ in found}),
    }
