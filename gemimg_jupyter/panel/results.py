"""The panel's Generate and Cancel, the progress line and the result (image or labelled grid)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import GemimgError, Job, JobState, Result, SweepPlan, format_usd, plural, png_bytes
from gemimg_jupyter.display import error_line, job_error_line
from gemimg_jupyter.display.compare import CompareWidget
from gemimg_jupyter.panel.common import (
    GRID_REDRAW_SECONDS,
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
from gemimg_jupyter.panel.detail import DetailSection
from gemimg_jupyter.panel.state import MessageLine, PanelState


class ResultsSection:
    """One run of Generate: submit, follow the jobs from their threads, show the image or grid, finish.

    Parameters
    ----------
    state : PanelState
        The panel's shared state: this section sets its ``run`` and ``selected``.
    messages : MessageLine
        The message line (laid out in the status rows here).
    detail : DetailSection
        The detail view, which shows the chosen request's card.
    read_state : callable
        The panel's controls as plain values (:meth:`~gemimg_jupyter.panel.Panel.read_state`).
    plan : callable
        The validated plan for such values (raises the core's errors).
    on_change : callable
        Called when "fresh samples" or "allow" changed.
    on_start : callable
        Called when Generate was pressed, before anything is planned (the panel refreshes its header).
    on_finished : callable
        Called when a run has ended and its outcome is shown (the history and the plan line change).
    """

    def __init__(
        self,
        state: PanelState,
        messages: MessageLine,
        detail: DetailSection,
        *,
        read_state: Callable[[], dict[str, Any]],
        plan: Callable[[Mapping[str, Any]], SweepPlan],
        on_change: Callable[[], None],
        on_start: Callable[[], None],
        on_finished: Callable[[], None],
    ) -> None:
        self._state = state
        self._make = state.widgets.make
        self._messages = messages
        self._say = messages.say
        self._detail = detail
        self._read_state = read_state
        self._plan = plan
        self._changed = on_change
        self._started = on_start
        self._finished = on_finished
        self._render_lock = threading.RLock()
        self._cell_buttons: list[W.Button] = []
        self._drawn_marks: tuple[int, ...] = ()  # the jobs' progress when the grid was last drawn
        self._next_draw = 0.0  # monotonic time before which a tick does not redraw the grid
        self.status = self._build_status()
        self.widgets = self._build_results()

    def _build_status(self) -> W.VBox:
        """The actions and status rows (fixed height)."""
        tip = "validate, then submit (cached images come back at once, cost $0)"
        self.generate_button = button(
            self._make, "gemimg-generate", "Generate", tip, icon="play", width="130px", button_style="primary"
        )
        tip = "cancel what is not submitted yet (submitted images are paid and still collected)"
        self.cancel_button = button(
            self._make, "gemimg-cancel", "Cancel", tip, icon="stop", width="110px", disabled=True
        )
        self.fresh = self._make(
            W.Checkbox,
            "gemimg-fresh",
            value=False,
            description="fresh samples",
            tooltip="ask for new images even when the store already has these (--fresh)",
            indent=False,
            layout=W.Layout(width="130px", margin="0 0 0 12px"),
        )
        self.confirm = self._make(
            W.Checkbox,
            "gemimg-confirm",
            value=False,
            description=allow_label(self._state.confirm_above_usd),
            indent=False,
            layout=W.Layout(width="170px", visibility="hidden"),
        )
        self.progress = self._make(
            W.IntProgress, "gemimg-progress", value=0, min=0, max=100, layout=W.Layout(width="45%", min_width="160px")
        )
        self.progress_text = self._make(
            W.Label, "gemimg-progress-text", value="idle", layout=W.Layout(flex="1 1 auto", margin="0 0 0 8px")
        )
        self.generate_note = self._make(
            W.HTML, "gemimg-generate-note", layout=W.Layout(display="none", flex="1 1 220px", margin="0 0 0 8px")
        )
        status = W.VBox(
            [
                W.HBox(
                    [self.generate_button, self.cancel_button, self.fresh, self.confirm, self.generate_note],
                    layout=W.Layout(flex_flow="row wrap", align_items="center"),
                ),
                W.HBox([self.progress, self.progress_text], layout=W.Layout(align_items="center", width="100%")),
                self._messages.message,
            ],
            layout=W.Layout(width="100%", min_height="112px", margin="8px 0 0 0"),
        )
        status.add_class("gemimg-status")
        for control in (self.fresh, self.confirm):
            control.observe(lambda _change: self._changed(), names="value")
        self.generate_button.on_click(self._on_generate)
        self.cancel_button.on_click(self._on_cancel)
        return status

    def _build_results(self) -> list[W.Widget]:
        """The result image or grid and one button per request (the detail view goes under them)."""
        self.result_image = image(self._make, "gemimg-result-image", max_width="100%", max_height="560px", hidden=True)
        self.result_hint = self._make(
            W.HTML,
            "gemimg-result-hint",
            value=message_html("No result yet: write a prompt and press Generate.", "info"),
        )
        self.cells = self._make(
            W.GridBox, "gemimg-cells", layout=W.Layout(width="100%", grid_gap="4px", margin="4px 0 0 0")
        )
        tip = "open this sweep in the comparison view: full-size images, side by side, swipe, zoom"
        self.compare_button = button(
            self._make, "gemimg-compare-open", "Compare", tip, icon="columns", width="130px", hidden=True
        )
        self.compare_button.on_click(self._on_compare)
        #: Holds the comparison view of the current sweep once "Compare" was pressed.
        self.compare_box = self._make(W.VBox, "gemimg-compare-box", layout=W.Layout(width="100%"))
        return [
            heading("Result"),
            self.result_hint,
            self.result_image,
            self.compare_button,
            self.cells,
            self.compare_box,
        ]

    def show_generate_note(self, text: str) -> None:
        """Say next to Generate what it will do when that is not what it looks like (empty: nothing to say)."""
        self.generate_note.value = message_html(text, "warn") if text else ""
        self.generate_note.layout.display = None if text else "none"

    def _on_compare(self, _button: Any = None) -> None:
        """Open the comparison view of the current sweep under the grid (it fills in while the sweep runs)."""
        run = self._state.run
        sweep = run.sweep if run is not None else None
        if sweep is None:
            self._say("Compare needs a sweep: set the X axis and press Generate.", "info")
            return
        old = list(self.compare_box.children)
        self.compare_box.children = [CompareWidget(sweep.compare())]
        for view in old:
            view.close()

    def show_confirm(self, needed: bool) -> None:
        """Show the "allow" box when the plan needs it (and keep it shown while it is ticked)."""
        self.confirm.layout.visibility = "visible" if needed or self.confirm.value else "hidden"

    def _on_generate(self, _button: Any = None) -> None:
        if self._state.busy:
            self._say("A run is still in progress: wait for it to finish or press Cancel.", "warn")
            return
        self._started()
        state = self._read_state()
        try:
            plan = self._plan(state)
        except GemimgError as exc:
            self._say(error_line(exc), "error")
            return
        session = self._state.session
        run = Run(plan, state)
        self._state.run = run
        self._state.selected = 0 if run.kind == "single" else None
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
                    confirm_above_usd=self._state.confirm_above_usd,
                    cell_size=self._state.cell_size,
                    listeners=[listener],
                    edit=self._state.edit_row,
                )
        except Exception as exc:  # whatever the session raised, the panel is free again (never stuck "busy")
            self._state.run = None
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
        self.refresh(run, heavy=True)
        if run.ended is None:
            threading.Thread(target=self._tick, args=(run,), name="gemimg-panel-tick", daemon=True).start()

    def _on_cancel(self, _button: Any = None) -> None:
        run = self._state.run
        if run is None or run.ended is not None:
            self._say("Nothing is running.", "info")
            return
        stopped, paid = run.cancel()
        text = f"Cancelled {plural(stopped, 'request')} that were not sent yet."
        if paid:
            text += f" {paid} already submitted (paid) will still be downloaded."
        self._say(text, "warn")
        self.refresh(run, heavy=False)

    def _on_job(self, run: Run, job: Job) -> None:
        if run is not self._state.run or self._state.closed:
            return
        if any(j is job for j in run.jobs):
            self.refresh(run, heavy=job.done())

    def _tick(self, run: Run) -> None:
        while not run.stop.wait(TICK_SECONDS):
            if self._state.closed or run is not self._state.run or run.ended is not None:
                return
            self.refresh(run, heavy=False)

    def _prepare_results(self, run: Run) -> None:
        """Main thread: build one button per request (their traits change later from threads)."""
        plan = run.plan
        old = self._cell_buttons
        buttons = []
        for i in range(plan.n_requests):
            tip = "click to see this image and its parameters"
            btn = button(self._make, "gemimg-cell", f"{cell_label(plan, i)} · queued", tip, height="28px")
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
        self._state.widgets.discard(old)
        for view in self.compare_box.children:
            view.close()
        self.compare_box.children = []
        self.result_image.layout.display = "none"
        # a sweep's grid takes the panel's width (its labels stay readable); one image stays within 560 px
        self.result_image.layout.max_height = "560px" if run.kind == "single" else None
        self.result_image.layout.width = "auto" if run.kind == "single" else "100%"
        self.compare_button.layout.display = "none" if run.kind == "single" else None
        self.result_hint.value = message_html("Working… the result appears here as it arrives.", "info")
        self._detail.clear(sweep=run.kind == "sweep")
        self.progress.value = 0
        self.progress.bar_style = ""

    def _on_cell_click(self, run: Run, index: int, _button: Any = None) -> None:
        if run is not self._state.run:
            return
        self._state.selected = index
        self._detail.show_job(run, index)

    def refresh(self, run: Run, *, heavy: bool) -> None:
        """Bring the progress, cell buttons and (``heavy``) the images up to date."""
        with self._render_lock:
            if run is not self._state.run or self._state.closed:
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
            marks = tuple(job.progress for job in jobs)
            redraw = run.kind == "sweep" and marks != self._drawn_marks and time.monotonic() >= self._next_draw
            if heavy or finished or redraw:
                self._drawn_marks = marks
                self._next_draw = time.monotonic() + GRID_REDRAW_SECONDS
                self._render_images(run, jobs)
            elif (selected := self._state.selected) is not None and selected < len(jobs):
                self._detail.show_job(run, selected, image=False)  # the card moves with the bar
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
        if (selected := self._state.selected) is not None and selected < len(jobs):
            self._detail.show_job(run, selected)

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
        self._finished()
