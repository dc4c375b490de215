"""Ask the gateway the questions its documentation leaves open, and keep the answers.

::

    python -m gemimg_jupyter.probe [--base-url URL] [--spend DOLLARS] [--out DIR] [--yes]
    %gemimg probe [--spend DOLLARS] [--yes]

Free checks come first: is the key accepted, which image models may it use
(``GET /v1/models?type=image``), does this client's User-Agent pass the edge,
what does an error look like, what does a model nobody serves return (refused,
so free), does a reference upload serve. With ``--spend N`` (dollars; confirmed before
anything is paid) it submits the cheapest requests that settle the rest: the
status words and fields a real task goes through and whether ``billing``
appears, what a second submit with the same ``client_business_id`` does,
whether look-up by it works at once, whether ``image_urls`` objects are
accepted, the prompt-length limit, whether ``metadata.resolution`` changes the
pixel size, whether ``metadata.seed`` is accepted and narrows the variation.

Every check prints what is expected, what was observed and a verdict. The
whole exchange (every request and answer with its headers, never the key or
``Authorization``) is written to ``<output_dir>/probe/`` for a bug report.
It probes the backend a session with the same settings would use: the gateway with the key, a
simulator at ``GEMIMG_BASE_URL`` (or ``--base-url``) without one, and only when neither is set a
simulator it starts on loopback; it says which.
``docs/gateway.md`` explains how to read the report.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gemimg_jupyter._version import __version__
from gemimg_jupyter.domain.errors import GemimgError, redact
from gemimg_jupyter.domain.models import MODELS
from gemimg_jupyter.domain.settings import DEFAULT_BASE_URL, Secret, Settings
from gemimg_jupyter.domain.text import format_usd
from gemimg_jupyter.probe.checks import Probe, _cheapest
from gemimg_jupyter.probe.report import UNPRICED_USD, Check, Gateway, ProbeReport, _Budget

__all__ = ["UNPRICED_USD", "Check", "ProbeReport", "main", "run_probe"]


#: The key a probe sends to a simulator it was pointed at (a simulator accepts any non-empty key).
SIM_PROBE_KEY = "sim-local-key"


@contextmanager
def _target(
    settings: Settings, base_url: str | None, key: Secret | None, style: str, say: Callable[[str], None]
) -> Iterator[tuple[str, Secret, bool]]:
    """The gateway to probe: the one ``settings`` use, as a session resolves it.

    The real gateway (``toapis``) at ``base_url`` (else the configured one) with the key; a simulator
    someone runs at ``base_url`` (the ``sim`` backend with a base URL, as ``GEMIMG_BASE_URL`` without a
    key); only when no base URL is set, a simulator started here.
    """
    url = base_url or settings.base_url
    if settings.resolved_backend == "toapis":
        yield (url or DEFAULT_BASE_URL), key or settings.require_key(), False
        return
    if url:
        say(f"no ToAPIs key in use: probing the simulator at {url}; nothing is charged")
        yield url, key or Secret(SIM_PROBE_KEY), True
        return
    from gemimg_jupyter.sim import SimConfig, SimServer

    own = Secret("sk-probe-" + secrets.token_hex(20))
    server = SimServer(
        SimConfig(latency=(0.3, 1.2), queue_delay=(0.05, 0.2), style=style), accepted_keys=[own.reveal()]
    )
    started = server.start()
    say(
        f"no ToAPIs key in use: probing the built-in simulator ({style} style) started on {started}; nothing is charged"
    )
    try:
        yield started, own, True
    finally:
        server.stop()


def run_probe(
    settings: Settings | None = None,
    *,
    base_url: str | None = None,
    key: Secret | None = None,
    spend: float = 0.0,
    out_dir: Path | str | None = None,
    confirm: Callable[[str], bool] | None = None,
    say: Callable[[str], None] = print,
    sim_style: str = "docs",
    poll_timeout: float = 300.0,
) -> ProbeReport:
    """Run the free checks, then (with ``spend`` > 0 and ``confirm`` saying yes) the paid ones.

    ``confirm`` is asked once, with the plan, before anything is paid; ``None``
    means no one can be asked, so nothing is paid. Against the simulator it is
    not asked (nothing is charged). ``base_url`` and ``key`` name the gateway exactly (a session
    passes its own: ``Session.probe``); otherwise they come from ``settings`` as a session would
    resolve them. The transcript goes to ``out_dir`` (default ``<output_dir>/probe``).
    """
    settings = settings or Settings.from_env()
    if not spend >= 0 or spend != spend:
        raise GemimgError(f"--spend {spend!r} is not a number of dollars (0 or more)")
    folder = Path(out_dir) if out_dir is not None else Path(settings.output_dir) / "probe"
    with _target(settings, base_url, key, sim_style, say) as (url, secret, simulated):
        gateway = Gateway(url, secret, say=say, poll_timeout=poll_timeout, poll_every=0.2 if simulated else 3.0)
        probe = Probe(gateway)
        report = ProbeReport(base_url=url, simulated=simulated)
        try:
            say(f"probing {url} (free checks first)")
            usable = probe.free_checks(report)
            if usable and spend > 0:
                cheap = _cheapest(probe.listed)
                plan = (
                    f"the paid checks submit up to 9 requests (about {format_usd(_Budget.price(MODELS[cheap]), places=3)} each on {cheap}, "
                    f"more for a 2K model), never more than {format_usd(spend, places=2)} in all"
                    if cheap
                    else "no listed model has a published price; nothing will be paid"
                )
                if simulated:
                    go = True
                    say(plan + " (simulated: not charged)")
                elif confirm is None:
                    say(f"{plan}; not confirmed (no terminal to ask, and no --yes): nothing was paid")
                    go = False
                else:
                    go = confirm(f"{plan}. Go ahead? [y/N] ")
                    if not go:
                        say("not confirmed: nothing was paid")
                if go and cheap:
                    budget = _Budget(spend)
                    probe.paid_checks(report, budget)
                    report.spent_usd = budget.spent
            elif usable:
                say("paid checks skipped (add --spend DOLLARS to run them)")
        finally:
            gateway.close()
            report.transcript = _write(folder, report, gateway.recorder.exchanges, secret)
    say(report.text())
    return report


def _write(folder: Path, report: ProbeReport, exchanges: list[dict[str, Any]], key: Secret) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = folder / f"probe-{stamp}-{uuid.uuid4().hex[:4]}.json"
    doc = {
        "tool": f"gemimg_jupyter {__version__} probe",
        "base_url": report.base_url,
        "simulated": report.simulated,
        "written_utc": stamp,
        "checks": [asdict(c) for c in report.checks],
        "spent_usd": round(report.spent_usd, 4),
        "exchanges": exchanges,
    }
    text = redact(json.dumps(doc, indent=1, ensure_ascii=False, default=str))
    text = text.replace(key.reveal(), "***")  # belt and braces: redact() already knows the key
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _tty_confirm(prompt: str) -> bool:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gemimg_jupyter.probe``; exit 0 when every asked check is ok or a note, 1 otherwise, 2 on bad use."""
    parser = argparse.ArgumentParser(
        prog="python -m gemimg_jupyter.probe",
        description="Check what the ToAPIs gateway really does for this key (free checks; paid ones with --spend).",
    )
    parser.add_argument("--base-url", help="gateway root (default: GEMIMG_BASE_URL or https://toapis.com)")
    parser.add_argument(
        "--spend", type=float, default=0.0, metavar="DOLLARS", help="allow paid checks up to this much (default 0)"
    )
    parser.add_argument("--out", type=Path, help="folder for the transcript (default: <output dir>/probe)")
    parser.add_argument("--yes", action="store_true", help="do not ask before paying (needed without a terminal)")
    parser.add_argument(
        "--sim-style", choices=("docs", "newapi"), default="docs", help="dialect of the simulator used without a key"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="how long to follow one task (default 300)"
    )
    ns = parser.parse_args(argv)
    if not ns.spend >= 0:
        parser.error(f"--spend {ns.spend} is not allowed; use 0 or more dollars")
    try:
        settings = Settings.from_env()
        for note in settings.notes:
            sys.stderr.write(f"probe: {note}\n")
        if ns.base_url:  # with a key the gateway there; without one, a simulator there (as a session reads it)
            settings = settings.replace(base_url=ns.base_url.rstrip("/"))
        confirm: Callable[[str], bool] | None
        if ns.yes:
            confirm = lambda _prompt: True  # noqa: E731
        elif sys.stdin.isatty():
            confirm = _tty_confirm
        else:
            confirm = None
        report = run_probe(
            settings,
            base_url=ns.base_url,
            spend=ns.spend,
            out_dir=ns.out,
            confirm=confirm,
            sim_style=ns.sim_style,
            poll_timeout=ns.timeout,
        )
    except GemimgError as exc:
        sys.stderr.write(f"probe: {exc}\n")
        return 2
    return 0 if all(c.verdict in ("ok", "note", "skipped") for c in report.checks) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
