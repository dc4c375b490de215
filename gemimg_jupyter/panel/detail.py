"""The panel's detail view: one image with its parameters, "Edit this image" and the pick toggle."""

from __future__ import annotations

import contextlib
import html
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import GemimgError, Job, LedgerRow, format_usd
from gemimg_jupyter.display import error_line, job_error_line
from gemimg_jupyter.panel.base import PanelBase
from gemimg_jupyter.panel.common import (
    DETAIL_LONG_SIDE,
    Run,
    button,
    cell_label,
    image,
    job_state_word,
    params_html,
    shown_path,
)


class DetailSection(PanelBase):
    """The full image and parameters of the chosen request or history image; edit and pick it."""

    def _build_detail(self) -> list[W.Widget]:
        """The detail view and its actions, wired to the panel."""
        self.detail_image = image(
            self._w, "gemimg-detail-image", max_width="360px", max_height="360px", margin="0 12px 0 0", hidden=True
        )
        self.detail_html = self._w(W.HTML, "gemimg-detail-params", layout=W.Layout(flex="1 1 240px"))
        tip = "make this image the first reference of the next run, and write what to change"
        self.detail_edit = button(self._w, "gemimg-detail-edit", "Edit this image", tip, icon="pencil", hidden=True)
        tip = "keep this image as a favourite (a star in grids and the history; lasts across restarts)"
        self.detail_pick = button(self._w, "gemimg-detail-pick", "☆ pick", tip, toggle=True, hidden=True)
        self.detail_edit.on_click(self._on_edit_click)
        self.detail_pick.observe(self._on_pick_toggle, names="value")
        detail = W.HBox([self.detail_image, self.detail_html], layout=W.Layout(flex_flow="row wrap", width="100%"))
        detail_actions = W.HBox([self.detail_edit, self.detail_pick], layout=W.Layout(flex_flow="row wrap"))
        return [detail, detail_actions]

    def _on_cell_click(self, run: Run, index: int, _button: Any = None) -> None:
        if run is not self._run:
            return
        self._selected = index
        self._show_job(run, index)

    def _show_job(self, run: Run, index: int, *, image: bool = True) -> None:
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
        self._set_detail_row(job)
        if not image:
            return
        if job.state.has_image and run.kind == "sweep":
            try:
                self.detail_image.value = job.preview_png(DETAIL_LONG_SIDE)
                self.detail_image.layout.display = None
            except (OSError, ValueError, GemimgError):
                self.detail_image.layout.display = "none"
        else:
            self.detail_image.layout.display = "none"

    def _set_detail_row(self, target: Job | LedgerRow | None) -> None:
        """Show "Edit this image" and the pick toggle for a finished image, hide them otherwise."""
        row: LedgerRow | None = None
        if isinstance(target, LedgerRow):
            row = target
        elif target is not None and target.state.has_image:
            with contextlib.suppress(GemimgError):
                row = self.session.find(target)
        self._detail_row = row
        shown = None if row is not None and row.state == "done" else "none"
        self.detail_edit.layout.display = shown
        self.detail_pick.layout.display = shown
        picked = row is not None and self.session.is_picked(row)
        self._updating = True
        try:
            self.detail_pick.value = picked
            self.detail_pick.description = "★ picked" if picked else "☆ pick"
        finally:
            self._updating = False

    def _on_edit_click(self, _button: Any = None) -> None:
        if self._detail_row is None:
            return
        try:
            self.set_edit(self._detail_row)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
            return
        self.prompt.value = ""
        self.prompt.placeholder = "what to change, e.g. make the background a night sky"
        self.prompt.focus()

    def _on_pick_toggle(self, change: Any) -> None:
        if self._updating or self._detail_row is None:
            return
        row = self._detail_row
        try:
            if change["new"]:
                self.session.pick(row)
            else:
                self.session.unpick(row)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
        self._set_detail_row(row)
        self._refresh_history()
        run = self._run
        if run is not None and run.sweep is not None:
            self._refresh(run, heavy=True)  # the grid shows the star
