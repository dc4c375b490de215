"""Model registry and parameter validation: every bad value is one clear line, before any request."""

from __future__ import annotations

import dataclasses
import io
import pickle

import pytest
from PIL import Image

from gemimg_jupyter.api.session import Session
from gemimg_jupyter.domain.errors import APIError, AuthenticationError, ValidationError, redact, register_secret
from gemimg_jupyter.domain.models import MODELS, GenerationParams, get_model, pixel_size
from gemimg_jupyter.domain.params import PARAM_SPECS, ParamKwargs, ParamValues
from gemimg_jupyter.domain.settings import Secret, Settings
from gemimg_jupyter.draw.images import load_reference, png_with_provenance, read_provenance


def png(w: int = 64, h: int = 64, color: tuple[int, int, int] = (200, 80, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


def test_defaults_follow_the_issue() -> None:
    p = GenerationParams.create("a fox")
    assert (p.model, p.size, p.resolution, p.temperature, p.top_p) == (
        "gemini-2.5-flash-image-official",
        "1:1",
        "1K",
        0.8,
        0.95,
    )


def test_the_parameter_table_is_what_the_typed_signatures_and_the_fields_say() -> None:
    """The typed keyword lists and ``GenerationParams``' fields are written by hand: they must match the table."""
    keywords = {p.keyword for p in PARAM_SPECS if p.keyword}
    assert set(ParamKwargs.__optional_keys__) == keywords
    assert set(ParamValues.__optional_keys__) == keywords - {"reference_images"}
    # the controls (thinking, search …) are one field, ``controls``, not a field each
    assert {f.name for f in dataclasses.fields(GenerationParams)} == {p.name for p in PARAM_SPECS if not p.control} | {
        "controls"
    }
    assert GenerationParams("a fox") == GenerationParams.create("a fox")  # field defaults are the table's


def test_a_misspelt_parameter_is_refused_as_python_would(session: Session) -> None:
    with pytest.raises(TypeError, match=r"GenerationParams.create\(\) got an unexpected keyword argument 'temprature'"):
        GenerationParams.create("a fox", temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Session.params\(\) got an unexpected keyword argument 'refs'"):
        session.params("a fox", refs=[])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Session.generate\(\) got an unexpected keyword argument 'seed'"):
        session.generate("a fox", seed=1)  # type: ignore[call-arg]
    assert session.jobs() == []  # refused before anything was submitted


@pytest.mark.parametrize(
    ("size", "res", "expected"),
    [
        ("16:9", "1K", (1344, 768)),
        ("1:1", "1K", (1024, 1024)),
        ("9:16", "2K", (1536, 2688)),
        ("21:9", "4K", (6144, 2688)),
    ],
)
def test_pixel_sizes(size: str, res: str, expected: tuple[int, int]) -> None:
    assert pixel_size(size, res) == expected


def test_registry_has_the_documented_models() -> None:
    for name in (
        "gemini-2.5-flash-image-official",
        "gemini-2.5-flash-image-preview",
        "gemini-3-pro-image-preview",
        "gemini-3.1-flash-image-preview",
    ):
        assert name in MODELS
    assert get_model("nano-banana-official").id == "gemini-2.5-flash-image-official"
    assert get_model(None).price_usd == 0.0488


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"size": "5:3"}, "size '5:3' is not supported by gemini-2.5-flash-image-official; use one of 1:1"),
        ({"resolution": "2K"}, "resolution '2K' is not supported by gemini-2.5-flash-image-official (1K-class"),
        ({"temperature": 2.5}, "temperature 2.5 is not allowed; use a number from 0 to 2"),
        ({"temperature": "hot"}, "temperature 'hot' is not allowed"),
        ({"top_p": -0.1}, "top_p -0.1 is not allowed; use a number from 0 to 1"),
        ({"model": "gemini-9"}, "model 'gemini-9' is not allowed; use one of gemini-2.5-flash-image-official"),
        ({"model": "gemini-2.5-flash-image-preview", "temperature": 0.5}, "temperature is not supported by"),
    ],
)
def test_bad_parameters_are_one_line(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        GenerationParams.create("a fox", **kwargs)  # type: ignore[arg-type]
    assert needle in one_line(info.value)


@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt(prompt: str) -> None:
    with pytest.raises(ValidationError, match="prompt is empty"):
        GenerationParams.create(prompt)


def test_prompt_limits() -> None:
    with pytest.raises(ValidationError, match="100,000 characters"):
        GenerationParams.create("x" * 100_000)
    with pytest.raises(ValidationError, match="control character"):
        GenerationParams.create("a fox\x00")


def test_prompt_limit_is_per_model() -> None:
    """2.5-preview's page caps prompts at 1,000 characters; the others state no such cap."""
    assert get_model("gemini-2.5-flash-image-preview").max_prompt_chars == 1_000
    assert get_model("nano-banana").max_prompt_chars == 1_000
    GenerationParams.create("x" * 1_000, model="gemini-2.5-flash-image-preview")
    with pytest.raises(ValidationError) as info:
        GenerationParams.create("x" * 1_001, model="gemini-2.5-flash-image-preview")
    assert one_line(info.value) == (
        "prompt is 1,001 characters; the limit on gemini-2.5-flash-image-preview is 1,000, shorten it"
    )
    GenerationParams.create("x" * 1_001)  # the default model takes it
    GenerationParams.create("x" * 1_001, model="gemini-3-pro-image-preview")


def test_ten_megabytes_is_ten_million_bytes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gemimg_jupyter.domain.models import MAX_REF_BYTES

    assert MAX_REF_BYTES == 10_000_000
    edge = tmp_path / "edge.png"
    edge.write_bytes(b"\x89PNG" + b"0" * (10_000_001 - 4))
    with pytest.raises(ValidationError) as info:
        load_reference(edge)
    assert "(10,000,001 bytes); the limit is 10 MB (10,000,000 bytes)" in one_line(info.value)


def test_official_3x_and_vip_models_take_their_own_fields() -> None:
    for newer, older, alias in (
        ("gemini-3-pro-image-official", "gemini-3-pro-image-preview-official", "nano-banana-pro-official"),
        ("gemini-3.1-flash-image-official", "gemini-3.1-flash-image-preview-official", "nano-banana-2-official"),
    ):
        assert get_model(alias).id == older
        for model in (newer, older):
            p = GenerationParams.create("a fox", model=model, resolution="2K", temperature=0.4, top_p=0.7)
            assert p.request_body()["model"] == model
            assert p.request_body()["metadata"] == {"temperature": 0.4, "topP": 0.7, "resolution": "2K"}
            assert MODELS[model].max_refs == 14
    for model in ("gemini-3.1-flash-image-official", "gemini-3.1-flash-image-preview-official"):
        assert GenerationParams.create("a fox", model=model, size="8:1").pixel_size == (3072, 384)
    with pytest.raises(ValidationError, match="size '8:1' is not supported by gemini-3-pro-image-official"):
        GenerationParams.create("a fox", model="gemini-3-pro-image-official", size="8:1")
    vip = GenerationParams.create("a fox", model="gemini-3-pro-image-preview-vip")
    assert vip.resolution == "2K" and vip.temperature is None
    assert vip.request_body()["metadata"] == {"resolution": "2K"}
    assert MODELS["gemini-3.1-flash-image-preview-vip"].default_resolution == "1K"
    with pytest.raises(ValidationError, match="temperature is not supported by gemini-3.1-flash-image-preview-vip"):
        GenerationParams.create("a fox", model="gemini-3.1-flash-image-preview-vip", temperature=0.5)


def test_reference_limits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    refs = [load_reference(png(color=(i * 40, 0, 0))) for i in range(4)]
    with pytest.raises(
        ValidationError, match="4 reference images given; gemini-2.5-flash-image-official accepts at most 3"
    ):
        GenerationParams.create("a fox", references=refs)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"0" * (12 * 1024 * 1024))
    with pytest.raises(ValidationError, match=r"12\.6 MB \(12,582,916 bytes\); the limit is 10 MB"):
        load_reference(big)
    fake = tmp_path / "notes.png"
    fake.write_text("this is text, not a picture")
    with pytest.raises(ValidationError, match="not a readable image"):
        load_reference(fake)
    gif = io.BytesIO()
    Image.new("RGB", (32, 32)).save(gif, format="GIF")
    with pytest.raises(ValidationError, match="reference 'bytes' is gif; use JPEG, PNG, WEBP"):
        GenerationParams.create("a fox", references=[load_reference(gif.getvalue())])
    with pytest.raises(ValidationError, match="does not exist"):
        load_reference(tmp_path / "missing.png")
    with pytest.raises(ValidationError, match="not int"):
        load_reference(42)


def test_cache_key_covers_reference_content_and_repeat() -> None:
    a = GenerationParams.create("fox", references=[load_reference(png(color=(1, 2, 3)))])
    b = GenerationParams.create("fox", references=[load_reference(png(color=(3, 2, 1)))])
    assert a.cache_key() != b.cache_key()
    assert a.cache_key(0) != a.cache_key(1)
    assert (
        a.cache_key() == GenerationParams.create("fox", references=[load_reference(png(color=(1, 2, 3)))]).cache_key()
    )


def test_request_body_shape() -> None:
    body = GenerationParams.create("fox", size="16:9").request_body(["https://x/y.png"], "cb-1")
    assert body == {
        "model": "gemini-2.5-flash-image-official",
        "prompt": "fox",
        "size": "16:9",
        "n": 1,
        "image_urls": ["https://x/y.png"],
        "client_business_id": "cb-1",
        "metadata": {"temperature": 0.8, "topP": 0.95},
    }
    body = GenerationParams.create("fox", model="gemini-3-pro-image-preview", resolution="2K").request_body()
    assert body["metadata"] == {"resolution": "2K"}


def test_key_is_masked_everywhere() -> None:
    key = "sk-test-FAKEKEY-masking-000000000"
    s = Settings(api_key=Secret(key))
    assert key not in repr(s) and key not in str(s)
    assert key not in repr(Settings.from_env({"TOAPIS_API_KEY": key}))
    register_secret(key)
    err = AuthenticationError(f"bad key {key}", status_code=401)
    assert key not in str(err) and key not in repr(err)
    assert redact(f"x {key} y") == "x *** y"
    with pytest.raises(TypeError):
        pickle.dumps(Secret(key))


def test_errors_pickle_round_trip() -> None:
    err = APIError("boom", status_code=503, code="x", request_id="r1")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.status_code, back.request_id) == (APIError, "boom", 503, "r1")


def test_settings_backend_choice() -> None:
    assert Settings.from_env({}).resolved_backend == "sim"
    assert Settings.from_env({"TOAPIS_API_KEY": "sk-test-1234"}).resolved_backend == "toapis"
    assert Settings.from_env({"TOAPIS_API_KEY": "sk-test-1234", "GEMIMG_BACKEND": "sim"}).resolved_backend == "sim"
    from gemimg_jupyter.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="set TOAPIS_API_KEY"):
        Settings.from_env({"GEMIMG_BACKEND": "toapis"}).require_key()
    with pytest.raises(ConfigError, match="GEMIMG_BACKEND='cloud' is not known"):
        Settings.from_env({"GEMIMG_BACKEND": "cloud"})


def test_provenance_round_trip() -> None:
    img = Image.new("RGB", (40, 30), (10, 20, 30))
    data = png_with_provenance(img, {"params": {"prompt": "fox", "size": "4:3"}, "task_id": "t1"})
    assert read_provenance(data)["task_id"] == "t1"
    with Image.open(io.BytesIO(data)) as back:
        assert back.info["parameters"].startswith("fox\n")


def test_sim_latency_from_env() -> None:
    assert Settings.from_env({"GEMIMG_SIM_LATENCY": "0.2,0.6"}).sim_options == {"latency": (0.2, 0.6)}
    fallback = Settings.from_env({"GEMIMG_SIM_LATENCY": "fast"})  # the default, and one line naming the variable
    assert fallback.sim_options == {} and [n.split("=")[0] for n in fallback.notes] == ["GEMIMG_SIM_LATENCY"]


def test_provenance_is_spliced_into_png_without_reencoding() -> None:
    from gemimg_jupyter.draw.images import embed_provenance

    img = Image.new("RGB", (48, 32), (200, 10, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    original = buf.getvalue()
    out = embed_provenance(original, {"params": {"prompt": "fox ü"}, "task_id": "t1"})
    again = embed_provenance(out, {"params": {"prompt": "owl"}, "task_id": "t2"})
    assert read_provenance(again) == {"params": {"prompt": "owl"}, "task_id": "t2"}
    assert again.count(b"iTXtgemimg") == 1  # replaced, not duplicated
    with Image.open(io.BytesIO(again)) as back:
        assert back.tobytes() == img.tobytes() and back.info["parameters"].startswith("owl\n")
    jpeg = io.BytesIO()
    img.save(jpeg, format="JPEG")
    assert read_provenance(embed_provenance(jpeg.getvalue(), {"task_id": "j"}))["task_id"] == "j"


def test_the_reference_limit_shown_to_users_is_10_mb() -> None:
    from gemimg_jupyter.display import models_table
    from gemimg_jupyter.panel import model_notes

    table = models_table(MODELS).text
    assert "≤10 MB" in table and "≤9 MB" not in table
    assert any("≤ 10 MB each" in line for line in model_notes(MODELS["gemini-2.5-flash-image-official"]))


def test_job_state_classifications_partition_the_states() -> None:
    from gemimg_jupyter.domain.models import JobState, state_values

    for state in JobState:
        kinds = [state.is_pending, state.has_image, state.shown_as_failed, state is JobState.CANCELLED]
        assert kinds.count(True) == 1, state
        assert state.is_terminal is not state.is_pending
        assert state.is_resumable is (state.is_pending or state is JobState.TIMEOUT)
    # the ledger's SQL words: pending first, then the timeout a later process may still collect
    assert state_values(frozenset(s for s in JobState if s.is_resumable)) == (
        "queued",
        "uploading",
        "submitting",
        "submitted",
        "in_progress",
        "downloading",
        "timeout",
    )
    # a grid shows a timeout as failed, the ledger resumes it: two names, two sets
    from gemimg_jupyter.draw import grid
    from gemimg_jupyter.ledger import store

    assert "timeout" in grid.FAILED_STATES and "timeout" not in grid.PENDING_STATES
    assert "timeout" in store.RESUMABLE_STATES
    assert {s.icon for s in JobState if s.shown_as_failed} == {"✗", "⊘", "⧗"}


def test_validation_errors_carry_field_and_value_and_errors_carry_their_hint() -> None:
    from gemimg_jupyter.domain.errors import AuthenticationError, TaskBlockedError, TaskFailedError

    err = ValidationError.not_allowed("size", "5:3", "use 1:1")
    assert (str(err), err.field, err.value) == ("size '5:3' is not allowed; use 1:1", "size", "'5:3'")
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.field) == (str(err), "size")
    said = ValidationError("prompt is empty; write what the image should show", field="prompt", value="")
    assert str(said).startswith("prompt is empty") and said.field == "prompt"
    assert "Settings(api_key=...)" in AuthenticationError.hint and TaskBlockedError.hint == TaskFailedError.hint != ""
    assert ValidationError.hint == ""
