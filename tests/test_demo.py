"""`make demo` as a newcomer runs it: short output, executed notebooks, JupyterLab until stopped, no orphan."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.sign import NotebookNotary

ROOT = Path(__file__).resolve().parents[1]

#: Lines the demo's terminal must never show again (issue #15, point 6).
NOISE = ("without encryption", "[I ", "not trusted", "Traceback")


def _lines(stream: object, into: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)
    into.put(None)


def _wait_for_line(lines: queue.Queue[str | None], seen: list[str], text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            return False
        seen.append(line)
        if text in line:
            return True
    return False


def _kernel_answers(url: str) -> None:
    """Start the quickstart's kernel through the server's REST API and run code in it over its IPC sockets."""
    from jupyter_client import BlockingKernelClient

    base, token = url.split("/lab/")[0], url.split("token=")[1]
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    body = json.dumps({"path": "quickstart.ipynb", "type": "notebook", "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(f"{base}/api/sessions", data=body, headers=headers, method="POST")
    kernel_id = json.loads(urllib.request.urlopen(req, timeout=60).read())["kernel"]["id"]
    found = list(Path(tempfile.gettempdir()).glob(f"gemimg-demo-*/kernel-{kernel_id}.json"))
    assert len(found) == 1, found
    assert json.loads(found[0].read_text())["transport"] == "ipc"
    kc = BlockingKernelClient(connection_file=str(found[0]))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive(
            "import os; print(os.environ['GEMIMG_BACKEND'])", timeout=60, output_hook=lambda m: None
        )
        assert reply["content"]["status"] == "ok", reply
    finally:
        kc.stop_channels()


def _server_of(out: Path) -> psutil.Process | None:
    """The JupyterLab server serving ``out`` (it runs in a session of its own, so look at every process)."""
    mark = f"--ServerApp.root_dir={out}"
    for proc in psutil.process_iter(["cmdline"]):
        if mark in (proc.info["cmdline"] or []):
            return proc
    return None


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_make_demo_serves_then_stops_without_an_orphan(tmp_path: Path, stop: signal.Signals) -> None:
    out = tmp_path / "demo_out"
    env = {k: v for k, v in os.environ.items() if k != "TOAPIS_API_KEY"}
    env["GEMIMG_SIM_LATENCY"] = "0.1,0.3"  # the demo's own simulator, just faster
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter-data")  # the trust database lives here
    # `make demo` itself, as the README says; STAMP= skips the set-up step, BIN= is this interpreter's venv
    cmd = ["make", "--no-print-directory", "-s", "demo", "STAMP=", f"BIN={Path(sys.executable).parent}"]
    cmd.append(f"DEMO_ARGS=--out {out} --clean")
    if stop is signal.SIGINT:
        cmd = [sys.executable, "scripts/demo.py", "--serve", "--out", str(out), "--clean"]
    make = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(make.stdout, lines), daemon=True).start()
    seen: list[str] = []
    server = None
    try:
        assert _wait_for_line(lines, seen, "open: http://127.0.0.1:", timeout=240), "".join(seen)
        server = _server_of(out)
        assert server is not None and psutil.Process(make.pid) in server.parents(), "JupyterLab is not the demo's child"
        url = seen[-1].split("open:", 1)[1].strip()
        _kernel_answers(url)
        if stop is signal.SIGINT:
            os.killpg(make.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's foreground group
        else:
            make.send_signal(signal.SIGTERM)  # `kill <pid of make>`
        make.wait(timeout=60)
        _gone, alive = psutil.wait_procs([server], timeout=30)
        assert not alive, f"JupyterLab (pid {server.pid}) still runs after {stop.name} to the demo"
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=10)
        server = server or _server_of(out)
        if server is not None and server.is_running():
            server.kill()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    text = "".join(seen)
    noisy = [line for line in seen if any(word in line for word in NOISE)]
    assert not noisy, text
    assert len(seen) <= 14, f"the demo's terminal output is {len(seen)} lines:\n{text}"
    assert "until you press Ctrl-C" in text, text

    notary = NotebookNotary(data_dir=str(tmp_path / "jupyter-data"))
    for name, mime_meta in (("quickstart", "gemimg"), ("sweeps", "gemimg_sweep")):
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"], name
        images = [o for o in outputs if "data:image/png;base64," in o.get("data", {}).get("text/html", "")]
        assert any(mime_meta in o.get("metadata", {}).get("text/html", {}) for o in images), name
        assert notary.check_signature(nb), f"{name}.ipynb is not trusted"
    assert list((out / "gemimg_outputs" / "images").glob("*.jpg"))
    assert list((out / "gemimg_outputs" / "grids").glob("*.png"))
