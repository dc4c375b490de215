"""IPython connectivity: the ``%%gemimg`` cell magic and the ``%gemimg`` line magic.

``%load_ext gemimg_jupyter`` registers :class:`GemimgMagics`; ``%unload_ext
gemimg_jupyter`` stops its job runner (unfinished work stays in the ledger for
``%gemimg resume``). The magic is a thin adapter: the work happens in the
shared :class:`~gemimg_jupyter.api.session.Session` (the same engine as the Python
API and the panel) and the outputs come from :mod:`gemimg_jupyter.display`.
Reading and running a cell is in :mod:`gemimg_jupyter.magics.cells`, the ``%gemimg``
subcommands in :mod:`gemimg_jupyter.magics.commands`; both are plain functions over a
:class:`~gemimg_jupyter.magics.context.MagicContext` that the class builds for each
call. This module keeps the class, its defaults and the router.

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
import difflib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Float, Int, TraitError, Unicode, observe, validate

from gemimg_jupyter.api import (
    CONFIRM_ABOVE_USD,
    CONTROL_PARAMS,
    DEFAULT_MODEL,
    MAX_REPEATS,
    PARAMS,
    RATE_TIERS,
    SAMPLING_PARAMS,
    VALUE_PARAMS,
    ConfigError,
    GemimgError,
    GenerationParams,
    Session,
    Settings,
    current_session,
    get_model,
    get_session,
    parse_duration,
    plural,
    reset_session,
)
from gemimg_jupyter.display import LiveView, error_line, show_interrupt_note
from gemimg_jupyter.display.renderers import magic_words
from gemimg_jupyter.magics.cells import (
    CellArgs,
    check_output_name,
    check_output_target,
    expand,
    image_target,
    pair_specs,
    ref_objects,
    run_cell,
)
from gemimg_jupyter.magics.cells import split_line as _split
from gemimg_jupyter.magics.commands import SUBCOMMANDS, switch
from gemimg_jupyter.magics.context import MagicContext, running_jobs, say

if TYPE_CHECKING:  # pragma: no cover
    from IPython.core.interactiveshell import InteractiveShell


__all__ = ["CellArgs", "GemimgMagics", "load_ipython_extension", "unload_ipython_extension"]


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
            say(message.rstrip())
        raise _Stop


class _AxisAction(argparse.Action):
    """``--sweep`` and ``--with`` append ``(flag, spec)`` to one list, so each ``--with`` knows its ``--sweep``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        flagged = list(getattr(namespace, self.dest, None) or [])
        flagged.append(("with" if option_string == "--with" else "sweep", str(values)))
        setattr(namespace, self.dest, flagged)


def _check(make: Callable[[], Any]) -> Any:
    """``make()``, with a :class:`GemimgError` turned into a one-line trait error."""
    try:
        return make()
    except GemimgError as err:
        raise _TraitError(error_line(err)) from None


@contextmanager
def _errors(magics: GemimgMagics, debug: bool = False) -> Iterator[None]:
    """Turn a :class:`GemimgError` into a bare one-line ``UsageError`` (``--debug`` or ``magics.debug``: re-raise)."""
    try:
        yield
    except GemimgError as err:
        if debug or magics.debug:
            raise
        raise UsageError(error_line(err)) from err


def _stop_after(text: str | None) -> float | None:
    """``--stop-after`` in seconds, checked while the cell is parsed (one line, before the plan is shown)."""
    try:
        return None if text is None else parse_duration(text, what="--stop-after")
    except GemimgError as err:
        raise UsageError(error_line(err)) from None


class _Number(Float):  # type: ignore[type-arg]
    """A float trait that refuses ``True``/``False`` (traitlets would read them as 1.0/0.0)."""

    def validate(self, obj: Any, value: Any) -> Any:
        if isinstance(value, bool):
            raise _TraitError(f"{self.name} {value!r} is not allowed; use a number")
        return super().validate(obj, value)


def _param_trait(name: str, help: str = "") -> Any:
    """The ``%config`` default of a generation parameter: its default and bounds from the parameter table."""
    spec = PARAMS[name]
    if spec.bounds is None:
        return Unicode(spec.default, help=help).tag(config=True)
    only = " (models with sampling controls only)" if spec.sampling else ""
    return _Number(spec.default, help=help or f"Default {spec.label}, {spec.range_text}{only}.").tag(config=True)


def _param_option(name: str, help: str = "") -> Any:
    """The ``%%gemimg`` option of a generation parameter, spelt as the parameter table says."""
    spec = PARAMS[name]
    flags = [flag for flag in (spec.short, spec.option) if flag]
    return argument(*flags, dest=spec.name, metavar=spec.metavar, help=help or f"{spec.described}.")


def _control_options(func: Any) -> Any:
    """Every control's ``%%gemimg`` option (``--thinking LEVEL``, ``--search`` …), spelt as the parameter table says."""
    for spec in reversed(CONTROL_PARAMS):
        assert spec.option is not None, f"control {spec.name} has an option"
        if spec.kind == "flag":
            option = argument(spec.option, dest=spec.name, action="store_true", default=None, help=f"{spec.help}.")
        else:
            action = "append" if spec.kind == "pairs" else None
            option = argument(
                spec.option, dest=spec.name, metavar=spec.metavar, action=action, help=f"{spec.described}."
            )
        func = option(func)
    return func


def config_settings(m: GemimgMagics, settings: Settings, *, cleared: str = "") -> Settings:
    """``settings`` with the extension's ``output_dir``, ``max_cost_usd`` and ``rate_tier`` applied.

    A value left unset (empty, ``None``) keeps what ``settings`` say, except ``cleared`` (the
    name of a value just emptied by ``%config``): an emptied folder or tier goes back to the
    environment's, an emptied budget means no budget.
    """
    env = Settings.from_env() if cleared else settings
    changes: dict[str, Any] = {}
    folder = Path(m.output_dir) if m.output_dir else (env if cleared == "output_dir" else settings).output_dir
    if folder.expanduser().resolve() != settings.output_dir.expanduser().resolve():
        changes["output_dir"] = folder
    if m.max_cost_usd is not None or cleared == "max_cost_usd":
        changes["max_cost_usd"] = m.max_cost_usd
    wanted = settings.replace(**changes) if changes else settings
    tier = m.rate_tier or (env if cleared == "rate_tier" else settings).rate_tier
    return wanted if tier == wanted.rate_tier else wanted.with_rate_tier(tier)


@magics_class
class GemimgMagics(Magics):
    """Gemini image generation from the notebook: ``%%gemimg`` and ``%gemimg``."""

    # ---- configuration (``%config GemimgMagics``) -------------------------------------------

    model = _param_trait("model", "Default model id or alias (%gemimg models lists them).")
    size = _param_trait("size", "Default aspect ratio, e.g. '16:9' (must be one the model accepts).")
    resolution = _param_trait("resolution", "Default resolution ('1K'; '2K'/'4K' where the model has them).")
    temperature = _param_trait("temperature")
    top_p = _param_trait("top_p")
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
        super().__init__(shell=shell, **kwargs)
        self.views: list[LiveView] = []
        self.subcommands: dict[str, tuple[Callable[[list[str]], Any], str]] = {
            name: (self._subcommand(fn), about) for name, (fn, about) in SUBCOMMANDS.items()
        }
        self._ready = True

    # ---- validation of the defaults -----------------------------------------------------

    @validate("model")
    def _valid_model(self, proposal: dict[str, Any]) -> str:
        return str(_check(lambda: get_model(proposal["value"]).id))

    @validate("size")
    def _valid_size(self, proposal: dict[str, Any]) -> str:
        params = _check(lambda: GenerationParams.create("check", model=self.model, size=proposal["value"]))
        return str(params.size)

    @validate("resolution")
    def _valid_resolution(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        params = _check(lambda: GenerationParams.create("check", model=self.model, resolution=value))
        return str(params.resolution)

    @validate(*(param.name for param in SAMPLING_PARAMS))
    def _valid_sampling(self, proposal: dict[str, Any]) -> float:
        name = proposal["trait"].name
        params = _check(lambda: GenerationParams.create("check", model=DEFAULT_MODEL, **{name: proposal["value"]}))
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
            running = running_jobs()
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
        """A running session moves to the new value at once (nothing running: the next use builds one)."""
        sess = current_session() if self._ready else None
        if sess is None:
            return
        cleared = change["name"] if change["new"] in ("", None) else ""
        wanted = config_settings(self, sess.settings, cleared=cleared)
        if wanted != sess.settings:
            try:
                sess.with_settings(wanted)
            except GemimgError as err:  # the old value stays, as for any refused value
                self._ready = False  # the session was not replaced; put the old value back without a switch
                try:
                    self.set_trait(change["name"], change["old"])
                finally:
                    self._ready = True
                raise _TraitError(error_line(err)) from None

    # ---- the session ---------------------------------------------------------------------

    def wanted_settings(self) -> Settings:
        """The settings a new session gets: the environment's, with these ``%config`` values."""
        return config_settings(self, Settings.from_env())

    def session(self) -> Session:
        """The extension's session: the default session, agreeing with these ``%config`` values.

        On first use it is made from the environment and these values. A default session started
        elsewhere (``gi.generate``, ``reset_session``, a bare ``Panel()``) is used as long as it
        agrees with every value set here; when it does not (say its output folder is another), a
        session with these values replaces it, so a ``%config`` value is never silently ignored.
        """
        sess = current_session()
        if sess is None:
            return get_session(self.wanted_settings())
        wanted = config_settings(self, sess.settings)
        if wanted == sess.settings:
            return sess
        running = running_jobs()
        if running:
            raise ConfigError(
                f"the running session's settings differ from %config GemimgMagics and it still runs "
                f"{plural(len(running), 'job')}; %gemimg wait or %gemimg cancel all first"
            )
        return sess.with_settings(wanted)

    def defaults(self) -> dict[str, Any]:
        """The generation defaults handed to the session (``defaults=``)."""
        return {param.name: getattr(self, param.name) for param in VALUE_PARAMS}

    @property
    def user_ns(self) -> dict[str, Any]:
        assert self.shell is not None, "GemimgMagics needs a shell"
        return self.shell.user_ns

    def context(self) -> MagicContext:
        """What one cell or subcommand may use: the session, the namespace, the views, these values now."""
        return MagicContext(
            session=self.session,
            wanted_settings=self.wanted_settings,
            user_ns=self.shell.user_ns if self.shell is not None else {},
            views=self.views,
            subparser=self.subparser,
            say=say,
            defaults=self.defaults(),
            confirm_above_usd=self.confirm_above_usd,
            cell_size=self.cell_size,
            preview_size=self.preview_size,
            refresh_interval=self.refresh_interval,
            config=tuple(
                (name, getattr(self, name), trait.help) for name, trait in sorted(self.traits(config=True).items())
            ),
        )

    def _subcommand(self, command: Callable[[MagicContext, list[str]], Any]) -> Callable[[list[str]], Any]:
        """The router's entry for ``command``: it runs over a context built when it is called."""

        def run(argv: list[str]) -> Any:
            return command(self.context(), argv)

        return run

    # ---- lifecycle -----------------------------------------------------------------------

    def announce(self) -> None:
        """Print which backend is in use, and whether ``%gemimg resume`` has work."""
        try:
            sess = self.session()
        except GemimgError as err:
            say(f"gemimg: {error_line(err)}")
            return
        # a sentence a line: JupyterLab breaks long stream lines mid-word
        say(magic_words(sess.banner()).replace(". ", ".\n"))
        unlisted = sess.default_model_line(self.model)
        if unlisted:
            say(magic_words(unlisted))
        pending = sess.pending_count()
        if pending:
            say(
                f"gemimg: {plural(pending, 'unfinished job')} in the ledger ({sess.store_root}); "
                "%gemimg resume finishes them"
            )

    def shutdown(self) -> None:
        """Stop following outputs and close the shared session (its runner and simulator)."""
        for view in self.views:
            view.close()
        self.views.clear()
        running = running_jobs()
        reset_session(None)  # the extension's session is the default one: it closes with the extension
        if running:
            say(
                f"gemimg: stopped; {plural(len(running), 'unfinished job')} "
                f"{'stays' if len(running) == 1 else 'stay'} in the ledger "
                "(%load_ext gemimg_jupyter, then %gemimg resume)"
            )

    # ---- %%gemimg --------------------------------------------------------------------------

    @magic_arguments("%gemimg")
    @_param_option("model", "Model id or alias (default: %%config GemimgMagics.model).")
    @_param_option("size")
    @_param_option("resolution")
    @_param_option("temperature")
    @_param_option("top_p")
    @_control_options
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
        action=_AxisAction,
        dest="axes",
        metavar="NAME=VALUES",
        help="Vary a parameter (repeatable, up to 3): temperature=0.2,0.8 · top_p=1-0.6 (-0.2) · size=1:1,16:9 · "
        "prompt=fox|cat · ref=none|a.png.",
    )
    @argument(
        "--with",
        action=_AxisAction,
        dest="axes",
        metavar="NAME=VALUES",
        help="Pair a parameter with the --sweep before it, value by value (same count): "
        "--sweep model=a,b --with resolution=1K,2K is 2 requests.",
    )
    @argument("--dry-run", action="store_true", help="Show the plan and the grid's layout; send nothing, pay nothing.")
    @argument(
        "--stop-after",
        metavar="TIME",
        help="Stop submitting after TIME (30m, 1h30m, 90s); what was not sent costs nothing, a re-run sends it.",
    )
    @argument(
        "--max-requests",
        type=int,
        metavar="N",
        help="Allow a sweep of up to N requests (default 1,000; a bigger one is refused unless asked for).",
    )
    @argument("--yes", action="store_true", help="Run a sweep above the confirmation threshold without asking.")
    @argument("-o", "--output", metavar="NAME", help="Store the result (a Job or SweepResult) in this variable.")
    @argument(
        "--force", action="store_true", help="Let -o replace a variable that holds something other than a result."
    )
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
        with _errors(self, args.debug):
            try:
                return run_cell(self.context(), args)
            except KeyboardInterrupt:  # Ctrl-C anywhere in a waiting cell stops the wait, never the jobs
                if not args.wait:
                    raise
                # the same self-clearing note as a wait that was interrupted: it goes once the jobs end
                show_interrupt_note([job for job in self.session().jobs() if not job.done()])
                return None

    def parse_cell(self, line: str, cell: str) -> CellArgs:
        """Parse options and expand ``{var}`` in the prompt and ``--ref`` (no request is made)."""
        ns = self.gemimg_cell.parser.parse_args(_split(line))
        output = ns.output
        if output is not None:
            check_output_name(output)
            if not ns.force:
                magics = self.shell.magics_manager.magics["line"] if self.shell is not None else {}
                check_output_target(self.user_ns, output, list(magics))
        if not 1 <= ns.repeats <= MAX_REPEATS:
            raise UsageError(f"-n/--repeats {ns.repeats} is not allowed; use a whole number from 1 to {MAX_REPEATS}")
        if not cell.strip():
            raise UsageError("the cell is empty: write the prompt in the cell body, below the %%gemimg line")
        prompt = expand(self.user_ns, cell, what="prompt")
        references: list[object] = []
        for token in ns.ref or []:
            references.extend(ref_objects(self.user_ns, token))
        params = {
            name: getattr(ns, name)
            for name in (param.name for param in (*VALUE_PARAMS, *CONTROL_PARAMS))
            if getattr(ns, name) is not None
        }
        return CellArgs(
            prompt=prompt,
            params=params,
            references=references,
            repeats=ns.repeats,
            sweeps=pair_specs(self.user_ns, ns.axes or []),
            yes=ns.yes,
            dry_run=ns.dry_run,
            stop_after=_stop_after(ns.stop_after),
            max_requests=ns.max_requests,
            output=output,
            wait=self.wait if ns.wait is None else ns.wait,
            fresh=ns.fresh,
            debug=ns.debug,
            edit=None if ns.edit is None else image_target(self.user_ns, ns.edit, what="--edit"),
        )

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
            return self.subcommands["help"][0]([])
        name, rest = words[0].lower(), words[1:]
        entry = self.subcommands.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, self.subcommands, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(
                f"unknown subcommand {name!r}{hint}; use one of: {', '.join(self.subcommands)} "
                "(%%gemimg generates images)"
            )
        try:
            with _errors(self):
                return entry[0](rest)
        except _Stop:
            return None

    def subparser(self, name: str) -> _SubParser:
        return _SubParser(prog=f"%gemimg {name}", description=self.subcommands[name][1], allow_abbrev=False)

    # ---- edit chains, picks, reports (docs/editing.md) -------------------------------------

    def switch(self, settings: Settings, *, force: bool) -> Session:
        """Move to a session with ``settings`` (what ``%gemimg login`` and ``backend`` do)."""
        return switch(self.context(), settings, force=force)


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
