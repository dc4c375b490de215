"""The HTTP transport a gateway client *has*: one pooled session, retries, the rate gate.

Only what can succeed later is retried (429, 5xx, connection errors), with
exponential backoff and jitter and the server's ``Retry-After`` first; the
waits between tries happen on an event, so :meth:`HTTPTransport.close` ends
them at once. Every request passes the shared :class:`RequestGate` first, and
every error answer becomes an exception of the :mod:`~gemimg_jupyter.domain.errors` tree.
The key goes only to the gateway's own origin (:meth:`HTTPTransport.auth_for`).
This module knows nothing of the endpoints: the client and the downloader are
built on it, never the other way round.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Mapping
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import backoff
import requests
from requests.adapters import HTTPAdapter

from gemimg_jupyter._version import __version__
from gemimg_jupyter.domain.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    GemimgError,
    InvalidImageError,
    RateLimitError,
    ServerError,
    redact,
)
from gemimg_jupyter.domain.settings import RetryPolicy, Secret
from gemimg_jupyter.gateway.http_errors import error_from_response

__all__ = ["AmbiguousFailure", "Category", "HTTPTransport", "RequestGate", "origin", "read_json"]

log = logging.getLogger(__name__)

Category = Literal["submit", "query", "upload", "download"]

#: Origins whose proxies are remembered (the gateway and the hosts it serves files from).
_MAX_ORIGINS = 64


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


class AmbiguousFailure(GemimgError):
    """A submit failed in a way that may have reached the gateway."""

    def __init__(self, cause: GemimgError) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry_after: float | None = getattr(cause, "retry_after", None)


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, lower-case host and port (the default one when absent): what decides where the key may go."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class HTTPTransport:
    """The plumbing of one gateway client: its origin and key, the pooled session, retries, the rate gate.

    ``gate`` may be replaced at any time (the job runner plugs in its shared one).
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret | None,
        *,
        retry: RetryPolicy | None = None,
        gate: RequestGate | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        session: requests.Session | None = None,
        on_retry: Callable[[str, float, GemimgError], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.retry = retry or RetryPolicy()
        self.gate: RequestGate = gate or _OpenGate()
        self.timeout = timeout
        self.on_retry = on_retry
        self._http = session or requests.Session()
        # the environment (proxies, CA bundle) is read once per origin here, not on every request: that reading
        # was a third of requests' own cost per call; and a ~/.netrc entry can never replace the key's header
        self._http.trust_env = False
        self._verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._http.verify = self._verify  # for the probe's own requests on this session
        self._proxies: dict[tuple[str, str, int | None], dict[str, str]] = {}
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64, max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._http.headers["User-Agent"] = f"gemimg_jupyter/{__version__}"
        self._origin = origin(self.base_url)
        self._stopped = threading.Event()

    def interrupt(self) -> None:
        """Stop waiting between retries: pending calls give up with their last error."""
        self._stopped.set()

    def close(self) -> None:
        """Interrupt retries and close pooled connections."""
        self.interrupt()
        self._http.close()

    @property
    def has_key(self) -> bool:
        """True when requests to the gateway carry a key."""
        return bool(self._key)

    def proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, …), read once per origin."""
        key = origin(url)
        found = self._proxies.get(key)
        if found is None:
            found = requests.utils.get_environ_proxies(url)
            if len(self._proxies) < _MAX_ORIGINS:  # the gateway and its CDN hosts: a handful
                self._proxies[key] = found
        return found

    def auth_for(self, url: str) -> dict[str, str]:
        """The ``Authorization`` header for ``url``: only on the gateway's own origin, and only with a key."""
        if not self._key or origin(url) != self._origin:
            return {}
        return {"Authorization": f"Bearer {self._key.reveal()}"}

    def retrying(self, what: str, fn: Callable[[], Any], *, tries: int | None = None) -> Any:
        """``fn()``, tried again after what can succeed later (at most ``tries``, default the policy's)."""
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
            if isinstance(exc, AmbiguousFailure):
                return False
            return not policy.should_retry(getattr(exc, "status_code", None)) or isinstance(exc, InvalidImageError)

        retryable = (RateLimitError, ServerError, APIConnectionError, AmbiguousFailure)
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
        except AmbiguousFailure as exc:
            raise exc.cause from None

    def send(
        self,
        category: Category,
        method: str,
        path: str,
        *,
        timeout: tuple[float, float] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request to ``base_url + path`` after the gate; an error answer raises (a 429 also pauses the lane)."""
        self.gate.acquire(category)
        url = f"{self.base_url}{path}"
        try:
            resp = self._exchange(method, url, headers=headers, timeout=timeout or self.timeout, **kwargs)
            resp.content  # noqa: B018 - read whole, so the connection goes back to the pool now
        except requests.Timeout as exc:
            raise APITimeoutError(
                f"the gateway at {self.base_url} did not answer in time ({type(exc).__name__})"
            ) from None
        except requests.RequestException as exc:
            raise APIConnectionError(
                f"could not reach the gateway at {self.base_url} ({type(exc).__name__}); check the network or GEMIMG_BASE_URL"
            ) from None
        log.debug("%s %s -> %s", method, path, resp.status_code)
        if resp.is_redirect:  # never followed: a POST would come back a GET, and the key would follow it
            raise APIError(
                f"the gateway at {self.base_url} answered HTTP {resp.status_code}, a redirect to "
                f"{redact(resp.headers.get('Location', '?'))}, which is not followed",
                status_code=resp.status_code,
                hint="set GEMIMG_BASE_URL to the address it names",
            )
        if resp.status_code >= 400:
            err = error_from_response(resp, base_url=self.base_url)
            if isinstance(err, RateLimitError):  # the whole lane waits (the gate caps it at max_retry_after)
                self.gate.penalize(category, err.retry_after if err.retry_after is not None else self.retry.base)
            raise err
        return resp

    def stream(self, url: str, *, timeout: tuple[float, float]) -> requests.Response:
        """``GET url`` after the ``download`` gate, streamed, redirects not followed, the key only on our origin.

        ``requests`` errors are the caller's to map: it knows what was being fetched.
        """
        self.gate.acquire("download")
        return self._exchange("GET", url, timeout=timeout, stream=True)

    def _exchange(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float],
        stream: bool = False,
        **body: Any,
    ) -> requests.Response:
        """One request, no redirect followed: prepared here and handed to the session's adapter for ``url``.

        What ``Session.request`` adds on top (cookies, hooks, redirects, settings merged from the
        environment on every call) the gateway needs none of, and it was about a third of the client's
        CPU per status query; the session's headers (``User-Agent``) still go out, and an adapter
        mounted on the session (the probe's recorder, a test's mock) still sees every request.
        """
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method, url=url, headers={**self._http.headers, **self.auth_for(url), **(headers or {})}, **body
        )
        return self._http.get_adapter(url).send(
            prepared, stream=stream, timeout=timeout, verify=self._verify, proxies=self.proxies_for(url)
        )


def read_json(resp: requests.Response) -> Mapping[str, Any]:
    """The answer's JSON object; a :class:`ServerError` when it has none."""
    try:
        body = resp.json()
    except ValueError:
        raise ServerError(
            f"the gateway answered HTTP {resp.status_code} without JSON", status_code=resp.status_code
        ) from None
    if not isinstance(body, Mapping):
        raise ServerError("the gateway answered with unexpected JSON", status_code=resp.status_code)
    return body
