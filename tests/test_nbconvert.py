"""Static renderers: an executed notebook, converted to HTML by nbconvert, shows every image and grid.

A notebook with one image and a 2×2 sweep is executed in a real kernel on
the simulator, then converted with nbconvert's HTML exporter (what
``jupyter nbconvert --to html`` runs). Every image output must be an
``<img>`` with its data inline and alternative text (the prompt, escaped),
nbconvert must not warn about missing alt text, and the page stays small.
"""

from __future__ import annotations

import logging
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from make_notebooks import execute, sim_env  # noqa: E402


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.tags.append(dict(attrs))


def img_tags(page: str) -> list[dict[str, str | None]]:
    """The attributes of every ``<img>`` in the page (values unescaped)."""
    parser = _Images()
    parser.feed(page)
    return parser.tags


PROMPT = 'A paper-cut fox & a "quoted" <i>owl</i>'


@pytest.mark.notebook
def test_nbconvert_html_shows_every_image_with_alt_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from nbconvert import HTMLExporter

    nb = new_notebook(
        cells=[
            new_code_cell("%load_ext gemimg_jupyter"),
            new_code_cell(f"%%gemimg --size 9:16 --wait\n{PROMPT}"),
            new_code_cell(f"%%gemimg --sweep temperature=0.2,1.4 --sweep size=1:1,16:9 --wait\n{PROMPT}"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    execute(nb, cwd=tmp_path, env=sim_env(GEMIMG_SIM_LATENCY="0.1,0.3"))
    images = [
        o for c in nb.cells for o in c.outputs if "data:image/png;base64," in o.get("data", {}).get("text/html", "")
    ]
    assert len(images) == 2, [o.get("output_type") for c in nb.cells for o in c.outputs]
    nbformat.write(nb, tmp_path / "executed.ipynb")

    with caplog.at_level(logging.WARNING):
        body, _resources = HTMLExporter().from_notebook_node(nb)
    (tmp_path / "executed.html").write_text(body)
    assert "Alternative text is missing" not in caplog.text

    tags = img_tags(body)
    inline = [t for t in tags if (t.get("src") or "").startswith("data:image/png;base64,")]
    assert len(inline) == 2, f"{len(tags)} <img> tags, {len(inline)} with inline PNG data"
    alts = [t.get("alt") or "" for t in inline]
    assert alts[0] == f"9:16 image 768×1344: {PROMPT}"
    assert alts[1].startswith("comparison grid, 4/4 done") and alts[1].endswith(PROMPT)
    assert "<i>owl</i>" not in body  # the prompt is text everywhere in the page, never markup
    # each image is stored once in the notebook (the <img> with alt text, no image/png twin), and in the page once
    assert all("image/png" not in o["data"] for o in images)
    first = images[0]["data"]["text/html"].split("base64,", 1)[1][:200]
    assert body.count(first) == 1
    size = len(body.encode())
    print(f"\n[nbconvert] {len(inline)} images, page {size / 1024:.0f} KB")
    assert size < 1_500_000, f"the HTML page is {size / 1024:.0f} KB"
