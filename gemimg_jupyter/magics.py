"""IPython connectivity: the ``%%gemimg`` cell magic and the ``%gemimg`` line magic.

``%load_ext gemimg_jupyter`` registers :class:`GemimgMagics`; ``%unload_ext
gemimg_jupyter`` stops its job runner (unfinished work stays in the ledger for
``%gemimg resume``). The magic is a thin adapter: the work happens in the
shared :class:`~gemimg_jupyter.session.Session` (the same engine as the Python
API and the panel) and the outputs come from :mod:`gemimg_jupyter.display`.

Configuration
-------------
The defaults are traitlets on ``GemimgMagics``; ``%config GemimgMagics`` lists
them with their help, and each is validated with the same rules (and the same
one-line messages) as the cell options::

    %config GemimgMagics.temperature = 0.6
    %config GemimgMagics.size = "16:9"
    %config GemimgMagics.max_cost_usd = 2.0

or, in ``ipython_config.py``, ``c.GemimgMagics.model = "gemini-2.5-flash-image-official"``.
"""

from __future__ import annotations

import argparse
import builtins
import difflib
import getpass
import inspect
import keyword
import math
import os
import re
import shlex
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Float, Int, TraitError, Unicode, observe, validate

from .display import (
    INTERRUPT_LINE,
    JobView,
    LiveView,
    RichText,
    SweepView,
    config_table,
    cost_report,
    display_path,
    error_line,
    history_strip,
    jobs_table,
    lineage_output,
    models_table,
    show_interrupt_note,
)
from .errors import ConfigError, GemimgError, redact
from .jobs import Job as JobClass
from .models import DEFAULT_MODEL, MODELS, GenerationParams, ReferenceImage, get_model
from .plan import CONFIRM_ABOVE_USD, MAX_REPEATS, canonical_axis_name
from .session import Session, SweepResult, get_session, reset_session
from .settings import RATE_TIERS, Secret, Settings
from .text import plural

if TYPE_CHECKING:  # pragma: no cover
    from IPython.core.interactiveshell import InteractiveShell

    from .jobs import Job

__all__ = ["CellArgs", "GemimgMagics", "load_ipython_extension", "unload_ipython_extension"]

_REF_VAR = re.compile(r"^\{([^{}]+)\}$")
_RESOLUTION_DEFAULT = "1K"


class _TraitError(TraitError):
    """A :class:`TraitError` that IPython shows as one line, without a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"TraitError: {self}"]


class _Stop(Exception):
    """Internal: a subcommand printed its ``-h`` help; nothing else to do."""


class _SubParser(argparse.ArgumentParser):
    """A tiny parser for one ``%gemimg`` subcommand: errors become ``UsageError``."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}; see %gemimg help")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            _say(message.rstrip())
        raise _Stop


_RANGE_TAIL = re.compile(r"^(\[\s*\d+\s*\]|\(\s*[+-]?[\d.]+\s*\))$")


def _split(line: str) -> list[str]:
    """Shell-like splitting of a magic line (quotes group, and are removed).

    A sweep range written without quotes (``--sweep temperature=0.2-1.4 [4]``)
    splits at the space; its ``[N]`` or ``(+S)`` tail is joined back on.
    """
    try:
        words = shlex.split(line, posix=os.name != "nt")
    except ValueError as exc:
        raise UsageError(f"cannot read the options: {exc} (check the quotes)") from None
    joined: list[str] = []
    for word in words:
        prev = joined[-1] if joined else ""
        if _RANGE_TAIL.match(word) and "=" in prev and (not prev.startswith("-") or prev.startswith("--sweep=")):
            joined[-1] = f"{joined[-1]} {word}"
        else:
            joined.append(word)
    return joined


def _say(text: str) -> None:
    """Print one message for the user (the magic layer is the only place that prints)."""
    print(text)  # noqa: T201


@dataclass
class CellArgs:
    """What a ``%%gemimg`` cell asked for, after parsing and expansion (nothing validated by the model yet)."""

    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    references: list[object] = field(default_factory=list)
    repeats: int = 1
    sweeps: list[str] = field(default_factory=list)
    yes: bool = False
    output: str | None = None
    wait: bool = False
    fresh: bool = False
    debug: bool = False
    edit: object = None  # --edit: a result, or a job id the session resolves through the ledger

    @property
    def is_sweep(self) -> bool:
        """More than one image: axes, or repeats."""
        return bool(self.sweeps) or self.repeats > 1


class _Formatter(string.Formatter):
    """``str.format`` over the user namespace, with errors that say what to do."""

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, int) or key == "":
            raise UsageError(
                "the prompt contains {} without a variable name; put a name inside, or write {{ and }} for literal braces"
            )
        if key not in kwargs:
            raise UsageError(
                f"the prompt uses {{{key}}} but there is no variable {key!r}; define it first, "
                f"or write {{{{{key}}}}} for literal braces"
            )
        return kwargs[key]


_STOPPED_WAITING = INTERRUPT_LINE  # one short line: JupyterLab breaks a long stream line mid-word

# names a result must not take: IPython's own, and the builtins every later cell relies on
_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "display", "__builtins__"})


def _check_output_name(name: str) -> None:
    """Refuse an ``-o`` name that is not a plain variable or would break the kernel's own names."""
    if not name.isidentifier() or keyword.iskeyword(name):
        what = "a Python keyword" if keyword.iskeyword(name) else "not a valid Python name"
        raise UsageError(f"-o/--output {name!r} is {what}; use letters, digits and _, not starting with a digit")
    if hasattr(builtins, name) or name in _IPYTHON_NAMES or name.startswith("_"):
        if name in _IPYTHON_NAMES:
            whose = "an IPython"
        elif hasattr(builtins, name):
            whose = "a Python built-in"
        else:
            whose = "an underscore"
        raise UsageError(
            f"-o/--output {name!r} would replace {whose} name and break later cells; choose another name, e.g. img_1"
        )


class _Number(Float):  # type: ignore[type-arg]
    """A float trait that refuses ``True``/``False`` (traitlets would read them as 1.0/0.0)."""

    def validate(self, obj: Any, value: Any) -> Any:
        if isinstance(value, bool):
            raise _TraitError(f"{self.name} {value!r} is not allowed; use a number")
        return super().validate(obj, value)


@magics_class
class GemimgMagics(Magics):
    """Gemini image generation from the notebook: ``%%gemimg`` and ``%gemimg``."""

    # ---- configuration (``%config GemimgMagics``) -------------------------------------------

    model = Unicode(DEFAULT_MODEL, help="Default model id or alias (%gemimg models lists them).").tag(config=True)
    size = Unicode("1:1", help="Default aspect ratio, e.g. '16:9' (must be one the model accepts).").tag(config=True)
    resolution = Unicode(
        _RESOLUTION_DEFAULT, help="Default resolution ('1K'; '2K'/'4K' where the model has them)."
    ).tag(config=True)
    temperature = _Number(0.8, help="Default temperature, 0–2 (models with sampling controls only).").tag(config=True)
    top_p = _Number(0.95, help="Default top-p, 0–1 (models with sampling controls only).").tag(config=True)
    output_dir = Unicode("", help="Where the ledger and images go; empty: $GEMIMG_OUTPUT_DIR or ./gemimg_outputs.").tag(
        config=True
    )
    max_cost_usd = _Number(None, allow_none=True, help="Spending budget for the session in USD (None: no budget).").tag(
        config=True
    )
    rate_tier = Unicode(
        "", help="The gateway's rate tier: 'default', 'vip' or 'svip' (empty: $GEMIMG_RATE_TIER, else default)."
    ).tag(config=True)
    confirm_above_usd = _Number(
        CONFIRM_ABOVE_USD, allow_none=True, help="Sweeps estimated above this many USD need --yes (None: never ask)."
    ).tag(config=True)
    cell_size = Int(320, help="Pixel size of one cell of a sweep grid (64–1024).").tag(config=True)
    preview_size = Int(768, help="Long side in pixels of the preview stored in the notebook (128–2048).").tag(
        config=True
    )
    refresh_interval = Float(
        0.5, help="Seconds between two re-renders of a sweep grid while results arrive (the final grid always shows)."
    ).tag(config=True)
    wait = Bool(False, help="Block every %%gemimg cell until its image is there (like --wait).").tag(config=True)
    debug = Bool(False, help="Show full tracebacks instead of one-line errors (like --debug).").tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        self._ready = False
        self._sess: Session | None = None
        super().__init__(shell=shell, **kwargs)
        self._views: list[LiveView] = []
        self._subcommands: dict[str, tuple[Callable[[list[str]], Any], str]] = {
            "jobs": (self._cmd_jobs, "this session's jobs and their states"),
            "cancel": (self._cmd_cancel, "cancel [ID|all] [--drop]: stop jobs or a sweep"),
            "wait": (self._cmd_wait, "wait [ID] [--timeout S]: block until jobs are done (use it before Run All ends)"),
            "resume": (self._cmd_resume, "finish jobs left unfinished by a restart"),
            "history": (self._cmd_history, "history [N] [--picked]: the newest N images (or the picks) as a strip"),
            "lineage": (self._cmd_lineage, "lineage NAME|ID: the chain of edits from the root to this image"),
            "pick": (self._cmd_pick, "pick NAME|ID [--note TEXT]: keep an image as a favourite (lasts)"),
            "unpick": (self._cmd_unpick, "unpick NAME|ID: remove a pick"),
            "report": (
                self._cmd_report,
                "report NAME [PATH]: a self-contained HTML report of a sweep or an edit chain",
            ),
            "cost": (self._cmd_cost, "spent, saved by the cache, budget"),
            "models": (self._cmd_models, "the models with their sizes, resolutions, limits and price"),
            "probe": (self._cmd_probe, "probe [--spend N]: check what the gateway really does for this key"),
            "login": (self._cmd_login, "ask for the ToAPIs key (hidden, kept in memory) and use the real gateway"),
            "backend": (self._cmd_backend, "backend [sim|toapis]: show or switch the backend"),
            "panel": (self._cmd_panel, "the ipywidgets control panel (same engine, same store)"),
            "config": (self._cmd_config, "the effective defaults"),
            "help": (self._cmd_help, "this help"),
        }
        self._ready = True

    # ---- validation of the defaults -----------------------------------------------------

    @staticmethod
    def _check(make: Callable[[], Any]) -> Any:
        try:
            return make()
        except GemimgError as err:
            raise _TraitError(error_line(err)) from None

    @validate("model")
    def _valid_model(self, proposal: dict[str, Any]) -> str:
        return str(self._check(lambda: get_model(proposal["value"]).id))

    @validate("size")
    def _valid_size(self, proposal: dict[str, Any]) -> str:
        params = self._check(lambda: GenerationParams.create("check", model=self.model, size=proposal["value"]))
        return str(params.size)

    @validate("resolution")
    def _valid_resolution(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        params = self._check(lambda: GenerationParams.create("check", model=self.model, resolution=value))
        return str(params.resolution)

    @validate("temperature", "top_p")
    def _valid_sampling(self, proposal: dict[str, Any]) -> float:
        name = proposal["trait"].name
        params = self._check(lambda: GenerationParams.create("check", model=DEFAULT_MODEL, **{name: proposal["value"]}))
        return float(getattr(params, name))

    @validate("max_cost_usd", "confirm_above_usd")
    def _valid_usd(self, proposal: dict[str, Any]) -> float | None:
        value = proposal["value"]
        if value is not None and (not math.isfinite(value) or value < 0):
            raise _TraitError(f"{proposal['trait'].name} {value!r} is not allowed; use 0 or more dollars, or None")
        return None if value is None else float(value)

    @validate("cell_size", "preview_size")
    def _valid_pixels(self, proposal: dict[str, Any]) -> int:
        name, value = proposal["trait"].name, proposal["value"]
        lo, hi = (64, 1024) if name == "cell_size" else (128, 2048)
        if not lo <= value <= hi:
            raise _TraitError(f"{name} {value!r} is not allowed; use a whole number of pixels from {lo} to {hi}")
        return int(value)

    @validate("refresh_interval")
    def _valid_interval(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 60:
            raise _TraitError(f"refresh_interval {value!r} is not allowed; use 0 to 60 seconds")
        return value

    @validate("output_dir")
    def _valid_output_dir(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"]).strip()
        existing = Path(value).expanduser().absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if value and not existing.is_dir():
            raise _TraitError(f"output_dir {value!r} is not allowed; {existing} is a file, use a folder path")
        if self._ready:
            running = self._running_jobs()
            if running:
                raise _TraitError(
                    f"output_dir cannot change while {plural(len(running), 'job')} run; %gemimg wait or cancel first"
                )
        return value

    @validate("rate_tier")
    def _valid_rate_tier(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"]).strip().lower()
        if value and value not in RATE_TIERS:
            raise _TraitError(f"rate_tier {proposal['value']!r} is not allowed; use one of {', '.join(RATE_TIERS)}")
        return value

    @observe("output_dir", "max_cost_usd", "rate_tier")
    def _settings_changed(self, change: dict[str, Any]) -> None:
        if not self._ready:
            return
        sess = self.session()
        wanted = sess.settings.replace(
            output_dir=Path(self.output_dir) if self.output_dir else Settings.from_env().output_dir,
            max_cost_usd=self.max_cost_usd,
        ).with_rate_tier(self.rate_tier or Settings.from_env().rate_tier)
        if wanted != sess.settings:
            try:
                reset_session(wanted)
            except GemimgError as err:  # the old value stays, as for any refused value
                self._ready = False  # the session was not replaced; put the old value back without a switch
                try:
                    self.set_trait(change["name"], change["old"])
                finally:
                    self._ready = True
                raise _TraitError(error_line(err)) from None

    # ---- the session ---------------------------------------------------------------------

    def _wanted_settings(self) -> Settings:
        overrides: dict[str, Any] = {}
        if self.output_dir:
            overrides["output_dir"] = Path(self.output_dir)
        if self.max_cost_usd is not None:
            overrides["max_cost_usd"] = self.max_cost_usd
        settings = Settings.from_env(**overrides)
        return settings.with_rate_tier(self.rate_tier) if self.rate_tier else settings

    def session(self) -> Session:
        """The shared session (created from the environment and these defaults on first use).

        A session that is already running (started by the Python API, the
        panel, ``%gemimg login`` or ``reset_session``) is used as it is.
        """
        try:
            sess = get_session(self._wanted_settings())
        except ConfigError:
            sess = get_session()  # a session with other settings is already running: use it
        self._sess = sess
        return sess

    def defaults(self) -> dict[str, Any]:
        """The generation defaults handed to the session (``defaults=``)."""
        return {
            "model": self.model,
            "size": self.size,
            "resolution": self.resolution,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }

    @property
    def _user_ns(self) -> dict[str, Any]:
        assert self.shell is not None, "GemimgMagics needs a shell"
        return self.shell.user_ns

    def _running_jobs(self) -> list[Job]:
        """Unfinished jobs of the last session this magic used (a closed one has none)."""
        sess = self._sess
        return [] if sess is None else [j for j in sess.jobs() if not j.done()]

    @contextmanager
    def _errors(self, debug: bool = False) -> Iterator[None]:
        """Turn a :class:`GemimgError` into a bare one-line ``UsageError`` (``--debug``: re-raise)."""
        try:
            yield
        except GemimgError as err:
            if debug or self.debug:
                raise
            raise UsageError(error_line(err)) from err

    # ---- lifecycle -----------------------------------------------------------------------

    def announce(self) -> None:
        """Print which backend is in use, and whether ``%gemimg resume`` has work."""
        try:
            sess = self.session()
        except GemimgError as err:
            _say(f"gemimg: {error_line(err)}")
            return
        _say(sess.banner().replace(". ", ".\n"))  # a sentence a line: JupyterLab breaks long stream lines mid-word
        pending = sess.pending_count()
        if pending:
            _say(
                f"gemimg: {plural(pending, 'unfinished job')} in the ledger ({sess.store_root}); "
                "%gemimg resume finishes them"
            )

    def shutdown(self) -> None:
        """Stop following outputs and close the shared session (its runner and simulator)."""
        for view in self._views:
            view.close()
        self._views.clear()
        running = self._running_jobs()
        self._sess = None
        reset_session(None)
        if running:
            _say(
                f"gemimg: stopped; {plural(len(running), 'unfinished job')} "
                f"{'stays' if len(running) == 1 else 'stay'} in the ledger "
                "(%load_ext gemimg_jupyter, then %gemimg resume)"
            )

    # ---- %%gemimg --------------------------------------------------------------------------

    @magic_arguments("%gemimg")
    @argument("-m", "--model", help="Model id or alias (default: %%config GemimgMagics.model).")
    @argument("-s", "--size", help="Aspect ratio, e.g. 1:1, 3:2, 16:9, 9:16, 21:9 (16x9 works too).")
    @argument("-r", "--resolution", help="1K, or 2K/4K on models that have them.")
    @argument("-t", "--temperature", metavar="T", help="Sampling temperature, 0–2.")
    @argument("-p", "--top-p", dest="top_p", metavar="P", help="Nucleus sampling top-p, 0–1.")
    @argument(
        "--ref",
        action="append",
        metavar="PATH|URL|{var}",
        help="A reference image (repeatable): a file, a URL, or {var} holding a PIL image, bytes, a path, or a list.",
    )
    @argument(
        "--edit",
        metavar="NAME|ID",
        help="Edit an image: a result variable, a sweep cell fox[2], or a job id. It becomes the first reference.",
    )
    @argument("-n", "--repeats", type=int, default=1, metavar="N", help="Images per parameter set (1–16).")
    @argument(
        "--sweep",
        action="append",
        metavar="NAME=VALUES",
        help="Vary a parameter (repeatable, up to 3): temperature=0.2,0.8 · top_p=1-0.6 (-0.2) · size=1:1,16:9 · "
        "prompt=fox|cat · ref=none|a.png.",
    )
    @argument("--yes", action="store_true", help="Run a sweep above the confirmation threshold without asking.")
    @argument("-o", "--output", metavar="NAME", help="Store the result (a Job or SweepResult) in this variable.")
    @argument("--wait", action="store_true", default=None, help="Block until the image (or grid) is done.")
    @argument("--no-wait", dest="wait", action="store_false", help="Return at once even if GemimgMagics.wait is set.")
    @argument("--fresh", action="store_true", help="Ask for new images even if the store has these already.")
    @argument("--debug", action="store_true", help="Show the full traceback of an error.")
    @no_var_expand
    @cell_magic("gemimg")  # type: ignore[arg-type]
    def gemimg_cell(self, line: str, cell: str) -> LiveView | None:
        """Generate an image from the cell's text; the cell returns at once.

        The cell body is the prompt. ``{name}`` in it is replaced by the value of
        the variable ``name`` (write ``{{`` and ``}}`` for literal braces). The
        output is one live line (state, elapsed time, progress, cost) that turns
        into the image when it arrives; sweeps show a labelled grid that fills in
        as results come. Nothing is sent until every option has been checked;
        images already in the store are shown again for free (``--fresh`` asks
        for new ones). Defaults come from ``%config GemimgMagics``.

        Examples
        --------
        One image, kept in a variable (``hero.image`` is a PIL image,
        ``hero.path`` the PNG on disk)::

            %%gemimg --size 16:9 --temperature 0.8 -o hero
            A studio photo of a ceramic teapot on a marble table, soft daylight

        Reference images (a file, and a PIL image held in a variable)::

            %%gemimg --ref product.png --ref {logo}
            The product on a beach towel, with the logo printed on it

        A sweep (6 cells × 2 repeats = 12 requests), drawn as a grid::

            %%gemimg --sweep temperature=0.2,0.8,1.4 --sweep size=1:1,16:9 -n 2
            A paper-cut fox in a forest

        Three samples side by side, waiting for them::

            %%gemimg -n 3 --wait
            A watercolour lighthouse at dusk

        See also ``%gemimg help`` (jobs, cancel, wait, resume, history, cost …).
        """
        args = self.parse_cell(line, cell)
        with self._errors(args.debug):
            try:
                return self._run_cell(args)
            except KeyboardInterrupt:  # Ctrl-C anywhere in a waiting cell stops the wait, never the jobs
                if not args.wait:
                    raise
                _say(_STOPPED_WAITING)
                return None

    def parse_cell(self, line: str, cell: str) -> CellArgs:
        """Parse options and expand ``{var}`` in the prompt and ``--ref`` (no request is made)."""
        ns = self.gemimg_cell.parser.parse_args(_split(line))
        output = ns.output
        if output is not None:
            _check_output_name(output)
        if not 1 <= ns.repeats <= MAX_REPEATS:
            raise UsageError(f"-n/--repeats {ns.repeats} is not allowed; use a whole number from 1 to {MAX_REPEATS}")
        if not cell.strip():
            raise UsageError("the cell is empty: write the prompt in the cell body, below the %%gemimg line")
        prompt = self._expand(cell, what="prompt")
        references: list[object] = []
        for token in ns.ref or []:
            references.extend(self._ref_objects(token))
        params = {
            name: getattr(ns, name)
            for name in ("model", "size", "resolution", "temperature", "top_p")
            if getattr(ns, name) is not None
        }
        return CellArgs(
            prompt=prompt,
            params=params,
            references=references,
            repeats=ns.repeats,
            sweeps=[self._expand_spec(spec) for spec in ns.sweep or []],
            yes=ns.yes,
            output=output,
            wait=self.wait if ns.wait is None else ns.wait,
            fresh=ns.fresh,
            debug=ns.debug,
            edit=None if ns.edit is None else self._image_target(ns.edit, what="--edit"),
        )

    def _expand(self, text: str, *, what: str) -> str:
        try:
            return _Formatter().vformat(text, (), self._user_ns)
        except UsageError:
            raise
        except ValueError as exc:
            raise UsageError(
                f"the {what}'s braces do not pair up ({exc}); write {{{{ and }}}} for literal braces"
            ) from None
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            raise UsageError(f"the {what}'s {{…}} could not be filled in: {type(exc).__name__}: {exc}") from None

    def _lookup(self, expr: str) -> Any:
        """The object named by ``expr`` (``name``, ``name.attr`` or ``name[0]``) in the user namespace."""
        try:
            obj, _ = _Formatter().get_field(expr.strip(), (), self._user_ns)
        except UsageError:
            raise UsageError(
                f"--ref {{{expr}}}: there is no variable {expr.split('.')[0].split('[')[0]!r}; define it first"
            ) from None
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise UsageError(f"--ref {{{expr}}} could not be read: {type(exc).__name__}: {exc}") from None
        return obj

    def _ref_objects(self, token: str) -> list[object]:
        match = _REF_VAR.match(token.strip())
        if match:
            obj = self._lookup(match.group(1))
            items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
            return [_image_of(item) for item in items]
        if "{" in token:
            return [self._expand(token, what="--ref value")]
        return [token]

    def _resolve_ref(self, token: str) -> ReferenceImage:
        """For sweep ``ref=`` axes: a path, URL or ``{var}`` holding one image."""
        from .images import load_reference

        match = _REF_VAR.match(token.strip())
        return load_reference(_image_of(self._lookup(match.group(1))) if match else token)

    def _expand_spec(self, spec: str) -> str:
        """Fill ``{var}`` in a sweep spec (lists become comma-separated values); ``ref=`` keeps them."""
        name = spec.split("=", 1)[0]
        try:
            if canonical_axis_name(name) == "ref":
                return spec
        except GemimgError:
            return spec  # the sweep parser reports unknown axis names itself

        def fill(match: re.Match[str]) -> str:
            value = self._lookup(match.group(1))
            if isinstance(value, (list, tuple, range)):
                items = [str(v) for v in value]
                return ("|" if any("," in v for v in items) else ",").join(items)
            return str(value)

        return re.sub(r"\{([^{}]+)\}", fill, spec)

    def _run_cell(self, args: CellArgs) -> LiveView:
        sess = self.session()
        defaults = self.defaults()
        target: Job | SweepResult
        view: LiveView
        if args.is_sweep:
            fixed: dict[str, Any] = dict(args.params)
            if args.references:
                fixed["reference_images"] = args.references
            plan = sess.plan(
                args.prompt,
                axes=args.sweeps,
                repeats=args.repeats,
                defaults=defaults,
                resolve_ref=self._resolve_ref,
                edit=args.edit,
                **fixed,
            )
            _say(f"gemimg: {sess.quote(plan, fresh=args.fresh, confirm_above_usd=self.confirm_above_usd).summary}")
            result = sess.sweep(
                args.prompt,
                plan=plan,
                fresh=args.fresh,
                wait=False,
                yes=args.yes,
                confirm_above_usd=self.confirm_above_usd,
                cell_size=self.cell_size,
                edit=args.edit,
            )
            target, view = result, SweepView(result, min_interval=self.refresh_interval)
        else:
            job = sess.generate(
                args.prompt,
                reference_images=args.references,
                fresh=args.fresh,
                wait=False,
                defaults=defaults,
                edit=args.edit,
                **args.params,
            )
            target, view = job, JobView(job, preview_size=self.preview_size)
        if args.output:
            self._user_ns[args.output] = target
        view.show()
        view.attach()
        self._views = [v for v in self._views if not v.finished]
        self._views.append(view)
        if args.wait:
            self._block([view], timeout=None)
        return view

    def _block(self, views: Sequence[LiveView], timeout: float | None) -> bool:
        """Wait for views to reach their final state (Ctrl-C stops waiting, not the jobs)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for view in views:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                target = view.target()
                if not target.wait(left):
                    return False
                view.wait_final(10.0 if left is None else max(0.5, left))
        except KeyboardInterrupt:
            show_interrupt_note([job for view in views for job in _jobs_of(view)])
            return False
        return True

    # ---- %gemimg ---------------------------------------------------------------------------

    @line_magic("gemimg")  # type: ignore[arg-type]
    def gemimg_line(self, line: str) -> Any:
        """Manage images and jobs: ``%gemimg SUBCOMMAND [options]``.

        Subcommands::

            jobs                      this session's jobs and their states
            cancel [ID|all] [--drop]  cancel jobs or a sweep (--drop: stop collecting paid ones too)
            wait [ID] [--timeout S]   block until done, so Run All ends with every image in place
            resume                    finish jobs a kernel restart left unfinished
            history [N]               the newest N images, as a thumbnail strip
            cost                      spent, saved by the cache, budget
            models                    models with sizes, resolutions, limits and price
            login                     ask for the ToAPIs key (hidden; kept in memory only)
            backend [sim|toapis]      show or switch the backend
            panel                     the ipywidgets control panel
            config                    the effective defaults (%config GemimgMagics to change them)
            help                      this help

        Examples
        --------
        ::

            %gemimg wait
            %gemimg cancel all --drop
            %gemimg history 8

        ``%%gemimg?`` documents the cell magic that generates images.
        """
        words = _split(line)
        if not words:
            return self._cmd_help([])
        name, rest = words[0].lower(), words[1:]
        entry = self._subcommands.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, self._subcommands, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(
                f"unknown subcommand {name!r}{hint}; use one of: {', '.join(self._subcommands)} "
                "(%%gemimg generates images)"
            )
        try:
            with self._errors():
                return entry[0](rest)
        except _Stop:
            return None

    def _parser(self, name: str) -> _SubParser:
        return _SubParser(prog=f"%gemimg {name}", description=self._subcommands[name][1], allow_abbrev=False)

    def _cmd_help(self, argv: list[str]) -> None:
        self._parser("help").parse_args(argv)
        width = max(len(n) for n in self._subcommands)
        lines = ["%gemimg SUBCOMMAND — manage images and jobs (%%gemimg? for generating them):"]
        lines += [f"  {n.ljust(width)}  {about}" for n, (_, about) in self._subcommands.items()]
        lines.append("Defaults: %config GemimgMagics (list) · %config GemimgMagics.size = '16:9' (change).")
        _say("\n".join(lines))

    def _cmd_jobs(self, argv: list[str]) -> RichText:
        self._parser("jobs").parse_args(argv)
        return jobs_table(self.session().jobs())

    def _cmd_cancel(self, argv: list[str]) -> None:
        p = self._parser("cancel")
        p.add_argument("target", nargs="?", default="all", help="a job id, a sweep id, or all (default)")
        p.add_argument("--drop", action="store_true", help="also stop collecting jobs that were already submitted")
        ns = p.parse_args(argv)
        sess = self.session()
        n = sess.cancel(ns.target, drop=ns.drop)
        paid = [j for j in sess.jobs() if not j.done() and j.task_id is not None]
        msg = f"gemimg: cancelled {plural(n, 'job')}"
        if paid and not ns.drop:
            msg += (
                f"; {plural(len(paid), 'job')} already submitted (and paid for) will still be downloaded"
                " — add --drop to stop collecting them"
            )
        _say(msg)

    def _cmd_wait(self, argv: list[str]) -> None:
        p = self._parser("wait")
        p.add_argument("target", nargs="?", help="a job or sweep id (default: everything)")
        p.add_argument("--timeout", type=float, metavar="S", help="give up waiting after S seconds")
        ns = p.parse_args(argv)
        sess = self.session()
        start = time.monotonic()
        jobs = sess.jobs()
        if ns.target is not None:
            job = sess.find_job(ns.target)
            sweep = sess.find_sweep(ns.target)
            if job is None and sweep is None:
                known = ", ".join(j.id for j in jobs[-8:]) or "none yet"
                raise UsageError(f"no job or sweep {ns.target!r} in this session; jobs: {known}")
            jobs = [job] if job is not None else list(sweep.jobs if sweep is not None else [])
        if not jobs:
            _say("gemimg: nothing to wait for")
            return
        try:
            ok = sess.wait_jobs(jobs, timeout=ns.timeout)
            if ok:
                for sweep in sess.sweeps:
                    if any(j in jobs for j in sweep.jobs):
                        sweep.wait(timeout=10)
        except KeyboardInterrupt:
            show_interrupt_note(jobs)
            return
        left = None if ns.timeout is None else max(0.5, ns.timeout - (time.monotonic() - start))
        views = [v for v in self._views if any(j in jobs for j in _jobs_of(v))]
        self._block(views, timeout=left)
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        elapsed = time.monotonic() - start
        if ok:
            _say(f"gemimg: {plural(len(jobs), 'job')} finished ({summary}) after {elapsed:.1f} s")
        else:
            running = sum(1 for j in jobs if not j.done())
            _say(
                f"gemimg: still {plural(running, 'job')} running after {elapsed:.1f} s ({summary}); "
                "they keep going in the background"
            )

    def _cmd_resume(self, argv: list[str]) -> None:
        self._parser("resume").parse_args(argv)
        jobs = self.session().resume()
        if not jobs:
            _say("gemimg: nothing to resume")
            return
        _say(f"gemimg: resuming {plural(len(jobs), 'unfinished job')} (%gemimg wait waits for them)")
        for job in jobs[:12]:
            view = JobView(job, preview_size=self.preview_size)
            view.show()
            view.attach()
            self._views.append(view)
        if len(jobs) > 12:
            _say(f"gemimg: … and {len(jobs) - 12} more (%gemimg jobs lists them)")

    def _cmd_history(self, argv: list[str]) -> Any:
        p = self._parser("history")
        p.add_argument("n", nargs="?", type=int, default=12, help="how many images (default 12)")
        p.add_argument("--picked", action="store_true", help="only picked images, newest pick first")
        ns = p.parse_args(argv)
        if not 1 <= ns.n <= 200:
            raise UsageError(f"%gemimg history: N {ns.n} is not allowed; use 1 to 200")
        sess = self.session()
        picked = sess.pickbook.cbids()
        if ns.picked:
            rows = [pk.row for pk in sess.picks() if pk.row is not None and pk.row.path][: ns.n]
            if not rows:
                _say("gemimg: no picked images yet (%gemimg pick NAME picks one)")
                return None
            return history_strip(rows, picked=picked, title=f"{len(rows)} picked image(s), newest pick first")
        return history_strip(sess.history(ns.n), picked=picked)

    # ---- edit chains, picks, reports (docs/editing.md) -------------------------------------

    def _image_target(self, token: str, *, what: str, sweep_ok: bool = False) -> object:
        """What NAME means: a variable holding a result (``fox[2]`` indexes a sweep), else a job id."""
        expr = token.strip()
        match = _REF_VAR.match(expr)
        expr = match.group(1).strip() if match else expr
        head = re.split(r"[.\[]", expr, maxsplit=1)[0]
        if not (head.isidentifier() and head in self._user_ns):
            if match or expr != head or not expr:
                raise UsageError(f"{what} {token}: there is no variable {head!r}; define it first")
            return expr  # a job id (short, task or client_business_id): the session looks it up in the ledger
        try:
            obj, _ = _Formatter().get_field(expr, (), self._user_ns)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise UsageError(f"{what} {token} could not be read: {type(exc).__name__}: {exc}") from None
        if isinstance(obj, LiveView):
            obj = obj.target()
        if isinstance(obj, SweepResult) and not sweep_ok:
            raise UsageError(f"{what} {token} is a sweep; name one of its images, e.g. {expr}[0]")
        if isinstance(obj, (JobClass, SweepResult, str)):
            return obj
        raise UsageError(f"{what} {token} holds a {type(obj).__name__}, not a result; name a result or a job id")

    def _cmd_lineage(self, argv: list[str]) -> Any:
        p = self._parser("lineage")
        p.add_argument("name", help="a result variable, a sweep cell fox[2], or a job id")
        ns = p.parse_args(argv)
        chain = self.session().lineage(self._image_target(ns.name, what="%gemimg lineage"))
        return lineage_output(chain)

    def _cmd_pick(self, argv: list[str]) -> None:
        p = self._parser("pick")
        p.add_argument("name", help="a result variable, a sweep cell fox[2], or a job id")
        p.add_argument("--note", metavar="TEXT", help="why (kept with the pick)")
        ns = p.parse_args(argv)
        pick = self.session().pick(self._image_target(ns.name, what="%gemimg pick"), note=ns.note)
        self._redraw_sweeps()
        _say(f"gemimg: picked {pick.cbid[-6:]} ({display_path(pick.path)})")

    def _cmd_unpick(self, argv: list[str]) -> None:
        p = self._parser("unpick")
        p.add_argument("name", help="a result variable, a sweep cell fox[2], or a job id")
        ns = p.parse_args(argv)
        gone = self.session().unpick(self._image_target(ns.name, what="%gemimg unpick"))
        self._redraw_sweeps()
        _say(f"gemimg: {'unpicked' if gone else 'was not picked:'} {ns.name}")

    def _redraw_sweeps(self) -> None:
        """Live sweep grids show the new star at once."""
        for view in self._views:
            if isinstance(view, SweepView):
                view.refresh()

    def _cmd_report(self, argv: list[str]) -> None:
        p = self._parser("report")
        p.add_argument("name", help="a sweep variable, or an image (its edit chain)")
        p.add_argument("path", nargs="?", help="where to write it (default: <output>/reports/)")
        ns = p.parse_args(argv)
        target = self._image_target(ns.name, what="%gemimg report", sweep_ok=True)
        path = self.session().save_report(target, ns.path)
        _say(f"gemimg: report written to {display_path(path)} ({path.stat().st_size / 1024:.0f} KB, opens offline)")

    def _cmd_cost(self, argv: list[str]) -> RichText:
        self._parser("cost").parse_args(argv)
        return cost_report(self.session().cost())

    def _cmd_models(self, argv: list[str]) -> RichText:
        self._parser("models").parse_args(argv)
        return models_table(MODELS, default=self.model)

    def _cmd_probe(self, argv: list[str]) -> None:
        p = self._parser("probe")
        p.add_argument("--spend", type=float, default=0.0, metavar="DOLLARS", help="allow paid checks up to this much")
        p.add_argument("--yes", action="store_true", help="do not ask before paying")
        ns = p.parse_args(argv)
        if not ns.spend >= 0:
            raise UsageError(f"%gemimg probe: --spend {ns.spend} is not allowed; use 0 or more dollars")
        from .probe import run_probe

        def confirm(question: str) -> bool:
            return bool(ns.yes) or input(question).strip().lower() in ("y", "yes")

        run_probe(self._current_settings(), spend=ns.spend, confirm=confirm, say=_say)

    def _switch(self, settings: Settings, *, force: bool) -> Session:
        running = self._running_jobs()
        if running and not force:
            raise UsageError(
                f"{plural(len(running), 'job')} still running; %gemimg wait (or %gemimg cancel all) first, "
                "or add --force (they stay in the ledger for %gemimg resume)"
            )
        for view in self._views:
            view.close()
        self._views.clear()
        sess = reset_session(settings)
        assert sess is not None
        self._sess = sess
        _say(sess.banner())
        return sess

    def _current_settings(self) -> Settings:
        """The running session's settings, or, when none can start (say, no key), the wanted ones."""
        try:
            return self.session().settings
        except GemimgError:
            return self._wanted_settings()

    def _cmd_login(self, argv: list[str]) -> None:
        p = self._parser("login")
        p.add_argument("--force", action="store_true", help="switch even while jobs are running")
        ns = p.parse_args(argv)
        key = getpass.getpass("ToAPIs API key (hidden; kept in memory for this kernel only): ").strip()
        if not key:
            raise UsageError("no key entered; nothing changed")
        env = Settings.from_env()
        current = self._current_settings()
        self._switch(current.replace(api_key=Secret(key), backend="toapis", base_url=env.base_url), force=ns.force)

    def _cmd_backend(self, argv: list[str]) -> None:
        p = self._parser("backend")
        p.add_argument("name", nargs="?", choices=("sim", "toapis"), help="switch to this backend")
        p.add_argument("--force", action="store_true", help="switch even while jobs are running")
        ns = p.parse_args(argv)
        current = self._current_settings()
        if ns.name is None or ns.name == current.resolved_backend:
            _say(self.session().banner())
            return
        if ns.name == "sim":
            self._switch(current.replace(backend="sim", base_url=None), force=ns.force)
            return
        env = Settings.from_env()
        key = current.api_key or env.api_key
        if key is None:
            raise UsageError("no ToAPIs key: run %gemimg login (hidden prompt) or set TOAPIS_API_KEY, then try again")
        self._switch(current.replace(backend="toapis", api_key=key, base_url=env.base_url), force=ns.force)

    def _cmd_panel(self, argv: list[str]) -> Any:
        self._parser("panel").parse_args(argv)
        try:
            from .widgets import Panel
        except ImportError as exc:
            raise UsageError(f"the control panel is not available ({exc}); use %%gemimg instead") from None
        accepted = inspect.signature(Panel).parameters
        kwargs: dict[str, Any] = {}
        if "session" in accepted:
            kwargs["session"] = self.session()
        if "defaults" in accepted:
            kwargs["defaults"] = self.defaults()
        return Panel(**kwargs)

    def _cmd_config(self, argv: list[str]) -> RichText:
        self._parser("config").parse_args(argv)
        sess = self.session()
        rows: list[tuple[str, object, str]] = []
        for name, trait in sorted(self.traits(config=True).items()):
            rows.append((name, getattr(self, name), trait.help))
        s = sess.settings
        rows += [
            ("(backend)", sess.backend, "GEMIMG_BACKEND / %gemimg backend"),
            ("(base_url)", sess.base_url, "GEMIMG_BASE_URL (the simulator's own address for sim)"),
            ("(store)", display_path(sess.store_root), "where the ledger and images are"),
            ("(budget)", s.max_cost_usd, "max_cost_usd in effect"),
            ("(in flight)", s.max_in_flight, "requests running at once"),
            ("(job timeout)", s.job_timeout, "seconds before a job is given up (resume can still collect it)"),
        ]
        return config_table([(n, redact(str(v)) if isinstance(v, str) else v, h) for n, v, h in rows])


def _image_of(obj: object) -> object:
    """A finished job (or its view) used as a reference stands for its image file."""
    if isinstance(obj, LiveView):
        obj = obj.target()
    if isinstance(obj, JobClass):
        if not obj.state.has_image or obj.path is None:
            raise UsageError(f"--ref: job {obj.id} has no image yet ({obj.state.value}); run %gemimg wait first")
        return obj.path
    return obj


def _jobs_of(view: LiveView) -> list[Job]:
    target = view.target()
    return list(target.jobs) if isinstance(target, SweepResult) else [target]


# ---- loading -------------------------------------------------------------------------------------


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register :class:`GemimgMagics` and say which backend is in use (a second load does nothing)."""
    if "GemimgMagics" in ipython.magics_manager.registry:
        return
    magics = GemimgMagics(ipython)
    ipython.register_magics(magics)
    magics.announce()


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Unregister the magics and stop the job runner; unfinished jobs stay in the ledger."""
    magics = ipython.magics_manager.registry.pop("GemimgMagics", None)
    if magics is None:
        return
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("gemimg", None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    magics.shutdown()
