"""Size limits that keep the package easy to carry on (issue #14's "done when").

No module over 600 lines, no class over 400, no function over 80: past those a
newcomer can no longer hold one piece in mind. A piece that outgrows its limit
is split on its seams, not allowed through here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gemimg_jupyter"
LIMITS = {"module": 600, "class": 400, "function": 80}


def oversized(source: str, name: str) -> list[str]:
    """The module, classes and functions of ``source`` that are over their limit."""
    found: list[str] = []
    lines = len(source.splitlines())
    if lines > LIMITS["module"]:
        found.append(f"{name}: {lines} lines")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > LIMITS[kind]:
                found.append(f"{name}:{node.name} ({kind}) {size} lines")
    return found


def test_no_module_class_or_function_is_over_its_limit() -> None:
    found = [
        line for path in sorted(PKG.rglob("*.py")) for line in oversized(path.read_text(), str(path.relative_to(PKG)))
    ]
    assert found == []


def test_the_size_check_can_fail() -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(81))
    source = f"class Small:\n    def long(self):\n{body}" + "\n" * 600
    found = oversized(source, "m.py")
    assert len(found) == 2, found
    assert found[0] == "m.py: 683 lines"
    assert found[1] == "m.py:long (function) 82 lines"
