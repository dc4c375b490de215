"""Helpers for the real-browser tests: JupyterLab on loopback, Chromium flags, memory, screenshots.

Follows the verified recipe in ``shared/reference/browser-testing.md``: isolated
Jupyter/IPython directories, ``127.0.0.1`` on a free port with
``port_retries=0``, a token, the news toast switched off through user
settings, and a clean stop through ``POST /api/shutdown`` (which also stops
the kernels) before anything is killed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
#: ``--headless`` comes from Playwright (``headless=True``); ``--user-data-dir`` must not be given.
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "gemimg-browser-test"
#: The status bar's kernel text; only "… | Idle" means the kernel is really usable
#: (the toolbar's execution indicator says idle before a kernel exists).
KERNEL_IDLE = re.compile(r"^Python 3 \(ipykernel\) \| Idle$")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"


#: Screenshots worth keeping go here when ``GEMIMG_UPDATE_DOCS=1``.
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
#: The kernels' environment: the built-in simulator, outputs beside the notebook, no key, no budget.
SIM_KERNEL_ENV: dict[str, str | None] = {
    "GEMIMG_BACKEND": "sim",
    "GEMIMG_OUTPUT_DIR": "gemimg_outputs",  # relative to the kernel: the notebook folder in tmp
    "TOAPIS_API_KEY": None,
    "GEMIMG_BASE_URL": None,
    "GEMIMG_MAX_COST_USD": None,
}


def browser_marks() -> list[Any]:
    """``pytestmark`` of a browser test module: marked, slow, and skipped (loudly) only without a browser."""
    import pytest

    reason = why_no_browser()
    return [pytest.mark.browser, pytest.mark.slow, pytest.mark.skipif(reason is not None, reason=reason or "")]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: ``make test`` sets this: there the browser tests must run, so a missing browser fails them instead of skipping.
REQUIRED = os.environ.get("GEMIMG_REQUIRE_BROWSER") == "1"


def why_no_browser() -> str | None:
    """``None`` when the browser tests can run (or must: ``GEMIMG_REQUIRE_BROWSER=1``), else why they cannot."""
    if REQUIRED:
        return None
    if not os.path.exists(CHROMIUM):
        return (
            f"!!! {CHROMIUM} is missing: the real-browser panel test is SKIPPED. "
            "Install Debian's chromium (scripts/ensure-chromium.sh does it; never `playwright install`)."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"!!! playwright is not importable ({exc}): the real-browser panel test is SKIPPED"
    return None


@dataclass
class Lab:
    """A running JupyterLab (``app="lab"``) or Notebook 7 (``app="notebook"``) server."""

    url: str
    token: str
    proc: subprocess.Popen[bytes]
    root: Path
    log: Path
    startup_s: float
    app: str = "lab"
    settings_dir: Path | None = None

    def notebook_url(self, name: str) -> str:
        """The notebook's URL (JupyterLab: with a fresh workspace, ``reset``: no tabs restored)."""
        if self.app == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def set_theme(self, name: str) -> None:
        """Choose the theme (``"JupyterLab Light"`` / ``"JupyterLab Dark"``) for pages loaded from now on."""
        assert self.settings_dir is not None
        (self.settings_dir / "themes.jupyterlab-settings").write_text(json.dumps({"theme": name}))


#: The module each front end runs as.
FRONT_ENDS = {"lab": "jupyterlab", "notebook": "notebook"}


@contextlib.contextmanager
def jupyter_lab(
    base: Path, root: Path, env: Mapping[str, str | None] | None = None, *, app: str = "lab"
) -> Iterator[Lab]:
    """Start JupyterLab (or Notebook 7, ``app="notebook"``) serving ``root``; stop it (and its kernels) afterwards.

    Parameters
    ----------
    base : Path
        A scratch directory for the isolated config, runtime and IPython dirs and the log.
    root : Path
        The server's root directory (the notebooks).
    env : mapping
        Extra environment for the server and its kernels; a ``None`` value removes a variable.
    app : str
        ``"lab"`` or ``"notebook"``; both read the user settings written here (news toast off, theme).
    """
    cfg = base / "jcfg"
    notif = cfg / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    full_env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(cfg),
        JUPYTER_RUNTIME_DIR=str(base / "rt"),
        JUPYTER_DATA_DIR=str(base / "data"),
        IPYTHONDIR=str(base / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        FRONT_ENDS[app],
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log_path = base / "lab.log"
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = t0 + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"JupyterLab did not start; see {log_path}") from None
                    time.sleep(0.1)
            yield Lab(url, TOKEN, proc, root, log_path, time.monotonic() - t0, app, notif)
        finally:
            _stop(proc, url)


def _stop(proc: subprocess.Popen[bytes], url: str) -> None:
    """Ask the server to shut down (kernels included); escalate only if it does not."""
    if proc.poll() is None:
        try:
            req = urllib.request.Request(f"{url}/api/shutdown?token={TOKEN}", method="POST", data=b"")
            urllib.request.urlopen(req, timeout=10).read()
        except OSError:
            pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class MemSampler(threading.Thread):
    """Peak summed RSS/PSS of some root processes and all their descendants."""

    def __init__(self, pids: list[int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self._halt = threading.Event()  # not `_stop`: that would shadow Thread._stop

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            procs: dict[int, psutil.Process] = {}
            for pid in self.pids:
                try:
                    root = psutil.Process(pid)
                    for p in [root, *root.children(recursive=True)]:
                        procs[p.pid] = p
                except psutil.NoSuchProcess:
                    pass
            rss = pss = 0
            for p in procs.values():
                try:
                    m = p.memory_full_info()
                    rss += m.rss
                    pss += getattr(m, "pss", m.rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)  # one sample takes well under a second; the wait still has a bound


@contextlib.contextmanager
def panel_lab(base: Path) -> Iterator[Lab]:
    """JupyterLab on the built-in simulator (:data:`SIM_KERNEL_ENV`), serving a copy of ``notebooks/panel.ipynb``."""
    root = base / "nb"
    root.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "notebooks" / "panel.ipynb", root / "panel.ipynb")
    with jupyter_lab(base, root, SIM_KERNEL_ENV) as server:
        yield server


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, with :data:`CHROME_ARGS`."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)


def new_page(playwright: Any, viewport: Mapping[str, int], errors: list[str]) -> tuple[Any, Any]:
    """A browser (close it when done) and a page of ``viewport`` size that adds its JavaScript errors to ``errors``."""
    browser = launch_chromium(playwright)
    page = browser.new_page(viewport=dict(viewport))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page


@contextlib.contextmanager
def browser_page(viewport: Mapping[str, int], errors: list[str], failure_shot: str) -> Iterator[Any]:
    """A page in a fresh Chromium (see :func:`new_page`); a failure inside saves ``ARTIFACTS/failure_shot``
    first, and the browser is closed whatever happened."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = new_page(p, viewport, errors)
        try:
            yield page
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / failure_shot))
            raise
        finally:
            browser.close()


def open_notebook(page: Any, lab: Lab, name: str) -> Any:
    """Open the notebook ``name`` and wait until its kernel really is idle; the locator that shows it idle."""
    from playwright.sync_api import expect

    page.goto(lab.notebook_url(name))
    if lab.app == "lab":
        idle = page.locator("#jp-main-statusbar").get_by_text(KERNEL_IDLE)
    else:  # Notebook 7 has no status bar: the toolbar's kernel name, then its execution indicator
        expect(page.locator(".jp-KernelName").first).to_have_text(re.compile("Python 3"), timeout=60_000)
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    expect(idle.or_(dialog).first).to_be_visible(timeout=60_000)
    if dialog.is_visible():  # seen once on a cold server
        dialog.locator("button.jp-mod-accept").click()
        expect(idle).to_be_visible(timeout=60_000)
    return idle


def cell(page: Any, index: int) -> Any:
    """The code cell ``index`` of a notebook page (0-based over its code cells; cell 0 is the markdown title)."""
    return page.locator(".jp-Notebook .jp-Cell").nth(index + 1)


def run_cell(page: Any, index: int) -> Any:
    """Select the cell (command mode) and run it with Shift+Enter; returns the cell."""
    target = cell(page, index)
    target.scroll_into_view_if_needed()
    target.locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Shift+Enter")
    return target


def run_all(page: Any) -> None:
    """Run > Run All Cells, through the menu as a person would."""
    page.locator(".lm-MenuBar-item", has_text="Run").click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()


def open_panel(page: Any, lab: Lab) -> Any:
    """Open ``panel.ipynb`` (see :func:`panel_lab`), run all its cells and wait for the panel; the panel's locator."""
    from playwright.sync_api import expect

    open_notebook(page, lab, "panel.ipynb")
    run_all(page)
    panel = page.locator(".jp-OutputArea-output .gemimg-panel")
    expect(panel).to_be_visible(timeout=60_000)
    return panel


def refresh_docs_images(names: Iterable[str], limit: int = 200_000) -> None:
    """With ``GEMIMG_UPDATE_DOCS=1``, copy these screenshots from :data:`ARTIFACTS` to :data:`DOCS_IMG`, shrunk."""
    if not os.environ.get("GEMIMG_UPDATE_DOCS"):
        return
    for name in names:
        size = shrink_png(ARTIFACTS / f"{name}.png", DOCS_IMG / f"{name}.png", limit=limit)
        print(f"[docs] {DOCS_IMG / name}.png {size / 1024:.0f} KB")


def shrink_png(src: Path, dest: Path, limit: int = 200_000) -> int:
    """Copy a screenshot to ``dest`` as a PNG of at most ``limit`` bytes (palette, then smaller).

    Returns the size written.
    """
    from PIL import Image

    with Image.open(src) as img:
        img.load()
        base = img.convert("RGB")
    data = b""
    for scale in (1.0, 0.9, 0.8, 0.7, 0.6):
        size = (round(base.width * scale), round(base.height * scale))
        frame = base if scale == 1.0 else base.resize(size, Image.Resampling.LANCZOS)
        for colors in (256, 128, 64):
            buf = io.BytesIO()
            frame.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
            data = buf.getvalue()
            if len(data) <= limit:
                break
        if len(data) <= limit:
            break
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return len(data)
