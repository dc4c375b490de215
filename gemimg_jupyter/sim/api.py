"""The simulator's API: what each route answers, in the ``docs`` or ``newapi`` dialect (HTTP-free).

:class:`SimApi` is an object over a :class:`~.state.SimState`: bytes and headers
in, a :class:`~.tasks._Reply` out. The server (:mod:`.server`) *has* one and
hands it every request; neither this module nor the state imports the server.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from PIL import Image

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import MODELS, ModelSpec, get_model
from gemimg_jupyter.sim.config import (
    _EDGE_403,
    _HTML_200,
    _SUBMIT,
    _UPLOAD,
    _UPLOAD_FORMATS,
    MAX_UPLOAD_BYTES,
    SIM_PRICES,
)
from gemimg_jupyter.sim.encode import FORMATS, encode, format_of_name
from gemimg_jupyter.sim.render import RenderSpec, corrupt, render
from gemimg_jupyter.sim.state import SimState
from gemimg_jupyter.sim.tasks import (
    _REFUNDED,
    _error,
    _failure_reason,
    _Invalid,
    _json,
    _not_found,
    _owner,
    _path,
    _rate_limited,
    _Reply,
    _smaller,
    _Task,
    _validate,
)

__all__ = ["SimApi"]


class SimApi:
    """The gateway's routes over ``state``: submit, query, upload, models, download, the ``/_sim/`` control.

    ``base_url`` gives the server's current ``http://host:port`` (result and upload URLs point there).
    HTTP-free: bytes in, :class:`_Reply` out (``None``: close the connection without an answer).
    """

    def __init__(self, state: SimState, base_url: Callable[[], str]) -> None:
        self.state = state
        self.base_url = base_url

    def route(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        """The answer to one request (``headers`` with lower-case names)."""
        path = urlsplit(target).path
        with self.state.lock:
            self.state.counts["requests"] += 1
        if path.startswith("/v1/"):
            return self._api(method, path, headers, body)
        if path.startswith("/_sim/"):
            return self._control(method, path, body)
        if method != "GET":
            return _error(405, 405, "Method not allowed")
        if path.startswith("/generated/"):
            return self._download(path.removeprefix("/generated/"))
        if path.startswith("/uploads/"):
            with self.state.lock:
                found = self.state.uploads.get(path)
            return _Reply(200, found[0], found[1]) if found else _not_found("File not found")
        if path == "/":
            return _json(
                200, {"service": "gemimg_jupyter simulator of the ToAPIs image API", "docs": "docs/simulator.md"}
            )
        return _not_found()

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        state = self.state
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            if path == "/_sim/stats" and method == "GET":
                return _json(200, state.stats())
            if path == "/_sim/config" and method in ("GET", "POST"):
                return _json(200, state.configure(**data).to_dict())
            if path == "/_sim/reset" and method == "POST":
                state.reset(tasks=bool(data.get("tasks")))
                return _json(200, state.stats())
            if path == "/_sim/advance" and method == "POST":
                state.advance(float(data.get("seconds", 0)))
                return _json(200, {"ok": True})
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc), "invalid_request_error")
        return _not_found()

    def _api(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        endpoint = {_SUBMIT: "submit", _UPLOAD: "upload", "/v1/models": "models", "/v1/pricing": "pricing"}.get(path)
        if endpoint is None and path.startswith(_SUBMIT + "/"):
            endpoint = "query"
        if endpoint == "query":
            with self.state.lock:
                self.state.counts["status_queries"] += 1
        reply = self._api_checked(endpoint, method, path, headers, body)
        with self.state.lock:
            if reply is not None and reply.status == 429:
                self.state.counts["rate_limited"] += 1
            if endpoint == "submit" and reply is not None and reply.status >= 400:
                self.state.counts["submits_rejected"] += 1
        return reply

    def _api_checked(
        self, endpoint: str | None, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply | None:
        agent = (headers.get("user-agent") or "").strip().lower()
        if self.state.config.require_user_agent and (
            not agent or agent.startswith(("python-requests", "python-urllib"))
        ):
            with self.state.lock:
                self.state.faults["edge_refused"] += 1
            return _Reply(403, _EDGE_403, "text/html; charset=UTF-8")
        auth = headers.get("authorization") or ""
        scheme, _, key = auth.partition(" ")
        owner = _owner(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
        if owner is None or (self.state.accepted is not None and owner not in self.state.accepted):
            with self.state.lock:
                self.state.counts["auth_failures"] += 1
            return _error(401, "unauthorized", "Invalid API key", "authentication_error")
        cfg = self.state.config
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
        if method != {"submit": "POST", "upload": "POST", "query": "GET", "models": "GET", "pricing": "GET"}[endpoint]:
            return _error(405, 405, f"Method {method} not allowed on {path}")
        if endpoint == "models":
            return self._models()
        if endpoint == "pricing":
            return self._pricing() if cfg.price_list else _not_found()
        fault = self.state.roll_fault(endpoint)
        if fault is not None:
            return fault
        if endpoint == "submit" and cfg.max_unfinished > 0 and self.state.unfinished(owner) >= cfg.max_unfinished:
            with self.state.lock:
                self.state.faults["unfinished_cap"] += 1
            return _rate_limited({"Retry-After": "1"})
        if endpoint == "query" and cfg.status_retry_after > 0:  # a gateway asking for a long wait between looks
            with self.state.lock:
                self.state.faults["status_retry_after"] += 1
            return _rate_limited({"Retry-After": self.state.retry_after(cfg.status_retry_after)})
        if endpoint == "query" and self.state.hang_once(path):
            self.state.closing.wait(120.0)  # hold the answer until the client gives up (or the server stops)
            return None
        category = {"submit": "async_submit", "query": "async_query"}.get(endpoint)
        limits: dict[str, str] = {}
        if category is not None:
            ok, limits = self.state.take(owner, category)
            if not ok:
                return _rate_limited(limits)
        if endpoint == "submit":
            if headers.get("idempotency-key"):
                with self.state.lock:
                    self.state.counts["idempotency_keys"] += 1
            reply = self._submit(owner, body, headers.get("idempotency-key"))
        elif endpoint == "query":
            reply = self._query(owner, unquote(path.removeprefix(_SUBMIT + "/")))
        else:
            reply = self._upload(owner, headers.get("content-type") or "", body)
        if reply is not None:
            reply.headers.update(limits)
        return reply

    def _submit(self, owner: str, body: bytes, idem: str | None = None) -> _Reply | None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        cfg = self.state.config
        unserved = self._unserved(payload)
        if unserved is not None:
            return unserved
        try:
            req = _validate(payload, cfg.strict_image_url_objects, cfg.listed_models)
        except _Invalid as exc:
            return _error(400, exc.code, exc.message, "invalid_request_error", param=exc.param)
        if cfg.insufficient_quota:
            with self.state.lock:
                self.state.faults["insufficient_quota"] += 1
            if cfg.style == "newapi":  # New API answers an empty balance with 403
                return _error(403, "insufficient_user_quota", "user quota is not enough", "new_api_error")
            return _error(402, "insufficient_quota", "Insufficient account balance, please top up", "payment_required")
        again = self._refused_or_replayed(owner, idem, req.business_id)
        if again is not None:
            return again
        with self.state.lock:
            self.state.seq += 1
            prefix = "tsk_img_" if cfg.style == "newapi" else "img_"
            task_id = prefix + hashlib.sha256(f"{self.state.salt}:{self.state.seq}".encode()).hexdigest()[:32]
            rng = random.Random(f"{self.state.salt}:{task_id}")
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
            ext = FORMATS[req.output_format or cfg.image_format][1]  # the output_format control, else the switch
            name = f"{int(wall)}_{hashlib.sha256(task_id.encode()).hexdigest()[:12]}{ext}"
            task = _Task(
                task_id,
                self.state.seq,
                owner,
                req,
                wall,
                self.state.now(),
                queue_s,
                total - queue_s,
                outcome,
                rng.random() < cfg.corrupt_image_rate,
                cfg.url_lifetime,
                name,
                small=rng.random() < cfg.small_image_rate,
            )
            self.state.tasks[task_id] = task
            self.state.save_task(task)
            self.state.files[name] = task_id
            if req.business_id:
                self.state.by_bid.setdefault((owner, req.business_id), []).append(task_id)
            if idem:
                self.state.by_idem.setdefault((owner, idem), task_id)
            self.state.counts["submits_accepted"] += 1
            if outcome != "completed":
                self.state.faults[f"{outcome}_task"] += 1
            if task.small and outcome == "completed":
                self.state.faults["small_image"] += 1
            if cfg.lost_submit:  # the answer is lost on the way back: the task exists, is paid, is never found
                self.state.faults["lost_submit"] += 1
                return None
            if self.state.rng.random() < cfg.drop_after_submit_rate:
                self.state.faults["drop_after_submit"] += 1
                return None
        return self._accepted(task)

    def _accepted(self, task: _Task) -> _Reply:
        """The answer to an accepted submit (and to its replay for a repeated ``Idempotency-Key``)."""
        newapi = self.state.config.style == "newapi"
        out: dict[str, Any] = {
            "id": task.id,
            "object": "generation.task",
            "model": task.req.spec.id,
            "status": "pending" if newapi else "queued",
            "progress": "0%" if newapi else 0,
            "created_at": int(task.created_wall),
            "metadata": {},
        }
        if task.req.business_id:
            out["client_business_id"] = task.req.business_id
        return _json(200, out)

    def _refused_or_replayed(self, owner: str, idem: str | None, business_id: str | None) -> _Reply | None:
        """A repeated submit: refused as a duplicate (``lost_submit``), or its first task replayed (``idempotency``)."""
        cfg = self.state.config
        with self.state.lock:
            known = business_id is not None and (owner, business_id) in self.state.by_bid
            if cfg.lost_submit and known:
                self.state.faults["duplicate_refused"] += 1
        if cfg.lost_submit and known:
            if cfg.lost_submit == "409":
                text = f"duplicate client_business_id {business_id}: a task with this id already exists"
                return _error(409, "duplicate_request", text, "invalid_request_error")
            text = f"client_business_id {business_id} is a duplicate of an earlier request"
            return _error(400, "invalid_request", text, "invalid_request_error", param="client_business_id")
        first = self.state.replay(owner, idem, business_id)
        if first is None:
            return None
        reply = self._accepted(first)
        reply.headers["Idempotency-Replayed"] = "true"
        return reply

    def _query(self, owner: str, ident: str) -> _Reply:
        with self.state.lock:
            task = self.state.tasks.get(ident)
            task = task if task is not None and task.owner == owner else None
            if task is None and not self.state.config.lost_submit:  # lost_submit: no look-up by business id
                ids = self.state.by_bid.get((owner, ident))
                task = self.state.tasks.get(ids[-1]) if ids else None
            if task is None:
                return _not_found("Task not found")
            html = (
                self.state.config.html_status_rate > 0 and self.state.rng.random() < self.state.config.html_status_rate
            )
            if html:
                self.state.faults["html_200_status"] += 1
        if html or (self.state.config.html_status_once and self.state.once("html_200_status", task.id)):
            return _Reply(200, _HTML_200, "text/html; charset=utf-8")
        with self.state.lock:
            return _json(200, self._view(task, self.state.now()))

    def _view(self, task: _Task, now: float) -> dict[str, Any]:
        if self.state.config.style == "newapi":
            return self._view_newapi(task, now)
        state, progress = task.state(now)
        req = task.req
        out: dict[str, Any] = {
            "id": task.id,
            "object": "generation.task",
            "model": req.spec.id,
            "status": self.state.config.unknown_status
            if state == "in_progress" and self.state.config.unknown_status
            else state,
            "progress": progress,
            "created_at": int(task.created_wall),
        }
        if req.business_id:
            out["client_business_id"] = req.business_id
        if state in ("queued", "in_progress"):
            out["billing"] = {"status": "pending"}
        elif state == "failed":
            out["error"] = {
                "code": "generation_failed",
                "message": _failure_reason(task, self.state.config.finish_reason),
            }
            out["billing"] = dict(_REFUNDED)
            if task.outcome == "blocked" and self.state.config.model_text:
                out["text"] = self.state.config.model_text  # what the model wrote instead of the image
        else:
            out |= self._completion(task)
            if self.state.config.top_level_url:
                out["url"] = out["result"]["data"][0]["url"]
            price = _price(req.spec, req.resolution)
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
        if state == "in_progress" and self.state.config.unknown_status:
            word = self.state.config.unknown_status
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
        url = f"{self.base_url()}/generated/{task.file_name}"
        says = self.state.config.expires_at_says  # a gateway whose expires_at lies (clock skew, a placeholder 0)
        return {
            "completed_at": done,
            "expires_at": {"past": int(time.time()) - 3600, "zero": 0}.get(says, done + int(task.lifetime)),
            "result": {"type": "image", "data": [{"url": url}]},
        }

    def _unserved(self, payload: Any) -> _Reply | None:
        """503 ``model_not_found`` for a model no channel serves (New API's answer; also unknown ids in ``newapi``)."""
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model.strip():
            return None
        cfg = self.state.config
        try:
            known = model if model in cfg.listed_models else get_model(model).id
        except ValidationError:
            known = None
        if model in cfg.unserved_models or known in cfg.unserved_models or (known is None and cfg.style == "newapi"):
            with self.state.lock:
                self.state.faults["model_not_found"] += 1
            return _error(
                503,
                "model_not_found",
                f"No available channel for model {model} under group default (distributor)",
                "new_api_error",
            )
        return None

    def _models(self) -> _Reply:
        """``GET /v1/models``: the registry's image models, less the unserved ones (free, like the real one)."""
        unserved = set(self.state.config.unserved_models)
        ids = [*MODELS, *(i for i in self.state.config.listed_models if i not in MODELS)]
        data = [{"id": i, "object": "model", "owned_by": "toapis", "type": "image"} for i in ids if i not in unserved]
        out: dict[str, Any] = {"object": "list", "data": data}
        if self.state.config.style == "newapi":
            out["success"] = True
        return _json(200, out)

    def _pricing(self) -> _Reply:
        """``GET /v1/pricing`` (§9): per-request prices, per resolution where the simulator has them."""
        data = []
        for spec in MODELS.values():
            table = SIM_PRICES.get(spec.id) or ({"*": spec.price_usd} if spec.price_usd is not None else {})
            prices = [
                {
                    "group": "default",
                    "conditions": {} if res == "*" else {"resolution": res},
                    "charge_type": "per_request",
                    "unit": "request",
                    "unit_price": f"{usd:.4f}",
                }
                for res, usd in table.items()
            ]
            if prices:
                data.append({"id": spec.id, "type": "image", "prices": prices})
        return _json(200, {"object": "list", "currency": "USD", "data": data, "has_more": False, "next_after": None})

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
        with self.state.lock:
            self.state.counts["uploads"] += 1
            uid = hashlib.sha256(f"{self.state.salt}:upload:{self.state.counts['uploads']}".encode()).hexdigest()[:8]
            path = f"/uploads/{owner[:8]}/{int(time.time())}_{uid}.{kind[1]}"
            self.state.uploads[path] = (data, kind[0])
        info = {"id": f"upload_{uid}", "url": self.base_url() + path, "mime_type": kind[0], "size": len(data)}
        return _json(200, {"success": True, "message": "", "data": info})

    def _download(self, name: str) -> _Reply:
        with self.state.lock:
            task = self.state.tasks.get(self.state.files.get(name, ""))
            now = self.state.now()
            if task is None or task.state(now)[0] != "completed":
                return _not_found("File not found")
            if now >= task.done_at + task.lifetime:
                self.state.faults["expired_url"] += 1
                return _not_found("File expired")
            data = self.state.cache.get(task.id)
            refs = tuple(self.state.uploads[p][0] for p in map(_path, task.req.image_urls) if p in self.state.uploads)
            urls = tuple(u for u in task.req.image_urls if _path(u) not in self.state.uploads)
        fault = self.state.roll_fault("download")
        if fault is not None:
            return fault
        if self.state.config.download_404_once and self.state.once("download_404", task.id):
            return _not_found("File not found")
        fmt = format_of_name(name)
        quality = task.req.quality
        shared = (
            (task.req.size, task.req.resolution, task.small, fmt, quality) if self.state.config.render_once else None
        )
        if data is None and shared is not None and not task.corrupt:
            with self.state.lock:
                data = self.state.renders.get(shared)
        if data is None:
            req = task.req
            resolution = _smaller(req.resolution) if task.small else req.resolution
            sample = task.id if req.seed is None else f"seed:{req.seed}"
            spec = RenderSpec(
                req.prompt, req.spec.id, req.size, resolution, req.temperature, req.top_p, refs, urls, sample, req.mark
            )
            cfg = self.state.config
            data = encode(
                render(spec), fmt, orientation=cfg.exif_orientation, c2pa=cfg.content_credentials, quality=quality
            )
            if task.corrupt:
                data = corrupt(data, task.id)
        with self.state.lock:
            if shared is not None and not task.corrupt:
                self.state.renders.setdefault(shared, data)
            self.state.cache[task.id] = data
            while len(self.state.cache) > 32:
                self.state.cache.popitem(last=False)
            self.state.counts["downloads"] += 1
            if task.corrupt:
                self.state.faults["corrupt_image"] += 1
            if self.state.config.trickle_download > 0:
                self.state.faults["trickle_download"] += 1
        return _Reply(
            200,
            data,
            FORMATS[fmt][0],
            {"Cache-Control": "public, max-age=86400"},
            trickle=self.state.config.trickle_download,
        )


def _price(spec: ModelSpec, resolution: str) -> float | None:
    """What the simulator bills for one image: its price list's per-resolution price, else the model's."""
    table = SIM_PRICES.get(spec.id)
    return table.get(resolution) if table else spec.price_usd
