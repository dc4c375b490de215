"""What a stored image file is: its format, extension, identity, credentials and whether it looks unusable.

The bytes are the gateway's, kept unchanged; these helpers only read them.
:func:`file_facts` is what the sidecar and the ledger record about a file;
:func:`viewable` turns any mode (CMYK, palette, 16-bit, alpha) and any EXIF
orientation into the RGB picture a person would see.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from PIL import Image, ImageOps, ImageStat

from gemimg_jupyter.draw.credentials import content_credentials

__all__ = [
    "EXTENSIONS",
    "MEDIA_TYPES",
    "SUSPECT_MARK",
    "file_facts",
    "oriented_size",
    "sniff_format",
    "suspect_reason",
    "viewable",
]

#: The mark every face shows beside a suspect image (status line, grid tile, report, history).
SUSPECT_MARK = "⚠"
#: File extension per format name (as :func:`sniff_format` names them).
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
#: EXIF orientations that swap width and height (rotated by 90° or 270°).
_SWAPPED = frozenset({5, 6, 7, 8})
_ORIENTATION = 0x0112


def sniff_format(data: bytes) -> str | None:
    """``png``, ``jpeg``, ``webp`` or ``gif`` from the first bytes, or ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8; 1 when absent or unreadable)."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no orientation
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """The size as shown: width and height swapped when EXIF rotates by a quarter turn."""
    w, h = img.size
    return (h, w) if orientation(img) in _SWAPPED else (w, h)


def viewable(img: Image.Image) -> Image.Image:
    """An RGB copy as a person sees it: EXIF orientation applied, 16-bit scaled, alpha over white."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode.startswith("I"):  # 16-bit greyscale (I;16) or 32-bit integer: scale to 8 bits
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        back = Image.new("RGB", img.size, (255, 255, 255))
        back.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return back
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


#: A small copy of an image as shown (RGB) and the full image's size as shown, when already decoded.
Shown = tuple[Image.Image, tuple[int, int]]


def shown_small(data: bytes, long_side: int) -> Shown:
    """Decode ``data`` once, small (JPEGs at a reduced size): the copy as shown and the full size as shown.

    Raises what Pillow raises for bytes it cannot read.
    """
    with Image.open(io.BytesIO(data)) as img:
        return shown_of(img, long_side)


def shown_of(img: Image.Image, long_side: int) -> Shown:
    """Decode ``img`` (opened, not yet loaded) small: the copy as shown and the full size as shown.

    A JPEG is decoded at the smallest of its reduced sizes that is still at least ``long_side``
    (a whole decode either way: a damaged stream still raises). What is left is a reduction
    under 2×, where a bilinear filter looks the same as Lanczos at a third of its cost; larger
    reductions (a PNG, decoded whole) keep Lanczos after a box reduction by a whole factor.
    """
    size = oriented_size(img)
    img.draft("RGB", (long_side, long_side))
    img.load()
    return shrink(viewable(img), long_side), size


def shrink(img: Image.Image, long_side: int) -> Image.Image:
    """``img`` made at most ``long_side`` on its long side, in place (and returned): bilinear for what is left
    under 2× (after a JPEG's reduced decode), else a box reduction by a whole factor, then Lanczos."""
    near = max(img.size) < 2 * long_side
    img.thumbnail(
        (long_side, long_side),
        Image.Resampling.BILINEAR if near else Image.Resampling.LANCZOS,
        reducing_gap=1.0,
    )
    return img


def suspect_reason(data: bytes, expected: tuple[int, int] | None = None, *, shown: Shown | None = None) -> str | None:
    """Why a paid image looks unusable (all black, one flat colour, far smaller than asked), or ``None``.

    Cheap: JPEGs are decoded at a reduced size and the check looks at a box-averaged copy of about 64 pixels. ``shown``: a
    small copy already decoded (:func:`shown_small`), so the bytes are not decoded again.
    """
    try:
        small, size = shown if shown is not None else shown_small(data, 128)
    except Exception:  # noqa: BLE001 - bytes that do not decode are refused earlier, not flagged here
        return None
    if expected is not None and size[0] * size[1] * 4 < expected[0] * expected[1]:  # under a quarter of the pixels
        return f"far smaller than asked: {size[0]}×{size[1]} pixels for {expected[0]}×{expected[1]}"
    factor = max(small.size) // 64
    stat = ImageStat.Stat(small.reduce(factor) if factor > 1 else small)  # a box average, about 64 px: a new image
    if max(hi for _, hi in stat.extrema) <= 8:
        return "all black"
    if max(stat.stddev) < 2.0:
        r, g, b = (round(v) for v in stat.mean)
        return f"one flat colour (#{r:02x}{g:02x}{b:02x})"
    return None


def file_facts(data: bytes, expected: tuple[int, int] | None = None, *, shown: Shown | None = None) -> dict[str, Any]:
    """What the sidecar and the ledger keep about a file: sha256, format, bytes, credentials, suspect.

    ``shown``: a small copy already decoded (:func:`shown_small`), for the suspect check.
    """
    fmt = sniff_format(data)
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": fmt,
        "media_type": MEDIA_TYPES.get(fmt or ""),
        "bytes": len(data),
        "content_credentials": content_credentials(data),
        "suspect": suspect_reason(data, expected, shown=shown),
    }
