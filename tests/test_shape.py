"""The package's shape: short functions, classes composed rather than chained, no import cycles.

- No function over 80 lines: past that a newcomer can no longer hold it in mind.
- No class inherits a package class defined in another module (exceptions, Protocols, ABCs, Enums and
  typed dicts excepted): a class's state and behaviour live where it is defined, and a part it needs
  is an object it *has*. Module and class size caps are gone on purpose: they were met by spreading
  single classes over files as mixin chains, which is worse than a large cohesive module.
- No import cycle, counting function-level and ``TYPE_CHECKING`` imports.

Each rule has a self-test that proves it can fail.
"""

from __future__ import annotations

import abc
import ast
import enum
import importlib
from pathlib import Path
from typing import Any, is_typeddict

from .support import ROOT, cycles, import_graph, imports_of, module_name, package_modules

FUNCTION_LIMIT = 80
MODULES = package_modules()


def long_functions(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > FUNCTION_LIMIT:
                found.append(f"{name}:{node.name} {size} lines")
    return found


def test_no_function_is_over_80_lines() -> None:
    found = [line for name, path in MODULES.items() for line in long_functions(path.read_text(), name)]
    assert found == []


def test_the_function_check_can_fail() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(80))
    assert long_functions(f"def long():\n{body}", "m") == ["m:long 81 lines"]
    assert long_functions(f"def short():\n{body[: -len('    x79 = 79')]}", "m") == []


# ---------------------------------------------------------------- composition, not mixin chains


def exempt(base: Any) -> bool:
    """Kinds of class that are meant to be inherited across modules."""
    if not isinstance(base, type):
        return is_typeddict(base)
    return (
        issubclass(base, BaseException)
        or issubclass(base, enum.Enum)
        or getattr(base, "_is_protocol", False)
        or is_typeddict(base)
        or base.__dict__.get("__abstractmethods__") is not None
        or isinstance(base, abc.ABCMeta)
    )


def inherited_across_modules(source: str, module: str, is_package: bool) -> list[str]:
    """Classes in ``source`` whose base is a non-exempt package class imported from another module."""
    imported: dict[str, str] = {}  # local name -> "module:Name"
    for imp in imports_of(source, module, is_package, MODULES):
        for name in imp.names:
            imported[name] = f"{imp.module}:{name}"
    for node in ast.walk(ast.parse(source)):  # keep aliases: from x import A as B
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname and alias.name in imported:
                    imported[alias.asname] = imported[alias.name]
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            origin = imported.get(ast.unparse(base).split("[")[0])
            if origin is None:
                continue
            where, name = origin.split(":")
            if not exempt(getattr(importlib.import_module(where), name, None)):
                found.append(f"{module}.{node.name} inherits {where}.{name}")
    return found


def test_no_class_inherits_a_package_class_from_another_module() -> None:
    found = [
        line
        for name, path in MODULES.items()
        for line in inherited_across_modules(path.read_text(), name, path.name == "__init__.py")
    ]
    assert found == []


def test_the_inheritance_check_can_fail() -> None:
    chained = f"from {ROOT}.ledger.store import Store\n\nclass Claims(Store):\n    pass\n"
    assert inherited_across_modules(chained, f"{ROOT}.ledger.other", False) == [
        f"{ROOT}.ledger.other.Claims inherits {ROOT}.ledger.store.Store"
    ]
    allowed = (
        f"from {ROOT}.domain.errors import GemimgError\nfrom {ROOT}.domain.models import JobState\n\n"
        "class Mine(GemimgError):\n    pass\n"
    )
    assert inherited_across_modules(allowed, f"{ROOT}.ledger.other", False) == []


# ---------------------------------------------------------------- no import cycles


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / ROOT
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "one.py").write_text(f"from {ROOT}.a.two import X\n")
    (pkg / "a" / "two.py").write_text("def f():\n    from . import one\n")  # function-level counts
    (pkg / "a" / "three.py").write_text(
        f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from {ROOT}.a import one\n"
    )
    modules = {module_name(p, pkg): p for p in pkg.rglob("*.py")}
    assert cycles(import_graph(modules)) == [[f"{ROOT}.a.one", f"{ROOT}.a.two"]]
