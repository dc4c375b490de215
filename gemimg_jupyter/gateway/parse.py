"""Reading the gateway's task answers: every dialect seen so far, into one :class:`~.models.TaskStatus`.

The documented ToAPIs shape and the New API gateway's variants (see
``docs/gateway.md``) differ in where the id, the status word, the image URL,
the error and the billing stand; :func:`parse_task` reads them all, and
:func:`is_blocked` tells a safety or content-policy refusal from other failures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gemimg_jupyter.domain.errors import APIError
from gemimg_jupyter.domain.finish import find_reason
from gemimg_jupyter.domain.models import TaskStatus

__all__ = ["STATUS_WORDS", "find_result_url", "int_or_none", "is_blocked", "parse_task", "str_or_none"]

#: Every status word seen in the docs, their source and the New API gateway they run on (compared lower-case).
STATUS_WORDS: dict[str, str] = {
    **dict.fromkeys(("queued", "pending", "not_start", "submitted"), "queued"),
    **dict.fromkeys(("in_progress", "running", "processing"), "in_progress"),
    **dict.fromkeys(("completed", "success", "succeeded"), "completed"),
    **dict.fromkeys(("failed", "failure", "error", "cancelled", "canceled", "expired"), "failed"),
}
#: Words in a failure's code or message that mean the task was refused for safety or content policy.
_BLOCKED = re.compile(
    r"image_safety|prohibited_content|\bsafety\b|content[ _-]?(?:policy|filter|moderation)|policy[ _-]?violation"
    r"|\bblocklist\b|\bmoderation\b|responsible ai",
    re.IGNORECASE,
)
_REFUSAL = re.compile(r"content|refus|sensitive|unsafe", re.IGNORECASE)


def str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def int_or_none(value: object) -> int | None:
    try:
        return None if value is None else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _progress(value: object) -> int | None:
    """``40``, ``40.5``, ``"40"`` or ``"40%"`` as a whole percentage; ``None`` if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip().rstrip("%").strip()
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return max(0, min(100, int(number))) if number == number else None


def _first_url(items: object) -> str | None:
    """The first URL of a list of ``{"url": ...}`` objects or plain URL strings."""
    if not isinstance(items, list) or not items:
        return None
    first = items[0]
    url = first.get("url") if isinstance(first, Mapping) else first
    return url if isinstance(url, str) and url.strip() else None


def find_result_url(body: Mapping[str, Any]) -> str | None:
    """The result image URL wherever a gateway puts it.

    In order: ``result.data[0].url`` (the docs), a top-level ``url`` (seen
    beside it), ``result.url``, ``images[0].url`` and ``data[0].url``
    (field notes), ``result.images[0].url``.
    """
    result = body.get("result")
    result = result if isinstance(result, Mapping) else {}
    for candidate in (
        _first_url(result.get("data")),
        body.get("url"),
        result.get("url"),
        _first_url(body.get("images")),
        _first_url(body.get("data")),
        _first_url(result.get("images")),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def is_blocked(code: object, message: object, *, http_status: int | None = None) -> bool:
    """True when a failure's code or message says it was refused for safety or content policy."""
    text = f"{code or ''} {message or ''}"
    reason = find_reason(code, message)
    if reason is not None:  # Gemini's own word decides: recitation is withheld, text-only is not a refusal
        return reason.blocked
    if _BLOCKED.search(text):
        return True
    said_422 = http_status == 422 or re.search(r"\b422\b", text) is not None
    return said_422 and _REFUSAL.search(text) is not None


def _cost(billing: Mapping[str, Any]) -> float | None:
    """Dollars from a settled or refunded ``billing`` (``credits`` at 200 a dollar when ``cost_usd`` is absent)."""
    if not billing or str(billing.get("status") or "").lower() == "pending":
        return None
    for key, scale in (("cost_usd", 1.0), ("credits", 1 / 200)):
        value = billing.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value) * scale
        except (TypeError, ValueError):
            continue
        if number == number and number >= 0:  # not NaN, not negative
            return round(number, 6)
    return None


def parse_task(body: Mapping[str, Any]) -> TaskStatus:
    """Parse a submit or status response into a :class:`TaskStatus`.

    Reads every dialect seen so far (see ``docs/gateway.md``): ``id`` or
    ``task_id``; a task wrapped in ``{"data": {...}}``; any status word of
    :data:`STATUS_WORDS` in any case (another word gives ``unknown`` with
    ``raw_status`` kept, so the engine can stop instead of polling to its
    deadline); ``progress`` as a number or ``"40%"``; the image URL wherever
    :func:`find_result_url` finds it; ``error`` as an object or a string, or
    a ``fail_reason``; ``billing`` in dollars or credits. A failure for a
    safety or content-policy reason is marked ``blocked``.
    """
    inner = body.get("data")
    if isinstance(inner, Mapping) and not (body.get("id") or body.get("task_id")) and "status" in inner:
        body = inner
    task_id = body.get("id") or body.get("task_id")
    if not task_id:
        raise APIError("the gateway's task response has no id; is GEMIMG_BASE_URL pointing at the image API?")
    raw = body.get("status")
    raw_status = None if raw is None else str(raw).strip()
    status = STATUS_WORDS.get(raw_status.lower(), "unknown") if raw_status else "queued"
    url = find_result_url(body)
    error_field = body.get("error")
    error: Mapping[str, Any] = error_field if isinstance(error_field, Mapping) else {}
    message = error.get("message") or (error_field if isinstance(error_field, str) else None) or body.get("fail_reason")
    code = error.get("code")
    billing: Mapping[str, Any] = body["billing"] if isinstance(body.get("billing"), Mapping) else {}
    progress = _progress(body.get("progress"))
    if progress is None or (status == "completed" and progress == 0):
        progress = 100 if status == "completed" else 0
    return TaskStatus(
        id=str(task_id),
        status=status,
        progress=progress,
        model=str_or_none(body.get("model")),
        created_at=int_or_none(body.get("created_at")),
        completed_at=int_or_none(body.get("completed_at")),
        expires_at=int_or_none(body.get("expires_at")),
        url=url,
        error_code=str_or_none(code),
        error_message=str_or_none(message),
        client_business_id=str_or_none(body.get("client_business_id")),
        billing_status=str_or_none(billing.get("status")),
        cost_usd=_cost(billing),
        raw_status=raw_status,
        blocked=status == "failed" and is_blocked(code, message),
        model_text=_model_text(body),
    )


def _model_text(body: Mapping[str, Any]) -> str | None:
    """Text the model returned beside or instead of the image (``text``, ``result.text``), if any."""
    result = body.get("result")
    for candidate in (body.get("text"), result.get("text") if isinstance(result, Mapping) else None):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None
