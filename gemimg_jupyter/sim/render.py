"""Deterministic stand-in images for the simulator.

An image is a pure function of the request: the prompt picks the palette (a
small word→hue table, hashing for other words), temperature sets how many soft
shapes there are and how far each sample strays from the prompt's base layout,
``topP`` sets how widely the palette spreads around its main hues, and
reference images lend their dominant colours so a series that shares a
reference looks related. The pixel size is exactly
:func:`~gemimg_jupyter.domain.models.pixel_size` of the size and resolution.

Drawing happens on a small canvas that is blurred and upscaled, then a
``SIMULATED`` mark and the first words of the prompt are written at full
size; a 1K image takes a few tens of milliseconds.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont, PngImagePlugin

from gemimg_jupyter.domain.models import pixel_size

__all__ = ["WORD_HUES", "RenderSpec", "corrupt", "palette_for", "reference_colours", "render", "render_png"]

RGB = tuple[int, int, int]

#: Hue in degrees for words common in prompts; other words hash to a hue.
WORD_HUES: dict[str, float] = {
    "fox": 24, "orange": 30, "autumn": 28, "fire": 8, "flame": 12, "red": 0, "rose": 345, "pink": 330,
    "sunset": 18, "sunrise": 35, "desert": 38, "sand": 42, "gold": 46, "golden": 46, "yellow": 55,
    "lemon": 58, "sun": 48, "honey": 40, "coffee": 28, "chocolate": 22, "wood": 30, "bread": 36,
    "forest": 115, "green": 120, "grass": 100, "leaf": 105, "leaves": 105, "jungle": 130, "moss": 90,
    "mint": 150, "lime": 85, "tea": 80, "ocean": 200, "sea": 198, "water": 195, "river": 190,
    "lake": 195, "sky": 205, "blue": 220, "ice": 190, "snow": 205, "winter": 210, "rain": 215,
    "night": 235, "moon": 230, "space": 245, "galaxy": 265, "purple": 280, "lavender": 270,
    "violet": 275, "neon": 300, "cyberpunk": 295, "magenta": 310, "cherry": 345, "apple": 5,
    "strawberry": 355, "wine": 340, "tomato": 6, "cat": 32, "dog": 34, "lion": 40, "tiger": 28,
    "robot": 210, "city": 220, "mountain": 215, "flower": 330, "marble": 40, "product": 210,
}  # fmt: skip

#: Words that change lightness and saturation: (lightness, saturation) targets.
_MOODS: dict[str, tuple[float, float]] = {
    "dark": (0.25, 0.55), "night": (0.25, 0.55), "noir": (0.2, 0.15), "midnight": (0.2, 0.5),
    "pastel": (0.78, 0.4), "soft": (0.7, 0.45), "dreamy": (0.75, 0.4), "vivid": (0.5, 0.95),
    "neon": (0.55, 1.0), "bright": (0.6, 0.85), "minimal": (0.85, 0.15), "white": (0.88, 0.1),
    "black": (0.12, 0.1), "monochrome": (0.5, 0.03), "grey": (0.5, 0.05), "gray": (0.5, 0.05),
}  # fmt: skip

_STOP = frozenset({"a", "an", "the", "of", "in", "on", "at", "with", "and", "or", "to", "for", "from", "by", "is",
                   "are", "its", "it", "this", "that", "into", "under", "over"})  # fmt: skip
_SMALL = 256  # long side of the drawing canvas
_WHITE: RGB = (255, 255, 255)
_BLACK: RGB = (0, 0, 0)


@dataclass(frozen=True)
class RenderSpec:
    """Everything that shapes one simulated image.

    ``references`` holds the bytes of reference images the server has in
    memory (its own uploads); ``reference_urls`` the URLs it could not fetch,
    which still tint the palette through their hash. ``sample`` is the
    per-task seed (the task id): it only matters in proportion to temperature.
    """

    prompt: str
    model: str = "gemini-2.5-flash-image-official"
    size: str = "1:1"
    resolution: str = "1K"
    temperature: float | None = None
    top_p: float | None = None
    references: tuple[bytes, ...] = ()
    reference_urls: tuple[str, ...] = ()
    sample: str = ""
    mark: str = ""  # the request's controls (thinking, search …), drawn as a caption top-left

    @property
    def pixel_size(self) -> tuple[int, int]:
        """The exact output size in pixels."""
        return pixel_size(self.size, self.resolution)


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def _hsl(hue: float, light: float, sat: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb((hue % 360) / 360, min(max(light, 0.0), 1.0), min(max(sat, 0.0), 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def reference_colours(data: bytes, count: int = 4) -> list[RGB]:
    """Dominant colours of an image, most common first (``[]`` if it does not decode)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > 40_000_000:  # not worth the memory for a palette
                return []
            img.draft("RGB", (64, 64))
            small = img.convert("RGB")
    except Exception:  # noqa: BLE001 - any undecodable reference simply lends no colours
        return []
    small.thumbnail((48, 48))
    quant = small.quantize(colors=count)
    flat = quant.getpalette() or []
    ranked = sorted(quant.getcolors() or [], reverse=True)
    return [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for _, i in ranked]


def palette_for(spec: RenderSpec, count: int = 6) -> list[RGB]:
    """The colours of an image: prompt hues spread by ``topP``, pulled toward the references."""
    words = re.findall(r"[a-z]+", spec.prompt.lower())
    hues = [WORD_HUES[w] for w in words if w in WORD_HUES]
    if not hues:
        content = [w for w in words if w not in _STOP and len(w) > 2] or [spec.prompt]
        hues = [_seed("hue", w) % 360 for w in content[:2]]
    moods = [_MOODS[w] for w in words if w in _MOODS]
    light, sat = moods[0] if moods else (0.55, 0.7)
    rng = random.Random(_seed("palette", spec.prompt, spec.model))
    top_p = 0.95 if spec.top_p is None else spec.top_p
    spread = 4 + 32 * top_p
    colours = []
    for i in range(count):
        base = hues[0] if i < 3 or len(hues) == 1 else hues[1 + (i - 3) % (len(hues) - 1)]
        hue = base + rng.uniform(-spread, spread)
        colours.append(_hsl(hue, light + rng.uniform(-0.2, 0.2), sat + rng.uniform(-0.15, 0.1)))
    lent: list[RGB] = []
    for data in spec.references:
        lent += reference_colours(data)
    for url in spec.reference_urls:
        lent.append(_hsl(_seed("url", url) % 360, 0.5, 0.6))
    if lent:
        colours = [_mix(c, lent[i % len(lent)], 0.75) for i, c in enumerate(colours)]
    return colours


def render(spec: RenderSpec) -> Image.Image:
    """Draw the image for ``spec`` at its exact pixel size (RGB).

    The composition is a layered, paper-cut landscape: a sky gradient, a
    subject disc, hills in front of it, and loose blobs whose number grows
    with temperature. The prompt fixes the base layout; the task's sample
    moves every shape by an amount proportional to temperature.
    """
    width, height = spec.pixel_size
    scale = _SMALL / max(width, height)
    sw, sh = max(8, round(width * scale)), max(8, round(height * scale))
    c = palette_for(spec)
    temperature = 1.0 if spec.temperature is None else spec.temperature
    layout = random.Random(_seed("layout", spec.prompt, spec.model))
    sample = random.Random(_seed("sample", spec.sample, spec.prompt))
    jitter = 0.03 + 0.12 * temperature

    def at(lo: float, hi: float) -> float:
        return layout.uniform(lo, hi) + sample.gauss(0, jitter)

    sky = Image.new("RGB", (2, 2))
    sky.putdata([_mix(c[0], _WHITE, 0.45), _mix(c[2], _WHITE, 0.3), c[1], _mix(c[1], _BLACK, 0.3)])
    canvas = sky.resize((sw, sh), Image.Resampling.BICUBIC)
    mask = Image.new("L", (sw, sh))
    draw = ImageDraw.Draw(mask)

    def shape(colour: RGB, box: tuple[float, float, float, float], alpha: int = 255, kind: int = 0) -> None:
        draw.rectangle((0, 0, sw, sh), fill=0)
        if kind == 1:
            x0, y0, x1, y1 = box
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=alpha)
        else:
            draw.ellipse(box, fill=alpha)
        canvas.paste(colour, mask=mask)

    side = min(sw, sh)
    x, y, r = at(0.25, 0.75) * sw, at(0.2, 0.45) * sh, layout.uniform(0.12, 0.22) * side
    shape(_mix(c[0], _WHITE, 0.15), (x - r, y - r, x + r, y + r))
    for j in range(2 + round(temperature)):
        x, y = at(0.0, 1.0) * sw, (0.62 + 0.13 * j + sample.gauss(0, jitter / 3)) * sh
        rx, ry = layout.uniform(0.45, 0.85) * sw, layout.uniform(0.16, 0.3) * sh
        kind = 1 if layout.random() < 0.3 + 0.2 * temperature else 0
        shape(_mix(c[3 + j % 3], _BLACK, 0.12 * j), (x - rx, y - ry, x + rx, y + ry * (2.5 if kind else 1)), kind=kind)
    for _ in range(round(temperature * 4)):
        x, y, r = sample.uniform(0, 1) * sw, sample.uniform(0, 0.8) * sh, sample.uniform(0.02, 0.07) * side
        shape(c[sample.randrange(len(c))], (x - r, y - r, x + r, y + r), alpha=sample.randrange(110, 220))
    canvas = canvas.filter(ImageFilter.GaussianBlur(1.0))
    image = canvas.resize((width, height), Image.Resampling.BICUBIC)
    _mark(image, spec.prompt, spec.mark)
    return image


def _mark(image: Image.Image, prompt: str, controls: str = "") -> None:
    """Write ``SIMULATED`` in the bottom-right corner, the prompt's first words bottom-left, the controls top-left."""
    width, height = image.size
    size = max(10, min(width, height) // 40)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    pad = size // 2
    words = " ".join(prompt.split()[:6])
    caption = words if len(words) <= 48 else words[:47] + "…"
    for text, right in (("SIMULATED", True), (caption, False)):
        if not text or (not right and width < 24 * size):
            continue
        left, top, rgt, bottom = draw.textbbox((0, 0), text, font=font)
        x = width - (rgt - left) - 2 * pad if right else pad
        y = height - (bottom - top) - 2 * pad
        draw.rectangle((x - pad // 2, y - pad // 2, x + rgt - left + pad, y + bottom - top + pad), fill=(20, 20, 24))
        draw.text((x - left + pad // 4, y - top + pad // 4), text, font=font, fill=(235, 235, 235))
    if controls:
        left, top, rgt, bottom = draw.textbbox((0, 0), controls, font=font)
        draw.rectangle((pad // 2, pad // 2, pad + rgt - left + pad, pad + bottom - top + pad), fill=(250, 220, 60))
        draw.text((pad - left + pad // 4, pad - top + pad // 4), controls, font=font, fill=(20, 20, 24))


def render_png(spec: RenderSpec) -> bytes:
    """PNG bytes of :func:`render` (fast compression, a ``Software`` text chunk)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "gemimg_jupyter simulator")
    buf = io.BytesIO()
    render(spec).save(buf, format="PNG", optimize=False, compress_level=1, pnginfo=info)
    return buf.getvalue()


def corrupt(data: bytes, sample: str) -> bytes:
    """Bytes that no decoder accepts, chosen per ``sample``: truncated or overwritten."""
    rng = random.Random(_seed("corrupt", sample))
    if rng.random() < 0.5:
        return data[: max(64, len(data) // rng.randint(3, 8))]
    head = bytearray(data[:64])
    head[16:40] = rng.randbytes(24)  # IHDR is gone; the rest stays as ballast
    return bytes(head) + rng.randbytes(max(0, len(data) - 64))
