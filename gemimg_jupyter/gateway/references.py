"""Reference URLs checked before anything is paid.

The gateway fetches a reference URL itself, after the submit was accepted and charged; a
missing file or an unknown host then costs a failed task. :func:`check_reference_url` asks
the URL's own server first: a ``HEAD`` (and, when that is refused, a ranged ``GET`` of the
first bytes), with a short timeout, without the API key or any other header of ours. A 4xx
or 5xx answer, an unknown host or a connection that fails is one :class:`ValidationError`
line, raised before the submit.

A URL on this machine or on a private network (loopback, RFC 1918, link-local, unique-local
IPv6, after DNS resolution) is one the real gateway cannot fetch: :func:`private_address` tells,
and :func:`fetch_reference` brings its bytes here, so the caller can upload them instead.
"""

from __future__ import annotations

import ipaddress
import socket
from http.client import responses
from urllib.parse import urlsplit

import requests

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import MAX_REF_BYTES

__all__ = ["check_reference_url", "fetch_reference", "private_address"]

#: Addresses the public gateway cannot reach: this machine and private or link-local networks.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
    )
)

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


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6 address: drop the zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in PRIVATE_NETWORKS if net.version == ip.version)


def private_address(url: str) -> str | None:
    """The loopback, private or link-local address ``url``'s host resolves to, else ``None``.

    A host that does not resolve is ``None`` too: :func:`check_reference_url` reports it.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError):
        return None
    for *_, sockaddr in found:
        address = str(sockaddr[0])
        if _private(address):
            return address
    return None


def fetch_reference(url: str, *, max_bytes: int = MAX_REF_BYTES, timeout: tuple[float, float] = CHECK_TIMEOUT) -> bytes:
    """The bytes at ``url`` (without the key or any header of ours), or a one-line :class:`ValidationError`.

    More than ``max_bytes`` is refused as soon as it is seen, before the rest is read.
    """
    try:
        with requests.get(url, timeout=timeout, stream=True, allow_redirects=True) as got:
            if got.status_code >= 400:
                reason = responses.get(got.status_code, "")
                raise _refusal(url, f"answered HTTP {got.status_code}{' ' + reason if reason else ''}")
            data = bytearray()
            for chunk in got.iter_content(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    raise _refusal(url, f"is larger than {max_bytes / 1e6:g} MB, the gateway's limit")
            return bytes(data)
    except requests.exceptions.ConnectionError:
        raise _refusal(url, "cannot be reached (connection failed)") from None
    except requests.exceptions.Timeout:
        raise _refusal(url, f"did not answer within {timeout[1]:g} s") from None
    except requests.exceptions.RequestException as err:
        raise _refusal(url, f"cannot be fetched ({type(err).__name__})") from None
