"""`make demo-headless` as a smoke test: what a newcomer's first command produces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.notebook
def test_demo_headless_executes_the_notebooks(tmp_path: Path) -> None:
    out = tmp_path / "demo_out"
    env = {k: v for k, v in os.environ.items() if k != "TOAPIS_API_KEY"}
    env["GEMIMG_SIM_LATENCY"] = "0.1,0.3"  # the demo's own simulator, just faster
    proc = subprocess.run(
        [sys.executable, "scripts/demo.py", "--out", str(out), "--clean"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(out / "quickstart.ipynb") in proc.stdout and str(out / "sweeps.ipynb") in proc.stdout
    for name, mime_meta in (("quickstart", "gemimg"), ("sweeps", "gemimg_sweep")):
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"], name
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert any(mime_meta in o.get("metadata", {}).get("image/png", {}) for o in images), name
    assert list((out / "gemimg_outputs" / "images").glob("*.png"))
    assert list((out / "gemimg_outputs" / "grids").glob("*.png"))
