"""Shared fixtures: a simulator on loopback, isolated output directories, sessions."""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.domain.settings import Settings

from .support import quick_settings


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
