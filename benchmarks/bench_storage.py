"""Disk use of 100 simulated JPEG results: re-encoded as PNG with our chunks (before) vs kept bytes + sidecar (after).

Issue #22: the stored file is the gateway's bytes. The simulator serves JPEG
(with EXIF) like the gateway's samples; before, each was decoded and written
as a PNG carrying our provenance chunks; now the JPEG is written unchanged
with a ``<image>.json`` sidecar. Both paths are the package's own: the old one
is :func:`~gemimg_jupyter.draw.images.embed_provenance` then ``Store.write_bytes``,
the new one ``Store.write_image``. Disk use counts allocated blocks.

    .venv/bin/python benchmarks/bench_storage.py [--n 100] [--resolution 1K]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import table, write_results

from gemimg_jupyter._version import __version__
from gemimg_jupyter.draw.images import embed_provenance
from gemimg_jupyter.ledger.store import Store
from gemimg_jupyter.sim.encode import encode
from gemimg_jupyter.sim.render import RenderSpec, render

PROMPTS = ("a paper-cut fox", "a lighthouse at night", "a bowl of lemons", "a neon city in the rain",
           "a marble statue of a cat")  # fmt: skip


def _usage(folder: Path) -> tuple[int, int, int]:
    """(files, bytes, bytes allocated on disk) under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files), sum(p.stat().st_blocks * 512 for p in files)


def _provenance(i: int, spec: RenderSpec) -> dict[str, Any]:
    params = {"prompt": spec.prompt, "model": spec.model, "size": spec.size, "resolution": spec.resolution,
              "temperature": spec.temperature}  # fmt: skip
    return {"generator": f"gemimg_jupyter {__version__}", "backend": "sim", "params": params, "references": [],
            "repeat": i, "task_id": f"img_{i:032x}", "client_business_id": f"bench-{i:06d}", "sweep_id": None,
            "submitted_at": time.time(), "completed_at": int(time.time()), "downloaded_at": time.time(),
            "cost_usd": 0.039}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--resolution", default="1K")
    args = ap.parse_args()
    served = []
    for i in range(args.n):
        spec = RenderSpec(PROMPTS[i % len(PROMPTS)], size="1:1", resolution=args.resolution, temperature=0.8,
                          sample=f"bench-{i}")  # fmt: skip
        served.append((encode(render(spec), "jpeg"), _provenance(i, spec)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, write in (
            ("before: PNG re-encode + chunks", lambda s, d, p, n: s.write_bytes(embed_provenance(d, p), n)),
            ("after: served JPEG + sidecar", lambda s, d, p, n: s.write_image(d, n, p)),
        ):
            root = Path(tmp) / label.split(":")[0]
            store = Store(root)
            start = time.perf_counter()
            for i, (data, prov) in enumerate(served):
                write(store, data, prov, f"img-{i:03d}.png")
            took = time.perf_counter() - start
            store.close()
            files, size, disk = _usage(root / "images")
            rows.append({"storage": label, "files": files, "MB": round(size / 1e6, 2),
                         "MB on disk": round(disk / 1e6, 2), "write s": round(took, 2)})  # fmt: skip
    served_mb = sum(len(d) for d, _ in served) / 1e6
    print(table(rows, ["storage", "files", "MB", "MB on disk", "write s"],
                title=f"{args.n} simulated {args.resolution} JPEG results ({served_mb:.2f} MB served)"))  # fmt: skip
    write_results("storage", {"n": args.n, "resolution": args.resolution, "served_mb": served_mb, "rows": rows,
                              "cpu": os.cpu_count()})  # fmt: skip


if __name__ == "__main__":
    main()
