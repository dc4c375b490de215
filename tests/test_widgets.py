"""The control panel, driven in Python (no browser, no kernel): values, clicks, uploads.

Every test runs a real Session against the loopback simulator (``sim`` fixture,
small latencies, a temporary output directory) and asserts on what the panel
shows (images, grid, messages, plan text) and on what reached the simulator.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import gemimg_jupyter
from gemimg_jupyter.api.session import Session, get_session, reset_session
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.draw.images import png_bytes
from gemimg_jupyter.panel import Panel, magic_cell, model_notes
from gemimg_jupyter.sim import SimConfig, SimServer

from .support import FAKE_KEY, wait_for

WAIT = 30.0


# ------------------------------------------------------------------ helpers


def png(w: int = 64, h: int = 48, color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def upload_item(name: str, data: bytes, mime: str = "image/png") -> dict[str, Any]:
    """One file as ipywidgets 8's FileUpload reports it."""
    return {
        "name": name,
        "type": mime,
        "size": len(data),
        "content": memoryview(data),
        "last_modified": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    }


def text_of(widget: Any) -> str:
    """The text a user sees in an HTML/Label widget (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", str(widget.value)))


def image_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def all_text(panel: Panel) -> str:
    """Every string the panel's widgets would send to the browser."""
    parts: list[str] = []
    for w in panel.state.widgets:
        for key, value in w.get_state().items():
            if isinstance(value, str):
                parts.append(value)
            elif key == "_options_labels":
                parts.extend(value)
    return "\n".join(parts)


@pytest.fixture
def panel(session: Session) -> Iterator[Panel]:
    p = Panel(session=session)
    try:
        yield p
    finally:
        p.wait(WAIT)
        p.close()


def sweep_over(panel: Panel, *axes: str) -> None:
    """Pick the sweep axes as a person would, X then Y, each written as on a cell: ``"temperature=0.2,1.4"``."""
    rows = ((panel.x_axis, panel.x_values), (panel.y_axis, panel.y_values))
    for (axis, values), text in zip(rows, axes, strict=False):
        axis.value, _, values.value = text.partition("=")


def generate(panel: Panel) -> None:
    panel.generate_button.click()
    assert panel.wait(WAIT), "the run did not finish"


# ------------------------------------------------------------------ construction and layering


def test_panel_is_exported_lazily() -> None:
    assert gemimg_jupyter.Panel is Panel


def test_initial_state_and_stable_classes(panel: Panel) -> None:
    assert "gemimg-panel" in panel.widget._dom_classes
    for name in (
        "prompt model size resolution temperature top_p repeats upload x_axis x_values y_axis y_values "
        "plan_html generate_button cancel_button progress progress_text message result_image cells "
        "detail_image detail_html magic history_box"
    ).split():
        classes = getattr(panel, name)._dom_classes
        assert any(c.startswith("gemimg-") for c in classes), name
    assert panel.model.value == "gemini-2.5-flash-image-official"
    assert ("16:9 · 1344×768", "16:9") in panel.size.options
    notes = text_of(panel.model_notes)
    assert "2K/4K: not available on gemini-2.5-flash-image-official (1K-class model)" in notes
    assert "Write a prompt" in text_of(panel.plan_html)
    assert panel.cancel_button.disabled and not panel.generate_button.disabled
    assert "simulator" in text_of(panel.header)
    # display goes through the root VBox
    bundle = panel._repr_mimebundle_()
    assert "text/plain" in bundle


def test_default_panel_follows_the_default_session() -> None:
    try:
        panel = Panel()
        assert panel.session is get_session()
        reset_session()
        assert panel.session is get_session()  # a replaced session (login, backend) is picked up
        panel.close()
    finally:
        reset_session()


def test_a_panel_given_a_session_follows_it_to_the_one_that_replaced_it(fast_settings: Settings) -> None:
    own = Session(fast_settings)
    try:
        panel = Panel(session=own)
        assert panel.session is own
        budgeted = own.with_settings(max_cost_usd=2.0)  # not the default: get_session() is not involved
        assert own.closed and panel.session is budgeted and panel.session.settings.max_cost_usd == 2.0
        budgeted.close()  # closed without a successor: the panel stays on it, it does not guess
        assert panel.session is budgeted
        panel.close()
    finally:
        own.close()
        reset_session()


# ------------------------------------------------------------------ model-aware controls


def test_model_change_updates_sizes_resolutions_and_sampling(panel: Panel) -> None:
    panel.size.value = "21:9"
    panel.model.value = "gemini-3.1-flash-image-preview"
    assert "8:1" in [value for _label, value in panel.size.options] and "4K" in panel.resolution.options
    assert not panel.resolution.disabled
    panel.resolution.value = "2K"
    assert "16:9 · 2688×1536" in [label for label, _value in panel.size.options]
    assert "2688×1536" in text_of(panel.size_shape) or panel.size.value != "16:9"

    panel.model.value = "gemini-2.5-flash-image-preview"  # no 21:9, no sampling
    assert "21:9" not in [value for _label, value in panel.size.options]
    assert panel.size.value == "1:1"
    assert "size 21:9 is not available" in text_of(panel.message)
    assert panel.resolution.options == ("1K",) and panel.resolution.disabled
    assert panel.temperature.disabled and panel.top_p.disabled
    notes = text_of(panel.model_notes)
    assert "temperature/top-p: not used by gemini-2.5-flash-image-preview" in notes
    assert "up to 14" in notes
    state = panel.read_state()
    assert state["temperature"] is None and state["top_p"] is None
    assert "--temperature" not in panel.magic_text()


def test_model_notes_are_plain_text() -> None:
    from gemimg_jupyter.domain.models import MODELS

    for spec in MODELS.values():
        lines = model_notes(spec)
        assert any(f"up to {spec.max_refs}" in line for line in lines)


# ------------------------------------------------------------------ generate: one image


def test_generate_single_image_has_the_right_aspect(panel: Panel, session: Session) -> None:
    panel.prompt.value = "a studio photo of a teapot"
    panel.size.value = "16:9"
    panel.temperature.value = 1.3
    assert "1 request" in text_of(panel.plan_html) and "$0.05" in text_of(panel.plan_html)
    generate(panel)

    w, h = image_size(panel.result_image.value)
    assert abs(w / h - 1344 / 768) < 0.02
    assert panel.result_image.layout.display is None
    [job] = session.jobs()
    assert job.state is JobState.DONE and job.params.temperature == 1.3 and job.params.size == "16:9"
    assert "Done: 1 image" in text_of(panel.message)
    assert panel.progress.value == 100 and panel.progress.bar_style == "success"
    assert "done" in panel.progress_text.value and "$0.05" in panel.progress_text.value
    assert "16:9 · 1344×768" in text_of(panel.detail_html)
    assert "--size 16:9" in panel.magic.value and "--temperature 1.3" in panel.magic.value
    assert panel.magic.value.endswith("\na studio photo of a teapot")
    assert not panel.generate_button.disabled and panel.cancel_button.disabled
    # history shows it, and clicking it opens the detail view
    assert panel.history_box.children[0].layout.display is None
    assert panel.history_buttons[0].description.startswith("16:9")
    panel.history_buttons[0].click()
    assert "from the history" in text_of(panel.detail_html)
    assert image_size(panel.detail_image.value)[0] > 0


def test_a_suspect_image_is_marked_in_the_panels_history(
    panel: Panel, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemimg_jupyter.sim import api as sim_api

    def black(image: Image.Image, fmt: str, **_: Any) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", image.size, (0, 0, 0)).save(buf, format="JPEG")
        return buf.getvalue()

    monkeypatch.setattr(sim_api, "encode", black)
    panel.prompt.value = "a lighthouse at night"
    generate(panel)
    assert session.jobs()[-1].suspect == "all black"
    assert panel.history_buttons[0].description.startswith("⚠ ")
    assert "⚠ suspect: all black" in panel.history_buttons[0].tooltip


def test_same_settings_again_come_from_the_cache(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.prompt.value = "a red cube"
    generate(panel)
    before = sim.stats()["submits_accepted"]
    assert "1 cached" in text_of(panel.plan_html) and "$0.00" in text_of(panel.plan_html)
    generate(panel)
    assert sim.stats()["submits_accepted"] == before == 1
    assert session.jobs()[-1].cached
    assert "from the cache" in text_of(panel.message)
    panel.fresh.value = True
    assert "0 cached" in text_of(panel.plan_html) and "--fresh" in panel.magic.value
    generate(panel)
    assert sim.stats()["submits_accepted"] == 2


def test_empty_prompt_is_refused_then_a_valid_generate_works(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.prompt.value = "   "
    panel.generate_button.click()
    assert "prompt is empty" in text_of(panel.message)
    assert session.jobs() == [] and sim.stats()["submits_accepted"] == 0
    assert not panel.generate_button.disabled and not panel.busy
    panel.prompt.value = "a lighthouse at dusk"
    generate(panel)
    assert sim.stats()["submits_accepted"] == 1
    assert image_size(panel.result_image.value)[0] > 0


def test_prompt_is_escaped_in_html(panel: Panel) -> None:
    panel.prompt.value = '<img src=x onerror="alert(1)"> & <b>fox</b>'
    generate(panel)
    detail = panel.detail_html.value  # raw HTML
    assert "&lt;img src=x" in detail and "<img src=x" not in detail
    assert "&lt;b&gt;fox&lt;/b&gt;" in detail


# ------------------------------------------------------------------ references


def test_reference_uploads_thumbnails_limits_and_remove(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.upload.value = (upload_item("one.png", png(color=(200, 30, 30))),)
    assert len(panel.references) == 1
    assert "1/3 attached" in text_of(panel.ref_count)
    assert "added one.png" in text_of(panel.ref_message)
    assert panel.upload.value == ()  # cleared: the panel keeps its own copy
    tile = panel.ref_box.children[0]
    assert "gemimg-ref-tile" in tile._dom_classes
    assert image_size(tile.children[0].value)[0] <= 72

    # three more at once on a 3-max model: two fit, the fourth is refused by the core
    panel.upload.value = tuple(upload_item(f"r{i}.png", png(color=(i * 40, 90, 90))) for i in range(3))
    assert len(panel.references) == 3
    msg = text_of(panel.ref_message)
    assert "4 reference images given; gemini-2.5-flash-image-official accepts at most 3" in msg
    assert "3/3 attached" in text_of(panel.ref_count) and panel.upload.disabled

    # remove the second one
    removes = [t.children[2] for t in panel.ref_box.children]
    assert all("gemimg-ref-remove" in b._dom_classes for b in removes)
    removes[1].click()
    assert [r.name for r in panel.references] == ["one.png", "r1.png"]
    assert not panel.upload.disabled and "2/3 attached" in text_of(panel.ref_count)
    assert panel.magic.value.count("--ref") == 2 and "one.png" in panel.magic.value
    for path in panel.read_state()["reference_paths"]:
        assert Path(path).is_file()

    panel.prompt.value = "the product on a marble table"
    generate(panel)
    [job] = session.jobs()
    assert len(job.params.references) == 2 and job.state is JobState.DONE
    assert sim.stats()["uploads"] == 2


def test_a_reference_by_path_or_url_beside_the_upload_button(
    panel: Panel, session: Session, sim: SimServer, tmp_path: Path
) -> None:
    """Colab's upload widget fails for files of 1 MB or more: a typed path is read like an upload, a URL
    is checked like --ref (its server asked first), and each bad one is one line with nothing attached."""
    import random

    from PIL import Image

    noise = random.Random(7).randbytes(640 * 640 * 3)
    big = tmp_path / "big reference.png"
    Image.frombytes("RGB", (640, 640), noise).save(big)
    assert big.stat().st_size >= 1_000_000  # the size Colab's upload cannot carry
    panel.ref_add.click()
    assert "type a file path or an http(s) URL first" in text_of(panel.ref_message) and not panel.references
    for bad, says in (
        (str(tmp_path / "missing.png"), "does not exist"),
        (f"{sim.base_url}/uploads/nothing-here.png", "answered HTTP 404"),
        ("ftp://example.com/fox.png", "ftp:// is not supported"),
    ):
        panel.ref_source.value = bad
        panel.ref_add.click()
        assert says in text_of(panel.ref_message) and not panel.references, bad
        assert panel.ref_source.value == bad  # left for the user to correct
    panel.ref_source.value = str(big)
    panel.ref_add.click()
    assert "added " in text_of(panel.ref_message) and panel.ref_source.value == ""
    url = session.client.upload_image(png(color=(10, 200, 90)))  # a URL its server serves
    panel.ref_source.value = url
    panel.ref_add.click()
    assert f"added {url}" in text_of(panel.ref_message)
    assert [r.url for r in panel.references] == [None, url] and panel.references[0].size_bytes == big.stat().st_size
    assert "2/3 attached" in text_of(panel.ref_count) and len(panel.ref_box.children) == 2
    assert "--ref " + shlex.quote(str(big)) in panel.magic.value and f"--ref {url}" in panel.magic.value
    before = sim.stats()["uploads"]
    panel.prompt.value = "the product on a marble table"
    generate(panel)
    [job] = session.jobs()
    assert job.state is JobState.DONE and len(job.params.references) == 2
    assert sim.stats()["uploads"] - before == 1  # the file was uploaded; the URL went as it was


def test_refs_over_the_limit_after_a_model_change_are_refused_at_generate(panel: Panel, session: Session) -> None:
    panel.model.value = "gemini-2.5-flash-image-preview"  # 14 refs
    panel.upload.value = tuple(upload_item(f"r{i}.png", png(color=(i * 50, 20, 20))) for i in range(4))
    assert len(panel.references) == 4
    panel.model.value = "gemini-2.5-flash-image-official"  # 3 refs
    assert "accepts at most 3: remove 1" in text_of(panel.ref_count)
    panel.prompt.value = "a fox"
    assert "at most 3" in text_of(panel.plan_html)
    panel.generate_button.click()
    assert "accepts at most 3" in text_of(panel.message)
    assert session.jobs() == []


def test_non_image_renamed_png_is_refused(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.upload.value = (upload_item("notes.png", b"these are my notes, not a picture\n" * 20),)
    msg = text_of(panel.ref_message)
    assert "notes.png" in msg and "not a readable image" in msg
    assert panel.references == ()
    assert "0/3 attached" in text_of(panel.ref_count)
    assert sim.stats()["uploads"] == 0
    panel.prompt.value = "a fox"  # the panel is still usable
    generate(panel)
    assert session.jobs()[-1].state is JobState.DONE and sim.stats()["uploads"] == 0


def test_reference_over_10_mb_is_refused(panel: Panel) -> None:
    big = png()[:-12] + b"\0" * (10 * 1024 * 1024 + 10)
    panel.upload.value = (upload_item("huge.png", big),)
    msg = text_of(panel.ref_message)
    assert "huge.png" in msg and "the limit is 10 MB" in msg
    assert panel.references == ()


# ------------------------------------------------------------------ sweeps


def test_sweep_plan_updates_live_and_refuses_bad_values(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.prompt.value = "a paper-cut fox"
    assert panel.x_values.disabled and panel.y_axis.disabled
    panel.x_axis.value = "temperature"
    assert not panel.x_values.disabled and "0.2-1.4 [4]" in panel.x_values.placeholder
    assert panel.temperature.disabled  # the axis overrides the slider
    assert "Enter the sweep values" in text_of(panel.plan_html)
    panel.x_values.value = "0.2,3"
    assert "temperature 3.0 is not allowed; use a number from 0 to 2" in text_of(panel.x_error)
    assert "Fix the sweep values" in text_of(panel.plan_html)
    panel.generate_button.click()
    assert "temperature 3.0 is not allowed" in text_of(panel.message)
    assert session.jobs() == [] and sim.stats()["submits_accepted"] == 0

    panel.x_values.value = "0.2-1.4 [4]"
    assert text_of(panel.x_error) == ""
    assert "4 cells × 1 repeat = 4 requests, 0 cached, ≈ $0.20" in text_of(panel.plan_html)
    panel.y_axis.value = "size"
    panel.y_values.value = "1:1,16:9"
    assert "8 cells × 1 repeat = 8 requests" in text_of(panel.plan_html)
    panel.y_values.value = "1:1,7:3"  # parses as a ratio; the model refuses it in the plan
    assert "size '7:3' is not supported by gemini-2.5-flash-image-official" in text_of(panel.plan_html)
    panel.y_values.value = "1:1,banana"
    assert "banana" in text_of(panel.y_error)
    panel.y_axis.value = "temperature"
    panel.y_values.value = "0.5"
    assert "given twice" in text_of(panel.plan_html)
    panel.y_axis.value = ""
    panel.repeats.value = 3
    assert "4 cells × 3 repeats = 12 requests" in text_of(panel.plan_html)
    assert "--sweep 'temperature=0.2-1.4 [4]'" in panel.magic.value and "--repeats 3" in panel.magic.value
    assert "--temperature" not in panel.magic.value

    # after all those refusals a valid sweep still runs
    panel.repeats.value = 1
    panel.x_values.value = "0.2,0.4"
    generate(panel)
    assert sim.stats()["submits_accepted"] == 2
    assert "Done: 2 images" in text_of(panel.message)


def test_sweep_2x2_fills_the_grid_and_cells_open_details(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.prompt.value = "a paper-cut fox"
    sweep_over(panel, "temperature=0.2,1.4", "size=1:1,16:9")
    generate(panel)

    assert sim.stats()["submits_accepted"] == 4
    assert len(panel.cells.children) == 4
    assert all(b.button_style == "success" for b in panel.cells.children)
    assert [b.description for b in panel.cells.children] == [
        "0.2 · 1:1 · ✓",
        "1.4 · 1:1 · ✓",
        "0.2 · 16:9 · ✓",
        "1.4 · 16:9 · ✓",
    ]
    w, h = image_size(panel.result_image.value)
    assert w > 500 and h > 500  # two columns, two rows, labels
    assert "4/4 done" in panel.progress_text.value
    assert "grid saved to" in text_of(panel.message)
    assert "Click a cell button" in text_of(panel.detail_html)

    panel.cells.children[3].click()
    assert "1.4 · 16:9" in text_of(panel.detail_html)
    dw, dh = image_size(panel.detail_image.value)
    assert abs(dw / dh - 1344 / 768) < 0.02
    assert panel.detail_image.layout.display is None
    # the plan now knows everything is cached
    assert "4 cached" in text_of(panel.plan_html)


def test_repeats_without_axes_make_a_small_grid(panel: Panel, session: Session) -> None:
    panel.prompt.value = "an owl"
    panel.repeats.value = 2
    generate(panel)
    assert len(session.jobs()) == 2 and {j.repeat for j in session.jobs()} == {0, 1}
    assert [b.description for b in panel.cells.children] == ["image #1 · ✓", "image #2 · ✓"]


def test_generate_pressed_twice_quickly_submits_once(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.prompt.value = "a paper-cut fox"
    sweep_over(panel, "temperature=0.2,0.8", "top_p=0.9,1")
    panel.generate_button.click()
    panel.generate_button.click()
    assert "still in progress" in text_of(panel.message)
    assert panel.generate_button.disabled
    assert panel.wait(WAIT)
    assert len(session.jobs()) == 4
    assert sim.stats()["submits_accepted"] == 4
    assert sim.stats()["duplicate_business_ids"] == 0


def test_sweep_over_the_confirmation_threshold_needs_the_box(panel: Panel, session: Session) -> None:
    panel.prompt.value = "a fox"
    panel.x_axis.value = "temperature"
    panel.x_values.value = "0-2 [21]"  # 21 × $0.0488 ≈ $1.02
    assert panel.confirm.layout.visibility == "visible"
    assert "tick “allow”" in text_of(panel.plan_html)
    panel.generate_button.click()
    assert "confirmation threshold" in text_of(panel.message)
    assert session.jobs() == [] and not panel.busy
    panel.x_values.value = "0.2,0.4"
    assert panel.confirm.layout.visibility == "hidden"


def test_cancel_mid_sweep_then_generate_again(sim: SimServer, fast_settings: Settings) -> None:
    sim.configure(latency=(0.8, 1.0))
    session = Session(fast_settings.replace(max_in_flight=1))
    panel = Panel(session=session)
    try:
        panel.prompt.value = "a paper-cut fox"
        sweep_over(panel, "temperature=0.1,0.3,0.5,0.7,0.9,1.1")
        panel.generate_button.click()
        assert panel.busy and not panel.cancel_button.disabled
        panel.cancel_button.click()
        assert "Cancelled" in text_of(panel.message)
        assert panel.wait(WAIT)
        states = [j.state for j in session.jobs()]
        assert states.count(JobState.CANCELLED) >= 4
        assert sim.stats()["submits_accepted"] <= 2
        assert "Cancelled" in text_of(panel.message)
        assert panel.progress.bar_style == "warning"
        assert any(b.button_style == "warning" for b in panel.cells.children)
        assert not panel.generate_button.disabled and panel.cancel_button.disabled
        panel.cancel_button.click()
        assert "Nothing is running" in text_of(panel.message)

        sim.configure(latency=(0.1, 0.2))
        panel.x_axis.value = ""
        generate(panel)
        assert session.jobs()[-1].state is JobState.DONE
        assert "Done: 1 image" in text_of(panel.message)
    finally:
        panel.wait(WAIT)
        panel.close()
        session.close()


def test_cancel_after_the_submit_keeps_the_paid_image(sim: SimServer, fast_settings: Settings) -> None:
    """Cancel goes through the run's result: a submitted image is paid, so it is said so and still collected."""
    sim.configure(latency=(3.0, 3.5))  # time to press Cancel between the submit and the image
    session = Session(fast_settings)
    panel = Panel(session=session)
    try:
        panel.prompt.value = "a paper-cut heron"
        panel.generate_button.click()
        job = wait_for(lambda: next((j for j in session.jobs() if j.task_id), None), WAIT, "the submit")
        panel.cancel_button.click()
        assert "Cancelled 0 requests that were not sent yet. 1 already submitted (paid)" in text_of(panel.message)
        assert panel.wait(WAIT)
        assert job.state is JobState.DONE and sim.stats()["submits_accepted"] == 1
        assert "Done: 1 image" in text_of(panel.message)
    finally:
        panel.wait(WAIT)
        panel.close()
        session.close()


# ------------------------------------------------------------------ backend errors


@pytest.fixture
def strict_sim() -> Iterator[SimServer]:
    """A simulator that accepts one key only (not the one the test session uses)."""
    server = SimServer(
        config=SimConfig(latency=(0.1, 0.2), queue_delay=(0.0, 0.05), seed=3), accepted_keys=["sk-right"]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_401_shows_a_clear_message_and_the_panel_stays_usable(
    strict_sim: SimServer, fast_settings: Settings, tmp_path: Path
) -> None:
    wrong = fast_settings.replace(backend="toapis", api_key=FAKE_KEY, base_url=strict_sim.base_url)
    right = fast_settings.replace(
        backend="toapis", api_key="sk-right", base_url=strict_sim.base_url, output_dir=tmp_path / "right"
    )
    reset_session(wrong)
    try:
        panel = Panel()  # bound to the default session, like %gemimg panel
        assert "ToAPIs" in text_of(panel.header)
        panel.prompt.value = "a fox"
        generate(panel)
        msg = text_of(panel.message)
        assert "1 of 1 failed" in msg and ("401" in msg or "key" in msg.lower())
        assert "%gemimg login" in msg and "Settings(" not in msg  # the hint in the words %%gemimg uses
        assert panel.progress.bar_style == "danger"
        assert "No image" in text_of(panel.result_hint)
        assert strict_sim.stats()["submits_accepted"] == 0 and strict_sim.stats()["auth_failures"] >= 1
        assert FAKE_KEY not in all_text(panel)
        assert not panel.generate_button.disabled

        reset_session(right)  # what %gemimg login does
        generate(panel)
        assert "Done: 1 image" in text_of(panel.message)
        assert strict_sim.stats()["submits_accepted"] == 1
        assert FAKE_KEY not in all_text(panel) and "sk-right" not in all_text(panel)
        panel.close()
    finally:
        reset_session()


# ------------------------------------------------------------------ the reproducing cell


def test_magic_cell_quotes_and_skips_swept_parameters() -> None:
    state = {
        "prompt": "  a fox in a forest \n",
        "model": "gemini-2.5-flash-image-official",
        "size": "16:9",
        "resolution": "1K",
        "temperature": 0.8,
        "top_p": 0.95,
        "repeats": 2,
        "reference_paths": ("gemimg_outputs/references/ab-my ref.png",),
        "axes": (("temperature", "0.2-1.4 [4]"), ("size", "1:1,16:9")),
        "fresh": False,
        "confirm": True,
    }
    assert magic_cell(state) == (
        "%%gemimg --model gemini-2.5-flash-image-official --resolution 1K --top-p 0.95 "
        "--ref 'gemimg_outputs/references/ab-my ref.png' --sweep 'temperature=0.2-1.4 [4]' "
        "--sweep size=1:1,16:9 --repeats 2 --yes\na fox in a forest"
    )


def test_threads_only_touch_prebuilt_widgets(panel: Panel) -> None:
    """Widgets made by worker threads would be a bug: every widget is made before Generate returns."""
    panel.prompt.value = "a fox"
    sweep_over(panel, "temperature=0.2,0.4,0.6")
    panel.generate_button.click()
    made = len(panel.state.widgets)
    assert panel.wait(WAIT)
    assert len(panel.state.widgets) == made


# ------------------------------------------------------------------ the magic and the panel agree


def test_magic_panel_shares_the_session_and_its_cell_reproduces_the_result(
    ip: Any, fast_settings: Settings, sim: SimServer
) -> None:
    reset_session(fast_settings)
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.run_line_magic("config", "GemimgMagics.size = '4:3'")
    ip.run_line_magic("config", "GemimgMagics.temperature = 0.6")
    panel = ip.run_line_magic("gemimg", "panel")
    try:
        assert isinstance(panel, Panel) and panel.session is get_session()
        assert panel.size.value == "4:3" and panel.temperature.value == pytest.approx(0.6)  # %config defaults

        panel.prompt.value = "a teapot on a marble table"
        panel.upload.value = (upload_item("product.png", png(color=(240, 200, 40))),)
        generate(panel)
        sweep_over(panel, "temperature=0.2,1.0")
        generate(panel)
        sent = sim.stats()["submits_accepted"]
        assert sent == 3

        # the panel's cell, run by the magic, asks for exactly the same images: all cached
        line, body = panel.magic.value.split("\n", 1)
        ip.run_cell_magic("gemimg", line.removeprefix("%%gemimg").strip() + " -o again --wait", body)
        again = ip.user_ns["again"]
        assert all(job.cached for job in again.jobs)
        panel.x_axis.value = ""
        line, body = panel.magic.value.split("\n", 1)
        ip.run_cell_magic("gemimg", line.removeprefix("%%gemimg").strip() + " -o single --wait", body)
        assert ip.user_ns["single"].cached
        assert sim.stats()["submits_accepted"] == sent
    finally:
        panel.wait(WAIT)
        panel.close()


def test_magic_panel_asks_for_a_yes_and_draws_cells_as_the_extension_is_configured(
    ip: Any, fast_settings: Settings, sim: SimServer
) -> None:
    """``%config GemimgMagics.confirm_above_usd`` and ``cell_size`` reach the panel as they reach ``%%gemimg``."""
    reset_session(fast_settings)
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    unset = ip.run_line_magic("gemimg", "panel")
    ip.run_line_magic("config", "GemimgMagics.confirm_above_usd = 0.05")
    ip.run_line_magic("config", "GemimgMagics.cell_size = 128")
    panel = ip.run_line_magic("gemimg", "panel")
    try:
        for p in (unset, panel):
            p.prompt.value = "an owl"
            sweep_over(p, "temperature=0.2,0.8")  # 2 × $0.0488 ≈ $0.10: over $0.05, under the default $1.00
        assert unset.confirm.layout.visibility == "hidden" and "tick" not in text_of(unset.plan_html)
        assert panel.confirm.layout.visibility == "visible" and panel.confirm.description == "allow over $0.05"
        assert "over $0.05: tick “allow”" in text_of(panel.plan_html)
        panel.generate_button.click()
        assert "confirmation threshold" in text_of(panel.message)
        assert get_session().jobs() == [] and sim.stats()["submits_accepted"] == 0

        panel.confirm.value = True
        generate(panel)
        assert "Done: 2 images" in text_of(panel.message)
        (sweep,) = get_session().sweeps
        assert sweep.cell_size == 128
        assert image_size(panel.result_image.value) == image_size(png_bytes(sweep.grid(cell_size=128)))
        assert image_size(panel.result_image.value) != image_size(png_bytes(sweep.grid(cell_size=320)))
    finally:
        for p in (unset, panel):
            p.wait(WAIT)
            p.close()


def test_a_running_job_has_one_truth_in_the_bar_and_the_detail_card(tmp_output: Path) -> None:
    """While the image is on its way, the detail card follows the bar: same state word, same cost."""
    import time

    from .support import quick_settings

    with SimServer(SimConfig(latency=(3.0, 3.5), queue_delay=(0.0, 0.02), seed=5)) as slow:
        session = Session(quick_settings(tmp_output, base_url=slow.base_url))
        panel = Panel(session=session)
        try:
            panel.prompt.value = "a slow teapot"
            panel.generate_button.click()
            assert "Submitting" not in text_of(panel.message) and "Running" in text_of(panel.message)
            seen: list[tuple[str, str]] = []
            agreed = None
            deadline = time.monotonic() + 15
            while agreed is None and time.monotonic() < deadline and not panel.wait(0.1):
                before = " ".join(text_of(panel.detail_html).split())
                bar = panel.progress_text.value  # e.g. "in progress 40% · 1.2 s · $0.05"
                card = " ".join(text_of(panel.detail_html).split())
                if card != before:
                    continue  # read between two updates: look again
                state = bar.split(" · ")[0].rstrip("0123456789% ").strip()
                cost = bar.split(" · ")[-1]
                seen.append((bar, card))
                if state in ("submitted", "in progress") and f"state {state}" in card and f"cost {cost}" in card:
                    agreed = (bar, card)
            assert agreed is not None, f"the card never agreed with the bar while running: {seen[-3:]}"
            assert panel.wait(WAIT)
            assert "state done" in " ".join(text_of(panel.detail_html).split())
        finally:
            panel.close()
            session.close()


# ------------------------------------------------------------------ the "Advanced" section (the gateway's controls)

OFFICIAL_31 = "gemini-3.1-flash-image-official"
FLASH_31 = "gemini-3.1-flash-image-preview"


def shown_controls(panel: Panel) -> set[str]:
    """The controls whose rows the Advanced section shows (a row is the value widget or holds it)."""
    rows = [row for row in panel.advanced.children[0].children if row.layout.display != "none"]
    return {
        name
        for name, widget in panel.controls.items()
        for row in rows
        if widget is row or widget in getattr(row, "children", ())
    }


def test_the_advanced_section_is_the_table_and_shows_only_what_the_model_takes(panel: Panel) -> None:
    from gemimg_jupyter.domain.models import MODELS
    from gemimg_jupyter.domain.params import CONTROL_PARAMS

    assert panel.advanced.selected_index is None, "collapsed until opened"
    assert set(panel.controls) == {c.name for c in CONTROL_PARAMS}, "one widget per row of the table"
    assert any(c.startswith("gemimg-advanced-") for c in panel.controls["thinking"]._dom_classes)
    for spec in MODELS.values():
        panel.model.value = spec.id
        assert shown_controls(panel) == {c.name for c in CONTROL_PARAMS if spec.takes(c.name)}, spec.id
        assert all(panel.read_state()[c.name] is None for c in CONTROL_PARAMS), "nothing set, nothing sent"
    panel.model.value = "gemini-2.5-flash-image-preview"
    assert shown_controls(panel) == {"orientation"}
    assert "takes: orientation" in text_of(panel.advanced.children[0].children[-1])


def test_thinking_high_reaches_the_body_and_the_cell(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.model.value = OFFICIAL_31
    panel.prompt.value = "A paper-cut fox in a forest"
    panel.controls["thinking"].value = "high"
    assert "--thinking high" in panel.magic_text()
    assert "--thinking high" in panel.magic.value  # the "Reproduce as a cell" box follows
    generate(panel)
    meta = sim.stats()["metadata"][-1]
    assert meta["thinkingConfig"] == {"thinkingLevel": "HIGH"}
    assert panel.state.run is not None and panel.state.run.plan.cells[0].params.control("thinking") == "high"


def test_numbers_formats_and_safety_reach_the_body_and_the_cell(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.model.value = OFFICIAL_31
    panel.prompt.value = "A paper-cut owl"
    panel.controls["output_format"].value = "jpeg"
    assert not panel.control_ticks["quality"].value
    panel.controls["quality"].value = 70  # typing a number ticks its box
    assert panel.control_ticks["quality"].value
    panel.controls["safety"].value = "hate_speech=off, HARASSMENT=BLOCK_ONLY_HIGH"
    cell = panel.magic_text()
    assert "--format jpeg --quality 70" in cell
    assert "--safety HARASSMENT=BLOCK_ONLY_HIGH --safety HATE_SPEECH=OFF" in cell
    generate(panel)
    meta = sim.stats()["metadata"][-1]
    assert meta["imageOutputOptions"] == {"mimeType": "image/jpeg", "compressionQuality": 70}
    assert meta["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"},
        {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"},
    ]
    panel.control_ticks["quality"].value = False  # unticked: not sent
    assert panel.read_state()["quality"] is None and "--quality" not in panel.magic_text()


def test_a_bad_combination_is_one_line_and_no_request(panel: Panel, session: Session, sim: SimServer) -> None:
    panel.model.value = FLASH_31
    panel.prompt.value = "A paper-cut owl"
    panel.controls["image_search"].value = True
    assert "image-search needs --search" in text_of(panel.plan_html)  # the core's words, live
    panel.generate_button.click()
    assert "image-search needs --search" in text_of(panel.message)
    assert panel.state.run is None and sim.stats()["submits_accepted"] == 0
    panel.controls["search"].value = True
    generate(panel)
    meta = sim.stats()["metadata"][-1]
    assert meta["google_search"] is True and meta["google_image_search"] is True


def test_a_control_the_new_model_lacks_is_not_sent_and_a_swept_one_is_greyed(panel: Panel) -> None:
    panel.model.value = OFFICIAL_31
    panel.prompt.value = "A paper-cut owl"
    panel.controls["thinking"].value = "high"
    panel.model.value = "gemini-2.5-flash-image-official"  # no thinking
    assert panel.read_state()["thinking"] is None and "--thinking" not in panel.magic_text()
    assert "thinking" not in shown_controls(panel)
    panel.model.value = OFFICIAL_31  # the value is kept for when it comes back
    assert panel.read_state()["thinking"] == "high"
    sweep_over(panel, "thinking=minimal,high")
    assert panel.controls["thinking"].disabled and panel.read_state()["thinking"] is None
    cell = panel.magic_text()
    assert "--sweep thinking=minimal,high" in cell and "--thinking " not in cell
    assert "2 requests" in text_of(panel.plan_html)


def test_magic_cell_writes_each_control_as_its_option() -> None:
    state = {
        "prompt": "a fox",
        "model": OFFICIAL_31,
        "size": "1:1",
        "resolution": "1K",
        "thinking": "HIGH",
        "thinking_budget": 512,
        "search": True,
        "person_generation": None,
        "axes": (("format", "png,webp"),),
    }
    text = magic_cell({**state, "output_format": "jpeg"})
    assert "--thinking high --thinking-budget 512 --search --sweep format=png,webp" in text
    assert "--format" not in text.replace("--sweep format", "")


def test_the_cell_with_controls_run_by_the_magic_asks_for_the_same_image(
    ip: Any, fast_settings: Settings, sim: SimServer
) -> None:
    reset_session(fast_settings)
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    panel = ip.run_line_magic("gemimg", "panel")
    try:
        panel.model.value = OFFICIAL_31
        panel.prompt.value = "a teapot on a marble table"
        panel.controls["thinking"].value = "low"
        panel.controls["person_generation"].value = "allow_none"
        panel.controls["max_output_tokens"].value = 4096
        panel.controls["safety"].value = "dangerous_content=block_low_and_above"
        generate(panel)
        assert sim.stats()["submits_accepted"] == 1
        line, body = panel.magic.value.split("\n", 1)
        ip.run_cell_magic("gemimg", line.removeprefix("%%gemimg").strip() + " -o again --wait", body)
        assert ip.user_ns["again"].cached, "the cell's controls make the same cache key"
        assert sim.stats()["submits_accepted"] == 1
    finally:
        panel.wait(WAIT)
        panel.close()
