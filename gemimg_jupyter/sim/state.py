"""The simulator's state: tasks (kept on disk when asked), clock, counts, rate buckets and faults."""

from __future__ import annotations

import email.utils
import json
import math
import os
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import get_model
from gemimg_jupyter.sim.config import _FAULT_KINDS, _HTML_504, _SUBMIT, SimConfig, log
from gemimg_jupyter.sim.tasks import _error, _owner, _rate_limited, _Reply, _Submit, _Task

if TYPE_CHECKING:  # pragma: no cover
    from gemimg_jupyter.sim.server import _HTTPServer


class _SimState:
    """All task state of the simulator, its control (configure, advance, reset, stats) and its fault dice."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accepted_keys: Iterable[str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self.host, self._port = host, port
        keys = [accepted_keys] if isinstance(accepted_keys, str) else accepted_keys
        self._accepted = None if keys is None else frozenset(_owner(k) for k in keys)
        self._salt = str(self.config.seed) if self.config.seed is not None else os.urandom(8).hex()
        self._rng = random.Random(self._salt)
        self._lock = threading.RLock()
        self._life = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._offset = 0.0
        self._tasks: dict[str, _Task] = {}
        self._by_bid: dict[tuple[str, str], list[str]] = {}
        self._files: dict[str, str] = {}
        self._uploads: dict[str, tuple[bytes, str]] = {}
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._renders: dict[tuple[str, str, bool], bytes] = {}  # render_once: one image per size
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._seq = 0
        self._reset_seq = 0
        self._seen: set[tuple[str, str]] = set()  # (fault, task id) pairs of the once-per-task faults
        self._closing = threading.Event()
        self._state_file = Path(state_file) if state_file is not None else None
        if self._state_file is not None:
            self._load_state(self._state_file)

    # -- the task table on disk ----------------------------------------------------------------------------------

    def _load_state(self, path: Path) -> None:
        """Restore the tasks a previous simulator wrote to ``path`` (one JSON line per task)."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        now_wall, now = time.time(), self._now()
        for line in lines:
            try:
                d = json.loads(line)
                r = d["req"]
                req = _Submit(
                    get_model(r["model"]), r["prompt"], r["size"], r["resolution"], r["temperature"],
                    r["top_p"], tuple(r["image_urls"]), r["business_id"],
                )  # fmt: skip
                task = _Task(
                    d["id"], int(d["seq"]), d["owner"], req, float(d["created_wall"]),
                    now - (now_wall - float(d["created_wall"])), float(d["queue_s"]), float(d["run_s"]),
                    d["outcome"], bool(d["corrupt"]), float(d["lifetime"]), d["file_name"],
                )  # fmt: skip
            except (ValueError, KeyError, TypeError, ValidationError):
                continue  # a torn last line after a crash
            self._tasks[task.id] = task
            self._files[task.file_name] = task.id
            if req.business_id:
                self._by_bid.setdefault((task.owner, req.business_id), []).append(task.id)
            self._seq = max(self._seq, task.seq)
        self._reset_seq = self._seq

    def _save_task(self, task: _Task) -> None:
        if self._state_file is None:
            return
        req = task.req
        line = {
            "id": task.id, "seq": task.seq, "owner": task.owner, "created_wall": task.created_wall,
            "queue_s": task.queue_s, "run_s": task.run_s, "outcome": task.outcome, "corrupt": task.corrupt,
            "lifetime": task.lifetime, "file_name": task.file_name,
            "req": {"model": req.spec.id, "prompt": req.prompt, "size": req.size, "resolution": req.resolution,
                    "temperature": req.temperature, "top_p": req.top_p, "image_urls": list(req.image_urls),
                    "business_id": req.business_id},
        }  # fmt: skip
        try:
            with open(self._state_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        except OSError:
            log.warning("the simulator could not keep task %s on disk", task.id, exc_info=True)

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
        with self._lock:
            self.config.update(**changes)
            return self.config

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward: tasks progress and URLs expire (timestamps do not move)."""
        with self._lock:
            self._offset += max(0.0, float(seconds))

    def reset(self, *, tasks: bool = False) -> None:
        """Zero the counts and refill rate-limit buckets; ``tasks=True`` also forgets tasks and uploads."""
        with self._lock:
            self._counts.clear()
            self._faults.clear()
            self._buckets.clear()
            self._reset_seq = self._seq
            if tasks:
                self._tasks.clear()
                self._by_bid.clear()
                self._files.clear()
                self._uploads.clear()
                self._cache.clear()

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset (see ``docs/simulator.md``)."""
        with self._lock:
            now = self._now()
            recent = [t for t in self._tasks.values() if t.seq > self._reset_seq]
            states = Counter(t.state(now)[0] for t in recent)
            bids = Counter((t.owner, t.req.business_id) for t in recent if t.req.business_id)
            c = self._counts
            return {
                "submits_accepted": c["submits_accepted"],
                "submits_rejected": c["submits_rejected"],
                "tasks": {s: states[s] for s in ("queued", "in_progress", "completed", "failed")}
                | {"total": len(recent)},
                "status_queries": c["status_queries"],
                "uploads": c["uploads"],
                "downloads": c["downloads"],
                "rate_limited": c["rate_limited"],
                "faults": {kind: self._faults[kind] for kind in _FAULT_KINDS},
                "duplicate_business_ids": sum(1 for n in bids.values() if n > 1),
                "auth_failures": c["auth_failures"],
                "requests": c["requests"],
                # the metadata of each accepted submit since the reset, in order (what the gateway received)
                "metadata": [dict(t.req.metadata) for t in sorted(recent, key=lambda t: t.seq)],
            }

    def _now(self) -> float:
        return time.monotonic() + self._offset

    # -- faults and limits ---------------------------------------------------------------------------------------

    def _unfinished(self, owner: str) -> int:
        with self._lock:
            now = self._now()
            return sum(
                1 for t in self._tasks.values() if t.owner == owner and t.state(now)[0] in ("queued", "in_progress")
            )

    def _once(self, fault: str, task_id: str) -> bool:
        """True the first time ``fault`` meets ``task_id`` (counted), False after."""
        with self._lock:
            if (fault, task_id) in self._seen:
                return False
            self._seen.add((fault, task_id))
            self._faults[fault] += 1
            return True

    def _hang_once(self, path: str) -> bool:
        ident = unquote(path.removeprefix(_SUBMIT + "/"))
        with self._lock:
            known = ident in self._tasks
        return self.config.hang_status_once and known and self._once("hung_status", ident)

    def _roll_fault(self, endpoint: str) -> _Reply | None:
        cfg = self.config
        if endpoint not in cfg.fault_endpoints:
            return None
        with self._lock:
            if self._rng.random() < cfg.server_error_rate:
                if self._rng.random() < cfg.html_error_rate:
                    self._faults["html_504"] += 1
                    return _Reply(504, _HTML_504, "text/html")
                self._faults["server_error"] += 1
                status = self._rng.choice((500, 502, 503))
                if status == 503:
                    return _error(
                        503, "rate_limit_unavailable", "The async task submit limiter is temporarily unavailable"
                    )
                return _error(status, "internal_error", "Internal server error", "server_error")
            if self._rng.random() >= cfg.rate_limit_rate:
                return None
            self._faults["rate_limit"] += 1
            wait = self._rng.uniform(*cfg.retry_after)
        if cfg.retry_after_http_date:
            after = email.utils.formatdate(time.time() + math.ceil(wait), usegmt=True)
        else:
            after = str(int(wait)) if wait == int(wait) else f"{wait:.2f}"
        return _rate_limited({"Retry-After": after})

    def _take(self, owner: str, category: str) -> tuple[bool, dict[str, str]]:
        """Take one token from the key's bucket; the answer carries X-RateLimit-* headers."""
        cfg = self.config
        rate, burst = (
            (cfg.submit_rate, cfg.submit_burst) if category == "async_submit" else (cfg.query_rate, cfg.query_burst)
        )
        with self._lock:
            now = self._now()
            tokens, last = self._buckets.get((owner, category), (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            ok = tokens >= 1
            tokens -= 1 if ok else 0
            self._buckets[(owner, category)] = (tokens, now)
        reset = math.ceil((burst - tokens) / rate) if rate > 0 else 60
        headers = {
            "X-RateLimit-Limit": str(int(burst)),
            "X-RateLimit-Remaining": str(max(0, int(tokens))),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Category": category,
        }
        if not ok:
            headers["Retry-After"] = str(max(1, math.ceil((1 - tokens) / rate))) if rate > 0 else "60"
        return ok, headers
