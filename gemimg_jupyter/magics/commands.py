"""The ``%gemimg`` subcommands: ``jobs``, ``cancel``, ``wait``, ``resume``, ``history`` … ``config``.

Each is a plain function of a :class:`~gemimg_jupyter.magics.context.MagicContext`
(which :class:`~gemimg_jupyter.magics.extension.GemimgMagics` builds for the call)
and the words after the subcommand's name; :data:`SUBCOMMANDS` maps the names
to them and to their one-line descriptions (the router in
``GemimgMagics.gemimg_line`` and ``%gemimg help`` read it). They use the
context and the session's public API only.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from gemimg_jupyter.api import (
    GemimgError,
    Settings,
    compare_targets,
    current_session,
    gateway_settings,
    get_session,
    merged_models,
    model_status,
    plural,
    redact,
    simulator_settings,
    today,
)
from gemimg_jupyter.display import (
    JobView,
    RichText,
    SweepView,
    config_table,
    cost_report,
    display_path,
    history_strip,
    info_report,
    jobs_table,
    lineage_output,
    models_table,
    show_interrupt_note,
)
from gemimg_jupyter.display.renderers import magic_words
from gemimg_jupyter.magics.cells import block, image_target, jobs_of
from gemimg_jupyter.magics.context import MagicContext, running_jobs

if TYPE_CHECKING:  # pragma: no cover
    from gemimg_jupyter.api import Job, Session

__all__ = ["SUBCOMMANDS", "switch"]


def cmd_help(ctx: MagicContext, argv: list[str]) -> None:
    ctx.subparser("help").parse_args(argv)
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["%gemimg SUBCOMMAND — manage images and jobs (%%gemimg? for generating them):"]
    lines += [f"  {n.ljust(width)}  {about}" for n, (_, about) in SUBCOMMANDS.items()]
    lines.append("Defaults: %config GemimgMagics (list) · %config GemimgMagics.size = '16:9' (change).")
    ctx.say("\n".join(lines))


def cmd_jobs(ctx: MagicContext, argv: list[str]) -> RichText:
    ctx.subparser("jobs").parse_args(argv)
    return jobs_table(ctx.session().jobs())


def targeted_jobs(sess: Session, target: str | None) -> list[Job] | None:
    """The jobs a ``cancel``/``wait`` target names: all of them, one job, or a sweep's; ``None`` if unknown."""
    if target is None or target == "all":
        return sess.jobs()
    job = sess.find_job(target)
    if job is not None:
        return [job]
    sweep = sess.find_sweep(target)
    return None if sweep is None else list(sweep.jobs)


def cmd_cancel(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("cancel")
    p.add_argument(
        "target", nargs="?", default="all", help="a job id, a sweep id (an earlier session's too), or all (default)"
    )
    p.add_argument("--drop", action="store_true", help="also stop collecting jobs that were already submitted")
    ns = p.parse_args(argv)
    sess = ctx.session()
    if ns.target != "all" and targeted_jobs(sess, ns.target) is None:  # an earlier session's job or sweep
        ctx.say(f"gemimg: {magic_words(sess.cancel_earlier(ns.target, drop=ns.drop).line(drop=ns.drop))}")
        return
    n = sess.cancel(ns.target, drop=ns.drop)  # an unknown target is refused here, in one line
    paid = [j for j in targeted_jobs(sess, ns.target) or [] if not j.done() and j.task_id is not None]
    msg = f"gemimg: cancelled {plural(n, 'job')}"
    if paid and not ns.drop:
        msg += (
            f"; {plural(len(paid), 'job')} already submitted (and paid for) will still be downloaded"
            " — add --drop to stop collecting them"
        )
    ctx.say(msg)


def cmd_wait(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("wait")
    p.add_argument("target", nargs="?", help="a job or sweep id (default: everything)")
    p.add_argument("--timeout", type=float, metavar="S", help="give up waiting after S seconds")
    ns = p.parse_args(argv)
    sess = ctx.session()
    start = time.monotonic()
    try:
        claiming = [s.id for s in sess.claiming(ns.target or "all", timeout=ns.timeout)]
    except KeyboardInterrupt:
        show_interrupt_note(sess.jobs())
        return
    if claiming:  # a sweep cell returns before its claim; its jobs are in once that ends
        ctx.say(
            f"gemimg: {plural(len(claiming), 'sweep')} ({', '.join(claiming)}) still being claimed after "
            f"{time.monotonic() - start:.1f} s; it keeps going in the background"
        )
        return
    jobs = targeted_jobs(sess, ns.target)
    if jobs is None:
        known = ", ".join(j.id for j in sess.jobs()[-8:]) or "none yet"
        raise UsageError(f"no job or sweep {ns.target!r} in this session; jobs: {known}")
    if not jobs:
        ctx.say("gemimg: nothing to wait for")
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
    views = [v for v in ctx.views if any(j in jobs for j in jobs_of(v))]
    block(views, timeout=left)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    elapsed = time.monotonic() - start
    if ok:
        ctx.say(f"gemimg: {plural(len(jobs), 'job')} finished ({summary}) after {elapsed:.1f} s")
    else:
        running = sum(1 for j in jobs if not j.done())
        ctx.say(
            f"gemimg: still {plural(running, 'job')} running after {elapsed:.1f} s ({summary}); "
            "they keep going in the background"
        )


def cmd_resume(ctx: MagicContext, argv: list[str]) -> None:
    ctx.subparser("resume").parse_args(argv)
    jobs = ctx.session().resume()
    if not jobs:
        ctx.say("gemimg: nothing to resume")
        return
    ctx.say(f"gemimg: resuming {plural(len(jobs), 'unfinished job')} (%gemimg wait waits for them)")
    for job in jobs[:12]:
        view = JobView(job, preview_size=ctx.preview_size)
        view.show()
        view.attach()
        ctx.views.append(view)
    if len(jobs) > 12:
        ctx.say(f"gemimg: … and {len(jobs) - 12} more (%gemimg jobs lists them)")


def cmd_history(ctx: MagicContext, argv: list[str]) -> Any:
    p = ctx.subparser("history")
    p.add_argument("n", nargs="?", type=int, default=12, help="how many images (default 12)")
    p.add_argument("--picked", action="store_true", help="only picked images, newest pick first")
    ns = p.parse_args(argv)
    if not 1 <= ns.n <= 200:
        raise UsageError(f"%gemimg history: N {ns.n} is not allowed; use 1 to 200")
    sess = ctx.session()
    picked = sess.picked_cbids()
    if ns.picked:
        rows = [pk.row for pk in sess.picks() if pk.row is not None and pk.row.path][: ns.n]
        if not rows:
            ctx.say("gemimg: no picked images yet (%gemimg pick NAME picks one)")
            return None
        title = f"{len(rows)} picked image(s), newest pick first"
        theme = sess.settings.resolved_grid_theme
        return history_strip(rows, picked=picked, title=title, suspects=sess.suspects(rows), theme=theme)
    rows = sess.history(ns.n)
    return history_strip(rows, picked=picked, suspects=sess.suspects(rows), theme=sess.settings.resolved_grid_theme)


def cmd_lineage(ctx: MagicContext, argv: list[str]) -> Any:
    p = ctx.subparser("lineage")
    p.add_argument("name", help="a result variable, a sweep cell fox[2], or a job id")
    ns = p.parse_args(argv)
    chain = ctx.session().lineage(image_target(ctx.user_ns, ns.name, what="%gemimg lineage"))
    return lineage_output(chain)


def cmd_info(ctx: MagicContext, argv: list[str]) -> RichText:
    p = ctx.subparser("info")
    p.add_argument("name", help="a result variable, a sweep cell fox[2], a job id, or an image file")
    ns = p.parse_args(argv)
    path = Path(ns.name).expanduser()
    target = path if path.is_file() else image_target(ctx.user_ns, ns.name, what="%gemimg info")
    return info_report(ctx.session().info(target))


def cmd_compare(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("compare")
    p.add_argument("names", nargs="*", metavar="NAME", help="a sweep variable, results (fox, fox[2]) or job ids")
    p.add_argument("--picked", action="store_true", help="the picked images (after any NAMEs)")
    ns = p.parse_args(argv)
    if not ns.names and not ns.picked:
        raise UsageError("%gemimg compare: name a sweep, some results or job ids, or give --picked")
    targets = [image_target(ctx.user_ns, name, what="%gemimg compare", sweep_ok=True) for name in ns.names]
    try:
        comparison = compare_targets(ctx.session(), targets, picked=ns.picked)
    except ValueError as exc:
        raise UsageError(f"%gemimg compare: {exc}") from None
    from gemimg_jupyter.display.compare import show_comparison  # anywidget loads with the first view

    show_comparison(comparison)


def cmd_pick(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("pick")
    p.add_argument("name", help="a result variable, a sweep cell fox[2], or a job id")
    p.add_argument("--note", metavar="TEXT", help="why (kept with the pick)")
    ns = p.parse_args(argv)
    pick = ctx.session().pick(image_target(ctx.user_ns, ns.name, what="%gemimg pick"), note=ns.note)
    redraw_sweeps(ctx)
    ctx.say(f"gemimg: picked {pick.cbid[-6:]} ({display_path(pick.path)})")


def cmd_unpick(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("unpick")
    p.add_argument("name", help="a result variable, a sweep cell fox[2], or a job id")
    ns = p.parse_args(argv)
    gone = ctx.session().unpick(image_target(ctx.user_ns, ns.name, what="%gemimg unpick"))
    redraw_sweeps(ctx)
    ctx.say(f"gemimg: {'unpicked' if gone else 'was not picked:'} {ns.name}")


def redraw_sweeps(ctx: MagicContext) -> None:
    """Live sweep grids show the new star at once."""
    for view in ctx.views:
        if isinstance(view, SweepView):
            view.refresh()


def cmd_report(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("report")
    p.add_argument("name", help="a sweep variable, or an image (its edit chain)")
    p.add_argument("path", nargs="?", help="where to write it (default: <output>/reports/)")
    ns = p.parse_args(argv)
    target = image_target(ctx.user_ns, ns.name, what="%gemimg report", sweep_ok=True)
    path = ctx.session().save_report(target, ns.path)
    ctx.say(f"gemimg: report written to {display_path(path)} ({path.stat().st_size / 1024:.0f} KB, opens offline)")


def cmd_cost(ctx: MagicContext, argv: list[str]) -> RichText:
    ctx.subparser("cost").parse_args(argv)
    return cost_report(ctx.session().cost())


def cmd_models(ctx: MagicContext, argv: list[str]) -> RichText:
    p = ctx.subparser("models")
    p.add_argument("--refresh", action="store_true", help="read the gateway's catalogue (and prices) now")
    if p.parse_args(argv).refresh:
        found = ctx.session().refresh_catalogue()
        ctx.say(f"gemimg: the gateway lists {plural(len(found.listed), 'image model')}" if found else
                "gemimg: the gateway's catalogue could not be read; the built-in table stands")  # fmt: skip
    date = today()
    return models_table(merged_models(), default=ctx.defaults["model"], status=lambda spec: model_status(spec, date))


def cmd_probe(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("probe")
    p.add_argument("--spend", type=float, default=0.0, metavar="DOLLARS", help="allow paid checks up to this much")
    p.add_argument("--yes", action="store_true", help="do not ask before paying")
    ns = p.parse_args(argv)
    if not ns.spend >= 0:
        raise UsageError(f"%gemimg probe: --spend {ns.spend} is not allowed; use 0 or more dollars")
    from gemimg_jupyter.api import run_probe

    def confirm(question: str) -> bool:
        return bool(ns.yes) or input(question).strip().lower() in ("y", "yes")

    try:
        sess = ctx.session()
    except GemimgError:  # no session can start (say, no key): the probe says what the settings allow
        run_probe(ctx.wanted_settings(), spend=ns.spend, confirm=confirm, say=ctx.say)
    else:  # the backend this session talks to, the simulator it uses included
        sess.probe(spend=ns.spend, confirm=confirm, say=ctx.say)


def current_settings(ctx: MagicContext) -> Settings:
    """The running session's settings, or, when none can start (say, no key), the wanted ones."""
    try:
        return ctx.session().settings
    except GemimgError:
        return ctx.wanted_settings()


def cmd_login(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("login")
    p.add_argument("--force", action="store_true", help="switch even while jobs are running")
    ns = p.parse_args(argv)
    key = getpass.getpass("ToAPIs API key (hidden; kept in memory for this kernel only): ").strip()
    if not key:
        raise UsageError("no key entered; nothing changed")
    switch(ctx, gateway_settings(current_settings(ctx), key), force=ns.force)


def cmd_backend(ctx: MagicContext, argv: list[str]) -> None:
    p = ctx.subparser("backend")
    p.add_argument("name", nargs="?", choices=("sim", "toapis"), help="switch to this backend")
    p.add_argument("--force", action="store_true", help="switch even while jobs are running")
    ns = p.parse_args(argv)
    current = current_settings(ctx)
    if ns.name is None or ns.name == current.resolved_backend:
        ctx.say(magic_words(ctx.session().banner()))
        return
    wanted = simulator_settings(current) if ns.name == "sim" else gateway_settings(current)
    switch(ctx, wanted, force=ns.force)


def switch(ctx: MagicContext, settings: Settings, *, force: bool) -> Session:
    """Move to a session with ``settings`` (login, backend): refused while jobs run, unless ``force``."""
    running = running_jobs()
    if running and not force:
        raise UsageError(
            f"{plural(len(running), 'job')} still running; %gemimg wait (or %gemimg cancel all) first, "
            "or add --force (they stay in the ledger for %gemimg resume)"
        )
    for view in ctx.views:
        view.close()
    ctx.views.clear()
    current = current_session()
    sess = current.with_settings(settings) if current is not None else get_session(settings)
    ctx.say(magic_words(sess.banner()))
    return sess


def cmd_panel(ctx: MagicContext, argv: list[str]) -> Any:
    ctx.subparser("panel").parse_args(argv)
    from gemimg_jupyter.panel import Panel  # ipywidgets is a dependency; imported here so %load_ext stays light

    return Panel(
        session=ctx.session,  # the panel asks each time, so it follows login, backend and %config
        defaults=ctx.defaults,
        confirm_above_usd=ctx.confirm_above_usd,  # the extension's settings, as %%gemimg uses them
        cell_size=ctx.cell_size,
    )


def cmd_config(ctx: MagicContext, argv: list[str]) -> RichText:
    ctx.subparser("config").parse_args(argv)
    sess = ctx.session()
    rows: list[tuple[str, object, str]] = list(ctx.config)
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


SUBCOMMANDS: dict[str, tuple[Callable[[MagicContext, list[str]], Any], str]] = {
    "jobs": (cmd_jobs, "this session's jobs and their states"),
    "cancel": (cmd_cancel, "cancel [ID|all] [--drop]: stop jobs or a sweep"),
    "wait": (cmd_wait, "wait [ID] [--timeout S]: block until jobs are done (use it before Run All ends)"),
    "resume": (cmd_resume, "finish jobs left unfinished by a restart"),
    "history": (cmd_history, "history [N] [--picked]: the newest N images (or the picks) as a strip"),
    "lineage": (cmd_lineage, "lineage NAME|ID: the chain of edits from the root to this image"),
    "info": (cmd_info, "info NAME|ID|FILE: an image's provenance, format, hash and content credentials"),
    "compare": (
        cmd_compare,
        "compare NAME… [--picked]: the interactive comparison view (grid, full size, swipe, fade, difference)",
    ),
    "pick": (cmd_pick, "pick NAME|ID [--note TEXT]: keep an image as a favourite (lasts)"),
    "unpick": (cmd_unpick, "unpick NAME|ID: remove a pick"),
    "report": (
        cmd_report,
        "report NAME [PATH]: a self-contained HTML report of a sweep or an edit chain",
    ),
    "cost": (cmd_cost, "spent, saved by the cache, budget"),
    "models": (cmd_models, "the models with their sizes, resolutions, limits and price"),
    "probe": (cmd_probe, "probe [--spend N]: check what the gateway really does for this key"),
    "login": (cmd_login, "ask for the ToAPIs key (hidden, kept in memory) and use the real gateway"),
    "backend": (cmd_backend, "backend [sim|toapis]: show or switch the backend"),
    "panel": (cmd_panel, "the ipywidgets control panel (same engine, same store)"),
    "config": (cmd_config, "the effective defaults"),
    "help": (cmd_help, "this help"),
}
