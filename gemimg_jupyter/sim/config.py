"""The simulator's switches (:class:`SimConfig`, :data:`CONFIG_HELP`) and the gateway's fixed values."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

from gemimg_jupyter.domain.finish import FINISH_WORDS
from gemimg_jupyter.domain.models import MAX_REF_BYTES

__all__ = ["CONFIG_HELP", "MAX_UPLOAD_BYTES", "SimConfig"]

log = logging.getLogger("gemimg_jupyter.sim.server")  # one logger for the whole simulator

MAX_UPLOAD_BYTES = MAX_REF_BYTES  # "10MB", read as 10,000,000 bytes like the client reads it
_MAX_BODY = MAX_UPLOAD_BYTES + 256 * 1024
_SUBMIT, _UPLOAD = "/v1/images/generations", "/v1/uploads/images"
_UPLOAD_FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp"),
                   "GIF": ("image/gif", "gif")}  # fmt: skip
_ENDPOINTS = frozenset({"submit", "query", "upload", "download"})
_FAULT_KINDS = ("rate_limit", "server_error", "html_504", "drop_after_submit", "failed_task", "stuck_task",
                "corrupt_image", "expired_url", "insufficient_quota", "blocked_task", "small_image",
                "model_not_found", "edge_refused", "html_200_status", "download_404", "hung_status",
                "trickle_download", "unfinished_cap", "lost_submit", "duplicate_refused", "status_retry_after")  # fmt: skip
_STYLES = ("docs", "newapi")
_EDGE_403 = (
    b"<!DOCTYPE html><html><head><title>Attention Required! | edge</title></head>"
    b"<body><h1>Sorry, you have been blocked</h1><p>error code: 1010</p></body></html>"
)
#: What a task refused for a safety reason says (Gemini's finishReason, passed through by the gateway).
_BLOCKED_REASON = "The model refused to generate the image: finishReason {reason}"
#: The simulator's price list (``GET /v1/pricing``): per-resolution prices for 3.1 Flash, made up for the
#: simulator (the docs say only "$0.025 per request; 4K costs more than 1K", §9); other models' list prices.
SIM_PRICES: dict[str, dict[str, float]] = {
    "gemini-3.1-flash-image-preview": {"0.5K": 0.018, "1K": 0.025, "2K": 0.038, "4K": 0.05},
}
_HTML_200 = (
    b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head>"
    b"<body><p>Please accept the terms to continue.</p></body></html>"
)
_HTML_504 = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

#: One line of help per :class:`SimConfig` field (used by the CLI and the docs).
CONFIG_HELP: dict[str, str] = {
    "seed": "seed for task ids, durations and faults (None: a fresh random seed)",
    "latency": "total task duration in seconds, uniform in (min, max)",
    "queue_delay": "time spent queued, uniform in (min, max), part of latency",
    "fail_rate": "share of tasks that end failed (refunded)",
    "stuck_rate": "share of tasks that never leave in_progress",
    "rate_limit_rate": "share of API requests answered with a random 429",
    "retry_after": "Retry-After of random 429s in seconds, uniform in (min, max)",
    "retry_after_http_date": "send Retry-After of random 429s as an HTTP date",
    "server_error_rate": "share of API requests answered with a 5xx",
    "html_error_rate": "share of those 5xx that are an HTML 504 page",
    "drop_after_submit_rate": "share of accepted submits whose connection is closed without an answer",
    "corrupt_image_rate": "share of tasks whose image bytes do not decode",
    "insufficient_quota": "answer every valid submit with 402 insufficient_quota",
    "url_lifetime": "seconds a result URL serves after completion (expires_at)",
    "top_level_url": "also put the result URL in a top-level 'url' field",
    "strict_image_url_objects": 'reject {"url": ...} objects in image_urls for official models',
    "wrong_path_apitype": "answer /v1/chat/completions with 400 'invalid apitype' (else 404)",
    "submit_rate": "submit token bucket refill, requests per second per key",
    "submit_burst": "submit token bucket size",
    "query_rate": "status query token bucket refill, requests per second per key",
    "query_burst": "status query token bucket size",
    "fault_endpoints": "endpoints random 429/5xx apply to: submit, query, upload, download",
    "style": "dialect of the answers: docs (as documented) or newapi (as the New API gateway answers)",
    "blocked_rate": "share of tasks that end failed for a safety reason (IMAGE_SAFETY, refunded)",
    "small_image_rate": "share of tasks whose image is one resolution step smaller than requested",
    "unserved_models": "model ids answered with 503 model_not_found (and left out of /v1/models)",
    "listed_models": "extra model ids /v1/models lists beyond the built-in table (served with a generic spec)",
    "finish_reason": "the finishReason blocked tasks report: IMAGE_SAFETY, IMAGE_PROHIBITED_CONTENT, "
    "IMAGE_RECITATION, IMAGE_OTHER or NO_IMAGE",
    "model_text": "text the model returns instead of the image on blocked tasks (empty: none)",
    "price_list": "answer GET /v1/pricing (simulated per-resolution prices; off: 404 like older gateways)",
    "unknown_status": "a status word running tasks report instead of in_progress (empty: off)",
    "expires_at_says": "what completed tasks report as expires_at while the URL still serves: past (an hour ago "
    "by the client's clock), zero, or empty (the truth)",
    "require_user_agent": "the edge answers 403 (HTML) to requests without a User-Agent or with a library default",
    "html_status_once": "answer each task's first status query with an HTML page and status 200 (a captive portal)",
    "html_status_rate": "share of status queries answered with an HTML page and status 200",
    "download_404_once": "the first download of each result answers 404 (a CDN not yet in sync)",
    "hang_status_once": "each task's first status query never answers (the server holds it until the client leaves)",
    "trickle_download": "seconds between bytes of a result download (0: normal speed)",
    "max_unfinished": "submits beyond this many unfinished tasks get 429 + Retry-After: 1 (0: no cap)",
    "image_format": "format of result images: jpeg (as the gateway's sample URLs), png or webp; a task's "
    "imageOutputOptions.mimeType overrides it",
    "exif_orientation": "EXIF Orientation tag (1-8) of result images, pixels stored turned to match (1: upright)",
    "content_credentials": "add a stand-in C2PA manifest (unsigned) to result images: PNG caBX, JPEG APP11, WebP C2PA",
    "lost_submit": "409 or 400: every accepted submit's answer is lost (connection closed), the look-up by "
    "client_business_id answers 404, and a second submit with that id is refused as a duplicate with this status "
    "(Idempotency-Key ignored); empty: off",
    "idempotency": "replay the original task for a repeated Idempotency-Key header, as New API does (off: ignore it)",
    "status_retry_after": "answer every status query with 429 and Retry-After: this many seconds (an HTTP date with "
    "retry_after_http_date); 0: off",
    "render_once": "serve one image rendered per size and resolution to every task (benchmarks: a CDN, not a renderer)",
}
_RANGES = frozenset({"latency", "queue_delay", "retry_after"})
_RATES = frozenset(name for name in CONFIG_HELP if name.endswith("_rate") and name not in ("submit_rate", "query_rate"))
_FLAGS = frozenset(
    {"retry_after_http_date", "insufficient_quota", "top_level_url", "strict_image_url_objects", "wrong_path_apitype",
     "require_user_agent", "html_status_once", "download_404_once", "hang_status_once", "render_once", "price_list",
     "content_credentials", "idempotency"}
)  # fmt: skip


def _coerce(name: str, value: Any) -> Any:
    """Turn a JSON, CLI or Python value into the field's type, or raise ValueError."""
    try:
        if name in _RANGES:
            parts = value.split(",") if isinstance(value, str) else list(value)
            lo, hi = float(parts[0]), float(parts[-1])
            if not 0 <= lo <= hi < math.inf or len(parts) > 2:
                raise ValueError
            return (lo, hi)
        if name in _FLAGS:
            return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
        if name == "seed":
            return None if value is None else int(value)
        if name in ("finish_reason", "model_text"):
            text = str(value or "").strip()
            if name == "finish_reason" and text not in FINISH_WORDS:
                raise ValueError
            return text
        if name in ("fault_endpoints", "unserved_models", "listed_models"):
            names = tuple(n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip())
            if name == "fault_endpoints" and not set(names) <= _ENDPOINTS:
                raise ValueError
            return names
        if name == "style":
            if str(value).strip().lower() not in _STYLES:
                raise ValueError
            return str(value).strip().lower()
        if name == "image_format":
            fmt = {"jpg": "jpeg"}.get(str(value).strip().lower(), str(value).strip().lower())
            if fmt not in ("jpeg", "png", "webp"):
                raise ValueError
            return fmt
        if name == "exif_orientation":
            if int(value) != float(value) or not 1 <= int(value) <= 8:
                raise ValueError
            return int(value)
        if name == "unknown_status":
            return str(value or "").strip()
        if name == "lost_submit":
            if str(value or "").strip() not in ("", "409", "400"):
                raise ValueError
            return str(value or "").strip()
        if name == "expires_at_says":
            if str(value or "").strip().lower() not in ("", "past", "zero"):
                raise ValueError
            return str(value or "").strip().lower()
        number = float(value)
        if not 0 <= number < math.inf or (name in _RATES and number > 1):
            raise ValueError
        return number
    except (TypeError, ValueError, IndexError, AttributeError):
        raise ValueError(f"bad value for {name}: {value!r} ({CONFIG_HELP[name]})") from None


@dataclass
class SimConfig:
    """Behaviour and fault switches of the simulator.

    Every field can be given to the constructor, changed later with
    :meth:`SimServer.configure` (or ``POST /_sim/config``), or set on the
    command line as ``--field-name``. Values are coerced and checked: ranges
    accept ``(lo, hi)``, ``[lo, hi]`` or ``"lo,hi"``; rates are shares 0–1.
    ``seed`` is read once, when the server is created.
    """

    seed: int | None = None
    latency: tuple[float, float] = (4.0, 12.0)
    queue_delay: tuple[float, float] = (0.5, 2.0)
    fail_rate: float = 0.0
    stuck_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: tuple[float, float] = (1.0, 3.0)
    retry_after_http_date: bool = False
    server_error_rate: float = 0.0
    html_error_rate: float = 0.5
    drop_after_submit_rate: float = 0.0
    corrupt_image_rate: float = 0.0
    insufficient_quota: bool = False
    url_lifetime: float = 86400.0
    top_level_url: bool = False
    strict_image_url_objects: bool = False
    wrong_path_apitype: bool = True
    submit_rate: float = 5.0
    submit_burst: float = 50.0
    query_rate: float = 50.0
    query_burst: float = 500.0
    fault_endpoints: tuple[str, ...] = ("submit", "query", "upload")
    style: str = "docs"
    blocked_rate: float = 0.0
    small_image_rate: float = 0.0
    unserved_models: tuple[str, ...] = ()
    listed_models: tuple[str, ...] = ()
    finish_reason: str = "IMAGE_SAFETY"
    model_text: str = ""
    price_list: bool = True
    unknown_status: str = ""
    expires_at_says: str = ""
    require_user_agent: bool = False
    html_status_once: bool = False
    html_status_rate: float = 0.0
    download_404_once: bool = False
    hang_status_once: bool = False
    trickle_download: float = 0.0
    max_unfinished: float = 0.0
    render_once: bool = False
    image_format: str = "jpeg"
    exif_orientation: int = 1
    content_credentials: bool = False
    lost_submit: str = ""
    idempotency: bool = True
    status_retry_after: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name)))

    def update(self, **changes: Any) -> None:
        """Check every change first, then apply them all (unknown names raise ValueError)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown simulator setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        clean = {name: _coerce(name, value) for name, value in changes.items()}
        for name, value in clean.items():
            setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
