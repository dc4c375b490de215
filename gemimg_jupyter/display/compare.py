"""The comparison view in a notebook: :class:`CompareWidget` (an ``anywidget``) and :func:`show_comparison`.

The widget's front end is ``gemimg_jupyter/static/compare.js`` and ``compare.css``, shipped in the
package (no build step, no network); the offline report runs the same two files (see
:mod:`gemimg_jupyter.api.report`). Its synced state is small: the header (title, axes, shape) and one
JSON dict per cell; thumbnails and full-size images travel as custom messages when the page asks
for them (only the tiles on screen ask), so a view of a few hundred cells stays light.

While the cells' jobs run, their listeners (on the runner's threads) mark the view dirty and one
timer pushes the new cells at most four times a second; ipywidgets sends state over the comm,
whose messages ipykernel queues through its thread-safe IOPub socket, so setting a trait from
another thread is safe (the live views of :mod:`.live` already publish from there).

A saved notebook has no widget state (JupyterLab does not save it by default), so
:func:`show_comparison` writes two outputs: first the static picture (the sweep's grid, one
``text/html`` output with a single inline PNG and its alt text, updated in place when the jobs end),
then the widget. A small stylesheet in the static output hides whichever of the two should not
show: the picture while the live view renders, the widget's "model not found" box when there is no
kernel (the ``:has()`` selector, Chromium 105+, Firefox 121+, Safari 15.4+).
"""

from __future__ import annotations

import base64
import html
import threading
import uuid
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from IPython.display import display, update_display

from gemimg_jupyter.api import Comparison, Job

__all__ = ["STATIC_CSS", "CompareWidget", "show_comparison", "static_bundle"]

#: The front-end files, shared with the offline report (they sit beside the subpackages, not in a face).
STATIC = Path(__file__).resolve().parent.parent / "static"
#: Pushes of the cells while jobs run, at most one per this many seconds.
PUSH_INTERVAL = 0.25
#: Hides the static picture while the live view shows, and the dead widget box when it cannot.
STATIC_CSS = (
    ".jp-OutputArea-child:has(.gemimg-compare-static):has(+ .jp-OutputArea-child .gemimg-compare){display:none}"
    ".jp-OutputArea-child:has(.gemimg-compare-static) + .jp-OutputArea-child:not(:has(.gemimg-compare)){display:none}"
    ".gemimg-compare-static img{max-width:100%;height:auto}"
    ".gemimg-compare-static p{font-size:12px;margin:2px 0}"
)


def static_bundle(comparison: Comparison) -> dict[str, Any]:
    """The saved notebook's picture of a comparison: one ``text/html`` (the PNG once, with alt text) and text."""
    png = base64.b64encode(comparison.static_png()).decode("ascii")
    alt = html.escape(comparison.alt_text(), quote=True)
    markup = (
        f'<div class="gemimg-compare-static"><style>{STATIC_CSS}</style>'
        f'<img alt="{alt}" src="data:image/png;base64,{png}"/>'
        "<p>the interactive comparison view needs a running kernel: re-run this cell "
        "(finished images come from the cache for $0)</p></div>"
    )
    return {"text/html": markup, "text/plain": repr(comparison)}


class CompareWidget(anywidget.AnyWidget):
    """The interactive comparison view of one :class:`~gemimg_jupyter.api.Comparison`."""

    _esm = STATIC / "compare.js"
    _css = STATIC / "compare.css"
    header = traitlets.Dict().tag(sync=True)
    cells: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    progress = traitlets.Unicode("").tag(sync=True)

    def __init__(self, comparison: Comparison, **kwargs: Any) -> None:
        super().__init__(header=comparison.header(), cells=comparison.cells(), **kwargs)
        self.comparison = comparison
        self.static_id = f"gemimg-compare-{uuid.uuid4().hex}"
        self._push_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._finished = threading.Event()
        self.on_msg(self._on_front_end)
        jobs = comparison.jobs()
        if not jobs or all(j.done() for j in jobs):
            self._finished.set()
        for job in jobs:
            job.add_listener(self._on_job)

    # ---- from the page ---------------------------------------------------------------------

    def _on_front_end(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        n = len(self.comparison)
        if kind == "thumbs":
            wanted = [i for i in content.get("indexes", []) if isinstance(i, int) and 0 <= i < n]
            self.send({"type": "thumbs", "items": {str(i): self.comparison.thumbnail_url(i) for i in wanted}})
        elif kind == "full" and isinstance(content.get("index"), int) and 0 <= content["index"] < n:
            index = content["index"]
            self.send({"type": "full", "index": index, "url": self.comparison.full_url(index)})
        elif kind == "pick" and isinstance(content.get("index"), int) and 0 <= content["index"] < n:
            self.comparison.toggle_pick(content["index"])
            self.push()

    # ---- from the jobs ---------------------------------------------------------------------

    def _on_job(self, job: Job) -> None:
        if job.done() and all(j.done() for j in self.comparison.jobs()):
            self.push()
            if not self._finished.is_set():
                self._finished.set()
                self.refresh_static()
            return
        with self._push_lock:
            if self._timer is None:
                self._timer = threading.Timer(PUSH_INTERVAL, self.push)
                self._timer.daemon = True
                self._timer.start()

    def push(self) -> None:
        """Send the cells as they are now (the page redraws the tiles that changed)."""
        with self._push_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            cells = self.comparison.cells()
            done = sum(1 for c in cells if c["has_image"])
            self.progress = "" if done == len(cells) else "running"
            self.cells = cells

    def refresh_static(self) -> None:
        """Draw the saved notebook's picture again (the jobs have ended)."""
        update_display(static_bundle(self.comparison), display_id=self.static_id, raw=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle: Any = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = repr(self.comparison)
        return bundle


def show_comparison(comparison: Comparison) -> CompareWidget:
    """Show a comparison: its static picture (for a saved notebook), then the live view; returns the view."""
    view = comparison.view if isinstance(comparison.view, CompareWidget) else CompareWidget(comparison)
    comparison.view = view
    display(static_bundle(comparison), display_id=view.static_id, raw=True)
    display(view)
    return view
