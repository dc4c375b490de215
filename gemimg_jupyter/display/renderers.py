"""Static renderers: one-line errors, rich tables and reports, the history strip, image HTML.

:func:`jobs_table`, :func:`cost_report`, :func:`models_table`,
:func:`config_table` and :func:`history_strip` return small objects with a
``_repr_mimebundle_`` (HTML + text, or PNG + text) for the ``%gemimg``
subcommands to return. Nothing here keeps state or updates an output; the
live views (:mod:`gemimg_jupyter.display.live`) build on these pieces. Prompt text
that goes into HTML always passes through :func:`html.escape`.

This module never imports ipywidgets.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from gemimg_jupyter.api import (
    CONTROL_PARAMS,
    SUSPECT_MARK,
    GemimgError,
    ModelSpec,
    contact_sheet,
    load_thumb,
    plural,
    png_bytes,
    price_text,
    redact,
    shown_text,
)
from gemimg_jupyter.api import format_usd as _usd

if TYPE_CHECKING:  # pragma: no cover
    from gemimg_jupyter.api import Job, LedgerRow, Lineage

__all__ = [
    "MAGIC_WORDS",
    "MONO",
    "NO_MATH",
    "PROMPT_CHARS",
    "STALE_NOTE",
    "STATUS_PROMPT_CHARS",
    "THEME_CSS",
    "TONE_COLORS",
    "Bundle",
    "ImageStrip",
    "LineageOutput",
    "RichText",
    "config_table",
    "cost_report",
    "display_path",
    "error_line",
    "format_seconds",
    "history_strip",
    "image_bundle",
    "image_html",
    "info_report",
    "job_error_line",
    "jobs_table",
    "lineage_output",
    "live_updates_supported",
    "magic_words",
    "models_table",
    "shorten",
]


#: ``(data, metadata)`` as ``display(..., raw=True)`` takes them.
Bundle = tuple[dict[str, Any], dict[str, Any]]

PROMPT_CHARS = 72
#: The status line quotes at most this much of the prompt (all of it is in the tooltip).
STATUS_PROMPT_CHARS = 48
#: Text colours with at least 4.5:1 contrast on JupyterLab's light (white) and dark (#111, #212121)
#: cell backgrounds; the dark set applies when the front end says its theme is dark
#: (``data-jp-theme-light="false"``, set by JupyterLab and Notebook 7). A front end that drops the
#: ``<style>`` (an untrusted output) shows the theme's own text colour instead: still legible.
TONE_COLORS = {
    "run": ("#1565c0", "#64b5f6"),
    "ok": ("#2e7d32", "#66bb6a"),
    "warn": ("#9a6700", "#ffb74d"),
    "error": ("#c62828", "#ef5350"),
    "muted": ("#616161", "#bdbdbd"),
}
THEME_CSS = (
    "<style>"
    + "".join(f".gemimg-tone-{k}{{color:{light}}}" for k, (light, _dark) in TONE_COLORS.items())
    + "".join(
        f"[data-jp-theme-light=false] .gemimg-tone-{k}{{color:{dark}}}" for k, (_light, dark) in TONE_COLORS.items()
    )
    + ".gemimg-prompt-cut{display:inline-block;max-width:36ch;overflow:hidden;text-overflow:ellipsis;"
    "white-space:nowrap;vertical-align:bottom}"
    "</style>"
)
#: What a live output's saved state says, in case the page was reloaded while it ran: the front end
#: has then forgotten the display id, and this output will not change any more.
STALE_NOTE = "if this line is stale, re-run the cell: finished images come from the cache for $0"
#: Prices are written with "$": two of them in one HTML output would be typeset as LaTeX by JupyterLab.
NO_MATH = "mathjax_ignore tex2jax_ignore"
MONO = "font-family: var(--jp-code-font-family, monospace); font-size: 12px;"


# ---------------------------------------------------------------- small helpers


def shorten(text: str, limit: int = PROMPT_CHARS) -> str:
    """The first line of ``text``, ellipsized to ``limit`` characters."""
    one = shown_text(" ".join(text.split()))
    return one if len(one) <= limit else one[: limit - 1] + "…"


def format_seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes} min {seconds:02d} s"


def display_path(path: str | os.PathLike[str] | None) -> str | None:
    """``path`` relative to the working directory when it lies below it.

    Notebooks run with the notebook's folder as working directory, so saved
    notebooks then carry portable ``gemimg_outputs/images/…`` paths.
    """
    if path is None:
        return None
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def live_updates_supported() -> bool:
    """True when the running shell can update an output in place.

    A terminal IPython's plain display publisher would *print* every update
    (from a background thread); there the view shows once and stays still.
    """
    try:
        from IPython import get_ipython
        from IPython.core.displaypub import DisplayPublisher
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    if shell is None:
        return False
    return type(shell.display_pub) is not DisplayPublisher


# ---------------------------------------------------------------- errors


#: The core speaks Python; a magic's output speaks magic. Each Python phrase the
#: core's messages and hints use (left), as a notebook user of the magics writes it
#: (right). Core text is worded so that both readings are good English.
MAGIC_WORDS: dict[str, str] = {
    "Session.resume()": "%gemimg resume",
    "Session.jobs()": "%gemimg jobs",
    "Settings(api_key=...)": "%gemimg login",
    'Settings(backend="toapis")': "%gemimg backend toapis",
    "Settings(output_dir=...)": "%config GemimgMagics.output_dir",
    "Settings(model=...)": "%config GemimgMagics.model",
    "python -m gemimg_jupyter.probe": "%gemimg probe",
    "fresh=True": "--fresh",
    "pass drop=True": "add --drop",
}


def magic_words(text: str) -> str:
    """``text`` (core words) in the magics' words: every phrase of :data:`MAGIC_WORDS` replaced."""
    for python, magic in MAGIC_WORDS.items():
        text = text.replace(python, magic)
    return text


def error_line(err: BaseException) -> str:
    """One line saying what went wrong and what to do (the error's hint), in the magics' words, with no secret in it."""
    text = magic_words(" ".join(str(err).split()))
    if not isinstance(err, GemimgError):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return redact(text or type(err).__name__)


def job_error_line(job: Job) -> str:
    """The one-line error of a job that ended without an image."""
    if job.exception is not None:
        return error_line(job.exception)
    return redact(magic_words(" ".join((job.error or f"ended {job.state.value}").split())))


def image_html(png: bytes, alt: str, note: str = "", *, tone: str = "muted") -> str:
    """The PNG as an ``<img>`` with alternative text (escaped): a notebook output's one copy of the image.

    An output stores each image once (:func:`image_bundle`): JupyterLab's and Notebook 7's
    ``image/png`` renderer sets no ``alt``, so the image travels as this ``<img>`` in ``text/html``
    (which Lab, Notebook 7, VS Code and nbconvert prefer), not also as ``image/png``. ``note``
    (escaped) goes under the image in small text of the theme's ``tone``.
    """
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    below = (
        f'<div class="gemimg-tone-{tone} {NO_MATH}" style="{MONO} font-size:11px">{html.escape(note)}</div>'
        if note
        else ""
    )
    return (
        f'<img class="gemimg-image" src="{src}" alt="{html.escape(alt)}" '
        f'style="max-width:100%;height:auto">{THEME_CSS if note else ""}{below}'
    )


def image_bundle(
    png: bytes, alt: str, text: str, meta: dict[str, Any], note: str = "", *, tone: str = "muted"
) -> Bundle:
    """An output holding one image once: ``text/html`` (the ``<img>`` with its alt text) and ``text/plain``.

    ``meta`` (the provenance, e.g. ``{"gemimg": {...}}``) goes under ``metadata["text/html"]``, the
    mimetype that carries the image.
    """
    return {"text/html": image_html(png, alt, note, tone=tone), "text/plain": text}, {"text/html": meta}


# ---------------------------------------------------------------- snapshots


class RichText:
    """Text with an HTML twin, for tables and reports."""

    def __init__(self, text: str, markup: str | None = None) -> None:
        self.text = text
        self.html = markup

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": self.text}
        if self.html is not None:
            data["text/html"] = self.html
        return data


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = "", wrap: Sequence[int] = ()
) -> RichText:
    """A text table and its HTML twin; the columns in ``wrap`` wrap anywhere in HTML (the others never wrap)."""
    cells = [[("—" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = min(max(widths[i], len(value)), 60)
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(shorten(v, widths[i]).ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    head = "".join(f'<th style="text-align:left">{html.escape(h)}</th>' for h in headers)
    nowrap, wraps = "text-align:left;white-space:nowrap", "text-align:left;overflow-wrap:anywhere;min-width:12em"
    body = "".join(
        "<tr>"
        + "".join(f'<td style="{wraps if i in wrap else nowrap}">{html.escape(v)}</td>' for i, v in enumerate(row))
        + "</tr>"
        for row in cells
    )
    caption = f"<caption style='text-align:left'>{html.escape(title)}</caption>" if title else ""
    style = f"{MONO} table-layout: auto; max-width: 100%;" if wrap else MONO
    markup = f'<table class="gemimg-table {NO_MATH}" style="{style}">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return RichText("\n".join(lines), markup)


def _pairs(title: str, rows: Sequence[tuple[str, str]]) -> RichText:
    width = max(len(k) for k, _ in rows)
    text = "\n".join([title, *(f"  {k.ljust(width)}  {v}" for k, v in rows)])
    body = "".join(
        f'<tr><th style="text-align:left">{html.escape(k)}</th><td style="text-align:left">{html.escape(v)}</td></tr>'
        for k, v in rows
    )
    caption = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>"
    return RichText(
        text, f'<table class="gemimg-table {NO_MATH}" style="{MONO}">{caption}<tbody>{body}</tbody></table>'
    )


def jobs_table(jobs: Iterable[Job]) -> RichText:
    """This session's jobs and their states."""
    rows = []
    for job in jobs:
        d = job.describe()
        sampling = "" if d["temperature"] is None else f"{d['temperature']:g}/{d['top_p']:g}"
        last = job_error_line(job) if job.state.is_terminal and not job.state.has_image else display_path(job.path)
        rows.append(
            [
                d["id"],
                d["state"],
                f"{d['progress']}%",
                f"{d['size']} {d['resolution']}",
                sampling,
                d["repeat"],
                job.sweep_id or "",
                _usd(d["cost_usd"]),
                format_seconds(job.elapsed),
                shorten(d["prompt"], 40),
                last or "",
            ]
        )
    if not rows:
        return RichText("gemimg: no jobs in this session yet", "<i>gemimg: no jobs in this session yet</i>")
    headers = [
        "id",
        "state",
        "progress",
        "size",
        "temp/top_p",
        "repeat",
        "sweep",
        "cost",
        "elapsed",
        "prompt",
        "result",
    ]
    return _table(headers, rows, title=f"{plural(len(rows), 'job')} in this session")


def cost_report(cost: Mapping[str, Any]) -> RichText:
    """Spent, saved by the cache and the budget (from ``Session.cost()``)."""
    budget = cost.get("budget_usd")
    spent = float(cost.get("spent_usd") or 0.0)
    left_usd = cost.get("left_usd", None if budget is None else max(0.0, budget - spent))
    left = "" if left_usd is None else f" ({_usd(left_usd)} left)"
    simulated = cost.get("backend") == "sim"
    spent_text = f"{_usd(spent)} over {cost.get('requests', 0)} request(s)"
    rows = [
        ("spent this session", f"simulated {spent_text}, not charged" if simulated else spent_text),
        ("saved by the cache", f"{_usd(cost.get('saved_usd') or 0.0)} ({cost.get('cache_hits', 0)} hit(s))"),
        ("budget", ("none (set %config GemimgMagics.max_cost_usd)" if budget is None else _usd(budget)) + left),
        (
            "all time (ledger)",
            f"{_usd(cost.get('ledger_spent_usd') or 0.0)} for {cost.get('ledger_images', 0)} image(s)",
        ),
        (
            "paid but suspect",
            f"{_usd(float(cost.get('suspect_usd') or 0.0))} for {cost.get('suspect_images', 0)} image(s)"
            + (
                f" ({', '.join(cost.get('suspect_reasons') or [])}); usable: "
                f"{max(0, int(cost.get('ledger_images') or 0) - int(cost.get('suspect_images') or 0))}"
                if cost.get("suspect_images")
                else ""
            ),
        ),
        (
            "backend",
            str(cost.get("backend", "?")) + (" (simulated, nothing is charged)" if simulated else ""),
        ),
    ]
    return _pairs("gemimg cost", rows)


def info_report(info: Mapping[str, Any]) -> RichText:
    """One image's provenance and file facts (from ``Session.info`` / ``result.info()``): what it is, where from."""
    params: Mapping[str, Any] = info.get("params") or {}
    facts: Mapping[str, Any] = info.get("file") or {}
    where = facts.get("content_credentials")
    pick = info.get("pick")
    rows = [
        ("file", str(info.get("path", "?"))),
        ("provenance", "sidecar (.json beside the image)" if info.get("stored_as") == "sidecar" else
         "inside the PNG (written by an earlier version)"),
        ("prompt", str(params.get("prompt", ""))),
        ("model", str(params.get("model", "?"))),
        ("size", f"{params.get('size', '?')} {params.get('resolution') or ''}".strip()),
        ("task", str(info.get("task_id") or "—")),
        ("business id", str(info.get("client_business_id") or "—")),
        ("cost", _usd(float(info.get("cost_usd") or 0.0))),
        ("format", f"{facts.get('format') or '?'}, {facts.get('bytes') or 0:,} bytes"),
        ("sha256", str(facts.get("sha256") or "?")),
        ("content credentials", f"C2PA manifest {info.get('credentials') or f'present (not validated): {where}'}"
         if where else "absent"),
        ("suspect", str(facts.get("suspect") or "no")),
    ]  # fmt: skip
    if info.get("parent"):
        rows.append(("edit of", str(info["parent"].get("cbid", "?"))[-6:]))
    if info.get("size_note"):
        rows.append(("size", str(info["size_note"])))
    if pick:
        rows.append(("picked", str(pick.get("note") or "yes")))
    if info.get("generator"):
        rows.append(("written by", str(info["generator"])))
    return _pairs("gemimg info", rows)


def models_table(
    models: Mapping[str, ModelSpec], *, default: str | None = None, status: Callable[[ModelSpec], str] | None = None
) -> RichText:
    """The model table: tier, sizes, resolutions, limits, controls, price and status (listed, past shutdown …)."""
    rows = []
    for spec in models.values():
        name = spec.id + (" (default)" if spec.id == default else "")
        if spec.aliases:
            name += f" [alias {', '.join(spec.aliases)}]"
        state = status(spec) if status is not None else ""
        if spec.shutdown and state != "listed":
            state += f" (upstream shutdown {spec.shutdown}" + (f", use {spec.successor})" if spec.successor else ")")
        controls = [c.label for c in CONTROL_PARAMS if c.name in spec.controls]
        rows.append(
            [
                name,
                spec.tier,
                ", ".join(spec.sizes),
                ", ".join(spec.resolutions),
                f"{spec.max_refs} × ≤{spec.max_ref_bytes / 1e6:g} MB",
                ", ".join((["temperature", "top_p"] if spec.sampling else []) + controls) or "—",
                price_text(spec),
                state.strip(),
                spec.note,
            ]
        )
    headers = ["model", "tier", "sizes", "resolutions", "references", "controls", "price", "status", "note"]
    table = _table(headers, rows, title="gemimg models")
    # sizes lists are long: do not ellipsize them in the text version
    lines = [
        f"{r[0]} · {r[1]}" + (f" · {r[7]}" if r[7] else "") + f"\n  sizes: {r[2]}\n  resolutions: {r[3]} · "
        f"references: {r[4]} · controls: {r[5]} · {r[6]}" + (f"\n  note: {r[8]}" if r[8] else "")
        for r in rows
    ]
    return RichText("gemimg models\n" + "\n".join(lines), table.html)


def config_table(rows: Sequence[tuple[str, object, str]]) -> RichText:
    """Effective defaults: ``(name, value, where it comes from / help)`` rows."""
    return _table(
        ["setting", "value", "about"],
        [[n, repr(v) if isinstance(v, str) else v, h] for n, v, h in rows],
        title="gemimg defaults (%config GemimgMagics.<name> = value)",
    )


# ---------------------------------------------------------------- history strip


class ImageStrip:
    """A PNG contact sheet with a text listing and the files in its metadata."""

    def __init__(self, png: bytes, text: str, items: list[dict[str, Any]]) -> None:
        self.png = png
        self.text = text
        self.items = items

    def __repr__(self) -> str:
        return self.text

    def _repr_png_(self) -> bytes:
        return self.png

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        alt = "; ".join(f"{i + 1}. {' '.join(str(it.get('prompt', '')).split())}" for i, it in enumerate(self.items))
        return image_bundle(self.png, f"image history: {alt}", self.text, {"gemimg_history": self.items})


def history_strip(
    rows: Sequence[LedgerRow],
    *,
    thumb: int = 160,
    per_row: int = 6,
    picked: Iterable[str] = (),
    title: str | None = None,
    suspects: Mapping[str, str] | None = None,
    theme: str = "light",
) -> ImageStrip | RichText:
    """Recent images as a thumbnail strip (newest first), built with Pillow.

    Parameters
    ----------
    rows : sequence of LedgerRow
        Finished ledger rows (``Session.history()``); rows whose file is gone are skipped.
    thumb : int
        Long side of each thumbnail in pixels.
    per_row : int
        Thumbnails per row before the strip wraps.
    picked : iterable of str
        ``client_business_id`` of picked images: they carry a star.
    title : str, optional
        The first line of the text listing (default: ``N newest image(s)``).
    suspects : mapping of str to str, optional
        ``client_business_id`` → why the image looks unusable (``Session.suspects``): the tile is
        framed and labelled ``suspect``, the listing says why.
    theme : str
        ``light`` or ``dark``: the strip's ground and captions (``Settings.resolved_grid_theme``).

    Returns
    -------
    ImageStrip or RichText
        The contact sheet (PNG, a text listing, the files in the metadata),
        or a one-line note when there is nothing to show.
    """
    items: list[dict[str, Any]] = []
    thumbs: list[Image.Image] = []
    stars = set(picked)
    for row in rows:
        if not row.path:
            continue
        try:
            thumbs.append(load_thumb(row.path, thumb))
        except (OSError, ValueError):
            continue
        params = row.params
        items.append(
            {
                "path": display_path(row.path),
                "prompt": params.get("prompt", ""),
                "size": params.get("size"),
                "model": params.get("model"),
                "task_id": row.task_id,
                "finished": row.finished,
                "picked": row.cbid in stars,
                "suspect": (suspects or {}).get(row.cbid),
            }
        )
    if not thumbs:
        return RichText("gemimg: no images in the store yet", "<i>gemimg: no images in the store yet</i>")
    captions = [f"{i + 1}. {shorten(str(item['prompt']), 24)}" for i, item in enumerate(items)]
    marks = [bool(item["suspect"]) for item in items]
    sheet = contact_sheet(thumbs, captions, [item["picked"] for item in items], thumb=thumb, per_row=per_row,
                          suspect=marks, theme=theme)  # fmt: skip
    lines = [
        f"{i + 1}. {'★ ' if it['picked'] else ''}{shorten(str(it['prompt']), 50)} ({it['size']}) → {it['path']}"
        + (f" · {SUSPECT_MARK} suspect: {it['suspect']}" if it["suspect"] else "")
        for i, it in enumerate(items)
    ]
    text = f"gemimg history: {title or f'{len(items)} newest image(s)'}\n" + "\n".join(lines)
    return ImageStrip(png_bytes(sheet, optimize=True), text, items)


# ---------------------------------------------------------------- edit chains


class LineageOutput(ImageStrip):
    """An edit chain as a labelled strip (PNG) above its table (HTML), with the table's text as its text twin."""

    def __init__(self, png: bytes, table: RichText, rows: list[dict[str, Any]]) -> None:
        super().__init__(png, table.text, rows)
        self.table = table

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One row per step, root first (:meth:`Lineage.table`); the strip's items."""
        return self.items

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        uri = "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")
        markup = (  # the strip shrinks to the output's width and the table's prompts and files wrap: no sideways scroll
            f'<div class="gemimg-lineage" style="max-width:100%"><img src="{uri}" alt="edit chain" '
            f'style="max-width:100%;height:auto"><br>{self.table.html}</div>'
        )
        data = {"text/html": markup, "text/plain": self.text}  # the strip once, in the <img> (with alt text)
        return data, {"text/html": {"gemimg_lineage": self.rows}}


def lineage_output(chain: Lineage, *, thumb: int = 200) -> LineageOutput:
    """What ``%gemimg lineage`` shows: the strip (step number and prompt under each image) and a table."""
    rows = chain.table()
    table_rows = []
    for step, r in zip(chain.steps, rows, strict=True):
        sampling = "" if r["temperature"] is None else f" · t {r['temperature']:g} · top_p {r['top_p']:g}"
        star = " ★" if step.row.cbid in chain.picked else ""
        table_rows.append(
            [
                f"{r['step']}{star}",
                r["id"],
                r["prompt"],  # whole in HTML (it wraps), shortened in the text table
                f"{r['size']} {r['resolution']}{sampling} · {r['references']} ref",
                _usd(r["cost_usd"]),
                display_path(r["path"]) or r["state"],
            ]
        )
    title = f"edit chain: {plural(len(rows), 'step')}, root first"
    if chain.broken:
        title += f" ({chain.broken})"
    table = _table(["step", "id", "prompt", "parameters", "cost", "file"], table_rows, title=title, wrap=(2, 3, 5))
    return LineageOutput(png_bytes(chain.strip(thumb), optimize=True), table, rows)
