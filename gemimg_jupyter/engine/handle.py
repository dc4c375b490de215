"""The user's handle on one requested image: :class:`Job`.

A job is created by the runner (its per-job record, :class:`~.record.JobRecord`,
makes the handle) and changed only by it; the user reads it (``state``,
``progress``, ``image``, ``path``), waits on it (``result``, ``wait``),
listens to it (``add_listener``) and cancels it. The handle knows nothing of
the scheduler: it reaches the runner only through :class:`JobControl`
(cancel), and the session that made it only through :class:`JobOwner`
(edit, pick, lineage). :class:`Signals` is how the runner's changes reach
whoever waits or listens.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageOps

from gemimg_jupyter.domain.errors import GemimgError, JobError, JobTimeoutError
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.draw.images import png_bytes, thumbnail
from gemimg_jupyter.ledger.sidecar import export_copy, image_info
from gemimg_jupyter.ledger.thumbs import load_thumb

log = logging.getLogger(__name__)

Listener = Callable[["Job"], None]
PREVIEW_LONG_SIDE = 768


class JobOwner(Protocol):
    """What a job asks of the session that made it (implemented by ``api.session.Session``)."""

    def edit(self, target: object, prompt: str, **kwargs: Any) -> Job: ...

    def pick(self, target: object, *, note: str | None = None) -> object: ...

    def unpick(self, target: object) -> bool: ...

    def is_picked(self, target: object) -> bool: ...

    def lineage(self, target: object) -> Any: ...


class JobControl(Protocol):
    """What a job asks of the runner that runs it (implemented by :class:`~.record.JobRecord`)."""

    def cancel(self, drop: bool) -> bool:
        """Ask the job to stop; ``True`` if it will end ``cancelled`` (see :meth:`Job.cancel`)."""
        ...


class Signals:
    """How a job's changes reach its waiters and listeners: the handle waits and listens, the runner fires."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.changed = threading.Condition()
        self.listeners: list[Listener] = []

    def notify(self, job: Job, more: tuple[Listener, ...] | list[Listener] = ()) -> None:
        """Wake whoever waits on ``job``, then call its listeners and ``more`` (the runner's)."""
        with self.changed:
            self.changed.notify_all()
        for listener in (*self.listeners, *more):
            call_listener(listener, job)


class Job:
    """One requested image, running in the background.

    The object is the user's result handle: ``job.result()`` waits and
    returns the job, ``job.image`` is the ``PIL.Image``, ``job.path`` the PNG
    on disk, ``job.params`` what was asked for. ``owner``, ``control`` and
    ``signals`` are given by the runner (a handle made without them belongs
    to no session and no runner).
    """

    def __init__(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        sweep_id: str | None = None,
        cbid: str | None = None,
        parent: Mapping[str, Any] | None = None,
        owner: JobOwner | None = None,
        control: JobControl | None = None,
        signals: Signals | None = None,
    ) -> None:
        self.params = params
        #: the image this one edits (``cbid``, ``key``, ``sha256``), recorded in the ledger and the PNG
        self.parent: dict[str, Any] | None = dict(parent) if parent else None
        self.repeat = repeat
        self.sweep_id = sweep_id
        self.key = params.cache_key(repeat)
        self.cbid = cbid or f"gemimg-{uuid.uuid4().hex}"
        self.id = self.cbid[-6:]
        self.state = JobState.QUEUED
        self.progress = 0
        self.task_id: str | None = None
        self.error: str | None = None
        self.exception: GemimgError | None = None
        self.path: Path | None = None
        self.cost_usd = 0.0
        #: accepted by the gateway and then unreachable (it ended ``lost``): paid, though it has no task id
        self.paid_lost = False
        self.created = time.time()
        self.submitted_at: float | None = None
        self.finished_at: float | None = None
        self.expires_at: int | None = None
        self.provenance: dict[str, Any] = {}
        #: this job's own notes (a size the gateway did not keep …): shown in its status line, never printed elsewhere
        self.notes: list[str] = []
        #: the short id of the job whose image this edit waits for (``None`` once it landed, or for any other job)
        self.waiting_for: str | None = None
        self._owner = owner  # the session that made it (for edit, pick, lineage)
        self._control = control  # the runner's record of it (for cancel)
        self._signals = signals or Signals()
        self._image: Image.Image | None = None
        self._preview: bytes | None = None
        self._thumbs: dict[int, Image.Image] = {}

    # ---- the result handle ----------------------------------------------------------------

    @property
    def cached(self) -> bool:
        """True when the image came from the store without a request."""
        return self.state is JobState.CACHED

    @property
    def paid(self) -> bool:
        """True when this job paid for its request: the gateway gave it a task id, or accepted it and lost it."""
        return self.task_id is not None or self.paid_lost

    @property
    def elapsed(self) -> float:
        """Seconds since the job was created (until it finished)."""
        return (self.finished_at or time.time()) - self.created

    def done(self) -> bool:
        """True once the job is in a terminal state."""
        return self._signals.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; ``False`` if ``timeout`` passed first."""
        return self._signals.done.wait(timeout)

    def wait_for(self, state: JobState | str, timeout: float) -> bool:
        """Block until the job is in ``state`` (``True``), or it ended elsewhere or ``timeout`` passed (``False``)."""
        target = JobState(state)
        signals = self._signals
        with signals.changed:
            signals.changed.wait_for(lambda: self.state is target or signals.done.is_set(), timeout)
        return self.state is target

    def result(self, timeout: float | None = None) -> Job:
        """Wait for the image and return this job; raise the job's error if it has none."""
        if not self._signals.done.wait(timeout):
            raise JobTimeoutError(
                f"job {self.id} is still {self.state.value} after {timeout:g}s; it keeps running in the background",
                task_id=self.task_id,
            )
        if not self.state.has_image:
            raise self.exception or JobError(f"job {self.id} ended {self.state.value}", task_id=self.task_id)
        return self

    @property
    def image(self) -> Image.Image:
        """The full-size image as it is meant to be seen (loaded from disk on first use).

        Its EXIF orientation is applied (a photo stored turned is shown upright; the tag is
        dropped from the copy); the file on disk stays the gateway's bytes. Its mode (CMYK,
        palette, 16-bit, alpha) is kept.
        """
        if not self.state.has_image or self.path is None:
            raise JobError(f"job {self.id} has no image yet ({self.state.value}); call .result() to wait for it")
        if self._image is None:
            try:
                with Image.open(self.path) as img:
                    img.load()
                    self._image = ImageOps.exif_transpose(img) or img
            except FileNotFoundError:
                raise JobError(
                    f"the image of job {self.id} is no longer at {self.path} (moved or deleted)",
                    task_id=self.task_id,
                    hint="put the file back, or run the cell again (a cache hit when the file is found)",
                ) from None
        return self._image

    @property
    def suspect(self) -> str | None:
        """Why this paid image looks unusable (``all black``, ``one flat colour …``), or ``None``; nothing is deleted."""
        facts = self.provenance.get("file")
        reason = facts.get("suspect") if isinstance(facts, dict) else None
        return str(reason) if reason else None

    def info(self) -> dict[str, Any]:
        """The image's provenance and file facts (hash, format, content credentials, suspect) from its sidecar."""
        return image_info(self._stored_path())

    def export(self, path: str | Path, *, embed: bool = True) -> Path:
        """Write a copy to ``path`` (extension made the file's format's), with ``parameters`` and our JSON
        embedded when ``embed``; the stored original is never changed. Returns the copy's path."""
        return export_copy(self._stored_path(), path, embed=embed)

    def _stored_path(self) -> Path:
        if not self.state.has_image or self.path is None:
            raise JobError(f"job {self.id} has no image yet ({self.state.value}); call .result() to wait for it")
        return Path(self.path)

    def thumbnail(self, long_side: int = 320, *, keep: bool = True) -> Image.Image:
        """A small copy for grids and galleries, without keeping the full image in memory.

        ``keep=False`` does not cache it (the preview only needs its PNG bytes).
        """
        cached = self._thumbs.get(long_side)
        if cached is None:
            if self._image is not None:
                cached = thumbnail(self._image, long_side)
            else:
                if not self.state.has_image or self.path is None:
                    raise JobError(f"job {self.id} has no image yet ({self.state.value})")
                cached = load_thumb(self.path, long_side)  # the file made when it landed, if big enough
            if keep:
                self._thumbs[long_side] = cached
        return cached

    def preview_png(self, long_side: int = PREVIEW_LONG_SIDE) -> bytes:
        """A notebook-sized PNG (full-size images stay on disk)."""
        if self._preview is None:
            self._preview = png_bytes(self.thumbnail(long_side, keep=False))
        return self._preview

    def cancel(self, *, drop: bool = False) -> bool:
        """Cancel: stops the job if it was not submitted yet.

        A submitted task is paid for, so it is still downloaded unless
        ``drop=True``. Returns ``True`` if the job will end ``cancelled``.
        """
        if self._control is None:  # no runner runs it: nothing to stop
            return False
        return self._control.cancel(drop)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(job)`` on every change of state or progress (from a worker thread)."""
        self._signals.listeners.append(listener)
        if self._signals.done.is_set():
            call_listener(listener, self)

    def describe(self) -> dict[str, Any]:
        """One flat row for a table (``Session.jobs()``, ``SweepResult.table()``)."""
        return {
            "id": self.id,
            "state": self.state.value,
            "progress": self.progress,
            "prompt": self.params.prompt,
            "model": self.params.model,
            "size": self.params.size,
            "resolution": self.params.resolution,
            "temperature": self.params.temperature,
            "top_p": self.params.top_p,
            "controls": self.params.controls_text,
            "repeat": self.repeat,
            "task_id": self.task_id,
            "cost_usd": round(self.cost_usd, 4),
            "elapsed_s": round(self.elapsed, 1),
            "path": str(self.path) if self.path else None,
            "error": self.error,
            "suspect": self.suspect,
        }

    # ---- iterate and pick (docs/editing.md) ---------------------------------------------

    def edit(self, prompt: str, **params: Any) -> Job:
        """A new image made from this one: it becomes the first reference, and the new result names it as parent.

        Takes the keyword arguments of ``Session.generate`` (``size``, more
        ``reference_images``, ``wait`` …); an edit asked for again is a cache hit.
        """
        return self._session().edit(self, prompt, **params)

    def pick(self, note: str | None = None) -> Job:
        """Mark this image as a favourite (kept in the ledger and written into the PNG's provenance)."""
        self._session().pick(self, note=note)
        return self

    def unpick(self) -> Job:
        """Remove the mark :meth:`pick` set."""
        self._session().unpick(self)
        return self

    @property
    def picked(self) -> bool:
        """True when this image is picked (in the ledger, so it survives restarts)."""
        return self._session().is_picked(self)

    def lineage(self) -> Any:
        """The chain of edits from the root image to this one (``lineage.Lineage``)."""
        return self._session().lineage(self)

    def _session(self) -> JobOwner:
        if self._owner is None:
            raise JobError(f"job {self.id} belongs to no session; use Session.pick/edit with it")
        return self._owner

    def __repr__(self) -> str:
        extra = f", path={str(self.path)!r}" if self.path else (f", error={self.error!r}" if self.error else "")
        return f"<Job {self.id} {self.state.value} {self.params.size} {self.params.prompt[:40]!r}{extra}>"

    def _repr_png_(self) -> bytes | None:
        return self.preview_png() if self.state.has_image else None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = {"text/plain": repr(self)}
        meta: dict[str, Any] = {}
        if self.state.has_image:
            data["image/png"] = self.preview_png()
            meta["image/png"] = {"gemimg": self.provenance}
        return data, meta


def call_listener(listener: Listener, job: Job) -> None:
    """Call one listener; its failure is logged and never reaches the job."""
    try:
        listener(job)
    except Exception:
        log.exception("a gemimg listener failed")
