"""The control panel in a real browser: JupyterLab + headless Debian Chromium, driven by Playwright.

Opens ``notebooks/panel.ipynb`` (``%load_ext gemimg_jupyter`` then ``%gemimg
panel``) in JupyterLab on 127.0.0.1 with the built-in simulator as backend,
sets size and temperature, uploads a reference image through the FileUpload
(its file chooser: ipywidgets 8 keeps the ``<input type=file>`` out of the
DOM), adds a second by path beside it, generates one image and waits for it in the DOM, then builds a
2×2 sweep and waits for the grid. Screenshots go to ``artifacts/browser/``;
``GEMIMG_UPDATE_DOCS=1`` also refreshes ``docs/img/panel-*.png``.

Skipped (loudly) only when ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from .browser_support import (
    ARTIFACTS,
    Lab,
    MemSampler,
    browser_marks,
    browser_page,
    new_page,
    open_notebook,
    open_panel,
    panel_lab,
    refresh_docs_images,
    run_all,
)

pytestmark = browser_marks()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with panel_lab(tmp_path_factory.mktemp("lab")) as server:
        print(f"\n[lab] pid={server.proc.pid} {server.url} ready in {server.startup_s:.2f}s")
        yield server


def reference_png(path: Path) -> Path:
    img = Image.new("RGB", (320, 240), (250, 200, 40))
    for x in range(40, 280):
        for y in range(60, 180):
            if (x // 40 + y // 40) % 2:
                img.putpixel((x, y), (30, 120, 200))
    img.save(path, format="PNG")
    return path


def test_panel_in_jupyterlab(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ref = reference_png(tmp_path / "product.png")
    mem = MemSampler([os.getpid(), lab.proc.pid])
    mem.start()
    marks: dict[str, float] = {}
    t0 = time.monotonic()
    errors: list[str] = []
    console: list[str] = []
    with sync_playwright() as p:
        browser, page = new_page(p, {"width": 1360, "height": 1000}, errors)
        page.on("console", lambda m: console.append(f"{m.type}: {m.text[:300]}"))
        marks["launch"] = time.monotonic() - t0
        try:
            drive(page, lab, ref, t0, marks)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "fail.png"))
            (ARTIFACTS / "fail-console.txt").write_text("\n".join(console + errors))
            raise
        finally:
            browser.close()
            mem.stop()
    marks["total"] = time.monotonic() - t0
    print(f"\n[timing] lab_start={lab.startup_s:.2f}s " + " ".join(f"{k}={v:.2f}s" for k, v in marks.items()))
    print(
        f"[memory] peak summed RSS={mem.peak_rss / 2**20:.0f} MiB, PSS={mem.peak_pss / 2**20:.0f} MiB "
        "(pytest + playwright driver + chromium + jupyter server + kernel)"
    )
    assert not errors, errors
    refresh_docs_images(("panel-single", "panel-sweep", "panel-narrow"))


#: Elements inside the panel whose right edge is past the panel's inner right edge (by more than 1 px).
OVERFLOWING = """panel => {
  const edge = panel.getBoundingClientRect().right - parseFloat(getComputedStyle(panel).borderRightWidth);
  return [...panel.querySelectorAll('*')]
    .filter(el => el.getClientRects().length && el.getBoundingClientRect().right > edge + 1)
    .slice(0, 5)
    .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')} right=${el.getBoundingClientRect().right.toFixed(0)} edge=${edge.toFixed(0)}`);
}"""


def shoot(page: Any, panel: Any, path: Path) -> None:
    """Screenshot the whole panel: grow the viewport so JupyterLab's scroller holds all of it."""
    viewport = page.viewport_size
    height = int(panel.evaluate("el => el.getBoundingClientRect().height"))
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height + 260)})
    panel.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(150)  # one layout pass after the resize; the screenshot itself is not asserted on
    panel.screenshot(path=str(path))
    page.set_viewport_size(viewport)


def drive(page: Any, lab: Lab, ref: Path, t0: float, marks: dict[str, float]) -> None:
    from playwright.sync_api import expect

    kernel_idle = open_notebook(page, lab, "panel.ipynb")
    marks["kernel_idle"] = time.monotonic() - t0

    run_all(page)
    panel = page.locator(".jp-OutputArea-output .gemimg-panel")
    expect(panel).to_be_visible(timeout=60_000)
    expect(kernel_idle).to_be_visible(timeout=60_000)
    expect(panel.locator(".gemimg-header")).to_contain_text("simulator")
    marks["panel_rendered"] = time.monotonic() - t0

    # -- settings: prompt, size, temperature
    panel.locator(".gemimg-prompt textarea").fill("A paper-cut fox in an autumn forest, soft daylight")
    panel.locator(".gemimg-size select").select_option(label="16:9 · 1344×768")
    readout = panel.locator(".gemimg-temperature .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("1.3")
    page.keyboard.press("Enter")
    expect(panel.locator(".gemimg-temperature .noUi-handle")).to_have_attribute("aria-valuenow", "1.3")
    expect(panel.locator(".gemimg-size-shape")).to_contain_text("1344×768")
    expect(panel.locator(".gemimg-plan")).to_contain_text("1 request")
    # the kernel has every value once the reproducing cell (written kernel-side) shows them
    expect(panel.locator(".gemimg-magic textarea")).to_have_value(
        re.compile(r"--size 16:9 .*--temperature 1\.3.*\nA paper-cut fox in an autumn forest, soft daylight"),
        timeout=10_000,
    )

    # -- a reference image. ipywidgets 8's FileUpload keeps its <input type=file> detached from the
    # DOM (the button calls input.click()), so there is nothing to locate: answer the file chooser.
    with page.expect_file_chooser() as chooser:
        panel.locator("button.gemimg-upload").click()
    chooser.value.set_files(str(ref))
    expect(panel.locator(".gemimg-ref-count")).to_contain_text("1/3 attached", timeout=20_000)
    expect(panel.locator(".gemimg-ref-tile img")).to_be_visible()
    expect(panel.locator(".gemimg-magic textarea")).to_have_value(re.compile(r"--temperature 1\.3 .*--ref "))
    # -- and one by path, typed beside the upload button (what Colab needs for files of 1 MB or more)
    second = ref.with_name("second.png")
    Image.new("RGB", (200, 200), (200, 40, 120)).save(second)
    panel.locator(".gemimg-ref-source input").fill(str(second))
    panel.locator("button.gemimg-ref-add").click()
    expect(panel.locator(".gemimg-ref-count")).to_contain_text("2/3 attached", timeout=20_000)
    expect(panel.locator(".gemimg-ref-message")).to_contain_text("added " + str(second))
    expect(panel.locator(".gemimg-ref-source input")).to_have_value("")
    expect(panel.locator(".gemimg-magic textarea")).to_have_value(re.compile(r"--ref .*--ref .*second\.png"))
    marks["settings_done"] = time.monotonic() - t0

    # -- one image
    panel.locator("button.gemimg-generate").click()
    result = panel.locator("img.gemimg-result-image")
    expect(result).to_be_visible(timeout=45_000)
    expect(panel.locator(".gemimg-message")).to_contain_text("Done: 1 image", timeout=45_000)
    width, height = result.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 0 and abs(width / height - 1344 / 768) < 0.02, (width, height)
    expect(panel.locator(".gemimg-detail-params")).to_contain_text("16:9 · 1344×768")
    expect(panel.locator("button.gemimg-generate")).to_be_enabled()
    expect(panel.locator(".gemimg-history-tile img").first).to_be_visible(timeout=10_000)
    marks["single_image"] = time.monotonic() - t0
    shoot(page, panel, ARTIFACTS / "panel-single.png")

    # -- a 2×2 sweep: temperature across, size down
    panel.locator(".gemimg-sweep-x-axis select").select_option("temperature")
    panel.locator(".gemimg-sweep-x-values input").fill("0.2,1.4")
    panel.locator(".gemimg-sweep-y-axis select").select_option("size")
    panel.locator(".gemimg-sweep-y-values input").fill("1:1,16:9")
    expect(panel.locator(".gemimg-plan")).to_contain_text("4 cells × 1 repeat = 4 requests")
    panel.locator("button.gemimg-generate").click()
    cells = panel.locator("button.gemimg-cell")
    expect(cells).to_have_count(4, timeout=20_000)
    expect(panel.locator(".gemimg-message")).to_contain_text("Done: 4 images", timeout=60_000)
    for i in range(4):
        expect(cells.nth(i)).to_have_class(re.compile(r"mod-success"))
    width, height = result.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 500 and height > 500, (width, height)
    cells.nth(3).click()
    expect(panel.locator("img.gemimg-detail-image")).to_be_visible(timeout=10_000)
    expect(panel.locator(".gemimg-detail-params")).to_contain_text("1.4 · 16:9")
    expect(panel.locator(".gemimg-magic textarea")).to_have_value(re.compile(r"--sweep temperature=0\.2,1\.4"))
    marks["sweep_grid"] = time.monotonic() - t0
    shoot(page, panel, ARTIFACTS / "panel-sweep.png")

    # -- narrow: the two columns stack, nothing overflows sideways
    page.set_viewport_size({"width": 760, "height": 1000})
    collapse = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if collapse.count():  # clicking the open sidebar tab collapses the sidebar
        collapse.first.click()
    expect(panel).to_be_visible()
    overflow = panel.evaluate(OVERFLOWING)
    assert not overflow, f"parts of the panel stick out sideways when narrow: {overflow}"
    shoot(page, panel, ARTIFACTS / "panel-narrow.png")
    marks["narrow"] = time.monotonic() - t0
    for name in ("panel-single", "panel-sweep", "panel-narrow"):
        with Image.open(io.BytesIO((ARTIFACTS / f"{name}.png").read_bytes())) as shot:
            print(f"[shot] {ARTIFACTS / name}.png {shot.size[0]}×{shot.size[1]}")


#: The rendered box of an image: [width, height] in CSS pixels.
BOX = "img => { const r = img.getBoundingClientRect(); return [r.width, r.height]; }"


def test_panel_images_keep_their_proportions_and_fit_at_700px(lab: Lab) -> None:
    """A 1:1 and a 9:16 image are shown at their own aspect ratio; at 700 px nothing sticks out."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with browser_page({"width": 1360, "height": 1000}, errors, "fail-aspect.png") as page:
        panel = open_panel(page, lab)
        panel.locator(".gemimg-prompt textarea").fill("A tall lighthouse on a cliff")
        result = panel.locator("img.gemimg-result-image")
        for label, (w, h) in (("1:1 · 1024×1024", (1024, 1024)), ("9:16 · 768×1344", (768, 1344))):
            panel.locator(".gemimg-size select").select_option(label=label)
            expect(panel.locator(".gemimg-size-shape")).to_contain_text(f"{w}×{h}")  # the kernel has the size
            expect(panel.locator(".gemimg-magic textarea")).to_have_value(re.compile("A tall lighthouse on a cliff"))
            panel.locator("button.gemimg-generate").click()
            expect(panel.locator(".gemimg-message")).to_contain_text("Done: 1 image", timeout=45_000)
            expect(result).to_have_js_property("naturalWidth", round(768 * w / max(w, h)), timeout=10_000)
            shown_w, shown_h = result.evaluate(BOX)
            assert shown_w > 100 and abs(shown_w / shown_h - w / h) < 0.02, (label, shown_w, shown_h)
            panel.locator(".gemimg-message").evaluate("el => el.scrollIntoView({block: 'start'})")
            shoot(page, panel, ARTIFACTS / f"panel-{label.split(' ')[0].replace(':', 'x')}.png")
        # 700 px wide with the file browser open: the panel's column is narrow, nothing may be cut off
        page.set_viewport_size({"width": 700, "height": 1000})
        browser_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='filebrowser']")
        if "lm-mod-current" not in (browser_tab.get_attribute("class") or ""):
            browser_tab.click()
        expect(page.locator("#filebrowser")).to_be_visible()
        page.wait_for_timeout(300)  # one layout pass after the resize
        overflow = panel.evaluate(OVERFLOWING)
        assert not overflow, f"parts of the panel stick out at 700 px with the file browser open: {overflow}"
        shown_w, shown_h = result.evaluate(BOX)
        assert abs(shown_w / shown_h - 768 / 1344) < 0.02, (shown_w, shown_h)
        shoot(page, panel, ARTIFACTS / "panel-700px.png")
    assert not errors, errors
    refresh_docs_images(("panel-1x1", "panel-9x16", "panel-700px"))
