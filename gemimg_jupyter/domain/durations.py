"""Durations as people write them (``30m``, ``1h30m``, ``90s``): parsing and showing (pure).

Core module: no IPython, ipywidgets or traitlets.
"""

from __future__ import annotations

import math
import re

from gemimg_jupyter.domain.errors import ValidationError

__all__ = ["GATEWAY_TYPICAL_S", "format_duration", "parse_duration"]

#: The gateway's documented typical time for one image task, in seconds (its image-status page: "typical time
#: 5–30 s"). The polling's first look at a task of a kind no past run has timed comes shortly before the low end.
GATEWAY_TYPICAL_S = (5.0, 30.0)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)?\s*", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "": 1.0}


def parse_duration(text: str | float | int, *, what: str = "--stop-after") -> float:
    """Seconds from ``30m``, ``1h30m``, ``90s``, ``0.5s``, ``250ms`` or a bare number of seconds.

    Raises
    ------
    ValidationError
        One line for anything else, or for a duration that is not above zero.
    """
    if isinstance(text, bool):
        raise ValidationError(
            f"{what} {text!r} is not a duration; write e.g. 30m, 1h30m or 90s", field=what, value=text
        )
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        raw = str(text).strip()
        seconds, pos = 0.0, 0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos or not match.group(0):
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "").lower()]
            pos = match.end()
        if not raw or pos != len(raw):
            raise ValidationError(
                f"{what} {raw!r} is not a duration; write e.g. 30m, 1h30m or 90s", field=what, value=text
            )
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValidationError(f"{what} {text!r} must be above zero, e.g. 30m", field=what, value=text)
    return seconds


def format_duration(seconds: float) -> str:
    """``45 s``, ``30 min``, ``1 h 30 min`` (whole units; under a minute keeps one decimal below 10 s)."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")
