"""Edit chains: which image an edit was made from, walked back from the ledger alone.

An edit (``%%gemimg --edit a``, ``job.edit(...)``) records its parent as
``"parent": {"cbid", "key", "sha256"}`` in the ledger row's params and in the
PNG's provenance: the parent's ``client_business_id``, its request key, and
the hash of the parent's image as uploaded (the PNG without our provenance
chunks, so a pick, which re-writes those, does not change it). The parent
image is the edit's first reference, so the parent counts in the edit's
request key only through that hash.

:func:`lineage` follows the links from any row back to the root, needing
nothing but the ledger (it works after a restart); :func:`lineage_strip`
draws the chain as one labelled strip in the style of the sweep grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import JobState, ReferenceImage
from gemimg_jupyter.domain.text import plural
from gemimg_jupyter.draw.images import load_reference, strip_provenance
from gemimg_jupyter.draw.primitives import (
    BG,
    INK,
    LETTERBOX,
    MUTED,
    RULE,
    draw_arrow,
    draw_star,
    draw_text,
    fit_text,
    fonts_for,
    text_width,
    wrap_text,
)
from gemimg_jupyter.engine import Job
from gemimg_jupyter.ledger.store import LedgerRow, Store
from gemimg_jupyter.ledger.thumbs import load_thumb

__all__ = [
    "Lineage",
    "Step",
    "edit_reference",
    "ledger_cbid",
    "lineage",
    "lineage_strip",
    "row_of",
]

#: A chain longer than this is cut (a guard against a damaged ledger that loops).
MAX_STEPS = 200


def ledger_cbid(job: Job) -> str:
    """The ``client_business_id`` of the ledger row holding a job's image (a cache hit's source row)."""
    source = job.provenance.get("client_business_id") if job.cached else None
    return source if isinstance(source, str) and source else job.cbid


def row_of(store: Store, job: Job) -> LedgerRow | None:
    """The ledger row that holds ``job``'s image: its own, or for a cache hit the one it came from."""
    for cbid in (job.cbid, job.provenance.get("client_business_id")):
        if isinstance(cbid, str) and cbid:
            row = store.get(cbid)
            if row is not None:
                return row
    return store.lookup(job.key) if job.state.has_image else None


def edit_reference(row: LedgerRow) -> tuple[ReferenceImage, dict[str, Any]]:
    """The parent image of an edit as a reference, and the ``parent`` record for the new job."""
    if row.state != JobState.DONE or not row.path or not Path(row.path).is_file():
        raise ValidationError(
            f"image {row.cbid[-6:]} cannot be edited: it is {row.state} and has no image file",
            field="edit",
            value=row.cbid[-6:],
        )
    data = strip_provenance(Path(row.path).read_bytes())
    ref = load_reference(data, name=Path(row.path).name)
    return ref, {"cbid": row.cbid, "key": row.key, "sha256": ref.sha256}


@dataclass(frozen=True)
class Step:
    """One image of a chain; ``number`` 1 is the root."""

    number: int
    row: LedgerRow

    @property
    def prompt(self) -> str:
        """The prompt (for an edit: what was asked to change)."""
        return str(self.row.params.get("prompt", ""))

    @property
    def params(self) -> dict[str, Any]:
        """Model, size, resolution, sampling and reference count."""
        p = self.row.params
        return {
            "model": p.get("model"),
            "size": p.get("size"),
            "resolution": p.get("resolution"),
            "temperature": p.get("temperature"),
            "top_p": p.get("top_p"),
            "controls": dict(p.get("controls") or {}),
            "references": len(p.get("references") or []),
        }

    @property
    def cost_usd(self) -> float:
        """What the step cost (the settled cost, else the list price; failed tasks are refunded)."""
        if self.row.state == "failed":
            return 0.0
        return float(self.row.cost_usd if self.row.cost_usd is not None else self.row.price_usd or 0.0)

    @property
    def path(self) -> str | None:
        """The image file."""
        return self.row.path

    def describe(self) -> dict[str, Any]:
        """Plain data for tables and reports."""
        return {
            "step": self.number,
            "id": self.row.cbid[-6:],
            "prompt": self.prompt,
            **self.params,
            "state": self.row.state,
            "task_id": self.row.task_id,
            "cost_usd": round(self.cost_usd, 4),
            "path": self.path,
        }


@dataclass(frozen=True)
class Lineage:
    """A chain of edits, root first. ``broken`` says why the walk stopped early, if it did."""

    steps: tuple[Step, ...]
    broken: str | None = None
    picked: frozenset[str] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.steps)

    def table(self) -> list[dict[str, Any]]:
        """One dict per step: step, prompt, parameters, cost, file."""
        return [s.describe() for s in self.steps]

    def strip(self, thumb: int = 200) -> Image.Image:
        """The labelled strip (see :func:`lineage_strip`)."""
        return lineage_strip(self, thumb=thumb)

    def __repr__(self) -> str:
        return f"<Lineage {plural(len(self.steps), 'step')}{' (' + self.broken + ')' if self.broken else ''}>"


def lineage(store: Store, row: LedgerRow, *, picked: set[str] | frozenset[str] = frozenset()) -> Lineage:
    """The chain from the root to ``row``, from the ledger alone."""
    chain = [row]
    seen = {row.cbid}
    broken = None
    while True:
        parent = chain[-1].params.get("parent")
        if not isinstance(parent, dict):
            break
        if len(chain) >= MAX_STEPS:
            broken = f"cut after {MAX_STEPS} steps"
            break
        prow = store.get(str(parent.get("cbid", ""))) or store.lookup(str(parent.get("key", "")))
        if prow is None:
            broken = f"the parent {str(parent.get('cbid', '?'))[-6:]} is not in this ledger"
            break
        if prow.cbid in seen:
            broken = "the ledger's parent links loop"
            break
        seen.add(prow.cbid)
        chain.append(prow)
    chain.reverse()
    return Lineage(tuple(Step(i + 1, r) for i, r in enumerate(chain)), broken, frozenset(picked))


def lineage_strip(chain: Lineage, *, thumb: int = 200, prompt_lines: int = 3) -> Image.Image:
    """Each step's thumbnail left to right with its number and prompt (wrapped, ellipsized); picks starred."""
    f = fonts_for(thumb)
    pad = max(6, f.pad * 3)
    arrow = max(16, thumb // 8)
    text_h = f.line + prompt_lines * f.small_line + f.pad
    n = max(1, len(chain.steps))
    width = pad + n * thumb + (n - 1) * arrow + pad
    height = pad + thumb + f.pad + text_h + pad
    img = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(img)
    for i, step in enumerate(chain.steps):
        x = pad + i * (thumb + arrow)
        draw.rectangle([x, pad, x + thumb - 1, pad + thumb - 1], fill=LETTERBOX, outline=RULE)
        image = _thumb(step.path, thumb)
        if image is not None:
            t = fit_text(image, thumb, thumb)
            img.paste(t, (x + (thumb - t.width) // 2, pad + (thumb - t.height) // 2))
        else:
            draw_text(draw, (x + f.pad * 2, pad + thumb // 2), step.row.state, f.small, MUTED)
        if step.row.cbid in chain.picked:
            r = max(7, thumb // 14)
            draw_star(draw, x + thumb - r - 4, pad + r + 4, r)
        if i:
            mid = pad + thumb // 2
            draw_arrow(draw, x - arrow + 3, mid - (arrow - 5) / 2, arrow - 5, "right", MUTED)
        ty = pad + thumb + f.pad
        label = "root" if step.number == 1 else "edit"
        draw_text(draw, (x, ty), f"{step.number}", f.bold, INK)
        draw_text(draw, (x + text_width(f.bold, f"{step.number}") + f.pad * 2, ty), label, f.label, MUTED)
        for j, line in enumerate(wrap_text(f.small, step.prompt, thumb, prompt_lines)):
            draw_text(draw, (x, ty + f.line + j * f.small_line), line, f.small, INK)
    return img


def _thumb(path: str | None, size: int) -> Image.Image | None:
    if not path or not Path(path).is_file():
        return None
    try:
        return load_thumb(path, size)
    except OSError:
        return None
