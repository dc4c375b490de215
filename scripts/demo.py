"""The demo: execute the notebooks against the built-in simulator, then (optionally) serve them.

::

    python scripts/demo.py            # make demo-headless: execute into demo_out/, print where they are
    python scripts/demo.py --serve    # make demo: the same, then JupyterLab on 127.0.0.1 (Ctrl-C stops it)

``notebooks/quickstart.ipynb`` (and ``sweeps.ipynb`` when present) are run in a
real kernel with ``GEMIMG_BACKEND=sim`` and no ``TOAPIS_API_KEY``; the executed
copies, their images (``demo_out/gemimg_outputs/``) and the reference files they
write all stay in ``demo_out/`` (gitignored). With ``--serve`` JupyterLab
starts on a free port with a random token, rooted at ``demo_out/``, opening
the executed quickstart; the printed URL carries the token. Ctrl-C (SIGINT),
``kill`` (SIGTERM) and a closed terminal (SIGHUP) all stop the server and its
kernels before the script exits, so no JupyterLab is left serving.

The terminal stays short: kernels talk over local IPC sockets (no "TCP without
encryption" warning), the server logs warnings only, and the executed
notebooks are signed as trusted for this user, so JupyterLab shows their
outputs without a "not trusted" note.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
from nbformat.sign import NotebookNotary

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_notebooks import NOTEBOOK_DIR, ROOT, execute, sim_env

DEMO_NOTEBOOKS = ("quickstart", "sweeps")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_notebooks(out: Path) -> list[Path]:
    """Execute the demo notebooks into ``out``; returns the executed copies."""
    out.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    env = sim_env()  # images go to out/gemimg_outputs, beside the notebooks
    for name in DEMO_NOTEBOOKS:
        source = NOTEBOOK_DIR / f"{name}.ipynb"
        if not source.exists():
            continue
        nb = nbformat.read(source, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        started = time.monotonic()
        print(f"executing {source.relative_to(ROOT)} against the simulator …", flush=True)
        try:
            execute(nb, cwd=out, env=env)
        finally:
            target = out / source.name
            nbformat.write(nb, target)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            raise SystemExit(f"{target}: {len(errors)} cell(s) failed: {errors[0].get('evalue')}")
        NotebookNotary().sign(nb)  # its outputs are ours: trusted, so JupyterLab shows them as they are
        print(f"  wrote {target} ({time.monotonic() - started:.1f} s)")
        done.append(target)
    if not done:
        raise SystemExit(f"no demo notebooks found in {NOTEBOOK_DIR}")
    return done


def serve(out: Path, first: Path) -> int:
    """Run JupyterLab on 127.0.0.1 rooted at ``out`` until Ctrl-C."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={out}",
        # warnings only, from the server and the lab extension alike (`--log-level` alone leaves LabApp's [I …] lines)
        "--ServerApp.log_level=WARN",
        "--LabApp.log_level=WARN",
        # kernels over local IPC sockets, not TCP: nothing on the network, and no plain-text warning per kernel
        "--KernelManager.transport=ipc",
        "--LabApp.news_url=None",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers often run as root; the server still binds 127.0.0.1 only
    # a short runtime folder of its own: the kernels' IPC socket paths must stay under ~100 characters
    runtime = tempfile.mkdtemp(prefix="gemimg-demo-")
    env = sim_env(JUPYTER_RUNTIME_DIR=runtime)
    _install_signal_handlers()  # again: executing the notebooks (nbclient) reset SIGTERM to its default
    # its own session: Ctrl-C reaches only this script, which stops the server (no y/n prompt)
    proc = subprocess.Popen(cmd, cwd=out, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/lab/tree/{first.name}?token={token}"
    try:
        if not _wait_listening(port, proc, timeout=60):
            print("JupyterLab did not start; see its messages above", file=sys.stderr)
            return 1
        print(f"\nJupyterLab is serving {out} until you press Ctrl-C\n  open: {url}", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping JupyterLab …", flush=True)
        return 0
    finally:
        _stop_server(proc, f"http://127.0.0.1:{port}", token)
        shutil.rmtree(runtime, ignore_errors=True)


def _stop_server(proc: subprocess.Popen[bytes], base: str, token: str) -> None:
    """Ask the server to shut down (its kernels too), then SIGTERM, then SIGKILL; no-op once it has exited."""
    if proc.poll() is not None:
        return
    with _signals_deferred():
        try:
            req = urllib.request.Request(
                f"{base}/api/shutdown", method="POST", data=b"", headers={"Authorization": f"token {token}"}
            )
            urllib.request.urlopen(req, timeout=5).read()
            proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


class _Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C: unwind, stopping kernels and the server on the way."""


def _on_signal(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def _install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


class _signals_deferred:
    """While the server is being stopped, a second Ctrl-C or SIGTERM must not cut the stop short."""

    def __enter__(self) -> None:
        self._old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="start JupyterLab on the executed notebooks")
    parser.add_argument("--out", type=Path, default=ROOT / "demo_out", help="where to write (default: demo_out/)")
    parser.add_argument("--clean", action="store_true", help="empty the output folder first (a cold cache)")
    args = parser.parse_args(argv)
    _install_signal_handlers()
    out = args.out.resolve()
    if args.clean and out.exists():
        shutil.rmtree(out)
    if os.environ.get("TOAPIS_API_KEY"):
        print("note: TOAPIS_API_KEY is set, but the demo always uses the simulator (nothing is charged)")
    executed = run_notebooks(out)
    print("\nexecuted notebooks:")
    for path in executed:
        print(f"  {path}")
    print(f"images: {out / 'gemimg_outputs'}")
    if args.serve:
        return serve(out, executed[0])
    return 0


def _main_interruptible() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(_main_interruptible())
