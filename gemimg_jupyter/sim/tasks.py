"""The simulator's wire pieces: replies, the checked submit body, a task and its state over time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import MODELS, ModelSpec, generic_spec, get_model
from gemimg_jupyter.domain.params import CONTROL_PARAMS, CONTROLS, SAMPLING_PARAMS
from gemimg_jupyter.sim.config import _BLOCKED_REASON, _UPLOAD


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
    controls: tuple[tuple[str, Any], ...] = field(default=(), kw_only=True)
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, kw_only=True)

    @property
    def output_format(self) -> str | None:
        """The format the ``output_format`` control asks for (``png``, ``jpeg``, ``webp``), or ``None``."""
        value = dict(self.controls).get("output_format")
        return str(value) if value is not None else None

    @property
    def quality(self) -> int | None:
        """The JPEG quality the ``quality`` control asks for, or ``None``."""
        value = dict(self.controls).get("quality")
        return int(value) if value is not None else None

    @property
    def mark(self) -> str:
        """What the controls change in the simulated image: a caption (``thinking HIGH · search``)."""
        return " · ".join(
            f"{CONTROLS[name].label} {CONTROLS[name].value_label(v)}" for name, v in self.controls if name != "safety"
        )


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


def _sampling(meta: Mapping[str, Any]) -> dict[str, float | None]:
    """``temperature`` and ``top_p`` from ``metadata`` (under their wire names), within the parameter table's bounds."""
    out: dict[str, float | None] = {}
    for param in SAMPLING_PARAMS:
        assert param.wire is not None, "a sampling parameter has a wire name"
        assert param.bounds is not None, "a sampling parameter has bounds"
        name, (lo, hi), value = param.wire, param.bounds, meta.get(param.wire)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi
        ):
            raise _Invalid(
                f"metadata.{name} must be a number from {lo:g} to {hi:g} (got {json.dumps(value)})", f"metadata.{name}"
            )
        out[param.name] = None if value is None else float(value)
    return out


def _controls(spec: ModelSpec, meta: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The controls in ``metadata``, checked as the gateway documents them per model (400 on anything else)."""
    out: dict[str, Any] = {}
    for control in CONTROL_PARAMS:
        assert control.wire is not None, "a control has a wire path"
        *parents, leaf = control.wire.split(".")
        node: Any = meta
        for part in parents:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping) or leaf not in node:
            continue
        where = f"metadata.{control.wire}"
        if not spec.takes(control.name):
            raise _Invalid(f"{where} is not supported by {spec.id}", where, code="unsupported_parameter")
        try:
            out[control.name] = control.check_wire(node[leaf])
        except ValueError as exc:
            raise _Invalid(f"{where} is invalid (got {json.dumps(node[leaf])}): {exc}", where) from None
    for name in out:
        needs = CONTROLS[name].requires
        if needs is not None and out.get(needs[0]) != needs[1]:
            other = CONTROLS[needs[0]]
            raise _Invalid(
                f"metadata.{CONTROLS[name].wire} requires metadata.{other.wire} = {json.dumps(other.wire_value(needs[1]))}",
                f"metadata.{CONTROLS[name].wire}",
            )
    return tuple(out.items())


def _validate(payload: Any, strict_objects: bool, listed: tuple[str, ...] = ()) -> _Submit:
    """Check a submit body the way the gateway documents it; raise :class:`_Invalid`."""
    if not isinstance(payload, dict):
        raise _Invalid("Request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _Invalid("The 'model' field is required.", "model")
    try:
        spec = generic_spec(model) if model in listed and model not in MODELS else get_model(model)
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
    sampled = _sampling(meta)
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
    temperature, top_p = (sampled[p.name] for p in SAMPLING_PARAMS)
    submit = _Submit(spec, prompt, size, resolution, temperature, top_p, tuple(clean), business_id, seed)
    return replace(submit, controls=_controls(spec, meta), metadata=json.loads(json.dumps(meta)))


_REFUNDED = {"status": "refunded", "credits": "0", "cost_usd": "0"}
_STEP_DOWN = {"4K": "2K", "2K": "1K", "1K": "0.5K", "0.5K": "0.5K"}


def _smaller(resolution: str) -> str:
    """One resolution step down (a channel answering 2K with 1K)."""
    return _STEP_DOWN.get(resolution, "0.5K")


def _failure_reason(task: _Task, finish_reason: str = "IMAGE_SAFETY") -> str:
    if task.outcome == "blocked":
        return _BLOCKED_REASON.format(reason=finish_reason)
    return "call upstream API failed: upstream returned status 422"


def _owner(key: str) -> str:
    """A stable, non-reversible handle for an API key (the key itself is never stored)."""
    return hashlib.sha256(("gemimg-sim:" + key).encode()).hexdigest()


def _path(url: str) -> str:
    return urlsplit(url).path
