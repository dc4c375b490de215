"""Pillow drawing for the faces' image outputs: the history contact sheet, grids stacked or side by side (pure).

Part of the core: it takes PIL images and plain values and returns a PIL
image; it knows nothing of notebooks, outputs or the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from gemimg_jupyter.draw.primitives import _load_font, draw_star, draw_text, mark_suspect, palette_for

__all__ = ["ROW_WIDTH", "contact_sheet", "side_by_side", "stack"]

#: Grids placed side by side wrap to a new row past this width (two 2×2 grids of 320 px cells fit).
ROW_WIDTH = 2000


def contact_sheet(
    thumbs: Sequence[Image.Image],
    captions: Sequence[str],
    starred: Sequence[bool],
    *,
    thumb: int,
    per_row: int,
    suspect: Sequence[bool] = (),
    theme: str = "light",
) -> Image.Image:
    """Thumbnails (long side ``thumb``) in rows of ``per_row``, each over its caption; starred ones carry a star.

    ``suspect`` (one flag per thumbnail, or empty) frames the suspect ones in orange with a ``suspect`` label.
    ``theme`` (``light`` or ``dark``) colours the ground and the captions, as in a grid; captions are
    shaped like a grid's text (right-to-left in order, emoji as a mark).
    """
    pal = palette_for(theme)
    label_h = 18
    cols = min(per_row, len(thumbs))
    nrows = math.ceil(len(thumbs) / cols)
    pad = 6
    cell_w, cell_h = thumb + pad, thumb + label_h + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, nrows * cell_h + pad), pal.bg)
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
        draw_text(draw, (x, y + thumb + 3), caption, font, pal.ink)
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


def side_by_side(images: Sequence[Image.Image], *, max_width: int = ROW_WIDTH, gap: int = 16) -> Image.Image:
    """The images left to right, top-aligned, ``gap`` apart; a row that would pass ``max_width`` wraps.

    For the Z grids of a sweep: their values read side by side, each grid with its own header and
    footer. The ground between them is the first image's corner colour (a dark grid stays dark).
    One image comes back as it is.
    """
    if len(images) == 1:
        return images[0]
    rows: list[list[Image.Image]] = [[]]
    for im in images:
        row = rows[-1]
        if row and sum(i.width for i in row) + gap * len(row) + im.width > max_width:
            rows.append([im])
        else:
            row.append(im)
    width = max(sum(i.width for i in row) + gap * (len(row) - 1) for row in rows)
    height = sum(max(i.height for i in row) for row in rows) + gap * (len(rows) - 1)
    first = images[0].convert("RGB")
    canvas = Image.new("RGB", (width, height), first.getpixel((0, 0)))
    y = 0
    for row in rows:
        x = 0
        for im in row:
            canvas.paste(im.convert("RGB"), (x, y))
            x += im.width + gap
        y += max(i.height for i in row) + gap
    return canvas
