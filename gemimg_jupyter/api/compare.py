"""The comparison view as plain data: :class:`Comparison`.

A comparison is a set of images laid out on up to three axes (a sweep's X, Y and Z, or one row of
results), each cell carrying what a viewer shows about it: its axis labels, parameters, state,
progress, cost, task id, file and pick star. Thumbnails and full-size images are encoded on
request (``thumbnail_url``, ``full_url``), so a view of a few hundred cells sends only what is
seen. This module is core: it never imports a UI toolkit. A face turns a comparison into a view;
the package root registers that face with :func:`set_viewer`, so ``sweep.compare()`` and
``gi.compare(...)`` show the interactive view in a notebook and a static grid anywhere else.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from gemimg_jupyter.api.lineage import ledger_cbid
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.domain.text import format_usd
from gemimg_jupyter.draw.grid import encode_grid_png
from gemimg_jupyter.draw.images import load_thumbnail, png_bytes
from gemimg_jupyter.draw.sheets import contact_sheet, stack
from gemimg_jupyter.engine import Job
from gemimg_jupyter.ledger.store import LedgerRow
from gemimg_jupyter.plans.plan import SweepPlan

__all__ = ["CompareAxis", "Comparison", "compare_targets", "set_viewer"]

log = logging.getLogger(__name__)

#: The parameters a cell's caption lists, in this order.
SHOWN_PARAMS = ("prompt", "model", "size", "resolution", "temperature", "top_p")
#: Thumbnails' long side (the view shows them at up to this size; JPEG keeps them small).
THUMB_SIDE = 384
#: A full-size file larger than this is sent scaled down (long side :data:`FULL_SIDE`).
FULL_MAX_BYTES = 6_000_000
FULL_SIDE = 2048

Viewer = Callable[["Comparison"], None]
_viewer: list[Viewer] = []


def set_viewer(viewer: Viewer | None) -> None:
    """The function that shows a comparison in a notebook (the package root registers the display face's)."""
    _viewer.clear()
    if viewer is not None:
        _viewer.append(viewer)


@dataclass(frozen=True)
class CompareAxis:
    """One axis of the view: the parameter's name and one label per position."""

    name: str
    labels: tuple[str, ...]


@dataclass
class _Slot:
    """One cell: where it sits, its labels, and the job or ledger row behind it."""

    source: Job | LedgerRow
    x: int = 0
    y: int = 0
    z: int = 0
    repeat: int = 0
    labels: dict[str, str] = field(default_factory=dict)


def _params_of(source: Job | LedgerRow) -> dict[str, Any]:
    if isinstance(source, Job):
        d = source.describe()
        return {k: d.get(k) for k in SHOWN_PARAMS if d.get(k) is not None}
    return {k: source.params.get(k) for k in SHOWN_PARAMS if source.params.get(k) is not None}


def _label(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


class Comparison:
    """Images side by side: axes, cells, and their pictures on request.

    Build one with :meth:`of_sweep` or :meth:`of_items`. ``cells()`` is the view's data (JSON-ready
    dicts), ``thumbnail_url(i)`` and ``full_url(i)`` are ``data:`` URLs, ``static_png()`` the picture
    a saved notebook keeps, ``jobs()`` what to listen to while it fills in.
    """

    def __init__(
        self,
        title: str,
        axes: Sequence[CompareAxis],
        slots: Sequence[_Slot],
        *,
        picked: Callable[[], set[str]] = set,
        static: Callable[[], Image.Image] | None = None,
        session: Any = None,
        sweep_id: str | None = None,
    ) -> None:
        self.title = title
        self.axes = list(axes)
        self.sweep_id = sweep_id
        self.session = session
        self._slots = list(slots)
        self._picked = picked
        self._static = static
        self._thumbs: dict[tuple[int, str], str] = {}
        self._lock = threading.Lock()
        #: The face's view of this comparison, made on first display and reused.
        self.view: Any = None

    # ---- building ------------------------------------------------------------------------

    @classmethod
    def of_sweep(
        cls,
        plan: SweepPlan,
        jobs: Sequence[Job],
        *,
        sweep_id: str,
        picked: Callable[[], set[str]] = set,
        static: Callable[[], Image.Image] | None = None,
    ) -> Comparison:
        """A sweep's cells on its own X, Y and Z axes (repeats side by side in their cell)."""
        axes = [CompareAxis(a.name, tuple(a.labels)) for a in plan.axes]
        slots = [_Slot(job, c.x, c.y, c.z, c.repeat, dict(c.labels)) for c, job in zip(plan.cells, jobs, strict=False)]
        prompt = str(plan.common.get("prompt") or plan.base.prompt)
        title = f"sweep {sweep_id}: {_label(prompt)}"
        return cls(title, axes, slots, picked=picked, static=static, sweep_id=sweep_id)

    @classmethod
    def of_items(
        cls, items: Sequence[Job | LedgerRow], *, title: str = "", picked: Callable[[], set[str]] = set
    ) -> Comparison:
        """Several images in one row, labelled by the parameters that differ between them."""
        params = [_params_of(item) for item in items]
        differing = [k for k in SHOWN_PARAMS if len({repr(p.get(k)) for p in params}) > 1]
        labels = []
        for item, p in zip(items, params, strict=True):
            short = item.id if isinstance(item, Job) else item.cbid[-6:]
            labels.append(" · ".join(_label(p.get(k)) for k in differing) or short)
        axis = CompareAxis(" · ".join(differing) or "image", tuple(labels))
        slots = [
            _Slot(item, i, 0, 0, 0, {axis.name: lab}) for i, (item, lab) in enumerate(zip(items, labels, strict=True))
        ]
        title = title or f"{len(items)} images"
        return cls(title, [axis], slots, picked=picked)

    @classmethod
    def of_chain(cls, rows: Sequence[LedgerRow], *, title: str, picked: Callable[[], set[str]] = set) -> Comparison:
        """An edit chain's images in one row, root first, labelled by their step number."""
        axis = CompareAxis("step", tuple(str(n) for n in range(1, len(rows) + 1)))
        slots = [_Slot(row, i, 0, 0, 0, {"step": axis.labels[i]}) for i, row in enumerate(rows)]
        return cls(title, [axis], slots, picked=picked)

    # ---- what the view shows -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    def jobs(self) -> list[Job]:
        """The live jobs among the cells (a view listens to them while they run)."""
        return [s.source for s in self._slots if isinstance(s.source, Job)]

    def index_of(self, job: Job) -> int | None:
        """The cell showing ``job``."""
        return next((i for i, s in enumerate(self._slots) if s.source is job), None)

    def shape(self) -> tuple[int, int, int]:
        """``(nx, ny, nz)``: positions along X, Y and Z (an absent axis counts as 1)."""
        sizes = [len(a.labels) for a in self.axes] + [1, 1, 1]
        return sizes[0], sizes[1], sizes[2]

    def header(self) -> dict[str, Any]:
        """Title, axes and shape for the view."""
        nx, ny, nz = self.shape()
        axes = [{"name": a.name, "labels": list(a.labels)} for a in self.axes]
        return {"title": self.title, "axes": axes, "shape": [nx, ny, nz], "sweep_id": self.sweep_id}

    def cells(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per cell (see :meth:`cell`)."""
        picked = self._picked_now()
        return [self.cell(i, picked) for i in range(len(self._slots))]

    def cell(self, index: int, picked: set[str] | None = None) -> dict[str, Any]:
        """Cell ``index``: position, labels, parameters, state, progress, cost, task id, file, star."""
        slot = self._slots[index]
        src = slot.source
        picked = self._picked_now() if picked is None else picked
        if isinstance(src, Job):
            state, progress, cost = src.state.value, src.progress, src.cost_usd
            task_id, path, error, cbid, short = src.task_id, src.path, src.error, ledger_cbid(src), src.id
        else:
            state, progress, cost = src.state, 100, src.cost_usd or 0.0
            task_id, error, cbid, short = src.task_id, src.error, src.cbid, src.cbid[-6:]
            path = Path(src.path) if src.path else None
        has_image = JobState(state).has_image and path is not None
        return {
            "index": index,
            **{"x": slot.x, "y": slot.y, "z": slot.z, "repeat": slot.repeat},
            "labels": slot.labels,
            "params": _params_of(src),
            "state": state,
            "progress": progress,
            "cost": format_usd(cost),
            "task_id": task_id,
            "id": short,
            "path": _shown_path(path),
            "error": error,
            "has_image": has_image,
            "picked": has_image and cbid in picked,
        }

    def _picked_now(self) -> set[str]:
        try:
            return self._picked()
        except Exception:  # a locked ledger must not break the view
            log.debug("could not read the picks", exc_info=True)
            return set()

    # ---- pictures ------------------------------------------------------------------------

    def file_of(self, index: int) -> Path | None:
        """The image file of cell ``index`` (``None`` while it has none)."""
        return self._path(index)

    def _path(self, index: int) -> Path | None:
        src = self._slots[index].source
        if isinstance(src, Job):
            return src.path if src.state.has_image else None
        return Path(src.path) if src.path and JobState(src.state).has_image else None

    def thumbnail_url(self, index: int, long_side: int = THUMB_SIDE) -> str | None:
        """A JPEG ``data:`` URL of cell ``index`` (``None`` while it has no image); cached per file."""
        path = self._path(index)
        if path is None:
            return None
        key = (long_side, str(path))
        with self._lock:
            cached = self._thumbs.get(key)
        if cached is None:
            try:
                thumb = load_thumbnail(path, long_side)
            except (OSError, ValueError):
                return None
            buf = io.BytesIO()
            thumb.save(buf, format="JPEG", quality=85)
            cached = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
            with self._lock:
                self._thumbs[key] = cached
        return cached

    def full_url(self, index: int) -> str | None:
        """The full-size image as a ``data:`` URL (a very large file is sent scaled down)."""
        path = self._path(index)
        if path is None:
            return None
        try:
            data = path.read_bytes()
            if len(data) > FULL_MAX_BYTES:
                data = png_bytes(load_thumbnail(path, FULL_SIDE))
        except (OSError, ValueError):
            return None
        mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
        return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")

    def static_png(self) -> bytes:
        """The picture a notebook keeps when the view cannot run: the sweep's grid(s), or a contact sheet."""
        if self._static is not None:
            return encode_grid_png(self._static())
        thumbs, captions, stars = [], [], []
        picked = self._picked_now()
        for i, slot in enumerate(self._slots):
            cell = self.cell(i, picked)
            path = self._path(i)
            try:
                thumbs.append(load_thumbnail(path, 256) if path else Image.new("RGB", (256, 256), "#d0d0d0"))
            except (OSError, ValueError):
                thumbs.append(Image.new("RGB", (256, 256), "#d0d0d0"))
            captions.append(next(iter(slot.labels.values()), cell["id"]))
            stars.append(bool(cell["picked"]))
        if not thumbs:
            return png_bytes(Image.new("RGB", (64, 64), "white"))
        return png_bytes(stack([contact_sheet(thumbs, captions, stars, thumb=256, per_row=4)]))

    def alt_text(self) -> str:
        """A one-line description of the static picture (its alt text)."""
        done = sum(1 for i in range(len(self)) if self._path(i) is not None)
        return f"comparison of {len(self)} images ({done} done): {self.title}"

    # ---- acting on a cell ----------------------------------------------------------------

    def toggle_pick(self, index: int) -> bool:
        """Pick cell ``index`` (or unpick it if picked); its new state."""
        src = self._slots[index].source
        if self._path(index) is None:
            return False
        if isinstance(src, Job):  # a job picks itself through the session that made it
            if self.cell(index)["picked"]:
                src.unpick()
                return False
            src.pick()
            return True
        if self.session is None:
            return False
        if self.cell(index)["picked"]:
            self.session.unpick(src)
            return False
        self.session.pick(src)
        return True

    # ---- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        nx, ny, nz = self.shape()
        return f"<Comparison {self.title!r} {nx}×{ny}×{nz}, {len(self)} cells>"

    def _ipython_display_(self) -> None:
        if not _viewer:
            raise NotImplementedError  # IPython then falls back to _repr_mimebundle_
        _viewer[0](self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"image/png": self.static_png(), "text/plain": repr(self)}, {"image/png": {"alt": self.alt_text()}}


def compare_targets(session: Any, targets: Sequence[object], *, picked: bool = False, title: str = "") -> Comparison:
    """A comparison of what the user named: one sweep (its grid), or several results, rows or job ids.

    A sweep among several contributes all its images; ``picked=True`` adds every picked image of the
    session's output folder (newest pick first).
    """
    targets = [(session.sweep_of(t) or t) if isinstance(t, str) else t for t in targets]  # an earlier sweep's id too
    sweeps = [t for t in targets if callable(getattr(t, "compare", None)) and hasattr(t, "plan")]
    if len(targets) == 1 and sweeps and not picked:
        return sweeps[0].compare()  # type: ignore[attr-defined,no-any-return]
    items: list[Job | LedgerRow] = []
    for target in targets:
        if target in sweeps:
            items.extend(target.jobs)  # type: ignore[attr-defined]
        elif isinstance(target, (Job, LedgerRow)):
            items.append(target)
        else:
            items.append(session.find(target))
    if picked:
        items.extend(p.row for p in session.picks() if p.row is not None and p.row.path)
        title = title or f"{len(items)} picked image(s), newest pick first"
    if not items:
        raise ValueError("nothing to compare: name a sweep, some results or job ids, or pick images first")
    comparison = Comparison.of_items(items, title=title, picked=session.picked_cbids)
    comparison.session = session
    return comparison


def _shown_path(path: Path | None) -> str | None:
    """``path`` relative to the working directory when below it (the notebook's folder)."""
    if path is None:
        return None
    try:
        return os.path.relpath(path.resolve(), Path.cwd().resolve()) if path.is_absolute() else str(path)
    except (ValueError, OSError):
        return str(path)
