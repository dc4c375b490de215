"""The job engine against the simulator over real loopback HTTP, faults switched on.

Every requested image ends ``done``, ``failed`` (with the server's reason),
``expired`` or ``timeout`` — never silently missing — and the simulator's
counts prove that no ledger row was ever paid for twice.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gemimg_jupyter.domain.errors import JobTimeoutError, TaskFailedError
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.settings import Secret, Settings
from gemimg_jupyter.draw.images import load_reference, read_provenance
from gemimg_jupyter.engine import Job, JobRunner
from gemimg_jupyter.engine.record import JobRecord
from gemimg_jupyter.gateway.client import ToAPIsClient
from gemimg_jupyter.ledger.store import Store
from gemimg_jupyter.sim import SimConfig, SimServer

from .support import FAST_RETRY, wait_for


def runner_for(sim: Any, settings: Settings, store_dir: Path | None = None) -> JobRunner:
    client = ToAPIsClient(sim.base_url, Secret("sim-local-key"), retry=settings.retry, timeout=(2.0, 5.0))
    return JobRunner(client, Store(store_dir or settings.output_dir), settings, backend="sim")


def params(prompt: str = "A paper-cut fox", **kw: Any) -> GenerationParams:
    return GenerationParams.create(prompt, **kw)


def assert_ledger_matches_sim(runner: JobRunner, sim: Any) -> None:
    stats = sim.stats()
    submitted_rows = [r for r in runner.store.rows() if r.task_id is not None]
    assert stats["duplicate_business_ids"] == 0
    assert stats["submits_accepted"] == len(submitted_rows), (stats, len(submitted_rows))


def assert_files_intact(jobs: list[Job]) -> None:
    for job in jobs:
        if job.state is JobState.DONE:
            assert job.path is not None
            with Image.open(job.path) as img:
                img.load()
                assert img.size == job.params.pixel_size
            assert read_provenance(job.path)["task_id"] == job.task_id


def test_happy_path_returns_at_once_and_lands_on_disk(sim: Any, fast_settings: Settings) -> None:
    runner = runner_for(sim, fast_settings)
    events: list[str] = []
    t0 = time.perf_counter()
    job = runner.submit(params(size="16:9"), listeners=[lambda j: events.append(j.state.value)])
    returned = time.perf_counter() - t0
    assert not job.done() and returned < 5  # it returned before the task could finish
    assert job.result(timeout=20) is job
    assert job.image.size == (1344, 768)
    assert events[0] in ("submitting", "queued") and events[-1] == "done"
    assert {"submitted", "downloading"} <= set(events)
    assert job.provenance["params"]["size"] == "16:9" and job.provenance["backend"] == "sim"
    assert_files_intact([job])
    assert_ledger_matches_sim(runner, sim)
    runner.shutdown()


def test_cache_never_pays_twice_and_fresh_asks_again(sim: Any, fast_settings: Settings) -> None:
    runner = runner_for(sim, fast_settings)
    first = runner.submit(params()).result(20)
    before = sim.stats()["requests"]
    hit = runner.submit(params())
    assert hit.state is JobState.CACHED and hit.path == first.path and hit.cost_usd == 0
    assert sim.stats()["requests"] == before  # no network call at all
    other_repeat = runner.submit(params(), repeat=1)
    fresh = runner.submit(params(), fresh=True)
    runner.wait(timeout=20)
    assert other_repeat.state is JobState.DONE and fresh.state is JobState.DONE
    assert sim.stats()["submits_accepted"] == 3
    runner.shutdown()


def test_references_are_uploaded_once_per_content(sim: Any, fast_settings: Settings) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 90, 200)).save(buf, format="PNG")
    ref = load_reference(buf.getvalue())
    runner = runner_for(sim, fast_settings)
    jobs = [runner.submit(params(f"product shot {i}", references=[ref])) for i in range(3)]
    runner.wait(jobs, timeout=20)
    assert all(j.state is JobState.DONE for j in jobs)
    assert sim.stats()["uploads"] == 1
    assert jobs[0].provenance["references"][0]["sha256"] == ref.sha256
    runner.shutdown()


def test_dropped_submit_response_gives_exactly_one_task(sim: Any, fast_settings: Settings) -> None:
    sim.configure(drop_after_submit_rate=1.0)
    runner = runner_for(sim, fast_settings)
    job = runner.submit(params("dropped"))
    wait_for(lambda: sim.stats()["submits_accepted"] > 0, 10, "the submit to be accepted")
    sim.configure(drop_after_submit_rate=0.0)
    job.result(timeout=20)
    stats = sim.stats()
    assert stats["submits_accepted"] == 1 and stats["duplicate_business_ids"] == 0
    assert job.state is JobState.DONE
    runner.shutdown()


def test_failed_task_reports_the_servers_reason_and_is_not_charged(sim: Any, fast_settings: Settings) -> None:
    sim.configure(fail_rate=1.0)
    runner = runner_for(sim, fast_settings)
    job = runner.submit(params("doomed"))
    job.wait(20)
    assert job.state is JobState.FAILED and job.cost_usd == 0
    assert "upstream returned status 422" in (job.error or "")
    with pytest.raises(TaskFailedError, match="422"):
        job.result()
    row = runner.store.get(job.cbid)
    assert row is not None and row.state == "failed" and "422" in (row.error or "")
    runner.shutdown()


def test_corrupt_and_expired_results(sim: Any, fast_settings: Settings) -> None:
    sim.configure(corrupt_image_rate=1.0)
    runner = runner_for(sim, fast_settings)
    bad = runner.submit(params("corrupt"))
    bad.wait(20)
    # paid, but the bytes never decoded: not failed, resumable (the row keeps its cost and its reason)
    assert bad.state is JobState.TIMEOUT and "not a readable image" in (bad.error or "")
    assert [r.cbid for r in runner.store.orphans("sim")] == [bad.cbid]
    assert not list(runner.store.images_dir.glob("*corrupt*"))
    # the CDN refuses the URL (lifetime 0): expiry is its verdict, not the client clock's (issue #21)
    sim.configure(corrupt_image_rate=0.0, url_lifetime=0.0, latency=(0.05, 0.1))
    runner.settings = fast_settings.replace(poll_first=1.0)  # look only after the URL expired
    late = runner.submit(params("too late"))
    late.wait(20)
    assert late.state is JobState.EXPIRED and "expired" in (late.error or "")
    runner.shutdown()


def test_rate_limit_storm_pauses_the_lane_and_everything_finishes(sim: Any, fast_settings: Settings) -> None:
    sim.configure(rate_limit_rate=0.5, retry_after=(0.1, 0.3), server_error_rate=0.2, html_error_rate=0.5)
    runner = runner_for(sim, fast_settings.replace(retry=FAST_RETRY.__class__(max_tries=40, base=0.02, cap=0.2)))
    jobs = [runner.submit(params(f"storm {i}")) for i in range(10)]
    assert runner.wait(jobs, timeout=60)
    assert all(j.state is JobState.DONE for j in jobs), [j.error for j in jobs]
    stats = sim.stats()
    assert stats["rate_limited"] > 0 and runner.stats["rate_limited"] > 0
    assert_ledger_matches_sim(runner, sim)
    assert_files_intact(jobs)
    runner.shutdown()


def test_cancel_stops_new_submissions_but_collects_paid_work(sim: Any, fast_settings: Settings) -> None:
    runner = runner_for(sim, fast_settings.replace(max_in_flight=2))
    jobs = [runner.submit(params(f"cancel {i}")) for i in range(8)]
    wait_for(lambda: sim.stats()["submits_accepted"] >= 2, 10, "two submits to be accepted")
    runner.cancel("all")
    runner.wait(jobs, timeout=20)
    states = [j.state for j in jobs]
    submitted = [j for j in jobs if j.task_id is not None]
    assert all(j.state is JobState.DONE for j in submitted)  # paid for, so still downloaded
    assert JobState.CANCELLED in states
    assert sim.stats()["submits_accepted"] == len(submitted) < 8
    runner.shutdown()


def test_drop_stops_collecting(sim: Any, fast_settings: Settings) -> None:
    sim.configure(latency=(3.0, 3.0))
    runner = runner_for(sim, fast_settings)
    job = runner.submit(params("drop me"))
    wait_for(lambda: job.task_id is not None, 10, "the task to be accepted")
    assert job.cancel(drop=True)
    job.wait(5)
    assert job.state is JobState.CANCELLED and "still paid" in (job.error or "")
    runner.shutdown()


def test_local_deadline_is_a_timeout_not_a_failure_and_resume_collects(sim: Any, fast_settings: Settings) -> None:
    sim.configure(latency=(1.5, 1.5))
    runner = runner_for(sim, fast_settings.replace(job_timeout=0.4))
    job = runner.submit(params("slow"))
    job.wait(10)
    assert job.state is JobState.TIMEOUT
    with pytest.raises(JobTimeoutError, match="resume"):
        job.result()
    runner.shutdown()
    fresh = runner_for(sim, fast_settings)
    resumed = fresh.resume()
    assert [j.cbid for j in resumed] == [job.cbid]
    assert resumed[0].result(20).state is JobState.DONE
    assert sim.stats()["submits_accepted"] == 1
    fresh.shutdown()


def test_simulator_restart_mid_poll(sim: Any, fast_settings: Settings) -> None:
    sim.configure(latency=(1.0, 1.5))
    runner = runner_for(sim, fast_settings.replace(retry=FAST_RETRY.__class__(max_tries=20, base=0.1, cap=0.3)))
    jobs = [runner.submit(params(f"restart {i}")) for i in range(4)]
    wait_for(lambda: all(j.task_id is not None for j in jobs), 10, "all four tasks to be accepted")
    sim.down(0.8)  # the listening socket goes away, then comes back with its tasks
    assert runner.wait(jobs, timeout=30)
    assert all(j.state is JobState.DONE for j in jobs), [j.error for j in jobs]
    assert_ledger_matches_sim(runner, sim)
    runner.shutdown()


KILLED_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from gemimg_jupyter.gateway.client import ToAPIsClient
    from gemimg_jupyter.engine import JobRunner
    from gemimg_jupyter.domain.models import GenerationParams
    from gemimg_jupyter.domain.settings import Secret, Settings
    from gemimg_jupyter.ledger.store import Store
    base, out = sys.argv[1], sys.argv[2]
    s = Settings(backend="sim", output_dir=out, poll_first=0.05, poll_min=0.05, poll_max=0.2)
    r = JobRunner(ToAPIsClient(base, Secret("sim-local-key")), Store(out), s, backend="sim")
    jobs = [r.submit(GenerationParams.create(f"killed sweep {i}")) for i in range(6)]
    deadline = time.monotonic() + 30
    while sum(j.task_id is not None for j in jobs) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    print("submitted" if all(j.task_id for j in jobs) else "timed out before 6 tasks were accepted", flush=True)
    os._exit(9)  # the kernel dies before anything is downloaded
    """
)


def test_process_killed_mid_sweep_is_resumed_in_a_new_process(sim: Any, fast_settings: Settings) -> None:
    sim.configure(latency=(0.8, 1.2))
    out = fast_settings.output_dir
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, sim.base_url, str(out)], capture_output=True, text=True, timeout=60
    )
    assert "submitted" in proc.stdout, proc.stderr
    runner = runner_for(sim, fast_settings)
    pending = runner.store.pending("sim")
    assert len(pending) == 6 and not list(runner.store.images_dir.glob("*.png"))
    jobs = runner.resume()
    assert runner.wait(jobs, timeout=30)
    assert sorted(j.state.value for j in jobs) == ["done"] * 6
    assert sim.stats()["submits_accepted"] == 6  # nothing submitted twice
    assert_ledger_matches_sim(runner, sim)
    assert_files_intact(jobs)
    runner.shutdown()


def test_shutdown_leaves_work_for_resume(sim: Any, fast_settings: Settings) -> None:
    sim.configure(latency=(2.0, 2.0))
    runner = runner_for(sim, fast_settings)
    job = runner.submit(params("interrupted"))
    wait_for(lambda: job.task_id is not None, 10, "the task to be accepted")
    runner.shutdown(wait=True)
    assert job.state is JobState.CANCELLED and "resume" in (job.error or "")
    row = runner.store.get(job.cbid)
    assert row is not None and row.state in ("submitted", "in_progress")


def test_wrong_key_fails_fast_without_retries(tmp_output: Path) -> None:
    server = SimServer(config=SimConfig(latency=(0.1, 0.2)), accepted_keys=["the-right-key"])
    server.start()
    try:
        settings = Settings(backend="sim", output_dir=tmp_output, retry=FAST_RETRY, poll_first=0.05)
        runner = runner_for(server, settings)
        job = runner.submit(params("locked out"))
        job.wait(10)
        assert job.state is JobState.FAILED
        assert "authentication failed (401)" in (job.error or "") and "sim-local-key" not in (job.error or "")
        assert server.stats()["auth_failures"] == 1
        runner.shutdown()
    finally:
        server.stop()


def test_the_same_request_while_running_is_shared_not_paid_twice(sim: Any, fast_settings: Settings) -> None:
    sim.configure(latency=(0.6, 0.8))
    runner = runner_for(sim, fast_settings)
    first = runner.submit(params("twice"))
    second = runner.submit(params("twice"))
    fresh = runner.submit(params("twice"), fresh=True)
    assert second is first and fresh is not first
    runner.wait(timeout=20)
    assert sim.stats()["submits_accepted"] == 2
    runner.shutdown()


def test_short_ids_grow_on_a_collision(sim: Any, fast_settings: Settings) -> None:
    runner = runner_for(sim, fast_settings)
    try:
        records = [JobRecord(params(f"collide {i}"), cbid=f"gemimg-{i:02d}{'ab12cd' * 4}") for i in range(3)]
        for rec in records:
            runner._register(rec)
        jobs = [rec.job for rec in records]
        assert len({j.id for j in jobs}) == 3 and jobs[0].id == "ab12cd"
        assert all(runner.get(j.id) is j for j in jobs)
    finally:
        runner.shutdown()


def test_the_handle_carries_no_scheduler_bookkeeping(sim: Any, fast_settings: Settings) -> None:
    """The user's Job holds its own state only; the runner's bookkeeping lives in its JobRecord."""
    runner = runner_for(sim, fast_settings)
    try:
        job = runner.submit(params("a plain handle"))
        private = {name for name in vars(job) if name.startswith("_")}
        assert private == {"_owner", "_control", "_signals", "_image", "_preview", "_thumbs"}
        assert job.result(timeout=20).state is JobState.DONE
        assert job.cancel() is False  # ended: nothing left to stop
        bare = Job(params("no runner"))
        assert bare.cancel() is False and not bare.done()  # no runner runs it: nothing to stop
    finally:
        runner.shutdown()


def test_images_follow_the_umask(sim: Any, fast_settings: Settings) -> None:
    import os
    import stat

    runner = runner_for(sim, fast_settings)
    try:
        job = runner.submit(params("umask"))
        assert job.wait(20) and job.path is not None
        mask = os.umask(0o022)
        os.umask(mask)
        assert stat.S_IMODE(job.path.stat().st_mode) == 0o666 & ~mask
    finally:
        runner.shutdown()


def test_a_disk_error_while_writing_is_retried_not_final(
    sim: Any, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    runner = runner_for(sim, fast_settings)
    real = runner.store.write_image
    calls: list[int] = []

    def full_once(*args: Any, **kw: Any) -> Path:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kw)

    monkeypatch.setattr(runner.store, "write_image", full_once)
    try:
        job = runner.submit(params("disk full once"))
        assert job.wait(30)
        assert job.state is JobState.DONE and len(calls) == 2
        assert sim.stats()["submits_accepted"] == 1  # paid once, written on the second try
    finally:
        runner.shutdown()


@pytest.mark.slow
def test_the_budget_cannot_be_overshot_with_200_requests_in_flight(tmp_path: Path) -> None:
    from gemimg_jupyter.api.session import Session

    from .support import quick_settings

    price = params().price_usd or 0.0
    assert price > 0
    budget = 30 * price
    slow = {"latency": (20.0, 30.0), "queue_delay": (0.0, 0.1), "seed": 5, "submit_burst": 500, "submit_rate": 500}
    with Session(quick_settings(tmp_path / "out", max_cost_usd=budget, sim_options=slow)) as session:
        # the runner is the last line: 200 requests handed over at once (the cell's own check is not involved)
        jobs = session.runner.submit_many([(params(f"budget {i}"), 0) for i in range(200)])
        refused = [j for j in jobs if j.wait(20) and j.state is JobState.FAILED]
        assert len(refused) == 170 and all("budget" in (j.error or "") and j.cost_usd == 0 for j in refused)
        accepted = session.sim.stats()["submits_accepted"]
        assert accepted == 30 and accepted * price <= budget + 1e-9
        session.cancel("all", drop=True)


def test_a_thousand_unfinished_tasks_are_not_a_thousand_threads(tmp_path: Path) -> None:
    import threading

    from gemimg_jupyter.api.session import Session

    from .support import quick_settings

    slow = {"latency": (30.0, 40.0), "queue_delay": (0.0, 0.1), "seed": 6, "submit_burst": 5000, "submit_rate": 5000}
    settings = quick_settings(
        tmp_path / "out", sim_options=slow, submit_burst=5000, submit_rate=5000.0, query_rate=5000.0, poll_first=0.5
    )

    def engine_threads() -> list[str]:  # the client's own (the in-process simulator has one per connection)
        names = [t.name for t in threading.enumerate()]
        return [n for n in names if n.startswith("gemimg-") and not n.startswith("gemimg-sim")]

    with Session(settings) as session:
        jobs = session.runner.submit_many([(params(f"many {i}"), 0) for i in range(1000)])
        assert all(j.wait_for(JobState.SUBMITTED, 60) or j.task_id for j in jobs)
        assert session.sim.stats()["submits_accepted"] == 1000
        ours = engine_threads()
        assert len(ours) <= 34, f"{len(ours)} threads for 1,000 unfinished tasks: {sorted(set(ours))}"
        session.cancel("all", drop=True)
        assert session.runner.wait(jobs, timeout=30)


def test_poll_schedule_is_pure_and_learns_the_task_times() -> None:
    import random

    from gemimg_jupyter.engine import PollSchedule

    s = Settings(poll_first=1.0, poll_min=0.5, poll_max=10.0)
    fresh = PollSchedule(s, random.Random(1))
    first = fresh.next_delay(0.0, 0, True)
    assert 1.35 <= first <= 1.65  # nothing known yet: 1.5 x poll_first (jittered ±10 %), the task is still queued
    assert all(0.05 <= fresh.next_delay(t, 0, False, [(t - 1, 0)]) <= s.poll_max * 1.1 for t in (2.0, 5.0, 30.0))
    learned = PollSchedule(s, random.Random(1))
    for _ in range(5):  # tasks have taken 8 s, progress rising 10 -> 90
        learned.observe(0.01)
        learned.completed(8.0, [(2.0, 20), (5.0, 55)])
    later = learned.next_delay(0.0, 0, True)
    assert later > first  # it waits longer before the first look once it knows tasks take 8 s
    eta = learned.progress_eta([(2.0, 20), (4.0, 45)])
    assert eta is not None and 4.0 < eta[0] < 12.0


def test_the_first_look_comes_from_the_ledgers_past_durations_of_that_model_and_resolution(tmp_path: Path) -> None:
    """Issue #25.7: a fresh session's first batch places its first look from how long the same model at the same
    resolution took before (the ledger's submitted/finished times), not from a guess; other kinds keep theirs."""
    import json
    import sqlite3

    from gemimg_jupyter.api import Session

    from .support import quick_settings

    settings = quick_settings(tmp_path, poll_first=1.0, poll_min=0.5, poll_max=10.0)
    with Session(settings) as first:
        backend, ledger = first.backend, first.store.ledger_path
    model = GenerationParams.create("a fox").model

    def row(i: int, seconds: float, *, state: str = "done", res: str = "1K", back: str = backend) -> tuple[Any, ...]:
        params = json.dumps({"model": model, "prompt": f"fox {i}", "resolution": res})
        return (f"cbid{i}", f"key{i}", state, params, back, 1000.0 + i, 1000.0 + i, 1000.0 + i + seconds)

    seeded = [row(i, 6.0 + i) for i in range(20)]  # 6 … 25 s: the tenth percentile is 8 s
    others = [
        row(100, 1.0, res="2K"),  # another resolution: another kind
        row(101, 1.0, state="failed"),  # no image: not a duration
        row(102, 1.0, back="toapis"),  # another backend's
        row(103, 3600.0),  # finished an hour later (a resume): says nothing about a task's time
    ]
    with sqlite3.connect(ledger) as db:
        db.executemany(
            "INSERT INTO jobs (cbid, key, state, params, backend, created, submitted, finished) VALUES (?,?,?,?,?,?,?,?)",
            seeded + others,
        )
    with Session(settings) as session:
        polls = session.runner.polls
        assert polls.prior((model, "1K")) == [6.0 + i for i in range(20)]
        assert polls.first_delay((model, "1K")) == pytest.approx(0.6 * 8.0)  # before the fastest tenth would end
        assert 0.9 * 4.8 <= polls.next_delay(0.0, 0, True, (), (model, "1K")) <= 1.1 * 4.8  # jittered ±10 %
        assert polls.prior((model, "2K")) == []  # one row is no prior
        assert polls.first_delay((model, "2K")) == pytest.approx(1.5)  # nothing known: 1.5 × poll_first
        for _ in range(3):  # once this session has its own durations, they decide
            polls.completed(2.0, [])
        assert polls.first_delay((model, "1K")) == pytest.approx(1.6)
    from gemimg_jupyter.domain.durations import GATEWAY_TYPICAL_S
    from gemimg_jupyter.engine import PollSchedule

    gateway = PollSchedule(settings, typical=GATEWAY_TYPICAL_S)  # the gateway documents 5–30 s per task
    assert gateway.first_delay((model, "1K")) == pytest.approx(4.0)


def test_a_reference_uploaded_over_a_day_ago_is_uploaded_again(session: Any, sim: Any) -> None:
    """Nothing documents how long an uploaded URL lives: a day-old upload is not trusted (uploads are free)."""
    import sqlite3

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 90, 30)).save(buf, format="PNG")
    ref = buf.getvalue()
    session.generate("a fox in the colours of the reference", reference_images=[ref], wait=True)
    session.generate("an owl in the colours of the reference", reference_images=[ref], wait=True)
    assert sim.stats()["uploads"] == 1  # recent: reused
    with sqlite3.connect(session.store.ledger_path) as db:  # another day passes
        db.execute("UPDATE uploads SET created = created - 25 * 3600")
    session.generate("a hare in the colours of the reference", reference_images=[ref], wait=True)
    assert sim.stats()["uploads"] == 2
