"""Reference URLs checked before anything is paid.

The gateway fetches a reference URL itself, after the submit was accepted and charged; a
missing file or an unknown host then costs a failed task. :func:`check_reference_url` asks
the URL's own server first: a ``HEAD`` (and, when that is refused, a ranged ``GET`` of the
first bytes), with a short timeout, without the API key or any other header of ours. A 4xx
or 5xx answer, an unknown host or a connection that fails is one :class:`ValidationError`
line, raised before the submit.
"""

from __future__ import annotations

from http.client import responses

import requests

from gemimg_jupyter.domain.errors import ValidationError

__all__ = ["check_reference_url"]

#: Seconds to connect, then to read the answer's head.
CHECK_TIMEOUT = (3.05, 5.0)


def _refusal(url: str, why: str) -> ValidationError:
    return ValidationError(f"reference {url} {why}; nothing was sent (0 requests paid)", field="reference", value=url)


def _status(http: requests.Session, url: str, timeout: tuple[float, float]) -> int:
    """The URL's answer: a HEAD, else (refused, as signed URLs often do) the first KB by GET."""
    with http.head(url, timeout=timeout, allow_redirects=True) as head:
        if head.status_code < 400:
            return head.status_code
    headers = {"Range": "bytes=0-1023"}
    with http.get(url, timeout=timeout, allow_redirects=True, stream=True, headers=headers) as got:
        return got.status_code


def check_reference_url(url: str, *, timeout: tuple[float, float] = CHECK_TIMEOUT) -> None:
    """Raise a one-line :class:`ValidationError` unless ``url`` answers with a success (2xx/3xx)."""
    try:
        with requests.Session() as http:
            status = _status(http, url, timeout)
    except requests.exceptions.ConnectionError as err:
        unknown = "resolve" in str(err).lower()
        raise _refusal(url, f"cannot be reached ({'unknown host' if unknown else 'connection failed'})") from None
    except requests.exceptions.Timeout:
        raise _refusal(url, f"did not answer within {timeout[1]:g} s") from None
    except requests.exceptions.RequestException as err:
        raise _refusal(url, f"cannot be fetched ({type(err).__name__})") from None
    if status >= 400:
        reason = responses.get(status, "")
        raise _refusal(url, f"answered HTTP {status}{' ' + reason if reason else ''}")
