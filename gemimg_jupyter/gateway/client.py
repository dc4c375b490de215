"""HTTP client for the ToAPIs async image API (requests + backoff).

One method per endpoint: :meth:`ToAPIsClient.upload_image`,
:meth:`~ToAPIsClient.submit`, :meth:`~ToAPIsClient.status`,
:meth:`~ToAPIsClient.download`. Every HTTP error is mapped onto the
:mod:`~gemimg_jupyter.domain.errors` tree. Only what can succeed later is retried
(429, 5xx, connection errors), with exponential backoff and jitter, and the
server's ``Retry-After`` first.

A submit is never blindly sent twice: after an ambiguous failure (the request
may have reached the gateway) the task is first looked up by its
``client_business_id``, and only re-sent if the gateway does not know it.

:class:`ToAPIsClient` is the one public face. It *has* its parts, each in its
own module: a :class:`~.transport.HTTPTransport` (the pooled session, retries,
the rate gate) and a :class:`~.download.Downloader` over that transport
(streamed, deadline-bound, checked downloads); :mod:`.parse` reads every answer
dialect into a ``TaskStatus`` and :mod:`.http_errors` maps HTTP errors onto the
error tree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

from gemimg_jupyter.domain.errors import APIConnectionError, BadRequestError, GemimgError, NotFoundError, ServerError
from gemimg_jupyter.domain.models import GenerationParams, TaskStatus
from gemimg_jupyter.domain.settings import RetryPolicy, Secret
from gemimg_jupyter.draw.images import ImageBytes
from gemimg_jupyter.gateway.download import Downloader
from gemimg_jupyter.gateway.http_errors import parse_retry_after
from gemimg_jupyter.gateway.parse import STATUS_WORDS, find_result_url, parse_task
from gemimg_jupyter.gateway.transport import AmbiguousFailure, Category, HTTPTransport, RequestGate, read_json

__all__ = [
    "STATUS_WORDS",
    "Category",
    "ToAPIsClient",
    "find_result_url",
    "parse_retry_after",
    "parse_task",
]

log = logging.getLogger(__name__)


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
    timeout : (float, float)
        Connect and read timeouts of one request.
    status_timeout : float
        How long a status answer (small JSON) may take: seconds, not a minute.
    download_timeout, download_max_bytes
        The whole download's deadline (not each socket read) and its size cap.
    session : requests.Session, optional
        The session to pool connections in (the probe passes one that records).
    on_retry : callable, optional
        Told ``(what, wait, error)`` before each wait between tries.

    The client *has* a :attr:`transport` and a :attr:`downloader` that uses it.
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
        self.transport = HTTPTransport(
            base_url, api_key, retry=retry, gate=gate, timeout=timeout, session=session, on_retry=on_retry
        )
        self.downloader = Downloader(self.transport, timeout=download_timeout, max_bytes=download_max_bytes)
        self.status_timeout = status_timeout

    def __repr__(self) -> str:
        return f"ToAPIsClient(base_url={self.base_url!r}, api_key={'***' if self.transport.has_key else None})"

    @property
    def base_url(self) -> str:
        """The gateway root, without a trailing slash."""
        return self.transport.base_url

    @property
    def gate(self) -> RequestGate:
        """The rate gate every request passes (the job runner plugs in its shared one)."""
        return self.transport.gate

    @gate.setter
    def gate(self, gate: RequestGate) -> None:
        self.transport.gate = gate

    def interrupt(self) -> None:
        """Stop waiting between retries: pending calls give up with their last error."""
        self.transport.interrupt()

    def close(self) -> None:
        """Interrupt retries and close pooled connections."""
        self.transport.close()

    def download(
        self,
        url: str,
        *,
        expected: tuple[int, int] | None = None,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        tries: int | None = None,
        small: int | None = None,
    ) -> ImageBytes:
        """Fetch a result image, verify it decodes, and return its bytes (see :meth:`.Downloader.download`)."""
        return self.downloader.download(
            url, expected=expected, deadline=deadline, cancelled=cancelled, tries=tries, small=small
        )

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
            resp = self.transport.send(
                "upload", "POST", "/v1/uploads/images", files={"file": (filename, payload, mime)}
            )
            body = read_json(resp)
            inner = body.get("data")
            if body.get("success") is False or not isinstance(inner, Mapping) or not inner.get("url"):
                raise BadRequestError(
                    f"upload refused: {body.get('message') or 'no URL returned'}", status_code=resp.status_code
                )
            return str(inner["url"])

        return str(self.transport.retrying("upload", attempt))

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
        ``tries=1`` sends once and leaves retries (and that look-up) to the caller. Every submit carries
        ``Idempotency-Key: <client_business_id>`` (New API answers a repeated key with the first task;
        harmless where it is ignored).
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
                resp = self.transport.send(  # a second guard: New API replays the first task for a repeated key
                    "submit", "POST", "/v1/images/generations", json=body,
                    headers={"Idempotency-Key": client_business_id},
                )  # fmt: skip
            except (APIConnectionError, ServerError) as exc:
                uncertain = True
                raise AmbiguousFailure(exc) from None
            return parse_task(read_json(resp))

        result: TaskStatus = self.transport.retrying("submit", attempt, tries=tries)
        return result

    @property
    def _status_timeout(self) -> tuple[float, float]:
        connect, read = self.transport.timeout
        return (connect, min(read, self.status_timeout))

    def status(self, task_id: str, *, tries: int | None = None) -> TaskStatus:
        """The task's current state (also accepts a ``client_business_id``).

        The answer must come within ``status_timeout`` seconds; ``tries=1``
        leaves retrying to the caller (the job runner, which knows its deadline).
        """

        def attempt() -> TaskStatus:
            resp = self.transport.send(
                "query", "GET", f"/v1/images/generations/{task_id}", timeout=self._status_timeout
            )
            return parse_task(read_json(resp))

        result: TaskStatus = self.transport.retrying("status", attempt, tries=tries)
        return result

    def list_models(self, kind: str = "image", *, tries: int | None = None) -> list[str]:
        """The model ids the key may use (``GET /v1/models?type=image``; free); ``tries``: at most that many."""

        def attempt() -> list[str]:
            body = read_json(self.transport.send("query", "GET", "/v1/models", params={"type": kind}))
            data = body.get("data")
            items = data if isinstance(data, list) else []
            ids = [item.get("id") if isinstance(item, Mapping) else item for item in items]
            return [str(i) for i in ids if isinstance(i, str) and i.strip()]

        result: list[str] = self.transport.retrying("models", attempt, tries=tries)
        return result

    def list_pricing(self, kind: str = "image") -> Mapping[str, object]:
        """The gateway's price list (``GET /v1/pricing?type=image``, Late docs §9; a catalogue, not a quote).

        Only the first page: ``has_more`` is not followed (a key's image models fit in one).
        """

        def attempt() -> Mapping[str, object]:
            return read_json(self.transport.send("query", "GET", "/v1/pricing", params={"type": kind, "limit": 100}))

        result: Mapping[str, object] = self.transport.retrying("pricing", attempt, tries=1)
        return result

    def find_by_business_id(self, client_business_id: str) -> TaskStatus | None:
        """The task submitted with this ``client_business_id``, or ``None`` if the gateway has none."""
        try:
            return self.status(client_business_id, tries=1)
        except NotFoundError:
            return None
