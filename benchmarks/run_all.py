"""Run every benchmark (``make bench``): engine, magic, notebook.

Each benchmark runs in its own process (so one's threads and memory do not
disturb the next), prints its table, and writes ``benchmarks/results/<name>.json``.
At the end this prints every target with its verdict and the total time, and
writes ``benchmarks/results/summary.json``.

::

    python benchmarks/run_all.py                  # everything
    python benchmarks/run_all.py --only engine    # one or more, comma-separated
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HERE, RESULTS, ROOT, fmt, table, write_results

BENCHES = ("engine", "magic", "notebook")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of: " + ", ".join(BENCHES))
    args = ap.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    t0 = time.perf_counter()
    times: dict[str, float] = {}
    failed: list[str] = []
    for name in chosen:
        print(f"\n=== bench_{name} ===", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py")], cwd=str(ROOT))
        times[name] = time.perf_counter() - start
        if rc != 0:
            failed.append(name)
            print(f"bench_{name} failed with exit code {rc}", flush=True)
    total = time.perf_counter() - t0
    checks = []
    for name in chosen:
        path = RESULTS / f"{name}.json"
        if name in failed or not path.exists():
            continue
        for check in json.loads(path.read_text(encoding="utf-8")).get("checks", []):
            checks.append({"bench": name, **check})
    print("\n=== summary ===")
    print(table(checks, ["bench", "figure", "value", "target", "verdict"]))
    print(
        "times: "
        + ", ".join(f"{name} {fmt(sec)} s" for name, sec in times.items())
        + f"; total {fmt(total)} s ({total / 60:.1f} min)"
    )
    write_results("summary", {"checks": checks, "times_s": times, "total_s": total, "failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
