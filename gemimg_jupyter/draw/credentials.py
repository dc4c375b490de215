"""Content credentials: is a C2PA manifest in these bytes? (Seen, never validated.)

C2PA (the Coalition for Content Provenance and Authenticity) stores its
manifest store as a JUMBF box in a place each format reserves for it: a PNG
``caBX`` chunk, JPEG ``APP11`` segments carrying JUMBF (``JP`` common
identifier), a WebP/RIFF ``C2PA`` chunk. This module only walks the file's
structure and says where a manifest is; it checks no signature and no hash,
so nothing here may be reported as "valid" (:data:`NOT_VALIDATED` says so).

With the optional extra ``c2pa`` (``pip install 'gemimg_jupyter[c2pa]'``, the
Content Authenticity Initiative's ``c2pa-python``), :func:`validate_credentials`
asks that library for the active manifest's issuer and its validation state;
only then does a report say more than "present (not validated)".
"""

from __future__ import annotations

import importlib
import io
import json
import struct
from typing import Any

__all__ = ["NOT_VALIDATED", "content_credentials", "credentials_report", "credentials_text", "validate_credentials"]

#: What every report of a found manifest adds: presence is not validity.
NOT_VALIDATED = "present (not validated)"

_PNG = b"\x89PNG\r\n\x1a\n"


def _png(data: bytes) -> str | None:
    pos = len(_PNG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"caBX":
            return "PNG caBX chunk"
        if kind == b"IEND":
            break
        pos += 12 + length
    return None


def _jpeg(data: bytes) -> str | None:
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end: no more headers
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xEB and body[:2] == b"JP" and b"jumb" in body[:64]:
            return "JPEG APP11 JUMBF segment"
        pos += 2 + length
    return None


def _riff(data: bytes) -> str | None:
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if kind == b"C2PA":
            return "WebP C2PA chunk"
        pos += 8 + length + (length & 1)
    return None


def content_credentials(data: bytes) -> str | None:
    """Where a C2PA manifest sits in ``data`` (for example ``"JPEG APP11 JUMBF segment"``), or ``None``.

    Structural only: the manifest is found, not validated.
    """
    if data.startswith(_PNG):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _riff(data)
    return None


def credentials_text(where: str | None) -> str:
    """One line for reports: ``present (not validated): JPEG APP11 JUMBF segment`` or ``absent``."""
    return f"{NOT_VALIDATED}: {where}" if where else "absent"


def _c2pa() -> Any:
    """The optional ``c2pa`` module (c2pa-python), or ``None`` when it is not installed."""
    try:
        return importlib.import_module("c2pa")
    except ImportError:
        return None


def validate_credentials(data: bytes, media_type: str) -> dict[str, str] | None:
    """The manifest's ``issuer`` and ``validation`` as c2pa-python reports them; ``None`` without that library.

    ``validation`` is the library's verdict in lower case (``valid``, ``trusted``, ``invalid: <codes>``),
    or ``unreadable: <reason>`` when it could not read the manifest; ``issuer`` is the signing
    certificate's issuer as the manifest names it (``not named`` when absent).
    """
    c2pa = _c2pa()
    if c2pa is None:
        return None
    try:
        with c2pa.Reader(media_type, io.BytesIO(data)) as reader:
            store = json.loads(reader.json())
    except Exception as exc:  # noqa: BLE001 - any failure of the optional library is a verdict, not a crash
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"issuer": "not named", "validation": f"unreadable: {reason}"}
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest") or "") or {}
    issuer = str((active.get("signature_info") or {}).get("issuer") or "not named")
    errors = [str(s.get("code")) for s in store.get("validation_status") or [] if isinstance(s, dict)]
    state = str(store.get("validation_state") or ("Invalid" if errors else "Valid")).lower()
    return {"issuer": issuer, "validation": f"{state}: {', '.join(errors)}" if errors and state == "invalid" else state}


def credentials_report(where: str | None, data: bytes | None = None, media_type: str | None = None) -> str:
    """The content credentials line of reports and ``info``.

    ``absent``; ``present (not validated): <where>`` without c2pa-python (or without the bytes);
    with it, ``present: <where>; issuer <issuer>; <validation> (checked with c2pa-python)``.
    """
    if not where:
        return "absent"
    checked = validate_credentials(data, media_type) if data is not None and media_type else None
    if checked is None:
        return credentials_text(where)
    return f"present: {where}; issuer {checked['issuer']}; {checked['validation']} (checked with c2pa-python)"
