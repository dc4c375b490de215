"""The simulator over real loopback HTTP: protocol, validation, faults, images, CLI."""

from __future__ import annotations

import email.utils
import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from gemimg_jupyter.domain.errors import InvalidImageError, ValidationError
from gemimg_jupyter.domain.models import MODELS, GenerationParams
from gemimg_jupyter.domain.params import SAMPLING_PARAMS, ParamSpec
from gemimg_jupyter.draw.images import decode_image
from gemimg_jupyter.gateway.client import parse_task
from gemimg_jupyter.plans.plan import parse_axis
from gemimg_jupyter.sim import RenderSpec, SimConfig, SimServer, render_png
from gemimg_jupyter.sim.render import palette_for

from .support import wait_for

KEY = "sk-sim-test-4f1d9a77c0de"
OFFICIAL = "gemini-2.5-flash-image-official"
FAST = {"latency": (0.05, 0.2), "queue_delay": (0.01, 0.03), "seed": 1234}
BASE = SimConfig(**FAST).to_dict()


@pytest.fixture(scope="module")
def _server() -> Iterator[SimServer]:
    with SimServer(SimConfig(**FAST)) as srv:
        yield srv


@pytest.fixture
def server(_server: SimServer) -> SimServer:
    """The module's simulator with default fast settings, no tasks and zeroed counts."""
    _server.configure(**BASE)
    _server.reset(tasks=True)
    return _server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {KEY}"
        yield s


def body(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": OFFICIAL, "prompt": "A paper-cut fox in a forest", "size": "1:1", "n": 1}
    payload.update(changes)
    return payload


def submit(server: SimServer, http: requests.Session, **changes: Any) -> requests.Response:
    return http.post(f"{server.base_url}/v1/images/generations", json=body(**changes), timeout=10)


def status(server: SimServer, http: requests.Session, ident: str) -> requests.Response:
    return http.get(f"{server.base_url}/v1/images/generations/{ident}", timeout=10)


def wait_final(server: SimServer, http: requests.Session, ident: str) -> list[dict[str, Any]]:
    """Poll until completed/failed; return every status seen (a deadline on the wait, not a timing assertion)."""
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(status(server, http, ident).json())
        return seen[-1]["status"] in ("completed", "failed")

    wait_for(finished, 30, f"task {ident} to finish")
    return seen


def generate(server: SimServer, http: requests.Session, **changes: Any) -> bytes:
    task = submit(server, http, **changes).json()
    final = wait_final(server, http, task["id"])[-1]
    got = requests.get(final["result"]["data"][0]["url"], timeout=10)
    assert got.status_code == 200
    return got.content


def png(colour: tuple[int, int, int] = (20, 60, 220), size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def upload(server: SimServer, http: requests.Session, data: bytes, name: str = "ref.png") -> requests.Response:
    return http.post(f"{server.base_url}/v1/uploads/images", files={"file": (name, data, "image/png")}, timeout=10)


# -- the happy path -------------------------------------------------------------------------------------------------


def test_submit_poll_download(server: SimServer, http: requests.Session) -> None:
    r = submit(server, http, size="16:9", client_business_id="order-1", metadata={"temperature": 0.8, "topP": 0.95})
    assert r.status_code == 200
    task = r.json()
    assert task["id"].startswith("img_")
    assert task["object"] == "generation.task"
    assert (task["model"], task["status"], task["progress"]) == (OFFICIAL, "queued", 0)
    assert task["client_business_id"] == "order-1"
    assert isinstance(task["created_at"], int)
    assert r.headers["X-RateLimit-Category"] == "async_submit"
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Request-Id"} <= set(r.headers)

    seen = wait_final(server, http, task["id"])
    progress = [s["progress"] for s in seen]
    assert progress == [*sorted(progress[:-1]), 100]
    assert all(s["status"] in ("queued", "in_progress", "completed") for s in seen)
    assert all(10 <= s["progress"] <= 90 for s in seen if s["status"] == "in_progress")
    done = seen[-1]
    assert done["status"] == "completed"
    assert done["expires_at"] - done["completed_at"] == 86400
    assert done["billing"] == {"status": "settled", "credits": "9.76", "cost_usd": "0.0488"}
    assert "url" not in done
    url = done["result"]["data"][0]["url"]
    assert done["result"]["type"] == "image"
    assert url.startswith(f"{server.base_url}/generated/") and url.endswith(".jpg")  # issue #22: JPEG by default

    image = requests.get(url, timeout=10)
    assert image.headers["Content-Type"] == "image/jpeg"
    assert decode_image(image.content).size == (1344, 768)
    stats = server.stats()
    assert stats["submits_accepted"] == 1
    assert stats["tasks"]["completed"] == 1
    assert stats["downloads"] == 1
    assert stats["status_queries"] == len(seen)


@pytest.mark.parametrize(
    ("model", "size", "resolution", "pixels"),
    [
        (OFFICIAL, "16:9", None, (1344, 768)),
        (OFFICIAL, "9:16", None, (768, 1344)),
        (OFFICIAL, "21:9", None, (1536, 672)),
        ("gemini-3.1-flash-image-preview", "4:1", "0.5K", (1024, 256)),
        ("gemini-3-pro-image-preview", "3:2", "2K", (2496, 1664)),
    ],
)
def test_pixel_size_follows_ratio_and_resolution(
    server: SimServer, http: requests.Session, model: str, size: str, resolution: str | None, pixels: tuple[int, int]
) -> None:
    meta = {"resolution": resolution} if resolution else {}
    data = generate(server, http, model=model, size=size, metadata=meta)
    assert Image.open(io.BytesIO(data)).size == pixels


def test_lookup_by_client_business_id(server: SimServer, http: requests.Session) -> None:
    first = submit(server, http, client_business_id="job-top").json()
    second = submit(server, http, metadata={"client_business_id": "job-meta"}).json()
    assert second["client_business_id"] == "job-meta"
    assert status(server, http, "job-top").json()["id"] == first["id"]
    assert status(server, http, "job-meta").json()["id"] == second["id"]
    other = {"Authorization": "Bearer sk-someone-else"}
    assert (
        requests.get(f"{server.base_url}/v1/images/generations/job-top", headers=other, timeout=10).status_code == 404
    )
    assert (
        requests.get(f"{server.base_url}/v1/images/generations/{first['id']}", headers=other, timeout=10).status_code
        == 404
    )


def test_duplicate_business_ids_are_counted_and_latest_wins(server: SimServer, http: requests.Session) -> None:
    submit(server, http, client_business_id="dup")
    latest = submit(server, http, client_business_id="dup").json()
    submit(server, http, client_business_id="single")
    assert status(server, http, "dup").json()["id"] == latest["id"]
    assert server.stats()["duplicate_business_ids"] == 1


@pytest.mark.parametrize("honoured", [True, False])
def test_a_repeated_idempotency_key_replays_the_first_task_unless_switched_off(
    server: SimServer, http: requests.Session, honoured: bool
) -> None:
    server.configure(idempotency=honoured)
    key = {"Idempotency-Key": "idem-1"}
    url = f"{server.base_url}/v1/images/generations"
    first = http.post(url, json=body(client_business_id="idem-1"), headers=key, timeout=10)
    again = http.post(url, json=body(client_business_id="idem-1"), headers=key, timeout=10)
    stats = server.stats()
    assert first.status_code == again.status_code == 200 and stats["idempotency_keys"] == 2
    assert stats["duplicate_business_ids"] == 1  # a re-send shows either way
    if honoured:  # New API's answer: the first task, marked, nothing new paid
        assert again.json()["id"] == first.json()["id"] and again.headers["Idempotency-Replayed"] == "true"
        assert stats["submits_accepted"] == 1 and stats["idempotent_replays"] == 1
    else:
        assert again.json()["id"] != first.json()["id"] and "Idempotency-Replayed" not in again.headers
        assert stats["submits_accepted"] == 2 and stats["idempotent_replays"] == 0


def test_lost_submit_drops_the_answer_hides_the_business_id_and_refuses_the_repeat(
    server: SimServer, http: requests.Session
) -> None:
    server.configure(lost_submit="409")
    with pytest.raises(requests.ConnectionError):
        submit(server, http, client_business_id="lost-1")
    assert status(server, http, "lost-1").status_code == 404  # the look-up by business id finds nothing
    again = submit(server, http, client_business_id="lost-1")
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_request"
    assert "lost-1" in again.json()["error"]["message"]
    server.configure(lost_submit="400")
    refused = submit(server, http, client_business_id="lost-1")
    assert refused.status_code == 400 and "duplicate" in refused.json()["error"]["message"]
    stats = server.stats()
    assert stats["submits_accepted"] == 1 and stats["faults"]["lost_submit"] == 1
    assert stats["faults"]["duplicate_refused"] == 2


def test_status_retry_after_answers_every_status_query_with_a_long_wait(
    server: SimServer, http: requests.Session
) -> None:
    task = submit(server, http).json()["id"]
    server.configure(status_retry_after=3600)
    assert status(server, http, task).headers["Retry-After"] == "3600"
    server.configure(retry_after_http_date=True)
    answer = status(server, http, task)
    assert answer.status_code == 429 and answer.headers["Retry-After"].endswith("GMT")
    assert server.stats()["faults"]["status_retry_after"] == 2


def test_image_url_objects_accepted_unless_strict(server: SimServer, http: requests.Session) -> None:
    refs = [{"url": "https://example.com/a.png"}, "https://example.com/b.png"]
    assert submit(server, http, image_urls=refs).status_code == 200
    server.configure(strict_image_url_objects=True)
    r = submit(server, http, image_urls=refs)
    assert r.status_code == 400 and r.json()["error"]["param"] == "image_urls[0]"
    preview = submit(server, http, model="gemini-2.5-flash-image-preview", image_urls=refs)
    assert preview.status_code == 200


# -- validation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "param", "needle"),
    [
        ({"size": "16x9"}, "size", "16x9"),
        ({"size": "4:1"}, "size", "4:1"),
        ({"n": "1"}, "n", '"1"'),
        ({"n": 2}, "n", "2"),
        ({"image_urls": [f"https://example.com/{i}.png" for i in range(4)]}, "image_urls", "at most 3"),
        ({"image_urls": ["data:image/png;base64,iVBORw0KGgo="]}, "image_urls[0]", "data URI"),
        ({"image_urls": ["ftp://example.com/a.png"]}, "image_urls[0]", "http(s)"),
        ({"model": "gemini-9-ultra-image"}, "model", "gemini-9-ultra-image"),
        ({"prompt": "  "}, "prompt", "prompt"),
        ({"metadata": {"temperature": 2.5}}, "metadata.temperature", "0 to 2"),
        ({"metadata": {"temperature": True}}, "metadata.temperature", "0 to 2"),
        ({"metadata": {"topP": 1.5}}, "metadata.topP", "0 to 1"),
        ({"metadata": {"resolution": "2K"}}, "metadata.resolution", "2K"),
        ({"client_business_id": 7}, "client_business_id", "client_business_id"),
    ],
)
def test_submit_validation_400(
    server: SimServer, http: requests.Session, changes: dict[str, Any], param: str, needle: str
) -> None:
    r = submit(server, http, **changes)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("invalid_request", "invalid_request_error", param)
    assert needle in error["message"]
    stats = server.stats()
    assert (stats["submits_accepted"], stats["submits_rejected"]) == (0, 1)


def _takes(check: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        check(*args, **kwargs)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("param", SAMPLING_PARAMS, ids=lambda p: p.name)
def test_the_client_the_sweep_axes_and_the_simulator_agree_on_a_sampling_bound(
    server: SimServer, http: requests.Session, param: ParamSpec
) -> None:
    """The three checks read one table: each takes both ends and refuses just outside them."""
    assert param.bounds is not None and param.wire is not None and param.axis is not None
    lo, hi = param.bounds
    verdicts = {}
    for value in (lo, hi, lo - 0.01, hi + 0.01):
        verdicts[value] = [
            _takes(GenerationParams.create, "a fox", **{param.name: value}),
            _takes(parse_axis, f"{param.axis}={value}"),
            submit(server, http, metadata={param.wire: value}).status_code == 200,
        ]
    assert verdicts == {lo: [True] * 3, hi: [True] * 3, lo - 0.01: [False] * 3, hi + 0.01: [False] * 3}


def test_missing_prompt_and_non_json_body(server: SimServer, http: requests.Session) -> None:
    r = http.post(f"{server.base_url}/v1/images/generations", json={"model": OFFICIAL}, timeout=10)
    assert r.json()["error"]["message"] == "The 'prompt' field is required."
    r = http.post(f"{server.base_url}/v1/images/generations", data=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_callback_url_without_webhook(server: SimServer, http: requests.Session) -> None:
    r = submit(server, http, callback_url="https://example.com/hook")
    assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_not_configured"


def test_wrong_path_apitype(server: SimServer, http: requests.Session) -> None:
    r = http.post(f"{server.base_url}/v1/chat/completions", json=body(), timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("invalid apitype")
    server.configure(wrong_path_apitype=False)
    assert http.post(f"{server.base_url}/v1/chat/completions", json=body(), timeout=10).status_code == 404


# -- auth, 404 ------------------------------------------------------------------------------------------------------


def test_auth_failures_never_echo_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-9b7e55aa1f2c3d4e"
    with SimServer(SimConfig(**FAST), accepted_keys=[KEY]) as srv:
        url = f"{srv.base_url}/v1/images/generations"
        missing = requests.post(url, json=body(), timeout=10)
        bad = requests.post(url, json=body(), headers={"Authorization": f"Bearer {wrong}"}, timeout=10)
        basic = requests.get(f"{url}/x", headers={"Authorization": f"Basic {wrong}"}, timeout=10)
        good = requests.post(url, json=body(), headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        for r in (missing, bad, basic):
            assert r.status_code == 401
            assert r.json() == {
                "error": {"code": "unauthorized", "message": "Invalid API key", "type": "authentication_error"}
            }
            assert wrong not in r.text and wrong not in str(r.headers)
        assert good.status_code == 200 and KEY not in good.text and KEY not in str(good.headers)
        assert srv.stats()["auth_failures"] == 3
    assert wrong not in caplog.text and KEY not in caplog.text


def test_any_non_empty_key_by_default(server: SimServer) -> None:
    url = f"{server.base_url}/v1/images/generations"
    assert requests.post(url, json=body(), headers={"Authorization": "Bearer anything"}, timeout=10).status_code == 200
    assert requests.post(url, json=body(), headers={"Authorization": "Bearer "}, timeout=10).status_code == 401


def test_unknown_task_404(server: SimServer, http: requests.Session) -> None:
    r = status(server, http, "img_doesnotexist")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": 404, "message": "Task not found", "type": "not_found_error"}}
    assert r.headers["X-RateLimit-Category"] == "async_query"


# -- uploads --------------------------------------------------------------------------------------------------------


def test_upload_png_and_serve_it(server: SimServer, http: requests.Session) -> None:
    data = png()
    r = upload(server, http, data)
    assert r.status_code == 200
    payload = r.json()
    assert (payload["success"], payload["message"]) == (True, "")
    info = payload["data"]
    assert info["id"].startswith("upload_")
    assert (info["mime_type"], info["size"]) == ("image/png", len(data))
    served = requests.get(info["url"], timeout=10)
    assert served.content == data and served.headers["Content-Type"] == "image/png"
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, format="GIF")
    assert upload(server, http, gif.getvalue(), "a.gif").json()["data"]["mime_type"] == "image/gif"
    assert server.stats()["uploads"] == 2


def test_upload_refuses_non_images_and_big_files(server: SimServer, http: requests.Session) -> None:
    text = upload(server, http, b"this is not an image\r\n" * 10, "notes.png")
    assert text.status_code == 400
    assert text.json() == {"success": False, "message": "Unsupported image type. Allowed: JPEG, PNG, WebP, GIF"}
    for size in (11 * 1024 * 1024, 10_000_001):  # "10MB" is 10,000,000 bytes, as the client reads it
        big = upload(server, http, b"\x89PNG\r\n\x1a\n" + b"\0" * (size - 8), "big.png")
        assert big.status_code == 400
        assert big.json() == {"success": False, "message": "Image too large. Maximum size is 10MB"}
    no_file = http.post(f"{server.base_url}/v1/uploads/images", files={"other": ("a.png", png())}, timeout=10)
    assert no_file.status_code == 400 and no_file.json()["success"] is False
    assert server.stats()["uploads"] == 0


# -- rate limits ----------------------------------------------------------------------------------------------------


def test_submit_bucket_exhausted_gives_429(server: SimServer, http: requests.Session) -> None:
    server.configure(submit_burst=3, submit_rate=0.01)
    codes = [submit(server, http).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = submit(server, http)
    assert r.status_code == 429
    assert r.json() == {"error": {"code": "rate_limit_exceeded", "message": "Async task request rate exceeded"}}
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Limit"] == "3"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["X-RateLimit-Category"] == "async_submit"
    assert int(r.headers["X-RateLimit-Reset"]) > 0
    stats = server.stats()
    assert (stats["rate_limited"], stats["submits_accepted"], stats["submits_rejected"]) == (1, 3, 1)
    assert status(server, http, "img_x").status_code == 404  # the query bucket is separate


def test_query_bucket_exhausted_gives_429(server: SimServer, http: requests.Session) -> None:
    server.configure(query_burst=2, query_rate=0.01)
    task = submit(server, http).json()
    assert [status(server, http, task["id"]).status_code for _ in range(3)] == [200, 200, 429]
    assert status(server, http, task["id"]).headers["X-RateLimit-Category"] == "async_query"


def test_random_429_retry_after_seconds_and_http_date(server: SimServer, http: requests.Session) -> None:
    server.configure(rate_limit_rate=1.0, retry_after=(2, 2))
    r = submit(server, http)
    assert (r.status_code, r.headers["Retry-After"]) == (429, "2")
    server.configure(retry_after_http_date=True)
    r = status(server, http, "img_x")
    assert r.status_code == 429
    assert email.utils.parsedate_to_datetime(r.headers["Retry-After"]).tzinfo is not None
    stats = server.stats()
    assert stats["faults"]["rate_limit"] == 2 and stats["rate_limited"] == 2 and stats["submits_accepted"] == 0


def test_fault_endpoints_limit_where_faults_hit(server: SimServer, http: requests.Session) -> None:
    server.configure(rate_limit_rate=1.0, fault_endpoints=["query"])
    task = submit(server, http)
    assert task.status_code == 200
    assert status(server, http, task.json()["id"]).status_code == 429


# -- faults ---------------------------------------------------------------------------------------------------------


def test_drop_after_submit_still_creates_the_task(server: SimServer, http: requests.Session) -> None:
    server.configure(drop_after_submit_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        submit(server, http, client_business_id="lost-answer")
    stats = server.stats()
    assert stats["submits_accepted"] == 1 and stats["faults"]["drop_after_submit"] == 1
    server.configure(drop_after_submit_rate=0.0)
    found = status(server, http, "lost-answer")
    assert found.status_code == 200 and found.json()["client_business_id"] == "lost-answer"


def test_html_504_and_json_5xx(server: SimServer, http: requests.Session) -> None:
    server.configure(server_error_rate=1.0, html_error_rate=1.0)
    r = submit(server, http)
    assert r.status_code == 504
    assert r.headers["Content-Type"].startswith("text/html")
    assert "504 Gateway Time-out" in r.text
    server.configure(html_error_rate=0.0)
    r = status(server, http, "img_x")
    assert r.status_code in (500, 502, 503) and "error" in r.json()
    stats = server.stats()
    assert stats["faults"]["html_504"] == 1 and stats["faults"]["server_error"] == 1
    assert stats["submits_rejected"] == 1 and stats["submits_accepted"] == 0


def test_failed_task_is_refunded(server: SimServer, http: requests.Session) -> None:
    server.configure(fail_rate=1.0)
    final = wait_final(server, http, submit(server, http).json()["id"])[-1]
    assert (final["status"], final["progress"]) == ("failed", 0)
    assert final["error"] == {
        "code": "generation_failed",
        "message": "call upstream API failed: upstream returned status 422",
    }
    assert final["billing"]["status"] == "refunded"
    assert "result" not in final
    assert server.stats()["tasks"]["failed"] == 1


def test_stuck_task_never_finishes(server: SimServer, http: requests.Session) -> None:
    server.configure(stuck_rate=1.0)
    task = submit(server, http).json()
    server.advance(3600)
    seen = status(server, http, task["id"]).json()
    assert (seen["status"], seen["progress"]) == ("in_progress", 90)
    assert server.stats()["faults"]["stuck_task"] == 1


def test_expired_url_is_404(server: SimServer, http: requests.Session) -> None:
    server.configure(url_lifetime=0)
    final = wait_final(server, http, submit(server, http).json()["id"])[-1]
    assert final["expires_at"] == final["completed_at"]
    r = requests.get(final["result"]["data"][0]["url"], timeout=10)
    assert r.status_code == 404 and r.json()["error"]["message"] == "File expired"
    assert server.stats()["faults"]["expired_url"] == 1


def test_default_url_lifetime_expires_after_a_day(server: SimServer, http: requests.Session) -> None:
    final = wait_final(server, http, submit(server, http).json()["id"])[-1]
    url = final["result"]["data"][0]["url"]
    assert requests.get(url, timeout=10).status_code == 200
    server.advance(86400)
    assert requests.get(url, timeout=10).status_code == 404


def test_corrupt_image_bytes_do_not_decode(server: SimServer, http: requests.Session) -> None:
    server.configure(corrupt_image_rate=1.0)
    for _ in range(2):
        data = generate(server, http, prompt=f"corrupt {_}")
        with pytest.raises(InvalidImageError):
            decode_image(data)
    assert server.stats()["faults"]["corrupt_image"] == 2


def test_insufficient_quota_402(server: SimServer, http: requests.Session) -> None:
    server.configure(insufficient_quota=True)
    r = submit(server, http)
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_quota"


def test_top_level_url(server: SimServer, http: requests.Session) -> None:
    server.configure(top_level_url=True)
    final = wait_final(server, http, submit(server, http).json()["id"])[-1]
    assert final["url"] == final["result"]["data"][0]["url"]


# -- life cycle -----------------------------------------------------------------------------------------------------


def test_restart_keeps_tasks_on_the_same_port(server: SimServer, http: requests.Session) -> None:
    task = submit(server, http, client_business_id="survivor").json()
    before = server.base_url
    assert server.restart() == before
    final = wait_final(server, http, "survivor")[-1]
    assert final["id"] == task["id"]
    assert requests.get(final["result"]["data"][0]["url"], timeout=10).status_code == 200


def test_stop_cuts_keep_alive_connections() -> None:
    srv = SimServer(SimConfig(**FAST))
    url = srv.start()
    with requests.Session() as s:
        assert s.get(f"{url}/_sim/stats", timeout=5).status_code == 200
        srv.stop()
        assert not srv.running
        with pytest.raises(requests.ConnectionError):
            s.get(f"{url}/_sim/stats", timeout=5)
        assert srv.start() == url
        assert s.get(f"{url}/_sim/stats", timeout=5).status_code == 200
    srv.stop()


def test_down_refuses_connections_then_returns() -> None:
    with SimServer(SimConfig(**FAST)) as srv:
        srv.down(60)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{srv.base_url}/_sim/stats", timeout=5)
        srv.start()  # cancels the pending return and serves at once
        assert requests.get(f"{srv.base_url}/_sim/stats", timeout=5).status_code == 200
        srv.down(0.05)
        wait_for(lambda: srv.running, 10, "the simulator to serve again")
        assert requests.get(f"{srv.base_url}/_sim/stats", timeout=5).status_code == 200


def test_control_endpoints(server: SimServer, http: requests.Session) -> None:
    r = requests.post(f"{server.base_url}/_sim/config", json={"fail_rate": 1, "latency": [0.01, 0.02]}, timeout=10)
    assert r.status_code == 200 and r.json()["fail_rate"] == 1.0 and r.json()["latency"] == [0.01, 0.02]
    assert server.config.fail_rate == 1.0
    assert requests.post(f"{server.base_url}/_sim/config", json={"fail_rate": 3}, timeout=10).status_code == 400
    assert requests.post(f"{server.base_url}/_sim/config", json={"nope": 1}, timeout=10).status_code == 400
    submit(server, http)
    stats = requests.get(f"{server.base_url}/_sim/stats", timeout=10).json()
    assert stats["submits_accepted"] == 1 and stats["tasks"]["total"] == 1
    reset = requests.post(f"{server.base_url}/_sim/reset", timeout=10).json()
    assert reset["submits_accepted"] == 0 and reset["tasks"]["total"] == 0


def test_config_coercion_and_checks() -> None:
    cfg = SimConfig(latency="1,2", fault_endpoints="submit,download", top_level_url="yes")
    assert cfg.latency == (1.0, 2.0) and cfg.fault_endpoints == ("submit", "download") and cfg.top_level_url
    for bad in ({"fail_rate": 2}, {"latency": (3, 1)}, {"fault_endpoints": ["everywhere"]}, {"url_lifetime": -1}):
        with pytest.raises(ValueError):
            SimConfig(**bad)
    with pytest.raises(ValueError, match="unknown simulator setting"):
        cfg.update(failrate=0.5)


# -- images ---------------------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_follows_temperature() -> None:
    spec = RenderSpec("A paper-cut fox in a forest", size="16:9", temperature=0.8, top_p=0.95, sample="img_1")
    assert render_png(spec) == render_png(RenderSpec(**{**spec.__dict__}))
    hotter = RenderSpec(**{**spec.__dict__, "temperature": 1.6})
    assert render_png(hotter) != render_png(spec)
    other_sample = RenderSpec(**{**spec.__dict__, "sample": "img_2"})
    assert render_png(other_sample) != render_png(spec)


def test_same_seed_same_tasks_same_bytes(http: requests.Session) -> None:
    images = []
    for _ in range(2):
        with SimServer(SimConfig(**FAST)) as srv:
            images.append(generate(srv, http, metadata={"temperature": 0.7}))
    assert images[0] == images[1]


def test_fox_is_warm() -> None:
    r, _g, b = (sum(channel) / 6 for channel in zip(*palette_for(RenderSpec("a fox")), strict=True))
    assert r > b + 40


def test_reference_colours_are_borrowed(server: SimServer, http: requests.Session) -> None:
    ref_url = upload(server, http, png((10, 40, 230))).json()["data"]["url"]
    plain = generate(server, http)
    with_ref = generate(server, http, image_urls=[ref_url])

    def mean(data: bytes) -> tuple[float, ...]:
        small = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.Resampling.BOX)
        return tuple(float(v) for v in small.getpixel((0, 0)))  # type: ignore[union-attr]

    def distance(colour: tuple[float, ...]) -> float:
        return sum((a - b) ** 2 for a, b in zip(colour, (10, 40, 230), strict=True)) ** 0.5

    assert distance(mean(with_ref)) < distance(mean(plain)) - 40


# -- the command line -----------------------------------------------------------------------------------------------


def test_cli_serves_until_terminated() -> None:
    cmd = [sys.executable, "-m", "gemimg_jupyter.sim", "--port", "0", "--latency", "0.05,0.1", "--queue-delay", "0,0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("gemimg simulator listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[-1]
        headers = {"Authorization": f"Bearer {KEY}"}
        task = requests.post(f"{base}/v1/images/generations", json=body(), headers=headers, timeout=10).json()

        def completed() -> dict[str, Any] | None:
            seen = requests.get(f"{base}/v1/images/generations/{task['id']}", headers=headers, timeout=10).json()
            return seen if seen["status"] == "completed" else None

        seen = wait_for(completed, 30, "the task to complete")
        image = requests.get(seen["result"]["data"][0]["url"], timeout=10)
        assert Image.open(io.BytesIO(image.content)).size == (1024, 1024)
        assert requests.get(f"{base}/_sim/stats", timeout=10).json()["submits_accepted"] == 1
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
    assert code == 0
    assert KEY not in (proc.stderr.read() if proc.stderr else "")


def test_cli_rejects_bad_values() -> None:
    cmd = [sys.executable, "-m", "gemimg_jupyter.sim", "--port", "0", "--fail-rate", "7"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and "fail_rate" in done.stderr


# -- dialects and the field's observations (issue 13) ---------------------------------------------------------------


def wait_parsed(server: SimServer, http: requests.Session, ident: str) -> list[dict[str, Any]]:
    """Poll until the client's parser calls the task terminal; return every raw answer (a deadline, not timing)."""
    seen: list[dict[str, Any]] = []

    def terminal() -> bool:
        seen.append(status(server, http, ident).json())
        return parse_task(seen[-1]).is_terminal

    wait_for(terminal, 30, f"task {ident} to end")
    return seen


def test_newapi_style_speaks_new_api(server: SimServer, http: requests.Session) -> None:
    server.configure(style="newapi", latency=(0.3, 0.5), queue_delay=(0.1, 0.2))
    first = submit(server, http, client_business_id="order-n1").json()
    assert (first["status"], first["progress"]) == ("pending", "0%")
    assert first["id"].startswith("tsk_img_")
    seen = wait_parsed(server, http, first["id"])
    words = [s["status"] for s in seen]
    assert set(words) <= {"NOT_START", "QUEUED", "IN_PROGRESS", "SUCCESS"} and words[-1] == "SUCCESS"
    assert all(isinstance(s["progress"], str) and s["progress"].endswith("%") for s in seen)
    assert all("billing" not in s and "usage" not in s for s in seen)  # live successes carried no billing
    final = seen[-1]
    assert final["task_id"] == first["id"] and "id" not in final
    assert final["url"] == final["result"]["data"][0]["url"]
    assert final["client_business_id"] == "order-n1"
    task = parse_task(final)
    assert (task.status, task.progress, task.cost_usd, task.url) == ("completed", 100, None, final["url"])
    assert requests.get(final["url"], timeout=10).status_code == 200


def test_newapi_failure_has_fail_reason_and_a_refund(server: SimServer, http: requests.Session) -> None:
    server.configure(style="newapi", fail_rate=1.0)
    final = wait_parsed(server, http, submit(server, http).json()["id"])[-1]
    assert final["status"] == "FAILURE" and "upstream returned status 422" in final["fail_reason"]
    assert final["billing"] == {"status": "refunded", "credits": "0", "cost_usd": "0"}
    task = parse_task(final)
    assert (task.status, task.blocked, task.cost_usd) == ("failed", False, 0.0)


@pytest.mark.parametrize("style", ["docs", "newapi"])
def test_blocked_tasks_name_the_safety_reason(server: SimServer, http: requests.Session, style: str) -> None:
    server.configure(style=style, blocked_rate=1.0)
    final = wait_parsed(server, http, submit(server, http).json()["id"])[-1]
    task = parse_task(final)
    assert (task.status, task.blocked, task.cost_usd) == ("failed", True, 0.0)
    assert "IMAGE_SAFETY" in (task.error_message or "")
    assert server.stats()["faults"]["blocked_task"] == 1


@pytest.mark.parametrize("style", ["docs", "newapi"])
def test_prompt_limit_is_per_model(server: SimServer, http: requests.Session, style: str) -> None:
    server.configure(style=style)
    preview = "gemini-2.5-flash-image-preview"
    assert submit(server, http, model=preview, prompt="x" * 1000).status_code == 200
    r = submit(server, http, model=preview, prompt="x" * 1001)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "prompt_too_long" and "at most 1000" in r.json()["error"]["message"]
    assert submit(server, http, prompt="x" * 1001).status_code == 200  # the official model states no such cap


def test_empty_balance_is_402_in_docs_and_403_in_newapi(server: SimServer, http: requests.Session) -> None:
    server.configure(insufficient_quota=True)
    assert submit(server, http).status_code == 402
    server.configure(style="newapi")
    r = submit(server, http)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_user_quota"
    assert server.stats()["submits_accepted"] == 0


def test_unserved_models_are_503_model_not_found_and_not_listed(server: SimServer, http: requests.Session) -> None:
    listed = http.get(f"{server.base_url}/v1/models", params={"type": "image"}, timeout=10).json()
    assert {m["id"] for m in listed["data"]} == set(MODELS)
    server.configure(unserved_models="gemini-3-pro-image-preview")
    r = submit(server, http, model="nano-banana-pro")  # an alias of the unserved model
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_found"
    listed = http.get(f"{server.base_url}/v1/models", timeout=10).json()
    assert "gemini-3-pro-image-preview" not in {m["id"] for m in listed["data"]}
    assert submit(server, http, model="gemini-9-unknown").status_code == 400  # docs: a validation error
    server.configure(style="newapi")
    r = submit(server, http, model="gemini-9-unknown")
    assert r.status_code == 503 and "No available channel" in r.json()["error"]["message"]
    assert server.stats()["faults"]["model_not_found"] == 2
    assert requests.get(f"{server.base_url}/v1/models", timeout=10).status_code == 401  # the key is still needed


@pytest.mark.parametrize(("resolution", "model", "expected"), [
    ("2K", "gemini-3.1-flash-image-preview", (1024, 1024)),
    ("1K", OFFICIAL, (512, 512)),
])  # fmt: skip
def test_small_image_fault_is_one_step_smaller(
    server: SimServer, http: requests.Session, resolution: str, model: str, expected: tuple[int, int]
) -> None:
    server.configure(small_image_rate=1.0)
    meta = {"resolution": resolution} if model != OFFICIAL else {}
    data = generate(server, http, model=model, metadata=meta)
    assert decode_image(data).size == expected
    assert server.stats()["faults"]["small_image"] == 1


def test_unknown_status_word(server: SimServer, http: requests.Session) -> None:
    server.configure(unknown_status="WEIRD", stuck_rate=1.0)
    task = submit(server, http).json()
    server.advance(5)
    seen = status(server, http, task["id"]).json()
    assert seen["status"] == "WEIRD"
    assert (parse_task(seen).status, parse_task(seen).raw_status) == ("unknown", "WEIRD")


def test_edge_refuses_requests_without_a_user_agent(server: SimServer) -> None:
    server.configure(require_user_agent=True)
    url = f"{server.base_url}/v1/models"
    with requests.Session() as bare:  # requests' own default User-Agent
        r = bare.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert r.status_code == 403 and r.headers["Content-Type"].startswith("text/html") and b"1010" in r.content
    ok = requests.get(url, headers={"Authorization": f"Bearer {KEY}", "User-Agent": "gemimg_jupyter/1"}, timeout=10)
    assert ok.status_code == 200
    assert server.stats()["faults"]["edge_refused"] == 1


def test_metadata_seed_repeats_the_image(server: SimServer, http: requests.Session) -> None:
    seeded = [generate(server, http, metadata={"temperature": 1.5, "seed": 42}) for _ in range(2)]
    free = [generate(server, http, metadata={"temperature": 1.5}) for _ in range(2)]
    assert seeded[0] == seeded[1]
    assert free[0] != free[1]
    r = submit(server, http, metadata={"seed": "42"})
    assert r.status_code == 400 and "metadata.seed" in r.json()["error"]["message"]


def test_style_is_checked() -> None:
    assert SimConfig(style="NEWAPI").style == "newapi"
    with pytest.raises(ValueError, match="style"):
        SimConfig(style="openai")


def test_the_installed_command_names_itself_in_its_help() -> None:
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    command = shutil.which("gemimg-sim", path=str(Path(sys.executable).parent))
    assert command is not None, "the gemimg-sim entry point is not installed beside this interpreter"
    shown = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert shown.startswith("usage: gemimg-sim ")
    module = subprocess.run(
        [sys.executable, "-m", "gemimg_jupyter.sim", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert module.startswith("usage: python -m gemimg_jupyter.sim ")
