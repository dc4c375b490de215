"""The public path's bookkeeping (issue #25): group commit of ledger changes, grid pages saved as they end.

* Durable changes return only once on disk, yet concurrent ones share one transaction; a change
  that is not durable is seen by the store's own reads at once and reaches the disk shortly.
* A job's task id is on disk (seen by an independent SQLite connection) before anything follows it.
* A sweep's grid page is saved as soon as its own cells have ended, and holds the same pixels as
  the page drawn afresh from the finished sweep.
"""

from __future__ import annotations

import io
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from gemimg_jupyter.api.results import SweepResult
from gemimg_jupyter.api.session import Session
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.engine import Job
from gemimg_jupyter.ledger.store import Store
from gemimg_jupyter.plans.plan import parse_axis, plan_sweep

from .support import wait_for


def _on_disk(store: Store, cbid: str, column: str) -> Any:
    """``column`` of row ``cbid`` as another process would read it: a fresh connection to the file."""
    with closing(sqlite3.connect(store.ledger_path)) as db:
        row = db.execute(f"SELECT {column} FROM jobs WHERE cbid = ?", (cbid,)).fetchone()
    return row[0] if row else None


def _rows(store: Store, n: int) -> list[str]:
    cbids = [f"gemimg-test-{i:04d}" for i in range(n)]
    for i, cbid in enumerate(cbids):
        store.add(cbid=cbid, key=f"k{i}", repeat=0, params={"prompt": "p"}, backend="sim", price_usd=0.04)
    return cbids


def _queued(store: Store, n: int) -> bool:
    return len(store.commits._queue) >= n


def test_concurrent_durable_changes_share_one_transaction_and_are_on_disk_when_they_return(tmp_path: Path) -> None:
    store = Store(tmp_path / "out")
    try:
        cbids = _rows(store, 8)
        before = store.commits.batches
        with store._lock:  # a commit in progress elsewhere: every change queues behind it
            threads = [
                threading.Thread(
                    target=store.update, args=(cbid,), kwargs={"task_id": f"task-{i}", "state": "submitted"}
                )
                for i, cbid in enumerate(cbids)
            ]
            for t in threads:
                t.start()
            wait_for(lambda: _queued(store, 8), 10, "eight queued changes")
            assert all(_on_disk(store, cbid, "task_id") is None for cbid in cbids)  # none returned yet
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
        assert store.commits.batches == before + 1  # one transaction, one fsync, for all eight
        assert [_on_disk(store, cbid, "task_id") for cbid in cbids] == [f"task-{i}" for i in range(8)]
    finally:
        store.close()


def test_a_change_that_is_not_durable_is_read_at_once_and_reaches_the_disk(tmp_path: Path) -> None:
    others = {t for t in threading.enumerate() if t.name == "gemimg-ledger-commit"}  # other tests' open stores
    store = Store(tmp_path / "out")
    try:
        (cbid,) = _rows(store, 1)
        store.update(cbid, durable=False, state="downloading")
        row = store.get(cbid)  # the store's own read writes queued changes first
        assert row is not None and row.state == "downloading"
        store.update(cbid, durable=False, error="later")
        wait_for(lambda: _on_disk(store, cbid, "error") == "later", 10, "the timer's commit")
        for n in range(5):  # each later round is written by the same one flusher thread, not a thread per round
            store.update(cbid, durable=False, error=f"round {n}")
            wait_for(lambda n=n: _on_disk(store, cbid, "error") == f"round {n}", 10, f"round {n}'s commit")
        flushers = [t for t in threading.enumerate() if t.name == "gemimg-ledger-commit" and t not in others]
        assert len(flushers) == 1
        wait_for(lambda: not flushers[0].is_alive(), 10, "the idle flusher to end")  # a store nobody closes
        store.update(cbid, durable=False, error="after a pause")  # a new flusher writes it
        wait_for(lambda: _on_disk(store, cbid, "error") == "after a pause", 10, "the new flusher's commit")
        flushers = [t for t in threading.enumerate() if t.name == "gemimg-ledger-commit" and t not in others]
        assert len(flushers) == 1
    finally:
        store.close()
    flushers[0].join(10)
    assert not flushers[0].is_alive()  # closing the store ends it


def test_a_downloading_move_waits_for_no_fsync_and_is_still_fenced(tmp_path: Path) -> None:
    """``downloading`` (nothing waits for it) joins the job's end in one batch; ``holds`` checks the row without
    writing it first; and it is fenced when written: a row another process took meanwhile keeps its state."""
    store = Store(tmp_path / "out")
    try:
        mine, taken = _rows(store, 2)
        before = store.commits.batches
        assert store.fenced_update(mine, durable=False, state="downloading", expires_at=123.0)
        assert store.holds(mine) and store.commits.pending()  # the check wrote nothing
        assert _on_disk(store, mine, "state") == "submitting"
        assert store.fenced_update(mine, state="done")  # the job's end: one batch writes both
        assert store.commits.batches == before + 1
        assert (_on_disk(store, mine, "state"), _on_disk(store, mine, "expires_at")) == ("done", 123.0)
        with closing(sqlite3.connect(store.ledger_path)) as db, db:  # another process takes the row over
            db.execute("UPDATE jobs SET owner = 'another', generation = generation + 1 WHERE cbid = ?", (taken,))
        store.fenced_update(taken, durable=False, state="downloading")
        assert not store.holds(taken)
        store.commits.flush()
        assert (_on_disk(store, taken, "state"), _on_disk(store, taken, "owner")) == ("submitting", "another")
    finally:
        store.close()


def test_a_failing_change_fails_only_its_own_caller(tmp_path: Path) -> None:
    store = Store(tmp_path / "out")
    try:
        (cbid,) = _rows(store, 1)
        errors: list[BaseException] = []

        def bad(db: sqlite3.Connection) -> None:
            db.execute("UPDATE no_such_table SET x = 1")

        def submit_bad() -> None:
            try:
                store.commits.submit(bad)
            except sqlite3.Error as exc:
                errors.append(exc)

        with store._lock:
            good = threading.Thread(target=store.update, args=(cbid,), kwargs={"task_id": "task-ok"})
            worse = threading.Thread(target=submit_bad)
            good.start()
            worse.start()
            wait_for(lambda: _queued(store, 2), 10, "two queued changes")
        good.join(10)
        worse.join(10)
        assert len(errors) == 1 and "no_such_table" in str(errors[0])
        assert _on_disk(store, cbid, "task_id") == "task-ok"
    finally:
        store.close()


def test_a_task_id_is_on_disk_before_the_job_moves_on(session: Session) -> None:
    """Every state a listener sees after the submit finds the task id already in the ledger file."""
    seen: list[tuple[str, str | None, str | None]] = []
    lock = threading.Lock()

    def check(job: Job) -> None:
        if job.task_id is not None:
            with lock:
                seen.append((job.state.value, job.task_id, _on_disk(session.store, job.cbid, "task_id")))

    result = session.sweep("a ledger fox", temperature=[0.1, 0.5, 0.9], top_p=[0.3, 0.9], listeners=[check])
    assert result.wait(60) and all(j.state is JobState.DONE for j in result.jobs)
    assert {state for state, _, _ in seen} >= {"submitted", "done"}
    assert all(ours == stored for _, ours, stored in seen), [s for s in seen if s[1] != s[2]]
    assert all(_on_disk(session.store, j.cbid, "state") == "done" for j in result.jobs)


def _end(job: Job, state: JobState = JobState.FAILED) -> None:
    """End a bare job handle by hand, as the runner would (no image: its tile shows the state)."""
    job.state, job.error = state, "stopped by the test"
    job._signals.done.set()
    job._signals.notify(job)


@pytest.mark.parametrize("n", [150])
def test_each_grid_page_is_saved_when_its_cells_end_with_the_pixels_of_a_full_redraw(tmp_path: Path, n: int) -> None:
    store = Store(tmp_path / "out")
    try:
        temps = ",".join(f"{0.01 * i:.2f}" for i in range(1, n + 1))
        plan = plan_sweep(GenerationParams(prompt="a paged fox"), [parse_axis(f"temperature={temps}")])
        jobs = [Job(cell.params, repeat=cell.repeat) for cell in plan.cells]
        result = SweepResult(plan, [], sweep_id="pages", store=store, cell_size=64)
        result.follow(jobs)
        pages = result.pages()
        assert len(pages) == 2
        for job in jobs[:100]:  # page 1's cells all end; page 2's are still running
            _end(job)
        first = wait_for(lambda: sorted(store.grids_dir.glob("*_sweep_pages-p1.png")), 10, "page 1 saved")
        assert not result.wait(0) and not result.paths and not list(store.grids_dir.glob("*-p2.png"))
        for job in jobs[100:]:
            _end(job, JobState.CANCELLED)
        assert result.wait(10) and len(result.paths) == 2 and result.paths[0] == first[0]
        for saved, fresh in zip(result.paths, result.grids(), strict=True):
            with Image.open(saved) as img:
                drawn = img.convert("RGB")
            again = Image.open(io.BytesIO(result._page_png(result.paths.index(saved)))).convert("RGB")
            assert drawn.size == fresh.size == again.size
            assert ImageChops.difference(drawn, again).getbbox() is None
    finally:
        store.close()


def test_pages_pasted_tile_by_tile_match_a_full_redraw_with_images(session: Session) -> None:
    """A real 120-image sweep: the saved pages (drawn tile by tile as images landed) equal fresh full draws."""
    temps = [round(0.01 * i, 2) for i in range(1, 121)]
    result = session.sweep("a pasted fox", temperature=temps, cell_size=64, yes=True, max_requests=1000)
    assert result.wait(120) and all(j.state is JobState.DONE for j in result.jobs)
    assert len(result.paths) == len(result.pages()) == 2
    for at, saved in enumerate(result.paths):
        with Image.open(saved) as img:
            drawn = img.convert("RGB")
        fresh = Image.open(io.BytesIO(result._page_png(at))).convert("RGB")
        assert drawn.size == fresh.size
        assert ImageChops.difference(drawn, fresh).getbbox() is None, f"page {at + 1} differs from a full redraw"


def test_no_durable_change_returns_before_it_is_on_disk_under_contention(tmp_path: Path) -> None:
    """Many threads' changes and a fenced write each: every call returns only once its own row is on disk.

    A batch written from inside another batch (the store's transaction writing queued changes first)
    once marked the outer batch committed before it was, so a fenced write returned with no verdict.
    """
    store = Store(tmp_path / "out")
    try:
        cbids = _rows(store, 24)
        early: list[str] = []

        def change(i: int, cbid: str) -> None:
            for round_ in range(15):
                value = f"task-{i}-{round_}"
                if i % 3 == 0:
                    store.update(cbid, durable=False, error=value)  # interleaved changes nobody waits for
                store.update(cbid, task_id=value)
                if _on_disk(store, cbid, "task_id") != value:
                    early.append(f"{cbid}: {value}")

        threads = [threading.Thread(target=change, args=(i, cbid)) for i, cbid in enumerate(cbids)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert early == []
    finally:
        store.close()
