"""The page around a report: its inline style and script, its embedded data and its Content-Security-Policy.

A report is one HTML file that makes no request of any kind. Its comparison view is the notebook's
(``static/compare.js`` and ``compare.css``, shared with the widget) driven by ``static/report.js``
over a JSON block of the cells; the thumbnails are the static table's ``data:`` images and the
larger pictures are ``data:`` JPEGs in the JSON. The policy allows exactly the one inline script and
the one inline style, by their SHA-256 hashes, and images from ``data:`` only: no ``unsafe-inline``,
nothing from a network, a file or another frame. User text reaches the page escaped: in the markup
by :func:`html.escape`, in the JSON block with ``<``, ``>`` and ``&`` written as ``\\u003c`` … so
no prompt can close the block or open a tag.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.resources
import io
import json
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from gemimg_jupyter.api.compare import Comparison
from gemimg_jupyter.ledger.thumbs import load_thumb

__all__ = [
    "DETAIL_BUDGET",
    "DETAIL_SIDE",
    "compare_section",
    "comparison_data",
    "content_policy",
    "href",
    "jpeg_data_uri",
    "page",
]

#: Long side of the larger picture each cell embeds for the full-size view, swipe and zoom (JPEG).
DETAIL_SIDE = 1024
#: Characters of those pictures one report embeds at most; cells past it show their thumbnail.
DETAIL_BUDGET = 20_000_000
_E = html.escape
#: JSON text that could end the ``<script>`` block or start markup, written as JSON escapes.
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


@functools.cache
def _assets() -> tuple[str, str]:
    """The page's style (report.css, then compare.css) and its script (compare.js, then report.js)."""
    static = importlib.resources.files("gemimg_jupyter").joinpath("static")
    read = [static.joinpath(name).read_text(encoding="utf-8") for name in ("report.css", "compare.css")]
    code = [static.joinpath(name).read_text(encoding="utf-8") for name in ("compare.js", "report.js")]
    return "\n".join(read), "\n".join(code)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_policy(style: str, script: str | None) -> str:
    """The report's policy: the one style and (when there is one) the one script by hash, images from ``data:``."""
    parts = ["default-src 'none'", "img-src data:", f"style-src {_hash(style)}"]
    if script is not None:
        parts.append(f"script-src {_hash(script)}")
    parts += ["base-uri 'none'", "form-action 'none'"]
    return "; ".join(parts)


def _json_block(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = "".join(_JSON_ESCAPES.get(ch, ch) for ch in text)
    return f'<script type="application/json" id="gemimg-data">{text}</script>'


def page(title: str, body: str, data: Any = None) -> str:
    """A whole report: ``body`` (markup, already escaped), and the comparison's script when ``data`` is given."""
    style, code = _assets()
    script = code if data is not None else None
    tail = "" if script is None else f"{_json_block(data)}<script type='module'>{script}</script>"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f'<meta http-equiv="Content-Security-Policy" content="{content_policy(style, script)}">'
        "<link rel='icon' href='data:,'>"  # no favicon request
        f"<title>{_E(title)}</title><style>{style}</style></head><body>{body}"
        f"<p class='sub'>Written by gemimg_jupyter on {_E(time.strftime('%Y-%m-%d %H:%M:%S'))}. "
        "Everything shown is inside this file; each file link opens the original image beside it.</p>"
        f"{tail}</body></html>\n"
    )


def href(path: str | os.PathLike[str], base: Path) -> str:
    """A relative URL from the report's folder to ``path``."""
    rel = os.path.relpath(Path(path).resolve(), base.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


def jpeg_data_uri(path: str | os.PathLike[str], side: int, quality: int) -> str | None:
    """A ``data:image/jpeg;base64,…`` copy of an image file, ``side`` px long at most (``None`` if unreadable)."""
    try:
        picture = load_thumb(path, side)  # a small side comes from the image's thumbnail file
    except (OSError, ValueError):
        return None
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def comparison_data(comparison: Comparison, base: Path, budget: int = DETAIL_BUDGET) -> dict[str, Any]:
    """What ``report.js`` reads: the view's header and cells (file links relative to ``base``), the larger pictures."""
    cells = comparison.cells()
    full: dict[str, str] = {}
    for cell in cells:
        path = comparison.file_of(cell["index"])
        if path is None:
            continue
        cell["href"] = href(path, base)
        cell["path"] = urllib.parse.unquote(cell["href"])
        uri = jpeg_data_uri(path, DETAIL_SIDE, 80) if budget > 0 else None
        if uri is not None and len(uri) <= budget:
            full[str(cell["index"])] = uri
            budget -= len(uri)
    return {"header": comparison.header(), "cells": cells, "progress": "", "read_only": True, "full": full}


def compare_section(comparison: Comparison, base: Path) -> tuple[str, dict[str, Any]]:
    """The comparison's place in a report's body (with a line for readers without scripts) and its data."""
    markup = (
        "<h2>Compare</h2><div id='gemimg-compare'><noscript><p class='sub'>The comparison view needs JavaScript; "
        "every cell is in the table below.</p></noscript></div>"
    )
    return markup, comparison_data(comparison, base)
