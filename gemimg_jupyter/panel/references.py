"""The panel's reference images: upload, a path or URL typed in, thumbnails with remove, the image being edited.

Colab's upload widget fails for files of 1 MB or more (jupyter-widgets/ipywidgets #3452), so a
reference can also be named: a file path is read and attached like an upload; an http(s) URL is
checked like ``--ref`` (its server asked, nothing paid) and sent as a URL (on the real gateway one
on a private address is fetched and uploaded when the request is made).
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import (
    GemimgError,
    Job,
    LedgerRow,
    ModelSpec,
    ReferenceImage,
    check_reference_url,
    load_reference,
    validate_references,
)
from gemimg_jupyter.display import error_line
from gemimg_jupyter.panel.common import (
    FULL,
    REF_THUMB,
    button,
    heading,
    image,
    message_html,
    png_thumb,
    safe_name,
    shown_path,
)
from gemimg_jupyter.panel.state import PanelState


class ReferencesSection:
    """The uploaded reference images (kept under the output folder) and "edit this image".

    Parameters
    ----------
    state : PanelState
        The panel's shared state; :meth:`set_edit` sets its ``edit_row``.
    model_spec : callable
        The chosen model (its reference limit and formats).
    on_change : callable
        Called when the references or the image being edited changed.
    """

    def __init__(
        self, state: PanelState, *, model_spec: Callable[[], ModelSpec], on_change: Callable[[], None]
    ) -> None:
        self._state = state
        self._make = make = state.widgets.make
        self._model_spec = model_spec
        self._changed = on_change
        self._references: list[ReferenceImage] = []
        self._paths: list[str] = []
        self.upload = make(
            W.FileUpload,
            "gemimg-upload",
            accept="image/jpeg,image/png,image/webp,.jpg,.jpeg,.png,.webp",
            multiple=True,
            description="Add reference",
            layout=W.Layout(width="180px"),
        )
        self.ref_count = make(W.HTML, "gemimg-ref-count")
        self.ref_box = make(
            W.HBox, "gemimg-refs", layout=W.Layout(flex_flow="row wrap", width="100%", min_height="4px")
        )
        self.ref_message = make(W.HTML, "gemimg-ref-message", layout=W.Layout(**FULL))
        self.edit_note = make(W.HTML, "gemimg-edit-note", layout=W.Layout(display="none"))
        self.edit_clear = button(make, "gemimg-edit-clear", "✕ stop editing", hidden=True)
        self.edit_clear.on_click(lambda _b: self.set_edit(None))
        self.upload.observe(self._on_upload, names="value")
        self.ref_source = make(
            W.Text,
            "gemimg-ref-source",
            placeholder="or a file path or http(s) URL",
            layout=W.Layout(width="260px"),
        )
        self.ref_add = button(make, "gemimg-ref-add", "Add", "attach the file or URL typed beside", width="60px")
        self.ref_add.on_click(lambda _b: self.add_source())
        self.widgets: list[W.Widget] = [
            heading("Reference images"),
            W.HBox(
                [self.upload, self.ref_source, self.ref_add, self.ref_count],
                layout=W.Layout(align_items="center", flex_flow="row wrap"),
            ),
            W.HBox([self.edit_note, self.edit_clear], layout=W.Layout(align_items="center")),
            self.ref_box,
            self.ref_message,
        ]

    @property
    def references(self) -> tuple[ReferenceImage, ...]:
        """The reference images attached, in order."""
        return tuple(self._references)

    @property
    def paths(self) -> tuple[str, ...]:
        """Where each reference is kept (what the ``%%gemimg`` cell names)."""
        return tuple(self._paths)

    def _on_upload(self, change: Any) -> None:
        files = change["new"] if isinstance(change, Mapping) else change.new
        if not files:
            return
        messages: list[tuple[str, str]] = []
        spec = self._model_spec()
        for item in files:
            name = str(item.get("name") or "upload")
            content = item.get("content", b"")
            data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
            messages.append(self._attach(spec, name, functools.partial(load_reference, data, name=name)))
        self.ref_message.value = "".join(message_html(text, level) for text, level in messages)
        self._state.updating = True
        try:
            self.upload.value = ()  # let the same file be chosen again; the panel keeps its own copy
        finally:
            self._state.updating = False
        self.update_ui()
        self._changed()

    def add_source(self) -> None:
        """Attach what the path/URL field names: a file like an upload, a URL checked like ``--ref``."""
        source = self.ref_source.value.strip()
        if not source:
            self.ref_message.value = message_html("type a file path or an http(s) URL first", "warn")
            return
        url = source.lower().startswith(("http://", "https://"))

        def load() -> ReferenceImage:
            if url:
                check_reference_url(source)  # its server answers now, or one line and nothing attached
            return load_reference(source)

        text, level = self._attach(self._model_spec(), source, load, path=None if url else source)
        self.ref_message.value = message_html(text, level)
        if level == "ok":
            self.ref_source.value = ""
        self.update_ui()
        self._changed()

    def _attach(
        self, spec: ModelSpec, name: str, load: Callable[[], ReferenceImage], *, path: str | None = None
    ) -> tuple[str, str]:
        """Load, check against the model and attach one reference; the line that says how it went."""
        try:
            ref = load()
            validate_references(spec, [*self._references, ref])
        except GemimgError as exc:
            line = error_line(exc)
            return (line if name in line else f"{name}: {line}", "error")
        if any(r.sha256 == ref.sha256 for r in self._references):
            return (f"{name} is already attached", "warn")
        self._references.append(ref)
        if ref.url is not None:
            self._paths.append(ref.url)
            return (f"added {ref.url} (a URL; its server answered)", "ok")
        self._paths.append(path if path is not None else self._save_reference(ref))
        return (f"added {name} ({ref.size_bytes / 1024:.0f} KB, {ref.format})", "ok")

    def _save_reference(self, ref: ReferenceImage) -> str:
        """Keep the bytes under ``<output>/references`` so the ``%%gemimg`` cell can name a path."""
        assert ref.data is not None
        fname = f"{ref.sha256[:10]}-{safe_name(ref.name)}"
        try:
            path = self._state.session.remember_reference(ref.data, fname)
        except (OSError, ValueError):
            return ref.name
        return shown_path(path)

    def _remove_reference(self, index: int, _button: Any = None) -> None:
        if 0 <= index < len(self._references):
            ref = self._references.pop(index)
            self._paths.pop(index)
            self.ref_message.value = message_html(f"removed {ref.name}", "info")
        self.update_ui()
        self._changed()

    def update_ui(self) -> None:
        """The count against the model's limit, and one thumbnail with a remove button per reference."""
        spec = self._model_spec()
        n, limit = len(self._references), spec.max_refs
        text = f"{n}/{limit} attached"
        level = "info"
        if n >= limit:
            text += f" · the most {spec.id} accepts"
        if n > limit:
            text = f"{n} attached; {spec.id} accepts at most {limit}: remove {n - limit}"
            level = "error"
        self.ref_count.value = message_html(text, level)
        self.upload.disabled = self.ref_add.disabled = n >= limit
        tiles = []
        old = list(self.ref_box.children)
        for i, ref in enumerate(self._references):
            try:
                thumb = png_thumb(ref.data, REF_THUMB) if ref.data is not None else b""  # a URL: no bytes here
            except (OSError, ValueError):
                thumb = b""
            img = image(self._make, None, thumb, width=f"{REF_THUMB}px")
            caption = self._make(
                W.HTML,
                None,
                value=f'<div style="font-size:11px;max-width:{REF_THUMB + 20}px;overflow:hidden;'
                f'text-overflow:ellipsis;white-space:nowrap" title="{html.escape(ref.url or ref.name)}">'
                f"{html.escape(('🔗 ' if ref.url else '') + ref.name)}</div>",
            )
            remove = button(
                self._make,
                "gemimg-ref-remove",
                "✕ remove",
                f"remove {ref.name}",
                width=f"{REF_THUMB + 20}px",
                height="24px",
            )
            remove.on_click(functools.partial(self._remove_reference, i))
            tile = self._make(
                W.VBox,
                "gemimg-ref-tile",
                children=[img, caption, remove],
                layout=W.Layout(margin="0 8px 4px 0", align_items="center"),
            )
            tiles.append(tile)
        self.ref_box.children = tiles
        self._state.widgets.discard([child for widget in old for child in widget.children] + old)

    def set_edit(self, target: Job | LedgerRow | None) -> None:
        """Edit ``target`` in the next run (its image goes first among the references); ``None`` stops editing."""
        if target is None:
            self._state.edit_row = None
            self.edit_note.layout.display = self.edit_clear.layout.display = "none"
        else:
            row = target if isinstance(target, LedgerRow) else self._state.session.find(target)
            self._state.session.edit_source(row)  # refuses an image that cannot be edited, before anything changes
            self._state.edit_row = row
            where = html.escape(shown_path(str(row.path)) if row.path else row.cbid, quote=True)
            self.edit_note.value = (
                f'<div title="{where}">'
                + message_html(f"Editing {row.cbid[-6:]}: it goes first among the references", "info")
                + "</div>"
            )
            self.edit_note.layout.display = self.edit_clear.layout.display = None
        self._changed()
