"""Sweeps that are not full cross products, cost nothing to preview, or stop submitting on time (issue #25).

Paired axes (``--with``, :func:`gemimg_jupyter.pair`), ``--dry-run`` / ``dry_run=True`` and
``--stop-after`` / ``stop_after=``: through the plan, the public Python API and a real
``InteractiveShell``, counting requests at the simulator over loopback HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

import gemimg_jupyter as gi
from gemimg_jupyter.api.session import Session, SweepResult, get_session, reset_session
from gemimg_jupyter.domain.durations import format_duration, parse_duration
from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import GenerationParams
from gemimg_jupyter.plans.plan import Pairing, pair, pair_axes, parse_axis, plan_sweep

from .support import SIM_OPTIONS, output_image, quick_settings

FLASH = "gemini-2.5-flash-image-official"
PRO = "gemini-3-pro-image-official"


def submits(sess: Session) -> int:
    assert sess.sim is not None
    return int(sess.sim.stats()["submits_accepted"])


@pytest.fixture
def gem(ip: Any, tmp_output: Path) -> Iterator[Any]:
    """A shell with the extension loaded on a fast simulator session."""
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    yield ip


# ---------------------------------------------------------------- paired axes, on paper


def test_a_paired_axis_zips_values_instead_of_crossing_them() -> None:
    axis = pair_axes(parse_axis(f"model={FLASH},{PRO}"), parse_axis("resolution=1K,2K"))
    plan = plan_sweep(GenerationParams(prompt="a fox"), [axis, parse_axis("temperature=0.2,0.8")])
    assert plan.shape == (2, 2, 1) and plan.n_requests == 4
    assert plan.varying == ("model", "resolution", "temperature")
    pairs = {(c.params.model, c.params.resolution) for c in plan.cells}
    assert pairs == {(FLASH, "1K"), (PRO, "2K")}
    assert axis.title == "model · resolution"
    assert axis.shown_labels == (f"{FLASH} · 1K", f"{PRO} · 2K")
    assert plan.cells[1].labels == {"model": PRO, "resolution": "2K", "temperature": "0.2"}


def test_a_paired_axis_of_another_length_is_one_line() -> None:
    with pytest.raises(ValidationError) as info:
        pair_axes(parse_axis(f"model={FLASH},{PRO}"), parse_axis("resolution=1K,2K,4K"))
    text = str(info.value)
    assert "--with resolution has 3 values but the model axis it pairs with has 2" in text and "\n" not in text


def test_pair_resolves_names_specs_and_values() -> None:
    spec = pair(model=[FLASH, PRO], res="1K,2K")
    assert isinstance(spec, Pairing)
    axis = spec.resolve()
    assert [m.name for m in axis.members] == ["model", "resolution"]
    with pytest.raises(ValidationError, match="pair\\(\\) needs two or more axes"):
        pair(model=[FLASH]).resolve()
    with pytest.raises(ValidationError, match="given twice"):
        plan_sweep(GenerationParams(prompt="a fox"), [axis, parse_axis("resolution=1K,2K")])


def test_durations() -> None:
    assert parse_duration("30m") == 1800 and parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    assert parse_duration(2) == 2.0 and parse_duration("1h 30m") == 5400
    for bad in ("", "soon", "30x", "0", "-5m"):
        with pytest.raises(ValidationError, match="--stop-after"):
            parse_duration(bad)
    assert (
        format_duration(1800) == "30 min" and format_duration(5400) == "1 h 30 min" and format_duration(0.5) == "0.5 s"
    )


# ---------------------------------------------------------------- the public API at the simulator


def test_gi_sweep_with_a_pair_sends_exactly_the_zipped_pairs(tmp_output: Path) -> None:
    reset_session(quick_settings(tmp_output))
    try:
        result = gi.sweep("a paired fox", gi.pair(model=[FLASH, PRO], resolution=["1K", "2K"]), yes=True)
        sess = get_session()
        assert submits(sess) == 2
        assert sorted((j.params.model, j.params.resolution) for j in result.jobs) == [(FLASH, "1K"), (PRO, "2K")]
        assert result.provenance()["axes"][0]["with"] == [{"name": "resolution", "values": ["1K", "2K"]}]
        assert all(j.state.has_image for j in result.jobs)
    finally:
        reset_session(None)


def test_dry_run_sends_nothing_and_draws_placeholders(session: Session, sim: Any) -> None:
    result = session.sweep("a dry fox", temperature=[0.2, 0.8, 1.4], size=["1:1", "16:9"], dry_run=True)
    assert result.dry_run and result.done() and result.wait(0)
    assert result.jobs == [] and result.counts()["cost_usd"] == 0
    tiles = result.tiles()
    assert len(tiles) == 6 and {t.state for t in tiles.values()} == {"planned"}
    assert result.progress_text().startswith("dry run: 6 requests planned, nothing sent")
    grid = result.grid()
    assert grid.width > 3 * result.cell_size and grid.height > 2 * result.cell_size
    assert sim.stats()["requests"] == 0


def test_stop_after_leaves_unsent_requests_free_and_a_rerun_sends_them(tmp_output: Path) -> None:
    # one submit at once, then one per 2 s: most of the 6 requests are still waiting when the limit strikes
    settings = quick_settings(tmp_output, submit_rate=0.5, submit_burst=1)
    with Session(settings) as sess:
        temps = [0.1, 0.3, 0.5, 0.7, 0.9, 1.1]
        first = sess.sweep("a fox on a timer", temperature=temps, stop_after="0.2s", wait=False)
        assert first.wait(timeout=30), "the sweep did not end after its time limit"
        unsent = first.not_sent()
        sent = submits(sess)
        assert unsent and sent + len(unsent) == len(temps)
        assert all(j.cost_usd == 0 and j.task_id is None for j in unsent)
        assert f"{len(unsent)} not sent" in first.progress_text()
        assert {t.state for i, t in first.tiles().items() if first.jobs[i] in unsent} == {"not sent"}

        again = sess.sweep("a fox on a timer", temperature=temps, wait=False)
        assert again.wait(timeout=60)
        assert submits(sess) - sent == len(unsent), "a re-run sends exactly what was not sent"
        assert all(j.state.has_image for j in again.jobs)


# ---------------------------------------------------------------- grids that read well (issue #24)


def test_a_2x2x2_sweep_draws_each_z_grid_with_its_own_header_and_counts(tmp_output: Path) -> None:
    from PIL import ImageChops

    from gemimg_jupyter.api.results import count_jobs, ends_text
    from gemimg_jupyter.domain.text import format_usd
    from gemimg_jupyter.draw import grid as grids
    from gemimg_jupyter.draw.sheets import side_by_side

    # a third of the tasks refused for safety, some failing: the two grids' counts differ from the whole's
    options = {**SIM_OPTIONS, "blocked_rate": 0.3, "fail_rate": 0.2}
    with Session(quick_settings(tmp_output, sim_options=options, grid_theme="light")) as sess:
        axes = ["temperature=0.2,0.8", "top_p=0.5,0.9", "prompt=fox|owl"]
        result = sess.sweep("a paper-cut fox in a forest", axes=axes)
        assert result.wait(60)
        plan = result.plan
        assert plan.shape == (2, 2, 2)
        pictures = result.grids()
        for z, word in enumerate(("fox", "owl")):
            jobs = [job for cell, job in zip(plan.cells, result.jobs, strict=True) if cell.z == z]
            c = count_jobs(jobs)
            footer = f"{ends_text(c)}, {format_usd(c['cost_usd'])} on this grid"
            assert footer.startswith(f"{c['done'] + c['cached']}/4 done")  # its own four cells, not all eight
            header = grids.plan_header(plan, z=z)
            assert f"[{word}]" in header and header.count("[") == 1
            # the drawn grid is exactly the one with that header and that footer
            expected = grids.grid_for_plan(plan, result.tiles(), z=z, cell_size=result.cell_size, footer=footer)
            assert ImageChops.difference(pictures[z].convert("RGB"), expected).getbbox() is None
        overall = count_jobs(result.jobs)
        assert overall["blocked"] + overall["failed"] + overall["done"] + overall["cached"] == 8
        if overall["blocked"]:
            assert f"{overall['blocked']} blocked" in result.progress_text()
        # shown in the notebook: the two grids side by side, not one under the other
        both = side_by_side(pictures)
        assert both.width > pictures[0].width + pictures[1].width and both.height == max(p.height for p in pictures)


def test_blocked_cells_are_counted_apart_from_failed_ones(tmp_output: Path) -> None:
    from gemimg_jupyter.api.results import ends_text

    options = {**SIM_OPTIONS, "blocked_rate": 1.0}
    with Session(quick_settings(tmp_output, sim_options=options)) as sess:
        result = sess.sweep("a fox the filter refuses", temperature=[0.2, 0.8])
        assert result.wait(60)
        assert [job.state.value for job in result.jobs] == ["blocked", "blocked"]
        assert result.progress_text() == "0/2 done, 2 blocked, $0.00"
        assert {t.state for t in result.tiles().values()} == {"blocked"}
    counts = {"total": 5, "done": 2, "cached": 1, "blocked": 1, "failed": 1}
    assert ends_text(counts) == "3/5 done (1 cached), 1 blocked, 1 failed"


def test_the_grid_theme_setting_draws_a_dark_grid(tmp_output: Path) -> None:
    from gemimg_jupyter.draw.primitives import DARK

    with Session(quick_settings(tmp_output, grid_theme="dark")) as sess:
        result = sess.sweep("a fox at night", temperature=[0.2, 0.8], dry_run=True)
        assert result.theme == "dark"
        assert result.grid().getpixel((1, 1)) == DARK.bg


def test_auto_follows_the_jupyterlab_theme_the_user_chose(tmp_path: Path) -> None:
    from gemimg_jupyter.domain.settings import Settings, front_end_theme

    folder = tmp_path / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    env = {"JUPYTER_CONFIG_DIR": str(tmp_path)}
    assert front_end_theme(env) == "light"  # no file: light
    folder.mkdir(parents=True)
    (folder / "themes.jupyterlab-settings").write_text('{\n  // Selected Theme\n  "theme": "JupyterLab Dark"\n}\n')
    assert front_end_theme(env) == "dark"
    (folder / "themes.jupyterlab-settings").write_text('{"theme": "JupyterLab Dark", "adaptive-theme": true}')
    assert front_end_theme(env) == "light"  # follows the system: the kernel cannot know it
    assert Settings(grid_theme="light").resolved_grid_theme == "light"
    assert Settings.from_env({"GEMIMG_GRID_THEME": "Dark"}).resolved_grid_theme == "dark"


# ---------------------------------------------------------------- the magic


def test_with_pairs_onto_the_sweep_before_it(gem: Any, capsys: Any) -> None:
    view = gem.run_cell_magic(
        "gemimg", f"--sweep model={FLASH},{PRO} --with resolution=1K,2K --yes --wait -o paired", "a paired owl"
    )
    assert "2 cells × 1 repeat = 2 requests" in capsys.readouterr().out
    sweep = gem.user_ns["paired"]
    assert isinstance(sweep, SweepResult) and view.sweep is sweep
    assert submits(get_session()) == 2
    assert [(j.params.model, j.params.resolution) for j in sweep.jobs] == [(FLASH, "1K"), (PRO, "2K")]
    assert sweep.plan.x_axis is not None and sweep.plan.x_axis.title == "model · resolution"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"--sweep model={FLASH},{PRO} --with resolution=1K,2K,4K", "--with resolution has 3 values"),
        ("--with resolution=1K,2K", "put a --sweep first"),
    ],
    ids=["length-mismatch", "with-first"],
)
def test_a_bad_pairing_is_one_line_and_sends_nothing(gem: Any, line: str, message: str) -> None:
    sess = get_session()
    with pytest.raises(UsageError) as info:
        gem.run_cell_magic("gemimg", line, "a mismatched owl")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert sess.sim is not None and sess.sim.stats()["requests"] == 0


def test_dry_run_cell_shows_the_plan_and_a_placeholder_grid(gem: Any, capsys: Any) -> None:
    view = gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.8 --sweep size=1:1,16:9 --dry-run", "a dry owl")
    out = capsys.readouterr().out
    assert "4 cells × 1 repeat = 4 requests" in out and "dry run: nothing sent" in out
    assert view.sweep.dry_run and view.sweep.jobs == []
    final = gem.display_pub.outputs[-1]
    assert output_image(final["data"])
    assert final["metadata"]["text/html"]["gemimg_sweep"]["progress"].startswith("dry run")
    sess = get_session()
    assert sess.sim is not None and sess.sim.stats()["requests"] == 0


# ---------------------------------------------------------------- grids that scale, thumbnails as images land


def test_a_1000_cell_sweep_has_readable_pages_and_an_index(session: Session, sim: Any) -> None:
    temps = [round(0.02 * i, 2) for i in range(1, 51)]
    tops = [round(0.05 * i, 2) for i in range(1, 21)]
    result = session.sweep("a big fox", temperature=temps, top_p=tops, dry_run=True, cell_size=64)
    pages = result.pages()
    assert len(pages) == 10 and sum(len(p.xs) * len(p.ys) for p in pages) == 1000
    assert all(len(p.xs) * len(p.ys) <= 100 and len(p.xs) <= 10 for p in pages)
    index = result.page_index()
    assert index.startswith("10 pages: 1 temperature 0.02…0.2") and "\n" not in index
    grids = result.grids()
    assert len(grids) == 10
    for img, page in zip(grids, pages, strict=True):  # ≤ 10 × 10 boxes of 64 px plus legends: a readable page
        assert img.width < (len(page.xs) + 4) * 64 * 2 and img.height < (len(page.ys) + 4) * 64 * 2
    assert sim.stats()["requests"] == 0


def test_a_sweep_with_pages_is_sent_page_by_page_and_kept_in_cell_order(session: Session) -> None:
    """Pages end one after another (each saved as it ends) when their cells are sent together; the result still
    holds its jobs in cell order, so ``result[i]`` is the job of plan cell ``i``."""
    from gemimg_jupyter.engine.record import JobRecord

    temps = [round(0.01 * i, 2) for i in range(1, 21)]
    tops = [round(0.05 * i, 2) for i in range(1, 11)]
    plan = session.plan("page by page", temperature=temps, top_p=tops)
    result = SweepResult(plan, [], sweep_id="pages", store=session.store, cell_size=64)
    pages = result.pages()
    assert len(pages) == 2
    order = result.submit_order()
    assert sorted(order) == list(range(200))
    on_first = {c.index for c in plan.cells if c.x in pages[0].xs and c.y in pages[0].ys}
    assert set(order[:100]) == on_first  # the first page's cells go first
    assert order[:3] == sorted(on_first)[:3]  # in cell order within the page
    sent: list[Any] = []

    def send(items: list[tuple[Any, int]]) -> list[Any]:
        sent.extend(items)
        return [JobRecord(params, repeat=repeat).job for params, repeat in items]

    result.submit(send)
    assert [p for p, _ in sent] == [plan.cells[i].params for i in order]
    assert all(result[c.index].params == c.params for c in plan.cells)  # back in cell order


def test_a_long_single_axis_wraps_into_rows(session: Session) -> None:
    temps = [round(0.01 * i, 2) for i in range(1, 151)]
    result = session.sweep("a long fox", temperature=temps, dry_run=True, cell_size=64)
    pages = result.pages()
    assert [len(p.xs) for p in pages] == [100, 50] and all(p.wrap == 10 for p in pages)
    first = result.grid(page=1)
    assert first.width < 16 * 64 and first.height < 16 * 64  # 10 × 10, not a 1 × 100 strip


def test_thumbnails_are_made_when_images_land_and_read_from_their_files(session: Session) -> None:
    from gemimg_jupyter.ledger.thumbs import THUMB_SIDE, thumb_path

    result = session.sweep("a small fox", temperature=[0.2, 0.8])
    paths = [job.path for job in result.jobs]
    assert all(p is not None and thumb_path(p).is_file() for p in paths)
    job = result.jobs[0]
    assert job.path is not None
    job._thumbs.clear()
    job.path.unlink()  # the full-size file is gone: the grid still has its thumbnail, from the small file
    small = job.thumbnail(THUMB_SIDE)
    assert max(small.size) <= THUMB_SIDE and small.mode == "RGB"


# ---------------------------------------------------------------- more than 1,000 requests: an explicit opt-in


def test_more_than_1000_requests_need_max_requests(session: Session, sim: Any) -> None:
    temps = [round(0.01 * i, 2) for i in range(1, 61)]
    tops = [round(0.05 * i, 2) for i in range(1, 21)]
    with pytest.raises(ValidationError, match=r"^1,200 requests .* over the limit of 1,000; narrow the sweep$"):
        session.sweep("a crowd of foxes", temperature=temps, top_p=tops, dry_run=True)
    result = session.sweep(
        "a crowd of foxes", temperature=temps, top_p=tops, dry_run=True, max_requests=5000, cell_size=64
    )
    assert result.plan.n_requests == 1200 and len(result.pages()) == 12
    assert sim.stats()["requests"] == 0


def test_max_requests_cell_option_allows_a_bigger_sweep(gem: Any, capsys: Any) -> None:
    temps = ",".join(f"{0.01 * i:.2f}" for i in range(1, 56))
    tops = ",".join(f"{0.05 * i:.2f}" for i in range(1, 21))
    line = f"--sweep temperature={temps} --sweep top_p={tops} --dry-run"
    with pytest.raises(UsageError, match="over the limit of 1,000"):
        gem.run_cell_magic("gemimg", line, "a crowd of owls")
    view = gem.run_cell_magic("gemimg", f"{line} --max-requests 2000", "a crowd of owls")
    assert view.sweep.dry_run and view.sweep.plan.n_requests == 1100
    assert "1,100 requests" in capsys.readouterr().out
    sess = get_session()
    assert sess.sim is not None and sess.sim.stats()["requests"] == 0


@pytest.mark.notebook
def test_a_kernel_under_a_dark_jupyterlab_draws_its_grids_dark(tmp_path: Path) -> None:
    """A real kernel, started with the config folder JupyterLab / Notebook 7 write their theme to,
    draws the grid of a sweep cell with the dark chrome (``grid_theme`` left at ``auto``)."""
    import importlib.util
    import io

    import nbformat
    from PIL import Image

    from gemimg_jupyter.draw.primitives import DARK

    spec = importlib.util.spec_from_file_location(
        "make_notebooks", Path(__file__).parents[1] / "scripts/make_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    make_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_notebooks)
    config = tmp_path / "jcfg"
    folder = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    folder.mkdir(parents=True)
    (folder / "themes.jupyterlab-settings").write_text('{"theme": "JupyterLab Dark"}')
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext gemimg_jupyter"),
        nbformat.v4.new_code_cell("%%gemimg --sweep temperature=0.2,0.8 --dry-run\na fox at night"),
    ]
    env = make_notebooks.sim_env(tmp_path / "out", JUPYTER_CONFIG_DIR=str(config))
    env.pop("GEMIMG_GRID_THEME", None)
    make_notebooks.execute(nb, cwd=tmp_path, env=env)
    grids = [output_image(out["data"]) for out in nb.cells[1].outputs if "text/html" in out.get("data", {})]
    grids = [png for png in grids if png]
    assert grids, nb.cells[1].outputs
    picture = Image.open(io.BytesIO(grids[-1])).convert("RGB")
    assert picture.getpixel((1, 1)) == DARK.bg
