"""One table of bad inputs, across every way in: the ``%%gemimg`` line and body,
``%gemimg`` subcommands, ``%config``, the Python API, the panel and reference files.

Each row must give a clear one-line error that names the problem (the exact
exception type: ``UsageError`` for magics, ``TraitError`` for ``%config``,
``ValidationError``/``ConfigError`` for the Python API; the panel's visible
message widget for the panel), *before* anything is sent (the simulator's
request counter does not move) and without touching the store (ledger rows and
files in the output directory, which holds one earlier image, stay as they were).

HTML in a prompt is not bad input: it is generated, and shown as text
(:func:`test_html_in_a_prompt_is_valid_and_shown_as_text`).
"""

from __future__ import annotations

import ast
import datetime as dt
import html
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from PIL import Image
from traitlets import Bool, TraitError

import gemimg_jupyter as gi
from gemimg_jupyter.api.session import Session, get_session, reset_session
from gemimg_jupyter.domain.errors import BudgetExceededError, ConfigError, ValidationError
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.magics.extension import GemimgMagics
from gemimg_jupyter.sim import SimConfig, SimServer

from .support import quick_settings

ERROR_MARK = "gemimg-tone-error"  # the panel's "error" level (a theme-aware colour class)
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
HOSTILE = "<script>alert(1)</script> & <b>a fox</b>"


# ------------------------------------------------------------------ image bytes, made cheaply


def png_bytes_of(w: int = 64, h: int = 48, color: tuple[int, int, int] = (30, 120, 200), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format=fmt)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(w: int = 30000, h: int = 30000) -> bytes:
    """A real, valid 1-bit PNG of ``w``×``h`` black pixels (30000² is ~110 KB on disk, 900 Mpx decoded)."""
    row = b"\x00" * (1 + (w + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def visible(widget: Any) -> str:
    """The text a user sees in an HTML widget (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", str(widget.value))).strip()


def upload_item(name: str, data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"name": name, "type": mime, "size": len(data), "content": memoryview(data), "last_modified": WHEN}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reference files, good and bad, made once per module."""
    d = tmp_path_factory.mktemp("refs")
    made = {
        "ok": png_bytes_of(),
        "empty": b"",
        "huge": b"\x89PNG\r\n\x1a\n" + b"\0" * (12 * 1024 * 1024),
        "notes": b"these are my notes, not a picture\n" * 20,
        "gif": png_bytes_of(fmt="GIF"),
        "bmp": png_bytes_of(fmt="BMP"),
        "bomb": bomb_png(),
        "bigpx": bomb_png(8500, 8500),  # 72 Mpx: under Pillow's own bomb limit, over ours (64 Mpx)
        "truncated": png_bytes_of(400, 300)[:300],
    }
    out: dict[str, Path] = {}
    for name, data in made.items():
        suffix = {"gif": ".gif", "bmp": ".bmp"}.get(name, ".png")
        path = d / f"{name}{suffix}"
        path.write_bytes(data)
        out[name] = path
    return out


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output directory holding one finished image (copied into each test)."""
    root = tmp_path_factory.mktemp("seed") / "out"
    with (
        SimServer(SimConfig(latency=(0.05, 0.1), queue_delay=(0.0, 0.01), seed=3)) as sim,
        Session(quick_settings(root, base_url=sim.base_url)) as sess,
    ):
        job = sess.generate("a seeded lighthouse", wait=True)
        assert job.state.has_image
    return root


@dataclass
class Ctx:
    ip: Any
    session: Session
    out: Path
    tmp: Path
    files: dict[str, Path]
    caplog: pytest.LogCaptureFixture
    monkeypatch: pytest.MonkeyPatch
    panels: list[Any] = field(default_factory=list)

    @property
    def magics(self) -> Any:
        return self.ip.magics_manager.registry["GemimgMagics"]

    @property
    def panel(self) -> Any:
        if not self.panels:
            from gemimg_jupyter.panel import Panel

            self.panels.append(Panel(session=self.session))
        return self.panels[0]


@pytest.fixture
def ctx(
    ip: Any,
    tmp_path: Path,
    seeded: Path,
    files: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Ctx]:
    out = tmp_path / "store"
    shutil.copytree(seeded, out)
    sess = reset_session(quick_settings(out))
    assert sess is not None
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.user_ns.update({name.upper(): str(path) for name, path in files.items()})
    ip.user_ns.update(number=5, bell="ring \x07 ring", OK4=[str(files["ok"])] * 4)
    c = Ctx(ip, sess, out, tmp_path, files, caplog, monkeypatch)
    try:
        yield c
    finally:
        for p in c.panels:
            p.close()


def snapshot(c: Ctx) -> dict[str, Any]:
    """Everything bad input must leave alone."""
    sess = get_session()
    store = sess.store
    files = sorted(
        (str(p.relative_to(c.out)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in c.out.rglob("*")
        if p.is_file() and not p.name.startswith("ledger.sqlite3")
    )
    with closing(sqlite3.connect(f"file:{store.ledger_path}?mode=ro", uri=True)) as ledger:  # a reader, as any process
        uploads = ledger.execute("SELECT sha256, backend, url FROM uploads ORDER BY sha256").fetchall()
    return {
        "session": id(sess),
        "requests": sess.sim.stats()["requests"],
        "ledger": [(r.cbid, r.state, r.task_id, r.path, r.error, r.cost_usd) for r in store.rows()],
        "uploads": [tuple(u) for u in uploads],
        "files": files,
        "jobs": len(sess.jobs()),
        "outputs": len(c.ip.display_pub.outputs),
        "user_ns": sorted(k for k in c.ip.user_ns if not k.startswith("_")),
    }


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Bad:
    """One bad input: where it goes in, what it is, what must be said."""

    surface: str  # cell | line | config | api | panel
    what: Any  # (line, body) | line | "name = value" | callable(ctx) | callable(ctx, panel)
    phrase: str  # must appear in the one-line message
    expect: Any = None  # the exception type (api) or the panel widget holding the message
    setup: Callable[[Ctx], None] | None = None


def cell(line: str, body: str, phrase: str) -> Bad:
    return Bad("cell", (line, body), phrase, UsageError)


def line(text: str, phrase: str, setup: Callable[[Ctx], None] | None = None) -> Bad:
    return Bad("line", text, phrase, UsageError, setup)


def config(assignment: str | Callable[[Ctx], str], phrase: str) -> Bad:
    return Bad("config", assignment, phrase, TraitError)


def api(
    fn: Callable[[Ctx], Any], exc: type[BaseException], phrase: str, setup: Callable[[Ctx], None] | None = None
) -> Bad:
    return Bad("api", fn, phrase, exc, setup)


def panel(fn: Callable[[Ctx, Any], Any], phrase: str, widget: str = "message", setup: Any = None) -> Bad:
    return Bad("panel", fn, phrase, widget, setup)


def _prompt(text: str, axis: tuple[str, str] | None = None, repeats: int = 1) -> Callable[[Ctx, Any], None]:
    def act(_c: Ctx, p: Any) -> None:
        p.prompt.value = text
        if axis is not None:
            p.x_axis.value, p.x_values.value = axis
        p.repeats.value = repeats
        p.generate_button.click()

    return act


def _upload(name: str, key: str, mime: str = "image/png") -> Callable[[Ctx, Any], None]:
    def act(c: Ctx, p: Any) -> None:
        p.upload.value = (upload_item(name, c.files[key].read_bytes(), mime),)

    return act


def _three_refs(c: Ctx) -> None:
    c.panel.upload.value = tuple(upload_item(f"r{i}.png", png_bytes_of(color=(i * 60, 90, 90))) for i in range(3))
    assert len(c.panel.references) == 3


def _new_panel(c: Ctx) -> None:
    assert c.panel is not None


def _empty_login(c: Ctx) -> None:
    c.monkeypatch.setattr("getpass.getpass", lambda prompt="": "   ")


def _gen(**kwargs: Any) -> Callable[[Ctx], Any]:
    prompt = kwargs.pop("prompt", "a fox")
    return lambda c: gi.generate(prompt, wait=False, **kwargs)


def _sweep(**kwargs: Any) -> Callable[[Ctx], Any]:
    return lambda c: gi.sweep("a fox", wait=False, **kwargs)


def _ref(key: str, many: int = 1) -> Callable[[Ctx], Any]:
    return lambda c: gi.generate("a fox", reference_images=[c.files[key]] * many, wait=False)


def _ref_bytes(key: str) -> Callable[[Ctx], Any]:
    return lambda c: gi.generate("a fox", reference_images=c.files[key].read_bytes(), wait=False)


def _session_on(**changes: Any) -> Callable[[Ctx], Any]:
    return lambda c: Session(quick_settings(c.tmp / "elsewhere", **changes)).close()


def _budget_of_one_cent(c: Ctx) -> None:
    sess = reset_session(quick_settings(c.out, max_cost_usd=0.01))
    assert sess is not None
    c.session = sess


def _output_dir_is_a_file(c: Ctx) -> Any:
    blocker = c.tmp / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    return Session(quick_settings(blocker / "sub")).close()


TRAVERSAL = os.path.relpath("/etc/passwd")  # ../../…/etc/passwd from the working directory
BIG_PROMPT = "a fox in a forest, " * 5300  # ~100 KB

BAD_INPUTS = [
    # ---- the %%gemimg line
    pytest.param(cell("--frobnicate", "a fox", "unrecognized arguments"), id="cell-unknown-option"),
    pytest.param(
        cell(
            "--sweep temperature=0.2,0.8 --with size=1:1", "a fox", "--with size has 1 value but the temperature axis"
        ),
        id="cell-with-length-mismatch",
    ),
    pytest.param(cell("--with size=1:1,16:9", "a fox", "pairs with the --sweep before it"), id="cell-with-alone"),
    pytest.param(cell("--stop-after soon", "a fox", "'soon' is not a duration"), id="cell-stop-after-word"),
    pytest.param(cell("--max-requests many", "a fox", "invalid int value: 'many'"), id="cell-max-requests-word"),
    pytest.param(cell("--size", "a fox", "expected one argument"), id="cell-option-without-value"),
    pytest.param(cell("--size 5:3", "a fox", "size '5:3' is not supported"), id="cell-size-5:3"),
    pytest.param(cell("--size 16/9", "a fox", "use one of 1:1"), id="cell-size-slash"),
    pytest.param(cell("-t abc", "a fox", "temperature 'abc' is not allowed"), id="cell-temperature-abc"),
    pytest.param(cell("-t 2.5", "a fox", "use a number from 0 to 2"), id="cell-temperature-2.5"),
    pytest.param(cell("-t nan", "a fox", "temperature 'nan' is not allowed"), id="cell-temperature-nan"),
    pytest.param(cell("--top-p 1.5", "a fox", "top_p '1.5' is not allowed; use a number from 0 to 1"), id="cell-top-p"),
    pytest.param(cell("-r 4K", "a fox", "resolution '4K' is not supported"), id="cell-resolution-4K"),
    pytest.param(cell("-m gemini-9", "a fox", "use one of gemini-2.5-flash-image-official"), id="cell-model"),
    pytest.param(
        cell("-m gemini-2.5-flash-image-preview -t 0.5", "a fox", "takes no sampling controls"),
        id="cell-temperature-on-preview-model",
    ),
    # ---- the gateway's controls (issue #23): a bad value, or a control the model does not document
    pytest.param(cell("--thinking high", "a fox", "thinking is not documented for"), id="cell-thinking-on-2.5"),
    pytest.param(
        cell("-m gemini-3-pro-image-official --thinking-budget -1", "a fox", "use a whole number from 0 to 24576"),
        id="cell-thinking-budget",
    ),
    pytest.param(cell("--person kids", "a fox", "use one of allow_all"), id="cell-person"),
    pytest.param(cell("--format gif", "a fox", "use one of png, jpeg, webp"), id="cell-format"),
    pytest.param(cell("--format jpeg --quality 101", "a fox", "from 0 to 100"), id="cell-quality"),
    pytest.param(cell("--safety OFF", "a fox", "write CATEGORY=THRESHOLD"), id="cell-safety"),
    pytest.param(cell("--max-tokens 0", "a fox", "use a whole number from 1 to 32768"), id="cell-max-tokens"),
    pytest.param(cell("--orientation sideways", "a fox", "orientation is not documented for"), id="cell-orientation"),
    pytest.param(cell("-n 0", "a fox", "use a whole number from 1 to 16"), id="cell-repeats-0"),
    pytest.param(cell("-n 40", "a fox", "use a whole number from 1 to 16"), id="cell-repeats-40"),
    pytest.param(cell("-n two", "a fox", "invalid int value"), id="cell-repeats-word"),
    pytest.param(cell("-o 1bad", "a fox", "not a valid Python name"), id="cell-output-1bad"),
    pytest.param(cell("-o ../../x", "a fox", "not a valid Python name"), id="cell-output-traversal"),
    pytest.param(cell("-o /etc/passwd", "a fox", "not a valid Python name"), id="cell-output-absolute"),
    pytest.param(cell("-o 'a b'", "a fox", "not a valid Python name"), id="cell-output-space"),
    pytest.param(cell("-o class", "a fox", "Python keyword"), id="cell-output-keyword"),
    pytest.param(cell("-o __builtins__", "a fox", "would replace an IPython name"), id="cell-output-builtins"),
    pytest.param(cell("-o In", "a fox", "would replace an IPython name"), id="cell-output-In"),
    pytest.param(cell("-o get_ipython", "a fox", "would replace an IPython name"), id="cell-output-get-ipython"),
    pytest.param(cell("-o print", "a fox", "would replace a Python built-in name"), id="cell-output-print"),
    pytest.param(cell("-o _fox", "a fox", "would replace an underscore name"), id="cell-output-underscore"),
    pytest.param(cell("", "\u200b \u2060\ufeff", "only invisible characters"), id="cell-prompt-invisible"),
    pytest.param(cell("--sweep colour=red,blue", "a fox", "colour"), id="cell-sweep-unknown-axis"),
    pytest.param(cell("--sweep temperature", "a fox", "needs NAME=VALUES"), id="cell-sweep-no-equals"),
    pytest.param(cell("--sweep temperature=", "a fox", "has no values"), id="cell-sweep-empty"),
    pytest.param(cell("--sweep temperature=0.2,9", "a fox", "temperature 9"), id="cell-sweep-out-of-range"),
    pytest.param(cell("--sweep size=1:1,5:3", "a fox", "5:3"), id="cell-sweep-bad-size"),
    pytest.param(
        cell(
            "--sweep temperature=0.2,0.8 --sweep top_p=0.5,0.9 --sweep size=1:1,16:9 --sweep prompt=fox|cat",
            "a fox",
            "at most 3 sweep axes",
        ),
        id="cell-sweep-four-axes",
    ),
    pytest.param(cell("--ref 'unclosed", "a fox", "check the quotes"), id="cell-unclosed-quote"),
    pytest.param(cell("--edit nosuchid", "a fox", "'nosuchid' is not in the ledger"), id="cell-edit-unknown"),
    # ---- reference files
    pytest.param(cell("--ref no/such/file.png", "a fox", "does not exist"), id="ref-missing"),
    pytest.param(cell("--ref {EMPTY}", "a fox", "is empty (0 bytes)"), id="ref-empty"),
    pytest.param(cell("--ref {HUGE}", "a fox", "the limit is 10 MB"), id="ref-12MB"),
    pytest.param(cell("--ref {NOTES}", "a fox", "not a readable image"), id="ref-text-named-png"),
    pytest.param(cell("--ref {TRUNCATED}", "a fox", "not a readable image"), id="ref-truncated-png"),
    pytest.param(cell("--ref {GIF}", "a fox", "is gif; use JPEG, PNG, WEBP"), id="ref-gif"),
    pytest.param(cell("--ref {BMP}", "a fox", "is bmp; use JPEG, PNG, WEBP"), id="ref-bmp"),
    pytest.param(cell("--ref {BOMB}", "a fox", "too large to decode safely"), id="ref-bomb-30000px"),
    pytest.param(cell("--ref {BIGPX}", "a fox", "over the 64,000,000-pixel safety limit"), id="ref-72Mpx"),
    pytest.param(cell("--ref /etc/passwd", "a fox", "'passwd' is not a readable image"), id="ref-etc-passwd"),
    pytest.param(cell(f"--ref {TRAVERSAL}", "a fox", "'passwd' is not a readable image"), id="ref-traversal"),
    pytest.param(cell("--ref data:image/png;base64,AAAA", "a fox", "data: URIs are not accepted"), id="ref-data-uri"),
    pytest.param(cell("--ref {number}", "a fox", "not int"), id="ref-int-variable"),
    pytest.param(cell("--ref {nothing_here}", "a fox", "no variable 'nothing_here'"), id="ref-undefined-variable"),
    pytest.param(cell("--ref {OK4}", "a fox", "4 reference images given"), id="ref-too-many"),
    # ---- the cell body (the prompt)
    pytest.param(cell("", "", "cell body is empty"), id="body-empty"),
    pytest.param(cell("", "  \n\t \n", "the cell is empty"), id="body-whitespace"),
    pytest.param(cell("", BIG_PROMPT, "the limit is 32,000, shorten it"), id="body-100KB"),
    pytest.param(cell("", "a fox\x00 in a forest", "control character ('\\x00')"), id="body-NUL"),
    pytest.param(cell("", "a \x1b[31mred\x1b[0m fox", "control character ('\\x1b')"), id="body-ESC"),
    pytest.param(cell("", "a fox that goes {bell}", "control character ('\\x07')"), id="body-control-from-variable"),
    pytest.param(cell("", "a {undefined} fox", "no variable 'undefined'"), id="body-undefined-variable"),
    pytest.param(cell("", "a {fox", "braces do not pair up"), id="body-unpaired-brace"),
    pytest.param(cell("", "a } fox", "braces do not pair up"), id="body-lone-closing-brace"),
    pytest.param(cell("", "a {} fox", "without a variable name"), id="body-empty-braces"),
    pytest.param(cell("", "a {number.real.nope} fox", "AttributeError"), id="body-bad-attribute"),
    # ---- %gemimg subcommands
    pytest.param(line("frobnicate", "use one of: jobs, cancel, wait"), id="line-unknown-subcommand"),
    pytest.param(line("jbos", "did you mean jobs"), id="line-typo"),
    pytest.param(line("history abc", "invalid int value"), id="line-history-abc"),
    pytest.param(line("history 0", "use 1 to 200"), id="line-history-0"),
    pytest.param(line("history 5000", "use 1 to 200"), id="line-history-5000"),
    pytest.param(line("cancel nosuchjob", "no job or sweep 'nosuchjob'"), id="line-cancel-unknown"),
    pytest.param(line("wait nosuchjob", "no job or sweep 'nosuchjob'"), id="line-wait-unknown"),
    pytest.param(line("wait --timeout soon", "invalid float value"), id="line-wait-timeout-word"),
    pytest.param(line("backend mars", "invalid choice"), id="line-backend-unknown"),
    pytest.param(line("backend toapis", "no ToAPIs key"), id="line-backend-without-key"),
    pytest.param(line("jobs --all", "unrecognized arguments"), id="line-extra-argument"),
    pytest.param(line("login", "no key entered", setup=_empty_login), id="line-login-empty-key"),
    pytest.param(line("history 'unclosed", "check the quotes"), id="line-unclosed-quote"),
    # ---- %config GemimgMagics
    pytest.param(
        config("temperature = 3", "temperature 3.0 is not allowed; use a number from 0 to 2"), id="config-temperature"
    ),
    pytest.param(config("top_p = -1", "top_p -1.0 is not allowed"), id="config-top-p"),
    pytest.param(config("size = '5:3'", "size '5:3' is not supported"), id="config-size"),
    pytest.param(config("resolution = '4K'", "resolution '4K' is not supported"), id="config-resolution"),
    pytest.param(config("model = 'gemini-9'", "use one of gemini-2.5-flash-image-official"), id="config-model"),
    pytest.param(config("cell_size = 5", "cell_size 5 is not allowed"), id="config-cell-size"),
    pytest.param(config("preview_size = 100000", "preview_size 100000 is not allowed"), id="config-preview-size"),
    pytest.param(config("max_cost_usd = -2.0", "max_cost_usd -2.0 is not allowed"), id="config-budget"),
    pytest.param(config("confirm_above_usd = -1.0", "confirm_above_usd -1.0 is not allowed"), id="config-confirm"),
    pytest.param(config("refresh_interval = 999.0", "refresh_interval 999.0 is not allowed"), id="config-refresh"),
    pytest.param(config("temperature = 'hot'", "expected a float"), id="config-temperature-text"),
    pytest.param(config("max_cost_usd = 1e999", "max_cost_usd inf is not allowed"), id="config-budget-inf"),
    pytest.param(config("confirm_above_usd = 1e999", "confirm_above_usd inf is not allowed"), id="config-confirm-inf"),
    pytest.param(config("top_p = True", "top_p True is not allowed; use a number"), id="config-top-p-bool"),
    pytest.param(config("rate_tier = 'gold'", "rate_tier 'gold' is not allowed; use one of default"), id="config-tier"),
    pytest.param(config("max_cost_usd = False", "max_cost_usd False is not allowed"), id="config-budget-bool"),
    pytest.param(
        config("output_dir = '/proc/gemimg-cannot-be-here'", "cannot be used"), id="config-output-dir-unwritable"
    ),
    pytest.param(config(lambda c: f"output_dir = {str(c.files['ok'])!r}", "is a file"), id="config-output-dir-file"),
    pytest.param(
        config(lambda c: f"output_dir = {str(c.files['ok'] / 'out')!r}", "is a file"), id="config-output-dir-under-file"
    ),
    # ---- the Python API
    pytest.param(api(_gen(prompt=""), ValidationError, "prompt is empty"), id="api-empty-prompt"),
    pytest.param(api(_gen(prompt=" \n "), ValidationError, "prompt is empty"), id="api-blank-prompt"),
    pytest.param(api(_gen(prompt=None), ValidationError, "give the prompt as text"), id="api-prompt-None"),
    pytest.param(api(_gen(prompt=b"a fox"), ValidationError, "give the prompt as text"), id="api-prompt-bytes"),
    pytest.param(api(_gen(prompt=BIG_PROMPT), ValidationError, "the limit is 32,000"), id="api-100KB-prompt"),
    pytest.param(api(_gen(prompt="a\x00fox"), ValidationError, "control character"), id="api-NUL-prompt"),
    pytest.param(api(_gen(size="5:3"), ValidationError, "size '5:3' is not supported"), id="api-size"),
    pytest.param(api(_gen(size=16), ValidationError, "size 16 is not supported"), id="api-size-int"),
    pytest.param(api(_gen(temperature=-0.1), ValidationError, "use a number from 0 to 2"), id="api-temperature-neg"),
    pytest.param(
        api(_gen(temperature=True), ValidationError, "temperature True is not allowed"), id="api-temperature-bool"
    ),
    pytest.param(api(_gen(temperature=float("inf")), ValidationError, "temperature inf"), id="api-temperature-inf"),
    pytest.param(api(_gen(top_p="high"), ValidationError, "top_p 'high' is not allowed"), id="api-top-p-text"),
    pytest.param(api(_gen(model="nope"), ValidationError, "model 'nope' is not allowed"), id="api-model"),
    pytest.param(api(_gen(resolution="8K"), ValidationError, "resolution '8K' is not supported"), id="api-resolution"),
    pytest.param(
        api(_gen(model="nano-banana", top_p=0.5), ValidationError, "top_p is not supported"),
        id="api-top-p-on-preview-model",
    ),
    pytest.param(api(_gen(reference_images=42), ValidationError, "not int"), id="api-ref-int"),
    pytest.param(api(_gen(reference_images=[b""]), ValidationError, "is empty (0 bytes)"), id="api-ref-empty-bytes"),
    pytest.param(api(_ref_bytes("notes"), ValidationError, "not a readable image"), id="api-ref-text-bytes"),
    pytest.param(api(_ref_bytes("bomb"), ValidationError, "too large to decode safely"), id="api-ref-bomb-bytes"),
    pytest.param(api(_ref("bigpx"), ValidationError, "pixel safety limit"), id="api-ref-72Mpx-file"),
    pytest.param(api(_ref("ok", many=4), ValidationError, "accepts at most 3"), id="api-ref-too-many"),
    pytest.param(api(_gen(reference_images="missing.png"), ValidationError, "does not exist"), id="api-ref-missing"),
    pytest.param(api(_sweep(temperature=[]), ValidationError, "has no values"), id="api-sweep-empty-axis"),
    pytest.param(api(_sweep(repeats=0), ValidationError, "repeats 0 is not allowed"), id="api-sweep-repeats-0"),
    pytest.param(api(_sweep(temperature=[0.2, 9]), ValidationError, "temperature 9"), id="api-sweep-out-of-range"),
    pytest.param(api(_sweep(colour=["red"]), ValidationError, "unknown sweep parameter 'colour'"), id="api-sweep-kw"),
    pytest.param(
        api(
            _sweep(temperature=[0.2, 0.8], top_p=[0.5, 0.9], size=["1:1", "16:9"], resolution=["1K"]),
            ValidationError,
            "at most 3 sweep axes",
        ),
        id="api-sweep-four-axes",
    ),
    pytest.param(
        api(_sweep(temperature=[0.2, 0.5, 0.8], confirm_above_usd=0.05), ValidationError, "confirmation threshold"),
        id="api-sweep-over-threshold",
    ),
    pytest.param(
        api(lambda c: get_session().cancel("nosuchjob"), ValidationError, "no job or sweep 'nosuchjob'"),
        id="api-cancel-unknown",
    ),
    pytest.param(
        api(_gen(prompt="an expensive swan"), BudgetExceededError, "over the budget", setup=_budget_of_one_cent),
        id="api-over-budget",
    ),
    pytest.param(api(lambda c: Settings(backend="mars"), ConfigError, "backend 'mars' is not known"), id="api-backend"),
    pytest.param(
        api(lambda c: Settings(max_in_flight=0), ConfigError, "max_in_flight must be at least 1"), id="api-in-flight"
    ),
    pytest.param(
        api(lambda c: Settings(max_cost_usd=-1), ConfigError, "max_cost_usd must be 0 or more"), id="api-budget"
    ),
    pytest.param(
        api(lambda c: Settings(max_cost_usd=float("nan")), ConfigError, "max_cost_usd must be 0 or more"),
        id="api-budget-nan",
    ),
    pytest.param(
        api(lambda c: Settings(max_retry_after=-5), ConfigError, "max_retry_after must be 0 or more seconds"),
        id="api-max-retry-after",
    ),
    pytest.param(
        api(lambda c: Settings(max_retry_after=float("nan")), ConfigError, "max_retry_after must be 0 or more"),
        id="api-max-retry-after-nan",
    ),
    pytest.param(
        api(lambda c: gi.generate("\u3164\u200b\n"), ValidationError, "only invisible characters"),
        id="api-prompt-invisible",
    ),
    pytest.param(
        api(lambda c: gi.generate("a fox", top_p=True), ValidationError, "top_p True is not allowed"),
        id="api-top-p-bool",
    ),
    pytest.param(
        api(lambda c: Settings.from_env({"GEMIMG_BACKEND": "mars"}), ConfigError, "GEMIMG_BACKEND='mars' is not known"),
        id="api-env-backend",
    ),
    pytest.param(
        api(lambda c: Settings(grid_theme="sepia"), ConfigError, "grid_theme 'sepia' is not known; use one of auto"),
        id="api-grid-theme",
    ),
    pytest.param(api(_session_on(backend="toapis"), ConfigError, "no ToAPIs API key"), id="api-toapis-without-key"),
    pytest.param(
        api(lambda c: Settings.from_env({"GEMIMG_BASE_URL": "toapis.com"}), ConfigError, "is not an http(s) URL"),
        id="api-base-url-without-scheme",
    ),
    pytest.param(
        api(lambda c: Settings(base_url="ftp://toapis.com"), ConfigError, "is not an http(s) URL"),
        id="api-base-url-ftp",
    ),
    pytest.param(
        api(lambda c: Settings(api_key="sk-pasted-with-a-newline\n"), ConfigError, "the API key contains"),
        id="api-key-with-newline",
    ),
    pytest.param(
        api(lambda c: Settings(api_key="sk-ключ-0123456789"), ConfigError, "the API key contains"),
        id="api-key-not-ascii",
    ),
    pytest.param(api(_output_dir_is_a_file, ConfigError, "cannot be used"), id="api-output-dir-is-a-file"),
    # ---- the panel (the message is what the user sees in the panel)
    pytest.param(panel(_prompt(""), "prompt is empty", setup=_new_panel), id="panel-empty-prompt"),
    pytest.param(panel(_prompt(" \n\t"), "prompt is empty", setup=_new_panel), id="panel-blank-prompt"),
    pytest.param(panel(_prompt(BIG_PROMPT), "the limit is 32,000", setup=_new_panel), id="panel-100KB-prompt"),
    pytest.param(panel(_prompt("a\x00fox"), "control character", setup=_new_panel), id="panel-NUL-prompt"),
    pytest.param(
        panel(_prompt("a fox", ("temperature", "0.2,9")), "temperature 9", setup=_new_panel),
        id="panel-sweep-out-of-range",
    ),
    pytest.param(
        panel(_prompt("a fox", ("temperature", "warm,cold")), "temperature 'warm' is not allowed", setup=_new_panel),
        id="panel-sweep-words",
    ),
    pytest.param(panel(_prompt("a fox", ("size", "1:1,5:3")), "5:3", setup=_new_panel), id="panel-sweep-bad-size"),
    pytest.param(
        panel(
            _prompt("a fox", ("temperature", "0.2,0.6,1.0,1.4,1.8"), repeats=5),
            "confirmation threshold",
            setup=_new_panel,
        ),
        id="panel-sweep-over-threshold",
    ),
    pytest.param(
        panel(_upload("notes.png", "notes"), "not a readable image", "ref_message", _new_panel), id="panel-upload-text"
    ),
    pytest.param(
        panel(_upload("empty.png", "empty"), "is empty (0 bytes)", "ref_message", _new_panel), id="panel-upload-empty"
    ),
    pytest.param(
        panel(_upload("huge.png", "huge"), "the limit is 10 MB", "ref_message", _new_panel), id="panel-upload-12MB"
    ),
    pytest.param(
        panel(_upload("anim.gif", "gif", "image/gif"), "is gif", "ref_message", _new_panel), id="panel-upload-gif"
    ),
    pytest.param(
        panel(_upload("bomb.png", "bomb"), "too large to decode safely", "ref_message", _new_panel),
        id="panel-upload-bomb",
    ),
    pytest.param(
        panel(_upload("cut.png", "truncated"), "not a readable image", "ref_message", _new_panel),
        id="panel-upload-truncated",
    ),
    pytest.param(
        panel(_upload("fourth.png", "ok"), "accepts at most 3", "ref_message", _three_refs), id="panel-upload-fourth"
    ),
]


def run_case(c: Ctx, bad: Bad) -> str:
    """Feed the bad input in; return the one message the user gets."""
    if bad.surface == "cell":
        line_text, body = bad.what
        with pytest.raises(UsageError) as info:
            c.ip.run_cell_magic("gemimg", line_text, body)
        assert type(info.value) is UsageError, f"a magic must raise a bare UsageError, not {type(info.value)}"
        return str(info.value)
    if bad.surface == "line":
        with pytest.raises(UsageError) as info:
            c.ip.run_line_magic("gemimg", bad.what)
        assert type(info.value) is UsageError
        return str(info.value)
    if bad.surface == "config":
        assignment = bad.what(c) if callable(bad.what) else bad.what
        name, _, value = assignment.partition(" = ")
        before = getattr(c.magics, name)
        c.caplog.clear()
        with c.caplog.at_level(logging.ERROR):
            c.ip.run_line_magic("config", f"GemimgMagics.{assignment}")
        assert getattr(c.magics, name) == before, "%config kept a refused value"
        logged = [r.getMessage() for r in c.caplog.records if r.levelno >= logging.ERROR]
        assert len(logged) == 1, logged
        with pytest.raises(TraitError) as info:
            setattr(c.magics, name, ast.literal_eval(value))
        assert getattr(c.magics, name) == before
        assert bad.phrase in str(info.value) and "\n" not in str(info.value).strip()
        return logged[0]
    if bad.surface == "api":
        with pytest.raises(bad.expect) as info:
            bad.what(c)
        assert type(info.value) is bad.expect, (
            f"expected exactly {bad.expect.__name__}, got {type(info.value).__name__}"
        )
        return str(info.value)
    if bad.surface == "panel":
        p = c.panel
        bad.what(c, p)
        assert p.wait(10)
        widget = getattr(p, bad.expect)
        assert f'class="{ERROR_MARK}"' in widget.value, f"the panel did not show an error: {widget.value!r}"
        return visible(widget)
    raise AssertionError(f"unknown surface {bad.surface}")


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_input_is_one_clear_line_and_nothing_is_sent_or_stored(ctx: Ctx, bad: Bad) -> None:
    if bad.setup is not None:
        bad.setup(ctx)
    before = snapshot(ctx)
    message = run_case(ctx, bad)
    text = message.strip()
    assert text, "an empty error message"
    assert "\n" not in text, f"not one line: {message!r}"
    assert "Traceback" not in text
    assert bad.phrase in text, f"{bad.phrase!r} not in {text!r}"
    after = snapshot(ctx)
    assert after["requests"] == before["requests"], "a request was sent for bad input"
    assert after["ledger"] == before["ledger"], "the ledger changed"
    assert after["uploads"] == before["uploads"]
    assert after["files"] == before["files"], "files in the output directory changed"
    assert len(before["ledger"]) == 1, "the earlier image's ledger row is still there"
    assert [f for f in after["files"] if f[0].startswith("images/")] == [
        f for f in before["files"] if f[0].startswith("images/")
    ]
    images = [
        f
        for f in after["files"]
        if f[0].startswith("images/") and not f[0].endswith(".json") and "/.thumbs/" not in f[0]
    ]  # not sidecars or thumbnails
    assert len(images) == 1, "the earlier image is still there"
    if after["session"] == before["session"]:
        assert after["jobs"] == before["jobs"], "a job was started"
    assert after["outputs"] == before["outputs"], "bad input produced a notebook output"
    assert after["user_ns"] == before["user_ns"], "bad input assigned a variable"


def test_the_table_covers_every_way_in(capsys: pytest.CaptureFixture[str]) -> None:
    surfaces = Counter(p.values[0].surface for p in BAD_INPUTS)
    refs = sum(1 for p in BAD_INPUTS if "ref" in p.id or "upload" in p.id)
    with capsys.disabled():
        print(
            f"\n[bad inputs] {len(BAD_INPUTS)} invalid inputs: "
            + ", ".join(f"{n} {s}" for s, n in sorted(surfaces.items()))
            + f" ({refs} about reference files)"
        )
    # every way in that takes a value has a bad value in the table: each option of the cell magic that is
    # not a switch, and each %config setting that is not a switch
    lines = [p.values[0].what[0].split() for p in BAD_INPUTS if p.values[0].surface == "cell"]
    used = {word.split("=")[0] for words in lines for word in words if word.startswith("-")}
    options = [a.option_strings for a in GemimgMagics.gemimg_cell.parser._actions if a.option_strings and a.nargs != 0]
    assert [o[-1] for o in options if not used & set(o)] == [], "cell options without a bad value in the table"
    assigned = {p.values[0].what.split("=")[0].strip() for p in BAD_INPUTS if isinstance(p.values[0].what, str)}
    settings = {n for n, t in GemimgMagics.class_traits(config=True).items() if not isinstance(t, Bool)}
    assert sorted(settings - assigned) == [], "settings without a bad value in the table"
    assert set(surfaces) == {"cell", "line", "config", "api", "panel"}
    assert len({p.id for p in BAD_INPUTS}) == len(BAD_INPUTS)


# ------------------------------------------------------------------ valid, but hostile


def test_html_in_a_prompt_is_valid_and_shown_as_text(ctx: Ctx) -> None:
    """``<script>`` in a prompt is generated like any prompt, and every HTML shows it as text."""
    view = ctx.ip.run_cell_magic("gemimg", "--wait", HOSTILE)
    job = view.job
    assert job.state.has_image and job.params.prompt == HOSTILE
    first = ctx.ip.display_pub.outputs[0]["data"]["text/html"]
    table = ctx.ip.run_line_magic("gemimg", "jobs").html
    p = ctx.panel
    p.prompt.value = HOSTILE
    p.generate_button.click()
    assert p.wait(20)
    p.cells.children[0].click()
    detail = p.detail_html.value
    p.history_buttons[0].click()  # the newest stored image: this one
    for markup in (first, table, detail, p.detail_html.value, p.plan_html.value, p.message.value):
        assert "<script>" not in markup and "<b>a fox</b>" not in markup
    for markup in (first, table, detail, p.detail_html.value):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert HOSTILE in html.unescape(re.sub(r"<[^>]+>", "", p.detail_html.value))
    meta = json.dumps(ctx.ip.display_pub.outputs[-1]["metadata"], default=str)
    assert json.loads(meta)["text/html"]["gemimg"]["params"]["prompt"] == HOSTILE  # metadata is data, not HTML
