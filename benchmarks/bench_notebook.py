"""Notebook benchmark: bytes a notebook gains per image and per 16-image grid; memory of a 256-image sweep.

* **notebook size** — a small generated notebook (load the extension, one
  ``%%gemimg --wait`` image, one 4×4 ``--sweep`` grid, each with ``--wait``
  so the final output is in place when the cell ends) is executed by a real
  kernel through nbclient with ``GEMIMG_BACKEND=sim`` and a temporary
  ``GEMIMG_OUTPUT_DIR``. The bytes a cell adds are the size of the saved
  ``.ipynb`` with only that cell's outputs minus its size with no outputs.
* **sweep memory** — a 256-image ``Session.sweep`` (temperature × size ×
  repeats, ``confirm_above_usd=None``) in a subprocess whose RSS is sampled
  with psutil every 20 ms; the simulator runs in another process so that only
  the client is measured. Tasks take 0.1–0.3 s and the poll settings are
  scaled by 0.1 so that the sweep finishes quickly; the memory figure does not
  depend on the pace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, SimProcess, fmt, report, table, verdict

TARGETS = {"grid_bytes": 2 * 1024 * 1024, "rss_mb": 500.0}

SETUP = """\
from gemimg_jupyter.api.session import reset_session
from gemimg_jupyter.domain.settings import Settings
# a quicker simulator than the default (1.5–4 s per image): only output sizes are measured here
reset_session(Settings.from_env(sim_options={"latency": (0.3, 0.8), "queue_delay": (0.0, 0.1)}))
%load_ext gemimg_jupyter"""
SINGLE = """\
%%gemimg --wait --size 1:1
A paper-cut fox in a forest, benchmark single image"""
GRID = """\
%%gemimg --wait --sweep temperature=0.2,0.6,1.0,1.4 --sweep size=1:1,16:9,9:16,4:3
A paper-cut fox in a forest, benchmark grid"""


def _nb_bytes(nb: Any) -> int:
    import nbformat

    return len(nbformat.writes(nb).encode("utf-8"))


def _strip(nb: Any, keep: set[int] = frozenset()) -> Any:  # type: ignore[assignment]
    import copy

    out = copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        if cell.cell_type == "code" and i not in keep:
            cell.outputs = []
            cell.execution_count = None
    return out


def _describe_outputs(cell: Any) -> list[dict[str, Any]]:
    import base64
    import io

    from PIL import Image

    described = []
    for out in cell.outputs:
        item: dict[str, Any] = {"output_type": out.output_type}
        data = out.get("data", {})
        if data:
            item["mime"] = {k: len(v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()}
            if "image/png" in data:
                raw = base64.b64decode(data["image/png"])
                with Image.open(io.BytesIO(raw)) as img:
                    item["png_pixels"] = list(img.size)
                item["png_bytes"] = len(raw)
        if out.get("metadata"):
            item["metadata_bytes"] = len(json.dumps(out["metadata"]))
        if out.output_type == "stream":
            item["text_bytes"] = len(out.get("text", ""))
        described.append(item)
    return described


def bench_notebook_size() -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("gemimg_jupyter.magics.extension") is None:
        return {"skipped": "gemimg_jupyter.magics.extension does not exist yet"}
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(SETUP), new_code_cell(SINGLE), new_code_cell(GRID)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory(prefix="gemimg-nb-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("TOAPIS_API_KEY", "GEMIMG_BASE_URL")}
        env["GEMIMG_BACKEND"] = "sim"
        env["GEMIMG_OUTPUT_DIR"] = str(Path(tmp) / "gemimg_outputs")
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute(env=env)
        run_s = time.perf_counter() - t0
        images = sorted((Path(tmp) / "gemimg_outputs" / "images").glob("*.png"))
        disk = sum(p.stat().st_size for p in images)
    bare = _nb_bytes(_strip(nb))
    full = _nb_bytes(nb)
    per_cell = {name: _nb_bytes(_strip(nb, {i})) - bare for i, name in ((0, "setup"), (1, "single"), (2, "grid"))}
    return {
        "execute_s": run_s,
        "bytes_without_outputs": bare,
        "bytes_with_outputs": full,
        "added_by_cell": per_cell,
        "outputs": {name: _describe_outputs(nb.cells[i]) for i, name in ((0, "setup"), (1, "single"), (2, "grid"))},
        "images_on_disk": len(images),
        "image_bytes_on_disk": disk,
    }


SWEEP_CHILD = r"""
import json, sys, time
from pathlib import Path
from gemimg_jupyter.api.session import Session
from gemimg_jupyter.domain.settings import Settings

base_url, out = sys.argv[1], sys.argv[2]
d = Settings()
settings = Settings(backend="sim", base_url=base_url, output_dir=Path(out),
                    poll_first=d.poll_first * 0.1, poll_min=d.poll_min * 0.1, poll_max=d.poll_max * 0.1)
with Session(settings) as sess:
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    result = sess.sweep("A paper-cut fox in a forest, memory benchmark",
                        temperature=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
                        size=["1:1", "16:9", "9:16", "4:3"], repeats=8, confirm_above_usd=None)
    took = time.perf_counter() - t0
    counts = result.counts()
    print(json.dumps({"sweep_s": took, "counts": counts, "grids": [str(p) for p in result.paths]}), flush=True)
"""


def bench_sweep_memory() -> dict[str, Any]:
    import psutil

    with (
        SimProcess(latency=[0.1, 0.3], queue_delay=[0.0, 0.05], seed=5) as sim,
        tempfile.TemporaryDirectory(prefix="gemimg-mem-") as tmp,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-c", SWEEP_CHILD, sim.base_url, tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        ps = psutil.Process(proc.pid)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the sweep process did not start")
        baseline = ps.memory_info().rss
        proc.stdin.write("go\n")
        proc.stdin.flush()
        samples: list[tuple[float, int]] = []
        t0 = time.perf_counter()
        while proc.poll() is None:
            try:
                samples.append((time.perf_counter() - t0, ps.memory_info().rss))
            except psutil.Error:
                break
            time.sleep(0.02)
        report = json.loads(proc.stdout.readline() or "{}")
        proc.wait()
        grids = [os.path.getsize(p) for p in report.get("grids", []) if os.path.exists(p)]
    peak = max(r for _, r in samples) if samples else 0
    mb = 1024 * 1024
    return {
        "images": 256,
        "baseline_rss_mb": baseline / mb,
        "peak_rss_mb": peak / mb,
        "samples": len(samples),
        "sweep_s": report.get("sweep_s"),
        "counts": report.get("counts"),
        "grid_png_bytes": grids,
        "rss_timeline_mb": [(round(t, 2), round(r / mb, 1)) for t, r in samples[:: max(1, len(samples) // 60)]],
    }


def main() -> int:
    t_start = time.perf_counter()
    size = bench_notebook_size()
    memory = bench_sweep_memory()
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    if "skipped" in size:
        print(f"notebook: size figures skipped ({size['skipped']})")
        checks.append({"figure": "16-image grid, bytes added", "value": None, "target": "< 2 MB", "verdict": "skipped"})
    else:
        added = size["added_by_cell"]
        for name, label in (("single", "one image (%%gemimg --wait)"), ("grid", "16-image grid (4×4 --sweep --wait)")):
            pngs = [o for o in size["outputs"][name] if "png_pixels" in o]
            last = pngs[-1] if pngs else {}
            rows.append(
                {
                    "cell": label,
                    "bytes added": added[name],
                    "KiB": added[name] / 1024,
                    "outputs": len(size["outputs"][name]),
                    "PNG px": "×".join(map(str, last.get("png_pixels", []))) or None,
                    "PNG bytes": last.get("png_bytes"),
                }
            )
        rows.append({"cell": "setup (%load_ext, banner)", "bytes added": added["setup"], "KiB": added["setup"] / 1024})
        print(
            table(
                rows,
                ["cell", "bytes added", "KiB", "outputs", "PNG px", "PNG bytes"],
                title=f"notebook: .ipynb bytes added per cell (no outputs: {size['bytes_without_outputs']:,} bytes; "
                f"with: {size['bytes_with_outputs']:,}; {size['images_on_disk']} full-size images on disk, "
                f"{size['image_bytes_on_disk'] / 1024 / 1024:.1f} MiB)",
            )
        )
        checks.append(
            {
                "figure": "16-image grid, bytes added to the .ipynb",
                "value": added["grid"],
                "target": "< 2 MB (2,097,152)",
                "verdict": verdict(added["grid"], TARGETS["grid_bytes"]),
            }
        )
        checks.append(
            {
                "figure": "one image, bytes added to the .ipynb",
                "value": added["single"],
                "target": "—",
                "verdict": "info",
            }
        )
    print()
    print(
        table(
            [
                {"figure": "RSS after import + session", "MB": memory["baseline_rss_mb"]},
                {"figure": "peak RSS during the 256-image sweep", "MB": memory["peak_rss_mb"]},
            ],
            ["figure", "MB"],
            title=f"memory: 256-image Session.sweep in a subprocess ({memory['samples']} samples, "
            f"sweep took {fmt(memory['sweep_s'])} s, {memory['counts']})",
        )
    )
    checks.append(
        {
            "figure": "256-image sweep, peak RSS (MB)",
            "value": memory["peak_rss_mb"],
            "target": "< 500",
            "verdict": verdict(memory["peak_rss_mb"], TARGETS["rss_mb"]),
        }
    )
    report("notebook", checks, {"notebook": size, "memory": memory}, elapsed=time.perf_counter() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
