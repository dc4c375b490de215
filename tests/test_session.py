"""The public Python API: generate, sweep, plan before paying, budget, cost, history."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import gemimg_jupyter as gi
from gemimg_jupyter.api import session as session_module
from gemimg_jupyter.api.lineage import ledger_cbid
from gemimg_jupyter.api.results import Result, SweepResult
from gemimg_jupyter.api.session import Session
from gemimg_jupyter.domain.errors import BudgetExceededError, GemimgError, ValidationError
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.draw.images import read_provenance


def ref_png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), color).save(buf, format="PNG")
    return buf.getvalue()


def test_generate_returns_a_result_handle(session: Session) -> None:
    res = session.generate("A studio photo of a teapot", size="4:3", wait=False)
    assert res.state.value in ("queued", "submitting", "submitted", "in_progress", "downloading", "done")
    assert res.result(timeout=20) is res
    assert res.image.size == (1184, 864)
    assert res.path is not None and res.path.is_file()
    assert res.params.size == "4:3" and res.task_id and res.cost_usd == pytest.approx(0.0488)
    bundle, meta = res._repr_mimebundle_()
    assert bundle["image/png"].startswith(b"\x89PNG") and meta["image/png"]["gemimg"]["task_id"] == res.task_id
    again = session.generate("A studio photo of a teapot", size="4:3")
    assert again.cached and again.cost_usd == 0


def test_references_may_be_paths_bytes_pil_or_urls(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "product.png"
    path.write_bytes(ref_png((250, 120, 0)))
    pil = Image.new("RGB", (64, 64), (0, 120, 250))
    res = session.generate("product on marble", reference_images=[path, pil, ref_png((9, 9, 9))])
    assert len(res.provenance["references"]) == 3
    with pytest.raises(ValidationError, match="accepts at most 3"):
        session.generate("too many", reference_images=[path, pil, path, pil])


def test_sweep_plans_runs_and_saves_a_grid(session: Session, sim: Any) -> None:
    plan = session.plan("A paper-cut fox", axes=["temperature=0.2,0.8,1.4", "size=1:1,16:9"], repeats=2)
    assert plan.summary() == "6 cells × 2 repeats = 12 requests, 0 cached, ≈ $0.59"
    result = session.sweep("A paper-cut fox", axes=["temperature=0.2,0.8,1.4", "size=1:1,16:9"], repeats=2)
    assert result.done() and result.progress_text() == "12/12 done, $0.59"
    assert sim.stats()["submits_accepted"] == 12
    assert len(result.paths) == 1 and result.paths[0].is_file()
    prov = read_provenance(result.paths[0])
    assert len(prov["cells"]) == 12 and [a["name"] for a in prov["axes"]] == ["temperature", "size"]
    table = result.table()
    assert {row["size"] for row in table} == {"1:1", "16:9"} and all(row["state"] == "done" for row in table)
    grid = result.grid()
    assert grid.width > 2 * 320 and grid.height > 2 * 320
    bundle, meta = result._repr_mimebundle_()
    assert "image/png" in bundle and meta["image/png"]["gemimg_sweep"]["repeats"] == 2
    # the same sweep again is free and instant
    again = session.sweep("A paper-cut fox", temperature=[0.2, 0.8, 1.4], size=["1:1", "16:9"], repeats=2)
    assert again.counts()["cached"] == 12 and sim.stats()["submits_accepted"] == 12


def test_wait_with_a_timeout_keeps_it_however_many_sweeps_run(session: Session, sim: Any) -> None:
    sim.configure(latency=(30.0, 30.0))
    for prompt in ("a fox", "an owl"):
        session.sweep(prompt, temperature=[0.2, 0.8], wait=False)
    answer: list[bool] = []
    waiter = threading.Thread(target=lambda: answer.append(session.wait(timeout=0.1)), daemon=True)
    waiter.start()
    waiter.join(timeout=3.0)  # each unfinished sweep used to add 5 s of its own past the caller's timeout
    assert not waiter.is_alive() and answer == [False]
    session.cancel(drop=True)


def test_a_plan_for_an_edit_carries_its_parent_and_a_shown_quote_is_reused(session: Session, sim: Any) -> None:
    a = session.generate("a lighthouse")
    plan = session.plan("at night", temperature=[0.2, 0.9], edit=a)
    assert plan.parent is not None and plan.parent["cbid"] == ledger_cbid(a)
    quote = session.quote(plan)
    sweep = session.sweep("at night", plan=plan, quote=quote)  # no edit= needed: the plan knows its parent
    assert all(job.parent == plan.parent for job in sweep.jobs)
    assert all(job.params.references[0].sha256 == plan.parent["sha256"] for job in sweep.jobs)
    assert sim.stats()["submits_accepted"] == 3


def test_one_image_and_a_sweep_are_both_a_result(session: Session) -> None:
    job = session.generate("a lighthouse, one image", wait=False)
    sweep = session.sweep("a lighthouse, a sweep", temperature=[0.3, 0.9], wait=False)
    assert isinstance(sweep, SweepResult)
    runs: list[Result] = [job, sweep]
    for run in runs:
        assert isinstance(run, Result)
        assert run.wait(30) and run.done()
        assert run.result(timeout=5) is run
        assert run.cancel() == 0, "nothing is left to cancel once it ended"
        bundle, meta = run._repr_mimebundle_()
        assert bundle["image/png"].startswith(b"\x89PNG") and meta["image/png"]
    assert session.find_job(job.id) is job and session.find_sweep(sweep.id) is sweep
    assert not isinstance(object(), Result)
    assert sweep.provenance()["sweep_id"] == sweep.id and len(sweep.provenance()["cells"]) == 2


def test_one_quote_gives_the_plan_line_and_the_confirmation_rule(session: Session, sim: Any) -> None:
    plan = session.plan("A paper-cut heron", axes=["temperature=0.2,0.8", "size=1:1,16:9"])
    quote = session.quote(plan, confirm_above_usd=0.1)
    assert (quote.cached, quote.adopted) == (0, 0) and quote.estimate_usd == pytest.approx(4 * 0.0488)
    assert (
        quote.needs_confirmation
        and quote.summary == plan.summary() == "4 cells × 1 repeat = 4 requests, 0 cached, ≈ $0.20"
    )
    assert not session.quote(plan, confirm_above_usd=None).needs_confirmation
    before = sim.stats()["submits_accepted"]
    with pytest.raises(ValidationError, match="over the \\$0.10 confirmation threshold"):
        session.sweep("A paper-cut heron", plan=plan, confirm_above_usd=0.1)
    assert sim.stats()["submits_accepted"] == before  # refused before any request
    # an unfinished row of another process is free here: adopted, not paid again
    session.store.add(cbid="other", key=plan.keys[0], repeat=0, params={}, backend=session.backend, price_usd=0.0488)
    adopted = session.quote(plan, confirm_above_usd=0.1)
    assert (adopted.cached, adopted.adopted) == (0, 1) and adopted.estimate_usd == pytest.approx(3 * 0.0488)
    session.store.update("other", state="cancelled")
    session.sweep("A paper-cut heron", plan=plan, yes=True, confirm_above_usd=0.1)
    again = session.quote(plan, confirm_above_usd=0.1)
    assert (again.cached, again.adopted, again.estimate_usd) == (4, 0, 0.0) and not again.needs_confirmation
    assert again.summary == "4 cells × 1 repeat = 4 requests, 4 cached, ≈ $0.00"
    fresh = session.quote(plan, fresh=True, confirm_above_usd=0.1)
    assert fresh.cached == 0 and fresh.needs_confirmation


def test_three_axes_give_one_grid_per_z(session: Session) -> None:
    result = session.sweep("A paper-cut owl", temperature=[0.3, 1.0], size=["1:1", "3:2"], top_p=[0.5, 0.9])
    assert result.plan.shape == (2, 2, 2) and len(result.grids()) == 2 and len(result.paths) == 2


def test_plan_refuses_before_paying(session: Session, sim: Any) -> None:
    with pytest.raises(ValidationError, match="confirmation threshold; add --yes"):
        session.sweep("fox", temperature=[0.1 * i for i in range(10)], size=["1:1", "16:9", "9:16"])
    with pytest.raises(ValidationError, match="10,000 requests"):
        session.plan("fox", axes=["temperature=0-2 [100]", "top_p=0-1 [100]"])
    with pytest.raises(ValidationError, match="unknown sweep parameter 'seed'"):
        session.plan("fox", seed=[1, 2])
    assert sim.stats()["requests"] == 0


def test_budget_is_never_exceeded(fast_settings: Settings, sim: Any) -> None:
    with Session(fast_settings.replace(max_cost_usd=0.10)) as s:
        s.generate("one")
        s.generate("two")
        with pytest.raises(BudgetExceededError, match="over the budget of \\$0.10"):
            s.generate("three")
        with pytest.raises(BudgetExceededError):
            s.sweep("four", temperature=[0.1, 0.2], yes=True)
        assert sim.stats()["submits_accepted"] == 2
        cost = s.cost()
        assert cost["spent_usd"] == pytest.approx(0.0976) and cost["budget_usd"] == 0.10


def test_cancel_unknown_id_lists_jobs(session: Session) -> None:
    job = session.generate("known", wait=True)
    with pytest.raises(ValidationError, match=f"no job or sweep 'nosuchjob'.*{job.id}"):
        session.cancel("nosuchjob")


def test_history_and_pending(session: Session) -> None:
    session.generate("first")
    session.generate("second")
    names = [Path(r.path or "").name for r in session.history(5)]
    assert len(names) == 2 and "second" in names[0]
    assert session.pending_count() == 0


def test_module_level_api_uses_a_default_session(fast_settings: Settings) -> None:
    gi.reset_session(fast_settings)
    try:
        res = gi.generate("module level", size="1:1")
        assert res.state is JobState.DONE
        grid = gi.sweep("module level", temperature=[0.4, 0.9])
        assert grid.plan.shape == (2, 1, 1)
        assert gi.get_session() is session_module.get_session()
    finally:
        gi.reset_session()


def test_with_settings_replaces_the_default_session_and_login_needs_a_key(
    fast_settings: Settings, sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemimg_jupyter.api.session import (
        current_session,
        gateway_settings,
        latest,
        reset_session,
        simulator_settings,
    )
    from gemimg_jupyter.domain.errors import ConfigError

    first = reset_session(fast_settings)
    assert first is not None and current_session() is first
    try:
        with pytest.raises(ConfigError, match=r"no ToAPIs key: use Settings\(api_key=\.\.\.\)"):
            gateway_settings(first.settings)
        monkeypatch.setenv("GEMIMG_BASE_URL", sim.base_url)
        real = first.with_settings(gateway_settings(first.settings, "sk-test-login"))
        assert first.closed and gi.get_session() is real and real.backend == "toapis"
        assert first.replaced_by is real and latest(first) is real
        with pytest.raises(GemimgError, match="this session is closed"):
            first.find("any-image")
        assert first.with_settings(real.settings) is real, "the same replacement twice (two threads) makes one"
        assert real.base_url == sim.base_url and real.generate("a fox through the gateway").state is JobState.DONE
        back = real.with_settings(simulator_settings(real.settings), output_dir=tmp_path / "back")
        assert real.closed and gi.get_session() is back and back.backend == "sim" and latest(first) is back
        assert back.store_root == (tmp_path / "back").resolve()
        with pytest.raises(ConfigError):  # a session that cannot start leaves the old one running
            back.with_settings(backend="toapis", api_key=None)
        assert not back.closed and gi.get_session() is back
        loose = Session(fast_settings.replace(output_dir=tmp_path / "loose"))
        moved = loose.with_settings(max_cost_usd=1.0)
        assert loose.closed and gi.get_session() is back, "a session that is not the default stays so"
        moved.close()
    finally:
        reset_session()
    assert current_session() is None


def test_the_banner_speaks_python(session: Session) -> None:
    line = session.banner()
    assert "no API key set" in line and "Settings(api_key=...)" in line and "%gemimg" not in line


def test_the_package_import_is_light() -> None:
    import subprocess
    import sys

    code = "import gemimg_jupyter, sys; print(sorted(m for m in ('IPython', 'ipywidgets', 'traitlets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_reference_sweep_takes_pil_images(session: Session) -> None:
    blue = Image.new("RGB", (64, 64), (0, 0, 255))
    result = session.sweep("a fox", ref=[None, blue])
    assert result.plan.axes[0].labels[0] == "none"
    assert result.counts()["done"] == 2
    assert len(result.jobs[1].provenance["references"]) == 1
