"""The display layer: status lines, bundles, live views (throttling, final state), tables."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from IPython.core.displaypub import DisplayPublisher
from PIL import Image

from gemimg_jupyter import display as D
from gemimg_jupyter.domain.errors import (
    APIConnectionError,
    RateLimitError,
    TaskFailedError,
    ValidationError,
    register_secret,
)
from gemimg_jupyter.domain.models import MODELS, GenerationParams, JobState
from gemimg_jupyter.draw.images import png_with_provenance
from gemimg_jupyter.engine import Job
from gemimg_jupyter.ledger.store import LedgerRow

from .support import FAKE_KEY, output_image, wait_for


def make_job(prompt: str = "a <b>bold</b> fox & friends", **params: Any) -> Job:
    return Job(GenerationParams.create(prompt, **params))


def finished_job(tmp_path: Path, size: str = "16:9", state: JobState = JobState.DONE) -> Job:
    job = make_job("a finished fox", size=size)
    w, h = job.params.pixel_size
    path = tmp_path / f"{job.id}.png"
    prov = {"params": job.params.as_dict(), "task_id": "task_123", "backend": "sim"}
    path.write_bytes(png_with_provenance(Image.new("RGB", (w, h), "teal"), prov))
    job.path, job.provenance, job.task_id, job.state, job.cost_usd = path, prov, "task_123", state, 0.0488
    job._signals.done.set()
    return job


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


# ---------------------------------------------------------------- errors


def test_error_line_is_one_line_with_what_to_do() -> None:
    rate = RateLimitError("request failed (429): slow down", hint="gave up after retrying, try again in a minute")
    assert D.error_line(rate).endswith("gave up after retrying, try again in a minute")
    assert "refunded" in D.error_line(TaskFailedError("the gateway reported the task failed: policy"))
    assert D.error_line(ValueError("bad\nthing")) == "ValueError: bad thing"
    assert D.error_line(APIConnectionError("could not reach\n the gateway")) == "could not reach the gateway"
    msg = D.error_line(ValidationError.not_allowed("size", "5:3", "use 1:1"))
    assert msg == "size '5:3' is not allowed; use 1:1"


def test_error_line_never_shows_a_registered_secret() -> None:
    register_secret(FAKE_KEY)
    assert FAKE_KEY not in D.error_line(RuntimeError(f"header was Bearer {FAKE_KEY}"))


# ---------------------------------------------------------------- one job


def test_status_line_text_and_escaped_html() -> None:
    job = make_job(size="3:2")
    job.state, job.progress, job.cost_usd = JobState.IN_PROGRESS, 45, 0.0488
    text = D.status_text(job)
    assert "in_progress" in text and "45%" in text and "$0.05" in text and job.id in text and "3:2 1K" in text
    markup = D.status_html(job)
    assert "<b>bold</b>" not in markup and "&lt;b&gt;bold&lt;/b&gt;" in markup and "&amp; friends" in markup
    assert '<progress value="45"' in markup


def test_a_running_job_bundle_is_the_status_line() -> None:
    data, meta = D.job_bundle(make_job())
    assert set(data) == {"text/plain", "text/html"} and meta == {}


def test_a_finished_job_bundle_is_the_image_with_provenance(tmp_path: Path) -> None:
    job = finished_job(tmp_path, "9:16")
    data, meta = D.job_bundle(job, preview_size=512)
    assert set(data) == {"text/html", "text/plain"}  # the image once, in the <img> with its alt text
    assert png_size(output_image(data)) == (293, 512)
    # the HTML twin is the same PNG with the prompt as alternative text
    assert data["text/html"].count("data:image/png;base64,") == 1
    assert 'alt="9:16 image 768×1344: a finished fox"' in data["text/html"]
    gem = meta["text/html"]["gemimg"]
    assert gem["image_size"] == [768, 1344] and gem["task_id"] == "task_123" and gem["path"].endswith(".png")
    assert gem["params"]["size"] == "9:16" and gem["cached"] is False
    json.dumps(meta)  # JSON-able, as notebook metadata must be


def test_showing_an_image_leaves_the_full_size_pixels_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = finished_job(tmp_path, "16:9")
    w, h = job.params.pixel_size
    Image.new("RGB", (w // 2, h // 2), "teal").save(job.path)  # the file's own size, not the requested one

    def no_full_decode(_job: Job) -> None:
        raise AssertionError("the display decoded the full-size image (kept in memory for the session)")

    monkeypatch.setattr(Job, "image", property(no_full_decode))
    _data, meta = D.job_bundle(job)
    assert meta["text/html"]["gemimg"]["image_size"] == [w // 2, h // 2], "the size comes from the file's header"


def test_image_alt_text_is_the_escaped_prompt(tmp_path: Path) -> None:
    job = finished_job(tmp_path, "1:1")
    job.params = GenerationParams.create('a "quoted" <script>fox</script> & co', size="1:1")
    markup = D.job_bundle(job, preview_size=64)[0]["text/html"]
    assert "<script>" not in markup and 'alt="1:1 image 1024×1024: a &quot;quoted&quot; &lt;script&gt;' in markup


def test_a_running_status_line_names_the_free_re_run_and_is_short() -> None:
    job = make_job("a very long prompt " * 20)
    job.state = JobState.IN_PROGRESS
    markup, text = D.status_html(job), D.status_text(job)
    assert D.STALE_NOTE in markup and "cache for $0" in D.STALE_NOTE
    assert len(text) < 140 and text.endswith("…”")
    assert 'title="a very long prompt' in markup  # the whole prompt is in the tooltip
    job.state = JobState.DONE
    assert D.STALE_NOTE not in D.status_html(job)  # a finished line is not stale


def test_tones_meet_4_5_to_1_on_light_and_dark_backgrounds() -> None:
    def luminance(color: str) -> float:
        channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def contrast(a: str, b: str) -> float:
        hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    for tone, (light, dark) in D.TONE_COLORS.items():
        assert contrast(light, "#ffffff") >= 4.5, tone
        for background in ("#111111", "#212121"):  # JupyterLab dark: cells, and layout-color1
            assert contrast(dark, background) >= 4.5, (tone, background)
        assert f"[data-jp-theme-light=false] .gemimg-tone-{tone}{{color:{dark}}}" in D.THEME_CSS


def test_a_failed_job_bundle_is_one_escaped_error_line() -> None:
    job = make_job("a <i>fox</i>")
    job.state, job.error = JobState.FAILED, "the gateway reported the task failed [policy]: no\nfoxes"
    job.exception = TaskFailedError(job.error)
    data, _meta = D.job_bundle(job)
    assert data["text/plain"].count("\n") == 0 and "failed" in data["text/plain"] and "refunded" in data["text/plain"]
    assert "<i>fox</i>" not in data["text/html"]


def test_cached_jobs_say_so(tmp_path: Path) -> None:
    job = finished_job(tmp_path, state=JobState.CACHED)
    assert "(cached)" in D.job_bundle(job)[0]["text/plain"]
    assert "$0 (cached)" in D.status_text(job)


def test_display_path_is_relative_below_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    inside = tmp_path / "gemimg_outputs" / "images" / "a.png"
    assert D.display_path(inside) == "gemimg_outputs/images/a.png"
    assert D.display_path("/elsewhere/b.png") == "/elsewhere/b.png"
    assert D.display_path(None) is None


# ---------------------------------------------------------------- live views


class Stub(D.LiveView):
    """A view over a counter: final when ``done`` is set."""

    def __init__(self, min_interval: float = 0.0) -> None:
        super().__init__()
        self.min_interval = min_interval
        self.value = 0
        self.done = False

    def bundle(self) -> D.Bundle:
        return {"text/plain": f"value {self.value}{' (final)' if self.done else ''}"}, {}

    def is_final(self) -> bool:
        return self.done

    def target(self) -> Any:
        return self

    def clone(self) -> Stub:
        return Stub(self.min_interval)

    def attach(self) -> None:
        pass


def texts(ip: Any) -> list[str]:
    return [o["data"]["text/plain"] for o in ip.display_pub.outputs]


def test_refresh_updates_the_one_output_in_place(ip: Any) -> None:
    view = Stub()
    view.show()
    for i in range(3):
        view.value = i + 1
        worker = threading.Thread(target=view.refresh)  # listeners call refresh from worker threads
        worker.start()
        worker.join()
    view.done = True
    view.refresh()
    view.refresh()  # nothing after the final state
    outs = ip.display_pub.outputs
    assert [o["update"] for o in outs] == [False, True, True, True, True]
    assert len({o["transient"]["display_id"] for o in outs}) == 1
    assert texts(ip)[-1] == "value 3 (final)" and view.finished


def test_grid_renders_are_throttled_but_the_last_state_always_shows(ip: Any) -> None:
    view = Stub(min_interval=1.0)  # wide enough that twenty refreshes fit inside it on a loaded machine
    view.show()
    for i in range(20):
        view.value = i
        view.refresh()
    assert len(ip.display_pub.outputs) == 1, "changes inside the interval wait"
    wait_for(lambda: len(ip.display_pub.outputs) >= 2, 10, "the deferred render")
    assert texts(ip)[-1] == "value 19", "a deferred render shows the latest state"
    assert len(ip.display_pub.outputs) == 2
    view.value, view.done = 20, True
    view.refresh()
    assert texts(ip)[-1] == "value 20 (final)", "the final state renders at once"
    assert view.wait_final(0)


def test_the_ticker_moves_a_quiet_running_view(ip: Any) -> None:
    view = Stub()
    view.tick_interval = 0.1
    view.show()
    wait_for(lambda: len(ip.display_pub.outputs) >= 3, 5, "two renders by the ticker")
    assert len(ip.display_pub.outputs) >= 3, "the ticker re-renders without any change"
    view.done = True
    view.refresh()
    settled = len(ip.display_pub.outputs)
    time.sleep(0.4)  # a deliberate quiet period (four tick intervals): that nothing renders can only be seen over time
    assert len(ip.display_pub.outputs) == settled


def test_a_terminal_shell_shows_once_and_never_prints_from_threads(ip: Any, capsys: Any) -> None:
    ip.display_pub = DisplayPublisher(shell=ip)
    assert not D.live_updates_supported()
    view = Stub()
    view.show()
    assert capsys.readouterr().out.strip() == "value 0"
    view.value, view.done = 1, True
    threading.Thread(target=view.refresh).start()
    assert view.wait_final(2)
    assert capsys.readouterr().out == ""


def test_closed_views_stop_following(ip: Any) -> None:
    view = Stub()
    view.show()
    view.close()
    view.value = 5
    view.refresh()
    assert len(ip.display_pub.outputs) == 1 and view.finished


def test_job_view_follows_a_real_job(ip: Any, session: Any) -> None:
    job = session.generate("a fox for the view", size="4:3", wait=False)
    view = D.JobView(job, preview_size=256)
    view.show()
    view.attach()
    assert job.wait(20) and view.wait_final(5)
    final = ip.display_pub.outputs[-1]
    assert final["update"] and png_size(output_image(final["data"])) == (256, 187)
    assert view.image.size == (1184, 864)


def test_sweep_view_places_z_grids_side_by_side_in_one_png(ip: Any, session: Any) -> None:
    two = session.sweep("a fox", axes=["temperature=0.2,0.8", "size=1:1,16:9"], wait=True, cell_size=96)
    three = session.sweep(
        "a fox", axes=["temperature=0.2,0.8", "size=1:1,16:9", "top_p=0.5,0.9"], wait=True, yes=True, cell_size=96
    )
    flat = png_size(output_image(D.sweep_bundle(two, final=True)[0]))
    data, meta = D.sweep_bundle(three, final=True)
    placed = png_size(output_image(data))
    assert placed[0] > 1.8 * flat[0] and placed[1] < 1.5 * flat[1]  # the two Z grids left to right, not stacked
    assert meta["text/html"]["gemimg_sweep"]["grid_paths"] and "grid saved to" in data["text/plain"]
    view = D.SweepView(three)
    view.show()
    assert view.finished, "a finished sweep shows its final grid at once"


# ---------------------------------------------------------------- snapshots


def test_tables_escape_and_read_well() -> None:
    job = make_job("<script>alert(1)</script>")
    table = D.jobs_table([job])
    assert job.id in table.text and "<script>" not in (table.html or "")
    markup = table.html or ""
    # cells never wrap ("16:9 1K" on two lines), and prices are not typeset as LaTeX
    assert markup.count("<td ") == markup.count("white-space:nowrap") and "mathjax_ignore" in markup
    assert "no jobs" in D.jobs_table([]).text
    models = D.models_table(MODELS, default="gemini-2.5-flash-image-official")
    assert "(default)" in models.text and all(m in models.text for m in MODELS)
    cost = D.cost_report(
        {"spent_usd": 0.3, "saved_usd": 0.05, "cache_hits": 1, "requests": 6, "budget_usd": 1.0, "backend": "toapis"}
    )
    assert "$0.70 left" in cost.text and "1 hit" in cost.text
    assert D.RichText("a", "<b>a</b>")._repr_mimebundle_() == {"text/plain": "a", "text/html": "<b>a</b>"}


def test_history_strip_is_a_png_contact_sheet(tmp_path: Path) -> None:
    rows = []
    for i, size in enumerate(["1:1", "16:9", "9:16"]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (320, 180) if size == "16:9" else (180, 320) if size == "9:16" else (200, 200), "red").save(
            path
        )
        rows.append(
            LedgerRow(
                cbid=f"c{i}",
                key="k",
                repeat=0,
                sweep_id=None,
                state="done",
                task_id=f"t{i}",
                params={"prompt": f"picture {i}", "size": size, "model": "m"},
                backend="sim",
                price_usd=None,
                cost_usd=None,
                created=0.0,
                submitted=None,
                finished=None,
                expires_at=None,
                path=str(path),
                error=None,
            )
        )
    strip = D.history_strip(rows, thumb=100)
    assert isinstance(strip, D.ImageStrip)
    data, meta = strip._repr_mimebundle_()
    w, h = png_size(output_image(data))
    assert w >= 300 and h >= 100
    assert [i["size"] for i in meta["text/html"]["gemimg_history"]] == ["1:1", "16:9", "9:16"]
    assert "picture 2" in strip.text
    assert 'alt="image history: 1. picture 0; 2. picture 1; 3. picture 2"' in data["text/html"]
    assert isinstance(D.history_strip([]), D.RichText)
