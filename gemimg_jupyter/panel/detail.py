"""The panel's detail view: one image with its parameters, "Edit this image" and the pick toggle."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import GemimgError, Job, LedgerRow, format_usd
from gemimg_jupyter.display import error_line, job_error_line
from gemimg_jupyter.panel.common import (
    DETAIL_LONG_SIDE,
    Run,
    button,
    cell_label,
    image,
    job_state_word,
    message_html,
    params_html,
    png_thumb,
    shown_path,
)
from gemimg_jupyter.panel.state import PanelState


class DetailSection:
    """The full image and parameters of the chosen request or history image; edit and pick it.

    Parameters
    ----------
    state : PanelState
        The panel's shared state (the session, the ``updating`` flag).
    say : callable
        The panel's message line (a pick the core refused is said there).
    on_edit : callable
        "Edit this image" was pressed on this stored image.
    on_pick : callable
        The image shown was picked or unpicked (the history and the grid show the star).
    """

    def __init__(
        self,
        state: PanelState,
        *,
        say: Callable[[str, str], None],
        on_edit: Callable[[LedgerRow], None],
        on_pick: Callable[[], None],
    ) -> None:
        self._state = state
        self._say = say
        self._edit = on_edit
        self._picked = on_pick
        self._row: LedgerRow | None = None  # the stored image shown, if any (for edit and pick)
        self._shown_job: Job | None = None  # the run's job whose image is on screen, if any
        make = state.widgets.make
        self.detail_image = image(
            make, "gemimg-detail-image", max_width="360px", max_height="360px", margin="0 12px 0 0", hidden=True
        )
        self.detail_html = make(W.HTML, "gemimg-detail-params", layout=W.Layout(flex="1 1 240px"))
        tip = "make this image the first reference of the next run, and write what to change"
        self.detail_edit = button(make, "gemimg-detail-edit", "Edit this image", tip, icon="pencil", hidden=True)
        tip = "keep this image as a favourite (a star in grids and the history; lasts across restarts)"
        self.detail_pick = button(make, "gemimg-detail-pick", "☆ pick", tip, toggle=True, hidden=True)
        self.detail_edit.on_click(self._on_edit_click)
        self.detail_pick.observe(self._on_pick_toggle, names="value")
        detail = W.HBox([self.detail_image, self.detail_html], layout=W.Layout(flex_flow="row wrap", width="100%"))
        actions = W.HBox([self.detail_edit, self.detail_pick], layout=W.Layout(flex_flow="row wrap"))
        self.widgets: list[W.Widget] = [detail, actions]

    def clear(self, *, sweep: bool) -> None:
        """A new run began: no image yet (so nothing to edit or pick); a sweep's says to click a cell."""
        self.detail_image.layout.display = "none"
        self._shown_job = None
        self._set_row(None)
        self.detail_html.value = (
            message_html("Click a cell button above to see the full image and its parameters.", "info") if sweep else ""
        )

    def show_job(self, run: Run, index: int, *, image: bool = True) -> None:
        """The card of request ``index`` of ``run`` (and, unless ``image`` is false, a sweep's full image)."""
        with run.lock:
            if index >= len(run.jobs):
                return
            job = run.jobs[index]
        extra: list[tuple[str, str]] = [("state", job_state_word(job))]
        if run.plan.repeats > 1:
            extra.append(("repeat", str(job.repeat + 1)))
        extra += [("cost", format_usd(job.cost_usd)), ("time", f"{job.elapsed:.1f} s")]
        if job.task_id:
            extra.append(("task", job.task_id))
        if job.path:
            extra.append(("file", shown_path(job.path)))
        if job.error:
            extra.append(("error", job_error_line(job)))
        self.detail_html.value = f"<div><b>{html.escape(cell_label(run.plan, index))}</b></div>" + params_html(
            job.params.as_dict(), extra
        )
        if not image:
            # the card moves with the bar; edit and pick stay on the image shown (or hidden while there is none)
            self._set_row(job if job.state.has_image and self._shows(job) else None)
            return
        shown = job.state.has_image  # a single image is the result image above; a sweep's goes here
        if job.state.has_image and run.kind == "sweep":
            try:
                self.detail_image.value = job.preview_png(DETAIL_LONG_SIDE)
                self.detail_image.layout.display = None
            except (OSError, ValueError, GemimgError):
                self.detail_image.layout.display = "none"
                shown = False
        else:
            self.detail_image.layout.display = "none"
        self._shown_job = job if shown else None
        self._set_row(job if shown else None)

    def _shows(self, job: Job) -> bool:
        """True when the image on screen is ``job``'s (edit and pick act on it)."""
        return self._shown_job is job

    def show_row(self, row: LedgerRow) -> None:
        """A stored image (a history tile's): its parameters, its file and the image."""
        extra = [("state", row.state), ("file", shown_path(str(row.path)))]
        if row.task_id:
            extra.append(("task", row.task_id))
        self.detail_html.value = "<div><b>from the history</b></div>" + params_html(row.params, extra)
        self._shown_job = None
        try:
            self.detail_image.value = png_thumb(str(row.path), DETAIL_LONG_SIDE)
            self.detail_image.layout.display = None
        except (OSError, ValueError):
            self.detail_image.layout.display = "none"
            self._set_row(None)  # no image shown: nothing to edit or pick
            return
        self._set_row(row)

    def _set_row(self, target: Job | LedgerRow | None) -> None:
        """Show "Edit this image" and the pick toggle for a finished image, hide them otherwise."""
        row: LedgerRow | None = None
        if isinstance(target, LedgerRow):
            row = target
        elif target is not None and target.state.has_image:
            with contextlib.suppress(GemimgError):
                row = self._state.session.find(target)
        self._row = row
        shown = None if row is not None and row.state == "done" else "none"
        self.detail_edit.layout.display = shown
        self.detail_pick.layout.display = shown
        picked = row is not None and self._state.session.is_picked(row)
        self._state.updating = True
        try:
            self.detail_pick.value = picked
            self.detail_pick.description = "★ picked" if picked else "☆ pick"
        finally:
            self._state.updating = False

    def _on_edit_click(self, _button: Any = None) -> None:
        if self._row is not None:
            self._edit(self._row)

    def _on_pick_toggle(self, change: Any) -> None:
        if self._state.updating or self._row is None:
            return
        row = self._row
        session = self._state.session
        try:
            if change["new"]:
                session.pick(row)
            else:
                session.unpick(row)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
        self._set_row(row)
        self._picked()
