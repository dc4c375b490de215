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

from . import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    GemimgError,
    InsufficientQuotaError,
    InvalidImageError,
    JobCancelled,
    NotFoundError,
    RateLimitError,
    ServerError,
    TaskExpiredError,
    redact,
)
from .images import decode_image
from .models import GenerationParams, TaskStatus
from .settings import RetryPolicy, Secret

__all__ = ["Category", "RequestGate", "ToAPIsClient", "parse_retry_after", "parse_task"]

log = logging.getLogger(__name__)

Category = Literal["submit", "query", "upload", "download"]
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
_STATUS_ALIASES = {"submitted": "queued", "pending": "queued", "processing": "in_progress", "running": "in_progress"}


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


def parse_task(body: Mapping[str, Any]) -> TaskStatus:
    """Parse a submit or status response into a :class:`TaskStatus`.

    Tolerates every documented shape: ``id`` or ``task_id``; status
    ``submitted`` for ``queued``; the image URL at ``result.data[0].url`` or a
    top-level ``url``; ``error.message`` or a legacy ``fail_reason``.
    """
    task_id = body.get("id") or body.get("task_id")
    if not task_id:
        raise APIError("the gateway's task response has no id; is GEMIMG_BASE_URL pointing at the image API?")
    status = str(body.get("status") or "queued").lower()
    status = _STATUS_ALIASES.get(status, status)
    if status not in ("queued", "in_progress", "completed", "failed"):
        status = "in_progress"
    url = None
    result = body.get("result")
    if isinstance(result, Mapping):
        data = result.get("data")
        if isinstance(data, list) and data and isinstance(data[0], Mapping):
            url = data[0].get("url")
    url = url or body.get("url")
    error: Mapping[str, Any] = body["error"] if isinstance(body.get("error"), Mapping) else {}
    message = error.get("message") or body.get("fail_reason")
    billing: Mapping[str, Any] = body["billing"] if isinstance(body.get("billing"), Mapping) else {}
    cost = billing.get("cost_usd")
    try:
        cost_usd = float(cost) if cost is not None and billing.get("status") != "pending" else None
    except (TypeError, ValueError):
        cost_usd = None
    return TaskStatus(
        id=str(task_id),
        status=status,
        progress=_int_or_none(body.get("progress")) or (100 if status == "completed" else 0),
        model=_str_or_none(body.get("model")),
        created_at=_int_or_none(body.get("created_at")),
        completed_at=_int_or_none(body.get("completed_at")),
        expires_at=_int_or_none(body.get("expires_at")),
        url=_str_or_none(url),
        error_code=_str_or_none(error.get("code")),
        error_message=_str_or_none(message),
        client_business_id=_str_or_none(body.get("client_business_id")),
        billing_status=_str_or_none(billing.get("status")),
        cost_usd=cost_usd,
    )


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientQuotaError,
    403: AuthenticationError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}
_HINTS: dict[type[APIError], str] = {
    AuthenticationError: "check TOAPIS_API_KEY or run %gemimg login",
    InsufficientQuotaError: "top up the ToAPIs balance",
    RateLimitError: "the gateway is rate limiting; wait a moment or lower max_in_flight",
    ServerError: "the gateway had a problem; try again in a moment",
}
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def error_from_response(resp: requests.Response, *, base_url: str) -> APIError:
    """Map an HTTP error response to the right :class:`APIError` subclass."""
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
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            message = str(err.get("message") or "")
            code = _str_or_none(err.get("code"))
            error_type = _str_or_none(err.get("type"))
        elif isinstance(err, str):
            message = err
        message = message or str(body.get("message") or "")
    elif "<html" in text.lower() or "html" in ctype:
        title = _TITLE.search(text)
        page = re.sub(r"\s+", " ", title.group(1)).strip() if title else "an error page"
        message = f"the gateway returned an HTML page ({page}) instead of JSON"
    else:
        message = re.sub(r"\s+", " ", text).strip()[:200]
    cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else APIError)
    message = message or resp.reason or "no details"
    if "invalid apitype" in message.lower():
        message += f"; the request reached the wrong endpoint (the chat route?): check GEMIMG_BASE_URL ({base_url})"
    label = {AuthenticationError: "authentication failed", InsufficientQuotaError: "insufficient balance"}.get(
        cls, "request failed"
    )
    hint = _HINTS.get(cls)
    full = f"{label} ({status}): {message}" + (f"; {hint}" if hint else "")
    return cls(
        full,
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
    ) -> bytes:
        """Fetch a result image, verify it decodes, and return its bytes.

        The key is sent only to the gateway's own origin; redirects are
        followed by hand (at most three, http(s) only) so that a redirect to
        another host never carries it. Bodies over ``download_max_bytes`` are
        cut off and reported. The body is streamed in chunks; between chunks the
        total deadline (``download_timeout``, or ``deadline`` on the monotonic
        clock when sooner) and ``cancelled()`` are checked, so a trickle-fed
        download ends and a cancel stops it within one socket read.
        """

        def attempt() -> bytes:
            data = self._fetch(url, deadline=deadline, cancelled=cancelled)
            try:
                decode_image(data, expected=expected)
            except InvalidImageError as exc:
                raise _CorruptDownload(str(exc)) from None
            return data

        tries = 3
        for n in range(1, tries + 1):
            try:
                result: bytes = self._retrying("download", attempt, tries=tries)
                return result
            except _CorruptDownload as exc:
                if n == tries:
                    raise InvalidImageError(f"{exc} (after {tries} downloads)") from None
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
                        f"the result URL no longer serves the image (HTTP {resp.status_code}); it has expired"
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
