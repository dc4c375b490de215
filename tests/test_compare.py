"""The comparison view without a browser: its data model (core), the widget (face) and ``%gemimg compare``.

A real Session runs sweeps on the loopback simulator; the widget is driven through the messages
its front end sends (``thumbs``, ``full``, ``pick``), and the magic through a real InteractiveShell.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import gemimg_jupyter as gi
from gemimg_jupyter.api import Comparison
from gemimg_jupyter.api.session import Session

from .support import wait_for

WAIT = 30.0


def sweep_2x2(session: Session, *, wait: bool = True) -> Any:
    return session.sweep("a paper-cut owl", temperature=[0.2, 1.4], size=["1:1", "16:9"], wait=wait)


def decoded(url: str) -> Image.Image:
    head, data = url.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_a_sweep_comparison_is_plain_data(session: Session) -> None:
    sweep = sweep_2x2(session)
    comparison = sweep.compare()
    assert isinstance(comparison, Comparison)
    header = comparison.header()
    assert header["shape"] == [2, 2, 1]
    assert [a["name"] for a in header["axes"]] == ["temperature", "size"]
    assert sweep.wait(WAIT)
    cells = comparison.cells()
    json.dumps(cells)  # what the widget syncs is JSON
    assert [(c["x"], c["y"]) for c in cells] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    first = cells[0]
    assert first["labels"] == {"temperature": "0.2", "size": "1:1"}
    assert first["params"]["prompt"] == "a paper-cut owl" and first["params"]["size"] == "1:1"
    assert first["state"] == "done" and first["has_image"] and first["task_id"]
    assert first["cost"].startswith("$") and first["path"].endswith((".jpg", ".png", ".webp"))
    thumb = decoded(comparison.thumbnail_url(3) or "")
    assert max(thumb.size) <= 384 and abs(thumb.width / thumb.height - 16 / 9) < 0.05
    full = decoded(comparison.full_url(3) or "")
    assert full.size == Image.open(sweep[3].path).size
    assert comparison.static_png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pending_cells_have_no_pictures_yet(session: Session) -> None:
    sweep = session.sweep("a fox", temperature=[0.2, 0.9], wait=False)
    comparison = sweep.compare()
    pending = [c for c in comparison.cells() if not c["has_image"]]
    for cell in pending:  # whatever is still running when we look has no picture to send
        assert comparison.thumbnail_url(cell["index"]) is None or comparison.cell(cell["index"])["has_image"]
    assert sweep.wait(WAIT)
    assert all(c["has_image"] for c in comparison.cells())


def test_several_results_are_labelled_by_what_differs(session: Session) -> None:
    a = session.generate("a red kite", temperature=0.2).result(WAIT)
    b = session.generate("a red kite", temperature=1.1).result(WAIT)
    comparison = gi.api.compare_targets(session, [a, b.id])
    header = comparison.header()
    assert header["axes"] == [{"name": "temperature", "labels": ["0.2", "1.1"]}]
    assert [c["has_image"] for c in comparison.cells()] == [True, True]


def test_picked_images_and_a_pick_from_the_view(session: Session) -> None:
    sweep = sweep_2x2(session)
    assert sweep.wait(WAIT)
    comparison = sweep.compare()
    assert comparison.toggle_pick(1) is True
    assert comparison.cell(1)["picked"] and not comparison.cell(0)["picked"]
    picked = gi.api.compare_targets(session, [], picked=True)
    assert len(picked) == 1 and picked.cells()[0]["picked"]
    assert comparison.toggle_pick(1) is False and not comparison.cell(1)["picked"]
    with pytest.raises(ValueError, match="nothing to compare"):
        gi.api.compare_targets(session, [], picked=True)


def test_the_widget_answers_the_page_and_fills_in_live(session: Session, ip: Any) -> None:
    from gemimg_jupyter.display.compare import CompareWidget, show_comparison

    sweep = sweep_2x2(session, wait=False)
    view = show_comparison(sweep.compare())
    assert not all(c["has_image"] for c in view.cells)  # shown while the sweep runs
    assert isinstance(view, CompareWidget)
    static, widget = ip.display_pub.outputs[-2:]
    assert static["data"]["text/html"].count("data:image/png;base64,") == 1 and "image/png" not in static["data"]
    assert 'alt="comparison of 4 images' in static["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert Path(view._esm).name == "compare.js" if isinstance(view._esm, Path) else "export default" in view._esm
    # the cells trait fills in from the jobs' listeners, and the static picture is redrawn at the end
    wait_for(lambda: all(c["has_image"] for c in view.cells), WAIT, "the view to fill in")
    wait_for(lambda: any(o.get("update") for o in ip.display_pub.outputs), WAIT, "the static grid's update")
    sent: list[Any] = []
    view.send = sent.append  # type: ignore[method-assign]
    view._on_front_end(view, {"type": "thumbs", "indexes": [0, 3, 99]}, [])
    assert set(sent[-1]["items"]) == {"0", "3"} and sent[-1]["items"]["0"].startswith("data:image/jpeg")
    view._on_front_end(view, {"type": "full", "index": 2}, [])
    assert sent[-1]["index"] == 2 and sent[-1]["url"].startswith(
        ("data:image/jpeg", "data:image/png", "data:image/webp")
    )
    view._on_front_end(view, {"type": "pick", "index": 2}, [])
    assert view.cells[2]["picked"] and session.is_picked(sweep[2])


def test_gemimg_compare_magic(session: Session, ip: Any) -> None:
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.run_cell("%%gemimg --sweep temperature=0.2,1.4 -o owls\nA paper-cut owl")
    owls = ip.user_ns["owls"]
    assert owls.wait(WAIT)
    before = len(ip.display_pub.outputs)
    ip.run_line_magic("gemimg", "compare owls")
    shown = ip.display_pub.outputs[before:]
    assert any("application/vnd.jupyter.widget-view+json" in o["data"] for o in shown)
    result = ip.run_cell("%gemimg compare")
    assert result.error_in_exec is not None or result.error_before_exec is not None or "name a sweep" in str(result)


def test_a_sweep_table_reads_as_a_table(session: Session) -> None:
    sweep = session.sweep("a <b>bold</b> owl", temperature=[0.2, 1.4])
    table = sweep.table()
    assert isinstance(table, list) and len(table) == 2 and table[0]["temperature"] == 0.2  # still a list of dicts
    text = repr(table).splitlines()
    assert text[0].split()[:2] == ["cell", "temperature"] and len(text) == 3
    assert text[2].split()[:2] == ["1", "1.4"]
    markup = table._repr_html_()
    assert markup.count("<tr>") == 3 and "<th>state</th>" in markup and "<b>" not in markup
