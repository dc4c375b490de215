"""Reading the gateway's catalogue for a session: on first use with a key, on refresh, kept a day.

``GET /v1/models?type=image`` (and ``GET /v1/pricing`` where the gateway answers it) are read once,
written to ``<output>/catalogue.json`` and merged into the model table
(:func:`~gemimg_jupyter.domain.models.use_catalogue`). With a real key this happens on the first
request of a session; with the simulator only on ``%gemimg models --refresh`` /
:meth:`Session.refresh_catalogue` (the simulator serves every built-in id unless told otherwise).
A gateway that cannot be read leaves the built-in table alone: the catalogue is advice, never a gate.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import TYPE_CHECKING, Protocol

from gemimg_jupyter.domain.catalogue import CATALOGUE_FILE, Catalogue, parse_pricing
from gemimg_jupyter.domain.errors import GemimgError
from gemimg_jupyter.domain.models import current_catalogue, model_notices, unlisted_default, use_catalogue
from gemimg_jupyter.ledger.files import write_atomic

if TYPE_CHECKING:
    from gemimg_jupyter.domain.models import ModelSpec
    from gemimg_jupyter.gateway.client import ToAPIsClient
    from gemimg_jupyter.ledger.store import Store


class Session(Protocol):
    """What reading the catalogue needs of a session."""

    store: Store
    client: ToAPIsClient
    base_url: str
    catalogue_read: bool
    said: set[str]

    @property
    def backend(self) -> str:
        """``toapis`` or ``sim``."""


__all__ = ["default_line", "first_use", "kept", "notices", "refresh", "today"]

log = logging.getLogger(__name__)


def today() -> str:
    """Today's date (ISO), which shutdown dates are compared with."""
    return datetime.date.today().isoformat()


def refresh(session: Session, *, force: bool = True) -> Catalogue | None:
    """Read the catalogue (``force``), or take the output folder's copy while it is a day old; merge it."""
    path = session.store.root / CATALOGUE_FILE
    if not force and path.is_file():
        kept = Catalogue.from_json(path.read_text(encoding="utf-8"))
        if kept is not None and kept.fresh(time.time(), session.base_url):
            use_catalogue(kept)
            return kept
    try:
        # one try when it is read on the way to a cell's first request (the cell must not wait out retries)
        listed = tuple(session.client.list_models("image", tries=None if force else 1))
    except GemimgError as err:
        log.info("the gateway's model catalogue could not be read: %s", err)
        return current_catalogue()
    try:
        prices = parse_pricing(session.client.list_pricing("image"))
    except GemimgError:  # not every gateway answers /v1/pricing: the built-in prices stay
        prices = {}
    catalogue = Catalogue(listed, time.time(), session.base_url, prices)
    write_atomic(path, catalogue.to_json().encode())
    use_catalogue(catalogue)
    return catalogue


def kept(session: Session) -> Catalogue | None:
    """The catalogue already read: the one merged in this process, else the output folder's while a day old.

    Never asks the gateway (``%load_ext`` calls it); a kept one that is still fresh is merged.
    """
    live = current_catalogue()
    if live is not None:
        return live
    path = session.store.root / CATALOGUE_FILE
    if not path.is_file():
        return None
    found = Catalogue.from_json(path.read_text(encoding="utf-8"))
    if found is None or not found.fresh(time.time(), session.base_url):
        return None
    use_catalogue(found)
    return found


def default_line(session: Session, model: str) -> str | None:
    """One line when the catalogue, once read, does not list the default ``model``, and which id to set."""
    return unlisted_default(model, kept(session))


def first_use(session: Session) -> None:
    """On a session's first request with a real key, read (or reuse) the catalogue once."""
    if session.backend == "toapis" and not session.catalogue_read:
        session.catalogue_read = True
        refresh(session, force=False)


def notices(session: Session, spec: ModelSpec) -> list[str]:
    """The lines about ``spec`` this session has not said yet (unknown id, not listed, past shutdown)."""
    lines = [
        line for line in model_notices(spec, today(), checked=session.backend == "toapis") if line not in session.said
    ]
    session.said.update(lines)
    return lines
