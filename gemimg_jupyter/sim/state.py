"""The simulator's state: tasks (kept on disk when asked), clock, counts, rate buckets and faults.

:class:`SimState` is HTTP-free: the server (:mod:`.server`) *has* one and the
routes (:mod:`.api`) read and change it, always under :attr:`SimState.lock`.
"""

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
from typing import Any
from urllib.parse import unquote

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import get_model
from gemimg_jupyter.sim.config import _FAULT_KINDS, _HTML_504, _SUBMIT, SimConfig, log
from gemimg_jupyter.sim.tasks import _error, _owner, _rate_limited, _Reply, _Submit, _Task

__all__ = ["SimState"]


class SimState:
    """All task state of the simulator, its control (configure, advance, reset, stats) and its fault dice.

    The tables are public to the simulator's routes; read or change them only under :attr:`lock`.
    ``accepted_keys`` (``None``: any non-empty key) are kept as hashes only.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        accepted_keys: Iterable[str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        keys = [accepted_keys] if isinstance(accepted_keys, str) else accepted_keys
        self.accepted = None if keys is None else frozenset(_owner(k) for k in keys)
        self.salt = str(self.config.seed) if self.config.seed is not None else os.urandom(8).hex()
        self.rng = random.Random(self.salt)
        self.lock = threading.RLock()
        self._offset = 0.0
        self.tasks: dict[str, _Task] = {}
        self.by_bid: dict[tuple[str, str], list[str]] = {}
        #: (owner, Idempotency-Key) → the task its first submit made (replayed for a repeated key)
        self.by_idem: dict[tuple[str, str], str] = {}
        self._replayed: set[tuple[str, str]] = set()  # (owner, business id) of submits answered by a replay
        self.files: dict[str, str] = {}
        self.uploads: dict[str, tuple[bytes, str]] = {}
        self.cache: OrderedDict[str, bytes] = OrderedDict()
        # render_once: one image per size, resolution, smallness, format and quality
        self.renders: dict[tuple[str, str, bool, str, int | None], bytes] = {}
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.seq = 0
        self._reset_seq = 0
        self._seen: set[tuple[str, str]] = set()  # (fault, task id) pairs of the once-per-task faults
        self.closing = threading.Event()  # set while the server stops: held answers (hung, trickled) let go
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
        now_wall, now = time.time(), self.now()
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
            self.tasks[task.id] = task
            self.files[task.file_name] = task.id
            if req.business_id:
                self.by_bid.setdefault((task.owner, req.business_id), []).append(task.id)
            self.seq = max(self.seq, task.seq)
        self._reset_seq = self.seq

    def save_task(self, task: _Task) -> None:
        """Append ``task`` to the state file, when there is one (a failure to write is logged, not raised)."""
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

    # -- control ------------------------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> SimConfig:
        """Change config fields at run time (checked; ValueError on a bad name or value)."""
        with self.lock:
            self.config.update(**changes)
            return self.config

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward: tasks progress and URLs expire (timestamps do not move)."""
        with self.lock:
            self._offset += max(0.0, float(seconds))

    def reset(self, *, tasks: bool = False) -> None:
        """Zero the counts and refill rate-limit buckets; ``tasks=True`` also forgets tasks and uploads."""
        with self.lock:
            self.counts.clear()
            self.faults.clear()
            self._buckets.clear()
            self._reset_seq = self.seq
            self._replayed.clear()
            if tasks:
                self.tasks.clear()
                self.by_bid.clear()
                self.by_idem.clear()
                self.files.clear()
                self.uploads.clear()
                self.cache.clear()

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset (see ``docs/simulator.md``)."""
        with self.lock:
            now = self.now()
            recent = [t for t in self.tasks.values() if t.seq > self._reset_seq]
            states = Counter(t.state(now)[0] for t in recent)
            bids = Counter((t.owner, t.req.business_id) for t in recent if t.req.business_id)
            c = self.counts
            return {
                "submits_accepted": c["submits_accepted"],
                "submits_rejected": c["submits_rejected"],
                "tasks": {s: states[s] for s in ("queued", "in_progress", "completed", "failed")}
                | {"total": len(recent)},
                "status_queries": c["status_queries"],
                "uploads": c["uploads"],
                "downloads": c["downloads"],
                "rate_limited": c["rate_limited"],
                "faults": {kind: self.faults[kind] for kind in _FAULT_KINDS},
                # re-sent submits: a business id on more than one task, or answered by an Idempotency-Key replay
                "duplicate_business_ids": len({k for k, n in bids.items() if n > 1} | self._replayed),
                "idempotent_replays": c["idempotent_replays"],
                "auth_failures": c["auth_failures"],
                "idempotency_keys": c["idempotency_keys"],  # submits that carried an Idempotency-Key header
                "requests": c["requests"],
                # the metadata of each accepted submit since the reset, in order (what the gateway received)
                "metadata": [dict(t.req.metadata) for t in sorted(recent, key=lambda t: t.seq)],
            }

    def now(self) -> float:
        """The simulator's clock: the monotonic clock plus what :meth:`advance` added."""
        return time.monotonic() + self._offset

    # -- faults and limits ---------------------------------------------------------------------------------------

    def unfinished(self, owner: str) -> int:
        """How many of ``owner``'s tasks are queued or running."""
        with self.lock:
            now = self.now()
            return sum(
                1 for t in self.tasks.values() if t.owner == owner and t.state(now)[0] in ("queued", "in_progress")
            )

    def once(self, fault: str, task_id: str) -> bool:
        """True the first time ``fault`` meets ``task_id`` (counted), False after."""
        with self.lock:
            if (fault, task_id) in self._seen:
                return False
            self._seen.add((fault, task_id))
            self.faults[fault] += 1
            return True

    def hang_once(self, path: str) -> bool:
        """True when the status query of ``path`` is to be held (``hang_status_once``, the first time per task)."""
        ident = unquote(path.removeprefix(_SUBMIT + "/"))
        with self.lock:
            known = ident in self.tasks
        return self.config.hang_status_once and known and self.once("hung_status", ident)

    def replay(self, owner: str, key: str | None, business_id: str | None) -> _Task | None:
        """The task a repeated ``Idempotency-Key`` made first (``idempotency`` on), counted; ``None``: a new key."""
        if not key or not self.config.idempotency or self.config.lost_submit:
            return None
        with self.lock:
            task = self.tasks.get(self.by_idem.get((owner, key), ""))
            if task is not None:
                self.counts["idempotent_replays"] += 1
                if business_id:  # a business id sent again: a re-send the duplicate count shows
                    self._replayed.add((owner, business_id))
            return task

    def retry_after(self, seconds: float) -> str:
        """A ``Retry-After`` value: whole or fractional seconds, or an HTTP date (``retry_after_http_date``)."""
        if self.config.retry_after_http_date:
            return email.utils.formatdate(time.time() + math.ceil(seconds), usegmt=True)
        return str(int(seconds)) if seconds == int(seconds) else f"{seconds:.2f}"

    def roll_fault(self, endpoint: str) -> _Reply | None:
        """The random fault ``endpoint`` meets this time (5xx, an HTML 504, a 429), or None."""
        cfg = self.config
        if endpoint not in cfg.fault_endpoints:
            return None
        with self.lock:
            if self.rng.random() < cfg.server_error_rate:
                if self.rng.random() < cfg.html_error_rate:
                    self.faults["html_504"] += 1
                    return _Reply(504, _HTML_504, "text/html")
                self.faults["server_error"] += 1
                status = self.rng.choice((500, 502, 503))
                if status == 503:
                    return _error(
                        503, "rate_limit_unavailable", "The async task submit limiter is temporarily unavailable"
                    )
                return _error(status, "internal_error", "Internal server error", "server_error")
            if self.rng.random() >= cfg.rate_limit_rate:
                return None
            self.faults["rate_limit"] += 1
            wait = self.rng.uniform(*cfg.retry_after)
        return _rate_limited({"Retry-After": self.retry_after(wait)})

    def take(self, owner: str, category: str) -> tuple[bool, dict[str, str]]:
        """Take one token from the key's bucket; the answer carries X-RateLimit-* headers."""
        cfg = self.config
        rate, burst = (
            (cfg.submit_rate, cfg.submit_burst) if category == "async_submit" else (cfg.query_rate, cfg.query_burst)
        )
        with self.lock:
            now = self.now()
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
