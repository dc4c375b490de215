"""The gateway's documented controls (thinking, search, person, format, safety …): one table row each.

Each control reaches the simulator's request body exactly as the reference documents it
(``metadata`` field, value spelling), a control on a model whose page does not document it is
one line and no request, and a sweep over a control draws tiles that differ.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from gemimg_jupyter.api.session import Session, get_session, reset_session
from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import MODELS, GenerationParams
from gemimg_jupyter.domain.params import CONTROL_PARAMS, CONTROLS, PARAM_SPECS, ParamValues
from gemimg_jupyter.plans.axes import AXIS_NAMES

from .support import FAKE_KEY, quick_settings, wait_for

OFFICIAL_31 = "gemini-3.1-flash-image-official"
FLASH_31 = "gemini-3.1-flash-image-preview"
PRO_3 = "gemini-3-pro-image-preview"

#: One row per control: the %%gemimg options, the model, and the metadata the gateway documents for it.
CASES = [
    pytest.param("--thinking high", OFFICIAL_31, {"thinkingConfig": {"thinkingLevel": "HIGH"}}, id="thinking"),
    pytest.param("--thinking-budget 512", OFFICIAL_31, {"thinkingConfig": {"thinkingBudget": 512}}, id="budget"),
    pytest.param("--search", FLASH_31, {"google_search": True}, id="search"),
    pytest.param(
        "--search --image-search", FLASH_31, {"google_search": True, "google_image_search": True}, id="image-search"
    ),
    pytest.param("--person allow_adult", OFFICIAL_31, {"personGeneration": "ALLOW_ADULT"}, id="person"),
    pytest.param("--format webp", OFFICIAL_31, {"imageOutputOptions": {"mimeType": "image/webp"}}, id="format"),
    pytest.param(
        "--format jpeg --quality 70",
        OFFICIAL_31,
        {"imageOutputOptions": {"mimeType": "image/jpeg", "compressionQuality": 70}},
        id="quality",
    ),
    pytest.param(
        "--safety hate_speech=off --safety HARM_CATEGORY_HARASSMENT=BLOCK_ONLY_HIGH",
        OFFICIAL_31,
        {
            "safetySettings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"},
                {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"},
            ]
        },
        id="safety",
    ),
    pytest.param("--max-tokens 4096", OFFICIAL_31, {"maxOutputTokens": 4096}, id="max-tokens"),
    pytest.param("--orientation portrait", PRO_3, {"orientation": "portrait"}, id="orientation"),
]


@pytest.fixture
def gem(ip: Any, tmp_output: Path) -> Iterator[Any]:
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    yield ip


def received(sess: Session, n: int = 1) -> list[dict[str, Any]]:
    """The ``metadata`` of the accepted submits the simulator received (waits for ``n`` of them)."""
    return list(wait_for(lambda: sess.sim.stats()["metadata"][n - 1 :] and sess.sim.stats()["metadata"], 10, "submits"))


@pytest.mark.parametrize(("options", "model", "expected"), CASES)
def test_each_control_reaches_the_body_as_documented(gem: Any, options: str, model: str, expected: dict) -> None:
    gem.run_cell_magic("gemimg", f"-m {model} {options}", "A paper-cut fox in a forest")
    meta = received(get_session())[-1]
    for key, value in expected.items():
        assert meta[key] == value, key
    # nothing else of the control kind was sent
    sent = {k for k in meta if k not in ("temperature", "topP", "resolution")}
    assert sent == set(expected)


def test_every_control_of_the_table_has_a_case_and_a_keyword() -> None:
    tested = {part.split()[0] for case in CASES for part in case.values[0].split(" --")}
    options = {spec.option.removeprefix("--") for spec in CONTROL_PARAMS if spec.option}
    assert {t.removeprefix("--") for t in tested} == options
    keys = ParamValues.__optional_keys__
    assert all(spec.name in keys for spec in CONTROL_PARAMS), "ParamValues names every control"
    assert {"thinking", "search", "format", "person"} <= set(AXIS_NAMES)


def test_the_python_keywords_reach_the_body(session: Session, sim: Any) -> None:
    job = session.generate("A paper-cut owl", model=OFFICIAL_31, thinking="minimal", output_format="png", wait=True)
    assert job.state.has_image and job.params.control("thinking") == "minimal"
    meta = sim.stats()["metadata"][-1]
    assert meta["thinkingConfig"] == {"thinkingLevel": "MINIMAL"}
    assert meta["imageOutputOptions"] == {"mimeType": "image/png"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--thinking high", "thinking is not documented for gemini-2.5-flash-image-official"),
        ("-m gemini-3.1-flash-image-preview --orientation portrait", "orientation is not documented for"),
        ("-m gemini-3.1-flash-image-preview --image-search", "image-search needs --search"),
        ("--quality 80", "quality needs --format jpeg"),
        ("-m gemini-3.1-flash-image-official --thinking huge", "thinking 'huge' is not allowed"),
        ("--safety violence=off", "write CATEGORY=THRESHOLD"),
        ("-m gemini-3.1-flash-image-official --thinking-budget 30000", "use a whole number from 0 to 24576"),
    ],
)
def test_a_control_the_model_lacks_is_one_line_and_no_request(gem: Any, options: str, message: str) -> None:
    sess = get_session()
    before = sess.sim.stats()["requests"]
    with pytest.raises(UsageError) as info:
        gem.run_cell_magic("gemimg", options, "A paper-cut fox")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert sess.sim.stats()["requests"] == before


def test_a_sweep_over_thinking_draws_two_tiles_that_differ(session: Session, sim: Any) -> None:
    result = session.sweep("A paper-cut fox", axes=["thinking=minimal,high"], model=OFFICIAL_31)
    assert result.done() and result.plan.shape[:2] == (2, 1)
    a, b = (cell.params for cell in result.plan.cells)
    assert (a.control("thinking"), b.control("thinking")) == ("minimal", "high")
    assert a.cache_key() != b.cache_key()
    images = [job.image for job in result.jobs]
    assert images[0].size == images[1].size and images[0].tobytes() != images[1].tobytes()
    levels = [m["thinkingConfig"]["thinkingLevel"] for m in sim.stats()["metadata"]]
    assert sorted(levels) == ["HIGH", "MINIMAL"]


def test_controls_are_in_the_key_and_provenance_and_round_trip() -> None:
    plain = GenerationParams.create("A fox", model=OFFICIAL_31)
    hot = GenerationParams.create("A fox", model=OFFICIAL_31, search=None, thinking="high")
    assert "controls" not in plain.as_dict() and hot.as_dict()["controls"] == {"thinking": "high"}
    assert plain.cache_key() != hot.cache_key()
    safe = GenerationParams.create("A fox", model=OFFICIAL_31, safety={"hate_speech": "off"})
    again = json.loads(json.dumps(safe.as_dict()))
    assert GenerationParams.create("A fox", model=OFFICIAL_31, **again["controls"]).cache_key() == safe.cache_key()


def test_the_simulator_refuses_a_control_the_model_does_not_document(sim: Any) -> None:
    body = {"model": "gemini-2.5-flash-image-official", "prompt": "a fox", "metadata": {"google_search": True}}
    req = urllib.request.Request(
        sim.base_url + "/v1/images/generations",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "application/json", "User-Agent": "t"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 400
    error = json.loads(info.value.read())["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == "metadata.google_search"


def test_availability_is_the_model_tables_column() -> None:
    thinking = sorted(spec.id for spec in MODELS.values() if spec.takes("thinking"))
    assert thinking == sorted(
        [
            "gemini-3-pro-image-official",
            "gemini-3-pro-image-preview-official",
            "gemini-3.1-flash-image-official",
            "gemini-3.1-flash-image-preview-official",
        ]
    )
    assert all(name in CONTROLS for spec in MODELS.values() for name in spec.controls)
    with pytest.raises(ValidationError):
        GenerationParams.create("A fox", model="gemini-3-pro-image-preview-vip", orientation="portrait")
    assert [s.name for s in PARAM_SPECS if s.control] == [s.name for s in CONTROL_PARAMS]
