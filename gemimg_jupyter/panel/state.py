"""What the panel's sections share: one small state object, the widget book and the message line."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W

from gemimg_jupyter.api import LedgerRow, Session
from gemimg_jupyter.panel.common import Run, message_html


class Widgets:
    """Every widget the panel made, in the order made: what :meth:`Panel.close` closes.

    Sections make their widgets with :meth:`make` (the ``make`` that :func:`.common.button` and
    :func:`.common.image` take) and hand back the ones that left the panel with :meth:`discard`.
    """

    def __init__(self) -> None:
        self._made: list[W.Widget] = []

    def make(self, factory: Callable[..., Any], css: str | None = None, **kwargs: Any) -> Any:
        """Create a widget, remember it and give it a stable CSS class (``gemimg-…``) when named."""
        widget = factory(**kwargs)
        if css:
            widget.add_class(css)
        self._made.append(widget)
        return widget

    def discard(self, widgets: Sequence[W.Widget]) -> None:
        """Close widgets that left the panel and forget them."""
        gone = {id(w) for w in widgets}
        for widget in widgets:
            widget.close()
        self._made = [w for w in self._made if id(w) not in gone]

    def close(self) -> None:
        """Close every widget, the newest first."""
        for widget in reversed(self._made):
            widget.close()

    def __iter__(self) -> Iterator[W.Widget]:
        return iter(list(self._made))

    def __len__(self) -> int:
        return len(self._made)


@dataclass(eq=False)
class PanelState:
    """The state the sections share, and nothing else; :class:`~gemimg_jupyter.panel.Panel` makes one.

    Each section keeps its own widgets and bookkeeping; what more than one of them reads or writes
    lives here: the session getter, the settings the panel was made with, the current run and the
    request chosen in it, the image being edited, and the two flags every change handler checks.
    """

    session_of: Callable[[], Session]
    confirm_above_usd: float | None
    cell_size: int
    widgets: Widgets = field(default_factory=Widgets)
    #: The last press of Generate (``None`` before the first, or after one the session refused).
    run: Run | None = None
    #: The request of ``run`` whose card the detail view shows (``None``: none chosen).
    selected: int | None = None
    #: The image being edited: the first reference of the next run (``None``: not editing).
    edit_row: LedgerRow | None = None
    #: True while a section sets values itself, so the change handlers do not react to them.
    updating: bool = False
    #: True once the panel is closed: late ticks and job listeners do nothing.
    closed: bool = False

    @property
    def session(self) -> Session:
        """The session the panel runs on, asked for each time it is needed.

        A bare panel asks for the default session and a ``%gemimg panel`` asks the extension; a
        session handed in is followed to the one that replaced it. So ``%gemimg login``,
        ``%gemimg backend`` and ``Session.with_settings`` (which replace it) take effect here too.
        """
        return self.session_of()

    @property
    def busy(self) -> bool:
        """True while the last Generate is still running."""
        run = self.run
        return run is not None and not run.settled.is_set()


class MessageLine:
    """The panel's one message line (under Generate); every section says what happened through :meth:`say`."""

    def __init__(self, widgets: Widgets) -> None:
        self.message = widgets.make(W.HTML, "gemimg-message", layout=W.Layout(width="100%", min_height="40px"))

    def say(self, text: str, level: str = "info") -> None:
        self.message.value = message_html(text, level)
