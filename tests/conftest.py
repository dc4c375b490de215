"""Shared fixtures: a simulator on loopback, isolated output directories, sessions."""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gemimg_jupyter.domain.settings import RetryPolicy, Settings

#: A key that is obviously fake; tests scan every artifact for it.
FAKE_KEY = "sk-test-FAKEKEY-0123456789abcdefXYZ"
#: Retries that do not slow the suite down (Retry-After is still honoured).
FAST_RETRY = RetryPolicy(max_tries=6, base=0.05, cap=0.5, jitter=0.1, max_retry_after=5.0)


#: The built-in simulator, fast: for tests that let a Session start its own.
SIM_OPTIONS = {"latency": (0.05, 0.2), "queue_delay": (0.0, 0.02), "seed": 11}


def quick_settings(output_dir: Path, **changes: Any) -> Settings:
    """Settings for a Session with its own fast simulator (override anything with ``changes``)."""
    base = Settings(
        backend="sim",
        output_dir=output_dir,
        sim_options=SIM_OPTIONS,
        retry=FAST_RETRY,
        poll_first=0.05,
        poll_min=0.05,
        poll_max=0.2,
        job_timeout=30.0,
    )
    return base.replace(**changes)


#: Retries for the fault tests: many tries, short waits.
PATIENT = RetryPolicy(max_tries=30, base=0.05, cap=0.5, jitter=0.2, max_retry_after=5.0)


def sim_settings(server: Any, output_dir: Path, **changes: Any) -> Settings:
    """Settings for a Session on an already running simulator ``server``, patient with its faults."""
    patient = {"base_url": server.base_url, "sim_options": {}, "retry": PATIENT, "poll_first": 0.1, "poll_min": 0.1}
    return quick_settings(output_dir, **{**patient, "poll_max": 0.5, **changes})


T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, *, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something true, and return that.

    The test fails with "timed out after ``timeout`` s waiting for ``what``" when the
    deadline passes first. The deadline bounds the wait; it is not a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's key, backend or output directory."""
    for name in (
        "TOAPIS_API_KEY",
        "GEMIMG_BACKEND",
        "GEMIMG_BASE_URL",
        "GEMIMG_OUTPUT_DIR",
        "GEMIMG_MAX_COST_USD",
        "GEMIMG_SIM_LATENCY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMIMG_OUTPUT_DIR", str(tmp_path / "gemimg_outputs"))


@pytest.fixture
def tmp_output(tmp_path: Path) -> Path:
    """An empty output directory for one test."""
    out = tmp_path / "out"
    out.mkdir()
    return out


@pytest.fixture
def sim() -> Iterator[object]:
    """A fresh simulator on 127.0.0.1 with fast, fault-free defaults."""
    from gemimg_jupyter.sim import SimConfig, SimServer

    with SimServer(config=SimConfig(latency=(0.15, 0.4), queue_delay=(0.0, 0.05), seed=7)) as server:
        yield server


@pytest.fixture
def fast_settings(sim: object, tmp_output: Path) -> Settings:
    """Settings that point at the ``sim`` fixture with quick polling."""
    return quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3)  # type: ignore[attr-defined]


@pytest.fixture
def session(fast_settings: Settings) -> Iterator[object]:
    """A Session on the ``sim`` fixture; closed afterwards."""
    from gemimg_jupyter.api.session import Session

    s = Session(fast_settings)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def ip() -> Iterator[object]:
    """A fresh IPython ``InteractiveShell`` (the singleton, so ``display()`` reaches it).

    History is off (no SQLite file per test) and ``display_pub`` is a
    ``CapturingDisplayPublisher``: ``ip.display_pub.outputs`` lists every
    ``display``/``update_display`` call as ``{"data", "metadata", "transient",
    "update"}``. Afterwards the extension is unloaded, the default session
    closed and the singleton cleared.
    """
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from gemimg_jupyter.api.session import reset_session

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryAccessor.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.display_pub = CapturingDisplayPublisher()
    try:
        yield shell
    finally:
        if "gemimg_jupyter" in shell.extension_manager.loaded:
            shell.extension_manager.unload_extension("gemimg_jupyter")
        reset_session(None)
        _retire_shell(shell)
        InteractiveShell.clear_instance()


def _retire_shell(shell: Any) -> None:
    """Do now, and cheaply, what IPython would do for this shell at interpreter exit.

    Every ``InteractiveShell`` registers ``atexit_operations``, which resets the
    namespace and runs a garbage collection. A few hundred shells left
    registered kept pytest alive for about a minute after its summary line.
    Here the hook is dropped and the history manager (its saving thread and
    database) is closed at once; the tests use no temporary files of the shell.
    """
    atexit.unregister(shell.atexit_operations)
    history = shell.history_manager
    if history is not None:
        history.close()
        shell.history_manager = None


def pytest_report_header(config: pytest.Config) -> str:
    return f"gemimg tests: chromium {'present' if os.path.exists('/usr/bin/chromium') else 'MISSING (browser tests skip; under make test they fail)'}"
