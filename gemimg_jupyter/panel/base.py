"""What every section of the panel shares: its state, widget bookkeeping, the session and the message line."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from gemimg_jupyter.api import Job, LedgerRow, ModelSpec, ReferenceImage, Session, SweepPlan, format_usd
from gemimg_jupyter.display import THEME_CSS
from gemimg_jupyter.panel.common import PANEL_CSS, Run, message_html, shown_path


class PanelBase:
    """The state and helpers the panel's sections share; :class:`~gemimg_jupyter.panel.Panel` sets it up.

    Each section (parameters, references, sweep, results, detail, history) is a mixin on this base
    that builds its widgets and handles their events; the attributes below are the panel's, shared.
    """

    _session_of: Callable[[], Session]
    confirm_above_usd: float | None
    cell_size: int
    _widgets: list[W.Widget]
    _references: list[ReferenceImage]
    _reference_paths: list[str]
    _run: Run | None
    _selected: int | None
    _updating: bool
    _closed: bool
    _render_lock: threading.RLock
    _thumbs: dict[str, bytes]
    _history_rows: list[Any]
    _cell_buttons: list[W.Button]
    _detail_row: LedgerRow | None
    _edit_row: LedgerRow | None
    _history_images: list[W.Image]
    _history_buttons: list[W.Button]
    header: Any
    prompt: Any
    model: Any
    size: Any
    size_shape: Any
    resolution: Any
    temperature: Any
    top_p: Any
    repeats: Any
    model_notes: Any
    upload: Any
    ref_count: Any
    ref_box: Any
    ref_message: Any
    x_axis: Any
    x_values: Any
    x_error: Any
    y_axis: Any
    y_values: Any
    y_error: Any
    plan_html: Any
    edit_note: Any
    edit_clear: Any
    generate_button: Any
    cancel_button: Any
    fresh: Any
    confirm: Any
    progress: Any
    progress_text: Any
    message: Any
    result_image: Any
    result_hint: Any
    cells: Any
    detail_image: Any
    detail_html: Any
    detail_edit: Any
    detail_pick: Any
    magic: Any
    history_refresh: Any
    history_box: Any
    history_hint: Any
    session_cost: Any
    widget: Any

    if TYPE_CHECKING:  # what one section calls in another (defined there)

        def read_state(self) -> dict[str, Any]:
            raise NotImplementedError

        def plan(self, state: Mapping[str, Any] | None = None) -> SweepPlan:
            raise NotImplementedError

        def set_edit(self, target: Job | LedgerRow | None) -> None: ...
        def _on_change(self, _change: Any = None) -> None: ...
        def _update_plan(self, state: Mapping[str, Any]) -> None: ...
        def _update_enabled(self) -> None: ...
        def _update_refs_ui(self) -> None: ...
        def _refresh(self, run: Run, *, heavy: bool) -> None: ...
        def _refresh_history(self) -> None: ...
        def _show_job(self, run: Run, index: int, *, image: bool = True) -> None: ...
        def _set_detail_row(self, target: Job | LedgerRow | None) -> None: ...
        def _build_detail(self) -> list[W.Widget]:
            raise NotImplementedError

        def _on_cell_click(self, run: Run, index: int, _button: Any = None) -> None: ...

    def _w(self, factory: Callable[..., Any], css: str | None = None, **kwargs: Any) -> Any:
        """Create a widget, remember it (for :meth:`close`) and give it a stable class."""
        widget = factory(**kwargs)
        if css:
            widget.add_class(css)
        self._widgets.append(widget)
        return widget

    @property
    def session(self) -> Session:
        """The session the panel runs on, asked for each time it is needed.

        A bare panel asks for the default session and a ``%gemimg panel`` asks the extension; a
        session handed in is followed to the one that replaced it. So ``%gemimg login``,
        ``%gemimg backend`` and ``Session.with_settings`` (which replace it) take effect here too.
        """
        return self._session_of()

    def _header_html(self) -> str:
        s = self.session
        badge = (
            "simulator · simulated images, not charged" if s.backend == "sim" else "ToAPIs gateway · real images, paid"
        )
        return (
            f"{PANEL_CSS}{THEME_CSS}"
            '<div style="display:flex;align-items:baseline;gap:10px;flex-wrap:wrap">'
            '<span style="font-size:15px;font-weight:600">gemimg panel</span>'
            '<span style="font-size:11.5px;padding:1px 6px;border-radius:8px;'
            f'background:var(--jp-layout-color2,#eee)">{html.escape(badge)}</span>'
            '<span style="font-size:11px;color:var(--jp-ui-font-color2,#666)">output: '
            f"{html.escape(shown_path(s.store_root))}</span></div>"
        )

    def _discard(self, widgets: Sequence[W.Widget]) -> None:
        """Close widgets that left the panel and forget them."""
        gone = {id(w) for w in widgets}
        for widget in widgets:
            widget.close()
        self._widgets = [w for w in self._widgets if id(w) not in gone]

    def _say(self, text: str, level: str = "info") -> None:
        self.message.value = message_html(text, level)

    @property
    def busy(self) -> bool:
        """True while the last Generate is still running (Generate is refused meanwhile)."""
        run = self._run
        return run is not None and not run.settled.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the last run has finished and the panel shows its outcome.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most.

        Returns
        -------
        bool
            ``False`` if ``timeout`` passed first; ``True`` when idle.
        """
        run = self._run
        return True if run is None else run.settled.wait(timeout)

    @staticmethod
    def _model_label(spec: ModelSpec) -> str:
        price = f"{format_usd(spec.price_usd, places=3)}/image" if spec.price_usd is not None else "price n/a"
        return f"{spec.id} · {price}"
