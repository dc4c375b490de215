"""Write ``docs/usage.md`` from the parsers of the ``%%gemimg`` and ``%gemimg`` magics.

::

    python scripts/gen_docs.py            # rewrite docs/usage.md
    python scripts/gen_docs.py --check    # exit 1 if docs/usage.md is out of date
    python scripts/gen_docs.py --readme-grid   # also redraw docs/img/readme-grid.png on the simulator

The option and subcommand text comes from the real argparse parsers in
``gemimg_jupyter/magics/extension.py`` (the ``%%gemimg`` parser, the ``%gemimg`` router
and each subcommand's own parser). Only the examples live here, and every
option and subcommand must have one: a new option without an example fails
here, and ``tests/test_docs.py`` fails while the committed file differs from a
fresh generation. The tests also run every example against the simulator.

No session is started: the magics object is built without a shell, and the
subcommand parsers are captured just before they would parse.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
USAGE = ROOT / "docs" / "usage.md"
README_GRID = ROOT / "docs" / "img" / "readme-grid.png"
#: The sweep pictured at the top of the README (the README's "first sweep").
README_SWEEP = {"prompt": "A paper-cut fox in a forest", "temperature": [0.2, 0.8, 1.4], "size": ["1:1", "16:9"]}

if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from gemimg_jupyter.domain.models import MODELS  # noqa: E402
from gemimg_jupyter.domain.params import CONTROL_PARAMS, PARAM_SPECS  # noqa: E402
from gemimg_jupyter.magics.extension import GemimgMagics  # noqa: E402

# ---------------------------------------------------------------- examples (the only hand-written part)

#: ``%%gemimg`` option (its long flag) → a runnable example (cell text, one or more cells joined by a blank line
#: between ``---`` markers) and an optional sentence after it.
CELL_EXAMPLES: dict[str, tuple[str, str]] = {
    "--model": (
        "%%gemimg --model nano-banana\nA paper-cut fox in a forest",
        "`%gemimg models` lists the ids, aliases, sizes and prices. Models without sampling controls "
        "(the preview tier) ignore the `temperature`/`top_p` defaults; giving them explicitly is an error.",
    ),
    "--size": ("%%gemimg --size 16:9\nA lighthouse on a cliff at dusk", ""),
    "--resolution": (
        "%%gemimg --model gemini-3.1-flash-image-preview --resolution 2K\nA lighthouse on a cliff at dusk",
        "`gemini-2.5-flash-image-official` is a 1K model: `--resolution 2K` on it is refused before anything is sent.",
    ),
    "--temperature": ("%%gemimg --temperature 0.3\nA paper-cut fox in a forest", ""),
    "--top-p": ("%%gemimg --temperature 1.2 --top-p 0.5\nA paper-cut fox in a forest", ""),
    "--thinking": (
        "%%gemimg --model gemini-3.1-flash-image-official --thinking high\nA paper-cut fox in a forest",
        "Sent as `metadata.thinkingConfig.thinkingLevel` (`HIGH`); only the 3 Pro / 3.1 Flash official models take it. "
        "`--sweep thinking=minimal,high` compares levels side by side.",
    ),
    "--thinking-budget": (
        "%%gemimg --model gemini-3-pro-image-official --thinking-budget 2048\nA paper-cut fox in a forest",
        "`metadata.thinkingConfig.thinkingBudget`, 0–24,576 tokens.",
    ),
    "--search": (
        "%%gemimg --model gemini-3.1-flash-image-preview --search\nToday's weather over Lisbon as a paper-cut poster",
        "`metadata.google_search`: the 3.1 Flash (normal tier) page documents it.",
    ),
    "--image-search": (
        "%%gemimg --model gemini-3.1-flash-image-preview --search --image-search\nA paper-cut Lisbon tram",
        "`metadata.google_image_search`; it needs `--search`, or the cell is refused before anything is sent.",
    ),
    "--person": (
        "%%gemimg --person allow_adult\nA street market at dawn",
        "`metadata.personGeneration` (`ALLOW_ADULT`).",
    ),
    "--format": (
        "%%gemimg --format webp\nA paper-cut fox in a forest",
        "`metadata.imageOutputOptions.mimeType` (`image/webp`); official models only.",
    ),
    "--quality": (
        "%%gemimg --format jpeg --quality 80\nA paper-cut fox in a forest",
        "`metadata.imageOutputOptions.compressionQuality`, for JPEG only.",
    ),
    "--safety": (
        "%%gemimg --safety hate_speech=block_only_high --safety harassment=block_only_high\nA crowded stadium",
        "`metadata.safetySettings`; categories HATE_SPEECH, DANGEROUS_CONTENT, SEXUALLY_EXPLICIT, HARASSMENT "
        "(the `HARM_CATEGORY_` prefix is optional), thresholds OFF, BLOCK_LOW_AND_ABOVE, BLOCK_MEDIUM_AND_ABOVE, "
        "BLOCK_ONLY_HIGH.",
    ),
    "--max-tokens": ("%%gemimg --max-tokens 8192\nA paper-cut fox in a forest", "`metadata.maxOutputTokens`."),
    "--orientation": (
        "%%gemimg --model gemini-3-pro-image-preview --orientation portrait\nA lighthouse on a cliff",
        "`metadata.orientation`, on the normal 2.5 and 3 Pro tiers.",
    ),
    "--ref": (
        'from PIL import Image\nlogo = Image.open("logo.png")\n---\n'
        "%%gemimg --ref product.png --ref {logo}\nThe product on a beach towel, with the logo printed on it",
        "Each reference content is uploaded once per backend and remembered in the ledger. "
        "The model's limits (count, size, format) are checked first. A URL is asked first (a HEAD, nothing "
        "paid if it fails); on the real gateway a URL on this machine or a private network (127.0.0.1, "
        "`localhost`, 10.x, 192.168.x …, after DNS) is fetched here and uploaded instead, with one line saying so. "
        "Only `http(s)` URLs and file paths are references (`ftp://`, `file://` say so).",
    ),
    "--edit": (
        "%%gemimg --wait -o teapot\nA ceramic teapot on a wooden table\n---\n"
        "%%gemimg --edit teapot -o blue\nMake the teapot cobalt blue",
        "The new image records its parent in the ledger and its PNG; `%gemimg lineage blue` shows the chain. "
        "Edits, picks and reports: [editing.md](editing.md).",
    ),
    "--repeats": ("%%gemimg -n 3\nA watercolour lighthouse at dusk", "Gemini takes no seed: repeats show the spread."),
    "--sweep": (
        "%%gemimg --sweep temperature=0.2,0.8,1.4 --sweep size=1:1,16:9\nA paper-cut fox in a forest",
        "The first axis runs across, the second down, a third makes one grid per value. "
        "A range's count or step may follow after a space (`--sweep temperature=0.2-1.4 [4]`); quote any other spec with spaces. "
        "Axis syntax (lists, ranges, prompt search/replace, reference sets): [sweeps.md](sweeps.md).",
    ),
    "--with": (
        "%%gemimg --sweep model=gemini-2.5-flash-image-official,gemini-3-pro-image-official --with resolution=1K,2K --yes\n"
        "A paper-cut fox in a forest",
        "2 requests, not 4: each model with its own resolution, labelled `model · resolution`. "
        "The two lists must be as long as each other. In Python: `gi.sweep(prompt, gi.pair(model=[...], resolution=[...]))`.",
    ),
    "--dry-run": (
        "%%gemimg --sweep temperature=0.2,0.8,1.4 --sweep size=1:1,16:9 -n 2 --dry-run\nA paper-cut fox in a forest",
        "Prints the plan line and draws the labelled grid with placeholders; nothing is sent or paid (`dry_run=True`).",
    ),
    "--stop-after": (
        "%%gemimg --sweep temperature=0.2,0.6,1.0,1.4 -n 4 --stop-after 30s\nA paper-cut fox in a forest",
        'Requests not sent by then end as "not sent" and cost nothing; run the cell again to send them '
        '(the finished ones are cache hits). `stop_after="30m"` in Python.',
    ),
    "--max-requests": (
        "%%gemimg --sweep temperature=0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2 --sweep top_p=0.4,0.5,0.6,0.7,0.8,0.9,1.0 "
        "-n 16 --max-requests 1300 --dry-run\n"
        "A paper-cut fox in a forest",
        "A plan above 1,000 requests is refused unless `--max-requests` allows it (`max_requests=` in Python); "
        "big grids come in pages of at most 100 images. `--dry-run` shows the layout first, for free.",
    ),
    "--yes": (
        "%config GemimgMagics.confirm_above_usd = 0.25\n---\n"
        "%%gemimg --sweep top_p=0.5,0.75,1 --sweep size=1:1,16:9 --yes\nA paper-cut owl in a forest\n---\n"
        "%config GemimgMagics.confirm_above_usd = 1.0",
        "6 requests, about $0.29: above `GemimgMagics.confirm_above_usd` (default $1.00) a sweep is refused, "
        "with its estimate, unless it has `--yes`.",
    ),
    "--output": (
        "%%gemimg --size 3:2 -o hero\nA studio photo of a ceramic teapot on a marble table\n---\n"
        "hero.result()              # waits; raises the job's error if it failed\n"
        "hero.image.size, hero.path.name, hero.params.size",
        "A single image is a `Job` (`.image`, `.path`, `.params`, `.result()`, `.cancel()`); "
        "a sweep is a `SweepResult` (`.grid()`, `.table()`, `.save()`, `.jobs`).",
    ),
    "--wait": (
        "%%gemimg --wait\nA watercolour lighthouse at dusk",
        "Without it the cell returns at once and its output updates in place.",
    ),
    "--no-wait": (
        "%config GemimgMagics.wait = True\n---\n%%gemimg --no-wait\nA watercolour lighthouse at dawn\n---\n"
        "%config GemimgMagics.wait = False",
        "",
    ),
    "--fresh": (
        "%%gemimg --fresh\nA paper-cut fox in a forest",
        "Without `--fresh` the same request shows the stored image at once, marked cached, for $0.",
    ),
    "--force": (
        "%%gemimg -o fox --force\nA paper-cut fox in a forest",
        "`-o` refuses to replace an imported module, a line magic's name or a variable holding anything but a "
        "result; `--force` replaces it anyway.",
    ),
    "--debug": (
        "%%gemimg --debug --size 4:3\nA paper-cut fox in a forest",
        "`%config GemimgMagics.debug = True` does the same for every cell.",
    ),
}

#: ``%gemimg`` subcommand → a runnable example and an optional sentence after it.
LINE_EXAMPLES: dict[str, tuple[str, str]] = {
    "jobs": ("%gemimg jobs", ""),
    "cancel": (
        "%gemimg cancel all --drop",
        "A job that was already submitted is paid for, so plain `cancel` still downloads it; "
        "`--drop` stops collecting it too. After a restart, `cancel ID` takes the id of a job or sweep an "
        "earlier session left unfinished: what was never sent ends `cancelled` (free, `resume` skips it); "
        "what was sent is paid and the gateway cannot cancel it, so `resume` still collects it unless `--drop`.",
    ),
    "wait": (
        "%gemimg wait --timeout 120",
        "Put it at the end of a notebook that runs headless or with *Run All*, so every image is in place "
        "when it ends. Ctrl-C stops waiting, not the jobs.",
    ),
    "resume": (
        "%gemimg resume",
        "After a kernel restart, `%load_ext gemimg_jupyter` says how many jobs the ledger holds unfinished; "
        "`resume` polls and downloads them (nothing is submitted twice), and sends the edits that waited for "
        "one of them once its image lands. A script or terminal IPython that exits with jobs unfinished says so "
        "in one line; re-running the same code, or `gi.resume()`, collects them.",
    ),
    "history": (
        "%gemimg history 8",
        "`--picked` shows only the picked images. A suspect image (paid, but all black, one flat colour or far "
        "smaller than asked) is framed in orange and labelled `suspect` here, in grids, in its output line and in "
        "reports; it is never deleted.",
    ),
    "lineage": (
        "%gemimg wait\n%gemimg lineage blue",
        "From the ledger alone: after a restart, name the image by its job id (`blue.id`) or task id.",
    ),
    "info": (
        "%gemimg info blue",
        "The image's sidecar (`<image>.json`): prompt, model, task, cost, format, sha256 of the stored bytes "
        "(exactly what the gateway served), content credentials (a C2PA manifest is reported present, never "
        "validated) and whether the image looks unusable. `%gemimg info path/to/image.jpg` reads a file; "
        "`result.info()` is the same in Python.",
    ),
    "compare": (
        "%gemimg compare blue hero",
        "The interactive comparison view of a sweep (or of several results, job ids, `--picked`): "
        "click a tile for the full-size image and its parameters; select two (○) to see them side by side, "
        "swiped, faded or differenced under one zoom; arrows move, `z` flips the Z value, `s` swaps A and B. "
        "Also `sweep.compare()` and `gi.compare(a, b)`.",
    ),
    "pick": ("%gemimg pick blue --note 'the one'", "Picked cells carry a star in grids; picks last across restarts."),
    "unpick": ("%gemimg unpick blue", ""),
    "report": (
        "%gemimg report blue",
        "On a sweep (`%gemimg report fox`, or the sweep id a grid shows, an earlier session's too: it is rebuilt "
        "from the ledger) the report is its grid; on an image, its edit chain. "
        "One HTML file that opens offline and makes no request, with the comparison view inside it (full-size "
        "picture and caption on click; side by side, swipe and zoom of two; arrow keys; usable on a phone); each "
        "image says whether it is suspect and whether it carries content credentials (`present (not validated)` "
        "or `absent`). See [editing.md](editing.md#reports-anyone-can-open).",
    ),
    "cost": ("%gemimg cost", "Paid images are split into usable and suspect (with the reasons)."),
    "models": ("%gemimg models", ""),
    "probe": (
        "%gemimg probe",
        "Free checks of the backend this session uses (the gateway with its key, or the simulator it talks to); "
        "`--spend 0.20` also runs the paid ones, after asking (on a simulator nothing is charged). "
        "How to read the report: [gateway.md](gateway.md).",
    ),
    "login": (
        "%gemimg login",
        "The key is read with a hidden prompt and kept in memory only; it never appears in outputs, "
        "files or error messages.",
    ),
    "backend": ("%gemimg backend\n%gemimg backend sim", "`%gemimg backend toapis` needs a key (set or logged in)."),
    "panel": ("%gemimg panel", "The panel is described in [panel.md](panel.md)."),
    "config": (
        "%gemimg config",
        "To change a default: `%config GemimgMagics.size = '16:9'` ([configuration.md](configuration.md)).",
    ),
    "help": ("%gemimg help", ""),
}

INTRO = """\
# Usage

<!-- Generated by scripts/gen_docs.py from the parsers in gemimg_jupyter/magics/extension.py; do not edit by hand. -->

Two magics, after `%load_ext gemimg_jupyter`:

- `%%gemimg [options]` generates images. The cell body is the prompt.
- `%gemimg SUBCOMMAND` manages jobs, the store, the backend and the panel.

In the notebook, `%%gemimg?` and `%gemimg help` show the same help. Defaults come from
`%config GemimgMagics` ([configuration.md](configuration.md)); what each error means is in
[errors.md](errors.md). Every example on this page is run by the test suite against the simulator.

```python
%load_ext gemimg_jupyter
```
"""

PROMPT_TEXT = "Variables fill the prompt; an unknown name is an error, not a silent literal."
PROMPT_EXAMPLE = (
    'subject = "a paper-cut fox"\n---\n%%gemimg --size 3:2\n{subject} in a misty forest, layered paper, soft shadows'
)

PARAMETERS_TEXT = (
    "Each parameter has one entry in `gemimg_jupyter.domain.params.PARAM_SPECS`; this table, the options above, "
    "the `%config GemimgMagics` defaults, the panel's controls and the checks before a request all come from it. "
    "Temperature and top-p reach only models with sampling controls. The controls (thinking … orientation) are "
    "sent only when given, and only to the models whose pages document them (the table below); any other model "
    "refuses them in one line before anything is sent."
)

PYTHON_SECTION = """\
## The same from Python

The magics are a thin layer over one engine, also usable without IPython:

```python
import gemimg_jupyter as gi

job = gi.generate("A paper-cut fox in a forest", size="16:9")                  # waits by default
fox = gi.sweep("A paper-cut fox in a forest", temperature=[0.2, 0.8], size=["1:1", "16:9"])
job.image.size, fox.progress_text()
```

`gi.generate(..., wait=False)` returns at once; `gi.get_session()` is the session the magics and the
panel share (`.jobs()`, `.cancel()`, `.wait()`, `.resume()`, `.history()`, `.cost()`).

Grids draw their frame, labels and placeholders light or dark (the images stay as they are): the
default `auto` follows the JupyterLab / Notebook 7 theme you chose; `GEMIMG_GRID_THEME=dark` (or
`gi.Settings(grid_theme="dark")`) fixes it.

## Colab and VS Code

**Colab.** Put the key in Colab's Secrets panel (🔑) as `TOAPIS_API_KEY` and allow the notebook to
read it. When the environment has no `TOAPIS_API_KEY`, the session reads the secret (once per
kernel) and says so in one line, `gemimg: the ToAPIs key comes from Colab's secrets (TOAPIS_API_KEY);
it is never printed`. A missing secret, or access refused, is quietly no key: the simulator, as
anywhere else. Colab's upload button fails for files of 1 MB or more, so the panel also takes a
reference by file path or URL, typed beside its upload button (**Add**); `--ref path` works in cells.
Keep the output folder on the runtime's own disk (the default, under `/content`). On Drive's FUSE
mount (`GEMIMG_OUTPUT_DIR` under `/content/drive`) the ledger gives up SQLite's WAL for the rollback
journal and says so in one line ([configuration.md](configuration.md)): slower, and only one runtime
may use that folder at a time; copy finished images to Drive if they must outlive the runtime.

**VS Code.** Its Jupyter extension runs an ordinary ipykernel: the magics, the key from the
environment (or `%gemimg login`), and status lines updated by display id work as in JupyterLab.

**What was tested, and how.** The Colab secret: a stand-in `google.colab.userdata` module (a real
file on `sys.path`, in a separate Python process) holding the key, missing it, refusing access, and
absent; the key reaches the gateway (a simulator that accepts only that key counts the request) and is
in no output or file (`tests/test_security.py`). The path/URL field: through the panel's widgets in
Python (`tests/test_widgets.py`, a 1.2 MB file) and clicked in JupyterLab 4 in Chromium
(`tests/test_panel_browser.py`). Kernels: ipykernel 7 through nbclient.
**Not tested:** a real Colab runtime or its widget manager (including whether panel updates from
worker threads re-render there, googlecolab/colabtools #3373), Colab's access dialog, Drive mounts
(the SQLite limit is documented by SQLite, not measured here), and VS Code itself (its widget
renderer and output handling were not run).
"""


# ---------------------------------------------------------------- reading the parsers


class Captured(Exception):
    """Raised in place of parsing: carries a subcommand's parser (and the parsed namespace, if asked)."""

    def __init__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace | None) -> None:
        super().__init__(parser.prog)
        self.parser = parser
        self.namespace = namespace


def make_magics() -> GemimgMagics:
    """A ``GemimgMagics`` without a shell: it has its parsers and router but never starts a session."""
    return GemimgMagics(shell=None)


def cell_parser() -> argparse.ArgumentParser:
    """The ``%%gemimg`` option parser."""
    parser: argparse.ArgumentParser = GemimgMagics.gemimg_cell.parser  # type: ignore[attr-defined]
    return parser


def subcommands(magics: GemimgMagics) -> dict[str, str]:
    """The ``%gemimg`` router: subcommand → its one-line description."""
    return {name: about for name, (_fn, about) in magics.subcommands.items()}


def subcommand_parser(
    magics: GemimgMagics, name: str, argv: Sequence[str] | None = None
) -> tuple[argparse.ArgumentParser, argparse.Namespace | None]:
    """The parser a subcommand builds, and (with ``argv``) what it parses from ``argv``.

    The subcommand runs up to its ``parse_args`` call and stops there, so
    nothing else happens. A bad ``argv`` raises the ``UsageError`` the user
    would see.
    """
    build: Callable[[str], argparse.ArgumentParser] = magics.subparser

    def capture(sub: str) -> argparse.ArgumentParser:
        parser = build(sub)
        real = parser.parse_args

        def parse_args(args: Any = None, namespace: Any = None) -> Any:
            ns = None if argv is None else real(list(argv))
            raise Captured(parser, ns)

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser

    magics.subparser = capture  # type: ignore[method-assign]
    try:
        magics.subcommands[name][0]([])
    except Captured as got:
        return got.parser, got.namespace
    finally:
        del magics.subparser
    raise RuntimeError(f"%gemimg {name} did not build a parser")


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    return " ".join(text.split())


def _flags(action: argparse.Action) -> str:
    metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
    flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
    return f"{flags} `{metavar}`" if metavar and action.nargs != 0 else flags


def _long(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def _synopsis_part(action: argparse.Action) -> str:
    if not action.option_strings:
        shown = "|".join(action.choices) if action.choices else (action.metavar or action.dest).upper()
        return f"[{shown}]" if action.nargs == "?" else shown
    flag = _long(action)
    if action.nargs == 0:
        return f"[{flag}]"
    return f"[{flag} {action.metavar or action.dest.upper()}]"


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _cells(example: str) -> str:
    """One fenced ``python`` block per cell (cells are separated by a ``---`` line)."""
    blocks = [part.strip("\n") for part in example.split("\n---\n")]
    return "\n\n".join(f"```python\n{block}\n```" for block in blocks)


def _section(heading: str, text: str, example: str, after: str) -> list[str]:
    lines = [heading, ""]
    if text:
        lines += [text, ""]
    lines += [_cells(example), ""]
    if after:
        lines += [after, ""]
    return lines


# ---------------------------------------------------------------- the page


def render() -> str:
    """The full text of ``docs/usage.md``."""
    magics = make_magics()
    parser = cell_parser()
    actions = _actions(parser)
    longs = [_long(a) for a in actions]
    missing = [flag for flag in longs if flag not in CELL_EXAMPLES]
    stale = [flag for flag in CELL_EXAMPLES if flag not in longs]
    if missing or stale:
        raise SystemExit(f"gen_docs: %%gemimg options without an example: {missing}; examples of no option: {stale}")
    router = subcommands(magics)
    missing = [name for name in router if name not in LINE_EXAMPLES]
    stale = [name for name in LINE_EXAMPLES if name not in router]
    if missing or stale:
        raise SystemExit(f"gen_docs: %gemimg subcommands without an example: {missing}; examples of none: {stale}")

    out = [INTRO, "## `%%gemimg`: generate images", ""]
    out += [_cell_doc(), ""]
    synopsis = " ".join(_synopsis_part(a) for a in actions)
    out += ["```text", _wrap_synopsis("%%gemimg " + synopsis), "PROMPT", "```", ""]
    out += ["| Option | What it does |", "|---|---|"]
    for action in actions:
        out.append(f"| {_cell(_flags(action))} | {_cell(_help(parser, action))} |")
    out.append("")
    out += _section("### The prompt", PROMPT_TEXT, PROMPT_EXAMPLE, "")
    for action in actions:
        example, after = CELL_EXAMPLES[_long(action)]
        out += _section(f"### {_flags(action)}", _help(parser, action), example, after)

    out += ["## `%gemimg`: manage jobs, the store and the backend", ""]
    out += ["| Subcommand | What it does |", "|---|---|"]
    parsers = {name: subcommand_parser(magics, name)[0] for name in router}
    for name, about in router.items():
        args = " ".join(_synopsis_part(a) for a in _actions(parsers[name]))
        shown = f"`%gemimg {name}{' ' + args if args else ''}`"
        out.append(f"| {_cell(shown)} | {_cell(_about(about))} |")
    out.append("")
    for name, about in router.items():
        sub = parsers[name]
        args = " ".join(_synopsis_part(a) for a in _actions(sub))
        text = [_sentence(_about(about)), ""]
        for action in _actions(sub):
            label = _flags(action) if action.option_strings else f"`{_synopsis_part(action).strip('[]')}`"
            text.append(f"- {label}: {_help(sub, action)}")
        text = text if len(text) > 2 else text[:1]
        example, after = LINE_EXAMPLES[name]
        out += _section(f"### `%gemimg {name}{' ' + args if args else ''}`", "\n".join(text), example, after)
    out += _parameters()
    out += [PYTHON_SECTION]
    return "\n".join(out).rstrip("\n") + "\n"


def _parameters() -> list[str]:
    """The parameter table (``gemimg_jupyter.domain.params.PARAM_SPECS``): how each parameter is written where."""
    out = ["## Parameters", "", PARAMETERS_TEXT, ""]
    out += ["| Parameter | What it is | Default | Python | Magic option | Sweep axis |", "|---|---|---|---|---|---|"]
    for spec in PARAM_SPECS:
        default = (
            "not sent"
            if spec.control
            else "required"
            if spec.default is None
            else "none"
            if spec.default == ()
            else f"`{spec.default}`"
        )
        keyword = f"`{spec.keyword}=`" if spec.keyword else "the first argument"
        option = ", ".join(f"`{flag}`" for flag in (spec.short, spec.option) if flag) or "the cell body"
        axis = f"`{spec.axis}=`" if spec.axis else ""
        out.append(f"| `{spec.name}` | {_cell(spec.described)} | {default} | {keyword} | {option} | {axis} |")
    return [*out, "", *controls_table()]


def controls_table() -> list[str]:
    """Which gateway field each control fills and which models take it (``PARAM_SPECS`` and ``MODELS``)."""
    out = ["### Controls per model", "", "| Control | Gateway field | Models | Source |", "|---|---|---|---|"]
    for spec in CONTROL_PARAMS:
        models = ", ".join(f"`{m.id}`" for m in MODELS.values() if m.takes(spec.name))
        out.append(f"| `{spec.option}` | `metadata.{spec.wire}` | {models} | {_cell(spec.source)} |")
    return [*out, ""]


def _cell_doc() -> str:
    """The prose of the cell magic's docstring (after the usage block ``magic_arguments`` puts first)."""
    paragraphs = inspect.cleandoc(GemimgMagics.gemimg_cell.__doc__ or "").split("\n\n")
    prose = []
    for para in paragraphs:
        if para.startswith("Examples"):
            break
        if para == "::" or para.startswith(" "):
            continue
        prose.append(" ".join(para.replace("``", "`").split()))
    return "\n\n".join(prose)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _cell(text: str) -> str:
    """Text for a Markdown table cell (pipes escaped, even in code spans, as GitHub needs)."""
    return text.replace("|", "\\|")


def _about(text: str) -> str:
    """A router description without its own synopsis (``cancel [ID|all] [--drop]: stop…`` → ``stop…``)."""
    _synopsis, sep, rest = text.partition(": ")
    return rest if sep else text


def _wrap_synopsis(text: str, width: int = 88) -> str:
    lines, line = [], ""
    for word in _synopsis_words(text):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "         " + word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines)


def _synopsis_words(text: str) -> list[str]:
    """Split on spaces, keeping ``[--flag VALUE]`` groups together."""
    words, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == " " and depth == 0:
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    if current:
        words.append(current)
    return words


def readme_grid(path: Path = README_GRID) -> Path:
    """Run the README's first sweep on a private simulator and save its grid (a small PNG)."""
    import tempfile

    from gemimg_jupyter.api.session import Session
    from gemimg_jupyter.domain.settings import Settings
    from gemimg_jupyter.draw.grid import encode_grid_png

    with tempfile.TemporaryDirectory(prefix="gemimg-readme-") as tmp:
        settings = Settings(
            backend="sim",
            output_dir=Path(tmp),
            sim_options={"latency": (0.1, 0.3), "queue_delay": (0.0, 0.05), "seed": 5},
            poll_first=0.05,
            poll_min=0.05,
            poll_max=0.2,
            grid_theme="light",
        )
        with Session(settings) as sess:
            spec = dict(README_SWEEP)
            result = sess.sweep(str(spec.pop("prompt")), repeats=2, **spec)
            data = encode_grid_png(result.grid(), max_bytes=300_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Write docs/usage.md, or with ``--check`` report whether it is current."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if docs/usage.md is stale")
    parser.add_argument("--readme-grid", action="store_true", help="also redraw docs/img/readme-grid.png")
    args = parser.parse_args(argv)
    if args.readme_grid and not args.check:
        path = readme_grid()
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KB)")
    text = render()
    current = USAGE.read_text(encoding="utf-8") if USAGE.exists() else ""
    if args.check:
        if current == text:
            print("docs/usage.md is current")
            return 0
        diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "committed", "generated", lineterm="")
        print("\n".join(list(diff)[:60]))
        print("docs/usage.md is stale: run python scripts/gen_docs.py")
        return 1
    USAGE.parent.mkdir(exist_ok=True)
    USAGE.write_text(text, encoding="utf-8")
    print(f"wrote {USAGE.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
