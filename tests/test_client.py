"""The HTTP client: response parsing and the retry policy, as small `responses` tables."""

from __future__ import annotations

import email.utils
import io
import time

import pytest
import requests
import responses
from PIL import Image

from gemimg_jupyter.domain.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ContentBlockedError,
    DuplicateRequestError,
    InsufficientQuotaError,
    InvalidImageError,
    ModelUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskExpiredError,
)
from gemimg_jupyter.domain.models import GenerationParams
from gemimg_jupyter.domain.settings import RetryPolicy, Secret
from gemimg_jupyter.gateway.client import ToAPIsClient, parse_retry_after, parse_task

from .support import FAKE_KEY

BASE = "https://gw.test"
SUBMIT = f"{BASE}/v1/images/generations"
FAST = RetryPolicy(max_tries=4, base=0.01, cap=0.05, jitter=0.0, max_retry_after=3.0)


def make_client(**kw: object) -> tuple[ToAPIsClient, list[tuple[str, float]]]:
    waits: list[tuple[str, float]] = []
    client = ToAPIsClient(
        BASE,
        Secret(FAKE_KEY),
        retry=FAST,
        on_retry=lambda what, wait, exc: waits.append((what, wait)),
        **kw,  # type: ignore[arg-type]
    )
    return client, waits


def png_bytes(w: int = 64, h: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (9, 99, 199)).save(buf, format="PNG")
    return buf.getvalue()


QUEUED = {"id": "task_1", "object": "generation.task", "status": "queued", "progress": 0, "created_at": 1}


@pytest.mark.parametrize(
    ("body", "status", "url", "error"),
    [
        (QUEUED, "queued", None, None),
        ({"task_id": "t2", "status": "submitted"}, "queued", None, None),
        (
            {"id": "t3", "status": "completed", "result": {"type": "image", "data": [{"url": "u1"}]}},
            "completed",
            "u1",
            None,
        ),
        ({"id": "t4", "status": "completed", "url": "u2"}, "completed", "u2", None),
        (
            {"id": "t5", "status": "failed", "error": {"code": "generation_failed", "message": "upstream 422"}},
            "failed",
            None,
            "upstream 422",
        ),
        ({"id": "t6", "status": "failed", "fail_reason": "legacy reason"}, "failed", None, "legacy reason"),
    ],
)
def test_parse_task_shapes(body: dict, status: str, url: str | None, error: str | None) -> None:
    task = parse_task(body)
    assert (task.status, task.url, task.error_message) == (status, url, error)


def test_parse_billing() -> None:
    done = parse_task({"id": "t", "status": "completed", "billing": {"status": "settled", "cost_usd": "0.0488"}})
    assert done.cost_usd == pytest.approx(0.0488)
    pending = parse_task({"id": "t", "status": "in_progress", "billing": {"status": "pending"}})
    assert pending.cost_usd is None


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    now = time.time()
    when = email.utils.formatdate(now + 5, usegmt=True)
    assert 3.5 <= (parse_retry_after(when, now=now) or 0) <= 5.5
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@responses.activate
def test_429_waits_per_retry_after_then_succeeds() -> None:
    responses.add(
        responses.POST,
        SUBMIT,
        status=429,
        json={"error": {"code": "rate_limit_exceeded", "message": "slow down"}},
        headers={"Retry-After": "1"},
    )
    responses.add(responses.POST, SUBMIT, json=QUEUED)
    client, waits = make_client()
    task = client.submit(GenerationParams.create("fox"), client_business_id="cb-1")
    assert task.id == "task_1"
    assert len(responses.calls) == 2
    assert waits and waits[0][1] >= 1.0  # the server's Retry-After, not the 0.01 s schedule


@pytest.mark.parametrize(
    ("status", "body", "cls", "needle"),
    [
        (
            400,
            {
                "error": {
                    "code": "invalid_request",
                    "message": "The 'prompt' field is required.",
                    "type": "invalid_request_error",
                }
            },
            BadRequestError,
            "prompt",
        ),
        (
            401,
            {"error": {"code": 401, "message": "Authentication failed"}},
            AuthenticationError,
            "check TOAPIS_API_KEY or use Settings(api_key=...)",
        ),
        (
            402,
            {"error": {"code": 402, "message": "Insufficient account balance, please top up"}},
            InsufficientQuotaError,
            "top up",
        ),
        (
            404,
            {"error": {"code": 404, "message": "Task not found", "type": "not_found_error"}},
            NotFoundError,
            "Task not found",
        ),
        (422, {"error": {"code": "content_policy_violation", "message": "policy"}}, BadRequestError, "policy"),
    ],
)
@responses.activate
def test_client_errors_are_never_retried(status: int, body: dict, cls: type, needle: str) -> None:
    responses.add(responses.POST, SUBMIT, status=status, json=body)
    client, _ = make_client()
    with pytest.raises(cls) as info:
        client.submit(GenerationParams.create("fox"), client_business_id="cb-1")
    assert needle in str(info.value)
    assert len(responses.calls) == 1  # exactly one request
    assert FAKE_KEY not in str(info.value)


@responses.activate
def test_html_504_is_retried_then_reported() -> None:
    html = "<html><head><title>504 Gateway Time-out</title></head><body>nginx</body></html>"
    for _ in range(4):
        responses.add(responses.GET, f"{SUBMIT}/t1", status=504, body=html, content_type="text/html")
    client, waits = make_client()
    with pytest.raises(ServerError, match=r"HTML page \(504 Gateway Time-out\)"):
        client.status("t1")
    assert len(responses.calls) == 4 and len(waits) == 3


@responses.activate
def test_429_without_retry_after_uses_backoff() -> None:
    responses.add(responses.GET, f"{SUBMIT}/t1", status=429, json={"error": {"code": 429, "message": "Too many"}})
    responses.add(responses.GET, f"{SUBMIT}/t1", json=QUEUED)
    client, waits = make_client()
    assert client.status("t1").status == "queued"
    assert waits[0][1] < 0.5


@responses.activate
def test_lost_submit_is_looked_up_not_resent() -> None:
    responses.add(responses.POST, SUBMIT, body=requests.ConnectionError("reset by peer"))
    responses.add(responses.GET, f"{SUBMIT}/cb-lost", json={**QUEUED, "client_business_id": "cb-lost"})
    client, _ = make_client()
    task = client.submit(GenerationParams.create("fox"), client_business_id="cb-lost")
    assert task.id == "task_1"
    methods = [c.request.method for c in responses.calls]
    assert methods == ["POST", "GET"]  # one POST, then a look-up; no second POST


@responses.activate
def test_lost_submit_that_never_arrived_is_resent_once() -> None:
    responses.add(responses.POST, SUBMIT, body=requests.ConnectionError("refused"))
    responses.add(
        responses.GET, f"{SUBMIT}/cb-x", status=404, json={"error": {"code": 404, "message": "Task not found"}}
    )
    responses.add(responses.POST, SUBMIT, json=QUEUED)
    client, _ = make_client()
    assert client.submit(GenerationParams.create("fox"), client_business_id="cb-x").id == "task_1"
    assert [c.request.method for c in responses.calls] == ["POST", "GET", "POST"]


@responses.activate
def test_connection_errors_give_up_with_a_clear_message() -> None:
    for _ in range(4):
        responses.add(responses.GET, f"{SUBMIT}/t1", body=requests.ConnectionError("down"))
    client, _ = make_client()
    with pytest.raises(APIConnectionError, match="could not reach the gateway at https://gw.test"):
        client.status("t1")


@responses.activate
def test_invalid_apitype_names_the_base_url() -> None:
    responses.add(
        responses.POST,
        SUBMIT,
        status=400,
        json={"error": {"message": "invalid apitype: image", "type": "new_api_error"}},
    )
    client, _ = make_client()
    with pytest.raises(BadRequestError, match="wrong endpoint.*https://gw.test"):
        client.submit(GenerationParams.create("fox"), client_business_id="cb")


@responses.activate
def test_upload_envelope() -> None:
    responses.add(
        responses.POST,
        f"{BASE}/v1/uploads/images",
        json={"success": True, "message": "", "data": {"id": "u", "url": "https://files.test/u.png"}},
    )
    responses.add(
        responses.POST,
        f"{BASE}/v1/uploads/images",
        status=400,
        json={"success": False, "message": "Unsupported image type. Allowed: JPEG, PNG, WebP, GIF"},
    )
    client, _ = make_client()
    assert client.upload_image(png_bytes()) == "https://files.test/u.png"
    with pytest.raises(BadRequestError, match="Unsupported image type"):
        client.upload_image(b"GIF89a")


@responses.activate
def test_download_never_sends_the_key_to_another_host() -> None:
    responses.add(responses.GET, "https://files.test/a.png", body=png_bytes(), content_type="image/png")
    responses.add(responses.GET, f"{BASE}/generated/b.png", status=302, headers={"Location": "https://cdn.test/b.png"})
    responses.add(responses.GET, "https://cdn.test/b.png", body=png_bytes(), content_type="image/png")
    client, _ = make_client()
    client.download("https://files.test/a.png")
    client.download(f"{BASE}/generated/b.png")
    sent = {c.request.url: c.request.headers.get("Authorization") for c in responses.calls}
    assert sent["https://files.test/a.png"] is None
    assert sent[f"{BASE}/generated/b.png"] == f"Bearer {FAKE_KEY}"
    assert sent["https://cdn.test/b.png"] is None


@responses.activate
def test_download_refusals() -> None:
    client, _ = make_client(download_max_bytes=1000)
    with pytest.raises(InvalidImageError, match="only http"):
        client.download("file:///etc/passwd")
    responses.add(responses.GET, "https://files.test/big.png", body=b"x" * 5000)
    with pytest.raises(InvalidImageError, match="cap"):
        client.download("https://files.test/big.png")
    responses.add(responses.GET, "https://files.test/gone.png", status=404)
    with pytest.raises(TaskExpiredError, match="expired"):
        client.download("https://files.test/gone.png")
    for _ in range(3):
        responses.add(responses.GET, "https://files.test/bad.png", body=png_bytes()[:40])
    big_client, _ = make_client()
    with pytest.raises(InvalidImageError, match="after 3 downloads"):
        big_client.download("https://files.test/bad.png")


@responses.activate
def test_rate_limit_penalizes_the_shared_gate() -> None:
    class Gate:
        def __init__(self) -> None:
            self.penalties: list[tuple[str, float]] = []

        def acquire(self, category: str) -> None:
            return None

        def penalize(self, category: str, seconds: float) -> None:
            self.penalties.append((category, seconds))

    responses.add(
        responses.GET, f"{SUBMIT}/t1", status=429, json={"error": {"code": 429}}, headers={"Retry-After": "0.2"}
    )
    responses.add(responses.GET, f"{SUBMIT}/t1", json=QUEUED)
    gate = Gate()
    client, _ = make_client(gate=gate)
    client.status("t1")
    assert gate.penalties == [("query", 0.2)]
    assert isinstance(RateLimitError("x"), RateLimitError)


# ------------------------------------------------------------------ dialects of the real gateway (issue 13)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        *[(w, "queued") for w in ("queued", "pending", "PENDING", "not_start", "NOT_START", "submitted", "SUBMITTED")],
        *[(w, "in_progress") for w in ("in_progress", "IN_PROGRESS", "running", "Running")],
        *[(w, "completed") for w in ("completed", "success", "SUCCESS", "succeeded", "Succeeded")],
        *[(w, "failed") for w in ("failed", "FAILURE", "failure", "error", "cancelled", "canceled", "EXPIRED")],
        ("WAITING_FOR_GODOT", "unknown"),
        ("done?", "unknown"),
    ],
)
def test_every_status_word_maps_case_insensitively(word: str, expected: str) -> None:
    task = parse_task({"id": "t", "status": word})
    assert task.status == expected
    assert task.raw_status == word  # the gateway's own word is kept for messages


def test_unknown_status_is_not_in_progress() -> None:
    task = parse_task({"id": "t", "status": "MYSTERY", "progress": "50%"})
    assert (task.status, task.raw_status, task.is_terminal) == ("unknown", "MYSTERY", False)


@pytest.mark.parametrize(
    ("progress", "status", "expected"),
    [("40%", "IN_PROGRESS", 40), (" 7 % ", "running", 7), ("55", "in_progress", 55), (61.8, "in_progress", 61),
     ("100%", "SUCCESS", 100), (None, "SUCCESS", 100), ("0%", "SUCCESS", 100), ("n/a", "queued", 0),
     (250, "in_progress", 100), (True, "queued", 0)],
)  # fmt: skip
def test_progress_as_number_or_percent_string(progress: object, status: str, expected: int) -> None:
    assert parse_task({"id": "t", "status": status, "progress": progress}).progress == expected


@pytest.mark.parametrize(
    "body",
    [
        {"result": {"type": "image", "data": [{"url": "https://x/a.png"}]}},
        {"url": "https://x/a.png"},
        {"result": {"data": []}, "url": "https://x/a.png"},
        {"images": [{"url": "https://x/a.png"}]},
        {"data": [{"url": "https://x/a.png"}]},
        {"data": ["https://x/a.png"]},
        {"result": {"url": "https://x/a.png"}},
        {"result": {"images": [{"url": "https://x/a.png"}]}},
    ],
    ids=["result.data", "top-level", "empty-result-then-top", "images", "data", "data-strings", "result.url",
         "result.images"],
)  # fmt: skip
def test_result_url_is_found_in_every_location(body: dict) -> None:
    task = parse_task({"id": "t", "status": "SUCCESS", **body})
    assert (task.status, task.url) == ("completed", "https://x/a.png")


def test_a_task_wrapped_in_data_is_unwrapped() -> None:
    task = parse_task({"code": "success", "data": {"task_id": "tsk_img_1", "status": "IN_PROGRESS", "progress": "30%"}})
    assert (task.id, task.status, task.progress) == ("tsk_img_1", "in_progress", 30)


def test_newapi_failure_reads_fail_reason_and_refund() -> None:
    task = parse_task(
        {
            "task_id": "tsk_img_2",
            "status": "FAILURE",
            "progress": "100%",
            "fail_reason": "upstream returned status 500",
            "error": None,
            "billing": {"status": "refunded", "credits": "0", "cost_usd": "0"},
        }
    )
    assert (task.status, task.error_message, task.billing_status, task.cost_usd, task.blocked) == (
        "failed",
        "upstream returned status 500",
        "refunded",
        0.0,
        False,
    )


def test_billing_in_credits_only_is_converted_at_200_per_dollar() -> None:
    task = parse_task({"id": "t", "status": "completed", "billing": {"status": "settled", "credits": "9.76"}})
    assert task.cost_usd == pytest.approx(0.0488)
    assert parse_task({"id": "t", "status": "completed"}).cost_usd is None  # no billing: the engine keeps the price
    assert parse_task({"id": "t", "status": "completed", "billing": {"cost_usd": "NaN"}}).cost_usd is None


@pytest.mark.parametrize(
    ("error", "blocked"),
    [
        ({"error": {"code": "IMAGE_SAFETY", "message": "blocked"}}, True),
        ({"error": {"code": "generation_failed", "message": "finishReason: PROHIBITED_CONTENT"}}, True),
        ({"fail_reason": "Response blocked: SAFETY"}, True),
        ({"error": {"code": "generation_failed", "message": "request violates our content policy"}}, True),
        ({"error": "content_policy_violation"}, True),
        ({"error": {"code": "generation_failed", "message": "upstream returned status 422: content refused"}}, True),
        ({"error": {"code": "generation_failed", "message": "call upstream API failed: upstream returned status 422"}},
         False),
        ({"error": {"code": "generation_failed", "message": "upstream timeout"}}, False),
    ],
)  # fmt: skip
def test_safety_and_policy_failures_are_blocked(error: dict, blocked: bool) -> None:
    task = parse_task({"id": "t", "status": "failed", **error})
    assert task.blocked is blocked
    assert task.error_message or task.error_code


def test_a_running_task_is_never_blocked() -> None:
    assert not parse_task({"id": "t", "status": "running", "fail_reason": "SAFETY check pending"}).blocked


@pytest.mark.parametrize(
    ("status", "body", "cls", "needle", "retried"),
    [
        (403, {"error": {"code": "insufficient_user_quota", "message": "user quota is not enough", "type": "new_api_error"}},
         InsufficientQuotaError, "insufficient balance (403)", False),
        (503, {"error": {"code": "model_not_found", "message": "No available channel for model x under group default"}},
         ModelUnavailableError, "model not available (503)", False),
        (403, {"error": {"code": "access_denied", "message": "this token may not use the model"}},
         PermissionDeniedError, "python -m gemimg_jupyter.probe", False),
        (403, "<html><head><title>Attention Required!</title></head></html>", PermissionDeniedError, "edge refused",
         False),
        (403, {"error": {"message": "Invalid token", "type": "authentication_error"}}, AuthenticationError,
         "TOAPIS_API_KEY", False),
        (400, {"error": {"code": "sensitive_words_detected", "message": "sensitive words"}}, ContentBlockedError,
         "nothing was charged", False),
        (422, {"error": {"message": "the prompt was refused by the content filter"}}, ContentBlockedError,
         "blocked by content policy", False),
        (503, {"error": {"code": "rate_limit_unavailable", "message": "limiter down"}}, ServerError, "limiter", True),
        (409, {"error": {"message": "a task with this id exists"}}, DuplicateRequestError, "refused as a duplicate",
         False),
        (400, {"error": {"code": "invalid_request", "message": "client_business_id cb-1 is a duplicate"}},
         DuplicateRequestError, "cb-1", False),
    ],
)  # fmt: skip
@responses.activate
def test_errors_are_classified_by_code_first(status: int, body: object, cls: type, needle: str, retried: bool) -> None:
    if isinstance(body, str):
        responses.add(responses.POST, SUBMIT, status=status, body=body, content_type="text/html")
    else:
        responses.add(responses.POST, SUBMIT, status=status, json=body)
    if retried:
        responses.add(responses.GET, f"{SUBMIT}/cb-1", status=404, json={"error": {"code": 404}})
        responses.add(responses.POST, SUBMIT, json=QUEUED)
        client, _ = make_client()
        assert client.submit(GenerationParams.create("fox"), client_business_id="cb-1").id == "task_1"
        return
    client, _ = make_client()
    with pytest.raises(cls) as info:
        client.submit(GenerationParams.create("fox"), client_business_id="cb-1")
    assert type(info.value) is cls
    assert needle in str(info.value)
    assert len(responses.calls) == 1  # a verdict: never sent again


@pytest.mark.parametrize(("served", "expected"), [((1024, 1024), (2048, 2048)), ((512, 512), (2048, 2048)),
                                                  ((8, 8), (1024, 1024)), ((2048, 2048), (1024, 1024))])  # fmt: skip
@responses.activate
def test_a_decodable_image_of_another_size_is_kept(served: tuple[int, int], expected: tuple[int, int]) -> None:
    data = png_bytes(*served)
    responses.add(responses.GET, "https://files.test/r.png", body=data, content_type="image/png")
    client, _ = make_client()
    got = client.download("https://files.test/r.png", expected=expected)
    assert got == data and isinstance(got, bytes)
    assert (got.width, got.height, got.expected) == (*served, expected)
    assert got.note is not None and f"{served[0]}×{served[1]}" in got.note and "kept" in got.note
    assert len(responses.calls) == 1  # paid for once, fetched once, never refused


@responses.activate
def test_an_image_of_the_requested_size_has_no_note() -> None:
    responses.add(responses.GET, "https://files.test/r.png", body=png_bytes(64, 48), content_type="image/png")
    client, _ = make_client()
    got = client.download("https://files.test/r.png", expected=(64, 48))
    assert (got.width, got.height, got.note) == (64, 48, None)
    assert client.download("https://files.test/r.png").note is None  # nothing expected: nothing to compare


@responses.activate
def test_a_corrupt_download_is_fetched_again_and_the_good_copy_kept() -> None:
    good = png_bytes(32, 32)
    responses.add(responses.GET, "https://files.test/r.png", body=good[:50])
    responses.add(responses.GET, "https://files.test/r.png", body=good)
    client, _ = make_client()
    assert client.download("https://files.test/r.png", expected=(1024, 1024)) == good
    assert len(responses.calls) == 2


def test_list_models_against_the_simulator(sim: object) -> None:
    from gemimg_jupyter.domain.models import MODELS

    client = ToAPIsClient(sim.base_url, Secret(FAKE_KEY), retry=FAST)  # type: ignore[attr-defined]
    try:
        assert set(client.list_models()) == set(MODELS)
        sim.configure(unserved_models=["gemini-2.5-flash-image-preview"], style="newapi")  # type: ignore[attr-defined]
        assert "gemini-2.5-flash-image-preview" not in client.list_models()
        params = GenerationParams.create("fox", model="gemini-2.5-flash-image-preview")
        with pytest.raises(ModelUnavailableError, match="model not available \\(503\\)"):
            client.submit(params, client_business_id="cb-unserved")
        assert sim.stats()["submits_accepted"] == 0  # type: ignore[attr-defined]
    finally:
        client.close()


@responses.activate
def test_a_task_the_gateway_does_not_know_is_not_found_whatever_the_status() -> None:
    """New API answers an unknown task with a code, not always a 404; the pay-once look-up must read it as absent."""
    responses.add(
        responses.GET,
        f"{SUBMIT}/cb-none",
        status=400,
        json={"code": "task_not_exist", "message": "task_not_exist", "data": None},
    )
    client, _ = make_client()
    assert client.find_by_business_id("cb-none") is None


@responses.activate
def test_download_tries_is_for_http_errors_and_corrupt_bytes_are_fetched_three_times_apart() -> None:
    """``tries=1`` leaves HTTP retries to the caller (the job runner); undecodable bytes still get three fetches."""
    url = "https://files.test/r.png"
    responses.add(responses.GET, url, status=503, json={"error": {"code": "busy", "message": "busy"}})
    client, waits = make_client()
    with pytest.raises(ServerError):
        client.download(url, tries=1)
    assert len(responses.calls) == 1 and waits == []
    responses.replace(responses.GET, url, body=png_bytes()[:40])
    with pytest.raises(InvalidImageError, match="after 3 downloads"):
        client.download(url, tries=1)
    assert len(responses.calls) == 4


@pytest.mark.parametrize("damage", ["truncated", "no IEND", "one byte flipped"])
def test_a_damaged_png_download_is_refused_without_a_full_decode(damage: str) -> None:
    """Downloads are checked by the PNG's own structure (chunks to IEND, CRCs); damaged bytes still raise."""
    import io

    from PIL import Image

    from gemimg_jupyter.domain.errors import InvalidImageError
    from gemimg_jupyter.draw.images import ImageBytes

    buf = io.BytesIO()
    Image.effect_noise((256, 256), 40).convert("RGB").save(buf, "PNG")
    data = buf.getvalue()
    bad = {
        "truncated": data[: len(data) // 2],
        "no IEND": data[:-12],
        "one byte flipped": data[:3000] + bytes([data[3000] ^ 0xFF]) + data[3001:],
    }[damage]
    assert ImageBytes.checked(data).width == 256  # the intact image passes
    with pytest.raises(InvalidImageError, match="not a readable image"):
        ImageBytes.checked(bad)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("damage", [None, "truncated"])
def test_the_download_check_keeps_a_small_copy_from_its_own_decode(fmt: str, damage: str | None) -> None:
    """``checked(..., small=N)`` decodes once for the check and the thumbnail: the copy is at most N pixels, the
    size is the full one as shown (EXIF turned), and damaged bytes still raise (a reduced JPEG decode reads it all)."""
    import io

    from PIL import Image

    from gemimg_jupyter.domain.errors import InvalidImageError
    from gemimg_jupyter.draw.images import ImageBytes

    img = Image.effect_noise((1024, 512), 40).convert("RGB")
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 512 wide, 1024 high
    img.save(buf, fmt, exif=exif.tobytes())
    data = buf.getvalue()
    if damage:
        with pytest.raises(InvalidImageError, match="not a readable image"):
            ImageBytes.checked(data[: len(data) * 2 // 3], small=310)
        return
    out = ImageBytes.checked(data, expected=(512, 1024), small=310)
    assert (out.width, out.height) == (512, 1024) and out.note is None
    assert out.shown is not None
    small, size = out.shown
    assert size == (512, 1024) and small.mode == "RGB"
    assert small.size == (155, 310)  # as shown, long side 310
    assert ImageBytes.checked(data).shown is None  # not asked for: no decode beyond the check
