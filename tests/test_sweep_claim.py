"""A sweep called with ``wait=False`` claims in the background (issue #25, branch perf3).

The call validates and prices the plan, then returns; the job records, the ledger's claim and the
grid's wiring follow in a worker. These tests hold that worker at the claim (an ``Event``, no sleeps)
to see each promise while it runs: every cell paid once, ``wait()`` and the progress line correct,
a cancel before the claim leaves nothing claimed, sent or paid, a re-run during the claim pays nothing
twice, and bad input is still one line before any request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gemimg_jupyter.api.session import Session
from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.plans import plan as plan_module
from gemimg_jupyter.plans.plan import parse_axis, plan_sweep

from .support import wait_for

TEMPS = [0.2, 0.5, 0.8]
TOPS = [0.6, 0.9]
N = len(TEMPS) * len(TOPS)


def held(
    monkeypatch: pytest.MonkeyPatch, session: Session, what: str, released: list[threading.Event]
) -> tuple[threading.Event, threading.Event]:
    """Hold the first call of ``runner.submit_many`` (``what="submit"``, before the runner's claim lock) or of
    ``store.claim_many`` (``what="claim"``, inside it) until the second event is set; the first says it began.
    The second is also added to ``released`` (set at the test's end whatever happened)."""
    entered, release = threading.Event(), threading.Event()
    released.append(release)
    owner: Any = session.runner if what == "submit" else session.store
    name = "submit_many" if what == "submit" else "claim_many"
    original: Callable[..., Any] = getattr(owner, name)
    calls = [0]

    def gated(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            entered.set()
            assert release.wait(30), "the test never released the claim"
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, gated)
    return entered, release


def fox_sweep(session: Session) -> Any:
    """The test's sweep, started without waiting (its claim runs in the background)."""
    return session.sweep("a paper-cut fox", temperature=TEMPS, top_p=TOPS, wait=False, yes=True)


@pytest.fixture
def released() -> Iterator[list[threading.Event]]:
    """Events set at the end of a test whatever happened (a failed test leaves no worker held)."""
    events: list[threading.Event] = []
    yield events
    for event in events:
        event.set()


def test_background_claim_pays_once_per_cell(session: Session, sim: Any) -> None:
    result = fox_sweep(session)
    assert result.wait(timeout=60)
    assert result.claimed() and result.done() and len(result.jobs) == N
    assert all(job.state is JobState.DONE for job in result.jobs)
    assert sim.stats()["submits_accepted"] == N
    assert result.progress_text().startswith(f"{N}/{N} done")
    assert len(result.paths) >= 1  # the grid was wired and saved


def test_while_claiming_wait_progress_and_listeners_know(
    session: Session, sim: Any, monkeypatch: pytest.MonkeyPatch, released: list[threading.Event]
) -> None:
    entered, release = held(monkeypatch, session, "submit", released)
    result = fox_sweep(session)
    assert entered.wait(30)
    assert not result.claimed() and not result.done()
    lengths: list[int] = []
    reading = threading.Thread(target=lambda: lengths.append(len(result.jobs)))  # waits for the jobs
    reading.start()
    assert result.progress_text() == f"0/{N} done, {N} being claimed, $0.00"
    assert result.wait(timeout=0.05) is False
    seen: list[str] = []
    result.add_listener(lambda job: seen.append(job.id))  # added before the jobs exist: still hears them
    assert lengths == []  # still claiming: ``jobs`` has not answered with a partial list
    release.set()
    reading.join(60)
    assert lengths == [N]
    assert result.wait(timeout=60)
    assert {job.id for job in result.jobs} <= set(seen)
    assert sim.stats()["submits_accepted"] == N


def test_cancel_right_after_the_call_sends_and_pays_nothing(
    session: Session, sim: Any, monkeypatch: pytest.MonkeyPatch, released: list[threading.Event]
) -> None:
    _entered, release = held(monkeypatch, session, "claim", released)  # the claim is held: it has not ended yet
    result = fox_sweep(session)
    counted: list[int] = []
    cancelling = threading.Thread(target=lambda: counted.append(result.cancel()))
    cancelling.start()  # right after the call: before the claim has ended (or begun)
    wait_for(result.cancelling, 30, "the cancel to reach the sweep")
    release.set()
    cancelling.join(60)
    assert result.wait(timeout=60)
    assert counted == [N]
    assert sim.stats()["submits_accepted"] == 0
    assert all(job.state is JobState.CANCELLED and job.task_id is None for job in result.jobs)
    assert session.cost()["spent_usd"] == 0
    assert all(row.state == "cancelled" for row in session.store.rows(sweep_id=result.id))


def test_session_cancel_of_a_sweep_still_claiming(
    session: Session, sim: Any, monkeypatch: pytest.MonkeyPatch, released: list[threading.Event]
) -> None:
    entered, release = held(monkeypatch, session, "claim", released)
    result = fox_sweep(session)
    assert entered.wait(30)  # claiming now: the jobs are made, none started
    cancelling = threading.Thread(target=lambda: session.cancel(result.id))
    cancelling.start()
    wait_for(result.cancelling, 30, "the cancel to reach the sweep")
    release.set()
    cancelling.join(60)
    assert result.wait(timeout=60)
    assert sim.stats()["submits_accepted"] == 0
    assert all(job.state is JobState.CANCELLED for job in result.jobs)


def test_a_rerun_while_the_first_still_claims_pays_nothing_twice(
    session: Session, sim: Any, monkeypatch: pytest.MonkeyPatch, released: list[threading.Event]
) -> None:
    entered, release = held(monkeypatch, session, "claim", released)
    first = fox_sweep(session)
    assert entered.wait(30)  # the first holds the runner's claim
    second = fox_sweep(session)
    assert not second.claimed()
    release.set()
    assert first.wait(timeout=60) and second.wait(timeout=60)
    assert sim.stats()["submits_accepted"] == N
    assert all(job.state.has_image for job in (*first.jobs, *second.jobs))
    assert session.cost()["requests"] == N


def test_bad_input_is_one_line_before_any_request(session: Session, sim: Any) -> None:
    with pytest.raises(ValidationError) as err:
        session.sweep("a paper-cut fox", temperature=[0.5, 9.0], top_p=TOPS, wait=False, yes=True)
    assert "\n" not in str(err.value) and "temperature" in str(err.value)
    with pytest.raises(ValidationError) as err:
        session.sweep("a paper-cut fox", size=["1:1", "7:3"], wait=False, yes=True)
    assert "\n" not in str(err.value) and "7:3" in str(err.value)
    assert sim.stats()["submits_accepted"] == 0 and session.sweeps == []


@pytest.mark.parametrize(
    "specs",
    [
        ["temperature=0.1,0.7,1.3", "top_p=0.5,1"],
        ["size=1:1,16:9,9x16", "resolution=1k,2K"],
        ["prompt=fox|owl|cat", "temperature=0.2,0.4"],
        ["top_p=0.3,0.6", "size=4:3,3:4", "temperature=0,2"],
    ],
)
def test_values_checked_once_per_axis_make_the_same_cells(specs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    base = GenerationParams.create("a fox in a forest", model="gemini-3-pro-image-official")
    axes = [parse_axis(spec) for spec in specs]
    fast = plan_sweep(base, axes, repeats=2)
    monkeypatch.setattr(plan_module, "_ALONE", frozenset())  # every cell validated whole, as before
    whole = plan_sweep(base, axes, repeats=2)
    assert fast == whole
    assert [c.key for c in fast.cells] == [c.key for c in whole.cells]


def test_many_background_claims_share_one_worker_and_each_pays_once(
    session: Session, sim: Any, monkeypatch: pytest.MonkeyPatch, released: list[threading.Event]
) -> None:
    """Twenty sweeps started at once with ``wait=False`` queue their claims on the session's one claim worker
    (not twenty threads); a cancel of a sweep still queued sends and pays nothing; every other cell is paid once."""
    entered, release = held(monkeypatch, session, "claim", released)
    results = [session.sweep(f"fox {i}", temperature=TEMPS, top_p=TOPS, wait=False, yes=True) for i in range(20)]
    assert entered.wait(30)  # the first claim is inside the ledger; the other nineteen wait their turn
    claimers = [t for t in threading.enumerate() if t.name.startswith("gemimg-claim")]
    assert len(claimers) == 1
    assert sum(not r.claimed() for r in results) == 20
    results[-1].cancel()  # still queued: nothing claimed, sent or paid
    release.set()
    for result in results[:-1]:
        assert result.wait(timeout=120)
        assert all(job.state is JobState.DONE for job in result.jobs)
    assert results[-1].claimed(30) and results[-1].jobs == []
    assert sim.stats()["submits_accepted"] == 19 * N
