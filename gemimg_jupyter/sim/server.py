"""A local HTTP server that speaks the ToAPIs async image protocol.

Routes (see ``docs/simulator.md`` for every body and header)::

    POST /v1/images/generations            submit a task (JSON)
    GET  /v1/images/generations/{id}       task status, by task id or client_business_id
    POST /v1/uploads/images                upload a reference image (multipart, field "file")
    GET  /v1/models?type=image             the image models the key may use
    GET  /generated/<name>.png             result images (no auth, like a CDN; expire)
    GET  /uploads/<...>                    uploaded images (no auth)
    GET  /_sim/stats | POST /_sim/reset | GET, POST /_sim/config | POST /_sim/advance

A task's state is a pure function of its submit time and durations drawn from
a per-task seeded RNG, so no background thread drives it. Every fault of the
real gateway can be switched on through :class:`SimConfig`, and ``style``
picks the dialect: ``docs`` answers as the ToAPIs pages document, ``newapi``
as the New API gateway underneath was seen to (``pending`` on submit,
upper-case status words, ``"40%"`` progress, ``fail_reason``, a top-level
``url``, ``billing`` only on failures).
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.parser
import email.policy
import email.utils
import hashlib
import io
import json
import logging
import math
import os
import random
import socket
import socketserver
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from PIL import Image

from gemimg_jupyter.errors import ValidationError
from gemimg_jupyter.models import MAX_REF_BYTES, MODELS, ModelSpec, get_model
from gemimg_jupyter.sim.render import RenderSpec, corrupt, render_png

__all__ = ["CONFIG_HELP", "MAX_UPLOAD_BYTES", "SimConfig", "SimServer"]

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = MAX_REF_BYTES  # "10MB", read as 10,000,000 bytes like the client reads it
_MAX_BODY = MAX_UPLOAD_BYTES + 256 * 1024
_SUBMIT, _UPLOAD = "/v1/images/generations", "/v1/uploads/images"
_UPLOAD_FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp"),
                   "GIF": ("image/gif", "gif")}  # fmt: skip
_ENDPOINTS = frozenset({"submit", "query", "upload", "download"})
_FAULT_KINDS = ("rate_limit", "server_error", "html_504", "drop_after_submit", "failed_task", "stuck_task",
                "corrupt_image", "expired_url", "insufficient_quota", "blocked_task", "small_image",
                "model_not_found", "edge_refused", "html_200_status", "download_404", "hung_status",
                "trickle_download", "unfinished_cap")  # fmt: skip
_STYLES = ("docs", "newapi")
_EDGE_403 = (
    b"<!DOCTYPE html><html><head><title>Attention Required! | edge</title></head>"
    b"<body><h1>Sorry, you have been blocked</h1><p>error code: 1010</p></body></html>"
)
#: What a task refused for a safety reason says (Gemini's finishReason, passed through by the gateway).
_BLOCKED_REASON = "The model refused to generate the image: finishReason IMAGE_SAFETY"
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
    "unknown_status": "a status word running tasks report instead of in_progress (empty: off)",
    "require_user_agent": "the edge answers 403 (HTML) to requests without a User-Agent or with a library default",
    "html_status_once": "answer each task's first status query with an HTML page and status 200 (a captive portal)",
    "html_status_rate": "share of status queries answered with an HTML page and status 200",
    "download_404_once": "the first download of each result answers 404 (a CDN not yet in sync)",
    "hang_status_once": "each task's first status query never answers (the server holds it until the client leaves)",
    "trickle_download": "seconds between bytes of a result download (0: normal speed)",
    "max_unfinished": "submits beyond this many unfinished tasks get 429 + Retry-After: 1 (0: no cap)",
    "render_once": "serve one image rendered per size and resolution to every task (benchmarks: a CDN, not a renderer)",
}
_RANGES = frozenset({"latency", "queue_delay", "retry_after"})
_RATES = frozenset(name for name in CONFIG_HELP if name.endswith("_rate") and name not in ("submit_rate", "query_rate"))
_FLAGS = frozenset(
    {"retry_after_http_date", "insufficient_quota", "top_level_url", "strict_image_url_objects", "wrong_path_apitype",
     "require_user_agent", "html_status_once", "download_404_once", "hang_status_once", "render_once"}
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
        if name in ("fault_endpoints", "unserved_models"):
            names = tuple(n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip())
            if name == "fault_endpoints" and not set(names) <= _ENDPOINTS:
                raise ValueError
            return names
        if name == "style":
            if str(value).strip().lower() not in _STYLES:
                raise ValueError
            return str(value).strip().lower()
        if name == "unknown_status":
            return str(value or "").strip()
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
    unknown_status: str = ""
    require_user_agent: bool = False
    html_status_once: bool = False
    html_status_rate: float = 0.0
    download_404_once: bool = False
    hang_status_once: bool = False
    trickle_download: float = 0.0
    max_unfinished: float = 0.0
    render_once: bool = False

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


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # seconds between bytes of the body (a trickle-fed download)


def _json(status: int, obj: object, headers: Mapping[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(obj).encode(), headers=dict(headers or {}))


def _error(status: int, code: str | int, message: str, kind: str | None = None, **extra: Any) -> _Reply:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    if kind:
        body["type"] = kind
    return _json(status, {"error": body})


def _rate_limited(headers: Mapping[str, str]) -> _Reply:
    reply = _error(429, "rate_limit_exceeded", "Async task request rate exceeded")
    reply.headers.update(headers)
    return reply


def _not_found(message: str = "Not found") -> _Reply:
    return _error(404, 404, message, "not_found_error")


class _Invalid(Exception):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass(frozen=True)
class _Submit:
    spec: ModelSpec
    prompt: str
    size: str
    resolution: str
    temperature: float | None
    top_p: float | None
    image_urls: tuple[str, ...]
    business_id: str | None
    seed: int | None = None


@dataclass
class _Task:
    id: str
    seq: int
    owner: str
    req: _Submit
    created_wall: float
    t0: float
    queue_s: float
    run_s: float
    outcome: str  # "completed" | "failed" | "stuck" | "blocked"
    corrupt: bool
    lifetime: float
    file_name: str
    small: bool = False

    @property
    def done_at(self) -> float:
        return self.t0 + self.queue_s + self.run_s

    def state(self, now: float) -> tuple[str, int]:
        """Status and progress at simulator time ``now``."""
        elapsed = now - self.t0
        if elapsed < self.queue_s:
            return "queued", 0
        running = elapsed - self.queue_s
        if self.outcome == "stuck" or running < self.run_s:
            share = min(1.0, running / self.run_s) if self.run_s > 0 else 1.0
            return "in_progress", min(90, 10 + int(80 * share))
        if self.outcome == "blocked":
            return "failed", 0
        return self.outcome, 100 if self.outcome == "completed" else 0


def _number(meta: Mapping[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = meta.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _Invalid(
            f"metadata.{name} must be a number from {lo:g} to {hi:g} (got {json.dumps(value)})", f"metadata.{name}"
        )
    return float(value)


def _validate(payload: Any, strict_objects: bool) -> _Submit:
    """Check a submit body the way the gateway documents it; raise :class:`_Invalid`."""
    if not isinstance(payload, dict):
        raise _Invalid("Request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _Invalid("The 'model' field is required.", "model")
    try:
        spec = get_model(model)
    except ValidationError:
        known = ", ".join(MODELS)
        raise _Invalid(f"Model {model!r} is not supported for image generation; use one of {known}", "model") from None
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Invalid("The 'prompt' field is required.", "prompt")
    if len(prompt) > spec.max_prompt_chars:
        raise _Invalid(
            f"prompt is too long: {len(prompt)} characters, {spec.id} accepts at most {spec.max_prompt_chars}",
            "prompt",
            code="prompt_too_long",
        )
    size = payload.get("size", "1:1")
    if size not in spec.sizes:
        raise _Invalid(f"Invalid size {json.dumps(size)} for {spec.id}; supported: {', '.join(spec.sizes)}", "size")
    if "n" in payload and (type(payload["n"]) is not int or payload["n"] != 1):
        raise _Invalid(f"n must be the JSON integer 1 (got {json.dumps(payload['n'])}); each task makes one image", "n")
    if payload.get("callback_url") is not None:
        raise _Invalid("webhook_not_configured", "callback_url", code="webhook_not_configured")
    urls = payload.get("image_urls") or []
    if not isinstance(urls, list):
        raise _Invalid("image_urls must be an array of URLs", "image_urls")
    if len(urls) > spec.max_refs:
        raise _Invalid(
            f"Too many image_urls: {len(urls)} given, {spec.id} accepts at most {spec.max_refs}", "image_urls"
        )
    clean: list[str] = []
    for i, item in enumerate(urls):
        if isinstance(item, dict) and strict_objects and spec.id.endswith("-official"):
            raise _Invalid(f"image_urls must be an array of URL strings for {spec.id}", f"image_urls[{i}]")
        url = item.get("url") if isinstance(item, dict) else item
        if not isinstance(url, str) or not url.strip():
            raise _Invalid(f"image_urls[{i}] must be a URL string or an object with a 'url'", f"image_urls[{i}]")
        if url.strip().lower().startswith("data:"):
            raise _Invalid(
                f"image_urls[{i}]: base64 data URIs are no longer accepted; upload the image with "
                f"POST {_UPLOAD} and pass its URL",
                f"image_urls[{i}]",
            )
        if urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
            raise _Invalid(f"image_urls[{i}] must be a public http(s) URL", f"image_urls[{i}]")
        clean.append(url.strip())
    meta = payload.get("metadata") or {}
    if not isinstance(meta, dict):
        raise _Invalid("metadata must be an object", "metadata")
    temperature, top_p = _number(meta, "temperature", 0, 2), _number(meta, "topP", 0, 1)
    resolution = meta.get("resolution", spec.default_resolution)
    if resolution not in spec.resolutions:
        raise _Invalid(
            f"metadata.resolution {json.dumps(resolution)} is not supported by {spec.id}; "
            f"use one of {', '.join(spec.resolutions)}",
            "metadata.resolution",
        )
    business_id = payload.get("client_business_id", meta.get("client_business_id"))
    if business_id is not None and (not isinstance(business_id, str) or not 0 < len(business_id) <= 128):
        raise _Invalid("client_business_id must be a string of 1 to 128 characters", "client_business_id")
    seed = meta.get("seed")
    if seed is not None and (type(seed) is not int or not 0 <= seed < 2**31):
        raise _Invalid(
            f"metadata.seed must be an integer from 0 to 2147483647 (got {json.dumps(seed)})", "metadata.seed"
        )
    return _Submit(spec, prompt, size, resolution, temperature, top_p, tuple(clean), business_id, seed)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimServer) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can stall on a slow resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer are normal here; keep them out of stderr.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self.conn_lock:
            (self.connections.add if add else self.connections.discard)(conn)

    def drop_connections(self) -> None:
        """Cut open keep-alive connections so nothing keeps serving after a stop."""
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answer at once instead of waiting ~40 ms for a delayed ACK
    server_version = "gemimg-sim/1.0"
    sys_version = ""
    timeout = 15.0

    def version_string(self) -> str:
        return self.server_version

    def _srv(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        self._srv().track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._srv().track(self.connection, False)

    def do_GET(self) -> None:
        self._srv().sim._serve(self, "GET")

    def do_POST(self) -> None:
        self._srv().sim._serve(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class SimServer:
    """The simulator: a threaded HTTP server on ``host:port`` plus all task state.

    Parameters
    ----------
    config : SimConfig, optional
        Behaviour and fault switches (defaults: :class:`SimConfig`).
    host : str
        Interface to bind, ``127.0.0.1`` by default.
    port : int
        Port to bind; ``0`` picks a free one (kept across :meth:`restart`).
    accepted_keys : iterable of str, optional
        API keys to accept; ``None`` accepts any non-empty bearer key.

    Tasks are scoped to the key that submitted them; keys are kept only as
    hashes and never appear in any answer or log line.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accepted_keys: Iterable[str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self.host, self._port = host, port
        keys = [accepted_keys] if isinstance(accepted_keys, str) else accepted_keys
        self._accepted = None if keys is None else frozenset(_owner(k) for k in keys)
        self._salt = str(self.config.seed) if self.config.seed is not None else os.urandom(8).hex()
        self._rng = random.Random(self._salt)
        self._lock = threading.RLock()
        self._life = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._offset = 0.0
        self._tasks: dict[str, _Task] = {}
        self._by_bid: dict[tuple[str, str], list[str]] = {}
        self._files: dict[str, str] = {}
        self._uploads: dict[str, tuple[bytes, str]] = {}
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._renders: dict[tuple[str, str, bool], bytes] = {}  # render_once: one image per size
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._seq = 0
        self._reset_seq = 0
        self._seen: set[tuple[str, str]] = set()  # (fault, task id) pairs of the once-per-task faults
        self._closing = threading.Event()
        self._state_file = Path(state_file) if state_file is not None else None
        if self._state_file is not None:
            self._load_state(self._state_file)

    # -- the task table on disk ----------------------------------------------------------------------------------

    def _load_state(self, path: Path) -> None:
        """Restore the tasks a previous simulator wrote to ``path`` (one JSON line per task)."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        now_wall, now = time.time(), self._now()
        for line in lines:
            try:
                d = json.loads(line)
                r = d["req"]
                req = _Submit(
                    get_model(r["model"]), r["prompt"], r["size"], r["resolution"], r["temperature"],
                    r["top_p"], tuple(r["image_urls"]), r["business_id"],
                )  # fmt: skip
                task = _Task(
                    d["id"], int(d["seq"]), d["owner"], req, float(d["created_wall"]),
                    now - (now_wall - float(d["created_wall"])), float(d["queue_s"]), float(d["run_s"]),
                    d["outcome"], bool(d["corrupt"]), float(d["lifetime"]), d["file_name"],
                )  # fmt: skip
            except (ValueError, KeyError, TypeError, ValidationError):
                continue  # a torn last line after a crash
            self._tasks[task.id] = task
            self._files[task.file_name] = task.id
            if req.business_id:
                self._by_bid.setdefault((task.owner, req.business_id), []).append(task.id)
            self._seq = max(self._seq, task.seq)
        self._reset_seq = self._seq

    def _save_task(self, task: _Task) -> None:
        if self._state_file is None:
            return
        req = task.req
        line = {
            "id": task.id, "seq": task.seq, "owner": task.owner, "created_wall": task.created_wall,
            "queue_s": task.queue_s, "run_s": task.run_s, "outcome": task.outcome, "corrupt": task.corrupt,
            "lifetime": task.lifetime, "file_name": task.file_name,
            "req": {"model": req.spec.id, "prompt": req.prompt, "size": req.size, "resolution": req.resolution,
                    "temperature": req.temperature, "top_p": req.top_p, "image_urls": list(req.image_urls),
                    "business_id": req.business_id},
        }  # fmt: skip
        try:
            with open(self._state_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        except OSError:
            log.warning("the simulator could not keep task %s on disk", task.id, exc_info=True)

    # -- life cycle ---------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` once started (raises RuntimeError before)."""
        if not self._port:
            raise RuntimeError("the simulator has not been started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (0 before the first start)."""
        return self._port

    @property
    def running(self) -> bool:
        """True while the listening socket is open."""
        return self._httpd is not None

    def start(self) -> str:
        """Start serving in a daemon thread (no-op when running); return :attr:`base_url`."""
        with self._life:
            self._cancel_timer()
            if self._httpd is None:
                self._listen()
            return self.base_url

    def stop(self) -> None:
        """Stop serving and cut open connections; task state is kept."""
        with self._life:
            self._closing.set()  # let held (hung) answers go
            self._cancel_timer()
            self._close()
            self._closing.clear()

    def restart(self) -> str:
        """Close the listening socket and open it again on the same port, keeping all state."""
        with self._life:
            self._cancel_timer()
            self._close()
            self._listen()
            return self.base_url

    def down(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` (the port is closed), then serve again."""
        with self._life:
            self._cancel_timer()
            self._close()
            timer = threading.Timer(seconds, self._come_back)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _come_back(self) -> None:
        with self._life:
            if self._timer is threading.current_thread():
                self._timer = None
                self._listen()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _listen(self) -> None:
        httpd = _HTTPServer((self.host, self._port), self)
        self._port = int(httpd.server_address[1])
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"gemimg-sim:{self._port}", daemon=True
        )
        self._httpd, self._thread = httpd, thread
        thread.start()

    def _close(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if thread is not None:
            thread.join(timeout=2)

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- control ------------------------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> SimConfig:
        """Change config fields at run time (checked; ValueError on a bad name or value)."""
        with self._lock:
            self.config.update(**changes)
            return self.config

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward: tasks progress and URLs expire (timestamps do not move)."""
        with self._lock:
            self._offset += max(0.0, float(seconds))

    def reset(self, *, tasks: bool = False) -> None:
        """Zero the counts and refill rate-limit buckets; ``tasks=True`` also forgets tasks and uploads."""
        with self._lock:
            self._counts.clear()
            self._faults.clear()
            self._buckets.clear()
            self._reset_seq = self._seq
            if tasks:
                self._tasks.clear()
                self._by_bid.clear()
                self._files.clear()
                self._uploads.clear()
                self._cache.clear()

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset (see ``docs/simulator.md``)."""
        with self._lock:
            now = self._now()
            recent = [t for t in self._tasks.values() if t.seq > self._reset_seq]
            states = Counter(t.state(now)[0] for t in recent)
            bids = Counter((t.owner, t.req.business_id) for t in recent if t.req.business_id)
            c = self._counts
            return {
                "submits_accepted": c["submits_accepted"],
                "submits_rejected": c["submits_rejected"],
                "tasks": {s: states[s] for s in ("queued", "in_progress", "completed", "failed")}
                | {"total": len(recent)},
                "status_queries": c["status_queries"],
                "uploads": c["uploads"],
                "downloads": c["downloads"],
                "rate_limited": c["rate_limited"],
                "faults": {kind: self._faults[kind] for kind in _FAULT_KINDS},
                "duplicate_business_ids": sum(1 for n in bids.values() if n > 1),
                "auth_failures": c["auth_failures"],
                "requests": c["requests"],
            }

    def _now(self) -> float:
        return time.monotonic() + self._offset

    # -- HTTP plumbing ------------------------------------------------------------------------------------------

    def _serve(self, h: _Handler, method: str) -> None:
        declared = h.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isdigit() else 0
        if length > _MAX_BODY:
            while length > 0:  # drain it, so the client reads the answer instead of a reset
                chunk = h.rfile.read(min(length, 1 << 20))
                length = length - len(chunk) if chunk else 0
            big = {"success": False, "message": "Image too large. Maximum size is 10MB"}
            reply: _Reply | None = _json(400, big) if h.path.startswith(_UPLOAD) else _error(413, 413, "Body too large")
        else:
            body = h.rfile.read(length) if length > 0 else b""
            try:
                reply = self._route(method, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
            except Exception:  # one bad request must not kill the handler thread
                log.exception("simulator error on %s %s", method, urlsplit(h.path).path)
                reply = _error(500, "internal_error", "Internal server error", "server_error")
        if reply is None:  # drop-after-submit: close without a byte of answer
            h.close_connection = True
            return
        h.send_response(reply.status)
        for name, value in {**reply.headers, "X-Request-Id": "req_" + os.urandom(8).hex()}.items():
            h.send_header(name, value)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(reply.body)))
        h.end_headers()
        if reply.trickle > 0:
            for i in range(len(reply.body)):
                h.wfile.write(reply.body[i : i + 1])
                if self._closing.wait(reply.trickle):
                    h.close_connection = True
                    return
            return
        h.wfile.write(reply.body)

    def _route(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        path = urlsplit(target).path
        with self._lock:
            self._counts["requests"] += 1
        if path.startswith("/v1/"):
            return self._api(method, path, headers, body)
        if path.startswith("/_sim/"):
            return self._control(method, path, body)
        if method != "GET":
            return _error(405, 405, "Method not allowed")
        if path.startswith("/generated/"):
            return self._download(path.removeprefix("/generated/"))
        if path.startswith("/uploads/"):
            with self._lock:
                found = self._uploads.get(path)
            return _Reply(200, found[0], found[1]) if found else _not_found("File not found")
        if path == "/":
            return _json(
                200, {"service": "gemimg_jupyter simulator of the ToAPIs image API", "docs": "docs/simulator.md"}
            )
        return _not_found()

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            if path == "/_sim/stats" and method == "GET":
                return _json(200, self.stats())
            if path == "/_sim/config" and method in ("GET", "POST"):
                return _json(200, self.configure(**data).to_dict())
            if path == "/_sim/reset" and method == "POST":
                self.reset(tasks=bool(data.get("tasks")))
                return _json(200, self.stats())
            if path == "/_sim/advance" and method == "POST":
                self.advance(float(data.get("seconds", 0)))
                return _json(200, {"ok": True})
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc), "invalid_request_error")
        return _not_found()

    # -- the API ------------------------------------------------------------------------------------------------

    def _api(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        endpoint = {_SUBMIT: "submit", _UPLOAD: "upload", "/v1/models": "models"}.get(path)
        if endpoint is None and path.startswith(_SUBMIT + "/"):
            endpoint = "query"
        if endpoint == "query":
            with self._lock:
                self._counts["status_queries"] += 1
        reply = self._api_checked(endpoint, method, path, headers, body)
        with self._lock:
            if reply is not None and reply.status == 429:
                self._counts["rate_limited"] += 1
            if endpoint == "submit" and reply is not None and reply.status >= 400:
                self._counts["submits_rejected"] += 1
        return reply

    def _api_checked(
        self, endpoint: str | None, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply | None:
        agent = (headers.get("user-agent") or "").strip().lower()
        if self.config.require_user_agent and (not agent or agent.startswith(("python-requests", "python-urllib"))):
            with self._lock:
                self._faults["edge_refused"] += 1
            return _Reply(403, _EDGE_403, "text/html; charset=UTF-8")
        auth = headers.get("authorization") or ""
        scheme, _, key = auth.partition(" ")
        owner = _owner(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
        if owner is None or (self._accepted is not None and owner not in self._accepted):
            with self._lock:
                self._counts["auth_failures"] += 1
            return _error(401, "unauthorized", "Invalid API key", "authentication_error")
        cfg = self.config
        if endpoint is None:
            if path == "/v1/chat/completions" and cfg.wrong_path_apitype:
                return _error(
                    400,
                    "invalid_request",
                    "invalid apitype: /v1/chat/completions does not serve image "
                    f"models; submit image tasks with POST {_SUBMIT}",
                    "invalid_request_error",
                )
            return _not_found()
        if method != {"submit": "POST", "upload": "POST", "query": "GET", "models": "GET"}[endpoint]:
            return _error(405, 405, f"Method {method} not allowed on {path}")
        if endpoint == "models":
            return self._models()
        fault = self._roll_fault(endpoint)
        if fault is not None:
            return fault
        if endpoint == "submit" and cfg.max_unfinished > 0 and self._unfinished(owner) >= cfg.max_unfinished:
            with self._lock:
                self._faults["unfinished_cap"] += 1
            return _rate_limited({"Retry-After": "1"})
        if endpoint == "query" and self._hang_once(path):
            self._closing.wait(120.0)  # hold the answer until the client gives up (or the server stops)
            return None
        category = {"submit": "async_submit", "query": "async_query"}.get(endpoint)
        limits: dict[str, str] = {}
        if category is not None:
            ok, limits = self._take(owner, category)
            if not ok:
                return _rate_limited(limits)
        if endpoint == "submit":
            reply = self._submit(owner, body)
        elif endpoint == "query":
            reply = self._query(owner, unquote(path.removeprefix(_SUBMIT + "/")))
        else:
            reply = self._upload(owner, headers.get("content-type") or "", body)
        if reply is not None:
            reply.headers.update(limits)
        return reply

    def _unfinished(self, owner: str) -> int:
        with self._lock:
            now = self._now()
            return sum(
                1 for t in self._tasks.values() if t.owner == owner and t.state(now)[0] in ("queued", "in_progress")
            )

    def _once(self, fault: str, task_id: str) -> bool:
        """True the first time ``fault`` meets ``task_id`` (counted), False after."""
        with self._lock:
            if (fault, task_id) in self._seen:
                return False
            self._seen.add((fault, task_id))
            self._faults[fault] += 1
            return True

    def _hang_once(self, path: str) -> bool:
        ident = unquote(path.removeprefix(_SUBMIT + "/"))
        with self._lock:
            known = ident in self._tasks
        return self.config.hang_status_once and known and self._once("hung_status", ident)

    def _roll_fault(self, endpoint: str) -> _Reply | None:
        cfg = self.config
        if endpoint not in cfg.fault_endpoints:
            return None
        with self._lock:
            if self._rng.random() < cfg.server_error_rate:
                if self._rng.random() < cfg.html_error_rate:
                    self._faults["html_504"] += 1
                    return _Reply(504, _HTML_504, "text/html")
                self._faults["server_error"] += 1
                status = self._rng.choice((500, 502, 503))
                if status == 503:
                    return _error(
                        503, "rate_limit_unavailable", "The async task submit limiter is temporarily unavailable"
                    )
                return _error(status, "internal_error", "Internal server error", "server_error")
            if self._rng.random() >= cfg.rate_limit_rate:
                return None
            self._faults["rate_limit"] += 1
            wait = self._rng.uniform(*cfg.retry_after)
        if cfg.retry_after_http_date:
            after = email.utils.formatdate(time.time() + math.ceil(wait), usegmt=True)
        else:
            after = str(int(wait)) if wait == int(wait) else f"{wait:.2f}"
        return _rate_limited({"Retry-After": after})

    def _take(self, owner: str, category: str) -> tuple[bool, dict[str, str]]:
        """Take one token from the key's bucket; the answer carries X-RateLimit-* headers."""
        cfg = self.config
        rate, burst = (
            (cfg.submit_rate, cfg.submit_burst) if category == "async_submit" else (cfg.query_rate, cfg.query_burst)
        )
        with self._lock:
            now = self._now()
            tokens, last = self._buckets.get((owner, category), (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            ok = tokens >= 1
            tokens -= 1 if ok else 0
            self._buckets[(owner, category)] = (tokens, now)
        reset = math.ceil((burst - tokens) / rate) if rate > 0 else 60
        headers = {
            "X-RateLimit-Limit": str(int(burst)),
            "X-RateLimit-Remaining": str(max(0, int(tokens))),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Category": category,
        }
        if not ok:
            headers["Retry-After"] = str(max(1, math.ceil((1 - tokens) / rate))) if rate > 0 else "60"
        return ok, headers

    def _submit(self, owner: str, body: bytes) -> _Reply | None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        cfg = self.config
        unserved = self._unserved(payload)
        if unserved is not None:
            return unserved
        try:
            req = _validate(payload, cfg.strict_image_url_objects)
        except _Invalid as exc:
            return _error(400, exc.code, exc.message, "invalid_request_error", param=exc.param)
        if cfg.insufficient_quota:
            with self._lock:
                self._faults["insufficient_quota"] += 1
            if cfg.style == "newapi":  # New API answers an empty balance with 403
                return _error(403, "insufficient_user_quota", "user quota is not enough", "new_api_error")
            return _error(402, "insufficient_quota", "Insufficient account balance, please top up", "payment_required")
        with self._lock:
            self._seq += 1
            prefix = "tsk_img_" if cfg.style == "newapi" else "img_"
            task_id = prefix + hashlib.sha256(f"{self._salt}:{self._seq}".encode()).hexdigest()[:32]
            rng = random.Random(f"{self._salt}:{task_id}")
            total = rng.uniform(*cfg.latency)
            queue_s = min(total, rng.uniform(*cfg.queue_delay))
            roll = rng.random()
            outcome = (
                "failed"
                if roll < cfg.fail_rate
                else "stuck"
                if roll < cfg.fail_rate + cfg.stuck_rate
                else "blocked"
                if roll < cfg.fail_rate + cfg.stuck_rate + cfg.blocked_rate
                else "completed"
            )
            wall = time.time()
            name = f"{int(wall)}_{hashlib.sha256(task_id.encode()).hexdigest()[:12]}.png"
            task = _Task(
                task_id,
                self._seq,
                owner,
                req,
                wall,
                self._now(),
                queue_s,
                total - queue_s,
                outcome,
                rng.random() < cfg.corrupt_image_rate,
                cfg.url_lifetime,
                name,
                small=rng.random() < cfg.small_image_rate,
            )
            self._tasks[task_id] = task
            self._save_task(task)
            self._files[name] = task_id
            if req.business_id:
                self._by_bid.setdefault((owner, req.business_id), []).append(task_id)
            self._counts["submits_accepted"] += 1
            if outcome != "completed":
                self._faults[f"{outcome}_task"] += 1
            if task.small and outcome == "completed":
                self._faults["small_image"] += 1
            if self._rng.random() < cfg.drop_after_submit_rate:
                self._faults["drop_after_submit"] += 1
                return None
        newapi = cfg.style == "newapi"
        out: dict[str, Any] = {
            "id": task_id,
            "object": "generation.task",
            "model": req.spec.id,
            "status": "pending" if newapi else "queued",
            "progress": "0%" if newapi else 0,
            "created_at": int(wall),
            "metadata": {},
        }
        if req.business_id:
            out["client_business_id"] = req.business_id
        return _json(200, out)

    def _query(self, owner: str, ident: str) -> _Reply:
        with self._lock:
            task = self._tasks.get(ident)
            if task is None or task.owner != owner:
                ids = self._by_bid.get((owner, ident))
                task = self._tasks.get(ids[-1]) if ids else None
            if task is None:
                return _not_found("Task not found")
            html = self.config.html_status_rate > 0 and self._rng.random() < self.config.html_status_rate
            if html:
                self._faults["html_200_status"] += 1
        if html or (self.config.html_status_once and self._once("html_200_status", task.id)):
            return _Reply(200, _HTML_200, "text/html; charset=utf-8")
        with self._lock:
            return _json(200, self._view(task, self._now()))

    def _view(self, task: _Task, now: float) -> dict[str, Any]:
        if self.config.style == "newapi":
            return self._view_newapi(task, now)
        state, progress = task.state(now)
        req = task.req
        out: dict[str, Any] = {
            "id": task.id,
            "object": "generation.task",
            "model": req.spec.id,
            "status": self.config.unknown_status if state == "in_progress" and self.config.unknown_status else state,
            "progress": progress,
            "created_at": int(task.created_wall),
        }
        if req.business_id:
            out["client_business_id"] = req.business_id
        if state in ("queued", "in_progress"):
            out["billing"] = {"status": "pending"}
        elif state == "failed":
            out["error"] = {"code": "generation_failed", "message": _failure_reason(task)}
            out["billing"] = dict(_REFUNDED)
        else:
            out |= self._completion(task)
            if self.config.top_level_url:
                out["url"] = out["result"]["data"][0]["url"]
            price = req.spec.price_usd
            if price is not None:
                out["billing"] = {
                    "status": "settled",
                    "credits": f"{price * 200:.2f}",
                    "cost_usd": f"{price:.4f}".rstrip("0").rstrip("."),
                }
                text_tokens = max(1, len(req.prompt) // 4)
                image_tokens = 258 * len(req.image_urls)
                out["usage"] = {
                    "input_tokens": text_tokens + image_tokens,
                    "output_tokens": 1290,
                    "total_tokens": text_tokens + image_tokens + 1290,
                }
        return out

    def _view_newapi(self, task: _Task, now: float) -> dict[str, Any]:
        """The task as New API answers: its status words, ``"40%"``, ``fail_reason``, no billing on success."""
        state, progress = task.state(now)
        word = {"queued": "QUEUED", "in_progress": "IN_PROGRESS", "completed": "SUCCESS", "failed": "FAILURE"}[state]
        if state == "queued" and now - task.t0 < task.queue_s / 2:
            word = "NOT_START"
        if state == "in_progress" and self.config.unknown_status:
            word = self.config.unknown_status
        out: dict[str, Any] = {
            "task_id": task.id,
            "object": "generation.task",
            "model": task.req.spec.id,
            "status": word,
            "progress": f"{progress}%",
            "created_at": int(task.created_wall),
            "fail_reason": "",
        }
        if task.req.business_id:
            out["client_business_id"] = task.req.business_id
        if state == "failed":
            out |= {"progress": "100%", "fail_reason": _failure_reason(task), "billing": dict(_REFUNDED)}
        elif state == "completed":
            out |= self._completion(task)
            out["url"] = out["result"]["data"][0]["url"]
        return out

    def _completion(self, task: _Task) -> dict[str, Any]:
        """``completed_at``, ``expires_at`` and ``result`` of a completed task (both styles)."""
        done = int(task.created_wall + task.queue_s + task.run_s)
        url = f"{self.base_url}/generated/{task.file_name}"
        return {
            "completed_at": done,
            "expires_at": done + int(task.lifetime),
            "result": {"type": "image", "data": [{"url": url}]},
        }

    def _unserved(self, payload: Any) -> _Reply | None:
        """503 ``model_not_found`` for a model no channel serves (New API's answer; also unknown ids in ``newapi``)."""
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model.strip():
            return None
        try:
            known = get_model(model).id
        except ValidationError:
            known = None
        cfg = self.config
        if model in cfg.unserved_models or known in cfg.unserved_models or (known is None and cfg.style == "newapi"):
            with self._lock:
                self._faults["model_not_found"] += 1
            return _error(
                503,
                "model_not_found",
                f"No available channel for model {model} under group default (distributor)",
                "new_api_error",
            )
        return None

    def _models(self) -> _Reply:
        """``GET /v1/models``: the registry's image models, less the unserved ones (free, like the real one)."""
        unserved = set(self.config.unserved_models)
        data = [
            {"id": spec.id, "object": "model", "owned_by": "toapis", "type": "image"}
            for spec in MODELS.values()
            if spec.id not in unserved
        ]
        out: dict[str, Any] = {"object": "list", "data": data}
        if self.config.style == "newapi":
            out["success"] = True
        return _json(200, out)

    def _upload(self, owner: str, content_type: str, body: bytes) -> _Reply:
        def refuse(message: str) -> _Reply:
            return _json(400, {"success": False, "message": message})

        if not content_type.lower().startswith("multipart/form-data"):
            return refuse("Content-Type must be multipart/form-data with a 'file' field")
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        data: bytes | None = None
        if message.is_multipart():
            for part in message.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    payload = part.get_payload(decode=True)
                    data = payload if isinstance(payload, bytes) else None
                    break
        if data is None:
            return refuse("Missing form field 'file'")
        if len(data) > MAX_UPLOAD_BYTES:
            return refuse("Image too large. Maximum size is 10MB")
        try:
            with Image.open(io.BytesIO(data)) as img:
                kind = _UPLOAD_FORMATS.get(img.format or "")
                img.verify()
        except Exception:  # noqa: BLE001 - Pillow raises many kinds for non-images
            kind = None
        if kind is None:
            return refuse("Unsupported image type. Allowed: JPEG, PNG, WebP, GIF")
        with self._lock:
            self._counts["uploads"] += 1
            uid = hashlib.sha256(f"{self._salt}:upload:{self._counts['uploads']}".encode()).hexdigest()[:8]
            path = f"/uploads/{owner[:8]}/{int(time.time())}_{uid}.{kind[1]}"
            self._uploads[path] = (data, kind[0])
        info = {"id": f"upload_{uid}", "url": self.base_url + path, "mime_type": kind[0], "size": len(data)}
        return _json(200, {"success": True, "message": "", "data": info})

    def _download(self, name: str) -> _Reply:
        with self._lock:
            task = self._tasks.get(self._files.get(name, ""))
            now = self._now()
            if task is None or task.state(now)[0] != "completed":
                return _not_found("File not found")
            if now >= task.done_at + task.lifetime:
                self._faults["expired_url"] += 1
                return _not_found("File expired")
            data = self._cache.get(task.id)
            refs = tuple(self._uploads[p][0] for p in map(_path, task.req.image_urls) if p in self._uploads)
            urls = tuple(u for u in task.req.image_urls if _path(u) not in self._uploads)
        fault = self._roll_fault("download")
        if fault is not None:
            return fault
        if self.config.download_404_once and self._once("download_404", task.id):
            return _not_found("File not found")
        shared = (task.req.size, task.req.resolution, task.small) if self.config.render_once else None
        if data is None and shared is not None and not task.corrupt:
            with self._lock:
                data = self._renders.get(shared)
        if data is None:
            req = task.req
            resolution = _smaller(req.resolution) if task.small else req.resolution
            sample = task.id if req.seed is None else f"seed:{req.seed}"
            spec = RenderSpec(
                req.prompt, req.spec.id, req.size, resolution, req.temperature, req.top_p, refs, urls, sample
            )
            data = render_png(spec)
            if task.corrupt:
                data = corrupt(data, task.id)
        with self._lock:
            if shared is not None and not task.corrupt:
                self._renders.setdefault(shared, data)
            self._cache[task.id] = data
            while len(self._cache) > 32:
                self._cache.popitem(last=False)
            self._counts["downloads"] += 1
            if task.corrupt:
                self._faults["corrupt_image"] += 1
            if self.config.trickle_download > 0:
                self._faults["trickle_download"] += 1
        return _Reply(
            200, data, "image/png", {"Cache-Control": "public, max-age=86400"}, trickle=self.config.trickle_download
        )


_REFUNDED = {"status": "refunded", "credits": "0", "cost_usd": "0"}
_STEP_DOWN = {"4K": "2K", "2K": "1K", "1K": "0.5K", "0.5K": "0.5K"}


def _smaller(resolution: str) -> str:
    """One resolution step down (a channel answering 2K with 1K)."""
    return _STEP_DOWN.get(resolution, "0.5K")


def _failure_reason(task: _Task) -> str:
    if task.outcome == "blocked":
        return _BLOCKED_REASON
    return "call upstream API failed: upstream returned status 422"


def _owner(key: str) -> str:
    """A stable, non-reversible handle for an API key (the key itself is never stored)."""
    return hashlib.sha256(("gemimg-sim:" + key).encode()).hexdigest()


def _path(url: str) -> str:
    return urlsplit(url).path
