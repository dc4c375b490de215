"""What the probe records and how it talks: checks, the report, every exchange, the budget (no CLI).

The :class:`~.checks.Probe` asks its questions over a :class:`Gateway` from here
(it *has* one); :mod:`gemimg_jupyter.probe` re-exports :class:`Check`,
:class:`ProbeReport` and :data:`UNPRICED_USD`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from gemimg_jupyter.domain.errors import redact
from gemimg_jupyter.domain.models import ModelSpec
from gemimg_jupyter.domain.settings import RetryPolicy, Secret
from gemimg_jupyter.domain.text import format_usd
from gemimg_jupyter.gateway.client import ToAPIsClient, find_result_url, parse_task

__all__ = ["UNPRICED_USD", "Check", "Gateway", "ProbeReport"]

_SUBMIT = "/v1/images/generations"
#: What a request to a model without a published price is counted at against ``--spend``.
UNPRICED_USD = 0.25
_HIDDEN_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})


@dataclass
class Check:
    """One question put to the gateway: what the docs (or the field) lead us to expect, what it said."""

    name: str
    question: str
    expected: str
    observed: str = "not asked"
    verdict: str = "skipped"  # ok | differs | note | skipped | error
    paid_usd: float = 0.0

    def lines(self) -> list[str]:
        mark = {"ok": "✓", "differs": "✗", "note": "•", "skipped": "–", "error": "!"}.get(self.verdict, "?")
        return [
            f"{mark} {self.name}: {self.question}",
            f"    expected: {self.expected}",
            f"    observed: {self.observed}",
            f"    verdict:  {self.verdict}"
            + (f" (paid about {format_usd(self.paid_usd, places=3)})" if self.paid_usd else ""),
        ]


@dataclass
class ProbeReport:
    """Every check, where the transcript went and what was spent."""

    base_url: str
    simulated: bool
    checks: list[Check] = field(default_factory=list)
    transcript: Path | None = None
    spent_usd: float = 0.0

    def ask(self, name: str, question: str, expected: str) -> Check:
        """A new check, not asked yet, added to the report (checks are listed in the order they are made)."""
        check = Check(name, question, expected)
        self.checks.append(check)
        return check

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError if there is none)."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def text(self) -> str:
        """The report as printed."""
        lines = [f"gemimg probe of {self.base_url}" + (" (a simulator: nothing is charged)" if self.simulated else "")]
        for check in self.checks:
            lines += check.lines()
        counts = {v: sum(c.verdict == v for c in self.checks) for v in ("ok", "differs", "note", "skipped", "error")}
        lines.append(
            "summary: "
            + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
            + f"; spent about {format_usd(self.spent_usd, places=3)}"
        )
        if self.transcript is not None:
            lines.append(f"transcript: {self.transcript} (attach it to a bug report; it holds no key)")
        return "\n".join(lines)


class _Recorder(HTTPAdapter):
    """A transport adapter that keeps the shape of every exchange (headers without secrets, JSON bodies).

    Mounted on the probe's session for both schemes, it sees every request: the probe's own and the
    client's, which hand their prepared requests straight to the session's adapter.
    """

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self.exchanges: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        entry: dict[str, Any] = {
            "t": round(time.monotonic() - self._t0, 3), "method": str(request.method), "url": str(request.url)
        }  # fmt: skip
        try:
            resp = super().send(request, *args, **kwargs)
        except requests.RequestException as exc:
            entry["error"] = type(exc).__name__
            self._keep(entry)
            raise
        entry["request_headers"] = _headers(request.headers)
        entry["request_body"] = _body(request.body, request.headers.get("Content-Type", ""))
        entry["status"] = resp.status_code
        entry["response_headers"] = _headers(resp.headers)
        ctype = resp.headers.get("Content-Type", "")
        if "json" in ctype or "html" in ctype or "text" in ctype:
            entry["response_body"] = _body(resp.content, ctype)
        else:
            entry["response_body"] = {"bytes": resp.headers.get("Content-Length"), "content_type": ctype}
        self._keep(entry)
        return resp

    def _keep(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.exchanges.append(entry)


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: ("(hidden)" if k.lower() in _HIDDEN_HEADERS else redact(str(v))) for k, v in headers.items()}


def _body(body: object, ctype: str) -> object:
    if body is None or body == b"" or body == "":
        return None
    raw = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else None
    if raw is None:
        return {"stream": type(body).__name__}
    if "json" in ctype or raw[:1] in (b"{", b"["):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    if "multipart" in ctype:
        return {"multipart_bytes": len(raw)}
    if "html" in ctype or "text" in ctype:
        return {"text": redact(raw[:500].decode("utf-8", "replace"))}
    return {"bytes": len(raw)}


class _Budget:
    """What ``--spend`` still allows; a request is only sent when it fits."""

    def __init__(self, limit: float) -> None:
        self.limit, self.spent = limit, 0.0

    @staticmethod
    def price(spec: ModelSpec) -> float:
        return spec.price_usd if spec.price_usd is not None else UNPRICED_USD

    def fits(self, *specs: ModelSpec) -> bool:
        return self.spent + sum(self.price(s) for s in specs) <= self.limit + 1e-9

    def pay(self, spec: ModelSpec) -> float:
        cost = self.price(spec)
        self.spent += cost
        return cost


class Gateway:
    """The probe's plumbing: raw requests with the key, submit, follow a task, download its image.

    Every exchange is kept by :attr:`recorder` (an adapter on :attr:`http`, the session shared with :attr:`client`).
    """

    def __init__(
        self, base_url: str, key: Secret, *, say: Callable[[str], None], poll_timeout: float, poll_every: float
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.say = say
        self.poll_timeout, self.poll_every = poll_timeout, poll_every
        self.recorder = _Recorder()
        self.http = requests.Session()
        retry = RetryPolicy(max_tries=3, base=0.5, cap=4.0, jitter=0.2, max_retry_after=30.0)
        # the client sets its own User-Agent on the shared session: the probe's requests carry exactly the
        # header the engine's do, so the user_agent check answers for the engine too
        self.client = ToAPIsClient(self.base_url, key, retry=retry, session=self.http, timeout=(10.0, 30.0))
        for scheme in ("http://", "https://"):  # after the client's own adapter: every exchange is recorded
            self.http.mount(scheme, self.recorder)

    def close(self) -> None:
        """Close the client and its (recording) session; the exchanges stay readable."""
        self.client.close()

    def raw(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers["Authorization"] = f"Bearer {self.key.reveal()}"
        url = self.base_url + path
        proxies = self.client.transport.proxies_for(url)  # the session reads no environment itself (see transport)
        return self.http.request(method, url, headers=headers, timeout=(10.0, 30.0), proxies=proxies, **kwargs)

    def submit(self, body: Mapping[str, Any]) -> requests.Response:
        return self.raw("POST", _SUBMIT, json=dict(body))

    def follow(self, task_id: str) -> list[dict[str, Any]]:
        """Every answer for ``task_id`` until it is terminal or ``poll_timeout`` passes."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.poll_timeout
        unknown = 0
        while time.monotonic() < deadline:
            resp = self.raw("GET", f"{_SUBMIT}/{task_id}")
            if resp.status_code == 200:
                body = resp.json()
                seen.append(body)
                task = parse_task(body)
                if task.is_terminal:
                    return seen
                unknown = unknown + 1 if task.status == "unknown" else 0
                if unknown >= 10:
                    return seen
            threading.Event().wait(min(self.poll_every, max(0.0, deadline - time.monotonic())))
        return seen

    def download_size(self, body: Mapping[str, Any]) -> tuple[tuple[int, int] | None, bytes | None]:
        url = find_result_url(body)
        if url is None:
            return None, None
        data = self.client.download(url)
        return (data.width, data.height), bytes(data)
