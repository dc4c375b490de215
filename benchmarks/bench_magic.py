"""Magic benchmark: how long a ``%%gemimg`` cell takes to return, and how responsive the kernel stays.

A real ``InteractiveShell`` with ``%load_ext gemimg_jupyter`` on the built-in
simulator (in-process, as a user without a key gets it; the default session
settings otherwise).

* **cell return** — wall time of ``shell.run_cell("%%gemimg …")`` for a new
  prompt (the job is submitted in the background; the cell shows a live
  status line and returns), for a prompt already in the store (the cell shows
  the image itself), and for a 2×2 sweep cell. The first cell after loading
  is reported apart (it starts the session and the simulator).
* **responsiveness** — wall time of ``shell.run_cell("1+1")`` every 50 ms
  while 100 jobs poll in the background (all 100 in flight at once; tasks
  take 12–16 s, so none completes during the window), against the same cell
  on an idle kernel. ``--jobs 1000`` runs 1,000 (svip tier on both sides,
  tasks 40–50 s).

If ``gemimg_jupyter.magics.extension`` does not exist yet, the cell figures are
skipped and the 100 jobs are started through the Python API instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, report, summary, table, verdict

N_CELLS = 20
N_JOBS = 100  # --jobs N; above 300 the client and the simulator use the svip tier's buckets
WINDOW_S = 8.0
TICK_S = 0.05
TARGETS = {"cell_return_ms": 50.0, "trivial_cell_ms": 100.0}


def make_shell() -> Any:
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryAccessor.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.display_pub = CapturingDisplayPublisher()  # keep outputs in memory, not on the terminal
    return shell


def timed_cell(shell: Any, source: str) -> float:
    """Milliseconds for ``run_cell`` (stdout swallowed); raises if the cell failed."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        t0 = time.perf_counter()
        result = shell.run_cell(source)
        ms = (time.perf_counter() - t0) * 1000
    if not result.success:
        raise RuntimeError(
            f"cell failed: {source!r}: {result.error_in_exec or result.error_before_exec}\n{sink.getvalue()}"
        )
    return ms


def trivial_series(shell: Any, seconds: float) -> list[float]:
    """``1+1`` every TICK_S for ``seconds``; milliseconds per run."""
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(timed_cell(shell, "1+1"))
        time.sleep(TICK_S)
    return out


def ms_summary(values: list[float]) -> dict[str, float]:
    s = summary(values)
    s["n"] = len(values)
    return s


def stop_all(sess: Any) -> None:
    """Drop every unfinished job and wait for the workers, so closing the session does not race them."""
    sess.cancel("all", drop=True)
    sess.runner.wait(timeout=15)


def bench_cells(shell: Any, have_magics: bool) -> dict[str, Any]:
    from gemimg_jupyter.api.session import get_session

    if not have_magics:
        return {"skipped": "gemimg_jupyter.magics.extension does not exist yet"}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        t0 = time.perf_counter()
        shell.run_line_magic("load_ext", "gemimg_jupyter")
        load_ms = (time.perf_counter() - t0) * 1000
    first = timed_cell(shell, "%%gemimg\nbenchmark cell 0: a paper-cut fox")
    new = [timed_cell(shell, f"%%gemimg\nbenchmark cell {i}: a paper-cut fox") for i in range(1, N_CELLS + 1)]
    sweep = [
        timed_cell(shell, f"%%gemimg --sweep temperature=0.2,1.4 --sweep size=1:1,16:9\nbenchmark sweep {i}")
        for i in range(3)
    ]
    sess = get_session()
    wanted = [f"benchmark cell {i}: a paper-cut fox" for i in range(1, 6)]
    sess.runner.wait([j for j in sess.jobs() if j.params.prompt in wanted], timeout=120)
    stop_all(sess)  # the cache-hit cells run on a quiet kernel
    cached = [timed_cell(shell, f"%%gemimg\n{prompt}") for prompt in wanted]
    return {
        "load_ext_ms": load_ms,
        "first_cell_ms": first,
        "new_prompt_ms": ms_summary(new),
        "cache_hit_ms": ms_summary(cached),
        "sweep_2x2_ms": ms_summary(sweep),
    }


def bench_responsiveness(shell: Any, have_magics: bool, out: Path) -> dict[str, Any]:
    from gemimg_jupyter.api.session import reset_session
    from gemimg_jupyter.domain.settings import RATE_TIERS, Settings

    idle = trivial_series(shell, 2.0)
    tier = "svip" if N_JOBS > 300 else "default"
    submit_rate, submit_burst, query_rate, query_burst = RATE_TIERS[tier]
    settings = Settings.from_env(
        output_dir=out / "responsive",
        rate_tier=tier,
        sim_options={
            "latency": (12.0, 16.0) if N_JOBS <= 300 else (40.0, 50.0),  # none finishes in the window
            "queue_delay": (0.5, 2.0),
            "submit_rate": submit_rate,
            "submit_burst": submit_burst,
            "query_rate": query_rate,
            "query_burst": query_burst,
        },
    )
    sess = reset_session(settings)
    assert sess is not None
    before = sess.sim.stats()["status_queries"]
    t0 = time.perf_counter()
    if have_magics:
        submit_ms = [timed_cell(shell, f"%%gemimg --no-wait\nresponsiveness job {i}") for i in range(N_JOBS)]
    else:
        submit_ms = []
        for i in range(N_JOBS):
            s0 = time.perf_counter()
            sess.generate(f"responsiveness job {i}", wait=False)
            submit_ms.append((time.perf_counter() - s0) * 1000)
    submitted_s = time.perf_counter() - t0
    time.sleep(0.5)
    in_flight = sum(1 for j in sess.jobs() if not j.done())
    q0, w0 = sess.sim.stats()["status_queries"], time.perf_counter()
    busy = trivial_series(shell, WINDOW_S)
    q1, w1 = sess.sim.stats()["status_queries"], time.perf_counter()
    done_during = sum(1 for j in sess.jobs() if j.done())
    stop_all(sess)
    reset_session(None)  # stop the runner and the simulator; the tasks stay in the (temporary) ledger
    return {
        "jobs": N_JOBS,
        "started_through": "%%gemimg cells" if have_magics else "Session.generate(wait=False)",
        "submit_all_s": submitted_s,
        "submit_cell_ms": ms_summary(submit_ms),
        "in_flight_at_start": in_flight,
        "finished_during_window": done_during,
        "status_queries_per_s": (q1 - q0) / (w1 - w0),
        "status_queries_before_window": q0 - before,
        "idle_ms": ms_summary(idle),
        "busy_ms": ms_summary(busy),
    }


def main() -> int:
    global N_JOBS
    if "--jobs" in sys.argv:
        N_JOBS = int(sys.argv[sys.argv.index("--jobs") + 1])
    t_start = time.perf_counter()
    have_magics = importlib.util.find_spec("gemimg_jupyter.magics.extension") is not None
    with tempfile.TemporaryDirectory(prefix="gemimg-magic-") as tmp:
        out = Path(tmp)
        os.environ["GEMIMG_BACKEND"] = "sim"
        os.environ["GEMIMG_OUTPUT_DIR"] = str(out / "cells")
        os.environ.pop("TOAPIS_API_KEY", None)
        os.environ.pop("GEMIMG_BASE_URL", None)
        shell = make_shell()
        try:
            cells = bench_cells(shell, have_magics)
            resp = bench_responsiveness(shell, have_magics, out)
        finally:
            if have_magics and "gemimg_jupyter" in shell.extension_manager.loaded:
                with contextlib.redirect_stdout(io.StringIO()):
                    shell.extension_manager.unload_extension("gemimg_jupyter")
            from gemimg_jupyter.api.session import reset_session

            reset_session(None)
    rows: list[dict[str, Any]] = []
    if "skipped" in cells:
        print(f"magic: cell figures skipped ({cells['skipped']})")
    else:
        rows.append({"figure": "%load_ext gemimg_jupyter", "median ms": cells["load_ext_ms"]})
        rows.append({"figure": "first %%gemimg cell (starts session + simulator)", "median ms": cells["first_cell_ms"]})
        for key, label in (
            ("new_prompt_ms", "%%gemimg cell, new prompt"),
            ("cache_hit_ms", "%%gemimg cell, cache hit (shows the image)"),
            ("sweep_2x2_ms", "%%gemimg 2×2 sweep cell"),
        ):
            s = cells[key]
            rows.append(
                {"figure": label, "n": s["n"], "median ms": s["median"], "p95 ms": s["p95"], "max ms": s["max"]}
            )
    for key, label in (("idle_ms", "1+1, idle kernel"), ("busy_ms", f"1+1 while {N_JOBS} jobs poll")):
        s = resp[key]
        rows.append({"figure": label, "n": s["n"], "median ms": s["median"], "p95 ms": s["p95"], "max ms": s["max"]})
    s = resp["submit_cell_ms"]
    rows.append(
        {
            "figure": f"starting the {N_JOBS} jobs ({resp['started_through']}), per cell",
            "n": s["n"],
            "median ms": s["median"],
            "p95 ms": s["p95"],
            "max ms": s["max"],
        }
    )
    print(
        table(
            rows,
            ["figure", "n", "median ms", "p95 ms", "max ms"],
            title="magic: a real InteractiveShell, built-in simulator",
        )
    )
    print(
        f"{resp['in_flight_at_start']} jobs in flight, {fmt(resp['status_queries_per_s'])} status queries/s during the window, "
        f"{resp['finished_during_window']} finished in it"
    )
    checks = []
    if "skipped" not in cells:
        v = cells["new_prompt_ms"]["median"]
        checks.append(
            {"figure": "cell return, new prompt (median ms)", "value": v, "target": "< 50", "verdict": verdict(v, 50.0)}
        )
        v = cells["new_prompt_ms"]["p95"]
        checks.append(
            {"figure": "cell return, new prompt (p95 ms)", "value": v, "target": "< 50", "verdict": verdict(v, 50.0)}
        )
    else:
        checks.append({"figure": "cell return", "value": None, "target": "< 50", "verdict": "skipped"})
    v = resp["busy_ms"]["p95"]
    checks.append(
        {
            "figure": f"1+1 while {N_JOBS} jobs poll (p95 ms)",
            "value": v,
            "target": "< 100",
            "verdict": verdict(v, 100.0),
        }
    )
    v = resp["busy_ms"]["max"]
    checks.append(
        {
            "figure": f"1+1 while {N_JOBS} jobs poll (max ms)",
            "value": v,
            "target": "< 100",
            "verdict": verdict(v, 100.0),
        }
    )
    report("magic", checks, {"cells": cells, "responsiveness": resp}, elapsed=time.perf_counter() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
