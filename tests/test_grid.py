"""Comparison grids: layout, legends, placeholders, aspect ratios, PNG size."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.draw import grid as grid_mod
from gemimg_jupyter.draw import primitives
from gemimg_jupyter.draw.grid import (
    MAX_GRID_PNG_BYTES,
    Tile,
    cell_aspects,
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


def plan_layout(plan: SweepPlan, x: tuple[str, list[str]], y: tuple[str, list[str]]) -> grid_mod.GridLayout:
    """The layout a plan's grid should have, written out by hand: its axes' titles and labels, its header and shapes."""
    return layout_grid(
        x_title=x[0],
        x_labels=x[1],
        y_title=y[0],
        y_labels=y[1],
        header=plan_header(plan),
        aspects=cell_aspects(plan),
        repeats=plan.repeats,
    )


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
    lay = plan_layout(plan, ("temperature", ["0.2", "0.8", "1.4"]), ("size", ["1:1", "16:9"]))
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


# ------------------------------------------------------------------ boxes shaped by the cell's aspect ratio


def shaped_sweep() -> tuple[SweepPlan, dict[int, Tile], dict[int, tuple[int, int, int]]]:
    """A size sweep 16:9, 1:1, 9:16 across, two temperatures down; each image its size's shape and own colour."""
    plan = plan_sweep(
        GenerationParams.create("a paper-cut fox"), [parse_axis("size=16:9,1:1,9:16"), parse_axis("t=0.2,0.8")]
    )
    shapes = {"16:9": (1344, 768), "1:1": (1024, 1024), "9:16": (768, 1344)}
    colours = {cell.index: (30 + 60 * cell.x, 60 + 90 * cell.y, 200 - 50 * cell.x) for cell in plan.cells}
    tiles = {c.index: Tile("done", solid(*shapes[c.params.size], colours[c.index])) for c in plan.cells}
    return plan, tiles, colours


def test_mixed_aspect_ratios_get_boxes_of_their_shape() -> None:
    plan, tiles, colours = shaped_sweep()
    img = grid_for_plan(plan, tiles)
    lay = plan_layout(plan, ("size", ["16:9", "1:1", "9:16"]), ("temperature", ["0.2", "0.8"]))
    assert img.size == (lay.width, lay.height)
    wide, square, tall = lay.col_widths
    assert wide > square == C > tall  # each column follows its images' shape
    assert img.width == lay.grid_left + wide + square + tall + lay.margin
    pad = lay.fonts.pad
    for cell in plan.cells:
        box = lay.cell_box(cell.x, cell.y)
        left, top, right, bottom = colour_bbox(img, box, colours[cell.index])
        w, h = right - left, bottom - top
        assert right - left == box[2] - box[0] - 2 * pad  # as wide as its column allows
        # about the area of a square cell's image, never a 16:9 strip letterboxed into a square box
        assert w * h > 0.85 * (C - 2 * pad) ** 2, (cell.params.size, w, h)
    # the tall column's box is its image's shape: the image fills it both ways
    left, top, right, bottom = colour_bbox(img, lay.cell_box(2, 0), colours[plan.cell_at(2, 0).index])
    assert bottom - top >= 0.96 * (lay.row_height(0) - 2 * pad)  # 768 × 1344 is 9:16 within 2 %


def test_rows_of_one_shape_are_that_shape_and_square_sweeps_are_unchanged() -> None:
    wide = layout_grid(
        x_title="t", x_labels=["a", "b"], y_title=None, y_labels=[""], aspects={(0, 0): 16 / 9, (1, 0): 16 / 9}
    )
    assert wide.col_widths == (427, 427) and wide.row_heights == (240,)
    square = layout_grid(x_title="t", x_labels=["a", "b"], y_title=None, y_labels=[""], aspects={(0, 0): 1.0})
    assert square.col_widths == () and square.cell_box(1, 0) == (
        square.grid_left + C,
        square.grid_top,
        square.grid_left + 2 * C,
        square.grid_top + C,
    )


def test_a_page_canvas_pastes_into_shaped_boxes_as_the_whole_page_draws_them() -> None:
    plan, tiles, _ = shaped_sweep()
    page = grid_mod.plan_pages(plan)[0]
    canvas = grid_mod.PageCanvas(plan, {}, page, cell_size=C, footer="0/6 done")
    for cell in plan.cells:
        canvas.paste(cell, tiles[cell.index])
    assert canvas.finish("6/6 done")
    whole = grid_mod.grid_page(plan, tiles, page, cell_size=C, footer="6/6 done")
    assert ImageChops.difference(canvas.image, whole).getbbox() is None


# ------------------------------------------------------------------ Z grids, blocked cells


def test_a_z_grid_header_names_its_own_prompt_word() -> None:
    plan = plan_sweep(
        GenerationParams.create("A paper-cut fox in a forest"),
        [parse_axis("t=0.2,0.8"), parse_axis("top_p=0.5,0.9"), parse_axis("prompt=fox|owl")],
    )
    headers = [plan_header(plan, z=z) for z in range(2)]
    assert headers[0].endswith('"A paper-cut [fox] in a forest"')
    assert headers[1].endswith('"A paper-cut [owl] in a forest"')
    # drawn: the second grid's header band differs from one drawn with the first grid's header
    second = grid_for_plan(plan, {}, z=1)
    lay = layout_grid(x_title="t", x_labels=["0.2"], y_title=None, y_labels=[""], header=headers[1], title="x")
    assert "[owl]" in " ".join(lay.header_lines)
    as_first = grid_mod.render_grid(
        **{**grid_mod._page_render_args(plan, {}, grid_mod.plan_pages(plan)[1], C, "", "light"), "header": headers[0]}
    )
    assert ImageChops.difference(second.convert("RGB"), as_first).getbbox() is not None


def test_blocked_cells_are_amber_and_failed_ones_red() -> None:
    tiles = {
        (0, 0): [Tile(JobState.BLOCKED, error="blocked by the safety filter")],
        (1, 0): [Tile("failed", error="boom")],
    }
    img, lay = grid(2, 1, tiles=tiles, y_title=None, y_labels=[""])
    amber, red = primitives.LIGHT.blocked.edge, primitives.LIGHT.failed.edge
    assert amber is not None and red is not None
    assert count(img, lay.cell_box(0, 0), lambda im: mask_colour(im, amber)) > 400
    assert count(img, lay.cell_box(0, 0), lambda im: mask_colour(im, red)) == 0
    assert count(img, lay.cell_box(1, 0), lambda im: mask_colour(im, red)) > 400


def test_side_by_side_places_z_grids_left_to_right_and_wraps_when_wide() -> None:
    from gemimg_jupyter.draw.sheets import side_by_side

    dark = primitives.DARK.bg
    grids = [solid(800, 500, dark), solid(800, 600, BLUE), solid(800, 400, GREEN)]
    both = side_by_side(grids[:2], gap=16)
    assert both.size == (1616, 600)
    assert both.getpixel((900, 100)) == BLUE and both.getpixel((100, 550)) == dark  # ground: the first grid's
    wrapped = side_by_side(grids, max_width=2000, gap=16)
    assert wrapped.size == (1616, 600 + 16 + 400)
    assert wrapped.getpixel((100, 700)) == GREEN


# ------------------------------------------------------------------ right-to-left text, emoji


def ink_of(text: str, font: object, *, basic_text: str | None = None) -> Image.Image:
    """``text`` drawn by :func:`primitives.draw_text` (or, with ``basic_text``, that string drawn as it is)."""
    img = Image.new("L", (600, 60), 0)
    draw = ImageDraw.Draw(img)
    if basic_text is None:
        primitives.draw_text(draw, (10, 10), text, font, 255)  # type: ignore[arg-type]
    else:
        draw.text((10, 10), basic_text, font=font, fill=255)  # type: ignore[arg-type]
    return img


def basic_font(size: int = 28) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype("DejaVuSans.ttf", size, layout_engine=ImageFont.Layout.BASIC)


def same_ink(a: Image.Image, b: Image.Image) -> bool:
    return ImageChops.difference(a, b).getbbox() is None


def likeness(a: Image.Image, b: Image.Image) -> float:
    """Normalised correlation of two drawings, slightly blurred (Raqm kerns a glyph a pixel apart from BASIC)."""
    xs, ys = (bytes(im.filter(ImageFilter.GaussianBlur(1.5)).tobytes()) for im in (a, b))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    den = math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
    return num / den if den else 0.0


HEBREW = "שלום עולם"  # "hello world", logical order
HEBREW_VISUAL = "םלוע םולש"  # as it must appear, left to right


def test_hebrew_is_drawn_in_visual_order_without_raqm() -> None:
    font = basic_font()
    drawn = ink_of(HEBREW, font)
    assert same_ink(drawn, ink_of("", font, basic_text=HEBREW_VISUAL))
    assert not same_ink(drawn, ink_of("", font, basic_text=HEBREW))  # not the logical order, reversed on screen
    mixed = ink_of("a fox שלום", font)  # a right-to-left run inside left-to-right text turns alone
    assert same_ink(mixed, ink_of("", font, basic_text="a fox םולש"))


def test_hebrew_is_drawn_in_visual_order_with_raqm() -> None:
    from PIL import features

    if not features.check("raqm"):
        pytest.skip("this Pillow has no Raqm (no FriBiDi): the fallback test covers it")
    raqm = ImageFont.truetype("DejaVuSans.ttf", 28, layout_engine=ImageFont.Layout.RAQM)
    drawn = ink_of(HEBREW, raqm)
    visual = likeness(drawn, ink_of("", basic_font(), basic_text=HEBREW_VISUAL))
    logical = likeness(drawn, ink_of("", basic_font(), basic_text=HEBREW))
    assert visual > 0.85 and visual > logical + 0.1, (visual, logical)


def test_arabic_is_joined_and_ordered_without_raqm() -> None:
    import arabic_reshaper
    from PIL import features

    font = basic_font()
    drawn = ink_of("مرحبا بالعالم", font)
    joined_visual = arabic_reshaper.reshape("مرحبا بالعالم")[::-1]  # joining forms, right to left
    assert same_ink(drawn, ink_of("", font, basic_text=joined_visual))
    assert not same_ink(drawn, ink_of("", font, basic_text="مرحبا بالعالم"))  # isolated letters, left to right
    if features.check("raqm"):  # and it looks like what HarfBuzz shapes
        raqm = ImageFont.truetype("DejaVuSans.ttf", 28, layout_engine=ImageFont.Layout.RAQM)
        shaped = ink_of("مرحبا بالعالم", raqm)
        assert likeness(drawn, shaped) > 0.8  # the same forms; HarfBuzz kerns them a little tighter
        assert likeness(ink_of("", font, basic_text="مرحبا بالعالم"), shaped) < 0.7


def test_emoji_become_a_visible_mark_not_a_question_mark() -> None:
    font = primitives._load_font(28)
    assert primitives._drawable(font, "a fox 🦊 in a 🌲 forest") == "a fox ◆ in a ◆ forest"
    assert primitives._drawable(font, "family 👨‍👩‍👧 👍🏽 🇫🇷") == "family ◆ ◆ ◆"  # one mark per sequence
    drawn = ink_of("fox 🦊", font)
    assert same_ink(drawn, ink_of("", font, basic_text="fox ◆"))
    assert not same_ink(drawn, ink_of("", font, basic_text="fox ?"))


def test_a_grid_title_in_hebrew_is_drawn_right_to_left() -> None:
    img, lay = grid(1, 1, title=HEBREW, header="", y_title=None, y_labels=[""])
    box = (lay.margin, lay.title_top, lay.margin + 300, lay.title_top + lay.fonts.title_line)
    band = ImageChops.invert(img.crop(box).convert("L"))
    bold = ImageFont.truetype("DejaVuSans-Bold.ttf", lay.fonts.title.size, layout_engine=ImageFont.Layout.BASIC)

    def plain(text: str) -> Image.Image:
        ref = Image.new("L", band.size, 0)
        ImageDraw.Draw(ref).text((0, 0), text, font=bold, fill=255)
        return ref

    visual, logical = likeness(band, plain(HEBREW_VISUAL)), likeness(band, plain(HEBREW))
    assert visual > 0.98 and visual > logical + 0.05, (visual, logical)


# ------------------------------------------------------------------ the dark chrome


def luminance(rgb: tuple[int, int, int]) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("pal", [primitives.LIGHT, primitives.DARK], ids=lambda p: p.name)
def test_every_text_colour_is_at_least_4_5_to_1_on_its_ground(pal: primitives.Palette) -> None:
    pairs = {"ink": (pal.ink, pal.bg), "muted": (pal.muted, pal.bg)}
    for name in ("pending", "failed", "blocked"):
        tone = getattr(pal, name)
        pairs[name] = (tone.ink, tone.fill)
    low = {name: round(contrast(*pair), 2) for name, pair in pairs.items() if contrast(*pair) < 4.5}
    assert low == {}, f"under 4.5:1 in the {pal.name} theme"


def test_a_dark_grid_draws_its_chrome_dark_and_leaves_the_images_alone() -> None:
    tiles = {(0, 0): [Tile("done", solid(256, 256, BLUE))], (1, 0): [Tile("failed", error="boom")]}
    kwargs = {"x_title": "temperature", "x_labels": ["0.2", "0.8"], "y_title": None, "y_labels": [""]}
    light = render_grid(tiles=tiles, header="model · 1K", footer="1/2 done, 1 failed", **kwargs)  # type: ignore[arg-type]
    dark = render_grid(tiles=tiles, header="model · 1K", footer="1/2 done, 1 failed", theme="dark", **kwargs)  # type: ignore[arg-type]
    lay = layout_grid(header="model · 1K", footer="1/2 done, 1 failed", theme="dark", **kwargs)  # type: ignore[arg-type]
    assert light.size == dark.size
    pal = primitives.DARK
    assert dark.getpixel((1, 1)) == pal.bg and light.getpixel((1, 1)) == WHITE
    # the image is the same pixels in both
    box = lay.cell_box(0, 0)
    assert colour_bbox(dark, box, BLUE) == colour_bbox(light, box, BLUE)
    # the text drawn is light on dark: the header and footer hold their colours, read against the ground
    header = dark.crop((lay.margin, lay.header_top, lay.width - lay.margin, lay.header_top + lay.fonts.line))
    footer = dark.crop((lay.margin, lay.grid_bottom, lay.width - lay.margin, lay.height - lay.margin))
    for band, colour in ((header, pal.muted), (footer, pal.muted)):
        assert count(band, (0, 0, *band.size), lambda im, c=colour: mask_colour(im, c, tol=2)) > 5
        assert contrast(colour, pal.bg) >= 4.5
    with pytest.raises(ValueError, match="grid theme 'purple' is not known"):
        layout_grid(theme="purple", **kwargs)  # type: ignore[arg-type]


def test_the_history_strip_takes_the_theme_and_shapes_its_captions() -> None:
    from gemimg_jupyter.draw.sheets import contact_sheet

    thumbs = [solid(96, 96, BLUE), solid(96, 54, GREEN)]
    light = contact_sheet(thumbs, ["1. a fox 🦊", "2. שלום"], [False, True], thumb=96, per_row=2)
    dark = contact_sheet(thumbs, ["1. a fox 🦊", "2. שלום"], [False, True], thumb=96, per_row=2, theme="dark")
    assert light.getpixel((1, 1)) == WHITE and dark.getpixel((1, 1)) == primitives.DARK.bg
    font = primitives._load_font(11)
    caption = dark.crop((6, 6 + 96 + 3, 6 + 96, 6 + 96 + 18)).convert("L")
    expected = Image.new("RGB", (96, 15), primitives.DARK.bg)
    primitives.draw_text(ImageDraw.Draw(expected), (0, 0), "1. a fox ◆", font, primitives.DARK.ink)
    assert same_ink(caption.crop((0, 0, 96, 15)), expected.convert("L"))  # the emoji is the mark, light on dark


def test_repeats_of_wide_images_are_not_a_strip_in_a_square_box() -> None:
    """The README's sweep: two repeats of 1:1 and of 16:9. A cell's box is shaped for its repeats packed
    squarely (two squares side by side, two wide images one above the other), never 150 × 85 tiles."""
    plan = sweep_plan(repeats=2)
    shapes = {"1:1": (1024, 1024), "16:9": (1344, 768)}
    colours = {c.index: (20 + 40 * c.x, 40 + 100 * c.y, 60 + 120 * c.repeat) for c in plan.cells}
    tiles = {c.index: Tile("done", solid(*shapes[c.params.size], colours[c.index])) for c in plan.cells}
    img = grid_for_plan(plan, tiles)
    lay = plan_layout(plan, ("temperature", ["0.2", "0.8", "1.4"]), ("size", ["1:1", "16:9"]))
    assert img.size == (lay.width, lay.height)
    for cell in plan.cells:
        left, top, right, bottom = colour_bbox(img, lay.cell_box(cell.x, cell.y), colours[cell.index])
        w, h = right - left, bottom - top
        if cell.params.size == "1:1":
            assert w == h and w > 0.65 * C  # two squares side by side: 216 px each, not 150
        else:
            assert w > 0.85 * C and h > 0.45 * C  # two wide images stacked: 283 × 162, not 150 × 85
    square = colour_bbox(img, lay.cell_box(0, 0), colours[plan.cell_at(0, 0, 0, 0).index])
    second = colour_bbox(img, lay.cell_box(0, 0), colours[plan.cell_at(0, 0, 0, 1).index])
    wide = colour_bbox(img, lay.cell_box(0, 1), colours[plan.cell_at(0, 1, 0, 0).index])
    below = colour_bbox(img, lay.cell_box(0, 1), colours[plan.cell_at(0, 1, 0, 1).index])
    assert second[0] > square[2] and below[1] > wide[3]  # side by side; one above the other


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
