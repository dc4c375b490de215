"""A one-line progress bar for a person waiting on a sweep in a terminal.

``gi.sweep(..., wait=True)`` or ``SweepResult.wait()`` in a plain Python
script or in terminal IPython draws, on standard error, one line that is
redrawn in place about twice a second::

    gemimg ▕██████████░░░░░░░░▏ 7/12 done · 1 failed · $0.34 · ETA 12 s

and ends it with a newline when the wait returns (or is interrupted). It
draws only when standard error is a terminal, only in the main thread, and
only when something is still running: a notebook kernel's streams are not
terminals, a pipe or a log file gets nothing, and the notebook's own live
outputs are untouched.

This is core: it never imports IPython, ipywidgets or traitlets.
"""

from __future__ import annotations

import functools
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TextIO, TypeVar, cast

from gemimg_jupyter.domain.text import format_usd

__all__ = ["ProgressLine", "render", "shown_while_waiting", "wanted"]

#: Seconds between two redraws.
INTERVAL = 0.5


class _Job(Protocol):
    """What the bar reads of a job (:class:`~gemimg_jupyter.engine.Job` has it)."""

    @property
    def cost_usd(self) -> float: ...

    def done(self) -> bool: ...

    @property
    def state(self) -> Any: ...


class _HasJobs(Protocol):
    @property
    def jobs(self) -> Sequence[Any]: ...


def _failed(job: _Job) -> bool:
    state = job.state
    return bool(state.is_terminal and not state.has_image)


def render(jobs: Sequence[_Job], elapsed: float, width: int = 80) -> str:
    """The line for ``jobs`` after ``elapsed`` seconds, at most ``width`` characters.

    The ETA extrapolates from the jobs ended so far (``…`` before the first one ends).
    """
    total = len(jobs)
    ended = sum(1 for job in jobs if job.done())
    failed = sum(1 for job in jobs if _failed(job))
    cost = sum(job.cost_usd or 0.0 for job in jobs)
    parts = [f"{ended - failed}/{total} done"]
    if failed:
        parts.append(f"{failed} failed")
    parts.append(format_usd(cost))
    if ended >= total:
        parts.append(f"{elapsed:.0f} s")
    elif ended:
        parts.append(f"ETA {elapsed / ended * (total - ended):.0f} s")
    else:
        parts.append("ETA …")
    text = " · ".join(parts)
    room = max(0, width - len(text) - len("gemimg ▕▏ ") - 1)
    cells = min(24, room)
    if cells >= 6:
        filled = round(cells * ended / total) if total else cells
        return f"gemimg ▕{'█' * filled}{'░' * (cells - filled)}▏ {text}"
    return f"gemimg {text}"[: max(1, width - 1)]


def wanted(jobs: Sequence[_Job], stream: TextIO | None = None, timeout: float | None = None) -> bool:
    """True when a bar should be drawn: a terminal, the main thread, a real wait, something still running."""
    stream = sys.stderr if stream is None else stream
    if timeout is not None and timeout <= 0:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
    return any(not job.done() for job in jobs)


class ProgressLine:
    """Redraws the line from a daemon thread until :meth:`stop`; then writes it once more and a newline."""

    def __init__(self, jobs: Sequence[_Job], stream: TextIO, interval: float = INTERVAL) -> None:
        self.jobs = list(jobs)
        self.stream = stream
        self.interval = interval
        self._halt = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="gemimg-progress", daemon=True)

    def start(self) -> ProgressLine:
        self._draw()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=5)
        self._draw()
        self._write("\n")

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            self._draw()

    def _draw(self) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        line = render(self.jobs, time.monotonic() - self._started, width)
        self._write(f"\r{line}\x1b[K")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: the wait itself goes on
            self._halt.set()


F = TypeVar("F", bound=Callable[..., Any])


def shown_while_waiting(wait: F) -> F:
    """Decorate a ``wait(self, timeout=None)`` method of an object with ``.jobs``: a bar while it waits."""

    @functools.wraps(wait)
    def wrapper(self: _HasJobs, timeout: float | None = None) -> Any:
        if not wanted(self.jobs, timeout=timeout):
            return wait(self, timeout)
        line = ProgressLine(self.jobs, sys.stderr).start()
        try:
            return wait(self, timeout)
        finally:
            line.stop()

    return cast(F, wrapper)
