"""The engine against the gateway's own limits (issue #12).

The ideal is what a zero-overhead client with instant completion detection
could do under the *gateway's* limits, not under any cap of the client:
task i is accepted when the submit bucket allows it (the burst at once,
then one per 1/rate seconds) and, when the server caps unfinished tasks at
C, when one of C slots is free; it ends after its own duration (read from
the simulator's task records). ``wall`` runs from the first submit call to
the last file on disk.

Each scenario runs in its own Python process (so threads, peak RSS and CPU
are the client's alone); the simulator runs in another (``SimProcess``).
Scenarios with ``scale < 1`` shrink task times and grow rates by 1/scale;
their ``model`` column rebuilds the real-speed wall from the measured
per-task delays (detection and completion-to-disk ÷ scale, submit times
at the real bucket).

    python benchmarks/bench_limits.py                    # N=16, 48, 48 capped at 12 (real speed)
    python benchmarks/bench_limits.py --scenarios all    # also 256 and 1,000 (svip)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SimProcess, report, summary, table, verdict

LATENCY = (4.0, 12.0)  # the task times, real seconds
QUEUE = (0.5, 2.0)
TIERS = {"default": (5.0, 50, 50.0, 500), "vip": (16.7, 167, 166.7, 1667), "svip": (33.3, 334, 500.0, 5000)}
SCENARIOS: dict[str, dict[str, Any]] = {
    "16 (4x4 sweep)": {"n": 16, "tier": "default", "cap": 0, "scale": 1.0, "target": 1.10},
    "48 defaults": {"n": 48, "tier": "default", "cap": 0, "scale": 1.0, "target": 1.10},
    "48, server caps unfinished at 12": {"n": 48, "tier": "default", "cap": 12, "scale": 1.0, "target": 1.25},
    "256 defaults": {"n": 256, "tier": "default", "cap": 0, "scale": 1.0, "target": 1.10},
    "1000 svip": {"n": 1000, "tier": "svip", "cap": 0, "scale": 1.0, "target": 1.15},
    # a lone 4x4 sweep in a folder where the same model ran before: the ledger's durations place the first looks
    "16, ledger has past durations": {"n": 16, "tier": "default", "cap": 0, "scale": 1.0, "target": 1.10, "warm": True},
    "48, ledger has past durations": {"n": 48, "tier": "default", "cap": 0, "scale": 1.0, "target": 1.10, "warm": True},
    "256, ledger has past durations": {
        "n": 256,
        "tier": "default",
        "cap": 0,
        "scale": 1.0,
        "target": 1.10,
        "warm": True,
    },
    "1000 svip, files served not drawn": {
        "n": 1000,
        "tier": "svip",
        "cap": 0,
        "scale": 1.0,
        "target": 1.15,
        "render_once": True,
    },
}
QUICK = ("16 (4x4 sweep)", "48 defaults", "48, server caps unfinished at 12")


def ideal(durations: list[float], rate: float, burst: int, cap: int) -> float:
    """Makespan under the submit bucket (burst, then rate) and an optional cap of C unfinished tasks."""
    ends: list[float] = []
    slots: list[float] = []
    for i, d in enumerate(durations):
        start = 0.0 if i < burst else (i - burst + 1) / rate
        if cap:
            if len(slots) >= cap:
                slots.sort()
                start = max(start, slots.pop(0))
            slots.append(start + d)
        ends.append(start + d)
    return max(ends) if ends else 0.0


def run_one(name: str, seed: int) -> dict[str, Any]:
    """One scenario in this process: a SimProcess, a Session-built engine, N requests at once."""
    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.models import GenerationParams, JobState
    from gemimg_jupyter.domain.settings import RetryPolicy, Settings

    sc = SCENARIOS[name]
    n, scale, cap = sc["n"], sc["scale"], sc["cap"]
    s_rate, s_burst, q_rate, q_burst = TIERS[sc["tier"]]
    sim_cfg = {
        "seed": seed,
        "latency": [LATENCY[0] * scale, LATENCY[1] * scale],
        "queue_delay": [QUEUE[0] * scale, QUEUE[1] * scale],
        "submit_rate": s_rate / scale,
        "submit_burst": s_burst,
        "query_rate": q_rate / scale,
        "query_burst": q_burst,
        "max_unfinished": cap,
    }
    if sc.get("render_once"):  # the simulator draws each image on one core; a gateway's CDN only serves files
        sim_cfg["render_once"] = True
    peak_threads = 0
    late: list[float] = []  # how late a 50 ms wait wakes up: what a notebook cell would wait for the GIL
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_threads
        while True:
            asked = time.perf_counter()
            if stop.wait(0.05):
                return
            late.append(time.perf_counter() - asked - 0.05)
            sum(range(1000))  # a trivial cell's work
            peak_threads = max(peak_threads, threading.active_count())

    with SimProcess(**sim_cfg) as sim, tempfile.TemporaryDirectory(prefix="gemimg-limits-") as tmp:
        d = Settings()
        kw: dict[str, Any] = {
            "backend": "sim",
            "base_url": sim.base_url,
            "output_dir": Path(tmp),
            "poll_first": d.poll_first * scale,
            "poll_min": d.poll_min * scale,
            "poll_max": d.poll_max * scale,
            "submit_rate": s_rate / scale,
            "submit_burst": s_burst,
            "query_rate": q_rate / scale,
            "query_burst": q_burst,
            "retry": RetryPolicy(max_tries=50, base=d.retry.base * scale, cap=d.retry.cap * scale),
        }
        if "rate_tier" in Settings.__dataclass_fields__:
            kw["rate_tier"] = sc["tier"]
        if sc.get("warm"):  # an earlier run in this folder, not measured: the ledger keeps its durations
            with Session(Settings(**kw)) as earlier:
                warm = [earlier.runner.submit(GenerationParams.create(f"earlier run {i}: a fox")) for i in range(16)]
                earlier.runner.wait(warm, timeout=600)
        earlier_stats, tasks_before = sim.stats(), set(sim.tasks())
        session = Session(Settings(**kw))
        detected: dict[str, float] = {}
        lock = threading.Lock()

        def on_change(job: Any) -> None:
            if job.state is JobState.DOWNLOADING:
                with lock:
                    detected.setdefault(job.cbid, time.time())

        session.runner.add_listener(on_change)
        plist = [GenerationParams.create(f"limits {name} {i}: a paper-cut fox") for i in range(n)]
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0 = time.process_time()
        start = time.time()
        jobs = [session.runner.submit(p) for p in plist]
        session.runner.wait(jobs, timeout=600)
        end = max((j.finished_at or time.time()) for j in jobs)
        cpu = time.process_time() - cpu0
        stop.set()
        stats = sim.stats()
        for figure in ("status_queries", "submits_accepted"):  # this run's own
            stats[figure] -= earlier_stats[figure]
        tasks = {k: t for k, t in sim.tasks().items() if k not in tasks_before}
        session.close()
    done = [j for j in jobs if j.state is JobState.DONE]
    by_seq = sorted(tasks.values(), key=lambda t: t["seq"])
    durations = [t["duration"] for t in by_seq]
    ideal_s = ideal(durations, s_rate / scale, s_burst, cap)
    det = [detected[j.cbid] - tasks[j.task_id]["completed_wall"] for j in done if j.cbid in detected]
    disk = [(j.finished_at or 0) - tasks[j.task_id]["completed_wall"] for j in done]
    wall = end - start
    out: dict[str, Any] = {
        "scenario": name,
        "n": n,
        "scale": scale,
        "wall_s": wall,
        "ideal_s": ideal_s,
        "ratio": wall / ideal_s if ideal_s else float("nan"),
        "done": len(done),
        "not_done": n - len(done),
        "accepted": stats["submits_accepted"],
        "duplicates": stats["duplicate_business_ids"],
        "rate_limited": stats["rate_limited"],
        "queries_per_task": stats["status_queries"] / max(1, n),
        "detect_s": summary(det),
        "to_disk_s": summary(disk),
        "threads": peak_threads,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_s": cpu,
        "cpu_share": cpu / wall if wall else 0.0,
        "gil_late_s": summary(late),
    }
    if scale != 1.0:  # the real-speed model: durations and per-task delays ÷ scale, the real bucket
        real = [t / scale for t in durations]
        real_ideal = ideal(real, s_rate, s_burst, cap)
        late = sorted(disk)[len(disk) // 2] / scale if disk else 0.0
        out["model_ratio"] = (real_ideal + late) / real_ideal if real_ideal else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="quick", help="'quick', 'all' or names joined by ';'")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--name", default="limits", help="results file name (default: %(default)s)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.seed)))
        return 0
    names = (
        list(QUICK) if args.scenarios == "quick" else list(SCENARIOS) if args.scenarios == "all" else
        [s.strip() for s in args.scenarios.split(";") if s.strip()]
    )  # fmt: skip
    t0 = time.perf_counter()
    results = []
    for name in names:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, "--seed", str(args.seed)],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = [
        {
            "scenario": r["scenario"], "wall s": r["wall_s"], "ideal s": r["ideal_s"], "wall/ideal": r["ratio"],
            "model (real)": r.get("model_ratio", ""), "done": r["done"], "paid": r["accepted"],
            "429s": r["rate_limited"], "q/task": r["queries_per_task"], "detect med s": r["detect_s"]["median"],
            "to-disk med s": r["to_disk_s"]["median"], "threads": r["threads"], "RSS MB": r["peak_rss_mb"],
            "CPU s": r["cpu_s"], "CPU/wall": r["cpu_share"],
            "late p95 ms": 1000 * r.get("gil_late_s", {}).get("p95", float("nan")),
        }
        for r in results
    ]  # fmt: skip
    columns = list(rows[0]) if rows else []
    print(table(rows, columns, title="engine vs the gateway's limits (tasks 4-12 s)"))
    checks = []
    for r in results:
        target = SCENARIOS[r["scenario"]]["target"]
        checks.append({"figure": f"{r['scenario']}: wall/ideal", "value": r["ratio"], "target": f"<= {target}",
                       "verdict": verdict(r["ratio"], target)})  # fmt: skip
        checks.append({"figure": f"{r['scenario']}: queries/task", "value": r["queries_per_task"],
                       "target": "<= 4", "verdict": verdict(r["queries_per_task"], 4.0)})  # fmt: skip
        if r["n"] >= 1000:
            checks.append({"figure": "1000: threads", "value": r["threads"], "target": "<= 48",
                           "verdict": verdict(r["threads"], 48)})  # fmt: skip
            checks.append({"figure": "1000: peak RSS MB", "value": r["peak_rss_mb"], "target": "< 300",
                           "verdict": verdict(r["peak_rss_mb"], 300)})  # fmt: skip
            checks.append({"figure": "1000: CPU share", "value": r["cpu_share"], "target": "< 0.5",
                           "verdict": verdict(r["cpu_share"], 0.5)})  # fmt: skip
        if r["n"] == 16:
            checks.append({"figure": "16: median detection s", "value": r["detect_s"]["median"], "target": "<= 0.5",
                           "verdict": verdict(r["detect_s"]["median"], 0.5)})  # fmt: skip
    report(args.name, checks, {"results": results, "seed": args.seed}, elapsed=time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
