"""The panel's history: the newest stored images, and the session's cost line."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import SUSPECT_MARK, LedgerRow, format_usd, plural
from gemimg_jupyter.panel.common import (
    HISTORY_SLOTS,
    HISTORY_THUMB,
    button,
    heading,
    image,
    message_html,
    png_thumb,
    shown_error,
)
from gemimg_jupyter.panel.state import PanelState


class HistorySection:
    """The newest stored images as thumbnails (with edit and pick marks); a click shows one in the detail view.

    Parameters
    ----------
    state : PanelState
        The panel's shared state (the session).
    show_row : callable
        Show a stored image in the detail view (a tile was clicked).
    """

    def __init__(self, state: PanelState, *, show_row: Callable[[LedgerRow], None]) -> None:
        self._state = state
        self._show_row = show_row
        self._rows: list[LedgerRow] = []
        self._thumbs: dict[str, bytes] = {}
        make = state.widgets.make
        self.history_refresh = button(
            make, "gemimg-history-refresh", "", "refresh the history", icon="refresh", width="36px"
        )
        self._images: list[W.Image] = []
        self._buttons: list[W.Button] = []
        slots = []
        for i in range(HISTORY_SLOTS):
            img = image(
                make, None, width=f"{HISTORY_THUMB}px", height=f"{HISTORY_THUMB * 3 // 4}px", object_fit="contain"
            )
            btn = button(make, "gemimg-history-open", width=f"{HISTORY_THUMB}px", height="auto")
            btn.on_click(functools.partial(self._on_click, i))
            slot = make(
                W.VBox,
                "gemimg-history-tile",
                children=[img, btn],
                layout=W.Layout(display="none", margin="0 6px 6px 0", align_items="center"),
            )
            self._images.append(img)
            self._buttons.append(btn)
            slots.append(slot)
        self.history_box = make(
            W.HBox, "gemimg-history", children=slots, layout=W.Layout(flex_flow="row wrap", width="100%")
        )
        self.history_hint = make(W.HTML, "gemimg-history-hint")
        self.session_cost = make(W.HTML, "gemimg-session-cost")
        self.history_refresh.on_click(lambda _b: self.refresh())
        self.widgets: list[W.Widget] = [
            W.HBox([heading("History"), self.history_refresh], layout=W.Layout(align_items="center")),
            self.history_hint,
            self.history_box,
            self.session_cost,
        ]

    @property
    def history_buttons(self) -> tuple[W.Button, ...]:
        """The history tiles' buttons, newest image first: a click shows that image in the detail view."""
        return tuple(self._buttons)

    def refresh(self) -> None:
        """Show the newest stored images, their marks (edits made from them, picks) and the session's cost."""
        session = self._state.session
        try:
            rows = session.history(HISTORY_SLOTS)
        except Exception as exc:  # noqa: BLE001 - a broken ledger must not break the panel
            self.history_hint.value = message_html(f"history unavailable: {shown_error(exc)}", "warn")
            return
        self._rows = rows
        try:
            children, picked, suspects = session.children_count(), session.picked_cbids(), session.suspects(rows)
        except Exception:  # noqa: BLE001 - marks are extras; the history shows without them
            children, picked, suspects = {}, set(), {}
        for i in range(HISTORY_SLOTS):
            slot_box = self._buttons[i]
            image = self._images[i]
            parent_layout = self.history_box.children[i].layout
            if i >= len(rows) or not rows[i].path:
                parent_layout.display = "none"
                continue
            row = rows[i]
            path = str(row.path)
            thumb = self._thumbs.get(path)
            if thumb is None:
                try:
                    thumb = png_thumb(path, HISTORY_THUMB)
                except (OSError, ValueError):
                    parent_layout.display = "none"
                    continue
                self._thumbs[path] = thumb
            image.value = thumb
            p = row.params
            caption = str(p.get("size", ""))
            if p.get("temperature") is not None:
                caption += f" · t{float(p['temperature']):g}"
            edits = children.get(row.cbid, 0)
            if edits:  # marks go first
                caption = f"✎{edits} {caption}"
            if row.cbid in picked:
                caption = "★ " + caption
            suspect = suspects.get(row.cbid)
            if suspect:
                caption = f"{SUSPECT_MARK} {caption}"
            slot_box.description = caption
            slot_box.tooltip = (
                str(p.get("prompt", ""))[:200]
                + (f" ({plural(edits, 'edit')} made from it)" if edits else "")
                + (f" · {SUSPECT_MARK} suspect: {suspect}" if suspect else "")
            )
            parent_layout.display = None
        shown = {str(row.path) for row in rows[:HISTORY_SLOTS] if row.path}
        self._thumbs = {path: thumb for path, thumb in self._thumbs.items() if path in shown}  # bounded by the slots
        self.history_hint.value = (
            "" if rows else message_html("No images yet: they appear here once generated.", "info")
        )
        cost = session.cost()
        self.session_cost.value = (
            '<div style="font-size:11.5px;color:var(--jp-ui-font-color2,#666);margin-top:4px">'
            f"session: {'simulated ' if cost.get('backend') == 'sim' else ''}"
            f"{html.escape(format_usd(cost['spent_usd']))} spent"
            f"{', not charged' if cost.get('backend') == 'sim' else ''} · {cost['requests']} request(s) · "
            f"{cost['cache_hits']} cache hit(s), {html.escape(format_usd(cost['saved_usd']))} saved</div>"
        )

    def _on_click(self, index: int, _button: Any = None) -> None:
        if index < len(self._rows):
            self._show_row(self._rows[index])
