"""Jobs go out in the order they were started, and a refused submit keeps its place in line.

A sweep is sent page by page so that its pages end one after another while it runs. That holds only
if the engine keeps the order: a place in the window that frees up goes to the job at the front of the
line, and a submit the gateway refuses with 429 is sent again before the jobs queued after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.settings import Secret, Settings
from gemimg_jupyter.engine import Job, JobRunner
from gemimg_jupyter.engine.limits import Window, submit_turns
from gemimg_jupyter.engine.record import JobRecord
from gemimg_jupyter.gateway.client import ToAPIsClient
from gemimg_jupyter.ledger.store import Store
from gemimg_jupyter.sim import SimConfig, SimServer

from .support import quick_settings


def record(n: int) -> JobRecord:
    return JobRecord(GenerationParams.create(f"a paper-cut fox, take {n}"))


def cells(n: int) -> list[tuple[GenerationParams, int]]:
    return [(GenerationParams.create(f"a paper-cut fox, cell {i}"), 0) for i in range(n)]


def runner_for(sim: SimServer, settings: Settings) -> JobRunner:
    client = ToAPIsClient(sim.base_url, Secret("sim-local-key"), retry=settings.retry, timeout=(2.0, 5.0))
    return JobRunner(client, Store(settings.output_dir), settings, backend="sim")


def accepted_order(sim: SimServer) -> list[str]:
    """The business ids of the submits the simulator accepted, in the order it accepted them."""
    with sim.state.lock:
        tasks = sorted(sim.state.tasks.values(), key=lambda t: t.seq)
    return [t.req.business_id or "" for t in tasks]


def assert_paid_once(runner: JobRunner, sim: SimServer, jobs: list[Job]) -> None:
    stats = sim.stats()
    assert stats["duplicate_business_ids"] == 0
    assert stats["submits_accepted"] == len(jobs) == sum(1 for r in runner.store.rows() if r.task_id is not None)
    assert all(job.state is JobState.DONE for job in jobs), [job.state for job in jobs]


# ---------------------------------------------------------------- the window's line, without a server


def test_a_freed_place_goes_to_the_job_at_the_front_not_to_one_that_comes_later(tmp_path: Path) -> None:
    woken: list[JobRecord] = []
    window = Window(quick_settings(tmp_path, submit_burst=1), wake=woken.append)
    first, second, third, late = (record(i) for i in range(4))
    assert window.take(first)
    assert not window.take(second) and not window.take(third)  # both wait in line, in that order
    window.release(first, grew=False)
    assert woken == [second]
    assert not window.take(late)  # the place was handed to the front of the line before it was woken
    assert window.take(second)
    window.release(second)
    assert woken == [second, third] and window.take(third)
    window.release(third)
    assert woken == [second, third, late]


def test_a_job_that_gave_its_place_back_returns_to_the_front_of_the_line(tmp_path: Path) -> None:
    woken: list[JobRecord] = []
    window = Window(quick_settings(tmp_path, submit_burst=1), wake=woken.append)
    refused, waiting, holder = (record(i) for i in range(3))
    assert window.take(refused)
    window.release(refused)  # its submit was refused: it waits out the pause without a place
    assert window.take(holder)
    assert not window.take(waiting)
    assert not window.take(refused, first=True)
    window.release(holder)
    assert woken == [refused]


def test_a_job_that_ends_while_in_line_is_not_handed_a_place(tmp_path: Path) -> None:
    woken: list[JobRecord] = []
    window = Window(quick_settings(tmp_path, submit_burst=1), wake=woken.append)
    holder, gone, next_one = (record(i) for i in range(3))
    assert window.take(holder)
    assert not window.take(gone) and not window.take(next_one)
    window.release(gone)  # it ended (a cancel) while it waited: it leaves the line
    window.release(holder)
    assert woken == [next_one] and window.take(next_one)


# ---------------------------------------------------------------- over loopback HTTP


#: the cells of a grid page
PAGE = 100
#: a simulator whose own buckets never refuse: the client's limits are the only ones at work
ROOMY = {"submit_rate": 1000.0, "submit_burst": 1000, "query_rate": 2000.0, "query_burst": 2000}


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(config=SimConfig(latency=(0.05, 0.3), queue_delay=(0.0, 0.02), seed=5, **ROOMY)) as server:
        yield server


def test_jobs_are_accepted_page_by_page_in_the_order_they_were_started(sim: SimServer, tmp_path: Path) -> None:
    # a window of 20 places that grows as tasks finish: most jobs wait in line for a place, hundreds at first
    settings = quick_settings(
        tmp_path, base_url=sim.base_url, submit_burst=20, submit_rate=100.0, query_rate=2000.0, query_burst=2000,
        poll_max=0.1,
    )  # fmt: skip
    runner = runner_for(sim, settings)
    try:
        jobs = runner.submit_many(cells(300))
        assert runner.wait(jobs, timeout=120)
        started = {job.cbid: at for at, job in enumerate(jobs)}
        # parallel ledger writes and sends may swap neighbours; a job that lost its turn goes a page or more late.
        # Before the window handed its places in order, 47 of these 300 did; now none on a quiet machine. A job
        # whose own try had to wait (a ledger busy under a loaded machine, a connection error) lets the line
        # pass meanwhile, by design: one such job in 300 was seen once in a full suite, so up to three are let be.
        late = [(started[cbid], at) for at, cbid in enumerate(accepted_order(sim)) if abs(at - started[cbid]) >= PAGE]
        assert len(late) <= 3, f"(started as, accepted as): {late}"
        assert_paid_once(runner, sim, jobs)
    finally:
        runner.shutdown()


def test_a_submit_refused_with_429_goes_out_before_the_jobs_queued_after_it(tmp_path: Path) -> None:
    # the gateway refuses one submit in ten with 429; the client's tokens are a second ahead at most
    config = SimConfig(latency=(0.05, 0.3), queue_delay=(0.0, 0.02), seed=3, **ROOMY)
    config.update(rate_limit_rate=0.1, fault_endpoints=("submit",), retry_after=(0.05, 0.1))
    with SimServer(config=config) as sim:
        settings = quick_settings(
            tmp_path, base_url=sim.base_url, submit_burst=20, submit_rate=20.0, query_rate=2000.0,
            query_burst=2000, poll_max=0.1,
        )  # fmt: skip
        runner = runner_for(sim, settings)
        seen: dict[str, list[str]] = {}

        def states(job: Job) -> None:
            seen.setdefault(job.cbid, []).append(job.state.value)

        try:
            jobs = runner.submit_many(cells(160), listeners=[states])
            assert runner.wait(jobs, timeout=120)
            started = {job.cbid: at for at, job in enumerate(jobs)}
            accepted = {cbid: at for at, cbid in enumerate(accepted_order(sim))}
            # each refusal: the job went back from "submitting" to "queued"
            refusals = {
                cbid: sum(1 for pair in pairwise(seq) if pair == ("submitting", "queued")) for cbid, seq in seen.items()
            }
            refused = [job for job in jobs if refusals[job.cbid]]
            assert sim.stats()["faults"]["rate_limit"] == sum(refusals.values()) >= 3
            # a refused job waits for the turns already taken (a second of tokens), its own Retry-After and
            # near neighbours swapped by parallel sends, each time; never for every job queued after it
            jumped = {
                started[job.cbid]: sum(
                    1 for later in jobs[started[job.cbid] + 1 :] if accepted[later.cbid] < accepted[job.cbid]
                )
                for job in refused
            }
            turns = submit_turns(settings)
            over = {at: n for at, n in jumped.items() if n > refusals[jobs[at].cbid] * 2 * turns}
            assert not over, f"refused job (started as): jobs queued after it that went first {jumped}"
            assert any(started[job.cbid] < len(jobs) - 4 * turns for job in refused)  # one had many jobs behind it
            assert_paid_once(runner, sim, jobs)
        finally:
            runner.shutdown()
