"""How the simulator serves an image: JPEG by default (the gateway's sample URLs end in ``.jpg``), PNG or WebP on request.

Every image carries EXIF (``Software``, and ``Orientation`` when asked: the
pixels are then stored turned so that a viewer applying the tag shows the
picture upright); :func:`encode` can add a *stand-in* C2PA manifest in the
place each format reserves for one (PNG ``caBX`` chunk, JPEG APP11 JUMBF
segment, WebP ``C2PA`` chunk), so tests can prove the client keeps the bytes.
The stand-in is a JUMBF box labelled ``c2pa`` holding a plain note; it is not
signed and no validator would accept it.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, PngImagePlugin

__all__ = ["FORMATS", "encode", "format_of_name", "standin_c2pa"]

#: format → (media type, file extension)
FORMATS: dict[str, tuple[str, str]] = {"jpeg": ("image/jpeg", ".jpg"), "png": ("image/png", ".png"),
                                       "webp": ("image/webp", ".webp")}  # fmt: skip
_SOFTWARE = "gemimg_jupyter simulator"
#: How the stored pixels are turned so that a viewer applying the orientation tag shows them upright.
_STORE_TURN = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}  # fmt: skip


def format_of_name(name: str) -> str:
    """The format a result file name's extension stands for (``jpeg`` when unknown)."""
    for fmt, (_, ext) in FORMATS.items():
        if name.endswith(ext):
            return fmt
    return "jpeg"


def _jumbf(label: bytes, payload: bytes) -> bytes:
    """A minimal JUMBF superbox: a description box (``jumd``) with ``label`` and one JSON content box."""
    desc = b"c2pa\x00\x11\x00\x10\x80\x00\xaa\x00\x38\x9b\x71" + b"\x03" + label + b"\x00"
    jumd = struct.pack(">I", 8 + len(desc)) + b"jumd" + desc
    json_box = struct.pack(">I", 8 + len(payload)) + b"json" + payload
    return struct.pack(">I", 8 + len(jumd) + len(json_box)) + b"jumb" + jumd + json_box


def standin_c2pa() -> bytes:
    """The stand-in manifest store (a JUMBF box); unsigned, for tests only."""
    note = b'{"claim_generator": "gemimg_jupyter simulator", "note": "stand-in, not signed"}'
    return _jumbf(b"c2pa", note)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_c2pa(data: bytes, fmt: str) -> bytes:
    store = standin_c2pa()
    if fmt == "png":  # caBX before IEND (the last 12 bytes)
        return data[:-12] + _png_chunk(b"caBX", store) + data[-12:]
    if fmt == "jpeg":  # APP11 after the APPn segments that follow SOI
        pos = 2
        while data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
            pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        body = b"JP" + b"\x00\x01" + struct.pack(">I", 1) + store
        return data[:pos] + b"\xff\xeb" + struct.pack(">H", 2 + len(body)) + body + data[pos:]
    chunk = b"C2PA" + struct.pack("<I", len(store)) + store + (b"\x00" if len(store) & 1 else b"")
    riff = data[12:] + chunk
    return b"RIFF" + struct.pack("<I", 4 + len(riff)) + b"WEBP" + riff


def encode(
    image: Image.Image, fmt: str = "jpeg", *, orientation: int = 1, c2pa: bool = False, quality: int | None = None
) -> bytes:
    """``image`` as the gateway might serve it: ``fmt`` with EXIF, optionally turned and with a stand-in C2PA.

    ``quality`` is the JPEG compression quality (``imageOutputOptions.compressionQuality``; default 90).
    """
    exif = Image.Exif()
    exif[0x0131] = _SOFTWARE
    if orientation in _STORE_TURN:
        image = image.transpose(_STORE_TURN[orientation])
        exif[0x0112] = orientation
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", _SOFTWARE)
        image.save(buf, format="PNG", optimize=False, compress_level=1, pnginfo=info, exif=exif)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=85, method=2, exif=exif)
    else:
        image.save(buf, format="JPEG", quality=90 if quality is None else quality, exif=exif)
    data = buf.getvalue()
    return _with_c2pa(data, fmt) if c2pa else data
