"""The session: settings, client, runner and store as one object, and the Python API.

::

    import gemimg_jupyter as gi
    hero = gi.generate("a studio photo of a teapot", size="16:9", wait=False)
    hero.result().image            # waits, then a PIL image
    fox = gi.sweep("a paper-cut fox", temperature=[0.2, 0.8, 1.4], size=["1:1", "16:9"], repeats=2)
    fox.grid()                     # the labelled comparison grid

The magics and the panel use the same default session (:func:`get_session`).
"""

from __future__ import annotations

import atexit
import dataclasses
import gc
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from gemimg_jupyter.api import catalogue
from gemimg_jupyter.api.budget import Budget
from gemimg_jupyter.api.earlier import (
    CancelOutcome,
    cancel_rows,
    params_of_request,
    past_sweep,
    request_of,
    resume_edits,
)
from gemimg_jupyter.api.edits import Edits
from gemimg_jupyter.api.lineage import Lineage, ledger_cbid
from gemimg_jupyter.api.reach import reachable, reachable_axis
from gemimg_jupyter.api.results import Result, SweepResult
from gemimg_jupyter.domain.catalogue import Catalogue
from gemimg_jupyter.domain.durations import GATEWAY_TYPICAL_S, parse_duration
from gemimg_jupyter.domain.errors import ConfigError, JobError, ValidationError
from gemimg_jupyter.domain.models import GenerationParams, JobState, ReferenceImage
from gemimg_jupyter.domain.params import CONTROL_PARAMS, PARAM_SPECS, VALUE_PARAMS, ParamKwargs, check_keywords
from gemimg_jupyter.domain.settings import DEFAULT_BASE_URL, Secret, Settings
from gemimg_jupyter.domain.text import plural
from gemimg_jupyter.draw.images import load_reference
from gemimg_jupyter.engine import Job, JobRunner, Listener, RateGate
from gemimg_jupyter.gateway.client import ToAPIsClient
from gemimg_jupyter.gateway.references import check_reference_url
from gemimg_jupyter.ledger.picks import Pick, Picks
from gemimg_jupyter.ledger.restart import Aliases, WaitingEdit, WaitingEdits
from gemimg_jupyter.ledger.sidecar import image_info
from gemimg_jupyter.ledger.store import LedgerRow, Store
from gemimg_jupyter.plans.plan import (
    AXIS_NAMES,
    CONFIRM_ABOVE_USD,
    DEFAULT_MAX_REQUESTS,
    Axis,
    Pairing,
    Quote,
    SweepPlan,
    axis_from_values,
    pair_axes,
    parse_axis,
    plan_sweep,
)
from gemimg_jupyter.probe import ProbeReport, run_probe

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "Result",
    "Session",
    "SweepResult",
    "current_session",
    "gateway_settings",
    "generate",
    "get_session",
    "latest",
    "picks",
    "reset_session",
    "simulator_settings",
    "sweep",
]

log = logging.getLogger(__name__)

SIM_KEY = "sim-local-key"
_SAID_NOTES: set[str] = set()  # the settings' notes already said in this process
SIM_STATE = ".sim-state.jsonl"
#: The built-in simulator answers in seconds, not the real gateway's 5–30 s, so demos feel live.
SIM_DEFAULTS: dict[str, Any] = {"latency": (1.5, 4.0)}
#: The parameter keywords (``temperature``, ``size``, ``model``, ``reference_images`` …), from the parameter table.
_PARAM_NAMES = tuple(p.keyword for p in PARAM_SPECS if p.keyword)


def _as_refs(sources: object) -> tuple[ReferenceImage, ...]:
    if sources is None:
        return ()
    if isinstance(sources, (str, bytes, bytearray, Path, Image.Image, ReferenceImage)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)):
        raise ValidationError(
            f"reference images must be paths, URLs, bytes or PIL images, not {type(sources).__name__}",
            field="reference",
            value=sources,
        )
    return tuple(load_reference(s) for s in sources)


def _say(line: str) -> None:
    """A notice for whoever called (in the caller's thread): on stderr, and in the log."""
    log.info("gemimg: %s", line)
    print(f"gemimg: {line}", file=sys.stderr)  # noqa: T201


def _client(settings: Settings, base_url: str, key: Secret, gate: RateGate) -> ToAPIsClient:
    """The gateway client of a session, with the settings' retries, timeouts and rate gate."""
    return ToAPIsClient(
        base_url,
        key,
        retry=settings.retry_policy,
        timeout=(settings.connect_timeout, settings.read_timeout),
        status_timeout=settings.status_timeout,
        download_timeout=settings.download_timeout,
        download_max_bytes=settings.download_max_bytes,
        gate=gate,
    )


def banner(session: Session) -> str:
    """One line saying which backend ``session`` uses and, for the simulator, how to get real images (and, on a
    network file system, that two machines must not share the output folder)."""
    notice = f" Note: {session.store.notice}." if session.store.notice else ""
    return _backend_line(session) + notice


def _backend_line(session: Session) -> str:
    if session.backend == "toapis":
        return f"gemimg: using ToAPIs at {session.base_url} (key from TOAPIS_API_KEY), output in {session.store_root}"
    where = "the built-in simulator" if session.sim is not None else f"a simulator at {session.base_url}"
    if session.settings.api_key is not None:  # a key is set, but GEMIMG_BACKEND=sim asked for the simulator
        return (
            f"gemimg: GEMIMG_BACKEND=sim, using {where} (simulated images, not charged). "
            'Unset it or use Settings(backend="toapis") for real images.'
        )
    return (
        f"gemimg: no API key set, using {where} (simulated images, not charged). "
        "Set TOAPIS_API_KEY or use Settings(api_key=...) for real images."
    )


@contextmanager
def _gc_held() -> Iterator[None]:
    """Hold Python's cyclic garbage collector while a big sweep is planned and quoted.

    A 5,000-cell plan makes tens of thousands of objects that all stay alive; each burst of them set off a
    collection that found nothing to free: 60-110 collections and 27-95 ms of a 78-195 ms call. Held
    (re-enabled after, unless it was off already), the call spends none of it. Other threads see it held
    for those milliseconds, which only delays freeing cycles.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Session:
    """Settings, client, runner and store for one notebook (or script).

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`. With no key (``auto``) or
        ``backend="sim"`` the built-in simulator is started on 127.0.0.1.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.backend = self.settings.resolved_backend
        self._sim: Any = None
        for note in self.settings.notes:  # environment values it could not use, and the default it took
            if note not in _SAID_NOTES:  # once per process: a replaced session keeps its settings' notes
                _SAID_NOTES.add(note)
                _say(note)
        key = self.settings.require_key() if self.backend == "toapis" else Secret(SIM_KEY)
        self.store = Store(self.settings.output_dir)  # first: a store that cannot work fails before anything starts
        try:
            if self.backend == "toapis":
                base_url = self.settings.base_url or DEFAULT_BASE_URL
            else:
                base_url = self.settings.base_url or self._start_sim()
            self.base_url = base_url
            self.gate = RateGate(self.settings)  # built once, shared by the client and the runner
            self.client = _client(self.settings, base_url, key, self.gate)
            # jobs reach their session (as their JobOwner) for edit, pick, lineage
            self.runner = JobRunner(
                self.client,
                self.store,
                self.settings,
                backend=self.backend,
                gate=self.gate,
                owner=self,
                typical=self._typical_s(),
            )
            self.pickbook = Picks(self.store)
            self.edits = Edits(self, self.store, self.pickbook)
            self.budget = Budget(self.settings, self.store, self.runner)
            self.aliases = Aliases(self.store)
            self.waiting = WaitingEdits(self.store)
            self.runner.add_listener(self._remember_hit)
        except BaseException:
            self._stop_sim()  # a failed load leaves no simulator behind
            self.store.close()
            raise
        self.sweeps: list[SweepResult] = []
        self.catalogue_read = False  # the gateway's catalogue is read once, on first use with a key
        self.said: set[str] = set()  # model notices said once per session
        self.say: Callable[[str], None] = _say  # where they go (the magics print them as their own lines)
        self.replaced_by: Session | None = None  # set when with_settings or reset_session replace it
        #: the background claims of ``wait=False`` sweeps, one after another on one thread (they would take the
        #: runner's claim lock in turn anyway): a hundred sweeps started at once queue here, not as 100 threads
        self._claims = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gemimg-claim")
        self._closed = False
        _OPEN.add(self)

    def _remember_hit(self, job: Job) -> None:
        """A cache hit's id is written down with the row its image is from (it has no row of its own)."""
        if job.state is JobState.CACHED:
            source = ledger_cbid(job)
            if source != job.cbid:
                self.aliases.remember(job.cbid, source, job.sweep_id, job.created)

    def _typical_s(self) -> tuple[float, float] | None:
        """How long a task typically takes here: the gateway's documented time, the built-in simulator's latency,
        or nothing known (a simulator elsewhere)."""
        if self.backend == "toapis":
            return GATEWAY_TYPICAL_S
        if self._sim is not None:
            latency = {**SIM_DEFAULTS, **dict(self.settings.sim_options)}.get("latency")
            if isinstance(latency, (tuple, list)) and len(latency) == 2:
                return (float(latency[0]), float(latency[1]))
        return None

    def _start_sim(self) -> str:
        from gemimg_jupyter.sim import SimConfig, SimServer

        options = {**SIM_DEFAULTS, **dict(self.settings.sim_options)}
        # its tasks are kept beside the ledger, so a restarted kernel's simulator still knows them
        self._sim = SimServer(config=SimConfig(**options), state_file=self.store.root / SIM_STATE)
        return str(self._sim.start())

    def _stop_sim(self) -> None:
        if self._sim is not None:
            self._sim.stop()

    @property
    def sim(self) -> Any:
        """The in-process simulator (``None`` on the real backend)."""
        return self._sim

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (a panel then follows the new default session)."""
        return self._closed

    @property
    def store_root(self) -> Path:
        """The folder of the ledger, the images and the saved references."""
        return self.store.root

    def cached_keys(self, keys: Sequence[str]) -> set[str]:
        """The request keys among ``keys`` the ledger already holds an image for (a rerun costs $0)."""
        return self.store.cached_keys(list(keys), backend=self.backend)

    def remember_reference(self, data: bytes, name: str) -> Path:
        """Keep a reference image's bytes under ``<output>/references/name`` (written once, atomically)."""
        path = self.store.root / "references" / name
        return path if path.exists() else self.store.write_bytes(data, name, folder="references")

    def banner(self) -> str:
        """One line saying which backend is in use and, for the simulator, how to set a key."""
        return banner(self)

    def __repr__(self) -> str:
        return f"<gemimg Session backend={self.backend} base_url={self.base_url} output={self.store.root}>"

    # ---- building requests -----------------------------------------------------------------

    def params(
        self, prompt: str, *, defaults: Mapping[str, Any] | None = None, **kwargs: Unpack[ParamKwargs]
    ) -> GenerationParams:
        """Validated parameters (raises :class:`ValidationError` before anything is sent).

        ``kwargs`` are the parameters of :data:`~.params.PARAM_SPECS` by keyword (``size="16:9"``,
        ``reference_images=[...]``).
        """
        check_keywords("Session.params", kwargs)
        catalogue.first_use(self)
        values: dict[str, Any] = {p.name: kwargs.get(p.name) for p in (*VALUE_PARAMS, *CONTROL_PARAMS)}
        defaults = {"model": self.settings.model, **(defaults or {})}
        refs = self.reachable_refs(_as_refs(kwargs.get("reference_images", ())))
        params = GenerationParams.create(prompt, references=refs, defaults=defaults, **values)
        for line in catalogue.notices(self, params.spec):
            self.say(line)
        return params

    def default_model_line(self, model: str | None = None) -> str | None:
        """One line when the catalogue already read does not list the default model (or ``model``), naming
        an id to set instead; ``None`` otherwise. It never asks the gateway."""
        return catalogue.default_line(self, model or self.settings.model)

    def probe(self, **kwargs: Any) -> ProbeReport:
        """Run the gateway probe (:func:`~gemimg_jupyter.probe.run_probe`, same keywords) against this
        session's own backend: its base URL and key, the simulator it talks to included."""
        key = self.settings.require_key() if self.backend == "toapis" else Secret(SIM_KEY)
        return run_probe(self.settings, base_url=self.base_url, key=key, **kwargs)

    def refresh_catalogue(self) -> Catalogue | None:
        """Read the gateway's image models (and prices, where it publishes them) now, and merge them."""
        self.catalogue_read = True
        return catalogue.refresh(self, force=True)

    def estimate(self, params: Sequence[tuple[GenerationParams, int]]) -> tuple[float, int]:
        """Cost of the uncached requests among ``(params, repeat)`` pairs, and how many are cached."""
        return self.budget.estimate(params)

    def spent_usd(self) -> float:
        """Money committed in this session (submitted, not refunded)."""
        return self.budget.spent_usd()

    def check_budget(self, estimate_usd: float) -> None:
        """Refuse work that would take spending past ``max_cost_usd``."""
        self.budget.check(estimate_usd)

    def reachable_refs(self, refs: Iterable[ReferenceImage]) -> tuple[ReferenceImage, ...]:
        """``refs`` as the gateway can fetch them: on the real gateway a URL on this machine or a
        private network is fetched here (and then uploaded like a file), with one line saying so."""
        if self.backend != "toapis":
            return tuple(refs)
        return reachable(refs, gateway_url=self.base_url, say=self.say)

    def check_reference_urls(self, params: Iterable[GenerationParams]) -> None:
        """Ask the server of every reference URL among ``params`` before paying (one line if one fails)."""
        seen: set[str] = set()
        for p in params:
            for url in (ref.url for ref in p.references if ref.url):
                if url not in seen:
                    seen.add(url)
                    check_reference_url(url)

    @property
    def cache_hits(self) -> int:
        """Images this session took from the store instead of paying for them."""
        return self.budget.cache_hits

    @property
    def saved_usd(self) -> float:
        """What those cache hits would have cost."""
        return self.budget.saved_usd

    # ---- generating ------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        fresh: bool = False,
        wait: bool = True,
        repeat: int = 0,
        listeners: Sequence[Listener] = (),
        defaults: Mapping[str, Any] | None = None,
        edit: object = None,
        **kwargs: Unpack[ParamKwargs],
    ) -> Job:
        """Generate one image. With ``wait=False`` it returns at once; ``.result()`` waits.

        ``kwargs`` are the parameters (``size="16:9"``, ``temperature=0.4``,
        ``reference_images=[...]``; see :meth:`params`). ``edit`` (a result, a
        job id or a ledger row) makes that image the first reference and
        records it as the new image's parent.
        """
        check_keywords("Session.generate", kwargs)
        waiting = self.edits.unfinished_parent(edit)
        if waiting is not None:  # an edit of an image still being made: queued behind it, the cell returns at once
            job = self._edit_after(waiting, self.params(prompt, defaults=defaults, **kwargs), repeat, fresh, listeners)
            if wait:
                job.result()
            return job
        parent = None
        if edit is not None:
            ref, parent = self.edit_source(edit)
            kwargs["reference_images"] = (ref, *_as_refs(kwargs.get("reference_images", ())))
        params = self.params(prompt, defaults=defaults, **kwargs)
        return self.submit(params, repeat=repeat, fresh=fresh, wait=wait, listeners=listeners, parent=parent)

    def submit(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        fresh: bool = False,
        wait: bool = False,
        listeners: Sequence[Listener] = (),
        parent: Mapping[str, Any] | None = None,
    ) -> Job:
        """Run already-validated parameters (budget and reference URLs checked first)."""
        urls = any(ref.url for ref in params.references)
        if self.settings.max_cost_usd is not None or urls:  # the look-up is only worth it then
            cost = (params.price_usd or 0.0) if fresh else self.estimate([(params, repeat)])[0]
            self.check_budget(cost)
            if cost or params.price_usd is None:
                self.check_reference_urls([params])
        job = self.runner.submit(params, repeat=repeat, fresh=fresh, listeners=listeners, parent=parent)
        if wait:
            job.result()
        return job

    def _edit_after(
        self,
        waiting: Job,
        params: GenerationParams,
        repeat: int,
        fresh: bool,
        listeners: Sequence[Listener],
        cbid: str | None = None,
    ) -> Job:
        """An edit of ``waiting`` (not ended yet), checked now as far as it can be, submitted when its image lands.

        Until it claims its row it is written down in the ledger (``waiting_edits``), so a restart keeps it:
        ``resume`` in the next process sends it when the parent lands, or ends it, free.
        """
        spec = params.spec
        if len(params.references) + 1 > spec.max_refs:
            raise ValidationError(
                f"{len(params.references) + 1} reference images given (the edited image first); "
                f"{spec.id} accepts at most {spec.max_refs}",
                field="references",
                value=len(params.references) + 1,
            )
        if self.settings.max_cost_usd is not None:
            self.check_budget(params.price_usd or 0.0)  # an edit of an image not made yet cannot be a cache hit now
        if any(ref.url for ref in params.references):
            self.check_reference_urls([params])
        request = request_of(params, repeat, fresh, self.remember_reference)

        def resolve() -> tuple[GenerationParams, dict[str, Any]]:
            ref, parent = self.edit_source(waiting)
            return params.with_(references=(ref, *params.references)), parent

        job = self.runner.submit_after(
            waiting, params, resolve, repeat=repeat, fresh=fresh, listeners=listeners, cbid=cbid
        )
        queued = job.cbid
        self.waiting.keep(queued, waiting.cbid, request, self.backend)
        kept = [True]

        def claimed(j: Job) -> None:  # its row is claimed (or it ended): the ledger's jobs table has it now
            if kept[0] and (j.waiting_for is None or j.done()):
                kept[0] = False
                self.waiting.forget(queued)

        job.add_listener(claimed)
        return job

    def edit_when_ready(self, parent: Job | LedgerRow, request: Mapping[str, Any], cbid: str) -> Job:
        """An edit an earlier process queued (``waiting_edits``, id ``cbid``): queued again behind ``parent``
        while it runs (same id), sent now once it has its image (its earlier id then names it too); a parent
        without an image refuses it (one line, nothing paid)."""
        params = params_of_request(request)
        repeat, fresh = int(request.get("repeat", 0)), bool(request.get("fresh", False))
        if isinstance(parent, Job) and not parent.done():
            return self._edit_after(parent, params, repeat, fresh, (), cbid=cbid)
        ref, link = self.edit_source(parent)
        job = self.submit(params.with_(references=(ref, *params.references)), repeat=repeat, fresh=fresh, parent=link)
        self.aliases.remember(cbid, job.cbid, None, time.time())
        return job

    def plan(
        self,
        prompt: str,
        *,
        axes: Sequence[Axis | Pairing | str] = (),
        repeats: int = 1,
        defaults: Mapping[str, Any] | None = None,
        resolve_ref: Callable[[str], ReferenceImage] | None = None,
        edit: object = None,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        **kwargs: Any,
    ) -> SweepPlan:
        """Validate a sweep and return its plan, without running anything.

        Keyword arguments that are lists become axes (``temperature=[0.2, 0.8]``);
        scalars are fixed parameters (``size="16:9"``). A plan of more than ``max_requests``
        requests (1,000 by default) is refused; a bigger sweep says so explicitly.
        """
        fixed: dict[str, Any] = {}
        all_axes: list[Axis] = []
        resolver = resolve_ref or load_reference
        for spec in axes:
            if isinstance(spec, Pairing):
                all_axes.append(spec.resolve(resolver))
            else:
                all_axes.append(spec if isinstance(spec, Axis) else parse_axis(spec, resolve_ref=resolver))
        for name, value in kwargs.items():
            if isinstance(value, (list, tuple, range)) and name in AXIS_NAMES:
                all_axes.append(axis_from_values(name, list(value), resolve_ref=resolver))
            elif name in _PARAM_NAMES:
                fixed[name] = value
            else:
                raise ValidationError(
                    f"unknown sweep parameter {name!r}; use one of {', '.join(AXIS_NAMES)}", field=name, value=value
                )
        if self.backend == "toapis":  # reference URLs the gateway cannot reach: fetched here, uploaded instead
            all_axes = [reachable_axis(a, self.reachable_refs) for a in all_axes]
        if edit is not None:  # the edited image goes first in every cell, a swept ref= included
            ref, parent = self.edit_source(edit)
            fixed["reference_images"] = (ref, *_as_refs(fixed.get("reference_images")))
            all_axes = [_edit_refs(a, ref) for a in all_axes]
        base = self.params(prompt, defaults=defaults, **fixed)
        with _gc_held():
            plan = plan_sweep(base, all_axes, repeats=repeats, max_requests=max_requests)
        return plan if edit is None else dataclasses.replace(plan, parent=parent)

    def quote(
        self, plan: SweepPlan, *, fresh: bool = False, confirm_above_usd: float | None = CONFIRM_ABOVE_USD
    ) -> Quote:
        """What ``plan`` would cost now (``fresh``: as if nothing were stored) and whether it needs a yes."""
        with _gc_held():
            return self.budget.quote(plan, fresh=fresh, confirm_above_usd=confirm_above_usd)

    def sweep(
        self,
        prompt: str,
        *,
        axes: Sequence[Axis | Pairing | str] = (),
        repeats: int = 1,
        fresh: bool = False,
        wait: bool = True,
        yes: bool = False,
        confirm_above_usd: float | None = CONFIRM_ABOVE_USD,
        cell_size: int = 320,
        listeners: Sequence[Listener] = (),
        defaults: Mapping[str, Any] | None = None,
        plan: SweepPlan | None = None,
        edit: object = None,
        quote: Quote | None = None,
        dry_run: bool = False,
        stop_after: float | str | None = None,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        **kwargs: Any,
    ) -> SweepResult:
        """Run a parameter sweep and return its :class:`SweepResult`.

        The whole plan is validated first; above ``confirm_above_usd`` it needs
        ``yes=True``; it never goes past the budget. ``plan`` and ``quote`` (from
        :meth:`plan`, and :meth:`quote` with the same ``fresh``, e.g. for a plan
        line shown first) are used as they are instead of being made again.
        ``dry_run=True`` sends nothing: the result holds the plan and draws its grid
        with placeholders. ``stop_after`` (seconds, or ``"30m"``, ``"1h30m"``) stops
        *submitting* then; what was not sent costs nothing and a re-run sends it.
        ``max_requests`` (default 1,000) allows a bigger sweep: ``max_requests=5000``.
        """
        limit = None if stop_after is None else parse_duration(stop_after, what="stop_after")
        background = self._claims if not wait and not listeners and not dry_run else None
        if background is not None and not self._closed:  # its thread starts now and waits idle (see below)
            background.submit(int)
        plan = plan or self.plan(
            prompt, axes=axes, repeats=repeats, defaults=defaults, edit=edit, max_requests=max_requests, **kwargs
        )
        if dry_run:
            return SweepResult(
                plan,
                [],
                sweep_id=uuid.uuid4().hex[:8],
                store=self.store,
                cell_size=cell_size,
                dry_run=True,
                theme=self.settings.resolved_grid_theme,
            )
        parent = plan.parent if plan.parent is not None or edit is None else self.edit_source(edit)[1]
        with _gc_held():
            self._check_sweep(plan, quote, fresh=fresh, yes=yes, confirm_above_usd=confirm_above_usd)
        result = SweepResult(
            plan,
            [],
            sweep_id=uuid.uuid4().hex[:8],
            store=self.store,
            cell_size=cell_size,
            theme=self.settings.resolved_grid_theme,
        )
        result.submit(  # wait=False: the claim and the job records in the background (every refusal was above)
            lambda cells: self.runner.submit_many(
                cells, fresh=fresh, sweep_id=result.id, parent=parent, stopped=result.cancelling
            ),
            listeners,
            # a thread started by this submit would begin the claim at once and hold the GIL in turns with this
            # call's last steps: 30-40 ms of a 5,000-cell call in one run in three; started above, it waits idle
            background=background,
        )
        if limit is not None:
            result.stop_after(limit)
        self.sweeps.append(result)
        if wait:
            result.wait()
        return result

    def _check_sweep(
        self, plan: SweepPlan, quote: Quote | None, *, fresh: bool, yes: bool, confirm_above_usd: float | None
    ) -> None:
        """Every refusal a sweep can meet before it is sent: the yes above the threshold, the budget, the
        reference URLs, a shut-down runner (the claim after it refuses nothing)."""
        if quote is None or quote.plan is not plan or quote.confirm_above_usd != confirm_above_usd:
            if self._passes_unquoted(plan, yes, confirm_above_usd):
                quote = None
            else:
                quote = self.quote(plan, fresh=fresh, confirm_above_usd=confirm_above_usd)
        if quote is not None:
            if quote.needs_confirmation and not yes:
                raise quote.refusal()
            self.check_budget(quote.estimate_usd or 0.0)
            if quote.estimate_usd != 0:  # something will be paid (or its price is unknown)
                self.check_reference_urls(cell.params for cell in plan.cells)
        if self.runner.closed:
            raise JobError("the job runner is shut down; load the extension again")

    def _passes_unquoted(self, plan: SweepPlan, yes: bool, confirm_above_usd: float | None) -> bool:
        """True when the plan passes every check a quote feeds even if nothing were stored: said yes (or no
        threshold), no budget, no reference URL to ask about. The ledger lookup (a key hashed per cell) can
        only lower the price then, so :meth:`sweep` skips it; the claim still decides who pays."""
        if not (yes or confirm_above_usd is None) or self.settings.max_cost_usd is not None:
            return False
        return not any(ref.url for ref in plan.base.references) and "ref" not in plan.varying

    # ---- managing --------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        """Every job of this session, oldest first."""
        return self.runner.jobs

    def find_job(self, job_id: str) -> Job | None:
        """This session's job with that id, if any."""
        return self.runner.get(job_id)

    def find_sweep(self, sweep_id: str) -> SweepResult | None:
        """This session's sweep with that id, if any."""
        return next((s for s in self.sweeps if s.id == sweep_id), None)

    def wait_jobs(self, jobs: Sequence[Job], timeout: float | None = None) -> bool:
        """Block until these jobs have ended (``False`` if ``timeout`` came first)."""
        return self.runner.wait(list(jobs), timeout=timeout)

    def sweep_of(self, sweep_id: str) -> SweepResult | None:
        """A sweep by id: this session's, else one of an earlier session rebuilt from its ledger rows."""
        sweep_id = sweep_id.strip()
        return self.find_sweep(sweep_id) or (past_sweep(self.store, sweep_id) if sweep_id else None)

    def cancel(self, target: str = "all", *, drop: bool = False) -> int:
        """Cancel a job (by id), a sweep (by id) or everything.

        An id of an earlier session's unfinished job or sweep is cancelled in the ledger: a job never
        sent ends ``cancelled`` (free; ``resume`` skips it); one already sent was paid and is left for
        ``resume`` unless ``drop`` (one line says which).
        """
        claiming = self.claiming(target)
        if claiming:  # a sweep whose claim is still running: nothing of it sent before its jobs are cancelled
            done = sum(s.cancel(drop=drop) for s in claiming)
            return done + (self.runner.cancel("all", drop=drop) if target == "all" else 0)
        if target != "all" and self.find_job(target) is None and self.find_sweep(target) is None:
            outcome = self.cancel_earlier(target, drop=drop)
            self.say(outcome.line(drop=drop))
            return len(outcome.cancelled) + (len(outcome.paid) if drop else 0)
        return self.runner.cancel(target, drop=drop)

    def cancel_earlier(self, target: str, *, drop: bool = False) -> CancelOutcome:
        """Cancel what an earlier session left unfinished under ``target`` (a job or sweep id); see :meth:`cancel`."""
        ident = target.strip()
        rows = list(reversed(self.store.rows(sweep_id=ident))) if ident else []  # in the order it made them
        row = self.store.find(ident) if ident and not rows else None
        if row is not None:
            rows = [row]
        past = self.sweep_of(ident) if ident and not rows else None
        if past is not None:  # a sweep of cache hits only: no rows of its own, nothing to cancel
            rows = [self.find(job.id) for job in past.jobs]
        queued = self.waiting.find(ident) if ident and not rows else None
        if queued is not None:  # an edit an earlier session queued behind its parent: not sent, nothing paid
            return self._cancel_waiting(queued)
        if not rows:
            known = ", ".join(j.id for j in self.runner.jobs[-8:]) or "none yet"
            raise ValidationError(
                f"no job or sweep {target!r} in this session or the ledger; jobs: {known}", field="job", value=target
            )
        return cancel_rows(self.store, rows, drop=drop)

    def _cancel_waiting(self, entry: WaitingEdit) -> CancelOutcome:
        """Cancel an edit an earlier session queued (free: it was never sent); one a live kernel holds stays."""
        out = CancelOutcome()
        if entry.owner != self.store.owner and self.store.owner_alive(entry.owner):
            out.busy.append(entry.id)
        elif self.waiting.take(entry):
            self.waiting.forget(entry.cbid)
            out.cancelled.append(entry.id)
        return out

    def claiming(self, target: str = "all", *, timeout: float | None = 0.0) -> list[SweepResult]:
        """The sweeps (``target``: all, or one sweep id) whose background claim is still running after waiting up
        to ``timeout`` seconds in all (``None``: until every claim ended). A ``wait=False`` sweep returns before
        its claim, and its jobs are in :meth:`jobs` only once that ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            s
            for s in self.sweeps
            if target in ("all", s.id)
            and not s.claimed(None if deadline is None else max(0.0, deadline - time.monotonic()))
        ]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job and sweep grid is finished (``False`` if ``timeout`` came first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.claiming(timeout=timeout):  # a claim still running in the background: its jobs first
            return False
        if not self.runner.wait(timeout=None if deadline is None else max(0.0, deadline - time.monotonic())):
            return False
        for s in self.sweeps:  # the jobs have ended: what is left is saving each grid
            left = 5.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if not s.wait(timeout=left):
                return False
        return True

    def resume(self) -> list[Job]:
        """Finish unfinished ledger rows whose owner is gone (a dead kernel's; never a live one's), and send
        the edits such a kernel had queued behind a parent (once the parent lands; free if it has no image)."""
        jobs = self.runner.resume()
        return jobs + resume_edits(self)

    def pending_count(self) -> int:
        """Unfinished rows of this backend whose owner is gone (a hint to ``resume``; a re-run takes them too)."""
        active = {j.cbid for j in self.runner.jobs}
        rows = sum(1 for row in self.store.orphans(self.backend) if row.cbid not in active)
        return rows + len(self.waiting.orphans(self.backend))

    def history(self, limit: int = 12) -> list[LedgerRow]:
        """The newest stored images."""
        return self.store.history(limit)

    def suspects(self, rows: Iterable[LedgerRow]) -> dict[str, str]:
        """Which of these rows' images look unusable (``cbid`` → reason: all black, one flat colour …)."""
        return self.store.suspects(row.cbid for row in rows)

    def cost(self) -> dict[str, Any]:
        """Spent and saved in this session, the all-time ledger, and the budget."""
        report = self.budget.report(self.backend)
        return {**report, **self.store.suspect_split()}  # paid-and-usable vs paid-but-suspect

    # ---- edit chains and picks (docs/editing.md; the work is in :class:`~.edits.Edits`) -----

    def find(self, target: object) -> LedgerRow:
        """The ledger row of an image: a result, a job id (short, task or ``client_business_id``) or a row.

        Works after a restart (from the ledger alone); raises
        :class:`ValidationError` when nothing matches.
        """
        return self.edits.find(target)

    def info(self, target: object) -> dict[str, Any]:
        """An image's provenance and file facts (sidecar, or an earlier version's PNG chunk).

        ``target`` is what :meth:`find` takes, or the path of an image file.
        """
        if isinstance(target, (str, Path)) and Path(target).expanduser().is_file():
            return image_info(Path(target).expanduser())
        row = self.find(target)
        if not row.path or not Path(row.path).is_file():
            raise ValidationError(
                f"image {row.cbid[-6:]} has no image file ({row.state})", field="info", value=row.cbid[-6:]
            )
        return image_info(row.path)

    def edit_source(self, target: object) -> tuple[ReferenceImage, dict[str, Any]]:
        """The image to edit as a reference, and the ``parent`` record (``cbid``, ``key``, ``sha256``)."""
        return self.edits.edit_source(target)

    def edit(self, target: object, prompt: str, **kwargs: Any) -> Job:
        """Edit an image: ``generate(prompt, edit=target, **kwargs)``."""
        return self.generate(prompt, edit=target, **kwargs)

    def lineage(self, target: object) -> Lineage:
        """The chain of edits from the root to ``target`` (from the ledger alone)."""
        return self.edits.lineage(target)

    def pick(self, target: object, *, note: str | None = None) -> Pick:
        """Pick an image (ledger ``picks`` table and the image's sidecar); survives restarts."""
        return self.edits.pick(target, note)

    def unpick(self, target: object) -> bool:
        """Remove a pick; ``False`` if it was not picked."""
        return self.edits.unpick(target)

    def is_picked(self, target: object) -> bool:
        """Whether an image is picked."""
        return self.edits.is_picked(target)

    def picks(self) -> list[Pick]:
        """Every picked image of this output folder, newest first."""
        return self.edits.picks()

    def picked_cbids(self) -> set[str]:
        """The ``client_business_id`` of every picked image (one query)."""
        return self.pickbook.cbids()

    def children_count(self) -> dict[str, int]:
        """How many finished edits each image has (``client_business_id`` → count)."""
        return self.edits.children_count()

    def save_report(self, target: object, path: str | Path | None = None) -> Path:
        """Write the HTML report of a sweep, or of an image's edit chain; returns its path.

        Without ``path`` it goes to ``<output>/reports/``.
        """
        return self.edits.save_report(target, path)

    def with_settings(self, settings: Settings | None = None, /, **changes: Any) -> Session:
        """A new session on ``settings`` (default: this one's) with ``changes``; then this one closes.

        If the new one cannot start, this one stays. If this was the default session, the new one
        takes its place (``gi.generate`` and panels follow it); see :func:`gateway_settings`.
        """
        return _replace_session(self, (settings or self.settings).replace(**changes))

    def close(self) -> None:
        """Stop the runner and the simulator; unfinished work stays in the ledger."""
        if self._closed:
            return
        self._closed = True
        for s in self.sweeps:  # a claim still running in the background ends first (bounded): its rows are whole
            s.claimed(SweepResult.CLAIM_WAIT_S)
        self._claims.shutdown(wait=False, cancel_futures=False)  # each queued claim ran or saw its sweep cancelled
        self.runner.shutdown(wait=False)
        self.client.close()
        self._stop_sim()
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULT: Session | None = None
_DEFAULT_LOCK = threading.RLock()
#: Sessions not closed yet, for the one line at exit (:func:`exit_line`).
_OPEN: weakref.WeakSet[Session] = weakref.WeakSet()


def exit_line(sessions: Iterable[Session]) -> str | None:
    """The one line a process that exits with unfinished jobs prints (``None`` when every job has ended)."""
    jobs = [job for sess in sessions if not sess.closed for job in sess.jobs() if not job.done()]
    paid = sum(1 for job in jobs if job.task_id is not None)
    unsent = len(jobs) - paid
    if not jobs:
        return None
    parts = []
    if paid:
        parts.append(f"{plural(paid, 'paid job')} still running at the gateway")
    if unsent:
        parts.append(f"{plural(unsent, 'job')} not sent yet (nothing paid)")
    how = "collects them at no new cost" if paid else "sends them"
    return (
        f"gemimg: exiting with {' and '.join(parts)}; run the same code again, or gi.resume() in a new session,"
        f" which {how}"
    )


@atexit.register
def _at_exit() -> None:
    """One line on stderr when the process exits with unfinished jobs; then the sessions hand their rows back."""
    try:
        sessions = list(_OPEN)
        line = exit_line(sessions)
        if line is not None:
            print(line, file=sys.stderr, flush=True)  # noqa: T201 - the process is leaving: stderr is the only place
        for sess in sessions:
            sess.close()
    except Exception:
        log.debug("closing the sessions at exit failed", exc_info=True)


def get_session(settings: Settings | None = None) -> Session:
    """The shared default session (created from ``settings`` or the environment on first use).

    ``gi.generate``, ``gi.sweep``, ``gi.picks``, a bare ``Panel()`` and, while it is loaded, the
    ``%gemimg`` extension all use this one session: one runner, one budget, one ledger.
    """
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT.closed:
            _DEFAULT = Session(settings)
        elif settings is not None and settings != _DEFAULT.settings:
            raise ConfigError("a session is already running with other settings; call reset_session() first")
        return _DEFAULT


def current_session() -> Session | None:
    """The default session if one is running, else ``None`` (unlike :func:`get_session`, never starts one)."""
    with _DEFAULT_LOCK:
        return _DEFAULT if _DEFAULT is not None and not _DEFAULT.closed else None


def _replace_session(old: Session, settings: Settings) -> Session:
    """Start a session on ``settings``, then close ``old``; the new one becomes the default if ``old`` was."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        done = latest(old)
        if done is not old and not done.closed and done.settings == settings:
            return done  # another thread made this same replacement a moment ago: one session, not two
        new = Session(settings)  # may raise: the old session then stays
        new.budget.follow(old.budget)  # a new limit or folder never re-arms the money already spent
        if _DEFAULT is old:
            _DEFAULT = new
        old.close()
        old.replaced_by = new
        return new


def latest(session: Session) -> Session:
    """The session that replaced ``session`` (after every replacement since), or ``session`` itself."""
    while session.closed and session.replaced_by is not None:
        session = session.replaced_by
    return session


def gateway_settings(settings: Settings, api_key: str | Secret | None = None) -> Settings:
    """``settings`` switched to the ToAPIs gateway ($GEMIMG_BASE_URL, else its public address).

    The key is ``api_key``, else the one ``settings`` or the environment hold; without any, a
    one-line :class:`ConfigError` says how to give one.
    """
    env = Settings.from_env()
    key = Secret(api_key) if isinstance(api_key, str) else api_key or settings.api_key or env.api_key
    if key is None:
        raise ConfigError("no ToAPIs key: use Settings(api_key=...) or set TOAPIS_API_KEY, then try again")
    return settings.replace(backend="toapis", api_key=key, base_url=env.base_url)


def simulator_settings(settings: Settings) -> Settings:
    """``settings`` switched to the built-in simulator (a key they hold is kept, unused)."""
    return settings.replace(backend="sim", base_url=None)


def reset_session(settings: Settings | None = None) -> Session | None:
    """Close the default session; with ``settings``, start a new one."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        new = Session(settings) if settings is not None else None  # may raise: the old session then stays
        if _DEFAULT is not None:
            _DEFAULT.close()
            _DEFAULT.replaced_by = new
        _DEFAULT = new
        return _DEFAULT


def generate(prompt: str, **kwargs: Any) -> Job:
    """Generate one image with the default session (see :meth:`Session.generate`)."""
    return get_session().generate(prompt, **kwargs)


def sweep(prompt: str, *axes: Axis | Pairing | str, **kwargs: Any) -> SweepResult:
    """Run a sweep with the default session (see :meth:`Session.sweep`).

    Positional ``axes`` (``"temperature=0.2,0.8"``, ``pair(model=[...], resolution=[...])``) come
    before any ``axes=`` and any list keyword.
    """
    if axes:
        kwargs["axes"] = (*axes, *kwargs.get("axes", ()))
    return get_session().sweep(prompt, **kwargs)


def _edit_refs(axis: Axis, ref: ReferenceImage) -> Axis:
    """``axis`` with the edited image first in every ``ref`` value (a paired ``ref`` partner too)."""
    members = [
        dataclasses.replace(m, values=tuple((ref, *v) for v in m.values)) if m.name == "ref" else m
        for m in axis.members
    ]
    return members[0] if len(members) == 1 else pair_axes(members[0], *members[1:])


def picks() -> list[Pick]:
    """The picked images of the default session's output folder (see :meth:`Session.picks`)."""
    return get_session().picks()
