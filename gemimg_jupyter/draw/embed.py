"""A shareable copy with our parameters inside the file (``result.export(path, embed=True)``).

The stored file stays the gateway's bytes; an export is a *copy* that carries
an A1111-style ``parameters`` text (which many viewers and tools read) and our
provenance JSON, without re-encoding the pixels:

* PNG: ``parameters`` and ``gemimg`` iTXt chunks after ``IHDR``;
* JPEG: the EXIF ``UserComment`` holds ``parameters`` (as A1111 writes it) and a
  ``COM`` segment holds ``gemimg:`` + the JSON; the EXIF block is rewritten,
  the compressed scan is copied byte for byte.

Any signature over the original bytes (C2PA) no longer matches the copy; the
copy's provenance says it is an export and of which file.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any

from PIL import Image

from gemimg_jupyter.draw.formats import sniff_format
from gemimg_jupyter.draw.images import PROVENANCE_KEY, a1111_parameters, embed_provenance

__all__ = ["EMBEDDABLE", "embedded_copy"]

#: Formats :func:`embedded_copy` can write into without re-encoding.
EMBEDDABLE = frozenset({"png", "jpeg"})
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


def _segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """A JPEG's header segments as (marker, whole segment) up to the first scan, and the rest (scan onwards)."""
    out: list[tuple[int, bytes]] = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.append((data[pos + 1], data[pos : pos + 2 + length]))
        pos += 2 + length
    return out, data[pos:]


def _segment(marker: int, body: bytes) -> bytes:
    if len(body) + 2 > 0xFFFF:
        raise ValueError("the embedded text is too long for one JPEG segment (64 KB)")
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _jpeg(data: bytes, provenance: Mapping[str, Any]) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        exif = img.getexif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\x00" + a1111_parameters(provenance).encode("utf-16-be")
    head, rest = _segments(data)
    kept = [seg for marker, seg in head if not (marker == 0xE1 and seg[4:10] == b"Exif\x00\x00") and marker != 0xFE]
    app1 = _segment(0xE1, exif.tobytes())
    note = _segment(0xFE, f"{PROVENANCE_KEY}:".encode() + json.dumps(provenance, sort_keys=True).encode())
    lead = 1 if kept and kept[0][1] == 0xE0 else 0  # JFIF's APP0 stays first
    return b"\xff\xd8" + b"".join([*kept[:lead], app1, *kept[lead:], note]) + rest


def embedded_copy(data: bytes, provenance: Mapping[str, Any]) -> bytes:
    """``data`` with ``parameters`` and our JSON embedded, pixels untouched; ValueError for other formats."""
    fmt = sniff_format(data)
    if fmt == "png":
        return embed_provenance(data, provenance)
    if fmt == "jpeg":
        return _jpeg(data, provenance)
    raise ValueError(f"embedding is not supported for {fmt or 'this'} files; export with embed=False")
