"""The terminal progress bar of ``gi.sweep(..., wait=True)``: one line on a TTY, nothing elsewhere.

The realistic cases run a plain Python script in a separate process, once
with standard error on a pseudo-terminal (the bar is drawn and redrawn in
place) and once on a pipe (nothing). A unit test checks the line itself.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gemimg_jupyter.api.progress import render, wanted
from gemimg_jupyter.domain.models import JobState

SCRIPT = """
import gemimg_jupyter as gi
from gemimg_jupyter.domain.settings import Settings
gi.reset_session(Settings(backend="sim", output_dir={out!r}, sim_options={{"latency": (0.6, 1.2), "seed": 3}}))
fox = gi.sweep("a paper-cut fox", temperature=[0.2, 1.4], size=["1:1", "16:9"], wait=True)
print("RESULT", fox.progress_text(), flush=True)
"""


def _job(state: JobState, cost: float = 0.05) -> SimpleNamespace:
    return SimpleNamespace(state=state, cost_usd=cost, done=lambda: state.is_terminal)


def test_the_line_counts_done_failed_cost_and_eta() -> None:
    jobs = [_job(JobState.DONE), _job(JobState.FAILED, 0.0), _job(JobState.IN_PROGRESS), _job(JobState.QUEUED, 0.0)]
    line = render(jobs, elapsed=10.0, width=100)
    assert line.startswith("gemimg ▕") and "1/4 done · 1 failed · $0.10 · ETA 10 s" in line
    assert len(render(jobs, 10.0, width=40)) < 40  # narrow terminal: still one line
    assert "ETA …" in render([_job(JobState.QUEUED)], 1.0)


def test_nothing_is_drawn_on_a_stream_that_is_not_a_terminal(tmp_path: Path) -> None:
    with open(tmp_path / "log.txt", "w") as stream:
        assert not wanted([_job(JobState.IN_PROGRESS)], stream)
    assert not wanted([_job(JobState.DONE)], sys.__stdout__)  # nothing left to wait for


def _run_script(tmp_path: Path, *, tty: bool) -> tuple[str, str]:
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT.format(out=str(tmp_path / "out")))
    env = {k: v for k, v in os.environ.items() if k not in ("TOAPIS_API_KEY", "GEMIMG_BACKEND")}
    if not tty:
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout, proc.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=slave, text=True, close_fds=True
    )
    os.close(slave)
    err = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.wait(timeout=30) == 0, err.decode(errors="replace")
    return out, err.decode(errors="replace")


@pytest.mark.slow
def test_a_script_on_a_terminal_shows_one_line_redrawn_in_place(tmp_path: Path) -> None:
    out, err = _run_script(tmp_path, tty=True)
    assert "RESULT 4/4 done" in out
    frames = [f for f in err.replace("\x1b[K", "").split("\r") if f.strip()]
    assert len(frames) >= 2, err  # drawn, then redrawn at least once
    assert frames[0].startswith("gemimg ▕") and "0/4 done" in frames[0]
    assert "4/4 done · $0.20" in frames[-1], frames[-1]
    assert err.endswith("\n") and err.count("\n") == 1, f"one line only, ended once: {err!r}"


@pytest.mark.slow
def test_a_script_on_a_pipe_shows_nothing(tmp_path: Path) -> None:
    out, err = _run_script(tmp_path, tty=False)
    assert "RESULT 4/4 done" in out
    assert "gemimg ▕" not in err and "\r" not in err
