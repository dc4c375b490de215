"""Engine benchmark: the JobRunner against a naive loop and a naive thread pool.

Workload: N tasks whose server-side duration is uniform in 5–15 s (the
simulator's ``latency``), of which 0.5–2 s queued (``queue_delay``), under
the default in-flight cap of 8. Everything is time-scaled by ``--scale``
(default 0.1: tasks take 0.5–1.5 s) and so are the poll settings, the
client's and the simulator's rate limits and the naive clients' 3 s
interval. Figures are given in scaled seconds and in real-equivalent
seconds (scaled ÷ scale). Fixed costs that do not scale (loopback HTTP,
rendering and re-encoding a 1024×1024 PNG) are therefore inflated
1/scale-fold in the real-equivalent figures: a conservative reading.

Figures, per client:

* **wall ÷ ideal** — wall time from the first submit to the last file on
  disk, over the greedy list-scheduling makespan of the very same task
  durations (read from the simulator's task records) with the same cap:
  what a client with zero overhead and instant completion detection would
  take.
* **queries/task** — status queries the simulator received, per task.
* **detection delay** — the moment the client saw ``completed`` minus the
  moment the task completed on the server (median, p95).
* **completion-to-disk** — the moment the image file was written (the
  job's ``finished_at``) minus the server's completion moment (median, p95).

The simulator runs in a child process with a fixed seed, so every client
sees the same sequence of task durations. The naive loop is sequential and
would take minutes, so it runs on a sample of the first ``--loop-sample``
tasks; its wall time for N tasks is extrapolated as Σ durations + N × its
mean per-task overhead (measured on the sample).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SimProcess, ideal_makespan, report, summary, table, verdict

from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.settings import RetryPolicy, Secret, Settings
from gemimg_jupyter.engine import Job, JobRunner
from gemimg_jupyter.gateway.client import ToAPIsClient
from gemimg_jupyter.ledger.store import Store

KEY = Secret("sim-local-key")
LATENCY = (5.0, 15.0)  # real seconds, the workload
QUEUE = (0.5, 2.0)  # real seconds queued, part of LATENCY (the simulator's default)
NAIVE_INTERVAL = 3.0  # real seconds
CAP = 8
SEED = 20240607
NODELAY = True  # TCP_NODELAY on the simulator's sockets (see _common.SimProcess)
TARGETS = {"ratio": 1.15, "detect_median_real": 1.0, "queries": 4.0}


def sim_config(scale: float, seed: int) -> dict[str, Any]:
    base = Settings()
    return {
        "seed": seed,
        "latency": [LATENCY[0] * scale, LATENCY[1] * scale],
        "queue_delay": [QUEUE[0] * scale, QUEUE[1] * scale],
        "submit_rate": base.submit_rate / scale,
        "query_rate": base.query_rate / scale,
    }


def scaled_settings(scale: float, base_url: str, out: Path, cap: int) -> Settings:
    d = Settings()
    return Settings(
        backend="sim",
        base_url=base_url,
        output_dir=out,
        max_in_flight=cap,
        poll_first=d.poll_first * scale,
        poll_min=d.poll_min * scale,
        poll_max=d.poll_max * scale,
        submit_rate=d.submit_rate / scale,
        query_rate=d.query_rate / scale,
        job_timeout=d.job_timeout * scale * 5,
        retry=RetryPolicy(base=d.retry.base * scale, cap=d.retry.cap * scale),
    )


def params(i: int) -> GenerationParams:
    return GenerationParams.create(f"benchmark task {i}: a paper-cut fox in a forest")


def _metrics(
    name: str,
    n: int,
    scale: float,
    wall: float,
    tasks: dict[str, dict[str, Any]],
    per_task: list[dict[str, Any]],
    queries: int,
    cap: int,
) -> dict[str, Any]:
    """Figures for one run; ``per_task`` rows have task_id, started, detected, finished (wall clock)."""
    durations = [t["duration"] for t in sorted(tasks.values(), key=lambda t: t["seq"])]
    ideal = ideal_makespan(durations, cap)
    detect = [r["detected"] - tasks[r["task_id"]]["completed_wall"] for r in per_task]
    to_disk = [r["finished"] - tasks[r["task_id"]]["completed_wall"] for r in per_task]
    d, c = summary(detect), summary(to_disk)
    model = occupancy_model(tasks, per_task, scale, cap)
    return {
        "client": name,
        "n": n,
        "scale": scale,
        "wall_s": wall,
        "ideal_s": ideal,
        "wall_over_ideal": wall / ideal if ideal else float("nan"),
        "queries": queries,
        "queries_per_task": queries / max(1, len(per_task)),
        "detect_s": d,
        "detect_real_s": {k: v / scale for k, v in d.items()},
        "to_disk_s": c,
        "to_disk_real_s": {k: v / scale for k, v in c.items()},
        "mean_duration_s": sum(durations) / max(1, len(durations)),
        "completed": len(per_task),
        **model,
    }


def occupancy_model(
    tasks: dict[str, dict[str, Any]], per_task: list[dict[str, Any]], scale: float, cap: int
) -> dict[str, Any]:
    """Split each task's slot time into its parts and rebuild the wall time at real speed.

    A slot is held for ``pre`` (ledger row + submit request, until the server
    created the task) + the task's duration + the detection delay + ``post``
    (download, verify, re-encode with provenance, write, ledger). Duration and
    detection delay scale with time; ``pre`` and ``post`` are fixed costs that
    do not. The model's wall is the list schedule of those slot times in
    submission order; ``model_check`` compares it with the measured wall, and
    ``real_eq_wall_over_ideal`` is the same schedule with duration and
    detection unscaled (÷ scale) and the fixed costs as measured.
    """
    by_seq = sorted(per_task, key=lambda r: tasks[r["task_id"]]["seq"])
    pre = [tasks[r["task_id"]]["created_wall"] - r["started"] for r in by_seq]
    post = [r["finished"] - r["detected"] for r in by_seq]
    dur = [tasks[r["task_id"]]["duration"] for r in by_seq]
    det = [r["detected"] - tasks[r["task_id"]]["completed_wall"] for r in by_seq]
    scaled = ideal_makespan([a + b + c + e for a, b, c, e in zip(pre, dur, det, post, strict=True)], cap)
    real = ideal_makespan([a + (b + c) / scale + e for a, b, c, e in zip(pre, dur, det, post, strict=True)], cap)
    real_ideal = ideal_makespan([b / scale for b in dur], cap)
    return {
        "to_disk_model_real_s": summary([c / scale + e for c, e in zip(det, post, strict=True)]),
        "pre_s": summary(pre),
        "post_s": summary(post),
        "model_wall_s": scaled,
        "real_eq_model_wall_s": real,
        "real_eq_ideal_s": real_ideal,
        "real_eq_wall_over_ideal": real / real_ideal if real_ideal else float("nan"),
    }


def run_engine(n: int, scale: float, seed: int, cap: int) -> dict[str, Any]:
    """The real JobRunner (scaled settings), N jobs submitted at once."""
    with (
        SimProcess(nodelay=NODELAY, **sim_config(scale, seed)) as sim,
        tempfile.TemporaryDirectory(prefix="gemimg-bench-") as tmp,
    ):
        settings = scaled_settings(scale, sim.base_url, Path(tmp), cap)
        client = ToAPIsClient(sim.base_url, KEY, retry=settings.retry, timeout=(5.0, 30.0))
        runner = JobRunner(client, Store(settings.output_dir), settings, backend="sim")
        detected: dict[str, float] = {}
        started: dict[str, float] = {}
        lock = threading.Lock()

        def on_change(job: Job) -> None:
            now = time.time()
            with lock:
                if job.state is JobState.SUBMITTING:
                    started.setdefault(job.id, now)
                elif job.state is JobState.DOWNLOADING:
                    detected.setdefault(job.id, now)

        runner.add_listener(on_change)
        plist = [params(i) for i in range(n)]
        start = time.time()
        jobs = [runner.submit(p) for p in plist]
        runner.wait(jobs, timeout=max(120.0, n * 3 * scale * 20))
        end = max((j.finished_at or time.time()) for j in jobs)
        runner.shutdown()
        client.close()
        stats = sim.stats()
        tasks = sim.tasks()
        failed = [j for j in jobs if j.state is not JobState.DONE]
        rows = [
            {"task_id": j.task_id, "started": started[j.id], "detected": detected[j.id], "finished": j.finished_at}
            for j in jobs
            if j.state is JobState.DONE and j.id in detected
        ]
        out = _metrics("engine", n, scale, end - start, tasks, rows, stats["status_queries"], cap)
        out["failed"] = len(failed)
        out["rate_limited"] = stats["rate_limited"]
        out["durations_by_seq"] = [t["duration"] for t in sorted(tasks.values(), key=lambda t: t["seq"])]
        return out


def _naive_one(client: ToAPIsClient, p: GenerationParams, interval: float, out: Path, i: int) -> dict[str, Any]:
    """Submit, sleep ``interval``, poll, … until completed, download, write the file."""
    started = time.time()
    task = client.submit(p, client_business_id=f"naive-{i}-{started}")
    queries = 0
    while True:
        time.sleep(interval)
        status = client.status(task.id)
        queries += 1
        if status.status == "completed":
            detected = time.time()
            break
        if status.status == "failed":
            raise RuntimeError(f"task {task.id} failed")
    assert status.url
    data = client.download(status.url, expected=p.pixel_size)
    (out / f"naive-{i}.png").write_bytes(data)
    return {"task_id": task.id, "started": started, "detected": detected, "finished": time.time(), "queries": queries}


def run_naive_pool(n: int, scale: float, seed: int, cap: int) -> dict[str, Any]:
    """N jobs over ``cap`` threads, each one: submit + poll every 3 s + download."""
    with (
        SimProcess(nodelay=NODELAY, **sim_config(scale, seed)) as sim,
        tempfile.TemporaryDirectory(prefix="gemimg-naive-") as tmp,
    ):
        client = ToAPIsClient(sim.base_url, KEY, timeout=(5.0, 30.0))
        start = time.time()
        with ThreadPoolExecutor(max_workers=cap) as pool:
            futures = [
                pool.submit(_naive_one, client, params(i), NAIVE_INTERVAL * scale, Path(tmp), i) for i in range(n)
            ]
            rows = [f.result() for f in futures]
        end = max(r["finished"] for r in rows)
        client.close()
        return _metrics("naive pool", n, scale, end - start, sim.tasks(), rows, sim.stats()["status_queries"], cap)


def run_naive_loop(k: int, scale: float, seed: int, cap: int) -> dict[str, Any]:
    """The first ``k`` tasks one after another: submit, poll every 3 s, download, next."""
    with (
        SimProcess(nodelay=NODELAY, **sim_config(scale, seed)) as sim,
        tempfile.TemporaryDirectory(prefix="gemimg-loop-") as tmp,
    ):
        client = ToAPIsClient(sim.base_url, KEY, timeout=(5.0, 30.0))
        start = time.time()
        rows = [_naive_one(client, params(i), NAIVE_INTERVAL * scale, Path(tmp), i) for i in range(k)]
        end = rows[-1]["finished"]
        client.close()
        tasks = sim.tasks()
        out = _metrics("naive loop", k, scale, end - start, tasks, rows, sim.stats()["status_queries"], cap)
        out["overheads_s"] = [r["finished"] - r["started"] - tasks[r["task_id"]]["duration"] for r in rows]
        out["durations_by_seq"] = [t["duration"] for t in sorted(tasks.values(), key=lambda t: t["seq"])]
        return out


def extrapolate_loop(sample: dict[str, Any], durations: list[float], cap: int) -> dict[str, Any]:
    """The naive loop's figures for N tasks from its sample: Σ durations + N × mean overhead."""
    n = len(durations)
    k = sample["n"]
    same = all(abs(a - b) < 1e-9 for a, b in zip(sample["durations_by_seq"], durations[:k], strict=False))
    overhead = sum(sample["overheads_s"]) / k
    wall = sum(durations) + n * overhead
    ideal = ideal_makespan(durations, cap)
    scale = sample["scale"]
    fixed = sample["pre_s"]["mean"] + sample["post_s"]["mean"]
    real_wall = sum(durations) / scale + n * (sample["detect_s"]["mean"] / scale + fixed)
    real_ideal = ideal_makespan([d / scale for d in durations], cap)
    return {
        **{
            key: sample[key]
            for key in (
                "queries_per_task",
                "detect_s",
                "detect_real_s",
                "to_disk_s",
                "to_disk_real_s",
                "to_disk_model_real_s",
            )
        },
        "client": "naive loop",
        "n": n,
        "scale": sample["scale"],
        "wall_s": wall,
        "ideal_s": ideal,
        "wall_over_ideal": wall / ideal,
        "real_eq_model_wall_s": real_wall,
        "real_eq_ideal_s": real_ideal,
        "real_eq_wall_over_ideal": real_wall / real_ideal,
        "pre_s": sample["pre_s"],
        "post_s": sample["post_s"],
        "extrapolated_from": k,
        "sample_durations_match": same,
        "mean_overhead_s": overhead,
    }


def row_for(r: dict[str, Any]) -> dict[str, Any]:
    s = r["scale"]
    label = r["client"] + (f" (est. from {r['extrapolated_from']})" if "extrapolated_from" in r else "")
    return {
        "client": label,
        "N": r["n"],
        "wall s": r["wall_s"],
        "wall real-eq s": r["wall_s"] / s,
        "ideal s": r["ideal_s"],
        "wall/ideal": r["wall_over_ideal"],
        "real-eq wall/ideal (model)": r["real_eq_wall_over_ideal"],
        "queries/task": r["queries_per_task"],
        "detect med (real)": r["detect_real_s"]["median"],
        "detect p95 (real)": r["detect_real_s"]["p95"],
        "to-disk med (scaled)": r["to_disk_s"]["median"],
        "to-disk p95 (scaled)": r["to_disk_s"]["p95"],
        "to-disk med (real, model)": r["to_disk_model_real_s"]["median"],
        "to-disk p95 (real, model)": r["to_disk_model_real_s"]["p95"],
        "fixed pre+post ms": 1000 * (r["pre_s"]["mean"] + r["post_s"]["mean"]),
    }


COLUMNS = [
    "client",
    "N",
    "wall s",
    "wall real-eq s",
    "ideal s",
    "wall/ideal",
    "real-eq wall/ideal (model)",
    "queries/task",
    "detect med (real)",
    "detect p95 (real)",
    "to-disk med (scaled)",
    "to-disk p95 (scaled)",
    "to-disk med (real, model)",
    "to-disk p95 (real, model)",
    "fixed pre+post ms",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="64,256", help="task counts (default: %(default)s)")
    ap.add_argument("--scale", type=float, default=0.1, help="time scale (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--cap", type=int, default=CAP, help="in-flight cap (default: %(default)s)")
    ap.add_argument("--loop-sample", type=int, default=16, help="tasks the naive loop really runs")
    ap.add_argument("--engine-only", action="store_true", help="skip the naive clients (for tuning)")
    ap.add_argument("--name", default="engine", help="results file name (default: %(default)s)")
    ap.add_argument(
        "--sim-as-is", action="store_true", help="leave Nagle on in the simulator (~40 ms per answer on loopback)"
    )
    args = ap.parse_args(argv)
    global NODELAY
    NODELAY = not args.sim_as_is
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    loop_sample = None
    for n in sizes:
        eng = run_engine(n, args.scale, args.seed, args.cap)
        results.append(eng)
        if args.engine_only:
            continue
        results.append(run_naive_pool(n, args.scale, args.seed, args.cap))
        if loop_sample is None:
            loop_sample = run_naive_loop(min(args.loop_sample, n), args.scale, args.seed, args.cap)
        results.append(extrapolate_loop(loop_sample, eng["durations_by_seq"], args.cap))
    elapsed = time.perf_counter() - t0

    print(
        table(
            [row_for(r) for r in results],
            COLUMNS,
            title=f"engine: tasks 5–15 s (real), time scale {args.scale:g}, in-flight cap {args.cap}; "
            "real-eq = scaled ÷ scale",
        )
    )
    checks = []
    for r in results:
        if r["client"] != "engine":
            continue
        checks.append(
            {
                "figure": f"engine N={r['n']} wall/ideal, as measured (scaled)",
                "value": r["wall_over_ideal"],
                "target": f"≤ {TARGETS['ratio']}",
                "verdict": verdict(r["wall_over_ideal"], TARGETS["ratio"]),
            }
        )
        checks.append(
            {
                "figure": f"engine N={r['n']} wall/ideal, real-eq (model)",
                "value": r["real_eq_wall_over_ideal"],
                "target": f"≤ {TARGETS['ratio']}",
                "verdict": verdict(r["real_eq_wall_over_ideal"], TARGETS["ratio"]),
            }
        )
        checks.append(
            {
                "figure": f"engine N={r['n']} median detection (real s)",
                "value": r["detect_real_s"]["median"],
                "target": f"≤ {TARGETS['detect_median_real']}",
                "verdict": verdict(r["detect_real_s"]["median"], TARGETS["detect_median_real"]),
            }
        )
        checks.append(
            {
                "figure": f"engine N={r['n']} queries/task",
                "value": r["queries_per_task"],
                "target": f"≤ {TARGETS['queries']}",
                "verdict": verdict(r["queries_per_task"], TARGETS["queries"]),
            }
        )
        if r.get("failed"):
            checks.append(
                {"figure": f"engine N={r['n']} failed jobs", "value": r["failed"], "target": "0", "verdict": "MISS"}
            )
    for r in results:
        r.pop("durations_by_seq", None)
    config = {
        "scale": args.scale,
        "seed": args.seed,
        "cap": args.cap,
        "latency_real_s": LATENCY,
        "queue_delay_real_s": QUEUE,
        "naive_interval_real_s": NAIVE_INTERVAL,
        "loop_sample": args.loop_sample,
        "sim_nodelay": NODELAY,
    }
    report(args.name, checks, {"config": config, "results": results}, elapsed=elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
