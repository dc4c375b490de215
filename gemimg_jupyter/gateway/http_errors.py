"""Mapping the gateway's HTTP errors onto the :mod:`~gemimg_jupyter.domain.errors` tree.

``error.code`` decides first (New API answers an empty balance with 403 and a
model no channel serves with 503), then the HTTP status; the message names
what failed and, where one helps, what to do. HTML error pages, plain-text
bodies and JSON in either dialect give one readable line, redacted.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

import requests

from gemimg_jupyter.domain.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ContentBlockedError,
    DuplicateRequestError,
    InsufficientQuotaError,
    ModelUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    redact,
)
from gemimg_jupyter.domain.models import MODELS
from gemimg_jupyter.gateway.parse import is_blocked, str_or_none

__all__ = ["classify", "error_from_response", "parse_retry_after"]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date form)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientQuotaError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: DuplicateRequestError,
    422: BadRequestError,
    429: RateLimitError,
}
#: ``error.code`` (lower-case) → class; it decides before the HTTP status does (New API answers an empty
#: balance with 403, a model no channel serves with 503).
_CODE_CLASSES: dict[str, type[APIError]] = {
    **dict.fromkeys(
        ("insufficient_user_quota", "insufficient_quota", "insufficient_balance", "pre_consume_token_quota_failed"),
        InsufficientQuotaError,
    ),
    **dict.fromkeys(("model_not_found", "model_not_available", "model_not_supported"), ModelUnavailableError),
    **dict.fromkeys(
        ("unauthorized", "invalid_api_key", "invalid_token", "token_expired", "token_not_found"), AuthenticationError
    ),
    **dict.fromkeys(("access_denied", "forbidden", "permission_denied", "model_not_allowed"), PermissionDeniedError),
    **dict.fromkeys(("task_not_exist", "task_not_found", "not_found"), NotFoundError),
    **dict.fromkeys(("rate_limit_exceeded", "too_many_requests"), RateLimitError),
    **dict.fromkeys(("content_policy_violation", "sensitive_words_detected", "image_safety"), ContentBlockedError),
    "rate_limit_unavailable": ServerError,
    **dict.fromkeys(
        ("duplicate_request", "duplicate_business_id", "duplicate_client_business_id", "duplicate_task"),
        DuplicateRequestError,
    ),
}
_LABELS: dict[type[APIError], str] = {
    AuthenticationError: "authentication failed",
    PermissionDeniedError: "access refused",
    InsufficientQuotaError: "insufficient balance",
    ModelUnavailableError: "model not available",
    ContentBlockedError: "blocked by content policy",
    DuplicateRequestError: "refused as a duplicate",
}
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def classify(status: int, code: str | None, error_type: str | None = None, message: str = "") -> type[APIError]:
    """The error class for an answer: ``error.code`` first, then the HTTP status.

    A 400/422 whose message names a safety or content-policy reason is a
    :class:`ContentBlockedError`; a 401 or 403 that names an empty balance is
    an :class:`InsufficientQuotaError`; a 409, or a 400 that names a duplicate, a :class:`DuplicateRequestError`.
    """
    by_code = _CODE_CLASSES.get((code or "").strip().lower())
    if by_code is not None:
        return by_code
    cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else APIError)
    if cls is BadRequestError and is_blocked(code, message, http_status=status):
        return ContentBlockedError
    if cls is BadRequestError and re.search(r"duplicat", message, re.IGNORECASE):
        return DuplicateRequestError  # "client_business_id … is a duplicate": the first submit was accepted
    if status in (401, 403) and re.search(r"insufficient|quota|balance", message, re.IGNORECASE):
        return InsufficientQuotaError
    if cls is PermissionDeniedError and (error_type or "").lower() == "authentication_error":
        return AuthenticationError
    return cls


def _successor_hint(message: str) -> str | None:
    """For a model past its shutdown date named in a ``model_not_found`` message: the id to use instead."""
    for spec in MODELS.values():
        if spec.successor and re.search(rf"(?<![\w.-]){re.escape(spec.id)}(?![\w.-])", message):
            return f"{spec.id} was shut down upstream on {spec.shutdown}; use {spec.successor} instead"
    return None


def error_from_response(resp: requests.Response, *, base_url: str) -> APIError:
    """Map an HTTP error response to the right :class:`APIError` subclass (see :func:`classify`)."""
    status = resp.status_code
    code: str | None = None
    error_type: str | None = None
    message = ""
    ctype = resp.headers.get("Content-Type", "")
    text = redact(resp.text)[:2000] if resp.content else ""  # redact first: a cut must not leave half a key
    try:
        body = resp.json() if "json" in ctype or text.lstrip().startswith("{") else None
    except ValueError:
        body = None
    html = False
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            message = str(err.get("message") or "")
            code = str_or_none(err.get("code"))
            error_type = str_or_none(err.get("type"))
        elif isinstance(err, str):
            message = err
        message = message or str(body.get("message") or "")
        top_code = body.get("code")
        if code is None and isinstance(top_code, (str, int)) and not isinstance(top_code, bool):
            code = str(top_code)
    elif "<html" in text.lower() or "html" in ctype:
        html = True
        title = _TITLE.search(text)
        page = re.sub(r"\s+", " ", title.group(1)).strip() if title else "an error page"
        message = f"the gateway returned an HTML page ({page}) instead of JSON"
    else:
        message = re.sub(r"\s+", " ", text).strip()[:200]
    cls = classify(status, code, error_type, message)
    message = message or resp.reason or "no details"
    if "invalid apitype" in message.lower():
        message += f"; the request reached the wrong endpoint (the chat route?): check GEMIMG_BASE_URL ({base_url})"
    label = _LABELS.get(cls, "request failed")
    hint = cls.hint
    if cls is PermissionDeniedError and (html or body is None):
        hint = "the gateway's edge refused this client (no JSON error): a proxy or firewall, or a missing User-Agent"
    if cls is ModelUnavailableError:
        hint = _successor_hint(message) or hint
    return cls(
        f"{label} ({status}): {message}",
        hint=hint,
        status_code=status,
        code=code,
        error_type=error_type,
        request_id=resp.headers.get("X-Request-Id") or resp.headers.get("x-request-id"),
        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
    )
