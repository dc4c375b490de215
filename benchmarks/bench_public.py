"""The public path (issue #25): ``Session.sweep(..., wait=True)``, grid included, against the gateway's limits.

``bench_limits.py`` hands N requests straight to the engine. A user calls ``gi.sweep(...)`` (or a
``%%gemimg --sweep`` cell), which also plans the sweep, quotes it, follows every job for the grid
and saves the labelled grid(s) at the end. This measures that whole path: a sweep of N requests
(a temperature × top_p grid) at the svip tier, tasks 4-12 s at real speed, in its own process
against a ``SimProcess``:

* **wall** from the ``sweep`` call to its return (every image on disk, every grid page saved);
* **ideal** as in ``bench_limits.py``: the submit bucket (burst, then rate) and each task's duration;
* **call return**: how long ``sweep(..., wait=False)`` takes to hand back the result;
* **grid after last**: from the last image on disk to the return (the final grid's cost);
* peak RSS and client CPU (÷ wall: the share of one core), with **ref ms**: a fixed piece of work timed just
  before the sweep (``_common.reference_ms``): whether the machine itself was slower during the run.

    python benchmarks/bench_public.py                 # 1,000 requests, svip
    python benchmarks/bench_public.py --sizes 300,1000 --draw
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SimProcess, reference_ms, report, table, verdict
from bench_limits import LATENCY, QUEUE, TIERS, ideal


def axes_for(n: int) -> dict[str, list[float]]:
    """A temperature × top_p grid of exactly ``n`` cells (n = nx · ny with ny ≤ 20 dividing n)."""
    ny = next(d for d in range(min(20, n), 0, -1) if n % d == 0)
    nx = n // ny
    temps = [round(0.01 + 1.9 * i / max(1, nx - 1), 4) for i in range(nx)]
    tops = [round(0.05 + 0.95 * i / max(1, ny - 1), 4) for i in range(ny)]
    return {"temperature": temps, "top_p": tops} if ny > 1 else {"temperature": temps}


def rss_cap(n: int) -> int:
    """The issue's peak RSS target: < 300 MB up to 1,000 requests, < 500 MB at 5,000."""
    return 300 if n <= 1000 else 500


def run_one(n: int, seed: int, draw: bool) -> dict[str, Any]:
    """One sweep of ``n`` requests through ``Session.sweep`` in this process."""
    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.settings import RetryPolicy, Settings

    s_rate, s_burst, q_rate, q_burst = TIERS["svip"]
    sim_cfg: dict[str, Any] = {
        "seed": seed,
        "latency": list(LATENCY),
        "queue_delay": list(QUEUE),
        "submit_rate": s_rate,
        "submit_burst": s_burst,
        "query_rate": q_rate,
        "query_burst": q_burst,
        "render_once": not draw,  # a gateway's CDN serves files; the simulator would draw each on one core
    }
    with SimProcess(**sim_cfg) as sim, tempfile.TemporaryDirectory(prefix="gemimg-public-") as tmp:
        settings = Settings(
            backend="sim",
            base_url=sim.base_url,
            output_dir=Path(tmp),
            rate_tier="svip",
            retry=RetryPolicy(max_tries=50),
        )
        session = Session(settings)
        ref_ms = reference_ms()  # this machine's speed in this minute (see _common.reference_ms)
        cpu0 = time.process_time()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.time()
        result = session.sweep(
            "public path: a paper-cut fox in a forest",
            wait=False,
            yes=True,
            confirm_above_usd=None,
            max_requests=max(n, 1000),  # above 1,000 a sweep is an explicit opt-in
            **axes_for(n),  # type: ignore[arg-type]
        )
        returned = time.time() - start
        ok = result.wait(timeout=900)
        end = time.time()
        cpu = time.process_time() - cpu0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        last_disk = max((j.finished_at or 0.0) for j in result.jobs)
        stats = sim.stats()
        tasks = sim.tasks()
        pages = len(result.paths)
        page_lag = sorted(
            round(p.stat().st_mtime - last_disk, 2) for p in result.paths
        )  # each page saved vs last image
        ready = sorted(  # each page's last cell on disk vs the last image: when a page could have been saved
            round(max((result.jobs[i].finished_at or 0.0) for i in result._cells_on(page)) - last_disk, 2)
            for page in result.pages()
        )
        done = sum(1 for j in result.jobs if j.state.has_image)
        commits = session.store.commits
        batches, changes = commits.batches, commits.changes
        session.close()
    durations = [t["duration"] for t in sorted(tasks.values(), key=lambda t: t["seq"])]
    ideal_s = ideal(durations, s_rate, s_burst, 0)
    wall = end - start
    return {
        "n": n,
        "ok": ok,
        "draw": draw,
        "wall_s": wall,
        "ideal_s": ideal_s,
        "ratio": wall / ideal_s if ideal_s else float("nan"),
        "call_return_ms": returned * 1000,
        "grid_after_last_s": end - last_disk,
        "done": done,
        "accepted": stats["submits_accepted"],
        "queries_per_task": stats["status_queries"] / max(1, n),
        "grid_files": pages,
        "page_saved_after_last_s": page_lag,
        "page_ready_after_last_s": ready,
        "ledger_batches": batches,
        "ledger_changes": changes,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_s": cpu,
        "cpu_user_s": ru1.ru_utime - ru0.ru_utime,
        "cpu_sys_s": ru1.ru_stime - ru0.ru_stime,  # the kernel's share: file creation, fsync, sockets, futexes
        "cpu_share": cpu / wall if wall else 0.0,
        "reference_ms": ref_ms,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000", help="requests per sweep, comma-separated (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--draw", action="store_true", help="the simulator draws every PNG (default: serves one per size)")
    ap.add_argument("--name", default="public", help="results file name (default: %(default)s)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.seed, args.draw)))
        return 0
    t0 = time.perf_counter()
    results = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        cmd = [sys.executable, __file__, "--one", str(n), "--seed", str(args.seed), *(["--draw"] if args.draw else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = [
        {
            "N": r["n"], "wall s": r["wall_s"], "ideal s": r["ideal_s"], "wall/ideal": r["ratio"],
            "call ms": r["call_return_ms"], "grid after last s": r["grid_after_last_s"], "done": r["done"],
            "paid": r["accepted"], "q/task": r["queries_per_task"], "grid files": r["grid_files"],
            "ledger tx": r.get("ledger_batches"),
            "RSS MB": r["peak_rss_mb"], "CPU s": r["cpu_s"], "of it sys s": r.get("cpu_sys_s"),
            "CPU/wall": r["cpu_share"], "ref ms": r.get("reference_ms"),
        }
        for r in results
    ]  # fmt: skip
    print(table(rows, list(rows[0]) if rows else [], title="gi.sweep(..., wait=True) at svip (tasks 4-12 s)"))
    checks = []
    for r in results:
        n = r["n"]
        checks += [
            {"figure": f"{n}: wall/ideal", "value": r["ratio"], "target": "<= 1.10", "verdict": verdict(r["ratio"], 1.10)},
            {"figure": f"{n}: peak RSS MB", "value": r["peak_rss_mb"], "target": f"< {rss_cap(n)}",
             "verdict": verdict(r["peak_rss_mb"], rss_cap(n))},
            {"figure": f"{n}: CPU share", "value": r["cpu_share"], "target": "< 0.6", "verdict": verdict(r["cpu_share"], 0.6)},
        ]  # fmt: skip
    report(args.name, checks, {"results": results, "seed": args.seed}, elapsed=time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
