"""Small words every layer shares: money and counts, written one way everywhere.

Core module: no IPython, ipywidgets or traitlets.
"""

from __future__ import annotations

__all__ = ["format_usd", "plural"]


def format_usd(amount: float | None, *, places: int | None = None, missing: str = "n/a") -> str:
    """``$0.59``, ``$488.00``, ``$1,234.50``; amounts under a cent keep three decimals.

    ``places`` fixes the decimals instead (the report's ``$0.0488``); ``None`` is ``missing``.
    """
    if amount is None:
        return missing
    if places is not None:
        return f"${amount:,.{places}f}"
    if 0 < amount < 0.01:
        return f"${amount:.3f}"
    return f"${amount:,.2f}"


def plural(n: int, word: str) -> str:
    """``1 image``, ``2 images``, ``1,024 images``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")
