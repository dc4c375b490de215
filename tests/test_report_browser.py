"""The offline reports in a real browser: headless Debian Chromium, driven by Playwright, from ``file://``.

The report of a 2×2 sweep (made on the simulator, with a ``<script>`` and a ``</script>`` in the
prompt) is opened from disk with every request recorded and routed, at 1,400 px and at 400 px (a
phone). The only request is the file itself; the Content-Security-Policy allows exactly the one
inline script, by its hash, and no violation is reported; the console stays clean. Then, as a
person would, in the report's comparison view: a tile opens the larger picture with its
parameters; two selected tiles are swiped (the visible split follows the slider) and zoomed (both
images move together); an arrow key moves the selection. At 400 px the page never scrolls sideways
and side by side stacks. The static table below the view still has every cell and the reproducing
``%%gemimg`` cell, and the prompt's ``<script>`` is text everywhere. With JavaScript off, the
table shows every cell and a line says why there is no view.

The lineage table (``%gemimg lineage``) is drawn at 1,200 px with a long prompt and must not
overflow its box. ``GEMIMG_UPDATE_DOCS=1`` refreshes ``docs/img/report-*.png``. Skipped (loudly)
only when ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.api.session import Session
from gemimg_jupyter.display.renderers import lineage_output

from .browser_support import ARTIFACTS, launch_chromium, refresh_docs_images, why_no_browser
from .support import quick_settings

SKIP_REASON = why_no_browser()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]

PROMPT = "a fox <script>document.title='pwned'</script> & a <b>hare</b> </script><!--"
#: Set before the page's own code runs (Playwright's init scripts are not the page's, so the CSP allows them).
WATCH_CSP = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI), true);"
)


@dataclass
class Made:
    report: Path
    lineage: Path
    task_ids: list[str]
    models: list[str]
    lineage_html: str


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    out = tmp_path_factory.mktemp("report") / "out"
    with Session(quick_settings(out)) as sess:
        sweep = sess.sweep(PROMPT, temperature=[0.2, 0.9], size=["1:1", "16:9"])
        assert sweep.wait(30) and all(j.state.has_image for j in sweep.jobs)
        sweep[3].pick(note="best")
        edited = sweep[0].edit("make the fox " + "very " * 40 + "orange")
        assert edited.wait(30) and edited.state.has_image
        markup = lineage_output(sess.lineage(edited))._repr_mimebundle_()[0]["text/html"]
        yield Made(
            sweep.save_report(),
            sess.save_report(edited),
            [str(j.task_id) for j in sweep.jobs],
            [j.params.model for j in sweep.jobs],
            markup,
        )


class Offline:
    """A page that records every request (and lets only ``url`` through), console errors and CSP violations."""

    def __init__(self, browser: Any, url: str, width: int, *, scripts: bool = True) -> None:
        self.url = url
        self.requests: list[str] = []
        self.problems: list[str] = []
        context = browser.new_context(
            offline=True, viewport={"width": width, "height": 900}, java_script_enabled=scripts
        )
        context.route("**/*", self._route)
        context.add_init_script(WATCH_CSP)
        self.page = page = context.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        page.goto(url, wait_until="load")
        page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=10_000)

    def _route(self, route: Any) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            route.abort()

    def check_clean(self) -> None:
        """Nothing but the document was requested, nothing was refused by the policy, nothing went wrong."""
        assert [u for u in self.requests if u != self.url] == [], "the report made requests"
        assert self.page.evaluate("window.__violations") == []
        assert self.problems == []

    def shot(self, name: str) -> None:
        """A full-page screenshot in ``artifacts/browser/``, the mouse moved off the tiles (no tooltip)."""
        self.page.mouse.move(0, 0)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@contextmanager
def opened(report: Path, width: int, *, scripts: bool = True) -> Iterator[Offline]:
    """The report in headless Chromium, offline, ``width`` px wide (``scripts=False``: JavaScript off)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield Offline(browser, report.resolve().as_uri(), width, scripts=scripts)
        finally:
            browser.close()


def _policy_and_scripts(page: Any) -> tuple[str, list[dict[str, str]]]:
    policy = page.get_attribute("meta[http-equiv='Content-Security-Policy']", "content")
    scripts = page.evaluate("[...document.scripts].map(s => ({type: s.type, text: s.textContent}))")
    return policy, scripts


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _split(page: Any) -> float:
    """Where the swipe shows B from, as a fraction of the pane (from the divider's box, as drawn)."""
    return float(
        page.evaluate(
            """() => { const p = document.querySelector('.gc-compare .gc-pane').getBoundingClientRect();
                 const d = document.querySelector('.gc-divider').getBoundingClientRect();
                 return (d.left + d.width / 2 - p.left) / p.width; }"""
        )
    )


def _transforms(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(".gc-compare img.gc-layer", "els => els.map(e => getComputedStyle(e).transform)")
    )


def test_a_sweep_report_is_one_file_with_one_hashed_script_and_escaped_text(made: Made) -> None:
    with opened(made.report, 1400) as view:
        page = view.page
        policy, scripts = _policy_and_scripts(page)
        page.locator("details.cells > summary").click()  # the static table, folded by the script
        sizes = page.eval_on_selector_all("table.grid img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
        reproduce = page.inner_text("pre.reproduce")
        title = page.title()
        body = page.inner_text("body")
        stars = page.locator("figure .star").count()
        view.check_clean()

    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    assert "unsafe" not in policy and "http" not in policy and "*" not in policy
    code = [s for s in scripts if s["type"] != "application/json"]
    assert len(code) == 1 and code[0]["type"] == "module"
    assert directives["script-src"] == f"'sha256-{_sha256(code[0]['text'])}'"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/=]+'", directives["style-src"])
    assert len(sizes) == 4 and all(w > 0 and h > 0 for w, h in sizes)
    assert reproduce.startswith("%%gemimg ") and "--sweep temperature=0.2,0.9" in reproduce
    assert "--sweep size=1:1,16:9" in reproduce and reproduce.endswith(PROMPT)
    assert title != "pwned"
    assert "<script>document.title='pwned'</script>" in body and "<b>hare</b>" in body
    assert stars == 1
    assert all(t in body for t in made.task_ids)


@pytest.mark.parametrize("width", [1400, 400])
def test_the_report_comparison_works_offline(made: Made, width: int) -> None:
    from playwright.sync_api import expect

    with opened(made.report, width) as view:
        page = view.page
        tiles = page.locator(".gc-tile")
        expect(tiles).to_have_count(4)
        expect(page.locator(".gc-tile img.gc-thumb[src^='data:']")).to_have_count(4)
        assert page.locator(".gc-title").inner_text().startswith("sweep ")

        tiles.nth(1).click()  # the full-size picture and its caption
        full = page.locator(".gc-lightbox img.gc-full")
        expect(full).to_be_visible()
        page.wait_for_function("() => document.querySelector('.gc-lightbox img.gc-full').naturalWidth > 320")
        caption = page.locator(".gc-lightbox .gc-caption").inner_text()
        view.shot(f"report-{width}-full")
        page.keyboard.press("Escape")
        expect(page.locator(".gc-lightbox")).to_be_hidden()

        page.keyboard.press("ArrowLeft")  # the arrows move the selection (from the tile opened last)
        expect(page.locator(".gc-tile.gc-current")).to_have_attribute("data-index", "0")

        tiles.nth(0).locator(".gc-select").click()
        tiles.nth(3).locator(".gc-select").click()
        expect(page.locator(".gc-compare")).to_be_visible()
        before = _split(page)
        page.locator("input.gc-swipe").fill("20")
        after = _split(page)
        clip = page.eval_on_selector(".gc-compare img.gc-top", "e => e.style.clipPath")
        page.locator(".gc-compare").scroll_into_view_if_needed()
        view.shot(f"report-{width}-swipe")

        page.locator("button.gc-mode[data-mode='side']").click()
        panes = page.eval_on_selector_all(
            ".gc-compare .gc-pane",
            "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.bottom]; })",
        )
        pane = page.locator(".gc-compare .gc-pane").first.bounding_box()
        page.mouse.move(pane["x"] + pane["width"] / 3, pane["y"] + pane["height"] / 3)
        page.mouse.wheel(0, -200)
        page.wait_for_function("() => getComputedStyle(document.querySelector('.gc-layer')).transform !== 'none'")
        zoomed = _transforms(page)
        page.locator(".gc-compare").scroll_into_view_if_needed()
        view.shot(f"report-{width}-side")
        tiles.nth(3).hover()  # the parameters' tooltip stays inside the view
        expect(page.locator(".gc-tip")).to_be_visible()
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        view.check_clean()

    for needle in (made.task_ids[1], made.models[1], "$0.05", "temperature", "0.9", "size", "1:1"):
        assert needle in caption
    assert abs(before - 0.5) < 0.05 and abs(after - 0.2) < 0.05, (before, after)
    assert clip == "inset(0px 0px 0px 20%)"
    assert len(zoomed) == 2 and zoomed[0] == zoomed[1] and zoomed[0] != "none"
    assert float(zoomed[0].split("(")[1].split(",")[0]) > 1  # the scale
    if width == 400:
        assert scroll_width <= 400
        (_, _, a_bottom), (_, b_top, _) = panes
        assert b_top >= a_bottom - 1  # side by side stacks: B below A
    else:
        assert panes[1][0] > panes[0][0] and abs(panes[1][1] - panes[0][1]) < 1  # B beside A
    refresh_docs_images([f"report-{width}-side"] + ([f"report-{width}-swipe"] if width > 400 else []))


def test_a_lineage_report_fits_a_phone_and_runs_its_comparison(made: Made) -> None:
    from playwright.sync_api import expect

    with opened(made.lineage, 400) as view:
        page = view.page
        expect(page.locator(".gc-tile")).to_have_count(2)
        labels = page.locator(".gc-xlabel").all_inner_texts()
        page.locator("details.cells > summary").click()
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        view.check_clean()
    assert labels == ["step=1", "step=2"]
    assert scroll_width <= 400


def test_without_scripts_the_report_shows_every_cell_and_says_why_there_is_no_view(made: Made) -> None:
    with opened(made.report, 400, scripts=False) as view:
        page = view.page
        note = page.locator("#gemimg-compare").inner_text()
        shown = page.locator("table.grid img").evaluate_all(
            "els => els.filter(e => e.getBoundingClientRect().width > 0).length"
        )
        tiles = page.locator(".gc-tile").count()
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        requests = [u for u in view.requests if u != view.url]
    assert "needs JavaScript" in note and tiles == 0
    assert shown == 4  # the folded table stays open
    assert scroll_width <= 400 and requests == []


def test_the_lineage_table_wraps_at_1200_px(made: Made) -> None:
    """``%gemimg lineage``'s HTML in a box as wide as a notebook's output area at 1,200 px: nothing sticks out."""
    from playwright.sync_api import sync_playwright

    markup = made.lineage_html
    assert "very very" in markup
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            # JupyterLab's output area at a 1,200 px window: ~1,100 px wide, and Lab fixes tables' layout
            page.set_content(
                "<style>body{margin:0} table{table-layout:fixed}</style>"
                f"<div id='out' style='width:1100px;overflow:auto'>{markup}</div>"
            )
            box = page.evaluate(
                """() => { const o = document.getElementById('out');
                   const right = Math.max(...[...o.querySelectorAll('table, img, td')].map(e => e.getBoundingClientRect().right));
                   return [o.scrollWidth, o.clientWidth, right]; }"""
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lineage-1200.png"), full_page=True)
        finally:
            browser.close()
    scroll_width, client_width, right = box
    assert scroll_width <= client_width and right <= 1100
