"""The engine end to end against both dialects of the gateway: the documented one and New API's.

A Session starts its own simulator on loopback with ``style`` set, and runs
single images, a sweep, failures and a channel that answers 2K with 1K. The
parse layer must make the two styles indistinguishable to everything above it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gemimg_jupyter.api.session import Session
from gemimg_jupyter.display import job_error_line
from gemimg_jupyter.domain.errors import ModelUnavailableError, TaskBlockedError, ValidationError
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.draw.images import read_provenance

from .support import SIM_OPTIONS, quick_settings

STYLES = ("docs", "newapi")


@pytest.fixture(params=STYLES)
def styled(request: pytest.FixtureRequest, tmp_output: Path) -> Iterator[Session]:
    """A Session on its own simulator speaking ``request.param``."""
    session = Session(quick_settings(tmp_output, sim_options={**SIM_OPTIONS, "style": request.param}))
    try:
        yield session
    finally:
        session.close()


def sim_of(session: Session) -> Any:
    assert session.sim is not None
    return session.sim


def test_a_single_image_is_done_with_its_file_and_ledger_row(styled: Session) -> None:
    job = styled.generate("A paper-cut fox in a forest", size="16:9")
    assert job.state is JobState.DONE, job.error
    assert job.path is not None
    with Image.open(job.path) as img:
        assert img.size == (1344, 768)
    assert read_provenance(job.path)["task_id"] == job.task_id
    row = styled.store.get(job.cbid)
    assert row is not None and row.state == "done" and row.task_id == job.task_id
    # docs: billing says 0.0488; newapi: no billing on success, so the published price stands, never $0
    assert row.cost_usd == pytest.approx(0.0488)
    style = sim_of(styled).config.style
    assert job.task_id is not None and job.task_id.startswith("tsk_img_" if style == "newapi" else "img_")


def test_a_sweep_finishes_every_cell(styled: Session) -> None:
    result = styled.sweep("A lighthouse at dusk", temperature=[0.2, 1.4], size=["1:1", "3:2"], yes=True)
    assert [job.state for job in result.jobs] == [JobState.DONE] * 4, [job.error for job in result.jobs]
    stats = sim_of(styled).stats()
    assert stats["submits_accepted"] == 4 and stats["duplicate_business_ids"] == 0


def test_a_failed_task_fails_with_the_gateways_reason_and_costs_nothing(styled: Session) -> None:
    sim_of(styled).configure(fail_rate=1.0)
    job = styled.generate("A fox that will not be drawn", wait=False)
    assert job.wait(30)
    assert job.state is JobState.FAILED
    assert "upstream returned status 422" in (job.error or "")
    assert job.cost_usd == 0.0


def test_a_smaller_image_than_requested_is_kept(styled: Session) -> None:
    """A channel that answers a 2K request with a 1K image: paid for, so kept (file and ledger row)."""
    sim_of(styled).configure(small_image_rate=1.0)
    job = styled.generate("A glass teapot", model="gemini-3.1-flash-image-preview", resolution="2K")
    assert job.state is JobState.DONE, job.error
    assert job.path is not None
    with Image.open(job.path) as img:
        assert img.size == (1024, 1024)  # what arrived, not the 2048×2048 asked for
    row = styled.store.get(job.cbid)
    assert row is not None and row.state == "done" and row.path == str(job.path)
    stats = sim_of(styled).stats()
    assert stats["downloads"] == 1 and stats["submits_accepted"] == 1  # downloaded once, never re-bought
    assert stats["faults"]["small_image"] == 1
    note = read_provenance(job.path).get("size_note", "")  # the PNG says what happened
    assert "1024" in note and "2048" in note, note


def test_a_long_prompt_on_the_preview_model_is_refused_before_any_request(styled: Session) -> None:
    with pytest.raises(ValidationError) as info:
        styled.generate("x" * 1_001, model="gemini-2.5-flash-image-preview")
    assert "\n" not in str(info.value) and "limit on gemini-2.5-flash-image-preview is 1,000" in str(info.value)
    assert sim_of(styled).stats()["requests"] == 0


def test_an_unserved_model_fails_at_once_without_retries(styled: Session) -> None:
    sim = sim_of(styled)
    sim.configure(unserved_models="gemini-3-pro-image-preview")
    job = styled.generate("A fox", model="gemini-3-pro-image-preview", wait=False)
    assert job.wait(30)
    assert job.state is JobState.FAILED and isinstance(job.exception, ModelUnavailableError)
    assert "model not available (503)" in (job.error or "")
    stats = sim.stats()
    assert stats["submits_rejected"] == 1 and stats["submits_accepted"] == 0  # one answer, taken as a verdict


# -- blocked: the parser marks it, the engine ends the job BLOCKED with the gateway's reason ---------------------


def test_a_blocked_task_ends_blocked_with_its_reason_and_costs_nothing(styled: Session) -> None:
    sim_of(styled).configure(blocked_rate=1.0)
    job = styled.generate("A fox the model refuses", wait=False)
    assert job.wait(30)
    assert job.state is JobState.BLOCKED and isinstance(job.exception, TaskBlockedError)
    assert "IMAGE_SAFETY" in (job.error or "")  # the reason, not a generic failure
    assert job.cost_usd == 0.0  # refunded, as the gateway's billing says
    row = styled.store.get(job.cbid)
    assert row is not None and row.state == "blocked"
    assert "IMAGE_SAFETY" in job_error_line(job)  # what the status line shows


def test_a_blocked_sweep_cell_shows_its_reason_on_the_tile(styled: Session) -> None:
    sim_of(styled).configure(blocked_rate=1.0)
    result = styled.sweep("A fox the model refuses", temperature=[0.2, 1.4], yes=True)
    assert [job.state for job in result.jobs] == [JobState.BLOCKED] * 2
    tiles = result.tiles()
    assert all(t.state == "blocked" and "IMAGE_SAFETY" in (t.error or "") for t in tiles.values())
    assert result.grid().size[0] > 0


def test_an_unknown_status_fails_the_job_in_bounded_looks_naming_the_word(styled: Session) -> None:
    sim = sim_of(styled)
    sim.configure(unknown_status="WEIRD", stuck_rate=1.0)  # a running task answers a word nobody documented
    job = styled.generate("A fox", wait=False)
    assert job.wait(30)
    assert job.state is JobState.FAILED and "WEIRD" in (job.error or "")
    assert job.cost_usd == job.params.price_usd  # a task that was accepted keeps its cost
    assert sim.stats()["status_queries"] <= 10  # a handful of looks, not polling until the job's deadline
