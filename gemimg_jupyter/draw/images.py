"""Pillow helpers: load references, verify downloads, thumbnails, PNG provenance.

Pure functions over bytes and ``PIL.Image``; no I/O besides reading a
reference file the caller named.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, PngImagePlugin

from gemimg_jupyter.domain.errors import InvalidImageError, ValidationError
from gemimg_jupyter.domain.models import MAX_REF_BYTES, ReferenceImage, too_big_message
from gemimg_jupyter.draw.formats import Shown, oriented_size, shown_of, shrink, viewable

__all__ = [
    "MAX_IMAGE_PIXELS",
    "PROVENANCE_KEY",
    "ImageBytes",
    "decode_image",
    "embed_provenance",
    "encode_png",
    "load_reference",
    "png_bytes",
    "png_with_provenance",
    "read_provenance",
    "sidecar_path",
    "size_note",
    "strip_provenance",
    "thumbnail",
]

#: Refuse images above this many pixels (a decompression bomb guard; 4K 21:9 is ~11 Mpx).
MAX_IMAGE_PIXELS = 64_000_000
PROVENANCE_KEY = "gemimg"
_FORMAT_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Pillow's many errors for bad bytes, and its decompression-bomb warning, as one :class:`InvalidImageError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except InvalidImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidImageError(f"{what} is too large to decode safely ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for bad bytes
            raise InvalidImageError(f"{what} is not a readable image ({type(exc).__name__})") from None


def _opened(data: bytes, *, what: str) -> Image.Image:
    """``data`` opened after the pixel limit and Pillow's structural check, not yet decoded (inside :func:`_reading`)."""
    if not data:
        raise InvalidImageError(f"{what} is empty (0 bytes)")
    probe = Image.open(io.BytesIO(data))
    w, h = probe.size
    if w * h > MAX_IMAGE_PIXELS:
        raise InvalidImageError(f"{what} is {w}×{h} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel safety limit")
    probe.verify()
    return Image.open(io.BytesIO(data))


def _open_checked(data: bytes, *, what: str, decode: bool = True) -> Image.Image:
    """Open and fully decode ``data``; bombs, truncation and garbage all raise.

    ``decode=False`` stops after Pillow's structural check when that check is
    complete for the format: a PNG's ``verify()`` reads every chunk to ``IEND``
    and checks each CRC, so truncated or damaged bytes raise without paying
    for a full decode (about 8 ms for a 1024² image). Other formats are
    always decoded.
    """
    with _reading(what):
        img = _opened(data, what=what)
        if decode or img.format != "PNG":
            img.load()
    return img


def decode_image(data: bytes, *, what: str = "downloaded image") -> Image.Image:
    """Decode bytes into a loaded image, or raise :class:`InvalidImageError`.

    Only bytes that do not decode raise. An image of another size than the
    request implies (a channel that answers a 2K request with 1K) is still a
    paid image and is returned; :func:`size_note` words the difference.
    """
    return _open_checked(data, what=what)


def stored_size(path: str | Path | None) -> tuple[int, int] | None:
    """The pixel size of an image file, read from its header (the pixels stay on disk); ``None`` if unreadable."""
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            width, height = img.size
            return int(width), int(height)
    except (OSError, ValueError):
        return None


def size_note(size: tuple[int, int], expected: tuple[int, int] | None) -> str | None:
    """One line when an image is not the size the request implies, else ``None``."""
    if expected is None or tuple(size) == tuple(expected):
        return None
    (w, h), (ew, eh) = size, expected
    ratio = (w * h) / (ew * eh) if ew * eh else 0.0
    how = "smaller" if ratio < 1 else "larger"
    return f"the gateway returned {w}×{h} pixels instead of the requested {ew}×{eh} ({how}); the image was kept"


class ImageBytes(bytes):
    """Bytes of a downloaded image that decoded, with what was found in them.

    A plain :class:`bytes` everywhere bytes are expected; ``note`` is ``None``
    unless the image is not the requested size (see :func:`size_note`).
    """

    width: int
    height: int
    expected: tuple[int, int] | None
    note: str | None
    #: a small copy as shown, from the decode that checked the bytes (``checked(..., small=N)``), else ``None``
    shown: Shown | None

    @classmethod
    def checked(
        cls,
        data: bytes,
        *,
        expected: tuple[int, int] | None = None,
        what: str = "downloaded image",
        small: int | None = None,
    ) -> ImageBytes:
        """Decode ``data`` (raising :class:`InvalidImageError` if it does not) and describe it.

        ``small``: decode to keep a copy of at most that many pixels on its long side (``shown``), so the
        bytes are decoded once for both the check and the thumbnail (a JPEG at a reduced size).
        """
        out = cls(data)
        out.shown = None
        if small is None:
            img = _open_checked(data, what=what, decode=False)  # a download: the PNG's own checks suffice
            size = oriented_size(img)  # an EXIF-rotated photo is asked for, and shown, the other way round
            img.close()
        else:
            with _reading(what), _opened(data, what=what) as img:
                out.shown = shown_of(img, small)
            size = out.shown[1]
        out.width, out.height, out.expected = size[0], size[1], expected
        out.note = size_note(size, expected)
        return out


#: A URL scheme other than http(s) (``ftp://``, ``s3://``, ``file://``): said so, not "no such file".
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def load_reference(source: object, *, max_bytes: int = MAX_REF_BYTES, name: str | None = None) -> ReferenceImage:
    """Turn a path, URL, bytes or PIL image into a :class:`ReferenceImage`.

    Files are checked for existence, size and real image content (a text file
    named ``.png`` is refused); the model's count and format limits are
    checked later, by :func:`~.models.validate_references`. ``name`` labels
    bytes in messages (for example an uploaded file's name).
    """
    if isinstance(source, ReferenceImage):
        return source
    if isinstance(source, str) and source.strip().lower().startswith(("http://", "https://")):
        return ReferenceImage.from_url(source.strip())
    if isinstance(source, str) and source.strip().lower().startswith("data:"):
        raise ValidationError(
            "data: URIs are not accepted; pass a file path or bytes", field="reference", value=source[:30]
        )
    if isinstance(source, str) and (scheme := _SCHEME.match(source.strip())):
        raise ValidationError(
            f"reference {source.strip()!r}: {scheme.group(1)}:// is not supported; use an http(s) URL or a file path",
            field="reference",
            value=source,
        )
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            raise ValidationError(
                f"reference {str(source)!r} is a folder; name an image file", field="reference", value=str(source)
            )
        if not path.is_file():
            raise ValidationError(
                f"reference file {str(source)!r} does not exist", field="reference", value=str(source)
            )
        size = path.stat().st_size
        if size > max_bytes:
            raise ValidationError(too_big_message(path.name, size, max_bytes), field="reference", value=path.name)
        return _from_bytes(path.read_bytes(), path.name, max_bytes)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), name or "bytes", max_bytes)
    if isinstance(source, Image.Image):
        buf = io.BytesIO()
        source.save(buf, format="PNG")
        return _from_bytes(buf.getvalue(), "PIL image", max_bytes)
    raise ValidationError(
        f"a reference must be a file path, URL, bytes or PIL image, not {type(source).__name__}",
        field="reference",
        value=source,
    )


def _from_bytes(data: bytes, name: str, max_bytes: int) -> ReferenceImage:
    if len(data) > max_bytes:
        raise ValidationError(too_big_message(name, len(data), max_bytes), field="reference", value=name)
    try:
        img = _open_checked(data, what=f"reference {name!r}")
    except InvalidImageError as exc:
        raise ValidationError(f"{exc}; use a JPEG, PNG or WebP image", field="reference", value=name) from None
    fmt = (img.format or "").upper()
    return ReferenceImage(
        sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        data=data,
        mime=_FORMAT_MIME.get(fmt),
        format=fmt.lower() or None,
    )


def thumbnail(img: Image.Image, long_side: int = 320) -> Image.Image:
    """A copy no larger than ``long_side`` on its long side, in RGB, as shown (EXIF orientation, any mode)."""
    return shrink(viewable(img), long_side)


def load_thumbnail(source: bytes | str | os.PathLike[str], long_side: int = 320) -> Image.Image:
    """A small RGB copy of an image file or of encoded bytes, read cheaply (JPEG sources are
    decoded at a reduced size). Raises :class:`OSError` or :class:`ValueError` if it cannot be read."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        return shown_of(img, long_side)[0]


def png_bytes(img: Image.Image, *, optimize: bool = False) -> bytes:
    """Encode an image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=optimize)
    return buf.getvalue()


def a1111_parameters(prov: Mapping[str, Any]) -> str:
    """An A1111-style ``parameters`` text, which many image viewers show."""
    params = prov.get("params", {})
    parts = [
        f"Model: {params.get('model')}",
        f"Size: {params.get('size')}",
        f"Resolution: {params.get('resolution')}",
    ]
    if params.get("temperature") is not None:
        parts.append(f"Temperature: {params.get('temperature')}")
    if params.get("top_p") is not None:
        parts.append(f"Top P: {params.get('top_p')}")
    if prov.get("task_id"):
        parts.append(f"Task: {prov.get('task_id')}")
    if params.get("references"):
        parts.append(f"References: {len(params['references'])}")
    return f"{params.get('prompt', '')}\n" + ", ".join(parts)


def png_with_provenance(img: Image.Image, provenance: Mapping[str, Any]) -> bytes:
    """PNG bytes carrying ``provenance`` as JSON (``gemimg`` iTXt) and A1111 ``parameters``."""
    data = encode_png(img, provenance)
    assert data is not None  # no cap given
    return data


#: From this ``compress_level`` down, an RGB image is encoded by :func:`_fast_png`.
FAST_PNG_LEVEL = 3


def _fast_png(
    img: Image.Image, provenance: Mapping[str, Any] | None, level: int, max_bytes: int | None
) -> bytes | None:
    """A PNG of an RGB image with every row "Up"-filtered and compressed by :mod:`zlib`, which lets go of the GIL.

    Pillow's encoder chooses a filter per row and holds the GIL the whole time (0.3–0.5 s for a 3,300² grid
    page, during which the engine's threads wait); here the filter is one Pillow subtraction and the rest is
    zlib's, so other threads run meanwhile and a second core can help. Bands of :data:`_BAND_ROWS` rows keep
    the memory it needs small. ``None`` past ``max_bytes``.
    """
    w, h = img.size
    packer = zlib.compressobj(level)
    out = [packer.compress(b"\x00" + img.crop((0, 0, w, 1)).tobytes())]  # the first row has nothing above it
    size, stride = len(out[0]), 3 * w
    for top in range(1, h, _BAND_ROWS):
        bottom = min(h, top + _BAND_ROWS)
        # each row minus the row above it
        raw = ImageChops.subtract_modulo(img.crop((0, top, w, bottom)), img.crop((0, top - 1, w, bottom - 1))).tobytes()
        view = memoryview(raw)
        rows = b"".join([p for y in range(bottom - top) for p in (b"\x02", view[y * stride : (y + 1) * stride])])
        out.append(packer.compress(rows))
        size += len(out[-1])
        if max_bytes is not None and size > max_bytes:
            return None
    out.append(packer.flush())
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))]
    if provenance is not None:
        chunks.append(_itxt_chunk(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True, default=str)))
        chunks.append(_itxt_chunk("parameters", a1111_parameters(provenance)))
    data = b"".join([_PNG_SIGNATURE, *chunks, _chunk(b"IDAT", b"".join(out)), _chunk(b"IEND", b"")])
    return None if max_bytes is not None and len(data) > max_bytes else data


#: Rows per band of :func:`_fast_png` (a 3,300 px wide band of 256 rows is ~2.5 MB).
_BAND_ROWS = 256


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


class _Capped(io.BytesIO):
    """A buffer that refuses to grow past ``cap`` bytes (the encoder stops at the first refused write)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.cap:
            raise _OverCap
        return super().write(data)


class _OverCap(Exception):
    """The encoded image would be larger than the cap."""


def encode_png(
    img: Image.Image,
    provenance: Mapping[str, Any] | None = None,
    *,
    compress_level: int = 6,
    max_bytes: int | None = None,
) -> bytes | None:
    """PNG bytes of ``img`` (with ``provenance`` chunks as :func:`png_with_provenance` writes them).

    ``compress_level`` is zlib's (1 fast … 9 small; Pillow's default is 6). With ``max_bytes`` the
    encoding stops as soon as its output passes that size and ``None`` is returned, so finding out
    that an image is too big costs a part of an encoding, not a whole one.
    """
    if img.mode == "RGB" and compress_level <= FAST_PNG_LEVEL:
        return _fast_png(img, provenance, compress_level, max_bytes)
    kwargs: dict[str, Any] = {"compress_level": compress_level}
    if provenance is not None:
        info = PngImagePlugin.PngInfo()
        info.add_itxt(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True, default=str))
        info.add_itxt("parameters", a1111_parameters(provenance))
        kwargs["pnginfo"] = info
    buf = io.BytesIO() if max_bytes is None else _Capped(max_bytes)
    try:
        img.save(buf, format="PNG", **kwargs)
    except _OverCap:
        return None
    return buf.getvalue()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_OUR_KEYS = {PROVENANCE_KEY.encode(), b"parameters"}


def _itxt_chunk(keyword: str, text: str) -> bytes:
    body = keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    return struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))


def embed_provenance(data: bytes, provenance: Mapping[str, Any]) -> bytes:
    """PNG bytes with ``provenance`` chunks, keeping the image data untouched.

    A PNG gets its text chunks spliced in after ``IHDR`` (no re-encode: fast,
    and the pixels are exactly what the gateway sent); any other format is
    re-encoded to PNG by :func:`png_with_provenance`.
    """
    if not data.startswith(_PNG_SIGNATURE):
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return png_with_provenance(img, provenance)
    return _splice(data, provenance)


def strip_provenance(data: bytes) -> bytes:
    """PNG bytes without our provenance chunks: the image as the gateway sent it.

    An edit uploads its parent this way, so the parent's identity (its hash)
    does not change when a pick re-writes the provenance, and the gateway is
    not sent our notes. Other formats are returned unchanged.
    """
    return _splice(data, None) if data.startswith(_PNG_SIGNATURE) else data


def _splice(data: bytes, provenance: Mapping[str, Any] | None) -> bytes:
    """Drop our text chunks from a PNG; with ``provenance``, put new ones after ``IHDR``."""
    chunks: list[bytes] = []
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise InvalidImageError("the PNG is truncated", hint="make the image again with fresh=True")
        keyword = data[pos + 8 : pos + 8 + min(length, 80)].split(b"\x00", 1)[0]
        if not (kind in (b"tEXt", b"iTXt", b"zTXt") and keyword in _OUR_KEYS):
            chunks.append(data[pos:end])
        if kind == b"IHDR" and provenance is not None:
            chunks.append(_itxt_chunk(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True, default=str)))
            chunks.append(_itxt_chunk("parameters", a1111_parameters(provenance)))
        pos = end
        if kind == b"IEND":
            break
    return _PNG_SIGNATURE + b"".join(chunks)


def sidecar_path(image: str | os.PathLike[str]) -> Path:
    """Where an image file's provenance sidecar lives: ``<image>.json`` beside it."""
    path = Path(image)
    return path.with_name(path.name + ".json")


def read_provenance(source: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    """Read the provenance of an image file (its sidecar, else its PNG chunk) or of PNG bytes (``{}`` if absent).

    An image stored since the bytes are kept unchanged has a ``<image>.json`` sidecar; one
    written by earlier versions carries a ``gemimg`` iTXt chunk instead. A file is opened, not
    read whole: the chunk sits before the pixels, so a cell of cache hits reads a few kilobytes
    per image, not every full-size file.
    """
    if not isinstance(source, bytes):
        side = sidecar_path(source)
        if side.is_file():
            value = json.loads(side.read_text(encoding="utf-8"))
            return value if isinstance(value, dict) else {}
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as img:
        text = img.info.get(PROVENANCE_KEY) or getattr(img, "text", {}).get(PROVENANCE_KEY)
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
