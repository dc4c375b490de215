"""Downloading result images: streamed, under a deadline, cancellable, capped, checked, and never leaking the key.

The key is sent only to the gateway's own origin; redirects are followed by
hand (at most :data:`MAX_REDIRECTS`, http(s) only) so that a redirect to
another host never carries it. The body is read as it arrives; between reads
the total deadline and the cancel are checked, and the size cap holds. Bytes
that are not a structurally sound image are fetched again (three times in all).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from gemimg_jupyter.domain.errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidImageError,
    JobCancelled,
    TaskExpiredError,
)
from gemimg_jupyter.draw.images import ImageBytes
from gemimg_jupyter.gateway.http_errors import error_from_response
from gemimg_jupyter.gateway.parse import int_or_none
from gemimg_jupyter.gateway.transport import HTTPTransport

__all__ = ["MAX_REDIRECTS", "Downloader"]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
_CHUNK = 64 * 1024


class Downloader:
    """The client's download of a result image (see :meth:`download`), over the client's transport.

    ``timeout`` bounds the whole download (not each socket read); bodies over
    ``max_bytes`` are cut off.
    """

    def __init__(self, transport: HTTPTransport, *, timeout: float = 120.0, max_bytes: int = 50 * 1024 * 1024) -> None:
        self.transport = transport
        self.timeout = timeout
        self.max_bytes = max_bytes

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
        """Fetch a result image, verify it decodes, and return its bytes.

        The result is :class:`~.images.ImageBytes`: plain bytes carrying the
        decoded ``width``/``height`` and a ``note`` when the image is not the
        ``expected`` size. Such an image is paid for and is returned, never
        refetched or refused (a channel may answer a 2K request with 1K); only
        bytes that do not decode are fetched again (three times in all).

        The key is sent only to the gateway's own origin; redirects are
        followed by hand (at most three, http(s) only) so that a redirect to
        another host never carries it. Bodies over ``max_bytes`` are
        cut off and reported. The body is streamed in chunks; between chunks the
        total deadline (``timeout``, or ``deadline`` on the monotonic
        clock when sooner) and ``cancelled()`` are checked, so a trickle-fed
        download ends and a cancel stops it within one socket read.
        ``small``: the check keeps a copy of at most that many pixels (``shown``) from its own decode.
        """

        def attempt() -> ImageBytes:
            data = self._fetch(url, deadline=deadline, cancelled=cancelled)
            try:
                image = ImageBytes.checked(data, expected=expected, small=small)
            except InvalidImageError as exc:
                raise _CorruptDownload(str(exc)) from None
            if image.note:
                log.debug("%s: %s", _safe_url(url), image.note)  # the job that asked notes it, by name
            return image

        fetches = 3  # bytes that do not decode; ``tries`` is for transient HTTP errors
        for n in range(1, fetches + 1):
            try:
                result: ImageBytes = self.transport.retrying("download", attempt, tries=tries)
                return result
            except _CorruptDownload as exc:
                if n == fetches:
                    raise InvalidImageError(f"{exc} (after {fetches} downloads)") from None
                log.info("download of %s was not a valid image, fetching again", _safe_url(url))
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, url: str, *, deadline: float | None = None, cancelled: Callable[[], bool] | None = None) -> bytes:
        own = time.monotonic() + self.timeout
        deadline = own if deadline is None else min(deadline, own)
        current = urljoin(self.transport.base_url + "/", url)
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https"):
                raise InvalidImageError(
                    f"refusing to download a {parts.scheme or 'relative'}: URL; only http(s) is allowed"
                )
            try:
                resp = self.transport.stream(current, timeout=self._read_timeouts)
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
                    raise error_from_response(resp, base_url=self.transport.base_url)
                return self._read_capped(resp, deadline=deadline, cancelled=cancelled, host=parts.netloc)
        raise InvalidImageError(f"the image download was redirected more than {MAX_REDIRECTS} times")

    @property
    def _read_timeouts(self) -> tuple[float, float]:
        connect, read = self.transport.timeout
        return (connect, min(read, 10.0))  # each read; the total is checked between reads

    def _read_capped(
        self,
        resp: requests.Response,
        *,
        deadline: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        host: str = "",
    ) -> bytes:
        cap = self.max_bytes
        declared = int_or_none(resp.headers.get("Content-Length"))
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


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
