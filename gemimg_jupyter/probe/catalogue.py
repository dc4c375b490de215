"""The probe's questions about the model world (issue #23): prices, retired preview ids, each control.

Free: ``GET /v1/pricing`` (does the gateway publish per-resolution prices?) and whether the
retired ``-preview`` ids are still listed. Paid, within ``--spend``: what a submit for each
preview id answers now (accepted as itself, answered as another id — an alias — or refused,
gone), and whether each control of the parameter table (:data:`~gemimg_jupyter.domain.params.CONTROL_PARAMS`)
is accepted on the cheapest listed model that documents it. A control's sample value comes from
its row (the first choice, the upper bound, on, the first category), so a new control is asked
about without touching this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gemimg_jupyter.domain.catalogue import parse_pricing
from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import MODELS, GenerationParams, ModelSpec
from gemimg_jupyter.domain.params import CONTROL_PARAMS, SAFETY_THRESHOLDS, ParamSpec
from gemimg_jupyter.gateway.client import parse_task
from gemimg_jupyter.probe.report import Gateway, ProbeReport, _Budget

__all__ = ["PREVIEW_IDS", "ask_controls", "ask_preview_answers", "ask_preview_listing", "ask_pricing", "sample"]

_PROMPT = "A small red paper-cut fox on a plain white background"
#: The ``-preview`` image ids of the built-in table (retired upstream or due to be, reference §14).
PREVIEW_IDS: tuple[str, ...] = tuple(m for m in MODELS if "-preview" in m)


def sample(control: ParamSpec) -> Any:
    """A value of ``control`` to ask the gateway with, taken from its row (checked like a user's)."""
    if control.kind == "choice":
        return control.check_control(control.choices[0])
    if control.kind == "int":
        assert control.bounds is not None, f"{control.name} has bounds"
        return control.check_control(int(control.bounds[1]))
    if control.kind == "flag":
        return True
    return control.check_control(f"{control.choices[0]}={SAFETY_THRESHOLDS[-1]}")


def ask_pricing(gateway: Gateway, report: ProbeReport) -> None:
    """Free: does ``GET /v1/pricing?type=image`` answer, and with which per-request prices?"""
    check = report.ask(
        "pricing",
        "does the gateway publish its prices (GET /v1/pricing?type=image)?",
        "late docs §9: a list of per-request prices, per resolution where they differ (older gateways: 404)",
    )
    resp = gateway.raw("GET", "/v1/pricing", params={"type": "image"})
    if resp.status_code != 200:
        check.observed, check.verdict = f"HTTP {resp.status_code}: the built-in prices stand", "note"
        return
    try:
        prices = parse_pricing(resp.json())
    except (ValueError, AttributeError):
        check.observed, check.verdict = "HTTP 200, but not the documented list", "differs"
        return
    by_res = sorted(m for m, table in prices.items() if set(table) - {"*"})
    check.observed = f"{len(prices)} image model(s) priced per request" + (
        f"; priced by resolution ({', '.join(by_res)})" if by_res else ""
    )
    check.verdict = "ok" if prices else "note"


def ask_preview_listing(report: ProbeReport, listed: Sequence[str]) -> None:
    """Free: which retired preview ids does the catalogue still list?"""
    check = report.ask(
        "preview_listed",
        "are the retired -preview ids still listed?",
        "§14: the 3.x previews shut down 2026-06-25 (GA ids replace them); listed means still served here",
    )
    gone = [m for m in PREVIEW_IDS if m not in listed]
    check.observed = "; ".join(f"{m}: {'listed' if m in listed else 'not listed'}" for m in PREVIEW_IDS)
    check.verdict = "note" if gone else "ok"


def ask_preview_answers(gateway: Gateway, report: ProbeReport, budget: _Budget) -> None:
    """Paid: what a submit for each preview id answers now: itself, another id (an alias), or a refusal."""
    check = report.ask(
        "preview_answers",
        "what does a submit for each -preview id answer now?",
        "accepted as itself, answered as another id (an alias), or refused (gone, model_not_found)",
    )
    seen: list[str] = []
    for model in sorted(PREVIEW_IDS, key=lambda m: (_Budget.price(MODELS[m]), m)):
        spec = MODELS[model]
        if not budget.fits(spec):
            seen.append(f"{model}: not asked (over --spend)")
            continue
        resp = gateway.submit(GenerationParams.create(_PROMPT, model=model).request_body())
        if resp.status_code == 200:
            check.paid_usd += budget.pay(spec)
            answered = str(resp.json().get("model") or model)
            seen.append(f"{model}: accepted" + (f", answered as {answered} (an alias)" if answered != model else ""))
        else:
            seen.append(f"{model}: refused, HTTP {resp.status_code}{_code(resp)}")
    check.observed = "; ".join(seen)
    check.verdict = "note" if any("accepted" in s or "refused" in s for s in seen) else "skipped"


def _code(resp: Any) -> str:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f" [{err.get('code')}]" if isinstance(err, dict) else ""


def _cheapest_taking(name: str, listed: Sequence[str]) -> ModelSpec | None:
    """The cheapest listed built-in model whose table row documents control ``name`` (priced ones first)."""
    takers = [MODELS[m] for m in MODELS if m in listed and name in MODELS[m].controls]
    takers.sort(key=lambda s: (s.price_usd is None, _Budget.price(s), list(MODELS).index(s.id)))
    return takers[0] if takers else None


def ask_controls(gateway: Gateway, report: ProbeReport, budget: _Budget, listed: Sequence[str]) -> None:
    """Paid: is each control accepted on the cheapest listed model that documents it (HTTP 200 = accepted)?"""
    check = report.ask(
        "controls",
        "is each documented control accepted on a cheap model that documents it?",
        "each control reaches the model as §3.3/§3.4 document it and is accepted (HTTP 200)",
    )
    seen: list[str] = []
    refused = asked = 0
    for control in CONTROL_PARAMS:
        spec = _cheapest_taking(control.name, listed)
        if spec is None:
            seen.append(f"{control.label}: no listed model documents it")
            continue
        if not budget.fits(spec):
            seen.append(f"{control.label}: not asked (over --spend)")
            continue
        values = {control.name: sample(control)}
        if control.requires is not None:
            values[control.requires[0]] = control.requires[1]
        try:
            body = GenerationParams.create(_PROMPT, model=spec.id, **values).request_body()
        except ValidationError as exc:  # the table contradicts itself: say so rather than send
            seen.append(f"{control.label}: not sent ({exc})")
            continue
        resp = gateway.submit(body)
        asked += 1
        if resp.status_code == 200:
            check.paid_usd += budget.pay(spec)
            seen.append(f"{control.label} on {spec.id}: accepted ({parse_task(resp.json()).id})")
        else:
            refused += 1
            seen.append(f"{control.label} on {spec.id}: refused, HTTP {resp.status_code}{_code(resp)}")
    check.observed = "; ".join(seen)
    check.verdict = "skipped" if not asked else "differs" if refused else "ok"
