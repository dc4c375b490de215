"""A local HTTP server that speaks the ToAPIs async image protocol.

Routes (see ``docs/simulator.md`` for every body and header)::

    POST /v1/images/generations            submit a task (JSON)
    GET  /v1/images/generations/{id}       task status, by task id or client_business_id
    POST /v1/uploads/images                upload a reference image (multipart, field "file")
    GET  /v1/models?type=image             the image models the key may use
    GET  /generated/<name>.jpg             result images (.png/.webp on request) (no auth, like a CDN; expire)
    GET  /uploads/<...>                    uploaded images (no auth)
    GET  /_sim/stats | POST /_sim/reset | GET, POST /_sim/config | POST /_sim/advance

A task's state is a pure function of its submit time and durations drawn from
a per-task seeded RNG, so no background thread drives it. Every fault of the
real gateway can be switched on through :class:`SimConfig`, and ``style``
picks the dialect: ``docs`` answers as the ToAPIs pages document, ``newapi``
as the New API gateway underneath was seen to (``pending`` on submit,
upper-case status words, ``"40%"`` progress, ``fail_reason``, a top-level
``url``, ``billing`` only on failures).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from gemimg_jupyter.sim.api import SimApi
from gemimg_jupyter.sim.config import _MAX_BODY, _UPLOAD, CONFIG_HELP, MAX_UPLOAD_BYTES, SimConfig
from gemimg_jupyter.sim.state import SimState
from gemimg_jupyter.sim.tasks import _error, _json, _Reply

__all__ = ["CONFIG_HELP", "MAX_UPLOAD_BYTES", "SimConfig", "SimServer"]

log = logging.getLogger(__name__)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimServer) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can stall on a slow resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer are normal here; keep them out of stderr.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self.conn_lock:
            (self.connections.add if add else self.connections.discard)(conn)

    def drop_connections(self) -> None:
        """Cut open keep-alive connections so nothing keeps serving after a stop."""
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answer at once instead of waiting ~40 ms for a delayed ACK
    server_version = "gemimg-sim/1.0"
    sys_version = ""
    timeout = 15.0

    def version_string(self) -> str:
        return self.server_version

    def _srv(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        self._srv().track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._srv().track(self.connection, False)

    def do_GET(self) -> None:
        self._srv().sim._serve(self, "GET")

    def do_POST(self) -> None:
        self._srv().sim._serve(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class SimServer:
    """The simulator: a threaded HTTP server on ``host:port`` plus all task state.

    Parameters
    ----------
    config : SimConfig, optional
        Behaviour and fault switches (defaults: :class:`SimConfig`).
    host : str
        Interface to bind, ``127.0.0.1`` by default.
    port : int
        Port to bind; ``0`` picks a free one (kept across :meth:`restart`).
    accepted_keys : iterable of str, optional
        API keys to accept; ``None`` accepts any non-empty bearer key.
    state_file : path, optional
        Keep the task table in this file (one JSON line per task) and restore it on start-up.

    Tasks are scoped to the key that submitted them; keys are kept only as
    hashes and never appear in any answer or log line. The server *has* its
    :attr:`state` (:class:`~.state.SimState`: the task table, clock, counts and
    faults) and its :attr:`api` (:class:`~.api.SimApi`: the routes over that
    state); this class adds the life cycle and the HTTP plumbing.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accepted_keys: Iterable[str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.state = SimState(config, accepted_keys=accepted_keys, state_file=state_file)
        self.api = SimApi(self.state, lambda: self.base_url)
        self.host, self._port = host, port
        self._life = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def config(self) -> SimConfig:
        """The behaviour and fault switches in force (change them with :meth:`configure`)."""
        return self.state.config

    @property
    def base_url(self) -> str:
        """``http://host:port`` once started (raises RuntimeError before)."""
        if not self._port:
            raise RuntimeError("the simulator has not been started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (0 before the first start)."""
        return self._port

    # -- control ------------------------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> SimConfig:
        """Change config fields at run time (checked; ValueError on a bad name or value)."""
        return self.state.configure(**changes)

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward: tasks progress and URLs expire (timestamps do not move)."""
        self.state.advance(seconds)

    def reset(self, *, tasks: bool = False) -> None:
        """Zero the counts and refill rate-limit buckets; ``tasks=True`` also forgets tasks and uploads."""
        self.state.reset(tasks=tasks)

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset (see ``docs/simulator.md``)."""
        return self.state.stats()

    # -- life cycle ---------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the listening socket is open."""
        return self._httpd is not None

    def start(self) -> str:
        """Start serving in a daemon thread (no-op when running); return :attr:`base_url`."""
        with self._life:
            self._cancel_timer()
            if self._httpd is None:
                self._listen()
            return self.base_url

    def stop(self) -> None:
        """Stop serving and cut open connections; task state is kept."""
        with self._life:
            self.state.closing.set()  # let held (hung) answers go
            self._cancel_timer()
            self._close()
            self.state.closing.clear()

    def restart(self) -> str:
        """Close the listening socket and open it again on the same port, keeping all state."""
        with self._life:
            self._cancel_timer()
            self._close()
            self._listen()
            return self.base_url

    def down(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` (the port is closed), then serve again."""
        with self._life:
            self._cancel_timer()
            self._close()
            timer = threading.Timer(seconds, self._come_back)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _come_back(self) -> None:
        with self._life:
            if self._timer is threading.current_thread():
                self._timer = None
                self._listen()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _listen(self) -> None:
        httpd = _HTTPServer((self.host, self._port), self)
        self._port = int(httpd.server_address[1])
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"gemimg-sim:{self._port}", daemon=True
        )
        self._httpd, self._thread = httpd, thread
        thread.start()

    def _close(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if thread is not None:
            thread.join(timeout=2)

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- HTTP plumbing ------------------------------------------------------------------------------------------

    def _serve(self, h: _Handler, method: str) -> None:
        declared = h.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isdigit() else 0
        if length > _MAX_BODY:
            while length > 0:  # drain it, so the client reads the answer instead of a reset
                chunk = h.rfile.read(min(length, 1 << 20))
                length = length - len(chunk) if chunk else 0
            big = {"success": False, "message": "Image too large. Maximum size is 10MB"}
            reply: _Reply | None = _json(400, big) if h.path.startswith(_UPLOAD) else _error(413, 413, "Body too large")
        else:
            body = h.rfile.read(length) if length > 0 else b""
            try:
                reply = self.api.route(method, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
            except Exception:  # one bad request must not kill the handler thread
                log.exception("simulator error on %s %s", method, urlsplit(h.path).path)
                reply = _error(500, "internal_error", "Internal server error", "server_error")
        if reply is None:  # drop-after-submit: close without a byte of answer
            h.close_connection = True
            return
        h.send_response(reply.status)
        for name, value in {**reply.headers, "X-Request-Id": "req_" + os.urandom(8).hex()}.items():
            h.send_header(name, value)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(reply.body)))
        h.end_headers()
        if reply.trickle > 0:
            for i in range(len(reply.body)):
                h.wfile.write(reply.body[i : i + 1])
                if self.state.closing.wait(reply.trickle):
                    h.close_connection = True
                    return
            return
        h.wfile.write(reply.body)
