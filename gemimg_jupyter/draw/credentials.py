"""Content credentials: is a C2PA manifest in these bytes? (Seen, never validated.)

C2PA (the Coalition for Content Provenance and Authenticity) stores its
manifest store as a JUMBF box in a place each format reserves for it: a PNG
``caBX`` chunk, JPEG ``APP11`` segments carrying JUMBF (``JP`` common
identifier), a WebP/RIFF ``C2PA`` chunk. This module only walks the file's
structure and says where a manifest is; it checks no signature and no hash,
so nothing here may be reported as "valid" (:data:`NOT_VALIDATED` says so).
"""

from __future__ import annotations

import struct

__all__ = ["NOT_VALIDATED", "content_credentials", "credentials_text"]

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
