"""The live experience in real browsers: JupyterLab and Notebook 7, headless Debian Chromium, Playwright.

One server per front end for the module (JupyterLab, then Notebook 7), the
built-in simulator as backend with images that take about three seconds.
A notebook written here is opened and its cells are run one by one, as a
person would:

* a ``%%gemimg`` cell shows its status line, then the image, in the same
  (single) output area;
* a 2×2 sweep shows its grid filling in (the running grid says how far it is
  and how to refresh it for $0) and then finished;
* a cell waiting with ``--wait`` is interrupted: one line says the jobs keep
  running, and the image still arrives;
* the notebook is saved and the page reloaded: every image is still there;
* in the dark theme, a status line saved while running (the page reloaded
  mid-run) says how to bring it up to date, and its colours keep 4.5:1.

Screenshots (light and dark) go to ``artifacts/browser/``;
``GEMIMG_UPDATE_DOCS=1`` also refreshes ``docs/img/live-*.png``.
Skipped (loudly) only when ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gemimg_jupyter.display import INTERRUPT_LINE, STALE_NOTE

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
from .support import wait_for

pytestmark = browser_marks()

#: The cells, in order; the test runs them by index.
CELLS = [
    "%load_ext gemimg_jupyter",
    "%%gemimg --size 1:1 -o fox\nA paper-cut fox in an autumn forest, soft daylight, <b>not bold</b>",
    "%%gemimg --sweep temperature=0.2,1.4 --sweep size=1:1,9:16\nA paper-cut owl on a branch",
    "%%gemimg --wait --size 16:9\nA lighthouse at dusk, long exposure",
    "%%gemimg --size 9:16\nA tall glass of lemonade on a sunny windowsill",
]
LOAD, SINGLE, SWEEP, WAITING, DARK = range(len(CELLS))
#: Notebook 7.6 raises this on every page load, with an empty notebook and no extension of ours loaded.
NOTEBOOK7_STARTUP_ERROR = "Cannot read properties of undefined (reading 'schema')"


def live_notebook(path: Path) -> None:
    nb = new_notebook(cells=[new_markdown_cell("# live outputs"), *(new_code_cell(src) for src in CELLS)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module", params=["lab", "notebook"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    app = request.param
    base = tmp_path_factory.mktemp(f"live-{app}")
    root = base / "nb"
    root.mkdir()
    live_notebook(root / "live.ipynb")
    env = {**SIM_KERNEL_ENV, "GEMIMG_SIM_LATENCY": "3.5,4.5"}  # slow enough to see (and interrupt) a running job
    with jupyter_lab(base, root, env, app=app) as lab:
        print(f"\n[{app}] pid={lab.proc.pid} {lab.url} ready in {lab.startup_s:.2f}s")
        yield lab


# ---------------------------------------------------------------- page helpers


def wait_executed(page: Any, target: Any, timeout: float = 60_000) -> None:
    from playwright.sync_api import expect

    expect(target.locator(".jp-InputPrompt").first).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout)


def outputs(target: Any) -> Any:
    return target.locator(".jp-OutputArea-output")


def shot(page: Any, target: Any, name: str, shots: list[str]) -> None:
    """Screenshot one cell (input and output) to artifacts/browser/<name>.png.

    The viewport grows to hold the whole cell clear of the sticky toolbars, then is put back.
    """
    viewport = page.viewport_size
    height = int(target.evaluate("el => el.getBoundingClientRect().height"))
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height + 400)})
    target.evaluate("el => el.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(150)  # one layout pass after the resize; the screenshot itself is not asserted on
    target.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size(viewport)
    shots.append(name)


def save_until(page: Any, lab: Lab, saved: Any, timeout: float = 20.0) -> None:
    """Press Ctrl+S until the notebook on disk satisfies ``saved(nb)``."""
    deadline = time.monotonic() + timeout
    while True:
        page.keyboard.press("Escape")  # command mode: Ctrl+S saves from there in both front ends
        page.keyboard.press("Control+s")
        page.wait_for_timeout(300)
        if saved(nbformat.read(lab.root / "live.ipynb", as_version=4)):
            return
        assert time.monotonic() < deadline, "the notebook on disk never got the expected state"


CONTRAST = """el => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
                                   .reduce((acc, v, i) => acc + v * [0.2126, 0.7152, 0.0722][i], 0);
  let bg = null;
  for (let n = el; n && !bg; n = n.parentElement) {
    const c = rgb(getComputedStyle(n).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) bg = c;
  }
  bg = bg || [255, 255, 255];
  const fg = rgb(getComputedStyle(el).color);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return {ratio: (a + 0.05) / (b + 0.05), fg: getComputedStyle(el).color, bg: `rgb(${bg.join(',')})`,
          connected: el.isConnected};
}"""


def contrast(part: Any) -> dict[str, Any]:
    """``CONTRAST`` of ``part``, measured on an element still in the page: a running status line is drawn
    again about once a second, and an element replaced during the measure has no computed colours."""
    measured: dict[str, Any] = {}

    def attached() -> bool:
        measured.update(part.evaluate(CONTRAST))
        return bool(measured["connected"])

    wait_for(attached, 20, "a status line element that stays in the page while it is measured")
    return measured


# ---------------------------------------------------------------- the test


def test_live_outputs_in_a_real_front_end(server: Lab) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    marks: dict[str, float] = {}
    shots: list[str] = []
    errors: list[str] = []
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser, page = new_page(p, {"width": 1100, "height": 900}, errors)
        try:
            drive(page, server, shots, marks, t0)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"live-{server.app}-fail.png"))
            raise
        finally:
            browser.close()
    print(f"\n[timing {server.app}] " + " ".join(f"{k}={v:.1f}s" for k, v in marks.items()))
    if server.app == "notebook":  # Notebook 7.6's own start-up error, on an empty notebook too (not ours)
        errors = [e for e in errors if e != NOTEBOOK7_STARTUP_ERROR]
    assert not errors, errors
    refresh_docs_images(shots, limit=120_000)


def drive(page: Any, lab: Lab, shots: list[str], marks: dict[str, float], t0: float) -> None:
    from playwright.sync_api import expect

    app = lab.app
    lab.set_theme("JupyterLab Light")
    open_notebook(page, lab, "live.ipynb")
    marks["kernel_idle"] = time.monotonic() - t0
    wait_executed(page, run_cell(page, LOAD))

    # -- one image: the status line, then the image, in the same single output
    single = run_cell(page, SINGLE)
    status = outputs(single).locator(".gemimg-status")
    expect(status).to_be_visible(timeout=30_000)
    expect(status).to_contain_text(re.compile(r"(queued|submitt|in_progress).*job"))
    expect(status).to_contain_text("if this line is stale, re-run the cell")
    quoted = status.locator(".gemimg-prompt-cut")
    expect(quoted).to_have_attribute("title", re.compile("<b>not bold</b>$"))  # escaped: text, not markup
    assert status.locator("b", has_text="not bold").count() == 0
    assert outputs(single).count() == 1
    shot(page, single, f"live-{app}-status-light", shots)
    image = outputs(single).locator("img.gemimg-image")
    expect(image).to_be_visible(timeout=30_000)
    expect(status).to_have_count(0)
    assert outputs(single).count() == 1, "the image must replace the status line, not add an output"
    alt = image.get_attribute("alt") or ""
    assert alt.startswith("1:1 image 1024×1024: A paper-cut fox") and "<b>not bold</b>" in alt, alt
    w, h = image.evaluate("img => [img.getBoundingClientRect().width, img.getBoundingClientRect().height]")
    assert w > 100 and abs(w / h - 1.0) < 0.02, (w, h)
    shot(page, single, f"live-{app}-image-light", shots)
    marks["single"] = time.monotonic() - t0

    # -- a 2×2 sweep: the grid fills in, then is final
    sweep = run_cell(page, SWEEP)
    grid = outputs(sweep).locator("img.gemimg-image")
    expect(grid).to_be_visible(timeout=30_000)
    note = outputs(sweep).get_by_text(re.compile(r"\d/4 done.*re-run the cell"))
    expect(note).to_be_visible(timeout=10_000)  # the running grid says how far it is
    expect(note).to_have_count(0, timeout=60_000)  # … and the final one does not
    expect(grid).to_have_attribute("alt", re.compile(r"^comparison grid, 4/4 done"))
    # two outputs: the plan printed before anything is sent, and the grid, updated in place
    assert outputs(sweep).count() == 2 and "4 requests" in outputs(sweep).first.inner_text()
    shot(page, sweep, f"live-{app}-grid-light", shots)
    marks["sweep"] = time.monotonic() - t0

    # -- interrupt a waiting cell: one line, and the job keeps running to its image
    waiting = run_cell(page, WAITING)
    expect(outputs(waiting).locator(".gemimg-status")).to_be_visible(timeout=30_000)
    page.keyboard.press("Escape")
    page.keyboard.press("i")
    page.keyboard.press("i")
    stopped = waiting.get_by_text(INTERRUPT_LINE)
    expect(stopped).to_be_visible(timeout=30_000)
    expect(stopped).to_have_count(1)
    shot(page, waiting, f"live-{app}-interrupt-light", shots)
    expect(outputs(waiting).locator("img.gemimg-image")).to_be_visible(timeout=30_000)
    expect(stopped).to_have_count(0, timeout=10_000)  # not left under the finished image
    marks["interrupt"] = time.monotonic() - t0

    # -- save, reload: every saved output is still there
    def has_images(nb: Any) -> bool:
        return all(
            any("data:image/png;base64," in o.get("data", {}).get("text/html", "") for o in nb.cells[i + 1].outputs)
            for i in (SINGLE, SWEEP, WAITING)
        )

    save_until(page, lab, has_images)
    open_notebook(page, lab, "live.ipynb")
    for index in (SINGLE, SWEEP, WAITING):
        expect(outputs(cell(page, index)).locator("img").first).to_be_visible(timeout=20_000)
    marks["reload"] = time.monotonic() - t0

    # -- dark theme: a status line saved mid-run, then reloaded, says how to refresh it; colours keep 4.5:1
    lab.set_theme("JupyterLab Dark")
    open_notebook(page, lab, "live.ipynb")
    expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1, timeout=20_000)
    dark = run_cell(page, DARK)
    status = outputs(dark).locator(".gemimg-status")
    expect(status).to_be_visible(timeout=30_000)
    for part in (status.locator("b").first, status.locator(".gemimg-stale-note"), status):
        measured = contrast(part)
        assert measured["ratio"] >= 4.5, measured
    # saved while running (the ticker keeps the notebook dirty, so look at the file itself)
    save_until(page, lab, lambda nb: STALE_NOTE in json.dumps(nb.cells[DARK + 1].outputs))
    open_notebook(page, lab, "live.ipynb")  # the reloaded page has forgotten this output's display id
    frozen = outputs(cell(page, DARK)).locator(".gemimg-status")
    expect(frozen).to_contain_text("if this line is stale, re-run the cell: finished images come from the cache for $0")
    shot(page, cell(page, DARK), f"live-{app}-stale-dark", shots)
    for index, name in ((SINGLE, "image"), (SWEEP, "grid")):
        shot(page, cell(page, index), f"live-{app}-{name}-dark", shots)
    dark = run_cell(page, DARK)  # the re-run the line asks for
    expect(outputs(dark).locator("img.gemimg-image")).to_be_visible(timeout=30_000)
    marks["dark"] = time.monotonic() - t0
    lab.set_theme("JupyterLab Light")
