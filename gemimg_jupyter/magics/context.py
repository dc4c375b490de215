"""What one ``%%gemimg`` cell or ``%gemimg`` subcommand may use: :class:`MagicContext`.

:class:`~gemimg_jupyter.magics.extension.GemimgMagics` builds a fresh context for
each call, from its ``%config`` values at that moment, and hands it to
:func:`~gemimg_jupyter.magics.cells.run_cell` or to a subcommand in
:mod:`~gemimg_jupyter.magics.commands`. Those are plain functions over the
context: they never see the magics object, so neither module imports
``extension`` (the way IPython's ``core/magics/<family>.py`` modules stand on their own).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gemimg_jupyter.api import current_session

if TYPE_CHECKING:  # pragma: no cover
    from gemimg_jupyter.api import Job, Session, Settings
    from gemimg_jupyter.display import LiveView

__all__ = ["ConfigRow", "MagicContext", "running_jobs", "say"]

#: One ``%config GemimgMagics`` value as ``%gemimg config`` lists it: name, value, help.
ConfigRow = tuple[str, object, str]


def say(text: str) -> None:
    """Print one message for the user (the magic layer is the only place that prints)."""
    print(text)  # noqa: T201


def running_jobs() -> list[Job]:
    """Unfinished jobs of the running session (none when no session runs)."""
    sess = current_session()
    return [] if sess is None else [j for j in sess.jobs() if not j.done()]


@dataclass(frozen=True)
class MagicContext:
    """The extension as one call sees it: its session, the user's namespace, its views and values.

    ``views`` is the extension's own list of live outputs (shared, not copied): a cell
    adds its view to it, ``%gemimg wait`` and ``pick`` read it, a backend switch empties it.
    The values are the ``%config GemimgMagics`` ones when the call began.
    """

    #: The extension's session, asked for at each use (it follows ``%config``, login and backend).
    session: Callable[[], Session]
    #: The settings a new session would get (the environment's, with the ``%config`` values).
    wanted_settings: Callable[[], Settings]
    #: The user namespace: ``{var}``, ``--ref {var}``, ``--edit NAME`` read it, ``-o NAME`` writes it.
    user_ns: dict[str, Any]
    #: The live outputs the extension follows.
    views: list[LiveView]
    #: The ``%gemimg SUBCOMMAND`` parser for a subcommand's name (errors become ``UsageError``).
    subparser: Callable[[str], argparse.ArgumentParser]
    #: Print one line for the user.
    say: Callable[[str], None]
    #: The generation defaults handed to the session (``defaults=``): model, size, resolution …
    defaults: dict[str, Any]
    confirm_above_usd: float | None
    cell_size: int
    preview_size: int
    refresh_interval: float
    #: Every ``%config GemimgMagics`` value, sorted by name, for ``%gemimg config``.
    config: tuple[ConfigRow, ...] = ()
