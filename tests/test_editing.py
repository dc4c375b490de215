"""Edit chains, lineage, picks and reports (issue #16), through a real ``InteractiveShell`` on the simulator.

The requests cross real loopback HTTP to the simulator; what the simulator
received (the submit's ``image_urls`` and the uploaded bytes) is checked
against the parent image. Restarts are real: the extension is unloaded and the
session closed, and a separate Python process reads the same output folder.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from IPython.core.error import UsageError
from PIL import Image

from gemimg_jupyter.api.lineage import ledger_cbid
from gemimg_jupyter.api.session import Session, SweepResult, get_session, reset_session
from gemimg_jupyter.display import LineageOutput, display_path
from gemimg_jupyter.draw.images import read_provenance, strip_provenance
from gemimg_jupyter.draw.primitives import _STAR
from gemimg_jupyter.engine import Job

from .support import output_image, quick_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def gem(ip: Any, tmp_output: Path) -> Iterator[Any]:
    """A shell with the extension loaded on a fast simulator session."""
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    yield ip


def submits() -> int:
    return int(get_session().sim.stats()["submits_accepted"])


def image_hash(path: Path | str) -> str:
    return hashlib.sha256(strip_provenance(Path(path).read_bytes())).hexdigest()


def restart(ip: Any, tmp_output: Path) -> Session:
    """What a kernel restart leaves: nothing in memory, the same output folder."""
    ip.run_line_magic("unload_ext", "gemimg_jupyter")
    for name in [n for n, v in ip.user_ns.items() if isinstance(v, (Job, SweepResult))]:
        del ip.user_ns[name]
    sess = reset_session(quick_settings(tmp_output))
    assert sess is not None and not sess.jobs()
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    return sess


def in_another_process(tmp_output: Path, code: str) -> Any:
    """Run ``code`` in a fresh Python on a Session over ``tmp_output``; it prints JSON."""
    script = (
        "import json, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from pathlib import Path\n"
        "from support import quick_settings\n"
        "from gemimg_jupyter.api.session import Session\n"
        f"sess = Session(quick_settings(Path({str(tmp_output)!r})))\n"
        f"{code}\n"
        "sess.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- edit chains


def test_three_edits_record_their_parents_send_the_parent_first_and_show_a_lineage(gem: Any, tmp_output: Path) -> None:
    gem.run_cell_magic("gemimg", "-o a --wait", "a red teapot on a table")
    gem.run_cell_magic("gemimg", "--edit a -o b --wait", "make the teapot blue")
    gem.run_cell_magic("gemimg", "--edit b -o c --wait --size 16:9", "add steam <rising> from the spout")
    a, b, c = (gem.user_ns[n] for n in "abc")
    assert all(j.state.value == "done" for j in (a, b, c))

    # the ledger and the PNG name the parent: c -> b -> a
    for child, parent in ((b, a), (c, b)):
        prov = read_provenance(child.path)
        assert prov["parent"] == {"cbid": parent.cbid, "key": parent.key, "sha256": image_hash(parent.path)}
        assert get_session().store.get(child.cbid).params["parent"] == prov["parent"]
        assert prov["references"][0]["sha256"] == prov["parent"]["sha256"]
    assert "parent" not in read_provenance(a.path)

    # the simulator received a's image as b's first reference (its upload, fetched back over HTTP)
    sim = get_session().sim
    first_url = sim.state.tasks[b.task_id].req.image_urls[0]
    uploaded = requests.get(first_url, timeout=10).content
    assert hashlib.sha256(uploaded).hexdigest() == image_hash(a.path)
    with Image.open(io.BytesIO(uploaded)) as sent, Image.open(a.path) as original:
        assert sent.tobytes() == original.tobytes()

    out = gem.run_line_magic("gemimg", "lineage c")
    assert isinstance(out, LineageOutput)
    assert [r["prompt"] for r in out.rows] == [
        "a red teapot on a table",
        "make the teapot blue",
        "add steam <rising> from the spout",
    ]
    assert [r["step"] for r in out.rows] == [1, 2, 3]
    data, _ = out._repr_mimebundle_()
    assert "add steam &lt;rising&gt;" in data["text/html"] and "<rising>" not in data["text/html"]
    with Image.open(io.BytesIO(output_image(data))) as strip:
        assert strip.width > 3 * 200 > strip.height

    # after a restart, from the ledger alone: by short id and by task id
    c_id, c_task = c.id, c.task_id
    sess = restart(gem, tmp_output)
    for ident in (c_id, c_task):
        again = gem.run_line_magic("gemimg", f"lineage {ident}")
        assert [r["step"] for r in again.rows] == [1, 2, 3]
        assert again.rows[-1]["prompt"] == "add steam <rising> from the spout"
    assert len(sess.lineage(c_id)) == 3


def test_the_same_edit_again_is_a_cache_hit_and_uploads_the_parent_once(gem: Any) -> None:
    a = get_session().generate("a paper boat", wait=True)
    first = a.edit("on a rainy street")
    sent, uploads = submits(), get_session().sim.stats()["uploads"]
    again = a.edit("on a rainy street")
    assert again.cached and again.path == first.path
    assert submits() == sent
    other = a.edit("on a sunny street")
    assert other.state.value == "done" and submits() == sent + 1
    assert get_session().sim.stats()["uploads"] == uploads  # same parent content: no second upload
    assert other.parent == first.parent


def test_a_pick_does_not_change_the_parents_identity(gem: Any) -> None:
    sess = get_session()
    a = sess.generate("a glass vase", wait=True)
    b = a.edit("with tulips")
    sent = submits()
    a.pick(note="keeper")
    assert read_provenance(a.path)["pick"]["note"] == "keeper"
    again = a.edit("with tulips")
    assert again.cached and again.path == b.path and submits() == sent


def test_edit_with_a_sweep_sends_the_parent_first_in_every_cell(gem: Any) -> None:
    gem.run_cell_magic("gemimg", "-o a --wait", "a lighthouse")
    gem.run_cell_magic("gemimg", "--edit a --sweep temperature=0.2,0.9 -n 2 -o fox --wait", "at night")
    a, fox = gem.user_ns["a"], gem.user_ns["fox"]
    assert len(fox) == 4 and all(j.state.has_image for j in fox.jobs)
    for job in fox.jobs:
        assert job.parent is not None and job.parent["cbid"] == a.cbid
        assert job.params.references[0].sha256 == image_hash(a.path)
    cell = html.unescape(fox.save_report().read_text(encoding="utf-8").split("<pre class='reproduce'>")[1])
    line = cell.split("\n", 1)[0]
    assert f"--edit {a.id}" in line
    sent = submits()
    gem.run_cell_magic("gemimg", line[len("%%gemimg ") :] + " -o again --wait", "at night")
    assert submits() == sent and all(j.cached for j in gem.user_ns["again"].jobs)
    gem.run_cell_magic("gemimg", "--edit fox[3] -o d --wait", "with fog")
    assert gem.user_ns["d"].parent["cbid"] == ledger_cbid(fox[3])
    assert len(get_session().lineage(gem.user_ns["d"])) == 3


def test_edit_errors_are_one_line_before_any_request(gem: Any, tmp_path: Path) -> None:
    gem.run_cell_magic("gemimg", "-o a --wait", "a cat")
    extra = tmp_path / "x.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(extra)
    before = submits()
    with pytest.raises(UsageError, match="at most 3"):
        gem.run_cell_magic("gemimg", f"--edit a --ref {extra} --ref {extra} --ref {extra}", "a dog")
    with pytest.raises(UsageError, match="not in the ledger"):
        gem.run_cell_magic("gemimg", "--edit nosuchid", "a dog")
    with pytest.raises(UsageError, match="no variable 'nosuch'"):
        gem.run_cell_magic("gemimg", "--edit nosuch[1]", "a dog")
    gem.run_cell_magic("gemimg", "--sweep temperature=0.1,0.2 -o sw --wait", "a cow")
    with pytest.raises(UsageError, match=r"is a sweep; name one of its images, e.g. sw\[0\]"):
        gem.run_cell_magic("gemimg", "--edit sw", "a dog")
    assert submits() == before + 2  # only the sweep's two
    # two more references are fine: the parent and two files make three
    gem.run_cell_magic("gemimg", f"--edit a --ref {extra} --ref {extra} --wait -o ok", "a dog")
    assert len(gem.user_ns["ok"].params.references) == 3


# ---------------------------------------------------------------- picks


def star_pixels(img: Image.Image) -> int:
    colours = img.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return next((n for n, c in colours if c == _STAR), 0)


def test_picks_last_across_restarts_and_processes_and_star_the_grid(gem: Any, tmp_output: Path, capsys: Any) -> None:
    cell = "--sweep temperature=0.2,0.9 --sweep size=1:1,16:9 -o fox --wait"
    gem.run_cell_magic("gemimg", cell, "a paper-cut fox")
    fox = gem.user_ns["fox"]
    plain = star_pixels(fox.grid())
    with Image.open(fox[1].path) as before:
        pixels = before.tobytes()
    gem.run_line_magic("gemimg", "pick fox[1] --note 'the best <one>'")
    gem.run_line_magic("gemimg", f"pick {fox[2].id}")
    assert "picked" in capsys.readouterr().out
    tiles = fox.tiles()
    assert [tiles[i].picked for i in range(4)] == [False, True, True, False]
    assert star_pixels(fox.grid()) > plain + 50
    assert fox.wait(10) and fox.paths
    with Image.open(fox.paths[0]) as saved_before_the_picks:  # the saved grid was drawn again, in place
        assert star_pixels(saved_before_the_picks) > plain + 50
    assert fox[1].picked and not fox[0].picked
    prov = read_provenance(fox[1].path)
    assert prov["pick"]["note"] == "the best <one>"
    with Image.open(fox[1].path) as after:
        assert after.tobytes() == pixels  # the chunk was re-written, not the pixels

    strip = gem.run_line_magic("gemimg", "history --picked")
    assert strip.text.startswith("gemimg history: 2 picked image(s), newest pick first")
    assert [it["picked"] for it in strip.items] == [True, True]
    assert [it["path"] for it in strip.items] == [display_path(fox[2].path), display_path(fox[1].path)]

    # a kernel restart: the re-run cell is all cache hits, and the new grid has the stars
    restart(gem, tmp_output)
    sent = submits()
    gem.run_cell_magic("gemimg", cell, "a paper-cut fox")
    fox2 = gem.user_ns["fox"]
    assert all(j.cached for j in fox2.jobs) and submits() == sent
    assert [fox2.tiles()[i].picked for i in range(4)] == [False, True, True, False]
    assert star_pixels(fox2.grid()) > plain + 50
    saved = fox2.wait(10) and fox2.paths
    assert saved
    with Image.open(saved[0]) as grid_png:
        assert star_pixels(grid_png) > plain + 50

    # another process sees the same picks, newest first, with the note
    seen = in_another_process(tmp_output, "print(json.dumps([[p.cbid, p.note] for p in sess.picks()]))")
    assert seen == [[fox2[2].provenance["client_business_id"], None], [ledger_cbid(fox2[1]), "the best <one>"]]

    gem.run_line_magic("gemimg", "unpick fox[1]")
    assert "pick" not in read_provenance(fox2[1].path)
    assert [p.cbid for p in get_session().picks()] == [ledger_cbid(fox2[2])]
    import gemimg_jupyter as gi

    assert [p.cbid for p in gi.picks()] == [ledger_cbid(fox2[2])]


def test_pick_of_an_unfinished_or_unknown_image_is_one_line(gem: Any) -> None:
    with pytest.raises(UsageError, match="not in the ledger"):
        gem.run_line_magic("gemimg", "pick abcdef")
    with pytest.raises(UsageError, match="no variable 'nosuch'"):
        gem.run_line_magic("gemimg", "pick nosuch[0]")


# ---------------------------------------------------------------- reports


def test_a_report_is_self_contained_escaped_small_and_reproducible(gem: Any, tmp_output: Path) -> None:
    prompt = "a <script>alert('x')</script> fox & friends"
    gem.run_cell_magic(
        "gemimg", "--sweep temperature=0.2,0.5,0.8,1.1 --sweep size=1:1,16:9,3:2,4:3 -o big --wait", prompt
    )
    big = gem.user_ns["big"]
    big[5].pick(note="<b>bold</b>")
    path = big.save_report()
    text = path.read_text(encoding="utf-8")
    assert path.parent == tmp_output / "reports"
    assert path.stat().st_size < 3_000_000
    # two script elements: the comparison's data (JSON, its "<" written \u003c) and its code (allowed by hash)
    assert text.lower().count("<script") == 2 and "&lt;script&gt;" in text and "\\u003cscript\\u003e" in text
    assert "<script>alert" not in text and "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    assert text.count("data-cell='") == 16 and text.count("data:image/jpeg;base64,") == 32  # thumbnails, larger
    for needle in ("http://", "https://", "//127.", "<link rel='stylesheet'", "@import", "url("):
        assert needle not in text
    assert text.count("<span class='star'") == 1 and text.count('"picked":true') == 1  # the table and the view
    assert all(j.task_id in text for j in big.jobs)
    for job in big.jobs:  # every thumbnail links to its full-size file by a relative path
        rel = Path("..") / Path(job.path).relative_to(tmp_output)
        assert f"href='{rel.as_posix()}'" in text
    # the reproducing cell runs the sweep again, all from the cache
    cell = text.split("<pre class='reproduce'>", 1)[1].split("</pre>", 1)[0]
    line, body = html.unescape(cell).split("\n", 1)
    assert line.startswith("%%gemimg ") and body == prompt
    sent = submits()
    gem.run_cell_magic("gemimg", line[len("%%gemimg ") :] + " -o again --wait", body)
    assert submits() == sent and all(j.cached for j in gem.user_ns["again"].jobs)


def test_failed_cells_show_their_reason_and_a_lineage_report_shows_the_chain(gem: Any, capsys: Any) -> None:
    sess = get_session()
    a = sess.generate("a kite", wait=True)
    b = a.edit("a red kite")
    sess.sim.configure(fail_rate=1.0)
    gem.run_cell_magic("gemimg", "--sweep temperature=0.3,0.4 -o bad --wait", "a broken kite")
    sess.sim.configure(fail_rate=0.0)
    text = gem.user_ns["bad"].save_report().read_text(encoding="utf-8")
    assert text.count("class='bad'") == 2 and "failed" in text
    assert all(j.error and j.error.split(":")[0] in text for j in gem.user_ns["bad"].jobs)
    gem.user_ns["b"] = b
    gem.run_line_magic("gemimg", "report b")
    out = capsys.readouterr().out
    assert "report written to" in out
    report = sess.store.root / "reports" / f"lineage_{b.id}.html"
    body = report.read_text(encoding="utf-8")
    assert "a kite" in body and "a red kite" in body and body.count("data-cell='") == 2


def test_the_committed_editing_notebook_is_executed_and_small() -> None:
    import nbformat

    path = REPO / "notebooks" / "editing.ipynb"
    nb = nbformat.read(path, as_version=4)

    def has_image(data: dict[str, object]) -> bool:  # an image is stored once: as <img> in text/html, or as a PNG
        return "image/png" in data or "<img" in str(data.get("text/html", ""))

    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if has_image(o.get("data", {}))]
    assert len(shown) >= 7, "commit the notebook executed (python scripts/make_notebooks.py editing)"
    assert path.stat().st_size < 1_500_000


# ---------------------------------------------------------------- the panel


def test_the_panel_edits_the_detail_image_picks_it_and_marks_the_history(tmp_output: Path) -> None:
    from gemimg_jupyter.panel import HISTORY_SLOTS, Panel

    with Session(quick_settings(tmp_output)) as sess:
        panel = Panel(session=sess)
        try:
            panel.prompt.value = "a ceramic teapot"
            panel.generate_button.click()
            assert panel.wait(30)
            (first,) = panel.state.run.jobs
            assert first.state.value == "done"
            assert panel.detail_edit.layout.display is None and panel.detail_pick.layout.display is None

            panel.detail_edit.click()
            assert panel.prompt.value == "" and panel.edit_note.layout.display is None
            assert f"--edit {first.id}" in panel.magic_text().splitlines()[0]
            panel.prompt.value = "make the teapot blue"
            sent = sess.sim.stats()["submits_accepted"]
            panel.generate_button.click()
            assert panel.wait(30)
            (second,) = panel.state.run.jobs
            assert second.state.value == "done" and sess.sim.stats()["submits_accepted"] == sent + 1
            assert second.parent is not None and second.parent["cbid"] == first.cbid
            assert sess.sim.state.tasks[second.task_id].req.image_urls  # the parent went as a reference
            assert second.params.references[0].sha256 == image_hash(first.path)

            panel.history_refresh.click()
            shown = sess.history(HISTORY_SLOTS)  # what the panel's history shows, newest first
            captions = {r.cbid: b.description for r, b in zip(shown, panel.history_buttons, strict=False)}
            assert captions[first.cbid].startswith("✎1 ") and "✎" not in captions[second.cbid]

            panel.detail_pick.value = True  # the detail view shows the edit now
            assert sess.is_picked(second) and panel.detail_pick.description == "★ picked"
            assert read_provenance(second.path)["pick"]["note"] is None
            captions = {r.cbid: b.description for r, b in zip(shown, panel.history_buttons, strict=False)}
            assert captions[second.cbid].startswith("★ ") and not captions[first.cbid].startswith("★")
            panel.detail_pick.value = False
            assert not sess.is_picked(second) and "pick" not in read_provenance(second.path)

            panel.edit_clear.click()
            assert panel.edit_note.layout.display == "none" and "--edit" not in panel.magic_text()
        finally:
            panel.wait(30)
            panel.close()
