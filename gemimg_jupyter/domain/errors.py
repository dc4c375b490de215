"""One error tree for everything gemimg_jupyter raises.

::

    GemimgError
    ├── ConfigError                  missing key for the real backend, bad setting
    │   └── LedgerError              the ledger cannot be written now: a full disk (also an sqlite3 error)
    │       └── LedgerBusyError      another process holds the ledger's write lock
    ├── ValidationError              a parameter the model does not accept (before any request)
    │   └── BudgetExceededError      the work would exceed ``max_cost_usd``
    ├── APIError                     status, code, message, request id; never the key
    │   ├── BadRequestError 400/422  ├── AuthenticationError 401
    │   │   ├── ContentBlockedError  │   └── PermissionDeniedError 403
    │   │   └── DuplicateRequestError 409, or a 400 naming a duplicate business id
    │   ├── InsufficientQuotaError 402, 403 insufficient_user_quota
    │   ├── ModelUnavailableError    503 model_not_found (not retried)
    │   ├── NotFoundError 404        ├── RateLimitError 429
    │   └── ServerError 5xx (HTML bodies too)
    ├── APIConnectionError
    │   └── APITimeoutError
    ├── InvalidImageError            downloaded bytes are not a usable image
    └── JobError
        ├── TaskFailedError          the server said ``failed``
        ├── TaskExpiredError         the result URL expired before download
        ├── JobTimeoutError          our own deadline passed (the task may still finish)
        ├── TaskLostError            paid, but the gateway cannot find the task (a duplicate refusal)
        └── JobCancelled

Errors are classified by the body's ``error.code`` first and the HTTP status
second (see ``client_errors.error_from_response``). Every message passes through :func:`redact`, so a secret registered with
:func:`register_secret` (the API key) can never appear in ``str(err)``.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from gemimg_jupyter.domain.text import format_usd

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigError",
    "ContentBlockedError",
    "DuplicateRequestError",
    "GemimgError",
    "InsufficientQuotaError",
    "InvalidImageError",
    "JobCancelled",
    "JobError",
    "JobTimeoutError",
    "LedgerBusyError",
    "LedgerError",
    "ModelUnavailableError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TaskBlockedError",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskLostError",
    "ValidationError",
    "redact",
    "register_secret",
]

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` removes it from any text."""
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Return *text* with every registered secret replaced by ``***``."""
    if not _SECRETS:
        return text
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class GemimgError(Exception):
    """Base class of every error raised by gemimg_jupyter.

    ``hint`` is what to do about it, one clause in Python words (empty when the
    message says it all). A class names its usual hint in its header
    (``class RateLimitError(APIError, hint="...")``); the place that raises or maps
    an error may give another (``hint=`` to the constructor). ``str(err)`` is the
    message followed by the hint; ``err.message`` is the message alone, for
    quoting one error inside another. The magic layer translates the Python words.
    """

    hint: str = ""

    def __init_subclass__(cls, *, hint: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if hint is not None:
            cls.hint = hint

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = redact(str(message))
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = redact(hint)

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[GemimgError], state: dict[str, Any]) -> GemimgError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class ConfigError(GemimgError):
    """A setting is missing or wrong (for example no API key for the real backend)."""


class LedgerError(ConfigError, sqlite3.OperationalError):
    """The ledger cannot be written now (a full disk), as one line, before anything is paid.

    Also an ``sqlite3.OperationalError``, so code that waits out a busy or full ledger still catches it.
    IPython shows it as its one line, without a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class LedgerBusyError(LedgerError):
    """Another process holds the ledger's write lock past the store's patience (a busy ledger)."""


class ValidationError(GemimgError, ValueError):
    """A parameter that the model does not accept; raised before any request."""

    def __init__(self, message: str, *, field: str, value: object) -> None:
        super().__init__(message)
        self.field = field
        self.value = _short_repr(value)

    @classmethod
    def not_allowed(cls, field: str, value: object, allowed: str) -> ValidationError:
        """The usual line: ``size '5:3' is not allowed; use one of 1:1, 16:9``."""
        return cls(f"{field} {_short_repr(value)} is not allowed; {allowed}", field=field, value=value)


class BudgetExceededError(ValidationError):
    """The requested work would take spending past ``max_cost_usd``."""

    def __init__(self, estimate_usd: float, spent_usd: float, budget_usd: float) -> None:
        super().__init__(
            f"this would cost about {format_usd(estimate_usd, places=2)} on top of "
            f"{format_usd(spent_usd, places=2)} spent, over the budget of {format_usd(budget_usd, places=2)}; "
            "raise max_cost_usd or ask for less",
            field="max_cost_usd",
            value=budget_usd,
        )
        self.estimate_usd = estimate_usd
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd


class APIError(GemimgError):
    """The gateway answered with an error.

    Attributes
    ----------
    status_code : int or None
        HTTP status, ``None`` for errors found in a 200 body.
    code : str or None
        ``error.code`` from the body (an int code is turned into a string).
    request_id : str or None
        The gateway's request id header, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.code = code
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r}, message={self.message!r})"


class BadRequestError(APIError):
    """400 or 422: the gateway refused the request; fix it before retrying."""


class ContentBlockedError(
    BadRequestError, hint="the prompt or a reference was refused by the content policy; nothing was charged"
):
    """The gateway refused the prompt or references for a safety or content-policy reason (nothing is charged)."""


class DuplicateRequestError(BadRequestError):
    """409, or a 400 naming a duplicate: the gateway already has a task with this ``client_business_id``.

    To a submit that may have reached the gateway before (its answer lost), this says the first one was
    accepted, and so paid for.
    """


class AuthenticationError(APIError, hint="check TOAPIS_API_KEY or use Settings(api_key=...)"):
    """401: the key is missing, wrong or revoked."""


class PermissionDeniedError(
    AuthenticationError,
    hint="the key may not use this model, or the gateway's edge refused this client; "
    "python -m gemimg_jupyter.probe lists what the key may use",
):
    """403 without a more telling code: the key may not use this, or the edge refused the client."""


class InsufficientQuotaError(APIError, hint="top up the ToAPIs balance"):
    """402, or 403 ``insufficient_user_quota``: the account balance is too low."""


class ModelUnavailableError(
    APIError,
    hint="the gateway serves no channel for this model to this key; python -m gemimg_jupyter.probe lists what it may use",
):
    """``model_not_found`` (503 on New API gateways): no channel serves this model to this key; not retried."""


class NotFoundError(APIError):
    """404: unknown task, file or model."""


class RateLimitError(APIError, hint="the gateway is rate limiting; wait a moment or lower max_in_flight"):
    """429: too many requests; ``retry_after`` says how long the gateway asked to wait."""


class ServerError(APIError, hint="the gateway had a problem; try again in a moment"):
    """5xx from the gateway or the edge in front of it (bodies may be HTML)."""


class APIConnectionError(GemimgError):
    """The gateway could not be reached, or the connection broke."""


class APITimeoutError(APIConnectionError):
    """The gateway did not answer in time."""


class InvalidImageError(GemimgError):
    """Downloaded or supplied bytes are not an image we can use.

    No hint of its own: what to do depends on whose bytes they were, so the
    place that raises it says (a stored image that is damaged: make it again with
    ``fresh=True``; a download: the job stays resumable).
    """


class JobError(GemimgError):
    """A job did not produce its image."""

    def __init__(self, message: str, *, task_id: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.task_id = task_id


class TaskFailedError(JobError, hint="failed tasks are refunded; rewording the prompt often helps"):
    """The gateway reported the task as ``failed`` (a failed task is refunded)."""

    def __init__(
        self, message: str, *, task_id: str | None = None, code: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, task_id=task_id, hint=hint)
        self.code = code


class TaskBlockedError(TaskFailedError):
    """The gateway refused the task for a safety or content-policy reason."""


class TaskExpiredError(JobError):
    """The result URL expired before the image was downloaded."""


class JobTimeoutError(JobError):
    """The local deadline passed; the task stays in the ledger for ``resume``."""


class TaskLostError(
    JobError,
    hint="a re-run does not pay for it again (fresh=True does); the gateway's support can trace the business id",
):
    """Paid for, but unreachable: a second submit was refused as a duplicate of a task the gateway cannot find."""


class JobCancelled(JobError):
    """The job was cancelled before it produced an image."""


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    text = redact(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
