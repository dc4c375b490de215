"""Helpers shared by the benchmarks: a simulator in its own process, statistics, tables, JSON.

The simulator runs in a child process (``SimProcess``) so that its request
handling and PNG rendering do not compete with the client for the GIL, as a
remote gateway would not. The child answers a few JSON commands on stdin,
among them ``tasks``: the server-side task records (submit time, queue and
run durations), which is where "ideal" and the detection delays come from.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` without an installed package
    sys.path.append(str(ROOT))

# ---------------------------------------------------------------------------------------------
# the simulator in a child process
# ---------------------------------------------------------------------------------------------

_CHILD = r"""
import json, sys
from gemimg_jupyter.sim import SimConfig, SimServer
from gemimg_jupyter.sim import server as _server

if sys.argv[2] == "nodelay":
    # Without TCP_NODELAY the handler's two writes (headers, then body) meet the client's delayed
    # ACK: every answer waits ~40 ms on Linux loopback, 0.4 s real-equivalent at scale 0.1.
    _server._Handler.disable_nagle_algorithm = True
sim = SimServer(config=SimConfig(**json.loads(sys.argv[1])))
print(json.dumps({"base_url": sim.start()}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd.get("op")
    if op == "stats":
        out = sim.stats()
    elif op == "reset":
        sim.reset(tasks=bool(cmd.get("tasks")))
        out = {"ok": True}
    elif op == "configure":
        sim.configure(**cmd.get("changes", {}))
        out = {"ok": True}
    elif op == "tasks":
        with sim.state.lock:
            out = {"tasks": [
                {"id": t.id, "seq": t.seq, "created_wall": t.created_wall, "queue_s": t.queue_s,
                 "run_s": t.run_s, "outcome": t.outcome}
                for t in sim.state.tasks.values()
            ]}
    elif op == "stop":
        break
    else:
        out = {"error": f"unknown op {op!r}"}
    print(json.dumps(out), flush=True)
sim.stop()
"""


class SimProcess:
    """A :class:`~gemimg_jupyter.sim.SimServer` in a child process.

    ``config`` holds :class:`~gemimg_jupyter.sim.SimConfig` fields (JSON-able).
    ``nodelay`` (default) sets TCP_NODELAY on the simulator's sockets, which
    its handler does not do itself: otherwise every answer is held ~40 ms by
    Nagle's algorithm meeting the client's delayed ACK, a loopback artefact
    that time-scaling would inflate tenfold (a real gateway's round trip is
    not scaled either way). ``nodelay=False`` measures the simulator as is.
    Task records come back with ``completed_wall`` added: the server's
    completion moment on the wall clock (``created_wall + queue_s + run_s``;
    the simulator's state is a pure function of its monotonic clock since
    submit, and ``created_wall`` was read at the same instant as that clock).
    """

    def __init__(self, *, nodelay: bool = True, **config: Any) -> None:
        self.nodelay = nodelay
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(config), "nodelay" if nodelay else "as-is"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        if not first:
            raise RuntimeError("the simulator process did not start")
        self.base_url: str = json.loads(first)["base_url"]

    def _ask(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self._proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return reply

    def stats(self) -> dict[str, Any]:
        return self._ask("stats")

    def reset(self, *, tasks: bool = False) -> None:
        self._ask("reset", tasks=tasks)

    def configure(self, **changes: Any) -> None:
        self._ask("configure", changes=changes)

    def tasks(self) -> dict[str, dict[str, Any]]:
        out = {}
        for t in self._ask("tasks")["tasks"]:
            t["duration"] = t["queue_s"] + t["run_s"]
            t["completed_wall"] = t["created_wall"] + t["duration"]
            out[t["id"]] = t
        return out

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"op": "stop"}) + "\n")
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------


def ideal_makespan(durations: Sequence[float], cap: int) -> float:
    """Greedy list scheduling: tasks in submission order, each starts on the first free slot.

    This is what a client with zero overhead (instant submit, instant
    completion detection, instant download) would take under the same
    in-flight cap.
    """
    slots = [0.0] * max(1, cap)
    for d in durations:
        i = min(range(len(slots)), key=slots.__getitem__)
        slots[i] += d
    return max(slots) if durations else 0.0


def pct(values: Iterable[float], q: float) -> float:
    """The ``q``-quantile (0–1) by linear interpolation; NaN for no values."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p95, mean and max of ``values``."""
    if not values:
        return {"median": math.nan, "p95": math.nan, "mean": math.nan, "max": math.nan}
    return {
        "median": pct(values, 0.5),
        "p95": pct(values, 0.95),
        "mean": statistics.fmean(values),
        "max": max(values),
    }


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None) -> str:
    """A plain-text table (left column left-aligned, numbers right-aligned)."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    numeric = [
        i > 0 and all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows)
        for i, c in enumerate(columns)
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = (v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))
        return "  ".join(parts).rstrip()

    lines = [title] if title else []
    lines.append(line(columns))
    lines.append(line(["-" * w for w in widths]))
    lines.extend(line(row) for row in cells)
    return "\n".join(lines)


def reference_ms() -> float:
    """CPU milliseconds of one fixed piece of work on this machine, now (about half a second): a JPEG's reduced decode
    and shrink (what each image costs) and a pure-Python loop (what each request costs).

    Printed beside a CPU figure, it says whether the machine itself was slower. On this 2-core VM it stayed
    within 64-70 ms while the same ``bench_public.py`` run took 14 to 21 s of CPU: that spread is in the run
    (35 threads on 2 cores, the kernel's file-system work), so before/after figures alternate and are ranges.
    """
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.linear_gradient("L").resize((1024, 1024)).convert("RGB").save(buf, "JPEG", quality=90)
    data = buf.getvalue()

    def once() -> float:
        start = time.thread_time()
        for _ in range(20):
            with Image.open(io.BytesIO(data)) as img:
                img.draft("RGB", (310, 310))
                img.load()
                img.resize((310, 310), Image.Resampling.BILINEAR)
        total = 0
        for i in range(300_000):
            total += i * i
        return (time.thread_time() - start) * 1000

    once()  # warm: Pillow's plugins load on first use
    return statistics.median(once() for _ in range(5))


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "environment": environment(), **data}
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def verdict(value: float, target: float, *, below: bool = True) -> str:
    """``ok`` / ``MISS`` for a figure against its target (``below``: smaller is better)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "ok" if (value <= target if below else value >= target) else "MISS"


def report(name: str, checks: Sequence[Mapping[str, Any]], data: Mapping[str, Any], *, elapsed: float) -> Path:
    """Print the targets table and the run time, write ``results/<name>.json``; returns its path."""
    print()
    print(table(checks, ["figure", "value", "target", "verdict"], title="targets"))
    print(f"(bench_{name} took {fmt(elapsed)} s)")
    path = write_results(name, {**data, "checks": list(checks), "elapsed_s": elapsed})
    print(f"wrote {path}")
    return path
