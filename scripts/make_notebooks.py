"""Build the notebooks in ``notebooks/`` from code, and execute them against the simulator.

::

    python scripts/make_notebooks.py                 # write and execute every notebook below
    python scripts/make_notebooks.py quickstart      # just one
    python scripts/make_notebooks.py --no-execute    # write them without outputs

Executing runs a real kernel (nbclient) in a temporary directory with
``GEMIMG_BACKEND=sim`` and no ``TOAPIS_API_KEY``, so the committed notebooks
carry real outputs that render on GitHub: small preview PNGs (≤ 768 px) and
provenance metadata with paths relative to the notebook.

To add a notebook, write a function that returns a list of cells (``md`` and
``code``) and register it in :data:`NOTEBOOKS`. ``execute`` and ``sim_env`` are
also used by ``scripts/demo.py`` and the notebook tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


def md(text: str) -> NotebookNode:
    """A markdown cell (leading/trailing blank lines dropped)."""
    return new_markdown_cell(text.strip("\n"))


def code(text: str) -> NotebookNode:
    """A code cell."""
    return new_code_cell(text.strip("\n"))


def notebook(cells: list[NotebookNode], **gemimg_meta: object) -> NotebookNode:
    """A notebook with the python3 kernel; ``gemimg_meta`` goes into ``metadata.gemimg``
    (``browser_only=True`` keeps it out of the nbclient tests)."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    if gemimg_meta:
        nb.metadata["gemimg"] = dict(gemimg_meta)
    return nb


# ---------------------------------------------------------------- the notebooks


def quickstart() -> NotebookNode:
    """Load the extension, one image, prompt variables, references, ``-o``, wait, cache and cost."""
    return notebook(
        [
            md(
                """
# gemimg quickstart

Generate **Gemini 2.5 Flash Image** pictures from a notebook through the ToAPIs gateway.
Without a `TOAPIS_API_KEY` everything runs against the built-in **simulator**: free, offline,
with images that follow the requested size, prompt palette, temperature and references
(and carry a small "simulated" mark). Set the key, or run `%gemimg login`, for real images.
"""
            ),
            code("%load_ext gemimg_jupyter"),
            md(
                """
## One image

The cell body is the prompt; the options set the aspect ratio and sampling. The cell returns at once:
its output is a live status line (state, elapsed time, progress, cost) that turns into the image
when it arrives. `-o hero` keeps the result handle in the variable `hero`.
"""
            ),
            code(
                """
%%gemimg --size 16:9 --temperature 0.8 --top-p 0.95 -o hero
A studio photo of a ceramic teapot on a marble table, soft morning light
"""
            ),
            md(
                """
## Prompt variables

`{name}` in the prompt is filled in from your variables (an unknown name is an error, not a silent
literal); write `{{` and `}}` for literal braces.
"""
            ),
            code('subject = "a paper-cut fox"\nmood = "misty"'),
            code(
                """
%%gemimg --size 3:2
{subject} in a {mood} forest, layered paper, soft shadows
"""
            ),
            md(
                """
## Reference images

`--ref` takes a file, a URL, or `{var}` holding a PIL image, bytes, a path or a list of them
(this model accepts up to 3). The simulator borrows the references' palette, so you can see it work.
"""
            ),
            code(
                """
from PIL import Image, ImageDraw

swatch = Image.new("RGB", (256, 256), "#1d3557")
ImageDraw.Draw(swatch).ellipse((48, 48, 208, 208), fill="#e63946")
swatch.save("swatch.png")
swatch.resize((96, 96))
"""
            ),
            code(
                """
%%gemimg --ref swatch.png --size 1:1 -o poster
A travel poster of a red sun over a navy sea, in the palette of the reference
"""
            ),
            code(
                """
%%gemimg --ref {swatch} --size 4:5
{subject} on a poster, in the colours of the reference
"""
            ),
            md(
                """
## Waiting, and using the results

`%gemimg wait` blocks until every image is in place: put it before code that needs the pixels,
and at the end of notebooks that run headless (or with *Run All*). The handle stored by `-o` has the
image (`hero.image`, a PIL image), the full-size file (`hero.path`) and what was asked (`hero.params`).
"""
            ),
            code("%gemimg wait"),
            code("hero.image.size, hero.path.name, hero.params.temperature"),
            md(
                """
## The cache and the cost

Re-running a cell with the same prompt and options shows the stored image at once, for $0
(`--fresh` asks for a new one). `%gemimg cost` sums up what was spent and saved.
"""
            ),
            code(
                """
%%gemimg --size 16:9 --temperature 0.8 --top-p 0.95
A studio photo of a ceramic teapot on a marble table, soft morning light
"""
            ),
            code("%gemimg cost"),
            md(
                """
Next: `%%gemimg?` lists every option, `%gemimg help` the subcommands (`jobs`, `cancel`, `history`,
`models`, `panel` …), `%config GemimgMagics` the defaults, and `sweeps.ipynb` compares parameters in a grid.
"""
            ),
        ]
    )


#: name → builder; each writes ``notebooks/<name>.ipynb``.
NOTEBOOKS: dict[str, Callable[[], NotebookNode]] = {"quickstart": quickstart}


# ---------------------------------------------------------------- executing


def sim_env(output_dir: str | os.PathLike[str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for a kernel on the simulator: no key, ``GEMIMG_BACKEND=sim``.

    Without ``output_dir`` the kernel uses ``gemimg_outputs`` beside the notebook.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("TOAPIS_API_KEY", "GEMIMG_OUTPUT_DIR", "GEMIMG_BASE_URL")}
    env["GEMIMG_BACKEND"] = "sim"
    if output_dir is not None:
        env["GEMIMG_OUTPUT_DIR"] = str(output_dir)
    env.update(extra)
    return env


def execute(
    nb: NotebookNode, *, cwd: str | os.PathLike[str], env: Mapping[str, str] | None = None, timeout: int = 180
) -> NotebookNode:
    """Run every cell of ``nb`` in a fresh python3 kernel started in ``cwd`` (in place; also returned)."""
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        record_timing=False,
    )
    client.execute(env=dict(env if env is not None else sim_env()))
    return nb


def build(name: str, *, run: bool = True) -> Path:
    """Write ``notebooks/<name>.ipynb`` (executed against the simulator unless ``run=False``)."""
    nb = NOTEBOOKS[name]()
    if run:
        with tempfile.TemporaryDirectory(prefix=f"gemimg-{name}-") as tmp:
            execute(nb, cwd=tmp, env=sim_env())
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    target = NOTEBOOK_DIR / f"{name}.ipynb"
    nbformat.validate(nb)
    nbformat.write(nb, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[[], *NOTEBOOKS], help="notebooks to build (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write the notebooks without running them")
    args = parser.parse_args(argv)
    for name in args.names or list(NOTEBOOKS):
        path = build(name, run=not args.no_execute)
        size = path.stat().st_size
        print(f"wrote {path.relative_to(ROOT)} ({size / 1024:.0f} KB{'' if args.no_execute else ', executed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
