"""The report's page without a browser: its policy names exactly its inline script and style, its JSON
block cannot be closed or turned into markup by user text, and the larger pictures stop at a budget.

(The same page in Chromium from ``file://``: ``test_report_browser.py``.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from gemimg_jupyter.api.compare import Comparison
from gemimg_jupyter.api.report_page import comparison_data, page
from gemimg_jupyter.api.session import Session

from .support import quick_settings

HOSTILE = "</script><script>alert(1)</script><!-- & \u2028 \u2029 ]]>"


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def test_the_policy_allows_exactly_the_inline_script_and_style_by_hash() -> None:
    text = page("t", "<p>body</p>", {"cells": [], "prompt": HOSTILE})
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert policy is not None
    directives = dict(d.strip().split(" ", 1) for d in policy.group(1).split(";"))
    style = re.search(r"<style>(.*?)</style>", text, re.S)
    code = re.search(r"<script type='module'>(.*?)</script>", text, re.S)
    assert style is not None and code is not None
    assert directives == {
        "default-src": "'none'",
        "img-src": "data:",
        "style-src": _hash(style.group(1)),
        "script-src": _hash(code.group(1)),
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    assert "unsafe" not in text.split("</head>")[0]
    # without a comparison there is no script, and the policy allows none
    bare = page("t", "<p>body</p>")
    assert "<script" not in bare and "script-src" not in bare


def test_user_text_in_the_json_block_stays_data() -> None:
    text = page("t", "", {"cells": [{"params": {"prompt": HOSTILE}}]})
    block = text.split('<script type="application/json" id="gemimg-data">', 1)[1].split("</script>", 1)[0]
    assert not set("<>&") & set(block)
    assert "\u2028" not in block and "\u2029" not in block
    assert json.loads(block)["cells"][0]["params"]["prompt"] == HOSTILE
    assert text.lower().count("<script") == 2 and text.count("</script>") == 2


def test_larger_pictures_stop_at_the_budget_and_links_are_relative(tmp_path: Path) -> None:
    with Session(quick_settings(tmp_path / "out")) as sess:
        sweep = sess.sweep("a lamp", temperature=[0.2, 0.9])
        assert sweep.wait(30)
        comparison = Comparison.of_sweep(sweep.plan, sweep.jobs, sweep_id=sweep.id)
        base = tmp_path / "out" / "reports"
        every = comparison_data(comparison, base)
        one = len(every["full"]["0"])
        some = comparison_data(comparison, base, budget=one + 10)
        none = comparison_data(comparison, base, budget=0)
    assert sorted(every["full"]) == ["0", "1"] and every["full"]["0"].startswith("data:image/jpeg;base64,")
    assert list(some["full"]) == ["0"] and none["full"] == {}
    assert every["read_only"] is True
    for cell, job in zip(every["cells"], sweep.jobs, strict=True):
        assert cell["href"].startswith("../images/") and (base / cell["path"]).resolve() == Path(job.path).resolve()
