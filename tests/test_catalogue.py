"""The live catalogue, model lifecycle, prices by resolution and finish reasons, against the simulator.

The simulator's ``/v1/models`` lists what ``listed_models``/``unserved_models`` say, ``/v1/pricing``
prices 3.1 Flash per resolution, and blocked tasks report the configured ``finishReason``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.api.session import Session, get_session, reset_session
from gemimg_jupyter.domain.catalogue import CATALOGUE_FILE, Catalogue, parse_pricing
from gemimg_jupyter.domain.errors import ModelUnavailableError, TaskBlockedError, TaskFailedError, ValidationError
from gemimg_jupyter.domain.finish import FINISH_REASONS
from gemimg_jupyter.domain.models import MODELS, GenerationParams, price_text, use_catalogue

from .support import quick_settings

NEW_ID = "gemini-3.5-flash-image-lite"
FLASH_31 = "gemini-3.1-flash-image-preview"


@pytest.fixture(autouse=True)
def _no_catalogue() -> Iterator[None]:
    """Every test starts and ends with the built-in table alone (the catalogue is per process)."""
    use_catalogue(None)
    yield
    use_catalogue(None)


def test_an_unknown_listed_id_runs_end_to_end_and_is_said_once(session: Session, sim: Any) -> None:
    sim.configure(listed_models=[NEW_ID])
    with pytest.raises(ValidationError, match="or one the gateway's catalogue lists, once it is read"):
        session.params("A fox", model=NEW_ID)  # not read yet: the built-in table refuses it
    said: list[str] = []
    session.say = said.append
    catalogue = session.refresh_catalogue()
    assert catalogue is not None and NEW_ID in catalogue.listed
    assert (session.store_root / CATALOGUE_FILE).is_file()
    job = session.generate("A paper-cut fox", model=NEW_ID, size="16:9", resolution="2K")
    assert job.state.has_image and job.image.size == (2688, 1536)
    session.generate("A paper-cut owl", model=NEW_ID)
    assert said == [f"{NEW_ID}: not in the built-in table; sizes and controls are not checked here"]
    assert sim.stats()["submits_accepted"] == 2


def test_the_magic_lists_the_merged_catalogue_with_status(ip: Any, tmp_output: Path, capsys: Any) -> None:
    reset_session(quick_settings(tmp_output, sim_options={"latency": (0.05, 0.2), "listed_models": [NEW_ID]}))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    capsys.readouterr()
    table = ip.run_line_magic("gemimg", "models --refresh").text
    assert "the gateway lists" in capsys.readouterr().out
    assert f"{NEW_ID} · unknown · listed" in table
    assert "gemini-3-pro-image-official · official · listed" in table
    assert "controls: temperature, top_p, thinking, thinking-budget, person" in table
    view = ip.run_cell_magic("gemimg", f"-m {NEW_ID} --wait", "A paper-cut fox")
    assert view.job.state.has_image
    out = capsys.readouterr().out
    assert out.count("not in the built-in table") == 1


def test_a_listed_built_in_id_the_catalogue_drops_warns_before_paying(session: Session, sim: Any) -> None:
    sim.configure(unserved_models=[FLASH_31])
    session.refresh_catalogue()
    said: list[tuple[str, int]] = []
    session.say = lambda line: said.append((line, sim.stats()["requests"]))
    before = sim.stats()["requests"]
    session.params("A fox", model=FLASH_31)
    session.params("A cat", model=FLASH_31)
    assert len(said) == 1 and said[0][1] == before, "one line, before any request"
    line = said[0][0]
    assert "shut down on 2026-06-25" in line and "use gemini-3.1-flash-image-official instead" in line


def test_a_shut_down_model_answered_model_not_found_names_its_successor(session: Session, sim: Any) -> None:
    sim.configure(unserved_models=[FLASH_31])
    with pytest.raises(ModelUnavailableError) as info:
        session.client.submit(GenerationParams.create("A fox", model=FLASH_31), client_business_id="t-1")
    assert info.value.hint == (
        "gemini-3.1-flash-image-preview was shut down upstream on 2026-06-25; use gemini-3.1-flash-image-official instead"
    )
    assert sim.stats()["submits_accepted"] == 0


def test_past_shutdown_is_quiet_while_the_catalogue_lists_it(session: Session, sim: Any) -> None:
    session.refresh_catalogue()
    said: list[str] = []
    session.say = said.append
    session.params("A fox", model=FLASH_31)
    assert said == []
    assert MODELS[FLASH_31].past_shutdown("2026-12-07") and not MODELS[FLASH_31].past_shutdown("2026-06-24")


def test_prices_by_resolution_come_from_the_price_list(session: Session, sim: Any) -> None:
    plan = session.plan("A fox", axes=["resolution=0.5K,1K,2K,4K"], model=FLASH_31)
    assert [c.params.price_usd for c in plan.cells] == [None, 0.025, None, None]
    assert "no published price" in plan.summary()
    assert "no published price" in price_text(MODELS[FLASH_31])
    session.refresh_catalogue()
    plan = session.plan("A fox", axes=["resolution=0.5K,1K,2K,4K"], model=FLASH_31)
    prices = [c.params.price_usd for c in plan.cells]
    assert prices == [0.018, 0.025, 0.038, 0.05] and len(set(prices)) == 4
    assert plan.summary().endswith("≈ $0.13")
    assert price_text(MODELS[FLASH_31]) == "0.5K $0.018 · 1K $0.025 · 2K $0.038 · 4K $0.05"
    job = session.generate("A fox", model=FLASH_31, resolution="4K")
    assert job.state.has_image and job.cost_usd == pytest.approx(0.05)  # the gateway billed the 4K price


def test_a_catalogue_is_kept_a_day_and_read_back() -> None:
    now = time.time()
    kept = Catalogue(("a", "b"), now - 3600, "http://x", {"a": {"1K": 0.01, "*": 0.02}})
    again = Catalogue.from_json(kept.to_json())
    assert again == kept and again.fresh(now, "http://x") and not again.fresh(now, "http://y")
    assert not again.fresh(now + 24 * 3600, "http://x")
    assert again.price("a", "1K") == 0.01 and again.price("a", "4K") == 0.02 and again.price("b", "1K") is None
    assert Catalogue.from_json("{not json") is None
    body = {"data": [{"id": "m", "prices": [{"conditions": {"resolution": "2k"}, "unit_price": "0.5"},
                                            {"charge_type": "per_token", "unit_price": "9"}]}]}  # fmt: skip
    assert parse_pricing(body) == {"m": {"2K": 0.5}}


@pytest.mark.parametrize("reason", FINISH_REASONS, ids=lambda r: r.word)
def test_each_finish_reason_has_its_own_outcome_and_keeps_the_models_text(tmp_output: Path, reason: Any) -> None:
    options = {"latency": (0.05, 0.1), "blocked_rate": 1.0, "finish_reason": reason.word, "model_text": "I drew a poem"}
    with Session(quick_settings(tmp_output, sim_options=options)) as s:
        job = s.generate("A paper-cut fox", wait=False)
        job.wait(20)
        error = job.exception
    assert isinstance(error, TaskBlockedError if reason.blocked else TaskFailedError)
    assert isinstance(error, TaskBlockedError) is reason.blocked
    text = str(error)
    assert reason.outcome in text and reason.hint in text and reason.word in text
    assert 'the model said: "I drew a poem"' in text


def test_controls_of_a_generic_model_pass_through() -> None:
    use_catalogue(Catalogue((NEW_ID,), time.time()))
    params = GenerationParams.create("A fox", model=NEW_ID, thinking="high", temperature=0.5)
    assert params.request_body()["metadata"]["thinkingConfig"] == {"thinkingLevel": "HIGH"}
    assert params.temperature == 0.5 and GenerationParams.create("A fox", model=NEW_ID).temperature is None
    assert get_session is not None  # the module-level API stays importable beside the catalogue


def test_load_ext_says_once_read_that_the_catalogue_drops_the_default_model(
    ip: Any, sim: Any, tmp_output: Path, capsys: Any
) -> None:
    from gemimg_jupyter.domain.params import DEFAULT_MODEL

    from .support import sim_settings

    settings = sim_settings(sim, tmp_output)
    reset_session(settings)
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    assert "does not list the default model" not in capsys.readouterr().out  # never read: nothing to say
    ip.run_line_magic("unload_ext", "gemimg_jupyter")

    sim.configure(unserved_models=[DEFAULT_MODEL])
    reset_session(settings)
    get_session().refresh_catalogue()  # read once; kept in the output folder
    use_catalogue(None)  # a new kernel: only the output folder's copy is left
    requests = sim.stats()["requests"]
    reset_session(settings)
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    lines = [line for line in capsys.readouterr().out.splitlines() if "does not list the default model" in line]
    assert lines == [
        f"gemimg: the gateway's catalogue does not list the default model {DEFAULT_MODEL}; "
        "set another with %config GemimgMagics.model, e.g. 'gemini-3.1-flash-image-official'"
    ]
    assert sim.stats()["requests"] == requests  # said from what was read, without asking the gateway
