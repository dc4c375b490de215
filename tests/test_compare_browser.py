"""The comparison view in real browsers: JupyterLab and Notebook 7, headless Debian Chromium, Playwright.

A 2×2 sweep starts on the built-in simulator (images take about three seconds) and
``%gemimg compare`` opens the view at once, so it is seen filling in. Then, as a person would:
a tile opens the full-size image with its parameters; two selected tiles are swiped (the visible
split follows the slider) and zoomed (both images move together); the arrow keys move the
selection. Last, the notebook is saved and the page reloaded: the widget's models are gone
(as without a kernel) and the static grid shows instead of a dead widget box.

Screenshots go to ``artifacts/browser/``; ``GEMIMG_UPDATE_DOCS=1`` also refreshes
``docs/img/compare-*.png``. Skipped (loudly) only when ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .browser_support import (
    ARTIFACTS,
    SIM_KERNEL_ENV,
    Lab,
    browser_marks,
    cell,
    jupyter_lab,
    new_page,
    open_notebook,
    refresh_docs_images,
    run_cell,
)

pytestmark = browser_marks()

NAME = "compare.ipynb"
CELLS = [
    "%load_ext gemimg_jupyter",
    "%%gemimg --sweep temperature=0.2,1.4 --sweep size=1:1,16:9 -o owls\nA paper-cut owl on a branch",
    "%gemimg compare owls",
]
LOAD, SWEEP, COMPARE = range(len(CELLS))
#: Notebook 7.6 raises this on every page load, with an empty notebook and no extension of ours loaded.
NOTEBOOK7_STARTUP_ERROR = "Cannot read properties of undefined (reading 'schema')"


@pytest.fixture(scope="module", params=["lab", "notebook"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    app = request.param
    base = tmp_path_factory.mktemp(f"compare-{app}")
    root = base / "nb"
    root.mkdir()
    nb = new_notebook(cells=[new_markdown_cell("# compare"), *(new_code_cell(src) for src in CELLS)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / NAME)
    env = {**SIM_KERNEL_ENV, "GEMIMG_SIM_LATENCY": "2.5,3.5"}  # slow enough to see the view fill in
    with jupyter_lab(base, root, env, app=app) as lab:
        yield lab


def box(locator: Any) -> dict[str, float]:
    return locator.evaluate(
        "el => { const r = el.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; }"
    )


def shot(page: Any, locator: Any, name: str, shots: list[str]) -> None:
    locator.scroll_into_view_if_needed()
    page.wait_for_timeout(150)  # one layout pass; the screenshot itself is not asserted on
    locator.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    shots.append(name)


def save_until(page: Any, path: Path, saved: Any, timeout: float = 20.0) -> None:
    """Press Ctrl+S until the notebook on disk satisfies ``saved(nb)``."""
    deadline = time.monotonic() + timeout
    while True:
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")
        page.wait_for_timeout(300)
        if saved(nbformat.read(path, as_version=4)):
            return
        assert time.monotonic() < deadline, "the notebook on disk never got the expected state"


def stop_kernels(lab: Lab) -> None:
    """Shut every kernel of the server down (the page would otherwise reconnect to the one holding the models)."""
    listing = urllib.request.urlopen(f"{lab.url}/api/kernels?token={lab.token}", timeout=10).read()
    for kernel in json.loads(listing):
        req = urllib.request.Request(f"{lab.url}/api/kernels/{kernel['id']}?token={lab.token}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).read()


def test_comparison_view_in_a_real_front_end(server: Lab) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser, page = new_page(p, {"width": 1280, "height": 1000}, errors)
        try:
            drive(page, server, shots)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"compare-{server.app}-fail.png"))
            raise
        finally:
            browser.close()
    if server.app == "notebook":
        errors = [e for e in errors if e != NOTEBOOK7_STARTUP_ERROR]
    assert not errors, errors
    refresh_docs_images(shots, limit=160_000)


def drive(page: Any, lab: Lab, shots: list[str]) -> None:
    from playwright.sync_api import expect

    app = lab.app
    open_notebook(page, lab, NAME)
    run_cell(page, LOAD)
    run_cell(page, SWEEP)
    target = run_cell(page, COMPARE)
    view = target.locator(".gemimg-compare")
    expect(view).to_be_visible(timeout=60_000)
    tiles = view.locator(".gc-tile")
    expect(tiles).to_have_count(4)
    expect(view.locator(".gc-xlabel").first).to_have_text("temperature=0.2")
    expect(view.locator(".gc-ylabel").nth(1)).to_have_text("size=16:9")
    # -- it fills in while the sweep runs: first some tiles without a picture, then all four with one
    assert view.locator(".gc-tile:not([data-state='done'])").count() > 0, "the sweep should still be running"
    thumbs = view.locator("img.gc-thumb[src^='data:image/jpeg']")
    view.scroll_into_view_if_needed()  # thumbnails are asked for only once their tiles are on screen
    expect(thumbs).to_have_count(4, timeout=60_000)
    expect(target.locator(".gemimg-compare-static")).to_be_hidden()  # the saved picture hides behind the live view
    wide = box(tiles.nth(1))
    square = box(tiles.nth(0))
    assert wide["w"] > 150, wide  # a readable size, not a capped thumbnail strip
    assert box(tiles.nth(2).locator(".gc-frame"))["h"] < box(tiles.nth(0).locator(".gc-frame"))["h"]  # 16:9 is flatter
    del square
    shot(page, view, f"compare-{app}-grid", shots)

    # -- hover shows the parameters; click opens the full-size image with its caption
    tiles.nth(1).hover()
    expect(view.locator(".gc-tip")).to_contain_text("temperature: 1.4")
    tiles.nth(1).locator(".gc-frame").click()
    lightbox = view.locator(".gc-lightbox")
    expect(lightbox).to_be_visible()
    expect(lightbox.locator("img.gc-full")).to_have_attribute(
        "src", re.compile(r"^data:image/(png|jpeg|webp);base64,"), timeout=20_000
    )
    # the lightbox shows the thumbnail at once and swaps in the full-size file when it arrives: wait for that
    natural = lightbox.evaluate(
        """(box, ms) => new Promise((done) => {
            const end = Date.now() + ms;
            const look = () => {
                const img = box.querySelector("img.gc-full");
                const size = img ? [img.naturalWidth, img.naturalHeight] : null;
                if ((img && img.complete && size[0] >= 1024) || Date.now() > end) done(size);
                else requestAnimationFrame(look);
            };
            look();
        })""",
        20_000,
    )
    assert natural[0] >= 1024, natural  # the full-size file, not the thumbnail
    caption = lightbox.locator(".gc-caption")
    expect(caption).to_contain_text("temperature")
    expect(caption).to_contain_text("1.4")
    expect(caption).to_contain_text("task id")
    expect(caption.locator("a.gc-file")).to_have_text(re.compile(r"gemimg_outputs/.*\.(png|jpg|webp)$"))
    shot(page, view, f"compare-{app}-full", shots)
    lightbox.locator(".gc-lb-close").click()
    expect(lightbox).to_be_hidden()

    # -- select two: swipe moves the visible split
    tiles.nth(0).locator(".gc-select").click()
    tiles.nth(3).locator(".gc-select").click()
    pane = view.locator(".gc-compare")
    expect(pane).to_be_visible()
    expect(pane.locator(".gc-mode[data-mode='swipe']")).to_have_attribute("aria-pressed", "true")
    divider = pane.locator(".gc-divider")
    stage = box(pane.locator(".gc-pane"))
    before = box(divider)["x"]
    pane.locator("input.gc-swipe").fill("20")
    after = box(divider)["x"]
    assert abs(after - (stage["x"] + 0.2 * stage["w"])) < 3 and before - after > 0.2 * stage["w"], (
        before,
        after,
        stage,
    )
    clip = pane.locator("img.gc-top").evaluate("img => getComputedStyle(img).clipPath")
    assert "20%" in clip, clip
    shot(page, pane, f"compare-{app}-swipe", shots)

    # -- side by side: zoom moves both images together
    pane.locator(".gc-mode[data-mode='side']").click()
    layers = pane.locator("img.gc-layer")
    expect(layers).to_have_count(2)
    widths = [box(layers.nth(i))["w"] for i in range(2)]
    pane.locator(".gc-zoom-in").click()
    pane.locator(".gc-zoom-in").click()
    zoomed = [box(layers.nth(i))["w"] for i in range(2)]
    assert all(z > w * 1.4 for z, w in zip(zoomed, widths, strict=True)), (widths, zoomed)
    transforms = {layers.nth(i).evaluate("img => img.style.transform") for i in range(2)}
    assert len(transforms) == 1, transforms  # one transform: synced
    shot(page, pane, f"compare-{app}-side", shots)

    # -- the keyboard: arrows move the selection, s swaps A and B
    view.locator(".gc-title").click()  # focus the view (the tile opened last is the current one)
    expect(view.locator(".gc-tile.gc-current")).to_have_attribute("data-index", "1")
    page.keyboard.press("ArrowLeft")
    expect(view.locator(".gc-tile.gc-current")).to_have_attribute("data-index", "0")
    page.keyboard.press("ArrowDown")
    expect(view.locator(".gc-tile.gc-current")).to_have_attribute("data-index", "2")
    page.keyboard.press("ArrowRight")
    expect(view.locator(".gc-tile.gc-current")).to_have_attribute("data-index", "3")
    expect(lightbox).to_be_hidden()
    first_a = pane.locator(".gc-name-a").inner_text()
    page.keyboard.press("s")
    expect(pane.locator(".gc-name-b")).to_have_text(first_a.replace("A:", "B:"))

    # -- saved, reloaded (the widget's models are gone, as without a kernel): the static grid shows
    def saved(nb: Any) -> bool:
        outs = nb.cells[COMPARE + 1].outputs
        return any("gemimg-compare-static" in o.get("data", {}).get("text/html", "") for o in outs)

    save_until(page, lab.root / NAME, saved)
    nb = nbformat.read(lab.root / NAME, as_version=4)
    static = next(o for o in nb.cells[COMPARE + 1].outputs if "text/html" in o.get("data", {}))
    assert static["data"]["text/html"].count("data:image/png;base64,") == 1 and "image/png" not in static["data"]
    stop_kernels(lab)  # a fresh kernel knows none of the widget's models, as when the notebook is opened later
    open_notebook(page, lab, NAME)
    saved_cell = cell(page, COMPARE)
    picture = saved_cell.locator(".gemimg-compare-static img")
    expect(picture).to_be_visible(timeout=30_000)
    assert box(picture)["w"] > 300
    expect(saved_cell.get_by_text("model not found")).to_be_hidden()
    shot(page, saved_cell, f"compare-{app}-saved", shots)
