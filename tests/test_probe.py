"""``python -m gemimg_jupyter.probe`` end to end: real processes, the simulator over loopback, both dialects.

Every check prints expected / observed / verdict, the transcript exists and
holds no key, and ``--spend`` asks before anything is paid (a real terminal
answered "n" pays nothing; no terminal and no ``--yes`` pays nothing either).
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.probe import run_probe
from gemimg_jupyter.sim import SimConfig, SimServer

from .support import SimProcess

#: A fake key of the real shape; the simulator accepts only it.
PROBE_KEY = "sk-test-" + "k3Y9" * 10
FREE = ("auth", "models", "user_agent", "error_shape", "unknown_model", "upload", "pricing", "preview_listed")
PAID = ("status_words", "lookup_by_business_id", "billing", "result_url", "image_size", "duplicate_business_id",
        "idempotency_key", "image_url_objects", "prompt_limit", "resolution", "seed", "controls", "preview_answers")  # fmt: skip


def probe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gemimg_jupyter.probe", *args]


def child_env(key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TOAPIS_API_KEY", "GEMIMG_BASE_URL", "GEMIMG_BACKEND")}
    if key is not None:
        env["TOAPIS_API_KEY"] = key
    return env


def transcript_of(out_dir: Path) -> tuple[Path, str]:
    files = sorted(out_dir.glob("probe-*.json"))
    assert len(files) == 1, files
    return files[0], files[0].read_text(encoding="utf-8")


def assert_every_check_printed(output: str, names: tuple[str, ...]) -> None:
    for name in names:
        block = output.split(f" {name}: ", 1)
        assert len(block) == 2, f"check {name} not printed"
        lines = block[1].splitlines()[1:4]
        assert [line.split(":", 1)[0].strip() for line in lines] == ["expected", "observed", "verdict"], lines


@pytest.fixture
def keyed_sim() -> Iterator[SimServer]:
    """A simulator that accepts only :data:`PROBE_KEY`, as the real gateway accepts only real keys."""
    server = SimServer(SimConfig(latency=(0.2, 0.6), queue_delay=(0.02, 0.1), seed=5), accepted_keys=[PROBE_KEY])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("style", ["docs", "newapi"])
def test_without_a_key_it_probes_its_own_simulator_end_to_end(tmp_path: Path, style: str) -> None:
    out = tmp_path / "probe"
    run = subprocess.run(
        probe_cmd("--spend", "1", "--sim-style", style, "--out", str(out), "--timeout", "60"),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode in (0, 1), run.stderr
    assert f"probing the built-in simulator ({style} style)" in run.stdout and "nothing is charged" in run.stdout
    assert_every_check_printed(run.stdout, FREE + PAID)
    path, text = transcript_of(out)
    assert f"transcript: {path}" in run.stdout
    doc = json.loads(text)
    assert doc["simulated"] is True and {c["name"] for c in doc["checks"]} == set(FREE + PAID)
    verdicts = {c["name"]: c["verdict"] for c in doc["checks"]}
    assert "error" not in verdicts.values() and "skipped" not in verdicts.values(), verdicts
    # the simulator is faithful to what was seen: these answers must come out the same in both styles
    assert verdicts["prompt_limit"] == "ok" and verdicts["resolution"] == "ok" and verdicts["seed"] == "ok"
    assert verdicts["duplicate_business_id"] == "note"  # the sim, like New API, makes a second task: a finding
    # the model world (#23): prices per resolution, each control accepted, what the preview ids answer
    observed = {c["name"]: c["observed"] for c in doc["checks"]}
    assert verdicts["pricing"] == "ok" and "(gemini-3.1-flash-image-preview)" in observed["pricing"]
    assert verdicts["controls"] == "ok" and observed["controls"].count(": accepted") >= 3
    assert "gemini-2.5-flash-image-preview: accepted" in observed["preview_answers"]
    words = next(c for c in doc["checks"] if c["name"] == "status_words")["observed"]
    billing = next(c for c in doc["checks"] if c["name"] == "billing")["observed"]
    places = next(c for c in doc["checks"] if c["name"] == "result_url")["observed"]
    if style == "newapi":
        assert words.startswith("pending → ") and "SUCCESS" in words and "progress as str:%" in words
        assert billing.startswith("no billing object") and places == "result.data[0].url, url"
    else:
        assert words.startswith("queued → ") and words.split(";")[0].endswith("completed")
        assert billing.startswith('{"status": "settled"') and places == "result.data[0].url"
    assert all("Authorization" not in e.get("request_headers", {}) or e["request_headers"]["Authorization"] == "(hidden)"
               for e in doc["exchanges"])  # fmt: skip
    assert "sk-probe-" not in text and "sk-probe-" not in run.stdout  # the simulator's own throwaway key


def test_with_a_key_the_transcript_never_holds_it(tmp_path: Path, keyed_sim: SimServer) -> None:
    out = tmp_path / "probe"
    run = subprocess.run(
        probe_cmd("--base-url", keyed_sim.base_url, "--spend", "0.5", "--yes", "--out", str(out), "--timeout", "60"),
        env=child_env(PROBE_KEY),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode in (0, 1), run.stderr
    assert "built-in simulator" not in run.stdout  # it probed the gateway it was given
    assert_every_check_printed(run.stdout, FREE + PAID)
    _, text = transcript_of(out)
    for where in (text, run.stdout, run.stderr):
        assert PROBE_KEY not in where and PROBE_KEY[8:] not in where
    doc = json.loads(text)
    assert len(doc["exchanges"]) > 10
    assert all(e["request_headers"].get("Authorization") in (None, "(hidden)") for e in doc["exchanges"])
    # the client's own requests (its upload, its image downloads) are recorded too, their key hidden
    assert any(
        e["method"] == "POST"
        and e["url"].endswith("/v1/uploads/images")
        and e["request_headers"]["Authorization"] == "(hidden)"
        for e in doc["exchanges"]
    )
    assert any(
        isinstance(e.get("response_body"), dict)
        and str(e["response_body"].get("content_type", "")).startswith("image/")
        for e in doc["exchanges"]
    )
    stats = keyed_sim.stats()
    assert stats["submits_accepted"] >= 5 and stats["auth_failures"] == 0
    assert doc["spent_usd"] <= 0.5


def test_spend_asks_on_a_terminal_and_no_pays_nothing(tmp_path: Path, keyed_sim: SimServer) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            probe_cmd("--base-url", keyed_sim.base_url, "--spend", "1", "--out", str(tmp_path / "p")),
            env=child_env(PROBE_KEY),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, b"n\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    assert "Go ahead? [y/N]" in out, out + err
    assert "not confirmed: nothing was paid" in out
    stats = keyed_sim.stats()
    assert stats["submits_accepted"] == 0  # not one task was made
    assert stats["submits_rejected"] == 1  # the free unknown-model check, refused
    # the free checks ran: models, User-Agent, error shape, unknown model, upload+get, pricing
    assert stats["requests"] == 7
    assert_every_check_printed(out, FREE)
    assert " status_words: " not in out


def test_spend_without_a_terminal_or_yes_pays_nothing(tmp_path: Path, keyed_sim: SimServer) -> None:
    run = subprocess.run(
        probe_cmd("--base-url", keyed_sim.base_url, "--spend", "1", "--out", str(tmp_path / "p")),
        env=child_env(PROBE_KEY),
        input="y\n",  # piped, not a terminal: nobody can be asked, so a "y" here must not count
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "not confirmed (no terminal to ask, and no --yes): nothing was paid" in run.stdout
    assert keyed_sim.stats()["submits_accepted"] == 0


def test_a_refused_key_stops_after_the_auth_check(tmp_path: Path, keyed_sim: SimServer) -> None:
    wrong = "sk-test-" + "w" * 40
    settings = Settings(api_key=wrong, backend="toapis", base_url=keyed_sim.base_url, output_dir=tmp_path)
    said: list[str] = []
    report = run_probe(settings, spend=1.0, confirm=lambda _q: True, say=said.append)
    assert [c.name for c in report.checks] == ["auth"]
    assert report.check("auth").verdict == "error" and "HTTP 401" in report.check("auth").observed
    assert keyed_sim.stats()["submits_accepted"] == 0
    assert report.transcript is not None and report.transcript.parent == tmp_path / "probe"
    text = report.transcript.read_text(encoding="utf-8")
    assert wrong not in text and wrong not in "\n".join(said)


def test_an_edge_that_refuses_library_user_agents_is_reported(tmp_path: Path, keyed_sim: SimServer) -> None:
    keyed_sim.configure(require_user_agent=True, style="newapi")
    settings = Settings(api_key=PROBE_KEY, backend="toapis", base_url=keyed_sim.base_url, output_dir=tmp_path)
    report = run_probe(settings, say=lambda _line: None)
    agent = report.check("user_agent")
    assert agent.verdict == "ok"
    assert "ours: HTTP 200; a library default: HTTP 403 (HTML: the edge refused it)" == agent.observed
    stats = keyed_sim.stats()
    assert stats["submits_accepted"] == 0 and stats["uploads"] == 1  # free checks only
    assert report.check("unknown_model").observed.startswith("HTTP 503 [model_not_found]")


@pytest.mark.parametrize("where", ["own", "process", "keyed-process"])
def test_the_cli_passes_against_our_own_simulators(tmp_path: Path, where: str) -> None:
    """``--spend 0.2 --yes`` exits 0 against the simulator it starts and against one in another process."""
    with SimProcess(*(("--key", PROBE_KEY) if where == "keyed-process" else ())) as sim:
        env, args = child_env(), ["--spend", "0.2", "--yes", "--out", str(tmp_path / "probe"), "--timeout", "60"]
        if where == "process":  # no key: the simulator GEMIMG_BASE_URL names, as a session would use it
            env["GEMIMG_BASE_URL"] = sim.base_url
        elif where == "keyed-process":  # a key: the "gateway" --base-url names
            env = child_env(PROBE_KEY)
            args += ["--base-url", sim.base_url]
        run = subprocess.run(probe_cmd(*args), env=env, capture_output=True, text=True, timeout=180)
        stats = sim.stats()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert "✗" not in run.stdout and "• duplicate_business_id" in run.stdout
    if where == "own":
        assert "probing the built-in simulator" in run.stdout and stats["submits_accepted"] == stats["uploads"] == 0
    else:  # every request went to that process: the free checks, the upload and the paid submits
        assert f"probing {sim.base_url}" in run.stdout
        assert stats["uploads"] == 1 and stats["submits_accepted"] >= 3 and stats["duplicate_business_ids"] == 1
        assert stats["auth_failures"] == 0 and PROBE_KEY not in run.stdout + run.stderr


@pytest.mark.parametrize("where", ["built-in", "process"])
def test_the_magic_probes_the_sessions_gateway(
    ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, where: str
) -> None:
    """``%gemimg probe`` asks the backend the session talks to: its requests land on that simulator."""
    from IPython.core.error import UsageError

    from gemimg_jupyter.api import get_session

    out_dir = tmp_path / "outputs"
    monkeypatch.setenv("GEMIMG_BACKEND", "sim")
    monkeypatch.setenv("GEMIMG_OUTPUT_DIR", str(out_dir))
    with SimProcess() as other:
        if where == "process":
            monkeypatch.setenv("GEMIMG_BASE_URL", other.base_url)
        ip.run_line_magic("load_ext", "gemimg_jupyter")
        sess = get_session()
        counts = other.stats if where == "process" else sess.sim.stats
        before = counts()
        capsys.readouterr()
        ip.run_line_magic("gemimg", "probe --spend 0.5")
        out = capsys.readouterr().out
        after = counts()
        untouched = other.stats() if where == "built-in" else None
    assert f"probing {sess.base_url}" in out and "probing the built-in simulator" not in out  # none of its own
    assert_every_check_printed(out, FREE + PAID)
    assert after["uploads"] - before["uploads"] == 1 and after["submits_accepted"] - before["submits_accepted"] >= 3
    assert untouched is None or untouched["submits_accepted"] == untouched["uploads"] == 0
    assert len(list((out_dir / "probe").glob("probe-*.json"))) == 1
    with pytest.raises(UsageError, match=r"--spend -1.0 is not allowed; use 0 or more dollars"):
        ip.run_line_magic("gemimg", "probe --spend -1")


def test_the_probe_asks_about_controls_and_what_the_preview_ids_answer(tmp_path: Path, keyed_sim: SimServer) -> None:
    from gemimg_jupyter.domain.params import CONTROL_PARAMS

    gone = "gemini-3.1-flash-image-preview"
    keyed_sim.configure(unserved_models=[gone])
    settings = Settings(api_key=PROBE_KEY, backend="toapis", base_url=keyed_sim.base_url, output_dir=tmp_path)
    report = run_probe(settings, spend=2.0, confirm=lambda _q: True, say=lambda _line: None)
    listed = report.check("preview_listed")
    assert f"{gone}: not listed" in listed.observed and "gemini-2.5-flash-image-preview: listed" in listed.observed
    answers = report.check("preview_answers").observed
    assert f"{gone}: refused, HTTP 503 [model_not_found]" in answers
    assert "gemini-2.5-flash-image-preview: accepted" in answers and "alias" not in answers  # the sim serves ids as is
    controls = report.check("controls")
    assert controls.verdict == "ok" and controls.paid_usd > 0
    for control in CONTROL_PARAMS:  # every row of the table was asked about, on a listed model that documents it
        assert f"{control.label} on " in controls.observed or control.name in ("search", "image_search"), control.name
    assert "search: no listed model documents it" in controls.observed  # only 3.1 Flash (normal) has it: gone
    sent = keyed_sim.stats()["metadata"]
    assert {"mimeType": "image/png"} in [m.get("imageOutputOptions") for m in sent]
    assert report.spent_usd <= 2.0


@pytest.mark.parametrize("honoured", [True, False])
def test_the_probe_asks_whether_a_repeated_idempotency_key_gets_the_first_task(
    tmp_path: Path, keyed_sim: SimServer, honoured: bool
) -> None:
    """Our simulator replays a repeated Idempotency-Key as New API does (the probe passes against it); a gateway
    that ignores the header makes a second task, and the probe says so, paid twice."""
    keyed_sim.configure(idempotency=honoured)
    settings = Settings(api_key=PROBE_KEY, backend="toapis", base_url=keyed_sim.base_url, output_dir=tmp_path)
    report = run_probe(settings, spend=1.0, confirm=lambda _q: True, say=lambda _line: None)
    check = report.check("idempotency_key")
    if honoured:
        assert check.verdict == "ok" and "Idempotency-Replayed: true" in check.observed, check.observed
        assert keyed_sim.stats()["idempotent_replays"] == 1
    else:
        assert check.verdict == "differs" and "paid twice" in check.observed, check.observed
        assert keyed_sim.stats()["idempotent_replays"] == 0
