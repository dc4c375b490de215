"""Drawing pieces of a comparison grid (pure Pillow): colours, text that fits, arrows, the cells and their tiles.

:mod:`.grid` lays the grid out and draws it with these; it re-exports the
public names (:data:`PENDING_STATES`, :data:`FAILED_STATES`, :func:`draw_star`).
Text is shaped before it is drawn: Pillow's Raqm layout (HarfBuzz shaping, FriBiDi order) when
Pillow has it, else ``arabic-reshaper`` and ``python-bidi`` put right-to-left text in visual order.
Characters a font cannot draw are replaced by a close ASCII spelling, and emoji and other symbols
by a visible :data:`MISSING_MARK`, instead of boxes or ``?``. Two palettes draw the chrome
(ground, text, rules, placeholders; never the images): :data:`LIGHT` and :data:`DARK`.
"""

from __future__ import annotations

import functools
import math
import threading
import unicodedata
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import arabic_reshaper
from bidi import get_display
from PIL import Image, ImageDraw, ImageFont

from gemimg_jupyter.domain import models
from gemimg_jupyter.domain.models import state_values

__all__ = [
    "DARK",
    "FAILED_STATES",
    "LIGHT",
    "MISSING_MARK",
    "PENDING_STATES",
    "SUSPECT",
    "Palette",
    "draw_star",
    "mark_suspect",
    "palette_for",
]


#: A tile's state words, as :class:`~gemimg_jupyter.domain.models.JobState` classifies them (``timeout`` is a failed tile).
PENDING_STATES = frozenset(state_values(models.PENDING_STATES))
FAILED_STATES = frozenset(state_values(models.FAILURE_STATES))
_IMAGE_STATES = frozenset(state_values(models.IMAGE_STATES))
#: The state of a request the gateway refused for its content (safety, policy): drawn and counted apart.
BLOCKED_STATE = models.JobState.BLOCKED.value

_FontT: TypeAlias = ImageFont.FreeTypeFont | ImageFont.ImageFont

# colours (RGB)
BG = (255, 255, 255)
INK = (33, 37, 41)
MUTED = (104, 110, 118)
RULE = (222, 226, 230)
LETTERBOX = (241, 243, 245)


@dataclass(frozen=True)
class _Tone:
    """The colours of a kind of box (RGB): its fill, its text and its outline."""

    fill: tuple[int, int, int]
    ink: tuple[int, int, int]
    edge: tuple[int, int, int] | None = None


_BADGE = _Tone(fill=INK, ink=BG)  # white on the ink colour (on an image: the same in both themes)


@dataclass(frozen=True)
class Palette:
    """The colours of a grid's chrome (RGB): ground, text, rules, letterbox and the placeholders' tones.

    The images themselves are never recoloured. Every text colour is at least 4.5:1 against the
    ground it is drawn on (``tests/test_grid.py`` computes it).
    """

    name: str
    bg: tuple[int, int, int]
    ink: tuple[int, int, int]
    muted: tuple[int, int, int]
    rule: tuple[int, int, int]
    letterbox: tuple[int, int, int]
    pending: _Tone
    failed: _Tone
    blocked: _Tone


LIGHT = Palette(
    name="light",
    bg=BG,
    ink=INK,
    muted=MUTED,
    rule=RULE,
    letterbox=LETTERBOX,
    pending=_Tone(fill=(246, 247, 249), ink=(95, 103, 111), edge=(206, 212, 218)),
    failed=_Tone(fill=(253, 236, 236), ink=(150, 30, 30), edge=(214, 69, 69)),
    blocked=_Tone(fill=(255, 244, 229), ink=(128, 66, 0), edge=(214, 130, 0)),
)
DARK = Palette(
    name="dark",
    bg=(24, 26, 29),
    ink=(228, 231, 235),
    muted=(163, 170, 178),
    rule=(62, 67, 74),
    letterbox=(38, 41, 46),
    pending=_Tone(fill=(33, 36, 40), ink=(172, 179, 187), edge=(70, 76, 84)),
    failed=_Tone(fill=(60, 24, 26), ink=(255, 176, 176), edge=(214, 69, 69)),
    blocked=_Tone(fill=(56, 40, 14), ink=(255, 204, 138), edge=(214, 130, 0)),
)
_PALETTES = {p.name: p for p in (LIGHT, DARK)}


def palette_for(theme: str) -> Palette:
    """The palette named ``theme`` (``light`` or ``dark``); ``auto`` is resolved before drawing."""
    try:
        return _PALETTES[theme]
    except KeyError:
        raise ValueError(f"grid theme {theme!r} is not known; use light or dark") from None


#: A suspect image (paid, but all black, one flat colour or far too small): an orange frame and label.
SUSPECT = _Tone(fill=(214, 110, 0), ink=(255, 255, 255), edge=(214, 110, 0))

_ASCII_FALLBACK = {
    "→": "->",
    "←": "<-",
    "↓": "v",
    "↑": "^",
    "×": "x",
    "≈": "~",
    "—": "-",
    "–": "-",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "…": "...",
    "·": "-",
    "•": "*",
    "\u00a0": " ",
}


@dataclass(frozen=True)
class _Fonts:
    size: int
    label: _FontT
    bold: _FontT
    small: _FontT
    small_bold: _FontT
    title: _FontT
    line: int
    small_line: int
    title_line: int
    pad: int


#: Fonts tried before Pillow's bundled one (found on most Linux systems and in many Python installs).
FONT_CANDIDATES: tuple[str, ...] = ("DejaVuSans.ttf",)
BOLD_FONT_CANDIDATES: tuple[str, ...] = ("DejaVuSans-Bold.ttf",)


@dataclass
class Tile:
    """One image slot of a grid: a job's state, its image when it has one, its error.

    Attributes
    ----------
    state : str
        A job state: ``queued``, ``uploading``, ``submitting``, ``submitted``,
        ``in_progress``, ``downloading``, ``done``, ``cached``, ``failed``,
        ``expired``, ``timeout`` or ``cancelled``.
    image : PIL.Image.Image or None
        The picture (a thumbnail is enough; it is scaled to fit anyway).
    error : str or None
        What went wrong, shown in failed cells.
    picked : bool
        A picked image carries a star in its top-right corner.
    caption : str or None
        A short label in the tile's top-left corner (a wrapped single axis names each value here).
    suspect : str or None
        Why a paid image looks unusable: it gets an orange frame and a ``suspect`` label top-left.
    """

    state: str
    image: Image.Image | None = None
    error: str | None = None
    picked: bool = False
    caption: str | None = None
    suspect: str | None = None


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes in a grid of ``nx`` × ``ny`` cells.

    Attributes
    ----------
    width, height : int
        The image size.
    margin : int
        Blank border around everything.
    grid_left, grid_top : int
        Top-left corner of the first cell.
    cell : int
        The base side of a cell box: a square cell is ``cell`` × ``cell``; a cell of another
        aspect ratio has about the same area in its ratio (see ``col_widths``, ``row_heights``).
    nx, ny : int
        Columns and rows.
    legend_width : int
        Width of the Y legend column (0 without a Y axis).
    footer_height : int
        Height below the cells before the bottom margin.
    col_widths, row_heights : tuple of int
        Each column's width and each row's height (empty: every one is ``cell``).
    palette : Palette
        The chrome's colours (:data:`LIGHT` or :data:`DARK`).
    aspects : tuple of tuple of float
        The aspect ratio each cell's box was sized for, by row then column (empty: square).
    """

    width: int
    height: int
    margin: int
    grid_left: int
    grid_top: int
    cell: int
    nx: int
    ny: int
    legend_width: int
    footer_height: int
    title_lines: tuple[str, ...]
    header_lines: tuple[str, ...]
    footer_lines: tuple[str, ...]
    x_label_lines: tuple[tuple[str, ...], ...]
    y_label_lines: tuple[tuple[str, ...], ...]
    y_title_lines: tuple[str, ...]
    x_title: str
    title_top: int
    header_top: int
    band_top: int
    x_labels_top: int
    fonts: _Fonts
    col_widths: tuple[int, ...] = ()
    row_heights: tuple[int, ...] = ()
    palette: Palette = LIGHT
    aspects: tuple[tuple[float, ...], ...] = ()

    def col_width(self, x: int) -> int:
        """The width of column ``x``."""
        return self.col_widths[x] if self.col_widths else self.cell

    def row_height(self, y: int) -> int:
        """The height of row ``y``."""
        return self.row_heights[y] if self.row_heights else self.cell

    def aspect(self, x: int, y: int) -> float | None:
        """The aspect ratio cell ``(x, y)`` was sized for (``None``: not known, a square box)."""
        return self.aspects[y][x] if self.aspects else None

    @property
    def grid_right(self) -> int:
        return self.grid_left + (sum(self.col_widths) if self.col_widths else self.nx * self.cell)

    @property
    def grid_bottom(self) -> int:
        return self.grid_top + (sum(self.row_heights) if self.row_heights else self.ny * self.cell)

    def cell_box(self, x: int, y: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of the cell at column ``x``, row ``y``."""
        left = self.grid_left + (sum(self.col_widths[:x]) if self.col_widths else x * self.cell)
        top = self.grid_top + (sum(self.row_heights[:y]) if self.row_heights else y * self.cell)
        return (left, top, left + self.col_width(x), top + self.row_height(y))


@functools.lru_cache(maxsize=64)
def _load_font(size: int, bold: bool = False) -> _FontT:
    for name in BOLD_FONT_CANDIDATES if bold else FONT_CANDIDATES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def fonts_for(cell_size: int) -> _Fonts:
    size = max(10, round(cell_size * 0.05))
    small = max(9, round(cell_size * 0.04))
    title = round(size * 1.25)
    return _Fonts(
        size=size,
        label=_load_font(size),
        bold=_load_font(size, bold=True),
        small=_load_font(small),
        small_bold=_load_font(small, bold=True),
        title=_load_font(title, bold=True),
        line=round(size * 1.35),
        small_line=round(small * 1.3),
        title_line=round(title * 1.3),
        pad=max(2, round(cell_size * 0.016)),
    )


# ---------------------------------------------------------------- text


_glyph_lock = threading.Lock()
_glyph_cache: weakref.WeakKeyDictionary[Any, dict[str, bool]] = weakref.WeakKeyDictionary()


def _has_glyph(font: _FontT, char: str) -> bool:
    """Whether ``font`` draws ``char`` as something other than its "missing" box."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        return ord(char) < 128
    with _glyph_lock:
        known = _glyph_cache.setdefault(font, {}).get(char)
    if known is not None:
        return known
    try:
        mask = font.getmask(char)
        missing = font.getmask("\uffff")
        result = not (mask.size == missing.size and bytes(mask) == bytes(missing))
    except (OSError, ValueError, UnicodeError):
        result = False
    with _glyph_lock:
        _glyph_cache.setdefault(font, {})[char] = result
    return result


#: What a character the font cannot draw (an emoji, a rare symbol) is drawn as, when the font has it.
MISSING_MARK = "\u25c6"  # ◆
#: Characters that only join or modify the one before (ZWJ, variation selectors, skin tones, tags):
#: after a replaced character they are dropped, so one emoji sequence becomes one mark.
_JOINERS = frozenset(
    ["\u200d", "\ufe0e", "\ufe0f", "\u20e3"]
    + [chr(c) for c in range(0x1F3FB, 0x1F400)]
    + [chr(c) for c in range(0xE0020, 0xE0080)]
)
_RTL_CLASSES = frozenset({"R", "AL"})
_ARABIC_CLASS = "AL"


def uses_raqm(font: _FontT) -> bool:
    """Whether Pillow lays ``font``'s text out with Raqm (shaping and right-to-left order done by Pillow)."""
    return isinstance(font, ImageFont.FreeTypeFont) and font.layout_engine == ImageFont.Layout.RAQM


def visual_order(text: str) -> str:
    """``text`` as a layout engine without bidi must draw it: Arabic joined, right-to-left runs reversed.

    Left-to-right text comes back unchanged. Used only where Pillow has no Raqm (no FriBiDi on the machine).
    """
    classes = {unicodedata.bidirectional(c) for c in text}
    if not classes & _RTL_CLASSES:
        return text
    if _ARABIC_CLASS in classes:
        text = arabic_reshaper.reshape(text)
    return str(get_display(text))


def _drawable(font: _FontT, text: str) -> str:
    """``text`` as it is handed to Pillow: in visual order when Pillow cannot order it, and every
    character the font lacks replaced (an ASCII look-alike, else :data:`MISSING_MARK`)."""
    if text.isascii():
        return text
    if not uses_raqm(font):
        text = visual_order(text)
    out: list[str] = []
    replaced = joined = flag_open = False  # previous char replaced (its joiners go too) / a ZWJ after one / half a flag
    for char in text:
        if replaced and char in _JOINERS:
            joined = joined or char == "\u200d"
            continue
        if char.isascii() or _has_glyph(font, char):
            out.append(char)
            replaced = joined = False
            continue
        if joined:  # the next emoji of a ZWJ sequence: the sequence already has its mark
            joined = False
            continue
        replaced = True
        if char in _ASCII_FALLBACK:
            out.append(_ASCII_FALLBACK[char])
            continue
        base = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
        if _is_flag_half(char):  # two regional indicators are one flag: one mark
            flag_open = not flag_open
            if not flag_open:
                continue
        out.append(base or _missing_mark(font))
    return "".join(out)


def _missing_mark(font: _FontT) -> str:
    return MISSING_MARK if _has_glyph(font, MISSING_MARK) else "*"


def _is_flag_half(char: str) -> bool:
    """A regional indicator: two of them make one flag, drawn as one mark."""
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def text_width(font: _FontT, text: str) -> float:
    return float(font.getlength(_drawable(font, text))) if text else 0.0


def _ellipsize(font: _FontT, text: str, width: float) -> str:
    """``text`` cut with ``…`` so it fits ``width``."""
    text = text.rstrip()
    if text_width(font, text) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(font, text[:mid].rstrip() + "…") <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…" if lo else "…"


def wrap_text(font: _FontT, text: str, width: float, max_lines: int) -> tuple[str, ...]:
    """Word-wrap ``text`` to ``width``; overlong words are broken, extra lines ellipsized."""
    if max_lines <= 0 or not text.strip():
        return ()
    lines: list[str] = []
    for paragraph in text.splitlines():
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if text_width(font, candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
                current = ""
            while text_width(font, word) > width and len(word) > 1:
                cut = _fit_prefix(font, word, width)
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        if current:
            lines.append(current)
        if len(lines) > max_lines:
            break
    if len(lines) > max_lines:
        rest = " ".join(lines[max_lines - 1 :])
        lines = [*lines[: max_lines - 1], _ellipsize(font, rest + " …", width)]
        if not lines[-1].endswith("…"):
            lines[-1] = _ellipsize(font, lines[-1] + "…", width)
    return tuple(lines)


def _fit_prefix(font: _FontT, word: str, width: float) -> int:
    lo, hi = 1, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(font, word[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def draw_text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: _FontT, fill: tuple[int, int, int]
) -> None:
    draw.text((round(xy[0]), round(xy[1])), _drawable(font, text), font=font, fill=fill)


def draw_arrow(
    draw: ImageDraw.ImageDraw, x: float, y: float, size: int, direction: str, fill: tuple[int, int, int]
) -> None:
    """A small arrow drawn with lines (fonts often lack → and ↓); ``(x, y)`` is its top-left."""
    s = size
    w = max(1, round(s / 9))
    if direction == "right":
        mid = y + s / 2
        draw.line([(x, mid), (x + s - 1, mid)], fill=fill, width=w)
        draw.polygon([(x + s, mid), (x + s * 0.55, mid - s * 0.32), (x + s * 0.55, mid + s * 0.32)], fill=fill)
    else:
        mid = x + s / 2
        draw.line([(mid, y), (mid, y + s - 1)], fill=fill, width=w)
        draw.polygon([(mid, y + s), (mid - s * 0.32, y + s * 0.55), (mid + s * 0.32, y + s * 0.55)], fill=fill)


def _strip_arrow(title: str | None) -> str:
    return (title or "").strip().rstrip("→↓-> ").strip() if title else ""


# ---------------------------------------------------------------- tiles


def _state_name(state: object) -> str:
    return str(getattr(state, "value", state) or "").strip().lower()


def _draw_tile(
    img: Image.Image,
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    tile: Tile | None,
    f: _Fonts,
    pal: Palette = LIGHT,
) -> None:
    x, y, w, h = box
    if w < 2 or h < 2:
        return
    state = _state_name(tile.state) if tile is not None else ""
    if tile is not None and tile.image is not None:
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=pal.letterbox)
        thumb = fit_text(tile.image, w, h)
        px, py = x + (w - thumb.width) // 2, y + (h - thumb.height) // 2
        img.paste(thumb, (px, py))
        if state == "cached":
            _badge(draw, (px, py, thumb.width, thumb.height), "cached", f)
        if tile.suspect:
            mark_suspect(draw, (px, py, thumb.width, thumb.height), f.small)
        if tile.picked:
            r = max(6, min(thumb.width, thumb.height) // 12)
            draw_star(draw, px + thumb.width - r - 4, py + r + 4, r)
        if tile.caption:
            _badge(draw, (px, py, thumb.width, thumb.height), tile.caption, f, corner="top-left")
        return
    if state in FAILED_STATES:
        tone = pal.blocked if state == BLOCKED_STATE else pal.failed  # a refusal reads apart from an error
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=tone.fill, outline=tone.edge, width=2)
        error = (tile.error if tile is not None else None) or "no error message"
        _box_text(draw, box, state, error, f, tone.ink)
        return
    pending = pal.pending
    draw.rectangle([x, y, x + w - 1, y + h - 1], fill=pending.fill, outline=pending.edge, width=1)
    if tile is None:
        return
    if state in PENDING_STATES:
        label = "queued" if state == "queued" else state.replace("_", " ") + "…"
        _box_text(draw, box, label, tile.caption, f, pending.ink)
    elif state in _IMAGE_STATES:
        _box_text(draw, box, state, "no image", f, pending.ink)
    else:  # cancelled, or a state this module does not know
        _box_text(draw, box, state.replace("_", " ") or "unknown", tile.error or tile.caption, f, pending.ink)


_STAR = (240, 180, 0)
_STAR_RIM = (60, 45, 0)


def mark_suspect(draw: ImageDraw.ImageDraw, image_box: tuple[int, int, int, int], font: _FontT) -> None:
    """The mark of a suspect image: an orange frame inside its edge and a ``suspect`` label top-left."""
    x, y, w, h = image_box
    width = max(2, min(w, h) // 40)
    draw.rectangle([x, y, x + w - 1, y + h - 1], outline=SUSPECT.edge, width=width)
    tw = text_width(font, "suspect")
    bh = round(font.getbbox("Sg")[3]) + 3
    if tw + 8 < w and bh + 4 < h:
        draw.rectangle([x, y, x + tw + 8, y + bh], fill=SUSPECT.fill)
        draw_text(draw, (x + 4, y + 1), "suspect", font, SUSPECT.ink)


def draw_star(draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float) -> None:
    """A filled five-pointed star centred on ``(cx, cy)``: the mark of a picked image."""
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        a = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    draw.polygon(points, fill=_STAR, outline=_STAR_RIM)


def fit_text(image: Image.Image, w: int, h: int) -> Image.Image:
    """``image`` scaled (up or down) to fit ``w`` × ``h`` keeping its aspect ratio, in RGB."""
    src = image
    if src.mode in ("RGBA", "LA", "PA") or (src.mode == "P" and "transparency" in src.info):
        rgba = src.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, (*BG, 255))
        src = Image.alpha_composite(ground, rgba).convert("RGB")
    elif src.mode != "RGB":
        src = src.convert("RGB")
    scale = min(w / src.width, h / src.height)
    size = (max(1, min(w, round(src.width * scale))), max(1, min(h, round(src.height * scale))))
    if size == src.size:
        return src.copy() if src is image else src
    return src.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _box_text(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    headline: str,
    body: str | None,
    f: _Fonts,
    ink: tuple[int, int, int],
) -> None:
    """A bold headline and wrapped body text, centred in ``box``."""
    x, y, w, h = box
    inset = max(3, f.pad + 2)
    width = w - 2 * inset
    if width < 8:
        return
    head = wrap_text(f.small_bold, headline, width, 1)
    room = max(0, (h - 2 * inset - len(head) * f.small_line) // f.small_line)
    lines = wrap_text(f.small, body, width, room) if body else ()
    block = (len(head) + len(lines)) * f.small_line
    ty = y + max(inset, (h - block) // 2)
    for line in head:
        draw_text(draw, (x + (w - text_width(f.small_bold, line)) / 2, ty), line, f.small_bold, ink)
        ty += f.small_line
    for line in lines:
        draw_text(draw, (x + (w - text_width(f.small, line)) / 2, ty), line, f.small, ink)
        ty += f.small_line


def _badge(
    draw: ImageDraw.ImageDraw, image_box: tuple[int, int, int, int], text: str, f: _Fonts, *, corner: str = ""
) -> None:
    """A small dark label in the bottom-right corner of the image (``corner="top-left"``: that corner)."""
    x, y, w, h = image_box
    tw = text_width(f.small, text)
    bw, bh = round(tw + 2 * f.pad + 2), f.small_line + 2
    if bw > w - 4 or bh > h - 4:
        return
    bx, by = (x + 4, y + 4) if corner == "top-left" else (x + w - bw - 4, y + h - bh - 4)
    draw.rounded_rectangle([bx, by, bx + bw, by + bh], radius=max(2, bh // 3), fill=_BADGE.fill)
    draw_text(draw, (bx + f.pad + 1, by + 1), text, f.small, _BADGE.ink)


# ---------------------------------------------------------------- cells


def _arrangement(
    repeats: int, aspects: Sequence[float], inner: int, gap: int, inner_h: int | None = None
) -> tuple[int, int]:
    """``(cols, rows)`` for the repeats of a cell whose inside is ``inner`` × ``inner_h`` (default square):
    the packing that shows the images largest."""
    if repeats <= 1:
        return (1, 1)
    height = inner if inner_h is None else inner_h
    shapes = list(aspects) or [1.0]
    best, best_score = (repeats, 1), -1.0
    for cols in range(repeats, 0, -1):  # a single row first: ties keep the mini-row
        rows = math.ceil(repeats / cols)
        if (cols - 1) * rows >= repeats:  # a column would stay empty
            continue
        sub_w = (inner - (cols - 1) * gap) / cols
        sub_h = (height - (rows - 1) * gap) / rows
        if sub_w <= 0 or sub_h <= 0:
            continue
        score = 0.0
        for aspect in shapes:
            w = min(sub_w, sub_h * aspect)
            score += w * (w / aspect)
        if score > best_score * 1.001:
            best, best_score = (cols, rows), score
    return best


def _draw_cells(
    img: Image.Image, draw: ImageDraw.ImageDraw, lay: GridLayout, tiles: Mapping[tuple[int, int], Sequence[Tile]]
) -> None:
    """Every cell's repeats, packed the same way in every cell of a shape (see :func:`_arrangement`).

    A cell's packing follows its box and the aspect ratio it was sized for (without one, the
    aspect ratios of the images at hand).
    """
    f = lay.fonts
    pad = f.pad
    repeats = max((len(seq) for seq in tiles.values()), default=1) or 1
    seen = [
        t.image.width / t.image.height
        for seq in tiles.values()
        for t in seq
        if t.image is not None and t.image.width and t.image.height
    ]
    for y in range(lay.ny):
        for x in range(lay.nx):
            left, top, right, bottom = lay.cell_box(x, y)
            inner_w, inner_h = right - left - 2 * pad, bottom - top - 2 * pad
            planned = lay.aspect(x, y)
            cols, rows = _arrangement(repeats, [planned] if planned else seen, inner_w, pad, inner_h)
            sub_w = (inner_w - (cols - 1) * pad) // cols
            sub_h = (inner_h - (rows - 1) * pad) // rows
            seq = list(tiles.get((x, y), ()))
            for r in range(repeats):
                col, row = r % cols, r // cols
                box = (left + pad + col * (sub_w + pad), top + pad + row * (sub_h + pad), sub_w, sub_h)
                _draw_tile(img, draw, box, seq[r] if r < len(seq) else None, f, lay.palette)
