"""Issue #25.7: the polling learns where the server's progress stands when a task ends, and the ledger keeps it.

Each finished task brackets the end of its progress: at least the highest progress it showed, at most what its
rate says it reached by the look that saw it done. The bracket places the look that should catch the end; it is
kept per backend, model and resolution in the ledger, so a new session aims right from its first batch.
"""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.engine.cadence import NARROW, TOP, PollSchedule
from gemimg_jupyter.ledger.schema import SCHEMA_VERSION
from gemimg_jupyter.ledger.store import Store

from .support import older_ledger, quick_settings

KIND = ("a-model", "1K")
SETTINGS = Settings(poll_first=1.0, poll_min=0.5, poll_max=10.0)


def schedule(end: tuple[float, float] | None = None, prior: list[float] | None = None, **kw: Any) -> PollSchedule:
    """A schedule whose ledger knows ``end`` (the end of progress) and ``prior`` (past durations) for :data:`KIND`."""
    return PollSchedule(
        SETTINGS,
        random.Random(3),
        prior=lambda model, res: prior or [],
        ends=lambda model, res: end if (model, res) == KIND else None,
        **kw,
    )


def test_a_finished_task_brackets_where_its_progress_ended() -> None:
    polls = schedule()
    # progress 30 at 2 s and 40 at 3 s (at most 11 a second), seen done at 8 s: it ended between 40 and 41 + 11 × 5
    assert polls.task_end(8.0, [(1.0, 0), (2.0, 30), (3.0, 40)]) == (40.0, pytest.approx(96.0))
    assert polls.task_end(3.2, [(2.0, 30), (3.0, 40)]) == (40.0, pytest.approx(43.2))
    # progress that did not rise between looks says only how far it got
    assert polls.task_end(5.0, [(2.0, 50), (3.0, 50)]) == (50.0, TOP)
    assert polls.task_end(5.0, [(2.0, 50)]) == (50.0, TOP)


def test_the_look_that_catches_the_end_goes_where_a_known_end_says() -> None:
    """With the end known narrowly (89–91: tasks showed 89 at most), the rate of two looks places the look."""
    polls = schedule(end=(89.0, 91.0))
    looks = [(2.0, 26), (3.0, 36)]  # 10 a second: 36.5 → 90 takes 5.35 s
    eta = polls.progress_eta(looks, KIND)
    assert eta is not None
    assert eta[0] == pytest.approx(3.0 + (90.0 - 36.5) / 10.0)
    delay = polls.next_delay(3.0, 36, False, looks, KIND)
    # one look, at the predicted end (plus its small uncertainty and at most a tenth of poll_min of jitter)
    assert eta[0] - 3.0 <= delay <= eta[0] + eta[1] - 3.0 + 0.1 * SETTINGS.poll_min
    # the same looks with nothing known aim 85 % of the way to 100, as before
    assert schedule().progress_eta(looks, KIND) == (pytest.approx(3.0 + 0.85 * 63.5 / 10.0), 0.0)


def test_a_task_past_what_finished_tasks_showed_is_not_looked_at_every_poll_min() -> None:
    """A low side from a task looked at once, early (55), is no end: a task already past it is not polled at
    poll_min until it ends (what a session did before); it aims within the bracket."""
    polls = schedule(end=(55.0, 96.0))
    looks = [(2.0, 20), (4.0, 60)]  # 20 a second
    eta = polls.progress_eta(looks, KIND)
    assert eta is not None
    aim = min(96.0, 60.5 + 0.85 * (TOP - 60.5))
    assert eta[0] == pytest.approx(4.0 + (aim - 60.5) / 20.0)
    assert polls.next_delay(4.0, 60, False, looks, KIND) > 3 * SETTINGS.poll_min
    # a wide bracket does not aim at its low side either
    assert 96.0 - 55.0 > NARROW


def test_finished_tasks_narrow_the_bracket_and_a_narrower_one_is_kept() -> None:
    kept: list[tuple[str, str, float, float]] = []
    polls = schedule(keep_end=lambda *a: kept.append(a))
    polls.observe(0.0)
    polls.completed(8.0, [(2.0, 30), (3.0, 40)], KIND)  # 40 … 96
    assert polls.progress_end(KIND) == (40.0, pytest.approx(96.0))
    polls.completed(6.1, [(4.0, 70), (6.0, 89)], KIND)  # 89 … 89 + 1 + 10 × 0.1 = 91
    assert polls.progress_end(KIND) == (89.0, pytest.approx(91.0))
    assert [k[:2] for k in kept] == [KIND, KIND] and kept[-1][2:] == (89.0, pytest.approx(91.0))
    polls.completed(9.0, [(4.0, 30), (6.0, 60)], KIND)  # 60 … : nothing narrower, nothing written
    assert len(kept) == 2 and polls.progress_end(KIND) == (89.0, pytest.approx(91.0))
    polls.completed(9.0, [(4.0, 60), (6.0, 95)], KIND)  # 95 is past the known high side: the server changed
    assert polls.progress_end(KIND)[0] == 95.0 and len(kept) == 3


def test_small_narrowings_add_up_to_a_write() -> None:
    """The ledger is written when the bracket moved half a point from what the ledger holds, not from the last
    task: two narrowings of 0.3 each leave the ledger 0.6 behind, so the second one writes."""
    kept: list[tuple[str, str, float, float]] = []
    polls = schedule(end=(89.0, 92.0), keep_end=lambda *a: kept.append(a))
    polls.observe(0.0)
    assert polls.progress_end(KIND) == (89.0, 92.0)  # read from the ledger: that is what it holds
    polls.completed(6.17, [(4.0, 70), (6.0, 89)], KIND)  # high side 89 + 1 + 10 × 0.17 = 91.7: 0.3 narrower
    assert polls.progress_end(KIND)[1] == pytest.approx(91.7) and kept == []
    polls.completed(6.14, [(4.0, 70), (6.0, 89)], KIND)  # 91.4: 0.6 from what the ledger holds
    assert [k[3] for k in kept] == [pytest.approx(91.4)]


def test_the_ledgers_end_of_progress_brings_the_second_look_before_the_fastest_past_tasks_end() -> None:
    """A new session's first batch: the ledger knows the durations (fastest tenth 7 s) and the end of progress,
    so the second look comes while the fastest tasks still run (0.8 × 7 s), and sets the rate for the third."""
    prior = [6.0 + 0.5 * i for i in range(20)]
    known = schedule(end=(89.0, 92.0), prior=prior)
    looks = [(3.6, 40)]
    assert known.next_delay(3.6, 40, False, looks, KIND) == pytest.approx(0.8 * 7.0 - 3.6, rel=0.11)
    unknown = schedule(prior=prior)  # durations alone: as before, later (the progress may not be a clock)
    assert unknown.next_delay(3.6, 40, False, looks, KIND) > 0.8 * 7.0 - 3.6 + 1.0


def test_a_version_6_ledger_gets_the_progress_ends_table_and_keeps_its_rows(tmp_output: Path) -> None:
    older_ledger(tmp_output, 6, without=("progress_ends",))
    store = Store(tmp_output)
    try:
        with closing(sqlite3.connect(tmp_output / "ledger.sqlite3")) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert [r.cbid for r in store.rows()] == ["gemimg-kept"]
        assert store.progress_end("sim", *KIND) is None
        store.keep_progress_end("sim", *KIND, 89.0, 91.5)
    finally:
        store.close()
    store = Store(tmp_output)  # written by this version: opened again as it is
    try:
        assert store.progress_end("sim", *KIND) == (89.0, 91.5)
        assert store.progress_end("toapis", *KIND) is None  # another backend's tasks are another kind
    finally:
        store.close()


def test_what_finished_tasks_showed_survives_a_new_session_in_the_same_folder(tmp_output: Path) -> None:
    """Over loopback HTTP: a session's tasks (the simulator's progress runs 10 → 90) leave their bracket in the
    ledger, and the next session in the folder starts from it."""
    from gemimg_jupyter.api import Session

    settings = quick_settings(
        tmp_output, sim_options={"latency": (0.6, 0.9), "queue_delay": (0.0, 0.02), "seed": 5}, poll_max=0.3
    )
    params = GenerationParams.create("a fox")
    kind = (params.model, params.resolution)
    with Session(settings) as first:
        jobs = [first.runner.submit(params.with_(prompt=f"a fox {i}")) for i in range(4)]
        assert first.runner.wait(jobs, timeout=30)
        assert all(j.state is JobState.DONE for j in jobs)
        learned = first.runner.polls.progress_end(kind)
        assert learned is not None, "four tasks that each showed rising progress leave a bracket"
        kept = first.store.progress_end(first.backend, *kind)
        backend = first.backend
    assert kept is not None and kept == pytest.approx(learned, abs=0.5)  # kept whenever it moved by half a point
    low, high = kept
    assert 10 <= low <= 90 and low <= high <= TOP  # the simulator's tasks end at 90; what they showed is below
    with Session(settings) as second:
        assert second.backend == backend
        assert second.runner.polls.progress_end(kind) == kept
        assert second.runner.polls.progress_end((params.model, "2K")) is None  # another resolution: not known
