"""Comparison grids: layout, legends, placeholders, aspect ratios, PNG size."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.draw import grid as grid_mod
from gemimg_jupyter.draw import primitives
from gemimg_jupyter.draw.grid import (
    MAX_GRID_PNG_BYTES,
    Tile,
    encode_grid_png,
    grid_for_plan,
    layout_grid,
    plan_header,
    render_grid,
)
from gemimg_jupyter.draw.images import png_bytes, read_provenance
from gemimg_jupyter.plans.plan import SweepPlan, parse_axis, plan_sweep

C = 320
WHITE = (255, 255, 255)
BLUE = (0, 110, 255)
GREEN = (20, 170, 60)


def solid(w: int, h: int, colour: tuple[int, int, int] = BLUE) -> Image.Image:
    return Image.new("RGB", (w, h), colour)


def standin(i: int, w: int = 256, h: int = 256) -> Image.Image:
    """A simple coloured picture, like the simulator's."""
    img = Image.new("RGB", (w, h), ((37 * i) % 256, (90 + 53 * i) % 256, (200 - 29 * i) % 256))
    draw = ImageDraw.Draw(img)
    draw.ellipse([w * 0.3, h * 0.3, w * 0.7, h * 0.75], fill=(240, 150, 40))
    draw.polygon([(0, h), (w // 2, h * 0.45), (w, h)], fill=(30, 100, 50))
    return img


def photo_like(seed: int, size: int = 320) -> Image.Image:
    """Gradients, hard edges and grain: compresses about as badly as a real photo."""
    channels = []
    for k in range(3):
        grad = Image.linear_gradient("L").rotate(37 * (seed + k)).resize((size, size))
        noise = Image.effect_noise((size, size), 48 + 8 * k)
        channels.append(Image.blend(grad, noise, 0.4).filter(ImageFilter.GaussianBlur(0.8)))
    return Image.merge("RGB", channels)


def grid(
    nx: int,
    ny: int,
    *,
    tiles: Mapping[tuple[int, int], Sequence[Tile]] | None = None,
    header: str = "model · 1K",
    footer: str = "",
    title: str = "",
    x_title: str | None = "temperature",
    y_title: str | None = "size",
    cell_size: int = C,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
) -> tuple[Image.Image, grid_mod.GridLayout]:
    kwargs = {
        "x_title": x_title,
        "x_labels": list(x_labels) if x_labels is not None else [f"{0.2 * (i + 1):.1f}" for i in range(nx)],
        "y_title": y_title,
        "y_labels": list(y_labels) if y_labels is not None else [f"{i + 1}:1" for i in range(ny)],
        "header": header,
        "footer": footer,
        "cell_size": cell_size,
        "title": title,
    }
    if tiles is None:
        tiles = {(x, y): [Tile("done", standin(x + nx * y))] for x in range(nx) for y in range(ny)}
    img = render_grid(tiles=tiles, **kwargs)  # type: ignore[arg-type]
    return img, layout_grid(**kwargs)  # type: ignore[arg-type]


def _flag(band: Image.Image, test: Callable[[int], bool]) -> Image.Image:
    return band.point(lambda v: 255 if test(v) else 0)


def mask_dark(img: Image.Image) -> Image.Image:
    """255 where every channel is below 110 (text, arrows, badges)."""
    r, g, b = (_flag(band, lambda v: v < 110) for band in img.split())
    return ImageChops.multiply(ImageChops.multiply(r, g), b)


def mask_reddish(img: Image.Image) -> Image.Image:
    """255 where red clearly dominates (the failed placeholder's edge and text)."""
    r, g, b = img.split()
    strong = _flag(r, lambda v: v > 120)
    over_g = _flag(ImageChops.subtract(r, g), lambda v: v > 60)
    over_b = _flag(ImageChops.subtract(r, b), lambda v: v > 60)
    return ImageChops.multiply(ImageChops.multiply(strong, over_g), over_b)


def mask_colour(img: Image.Image, colour: tuple[int, int, int], tol: int = 4) -> Image.Image:
    diff = ImageChops.difference(img, Image.new("RGB", img.size, colour))
    r, g, b = diff.split()
    return _flag(ImageChops.lighter(ImageChops.lighter(r, g), b), lambda v: v <= tol)


def count(img: Image.Image, box: tuple[int, int, int, int], masker: Callable[[Image.Image], Image.Image]) -> int:
    return masker(img.crop(box)).histogram()[255]


def not_white(img: Image.Image) -> Image.Image:
    return ImageChops.invert(mask_colour(img, WHITE, 0))


def colour_bbox(img: Image.Image, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> tuple[int, ...]:
    bbox = mask_colour(img.crop(box), colour).getbbox()
    assert bbox is not None, f"colour {colour} not found"
    return bbox


# ------------------------------------------------------------------ geometry


def test_2x3_grid_is_margins_plus_cells() -> None:
    img, lay = grid(2, 3)
    assert img.size == (lay.width, lay.height)
    assert img.width == lay.grid_left + 2 * C + lay.margin
    assert img.height == lay.grid_top + 3 * C + lay.footer_height + lay.margin
    assert lay.cell_box(1, 2) == (lay.grid_left + C, lay.grid_top + 2 * C, lay.grid_left + 2 * C, lay.grid_top + 3 * C)
    assert img.mode == "RGB"


def test_grid_grows_by_exactly_one_cell_per_column_and_row() -> None:
    small, _ = grid(2, 2)
    wide, _ = grid(3, 2)
    tall, _ = grid(2, 3)
    assert wide.width - small.width == C and wide.height == small.height
    assert tall.height - small.height == C and tall.width == small.width
    half, lay = grid(2, 2, cell_size=160)
    assert half.width == lay.grid_left + 2 * 160 + lay.margin


def test_background_is_white_and_margins_are_blank() -> None:
    img, lay = grid(2, 2)
    assert img.getpixel((0, 0)) == WHITE
    assert count(img, (0, 0, img.width, lay.margin), not_white) == 0
    assert count(img, (img.width - lay.margin, 0, img.width, img.height), not_white) == 0


# ------------------------------------------------------------------ legends and header


def test_legends_are_drawn_in_their_bands() -> None:
    img, lay = grid(2, 3)
    x_band = (lay.grid_left, lay.band_top, lay.grid_left + 2 * C, lay.grid_top)
    assert count(img, x_band, mask_dark) > 50, "X title and labels missing"
    for x in range(2):  # every column has its label
        left = lay.grid_left + x * C
        assert count(img, (left, lay.x_labels_top, left + C, lay.grid_top), mask_dark) > 10
    assert lay.legend_width > 0
    for y in range(3):  # every row has its label in the Y legend column
        top = lay.grid_top + y * C
        assert count(img, (lay.margin, top, lay.grid_left, top + C), mask_dark) > 10
    corner = (lay.margin, lay.band_top, lay.grid_left, lay.grid_top)
    assert count(img, corner, mask_dark) > 20, "Y title missing"


def test_axis_titles_are_shown_once() -> None:
    img, lay = grid(3, 1, x_title="temperature", y_title=None, y_labels=[""])
    # with y_title None and one row there is no Y legend column
    assert lay.legend_width == 0
    assert lay.grid_left == lay.margin
    assert lay.x_title == "temperature"
    # the X title sits over the first column only
    title_band = (lay.grid_left, lay.band_top, img.width, lay.x_labels_top)
    bbox = mask_dark(img.crop(title_band)).getbbox()
    assert bbox is not None and bbox[2] < C


def test_titles_with_arrows_are_not_doubled() -> None:
    _, lay = grid(2, 2, x_title="temperature →", y_title="size ↓")
    assert lay.x_title == "temperature"
    assert lay.y_title_lines == ("size",)


def test_header_is_drawn_and_moves_the_grid_down() -> None:
    with_header, lay = grid(2, 2, header="gemini-2.5-flash-image-official · 1K · top_p 0.95")
    without, lay0 = grid(2, 2, header="")
    assert lay.grid_top > lay0.grid_top
    assert with_header.height > without.height
    band = (lay.margin, lay.header_top, with_header.width - lay.margin, lay.band_top)
    assert count(with_header, band, not_white) > 50


def test_long_labels_and_header_are_wrapped_and_ellipsized() -> None:
    long = "a very long replacement text for the prompt that goes on and on " * 6
    img, lay = grid(2, 2, x_labels=[long, "cat"], y_labels=[long, "x"], header=long * 20, footer=long * 5)
    short_img, short_lay = grid(2, 2)
    # the grid does not widen for a long X label, and the label takes at most 3 lines
    assert len(lay.x_label_lines[0]) == 3 and lay.x_label_lines[0][-1].endswith("…")
    assert lay.x_label_lines[1] == ("cat",)
    assert len(lay.header_lines) == 3 and lay.header_lines[-1].endswith("…")
    assert len(lay.footer_lines) == 2 and lay.footer_lines[-1].endswith("…")
    assert lay.y_label_lines[0][-1].endswith("…")
    assert lay.legend_width <= round(0.75 * C)
    assert img.width - short_img.width <= lay.legend_width - short_lay.legend_width
    font = lay.fonts.label
    for line in lay.x_label_lines[0]:
        assert font.getlength(line) <= C
    for line in lay.header_lines:
        assert font.getlength(line) <= img.width - 2 * lay.margin


def test_unbreakable_words_are_split() -> None:
    _, lay = grid(1, 1, x_labels=["x" * 200], y_labels=["1:1"])
    assert 1 < len(lay.x_label_lines[0]) <= 3


def test_title_for_z_grids() -> None:
    img, lay = grid(2, 2, title="size = 16:9 (grid 2 of 3)")
    assert lay.title_lines == ("size = 16:9 (grid 2 of 3)",)
    band = (lay.margin, lay.title_top, img.width - lay.margin, lay.header_top)
    assert count(img, band, mask_dark) > 50


# ------------------------------------------------------------------ cells


def test_failed_cell_is_a_red_placeholder_with_its_error() -> None:
    tiles = {
        (0, 0): [Tile("done", solid(64, 64))],
        (1, 0): [Tile("failed", error="content policy violation; refunded")],
    }
    img, lay = grid(2, 1, tiles=tiles, y_title=None, y_labels=[""])
    failed_box = lay.cell_box(1, 0)
    assert count(img, failed_box, mask_reddish) > 400  # the red edge and the dark-red text
    assert count(img, failed_box, lambda i: mask_colour(i, (253, 236, 236), 0)) > 0.5 * C * C
    assert count(img, lay.cell_box(0, 0), mask_reddish) == 0


@pytest.mark.parametrize("state", ["expired", "timeout"])
def test_other_failures_are_red_too(state: str) -> None:
    img, lay = grid(1, 1, tiles={(0, 0): [Tile(state, error="x")]}, y_title=None, y_labels=[""])
    assert count(img, lay.cell_box(0, 0), mask_reddish) > 400


def test_pending_cells_are_neutral_and_show_their_state() -> None:
    tiles = {(0, 0): [Tile("in_progress")], (1, 0): [Tile("queued")]}
    img, lay = grid(2, 1, tiles=tiles, y_title=None, y_labels=[""])
    for x in range(2):
        box = lay.cell_box(x, 0)
        assert count(img, box, mask_reddish) == 0
        assert count(img, box, lambda i: mask_colour(i, (246, 247, 249), 0)) > 0.5 * C * C
        assert count(img, box, lambda i: mask_colour(i, (108, 117, 125), 60)) > 20  # the state text
    # the two states are written differently
    assert img.crop(lay.cell_box(0, 0)).tobytes() != img.crop(lay.cell_box(1, 0)).tobytes()


def test_missing_cells_and_unknown_states_still_render() -> None:
    tiles = {(0, 0): [Tile("cancelled", error="cancelled by the user")], (1, 0): [Tile("done")]}
    img, lay = grid(3, 1, tiles=tiles, y_title=None, y_labels=[""])  # (2, 0) is missing entirely
    assert count(img, lay.cell_box(2, 0), lambda i: mask_colour(i, (246, 247, 249), 0)) > 0.5 * C * C
    assert count(img, lay.cell_box(0, 0), mask_reddish) == 0


def test_job_state_enums_are_accepted() -> None:
    tiles = {(0, 0): [Tile(JobState.FAILED, error="boom")]}
    img, lay = grid(1, 1, tiles=tiles, y_title=None, y_labels=[""])
    assert count(img, lay.cell_box(0, 0), mask_reddish) > 400


def test_wide_tile_keeps_its_aspect_ratio_in_a_square_box() -> None:
    tiles = {(0, 0): [Tile("done", solid(1344, 768, BLUE))], (1, 0): [Tile("done", solid(768, 1344, GREEN))]}
    img, lay = grid(2, 1, tiles=tiles, y_title=None, y_labels=[""])
    pad = lay.fonts.pad
    inner = C - 2 * pad
    left, top, right, bottom = colour_bbox(img, lay.cell_box(0, 0), BLUE)
    assert abs((right - left) / (bottom - top) - 16 / 9) < 0.03
    assert right - left == inner  # as wide as the box allows
    assert abs((top - pad) - (C - pad - bottom)) <= 1  # centred vertically (letterboxed)
    left, top, right, bottom = colour_bbox(img, lay.cell_box(1, 0), GREEN)
    assert abs((bottom - top) / (right - left) - 16 / 9) < 0.03
    assert bottom - top == inner
    assert abs((left - pad) - (C - pad - right)) <= 1  # centred horizontally (pillarboxed)


def test_small_images_are_scaled_up_to_fill_the_box() -> None:
    tiles = {(0, 0): [Tile("done", solid(32, 32, BLUE))]}
    img, lay = grid(1, 1, tiles=tiles, y_title=None, y_labels=[""])
    left, top, right, bottom = colour_bbox(img, lay.cell_box(0, 0), BLUE)
    assert right - left == bottom - top == C - 2 * lay.fonts.pad


def test_transparent_images_are_composited_on_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    img, lay = grid(1, 1, tiles={(0, 0): [Tile("done", rgba)]}, y_title=None, y_labels=[""])
    left, top, _, _ = lay.cell_box(0, 0)
    assert img.getpixel((left + C // 2, top + C // 2)) == WHITE


def test_repeats_form_a_mini_row_in_the_cell() -> None:
    tiles = {(0, 0): [Tile("done", solid(512, 512, BLUE)), Tile("done", solid(512, 512, GREEN))]}
    img, lay = grid(1, 1, tiles=tiles, y_title=None, y_labels=[""])
    box = lay.cell_box(0, 0)
    bl, bt, br, bb = colour_bbox(img, box, BLUE)
    gl, gt, _, gb = colour_bbox(img, box, GREEN)
    assert br <= gl  # side by side, first repeat on the left
    assert (bt, bb) == (gt, gb)
    assert br - bl == bb - bt  # still square


def test_four_square_repeats_use_a_2x2_block_and_wide_pairs_a_column() -> None:
    assert grid_mod._arrangement(4, [1.0] * 4, 310, 5) == (2, 2)
    assert grid_mod._arrangement(2, [1.0, 1.0], 310, 5) == (2, 1)
    assert grid_mod._arrangement(2, [16 / 9, 16 / 9], 310, 5) == (1, 2)
    assert grid_mod._arrangement(3, [], 310, 5) == (2, 2)
    assert grid_mod._arrangement(1, [], 310, 5) == (1, 1)


def test_cached_tiles_get_a_badge() -> None:
    tiles = {(0, 0): [Tile("done", solid(256, 256, BLUE))], (1, 0): [Tile("cached", solid(256, 256, BLUE))]}
    img, lay = grid(2, 1, tiles=tiles, y_title=None, y_labels=[""])

    def corner(x: int) -> tuple[int, int, int, int]:
        _, _, r, b = lay.cell_box(x, 0)
        return (r - C // 3, b - C // 6, r, b)

    assert count(img, corner(0), mask_dark) == 0
    assert count(img, corner(1), mask_dark) > 100


# ------------------------------------------------------------------ fonts


def test_fallback_to_pillows_default_font(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(primitives, "FONT_CANDIDATES", ())
    monkeypatch.setattr(primitives, "BOLD_FONT_CANDIDATES", ())
    primitives._load_font.cache_clear()
    try:
        img, lay = grid(2, 2, header="café — naïve → ≈ ×", x_labels=["é", "→"])
        assert count(img, (lay.grid_left, lay.band_top, img.width, lay.grid_top), mask_dark) > 20
        # characters the bundled font lacks become ASCII instead of boxes
        font = lay.fonts.label
        assert primitives._drawable(font, "café → ×") in ("café → ×", "cafe -> x")
    finally:
        primitives._load_font.cache_clear()


# ------------------------------------------------------------------ sweeps


def sweep_plan(repeats: int = 2, third: str | None = None) -> SweepPlan:
    axes = [parse_axis("temperature=0.2,0.8,1.4"), parse_axis("size=1:1,16:9")]
    if third:
        axes.append(parse_axis(third))
    return plan_sweep(GenerationParams.create("A paper-cut fox in a forest"), axes, repeats=repeats)


def test_plan_header_shows_common_parameters() -> None:
    plan = sweep_plan()
    assert plan_header(plan) == 'gemini-2.5-flash-image-official · 1K · top_p 0.95 · "A paper-cut fox in a forest"'
    sr = plan_sweep(GenerationParams.create("A paper-cut fox in a forest"), [parse_axis("prompt=fox|owl")])
    assert plan_header(sr).endswith('"A paper-cut [fox] in a forest"')
    long = plan_sweep(GenerationParams.create("fox " * 500), [parse_axis("t=0.2,0.4")])
    assert len(plan_header(long)) < 400


def test_grid_for_plan_arranges_cells_by_position_and_repeat() -> None:
    plan = sweep_plan(repeats=2)
    colours = {}
    tiles = {}
    for cell in plan.cells:
        colour = (40 * cell.x + 20, 100 * cell.y + 30, 120 * cell.repeat + 10)
        colours[cell.index] = colour
        tiles[cell.index] = Tile("done", solid(64, 64, colour))
    img = grid_for_plan(plan, tiles)
    lay = layout_grid(
        x_title="temperature",
        x_labels=["0.2", "0.8", "1.4"],
        y_title="size",
        y_labels=["1:1", "16:9"],
        header=plan_header(plan),
    )
    assert img.size == (lay.width, lay.height)
    for cell in plan.cells:
        left, top, right, bottom = colour_bbox(img, lay.cell_box(cell.x, cell.y), colours[cell.index])
        assert right - left > 100 and bottom - top > 100
    # within a cell, repeat 0 comes first (left, or top)
    box = lay.cell_box(1, 1)
    first = colour_bbox(img, box, colours[plan.cell_at(1, 1, 0, 0).index])
    second = colour_bbox(img, box, colours[plan.cell_at(1, 1, 0, 1).index])
    assert (first[0], first[1]) < (second[0], second[1])


def test_grid_for_plan_fills_missing_tiles_and_checks_z() -> None:
    plan = sweep_plan(repeats=1, third="top_p=0.5,0.9")
    img = grid_for_plan(plan, {}, z=1, cell_size=160, footer="0/12 done")
    assert img.width > 3 * 160
    with pytest.raises(IndexError, match="z=2 is out of range; this sweep has 2 grids"):
        grid_for_plan(plan, {}, z=2)


def test_one_axis_plan_has_no_y_legend() -> None:
    plan = plan_sweep(GenerationParams.create("a fox"), [parse_axis("t=0.2,0.8")])
    img = grid_for_plan(plan, {})
    lay = layout_grid(x_title="temperature", x_labels=["0.2", "0.8"], y_title=None, y_labels=[""])
    assert lay.legend_width == 0
    assert img.width == lay.width


# ------------------------------------------------------------------ PNG size budget


def test_sixteen_image_grid_png_is_well_under_2_mb() -> None:
    tiles = {(x, y): [Tile("done", standin(x + 4 * y, 1024, 1024))] for x in range(4) for y in range(4)}
    img, _ = grid(4, 4, tiles=tiles, footer="16/16 done, $0.78")
    size = len(png_bytes(img))
    assert size < MAX_GRID_PNG_BYTES // 2, f"{size:,} bytes"
    assert encode_grid_png(img) == png_bytes(img)  # small grids stay full colour


def test_photographic_sixteen_image_grid_is_kept_under_2_mb() -> None:
    base = [photo_like(seed) for seed in range(4)]
    tiles = {
        (x, y): [Tile("done", base[x].rotate(90 * y))]  # 16 different photos
        for x in range(4)
        for y in range(4)
    }
    img, _ = grid(4, 4, tiles=tiles)
    raw = len(png_bytes(img))
    data = encode_grid_png(img, {"sweep_id": "abc", "params": {"prompt": "a fox"}})
    assert len(data) < 0.75 * MAX_GRID_PNG_BYTES, f"{len(data):,} bytes (RGB would be {raw:,})"
    back = Image.open(io.BytesIO(data))
    assert back.size == img.size  # same pixels, fewer colours
    assert read_provenance(data)["sweep_id"] == "abc"


def test_encode_grid_png_scales_down_as_a_last_resort() -> None:
    img = photo_like(3, 600)
    data = encode_grid_png(img, max_bytes=60_000)
    assert len(data) <= 60_000
    assert Image.open(io.BytesIO(data)).width < 600


def test_a_fast_page_png_has_the_same_pixels_and_provenance_and_stops_at_its_cap() -> None:
    """Saved grid pages are encoded at a fast zlib level by the package's own writer (Up filter + zlib, which
    lets other threads run): the pixels are exactly the grid's, the provenance is read back, and a cap stops it."""
    from gemimg_jupyter.draw.images import encode_png

    img = Image.new("RGB", (700, 500), "white")
    img.paste(photo_like(1, 320), (10, 10))
    img.paste(standin(2, 300, 200), (360, 40))
    for level in (1, 3):
        data = encode_png(img, {"sweep_id": "abc", "page": 2}, compress_level=level)
        assert data is not None
        back = Image.open(io.BytesIO(data))
        back.load()
        assert back.mode == "RGB" and back.size == img.size
        assert ImageChops.difference(back, img).getbbox() is None  # every pixel as drawn
        assert read_provenance(data) == {"sweep_id": "abc", "page": 2}
    assert encode_png(img, None, compress_level=1, max_bytes=1_000) is None  # found too big, not encoded whole
    page = encode_grid_png(img, {"sweep_id": "abc"}, compress_level=3)
    assert ImageChops.difference(Image.open(io.BytesIO(page)).convert("RGB"), img).getbbox() is None
