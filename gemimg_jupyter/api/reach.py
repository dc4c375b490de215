"""Reference URLs the real gateway cannot reach, fetched here and uploaded instead.

The gateway downloads a reference URL itself, from the internet. A URL on this machine or on a
private network (``http://127.0.0.1:8000/fox.png``, ``http://nas.local/…`` resolving to
192.168.x.x) would fail there after the submit was paid. On the real gateway such a reference is
fetched here and becomes a reference by bytes, which the engine uploads like a local file; one
line says so. A URL on the gateway's own host (its uploads) is left as it is. On the simulator
nothing changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from gemimg_jupyter.domain.models import ReferenceImage
from gemimg_jupyter.draw.images import load_reference
from gemimg_jupyter.gateway.references import fetch_reference, private_address
from gemimg_jupyter.plans.axes import Axis, pair_axes

__all__ = ["reachable", "reachable_axis"]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 10_240 else f"{n / 1024:,.0f} KB"


def reachable(
    refs: Iterable[ReferenceImage], *, gateway_url: str, say: Callable[[str], None]
) -> tuple[ReferenceImage, ...]:
    """``refs`` with every URL on a private address (not the gateway's own) replaced by its bytes."""
    out: list[ReferenceImage] = []
    fetched: dict[str, ReferenceImage] = {}
    for ref in refs:
        url = ref.url
        address = private_address(url) if url and _origin(url) != _origin(gateway_url) else None
        if url is None or address is None:
            out.append(ref)
            continue
        if url not in fetched:
            local = load_reference(fetch_reference(url), name=ref.name)
            say(
                f"reference {url} is on a private address ({address}) the gateway cannot reach: "
                f"fetched here ({_size(local.size_bytes)}) and uploaded instead"
            )
            fetched[url] = local
        out.append(fetched[url])
    return tuple(out)


def reachable_axis(axis: Axis, fix: Callable[[tuple[ReferenceImage, ...]], tuple[ReferenceImage, ...]]) -> Axis:
    """``axis`` with each ``ref`` value (a paired ``ref`` partner's too) passed through ``fix``."""
    members = [
        dataclasses.replace(m, values=tuple(fix(tuple(v)) for v in m.values)) if m.name == "ref" else m
        for m in axis.members
    ]
    return members[0] if len(members) == 1 else pair_axes(members[0], *members[1:])
