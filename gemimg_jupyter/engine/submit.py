"""The submit phase: upload references, wait for a place and a token, submit once (:class:`Submitter`)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Generator

from gemimg_jupyter.domain.errors import (
    APIConnectionError,
    APIError,
    DuplicateRequestError,
    RateLimitError,
    ServerError,
    TaskLostError,
)
from gemimg_jupyter.domain.models import JobState, ReferenceImage
from gemimg_jupyter.engine.record import JobRecord, Steps, parent_of
from gemimg_jupyter.engine.shared import Engine, ask_by_business_id, check_cancel

log = logging.getLogger(__name__)


class Submitter:
    """Turns a queued job into a submitted task, paying at most once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._upload_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def run(self, rec: JobRecord) -> Steps:
        """Upload references, wait for a place in the window, a turn and a submit token, submit once.

        A 429 costs nothing and fails nothing: the window halves, the lane
        pauses for ``Retry-After``, the job tries again (however long the
        gateway refuses: nothing is paid meanwhile, and cancel stops it). It keeps
        its place in line: it comes back to the front of the window's line and of
        the submit turns, so it goes out next, not behind every job queued after
        it. After an answer that may hide an accepted task (connection error, 5xx),
        the next try first looks the task up by its ``client_business_id``.
        """
        job = rec.job
        e = self.engine
        urls = yield from self._upload_refs(rec)
        tries = 0
        back = turned = False  # it had a place (a turn) and gave it back for a wait: it returns to the front
        while job.task_id is None:
            check_cancel(rec)
            while not e.window.take(rec, first=back):
                yield None  # parked until a task finishes
                e.woke(rec)
                check_cancel(rec)
            back = True
            e.budget.reserve(rec, e.settings.max_cost_usd)
            if self._needs_look_up(rec):  # before paying again: an earlier try may have been accepted
                try:
                    if (yield from self._look_up(rec)):
                        break
                except RateLimitError as exc:  # the status lane said wait: nothing is known, nothing is sent
                    e.gate.refund("query")
                    e.window.release(rec)  # its place waits for others meanwhile (the window does not shrink)
                    yield min(exc.retry_after or e.settings.retry.base, e.settings.retry_policy.max_retry_after)
                    e.woke(rec)
                    continue
                except (APIConnectionError, ServerError) as exc:
                    tries += 1
                    yield from self._again_later(rec, exc, tries)
                    continue
            first, turned = turned, True
            try:
                pause = yield from self._send(rec, urls, first=first)
            except (APIConnectionError, ServerError) as exc:
                rec.unsent = False  # it may have reached the gateway: look it up before the next try
                tries += 1
                yield from self._again_later(rec, exc, tries)
                continue
            except DuplicateRequestError as exc:  # an earlier try was accepted, so paid for
                yield from self._duplicate(rec, exc)
                break
            if pause is not None:
                yield pause
                e.woke(rec)

    def _send(
        self, rec: JobRecord, urls: tuple[str, ...], *, first: bool
    ) -> Generator[float | None, None, float | None]:
        """One try: a turn, a submit token, the submit. ``None``: the gateway accepted it (the job has its task
        id); else the seconds to wait before the next try (a 429, or a ledger too busy to say "sending").

        The turn is held from the token to the gateway's answer, so the tokens taken ahead of time stay a
        second of the submit rate (``limits.submit_turns``), never the rest of the sweep; ``first``: the job
        had a turn before (a refused submit) and waits at the front of the line.
        """
        job = rec.job
        e = self.engine
        try:
            while not e.turns.take(rec, first=first):
                yield None  # parked until a job ahead of it is answered
                e.woke(rec)
                check_cancel(rec)
            wait = e.gate.reserve("submit")
            if wait > 0:
                yield wait
                e.woke(rec)
                check_cancel(rec)
            params = {**job.params.as_dict(), "reference_urls": list(urls), **parent_of(job)}
            try:  # the fence: only while this process still holds the row (else LeaseLost: follow it)
                e.record.move(rec, JobState.SUBMITTING, params=params, sent=1)
            except (sqlite3.Error, OSError) as exc:  # a busy ledger: nothing is paid until the row says so
                e.gate.refund("submit")
                e.window.release(rec)
                log.info("job %s: the ledger is busy (%s); trying again before paying", job.id, exc)
                return e.settings.retry.delay(2, None, rng=e.rng)
            with e.gate.ticket("submit"):
                status = e.client.submit(job.params, client_business_id=job.cbid, image_urls=urls, tries=1)
        except RateLimitError as exc:
            e.gate.refund("submit")
            e.window.release(rec)
            e.window.shrink()
            pause = exc.retry_after if exc.retry_after is not None else e.settings.retry.base
            if rec.unsent:  # a clear refusal of the only try: no look-up needed before the next one
                e.record.move(rec, JobState.QUEUED)
            else:  # an earlier, ambiguous try may still have reached the gateway: the row stays "submitting"
                e.record.set_state(rec, JobState.QUEUED)
            return min(pause, e.settings.retry_policy.max_retry_after)
        finally:
            e.turns.release(rec)  # answered, refused or given up: the next job in line takes its turn
        e.window.accepted()
        job.task_id = status.id
        job.submitted_at = time.time()
        job.cost_usd = job.params.price_usd or 0.0  # spent the moment the gateway accepts it
        e.record.move(rec, JobState.SUBMITTED, task_id=status.id, submitted=job.submitted_at)
        return None

    def _again_later(self, rec: JobRecord, exc: Exception, tries: int) -> Steps:
        """Wait out a connection error or 5xx with backoff, or give up (raise it) after ``max_tries``."""
        e = self.engine
        if tries >= e.settings.retry.max_tries:
            raise exc
        yield e.settings.retry_policy.delay(tries, exc.__dict__.get("retry_after"), rng=e.rng)
        e.woke(rec)

    def _duplicate(self, rec: JobRecord, refusal: DuplicateRequestError) -> Steps:
        """A submit refused as a duplicate of its business id: an earlier try was accepted and paid for.

        The task is looked up once more; found, the job goes on with it. Not found, the job ends ``lost``
        (:class:`TaskLostError`): its price counts as spent, and a re-run does not pay for it again.
        """
        job = rec.job
        try:
            if (yield from self._look_up(rec)):
                return
        except (APIError, APIConnectionError) as exc:
            log.info("job %s: the look-up after a duplicate refusal failed: %s", job.id, exc)
        job.paid_lost = True
        job.cost_usd = job.params.price_usd or 0.0
        raise TaskLostError(
            f"the gateway refused a second submit of business id {job.cbid} as a duplicate "
            f"({refusal.message}) but cannot find the first: it was paid for and its image cannot be collected"
        )

    def _needs_look_up(self, rec: JobRecord) -> bool:
        """Whether an earlier try (this job's, or a dead owner's) may have reached the gateway unanswered."""
        job = rec.job
        if rec.unsent:
            return False
        row = self.engine.store.get(job.cbid)
        return row is not None and (row.sent or row.state in (JobState.SUBMITTING, JobState.UPLOADING))

    def _look_up(self, rec: JobRecord) -> Generator[float | None, None, bool]:
        """Ask the gateway for the task by ``client_business_id`` (a status query, through the scheduler's
        query lane like every poll: no thread waits on the bucket). ``True``: found, the job is submitted."""
        job = rec.job
        e = self.engine
        found = yield from ask_by_business_id(e, rec, job.cbid)
        if found is None:
            return False
        row = e.store.get(job.cbid)
        job.task_id = found.id
        job.submitted_at = (row.submitted if row is not None else None) or time.time()
        job.cost_usd = job.params.price_usd or 0.0
        e.record.move(rec, JobState.SUBMITTED, task_id=found.id, submitted=job.submitted_at)
        return True

    def _upload_refs(self, rec: JobRecord) -> Generator[float | None, None, tuple[str, ...]]:
        """The references' URLs, uploading each content once per backend, even from parallel jobs.

        A job whose reference another job is uploading right now steps aside (it yields, so its
        I/O thread serves other jobs) and looks again shortly, instead of blocking a thread on the lock.
        """
        job = rec.job
        e = self.engine
        urls: list[str] = []
        refs: tuple[ReferenceImage, ...] = job.params.references
        if any(r.data is not None for r in refs):
            e.record.set_state(rec, JobState.UPLOADING)
        for ref in refs:
            if ref.url is not None:
                urls.append(ref.url)
                continue
            known = e.store.upload_url(ref.sha256, e.backend)
            while known is None:
                known = self._upload_once(ref)
                if known is None:  # another job is uploading it
                    yield e.settings.poll_min
                    e.woke(rec)
                    check_cancel(rec)
                    known = e.store.upload_url(ref.sha256, e.backend)
            urls.append(known)
            check_cancel(rec)
        return tuple(urls)

    def _upload_once(self, ref: ReferenceImage) -> str | None:
        """Upload ``ref`` unless it is known by now; ``None`` when another job holds its upload."""
        e = self.engine
        with self._lock:
            lock = self._upload_locks.setdefault(ref.sha256, threading.Lock())
        if not lock.acquire(blocking=False):
            return None
        try:
            known = e.store.upload_url(ref.sha256, e.backend)
            if known is None:
                assert ref.data is not None
                ext = {"jpeg": "jpg"}.get(ref.format or "png", ref.format or "png")
                known = e.client.upload_image(
                    ref.data, filename=f"ref-{ref.sha256[:8]}.{ext}", mime=ref.mime or "image/png"
                )
                e.store.remember_upload(ref.sha256, e.backend, known)
            return known
        finally:
            lock.release()
            with self._lock:  # done (or failed, then the next job tries): the map does not grow with contents
                self._upload_locks.pop(ref.sha256, None)
