"""The layers of DESIGN §2, checked mechanically.

The core never imports IPython, ipywidgets or traitlets (nor the display,
widget or magic layers); widgets never import magics. Ruff's banned-api rule
says the same at lint time; this test proves it at import time too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gemimg_jupyter"
#: The faces outside the panel package.
FACE_MODULES = ("magics", "cells", "commands", "widgets", "display", "live", "renderers")
#: Every module that is not a face is core; found on disk, so a new module is checked the day it lands.
CORE = sorted(
    path.relative_to(PKG).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
    for path in PKG.rglob("*.py")
    if path.relative_to(PKG).parts[0] != "panel"
    and path.stem not in (*FACE_MODULES, "__main__")
    and path != PKG / "__init__.py"
)
#: The panel package's modules (faces, like widgets.py that re-exports them).
PANEL = tuple(sorted(f"panel/{path.stem}" for path in (PKG / "panel").glob("*.py")))
UI = {
    *FACE_MODULES,
    "panel",
    *(p.replace("/", ".") for p in PANEL),
}
BANNED = ("IPython", "ipywidgets", "traitlets")


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_ui_toolkit(module: str) -> None:
    code = (
        f"import sys, gemimg_jupyter.{module}\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {BANNED!r} "
        f"or m in {tuple(f'gemimg_jupyter.{ui}' for ui in sorted(UI))!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"gemimg_jupyter.{module} pulled in {out.strip()}"


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(
                f"{base}.{alias.name}" if base.endswith(".") is False else base + alias.name for alias in node.names
            )
    return names


def test_no_core_file_mentions_the_ui_layers() -> None:
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("").as_posix().replace("/", ".")
        if rel in UI or rel == "__init__":
            continue
        names = imported_names(path)
        bad = {n for n in names if n.split(".")[0] in BANNED or any(n == ui or n.endswith(f".{ui}") for ui in UI)}
        assert not bad, f"{rel} imports {sorted(bad)}"


def test_widgets_never_import_magics() -> None:
    path = PKG / "widgets.py"
    if not path.exists():
        pytest.skip("widgets.py not present")
    assert not any(n.endswith("magics") for n in imported_names(path))
    for name in PANEL:
        assert not any(n.endswith("magics") for n in imported_names(PKG / f"{name}.py")), name


#: A module that uses each toolkit (so the only complaint ruff can have about it is the import itself).
TOOLKIT_USE = {
    "IPython": "import IPython\n\nVERSION = IPython.__version__\n",
    "ipywidgets": "from ipywidgets import Button\n\nMAKER = Button\n",
    "traitlets": "from traitlets import Unicode\n\nTRAIT = Unicode\n",
}


def ruff_verdict(source: str, path: str) -> subprocess.CompletedProcess[str]:
    """Ruff's check of ``source`` as if it were the file ``path`` of this project (with its pyproject.toml)."""
    cmd = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "--stdin-filename", path]
    return subprocess.run(cmd, input=source, capture_output=True, text=True, cwd=PKG.parent, timeout=60, check=False)


@pytest.mark.parametrize("name", BANNED)
def test_ruff_bans_ui_imports_in_the_core(name: str) -> None:
    source = f'"""A core module."""\n\nfrom __future__ import annotations\n\n{TOOLKIT_USE[name]}'
    core = ruff_verdict(source, "gemimg_jupyter/a_new_core_module.py")
    assert core.returncode == 1 and "TID251" in core.stdout and "the core must not import" in core.stdout, core.stdout
    for face in ("gemimg_jupyter/magics.py", "gemimg_jupyter/panel/a_new_section.py"):
        assert ruff_verdict(source, face).returncode == 0, f"{face} may import {name}"


def test_no_module_imports_names_from_the_package_root() -> None:
    """``from . import __version__`` would run the package's ``__init__`` from inside it; names come from their modules."""
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PKG:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is None and node.level >= 1:
                base = path.parent if node.level == 1 else path.parents[node.level - 1]
                for alias in node.names:
                    is_module = (base / f"{alias.name}.py").exists() or (base / alias.name / "__init__.py").exists()
                    assert is_module, f"{path.relative_to(PKG)} imports {alias.name!r} from the package root"


FACES = (*FACE_MODULES, *PANEL)
#: The engine's parts a face never reaches for: it asks the session instead.
ENGINE_PARTS = {"store", "runner", "pickbook"}


def face_violations(source: str) -> list[str]:
    """Where a face's code reaches past the session's public API.

    Flags ``x.store`` and ``x.runner`` on anything, ``x._private`` on anything but ``self``/``cls``
    (IPython's ``_repr_*_`` display protocol excepted), ``getattr(x, "_private")`` and importing a
    ``_private`` name from another module.
    """
    found: list[str] = []

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__") and not name.startswith("_repr_")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if node.attr in ENGINE_PARTS or (private(node.attr) and not own):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = node.args
            if node.func.id in ("getattr", "setattr", "hasattr") and len(args) > 1:
                name = args[1]
                if isinstance(name, ast.Constant) and isinstance(name.value, str) and private(name.value):
                    found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if private(a.name)]
    return found


@pytest.mark.parametrize("face", FACES)
def test_faces_use_only_the_sessions_public_api(face: str) -> None:
    assert face_violations((PKG / f"{face}.py").read_text()) == []


def test_the_face_check_can_fail() -> None:
    snippet = (
        "from .grid import _fit\n"
        "def f(self, session, job):\n"
        "    session.store.cached_keys([])\n"
        "    self.session.runner.cancel([])\n"
        "    job._adopt\n"
        "    getattr(session, '_closed', False)\n"
        "    self._own = self.widget._repr_mimebundle_()\n"
    )
    found = face_violations(snippet)
    assert sorted(line.split(":")[0] for line in found) == ["line 1", "line 3", "line 4", "line 5", "line 6"], found
