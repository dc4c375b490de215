"""The layers of DESIGN §2, checked mechanically.

``LAYERS`` is the import rule, written once: every import of a package module (at module level, inside
a function, or under ``TYPE_CHECKING``) stays inside its own subpackage or points *down* this table.
The faces reach the core only through ``gemimg_jupyter.api`` (which re-exports the value types they
show); the core never imports IPython, ipywidgets or traitlets. Only package ``__init__`` files
re-export, and no ``_private`` name crosses a subpackage. Each rule has a self-test proving it can fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .support import PKG, ROOT, Import, imports_of, package_modules

#: Top to bottom. A module may import its own subpackage and anything *below* its row.
LAYERS: tuple[tuple[str, str], ...] = (
    ("magics", "face: the %%gemimg cell magic and the %gemimg subcommands"),
    ("panel", "face: the ipywidgets control panel"),
    ("display", "face: live views and static renderers"),
    ("api", "the Python API: Session, results, budget, edits, lineage, report, progress"),
    ("probe", "tool: asks the real gateway what its docs leave open"),
    ("engine", "jobs: handles, records, the runner and its parts"),
    ("gateway", "the ToAPIs client: transport, downloads, parsing, HTTP errors"),
    ("ledger", "the SQLite ledger: store, schema, leases, claims, queries, picks, files"),
    ("sim", "tool: the gateway simulator (imports the domain only)"),
    ("draw", "pictures: images, grids, sheets (Pillow, pure)"),
    ("plans", "sweeps on paper: axes and plans (pure)"),
    ("domain", "errors, settings, params, models, job states, text"),
    ("_version", "the version string"),
)
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}
FACES = ("magics", "panel", "display")
#: The one door from the faces into the core.
API = f"{ROOT}.api"
BANNED = ("IPython", "ipywidgets", "traitlets")
MODULES = package_modules()


def layer_of(module: str) -> str:
    """``gemimg_jupyter.ledger.store`` → ``ledger``; the package root is ``""`` (the facade above all)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layering_violations(imports: list[Import]) -> list[str]:
    """The imports that point up the table, sideways, or from a face into the core past ``api``."""
    found = []
    for imp in imports:
        src, dst = layer_of(imp.importer), layer_of(imp.module)
        if src in ("", dst) or dst == "":
            if dst == "" and src != "":
                found.append(f"{imp.importer}:{imp.line} imports the package root")
            continue
        if src not in RANK or dst not in RANK:
            found.append(f"{imp.importer}:{imp.line} -> {imp.module}: a layer missing from LAYERS")
        elif RANK[dst] <= RANK[src]:
            found.append(f"{imp.importer}:{imp.line} -> {imp.module}: points up ({src} is above {dst}? no)")
        elif src in FACES and dst not in FACES and imp.module != API:
            found.append(f"{imp.importer}:{imp.line} -> {imp.module}: a face reaches the core only through {API}")
    return found


def all_imports() -> list[Import]:
    return [
        imp
        for name, path in MODULES.items()
        for imp in imports_of(path.read_text(), name, path.name == "__init__.py", MODULES)
    ]


def test_every_subpackage_is_in_the_table() -> None:
    on_disk = {layer_of(m) for m in MODULES} - {""}
    assert on_disk == set(RANK), f"add to LAYERS or remove: {sorted(on_disk ^ set(RANK))}"


def test_every_import_points_down_the_table() -> None:
    assert layering_violations(all_imports()) == []


def test_the_layer_check_can_fail() -> None:
    def one(importer: str, module: str) -> list[str]:
        return layering_violations([Import(importer, module, (), 1)])

    assert one(f"{ROOT}.domain.models", f"{ROOT}.ledger.store")  # up
    assert one(f"{ROOT}.ledger.store", f"{ROOT}.gateway.client")  # up (gateway is above the ledger)
    assert one(f"{ROOT}.panel.results", f"{ROOT}.domain.models")  # a face past the api
    assert one(f"{ROOT}.display.live", f"{ROOT}.magics.cells")  # a face upwards
    assert one(f"{ROOT}.ledger.store", ROOT)  # the root from inside
    assert not one(f"{ROOT}.ledger.store", f"{ROOT}.ledger.schema")  # its own subpackage
    assert not one(f"{ROOT}.ledger.store", f"{ROOT}.domain.models")  # down
    assert not one(f"{ROOT}.panel.results", API)  # a face through the door
    assert not one(f"{ROOT}.magics.commands", f"{ROOT}.panel")  # a face onto a lower face


def test_core_imports_no_ui_toolkit_at_run_time() -> None:
    """Every core module imported in one fresh interpreter: nothing of IPython, ipywidgets or traitlets loads."""
    core = [m for m in MODULES if layer_of(m) not in (*FACES, "") and not m.endswith("__main__")]
    code = (
        f"import importlib, sys\nfor m in {core!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {BANNED!r} "
        f"or m.split('.')[1:2] in {[[f] for f in FACES]!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the core pulled in {out.strip()}"


def test_no_core_file_names_a_ui_toolkit() -> None:
    for name, path in MODULES.items():
        if layer_of(name) in FACES:
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] in BANNED}, name


# ---------------------------------------------------------------- one import path per name


def reexports_only(source: str) -> bool:
    """A module whose body is only imports and ``__all__`` (a docstring allowed): a shim."""
    body = [n for n in ast.parse(source).body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    return bool(body) and all(
        isinstance(n, (ast.Import, ast.ImportFrom))
        or (isinstance(n, ast.Assign) and [ast.unparse(t) for t in n.targets] == ["__all__"])
        for n in body
    )


def test_only_package_inits_re_export() -> None:
    shims = [
        name
        for name, path in MODULES.items()
        if path.name not in ("__init__.py", "__main__.py") and reexports_only(path.read_text())
    ]
    assert shims == []


def test_the_shim_check_can_fail() -> None:
    assert reexports_only(
        '"""A shim."""\nfrom .panel import *\nfrom . import panel as _p\n__all__ = list(_p.__all__)\n'
    )
    assert not reexports_only("from .panel import Panel\n\ndef make():\n    return Panel()\n")


def private_crossings(imports: list[Import]) -> list[str]:
    """``_private`` names (or ``_private`` modules) imported from another subpackage."""
    found = []
    for imp in imports:
        if layer_of(imp.importer) == layer_of(imp.module):
            continue
        leaf = imp.module.rsplit(".", 1)[-1] if imp.module != f"{ROOT}._version" else "version"
        private = [n for n in (*imp.names, leaf) if n.startswith("_") and not n.startswith("__")]
        found += [f"{imp.importer}:{imp.line} imports {n} from {imp.module}" for n in private]
    return found


def test_no_private_name_crosses_a_subpackage() -> None:
    assert private_crossings(all_imports()) == []


def test_the_private_check_can_fail() -> None:
    crossing = Import(f"{ROOT}.probe.cli", f"{ROOT}.gateway.client", ("_cheapest",), 3)
    assert private_crossings([crossing]) == [f"{ROOT}.probe.cli:3 imports _cheapest from {ROOT}.gateway.client"]
    inside = Import(f"{ROOT}.probe.cli", f"{ROOT}.probe.checks", ("_cheapest",), 3)
    assert private_crossings([inside]) == []


# ---------------------------------------------------------------- ruff says the same at lint time


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
    for face in ("gemimg_jupyter/magics/extension.py", "gemimg_jupyter/panel/a_new_section.py"):
        assert ruff_verdict(source, face).returncode == 0, f"{face} may import {name}"


# ---------------------------------------------------------------- faces use the session's public API

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


FACE_MODULES = sorted(m for m in MODULES if layer_of(m) in FACES)


@pytest.mark.parametrize("face", FACE_MODULES)
def test_faces_use_only_the_sessions_public_api(face: str) -> None:
    assert face_violations(MODULES[face].read_text()) == []


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
