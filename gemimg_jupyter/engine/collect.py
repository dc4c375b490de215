"""The collect phase: poll, download and write the image of a submitted task (:class:`Collector`).

After payment only a verdict (failed, blocked, expired) ends a job without
its image; anything else is tried again until the job's deadline, and then
the row stays in the ledger, resumable.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Generator
from typing import Any

from gemimg_jupyter._version import __version__
from gemimg_jupyter.domain.errors import (
    GemimgError,
    InvalidImageError,
    JobCancelled,
    JobTimeoutError,
    RateLimitError,
    TaskBlockedError,
    TaskExpiredError,
    TaskFailedError,
)
from gemimg_jupyter.domain.finish import failure_text
from gemimg_jupyter.domain.models import JobState, TaskStatus
from gemimg_jupyter.draw.formats import Shown, file_facts
from gemimg_jupyter.engine.handle import Job
from gemimg_jupyter.engine.lanes import TO_DOWNLOADS
from gemimg_jupyter.engine.record import JobRecord, Steps, parent_of
from gemimg_jupyter.engine.shared import Engine, check_cancel
from gemimg_jupyter.engine.transitions import LeaseLost
from gemimg_jupyter.ledger.store import safe_filename
from gemimg_jupyter.ledger.thumbs import FILE_SIDE, write_thumb

log = logging.getLogger(__name__)

#: 403/404 answers to a download before a result past its ``expires_at`` (or with ``expires_at`` 0) counts as gone.
EXPIRED_PATIENCE = 2
#: Answers in a row with a status the gateway does not document before the job fails, naming it.
UNKNOWN_LIMIT = 5


def long_wait(seconds: float | None) -> str | None:
    """``"60 min"``: a wait the gateway asked for (``Retry-After``), when it is a minute or more (else ``None``)."""
    return None if seconds is None or seconds < 60 else f"{round(seconds / 60):,} min"


class Retry(Exception):
    """Internal: not an answer yet (e.g. completed without a URL); look again."""


class Collector:
    """Takes a submitted job to its image (or its verdict), one look and one download at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run(self, rec: JobRecord, deadline: float) -> Steps:
        """Poll, download and write: after payment only a verdict ends the job without its image.

        Anything else (HTML or non-JSON answers, a 404 on a result before it
        expires, connection errors, timeouts, disk errors) is tried again with
        backoff until the job's deadline; then the row stays resumable, with
        the last problem as its reason.
        """
        job = rec.job
        assert job.task_id is not None
        e = self.engine
        problem: BaseException | None = None
        tries = refused = 0
        while True:
            try:
                status = yield from self._poll(rec, deadline, problem)
                e.window.release(rec, grew=True)  # the gateway has finished it: room for one more
                problem = None
                if status.cost_usd:  # never zero a billed cost
                    job.cost_usd = status.cost_usd
                job.expires_at = status.expires_at  # the CDN decides; a past (or 0) expires_at only shortens patience
                if not status.url:
                    raise Retry(f"task {status.id} completed without an image URL")
                yield from self._download(rec, status, status.url, deadline)
                return
            except JobCancelled:
                raise
            except TaskExpiredError as exc:  # the CDN answered 403/404
                refused += 1
                if refused >= EXPIRED_PATIENCE and job.expires_at is not None and time.time() > job.expires_at:
                    raise  # refused again, and past expires_at (or 0): the result is gone
                problem = exc  # a result URL that 404s before its expires_at: a CDN not in sync yet
            except (JobTimeoutError, TaskFailedError):
                raise
            except InvalidImageError as exc:  # the client already downloaded it three times: leave it resumable
                raise JobTimeoutError(
                    f"task {job.task_id}: {exc}; it stays in the ledger: Session.resume() or a re-run tries again",
                    task_id=job.task_id,
                ) from None
            except (GemimgError, OSError, sqlite3.Error, Retry) as exc:
                problem = exc
                if isinstance(exc, RateLimitError):
                    e.gate.refund("query")
                    self._tell_wait(rec, exc.retry_after)
            if e.stop_now(rec):
                raise JobCancelled(f"job {job.id} dropped after submit (it is still paid for)", task_id=job.task_id)
            tries += 1
            e.record.set_state(rec, JobState.IN_PROGRESS, job.progress)
            wait = e.settings.retry_policy.delay(tries, getattr(problem, "retry_after", None), rng=e.rng)
            wait = min(wait, e.settings.poll_max, max(0.0, deadline - time.monotonic()))
            log.info("job %s: trying again in %.1fs after: %s", job.id, wait, problem)
            yield wait
            e.woke(rec)
            check_cancel(rec)
            if time.monotonic() >= deadline:
                raise self._overdue(rec, problem)

    def _download(self, rec: JobRecord, status: TaskStatus, url: str, deadline: float) -> Steps:
        """Download the image in the download pool, keep its bytes with a provenance sidecar, and end the job ``done``."""
        job = rec.job
        e = self.engine
        # nothing waits for this state: it joins the next batch (fenced when written); a row taken over meanwhile
        # is found below (holds) before the image is written, and a crash before the batch leaves it submitted
        e.record.move(
            rec, JobState.DOWNLOADING, 100, durable=False, expires_at=status.expires_at, cost_usd=job.cost_usd
        )
        yield TO_DOWNLOADS
        e.woke(rec)
        data = e.client.download(
            url,
            expected=job.params.pixel_size,
            deadline=deadline,
            cancelled=lambda: e.stop_now(rec),
            tries=1,
            small=FILE_SIDE,  # the check's own decode makes the copy for the suspect check and the thumbnail
        )
        job.provenance = self._provenance(job, status)
        note = getattr(data, "note", None)  # paid for and kept, though not the size asked for
        if note:  # the job's own: its status line, report and provenance, and the log; never printed from here
            job.provenance["size_note"] = note
            job.notes.append(note)
            log.info("job %s: %s", job.id, note)
        shown: Shown | None = data.shown
        job.provenance["file"] = file_facts(data, job.params.pixel_size, shown=shown)  # hash, format, suspect
        name = safe_filename(job.params.as_dict(), job.id, job.submitted_at)
        if not e.store.holds(job.cbid):  # paused past its lease while downloading: the new owner stores it
            raise LeaseLost(job.cbid)
        job.path = e.store.write_image(data, name, job.provenance)
        # once, here in the download pool: every grid and gallery reads it after
        write_thumb(job.path, data, small=shown[0] if shown else None)
        e.record.finish(rec, JobState.DONE, path=str(job.path), cost_usd=job.cost_usd)

    def _tell_wait(self, rec: JobRecord, seconds: float | None) -> None:
        """The gateway asked for a long wait before the next status query: say so in the job's own notes (once)."""
        asked = long_wait(seconds)
        if asked is None:
            return
        s = self.engine.settings
        note = (
            f"the gateway asked to wait {asked} before the next status query; waiting at most "
            f"{s.retry_policy.max_retry_after:g} s at a time (max_retry_after), never past the job's "
            f"{s.job_timeout:g} s deadline"
        )
        rec.asked_wait = asked
        if note not in rec.job.notes:
            rec.job.notes.append(note)
            log.info("job %s: %s", rec.job.id, note)
            self.engine.record.notify(rec)

    def _overdue(self, rec: JobRecord, problem: BaseException | None) -> JobTimeoutError:
        """The job's deadline passed without an image: it ends ``timeout``, its row resumable."""
        e = self.engine
        job = rec.job
        asked = long_wait(problem.retry_after if isinstance(problem, RateLimitError) else None) or rec.asked_wait
        reason = ""
        if asked:
            reason = f" (the gateway asked to wait {asked} before asking again)"
        elif problem is not None:
            reason = f" (last problem: {str(problem).splitlines()[0] if str(problem) else type(problem).__name__})"
        return JobTimeoutError(
            f"task {job.task_id} has no image after {e.settings.job_timeout:g}s{reason}; it stays in the ledger: "
            "run the cell again or "
            "Session.resume() to collect it",
            task_id=job.task_id,
        )

    def _poll(
        self, rec: JobRecord, deadline: float, problem: BaseException | None = None
    ) -> Generator[float | None, None, TaskStatus]:
        """Look until the task completes (returned) or fails (raised); after a ``problem`` the first look is now.

        Each look is one status query with a read deadline of seconds; its
        errors go up to :meth:`_collect`, which retries them. Five answers in
        a row with an undocumented status fail the job, naming the status.
        """
        job = rec.job
        assert job.task_id is not None
        e = self.engine
        start = job.submitted_at or time.time()
        first = problem is None
        looks: list[tuple[float, int]] = []  # (seconds since submit, progress) of every look so far
        unknown = 0
        while True:
            elapsed = time.time() - start
            delay = (
                e.polls.next_delay(elapsed, job.progress, first, looks, (job.params.model, job.params.resolution))
                if problem is None or looks
                else 0.0
            )  # (model, resolution): until the session has its own, how long such tasks took before places the looks
            if time.monotonic() + delay > deadline:
                yield max(0.0, deadline - time.monotonic())
                e.woke(rec)
                check_cancel(rec)
                raise self._overdue(rec, problem)
            yield delay
            e.woke(rec)
            check_cancel(rec)
            wait = e.gate.reserve("query")  # the query bucket is shared by every job, however many
            if wait > 0:  # the lane may be paused by another job's answer: a long Retry-After is told here too
                self._tell_wait(rec, e.gate.asked("query"))
            if wait > 0 and time.monotonic() + wait > deadline:  # the lane waits out a Retry-After past the deadline
                e.gate.refund("query")
                yield max(0.0, deadline - time.monotonic())
                e.woke(rec)
                check_cancel(rec)
                raise self._overdue(rec, problem)
            if wait > 0:
                yield wait
                e.woke(rec)
                check_cancel(rec)
            first = False
            asked = time.time()
            with e.gate.ticket("query"):
                status = e.client.status(job.task_id, tries=1)
            answered = time.time()
            e.polls.observe(answered - asked)
            seen = (asked + answered) / 2 - start
            if status.status == "completed":
                e.polls.completed(seen, looks, (job.params.model, job.params.resolution))
                return status
            if status.status == "failed":  # the raise ends the job, and ending it frees its place
                job.cost_usd = status.cost_usd or 0.0  # the gateway's billing: a refund is $0
                reason = failure_text(status.error_code, status.error_message, status.model_text)
                code = f" [{status.error_code}]" if status.error_code else ""
                kind = TaskBlockedError if status.blocked else TaskFailedError
                what = "refused the request" if status.blocked else "reported the task failed"
                raise kind(f"the gateway {what}{code}: {reason}", task_id=job.task_id, code=status.error_code)
            if status.status == "unknown":
                unknown += 1
                if unknown >= UNKNOWN_LIMIT:  # a verdict of sorts: polling until the deadline would not help
                    raise TaskFailedError(
                        f"the gateway answered task {job.task_id} with a status it does not document, "
                        f"{status.raw_status!r}, {unknown} times in a row; the job ends here and keeps its cost "
                        "(python -m gemimg_jupyter.probe shows what the gateway says)",
                        task_id=job.task_id,
                        code="unknown_status",
                    )
            else:
                unknown = 0
            state = JobState.IN_PROGRESS if status.status == "in_progress" else JobState.SUBMITTED
            looks.append((seen, status.progress if state is JobState.IN_PROGRESS else 0))
            e.record.set_state(rec, state, max(job.progress, min(99, status.progress)))

    def _provenance(self, job: Job, status: TaskStatus) -> dict[str, Any]:
        return {
            "generator": f"gemimg_jupyter {__version__}",
            "backend": self.engine.backend,
            "params": job.params.as_dict(),
            "references": [{"sha256": r.sha256, "name": r.name} for r in job.params.references],
            "repeat": job.repeat,
            "task_id": status.id,
            "client_business_id": job.cbid,
            "sweep_id": job.sweep_id,
            "submitted_at": job.submitted_at,
            "completed_at": status.completed_at,
            "downloaded_at": time.time(),
            "cost_usd": job.cost_usd,
            **parent_of(job),
        }
