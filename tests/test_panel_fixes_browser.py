"""The panel's fixes of issue #24 in a real browser: JupyterLab + headless Debian Chromium, via Playwright.

* pick and edit act only on the image shown: after an edit run, the pick stars the new image (read
  back from the ledger), and while a sweep runs with no cell chosen they are hidden;
* editing ends after the edit's run; with the sweep builder set, the note next to Generate says that
  Generate runs one edit per cell;
* a sweep's grid takes the panel's width, and "Compare" opens the comparison view under it;
* at 700, 1,000 and 1,600 px nothing sticks out of the panel and no text is cut; every text has a
  contrast of at least 4.5:1 against what is behind it, in the light and the dark theme (computed
  colours, measured in the page).

Screenshots go to ``artifacts/browser/``; ``GEMIMG_UPDATE_DOCS=1`` also refreshes ``docs/img/panel-fixed-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from gemimg_jupyter.ledger.picks import Picks
from gemimg_jupyter.ledger.store import Store

from .browser_support import ARTIFACTS, Lab, browser_marks, browser_page, open_panel, panel_lab, refresh_docs_images
from .test_panel_browser import OVERFLOWING, shoot

pytestmark = browser_marks()

#: Texts in the panel whose contrast against their effective background is under 4.5:1 (WCAG AA).
#: Disabled controls are exempt (WCAG 1.4.3); each text's colour is blended over the backgrounds
#: behind it, ancestors' opacity included.
LOW_CONTRAST = """panel => {
  const rgba = s => { const m = s.match(/rgba?\\(([^)]+)\\)/); if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, below) => { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + below[i] * (1 - a)).concat([1]); };
  const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = el => { const layers = []; let opacity = 1;
    for (let e = el; e; e = e.parentElement) { const cs = getComputedStyle(e); opacity *= parseFloat(cs.opacity);
      const bg = rgba(cs.backgroundColor); if (bg[3] > 0) layers.push(bg); if (bg[3] >= 1) break; }
    let c = [255, 255, 255, 1]; for (const l of layers.reverse()) c = over(l, c); return [c, opacity]; };
  const out = [];
  for (const el of panel.querySelectorAll('*')) {
    if (!el.getClientRects().length || el.closest('textarea,select,input,option,[disabled],.mod-disabled')) continue;
    const own = [...el.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim()).map(n => n.textContent.trim()).join(' ');
    if (!own) continue;
    const cs = getComputedStyle(el); if (cs.visibility !== 'visible') continue;
    const [bg, opacity] = background(el); const fg = rgba(cs.color); fg[3] *= opacity;
    const shown = over(fg, bg); const [a, b] = [lum(shown), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) out.push(`${ratio.toFixed(2)}:1 "${own.slice(0, 40)}" ${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ${cs.color} on rgb(${bg.slice(0, 3).map(Math.round)})`);
  }
  return out.slice(0, 12);
}"""

#: Texts cut off: an element whose own text is wider (or taller) than its box while its overflow hides it.
CUT_TEXT = """panel => [...panel.querySelectorAll('*')]
  .filter(el => el.getClientRects().length && !el.closest('textarea,select,input,option'))
  .filter(el => [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
  .filter(el => { const cs = getComputedStyle(el);
    return (cs.overflowX !== 'visible' && el.scrollWidth > el.clientWidth + 1)
        || (cs.overflowY === 'hidden' && el.scrollHeight > el.clientHeight + 1); })
  .slice(0, 8)
  .map(el => `"${el.textContent.trim().slice(0, 40)}" ${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ${el.scrollWidth}>${el.clientWidth}`)"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with panel_lab(tmp_path_factory.mktemp("lab-fixes")) as server:
        yield server


def test_pick_and_edit_follow_the_image_shown_and_editing_ends_after_its_run(lab: Lab) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    with browser_page({"width": 1360, "height": 1000}, errors, "fail-fixes.png") as page:
        panel = open_panel(page, lab)
        drive_edit_and_sweep(page, panel, expect)
    assert not errors, errors

    store = Store(lab.root / "gemimg_outputs")
    try:
        done = sorted(store.rows(states=("done",)), key=lambda r: r.created)
        root, edit = done[0], done[1]
        assert edit.params["parent"]["cbid"] == root.cbid
        picked = Picks(store).cbids()
    finally:
        store.close()
    assert picked == {edit.cbid}, "the pick after the edit run starred another image than the one shown"
    refresh_docs_images(("panel-fixed-edit-note", "panel-fixed-compare"))


def drive_edit_and_sweep(page: Any, panel: Any, expect: Any) -> None:
    prompt = panel.locator(".gemimg-prompt textarea")
    magic = panel.locator(".gemimg-magic textarea")
    message = panel.locator(".gemimg-message")
    edit, pick = panel.locator("button.gemimg-detail-edit"), panel.locator(".gemimg-detail-pick")
    note = panel.locator(".gemimg-generate-note")

    prompt.fill("A ceramic teapot on a wooden table")
    expect(magic).to_have_value(re.compile("A ceramic teapot on a wooden table"), timeout=10_000)
    panel.locator("button.gemimg-generate").click()
    expect(message).to_contain_text("Done: 1 image", timeout=45_000)
    expect(edit).to_be_visible()
    edit.click()
    expect(panel.locator(".gemimg-edit-note")).to_contain_text("Editing")
    prompt.fill("Make the teapot cobalt blue")  # (that Edit focuses the prompt is test_editing_browser's)

    # the sweep builder set while editing: the note next to Generate says what Generate will do
    panel.locator(".gemimg-sweep-x-axis select").select_option("temperature")
    panel.locator(".gemimg-sweep-x-values input").fill("0.2,1.4")
    expect(note).to_be_visible(timeout=10_000)
    expect(note).to_contain_text(re.compile(r"Editing [0-9a-f]{6} with the sweep set: Generate runs 2 edits"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shoot(page, panel, ARTIFACTS / "panel-fixed-edit-note.png")
    panel.locator(".gemimg-sweep-x-axis select").select_option(label="— none —")
    expect(note).to_be_hidden(timeout=10_000)

    # the edit's run: the buttons are hidden until its image shows, editing ends, the pick stars the edit
    expect(magic).to_have_value(re.compile(r"--edit [0-9a-f]{6}[^\n]*\nMake the teapot cobalt blue"), timeout=10_000)
    panel.locator("button.gemimg-generate").click()
    expect(message).to_contain_text("Done: 1 image", timeout=45_000)
    expect(panel.locator(".gemimg-detail-params")).to_contain_text("cobalt blue")
    expect(panel.locator(".gemimg-edit-note")).to_be_hidden()
    expect(magic).not_to_have_value(re.compile("--edit"))
    expect(pick).to_have_text(re.compile("☆ pick"))
    pick.click()
    expect(pick).to_have_text(re.compile("★ picked"), timeout=10_000)
    expect(panel.locator("button.gemimg-history-open").nth(0)).to_contain_text("★", timeout=10_000)

    # a sweep: no stale edit/pick while no cell is chosen; the grid spans the panel; Compare opens the view
    prompt.fill("A lighthouse at dusk")
    panel.locator(".gemimg-sweep-x-axis select").select_option("temperature")
    panel.locator(".gemimg-sweep-x-values input").fill("0.2,1.4")
    panel.locator(".gemimg-sweep-y-axis select").select_option("size")
    panel.locator(".gemimg-sweep-y-values input").fill("1:1,16:9")
    expect(panel.locator(".gemimg-plan")).to_contain_text("4 requests", timeout=10_000)
    panel.locator("button.gemimg-generate").click()
    expect(panel.locator("button.gemimg-cell")).to_have_count(4, timeout=20_000)
    expect(edit).to_be_hidden()
    expect(pick).to_be_hidden()
    expect(message).to_contain_text("Done: 4 images", timeout=60_000)
    expect(edit).to_be_hidden()
    grid_w = panel.locator("img.gemimg-result-image").evaluate("img => img.getBoundingClientRect().width")
    inner_w = panel.evaluate("el => el.clientWidth")
    assert grid_w > 0.85 * (inner_w - 16), (grid_w, inner_w)
    panel.locator("button.gemimg-compare-open").click()
    view = panel.locator(".gemimg-compare-box .gemimg-compare")
    expect(view).to_be_visible(timeout=20_000)
    expect(view.locator("img").first).to_be_visible(timeout=20_000)
    view.scroll_into_view_if_needed()
    shoot(page, panel, ARTIFACTS / "panel-fixed-compare.png")


@pytest.mark.parametrize("theme", ["JupyterLab Light", "JupyterLab Dark"])
def test_nothing_cut_or_overflowing_and_every_text_readable(lab: Lab, theme: str) -> None:
    """At 700 (file browser open), 1,000 and 1,600 px: no overflow, no cut text; contrast ≥ 4.5:1 everywhere."""
    from playwright.sync_api import expect

    lab.set_theme(theme)
    short = "dark" if "Dark" in theme else "light"
    errors: list[str] = []
    try:
        with browser_page({"width": 1600, "height": 1000}, errors, f"fail-fixes-{short}.png") as page:
            panel = open_panel(page, lab)
            panel.locator(".gemimg-prompt textarea").fill("A paper boat on a puddle, a long prompt that wraps")
            panel.locator(".gemimg-sweep-x-axis select").select_option("temperature")
            panel.locator(".gemimg-sweep-x-values input").fill("0.2,1.4")
            expect(panel.locator(".gemimg-plan")).to_contain_text("2 requests", timeout=10_000)
            panel.locator("button.gemimg-generate").click()
            expect(panel.locator(".gemimg-message")).to_contain_text("Done: 2 images", timeout=60_000)
            panel.locator("button.gemimg-cell").nth(1).click()
            expect(panel.locator("button.gemimg-detail-edit")).to_be_visible(timeout=10_000)
            panel.locator("button.gemimg-detail-edit").click()  # the edit note and "stop editing" show too
            expect(panel.locator(".gemimg-edit-note")).to_be_visible()
            expect(panel.locator(".gemimg-history-tile").first).to_be_visible(timeout=10_000)
            problems: dict[str, Any] = {}
            for width in (1600, 1000, 700):
                page.set_viewport_size({"width": width, "height": 1000})
                if width == 700:  # the file browser open: the narrowest panel
                    tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='filebrowser']")
                    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
                        tab.click()
                    expect(page.locator("#filebrowser")).to_be_visible()
                page.wait_for_function(
                    "el => el.getBoundingClientRect().width <= window.innerWidth", arg=panel.element_handle()
                )
                page.wait_for_timeout(300)  # one layout pass after the resize
                for name, check in (("overflow", OVERFLOWING), ("cut", CUT_TEXT), ("contrast", LOW_CONTRAST)):
                    found = panel.evaluate(check)
                    if found:
                        problems[f"{name} at {width} px"] = found
                shoot(page, panel, ARTIFACTS / f"panel-fixed-{short}-{width}.png")
    finally:
        lab.set_theme("JupyterLab Light")
    assert not errors, errors
    assert not problems, "\n".join(f"{where}: {found}" for where, found in problems.items())
    refresh_docs_images((f"panel-fixed-{short}-700",))
