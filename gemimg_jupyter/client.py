"""HTTP client for the ToAPIs async image API (requests + backoff).

One method per endpoint: :meth:`ToAPIsClient.upload_image`,
:meth:`~ToAPIsClient.submit`, :meth:`~ToAPIsClient.status`,
:meth:`~ToAPIsClient.download`. Every HTTP error is mapped onto the
:mod:`~gemimg_jupyter.errors` tree. Only what can succeed later is retried
(429, 5xx, connection errors), with exponential backoff and jitter, and the
server's ``Retry-After`` first.

A submit is never blindly sent twice: after an ambiguous failure (the request
may have reached the gateway) the task is first looked up by its
``client_business_id``, and only re-sent if the gateway does not know it.
"""

from __future__ import annotations

import email.utils
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urljoin, urlsplit

import backoff
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentBlockedError,
    GemimgError,
    InsufficientQuotaError,
    InvalidImageError,
    JobCancelled,
    ModelUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskExpiredError,
    redact,
)
from .images import ImageBytes
from .models import GenerationParams, TaskStatus
from .settings import RetryPolicy, Secret

__all__ = ["STATUS_WORDS", "Category", "RequestGate", "ToAPIsClient", "is_blocked", "parse_retry_after", "parse_task"]

log = logging.getLogger(__name__)

Category = Literal["submit", "query", "upload", "download"]
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
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


class RequestGate(Protocol):
    """What the job runner plugs in to share rate limits across all jobs.

    ``acquire`` blocks until a request of ``category`` may go out (token bucket,
    lane paused after a 429); ``penalize`` pauses the whole lane.
    """

    def acquire(self, category: Category) -> None: ...  # pragma: no cover

    def penalize(self, category: Category, seconds: float) -> None: ...  # pragma: no cover


class _OpenGate:
    def acquire(self, category: Category) -> None:
        return None

    def penalize(self, category: Category, seconds: float) -> None:
        return None


class _Ambiguous(GemimgError):
    """Internal: a submit failed in a way that may have reached the gateway."""

    def __init__(self, cause: GemimgError) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry_after: float | None = getattr(cause, "retry_after", None)


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


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: object) -> int | None:
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
        model=_str_or_none(body.get("model")),
        created_at=_int_or_none(body.get("created_at")),
        completed_at=_int_or_none(body.get("completed_at")),
        expires_at=_int_or_none(body.get("expires_at")),
        url=url,
        error_code=_str_or_none(code),
        error_message=_str_or_none(message),
        client_business_id=_str_or_none(body.get("client_business_id")),
        billing_status=_str_or_none(billing.get("status")),
        cost_usd=_cost(billing),
        raw_status=raw_status,
        blocked=status == "failed" and is_blocked(code, message),
    )


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientQuotaError,
    403: PermissionDeniedError,
    404: NotFoundError,
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
}
_LABELS: dict[type[APIError], str] = {
    AuthenticationError: "authentication failed",
    PermissionDeniedError: "access refused",
    InsufficientQuotaError: "insufficient balance",
    ModelUnavailableError: "model not available",
    ContentBlockedError: "blocked by content policy",
}
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def classify(status: int, code: str | None, error_type: str | None = None, message: str = "") -> type[APIError]:
    """The error class for an answer: ``error.code`` first, then the HTTP status.

    A 400/422 whose message names a safety or content-policy reason is a
    :class:`ContentBlockedError`; a 401 or 403 that names an empty balance is
    an :class:`InsufficientQuotaError`.
    """
    by_code = _CODE_CLASSES.get((code or "").strip().lower())
    if by_code is not None:
        return by_code
    cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else APIError)
    if cls is BadRequestError and is_blocked(code, message, http_status=status):
        return ContentBlockedError
    if status in (401, 403) and re.search(r"insufficient|quota|balance", message, re.IGNORECASE):
        return InsufficientQuotaError
    if cls is PermissionDeniedError and (error_type or "").lower() == "authentication_error":
        return AuthenticationError
    return cls


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
            code = _str_or_none(err.get("code"))
            error_type = _str_or_none(err.get("type"))
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
    return cls(
        f"{label} ({status}): {message}",
        hint=hint,
        status_code=status,
        code=code,
        error_type=error_type,
        request_id=resp.headers.get("X-Request-Id") or resp.headers.get("x-request-id"),
        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
    )


class ToAPIsClient:
    """A client for one gateway (the real ToAPIs or the simulator).

    Parameters
    ----------
    base_url : str
        Gateway root, e.g. ``https://toapis.com`` (paths start with ``/v1``).
    api_key : Secret
        The bearer key; sent only to ``base_url``'s own origin.
    retry : RetryPolicy
        When to retry and how long to wait.
    gate : RequestGate, optional
        Shared rate limiting supplied by the job runner.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret | None,
        *,
        retry: RetryPolicy | None = None,
        gate: RequestGate | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        status_timeout: float = 5.0,
        download_timeout: float = 120.0,
        download_max_bytes: int = 50 * 1024 * 1024,
        session: requests.Session | None = None,
        on_retry: Callable[[str, float, GemimgError], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.retry = retry or RetryPolicy()
        self.gate: RequestGate = gate or _OpenGate()
        self.timeout = timeout
        self.status_timeout = status_timeout  # a status answer is small JSON: seconds, not a minute
        self.download_timeout = download_timeout  # the whole download, not each socket read
        self.download_max_bytes = download_max_bytes
        self.on_retry = on_retry
        self._http = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64, max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._http.headers["User-Agent"] = f"gemimg_jupyter/{__version__}"
        self._origin = _origin(self.base_url)
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        return f"ToAPIsClient(base_url={self.base_url!r}, api_key={'***' if self._key else None})"

    def interrupt(self) -> None:
        """Stop waiting between retries: pending calls give up with their last error."""
        self._stopped.set()

    def close(self) -> None:
        """Interrupt retries and close pooled connections."""
        self.interrupt()
        self._http.close()

    # ---- plumbing -------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}

    def _retrying(self, what: str, fn: Callable[[], Any], *, tries: int | None = None) -> Any:
        policy = self.retry

        def waits() -> Generator[float | None, Any, None]:
            # backoff sends each exception in; the wait happens here, on an event,
            # so that close() interrupts it (backoff's own sleep is then 0)
            attempt = 0
            exc = yield None
            while True:
                attempt += 1
                delay = policy.delay(attempt, getattr(exc, "retry_after", None))
                log.info("retrying %s in %.1fs after: %s", what, delay, redact(str(exc)))
                if self.on_retry is not None and isinstance(exc, GemimgError):
                    self.on_retry(what, delay, exc)
                if self._stopped.wait(delay):
                    return  # closing: give up with the last error
                exc = yield 0.0

        def giveup(exc: Exception) -> bool:
            if self._stopped.is_set():
                return True
            if isinstance(exc, _Ambiguous):
                return False
            return not policy.should_retry(getattr(exc, "status_code", None)) or isinstance(exc, InvalidImageError)

        retryable = (RateLimitError, ServerError, APIConnectionError, _Ambiguous)
        wrapped = backoff.on_exception(
            waits,  # type: ignore[arg-type]  # the generator is sent each exception
            retryable,
            max_tries=tries or policy.max_tries,
            giveup=giveup,
            jitter=None,
            logger=None,
        )(fn)
        try:
            return wrapped()
        except _Ambiguous as exc:
            raise exc.cause from None

    def _send(
        self, category: Category, method: str, path: str, *, timeout: tuple[float, float] | None = None, **kwargs: Any
    ) -> requests.Response:
        self.gate.acquire(category)
        url = f"{self.base_url}{path}"
        try:
            resp = self._http.request(method, url, headers=self._auth(), timeout=timeout or self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise APITimeoutError(
                f"the gateway at {self.base_url} did not answer in time ({type(exc).__name__})"
            ) from None
        except requests.RequestException as exc:
            raise APIConnectionError(
                f"could not reach the gateway at {self.base_url} ({type(exc).__name__}); check the network or GEMIMG_BASE_URL"
            ) from None
        log.debug("%s %s -> %s", method, path, resp.status_code)
        if resp.status_code >= 400:
            err = error_from_response(resp, base_url=self.base_url)
            if isinstance(err, RateLimitError):
                self.gate.penalize(category, err.retry_after if err.retry_after is not None else self.retry.base)
            raise err
        return resp

    @staticmethod
    def _json(resp: requests.Response) -> Mapping[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise ServerError(
                f"the gateway answered HTTP {resp.status_code} without JSON", status_code=resp.status_code
            ) from None
        if not isinstance(body, Mapping):
            raise ServerError("the gateway answered with unexpected JSON", status_code=resp.status_code)
        return body

    # ---- endpoints ------------------------------------------------------------------------

    def upload_image(
        self, data: bytes | str | Path, *, filename: str = "reference.png", mime: str = "image/png"
    ) -> str:
        """Upload a reference image; returns the public URL to pass in ``image_urls``."""
        if isinstance(data, (str, Path)):
            path = Path(data)
            filename, payload = path.name, path.read_bytes()
        else:
            payload = data

        def attempt() -> str:
            resp = self._send("upload", "POST", "/v1/uploads/images", files={"file": (filename, payload, mime)})
            body = self._json(resp)
            inner = body.get("data")
            if body.get("success") is False or not isinstance(inner, Mapping) or not inner.get("url"):
                raise BadRequestError(
                    f"upload refused: {body.get('message') or 'no URL returned'}", status_code=resp.status_code
                )
            return str(inner["url"])

        return str(self._retrying("upload", attempt))

    def submit(
        self,
        params: GenerationParams,
        *,
        client_business_id: str,
        image_urls: tuple[str, ...] = (),
        tries: int | None = None,
    ) -> TaskStatus:
        """Submit one generation; returns the queued task.

        After a failure that may have reached the gateway (connection dropped,
        timeout, 5xx), the task is looked up by ``client_business_id`` before
        anything is sent again, so one request is paid for at most once.
        ``tries=1`` sends once and leaves retries (and that look-up) to the caller.
        """
        body = params.request_body(image_urls=image_urls, client_business_id=client_business_id)
        uncertain = False

        def attempt() -> TaskStatus:
            nonlocal uncertain
            if uncertain:
                found = self.find_by_business_id(client_business_id)
                if found is not None:
                    log.info("submit %s had reached the gateway as task %s", client_business_id, found.id)
                    return found
            try:
                resp = self._send("submit", "POST", "/v1/images/generations", json=body)
            except (APIConnectionError, ServerError) as exc:
                uncertain = True
                raise _Ambiguous(exc) from None
            return parse_task(self._json(resp))

        result: TaskStatus = self._retrying("submit", attempt, tries=tries)
        return result

    @property
    def _status_timeout(self) -> tuple[float, float]:
        return (self.timeout[0], min(self.timeout[1], self.status_timeout))

    def status(self, task_id: str, *, tries: int | None = None) -> TaskStatus:
        """The task's current state (also accepts a ``client_business_id``).

        The answer must come within ``status_timeout`` seconds; ``tries=1``
        leaves retrying to the caller (the job runner, which knows its deadline).
        """

        def attempt() -> TaskStatus:
            resp = self._send("query", "GET", f"/v1/images/generations/{task_id}", timeout=self._status_timeout)
            return parse_task(self._json(resp))

        result: TaskStatus = self._retrying("status", attempt, tries=tries)
        return result

    def list_models(self, kind: str = "image") -> list[str]:
        """The model ids the key may use (``GET /v1/models?type=image``; free)."""

        def attempt() -> list[str]:
            body = self._json(self._send("query", "GET", "/v1/models", params={"type": kind}))
            data = body.get("data")
            items = data if isinstance(data, list) else []
            ids = [item.get("id") if isinstance(item, Mapping) else item for item in items]
            return [str(i) for i in ids if isinstance(i, str) and i.strip()]

        result: list[str] = self._retrying("models", attempt)
        return result

    def find_by_business_id(self, client_business_id: str) -> TaskStatus | None:
        """The task submitted with this ``client_business_id``, or ``None`` if the gateway has none."""
        try:
            resp = self._send(
                "query", "GET", f"/v1/images/generations/{client_business_id}", timeout=self._status_timeout
            )
        except NotFoundError:
            return None
        return parse_task(self._json(resp))

    def download(
        self,
        url: str,
        *,
        expected: tuple[int, int] | None = None,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        tries: int | None = None,
    ) -> ImageBytes:
        """Fetch a result image, verify it decodes, and return its bytes.

        The result is :class:`~.images.ImageBytes`: plain bytes carrying the
        decoded ``width``/``height`` and a ``note`` when the image is not the
        ``expected`` size. Such an image is paid for and is returned, never
        refetched or refused (a channel may answer a 2K request with 1K); only
        bytes that do not decode are fetched again (three times in all).

        The key is sent only to the gateway's own origin; redirects are
        followed by hand (at most three, http(s) only) so that a redirect to
        another host never carries it. Bodies over ``download_max_bytes`` are
        cut off and reported. The body is streamed in chunks; between chunks the
        total deadline (``download_timeout``, or ``deadline`` on the monotonic
        clock when sooner) and ``cancelled()`` are checked, so a trickle-fed
        download ends and a cancel stops it within one socket read.
        """

        def attempt() -> ImageBytes:
            data = self._fetch(url, deadline=deadline, cancelled=cancelled)
            try:
                image = ImageBytes.checked(data, expected=expected)
            except InvalidImageError as exc:
                raise _CorruptDownload(str(exc)) from None
            if image.note:
                log.warning("%s: %s", _safe_url(url), image.note)
            return image

        fetches = 3  # bytes that do not decode; ``tries`` is for transient HTTP errors
        for n in range(1, fetches + 1):
            try:
                result: ImageBytes = self._retrying("download", attempt, tries=tries)
                return result
            except _CorruptDownload as exc:
                if n == fetches:
                    raise InvalidImageError(f"{exc} (after {fetches} downloads)") from None
                log.info("download of %s was not a valid image, fetching again", _safe_url(url))
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, url: str, *, deadline: float | None = None, cancelled: Callable[[], bool] | None = None) -> bytes:
        own = time.monotonic() + self.download_timeout
        deadline = own if deadline is None else min(deadline, own)
        current = urljoin(self.base_url + "/", url)
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https"):
                raise InvalidImageError(
                    f"refusing to download a {parts.scheme or 'relative'}: URL; only http(s) is allowed"
                )
            headers = self._auth() if _origin(current) == self._origin else {}
            self.gate.acquire("download")
            try:
                resp = self._http.get(
                    current, headers=headers, timeout=self._download_timeouts, stream=True, allow_redirects=False
                )
            except requests.Timeout:
                raise APITimeoutError(f"the image download from {parts.netloc} timed out") from None
            except requests.RequestException as exc:
                raise APIConnectionError(
                    f"the image download from {parts.netloc} failed ({type(exc).__name__})"
                ) from None
            with resp:
                if resp.is_redirect and resp.headers.get("Location"):
                    current = urljoin(current, resp.headers["Location"])
                    continue
                if resp.status_code in (403, 404, 410):
                    raise TaskExpiredError(
                        f"the result URL does not serve the image (HTTP {resp.status_code}): not there yet, or expired"
                    )
                if resp.status_code >= 400:
                    raise error_from_response(resp, base_url=self.base_url)
                return self._read_capped(resp, deadline=deadline, cancelled=cancelled, host=parts.netloc)
        raise InvalidImageError(f"the image download was redirected more than {MAX_REDIRECTS} times")

    @property
    def _download_timeouts(self) -> tuple[float, float]:
        return (self.timeout[0], min(self.timeout[1], 10.0))  # each read; the total is checked between reads

    def _read_capped(
        self,
        resp: requests.Response,
        *,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        host: str = "",
    ) -> bytes:
        cap = self.download_max_bytes
        declared = _int_or_none(resp.headers.get("Content-Length"))
        if declared is not None and declared > cap:
            raise InvalidImageError(
                f"the image is {declared:,} bytes, over the {cap:,}-byte download cap; not downloaded"
            )
        chunks: list[bytes] = []
        total = 0
        for chunk in _chunks(resp):
            if cancelled is not None and cancelled():
                raise JobCancelled("the download was stopped by a cancel")
            if deadline is not None and time.monotonic() > deadline:
                raise APITimeoutError(f"the image download from {host or 'the gateway'} did not finish in time")
            total += len(chunk)
            if total > cap:
                raise InvalidImageError(f"the image download passed the {cap:,}-byte cap and was cut off")
            chunks.append(chunk)
        return b"".join(chunks)


def _chunks(resp: requests.Response) -> Generator[bytes, None, None]:
    """The body as it arrives: whatever one socket read brings (not a full 64 KB), so a trickle is seen."""
    read1 = getattr(resp.raw, "read1", None)
    if read1 is None:  # pragma: no cover - urllib3 < 2
        yield from resp.iter_content(_CHUNK)
        return
    try:
        while True:
            chunk = read1(_CHUNK)
            if not chunk:
                return
            yield chunk
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise APITimeoutError("the image download stalled (no byte within the read timeout)") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise APIConnectionError(f"the image download broke off ({type(exc).__name__})") from None


class _CorruptDownload(InvalidImageError):
    """Internal: bytes arrived but did not decode; worth one more download."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
