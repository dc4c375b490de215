"""A shareable copy with our parameters inside the file (``result.export(path, embed=True)``).

The stored file stays the gateway's bytes; an export is a *copy* that carries
an A1111-style ``parameters`` text (which many viewers and tools read) and our
provenance JSON, without re-encoding the pixels:

* PNG: ``parameters`` and ``gemimg`` iTXt chunks after ``IHDR``;
* JPEG: the EXIF ``UserComment`` holds ``parameters`` (as A1111 writes it) and a
  ``COM`` segment holds ``gemimg:`` + the JSON; the EXIF block is rewritten,
  the compressed scan is copied byte for byte.
* WebP: the RIFF container gets an ``EXIF`` chunk (``UserComment`` = ``parameters``)
  and an ``XMP `` chunk (``gemimg:parameters`` and ``gemimg:provenance`` = the
  JSON), announced in a ``VP8X`` header (added to a simple WebP, whose canvas
  size it takes from the bitstream's header); the ``VP8``/``VP8L``/``ALPH``/
  ``ANIM`` chunks are copied byte for byte.

Any signature over the original bytes (C2PA) no longer matches the copy; the
copy's provenance says it is an export and of which file.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image

from gemimg_jupyter.draw.formats import sniff_format
from gemimg_jupyter.draw.images import PROVENANCE_KEY, a1111_parameters, embed_provenance

__all__ = ["EMBEDDABLE", "XMP_NAMESPACE", "embedded_copy"]

#: Formats :func:`embedded_copy` can write into without re-encoding.
EMBEDDABLE = frozenset({"png", "jpeg", "webp"})
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


#: The XMP namespace of our two properties (``gemimg:parameters``, ``gemimg:provenance``).
XMP_NAMESPACE = "urn:gemimg_jupyter:provenance:1"
_VP8X_EXIF, _VP8X_XMP, _VP8X_ALPHA = 0x08, 0x04, 0x10


def _xmp(provenance: Mapping[str, Any]) -> bytes:
    """An XMP packet with ``parameters`` and our JSON as two properties of the ``gemimg`` namespace."""
    params = escape(a1111_parameters(provenance))
    body = escape(json.dumps(provenance, sort_keys=True))
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:{PROVENANCE_KEY}="{XMP_NAMESPACE}">'
        f"<{PROVENANCE_KEY}:parameters>{params}</{PROVENANCE_KEY}:parameters>"
        f"<{PROVENANCE_KEY}:provenance>{body}</{PROVENANCE_KEY}:provenance>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A WebP's chunks as (FourCC, payload), in file order."""
    out: list[tuple[bytes, bytes]] = []
    pos, end = 12, min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return out


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) & 1 else b"")


def _webp(data: bytes, provenance: Mapping[str, Any]) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        exif = img.getexif()
        size, alpha = img.size, "A" in img.getbands()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\x00" + a1111_parameters(provenance).encode("utf-16-be")
    tiff = exif.tobytes()
    tiff = tiff[6:] if tiff.startswith(b"Exif\x00\x00") else tiff  # WebP's EXIF chunk holds the TIFF data alone
    chunks = [(k, p) for k, p in _riff_chunks(data) if k not in (b"EXIF", b"XMP ")]
    if chunks and chunks[0][0] == b"VP8X":
        header = bytes([chunks[0][1][0] | _VP8X_EXIF | _VP8X_XMP]) + chunks[0][1][1:]
        chunks = chunks[1:]
    else:  # a simple WebP: announce the extra chunks with a VP8X header of the same canvas
        flags = _VP8X_EXIF | _VP8X_XMP | (_VP8X_ALPHA if alpha else 0)
        header = bytes([flags, 0, 0, 0]) + (size[0] - 1).to_bytes(3, "little") + (size[1] - 1).to_bytes(3, "little")
    body = b"".join(
        [_riff_chunk(b"VP8X", header), *(_riff_chunk(k, p) for k, p in chunks),
         _riff_chunk(b"EXIF", tiff), _riff_chunk(b"XMP ", _xmp(provenance))]
    )  # fmt: skip
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def embedded_copy(data: bytes, provenance: Mapping[str, Any]) -> bytes:
    """``data`` with ``parameters`` and our JSON embedded, pixels untouched; ValueError for other formats."""
    fmt = sniff_format(data)
    if fmt == "png":
        return embed_provenance(data, provenance)
    if fmt == "jpeg":
        return _jpeg(data, provenance)
    if fmt == "webp":
        return _webp(data, provenance)
    raise ValueError(f"embedding is not supported for {fmt or 'this'} files; export with embed=False")
