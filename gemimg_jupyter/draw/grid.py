"""Labelled comparison grids for sweeps (pure Pillow).

A grid is one RGB image::

    ┌──────────────────────────────────────────────┐
    │ title (Z grids: "size = 16:9 (grid 2 of 3)")  │
    │ header: the parameters common to every cell   │
    │           temperature →                      │
    │ size ↓    0.2        0.8        1.4          │
    │ 1:1      [cell]     [cell]     [cell]        │
    │ 16:9     [cell]     [cell]     [cell]        │
    │ footer (progress, cost, path)                │
    └──────────────────────────────────────────────┘

Every cell of a square image is a ``cell_size`` × ``cell_size`` box, so a grid
of ``nx`` × ``ny`` such cells is exactly ``layout.grid_left + nx·cell_size +
margin`` wide (see :func:`layout_grid`). A cell of another aspect ratio (the
sweep's ``size``, known before any image lands) gets a box of about the same
area in its own ratio; each column is as wide as its widest box and each row as
tall as its tallest, so a 16:9 column is wide and a 9:16 column narrow. Images
are fitted into their box without distortion (letterboxed and centred on a
quiet ground, which makes any mismatch visible). The repeats of a cell share its box as a mini-row; when a 2×2 block
or a column shows the images larger (four square images, two wide ones) that
arrangement is used instead, the same for every cell of the grid.

Failed cells are drawn as a red-tinted box holding the error text; cells that
are still on their way show their state on a neutral box; cached images get
a small "cached" badge. Only the swept parameters appear on the axes; the
common ones belong in the header, which :func:`grid_for_plan` builds.

Text uses DejaVu Sans when it is installed (it covers accents, arrows, ``×``,
Hebrew and Arabic) and Pillow's bundled default font otherwise; right-to-left
text is shaped and ordered, and characters a font cannot draw (emoji) are
replaced by a visible mark (see :mod:`.primitives`). ``theme="dark"`` draws the
chrome (ground, text, rules, placeholders) dark; the images are never changed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from gemimg_jupyter.domain.models import shown_text
from gemimg_jupyter.draw.images import encode_png
from gemimg_jupyter.draw.primitives import (
    FAILED_STATES,
    PENDING_STATES,
    GridLayout,
    Tile,
    _draw_cells,
    _draw_tile,
    _Fonts,
    _strip_arrow,
    draw_arrow,
    draw_star,
    draw_text,
    fonts_for,
    palette_for,
    text_width,
    wrap_text,
)
from gemimg_jupyter.draw.primitives import _arrangement as _arrangement
from gemimg_jupyter.draw.primitives import _drawable as _drawable

if TYPE_CHECKING:  # pragma: no cover
    from gemimg_jupyter.plans.plan import SweepCell, SweepPlan

__all__ = [
    "FAILED_STATES",
    "MAX_GRID_PNG_BYTES",
    "MAX_TILES_PER_PAGE",
    "PENDING_STATES",
    "WRAP_COLUMNS",
    "GridLayout",
    "GridPage",
    "PageCanvas",
    "Tile",
    "cell_aspects",
    "draw_star",
    "encode_grid_png",
    "grid_for_plan",
    "grid_page",
    "layout_grid",
    "page_index",
    "page_slot",
    "plan_header",
    "plan_pages",
    "render_grid",
    "tile_side",
]

#: The labels, header and title of a sweep's pages are wrapped again for every page and every layout: once is
#: enough (measuring text was a fifth of a page's drawing). Fonts are the cached ones of :func:`fonts_for`.
_wrap = functools.lru_cache(maxsize=4096)(wrap_text)

#: The size a grid PNG for a notebook should stay under (see :func:`encode_grid_png`).
MAX_GRID_PNG_BYTES = 2_000_000

# ---------------------------------------------------------------- layout


def layout_grid(
    *,
    x_title: str | None,
    x_labels: Sequence[str],
    y_title: str | None,
    y_labels: Sequence[str],
    header: str = "",
    footer: str = "",
    cell_size: int = 320,
    title: str = "",
    aspects: Mapping[tuple[int, int], float] | None = None,
    theme: str = "light",
    repeats: int = 1,
) -> GridLayout:
    """Compute the geometry :func:`render_grid` uses (same arguments, minus the tiles).

    Returns
    -------
    GridLayout
        ``width == grid_left + sum(col_widths) + margin`` and
        ``height == grid_top + sum(row_heights) + footer_height + margin`` (every width and
        height ``cell`` when every cell is square).
    """
    if cell_size < 48:
        raise ValueError(f"cell_size {cell_size} is too small; use 48 px or more")
    nx, ny = max(1, len(x_labels)), max(1, len(y_labels))
    f = fonts_for(cell_size)
    c = cell_size
    margin = max(8, round(c * 0.04))
    pad = f.pad
    widths, heights, shapes = _tracks(c, nx, ny, aspects or {}, repeats)

    x_name = _strip_arrow(x_title)
    y_name = _strip_arrow(y_title)
    has_y = bool(y_name) or len(y_labels) > 1
    legend_w = _legend_width(f, c, y_name, y_labels) if has_y else 0

    content_w = legend_w + (sum(widths) if widths else nx * c)
    width = margin + content_w + margin
    title_lines, title_top, header_lines, header_top, band_top = _top_lines(f, title, header, content_w, margin)
    x_label_lines, y_title_lines, x_title_h, band_h = _band(f, c, x_name, x_labels, y_name, legend_w, widths)
    x_labels_top = band_top + x_title_h
    grid_top = band_top + band_h + (pad if band_h else 0)

    y_label_lines = tuple(
        _y_label(f, str(label), legend_w, heights[y] if heights else c) for y, label in enumerate(y_labels)
    )
    y_label_lines = y_label_lines if has_y else tuple(() for _ in y_labels)

    footer_lines = _wrap(f.small, footer, content_w, 2)
    footer_h = (pad + len(footer_lines) * f.small_line) if footer_lines else 0
    height = grid_top + (sum(heights) if heights else ny * c) + footer_h + margin
    return GridLayout(
        width=width,
        height=height,
        margin=margin,
        grid_left=margin + legend_w,
        grid_top=grid_top,
        cell=c,
        nx=nx,
        ny=ny,
        legend_width=legend_w,
        footer_height=footer_h,
        title_lines=title_lines,
        header_lines=header_lines,
        footer_lines=footer_lines,
        x_label_lines=x_label_lines,
        y_label_lines=y_label_lines,
        y_title_lines=y_title_lines,
        x_title=x_name,
        title_top=title_top,
        header_top=header_top,
        band_top=band_top,
        x_labels_top=x_labels_top,
        fonts=f,
        col_widths=widths,
        row_heights=heights,
        palette=palette_for(theme),
        aspects=shapes,
    )


#: Cells are sized for aspect ratios between 1:4 and 4:1 (beyond, the image is letterboxed).
_MAX_ASPECT = 4.0


def _tracks(
    c: int, nx: int, ny: int, aspects: Mapping[tuple[int, int], float], repeats: int = 1
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[float, ...], ...]]:
    """Column widths, row heights and the aspect ratio each cell's images have (all empty: every cell square).

    A cell whose images have ratio ``a`` wants a box of about ``c²`` pixels in the shape of its
    repeats packed as squarely as they go (one image: ``c·√a`` × ``c/√a``; two squares side by
    side: ``c·√2`` × ``c/√2``); a column is as wide as its widest cell, a row as tall as its tallest.
    """
    shapes = tuple(
        tuple(min(_MAX_ASPECT, max(1 / _MAX_ASPECT, aspects.get((x, y)) or 1.0)) for x in range(nx)) for y in range(ny)
    )
    boxes = [[_packed_aspect(a, repeats) for a in row] for row in shapes]
    if not aspects or all(abs(b - 1.0) < 1e-6 for row in boxes for b in row):
        return (), (), ()
    widths = tuple(max(round(c * math.sqrt(boxes[y][x])) for y in range(ny)) for x in range(nx))
    heights = tuple(max(round(c / math.sqrt(boxes[y][x])) for x in range(nx)) for y in range(ny))
    return widths, heights, shapes


def _packed_aspect(aspect: float, repeats: int) -> float:
    """The ratio of ``repeats`` images of ratio ``aspect`` packed in the squarest grid (ties: more columns)."""
    best, best_off = aspect, math.inf
    for cols in range(max(1, repeats), 0, -1):
        rows = math.ceil(repeats / cols)
        if (cols - 1) * rows >= repeats:  # a column would stay empty
            continue
        packed = cols * aspect / rows
        off = abs(math.log(packed))
        if off < best_off - 1e-9:
            best, best_off = packed, off
    return min(_MAX_ASPECT, max(1 / _MAX_ASPECT, best))


def _y_label(f: _Fonts, label: str, legend_w: int, row_height: int) -> tuple[str, ...]:
    """A Y label wrapped to the legend's width, in as many lines as a row ``row_height`` tall holds."""
    lines = max(1, min(8, (row_height - 2 * f.pad) // f.line))
    return _wrap(f.label, label, max(legend_w - 3 * f.pad, 10), lines)


def _legend_width(f: _Fonts, c: int, y_name: str, y_labels: Sequence[str]) -> int:
    """Width of the Y legend column: its widest label (or its title and arrow), 30 to 75 % of a cell."""
    pad = f.pad
    natural = max([text_width(f.label, str(label)) for label in y_labels] + [0.0])
    if y_name:
        natural = max(natural, text_width(f.bold, y_name) + f.size * 1.3)
    return round(min(max(natural + 3 * pad, c * 0.3), c * 0.75))


def _top_lines(
    f: _Fonts, title: str, header: str, content_w: int, margin: int
) -> tuple[tuple[str, ...], int, tuple[str, ...], int, int]:
    """The wrapped title and header, where each starts, and where the legend band below them starts."""
    pad = f.pad
    y = margin
    title_lines = _wrap(f.title, title, content_w, 2)
    title_top = y
    if title_lines:
        y += len(title_lines) * f.title_line + pad
    header_lines = _wrap(f.label, header, content_w, 3)
    header_top = y
    if header_lines:
        y += len(header_lines) * f.line + 2 * pad
    return title_lines, title_top, header_lines, header_top, y


def _band(
    f: _Fonts, c: int, x_name: str, x_labels: Sequence[str], y_name: str, legend_w: int, widths: Sequence[int] = ()
) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...], int, int]:
    """The band above the cells: the wrapped X labels and Y title, the X title's height, the band's height."""
    pad = f.pad
    has_x_labels = any(str(label) for label in x_labels)
    x_title_h = f.line if x_name else 0
    x_label_lines = tuple(
        _wrap(f.label, str(label), (widths[x] if widths else c) - 2 * pad, 3) for x, label in enumerate(x_labels)
    )
    x_labels_h = max((len(lines) for lines in x_label_lines), default=0) * f.line if has_x_labels else 0
    y_title_lines = _wrap(f.bold, y_name, max(legend_w - 2 * pad - f.size * 1.3, 10), 2) if y_name else ()
    y_title_h = len(y_title_lines) * f.line
    band_h = max(x_title_h + x_labels_h, y_title_h)
    return x_label_lines, y_title_lines, x_title_h, band_h


# ---------------------------------------------------------------- rendering


def render_grid(
    *,
    x_title: str | None,
    x_labels: Sequence[str],
    y_title: str | None,
    y_labels: Sequence[str],
    tiles: Mapping[tuple[int, int], Sequence[Tile]],
    header: str = "",
    footer: str = "",
    cell_size: int = 320,
    title: str = "",
    aspects: Mapping[tuple[int, int], float] | None = None,
    theme: str = "light",
    repeats: int | None = None,
) -> Image.Image:
    """Draw a labelled comparison grid.

    Parameters
    ----------
    x_title, y_title : str or None
        Axis titles, each shown once with an arrow (``temperature →``,
        ``size ↓``). ``y_title=None`` with a single Y label draws no Y legend.
    x_labels, y_labels : sequence of str
        One label per column / row.
    tiles : mapping
        ``(x, y)`` to the list of that cell's repeats; missing cells and
        repeats are drawn as empty slots.
    header, footer : str
        A line above the grid (the common parameters) and one below
        (progress, cost, path); wrapped and ellipsized to fit.
    cell_size : int
        Side of a square cell's box in pixels (other shapes get about the same area).
    title : str
        Bold line on top (used for the Z value of Z grids).
    aspects : mapping, optional
        ``(x, y)`` to the aspect ratio (width / height) the cell's images have or will have:
        its box takes that shape (see :func:`layout_grid`). Without it every box is square.
    theme : str
        ``light`` (a white ground) or ``dark``: the colours of the chrome, never of the images.
    repeats : int, optional
        Images per cell, for the boxes' shape (default: the longest list in ``tiles``).

    Returns
    -------
    PIL.Image.Image
        An RGB image; see :func:`layout_grid` for its geometry.

    Raises
    ------
    ValueError
        For a ``cell_size`` under 48 px.
    """
    lay = layout_grid(
        x_title=x_title,
        x_labels=x_labels,
        y_title=y_title,
        y_labels=y_labels,
        header=header,
        footer=footer,
        cell_size=cell_size,
        title=title,
        aspects=aspects,
        theme=theme,
        repeats=repeats or max((len(seq) for seq in tiles.values()), default=1),
    )
    img = Image.new("RGB", (lay.width, lay.height), lay.palette.bg)
    draw = ImageDraw.Draw(img)
    _draw_title_and_header(draw, lay)
    _draw_x_legend(draw, lay)
    _draw_y_legend(draw, lay)
    _draw_cells(img, draw, lay, tiles)
    _draw_rules_and_footer(draw, lay)
    return img


def _draw_title_and_header(draw: ImageDraw.ImageDraw, lay: GridLayout) -> None:
    """The bold title lines, the header lines and the rule under them."""
    f, pal = lay.fonts, lay.palette
    pad = f.pad
    content_left = lay.margin
    content_right = lay.width - lay.margin
    for i, line in enumerate(lay.title_lines):
        draw_text(draw, (content_left, lay.title_top + i * f.title_line), line, f.title, pal.ink)
    for i, line in enumerate(lay.header_lines):
        draw_text(draw, (content_left, lay.header_top + i * f.line), line, f.label, pal.muted)
    if lay.header_lines:
        rule_y = lay.header_top + len(lay.header_lines) * f.line + pad - 1
        draw.line([(content_left, rule_y), (content_right - 1, rule_y)], fill=pal.rule, width=1)


def _draw_x_legend(draw: ImageDraw.ImageDraw, lay: GridLayout) -> None:
    """The X legend: the title once, then one label per column."""
    f, ink = lay.fonts, lay.palette.ink
    pad = f.pad
    if lay.x_title:
        tx = lay.grid_left + pad
        draw_text(draw, (tx, lay.band_top), lay.x_title, f.bold, ink)
        arrow = round(f.size * 0.9)
        draw_arrow(
            draw, tx + text_width(f.bold, lay.x_title) + f.size * 0.35, lay.band_top + f.size * 0.2, arrow, "right", ink
        )
    for x, lines in enumerate(lay.x_label_lines):
        left, _, right, _ = lay.cell_box(x, 0)
        for i, line in enumerate(lines):
            lx = left + (right - left - text_width(f.label, line)) / 2
            draw_text(draw, (lx, lay.x_labels_top + i * f.line), line, f.label, ink)


def _draw_y_legend(draw: ImageDraw.ImageDraw, lay: GridLayout) -> None:
    """The Y legend: the title once (above the first row), then one label per row."""
    f, ink = lay.fonts, lay.palette.ink
    pad = f.pad
    content_left = lay.margin
    if lay.legend_width:
        n = len(lay.y_title_lines)
        top = lay.grid_top - pad - n * f.line
        for i, line in enumerate(lay.y_title_lines):
            draw_text(draw, (content_left, top + i * f.line), line, f.bold, ink)
        if n:
            last = lay.y_title_lines[-1]
            draw_arrow(
                draw,
                content_left + text_width(f.bold, last) + f.size * 0.35,
                top + (n - 1) * f.line + f.size * 0.1,
                round(f.size * 0.9),
                "down",
                ink,
            )
        for y, lines in enumerate(lay.y_label_lines):
            block = len(lines) * f.line
            _, top, _, bottom = lay.cell_box(0, y)
            ly = top + (bottom - top - block) / 2
            for i, line in enumerate(lines):
                draw_text(draw, (content_left, ly + i * f.line), line, f.label, ink)


def _draw_rules_and_footer(draw: ImageDraw.ImageDraw, lay: GridLayout) -> None:
    """Light rules between cells and around the grid, then the footer lines."""
    f, pal = lay.fonts, lay.palette
    pad = f.pad
    content_left = lay.margin
    grid_right, grid_bottom = lay.grid_right, lay.grid_bottom
    for x in range(1, lay.nx):
        gx = lay.cell_box(x, 0)[0]
        draw.line([(gx, lay.grid_top), (gx, grid_bottom - 1)], fill=pal.rule, width=1)
    for y in range(1, lay.ny):
        gy = lay.cell_box(0, y)[1]
        draw.line([(lay.grid_left, gy), (grid_right - 1, gy)], fill=pal.rule, width=1)
    draw.rectangle([lay.grid_left, lay.grid_top, grid_right - 1, grid_bottom - 1], outline=pal.rule, width=1)

    for i, line in enumerate(lay.footer_lines):
        draw_text(draw, (content_left, grid_bottom + pad + i * f.small_line), line, f.small, pal.muted)


# ---------------------------------------------------------------- sweeps


def plan_header(plan: SweepPlan, *, max_prompt: int = 300, z: int | None = None) -> str:
    """The header line for a sweep's grid: what every cell shares.

    ``gemini-2.5-flash-image-official · 1K · top_p 0.95 · "A paper-cut fox in a forest"``.
    With a prompt S/R axis the prompt is shown with the search term in
    brackets (``"A paper-cut [fox] in a forest"``); when that axis is the Z
    axis, the grid of Z value ``z`` shows its own value there (``"A paper-cut [owl] …"``).
    """
    common = plan.common
    parts: list[str] = []
    for name in ("model", "resolution", "size"):
        if name in common:
            parts.append(str(common[name]))
    for name in ("temperature", "top_p"):
        if name in common:
            parts.append(f"{name} {common[name]:g}")
    if "references" in common:
        refs = common["references"]
        parts.append(f"ref {'+'.join(refs)}")
    prompt = common.get("prompt")
    if prompt is None and "prompt" in plan.varying:
        prompt = _marked_prompt(plan, z)
    if prompt is not None:
        text = shown_text(" ".join(str(prompt).split()))
        if len(text) > max_prompt:
            text = text[: max_prompt - 1].rstrip() + "…"
        parts.append(f'"{text}"')
    return " · ".join(parts)


def _marked_prompt(plan: SweepPlan, z: int | None) -> str:
    """The S/R prompt with the swept word in brackets: the search term, or Z value ``z``'s word on a Z axis."""
    for at, axis in enumerate(plan.axes):
        for member in axis.members:
            if member.name == "prompt":
                search = str(member.values[0])
                shown = str(member.values[z]) if at == 2 and z is not None else search
                return plan.base.prompt.replace(search, f"[{shown}]")
    return plan.base.prompt


def _size_aspect(size: object) -> float | None:
    """``16:9`` → 16/9; ``None`` for a size that names no ratio."""
    w, sep, h = str(size or "").partition(":")
    try:
        ratio = float(w) / float(h) if sep else None
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio and math.isfinite(ratio) and ratio > 0 else None


def cell_aspects(plan: SweepPlan, z: int = 0) -> dict[tuple[int, int], float]:
    """``(x, y)`` to the aspect ratio of Z grid ``z``'s cell there, from the size each cell asks for.

    Known before any image lands, so the grid keeps its geometry while it fills in.
    """
    out: dict[tuple[int, int], float] = {}
    for cell in plan.cells_at(z):
        ratio = _size_aspect(cell.params.size)
        if ratio is not None:
            out[(cell.x, cell.y)] = ratio
    return out


def grid_for_plan(
    plan: SweepPlan,
    tiles_by_cell: Mapping[int, Tile],
    *,
    z: int = 0,
    cell_size: int = 320,
    footer: str = "",
    theme: str = "light",
) -> Image.Image:
    """The grid of one Z slice of a sweep, labelled from its plan.

    Parameters
    ----------
    plan : SweepPlan
        The sweep; its X and Y axes give the legends, its common parameters
        the header, its Z axis the title.
    tiles_by_cell : mapping
        :attr:`~.sweep.SweepCell.index` to :class:`Tile`; cells not in it are
        drawn as ``queued``.
    z : int
        Which Z grid (0 when there is no Z axis).
    cell_size : int
        Side of each cell box.
    footer : str
        Text under the grid (progress, cost, saved path): this Z grid's own counts.
    theme : str
        ``light`` or ``dark`` (the chrome's colours).

    Returns
    -------
    PIL.Image.Image
    """
    nx, ny, nz = plan.shape
    if not 0 <= z < nz:
        raise IndexError(f"z={z} is out of range; this sweep has {nz} grid{'s' if nz != 1 else ''} (0 to {nz - 1})")
    x_axis, y_axis, z_axis = plan.x_axis, plan.y_axis, plan.z_axis
    tiles: dict[tuple[int, int], list[Tile]] = {}
    for cell in plan.cells_at(z):
        slot = tiles.setdefault((cell.x, cell.y), [Tile("queued") for _ in range(plan.repeats)])
        slot[cell.repeat] = tiles_by_cell.get(cell.index) or Tile("queued")
    title = ""
    if z_axis is not None:
        title = f"{z_axis.title} = {z_axis.shown_labels[z]} (grid {z + 1} of {nz})"
    return render_grid(
        x_title=x_axis.title if x_axis is not None else None,
        x_labels=list(x_axis.shown_labels) if x_axis is not None else [""] * nx,
        y_title=y_axis.title if y_axis is not None else None,
        y_labels=list(y_axis.shown_labels) if y_axis is not None else [""] * ny,
        tiles=tiles,
        header=plan_header(plan, z=z),
        footer=footer,
        cell_size=cell_size,
        title=title,
        aspects=cell_aspects(plan, z),
        theme=theme,
        repeats=plan.repeats,
    )


# ---------------------------------------------------------------- pages

#: At most this many images on one grid page: more would not be readable (nor cheap to draw).
MAX_TILES_PER_PAGE = 100
#: A single axis longer than this wraps into rows of at most this many columns.
WRAP_COLUMNS = 10


@dataclass(frozen=True)
class GridPage:
    """One readable page of a sweep's grids: a Z value and a block of X and Y indexes.

    ``wrap`` is the column count when a single long axis wraps into rows (each tile then carries
    its value as a caption); ``0`` for a plain block. ``number``/``of`` count pages over the sweep.
    """

    z: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    wrap: int = 0
    number: int = 1
    of: int = 1


def plan_pages(plan: SweepPlan, max_tiles: int = MAX_TILES_PER_PAGE) -> list[GridPage]:
    """The pages of a sweep's grids: every Z grid cut into blocks of at most ``max_tiles`` images.

    A grid that fits is one page (as before). A single axis longer than :data:`WRAP_COLUMNS`
    wraps into rows; a larger X × Y grid is cut into blocks of whole rows and columns.
    """
    nx, ny, nz = plan.shape
    per_page = max(1, max_tiles // plan.repeats)  # cells per page; a cell's repeats share its box
    blocks: list[tuple[int, tuple[int, ...], tuple[int, ...], int]] = []
    for z in range(nz):
        if ny == 1 and nx > WRAP_COLUMNS:
            for start in range(0, nx, per_page):
                xs = tuple(range(start, min(nx, start + per_page)))
                blocks.append((z, xs, (0,), min(WRAP_COLUMNS, len(xs))))
            continue
        px = min(nx, max(1, min(per_page, WRAP_COLUMNS if nx * ny > per_page else nx)))
        py = min(ny, max(1, per_page // px))
        for y0 in range(0, ny, py):
            for x0 in range(0, nx, px):
                blocks.append((z, tuple(range(x0, min(nx, x0 + px))), tuple(range(y0, min(ny, y0 + py))), 0))
    return [GridPage(z, xs, ys, wrap, i + 1, len(blocks)) for i, (z, xs, ys, wrap) in enumerate(blocks)]


def page_index(plan: SweepPlan, pages: Sequence[GridPage]) -> str:
    """One line naming what each page holds: ``3 pages: 1 temperature 0.01…0.4 · 2 …`` (empty for one page)."""
    if len(pages) <= 1:
        return ""
    parts = []
    for page in pages:
        spans = []
        for axis, idx in ((plan.x_axis, page.xs), (plan.y_axis, page.ys)):
            if axis is not None and len(idx) < len(axis.values):
                first, last = axis.shown_labels[idx[0]], axis.shown_labels[idx[-1]]
                spans.append(f"{axis.title} {first}" + (f"…{last}" if last != first else ""))
        if plan.z_axis is not None:
            spans.append(f"{plan.z_axis.title} {plan.z_axis.shown_labels[page.z]}")
        parts.append(f"{page.number} " + (", ".join(spans) or "all"))
    return f"{len(pages)} pages: " + " · ".join(parts)


def page_slot(plan: SweepPlan, page: GridPage, cell: SweepCell, tile: Tile) -> tuple[tuple[int, int], Tile]:
    """Where ``cell`` sits on ``page`` (column, row) and its tile as drawn there (a wrapped axis adds a caption)."""
    x_axis = plan.x_axis
    if page.wrap:
        at = page.xs.index(cell.x)
        caption = x_axis.shown_labels[cell.x] if x_axis is not None else None
        return (at % page.wrap, at // page.wrap), dataclasses.replace(tile, caption=caption)
    return (page.xs.index(cell.x), page.ys.index(cell.y)), tile


def _page_render_args(
    plan: SweepPlan, tiles_by_cell: Mapping[int, Tile], page: GridPage, cell_size: int, footer: str, theme: str
) -> dict[str, Any]:
    """The arguments of :func:`render_grid` for one page."""
    x_axis, y_axis, z_axis = plan.x_axis, plan.y_axis, plan.z_axis
    wanted = set(page.xs), set(page.ys)
    tiles: dict[tuple[int, int], list[Tile]] = {}
    aspects: dict[tuple[int, int], float] = {}
    for cell in plan.cells_at(page.z):
        if cell.x not in wanted[0] or cell.y not in wanted[1]:
            continue
        pos, tile = page_slot(plan, page, cell, tiles_by_cell.get(cell.index) or Tile("queued"))
        slot = tiles.setdefault(pos, [Tile("queued") for _ in range(plan.repeats)])
        slot[cell.repeat] = tile
        ratio = _size_aspect(cell.params.size)
        if ratio is not None:
            aspects[pos] = ratio
    common = {"tiles": tiles, "header": plan_header(plan, z=page.z), "footer": footer, "cell_size": cell_size}
    common |= {"aspects": aspects, "theme": theme, "repeats": plan.repeats}
    parts = []
    if z_axis is not None:
        parts.append(f"{z_axis.title} = {z_axis.shown_labels[page.z]}")
    if page.of > 1:
        parts.append(f"page {page.number} of {page.of}")
    if page.wrap:
        rows = -(-len(page.xs) // page.wrap)
        return {
            "x_title": f"{x_axis.title if x_axis is not None else ''} (row by row)",
            "x_labels": [""] * page.wrap,
            "y_title": None,
            "y_labels": [""] * rows,
            "title": " · ".join(parts),
            **common,
        }
    return {
        "x_title": x_axis.title if x_axis is not None else None,
        "x_labels": [x_axis.shown_labels[i] for i in page.xs] if x_axis is not None else [""] * len(page.xs),
        "y_title": y_axis.title if y_axis is not None else None,
        "y_labels": [y_axis.shown_labels[i] for i in page.ys] if y_axis is not None else [""] * len(page.ys),
        "title": " · ".join(parts),
        **common,
    }


def grid_page(
    plan: SweepPlan,
    tiles_by_cell: Mapping[int, Tile],
    page: GridPage,
    *,
    cell_size: int = 320,
    footer: str = "",
    theme: str = "light",
) -> Image.Image:
    """Draw one page of a sweep's grids (see :func:`plan_pages`); a one-page grid is :func:`grid_for_plan`'s."""
    return render_grid(**_page_render_args(plan, tiles_by_cell, page, cell_size, footer, theme))


class PageCanvas:
    """A grid page kept drawn while its cells land: each new tile is pasted into its own box.

    :meth:`paste` redraws one box (the rest of the page is never drawn again); :meth:`finish`
    writes the final footer. The result has the pixels :func:`grid_page` draws from the same
    tiles and footer (tests check it). Only for one image per cell (with repeats the packing of a
    cell depends on every image's shape: :meth:`usable` says no, and the page is drawn whole).
    """

    def __init__(
        self,
        plan: SweepPlan,
        tiles_by_cell: Mapping[int, Tile],
        page: GridPage,
        *,
        cell_size: int,
        footer: str,
        theme: str = "light",
    ) -> None:
        self.plan, self.page = plan, page
        self._args = _page_render_args(plan, tiles_by_cell, page, cell_size, footer, theme)
        self.image = render_grid(**self._args)
        self.layout = _layout_of(self._args)

    @staticmethod
    def usable(plan: SweepPlan) -> bool:
        """True when tiles can be pasted one by one (one image per cell)."""
        return plan.repeats == 1

    def paste(self, cell: SweepCell, tile: Tile) -> None:
        """Draw ``cell``'s tile into its box."""
        (x, y), tile = page_slot(self.plan, self.page, cell, tile)
        lay = self.layout
        pad = lay.fonts.pad
        left, top, right, bottom = lay.cell_box(x, y)
        box = (left + pad, top + pad, right - left - 2 * pad, bottom - top - 2 * pad)
        _draw_tile(self.image, ImageDraw.Draw(self.image), box, tile, lay.fonts, lay.palette)

    def finish(self, footer: str) -> bool:
        """Write ``footer`` in place of the first one; ``False`` if it needs another height (draw the page whole)."""
        final = _layout_of({**self._args, "footer": footer})
        if final.height != self.layout.height:
            return False
        lay = final
        bottom = lay.grid_bottom
        draw = ImageDraw.Draw(self.image)
        draw.rectangle([0, bottom, lay.width - 1, lay.height - 1], fill=lay.palette.bg)
        f = lay.fonts
        for i, line in enumerate(lay.footer_lines):
            draw_text(draw, (lay.margin, bottom + f.pad + i * f.small_line), line, f.small, lay.palette.muted)
        return True


def tile_side(cell_size: int) -> int:
    """The inner side of a one-image cell's box: an image this size is pasted as it is, not resized."""
    return cell_size - 2 * fonts_for(cell_size).pad


def _layout_of(args: Mapping[str, Any]) -> GridLayout:
    return layout_grid(**{k: v for k, v in args.items() if k != "tiles"})


# ---------------------------------------------------------------- encoding


def encode_grid_png(
    img: Image.Image,
    provenance: Mapping[str, Any] | None = None,
    *,
    max_bytes: int = MAX_GRID_PNG_BYTES,
    compress_level: int = 6,
) -> bytes:
    """PNG bytes for a grid, kept under ``max_bytes`` for notebooks.

    Grids of flat or simulated images stay full-colour. Sixteen photographic
    320 px thumbnails come to about 3 MB as RGB PNG; those are stored as a
    256-colour adaptive palette (about a third of the size, and hard to tell
    apart at thumbnail scale), and only if that is still too big is the grid
    scaled down. ``provenance`` is embedded as in
    :func:`~.images.png_with_provenance`. The full-colour try stops as soon as its
    output passes ``max_bytes`` (a page of photographs is found too big in a part of
    an encoding), and is skipped when a band through the middle already says it cannot fit;
    ``compress_level`` 1–3 encodes a saved page 2–3× faster than the
    default 6, for somewhat larger files.
    """
    data = (
        None
        if _far_too_big(img, max_bytes)
        else encode_png(img, provenance, compress_level=compress_level, max_bytes=max_bytes)
    )
    if data is not None:
        return data
    rgb = img.convert("RGB") if img.mode != "RGB" else img
    candidate = rgb
    for _ in range(4):
        data = encode_png(
            candidate.quantize(256, method=Image.Quantize.FASTOCTREE), provenance, compress_level=compress_level
        )
        assert data is not None  # no cap given
        if len(data) <= max_bytes:
            return data
        factor = math.sqrt(max_bytes / len(data)) * 0.92
        size = (max(1, round(candidate.width * factor)), max(1, round(candidate.height * factor)))
        candidate = rgb.resize(size, Image.Resampling.LANCZOS)
    assert data is not None
    return data


def _far_too_big(img: Image.Image, max_bytes: int) -> bool:
    """Whether a full-colour PNG of ``img`` is clearly over ``max_bytes``: an eighth of its rows, through
    the middle, encoded fast already comes to more than a quarter of it (the whole would be ≥ 1.5× over
    at the default level). A misjudged grid only gets the palette that a too-big one gets anyway."""
    if img.height < 256:
        return False
    band = img.crop((0, img.height * 7 // 16, img.width, img.height * 9 // 16))
    return encode_png(band, compress_level=1, max_bytes=max_bytes // 4) is None
