"""Every notebook in ``notebooks/`` runs in a real kernel (nbclient) against the simulator.

Each notebook is executed in a temporary directory with ``GEMIMG_BACKEND=sim``,
``GEMIMG_OUTPUT_DIR`` in that directory and no ``TOAPIS_API_KEY``. Every
notebook must finish without error outputs and without a status line left
behind (``%gemimg wait`` puts every image in place); a notebook can add its own
checks in :data:`CHECKS`. Notebooks with ``metadata.gemimg.browser_only`` are
left to the browser tests.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from PIL import Image

from gemimg_jupyter.domain.models import pixel_size

from .support import FAKE_KEY, output_image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
_spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
assert _spec is not None and _spec.loader is not None
make_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_notebooks)

#: A status line still on screen means an image never arrived (``gemimg ◑ in_progress · …``).
_STATUS = re.compile(r"^gemimg \S+ (queued|uploading|submitting|submitted|in_progress|downloading) ·")


def browser_only(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return bool(nb.metadata.get("gemimg", {}).get("browser_only"))


def notebook_params() -> list[Any]:
    params = []
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        marks = [pytest.mark.notebook]
        if browser_only(path):
            marks.append(pytest.mark.skip(reason="browser-only notebook (covered by the browser tests)"))
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def run(path: Path, workdir: Path, **env: str) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return make_notebooks.execute(nb, cwd=workdir, env=make_notebooks.sim_env(workdir / "gemimg_outputs", **env))


def outputs(nb: nbformat.NotebookNode) -> list[tuple[int, Any]]:
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code" for out in cell.outputs]


def png_outputs(nb: nbformat.NotebookNode, key: str) -> list[tuple[int, bytes, dict[str, Any]]]:
    """Every image output whose metadata holds ``key``: (cell index, PNG bytes, that metadata)."""
    found = []
    for i, out in outputs(nb):
        meta = out.get("metadata", {}).get("text/html", {})  # the image is stored once, in the <img> of text/html
        if key in meta:
            found.append((i, output_image(out["data"]), dict(meta[key])))
    return found


def images(nb: nbformat.NotebookNode) -> list[tuple[int, bytes, dict[str, Any]]]:
    """Every single-image output: (cell index, preview PNG bytes, gemimg provenance)."""
    return png_outputs(nb, "gemimg")


def assert_clean(nb: nbformat.NotebookNode) -> None:
    for i, out in outputs(nb):
        assert out.output_type != "error", f"cell {i} raised {out.get('ename')}: {out.get('evalue')}"
        if out.output_type == "stream":
            assert out.name != "stderr" or "Traceback" not in out.text, f"cell {i} wrote a traceback"
        text = out.get("data", {}).get("text/plain", "")
        assert not _STATUS.match(text), f"cell {i} still shows a status line: {text!r}"
        assert "UsageError" not in text


def assert_image_is_right(preview: bytes, meta: dict[str, Any], workdir: Path) -> None:
    params = meta["params"]
    expected = pixel_size(params["size"], params["resolution"])
    assert tuple(meta["image_size"]) == expected
    with Image.open(io.BytesIO(preview)) as img:
        w, h = img.size
    assert max(w, h) <= 768, "previews in notebooks stay small"
    assert abs(w / h - expected[0] / expected[1]) < 0.01
    full = Path(meta["path"])
    full = full if full.is_absolute() else workdir / full
    with Image.open(full) as img:
        assert img.size == expected


# ---------------------------------------------------------------- per-notebook checks


def check_quickstart(nb: nbformat.NotebookNode, workdir: Path) -> None:
    found = images(nb)
    sizes = [meta["params"]["size"] for _, _, meta in found]
    assert sizes == ["16:9", "3:2", "1:1", "4:5", "16:9"], sizes
    for _, preview, meta in found:
        assert_image_is_right(preview, meta, workdir)
    assert [meta["cached"] for _, _, meta in found] == [False, False, False, False, True]
    assert len(found[2][2]["references"]) == 1 and len(found[3][2]["references"]) == 1
    assert found[1][2]["params"]["prompt"] == "a paper-cut fox in a misty forest, layered paper, soft shadows"
    text = "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for _, out in outputs(nb))
    assert "4 jobs finished (4 done)" in text
    assert "(1344, 768)" in text
    assert "saved by the cache" in text and "1 hit" in text


def grids(nb: nbformat.NotebookNode) -> list[tuple[int, bytes, dict[str, Any]]]:
    """Every sweep grid output: (cell index, PNG bytes, ``gemimg_sweep`` metadata)."""
    return png_outputs(nb, "gemimg_sweep")


def all_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for _, out in outputs(nb))


def assert_grid_layout(
    png: bytes, meta: dict[str, Any], workdir: Path, *, axes: list[tuple[str, int]], repeats: int, cell: int
) -> None:
    """The grid's metadata and pixels match the sweep: axes, cells, repeats, states, size, saved files."""
    from gemimg_jupyter.draw.grid import layout_grid
    from gemimg_jupyter.plans.plan import AXIS_TITLES

    assert [(a["name"], len(a["values"])) for a in meta["axes"]] == axes
    assert meta["repeats"] == repeats
    shape = [n for _, n in axes] + [1] * (3 - len(axes))
    nx, ny, nz = shape
    assert len(meta["cells"]) == nx * ny * nz * repeats
    assert {c["state"] for c in meta["cells"]} <= {"done", "cached"}, "every cell has its image"
    for c in meta["cells"]:
        assert (workdir / c["path"]).is_file(), c["path"]
    x, y = meta["axes"][0], (meta["axes"][1] if len(axes) > 1 else None)
    layouts = [
        layout_grid(
            x_title=AXIS_TITLES[x["name"]],
            x_labels=x["values"],
            y_title=AXIS_TITLES[y["name"]] if y else None,
            y_labels=y["values"] if y else [""],
            cell_size=cell,
            aspects=cell_shapes(meta, z),
            repeats=repeats,
        )
        for z in range(nz)
    ]
    saved = meta["grid_paths"]
    assert len(saved) == nz
    for path, layout in zip(saved, layouts, strict=True):  # each Z value's grid: the layout its cells' sizes give
        with Image.open(workdir / path) as img:
            # as wide as the layout; taller only by its title, prompt and footer lines (wrapped)
            assert img.width == layout.width and layout.height <= img.height < layout.height + cell // 2, (
                img.size,
                layout,
            )
    with Image.open(io.BytesIO(png)) as img:  # the notebook's picture: the Z grids side by side
        width, height = img.size
    if nz == 1:
        assert (width, height) == Image.open(workdir / saved[0]).size
    else:
        assert width >= max(lay.width for lay in layouts) and height >= max(lay.height for lay in layouts)
        assert width > min(lay.width for lay in layouts) * 1.5 or height > sum(lay.height for lay in layouts)


def cell_shapes(meta: dict[str, Any], z: int) -> dict[tuple[int, int], float]:
    """``(x, y)`` → the width/height ratio the cell's ``size`` asks for, in Z grid ``z``."""
    axes = meta["axes"]
    shapes: dict[tuple[int, int], float] = {}
    for c in meta["cells"]:
        at = [axes[i]["values"].index(c["labels"][axes[i]["name"]]) if i < len(axes) else 0 for i in range(3)]
        size = c["labels"].get("size", meta["common"].get("size", ""))
        w, sep, h = str(size).partition(":")
        if at[2] == z and sep:
            shapes[(at[0], at[1])] = float(w) / float(h)
    return shapes


def check_sweeps(nb: nbformat.NotebookNode, workdir: Path) -> None:
    found = grids(nb)
    assert len(found) == 3, [m["axes"] for _, _, m in found]
    (_, two, two_meta), (_, sr, sr_meta), (_, three, three_meta) = found
    assert_grid_layout(two, two_meta, workdir, axes=[("temperature", 3), ("size", 2)], repeats=2, cell=320)
    assert_grid_layout(sr, sr_meta, workdir, axes=[("prompt", 4)], repeats=1, cell=320)
    assert sr_meta["axes"][0]["values"] == ["forest", "ocean", "desert", "night sky"]
    assert_grid_layout(
        three, three_meta, workdir, axes=[("temperature", 2), ("top_p", 2), ("size", 2)], repeats=1, cell=240
    )
    assert [len(m["grid_paths"]) for _, _, m in found] == [1, 1, 2]
    text = all_text(nb)
    assert "6 cells × 2 repeats = 12 requests, 0 cached" in text
    assert "12/12 done (12 cached), $0.00" in text, "the re-run came from the cache"
    assert "('12/12 done, $0.59', '4/4 done, $0.20', 'grids')" in text
    assert "((2, 2, 2), 2, '8/8 done, $0.39')" in text
    assert "6 cells × 4 repeats = 24 requests, 12 cached" in text


def check_reference_images(nb: nbformat.NotebookNode, workdir: Path) -> None:
    from gemimg_jupyter.draw.images import read_provenance

    found = grids(nb)
    assert len(found) == 2
    (_, series, series_meta), (_, compare, compare_meta) = found
    assert_grid_layout(series, series_meta, workdir, axes=[("prompt", 4)], repeats=1, cell=320)
    assert_grid_layout(compare, compare_meta, workdir, axes=[("prompt", 3), ("ref", 3)], repeats=1, cell=320)
    assert compare_meta["axes"][1]["values"] == ["none", "style.png", "warm.png"]
    refs_of = {}
    for c in series_meta["cells"] + compare_meta["cells"]:
        refs_of[c["path"]] = tuple(r["sha256"] for r in read_provenance(workdir / c["path"])["references"])
    style = {refs_of[c["path"]] for c in series_meta["cells"]}
    assert len(style) == 1 and len(next(iter(style))) == 1, "the whole series shares one reference"
    by_label = {c["labels"]["ref"]: refs_of[c["path"]] for c in compare_meta["cells"]}
    assert by_label["none"] == () and by_label["style.png"] in style and len(by_label["warm.png"]) == 1
    assert sum(c["state"] == "cached" for c in compare_meta["cells"]) == 3, "the style.png row is the series"
    table = {}
    for line in all_text(nb).splitlines():
        m = re.fullmatch(r"(none|style\.png|warm\.png)\s+(\d+)\s+(\d+)", line.strip())
        if m:
            table[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    assert set(table) == {"none", "style.png", "warm.png"}, table
    assert table["style.png"][0] < table["none"][0] / 1.5, "with the reference, the colours follow it"
    assert table["warm.png"][1] < table["none"][1] / 1.5
    single = images(nb)
    assert len(single) == 1
    _, preview, meta = single[0]
    assert_image_is_right(preview, meta, workdir)
    assert len(meta["references"]) == 2
    assert "(2, (1344, 768))" in all_text(nb)


def check_editing(nb: nbformat.NotebookNode, workdir: Path) -> None:
    from gemimg_jupyter.draw.primitives import _STAR

    text = all_text(nb)
    assert "edit chain: 4 steps, root first" in text
    assert "True True True" in text and "the same edit again: cached True" in text
    assert text.count("gemimg: picked ") == 2 and text.count("★ A paper-cut fox") == 2
    picked_grid = next(
        o["data"]["image/png"] for _, o in outputs(nb) if "<SweepResult" in o.get("data", {}).get("text/plain", "")
    )
    with Image.open(io.BytesIO(base64.b64decode(picked_grid))) as grid:
        colours = dict((c, n) for n, c in grid.convert("RGB").getcolors(1 << 24) or [])
    assert colours.get(_STAR, 0) > 100, "the re-drawn grid stars the two picks"
    reports = sorted((workdir / "gemimg_outputs" / "reports").glob("*.html"))
    assert [p.name.split("_")[0] for p in reports] == ["lineage", "sweep"]
    for report in reports:
        assert report.stat().st_size < 3_000_000 and "://" not in report.read_text(encoding="utf-8")


#: notebook stem → extra assertions on the executed notebook (``workdir`` is where it ran).
CHECKS: dict[str, Callable[[nbformat.NotebookNode, Path], None]] = {"quickstart": check_quickstart}
CHECKS.update(sweeps=check_sweeps, reference_images=check_reference_images)
CHECKS.update(editing=check_editing)


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_runs_against_the_simulator(path: Path, tmp_path: Path) -> None:
    nb = run(path, tmp_path)
    assert_clean(nb)
    check = CHECKS.get(path.stem)
    if check is not None:
        check(nb, tmp_path)


@pytest.mark.notebook
def test_an_executed_notebook_holds_no_trace_of_the_key(tmp_path: Path) -> None:
    path = NOTEBOOK_DIR / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    extra = copy.deepcopy(nb)
    extra.cells.append(make_notebooks.code("%gemimg config"))
    extra.cells.append(make_notebooks.code("%gemimg backend"))
    extra.cells.append(make_notebooks.code("%gemimg jobs"))
    source = tmp_path / "with_key.ipynb"
    nbformat.write(extra, source)
    executed = run(source, tmp_path, TOAPIS_API_KEY=FAKE_KEY)
    assert_clean(executed)
    saved = tmp_path / "executed.ipynb"
    nbformat.write(executed, saved)
    text = saved.read_text()
    assert FAKE_KEY not in text
    assert FAKE_KEY[-12:] not in text, "not even part of the key"
    for png in (tmp_path / "gemimg_outputs").rglob("*.png"):
        assert FAKE_KEY.encode() not in png.read_bytes()


def test_the_committed_quickstart_is_executed_and_small() -> None:
    nb = nbformat.read(NOTEBOOK_DIR / "quickstart.ipynb", as_version=4)
    found = images(nb)
    assert len(found) == 5, "commit the notebook executed (python scripts/make_notebooks.py)"
    assert all(not Path(meta["path"]).is_absolute() for _, _, meta in found), "portable relative paths"
    assert (NOTEBOOK_DIR / "quickstart.ipynb").stat().st_size < 1_000_000


@pytest.mark.parametrize("name", ["sweeps", "reference_images"])
def test_the_committed_sweep_notebooks_are_executed_and_small(name: str) -> None:
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    found = grids(nb)
    assert len(found) >= 2, "commit the notebook executed (python scripts/make_notebooks.py)"
    for _, png, meta in found:
        assert len(png) < 400_000, "grids in notebooks are thumbnails"
        assert all(not Path(p).is_absolute() for p in meta["grid_paths"]), "portable relative paths"
    assert path.stat().st_size < 1_500_000
