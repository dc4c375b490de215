"""What a ``%%gemimg`` cell asks for, read from its options and the user namespace, and running it.

:class:`CellArgs` is the parsed cell. The functions here read names from the
user namespace (``{var}`` in the prompt, ``--ref {var}``, ``--edit NAME``,
sweep specs) with one-line ``UsageError`` messages that say what to do, and
:func:`run_cell` starts the job or sweep through the session and shows its
live view. :class:`~gemimg_jupyter.magics.extension.GemimgMagics` calls them, handing
:func:`run_cell` a :class:`~gemimg_jupyter.magics.context.MagicContext`; nothing here holds
state of its own.
"""

from __future__ import annotations

import builtins
import keyword
import os
import re
import shlex
import string
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from gemimg_jupyter.api import GemimgError, Pairing, ReferenceImage, SweepResult, canonical_axis_name
from gemimg_jupyter.api import Job as JobClass
from gemimg_jupyter.display import JobView, LiveView, SweepView, show_interrupt_note
from gemimg_jupyter.display.renderers import magic_words

if TYPE_CHECKING:  # pragma: no cover
    from gemimg_jupyter.api import Job
    from gemimg_jupyter.magics.context import MagicContext

__all__ = [
    "CellArgs",
    "block",
    "check_output_name",
    "check_output_target",
    "expand",
    "expand_spec",
    "image_of",
    "image_target",
    "jobs_of",
    "lookup",
    "pair_specs",
    "ref_objects",
    "resolve_ref",
    "run_cell",
    "split_line",
]

_REF_VAR = re.compile(r"^\{([^{}]+)\}$")


_RANGE_TAIL = re.compile(r"^(\[\s*\d+\s*\]|\(\s*[+-]?[\d.]+\s*\))$")


def split_line(line: str) -> list[str]:
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
        _check_dash(word)
        prev = joined[-1] if joined else ""
        if (
            _RANGE_TAIL.match(word)
            and "=" in prev
            and (not prev.startswith("-") or prev.startswith(("--sweep=", "--with=")))
        ):
            joined[-1] = f"{joined[-1]} {word}"
        else:
            joined.append(word)
    return joined


#: An option typed with a dash an editor or a keyboard made of ``--`` or ``-`` (em, en, minus, figure, bar, small, wide).
_UNICODE_DASH = re.compile(r"^[\u2014\u2013\u2212\u2012\u2015\ufe63\uff0d]{1,2}([A-Za-z][\w-]*)(=.*)?$", re.S)


def _check_dash(word: str) -> None:
    """Refuse ``—size`` (an em dash) in one line that names the option meant: ``did you mean --size?``."""
    found = _UNICODE_DASH.match(word)
    if found is None:
        return
    name = found.group(1)
    meant = f"--{name}" if len(name) > 1 else f"-{name}"
    raise UsageError(
        f"{word.split('=', 1)[0]} starts with {word[0]!r} (U+{ord(word[0]):04X}), not a plain '-': did you mean {meant}?"
    )


def replaced_note(name: str, old: object, new: object) -> str | None:
    """One line when ``-o name`` replaces a result of another request (re-running the same cell says nothing)."""
    old = old.target() if isinstance(old, LiveView) else old
    if not isinstance(old, (JobClass, SweepResult)) or _keys(old) == _keys(new):
        return None
    what = f"sweep {old.id}" if isinstance(old, SweepResult) else f"job {old.id}"
    return f"gemimg: -o {name} replaces the previous result in {name} ({what}; it stays in the ledger: %gemimg history)"


def _keys(obj: object) -> tuple[str, ...]:
    if isinstance(obj, JobClass):
        return (obj.key,)
    if isinstance(obj, SweepResult):
        return tuple(job.key for job in obj.jobs)
    return ()


@dataclass
class CellArgs:
    """What a ``%%gemimg`` cell asked for, after parsing and expansion (nothing validated by the model yet)."""

    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    references: list[object] = field(default_factory=list)
    repeats: int = 1
    sweeps: list[str | Pairing] = field(default_factory=list)
    yes: bool = False
    dry_run: bool = False  # --dry-run: the plan and a grid of placeholders, nothing sent
    stop_after: float | None = None  # --stop-after 30m (in seconds): stop submitting then
    max_requests: int | None = None  # --max-requests 5000: allow a sweep above the default limit of 1,000
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


# names a result must not take: IPython's own, and the builtins every later cell relies on
_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "display", "__builtins__"})


def check_output_name(name: str) -> None:
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


def check_output_target(user_ns: Mapping[str, Any], name: str, magics: Sequence[str] = ()) -> None:
    """Refuse an ``-o`` name that holds a module or anything but a result (or names a line magic); ``--force`` skips this."""
    if name in magics and name not in user_ns:
        raise UsageError(
            f"-o/--output {name!r} would hide the %{name} magic from automagic; choose another name, or add --force"
        )
    if name not in user_ns or isinstance(user_ns[name], (JobClass, SweepResult, LiveView)):
        return
    old = user_ns[name]
    what = "the imported module" if isinstance(old, types.ModuleType) else f"a {type(old).__name__}"
    raise UsageError(
        f"-o/--output {name!r} would replace {what} {name!r}, not a result; choose another name, or add --force"
    )


def _sweep_index(user_ns: Mapping[str, Any], expr: str, what: str) -> object:
    """``fox[-1]``, ``fox[2]`` of a sweep, like Python; an index out of range says the valid range."""
    found = re.fullmatch(r"([A-Za-z_]\w*)\s*\[\s*([+-]?\d+)\s*\]", expr)
    if not found or found.group(1) not in user_ns:
        return None
    obj = user_ns[found.group(1)]
    obj = obj.target() if isinstance(obj, LiveView) else obj
    if not isinstance(obj, SweepResult):
        return None
    n, index = len(obj), int(found.group(2))
    if not -n <= index < n:
        valid = f"0 to {n - 1} (or -1 to -{n})" if n else "none: it has no images"
        raise UsageError(f"{what} {expr}: {found.group(1)} has {n} image(s); valid indexes are {valid}")
    return obj[index]


def expand(user_ns: dict[str, Any], text: str, *, what: str) -> str:
    try:
        return _Formatter().vformat(text, (), user_ns)
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(
            f"the {what}'s braces do not pair up ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    except (AttributeError, KeyError, IndexError, TypeError) as exc:
        raise UsageError(f"the {what}'s {{…}} could not be filled in: {type(exc).__name__}: {exc}") from None


def lookup(user_ns: dict[str, Any], expr: str) -> Any:
    """The object named by ``expr`` (``name``, ``name.attr`` or ``name[0]``) in the user namespace."""
    try:
        obj, _ = _Formatter().get_field(expr.strip(), (), user_ns)
    except UsageError:
        raise UsageError(
            f"--ref {{{expr}}}: there is no variable {expr.split('.')[0].split('[')[0]!r}; define it first"
        ) from None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise UsageError(f"--ref {{{expr}}} could not be read: {type(exc).__name__}: {exc}") from None
    return obj


def ref_objects(user_ns: dict[str, Any], token: str) -> list[object]:
    match = _REF_VAR.match(token.strip())
    if match:
        obj = lookup(user_ns, match.group(1))
        items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        return [image_of(item) for item in items]
    if "{" in token:
        return [expand(user_ns, token, what="--ref value")]
    return [token]


def resolve_ref(user_ns: dict[str, Any], token: str) -> ReferenceImage:
    """For sweep ``ref=`` axes: a path, URL or ``{var}`` holding one image."""
    from gemimg_jupyter.api import load_reference

    match = _REF_VAR.match(token.strip())
    return load_reference(image_of(lookup(user_ns, match.group(1))) if match else token)


def expand_spec(user_ns: dict[str, Any], spec: str) -> str:
    """Fill ``{var}`` in a sweep spec (lists become comma-separated values); ``ref=`` keeps them."""
    name = spec.split("=", 1)[0]
    try:
        if canonical_axis_name(name) == "ref":
            return spec
    except GemimgError:
        return spec  # the sweep parser reports unknown axis names itself

    def fill(match: re.Match[str]) -> str:
        value = lookup(user_ns, match.group(1))
        if isinstance(value, (list, tuple, range)):
            items = [str(v) for v in value]
            return ("|" if any("," in v for v in items) else ",").join(items)
        return str(value)

    return re.sub(r"\{([^{}]+)\}", fill, spec)


def pair_specs(user_ns: dict[str, Any], flagged: Sequence[tuple[str, str]]) -> list[str | Pairing]:
    """``--sweep`` and ``--with`` specs in the order written: each ``--with`` zips onto the ``--sweep`` before it."""
    out: list[str | Pairing] = []
    for flag, raw in flagged:
        spec = expand_spec(user_ns, raw)
        if flag != "with":
            out.append(spec)
            continue
        if not out:
            raise UsageError(
                f"--with {raw} pairs with the --sweep before it; put a --sweep first, e.g. --sweep model=… --with {raw}"
            )
        prev = out[-1]
        out[-1] = Pairing((*(prev.specs if isinstance(prev, Pairing) else (prev,)), spec))
    return out


def image_target(user_ns: dict[str, Any], token: str, *, what: str, sweep_ok: bool = False) -> object:
    """What NAME means: a variable holding a result (``fox[2]`` indexes a sweep), else a job id."""
    expr = token.strip()
    match = _REF_VAR.match(expr)
    expr = match.group(1).strip() if match else expr
    head = re.split(r"[.\[]", expr, maxsplit=1)[0]
    if not (head.isidentifier() and head in user_ns):
        if match or expr != head or not expr:
            raise UsageError(f"{what} {token}: there is no variable {head!r}; define it first")
        return expr  # a job id (short, task or client_business_id): the session looks it up in the ledger
    indexed = _sweep_index(user_ns, expr, what)
    if indexed is not None:
        return indexed
    try:
        obj, _ = _Formatter().get_field(expr, (), user_ns)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise UsageError(f"{what} {token} could not be read: {type(exc).__name__}: {exc}") from None
    if isinstance(obj, LiveView):
        obj = obj.target()
    if isinstance(obj, SweepResult) and not sweep_ok:
        raise UsageError(f"{what} {token} is a sweep; name one of its images, e.g. {expr}[0]")
    if isinstance(obj, (JobClass, SweepResult, str)):
        return obj
    raise UsageError(f"{what} {token} holds a {type(obj).__name__}, not a result; name a result or a job id")


def in_terminal() -> bool:
    """Whether the shell is terminal IPython (``ipython``, ``ipython -c``, a piped session): no live outputs there."""
    from IPython import get_ipython

    return any(cls.__name__ == "TerminalInteractiveShell" for cls in type(get_ipython()).__mro__)


def run_cell(ctx: MagicContext, args: CellArgs) -> LiveView:
    """Start the cell's job or sweep, show its live view and follow it (``--wait``: until it is done)."""
    sess = ctx.session()
    sess.say = lambda line: ctx.say(f"gemimg: {line}")  # model notices (unknown id, unlisted, shut down) as own lines
    defaults = ctx.defaults
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
            resolve_ref=lambda token: resolve_ref(ctx.user_ns, token),
            edit=args.edit,
            **({"max_requests": args.max_requests} if args.max_requests else {}),
            **fixed,
        )
        quote = sess.quote(plan, fresh=args.fresh, confirm_above_usd=ctx.confirm_above_usd)
        ctx.say(f"gemimg: {magic_words(quote.summary)}")
        if args.dry_run:
            ctx.say("gemimg: dry run: nothing sent, nothing paid; drop --dry-run to run it")
        result = sess.sweep(
            args.prompt,
            plan=plan,
            quote=quote,
            fresh=args.fresh,
            wait=False,
            yes=args.yes,
            confirm_above_usd=ctx.confirm_above_usd,
            cell_size=ctx.cell_size,
            edit=args.edit,
            dry_run=args.dry_run,
            stop_after=args.stop_after,
        )
        target, view = result, SweepView(result, min_interval=ctx.refresh_interval)
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
        target, view = job, JobView(job, preview_size=ctx.preview_size)
    if args.output:
        note = replaced_note(args.output, ctx.user_ns.get(args.output), target)
        if note:
            ctx.say(note)
        ctx.user_ns[args.output] = target
    if not in_terminal():  # a terminal shows the cell's value (Out[n]) once; a live line there would be a second
        view.show()
    view.attach()
    ctx.views[:] = [v for v in ctx.views if not v.finished]
    ctx.views.append(view)
    if args.wait:
        block([view], timeout=None)
    return view


def block(views: Sequence[LiveView], timeout: float | None) -> bool:
    """Wait for views to reach their final state (Ctrl-C stops waiting, not the jobs)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for view in views:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            target = view.target()
            if not target.wait(left):
                return False
            if view.wait_final(10.0 if left is None else max(0.5, left)):
                view.settle()
    except KeyboardInterrupt:
        show_interrupt_note([job for view in views for job in jobs_of(view)])
        return False
    return True


def image_of(obj: object) -> object:
    """A finished job (or its view) used as a reference stands for its image file."""
    if isinstance(obj, LiveView):
        obj = obj.target()
    if isinstance(obj, JobClass):
        if not obj.state.has_image or obj.path is None:
            raise UsageError(f"--ref: job {obj.id} has no image yet ({obj.state.value}); run %gemimg wait first")
        return obj.path
    return obj


def jobs_of(view: LiveView) -> list[Job]:
    target = view.target()
    return list(target.jobs) if isinstance(target, SweepResult) else [target]
