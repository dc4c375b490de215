"""``%%gemimg`` and ``%gemimg`` through a real ``InteractiveShell`` against the simulator.

Every test drives the magics by name (``ip.run_cell_magic`` / ``ip.run_line_magic``),
the way a notebook does, and asserts on what the shell shows
(``ip.display_pub.outputs``), on ``user_ns`` and on the simulator's own counters.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from PIL import Image
from traitlets import TraitError

from gemimg_jupyter.api.session import Session, SweepResult, get_session, reset_session
from gemimg_jupyter.display import INTERRUPT_LINE, JobView, SweepView
from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.engine import Job

from .support import FAKE_KEY, SIM_OPTIONS, output_image, quick_settings, wait_for


@pytest.fixture
def gem(ip: Any, tmp_output: Path) -> Iterator[Any]:
    """A shell with the extension loaded on a fast simulator session."""
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    yield ip


def magics(ip: Any) -> Any:
    return ip.magics_manager.registry["GemimgMagics"]


def submits() -> int:
    return int(get_session().sim.stats()["submits_accepted"])


def outputs_for(ip: Any, display_id: str) -> list[dict[str, Any]]:
    return [o for o in ip.display_pub.outputs if (o["transient"] or {}).get("display_id") == display_id]


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


# ---------------------------------------------------------------- lifecycle


def test_load_says_which_backend_once_and_a_second_load_is_harmless(ip: Any, tmp_output: Path, capsys: Any) -> None:
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    first = capsys.readouterr().out
    assert first.count("gemimg:") == 1
    assert "simulator" in first and "%gemimg login" in first
    # one sentence a line: JupyterLab breaks a long stream line anywhere, even mid-word
    assert max(len(line) for line in first.splitlines()) <= 90
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    import gemimg_jupyter

    gemimg_jupyter.load_ipython_extension(ip)  # a direct second call too
    assert "simulator" not in capsys.readouterr().out
    assert ip.find_cell_magic("gemimg") is not None and ip.find_line_magic("gemimg") is not None
    assert sum(1 for m in ip.configurables if type(m).__name__ == "GemimgMagics") == 1


def test_unload_stops_the_runner_and_reload_starts_a_new_session(ip: Any, tmp_output: Path) -> None:
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    sess = magics(ip).session()
    ip.run_line_magic("unload_ext", "gemimg_jupyter")
    assert sess.runner.closed and sess.closed
    assert not sess.sim.running
    assert ip.find_cell_magic("gemimg") is None and ip.find_line_magic("gemimg") is None
    assert "GemimgMagics" not in ip.magics_manager.registry
    assert not any(type(m).__name__ == "GemimgMagics" for m in ip.configurables)

    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    view = ip.run_cell_magic("gemimg", "--wait", "a lighthouse after reload")
    assert view.job.state.has_image
    ip.run_line_magic("reload_ext", "gemimg_jupyter")
    assert ip.find_cell_magic("gemimg") is not None


def test_load_mentions_unfinished_jobs_and_resume_finishes_them(ip: Any, tmp_output: Path, capsys: Any) -> None:
    sess = reset_session(quick_settings(tmp_output))
    assert sess is not None
    params = sess.params("a ledger row left by a killed kernel", size="4:3")
    sess.store.add(
        cbid="gemimg-left-behind-0001",
        key=params.cache_key(0),
        repeat=0,
        params={**params.as_dict(), "reference_urls": []},
        backend="sim",
        price_usd=params.price_usd,
    )
    sess.store.release(["gemimg-left-behind-0001"])  # its owner is gone, as after a kill
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    out = capsys.readouterr().out
    assert "1 unfinished job" in out and "%gemimg resume" in out
    ip.run_line_magic("gemimg", "resume")
    ip.run_line_magic("gemimg", "wait --timeout 20")
    out = capsys.readouterr().out
    assert "resuming 1 unfinished job" in out and "1 done" in out
    (job,) = magics(ip).session().jobs()
    assert job.image.size == (1184, 864)


# ---------------------------------------------------------------- %%gemimg


def test_cell_returns_a_live_handle_at_once_and_updates_one_display(gem: Any, capsys: Any) -> None:
    start = time.perf_counter()
    view = gem.run_cell_magic("gemimg", "--size 16:9 -o hero", "A studio photo of a teapot")
    took = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[timing] %%gemimg cell returned in {took * 1000:.1f} ms")
    assert isinstance(view, JobView)
    hero = gem.user_ns["hero"]
    assert isinstance(hero, Job) and hero is view.job
    assert not hero.done(), "the cell must not wait for the image"
    first = gem.display_pub.outputs[0]
    assert first["update"] is False and "text/html" in first["data"]
    display_id = first["transient"]["display_id"]

    gem.run_line_magic("gemimg", "wait")
    ours = outputs_for(gem, display_id)
    assert len([o for o in ours if not o["update"]]) == 1, "one output, updated in place"
    assert all(o["update"] for o in ours[1:]) and len(ours) >= 2
    assert len({(o["transient"] or {}).get("display_id") for o in gem.display_pub.outputs}) == 1
    final = ours[-1]
    assert set(final["data"]) == {"text/html", "text/plain"}  # the image once, in the <img> with its alt text
    meta = final["metadata"]["text/html"]["gemimg"]
    assert meta["params"]["size"] == "16:9" and meta["image_size"] == [1344, 768]
    assert meta["task_id"] == hero.task_id and Path(meta["path"]).name == hero.path.name
    w, h = png_size(output_image(final["data"]))
    assert max(w, h) <= 768 and abs(w / h - 1344 / 768) < 0.02
    assert FAKE_KEY not in json.dumps(meta) and "sim-local-key" not in json.dumps(meta)


def test_wait_gives_an_image_of_the_right_pixel_size(gem: Any) -> None:
    view = gem.run_cell_magic("gemimg", "--size 16:9 --wait -t 0.4 -p 0.9", "a red kite over dunes")
    job = view.job
    assert job.state.has_image and job.image.size == (1344, 768)
    assert (job.params.temperature, job.params.top_p) == (0.4, 0.9)
    assert view.finished
    last = gem.display_pub.outputs[-1]
    assert last["update"] and output_image(last["data"])
    assert view.image.size == (1344, 768)  # attribute access falls through to the job


def test_prompt_variables_and_escaped_braces(gem: Any) -> None:
    gem.user_ns.update(animal="fox", colours=["red", "gold"])
    view = gem.run_cell_magic("gemimg", "", "a {animal} in {colours[1]}, {{not a variable}}")
    assert view.job.params.prompt == "a fox in gold, {not a variable}"


def test_references_from_a_path_a_pil_variable_and_a_list(gem: Any, tmp_path: Path) -> None:
    swatch = Image.new("RGB", (64, 64), "#e63946")
    path = tmp_path / "swatch.png"
    swatch.save(path)
    gem.user_ns.update(swatch=swatch, both=[Image.new("RGB", (32, 32), "navy"), str(path)])
    one = gem.run_cell_magic("gemimg", f"--ref {path}", "a poster in the palette of the reference")
    two = gem.run_cell_magic("gemimg", "--ref {swatch}", "a sun in the palette of the reference")
    three = gem.run_cell_magic("gemimg", "--ref {both} -o listed --wait", "a sea in the palette of the references")
    assert len(one.job.params.references) == 1 and len(two.job.params.references) == 1
    assert len(three.job.params.references) == 2
    assert one.job.params.references[0].sha256 == three.job.params.references[1].sha256
    gem.run_line_magic("gemimg", "wait")
    assert all(v.job.state.has_image for v in (one, two, three))
    assert get_session().sim.stats()["uploads"] == 2, "the same picture is uploaded once"


def test_wait_right_after_a_sweep_cell_waits_for_its_claim(gem: Any, capsys: Any) -> None:
    """A sweep cell returns before its claim (the session's claim worker runs it): a ``%gemimg wait`` in the next
    cell, as in Run All, must still wait for the sweep's jobs, not find "nothing to wait for"."""
    sess = get_session()
    gate = threading.Event()
    sess._claims.submit(gate.wait, 60)  # the claim worker is busy: the sweep's claim queues behind this
    try:
        gem.run_cell_magic("gemimg", '--sweep "prompt=lighthouse|windmill|teapot" -o series', "a paper-cut lighthouse")
        sweep = gem.user_ns["series"]
        assert not sweep.claimed()
        capsys.readouterr()
        gem.run_line_magic("gemimg", "wait --timeout 0.2")  # a wait that ends first says so, in one line
        first = capsys.readouterr().out
        assert f"1 sweep ({sweep.id}) still being claimed" in first and "nothing to wait for" not in first
        threading.Timer(0.3, gate.set).start()  # the claim goes on while the next wait already waits
        gem.run_line_magic("gemimg", "wait")
    finally:
        gate.set()
    out = capsys.readouterr().out
    assert "nothing to wait for" not in out and "3 jobs finished" in out
    assert len(sweep.jobs) == 3 and all(j.state.has_image for j in sweep.jobs)


def test_a_finished_job_can_be_the_reference_of_the_next(gem: Any) -> None:
    gem.run_cell_magic("gemimg", "-o base", "a base picture")
    with pytest.raises(UsageError, match="no image yet") as info:
        gem.run_cell_magic("gemimg", "--ref {base}", "built on the base")
    assert type(info.value) is UsageError
    gem.run_line_magic("gemimg", "wait")
    view = gem.run_cell_magic("gemimg", "--ref {base} --ref {base.path}", "built on the base")
    refs = view.job.params.references
    assert len(refs) == 2 and refs[0].sha256 == refs[1].sha256


def test_rerun_is_a_cache_hit_and_fresh_submits(gem: Any) -> None:
    gem.run_cell_magic("gemimg", "--wait", "a cached owl")
    assert submits() == 1
    again = gem.run_cell_magic("gemimg", "", "a cached owl")
    assert again.job.cached and again.job.done()
    assert submits() == 1
    final = gem.display_pub.outputs[-1]
    assert final["metadata"]["text/html"]["gemimg"]["cached"] is True
    fresh = gem.run_cell_magic("gemimg", "--fresh --wait", "a cached owl")
    assert not fresh.job.cached and fresh.job.state.has_image
    assert submits() == 2
    cost = gem.run_line_magic("gemimg", "cost")
    assert "1 hit" in cost.text


def test_a_sweep_prints_its_plan_and_fills_one_grid(gem: Any, capsys: Any) -> None:
    start = time.perf_counter()
    view = gem.run_cell_magic(
        "gemimg", "--sweep temperature=0.2,1.4 --sweep size=1:1,16:9 -o grid", "a paper-cut fox in a forest"
    )
    took = time.perf_counter() - start
    out = capsys.readouterr().out
    with capsys.disabled():
        print(f"\n[timing] %%gemimg sweep cell (4 requests, first grid drawn) returned in {took * 1000:.1f} ms")
    assert "4 cells × 1 repeat = 4 requests" in out
    assert isinstance(view, SweepView)
    grid = gem.user_ns["grid"]
    assert isinstance(grid, SweepResult) and len(grid.jobs) == 4
    gem.run_line_magic("gemimg", "wait")
    ids = {(o["transient"] or {}).get("display_id") for o in gem.display_pub.outputs}
    assert len(ids) == 1
    final = gem.display_pub.outputs[-1]
    assert final["update"] and output_image(final["data"])
    meta = final["metadata"]["text/html"]["gemimg_sweep"]
    assert [a["name"] for a in meta["axes"]] == ["temperature", "size"]
    assert meta["progress"].startswith("4/4 done")
    assert grid.paths and all(p.is_file() for p in grid.paths)
    assert "grid saved to" in final["data"]["text/plain"]


def test_repeats_without_axes_are_a_sweep_side_by_side(gem: Any, capsys: Any) -> None:
    view = gem.run_cell_magic("gemimg", "-n 3 --wait", "a watercolour lighthouse")
    assert "1 cell × 3 repeats = 3 requests" in capsys.readouterr().out
    assert isinstance(view.sweep, SweepResult)
    assert [j.repeat for j in view.sweep.jobs] == [0, 1, 2]
    assert all(j.state.has_image for j in view.sweep.jobs)


def test_an_expensive_sweep_needs_yes(gem: Any) -> None:
    gem.run_line_magic("config", "GemimgMagics.confirm_above_usd = 0.1")
    with pytest.raises(UsageError, match=r"--yes") as info:
        gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.8,1.4", "an owl")
    assert type(info.value) is UsageError
    assert submits() == 0
    view = gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.8,1.4 --yes", "an owl")
    assert len(view.sweep.jobs) == 3


def test_config_defaults_are_used_and_set_before_loading(ip: Any, tmp_output: Path) -> None:
    ip.config.GemimgMagics.temperature = 0.3
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.run_line_magic("config", "GemimgMagics.size = '9:16'")
    view = ip.run_cell_magic("gemimg", "", "a tall tower")
    assert (view.job.params.size, view.job.params.temperature) == ("9:16", 0.3)
    explicit = ip.run_cell_magic("gemimg", "-s 1:1 -t 1.2", "a square tower")
    assert (explicit.job.params.size, explicit.job.params.temperature) == ("1:1", 1.2)


def test_the_budget_refuses_before_sending(gem: Any) -> None:
    gem.run_line_magic("config", "GemimgMagics.max_cost_usd = 0.01")
    with pytest.raises(UsageError, match="budget") as info:
        gem.run_cell_magic("gemimg", "", "an expensive swan")
    assert type(info.value) is UsageError and submits() == 0


def test_debug_shows_the_original_error(gem: Any) -> None:
    with pytest.raises(ValidationError):
        gem.run_cell_magic("gemimg", "--size 5:3 --debug", "a fox")


# ---------------------------------------------------------------- bad input


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (12 * 1024 * 1024))
    return path


BAD_CELLS = [
    pytest.param("--frobnicate", "a fox", "unrecognized arguments", id="unknown-option"),
    pytest.param("--size", "a fox", "expected one argument", id="missing-value"),
    pytest.param("", "   \n  ", "cell is empty", id="empty-body"),
    pytest.param(
        "--temperature abc", "a fox", "temperature 'abc' is not allowed; use a number from 0 to 2", id="temp-abc"
    ),
    pytest.param(
        "--size 5:3",
        "a fox",
        "size '5:3' is not supported by gemini-2.5-flash-image-official; use one of 1:1, 3:2",
        id="size-5:3",
    ),
    pytest.param("--ref no/such/file.png", "a fox", "does not exist", id="ref-missing"),
    pytest.param("--ref {BIG}", "a fox", "the limit is 10 MB", id="ref-12MB"),
    pytest.param("--ref {number}", "a fox", "not int", id="ref-int"),
    pytest.param("--ref {nothing_here}", "a fox", "no variable 'nothing_here'", id="ref-undefined"),
    pytest.param("", "a {undefined} fox", "no variable 'undefined'", id="prompt-undefined"),
    pytest.param("", "a {fox", "braces do not pair up", id="prompt-unpaired"),
    pytest.param("--output 1bad", "a fox", "not a valid Python name", id="output-1bad"),
    pytest.param("-o class", "a fox", "Python keyword", id="output-keyword"),
    pytest.param("-n 40", "a fox", "1 to 16", id="repeats-40"),
    pytest.param("--sweep colour=red,blue", "a fox", "colour", id="sweep-unknown-axis"),
    pytest.param("--ref 'unclosed", "a fox", "quotes", id="bad-quotes"),
    pytest.param("-m gemini-9", "a fox", "use one of gemini-2.5-flash-image-official", id="unknown-model"),
]


@pytest.mark.parametrize(("line", "body", "message"), BAD_CELLS)
def test_bad_cell_input_is_one_usage_error_and_sends_nothing(
    gem: Any, big_file: Path, line: str, body: str, message: str
) -> None:
    gem.user_ns.update(number=5, BIG=str(big_file))
    sess = get_session()
    before = sess.sim.stats()["requests"]
    with pytest.raises(UsageError) as info:
        gem.run_cell_magic("gemimg", line, body)
    assert type(info.value) is UsageError
    text = str(info.value)
    assert message in text and "\n" not in text
    assert sess.sim.stats()["requests"] == before, "nothing may be sent for bad input"
    assert not gem.display_pub.outputs and "hero" not in gem.user_ns
    assert get_session() is sess and not sess.closed and not sess.runner.closed
    assert not gem.run_cell_magic("gemimg", "", "the session still works").job.state.is_terminal


BAD_LINES = [
    pytest.param("cancel nosuchjob", "no job or sweep 'nosuchjob'", id="cancel-unknown"),
    pytest.param("frobnicate", "use one of: jobs, cancel, wait", id="unknown-subcommand"),
    pytest.param("jbos", "did you mean jobs", id="typo"),
    pytest.param("history abc", "invalid int value", id="history-abc"),
    pytest.param("wait --timeout soon", "invalid float value", id="wait-timeout"),
    pytest.param("backend mars", "invalid choice", id="backend-unknown"),
    pytest.param("backend toapis", "no ToAPIs key", id="backend-no-key"),
    pytest.param("jobs --all", "unrecognized arguments", id="jobs-extra"),
    pytest.param("wait nosuchjob", "no job or sweep 'nosuchjob'", id="wait-unknown"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_subcommands_are_one_usage_error(gem: Any, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        gem.run_line_magic("gemimg", line)
    assert type(info.value) is UsageError
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("temperature = 3", "temperature 3.0 is not allowed; use a number from 0 to 2"),
        ("top_p = -1", "top_p -1.0 is not allowed; use a number from 0 to 1"),
        ("size = '5:3'", "size '5:3' is not supported by gemini-2.5-flash-image-official"),
        ("resolution = '4K'", "resolution '4K' is not supported by gemini-2.5-flash-image-official"),
        ("model = 'gemini-9'", "use one of gemini-2.5-flash-image-official"),
        ("cell_size = 5", "cell_size 5 is not allowed"),
        ("max_cost_usd = -2.0", "max_cost_usd -2.0 is not allowed"),
    ],
)
def test_bad_config_is_refused_with_the_same_one_line_message(
    gem: Any, caplog: pytest.LogCaptureFixture, setting: str, message: str
) -> None:
    name, _, value = setting.partition(" = ")
    before = getattr(magics(gem), name)
    # %config reports a refused value as one logged line and keeps the old value
    gem.run_line_magic("config", f"GemimgMagics.{setting}")
    assert getattr(magics(gem), name) == before
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert logged and message in logged[-1] and "\n" not in logged[-1]
    # set directly (c.GemimgMagics… or code), it is a TraitError that IPython shows as one line
    with pytest.raises(TraitError) as info:
        setattr(magics(gem), name, eval(value))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value._render_traceback_() == [f"TraitError: {info.value}"]
    assert getattr(magics(gem), name) == before


def test_a_failure_in_the_background_is_one_line_in_the_cell(ip: Any, tmp_output: Path) -> None:
    from gemimg_jupyter.sim import SimConfig, SimServer

    with SimServer(SimConfig(latency=(0.05, 0.1), queue_delay=(0.0, 0.01)), accepted_keys=["another-key"]) as strict:
        reset_session(quick_settings(tmp_output, backend="toapis", api_key=FAKE_KEY, base_url=strict.base_url))
        ip.run_line_magic("load_ext", "gemimg_jupyter")
        view = ip.run_cell_magic("gemimg", "--wait", "a fox <b>bold</b>")
    assert view.job.state.value == "failed"
    final = ip.display_pub.outputs[-1]
    text, markup = final["data"]["text/plain"], final["data"]["text/html"]
    assert "authentication failed (401)" in text and "TOAPIS_API_KEY" in text and "\n" not in text
    assert "<b>bold</b>" not in markup and "&lt;b&gt;bold&lt;/b&gt;" in markup
    everything = json.dumps(ip.display_pub.outputs, default=str)
    assert FAKE_KEY not in everything


# ---------------------------------------------------------------- %gemimg


def test_jobs_cost_models_config_history_and_help(gem: Any, capsys: Any) -> None:
    view = gem.run_cell_magic("gemimg", "--wait --size 3:2", "a <script>alert(1)</script> fox")
    table = gem.run_line_magic("gemimg", "jobs")
    assert view.job.id in table.text and "done" in table.text
    assert "<script>" not in table.html and "&lt;script&gt;" in table.html
    assert "$0.05" in gem.run_line_magic("gemimg", "cost").text
    models = gem.run_line_magic("gemimg", "models")
    assert "gemini-3-pro-image-preview" in models.text and "21:9" in models.text
    config = gem.run_line_magic("gemimg", "config")
    assert "temperature" in config.text and "sim" in config.text
    strip = gem.run_line_magic("gemimg", "history 3")
    data, meta = strip._repr_mimebundle_()
    assert png_size(output_image(data))[0] > 0 and meta["text/html"]["gemimg_history"][0]["size"] == "3:2"
    assert gem.run_line_magic("gemimg", "") is None
    assert "cancel [ID|all]" in capsys.readouterr().out
    gem.run_line_magic("gemimg", "wait -h")
    assert "--timeout" in capsys.readouterr().out


def test_cancel_and_wait_with_a_timeout(gem: Any, capsys: Any) -> None:
    get_session().sim.configure(latency=(5.0, 5.0))
    view = gem.run_cell_magic("gemimg", "", "a slow snail")
    gem.run_line_magic("gemimg", f"wait {view.job.id} --timeout 0.3")
    assert "still 1 job running" in capsys.readouterr().out
    gem.run_line_magic("gemimg", f"cancel {view.job.id} --drop")
    assert "cancelled 1 job" in capsys.readouterr().out
    assert view.job.wait(5) and view.job.state.value == "cancelled"
    assert view.wait_final(5)
    assert "cancelled" in gem.display_pub.outputs[-1]["data"]["text/plain"]


def test_login_switches_to_toapis_and_never_shows_the_key(
    gem: Any, sim: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": FAKE_KEY)
    monkeypatch.setenv("GEMIMG_BASE_URL", sim.base_url)
    gem.run_line_magic("gemimg", "login")
    sess = magics(gem).session()
    assert sess.backend == "toapis" and sess.base_url == sim.base_url
    view = gem.run_cell_magic("gemimg", "--wait", "a fox through the gateway")
    assert view.job.state.has_image
    shown = capsys.readouterr().out + gem.run_line_magic("gemimg", "config").text + repr(sess.settings)
    shown += json.dumps(gem.display_pub.outputs, default=str)
    assert FAKE_KEY not in shown and "ToAPIs" in shown
    gem.run_line_magic("gemimg", "backend sim")
    assert magics(gem).session().backend == "sim"


def test_without_a_key_the_real_backend_explains_and_login_fixes_it(
    ip: Any, sim: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("GEMIMG_BACKEND", "toapis")
    monkeypatch.setenv("GEMIMG_BASE_URL", sim.base_url)
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    assert "no ToAPIs API key" in capsys.readouterr().out, "the load still works and says what is wrong"
    with pytest.raises(UsageError, match="%gemimg login") as info:
        ip.run_cell_magic("gemimg", "", "a fox")
    assert type(info.value) is UsageError
    monkeypatch.setattr("getpass.getpass", lambda prompt="": FAKE_KEY)
    ip.run_line_magic("gemimg", "login")
    assert "ToAPIs" in capsys.readouterr().out
    assert ip.run_cell_magic("gemimg", "--wait", "a fox after login").job.state.has_image
    ip.run_line_magic("gemimg", "backend sim")
    assert magics(ip).session().backend == "sim" and magics(ip).session().base_url != sim.base_url


def test_switching_backend_refuses_while_jobs_run(gem: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOAPIS_API_KEY", FAKE_KEY)
    get_session().sim.configure(latency=(5.0, 5.0))
    gem.run_cell_magic("gemimg", "", "a slow tortoise")
    with pytest.raises(UsageError, match="still running"):
        gem.run_line_magic("gemimg", "backend toapis")
    gem.run_line_magic("gemimg", "cancel all --drop")


def test_cancelling_one_job_warns_only_about_its_own_paid_download(
    gem: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    get_session().sim.configure(latency=(30.0, 30.0))
    a = gem.run_cell_magic("gemimg", "", "a slow tortoise").job
    b = gem.run_cell_magic("gemimg", "", "a slow snail").job
    wait_for(lambda: a.task_id is not None and b.task_id is not None, 10, "both jobs submitted (paid)")
    capsys.readouterr()
    gem.run_line_magic("gemimg", f"cancel {a.id}")
    line = capsys.readouterr().out
    assert "1 job already submitted" in line, line  # the other paid job is not this cancel's business
    gem.run_line_magic("gemimg", "cancel all --drop")


def test_panel_opens_on_the_same_session(gem: Any) -> None:
    panel = gem.run_line_magic("gemimg", "panel")
    assert type(panel).__name__ == "Panel"
    assert panel.session is magics(gem).session()


def test_the_help_page_is_generated_with_examples(gem: Any) -> None:
    doc = magics(gem).gemimg_cell.__doc__
    assert doc.lstrip(": \n").startswith("%%gemimg [-m MODEL]")
    assert "Examples" in doc and "--sweep" in doc and "-o" in doc and "::" in doc
    assert "%gemimg SUBCOMMAND" in magics(gem).gemimg_line.__doc__


def test_value_of_the_cell_shows_once_then_again_in_a_later_cell(gem: Any) -> None:
    view = gem.run_cell_magic("gemimg", "--wait", "a fox to show twice")
    n = len(gem.display_pub.outputs)
    view._ipython_display_()  # the displayhook of the same cell: already on screen
    assert len(gem.display_pub.outputs) == n
    gem.execution_count += 1
    view._ipython_display_()  # displayed again later: a new output
    assert len(gem.display_pub.outputs) == n + 1
    assert output_image(gem.display_pub.outputs[-1]["data"])


def test_a_cell_run_by_the_shell_shows_one_output_and_sets_underscore(gem: Any) -> None:
    result = gem.run_cell("%%gemimg -s 21:9\na wide valley")
    result.raise_error()
    assert isinstance(result.result, JobView)
    assert len([o for o in gem.display_pub.outputs if not o["update"]]) == 1, "no second Out[] output"
    gem.run_line_magic("gemimg", "wait")
    assert gem.user_ns["_"].image.size == (1536, 672)


def test_a_reference_axis_takes_variables(gem: Any, capsys: Any) -> None:
    gem.user_ns["swatch"] = Image.new("RGB", (48, 48), "orange")
    view = gem.run_cell_magic("gemimg", "--sweep ref=none|{swatch} --wait", "a fox in the palette")
    assert "2 cells × 1 repeat" in capsys.readouterr().out
    refs = [len(j.params.references) for j in view.sweep.jobs]
    assert refs == [0, 1] and all(j.state.has_image for j in view.sweep.jobs)


def test_changing_the_output_dir_moves_the_store(gem: Any, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    gem.run_line_magic("config", f"GemimgMagics.output_dir = {str(elsewhere)!r}")
    sess = magics(gem).session()
    assert sess.store.root == elsewhere.resolve()
    view = gem.run_cell_magic("gemimg", "--wait", "a fox in a new folder")
    assert view.job.path.is_relative_to(elsewhere.resolve())
    assert sess.settings.sim_options == SIM_OPTIONS, "the other settings are kept"


def test_the_session_is_the_shared_one(gem: Any) -> None:
    assert isinstance(magics(gem).session(), Session)
    assert magics(gem).session() is get_session()


def test_a_python_session_that_disagrees_with_config_is_replaced_not_used(gem: Any, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    gem.run_line_magic("config", f"GemimgMagics.output_dir = {str(mine)!r}")
    other = reset_session(quick_settings(tmp_path / "other"))  # Python code starts its own session
    assert other is not None
    sess = magics(gem).session()
    assert sess.store_root == mine.resolve(), "the %config folder is not silently ignored"
    assert other.closed and get_session() is sess, "one default session: gi.generate uses it too"
    assert sess.settings.sim_options == SIM_OPTIONS, "the rest of the Python session's settings are kept"
    assert magics(gem).session() is sess, "an agreeing session is used as it is"


def test_a_disagreeing_session_with_running_jobs_is_refused_in_one_line(gem: Any, tmp_path: Path) -> None:
    gem.run_line_magic("config", f"GemimgMagics.output_dir = {str(tmp_path / 'mine')!r}")
    other = reset_session(quick_settings(tmp_path / "other"))
    assert other is not None
    other.sim.configure(latency=(5.0, 5.0))
    job = other.generate("a slow tortoise elsewhere", wait=False)
    with pytest.raises(UsageError, match="still runs 1 job") as info:
        gem.run_cell_magic("gemimg", "", "a fox")
    assert "\n" not in str(info.value)
    assert not other.closed and get_session() is other and not job.done()
    other.cancel("all", drop=True)


def test_clearing_one_config_value_leaves_the_others(gem: Any, tmp_output: Path) -> None:
    gem.run_line_magic("config", "GemimgMagics.max_cost_usd = 3.0")
    gem.run_line_magic("config", "GemimgMagics.rate_tier = 'vip'")
    gem.run_line_magic("config", "GemimgMagics.rate_tier = ''")
    s = get_session().settings
    assert (s.rate_tier, s.max_cost_usd) == ("default", 3.0)
    assert get_session().store_root == tmp_output.resolve(), "a tier change does not move the store"
    gem.run_line_magic("config", "GemimgMagics.max_cost_usd = None")
    assert get_session().settings.max_cost_usd is None


def test_the_panel_follows_the_extension_when_its_session_is_replaced(gem: Any) -> None:
    panel = gem.run_line_magic("gemimg", "panel")
    try:
        before = panel.session
        gem.run_line_magic("config", "GemimgMagics.max_cost_usd = 1.5")
        assert before.closed and panel.session is get_session() is not before
        assert panel.session.settings.max_cost_usd == 1.5
    finally:
        panel.close()


def test_unquoted_sweep_ranges_are_read_whole() -> None:
    from gemimg_jupyter.magics.extension import _split

    assert _split("--sweep temperature=0.2-1.4 [4] -n 2") == ["--sweep", "temperature=0.2-1.4 [4]", "-n", "2"]
    assert _split("--sweep=top_p=1-0.6 (-0.2)") == ["--sweep=top_p=1-0.6 (-0.2)"]
    assert _split('--sweep "size=1:1,16:9" -t 0.5') == ["--sweep", "size=1:1,16:9", "-t", "0.5"]


# ---------------------------------------------------------------- interrupts and hostile text


@pytest.mark.parametrize("moment", ["show", "attach", "wait"])
def test_ctrl_c_anywhere_in_a_waiting_cell_is_one_line_and_the_job_keeps_running(
    gem: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any, moment: str
) -> None:
    def interrupt(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyboardInterrupt

    if moment == "wait":
        monkeypatch.setattr(Job, "wait", interrupt)
    else:
        monkeypatch.setattr(JobView, moment, interrupt)
    gem.run_cell_magic("gemimg", "--wait", f"an interrupted lighthouse ({moment})")  # does not raise
    out = capsys.readouterr()
    shown = [o["data"].get("text/plain", "") for o in gem.display_pub.outputs]  # a wait's note is a display
    lines = [line for line in [*out.out.splitlines(), *shown] if "stopped waiting" in line]
    assert lines == [INTERRUPT_LINE]
    assert "Traceback" not in out.out + out.err
    monkeypatch.undo()
    (job,) = get_session().jobs()
    assert job.result(timeout=60).path is not None


def test_direction_overrides_in_a_prompt_are_shown_escaped(gem: Any) -> None:
    gem.run_cell_magic("gemimg", "--no-wait", "a fox \u202eeulb ni")
    shown = json.dumps([o["data"] for o in gem.display_pub.outputs], ensure_ascii=False)
    assert "\u202e" not in shown
    assert "\\\\u202e" in shown  # the escape, as text (JSON doubles the backslash)
    (job,) = get_session().jobs()
    assert "\u202e" in job.params.prompt  # the request itself is not changed


def test_a_rate_given_by_hand_is_kept_by_every_copy_and_a_new_tier_moves_the_rest() -> None:
    vip = Settings(backend="sim", rate_tier="vip")
    # 5.0 is also the default tier's submit rate: given by hand, it must not turn into the tier's 16.7
    assert vip.replace(submit_rate=5.0).submit_rate == 5.0
    assert Settings(backend="sim", rate_tier="vip", submit_rate=5.0).submit_rate == 5.0
    assert vip.replace(max_cost_usd=1.0).submit_rate == 16.7, "a copy keeps the rates it has"
    back = vip.replace(rate_tier="default")
    assert (back.rate_tier, back.submit_rate, back.query_burst) == ("default", 5.0, 500)


def test_config_rate_tier_sets_both_buckets_and_hand_set_rates_win(gem: Any) -> None:
    gem.run_line_magic("config", "GemimgMagics.rate_tier = 'svip'")
    s = get_session().settings
    assert (s.rate_tier, s.submit_rate, s.submit_burst, s.query_rate, s.query_burst) == ("svip", 33.3, 334, 500.0, 5000)
    gem.run_line_magic("config", "GemimgMagics.rate_tier = 'vip'")
    s = get_session().settings
    assert (s.rate_tier, s.submit_rate, s.submit_burst, s.query_rate, s.query_burst) == ("vip", 16.7, 167, 166.7, 1667)
    hand = s.replace(submit_rate=2.0).with_rate_tier("default")  # a rate set by hand is kept
    assert (hand.submit_rate, hand.submit_burst, hand.query_rate) == (2.0, 50, 50.0)
