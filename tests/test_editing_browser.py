"""The panel's "Edit this image" and pick toggle in a real browser: JupyterLab + headless Debian Chromium.

Opens ``notebooks/panel.ipynb`` on the built-in simulator, generates one image,
presses *Edit this image* (the prompt must take the keyboard focus, the
reproducing cell must gain ``--edit``), types the change and generates the
edit, then picks it: the toggle turns into ``★ picked`` and the history stars
the edit and marks its parent with ``✎1``. The ledger is then read from this
process to check that the edit names its parent.

Skipped (loudly) only when ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from gemimg_jupyter.draw.images import read_provenance
from gemimg_jupyter.ledger.store import Store

from .browser_support import ARTIFACTS, Lab, browser_marks, new_page, open_panel, panel_lab

pytestmark = browser_marks()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with panel_lab(tmp_path_factory.mktemp("lab-edit")) as server:
        yield server


def test_edit_this_image_focuses_the_prompt_and_the_pick_stars_the_history(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser, page = new_page(p, {"width": 1360, "height": 1000}, errors)
        try:
            panel = open_panel(page, lab)
            prompt = panel.locator(".gemimg-prompt textarea")
            message = panel.locator(".gemimg-message")
            magic = panel.locator(".gemimg-magic textarea")

            prompt.fill("A ceramic teapot on a wooden table")
            # the kernel has the whole prompt once the reproducing cell (written kernel-side) shows it
            expect(magic).to_have_value(re.compile("A ceramic teapot on a wooden table"), timeout=10_000)
            panel.locator("button.gemimg-generate").click()
            expect(message).to_contain_text("Done: 1 image", timeout=45_000)
            edit = panel.locator("button.gemimg-detail-edit")
            expect(edit).to_be_visible()

            edit.click()
            expect(prompt).to_be_focused(timeout=10_000)
            expect(prompt).to_have_value("")
            expect(panel.locator(".gemimg-edit-note")).to_contain_text("Editing")
            expect(magic).to_have_value(re.compile(r"^%%gemimg .*--edit [0-9a-f]{6}"))
            page.keyboard.type("Make the teapot cobalt blue")
            expect(panel.locator(".gemimg-plan")).to_contain_text("1 request")
            expect(magic).to_have_value(re.compile("Make the teapot cobalt blue"), timeout=10_000)
            panel.locator("button.gemimg-generate").click()
            expect(message).to_contain_text("Done: 1 image", timeout=45_000)
            expect(panel.locator(".gemimg-detail-params")).to_contain_text("cobalt blue")

            pick = panel.locator(".gemimg-detail-pick")
            expect(pick).to_have_text(re.compile("☆ pick"))
            pick.click()
            expect(pick).to_have_text(re.compile("★ picked"), timeout=10_000)
            captions = panel.locator("button.gemimg-history-open")
            expect(captions.nth(0)).to_have_text(re.compile("^★ "), timeout=10_000)
            expect(captions.nth(1)).to_have_text(re.compile("^✎1 "))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            panel.screenshot(path=str(ARTIFACTS / "panel-edit.png"))
        finally:
            browser.close()
    assert not errors, errors

    store = Store(lab.root / "gemimg_outputs")
    try:
        done = sorted(store.rows(states=("done",)), key=lambda r: r.created)
        assert len(done) == 2
        root, edit_row = done
        assert edit_row.params["parent"]["cbid"] == root.cbid
        prov = read_provenance(edit_row.path or "")
        assert prov["parent"]["cbid"] == root.cbid and "note" in prov["pick"]
    finally:
        store.close()
