"""Security: the key never leaks, prompts are escaped, files stay in place, hostile bytes are refused.

Everything runs on the real-backend code path (``backend="toapis"``) with the
known fake key :data:`~tests.support.FAKE_KEY`, against simulators that accept
it (or, for 401s, reject it), with logging captured at DEBUG for
``gemimg_jupyter``, ``urllib3`` and ``requests``. Then every artifact is scanned
for the key: every file under the output directory (PNG bytes and their text
chunks, the SQLite ledger and its WAL), log records, exception strings, reprs,
tracebacks and pickles, notebook outputs and their metadata, panel widget state.

A second tiny loopback server (:class:`Recorder`) records request headers: the
key must reach the API host and nothing else (result URLs on another host,
redirects from the API host to another host). It also serves a decompression
bomb and bodies over the download cap.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import os
import pickle
import re
import sqlite3
import struct
import subprocess
import sys
import threading
import traceback
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image, PngImagePlugin

from gemimg_jupyter.api.session import Session, reset_session
from gemimg_jupyter.domain.errors import (
    APIError,
    AuthenticationError,
    GemimgError,
    InvalidImageError,
    ServerError,
    TaskFailedError,
    ValidationError,
)
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.settings import RetryPolicy, Secret, Settings
from gemimg_jupyter.draw.images import load_reference
from gemimg_jupyter.gateway.client import ToAPIsClient
from gemimg_jupyter.ledger.store import safe_filename
from gemimg_jupyter.sim import SimConfig, SimServer
from gemimg_jupyter.sim.api import SimApi

from .support import FAKE_KEY, FAST_RETRY, quick_settings
from .test_bad_inputs import bomb_png, png_bytes_of

REPO = Path(__file__).resolve().parents[1]
FAST_SIM = {"latency": (0.05, 0.15), "queue_delay": (0.0, 0.02)}
SCRIPT = "<script>alert(1)</script>"
HOSTILE = f"""{SCRIPT} a fox <img src=x onerror=alert(2)> " onmouseover="alert(4)" ' onfocus='alert(5)'"""
OTHER_KEY = "sk-someone-else-entirely"

#: What the key looks like in any encoding we could plausibly leak it in.
TEXT_NEEDLES = (
    FAKE_KEY,
    "FAKEKEY",  # any fragment of it
    base64.b64encode(FAKE_KEY.encode()).decode(),
    base64.b64encode(f"Bearer {FAKE_KEY}".encode()).decode(),
)
BYTE_NEEDLES = (*(n.encode() for n in TEXT_NEEDLES), "FAKEKEY".encode("utf-16-le"))


# ------------------------------------------------------------------ the leak scanner


class Scanner:
    """Collects every place it looked; fails on the first sight of the key."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def text(self, where: str, value: object) -> None:
        s = value if isinstance(value, str) else repr(value)
        for needle in TEXT_NEEDLES:
            assert needle not in s, f"the API key leaks into {where}: …{_around(s, needle)}…"
        self.seen[where.split(":")[0]] += 1

    def data(self, where: str, blob: bytes) -> None:
        for needle in BYTE_NEEDLES:
            assert needle not in blob, f"the API key leaks into {where} (bytes)"
        self.seen[where.split(":")[0]] += 1

    def exception(self, where: str, exc: BaseException) -> None:
        """str, repr, the formatted traceback, a pickle round trip, and the whole chain."""
        self.text(f"exception:{where}", "".join(traceback.format_exception(exc)))
        self.data(f"exception-pickle:{where}", pickle.dumps(exc))
        seen: set[int] = set()
        link: BaseException | None = exc
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            self.text(f"exception:{where}", f"{link!s} {link!r} {vars(link)!r}")
            link = link.__cause__ or link.__context__

    def tree(self, root: Path) -> int:
        """Every file below ``root``: raw bytes, PNG text chunks, every ledger row."""
        n = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            n += 1
            raw = path.read_bytes()
            self.data(f"file:{path.name}", raw)
            if raw.startswith(b"\x89PNG"):
                with Image.open(io.BytesIO(raw)) as img:
                    self.text(
                        f"png-text:{path.name}", json.dumps({**img.info, **getattr(img, "text", {})}, default=repr)
                    )
            if path.name == "ledger.sqlite3":
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                        rows = db.execute(f"SELECT * FROM {table}").fetchall()
                        self.text(f"ledger:{table}", repr(rows))
                finally:
                    db.close()
        return n

    def logs(self, records: list[logging.LogRecord]) -> None:
        fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in records:
            self.text(f"log:{record.name}", f"{fmt.format(record)} {record.args!r} {record.exc_text or ''}")

    def outputs(self, outputs: list[dict[str, Any]]) -> None:
        for out in outputs:
            for mime, value in out["data"].items():
                if isinstance(value, bytes):
                    self.data(f"output:{mime}", value)
                else:
                    self.text(f"output:{mime}", value)
            self.text("output-metadata", json.dumps(out["metadata"], default=repr))
            self.text("output-transient", json.dumps(out.get("transient"), default=repr))


def _around(text: str, needle: str) -> str:
    i = text.find(needle)
    return text[max(0, i - 40) : i + len(needle) + 10]


# ------------------------------------------------------------------ a second, tiny server


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up on purpose (download caps) are expected here


class Recorder:
    """A loopback HTTP server that records every request's headers and answers from ``routes``.

    A route is ``path -> (kind, *args)``; ``"*"`` matches any other path.
    Kinds: ``png`` (bytes), ``redirect`` (location), ``stream`` (total bytes,
    send Content-Length?), ``relay`` (upstream base URL, fetched without
    credentials), ``reply`` (status, content type, body).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[str, tuple[Any, ...]] = {}
        self.sent: dict[str, int] = {}
        self.streamed: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                recorder._handle(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def auth_headers(self) -> list[str | None]:
        return [next((v for k, v in r["headers"].items() if k.lower() == "authorization"), None) for r in self.requests]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        h.request.settimeout(10)
        path = urlsplit(h.path).path
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        self.requests.append({"method": h.command, "path": path, "headers": dict(h.headers.items())})
        kind, *args = self.routes.get(path) or self.routes.get("*") or ("reply", 404, "text/plain", b"no route")
        if kind == "png":
            self._send(h, 200, "image/png", args[0])
        elif kind == "redirect":
            h.send_response(302)
            h.send_header("Location", args[0])
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif kind == "relay":
            try:
                with urllib.request.urlopen(args[0] + h.path, timeout=10) as up:
                    self._send(h, up.status, up.headers.get("Content-Type", ""), up.read())
            except urllib.error.HTTPError as err:
                self._send(h, err.code, err.headers.get("Content-Type", ""), err.read())
        elif kind == "stream":
            total, with_length = args
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            if with_length:
                h.send_header("Content-Length", str(total))
            h.end_headers()
            sent, chunk = 0, b"\x89PNG\r\n\x1a\n" + b"\0" * (64 * 1024 - 8)
            try:
                while sent < total:
                    h.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            finally:
                self.sent[path] = sent
                self.streamed[path].set()
        else:
            status, ctype, body = args
            self._send(h, status, ctype, body)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, ctype: str, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


class RelayedApi(SimApi):
    """The simulator's routes, but completed tasks point at ``cdn`` (another host) for their image."""

    cdn: str | None = None

    def _view(self, task: Any, now: float) -> dict[str, Any]:
        out = super()._view(task, now)
        result = out.get("result")
        if self.cdn and isinstance(result, dict):
            for item in result["data"]:
                item["url"] = self.cdn + urlsplit(item["url"]).path
        return out


class RelayedSim(SimServer):
    """The simulator with :class:`RelayedApi` for its routes: set ``cdn`` to relay its images."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api = self.relayed = RelayedApi(self.state, lambda: self.base_url)

    @property
    def cdn(self) -> str | None:
        return self.relayed.cdn

    @cdn.setter
    def cdn(self, url: str | None) -> None:
        self.relayed.cdn = url


# ------------------------------------------------------------------ fixtures


def secure_settings(base_url: str, output_dir: Path, **changes: Any) -> Settings:
    return quick_settings(output_dir, backend="toapis", api_key=FAKE_KEY, base_url=base_url, sim_options={}, **changes)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything at DEBUG, from our loggers and the HTTP stack."""
    caplog.set_level(logging.DEBUG)
    for name in ("gemimg_jupyter", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def key_sim() -> Iterator[SimServer]:
    """A simulator that accepts FAKE_KEY and nothing else."""
    with SimServer(SimConfig(seed=21, **FAST_SIM), accepted_keys=[FAKE_KEY]) as server:
        yield server


@pytest.fixture
def strict_sim() -> Iterator[SimServer]:
    """A simulator that rejects FAKE_KEY (401)."""
    with SimServer(SimConfig(seed=22, **FAST_SIM), accepted_keys=[OTHER_KEY]) as server:
        yield server


@pytest.fixture
def ref_png(tmp_path: Path) -> Path:
    path = tmp_path / "swatch.png"
    path.write_bytes(png_bytes_of(48, 48, (230, 57, 70)))
    return path


def has_key(headers: str | None) -> bool:
    return headers == f"Bearer {FAKE_KEY}"


# ------------------------------------------------------------------ the key


def test_the_key_never_leaks_from_the_python_api(
    key_sim: SimServer, strict_sim: SimServer, tmp_path: Path, ref_png: Path, debug_logs: Any, capsys: Any
) -> None:
    scan = Scanner()
    out = tmp_path / "out"
    settings = secure_settings(key_sim.base_url, out)
    with Session(settings) as sess:
        assert sess.backend == "toapis"
        one = sess.generate("a red kite over dunes", size="16:9", reference_images=[ref_png], wait=True)
        two = sess.generate("a red kite over dunes", size="16:9", reference_images=[ref_png], wait=True)  # cached
        grid = sess.sweep("a paper-cut fox", temperature=[0.2, 1.4], size=["1:1", "3:2"], wait=True)
        assert one.state is JobState.DONE and two.cached and grid.counts()["done"] == 4
        # faults that exercise retries, Retry-After and the lost-submit lookup (and their log lines)
        key_sim.configure(
            server_error_rate=0.2, rate_limit_rate=0.1, retry_after=(0.05, 0.1), drop_after_submit_rate=0.3
        )
        for i in range(3):
            sess.generate(f"a fox through a storm {i}", wait=False)
        assert sess.wait(30)
        assert sum(key_sim.stats()["faults"].values()) > 0
        key_sim.configure(server_error_rate=0.0, rate_limit_rate=0.0, drop_after_submit_rate=0.0, fail_rate=1.0)
        failed = sess.generate("a fox that fails", fresh=True, wait=False)
        with pytest.raises(TaskFailedError) as task_failed:
            failed.result(20)
        key_sim.configure(fail_rate=0.0)
        assert key_sim.stats()["auth_failures"] == 0 and key_sim.stats()["uploads"] == 1
        with pytest.raises(ValidationError) as invalid:
            sess.generate("a fox", size="5:3")
        for name, obj in {
            "session": sess,
            "settings": settings,
            "secret": settings.api_key,
            "client": sess.client,
            "runner": sess.runner,
            "store": sess.store,
            "job": one,
            "failed-job": failed,
            "sweep": grid,
        }.items():
            scan.text(f"repr:{name}", f"{obj!r} {obj!s}")
        scan.text("str:secret", str(settings.api_key))
        for job in [one, two, failed, *grid.jobs]:
            scan.text("describe", json.dumps(job.describe(), default=repr))
            scan.text("provenance", json.dumps(job.provenance, default=repr))
            scan.text("job-error", f"{job.error!r}")
        scan.text("sweep", json.dumps([grid.provenance(), grid.table()], default=repr))
        scan.text("cost", json.dumps(sess.cost()))
        scan.text("banner", sess.banner())
        scan.exception("task-failed", task_failed.value)
        scan.exception("validation", invalid.value)
        with pytest.raises(TypeError) as unpicklable:
            pickle.dumps(settings)
        scan.exception("pickle-settings", unpicklable.value)
        scan.tree(out)  # while the ledger is open: its WAL and shared-memory files too

    # a 401: the same key, against a gateway that rejects it
    with Session(secure_settings(strict_sim.base_url, tmp_path / "out401")) as bad:
        job = bad.generate("a fox behind a locked door", wait=False)
        with pytest.raises(AuthenticationError) as denied:
            job.result(20)
        assert "authentication failed (401)" in str(denied.value)
        scan.exception("401-job", denied.value)
        for call in (lambda: bad.client.status("task-x"), lambda: bad.client.upload_image(png_bytes_of())):
            with pytest.raises(AuthenticationError) as direct:
                call()
            scan.exception("401-direct", direct.value)
        scan.text("repr:401-session", repr(bad))
        assert strict_sim.stats()["auth_failures"] >= 3

    files = scan.tree(tmp_path)
    records = debug_logs.records
    assert any(r.name.startswith("urllib3") and r.levelno == logging.DEBUG for r in records), "urllib3 not captured"
    assert any(r.name.startswith("gemimg_jupyter") and r.levelno == logging.DEBUG for r in records)
    scan.logs(records)
    captured = capsys.readouterr()
    scan.text("stdout", captured.out)
    scan.text("stderr", captured.err)
    assert files >= 8  # ledger(s), 5 images, a grid …
    with capsys.disabled():
        print(
            f"\n[security] python API: {files} files, {len(records)} log records, {sum(scan.seen.values())} artifacts"
        )


def test_the_key_never_reaches_the_notebook(
    ip: Any,
    key_sim: SimServer,
    strict_sim: SimServer,
    tmp_path: Path,
    ref_png: Path,
    debug_logs: Any,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scan = Scanner()
    reset_session(secure_settings(key_sim.base_url, tmp_path / "out"))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.user_ns["swatch"] = Image.open(ref_png)
    ip.run_cell_magic("gemimg", "--wait --ref {swatch} -o hero", "a teapot on a marble table")
    ip.run_cell_magic("gemimg", "--wait --sweep temperature=0.2,1.4 -o fox", "a paper-cut fox")
    key_sim.configure(fail_rate=1.0)
    ip.run_cell_magic("gemimg", "--wait", "a fox that fails")
    key_sim.configure(fail_rate=0.0)
    tables = [ip.run_line_magic("gemimg", sub) for sub in ("jobs", "cost", "config", "models", "history 5")]
    ip.run_line_magic("gemimg", "backend")
    with pytest.raises(ValidationError) as debug_error:
        ip.run_cell_magic("gemimg", "--debug --size 5:3", "a fox")
    scan.exception("debug", debug_error.value)
    panel = ip.run_line_magic("gemimg", "panel")
    panel.prompt.value = "a lighthouse from the panel"
    panel.generate_button.click()
    assert panel.wait(20)
    assert "Done" in panel.message.value
    # %gemimg login with the key (hidden prompt), to a gateway that refuses it
    monkeypatch.setattr("getpass.getpass", lambda prompt="": FAKE_KEY)
    monkeypatch.setenv("GEMIMG_BASE_URL", strict_sim.base_url)
    ip.run_line_magic("gemimg", "login")
    ip.run_cell_magic("gemimg", "--wait", "a fox behind a locked door")
    assert "authentication failed (401)" in ip.display_pub.outputs[-1]["data"]["text/plain"]
    # an API error raised in a cell, shown by the shell with verbose tracebacks (locals included)
    ip.run_line_magic("xmode", "Verbose")
    ip.run_cell("import gemimg_jupyter as gi\ngi.get_session().client.status('task-x')")
    ip.run_cell("gi.get_session().settings")
    ip.run_line_magic("xmode", "Context")

    for table in tables:
        data = table._repr_mimebundle_()
        data = data[0] if isinstance(data, tuple) else data
        for value in data.values():
            (scan.data if isinstance(value, bytes) else scan.text)("subcommand", value)
    scan.outputs(ip.display_pub.outputs)
    for name in ("hero", "fox"):
        scan.text(f"user_ns:{name}", repr(ip.user_ns[name]))
    for widget in panel.state.widgets:
        for key, value in widget.get_state().items():
            (scan.data if isinstance(value, bytes) else scan.text)(f"panel:{key}", value)
    scan.text("panel-repr", repr(panel))
    files = scan.tree(tmp_path)
    captured = capsys.readouterr()
    assert "AuthenticationError" in captured.out and "authentication failed (401)" in captured.out
    assert "Secret('***')" in captured.out  # the settings were shown, masked
    scan.text("stdout", captured.out)
    scan.text("stderr", captured.err)
    scan.logs(debug_logs.records)
    assert len(ip.display_pub.outputs) >= 5
    with capsys.disabled():
        print(
            f"\n[security] notebook: {len(ip.display_pub.outputs)} outputs, {files} files, "
            f"{len(debug_logs.records)} log records, {sum(scan.seen.values())} artifacts"
        )


def test_a_gateway_that_echoes_the_key_does_not_make_us_repeat_it(debug_logs: Any) -> None:
    """Error bodies that contain the key (whole, in an HTML title, or cut at our truncation) are redacted."""
    scan = Scanner()
    padding = "x" * 179  # the plain-text message is cut at 200 characters: right through the key
    with Recorder() as api:
        api.routes = {
            "/v1/images/generations/json": (
                "reply",
                401,
                "application/json",
                json.dumps({"error": {"message": f"Invalid key Bearer {FAKE_KEY}", "code": 401}}).encode(),
            ),
            "/v1/images/generations/html": (
                "reply",
                502,
                "text/html",
                f"<html><title>Bad gateway for {FAKE_KEY}</title></html>".encode(),
            ),
            "/v1/images/generations/text": ("reply", 400, "text/plain", f"{padding} {FAKE_KEY} echoed".encode()),
            "/v1/images/generations/long-json": (
                "reply",
                400,
                "application/json",
                json.dumps({"error": {"message": "y" * 1990 + FAKE_KEY}}).encode(),
            ),
        }
        client = ToAPIsClient(api.url, Secret(FAKE_KEY), retry=RetryPolicy(max_tries=1))
        for name in ("json", "html", "text", "long-json"):
            with pytest.raises(GemimgError) as info:
                client.status(name)
            assert isinstance(info.value, (AuthenticationError, ServerError, GemimgError))
            scan.exception(f"echo-{name}", info.value)
        assert all(has_key(h) for h in api.auth_headers())  # the key went to the API host, as it should
    scan.logs(debug_logs.records)


# ------------------------------------------------------------------ where the key is sent


def test_a_netrc_entry_never_replaces_the_key_and_the_proxy_is_still_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reads proxies and the CA bundle from the environment once per origin (not per request); a
    ``~/.netrc`` entry for the gateway's host is never sent in place of the key, and ``HTTP_PROXY`` /
    ``NO_PROXY`` still decide where requests go."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other-secret\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Recorder() as api, Recorder() as proxy:
        api.routes = {"*": ("reply", 200, "application/json", b'{"data": []}')}
        proxy.routes = {"*": ("reply", 200, "application/json", b'{"data": []}')}
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = ToAPIsClient(api.url, Secret(FAKE_KEY), retry=RetryPolicy(max_tries=1))
        direct.transport.send("query", "GET", "/v1/models")
        direct.transport.send("query", "GET", "/v1/models")
        assert api.auth_headers() == [f"Bearer {FAKE_KEY}"] * 2  # not Basic from the netrc file
        assert proxy.requests == []  # NO_PROXY: straight to the gateway
        monkeypatch.setenv("NO_PROXY", "")
        proxied = ToAPIsClient("http://gateway.example", Secret(FAKE_KEY), retry=RetryPolicy(max_tries=1))
        proxied.transport.send("query", "GET", "/v1/models")
        assert [r["headers"].get("Host") for r in proxy.requests] == ["gateway.example"]
        assert proxy.auth_headers() == [f"Bearer {FAKE_KEY}"]
        direct.close()
        proxied.close()


def test_a_result_on_another_host_is_downloaded_without_the_key(tmp_path: Path) -> None:
    sim = RelayedSim(SimConfig(seed=23, **FAST_SIM), accepted_keys=[FAKE_KEY])
    with sim, Recorder() as cdn:
        cdn.routes = {"*": ("relay", sim.base_url)}
        sim.cdn = cdn.url
        with Session(secure_settings(sim.base_url, tmp_path / "out")) as sess:
            job = sess.generate("a kite seen from a CDN", wait=True)
        assert job.state is JobState.DONE and job.path is not None and job.image.size == (1024, 1024)
        assert sim.stats()["auth_failures"] == 0  # the API host got the key
        assert cdn.requests and all(r["path"].startswith("/generated/") for r in cdn.requests)
        assert cdn.auth_headers() == [None] * len(cdn.requests), "the key was sent to another host"


def test_a_redirect_from_the_api_host_drops_the_key(tmp_path: Path) -> None:
    image = png_bytes_of(64, 64)
    with Recorder() as api, Recorder() as cdn:
        api.routes = {
            "/generated/a.png": ("redirect", "/generated/b.png"),  # same origin: keeps the key
            "/generated/b.png": ("redirect", f"{cdn.url}/img.png"),  # another host: must not get it
            "/generated/loop.png": ("redirect", "/generated/loop.png"),
            "/generated/file.png": ("redirect", "file:///etc/passwd"),
        }
        cdn.routes = {"/img.png": ("png", image), "/back.png": ("redirect", f"{api.url}/generated/b.png")}
        client = ToAPIsClient(api.url, Secret(FAKE_KEY), retry=FAST_RETRY)
        assert client.download(f"{api.url}/generated/a.png") == image
        assert [r["path"] for r in api.requests] == ["/generated/a.png", "/generated/b.png"]
        assert all(has_key(h) for h in api.auth_headers())
        assert cdn.auth_headers() == [None]
        # a result URL on the other host that bounces through it, even back to the API host
        assert client.download(f"{cdn.url}/back.png") == image
        assert cdn.auth_headers() == [None, None, None]
        with pytest.raises(InvalidImageError, match="redirected more than 3 times"):
            client.download(f"{api.url}/generated/loop.png")
        with pytest.raises(InvalidImageError, match="only http"):
            client.download(f"{api.url}/generated/file.png")
        assert all(r["headers"].get("Cookie") is None for r in cdn.requests)


def test_an_api_answer_that_redirects_is_refused_not_followed() -> None:
    """A 302 from the API (a wrong base URL, a captive portal) is one line: the submit is not sent again
    as a GET somewhere else, the key goes nowhere else, and nothing is retried."""
    with Recorder() as api, Recorder() as other:
        api.routes = {"*": ("redirect", f"{other.url}/v1/images/generations")}
        client = ToAPIsClient(api.url, Secret(FAKE_KEY), retry=FAST_RETRY)
        with pytest.raises(APIError, match=r"HTTP 302, a redirect to .*not followed") as caught:
            client.submit(GenerationParams.create("fox"), client_business_id="cb-redirect")
        assert "GEMIMG_BASE_URL" in str(caught.value)
        with pytest.raises(APIError, match="not followed"):
            client.status("task-1")
        assert [(r["method"], r["path"]) for r in api.requests] == [
            ("POST", "/v1/images/generations"), ("GET", "/v1/images/generations/task-1")
        ]  # fmt: skip
        assert other.requests == []


# ------------------------------------------------------------------ prompts in HTML


def _no_raw_markup(where: str, markup: str) -> None:
    assert "<script" not in markup.lower(), f"raw <script> in {where}: {markup[:300]}"
    assert "<img src=x" not in markup, f"raw <img> in {where}"
    assert 'onmouseover="' not in markup and "onfocus='" not in markup, f"an attribute breaks out in {where}"


def test_prompt_text_is_escaped_in_every_html_output(ip: Any, tmp_path: Path, capsys: Any) -> None:
    sim = SimServer(SimConfig(seed=24, **FAST_SIM))
    with sim:
        reset_session(secure_settings(sim.base_url, tmp_path / "out"))
        ip.run_line_magic("load_ext", "gemimg_jupyter")
        ip.run_cell_magic("gemimg", "", HOSTILE)  # the live status line
        ip.run_line_magic("gemimg", "wait")
        sim.configure(fail_rate=1.0)
        ip.run_cell_magic("gemimg", "--wait --fresh", HOSTILE)  # the error line
        sim.configure(fail_rate=0.0)
        jobs = ip.run_line_magic("gemimg", "jobs")
        ip.run_cell_magic("gemimg", f"--wait --sweep 'prompt=fox|{SCRIPT}'", "a fox in the snow")

        htmls = [o["data"]["text/html"] for o in ip.display_pub.outputs if "text/html" in o["data"]]
        htmls.append(jobs.html)
        assert len(htmls) >= 3
        for i, markup in enumerate(htmls):
            _no_raw_markup(f"output {i}", markup)
        shown = [m for m in htmls if "alert(1)" in m]
        assert len(shown) >= 3 and all("&lt;script&gt;alert(1)&lt;/script&gt;" in m for m in shown)
        assert "&lt;img src=x onerror=alert(2)&gt;" in htmls[0]

        # the panel: prompt, sweep labels, uploaded file names, sweep-value errors
        panel = ip.run_line_magic("gemimg", "panel")
        evil_name = "<img src=x onerror=alert(3)>.png"
        panel.upload.value = (
            {
                "name": evil_name,
                "type": "image/png",
                "size": 10,
                "content": memoryview(png_bytes_of()),
                "last_modified": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
            },
        )
        panel.prompt.value = HOSTILE
        panel.x_axis.value = "prompt"
        panel.x_values.value = f"{SCRIPT}|<b>owl</b>"
        panel.generate_button.click()
        assert panel.wait(20)
        panel.cells.children[1].click()
        detail = panel.detail_html.value
        panel.history_buttons[0].click()
        panel.x_axis.value = "temperature"
        panel.x_values.value = f"0.2,{SCRIPT}"  # refused, with the value in the message
        import ipywidgets as W

        markups = [w.value for w in panel.state.widgets if isinstance(w, W.HTML)] + [detail]
        for i, markup in enumerate(markups):
            _no_raw_markup(f"panel HTML {i}", markup)
        assert "<b>owl</b>" not in detail and "&lt;b&gt;owl&lt;/b&gt;" in detail
        assert "&lt;img src=x onerror=alert(3)&gt;.png" in "".join(markups)
        assert "&lt;script&gt;" in panel.x_error.value
        ref_dir = tmp_path / "out" / "references"
        assert [p.parent for p in ref_dir.iterdir()] == [ref_dir]  # the file name was made safe
        assert not any("<" in p.name for p in ref_dir.iterdir())
        panel.close()


# ------------------------------------------------------------------ file names


HOSTILE_NAMES = [
    "../../x",
    "/etc/passwd",
    "..\\..\\x",
    "C:\\Windows\\System32\\drivers",
    "~/.ssh/id_rsa",
    "a/../../b",
    "%2e%2e%2f%2e%2e%2fetc",
    "....//....//x",
    "con",
    "\u202etxt.exe",
    "名前 の 画像",
    "x" * 30_000,
    "word " * 6000,
]
NAME = re.compile(r"^\d{8}-\d{6}_[a-z0-9-]{1,40}_t0\.8_1x1_[a-z0-9]{1,6}\.png$")
#: A stored image keeps the served format's extension (issue #22); the rest of its name is :data:`NAME`'s.
STORED = re.compile(NAME.pattern.removesuffix(r"\.png$") + r"\.(png|jpg|webp)$")


@pytest.mark.parametrize("prompt", HOSTILE_NAMES, ids=lambda p: repr(p[:20]))
def test_file_names_from_prompts_are_safe(prompt: str) -> None:
    name = safe_filename({"prompt": prompt, "temperature": 0.8, "size": "1:1", "resolution": "1K"}, "ab12cd")
    assert NAME.match(name), name
    assert len(name.encode()) <= 100 and ".." not in name and "/" not in name and "\\" not in name


def test_generated_files_stay_in_the_output_directory(key_sim: SimServer, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    before = sorted(p for p in tmp_path.rglob("*"))
    with Session(secure_settings(key_sim.base_url, out)) as sess:
        jobs = [
            sess.generate(p, wait=False) for p in ("../../x", "/etc/passwd", "..\\..\\x", "a/../../b", "long " * 6000)
        ]
        assert sess.wait(30)
        for bad in ("../../x\x00", "/etc/passwd\x00.png"):
            with pytest.raises(ValidationError, match="control character"):
                sess.generate(bad)
        root = sess.store.root
        for job in jobs:
            assert job.state is JobState.DONE and job.path is not None
            assert job.path.resolve().parent == root / "images"
            assert STORED.match(job.path.name), job.path.name
        for name in ("../escape.png", "/tmp/escape.png", "a/b.png", "..", ".", "", "images/../../x.png"):
            with pytest.raises(ValueError, match="unsafe file name"):
                sess.store.write_bytes(b"x", name)
    new = sorted(set(tmp_path.rglob("*")) - set(before))
    assert all(p == out.parent or p.is_relative_to(out) for p in new), [str(p) for p in new]
    assert not (tmp_path / "x").exists() and not Path("/etc/passwd.png").exists()


# ------------------------------------------------------------------ hostile bytes


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"30000x30000": bomb_png(), "8500x8500": bomb_png(8500, 8500)}


def test_a_decompression_bomb_is_refused_as_a_reference(bombs: dict[str, bytes], tmp_path: Path) -> None:
    with Image.open(io.BytesIO(bombs["8500x8500"])) as img:
        img.load()  # a real, valid PNG (72 Mpx is under Pillow's own limit, so it can be decoded here)
        assert img.size == (8500, 8500)
    for name, data in bombs.items():
        assert len(data) < 200_000, "the bomb must be small on disk"
        w, h = struct.unpack(">II", data[16:24])  # the IHDR's declared size
        assert w * h >= 72_000_000
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        for source in (data, path, str(path)):
            with pytest.raises(ValidationError) as info:
                load_reference(source)
            text = str(info.value)
            assert ("safety limit" in text or "too large to decode safely" in text) and "\n" not in text


def test_a_decompression_bomb_is_refused_as_a_download(bombs: dict[str, bytes], tmp_path: Path) -> None:
    with Recorder() as cdn:
        cdn.routes = {"/bomb.png": ("png", bombs["30000x30000"]), "/big.png": ("png", bombs["8500x8500"])}
        client = ToAPIsClient("http://127.0.0.1:9", Secret(FAKE_KEY), retry=FAST_RETRY)
        for path in ("/bomb.png", "/big.png"):
            with pytest.raises(InvalidImageError) as info:
                client.download(cdn.url + path)
            assert "safety limit" in str(info.value) or "too large to decode safely" in str(info.value)
        assert cdn.auth_headers() == [None] * len(cdn.requests)

    # through the job runner: the task completes, its image is a bomb; nothing is saved
    sim = RelayedSim(SimConfig(seed=25, **FAST_SIM), accepted_keys=[FAKE_KEY])
    with sim, Recorder() as cdn:
        cdn.routes = {"*": ("png", bombs["30000x30000"])}
        sim.cdn = cdn.url
        with Session(secure_settings(sim.base_url, tmp_path / "out")) as sess:
            job = sess.generate("a fox that explodes", wait=False)
            assert job.wait(30)
            # paid for, so not failed: the row stays resumable (#11), and nothing is saved
            assert job.state is JobState.TIMEOUT
            assert "too large to decode safely" in str(job.exception)
            assert list((tmp_path / "out" / "images").iterdir()) == []
            [row] = sess.store.rows()
            assert row.state == "timeout" and row.path is None


def test_a_download_over_the_cap_is_cut_off_and_reported(key_sim: SimServer, tmp_path: Path) -> None:
    cap = 100_000
    with Recorder() as cdn:
        cdn.routes = {
            "/declared.png": ("stream", 300_000, True),
            "/endless.png": ("stream", 1 << 30, False),  # 1 GB, no Content-Length
        }
        client = ToAPIsClient("http://127.0.0.1:9", Secret(FAKE_KEY), retry=FAST_RETRY, download_max_bytes=cap)
        with pytest.raises(InvalidImageError, match=r"300,000 bytes, over the 100,000-byte download cap"):
            client.download(cdn.url + "/declared.png")
        with pytest.raises(InvalidImageError, match=r"passed the 100,000-byte cap and was cut off"):
            client.download(cdn.url + "/endless.png")
        assert cdn.streamed["/endless.png"].wait(20), "the server never noticed the client hung up"
        assert cdn.sent["/endless.png"] < 64 * 1024 * 1024, "the client read far past the cap"
        assert len([r for r in cdn.requests if r["path"] == "/endless.png"]) == 1, "a cut-off download is not retried"

    # through the job runner, with the simulator's real (larger than the cap) image
    settings = secure_settings(key_sim.base_url, tmp_path / "out", download_max_bytes=20_000)
    with Session(settings) as sess:
        job = sess.generate("a fox too big to fetch", wait=False)
        assert job.wait(30) and job.state is JobState.TIMEOUT  # paid for: resumable with a larger cap
        assert "download cap" in str(job.exception) and "\n" not in str(job.exception)
        assert list((tmp_path / "out" / "images").iterdir()) == []


# ------------------------------------------------------------------ the repository


def test_no_key_shaped_string_is_committed() -> None:
    strict = r"sk-[A-Za-z0-9]{20,}"
    loose = r"sk-[A-Za-z0-9_-]{20,}"

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        assert done.returncode in (0, 1), done.stderr
        return done.stdout

    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    hits = [h for h in git("grep", "-nIE", strict).splitlines() if not h.startswith("tests/fixtures/")]
    assert hits == [], hits
    outside_tests = [h for h in git("grep", "-nIE", loose).splitlines() if not h.startswith("tests/")]
    assert outside_tests == [], outside_tests
    assert git("log", "--all", "--format=%h", "-G", strict) == "", "a key-shaped string was committed once"
    assert "FAKEKEY" not in git("log", "--all", "--format=%B")
    assert os.environ.get("TOAPIS_API_KEY") is None  # conftest keeps the developer's key out of the tests


def test_the_scanner_finds_a_planted_key(tmp_path: Path) -> None:
    """The scans above would see the key if it were there."""
    img = Image.new("RGB", (16, 16))
    info = PngImagePlugin.PngInfo()
    info.add_text("note", f"zipped {FAKE_KEY}", zip=True)
    img.save(tmp_path / "planted.png", pnginfo=info)
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    db.execute("CREATE TABLE jobs (error TEXT)")
    db.execute("INSERT INTO jobs VALUES (?)", (f"echo {FAKE_KEY[:20]}",))
    db.commit()
    db.close()
    for planted in ("planted.png", "ledger.sqlite3"):
        with pytest.raises(AssertionError, match="leaks into"):
            Scanner().tree(_only(tmp_path, planted))
    with pytest.raises(AssertionError, match="leaks into"):
        Scanner().exception("chained", _chained(RuntimeError(f"Bearer {FAKE_KEY}")))
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "header %s", (f"Bearer {FAKE_KEY}",), None)
    with pytest.raises(AssertionError, match="leaks into"):
        Scanner().logs([record])


def _only(root: Path, name: str) -> Path:
    """A folder holding only ``root / name``."""
    folder = root / f"only-{name}"
    folder.mkdir()
    (root / name).rename(folder / name)
    return folder


def _chained(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except RuntimeError:
            raise GemimgError("a clean message") from None
    except GemimgError as exc:
        return exc


# ---------------------------------------------------------------- Colab's secrets (issue #26, point 10)

_COLAB_USERDATA = '''"""A stand-in for google.colab.userdata: Colab's Secrets panel, as a real module on sys.path."""


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


def get(name):
    mode = {mode!r}
    if mode == "missing":
        raise SecretNotFoundError(name)
    if mode == "refused":
        raise NotebookAccessError(name)
    assert name == "TOAPIS_API_KEY", name
    return {key!r}
'''

_COLAB_CHILD = """
from IPython.core.interactiveshell import InteractiveShell
import gemimg_jupyter as gi

ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "gemimg_jupyter")
ip.run_cell_magic("gemimg", "-o x --wait", "a fox in the snow")
ip.run_line_magic("gemimg", "backend")
print("settings:", gi.get_session().settings)
print("state:", ip.user_ns["x"].state.name, "backend:", gi.get_session().backend)
"""


@pytest.mark.parametrize("mode", ["found", "missing", "refused", "not-colab"])
def test_on_colab_the_key_comes_from_its_secrets_and_is_never_printed(tmp_path: Path, mode: str) -> None:
    """A real ``google.colab.userdata`` module file (a stand-in) in a separate process: the key it holds
    reaches the gateway (a simulator that accepts only that key counts the submit), one line says where it
    came from, and the key is in no output. Missing or refused: quietly the simulator, as without a key."""
    from .support import SimProcess

    key = "sk-colab-" + "Q7w" * 12
    if mode != "not-colab":
        package = tmp_path / "fake-colab" / "google" / "colab"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text('"""Colab, as far as these tests need it."""\n')
        (package / "userdata.py").write_text(_COLAB_USERDATA.format(mode=mode, key=key))
    env = {k: v for k, v in os.environ.items() if k not in ("TOAPIS_API_KEY", "GEMIMG_BACKEND", "GEMIMG_BASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake-colab"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["GEMIMG_OUTPUT_DIR"] = str(tmp_path / "out")
    env["GEMIMG_SIM_LATENCY"] = "0.05,0.2"
    with SimProcess("--key", key) as gateway:
        if mode == "found":  # the "real gateway": a simulator that takes only the Colab key
            env["GEMIMG_BASE_URL"] = gateway.base_url
        run = subprocess.run(
            [sys.executable, "-c", _COLAB_CHILD], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        stats = gateway.stats()
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert key not in output and "Q7wQ7w" not in output
    assert "state: DONE" in run.stdout
    said = [line for line in output.splitlines() if "Colab" in line]
    if mode == "found":
        assert said == ["gemimg: the ToAPIs key comes from Colab's secrets (TOAPIS_API_KEY); it is never printed"]
        assert "backend: toapis" in run.stdout and stats["submits_accepted"] == 1 and stats["auth_failures"] == 0
    else:
        assert said == [] and "backend: sim" in run.stdout and "no API key set" in output
        assert stats["submits_accepted"] == 0
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files and not [p for p in files if key.encode() in p.read_bytes()]
