"""The ledger as the source of truth, across real processes, and the store's one-line refusals.

Cross-process rows run small Python scripts in separate interpreters against
one output folder and one standalone simulator on loopback; paid vs requested
comes from the simulator's ``/_sim/stats`` and is printed as a table
(``pytest -s``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.api.session import Session
from gemimg_jupyter.display.live import status_text
from gemimg_jupyter.domain.errors import ConfigError
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.domain.settings import RetryPolicy, Settings
from gemimg_jupyter.ledger.picks import Picks
from gemimg_jupyter.ledger.store import SCHEMA_VERSION, Store
from gemimg_jupyter.sim import SimConfig, SimServer

from .support import quick_settings, sim_settings, wait_for

pytestmark = pytest.mark.slow

AXES = ["temperature=0.2,0.6,1.0,1.4", "size=1:1,16:9,9:16"]  # 12 requests
N = 12
ROWS: list[tuple[str, int, int, int]] = []  # (case, requested, paid, images on disk)


def settings_for(server: SimServer, out: Path, **kw: Any) -> Settings:
    return sim_settings(server, out, **{"job_timeout": 60.0, **kw})


@pytest.fixture
def server() -> Iterator[SimServer]:
    with SimServer(config=SimConfig(latency=(1.0, 2.0), queue_delay=(0.0, 0.1), seed=21)) as sim:
        yield sim


@contextmanager
def fault_sim(seed: int, **switches: Any) -> Iterator[SimServer]:
    """A fast simulator on loopback with the fault ``switches`` on, stopped at the end."""
    sim = SimServer(config=SimConfig(latency=(0.3, 0.6), queue_delay=(0.0, 0.1), seed=seed, **switches))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def swept(session: Session, axes: list[str] = AXES, **kw: Any) -> list[Any]:
    """Run the fox sweep to its end in ``session``; its jobs."""
    result = session.sweep("A paper-cut fox", axes=axes, yes=True, **kw)
    assert result.wait(60), result.progress_text()
    return list(result.jobs)


def record(case: str, server: SimServer, out: Path, requested: int = N) -> int:
    paid = int(server.stats()["submits_accepted"])
    images = sum(1 for p in (out / "images").glob("*") if p.suffix in (".jpg", ".png", ".webp"))
    ROWS.append((case, requested, paid, images))
    return paid


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.settings import RetryPolicy, Settings
    url, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    s = Session(Settings(backend="sim", base_url=url, output_dir=out, poll_first=0.1, poll_min=0.1, poll_max=0.5,
                         retry=RetryPolicy(max_tries=30, base=0.05, cap=0.5)))
    r = s.sweep("A paper-cut fox", axes=["temperature=0.2,0.6,1.0,1.4", "size=1:1,16:9,9:16"], yes=True,
                wait=mode == "run")
    if mode == "run":
        print("images", sum(j.state.value in ("done", "cached") for j in r.jobs), flush=True)
        s.close()
        sys.exit(0)
    deadline = time.monotonic() + 60
    while sum(j.task_id is not None for j in r.jobs) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    print("stopping with", sum(j.task_id is not None for j in r.jobs), "submitted", flush=True)
    if mode == "kill":
        os._exit(9)          # the kernel dies: no clean-up at all
    s.close()                # Restart: the kernel shuts down, its rows are handed back
    os._exit(0)
    """
)


def child(server: SimServer, out: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, server.base_url, str(out), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rerun(server: SimServer, out: Path) -> Session:
    session = Session(settings_for(server, out))
    result = session.sweep("A paper-cut fox", axes=AXES, yes=True)
    assert result.wait(90)
    assert all(j.state.has_image for j in result.jobs), [(j.state, j.error) for j in result.jobs]
    return session


@pytest.mark.parametrize("mode", ["restart", "kill"])
def test_a_rerun_after_restart_or_kill_pays_nothing_twice(server: SimServer, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out"
    proc = child(server, out, mode)
    stdout, stderr = proc.communicate(timeout=120)
    assert "stopping with" in stdout, stderr
    with rerun(server, out) as session:  # Restart & Run All: the same cell again, no resume cell
        assert session.pending_count() == 0
    paid = record(f"{'Restart & Run All' if mode == 'restart' else 'killed mid-sweep, re-run'}", server, out)
    assert paid == N
    assert server.stats()["duplicate_business_ids"] == 0
    assert len(list((out / "images").glob("*.jpg"))) == N


def test_two_processes_running_the_same_sweep_pay_once(server: SimServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    Store(out).close()  # the folder exists before both start, as with two notebooks side by side
    procs = [child(server, out, "run") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for stdout, stderr in outputs:
        assert f"images {N}" in stdout, (stdout, stderr)
    paid = record("two processes, same sweep at once", server, out)
    assert paid == N
    assert len(list((out / "images").glob("*.jpg"))) == N


def test_a_live_owners_rows_are_adopted_not_resumed(server: SimServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Session(settings_for(server, out)) as first, Session(settings_for(server, out)) as second:
        running = first.sweep("A paper-cut fox", axes=AXES, yes=True, wait=False)
        assert running.claimed(30)  # its rows are the first's (the claim runs after the call returns)
        assert second.pending_count() == 0 and second.resume() == []  # never a live kernel's rows
        follower = second.sweep("A paper-cut fox", axes=AXES, yes=True)  # adopted: followed, then used
        assert running.wait(60) and follower.wait(60)
        assert all(j.state is JobState.CACHED for j in follower.jobs)
        assert second.spent_usd() == 0
    assert record("second session while the first runs", server, out) == N


def test_the_rerun_plan_counts_running_requests_as_free(server: SimServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Session(settings_for(server, out)) as first, Session(settings_for(server, out)) as second:
        running = first.sweep("A paper-cut fox", axes=AXES, yes=True, wait=False)
        assert running.claimed(30)  # wait=False: the claim follows the call; from then on its rows are in the ledger
        plan = second.plan("A paper-cut fox", axes=AXES)
        free = second.store.cached_keys(list(plan.keys))
        assert len(free) == N and plan.estimate_usd(free) == 0
        assert running.wait(60)


LEASED_CHILD = textwrap.dedent(
    """
    import sys
    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.settings import RetryPolicy, Settings
    from gemimg_jupyter.ledger.store import Store
    url, out, in_flight = sys.argv[1], sys.argv[2], int(sys.argv[3])
    Store.lease_s, Store.heartbeat_s = 3.0, 0.5      # a short lease, so a pause outlives it quickly
    s = Session(Settings(backend="sim", base_url=url, output_dir=out, poll_first=0.1, poll_min=0.1, poll_max=0.5,
                         max_in_flight=in_flight, job_timeout=90,
                         retry=RetryPolicy(max_tries=30, base=0.05, cap=0.5)))
    r = s.sweep("A paper-cut fox", axes=["temperature=0.2,0.6,1.0,1.4", "size=1:1,16:9,9:16"], yes=True)
    print("images", sum(j.state.value in ("done", "cached") for j in r.jobs), flush=True)
    print("states", sorted(j.state.value for j in r.jobs), [j.error for j in r.jobs if j.error], flush=True)
    s.close()
    """
)


def leased_child(server: SimServer, out: Path, in_flight: int, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", LEASED_CHILD, server.base_url, str(out), str(in_flight)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stale_owners(out: Path, lease: float) -> int:
    with closing(sqlite3.connect(out / "ledger.sqlite3", timeout=5)) as db:
        return int(db.execute("SELECT COUNT(*) FROM owners WHERE heartbeat < ?", (time.time() - lease,)).fetchone()[0])


def test_an_owner_paused_past_its_lease_pays_nothing_when_it_resumes(server: SimServer, tmp_path: Path) -> None:
    """Fencing: A is stopped (SIGSTOP) mid-sweep past its lease, B runs the same sweep and takes A's rows over,
    then A goes on (SIGCONT): each of A's writes that would pay or store fails on its fencing token, so A follows
    B's rows instead of paying for them again."""
    out = tmp_path / "out"
    Store(out).close()
    a = leased_child(server, out, in_flight=3)
    try:
        wait_for(lambda: _submitted_rows(out) >= 3, 60, "A paid for some requests, not all")
        a.send_signal(signal.SIGSTOP)
        wait_for(lambda: _stale_owners(out, 3.0) >= 1, 30, "A's lease ran out while it is stopped")
        b = leased_child(server, out, in_flight=6)
        b_out, b_err = b.communicate(timeout=120)
        assert f"images {N}" in b_out, (b_out, b_err)
    finally:
        a.send_signal(signal.SIGCONT)
    a_out, a_err = a.communicate(timeout=120)
    assert f"images {N}" in a_out, (a_out, a_err[-3000:])
    paid = record("owner paused (SIGSTOP) past its lease, resumed", server, out)
    assert paid == N
    assert server.stats()["duplicate_business_ids"] == 0
    assert server.stats()["idempotency_keys"] >= paid  # every submit carried its business id as Idempotency-Key
    assert len(list((out / "images").glob("*.jpg"))) == N


def _journal(ledger: Path) -> bytes:
    """The SQLite header's write/read format versions: ``01 01`` rollback journal, ``02 02`` WAL."""
    return ledger.read_bytes()[18:20]


def test_a_folder_on_a_network_file_system_uses_the_rollback_journal_and_two_processes_pay_once(
    server: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GEMIMG_NETWORK_FS=1`` stands for an NFS/SMB/FUSE folder: the ledger keeps SQLite's rollback journal (no
    WAL), the banner says two machines must not share the folder, and two processes on it still pay once."""
    monkeypatch.setenv("GEMIMG_NETWORK_FS", "1")  # inherited by the child processes
    out = tmp_path / "out"
    with Session(settings_for(server, out)) as session:
        assert session.store.network_fs is not None
        assert "two machines must not share this folder" in session.banner()
        assert _journal(out / "ledger.sqlite3") == b"\x01\x01" and not (out / "ledger.sqlite3-wal").exists()
    a = leased_child(server, out, in_flight=3)
    b = leased_child(server, out, in_flight=3)
    for stdout, stderr in [p.communicate(timeout=120) for p in (a, b)]:
        assert f"images {N}" in stdout, (stdout, stderr[-3000:])
    assert _journal(out / "ledger.sqlite3") == b"\x01\x01"
    assert record("network file system (rollback journal), two processes", server, out) == N
    assert server.stats()["duplicate_business_ids"] == 0
    monkeypatch.delenv("GEMIMG_NETWORK_FS")
    Store(out).close()  # back on a local disk, the same ledger goes back to WAL
    assert _journal(out / "ledger.sqlite3") == b"\x02\x02"


def _unshare() -> tuple[str, ...]:
    """``unshare --pid --fork`` when this machine lets us make a PID namespace (else the test is skipped)."""
    exe = shutil.which("unshare")
    if exe is None:
        pytest.skip("no unshare(1) here: a PID namespace cannot be made")
    prefix = (exe, "--pid", "--fork")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid failed here ({probe.stderr.strip()[:120]}): needs root or user namespaces")
    return prefix


def test_two_processes_in_different_pid_namespaces_with_one_host_name_pay_once(
    server: SimServer, tmp_path: Path
) -> None:
    """Liveness across containers: B runs in its own PID namespace with the same host name, where A's pid names
    no process (or another one); the pid shortcut does not apply across namespaces, A's heartbeat decides, so
    B adopts A's rows instead of taking them over and paying again."""
    prefix = _unshare()
    out = tmp_path / "out"
    Store(out).close()
    a = leased_child(server, out, in_flight=3)
    wait_for(lambda: _submitted_rows(out) >= 2, 60, "A has started paying")
    b = leased_child(server, out, in_flight=3, prefix=prefix)
    outputs = [p.communicate(timeout=120) for p in (a, b)]
    for stdout, stderr in outputs:
        assert f"images {N}" in stdout, (stdout, stderr[-3000:])
    assert f"states {['cached'] * N}" in outputs[1][0], outputs[1]  # B followed A's rows: none taken over
    paid = record("B in its own PID namespace, same host name", server, out)
    assert paid == N
    assert server.stats()["duplicate_business_ids"] == 0
    assert len(list((out / "images").glob("*.jpg"))) == N


LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")         # another process's long write transaction
    print("locked", flush=True)
    sys.stdin.read()                      # held until the test closes our stdin
    db.execute("COMMIT")
    """
)


def lock_ledger(out: Path) -> subprocess.Popen[str]:
    """Another process holding a write transaction on the ledger until its stdin is closed."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(out / "ledger.sqlite3")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def test_task_ids_that_come_back_while_the_ledger_is_busy_are_kept_and_a_rerun_pays_nothing_twice(
    server: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Store, "busy_s", 0.5)
    monkeypatch.setattr(Store, "heartbeat_s", 0.3)
    out = tmp_path / "out"
    with Session(settings_for(server, out, max_in_flight=6)) as session:
        result = session.sweep("A paper-cut fox", axes=AXES, yes=True, wait=False)
        wait_for(lambda: sum(j.task_id is not None for j in result.jobs) >= 2, 60, "some tasks submitted")
        locker = lock_ledger(out)
        try:  # task ids and images come back while every write fails: kept in memory, nothing new is paid
            wait_for(lambda: session.store.unwritten() >= 2, 60, "paid rows whose writes wait for the ledger")
        finally:
            assert locker.stdin is not None
            locker.stdin.close()
            locker.wait(30)
        wait_for(lambda: session.store.unwritten() == 0, 30, "the kept writes reach the ledger once it is free")
        assert result.wait(90), result.progress_text()
        assert all(j.state.has_image for j in result.jobs), [(j.state, j.error) for j in result.jobs]
    with rerun(server, out) as again:
        assert again.spent_usd() == 0
    assert record("ledger busy (other process) while task ids come back, re-run", server, out) == N
    assert server.stats()["duplicate_business_ids"] == 0
    assert len(list((out / "images").glob("*.jpg"))) == N


FAULTS: dict[str, dict[str, Any]] = {
    "HTML-200 status once + 404 download once per task": {"html_status_once": True, "download_404_once": True},
    "a hung status query per task": {"hang_status_once": True},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_non_verdict_answers_after_payment_end_with_every_image(fault: str, tmp_path: Path) -> None:
    sim = SimServer(config=SimConfig(latency=(0.5, 1.0), queue_delay=(0.0, 0.1), seed=4, **FAULTS[fault]))
    sim.start()
    out = tmp_path / "out"
    try:
        with Session(settings_for(sim, out, status_timeout=1.0)) as session:
            result = session.sweep("A paper-cut fox", axes=AXES, yes=True, wait=False)
            assert result.wait(60), result.progress_text()
            assert [j.state for j in result.jobs] == [JobState.DONE] * N, [j.error for j in result.jobs]
        stats = sim.stats()
        kind = "hung_status" if "hung" in fault else "html_200_status"
        assert stats["faults"][kind] == N  # every task met the fault
        assert record(fault, sim, out) == N
    finally:
        sim.stop()


@pytest.mark.parametrize("says", ["past", "zero"])
def test_an_expires_at_in_the_past_or_zero_does_not_stop_the_download(says: str, tmp_path: Path) -> None:
    """Expiry is the CDN's verdict: the client's clock (or a placeholder 0) never skips a download it paid for."""
    out = tmp_path / "out"
    with fault_sim(5, expires_at_says=says) as sim:
        with Session(settings_for(sim, out)) as session:
            jobs = swept(session)
            assert [j.state for j in jobs] == [JobState.DONE] * N, [j.error for j in jobs]
        with rerun(sim, out) as again:  # and a re-run finds every image: nothing paid again
            assert again.spent_usd() == 0
        assert record(f"expires_at {'an hour ago' if says == 'past' else '0'}", sim, out) == N
        assert len(list((out / "images").glob("*.jpg"))) == N


@pytest.mark.parametrize("status", ["409", "400"])
def test_a_duplicate_refusal_after_a_lost_submit_answer_is_paid_lost_and_not_paid_again(
    status: str, tmp_path: Path
) -> None:
    """The submit's answer is lost, the look-up by business id 404s, the second submit is refused as a duplicate:
    each row ends ``lost`` with its price counted as spent; a re-run pays nothing (its plan line says why);
    ``fresh`` pays again and says so."""
    out = tmp_path / "out"
    with fault_sim(6, lost_submit=status) as sim:
        with Session(settings_for(sim, out)) as session:
            result = session.sweep("A paper-cut fox", axes=AXES, yes=True)
            assert result.wait(60), result.progress_text()
            jobs = list(result.jobs)
            assert [j.state for j in jobs] == [JobState.LOST] * N, [j.error for j in jobs]
            assert result.progress_text().startswith(f"0/{N} done, {N} lost (paid), $")  # not "failed", not $0
            assert all(j.cbid in (j.error or "") and "duplicate" in (j.error or "") for j in jobs)
            price = sum(j.params.price_usd or 0.0 for j in jobs)
            assert price > 0 and session.spent_usd() == pytest.approx(price)  # counted, not $0
            assert session.cost()["ledger_spent_usd"] == pytest.approx(price, abs=1e-3)
        stats = sim.stats()
        assert stats["submits_accepted"] == N and stats["faults"]["duplicate_refused"] == N
        with Session(settings_for(sim, out)) as again:  # a re-run: the plan says why nothing is paid
            plan = again.plan("A paper-cut fox", axes=AXES)
            quote = again.quote(plan)
            assert quote.lost == N and quote.estimate_usd == 0, quote.summary
            assert "12 paid before and lost, not paid again" in quote.summary
            assert [j.state for j in swept(again)] == [JobState.LOST] * N
            assert again.spent_usd() == 0 and again.cost()["ledger_spent_usd"] == pytest.approx(price, abs=1e-3)
            assert "paid again (fresh)" in again.quote(plan, fresh=True).summary
        assert record(f"lost submit answer, look-up 404, duplicate {status}, re-run", sim, out) == N
        assert len(list((out / "images").glob("*.jpg"))) == 0
        sim.configure(lost_submit="")
        with Session(settings_for(sim, out)) as fresh:  # fresh=True pays again, and gets the image
            job = fresh.generate("A paper-cut fox", temperature=0.2, size="1:1", fresh=True)
            assert job.state is JobState.DONE, job.error
            assert fresh.spent_usd() == pytest.approx(job.params.price_usd or 0.0)
        assert sim.stats()["submits_accepted"] == N + 1


def test_a_lost_request_whose_task_the_gateway_finds_later_is_collected_by_a_rerun_for_nothing(
    tmp_path: Path,
) -> None:
    """A re-run asks for each lost request once more: a gateway whose look-up by business id works again (it was
    only late) gives the task, and its image is collected without a new submit."""
    out = tmp_path / "out"
    with fault_sim(7, lost_submit="409") as sim:
        with Session(settings_for(sim, out)) as session:
            assert [j.state for j in swept(session)] == [JobState.LOST] * N
        sim.configure(lost_submit="")  # the look-up by business id answers again
        with Session(settings_for(sim, out)) as again:
            jobs = swept(again)
            assert [j.state for j in jobs] == [JobState.DONE] * N, [j.error for j in jobs]
            assert again.store.lost_keys([j.key for j in jobs]) == set()
        assert record("lost, then found by a re-run's look-up", sim, out) == N
        assert len(list((out / "images").glob("*.jpg"))) == N


@pytest.mark.parametrize("http_date", [False, True], ids=["seconds", "http-date"])
def test_a_retry_after_of_an_hour_on_status_queries_never_holds_a_job_past_its_deadline(
    http_date: bool, tmp_path: Path
) -> None:
    """Every status query answers 429 with ``Retry-After: 3600`` (or an HTTP date an hour ahead): the wait is capped
    by ``max_retry_after`` and by each job's deadline; the user is told; every job ends ``timeout`` (resumable),
    ``wait(timeout)`` returns, and once the gateway answers again a resume collects every image, paid once."""
    out = tmp_path / "out"
    axes = ["temperature=0.2,0.6", "size=1:1,16:9"]  # 4 requests
    with fault_sim(9, status_retry_after=3600, retry_after_http_date=http_date) as sim:
        policy = RetryPolicy(max_tries=30, base=0.05, cap=0.5, max_retry_after=600.0)
        settings = settings_for(sim, out, job_timeout=3.0, max_retry_after=60.0, retry=policy)
        assert settings.retry_policy.max_retry_after == 60.0  # the setting caps the policy's own limit
        with Session(settings) as session:
            result = session.sweep("A paper-cut fox", axes=axes, yes=True, wait=False)
            jobs = result.jobs
            wait_for(lambda: all(j.notes for j in jobs), 30, "every job telling the gateway's long wait")
            assert all("the gateway asked to wait 60 min" in status_text(j) for j in jobs), status_text(jobs[0])
            assert not result.wait(timeout=0.2)  # wait(timeout) returns while the jobs wait
            assert result.wait(timeout=30)  # ... and the jobs end by their deadline, not after an hour
            assert [j.state for j in jobs] == [JobState.TIMEOUT] * 4, [j.error for j in jobs]
            assert all("the gateway asked to wait 60 min" in (j.error or "") for j in jobs), [j.error for j in jobs]
            assert sorted(r.cbid for r in session.store.orphans("sim")) == sorted(j.cbid for j in jobs)
        assert sim.stats()["faults"]["status_retry_after"] >= 1  # the lane waits: not every job asks again
        sim.configure(status_retry_after=0)
        with Session(settings_for(sim, out)) as later:  # the gateway answers again: resume collects, pays nothing
            resumed = later.resume()
            assert len(resumed) == 4 and later.wait(60)
            assert [j.state for j in resumed] == [JobState.DONE] * 4, [j.error for j in resumed]
        assert record(f"Retry-After 3600 ({'HTTP date' if http_date else 'seconds'}) on status, resumed", sim, out,
                      requested=4) == 4  # fmt: skip
        assert len(list((out / "images").glob("*.jpg"))) == 4


def test_a_trickle_download_ends_and_cancel_drop_stops_it(tmp_path: Path) -> None:
    sim = SimServer(config=SimConfig(latency=(0.1, 0.2), queue_delay=(0.0, 0.05), seed=8, trickle_download=0.2))
    sim.start()
    try:
        with Session(settings_for(sim, tmp_path / "out", job_timeout=3.0)) as session:
            slow = session.generate("A paper-cut fox", wait=False)
            assert slow.wait(30)  # the job deadline covers the download: it ends, resumable
            assert slow.state is JobState.TIMEOUT and "did not finish in time" in (slow.error or ""), slow.error
            assert [r.cbid for r in session.store.orphans("sim")] == [slow.cbid]
        with Session(settings_for(sim, tmp_path / "out2", job_timeout=600.0)) as session:
            stuck = session.generate("A paper-cut owl", wait=False)
            assert stuck.wait_for(JobState.DOWNLOADING, 30)
            session.cancel(stuck.id, drop=True)
            assert stuck.wait(5), "cancel --drop did not stop a trickle download within 5 s"
            assert stuck.state is JobState.CANCELLED
        assert record("trickle download (1 timed out, 1 dropped)", sim, tmp_path, requested=2) == 2
    finally:
        sim.stop()


# ---- the store fails loudly, once, before work starts -----------------------------------------------------------


def _sim_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("gemimg-sim") and t.is_alive())


def _refused(out: Path, match: str) -> str:
    before = _sim_threads()
    with pytest.raises(ConfigError, match=match) as info:
        Session(quick_settings(out))  # the built-in simulator: a failed load must not start (or leak) it
    assert _sim_threads() == before
    text = str(info.value)
    assert len(text.splitlines()) == 1 and str(out) in text
    return text


def test_a_ledger_busy_in_another_process_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Store, "busy_s", 1.0)
    out = tmp_path / "out"
    other = Store(out)  # an owner the ledger knows (as a running kernel is), then another process's long write
    locker = lock_ledger(out)
    try:
        text = _refused(out, "is busy")
        assert f"pid {os.getpid()}" in text and "close the notebook or kernel" in text and "move" not in text
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(30)
        other.close()


def _one_busy_line(capsys: pytest.CaptureFixture[str]) -> str:
    """What the shell printed: exactly one line, naming the busy ledger and what to do, and no traceback."""
    captured = capsys.readouterr()
    text = captured.out + captured.err
    busy = [line for line in text.splitlines() if "is busy" in line]
    assert len(busy) == 1 and "Traceback" not in text and "move" not in text, text
    assert "close the notebook or kernel that holds it" in busy[0] and f"pid {os.getpid()}" in busy[0], busy
    return busy[0]


def test_load_ext_a_cell_and_gi_sweep_with_the_ledger_held_by_another_process_each_say_one_line(
    ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real shell: ``%load_ext``, a ``%%gemimg`` cell and ``gi.sweep`` while another process holds a write
    transaction on the ledger answer with one line naming the owner it knows and what to do; nothing is paid."""
    monkeypatch.setattr(Store, "busy_s", 1.0)
    out = tmp_path / "out"
    for name, value in {
        "GEMIMG_OUTPUT_DIR": str(out),
        "GEMIMG_BACKEND": "sim",
        "GEMIMG_SIM_LATENCY": "0.1,0.2",
    }.items():
        monkeypatch.setenv(name, value)
    other = Store(out)  # another kernel the ledger knows (here: this pid), and a third process's long write
    locker = lock_ledger(out)
    try:
        ip.run_line_magic("load_ext", "gemimg_jupyter")
        _one_busy_line(capsys)
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(30)
    ip.run_cell("import gemimg_jupyter as gi\nsession = gi.get_session()")  # the store opens once it is free
    capsys.readouterr()
    locker = lock_ledger(out)
    try:
        cell = ip.run_cell("%%gemimg\nA paper-cut fox")
        assert cell.error_in_exec is not None
        _one_busy_line(capsys)
        sweep = ip.run_cell("r = gi.sweep('A paper-cut fox', temperature=[0.2, 0.6], yes=True)")
        assert type(sweep.error_in_exec).__name__ == "LedgerBusyError"
        assert _one_busy_line(capsys).startswith("LedgerBusyError: the ledger")
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(30)
        other.close()
    session = ip.user_ns["session"]
    assert session.runner.jobs == [] and session.sim.stats()["submits_accepted"] == 0  # nothing sent, nothing paid
    assert ip.run_cell("%%gemimg --wait\nA paper-cut fox").error_in_exec is None  # free again: it works
    assert [j.state for j in session.runner.jobs] == [JobState.DONE]


def test_a_garbage_ledger_is_refused_and_images_are_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "keep.png").write_bytes(b"mine")
    (out / "ledger.sqlite3").write_bytes(os.urandom(8192))
    assert "damaged or not a database" in _refused(out, "move")
    assert (out / "images" / "keep.png").read_bytes() == b"mine"


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with sqlite3.connect(out / "ledger.sqlite3") as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    assert "not a gemimg ledger" in _refused(out, "move")


def test_a_newer_ledger_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    Store(out).close()
    with sqlite3.connect(out / "ledger.sqlite3") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert "newer gemimg_jupyter" in _refused(out, "upgrade")


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("not a folder")
    _refused(out, "GEMIMG_OUTPUT_DIR")


def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # permission bits do not stop root (CI runs as root): a read-only file system does
        _refused(Path("/proc/sys"), "not writable|cannot be used")
        return
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    out.chmod(0o555)
    try:
        _refused(out, "not writable|cannot be used")
    finally:
        out.chmod(0o755)


FULL = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))   # every file write past 16 KB fails: a full disk
    from gemimg_jupyter.domain.errors import ConfigError
    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.settings import Settings
    try:
        Session(Settings(backend="sim", output_dir=sys.argv[1]))
    except ConfigError as exc:
        print("REFUSED", exc)
    """
)


def test_a_full_disk_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", FULL, str(out)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("REFUSED") and "is full" in proc.stdout, (proc.stdout, proc.stderr)
    assert len(proc.stdout.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


FULL_LATER = textwrap.dedent(
    """
    import resource, signal, sqlite3, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.errors import GemimgError
    from gemimg_jupyter.domain.settings import RetryPolicy, Settings
    url, out = sys.argv[1], sys.argv[2]
    s = Session(Settings(backend="sim", base_url=url, output_dir=out, poll_first=0.1, poll_min=0.1, poll_max=0.3,
                         job_timeout=4, retry=RetryPolicy(max_tries=30, base=0.05, cap=0.3)))
    ask = dict(model="gemini-3.1-flash-image-preview", resolution="4K")   # a PNG of megabytes

    def full_after(size):     # every file write past `size` bytes fails, as on a full disk
        s.store.flush()
        with sqlite3.connect(out + "/ledger.sqlite3") as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    full_after(0)             # full before the cell: one line, nothing sent
    try:
        s.generate("A paper-cut fox", **ask)
        print("NOT REFUSED")
    except GemimgError as exc:
        print("REFUSED", exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    full_after(600_000)       # room for the ledger, not for the image: paid, then the disk is full
    job = s.generate("A paper-cut fox", wait=False, **ask)
    job.wait(60)
    print("STATE", job.state.value, "|", job.error)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    s.close()
    """
)


def test_a_disk_that_fills_is_one_line_before_paying_and_a_paid_row_stays_collectable(tmp_path: Path) -> None:
    """A full disk (a file-size limit in a separate process) refuses a cell in one line before anything is sent;
    once the disk fills after payment, the job ends ``timeout`` and the row stays collectable: a resume collects
    it, paid once."""
    out = tmp_path / "out"
    with fault_sim(3, image_format="png") as sim:
        proc = subprocess.run([sys.executable, "-c", FULL_LATER, sim.base_url, str(out)], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        lines = proc.stdout.splitlines()
        refused = [line for line in lines if line.startswith("REFUSED")]
        assert len(refused) == 1 and "cannot be written" in refused[0] and "free some space" in refused[0], lines
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        state = next(line for line in lines if line.startswith("STATE"))
        assert state.startswith("STATE timeout") and "File too large" in state, (state, proc.stderr[-2000:])
        assert sim.stats()["submits_accepted"] == 1  # the refused cell sent nothing; the second paid once
        with Session(settings_for(sim, out)) as later:  # space again: the paid row is collected, not paid again
            resumed = later.resume()
            assert len(resumed) == 1 and later.wait(60)
            assert resumed[0].state is JobState.DONE, resumed[0].error
        assert record("disk full before a cell, then after paying; resumed", sim, out, requested=1) == 1
        assert len(list((out / "images").glob("*.png"))) == 1


def _old_ledger(out: Path, params: str) -> None:
    """A ledger as the first releases wrote it: no user_version, no owner column."""
    (out / "images").mkdir(parents=True)
    with sqlite3.connect(out / "ledger.sqlite3") as db:
        db.executescript(
            "CREATE TABLE jobs (cbid TEXT PRIMARY KEY, key TEXT NOT NULL, repeat INTEGER NOT NULL DEFAULT 0,"
            " sweep_id TEXT, state TEXT NOT NULL, task_id TEXT, params TEXT NOT NULL, backend TEXT NOT NULL,"
            " price_usd REAL, cost_usd REAL, created REAL NOT NULL, submitted REAL, finished REAL,"
            " expires_at INTEGER, path TEXT, error TEXT);"
            "CREATE TABLE uploads (sha256 TEXT NOT NULL, backend TEXT NOT NULL, url TEXT NOT NULL,"
            " created REAL NOT NULL, PRIMARY KEY (sha256, backend));"
        )
        db.execute(
            "INSERT INTO jobs (cbid, key, state, task_id, params, backend, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("gemimg-old", "k-old", "submitted", "img_gone", params, "sim", time.time() - 100),
        )


def test_an_older_ledger_is_migrated_and_an_unreadable_row_is_marked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _old_ledger(out, "{not json")
    with Session(quick_settings(out)) as session:
        with sqlite3.connect(out / "ledger.sqlite3") as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert session.pending_count() == 1
        assert session.resume() == []  # unreadable parameters: marked, not a traceback
        row = session.store.get("gemimg-old")
        assert row is not None and row.state == "failed" and "unreadable" in (row.error or "")
        assert session.sim.stats()["submits_accepted"] == 0


#: The schema of version 2 as it was written, before the picks joined it.
_V2_SCHEMA = """
CREATE TABLE jobs (cbid TEXT PRIMARY KEY, key TEXT NOT NULL, repeat INTEGER NOT NULL DEFAULT 0, sweep_id TEXT,
    state TEXT NOT NULL, task_id TEXT, params TEXT NOT NULL, backend TEXT NOT NULL, price_usd REAL, cost_usd REAL,
    created REAL NOT NULL, submitted REAL, finished REAL, expires_at INTEGER, path TEXT, error TEXT, owner TEXT);
CREATE INDEX jobs_key ON jobs(key, state);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE uploads (sha256 TEXT NOT NULL, backend TEXT NOT NULL, url TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (sha256, backend));
CREATE TABLE owners (owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, heartbeat REAL NOT NULL);
CREATE INDEX jobs_owner ON jobs(owner);
PRAGMA user_version = 2;
"""


def _v2_ledger(out: Path, *, picked: bool) -> Path:
    """A version-2 ledger with one finished image and one unfinished row; ``picked``: the image was picked the
    old way, in a ``picks`` table its own connection created beside the schema."""
    (out / "images").mkdir(parents=True)
    image = out / "images" / "fox.png"
    image.write_bytes(b"\x89PNG not really")
    with closing(sqlite3.connect(out / "ledger.sqlite3")) as db:
        db.executescript(_V2_SCHEMA)
        insert = "INSERT INTO jobs (cbid, key, state, task_id, params, backend, created, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        with db:
            db.execute(
                insert, ("gemimg-fox", "k-fox", "done", "img_1", '{"prompt": "fox"}', "sim", 1.0, "images/fox.png")
            )
            db.execute(insert, ("gemimg-owl", "k-owl", "submitted", "img_2", '{"prompt": "owl"}', "sim", 2.0, None))
    if picked:
        with closing(sqlite3.connect(out / "ledger.sqlite3")) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS picks (cbid TEXT PRIMARY KEY, note TEXT, picked_at REAL)")
            db.execute(
                "INSERT OR REPLACE INTO picks (cbid, note, picked_at) VALUES (?, ?, ?)", ("gemimg-fox", "best", 5.0)
            )
    return image


@pytest.mark.parametrize("picked", [True, False], ids=["with-picks-table", "without-picks-table"])
def test_a_version_2_ledger_migrates_in_place_and_keeps_its_picks_and_rows(tmp_path: Path, picked: bool) -> None:
    out = tmp_path / "out"
    image = _v2_ledger(out, picked=picked)
    inode = (out / "ledger.sqlite3").stat().st_ino
    store = Store(out)
    try:
        with closing(sqlite3.connect(out / "ledger.sqlite3")) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'picks'").fetchone()[0] == 1
        assert (out / "ledger.sqlite3").stat().st_ino == inode  # migrated in place, not copied
        assert [(r.cbid, r.state) for r in store.rows()] == [("gemimg-owl", "submitted"), ("gemimg-fox", "done")]
        fox = store.lookup("k-fox")
        assert fox is not None and fox.path == str(image)
        picks = Picks(store)
        if picked:
            (kept,) = picks.all()
            assert (kept.cbid, kept.note, kept.picked_at, kept.row) == ("gemimg-fox", "best", 5.0, fox)
        else:
            assert picks.all() == []
        owl = store.get("gemimg-owl")
        assert owl is not None
        picks.add(owl, "later")
        assert picks.cbids() == ({"gemimg-fox", "gemimg-owl"} if picked else {"gemimg-owl"})
    finally:
        store.close()
    again = Store(out)  # opened a second time: nothing left to migrate, the picks are still there
    try:
        assert Picks(again).get("gemimg-owl") is not None
        assert len(again.rows()) == 2
    finally:
        again.close()


def test_a_deleted_output_folder_is_recreated_with_its_ledger(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Session(quick_settings(out)) as session:
        first = session.generate("A paper-cut fox")
        shutil.rmtree(out)
        second = session.generate("A paper-cut owl")
        assert second.path is not None and second.path.is_file() and second.path.parent == out / "images"
        cbids = {r.cbid for r in Store(out).rows()}
        assert {first.cbid, second.cbid} <= cbids  # the rows moved into the new ledger, not a dead file
    with Session(quick_settings(out)) as again:  # after a restart: the live image is a cache hit, not paid again
        assert again.generate("A paper-cut owl").cached


def test_the_built_in_simulator_keeps_its_tasks_across_a_restart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    slow = quick_settings(out, sim_options={"latency": (1.5, 2.0), "queue_delay": (0.0, 0.1), "seed": 3})
    first = Session(slow)
    job = first.generate("A paper-cut fox", wait=False)
    assert job.wait_for(JobState.SUBMITTED, 10) or job.task_id is not None
    first.runner.shutdown(wait=False)  # the kernel goes away with its simulator
    first.close()
    with Session(slow) as second:  # a new kernel, a new built-in simulator
        again = second.generate("A paper-cut fox", wait=False)
        assert again.cbid == job.cbid  # taken over, not paid again
        assert again.result(30).state is JobState.DONE
        assert second.sim.stats()["submits_accepted"] == 0
    lines = (out / ".sim-state.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == job.task_id


@pytest.fixture(scope="module", autouse=True)
def _print_table() -> Iterator[None]:
    yield
    if not ROWS:
        return
    lines = ["", f"{'case':52} {'requested':>9} {'paid':>5} {'images':>6}"]
    lines += [f"{case:52} {req:>9} {paid:>5} {img:>6}" for case, req, paid, img in ROWS]
    print("\n".join(lines))


KERNEL_CELL = """\
import gemimg_jupyter as gi
r = gi.sweep("A paper-cut fox", temperature=[0.2, 0.6, 1.0, 1.4], size=["1:1", "16:9", "9:16"], yes=True, wait=False)
"""


def _submitted_rows(out: Path) -> int:
    try:
        with sqlite3.connect(out / "ledger.sqlite3", timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE task_id IS NOT NULL").fetchone()[0])
    except sqlite3.Error:
        return 0


def _rows_done(out: Path) -> int:
    with sqlite3.connect(out / "ledger.sqlite3", timeout=5) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done'").fetchone()[0])


def test_restart_and_run_all_in_a_real_kernel_pays_n_for_n(server: SimServer, tmp_path: Path) -> None:
    from jupyter_client.manager import KernelManager

    out = tmp_path / "out"
    env = {**os.environ, "GEMIMG_BACKEND": "sim", "GEMIMG_BASE_URL": server.base_url, "GEMIMG_OUTPUT_DIR": str(out)}
    env.pop("TOAPIS_API_KEY", None)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        assert kc.execute_interactive(KERNEL_CELL, timeout=60)["content"]["status"] == "ok"
        wait_for(lambda: _submitted_rows(out) >= 5, 60, "5 paid rows: mid-sweep, some paid and some not yet")
        assert _submitted_rows(out) >= 5 and _rows_done(out) < N  # restarted while the sweep was still running
        km.restart_kernel(now=False)  # Kernel > Restart, then Run All
        kc.wait_for_ready(timeout=60)
        lines: list[str] = []

        def keep(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                lines.append(msg["content"]["text"])

        code = KERNEL_CELL + "r.wait(90)\nprint('images', sum(j.state.has_image for j in r.jobs))\n"
        reply = kc.execute_interactive(code, timeout=120, output_hook=keep)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert f"images {N}" in "".join(lines), lines
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert record("Restart & Run All, a real kernel", server, out) == N
    assert server.stats()["duplicate_business_ids"] == 0
