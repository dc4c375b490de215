"""The panel's history: the newest stored images, and the session's cost line."""

from __future__ import annotations

import functools
import html
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import format_usd, plural
from gemimg_jupyter.panel.base import PanelBase
from gemimg_jupyter.panel.common import (
    DETAIL_LONG_SIDE,
    HISTORY_SLOTS,
    HISTORY_THUMB,
    button,
    heading,
    image,
    message_html,
    params_html,
    png_thumb,
    shown_error,
    shown_path,
)


class HistorySection(PanelBase):
    """The newest stored images as thumbnails (with edit and pick marks); a click shows one in the detail view."""

    def _build_history(self) -> list[W.Widget]:
        """The history tiles, their refresh button and the session line, wired to the panel."""
        self.history_refresh = button(
            self._w, "gemimg-history-refresh", "", "refresh the history", icon="refresh", width="36px"
        )
        self._history_images = []
        self._history_buttons = []
        slots = []
        for i in range(HISTORY_SLOTS):
            img = image(
                self._w, None, width=f"{HISTORY_THUMB}px", height=f"{HISTORY_THUMB * 3 // 4}px", object_fit="contain"
            )
            btn = button(self._w, "gemimg-history-open", width=f"{HISTORY_THUMB}px", height="24px")
            btn.on_click(functools.partial(self._on_history_click, i))
            slot = self._w(
                W.VBox,
                "gemimg-history-tile",
                children=[img, btn],
                layout=W.Layout(display="none", margin="0 6px 6px 0", align_items="center"),
            )
            self._history_images.append(img)
            self._history_buttons.append(btn)
            slots.append(slot)
        self.history_box = self._w(
            W.HBox, "gemimg-history", children=slots, layout=W.Layout(flex_flow="row wrap", width="100%")
        )
        self.history_hint = self._w(W.HTML, "gemimg-history-hint")
        self.session_cost = self._w(W.HTML, "gemimg-session-cost")
        self.history_refresh.on_click(lambda _b: self._refresh_history())
        return [
            W.HBox([heading("History"), self.history_refresh], layout=W.Layout(align_items="center")),
            self.history_hint,
            self.history_box,
            self.session_cost,
        ]

    @property
    def history_buttons(self) -> tuple[W.Button, ...]:
        """The history tiles' buttons, newest image first: a click shows that image in the detail view."""
        return tuple(self._history_buttons)

    def _refresh_history(self) -> None:
        try:
            rows = self.session.history(HISTORY_SLOTS)
        except Exception as exc:  # noqa: BLE001 - a broken ledger must not break the panel
            self.history_hint.value = message_html(f"history unavailable: {shown_error(exc)}", "warn")
            return
        self._history_rows = rows
        try:
            children, picked = self.session.children_count(), self.session.picked_cbids()
        except Exception:  # noqa: BLE001 - marks are extras; the history shows without them
            children, picked = {}, set()
        for i in range(HISTORY_SLOTS):
            slot_box = self._history_buttons[i]
            image = self._history_images[i]
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
            if edits:  # marks go first: the caption is cut at the tile's width
                caption = f"✎{edits} {caption}"
            if row.cbid in picked:
                caption = "★ " + caption
            slot_box.description = caption
            slot_box.tooltip = str(p.get("prompt", ""))[:200] + (
                f" ({plural(edits, 'edit')} made from it)" if edits else ""
            )
            parent_layout.display = None
        shown = {str(row.path) for row in rows[:HISTORY_SLOTS] if row.path}
        self._thumbs = {path: thumb for path, thumb in self._thumbs.items() if path in shown}  # bounded by the slots
        self.history_hint.value = (
            "" if rows else message_html("No images yet: they appear here once generated.", "info")
        )
        cost = self.session.cost()
        self.session_cost.value = (
            '<div style="font-size:11.5px;color:var(--jp-ui-font-color2,#666);margin-top:4px">'
            f"session: {'simulated ' if cost.get('backend') == 'sim' else ''}"
            f"{html.escape(format_usd(cost['spent_usd']))} spent"
            f"{', not charged' if cost.get('backend') == 'sim' else ''} · {cost['requests']} request(s) · "
            f"{cost['cache_hits']} cache hit(s), {html.escape(format_usd(cost['saved_usd']))} saved</div>"
        )

    def _on_history_click(self, index: int, _button: Any = None) -> None:
        if index >= len(self._history_rows):
            return
        row = self._history_rows[index]
        extra = [("state", row.state), ("file", shown_path(str(row.path)))]
        if row.task_id:
            extra.append(("task", row.task_id))
        self.detail_html.value = "<div><b>from the history</b></div>" + params_html(row.params, extra)
        self._set_detail_row(row)
        try:
            self.detail_image.value = png_thumb(str(row.path), DETAIL_LONG_SIDE)
            self.detail_image.layout.display = None
        except (OSError, ValueError):
            self.detail_image.layout.display = "none"
