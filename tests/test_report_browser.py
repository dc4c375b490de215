"""A sweep's HTML report in a real browser: headless Debian Chromium, driven by Playwright, from ``file://``.

The report of a 2×2 sweep (made on the simulator, with a ``<script>`` in the
prompt) is opened from disk with every request recorded and routed: the only
request is the file itself, nothing reaches the network, the console stays
clean, four thumbnails decode, the reproducing ``%%gemimg`` cell is shown and
the prompt's ``<script>`` is text, not a script.

Skipped (loudly) only when ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.api.session import Session

from .browser_support import ARTIFACTS, launch_chromium, why_no_browser
from .support import quick_settings

SKIP_REASON = why_no_browser()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]

PROMPT = "a fox <script>document.title='pwned'</script> & a <b>hare</b>"


def test_a_sweep_report_opens_offline_with_no_request_and_no_console_error(tmp_path: Path) -> None:
    from playwright.sync_api import Route, sync_playwright

    with Session(quick_settings(tmp_path / "out")) as sess:
        sweep = sess.sweep(PROMPT, temperature=[0.2, 0.9], size=["1:1", "16:9"])
        assert sweep.wait(30) and all(j.state.has_image for j in sweep.jobs)
        sweep[3].pick(note="best")
        report = sweep.save_report()
        task_ids = [j.task_id for j in sweep.jobs]
    url = report.resolve().as_uri()

    requests: list[str] = []
    routed: list[str] = []
    problems: list[str] = []

    def route(r: Route) -> None:
        routed.append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            r.abort()

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context(offline=True)
            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(url, wait_until="load")
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=10_000)
            sizes: list[list[int]] = page.eval_on_selector_all(
                "table.grid img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])"
            )
            reproduce = page.inner_text("pre.reproduce")
            title = page.title()
            scripts = page.evaluate("document.scripts.length")
            stars = page.locator(".star").count()
            body = page.inner_text("body")
            shot: Any = page.screenshot(full_page=True)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "report-2x2.png").write_bytes(shot)
        finally:
            browser.close()

    network = [u for u in requests if not u.startswith(("data:", url))]
    assert network == [], f"the report made network requests: {network}"
    assert [u for u in routed if u != url] == []
    assert problems == []
    assert len(sizes) == 4 and all(w > 0 and h > 0 for w, h in sizes)
    assert reproduce.startswith("%%gemimg ") and "--sweep temperature=0.2,0.9" in reproduce
    assert "--sweep size=1:1,16:9" in reproduce and reproduce.endswith(PROMPT)
    assert scripts == 0 and title != "pwned"
    assert "<script>document.title='pwned'</script>" in body and "<b>hare</b>" in body
    assert stars == 1
    assert all(t in body for t in task_ids)
