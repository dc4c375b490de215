"""The docs cannot drift from the code.

- ``docs/usage.md`` equals a fresh ``scripts/gen_docs.py`` generation.
- Every ``%%gemimg …`` and ``%gemimg …`` in README.md and docs/*.md (code blocks
  and inline code) parses with the real ``%%gemimg`` parser and the real
  ``%gemimg`` router and subcommand parsers; every ``GemimgMagics.<trait>``,
  environment variable, setting and error class the docs name exists, and the
  reference pages list every one of them.
- Every ``python`` block of README.md and docs/usage.md runs, in order, in a real
  ``InteractiveShell`` with ``%load_ext gemimg_jupyter`` on the simulator
  (``GEMIMG_BACKEND=sim``, ``GEMIMG_OUTPUT_DIR`` in a temporary directory,
  ``GEMIMG_SIM_LATENCY`` short). Only lines that need a real key
  (``%gemimg login``, ``backend toapis``) or a frontend (the panel) are skipped.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from PIL import Image

from gemimg_jupyter.domain import errors
from gemimg_jupyter.domain.models import MODELS
from gemimg_jupyter.domain.settings import RetryPolicy, Settings
from gemimg_jupyter.magics.extension import GemimgMagics
from gemimg_jupyter.plans.plan import MAX_REPEATS, canonical_axis_name

from .support import FAST_RETRY

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

_spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
assert _spec is not None and _spec.loader is not None
gen_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_docs)

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`([^`\n]+)`")
_MAGIC = re.compile(r"(?<![\w%])(%%?gemimg)(?![\w?])(.*)$")
_TRAIT = re.compile(r"GemimgMagics\.(\w+)")
_ENV = re.compile(r"\b(TOAPIS_API_KEY|GEMIMG_[A-Z_]+)\b")
#: Lines of doc examples that cannot run here: they need a real key, or a frontend.
_NEEDS_KEY_OR_FRONTEND = re.compile(r"%gemimg\s+(login|panel)\b|%gemimg\s+backend\s+toapis|\bPanel\(")
#: Files the doc examples name, as a reader would have them (made here with Pillow).
FIXTURE_IMAGES = {"product.png": "#2a9d8f", "logo.png": "#e76f51", "style.png": "#264653", "a.png": "#e9c46a"}


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def fenced(path: Path) -> list[tuple[str, str]]:
    """``(language, text)`` of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(path.read_text(encoding="utf-8"))]


def inline(path: Path) -> list[str]:
    """Every inline code span outside fenced blocks."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return _INLINE.findall(text)


def magic_uses(path: Path) -> list[tuple[str, str, str, bool | None]]:
    """``(magic, rest of line, where, strict)`` for every ``%%gemimg``/``%gemimg`` in ``path``.

    ``strict`` is ``True`` for code lines that start with the magic, ``None`` for
    inline spans that start with it, ``False`` for mentions inside other text.

    Code lines that start with the magic are strict (they must parse as
    written); inline spans and mentions in prose or output may carry synopsis
    placeholders (``[ID]``, ``SUBCOMMAND``) and are checked for the subcommand
    and option names only.
    """
    found = []
    for lang, block in fenced(path):
        for line in block.splitlines():
            code = line.split("  #")[0]
            m = _MAGIC.search(code)
            if m:
                strict = lang != "text" and bool(re.match(r"\s*(\w+\s*=\s*)?%", code))
                mention = False if lang == "text" and not code.lstrip().startswith("%") else None
                found.append((m.group(1), m.group(2).strip(), f"{path.name}: {line.strip()}", strict or mention))
    for span in inline(path):
        m = _MAGIC.search(span)
        if m:
            starts = span.lstrip().startswith(m.group(1))
            found.append((m.group(1), m.group(2).strip(), f"{path.name}: `{span}`", None if starts else False))
    return found


@pytest.fixture(scope="module")
def magics() -> GemimgMagics:
    return gen_docs.make_magics()


# ---------------------------------------------------------------- generated, and current


def test_usage_md_is_current() -> None:
    committed = (DOCS / "usage.md").read_text(encoding="utf-8")
    assert committed == gen_docs.render(), "docs/usage.md is stale: run python scripts/gen_docs.py"


def test_usage_md_has_an_example_for_every_option_and_subcommand(magics: GemimgMagics) -> None:
    text = (DOCS / "usage.md").read_text(encoding="utf-8")
    for action in gen_docs.cell_parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}`" in text, flag
    for name in gen_docs.subcommands(magics):
        assert f"### `%gemimg {name}" in text, name
        assert re.search(rf"```python\n(?:.*\n)*?%gemimg {name}\b", text), f"no example of %gemimg {name}"


# ---------------------------------------------------------------- every command in the docs exists


def check_cell_line(rest: str) -> None:
    """Parse a ``%%gemimg`` option line as the magic does (raises ``UsageError``/``ValidationError``)."""
    ns = gen_docs.cell_parser().parse_args(shlex.split(rest))
    for _flag, spec in ns.axes or []:  # --sweep and --with, in the order written
        canonical_axis_name(spec.split("=", 1)[0])
    if ns.output is not None:
        assert ns.output.isidentifier(), f"-o {ns.output!r}"
    assert 1 <= ns.repeats <= MAX_REPEATS
    if ns.model is not None:
        assert any(ns.model in (spec.id, *spec.aliases) for spec in MODELS.values()), ns.model


def check_line(magics: GemimgMagics, rest: str, *, strict: bool, flags_too: bool = True) -> None:
    """Route a ``%gemimg`` line as the magic does and parse its arguments with the subcommand's parser."""
    router = gen_docs.subcommands(magics)
    if not strict:
        words = [w.strip(",.;:()") for w in re.sub(r"\[[^\]]*\]", " ", rest).split()]
        words = [w for w in words if w and not w.startswith("-") and not re.fullmatch(r"[A-Z_|.…]+", w)]
        if not words:
            return
        assert words[0] in router, f"unknown subcommand {words[0]!r}"
        if flags_too:
            parser, _ = gen_docs.subcommand_parser(magics, words[0])
            known = {flag for action in parser._actions for flag in action.option_strings}
            flags = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", rest))
            assert flags <= known, f"{sorted(flags - known)} are not options of %gemimg {words[0]}"
        return
    words = shlex.split(rest)
    if not words:
        return
    assert words[0] in router, f"unknown subcommand {words[0]!r}"
    gen_docs.subcommand_parser(magics, words[0], words[1:])


def all_magic_uses() -> list[Any]:
    return [pytest.param(*use, id=use[2][:70]) for path in doc_files() for use in magic_uses(path)]


@pytest.mark.parametrize(("magic", "rest", "where", "strict"), all_magic_uses())
def test_every_magic_in_the_docs_exists(
    magics: GemimgMagics, magic: str, rest: str, where: str, strict: bool | None
) -> None:
    try:
        if magic == "%%gemimg":
            if strict:
                check_cell_line(rest)
            elif strict is None:
                known = {flag for action in gen_docs.cell_parser()._actions for flag in action.option_strings}
                flags = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", re.sub(r"--sweep\s+\S+", "--sweep", rest)))
                assert flags <= known, f"{sorted(flags - known)} are not %%gemimg options"
        else:
            check_line(magics, rest, strict=bool(strict), flags_too=strict is None)
    except (UsageError, errors.GemimgError, AssertionError) as exc:
        pytest.fail(f"{where}\n  → {exc}")


def test_the_docs_show_both_magics() -> None:
    uses = [use for path in doc_files() for use in magic_uses(path)]
    assert sum(1 for use in uses if use[0] == "%%gemimg") >= 20
    assert sum(1 for use in uses if use[0] == "%gemimg") >= 20


def test_every_trait_named_in_the_docs_exists() -> None:
    traits = set(GemimgMagics.class_traits(config=True))
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for name in _TRAIT.findall(text):
            assert hasattr(GemimgMagics, name), f"{path.name} names GemimgMagics.{name}, which does not exist"
        for name in re.findall(r"(?:%config |c\.)GemimgMagics\.(\w+)", text):
            assert name in traits, f"{path.name} configures GemimgMagics.{name}, which is not a setting"


def _env_vars_in_code(*folders: str) -> set[str]:
    names: set[str] = set()
    for source in (p for folder in folders for p in (ROOT / folder).rglob("*.py")):
        text = source.read_text(encoding="utf-8")
        names |= set(re.findall(r"""env(?:iron)?(?:\.get\(|\[)\s*["']((?:TOAPIS|GEMIMG)_[A-Z_]+)["']""", text))
    return names


def test_every_env_var_in_the_docs_exists_and_configuration_md_lists_them_all() -> None:
    in_code = _env_vars_in_code("gemimg_jupyter")
    assert {"TOAPIS_API_KEY", "GEMIMG_BACKEND", "GEMIMG_BASE_URL", "GEMIMG_OUTPUT_DIR"} <= in_code
    anywhere = in_code | _env_vars_in_code("tests", "scripts", "benchmarks")
    for path in doc_files():
        for name in _ENV.findall(path.read_text(encoding="utf-8")):
            assert name in anywhere, f"{path.name} names {name}, which no code reads"
    config = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for name in in_code:
        assert f"`{name}`" in config, f"configuration.md does not list {name}"


# ---------------------------------------------------------------- the reference pages are complete


def _section(text: str, heading: str) -> str:
    """The part of ``text`` from the ``## heading`` line to the next ``## ``."""
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _table_row(text: str, name: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| `{name}`")]
    assert rows, f"no table row for `{name}`"
    return rows[0]


def test_configuration_md_lists_every_trait_with_its_default() -> None:
    text = _section((DOCS / "configuration.md").read_text(encoding="utf-8"), "`%config GemimgMagics`")
    for name, trait in sorted(GemimgMagics.class_traits(config=True).items()):
        row = _table_row(text, name)
        assert f"`{trait.default_value!r}`" in row, f"configuration.md: default of {name} is {trait.default_value!r}"


def test_configuration_md_lists_every_settings_field_with_its_default() -> None:
    text = _section((DOCS / "configuration.md").read_text(encoding="utf-8"), "`Settings`")
    for cls in (Settings, RetryPolicy):
        for f in dataclasses.fields(cls):
            row = _table_row(text, f.name)
            if f.default is not dataclasses.MISSING and f.default is not None:
                default = f"{f.default:_}" if isinstance(f.default, int) and f.default > 9999 else repr(f.default)
                assert default.replace("_", ",") in row.replace("_", ","), f"{cls.__name__}.{f.name}: {default}"


def test_errors_md_explains_every_error_class() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    classes = [n for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    assert len(classes) >= 19
    for name in classes:
        assert f"`{name}`" in text, f"errors.md does not mention {name}"


def test_docs_link_to_files_that_exist() -> None:
    for path in doc_files():
        text = _FENCE.sub("", path.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_the_readme_picture_is_a_small_real_grid() -> None:
    picture = DOCS / "img" / "readme-grid.png"
    assert "docs/img/readme-grid.png" in README.read_text(encoding="utf-8")
    assert picture.stat().st_size < 300_000
    with Image.open(picture) as img:
        assert img.format == "PNG" and img.width >= 800


def test_the_readme_starts_with_title_paragraph_and_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# gemimg_jupyter")
    fence = lines.index("```bash")
    paragraph = [line for line in lines[1:fence] if line.strip()]
    assert paragraph and not any(line.startswith(("#", "!", "```")) for line in paragraph)
    assert lines[fence + 1].startswith("make demo") and "simulator" in lines[fence + 1]
    assert lines[fence + 2].startswith("make test") and lines[fence + 3] == "```"


# ---------------------------------------------------------------- every example runs


@pytest.fixture
def doc_shell(ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A shell in a fresh directory, configured by the environment like a user's, on a fast built-in simulator."""
    from gemimg_jupyter.api.session import reset_session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMIMG_BACKEND", "sim")
    monkeypatch.setenv("GEMIMG_OUTPUT_DIR", str(tmp_path / "gemimg_outputs"))
    monkeypatch.setenv("GEMIMG_SIM_LATENCY", "0.05,0.2")
    for name, colour in FIXTURE_IMAGES.items():
        Image.new("RGB", (128, 128), colour).save(tmp_path / name)
    # the environment decides backend, store and simulator; only the polling cadence is made quicker
    reset_session(Settings.from_env(retry=FAST_RETRY, poll_first=0.05, poll_min=0.05, poll_max=0.2))
    try:
        yield ip
    finally:
        reset_session(None)


def runnable_cells(path: Path) -> list[str]:
    """The ``python`` blocks of ``path``, without the lines that need a key or a frontend."""
    cells = []
    for lang, block in fenced(path):
        if lang != "python":
            continue
        if block.startswith("%%"):
            if not _NEEDS_KEY_OR_FRONTEND.search(block.splitlines()[0]):
                cells.append(block)
            continue
        kept = "\n".join(line for line in block.splitlines() if not _NEEDS_KEY_OR_FRONTEND.search(line))
        if kept.strip():
            cells.append(kept)
    return cells


def run_examples(shell: Any, path: Path) -> int:
    """Run every example cell of ``path``; after each, wait for its jobs and check they all produced images."""
    from gemimg_jupyter.api.session import get_session

    cells = runnable_cells(path)
    assert cells, f"{path.name} has no runnable examples"
    for source in cells:
        result = shell.run_cell(source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        assert error is None, f"{path.name}: this example failed:\n{source}\n→ {type(error).__name__}: {error}"
        sess = get_session()
        assert sess.wait(timeout=60), f"{path.name}: jobs of this example did not finish:\n{source}"
        bad = [j for j in sess.jobs() if j.done() and not j.state.has_image and j.state.value != "cancelled"]
        assert not bad, f"{path.name}: after\n{source}\n→ {[(j.id, j.state.value, j.error) for j in bad]}"
    return len(cells)


def test_every_readme_example_runs(doc_shell: Any) -> None:
    n = run_examples(doc_shell, README)
    assert n >= 4
    outputs = doc_shell.display_pub.outputs
    assert any("gemimg_sweep" in (o["metadata"] or {}).get("text/html", {}) for o in outputs), "the sweep drew a grid"


def test_every_usage_example_runs(doc_shell: Any) -> None:
    from gemimg_jupyter.api.session import get_session

    n = run_examples(doc_shell, DOCS / "usage.md")
    assert n >= 25
    sess = get_session()
    done = [j for j in sess.jobs() if j.state.has_image]
    assert len(done) >= 30, len(done)
    assert any(len(j.params.references) == 2 for j in done), "the --ref example used a file and a {var}"
    assert any(j.params.resolution == "2K" for j in done)
    with Image.open(io.BytesIO(next(j for j in done if j.params.resolution == "2K").path.read_bytes())) as img:
        assert img.size == (2048, 2048)
    assert doc_shell.user_ns["hero"].image.size == (1248, 832)
    assert sess.backend == "sim" and sess.sim is not None, "the environment chose the built-in simulator"
    assert sess.store.root == Path(os.environ["GEMIMG_OUTPUT_DIR"])
