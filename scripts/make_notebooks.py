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
from traitlets.config import Config

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


def sweeps() -> NotebookNode:
    """A 2-axis sweep with repeats, the cache on a re-run, a prompt S/R sweep, a 3-axis sweep, a plan."""
    return notebook(
        [
            md(
                """
# Sweeps: compare parameters in one grid

A sweep runs one prompt over several values of up to three parameters and draws the results as a
labelled grid: the first axis across, the second down, the third as separate grids. The plan and
its cost are printed before anything is sent, and the grid fills in as results arrive.

Without `TOAPIS_API_KEY` this runs on the built-in simulator (free, offline, simulated images).
The axis syntax (ranges, `||`, reference sets) is in [docs/sweeps.md](../docs/sweeps.md).
"""
            ),
            code("%load_ext gemimg_jupyter"),
            md(
                """
## Two axes, two repeats

Temperature across, aspect ratio down. Gemini takes no seed, so `--repeats 2` asks for two samples
of every cell; they share the cell's box. `-o fox` keeps the `SweepResult`.
"""
            ),
            code(
                """
%%gemimg --sweep temperature=0.2,0.8,1.4 --sweep size=1:1,16:9 --repeats 2 -o fox
A paper-cut fox in a forest
"""
            ),
            md(
                """
The cell returned at once; its grid updates in place while you carry on. The next sweep starts
meanwhile, and both run side by side (up to 8 requests at a time).

## Prompt search/replace

`prompt=forest|ocean|desert|night sky` works like A1111's *Prompt S/R*: the first value is searched
for in the prompt, and each column replaces it with its own value. The header shows the prompt with
the search term in brackets. Quote the spec when a value contains a space.
"""
            ),
            code(
                """
%%gemimg --sweep "prompt=forest|ocean|desert|night sky" --size 3:2 -o places
A paper-cut fox in a forest
"""
            ),
            md(
                """
## Waiting for the results

`%gemimg wait` blocks until every grid is final: put it before code that needs the results, and
at the end of a notebook that runs unattended. Each finished grid is also saved as a PNG, with a
legend, under `gemimg_outputs/grids/`.
"""
            ),
            code("%gemimg wait"),
            code("fox.progress_text(), places.progress_text(), fox.paths[0].parent.name"),
            md(
                """
## Running it again costs nothing

Every image is in the store, keyed by everything that shapes it. The same sweep, here from
Python, is answered from the cache at once, for $0 (`--fresh` asks for new samples).
"""
            ),
            code(
                """
import gemimg_jupyter as gi

again = gi.sweep("A paper-cut fox in a forest", temperature=[0.2, 0.8, 1.4], size=["1:1", "16:9"], repeats=2)
again.progress_text()
"""
            ),
            md(
                """
## Three axes: one grid per value of the third

`size` is the third axis here, so there is one temperature × top-p grid per size, stacked in the
output and saved as separate files (`…-z0.png`, `…-z1.png`). Smaller cells keep the picture compact.
"""
            ),
            code("%config GemimgMagics.cell_size = 240"),
            code(
                """
%%gemimg --sweep temperature=0.3,1.5 --sweep top_p=0.2,1 --sweep size=1:1,9:16 -o three
A paper-cut lighthouse by the ocean at night
"""
            ),
            code("%gemimg wait"),
            code("three.plan.shape, len(three.paths), three.progress_text()"),
            md(
                """
## Check a plan before running it

`Session.plan` validates every cell and prices the uncached ones without sending anything. Four
repeats of the first sweep: the two repeats made above are already in the store.
"""
            ),
            code(
                """
sess = gi.get_session()
plan = sess.plan("A paper-cut fox in a forest", temperature=[0.2, 0.8, 1.4], size=["1:1", "16:9"], repeats=4)
plan.summary(sess.store.cached_keys(list(plan.keys)))
"""
            ),
            md(
                """
Next: [reference_images.ipynb](reference_images.ipynb) sweeps over reference images
(`ref=none|style.png`), and `%gemimg history` shows the newest images of the store.
"""
            ),
        ]
    )


def reference_images() -> NotebookNode:
    """A reference made with Pillow, ``--ref {var}`` over a series, with/without comparison, a measurement."""
    return notebook(
        [
            md(
                """
# A consistent style with reference images

Reference images steer what Gemini draws: their subject, style and colours. Giving every image
of a series the same reference keeps the series consistent. `--ref` takes a file, a URL, or `{var}`
holding a PIL image, bytes, a path or a list of them.

Without `TOAPIS_API_KEY` this runs on the built-in simulator, which imitates one part of that: the
reference's dominant colours pull each image's palette toward them, so the effect is visible here.
Real images also follow the reference's shapes and style.
"""
            ),
            code("%load_ext gemimg_jupyter"),
            md(
                """
## A reference, made with Pillow

Any picture works; here a small flat poster in four colours, kept in the variable `style` and
also saved as `style.png`.
"""
            ),
            code(
                """
from PIL import Image, ImageDraw

style = Image.new("RGB", (384, 384), "#264653")
draw = ImageDraw.Draw(style)
draw.rectangle((0, 256, 384, 384), fill="#2a9d8f")
draw.ellipse((120, 60, 264, 204), fill="#e9c46a")
draw.polygon([(0, 300), (140, 170), (280, 300)], fill="#e76f51")
style.save("style.png")
style.resize((128, 128))
"""
            ),
            md(
                """
## A series in that style

`--ref {style}` sends the PIL image held in `style` (uploaded once, then reused by every request).
With a prompt search/replace sweep, one cell makes the whole series.
"""
            ),
            code(
                """
%%gemimg --ref {style} --sweep "prompt=lighthouse|windmill|teapot|fox" -o series
A paper-cut lighthouse on a hill
"""
            ),
            code("%gemimg wait"),
            md(
                """
## A second reference, and both at once

Another small poster, in reds. `--ref` can be repeated, and a variable can hold a list: this model
takes up to 3 references (`%gemimg models` lists each model's limit); more is refused before
anything is sent.
"""
            ),
            code(
                """
warm = Image.new("RGB", (384, 384), "#9d0208")
ImageDraw.Draw(warm).ellipse((96, 96, 288, 288), fill="#ffba08")
warm.save("warm.png")
palette = [style, warm]
warm.resize((96, 96))
"""
            ),
            code(
                """
%%gemimg --ref {palette} --size 16:9 -o both
A paper-cut fox in a forest
"""
            ),
            md(
                """
## With and without: the reference makes them match

A sweep over the references themselves: `ref=none|style.png|warm.png` gives one row per reference
set (`none` is no reference; `a.png+b.png` would join two). Without a reference each prompt keeps
its own colours; with one, every picture in the row takes the reference's. The `style.png` row is
the series above, so it comes from the cache.
"""
            ),
            code(
                """
%%gemimg --sweep "prompt=lighthouse|windmill|fox" --sweep "ref=none|style.png|warm.png" -o compare
A paper-cut lighthouse on a hill
"""
            ),
            code("%gemimg wait"),
            code("len(both.params.references), both.image.size"),
            md(
                """
## Measuring it

How far is each row's average colour from each reference's (RGB distance, averaged over the
row's three pictures)? A small number means the pictures took that reference's colours.
`compare.table()` has one row per image, with its parameters and its file.
"""
            ),
            code(
                """
from statistics import mean

from PIL import ImageStat


def mean_colour(img):
    return ImageStat.Stat(img.convert("RGB").resize((64, 64))).mean


def distance(a, b):
    return sum((x - y) ** 2 for x, y in zip(mean_colour(a), mean_colour(b))) ** 0.5


refs = {"style.png": style, "warm.png": warm}
by_row = {}
for row in compare.table():
    img = Image.open(row["path"])
    by_row.setdefault(row["ref"], []).append([distance(img, ref) for ref in refs.values()])
lines = [f"{'references':<12}" + "".join(f"{'to ' + name:>14}" for name in refs)]
lines += [f"{label:<12}" + "".join(f"{mean(col):>14.0f}" for col in zip(*ds)) for label, ds in by_row.items()]
for line in lines:
    print(line)
"""
            ),
            md(
                """
Next: [sweeps.ipynb](sweeps.ipynb) for temperature, size and three-axis grids;
[docs/sweeps.md](../docs/sweeps.md) for the `ref=` syntax (sets joined with `+`, URLs).
"""
            ),
        ]
    )


def editing() -> NotebookNode:
    """Three edits of one image, its lineage, two picks in a sweep, and an HTML report."""
    return notebook(
        [
            md(
                """
# Iterate, pick, share

Gemini image models are good at *editing*: take an image, say what to change, repeat. With
`--edit NAME` the image held in `NAME` becomes the first reference of the new request, and the
new image records which image it came from, in the ledger and in its PNG. This notebook edits a
picture three times, looks back along the chain, picks favourites in a sweep, and writes a report
that opens in any browser. Without `TOAPIS_API_KEY` it runs on the built-in simulator.
"""
            ),
            code("%load_ext gemimg_jupyter"),
            md("## An image, and three edits of it"),
            code(
                """
%%gemimg -o teapot --wait
A ceramic teapot on a wooden table, soft studio light
"""
            ),
            code(
                """
%%gemimg --edit teapot -o blue --wait
Make the teapot cobalt blue
"""
            ),
            code(
                """
%%gemimg --edit blue -o steam --wait
Add steam rising from the spout
"""
            ),
            code(
                """
%%gemimg --edit steam -o night --wait
Move the scene to a kitchen at night, lit by one lamp
"""
            ),
            md(
                """
## Looking back along the chain

`%gemimg lineage NAME` shows every step from the root: its thumbnail, number and prompt, and a
table with parameters, cost and file. It reads the ledger only, so it also works after a kernel
restart, given the job id (`night.id`) instead of the variable.
"""
            ),
            code("%gemimg lineage night"),
            code(
                """
print(night.parent["cbid"] == steam.cbid, steam.parent["cbid"] == blue.cbid, blue.parent["cbid"] == teapot.cbid)
again = blue.edit("Add steam rising from the spout", wait=True)
print("the same edit again:", again.state.value, again.path == steam.path)
"""
            ),
            md(
                """
## Picks that last

After a sweep, keep the ones you like: `%gemimg pick fox[1]` (sweep cells index in order, X
fastest) or `fox[1].pick()`. Picks live in the ledger, so they survive restarts, and they are
written into the PNG's provenance. Picked cells carry a star in every grid drawn from then on.
"""
            ),
            code(
                """
%%gemimg --sweep temperature=0.2,0.9 --sweep size=1:1,16:9 -o fox --wait
A paper-cut fox in a birch forest
"""
            ),
            code(
                """
%gemimg pick fox[1] --note "warm light"
%gemimg pick fox[2]
"""
            ),
            code("fox"),
            code("%gemimg history --picked"),
            md(
                """
## A report anyone can open

`fox.save_report()` (or `%gemimg report fox`) writes one HTML file with the comparison view of
this notebook (click a tile for the larger picture and its caption, select two to swipe or zoom
them together), a table of every cell with its parameters, state, cost and task id, the picks
starred, and the `%%gemimg` cell that reproduces the sweep. It makes no request of any kind (its
one script is allowed by hash) and reads well on a phone; file links open the full-size files.
`%gemimg report night` does the same for an edit chain.
"""
            ),
            code(
                """
report = fox.save_report()
print(report.relative_to(report.parents[2]), f"{report.stat().st_size / 1024:.0f} KB")
"""
            ),
            code("%gemimg report night"),
            md(
                """
More in [docs/editing.md](../docs/editing.md). Next: [sweeps.ipynb](sweeps.ipynb) for larger grids.
"""
            ),
        ]
    )


#: name → builder; each writes ``notebooks/<name>.ipynb``.
NOTEBOOKS: dict[str, Callable[[], NotebookNode]] = {"quickstart": quickstart}
NOTEBOOKS.update(sweeps=sweeps, reference_images=reference_images)
NOTEBOOKS.update(editing=editing)


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
    nb: NotebookNode,
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: int = 180,
    kernel_name: str = "python3",
) -> NotebookNode:
    """Run every cell of ``nb`` in a fresh kernel (``kernel_name``, python3 by default) started in ``cwd`` (in
    place; also returned).

    The kernel talks over local IPC sockets rather than TCP on loopback: nothing on the network,
    and no "running over TCP without encryption" warning in the terminal.
    """
    with tempfile.TemporaryDirectory(prefix="gemimg-ipc-") as sockets:  # absolute: the kernel runs in cwd
        client = NotebookClient(
            nb,
            config=Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}}),
            timeout=timeout,
            kernel_name=kernel_name,
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
