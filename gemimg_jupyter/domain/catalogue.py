"""The gateway's live catalogue: which image models a key may use today, and their prices (pure).

``GET /v1/models?type=image`` lists the ids (free); ``GET /v1/pricing?type=image`` (Late docs, §9)
their prices per condition. :class:`Catalogue` is what was read, when, and is kept in the output
folder for a day (:data:`CATALOGUE_TTL_S`). The model table (:mod:`.models`) merges it with the
built-in registry: a listed id the table does not know is usable with a generic spec; a built-in
id the catalogue does not list is flagged before paying. Reading is the session's job; this module
only holds, parses and serialises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CATALOGUE_FILE", "CATALOGUE_TTL_S", "Catalogue", "parse_pricing"]

#: How long a catalogue read from the gateway is trusted (seconds).
CATALOGUE_TTL_S = 24 * 3600
#: Its file name in the output folder.
CATALOGUE_FILE = "catalogue.json"
_RESOLUTIONS = ("0.5K", "1K", "2K", "4K")


@dataclass(frozen=True)
class Catalogue:
    """The image models a gateway listed at ``fetched_at`` (epoch seconds) and the prices it published.

    ``prices`` maps a model id to ``{resolution: USD per request}`` (``"*"``: any resolution).
    ``base_url`` says which gateway answered (a catalogue is per backend).
    """

    listed: tuple[str, ...]
    fetched_at: float
    base_url: str = ""
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def lists(self, model_id: str) -> bool:
        """True when the gateway listed ``model_id``."""
        return model_id in self.listed

    def fresh(self, now: float, base_url: str) -> bool:
        """True when read from ``base_url`` less than a day before ``now``."""
        return self.base_url == base_url and 0 <= now - self.fetched_at < CATALOGUE_TTL_S

    def price(self, model_id: str, resolution: str) -> float | None:
        """The gateway's published price for one request, ``None`` where it published none."""
        table = self.prices.get(model_id) or {}
        found = table.get(resolution, table.get("*"))
        return None if found is None else float(found)

    def to_json(self) -> str:
        """The catalogue as the JSON text kept in the output folder."""
        data = {"listed": list(self.listed), "fetched_at": self.fetched_at, "base_url": self.base_url}
        return json.dumps({**data, "prices": {k: dict(v) for k, v in self.prices.items()}}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Catalogue | None:
        """A catalogue back from :meth:`to_json` (``None`` for anything unreadable)."""
        try:
            data = json.loads(text)
            prices = {str(m): {str(r): float(p) for r, p in t.items()} for m, t in data.get("prices", {}).items()}
            listed = tuple(str(i) for i in data["listed"])
            return cls(listed, float(data["fetched_at"]), str(data.get("base_url", "")), prices)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def parse_pricing(body: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``GET /v1/pricing`` (§9) as ``{model: {resolution or "*": USD}}``: per-request prices only.

    A price whose ``conditions`` name a resolution (``{"resolution": "2K"}``) is that resolution's;
    one without is every resolution's. Prices per token or per second are not per image: left out.
    """
    out: dict[str, dict[str, float]] = {}
    for item in body.get("data") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        for price in item.get("prices") or []:
            if not isinstance(price, Mapping) or price.get("charge_type", "per_request") != "per_request":
                continue
            try:
                usd = float(price["unit_price"])
            except (KeyError, TypeError, ValueError):
                continue
            conditions = price.get("conditions")
            res = conditions.get("resolution") if isinstance(conditions, Mapping) else None
            key = str(res).upper() if isinstance(res, str) and str(res).upper() in _RESOLUTIONS else "*"
            out.setdefault(item["id"], {})[key] = usd
    return out
