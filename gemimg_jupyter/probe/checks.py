"""The probe's checks: each question put to the gateway, what was expected, what it said (no CLI).

:mod:`.cli` runs them (``python -m gemimg_jupyter.probe``, ``%gemimg probe``)
and writes the transcript; :mod:`.report` holds what they fill in and the
:class:`~.report.Gateway` they talk through. The free checks never pay; the paid
ones pay only through a :class:`~.report._Budget`.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import requests
from PIL import Image, ImageChops, ImageStat

from gemimg_jupyter.domain.errors import GemimgError
from gemimg_jupyter.domain.models import MODELS, GenerationParams, ModelSpec, pixel_size
from gemimg_jupyter.domain.text import format_usd
from gemimg_jupyter.draw.images import png_bytes
from gemimg_jupyter.gateway.client import STATUS_WORDS, parse_task
from gemimg_jupyter.probe.catalogue import ask_controls, ask_preview_answers, ask_preview_listing, ask_pricing
from gemimg_jupyter.probe.report import _SUBMIT, Check, Gateway, ProbeReport, _Budget

_PROMPT = "A small red paper-cut fox on a plain white background"
_SEED = 424242


class Probe:
    """The questions: the free checks, then the paid ones within a :class:`_Budget`, over its :attr:`gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.listed: list[str] = []  # the image models the key may use (from the models check)
        self.uploaded: str | None = None  # the reference the upload check put up

    def free_checks(self, report: ProbeReport) -> bool:
        """Auth, models, User-Agent, error shape; False when the key is refused (nothing else can work)."""
        resp = self._check_auth(report)
        if resp is None:
            return False
        self._check_models(report, resp)
        self._check_user_agent(report, resp)
        self._check_error_shape(report)
        self._check_unknown_model(report)
        self._check_upload(report)
        ask_pricing(self.gateway, report)
        ask_preview_listing(report, self.listed)
        return True

    def _check_auth(self, report: ProbeReport) -> requests.Response | None:
        """The model list's answer, or None when there is none or the key is refused."""
        auth = report.ask("auth", "is the key accepted?", "GET /v1/models?type=image answers 200 with the key")
        try:
            resp = self.gateway.raw("GET", "/v1/models", params={"type": "image"})
        except requests.RequestException as exc:
            auth.observed, auth.verdict = f"no answer ({type(exc).__name__}); check the URL and the network", "error"
            return None
        auth.observed = f"HTTP {resp.status_code}" + _error_text(resp)
        auth.verdict = "ok" if resp.status_code == 200 else "error"
        if resp.status_code in (401, 403):
            return None
        return resp

    def _check_models(self, report: ProbeReport, resp: requests.Response) -> None:
        models = report.ask(
            "models",
            "which image models may the key use?",
            f"the default model {next(iter(MODELS))} among those listed (the list is free)",
        )
        if resp.status_code == 200:
            try:
                data = resp.json().get("data")
            except ValueError:
                data = None
            items = data if isinstance(data, list) else []
            self.listed = [str(i.get("id") if isinstance(i, Mapping) else i) for i in items]
            ours = [m for m in MODELS if m in self.listed]
            missing = [m for m in MODELS if m not in self.listed]
            extra = sorted(set(self.listed) - set(MODELS))
            models.observed = (
                f"{len(self.listed)} listed; registry models usable: {', '.join(ours) or 'none'}"
                f"; not listed: {', '.join(missing) or 'none'}"
                + (
                    f"; not in the registry: {', '.join(extra[:12])}" + (" …" if len(extra) > 12 else "")
                    if extra
                    else ""
                )
            )
            models.verdict = "ok" if next(iter(MODELS)) in self.listed else "differs"
        else:
            models.observed, models.verdict = f"HTTP {resp.status_code}; the list is not available", "note"

    def _check_user_agent(self, report: ProbeReport, resp: requests.Response) -> None:
        agent = report.ask(
            "user_agent",
            "does this client's User-Agent pass the edge?",
            f"{self.gateway.http.headers['User-Agent']!r} is answered 200 (a field client fixed a 403 by sending one)",
        )
        bare = self.gateway.raw("GET", "/v1/models", headers={"User-Agent": f"python-requests/{requests.__version__}"})
        agent.observed = f"ours: HTTP {resp.status_code}; a library default: HTTP {bare.status_code}" + (
            " (HTML: the edge refused it)" if "html" in bare.headers.get("Content-Type", "") else ""
        )
        agent.verdict = "ok" if resp.status_code == 200 else "differs"

    def _check_error_shape(self, report: ProbeReport) -> None:
        envelope = report.ask(
            "error_shape",
            "what does an error look like (an unknown task)?",
            '404 {"error": {"code", "message", "type"}}',
        )
        _judge_answer(envelope, self.gateway.raw("GET", f"{_SUBMIT}/probe-{uuid.uuid4().hex[:12]}"), (404,), shape=True)

    def _check_unknown_model(self, report: ProbeReport) -> None:
        unknown = report.ask(
            "unknown_model",
            "what does a submit for a model nobody serves return? (refused, so free)",
            "docs: 400 invalid_request; New API: 503 model_not_found — either way no task and no charge",
        )
        refused = self.gateway.submit({"model": "gemimg-probe-no-such-model", "prompt": "a fox", "size": "1:1", "n": 1})
        _judge_answer(unknown, refused, (400, 404, 503))
        if refused.status_code == 200:
            unknown.observed += "; a task was made for a model name nobody serves"

    def _check_upload(self, report: ProbeReport) -> None:
        upload = report.ask(
            "upload",
            "does a reference upload work, and does its URL serve without the key?",
            "POST /v1/uploads/images answers a URL that serves the image (how long it lives is not documented)",
        )
        try:
            self.uploaded = self.gateway.client.upload_image(
                _reference_png(), filename="probe-ref.png"
            )  # uploads are free
        except GemimgError as exc:
            upload.observed, upload.verdict = f"refused: {exc}", "differs"
        else:
            served = self.gateway.http.get(self.uploaded, timeout=(10.0, 30.0))
            lives = ", ".join(f"{h}: {served.headers[h]}" for h in ("Cache-Control", "Expires") if h in served.headers)
            upload.observed = f"a URL; fetched without the key: HTTP {served.status_code}" + (
                f" ({lives})" if lives else ""
            )
            upload.verdict = "ok" if served.status_code == 200 else "differs"

    def paid_checks(self, report: ProbeReport, budget: _Budget) -> None:
        cheap = _cheapest(self.listed)
        if cheap is None:
            report.ask(
                "paid", "paid checks", "a registry model with a published price is listed"
            ).observed = "none listed"
            return
        spec = MODELS[cheap]
        base = GenerationParams.create(_PROMPT, model=cheap)
        cbid = f"probe-{uuid.uuid4().hex[:16]}"
        life = report.ask(
            "status_words",
            "which status words and fields does a real task go through?",
            "queued → in_progress → completed (New API: pending/NOT_START/QUEUED/IN_PROGRESS/SUCCESS), all known words",
        )
        lookup = report.ask(
            "lookup_by_business_id",
            "does look-up by client_business_id work right after submit?",
            "GET /v1/images/generations/{client_business_id} finds the task at once",
        )
        billing = report.ask(
            "billing",
            "does a successful task carry billing?",
            'docs: billing {"status": "settled", "cost_usd"}; field audit: absent on successes',
        )
        where = report.ask(
            "result_url", "where is the result URL?", "result.data[0].url (a top-level url may sit beside it)"
        )
        size = report.ask(
            "image_size", "is the image the requested size?", f"{_wh(pixel_size(base.size))} at {base.size} 1K"
        )
        duplicate = report.ask(
            "duplicate_business_id",
            "what does a second submit with the same client_business_id do?",
            "documented: nothing (the id is stored and finds the task); New API makes a new task (it replays "
            "only on an Idempotency-Key header); the client never relies on it (it looks the id up before any re-send)",
        )
        if not budget.fits(spec):
            for check in (life, lookup, billing, where, size, duplicate):
                check.observed = f"--spend {format_usd(budget.limit, places=2)} does not cover one {cheap} request"
            return
        first = self.gateway.submit(base.request_body(client_business_id=cbid))
        if first.status_code != 200:
            life.observed, life.verdict = f"submit {_refusal(first)}", "error"
            return
        life.paid_usd = budget.pay(spec)
        submitted = first.json()
        task = parse_task(submitted)
        found = self.gateway.raw("GET", f"{_SUBMIT}/{cbid}")
        lookup.observed = f"HTTP {found.status_code}" + (
            f", the same task ({parse_task(found.json()).id})"
            if found.status_code == 200 and parse_task(found.json()).id == task.id
            else _error_text(found)
        )
        lookup.verdict = "ok" if found.status_code == 200 and parse_task(found.json()).id == task.id else "differs"
        self._ask_duplicate(duplicate, budget, spec, base, cbid, task.id)
        self._ask_idempotency_key(report, budget, spec, base)

        # the rest is submitted before waiting, so the tasks run side by side
        extra = self._submit_extras(report, budget, cheap)
        seen = [submitted, *self.gateway.follow(task.id)]
        first_image = self._judge_first_task(seen, life, billing, where, size, base)
        self._finish_extras(extra, first_image)
        # the model world (#23): each control on a cheap model that documents it, then the preview ids
        ask_controls(self.gateway, report, budget, self.listed)
        ask_preview_answers(self.gateway, report, budget)

    def _ask_duplicate(
        self, duplicate: Check, budget: _Budget, spec: ModelSpec, base: GenerationParams, cbid: str, task_id: str
    ) -> None:
        """Submit the first request again, with the same ``client_business_id`` (while --spend allows)."""
        if budget.fits(spec):
            again = self.gateway.submit(base.request_body(client_business_id=cbid))
            if again.status_code == 200:
                second = parse_task(again.json())
                if second.id == task_id:
                    duplicate.observed, duplicate.verdict = "answered with the first task (same id)", "ok"
                else:
                    duplicate.paid_usd = budget.pay(spec)
                    duplicate.observed = f"accepted as a new task ({second.id}): it is paid for again"
                    duplicate.verdict = "note"  # what New API does; 'pay once' rests on the look-up, not on this
            else:
                duplicate.observed, duplicate.verdict = _refusal(again), "ok"
        else:
            duplicate.observed = "not asked: over --spend"

    def _ask_idempotency_key(
        self, report: ProbeReport, budget: _Budget, spec: ModelSpec, base: GenerationParams
    ) -> None:
        """Submit one request twice with the same ``Idempotency-Key`` (and no business id, so only the header can
        join them): the same task back means the gateway replays it, as New API does (§14)."""
        check = report.ask(
            "idempotency_key",
            "does a second submit with the same Idempotency-Key get the first task back?",
            "the same task id (New API replays it, Idempotency-Replayed: true); otherwise only the look-up by "
            "client_business_id keeps 'pay once'",
        )
        if not budget.fits(spec, spec):  # the second one is paid too where the header is ignored
            check.observed = "not asked: over --spend"
            return
        key = {"Idempotency-Key": f"probe-idem-{uuid.uuid4().hex[:16]}"}
        first = self.gateway.raw("POST", _SUBMIT, json=base.request_body(), headers=key)
        if first.status_code != 200:
            check.observed, check.verdict = f"submit {_refusal(first)}", "error"
            return
        check.paid_usd = budget.pay(spec)
        again = self.gateway.raw("POST", _SUBMIT, json=base.request_body(), headers=key)
        if not again.ok:
            check.observed, check.verdict = f"the repeat was {_refusal(again)}", "note"
        elif parse_task(again.json()).id == parse_task(first.json()).id:
            replayed = again.headers.get("Idempotency-Replayed")
            check.observed = "the first task came back" + (f" (Idempotency-Replayed: {replayed})" if replayed else "")
            check.verdict = "ok"
        else:
            check.paid_usd += budget.pay(spec)
            check.observed = (
                f"accepted as a new task ({parse_task(again.json()).id}): the header is ignored, paid twice"
            )
            check.verdict = "differs"

    def _judge_first_task(
        self,
        seen: list[dict[str, Any]],
        life: Check,
        billing: Check,
        where: Check,
        size: Check,
        base: GenerationParams,
    ) -> bytes | None:
        """Fill the checks answered by the first task's answers; its image when it completed."""
        words = _dedupe(str(b.get("status")) for b in seen)
        unknown = [w for w in words if w.lower() not in STATUS_WORDS]
        fields = sorted({k for b in seen for k in b})
        progress = _dedupe(
            type(b.get("progress")).__name__ + (":%" if str(b.get("progress", "")).endswith("%") else "") for b in seen
        )
        life.observed = f"{' → '.join(words)}; fields seen: {', '.join(fields)}; progress as {', '.join(progress)}"
        final = parse_task(seen[-1])
        life.verdict = "differs" if unknown or not final.is_terminal else "ok"
        if unknown:
            life.observed += f"; words this client does not know: {', '.join(unknown)}"
        if not final.is_terminal:
            life.observed += f"; still not finished after {self.gateway.poll_timeout:g}s"
        last = seen[-1]
        billing.observed = (
            f"{json.dumps(last['billing'])}" if isinstance(last.get("billing"), Mapping) else "no billing object"
        ) + f" (final status {last.get('status')!r})"
        billing.verdict = "note"
        places = _url_places(last)
        where.observed = ", ".join(places) if places else "no URL anywhere"
        where.verdict = (
            "ok" if "result.data[0].url" in places else "differs" if final.status == "completed" else "skipped"
        )
        first_image: bytes | None = None
        if final.status == "completed":
            got, first_image = self.gateway.download_size(last)
            size.observed = _wh(got) if got else "no URL"
            size.verdict = "ok" if got == pixel_size(base.size) else "differs"
        else:
            size.observed = f"task ended {final.raw_status!r}: {final.error_message or 'no reason'}"
        return first_image

    def _submit_extras(self, report: ProbeReport, budget: _Budget, cheap: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        objects = report.ask(
            "image_url_objects",
            'are image_urls objects ([{"url": ...}]) accepted?',
            "accepted on normal/VIP routes (their pages show objects); strings always work",
        )
        limit = report.ask(
            "prompt_limit",
            "is a 1,001-character prompt refused on gemini-2.5-flash-image-preview?",
            "400 before a task is made (its page caps prompts at 1,000 characters)",
        )
        resolution = report.ask(
            "resolution",
            "does metadata.resolution change the pixel size?",
            "2K at 1:1 gives 2048×2048 (1K: 1024×1024)",
        )
        seed = report.ask(
            "seed",
            "is metadata.seed accepted, and does it narrow the variation of repeats?",
            "undocumented: accepted and ignored, or accepted and repeats look closer (Gemini has generationConfig.seed)",
        )
        out["checks"] = (objects, limit, resolution, seed)
        self._ask_image_url_objects(objects, budget)
        self._ask_prompt_limit(limit, budget)
        self._ask_resolution(resolution, budget, out)
        self._ask_seed(seed, budget, cheap, out)
        return out

    def _ask_image_url_objects(self, objects: Check, budget: _Budget) -> None:
        takes_refs = [m for m in _by_price(self.listed) if MODELS[m].max_refs > 0]
        if takes_refs and budget.fits(MODELS[takes_refs[0]]):
            model = takes_refs[0]
            ref = self.uploaded or self.gateway.client.upload_image(_reference_png(), filename="probe-ref.png")
            body = GenerationParams.create(_PROMPT, model=model).request_body()
            body["image_urls"] = [{"url": ref}]
            resp = self.gateway.submit(body)
            if resp.status_code == 200:
                objects.paid_usd = budget.pay(MODELS[model])
                objects.observed, objects.verdict = f"accepted on {model} (HTTP 200)", "ok"
            else:
                objects.observed, objects.verdict = _refusal(resp, on=model), "note"
        else:
            objects.observed = "not asked: no listed model within --spend"

    def _ask_prompt_limit(self, limit: Check, budget: _Budget) -> None:
        preview = MODELS["gemini-2.5-flash-image-preview"]
        if preview.id in self.listed and budget.fits(preview):
            body = {"model": preview.id, "prompt": ("A fox. " * 200)[:1000] + "!", "size": "1:1", "n": 1}
            resp = self.gateway.submit(body)
            if resp.status_code == 200:
                limit.paid_usd = budget.pay(preview)
                limit.observed, limit.verdict = "accepted: a task was made (and paid for)", "differs"
            else:
                limit.observed = _refusal(resp)
                limit.verdict = "ok" if resp.status_code in (400, 413, 422) else "note"
        else:
            limit.observed = "not asked: the model is not listed, or over --spend"

    def _ask_resolution(self, resolution: Check, budget: _Budget, out: dict[str, Any]) -> None:
        two_k = [m for m in _by_price(self.listed) if "2K" in MODELS[m].resolutions and MODELS[m].sends_resolution]
        if two_k and budget.fits(MODELS[two_k[0]]):
            model = two_k[0]
            resp = self.gateway.submit(GenerationParams.create(_PROMPT, model=model, resolution="2K").request_body())
            if resp.status_code == 200:
                resolution.paid_usd = budget.pay(MODELS[model])
                out["resolution"] = (model, parse_task(resp.json()).id)
            else:
                resolution.observed, resolution.verdict = _refusal(resp, on=model), "note"
        else:
            resolution.observed = "not asked: no listed 2K model within --spend"

    def _ask_seed(self, seed: Check, budget: _Budget, cheap: str, out: dict[str, Any]) -> None:
        spec = MODELS[cheap]
        if budget.fits(spec, spec, spec):
            ids: list[str | None] = []
            for with_seed in (True, True, False):
                body = GenerationParams.create(_PROMPT, model=cheap).request_body()
                if with_seed:
                    body.setdefault("metadata", {})["seed"] = _SEED
                resp = self.gateway.submit(body)
                if resp.status_code != 200:
                    seed.observed = _refusal(resp)
                    seed.verdict = "note"
                    break
                seed.paid_usd += budget.pay(spec)
                ids.append(parse_task(resp.json()).id)
            else:
                out["seed"] = ids
        else:
            seed.observed = "not asked: three more requests would pass --spend"

    def _finish_extras(self, extra: dict[str, Any], unseeded_image: bytes | None) -> None:
        _objects, _limit, resolution, seed = extra["checks"]
        if "resolution" in extra:
            model, task_id = extra["resolution"]
            last = self.gateway.follow(task_id)
            final = parse_task(last[-1]) if last else None
            if final is not None and final.status == "completed":
                got, _ = self.gateway.download_size(last[-1])
                want = pixel_size("1:1", "2K")
                resolution.observed = f"{_wh(got) if got else 'no URL'} on {model}"
                resolution.verdict = "ok" if got == want else "differs"
            else:
                resolution.observed = f"the task did not complete ({final.raw_status if final else 'no answer'})"
                resolution.verdict = "error"
        if "seed" in extra:
            images: list[bytes | None] = []
            for task_id in extra["seed"]:
                last = self.gateway.follow(task_id)
                done = bool(last) and parse_task(last[-1]).status == "completed"
                images.append(self.gateway.download_size(last[-1])[1] if done else None)
            a, b, c = images
            if a is None or b is None or c is None:
                seed.observed, seed.verdict = "accepted, but not every task completed", "note"
                return
            seeded = _difference(a, b)
            free = _difference(c, unseeded_image) if unseeded_image is not None else _difference(a, c)
            seed.observed = (
                f"accepted; mean pixel difference of two seeded repeats {seeded:.1f}, of two unseeded {free:.1f}"
            )
            seed.verdict = "ok" if seeded < free / 2 else "note"
            if seed.verdict == "note":
                seed.observed += " (the seed does not seem to narrow the variation)"


def _judge_answer(check: Check, resp: requests.Response, expected: Sequence[int], *, shape: bool = False) -> None:
    """Observed: the HTTP status and the error it carries; the verdict: ok when the status is one expected."""
    check.observed = f"HTTP {resp.status_code}" + _error_text(resp, shape=shape)
    check.verdict = "ok" if resp.status_code in expected else "differs"


def _refusal(resp: requests.Response, *, on: str = "") -> str:
    """``refused on MODEL: HTTP 400 [code] message``: what a refused request observed."""
    return f"refused{f' on {on}' if on else ''}: HTTP {resp.status_code}" + _error_text(resp)


def _error_text(resp: requests.Response, *, shape: bool = False) -> str:
    try:
        body = resp.json()
    except ValueError:
        ctype = resp.headers.get("Content-Type", "")
        return f" ({'an HTML page' if 'html' in ctype else ctype or 'no body'})" if resp.status_code >= 400 else ""
    err = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(err, Mapping):
        if shape:
            return f" error: {json.dumps({k: err[k] for k in sorted(err)}, ensure_ascii=False)[:200]}"
        return f" [{err.get('code')}] {str(err.get('message') or '')[:160]}"
    if resp.status_code >= 400 and isinstance(body, Mapping):
        return f" {json.dumps(body, ensure_ascii=False)[:200]}"
    return ""


def _dedupe(items: Iterator[str] | Sequence[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return out


def _url_places(body: Mapping[str, Any]) -> list[str]:
    places = []
    found = body.get("result")
    result: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    for name, value in (
        ("result.data[0].url", _first(result.get("data"))),
        ("url", body.get("url")),
        ("result.url", result.get("url")),
        ("images[0].url", _first(body.get("images"))),
        ("data[0].url", _first(body.get("data"))),
    ):
        if isinstance(value, str) and value:
            places.append(name)
    return places


def _first(items: object) -> object:
    if isinstance(items, list) and items:
        return items[0].get("url") if isinstance(items[0], Mapping) else items[0]
    return None


def _by_price(listed: Sequence[str]) -> list[str]:
    usable = [m for m in MODELS if m in listed]
    return sorted(usable, key=lambda m: (_Budget.price(MODELS[m]), list(MODELS).index(m)))


def _cheapest(listed: Sequence[str]) -> str | None:
    priced = [m for m in _by_price(listed) if MODELS[m].price_usd is not None]
    return priced[0] if priced else None


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _reference_png() -> bytes:
    return png_bytes(Image.new("RGB", (64, 64), (200, 60, 30)))


def _difference(a: bytes, b: bytes) -> float:
    """Mean absolute pixel difference (0–255) of two images, compared at 64×64 in grey."""
    with Image.open(io.BytesIO(a)) as ia, Image.open(io.BytesIO(b)) as ib:
        ga = ia.convert("L").resize((64, 64))
        gb = ib.convert("L").resize((64, 64))
    return float(ImageStat.Stat(ImageChops.difference(ga, gb)).mean[0])
