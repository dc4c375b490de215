"""How long ``gi.sweep(..., wait=False)`` takes to return, and when its jobs are in (issue #25, branch perf3).

``bench_public.py`` runs the whole sweep; this measures only the call: a ``SimProcess`` at the svip tier,
one small warm-up sweep, then ``time.perf_counter()`` around ``Session.sweep(..., wait=False, yes=True,
confirm_above_usd=None)`` of N requests (the temperature × top_p grid of ``bench_public.py``), and the time
until ``SweepResult.claimed()`` (the job records and the ledger's claim, made in the background). The
sweep is cancelled right after: a few seconds a size. ``--profile`` prints ``cProfile``'s top of the call.

    python benchmarks/bench_call.py --sizes 1000,5000 --runs 3
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SimProcess, table
from bench_limits import LATENCY, QUEUE, TIERS
from bench_public import axes_for


def one_call(n: int, profile: bool) -> dict[str, float]:
    """One ``sweep`` call of ``n`` requests: ms until it returned and until its jobs were in."""
    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.settings import RetryPolicy, Settings

    s_rate, s_burst, q_rate, q_burst = TIERS["svip"]
    sim_cfg = {"seed": 1, "latency": list(LATENCY), "queue_delay": list(QUEUE), "render_once": True}
    sim_cfg |= {"submit_rate": s_rate, "submit_burst": s_burst, "query_rate": q_rate, "query_burst": q_burst}
    with SimProcess(**sim_cfg) as sim, tempfile.TemporaryDirectory(prefix="gemimg-call-") as tmp:
        settings = Settings(
            backend="sim", base_url=sim.base_url, output_dir=Path(tmp), rate_tier="svip", retry=RetryPolicy()
        )
        session = Session(settings)
        session.sweep("warm-up", temperature=[0.1], wait=True, yes=True, confirm_above_usd=None)
        prof = cProfile.Profile()
        load = os.getloadavg()[0]
        start = time.perf_counter()
        if profile:
            prof.enable()
        result = session.sweep(
            "call: a paper-cut fox",
            wait=False,
            yes=True,
            confirm_above_usd=None,
            max_requests=max(n, 1000),
            **axes_for(n),  # type: ignore[arg-type]
        )
        returned = time.perf_counter() - start
        if profile:
            prof.disable()
        result.claimed(None)
        claimed = time.perf_counter() - start
        result.cancel(drop=True)
        session.close()
    if profile:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return {"n": n, "load": load, "call_ms": returned * 1000, "jobs_in_ms": claimed * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000", help="requests per sweep, comma-separated (default: 5000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    rows = [one_call(int(n), args.profile) for n in args.sizes.split(",") for _ in range(args.runs)]
    print(table(rows, ["n", "load", "call_ms", "jobs_in_ms"], title="gi.sweep(..., wait=False): the call"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
