"""Thumbnail files beside the images: made once per image when it lands, read by every picture after.

A grid, the panel, the history strip, lineage and reports all need small copies of the images.
Decoding a full-size 1024² (or 4K) image for each of them, again and again, and all at once when
a sweep ends, was most of the public path's cost (issue #25). So the engine calls
:func:`write_thumb` in its bounded download pool right after it writes an image; the thumbnail
is a JPEG of the inner size of a default grid cell (:data:`FILE_SIDE`, 310 px, so a grid pastes it
without a resize) in a ``.thumbs`` folder beside the image (``foo.png`` →
``.thumbs/foo.jpg``; the dot keeps it out of the folder's image listings). :func:`load_thumb`
reads it when it is large enough and falls back to a reduced decode of the image itself
(:func:`~gemimg_jupyter.draw.images.load_thumbnail`: JPEG ``draft()``) for images from before,
or for sizes above :data:`THUMB_SIDE`.

Core module: no IPython, ipywidgets or traitlets.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

from PIL import Image

from gemimg_jupyter.draw.grid import tile_side
from gemimg_jupyter.draw.images import load_thumbnail
from gemimg_jupyter.ledger.files import write_atomic

__all__ = ["FILE_SIDE", "THUMB_DIR", "THUMB_SIDE", "load_thumb", "thumb_path", "write_thumb"]

log = logging.getLogger(__name__)

#: The largest long side a thumbnail file serves (a grid cell's default size); asked for more, the image is decoded.
THUMB_SIDE = 320
#: Long side of a thumbnail file: the inner side of a default (320 px) grid cell's box, so pasting a tile
#: is a paste, not a resize. Asked for up to :data:`THUMB_SIDE`, the file is given as it is (≤ 3 % smaller).
FILE_SIDE = tile_side(THUMB_SIDE)
#: The folder beside the images that holds their thumbnails.
THUMB_DIR = ".thumbs"
_QUALITY = 85


def thumb_path(image: str | os.PathLike[str]) -> Path:
    """Where the thumbnail of ``image`` lives: ``<folder>/.thumbs/<stem>.jpg``."""
    path = Path(image)
    return path.parent / THUMB_DIR / f"{path.stem}.jpg"


def write_thumb(
    image: str | os.PathLike[str], data: bytes | None = None, *, small: Image.Image | None = None
) -> Path | None:
    """Make the thumbnail file of ``image``, :data:`FILE_SIDE` px (from ``small``, a copy already decoded
    of at most :data:`THUMB_SIDE` px, or its encoded bytes ``data`` when given, saving a read).

    Returns its path, or ``None`` when the image cannot be read (logged; a grid then decodes the
    image itself). Runs in the engine's download pool, never on the kernel's main thread.
    """
    target = thumb_path(image)
    try:
        if small is None:
            small = load_thumbnail(data if data is not None else Path(image), FILE_SIDE)
        elif max(small.size) > FILE_SIDE:
            small = small.copy()
            small.thumbnail((FILE_SIDE, FILE_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=_QUALITY)
        try:
            return write_atomic(target, buf.getvalue(), sync=False)  # made again from the image if ever lost
        except FileNotFoundError:  # the first thumbnail of the folder
            target.parent.mkdir(parents=True, exist_ok=True)
            return write_atomic(target, buf.getvalue(), sync=False)
    except (OSError, ValueError, Image.DecompressionBombError):
        log.debug("no thumbnail for %s", image, exc_info=True)
        return None


def load_thumb(image: str | os.PathLike[str], long_side: int = THUMB_SIDE) -> Image.Image:
    """A small RGB copy of ``image``: from its thumbnail file when that is big enough, else decoded from the image.

    Raises :class:`OSError` or :class:`ValueError` if neither can be read.
    """
    if long_side <= THUMB_SIDE:
        target = thumb_path(image)
        try:
            with Image.open(target) as img:
                img.draft("RGB", (long_side, long_side))
                img.load()
                small: Image.Image = img.convert("RGB") if img.mode != "RGB" else img.copy()
            if max(small.size) > long_side:
                small.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
            return small
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            log.debug("unreadable thumbnail %s; decoding the image", target, exc_info=True)
    return load_thumbnail(Path(image), long_side)
