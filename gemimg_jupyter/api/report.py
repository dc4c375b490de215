"""Self-contained HTML reports of a sweep or an edit chain: one file anyone can open offline.

Everything the page shows is inside the file: thumbnails are embedded as ``data:`` URIs (JPEG,
320 px), and so are larger pictures (JPEG, 1,024 px) for the comparison view at the top, which is
the notebook's own view (click a tile for the full-size picture and its caption, select two for
side by side, swipe, fade or difference with zoom and pan that move together, arrow keys). Its
script and style are inline and allowed by hash by a strict Content-Security-Policy
(:mod:`.report_page`), so opening the file makes no request of any kind. Below the view, the
static table lists every cell with its file facts (and is all a reader without scripts needs);
each thumbnail links to its full-size file by a relative path, which works as long as the report
stays beside the output folder (``<output>/reports/`` by default). Every piece of text that came
from a user (prompts, notes, file names, error messages) is escaped, in the markup and in the
JSON the view reads.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from gemimg_jupyter.api.compare import Comparison
from gemimg_jupyter.api.lineage import Lineage, ledger_cbid
from gemimg_jupyter.api.report_page import compare_section, href, jpeg_data_uri, page
from gemimg_jupyter.domain.text import format_usd as _usd
from gemimg_jupyter.domain.text import plural
from gemimg_jupyter.draw.credentials import credentials_report
from gemimg_jupyter.draw.formats import SUSPECT_MARK, file_facts
from gemimg_jupyter.draw.grid import plan_header
from gemimg_jupyter.draw.images import read_provenance, strip_provenance
from gemimg_jupyter.engine import Job
from gemimg_jupyter.ledger.picks import Pick
from gemimg_jupyter.plans.plan import SweepPlan

__all__ = ["THUMB_SIDE", "SweepRun", "lineage_report", "reproduce_cell", "sweep_report", "thumbnail_data_uri"]

#: Long side of the embedded thumbnails.
THUMB_SIDE = 320
_E = html.escape


class SweepRun(Protocol):
    """What a sweep's report reads of it (a :class:`~.results.SweepResult` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def plan(self) -> SweepPlan: ...

    @property
    def jobs(self) -> Sequence[Job]: ...

    def progress_text(self) -> str: ...


def thumbnail_data_uri(path: str | os.PathLike[str], side: int = THUMB_SIDE) -> str | None:
    """A ``data:image/jpeg;base64,…`` thumbnail of an image file (``None`` if it cannot be read)."""
    return jpeg_data_uri(path, side, 82)


def _facts(path: str | os.PathLike[str] | None, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The file facts of an image (from its provenance, else its sidecar or the file itself); empty if unreadable."""
    known = (provenance or {}).get("file")
    if isinstance(known, dict):
        return known
    if path is None:
        return {}
    try:
        found = read_provenance(path).get("file")
        if not isinstance(found, dict):  # an image from an earlier version: no facts were kept
            found = file_facts(strip_provenance(Path(path).read_bytes()))
    except (OSError, ValueError):
        return {}
    return found


def _file_lines(facts: Mapping[str, Any], path: str | os.PathLike[str] | None) -> str:
    """The suspect reason (when there is one) and the content credentials, as caption lines (HTML).

    A manifest is "present (not validated)" unless the optional c2pa-python validates it (then its
    issuer and verdict are shown); the file is read again only when it has a manifest.
    """
    lines = []
    if facts.get("suspect"):
        lines.append(f"<b class='warn'>{SUSPECT_MARK} suspect: {_E(str(facts['suspect']))}</b> (paid; kept)")
    if facts:
        where = facts.get("content_credentials")
        data = None
        if where and path is not None:
            try:
                data = Path(path).read_bytes()
            except OSError:
                data = None
        text = credentials_report(where, data, facts.get("media_type"))
        lines.append(f"<span class='facts'>content credentials: {_E(text)}</span>")
    return "".join(f"<br>{line}" for line in lines)


def _suspect_mark(facts: Mapping[str, Any]) -> str:
    reason = facts.get("suspect")
    return f"<span class='suspect-mark' title='{_E(str(reason))}'>{SUSPECT_MARK} suspect</span>" if reason else ""


def _figure(job: Job, base: Path, picked: Mapping[str, Pick], caption: str, index: int) -> str:
    """One image (or its failure) with its caption; a star when picked. ``index``: its cell in the comparison."""
    state = job.state.value
    if job.state.has_image and job.path is not None:
        uri = thumbnail_data_uri(job.path)
        star = ""
        cbid = ledger_cbid(job)
        if cbid in picked:
            note = f": {picked[cbid].note}" if picked[cbid].note else ""
            star = f"<span class='star' title='{_E('picked' + note)}'>★</span>"
        img = (
            f"<img src='{uri}' data-cell='{index}' alt='{_E(job.params.prompt[:120])}'>"
            if uri
            else "<div class='pending'>no file</div>"
        )
        facts = _facts(job.path, job.provenance)
        kind = " class='suspect'" if facts.get("suspect") else ""
        return (
            f"<figure{kind}>{star}{_suspect_mark(facts)}<a href='{href(job.path, base)}'>{img}</a>"
            f"<figcaption>{caption}{' · <b>picked</b>' if star else ''}{_file_lines(facts, job.path)}</figcaption></figure>"
        )
    kind = "bad" if job.state.shown_as_failed else "pending"
    reason = _E(job.error or ("not finished yet" if kind == "pending" else "no reason given"))
    return (
        f"<figure><div class='{kind}'><b>{_E(state)}</b><br>{reason}</div><figcaption>{caption}</figcaption></figure>"
    )


def _caption(job: Job, labels: Mapping[str, Any], repeat: int, repeats: int) -> str:
    d = job.describe()
    parts = [f"{_E(k)}={_E(str(v))}" for k, v in labels.items()]
    if repeats > 1:
        parts.append(f"repeat {repeat + 1}/{repeats}")
    params = f"{d['model']} · {d['size']} · {d['resolution']}"
    if d["temperature"] is not None:
        params += f" · t {d['temperature']:g} · top_p {d['top_p']:g}"
    cost = "cached, $0" if job.cached else _usd(job.cost_usd, places=4, missing="—")
    task = f"<br>task <code>{_E(job.task_id)}</code>" if job.task_id else ""
    return (
        f"{' · '.join(parts)}<br>{_E(params)}<br>state <b>{_E(job.state.value)}</b> · {_E(cost)}"
        f" · id <code>{_E(job.id)}</code>{task}"
    )


def reproduce_cell(plan: SweepPlan, *, edit: str | None = None) -> str:
    """The ``%%gemimg`` cell that runs this sweep again (a cache hit for every finished image)."""
    base = plan.base
    swept = set(plan.varying)
    opts: list[str] = []
    if "model" not in swept:
        opts.append(f"--model {base.model}")
    if "size" not in swept:
        opts.append(f"--size {base.size}")
    if "resolution" not in swept:
        opts.append(f"--resolution {base.resolution}")
    if "temperature" not in swept and base.temperature is not None:
        opts.append(f"--temperature {base.temperature:g}")
    if "top_p" not in swept and base.top_p is not None:
        opts.append(f"--top-p {base.top_p:g}")
    if edit:
        opts.append(f"--edit {edit}")
    if "ref" not in swept:
        refs = base.references[1:] if edit else base.references
        opts += [f"--ref {_quote(r.url or r.name)}" for r in refs]
    for lead in plan.axes:
        for i, axis in enumerate(lead.members):
            if axis.name == "prompt":
                values = [str(v) for v in axis.values]
            elif axis.name == "ref":
                values = [lab for lab in axis.labels]
            elif axis.name in ("temperature", "top_p"):
                values = [f"{float(v):g}" for v in axis.values]
            else:
                values = [str(v) for v in axis.values]
            sep = "|" if axis.name in ("prompt", "ref") or any("," in v for v in values) else ","
            opts.append(f"{'--with' if i else '--sweep'} {_quote(axis.name + '=' + sep.join(values))}")
    if plan.repeats > 1:
        opts.append(f"-n {plan.repeats}")
    return f"%%gemimg {' '.join(opts)}\n{base.prompt}"


def _quote(text: str) -> str:
    return text if text and all(c.isalnum() or c in "._-=:,/+" for c in text) else '"' + text.replace('"', '\\"') + '"'


def _sweep_tables(result: SweepRun, base: Path, picked: Mapping[str, Pick]) -> list[str]:
    """One table per Z value: every cell with its thumbnail, caption and file facts."""
    plan = result.plan
    nx, ny, nz = plan.shape
    ax, ay, az = plan.x_axis, plan.y_axis, plan.z_axis
    by_slot: dict[tuple[int, int, int], list[tuple[int, Any, Job]]] = {}
    for index, (cell, job) in enumerate(zip(plan.cells, result.jobs, strict=False)):
        by_slot.setdefault((cell.x, cell.y, cell.z), []).append((index, cell, job))
    out = []
    for z in range(nz):
        if az is not None:
            out.append(f"<h3>{_E(az.name)} = {_E(az.labels[z])}</h3>")
        corner = _E(f"{ay.name} ↓ / {ax.name} →") if ay and ax else _E(ax.name if ax else "")
        head = f"<th class='axis'>{corner}</th>"
        head += "".join(f"<th>{_E(ax.labels[x]) if ax else ''}</th>" for x in range(nx))
        rows = []
        for y in range(ny):
            cells = []
            for x in range(nx):
                figs = [
                    _figure(job, base, picked, _caption(job, cell.labels, cell.repeat, plan.repeats), index)
                    for index, cell, job in by_slot.get((x, y, z), [])
                ]
                cells.append(f"<td><div class='cell'>{''.join(figs)}</div></td>")
            label = f"<th>{_E(ay.labels[y])}</th>" if ay else "<th></th>"
            rows.append(f"<tr>{label}{''.join(cells)}</tr>")
        table = f"<table class='grid'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        out.append(f"<div class='scroll'>{table}</div>")
    return out


def _every_cell(tables: Sequence[str]) -> str:
    """The static tables, folded away by the script once the comparison view shows (open without it)."""
    return f"<details class='cells' open><summary>Every cell, with its file facts</summary>{''.join(tables)}</details>"


def sweep_report(result: SweepRun, base: Path, picks: Iterable[Pick] = ()) -> str:
    """The HTML of a sweep's report; links are relative to the folder ``base`` it will be written to."""
    plan = result.plan
    picked = {p.cbid: p for p in picks}
    parent = next((j.parent for j in result.jobs if j.parent), None)
    edit = str(parent["cbid"])[-6:] if parent else None
    out = [
        f"<h1>Sweep {_E(result.id)}</h1>",
        f"<p class='sub'>{_E(plan.summary())} · {_E(result.progress_text())}</p>",
        f"<p><b>Shared:</b> {_E(plan_header(plan))}</p>",
    ]
    if edit:
        out.append(f"<p><b>Edits</b> image <code>{_E(edit)}</code> (its first reference).</p>")
    comparison = Comparison.of_sweep(plan, result.jobs, sweep_id=result.id, picked=lambda: set(picked))
    section, data = compare_section(comparison, base)
    out += [section, _every_cell(_sweep_tables(result, base, picked))]
    out.append("<h2>Reproduce</h2><p>Run this cell again: finished images come from the cache for $0.</p>")
    out.append(f"<pre class='reproduce'>{_E(reproduce_cell(plan, edit=edit))}</pre>")
    return page(f"gemimg sweep {result.id}", "".join(out), data)


def lineage_report(chain: Lineage, base: Path, picks: Iterable[Pick] = ()) -> str:
    """The HTML of an edit chain: one row per step (thumbnail, step, prompt, parameters, cost, file)."""
    notes = {p.cbid: p for p in picks}
    rows = []
    for index, step in enumerate(chain.steps):
        d = step.describe()
        star = ""
        if step.row.cbid in chain.picked:
            note = notes.get(step.row.cbid)
            star = (
                f"<span class='star' title='{_E('picked' + (': ' + note.note if note and note.note else ''))}'>★</span>"
            )
        img = "<div class='pending'>no file</div>"
        facts: dict[str, Any] = {}
        if step.path and Path(step.path).is_file():
            facts = _facts(step.path)
            uri = thumbnail_data_uri(step.path)
            if uri:
                img = f"<a href='{href(step.path, base)}'><img src='{uri}' data-cell='{index}' alt='step {d['step']}'></a>"
        params = ", ".join(
            f"{k} {v}" for k, v in d.items() if k in ("model", "size", "resolution", "temperature", "top_p")
        )
        frame = " class='suspect'" if facts.get("suspect") else ""
        rows.append(
            f"<tr><td><figure{frame}>{star}{_suspect_mark(facts)}{img}</figure></td><td><b>{d['step']}</b>{' (root)' if d['step'] == 1 else ''}</td>"
            f"<td>{_E(d['prompt'])}</td><td>{_E(params)}<br>{plural(d['references'], 'reference')}</td>"
            f"<td>{_E(d['state'])}<br>{_E(_usd(d['cost_usd'], places=4, missing='—'))}<br>task <code>{_E(str(d['task_id']))}</code></td>"
            f"<td><code>{_E(Path(step.path).name if step.path else '—')}</code>{_file_lines(facts, step.path)}</td></tr>"
        )
    last = chain.steps[-1].row.cbid[-6:] if chain.steps else "?"
    broken = f"<p class='bad'>{_E(chain.broken)}</p>" if chain.broken else ""
    table = (
        "<table class='steps'><thead><tr><th>image</th><th>step</th><th>prompt</th><th>parameters</th>"
        f"<th>state, cost</th><th>file</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    title = f"edit chain of {last}, root first"
    comparison = Comparison.of_chain([s.row for s in chain.steps], title=title, picked=lambda: set(chain.picked))
    section, data = compare_section(comparison, base)
    body = (
        f"<h1>Edit chain of {_E(last)}</h1><p class='sub'>{plural(len(chain.steps), 'step')}, root first</p>{broken}"
        f"{section}{_every_cell([f'<div class=scroll>{table}</div>'])}"
    )
    return page(f"gemimg lineage {last}", body, data)
