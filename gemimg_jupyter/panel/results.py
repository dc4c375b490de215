"""The panel's Generate and Cancel, the progress line and the result (image or labelled grid)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import GemimgError, Job, JobState, Result, format_usd, plural, png_bytes
from gemimg_jupyter.display import error_line, job_error_line
from gemimg_jupyter.panel.base import PanelBase
from gemimg_jupyter.panel.common import (
    TICK_SECONDS,
    Run,
    allow_label,
    button,
    cell_label,
    cell_mark,
    cell_style,
    heading,
    image,
    job_state_word,
    message_html,
    shown_error,
    shown_path,
)


class ResultsSection(PanelBase):
    """One run of Generate: submit, follow the jobs from their threads, show the image or grid, finish."""

    def _build_status(self) -> W.VBox:
        """The actions and status rows (fixed height), wired to the panel."""
        tip = "validate, then submit (cached images come back at once, cost $0)"
        self.generate_button = button(
            self._w, "gemimg-generate", "Generate", tip, icon="play", width="130px", button_style="primary"
        )
        tip = "cancel what is not submitted yet (submitted images are paid and still collected)"
        self.cancel_button = button(self._w, "gemimg-cancel", "Cancel", tip, icon="stop", width="110px", disabled=True)
        self.fresh = self._w(
            W.Checkbox,
            "gemimg-fresh",
            value=False,
            description="fresh samples",
            tooltip="ask for new images even when the store already has these (--fresh)",
            indent=False,
            layout=W.Layout(width="130px", margin="0 0 0 12px"),
        )
        self.confirm = self._w(
            W.Checkbox,
            "gemimg-confirm",
            value=False,
            description=allow_label(self.confirm_above_usd),
            indent=False,
            layout=W.Layout(width="170px", visibility="hidden"),
        )
        self.progress = self._w(
            W.IntProgress, "gemimg-progress", value=0, min=0, max=100, layout=W.Layout(width="45%", min_width="160px")
        )
        self.progress_text = self._w(
            W.Label, "gemimg-progress-text", value="idle", layout=W.Layout(flex="1 1 auto", margin="0 0 0 8px")
        )
        self.message = self._w(W.HTML, "gemimg-message", layout=W.Layout(width="100%", height="40px", overflow="auto"))
        status = W.VBox(
            [
                W.HBox(
                    [self.generate_button, self.cancel_button, self.fresh, self.confirm],
                    layout=W.Layout(flex_flow="row wrap", align_items="center"),
                ),
                W.HBox([self.progress, self.progress_text], layout=W.Layout(align_items="center", width="100%")),
                self.message,
            ],
            layout=W.Layout(width="100%", min_height="112px", margin="8px 0 0 0"),
        )
        status.add_class("gemimg-status")
        for control in (self.fresh, self.confirm):
            control.observe(self._on_change, names="value")
        self.generate_button.on_click(self._on_generate)
        self.cancel_button.on_click(self._on_cancel)
        return status

    def _build_results(self) -> list[W.Widget]:
        """The result image or grid, one button per request, and the detail view under them."""
        self.result_image = image(self._w, "gemimg-result-image", max_width="100%", max_height="560px", hidden=True)
        self.result_hint = self._w(
            W.HTML,
            "gemimg-result-hint",
            value=message_html("No result yet: write a prompt and press Generate.", "info"),
        )
        self.cells = self._w(
            W.GridBox, "gemimg-cells", layout=W.Layout(width="100%", grid_gap="4px", margin="4px 0 0 0")
        )
        return [heading("Result"), self.result_hint, self.result_image, self.cells, *self._build_detail()]

    def _on_generate(self, _button: Any = None) -> None:
        if self.busy:
            self._say("A run is still in progress: wait for it to finish or press Cancel.", "warn")
            return
        self.header.value = self._header_html()
        state = self.read_state()
        try:
            plan = self.plan(state)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
            return
        session = self.session
        run = Run(plan, state)
        self._run = run
        self._selected = 0 if run.kind == "single" else None
        self._prepare_results(run)
        self.generate_button.disabled = True
        self.cancel_button.disabled = False
        self._say(f"Submitting: {plan.summary()}", "info")
        listener = functools.partial(self._on_job, run)
        try:
            if run.kind == "single":
                result: Result = session.submit(
                    plan.cells[0].params, fresh=state["fresh"], listeners=[listener], parent=plan.parent
                )
            else:
                result = session.sweep(
                    state["prompt"],
                    plan=plan,
                    wait=False,
                    fresh=state["fresh"],
                    yes=state["confirm"],
                    confirm_above_usd=self.confirm_above_usd,
                    cell_size=self.cell_size,
                    listeners=[listener],
                    edit=self._edit_row,
                )
        except Exception as exc:  # whatever the session raised, the panel is free again (never stuck "busy")
            self._run = None
            self.generate_button.disabled = False
            self.cancel_button.disabled = True
            self.progress_text.value = "idle"
            self._say(shown_error(exc), "error")
            if not isinstance(exc, GemimgError):
                raise
            return
        with run.lock:
            run.result = result
        self._say(f"Running: {plan.summary()}", "info")  # submitted; the bar and the card follow the jobs
        self._refresh(run, heavy=True)
        if run.ended is None:
            threading.Thread(target=self._tick, args=(run,), name="gemimg-panel-tick", daemon=True).start()

    def _on_cancel(self, _button: Any = None) -> None:
        run = self._run
        if run is None or run.ended is not None:
            self._say("Nothing is running.", "info")
            return
        stopped, paid = run.cancel()
        text = f"Cancelled {plural(stopped, 'request')} that were not sent yet."
        if paid:
            text += f" {paid} already submitted (paid) will still be downloaded."
        self._say(text, "warn")
        self._refresh(run, heavy=False)

    def _on_job(self, run: Run, job: Job) -> None:
        if run is not self._run or self._closed:
            return
        if any(j is job for j in run.jobs):
            self._refresh(run, heavy=job.done())

    def _tick(self, run: Run) -> None:
        while not run.stop.wait(TICK_SECONDS):
            if self._closed or run is not self._run or run.ended is not None:
                return
            self._refresh(run, heavy=False)

    def _prepare_results(self, run: Run) -> None:
        """Main thread: build one button per request (their traits change later from threads)."""
        plan = run.plan
        old = self._cell_buttons
        buttons = []
        for i in range(plan.n_requests):
            tip = "click to see this image and its parameters"
            btn = button(self._w, "gemimg-cell", f"{cell_label(plan, i)} · queued", tip, height="28px")
            btn.layout.overflow = "hidden"
            btn.on_click(functools.partial(self._on_cell_click, run, i))
            buttons.append(btn)
        self._cell_buttons = buttons
        if run.kind == "single":
            self.cells.layout.grid_template_columns = "minmax(0, 260px)"
        else:
            nx = plan.shape[0] if plan.axes else min(plan.n_requests, 4)
            self.cells.layout.grid_template_columns = f"repeat({nx}, minmax(0, 1fr))"
        self.cells.children = buttons
        self._discard(old)
        self.result_image.layout.display = "none"
        self.result_hint.value = message_html("Working… the result appears here as it arrives.", "info")
        self.detail_image.layout.display = "none"
        self.detail_html.value = (
            message_html("Click a cell button above to see the full image and its parameters.", "info")
            if run.kind == "sweep"
            else ""
        )
        self.progress.value = 0
        self.progress.bar_style = ""

    def _refresh(self, run: Run, *, heavy: bool) -> None:
        """Bring the progress, cell buttons and (``heavy``) the images up to date."""
        with self._render_lock:
            if run is not self._run or self._closed:
                return
            jobs = run.jobs
            if not jobs:
                return
            for btn, job, i in zip(self._cell_buttons, jobs, range(len(jobs)), strict=False):
                btn.description = f"{cell_label(run.plan, i)} · {cell_mark(job)}"
                btn.button_style = cell_style(job.state)
                btn.tooltip = (
                    job_error_line(job)
                    if job.error
                    else f"{job.state.value}; click to see this image and its parameters"
                )
            total = sum(100 if job.done() else job.progress for job in jobs)
            self.progress.value = int(total / len(jobs))
            finished = run.finished()
            if finished and run.ended is None:
                run.ended = time.monotonic()
            self.progress_text.value = self._progress_line(run, jobs)
            if heavy or finished:
                self._render_images(run, jobs)
            elif self._selected is not None and self._selected < len(jobs):
                self._show_job(run, self._selected, image=False)  # the card moves with the bar
            if finished and not run.stop.is_set():
                run.stop.set()
                try:
                    self._finish(run, jobs)
                finally:
                    run.settled.set()

    def _progress_line(self, run: Run, jobs: Sequence[Job]) -> str:
        sweep = run.sweep
        if sweep is not None:
            return f"{sweep.progress_text()} · {run.elapsed:.1f} s"
        job = jobs[0]
        pct = "" if job.done() else f" {job.progress}%"
        return f"{job_state_word(job)}{pct} · {job.elapsed:.1f} s · {format_usd(job.cost_usd)}"

    def _render_images(self, run: Run, jobs: Sequence[Job]) -> None:
        if run.kind == "single":
            job = jobs[0]
            if job.state.has_image:
                try:
                    self.result_image.value = job.preview_png()
                    self.result_image.layout.display = None
                    self.result_hint.value = ""
                except (OSError, ValueError, GemimgError) as exc:
                    self.result_hint.value = message_html(f"the image could not be read: {shown_error(exc)}", "error")
            elif job.done():
                self.result_hint.value = message_html(f"No image: {job_error_line(job)}", "error")
        elif (sweep := run.sweep) is not None:
            try:
                self.result_image.value = png_bytes(sweep.grid())
                self.result_image.layout.display = None
                self.result_hint.value = ""
            except (OSError, ValueError, GemimgError) as exc:
                self.result_hint.value = message_html(f"the grid could not be drawn: {shown_error(exc)}", "error")
        if self._selected is not None and self._selected < len(jobs):
            self._show_job(run, self._selected)

    def _finish(self, run: Run, jobs: Sequence[Job]) -> None:
        counts = run.counts()  # the result's own counts: what %%gemimg shows for the same run
        ok, cached = counts["done"] + counts["cached"], counts["cached"]
        failed = [j for j in jobs if j.state.shown_as_failed]
        cancelled = sum(1 for j in jobs if j.state is JobState.CANCELLED)
        cost = format_usd(counts["cost_usd"])
        sweep = run.sweep
        if sweep is not None:
            sweep.wait(timeout=10)  # the core saves the grid PNG in the last job's thread
        if failed:
            text = f"{len(failed)} of {counts['total']} failed: {job_error_line(failed[0])}"
            if ok:
                text += f" ({ok} succeeded)"
            self._say(text, "error")
            self.progress.bar_style = "danger"
        elif cancelled:
            self._say(
                f"Cancelled: {cancelled} not sent, {plural(ok, 'image')} kept, {cost}, {run.elapsed:.1f} s.", "warn"
            )
            self.progress.bar_style = "warning"
        else:
            extra = f", {cached} from the cache" if cached else ""
            where = ""
            if sweep is not None and sweep.paths:
                where = f"; grid saved to {shown_path(sweep.paths[0])}"
            self._say(f"Done: {plural(ok, 'image')} in {run.elapsed:.1f} s, {cost}{extra}{where}.", "ok")
            self.progress.bar_style = "success"
        self.generate_button.disabled = False
        self.cancel_button.disabled = True
        self._refresh_history()
        if not self._closed:
            self._update_plan(self.read_state())  # what is cached has changed
