"""Helpers the tests share (import them from here, never from ``conftest``).

The package's import graph lives here too: ``tests/test_layering.py`` and
``tests/test_shape.py`` both read it.
"""

from __future__ import annotations

import ast
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gemimg_jupyter.domain.settings import RetryPolicy, Settings

PKG = Path(__file__).resolve().parents[1] / "gemimg_jupyter"

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
        grid_theme="light",  # not this machine's JupyterLab theme: tests read the same pixels everywhere
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


# ---------------------------------------------------------------- the package's import graph

ROOT = PKG.name


def module_name(path: Path, pkg: Path = PKG) -> str:
    """``gemimg_jupyter/ledger/store.py`` → ``gemimg_jupyter.ledger.store`` (a package is its ``__init__``)."""
    rel = path.relative_to(pkg.parent).with_suffix("").as_posix().replace("/", ".")
    return rel.removesuffix(".__init__")


def package_modules(pkg: Path = PKG) -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path, pkg): path for path in sorted(pkg.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    """One import statement's target: the module, and the names taken from it (empty for ``import x``)."""

    importer: str
    module: str
    names: tuple[str, ...]
    line: int


def imports_of(source: str, module: str, is_package: bool, known: Iterable[str]) -> list[Import]:
    """Every import of a package module in ``source``: module level, in functions and under ``TYPE_CHECKING``.

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module.
    """
    known = set(known)
    here = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, (), node.lineno) for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            plain = [a.name for a in node.names if f"{target}.{a.name}" not in known]
            found += [Import(module, f"{target}.{a.name}", (), node.lineno) for a in node.names if a.name not in plain]
            if plain:
                found.append(Import(module, target, tuple(plain), node.lineno))
    return found


def import_graph(modules: Mapping[str, Path] | None = None) -> dict[str, set[str]]:
    """Module → the package modules it imports (a package's ``__init__`` counts for ``from pkg import x``)."""
    modules = package_modules() if modules is None else modules
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = imports_of(path.read_text(), name, path.name == "__init__.py", modules)
        graph[name] = {imp.module for imp in found if imp.module in modules and imp.module != name}
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def output_image(data: Mapping[str, object]) -> bytes:
    """The one image of a display output: the ``data:`` URL of its ``<img>`` (``text/html``), else ``image/png``.

    An image output stores its picture once, in ``text/html`` with alt text (``display.renderers.image_bundle``).
    """
    import base64
    import re

    found = re.findall(r'src="data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)"', str(data.get("text/html", "")))
    if found:
        assert len(found) == 1, f"{len(found)} images in one output"
        return base64.b64decode(found[0])
    png = data["image/png"]
    return png if isinstance(png, bytes) else base64.b64decode(str(png))


class SimProcess:
    """``python -m gemimg_jupyter.sim`` in a separate process (a gateway that is not this process's).

    ``with SimProcess("--latency", "0.1,0.3") as sim:`` starts it on a free port; ``sim.base_url``
    is where it listens, ``sim.stats()`` its counts (``GET /_sim/stats``). Leaving stops it.
    """

    def __init__(self, *args: str) -> None:
        self.args = ("--port", "0", "--latency", "0.1,0.4", "--queue-delay", "0,0.05", *args)
        self.base_url = ""
        self._proc: Any = None

    def __enter__(self) -> SimProcess:
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "gemimg_jupyter.sim", *self.args]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self._proc.stdout.readline().strip()  # the first line names the port (it ends the wait)
        if not line.startswith("gemimg simulator listening on "):
            self.__exit__()
            raise AssertionError(f"the simulator process did not start: {line!r}")
        self.base_url = line.rsplit(" ", 1)[-1]
        return self

    def stats(self) -> dict[str, Any]:
        import requests

        answer: dict[str, Any] = requests.get(f"{self.base_url}/_sim/stats", timeout=10).json()
        return answer

    def __exit__(self, *_exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()


def older_ledger(output: Path, version: int, *, without: Iterable[str]) -> None:
    """Make ``output``'s ledger look written by schema ``version``: one job row (``gemimg-kept``), and the
    tables that version did not have dropped (the next ``Store`` there migrates it)."""
    from gemimg_jupyter.ledger.store import Store

    store = Store(output)
    store.add(cbid="gemimg-kept", key="k", repeat=0, params={"prompt": "fox"}, backend="sim", price_usd=0.04)
    store.close()
    path = output / "ledger.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        for table in without:
            db.execute(f"DROP TABLE {table}")
        db.execute(f"PRAGMA user_version = {int(version)}")
