"""Pillow drawing for the faces' image outputs: the history contact sheet, stacked grids (pure).

Part of the core: it takes PIL images and plain values and returns a PIL
image; it knows nothing of notebooks, outputs or the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from gemimg_jupyter.draw.primitives import _load_font, draw_star, mark_suspect

__all__ = ["contact_sheet", "stack"]


def contact_sheet(
    thumbs: Sequence[Image.Image],
    captions: Sequence[str],
    starred: Sequence[bool],
    *,
    thumb: int,
    per_row: int,
    suspect: Sequence[bool] = (),
) -> Image.Image:
    """Thumbnails (long side ``thumb``) in rows of ``per_row``, each over its caption; starred ones carry a star.

    ``suspect`` (one flag per thumbnail, or empty) frames the suspect ones in orange with a ``suspect`` label.
    """
    label_h = 18
    cols = min(per_row, len(thumbs))
    nrows = math.ceil(len(thumbs) / cols)
    pad = 6
    cell_w, cell_h = thumb + pad, thumb + label_h + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, nrows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    font = _load_font(11)
    for i, (img, caption, star) in enumerate(zip(thumbs, captions, starred, strict=True)):
        x = pad + (i % cols) * cell_w
        y = pad + (i // cols) * cell_h
        sheet.paste(img, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2))
        if i < len(suspect) and suspect[i]:
            mark_suspect(
                draw, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2, img.width, img.height), font
            )
        if star:
            draw_star(draw, x + (thumb + img.width) // 2 - 14, y + (thumb - img.height) // 2 + 14, 10)
        draw.text((x, y + thumb + 3), caption, fill="#333333", font=font)
    return sheet


def stack(images: Sequence[Image.Image], gap: int = 12) -> Image.Image:
    """The images one under the other, ``gap`` pixels apart (one image comes back as it is)."""
    if len(images) == 1:
        return images[0]
    width = max(im.width for im in images)
    height = sum(im.height for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    y = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (0, y))
        y += im.height + gap
    return canvas
