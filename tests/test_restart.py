"""After a restart (issue #26, points 4, 6 and 9): real separate processes on one output folder.

Process 1 is a ``python -c`` child that does its work and exits (``os._exit``, as a killed kernel
leaves things, unless the test is about a normal exit); process 2 is this test's own session, or a
real ``InteractiveShell`` in it, on the same output folder and the same simulator (the ``sim``
fixture outlives process 1, so money is counted there: ``submits_accepted``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from gemimg_jupyter.api.session import Session, get_session, reset_session
from gemimg_jupyter.ledger.schema import SCHEMA_VERSION
from gemimg_jupyter.ledger.store import Store

from .support import older_ledger, quick_settings, wait_for


def child_env(out: Path, sim: Any = None, **more: str) -> dict[str, str]:
    """The environment of a child process on the output folder ``out`` (and the simulator ``sim``, if given)."""
    env = {**os.environ, "GEMIMG_BACKEND": "sim", "GEMIMG_OUTPUT_DIR": str(out), **more}
    env.pop("TOAPIS_API_KEY", None)
    if sim is not None:
        env["GEMIMG_BASE_URL"] = sim.base_url
    return env


def run_child(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def said(done: subprocess.CompletedProcess[str], tag: str) -> list[str]:
    """The words of the child's one stdout line that starts with ``tag``."""
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith(tag + " ")]
    return line.split()[1:]


def submits(sim: Any) -> int:
    return int(sim.stats()["submits_accepted"])


# ---------------------------------------------------------------- 6. every id kind × every command

_MADE = """
from IPython.core.interactiveshell import InteractiveShell
from gemimg_jupyter.api.lineage import ledger_cbid
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "gemimg_jupyter")
cell = "--sweep temperature=0.2,0.9 --sweep size=1:1,16:9 -o s --wait"
ip.run_cell_magic("gemimg", cell, "a lighthouse")
paid = ip.user_ns["s"]
ip.run_cell_magic("gemimg", cell, "a lighthouse")  # the same cell again: four cache hits, a new sweep id
hits = ip.user_ns["s"]
assert all(j.cached for j in hits.jobs)
ip.run_cell_magic("gemimg", "-o one --wait", "a harbour")
one = ip.user_ns["one"]
print("SWEEPS", paid.id, hits.id)
print("IMAGES", *(f"{j.id},{j.task_id},{j.cbid}" for j in [*paid.jobs, one]))
print("HITS", *(f"{j.id},{j.cbid}" for j in hits.jobs))
"""


def test_every_id_kind_works_in_every_command_after_a_restart(
    ip: Any, tmp_output: Path, capsys: Any, tmp_path: Path
) -> None:
    """Sweep ids (paid, and all cache hits), short, task and business ids, and a cache hit's ids, each in
    report, lineage, pick, compare, cancel and info (and their Python equivalents), from a later process."""
    from gemimg_jupyter.api.compare import compare_targets

    done = run_child(_MADE, child_env(tmp_output, GEMIMG_SIM_LATENCY="0.1,0.3"))
    sweeps = said(done, "SWEEPS")
    images = [ident for item in said(done, "IMAGES") for ident in item.split(",")]
    hits = [ident for item in said(done, "HITS") for ident in item.split(",")]
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    sess = get_session()
    capsys.readouterr()
    for ident in images + hits:
        assert ip.run_line_magic("gemimg", f"lineage {ident}") is not None
        assert ip.run_line_magic("gemimg", f"info {ident}") is not None
        ip.run_line_magic("gemimg", f"pick {ident}")
        ip.run_line_magic("gemimg", f"compare {ident}")
        ip.run_line_magic("gemimg", f"report {ident} {tmp_path / 'one.html'}")
        ip.run_line_magic("gemimg", f"cancel {ident}")
        out = capsys.readouterr().out
        assert "picked" in out and "report written to" in out and "had already ended; nothing to cancel" in out, out
        row = sess.find(ident)
        assert row.state == "done" and sess.lineage(ident).steps[-1].row.cbid == row.cbid
        assert sess.info(ident)["file"] and sess.is_picked(ident) and sess.save_report(ident).is_file()
        assert len(compare_targets(sess, [ident])) == 1
        assert sess.cancel(ident) == 0  # the Python cancel: it had ended, nothing to cancel
    for sweep_id in sweeps:
        ip.run_line_magic("gemimg", f"report {sweep_id}")
        assert f"sweep_{sweep_id}.html" in capsys.readouterr().out
        rebuilt = sess.sweep_of(sweep_id)
        assert rebuilt is not None and rebuilt.plan.shape == (2, 2, 1) and len(rebuilt.jobs) == 4
        assert [a.name for a in rebuilt.plan.axes] == ["temperature", "size"]
        assert all(j.state.has_image for j in rebuilt.jobs)
        comparison = compare_targets(sess, [sweep_id])
        assert comparison.shape() == (2, 2, 1) and len(comparison) == 4
        ip.run_line_magic("gemimg", f"compare {sweep_id}")
        for command in ("lineage", "pick", "info"):
            with pytest.raises(UsageError, match=rf"'{sweep_id}' is a sweep of an earlier session, not one image"):
                ip.run_line_magic("gemimg", f"{command} {sweep_id}")
        ip.run_line_magic("gemimg", f"cancel {sweep_id}")
        assert "nothing to cancel" in capsys.readouterr().out
    assert sess.sweep_of(sweeps[1]).progress_text().startswith("4/4 done (4 cached), $0.00")  # type: ignore[union-attr]
    assert sess.sim.stats()["submits_accepted"] == 0  # nothing of this was paid again


_SHAPES = """
import json
import gemimg_jupyter as gi
paired = gi.sweep("a cat", gi.pair(size=["1:1", "16:9"], top_p=[0.5, 0.9]), "prompt=cat,dog", temperature=[0.3, 0.6])
repeated = gi.sweep("a fox", temperature=[0.2, 0.9], repeats=2)
def shape(s):
    axes = [[m.name for m in a.members] for a in s.plan.axes]
    return [s.id, list(s.plan.shape), s.plan.repeats, axes, [[c.index, c.key, c.position] for c in s.plan.cells]]
print("SHAPES", json.dumps([shape(paired), shape(repeated)]))
"""


def test_an_earlier_sweep_is_rebuilt_with_its_axes_pairs_and_repeats(tmp_output: Path) -> None:
    """Three axes (one a pair, one a prompt search/replace) and a repeated sweep: the same grid positions."""
    import json

    done = run_child(_SHAPES, child_env(tmp_output, GEMIMG_SIM_LATENCY="0.1,0.2"))
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("SHAPES ")]
    with Session(quick_settings(tmp_output)) as sess:
        for sweep_id, shape, repeats, axes, cells in json.loads(line.split(" ", 1)[1]):
            rebuilt = sess.sweep_of(sweep_id)
            assert rebuilt is not None and list(rebuilt.plan.shape) == shape and rebuilt.plan.repeats == repeats
            assert [[m.name for m in a.members] for a in rebuilt.plan.axes] == axes
            where = {c.key: list(c.position) for c in rebuilt.plan.cells}
            assert all(where[key] == position for _, key, position in cells)  # every image at its grid position
            assert rebuilt.progress_text().startswith(f"{len(cells)}/{len(cells)} done")


# ---------------------------------------------------------------- 6. cancel an earlier process's jobs

_LEFT = """
import os, sys
from gemimg_jupyter import Settings
from gemimg_jupyter.api.session import Session
sess = Session(Settings.from_env().replace(max_in_flight=2, poll_min=0.05, poll_first=0.05))
kept = sess.generate("a kite", wait=False)
dropped = sess.generate("a boat", wait=False)
sweep = sess.sweep("a fox", temperature=[0.2, 0.9], wait=False)  # the window is full: its cells are not sent
import time
SENT = {"submitted", "in_progress", "downloading", "done"}  # the task id is on disk
deadline = time.monotonic() + 30
while not {kept.state.value, dropped.state.value} <= SENT and time.monotonic() < deadline:  # task ids on disk
    time.sleep(0.02)
print("IDS", kept.id, dropped.id, sweep.id, *(j.id for j in sweep.jobs), flush=True)
os._exit(0)  # a killed kernel: nothing handed back
"""


def test_cancel_takes_an_earlier_process_ids_and_says_what_it_means_for_paid_ones(
    ip: Any, tmp_output: Path, sim: Any, capsys: Any
) -> None:
    sim.configure(latency=(30.0, 40.0))
    done = run_child(_LEFT, child_env(tmp_output, sim))
    kept, dropped, sweep_id, *cells = said(done, "IDS")
    assert submits(sim) == 2
    reset_session(quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    capsys.readouterr()
    ip.run_line_magic("gemimg", f"cancel {sweep_id}")
    out = capsys.readouterr().out
    assert f"cancelled 2 jobs ({', '.join(cells)}) an earlier session left unsent (0 requests paid" in out, out
    ip.run_line_magic("gemimg", f"cancel {kept}")
    out = capsys.readouterr().out
    assert f"1 job ({kept}) already sent to the gateway and paid; the gateway cannot cancel a task" in out, out
    assert "%gemimg resume" in out and "--drop" in out and len(out.strip().splitlines()) == 1
    ip.run_line_magic("gemimg", f"cancel {dropped} --drop")
    assert f"gave up 1 job ({dropped}) already sent and paid" in capsys.readouterr().out
    with pytest.raises(UsageError, match="no job or sweep 'zzzzzz' in this session or the ledger"):
        ip.run_line_magic("gemimg", "cancel zzzzzz")
    sess = get_session()
    resumed = sess.resume()
    assert [j.id for j in resumed] == [kept]  # the unsent cells and the dropped job are not taken up again
    sim.advance(60)
    assert resumed[0].wait(30) and resumed[0].state.value == "done"
    states = {r.cbid[-6:]: r.state for r in sess.store.rows()}
    assert states == {kept: "done", dropped: "cancelled", **dict.fromkeys(cells, "cancelled")}
    assert sess.store.get(sess.find(dropped).cbid).task_id  # type: ignore[union-attr]  # the paid task stays named
    assert submits(sim) == 2 and sess.resume() == []


# ---------------------------------------------------------------- 4. a queued edit's dependency in the ledger

_QUEUED = """
import os
import gemimg_jupyter as gi
parent = gi.generate("a red kite", wait=False)
edit = gi.generate("make it blue", edit=parent, wait=False)
assert edit.waiting_for == parent.id and edit.state.value == "queued"
import time
SENT = {"submitted", "in_progress", "downloading", "done"}
deadline = time.monotonic() + 30
while parent.state.value not in SENT and time.monotonic() < deadline:  # its task id on disk
    time.sleep(0.02)
print("IDS", parent.id, edit.id, flush=True)
os._exit(0)  # the kernel dies before the parent's image lands
"""


def _waiting(out: Path) -> int:
    with closing(sqlite3.connect(out / "ledger.sqlite3")) as db:
        return int(db.execute("SELECT COUNT(*) FROM waiting_edits").fetchone()[0])


def test_a_queued_edit_survives_a_restart_and_resume_sends_it_when_the_parent_lands(tmp_output: Path, sim: Any) -> None:
    sim.configure(latency=(30.0, 40.0))
    parent_id, edit_id = said(run_child(_QUEUED, child_env(tmp_output, sim)), "IDS")
    assert submits(sim) == 1 and _waiting(tmp_output) == 1
    with Session(quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3)) as sess:
        assert sess.pending_count() == 2
        resumed = sess.resume()
        assert [j.id for j in resumed] == [parent_id, edit_id]  # the edit keeps the id it was shown with
        edit = resumed[1]
        assert edit.waiting_for == parent_id and submits(sim) == 1  # nothing sent before the parent lands
        sim.advance(60)
        wait_for(lambda: edit.task_id, 60, "the edit to be sent once its parent landed")
        sim.advance(60)
        wait_for(lambda: edit.done(), 60, "the edit to end")
        assert edit.state.value == "done" and edit.parent is not None
        assert edit.parent["cbid"] == sess.find(parent_id).cbid
        assert [s.row.cbid[-6:] for s in sess.lineage(edit_id).steps] == [parent_id, edit_id]
        assert submits(sim) == 2 and _waiting(tmp_output) == 0 and sess.resume() == []


def test_a_queued_edit_whose_parent_landed_meanwhile_is_sent_at_once_and_keeps_answering_to_its_id(
    tmp_output: Path, sim: Any
) -> None:
    sim.configure(latency=(30.0, 40.0))
    parent_id, edit_id = said(run_child(_QUEUED, child_env(tmp_output, sim)), "IDS")
    with Session(quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3)) as sess:
        parent = sess.generate("a red kite", wait=False)  # the parent's cell run again: its row is taken over
        sim.advance(60)
        assert parent.wait(30) and parent.id == parent_id and submits(sim) == 1
        (edit,) = sess.resume()
        assert edit.waiting_for is None and _waiting(tmp_output) == 0  # sent at once: its parent has its image
        wait_for(lambda: edit.task_id, 30, "the edit to be sent")
        sim.advance(60)
        assert edit.wait(30) and edit.state.value == "done" and submits(sim) == 2
        assert sess.find(edit_id).cbid == edit.cbid  # the id the dead kernel showed still names it
        assert [s.row.cbid[-6:] for s in sess.lineage(edit_id).steps] == [parent_id, edit.id]


def test_a_queued_edit_of_a_parent_that_fails_after_a_restart_ends_failed_free(tmp_output: Path, sim: Any) -> None:
    sim.configure(latency=(30.0, 40.0), fail_rate=1.0)
    parent_id, edit_id = said(run_child(_QUEUED, child_env(tmp_output, sim)), "IDS")
    with Session(quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3)) as sess:
        edit = sess.resume()[1]
        assert edit.id == edit_id
        sim.advance(60)
        wait_for(lambda: edit.done(), 60, "the edit to end")
        assert edit.state.value == "failed" and f"job {parent_id} ended failed" in (edit.error or "")
        assert "0 requests paid" in (edit.error or "")
        # the entry is forgotten by the edit's listener, which may run just after done() turns true
        wait_for(lambda: _waiting(tmp_output) == 0, 10, "the waiting entry to be forgotten")
        assert submits(sim) == 1


def test_re_running_the_cells_after_a_restart_queues_the_edit_again_once(ip: Any, tmp_output: Path, sim: Any) -> None:
    """Run All again after the restart: the parent's row is taken over (not paid again), the edit is queued
    behind it in place of the one the dead kernel left, and is paid once."""
    sim.configure(latency=(30.0, 40.0))
    said(run_child(_QUEUED, child_env(tmp_output, sim)), "IDS")
    reset_session(quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.run_cell_magic("gemimg", "-o a", "a red kite")
    ip.run_cell_magic("gemimg", "--edit a -o b", "make it blue")
    assert _waiting(tmp_output) == 1 and submits(sim) == 1  # one queued edit, not two
    sim.advance(60)
    b = ip.user_ns["b"]
    wait_for(lambda: b.task_id, 60, "the edit to be sent once its parent landed")
    sim.advance(60)
    wait_for(lambda: b.done(), 60, "the edit to end")
    assert b.state.value == "done" and submits(sim) == 2 and _waiting(tmp_output) == 0
    assert get_session().resume() == []


def test_an_earlier_process_queued_edit_is_named_in_one_line_and_can_be_cancelled_free(
    ip: Any, tmp_output: Path, sim: Any, capsys: Any
) -> None:
    sim.configure(latency=(30.0, 40.0))
    parent_id, edit_id = said(run_child(_QUEUED, child_env(tmp_output, sim)), "IDS")
    reset_session(quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    with pytest.raises(UsageError, match=rf"'{edit_id}' is an edit still waiting for job {parent_id}; %gemimg resume"):
        ip.run_line_magic("gemimg", f"lineage {edit_id}")
    capsys.readouterr()
    ip.run_line_magic("gemimg", f"cancel {edit_id}")
    assert f"cancelled 1 job ({edit_id}) an earlier session left unsent" in capsys.readouterr().out
    assert _waiting(tmp_output) == 0
    resumed = get_session().resume()
    assert [j.id for j in resumed] == [parent_id]
    sim.advance(60)
    assert resumed[0].wait(30) and resumed[0].state.value == "done" and submits(sim) == 1


def test_a_version_5_ledger_gets_the_version_6_tables_and_keeps_its_rows(tmp_output: Path) -> None:
    older_ledger(tmp_output, 5, without=("waiting_edits", "aliases"))
    store = Store(tmp_output)
    try:
        with closing(sqlite3.connect(tmp_output / "ledger.sqlite3")) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"waiting_edits", "aliases", "jobs", "picks"} <= tables
        assert [r.cbid for r in store.rows()] == ["gemimg-kept"]
    finally:
        store.close()


# ---------------------------------------------------------------- 9. leaving with work in flight

_SCRIPT = """
import sys
import gemimg_jupyter as gi
if sys.argv[1] == "unfinished":
    import time
    jobs = [gi.generate("a lighthouse", wait=False), *gi.sweep("a fox", temperature=[0.2, 0.9], wait=False).jobs]
    SENT = {"submitted", "in_progress", "downloading", "done"}
    deadline = time.monotonic() + 30
    while any(j.state.value not in SENT for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.02)
else:
    gi.generate("a lighthouse", wait=True)
print("END")
"""


def test_a_script_that_exits_with_paid_jobs_unfinished_says_so_in_one_line(tmp_output: Path, sim: Any) -> None:
    sim.configure(latency=(30.0, 40.0))
    left = run_child(_SCRIPT, child_env(tmp_output, sim), "unfinished")
    lines = [ln for ln in left.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in left.stderr, left.stderr
    assert lines[0].startswith("gemimg: exiting with 3 paid jobs still running at the gateway"), lines
    assert "run the same code again, or gi.resume() in a new session" in lines[0]
    with Session(quick_settings(tmp_output, base_url=sim.base_url)) as sess:
        assert sess.pending_count() == 3  # handed back: a later process takes them at once
    sim.configure(latency=(0.1, 0.2))
    finished = run_child(_SCRIPT, child_env(tmp_output / "other", sim), "finished")
    assert "END" in finished.stdout and "gemimg: exiting" not in finished.stderr, finished.stderr


def _ipython(cells: str, env: dict[str, str]) -> str:
    ipython = Path(sys.executable).with_name("ipython")
    done = subprocess.run(
        [str(ipython), "--simple-prompt", "--no-banner", "--colors=NoColor", "--HistoryManager.enabled=False"],
        input=cells,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_terminal_ipython_shows_one_status_line_per_cell_and_the_exit_line(tmp_output: Path, sim: Any) -> None:
    sim.configure(latency=(0.1, 0.3))
    text = _ipython(
        "%load_ext gemimg_jupyter\n%%gemimg --wait -o fox\na paper-cut fox\n\n\n"
        "%%gemimg -o hen\na paper-cut hen\n\n\nhen.wait(30)\n",
        child_env(tmp_output, sim),
    )
    ids = set(re.findall(r"(?:<gemimg image|· job) (\w{6})\b", text))
    assert len(ids) == 2, text
    for ident in ids:
        assert sum(1 for ln in text.splitlines() if ident in ln) == 1, text  # one line per cell, not two
    assert "gemimg: exiting" not in text
    sim.configure(latency=(30.0, 40.0))
    text = _ipython(
        "%load_ext gemimg_jupyter\n%%gemimg -o owl\na paper-cut owl\n\n\n"
        "import time\nt = time.monotonic() + 30\nwhile owl.task_id is None and time.monotonic() < t: time.sleep(0.02)\n\n",
        child_env(tmp_output / "later", sim),
    )
    exits = [ln for ln in text.splitlines() if "gemimg: exiting" in ln]
    assert len(exits) == 1 and "exiting with 1 paid job still running" in exits[0], text
