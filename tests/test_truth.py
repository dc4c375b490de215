"""Every number, id and path tells the truth (issue #26), through a real ``InteractiveShell`` on the simulator.

Paths: a report or a grid export writes only regular files; a folder gets the file inside it, and a
symbolic link, a FIFO or a missing folder is refused in one line and left as it was. Money is counted
at the simulator (``submits_accepted``) wherever it is involved.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from gemimg_jupyter.api.session import get_session, reset_session
from gemimg_jupyter.display.live import status_text
from gemimg_jupyter.domain.models import JobState

from .support import quick_settings, wait_for

_SIM: list[Any] = []


@pytest.fixture
def gem(ip: Any, tmp_output: Path, sim: Any) -> Iterator[Any]:
    """A shell with the extension loaded on a session over the ``sim`` fixture (it outlives session switches)."""
    reset_session(quick_settings(tmp_output, base_url=sim.base_url, poll_max=0.3))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    _SIM[:] = [sim]
    yield ip


def submits() -> int:
    """Paid requests the simulator accepted."""
    return int(_SIM[0].stats()["submits_accepted"])


def one_line(err: pytest.ExceptionInfo[UsageError]) -> str:
    text = str(err.value)
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


# ---------------------------------------------------------------- 1. paths


@pytest.fixture
def fx(gem: Any) -> Any:
    gem.run_cell_magic("gemimg", "-o fx --wait", "a paper-cut fox")
    return gem.user_ns["fx"]


def test_a_report_into_an_existing_folder_lands_inside_it(gem: Any, fx: Any, tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "somefolder"
    folder.mkdir()
    gem.run_line_magic("gemimg", f"report fx {folder}")
    assert folder.is_dir()
    written = list(folder.iterdir())
    assert [p.name for p in written] == [f"lineage_{fx.id}.html"]
    assert written[0].read_text(encoding="utf-8").startswith("<!")
    assert "report written to" in capsys.readouterr().out


def test_a_fifo_a_symlink_and_a_missing_folder_are_refused_and_left_untouched(
    gem: Any, fx: Any, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me", encoding="utf-8")
    link = tmp_path / "link.html"
    link.symlink_to(precious)
    dangling = tmp_path / "dangling.html"
    dangling.symlink_to(tmp_path / "nowhere.html")

    with pytest.raises(UsageError, match="FIFO") as err:
        gem.run_line_magic("gemimg", f"report fx {fifo}")
    assert "untouched" in one_line(err)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)

    for target in (link, dangling):
        with pytest.raises(UsageError, match="symbolic link") as err:
            gem.run_line_magic("gemimg", f"report fx {target}")
        one_line(err)
        assert target.is_symlink()
    assert precious.read_text(encoding="utf-8") == "keep me"
    assert not (tmp_path / "nowhere.html").exists()

    with pytest.raises(UsageError, match="does not exist") as err:
        gem.run_line_magic("gemimg", f"report fx {tmp_path / 'nope' / 'x.html'}")
    one_line(err)
    with pytest.raises(UsageError, match="cannot write|does not exist") as err:
        gem.run_line_magic("gemimg", "report fx /proc/nope/x.html")
    one_line(err)
    with pytest.raises(UsageError, match="no path given") as err:
        gem.run_line_magic("gemimg", "report fx ''")
    one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")) == []


def test_a_regular_file_is_replaced_and_the_default_folder_is_made(gem: Any, fx: Any, tmp_path: Path) -> None:
    old = tmp_path / "old.html"
    old.write_text("old", encoding="utf-8")
    gem.run_line_magic("gemimg", f"report fx {old}")
    assert old.is_file() and "old" != old.read_text(encoding="utf-8")
    gem.run_line_magic("gemimg", "report fx")
    assert (get_session().store.root / "reports" / f"lineage_{fx.id}.html").is_file()


def test_a_sweep_grid_export_follows_the_same_rules(gem: Any, tmp_path: Path) -> None:
    gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.9 -o sw --wait", "a lighthouse")
    sw = gem.user_ns["sw"]
    folder = tmp_path / "grids"
    folder.mkdir()
    (written,) = sw.save(folder)
    assert written.parent == folder and written.is_file()
    fifo = tmp_path / "grid.png"
    os.mkfifo(fifo)
    with pytest.raises(Exception, match="FIFO"):
        sw.save(fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(UsageError, match="FIFO"):
        gem.run_line_magic("gemimg", f"report sw {fifo}")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


# ---------------------------------------------------------------- 2. budget


def test_changing_the_budget_after_spending_keeps_what_was_spent(gem: Any, capsys: Any) -> None:
    gem.run_cell_magic("gemimg", "-o a --wait", "a lighthouse")
    gem.run_cell_magic("gemimg", "-o b --wait", "a harbour")
    spent = get_session().cost()["spent_usd"]
    price = gem.user_ns["a"].cost_usd
    assert spent > 0 and submits() == 2
    gem.run_line_magic("config", f"GemimgMagics.max_cost_usd = {spent + price / 2}")
    cost = get_session().cost()
    assert (cost["spent_usd"], cost["requests"]) == (spent, 2), "a new limit never resets what was spent"
    assert cost["left_usd"] == pytest.approx(price / 2, abs=1e-4)
    sent = submits()
    with pytest.raises(UsageError, match="budget"):
        gem.run_cell_magic("gemimg", "", "a third, too expensive")
    assert submits() == sent, "refused before any paid request"
    gem.run_line_magic("config", f"GemimgMagics.max_cost_usd = {spent + price * 5}")
    capsys.readouterr()
    gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.9 -o sw --wait", "a lighthouse")
    assert "of the budget left" in capsys.readouterr().out
    after = get_session().cost()
    assert after["spent_usd"] == pytest.approx(spent + 2 * price) and after["requests"] == 4 == submits()
    out = gem.run_line_magic("gemimg", "cost").text
    assert "over 4 request(s)" in out and "left)" in out


# ---------------------------------------------------------------- 3. references checked before paying


def test_a_missing_or_unreachable_reference_url_costs_nothing(gem: Any, sim: Any) -> None:
    for url, why in (
        (f"{sim.base_url}/files/missing.png", "answered HTTP 404"),
        ("http://no-such-host.invalid/fox.png", "cannot be reached"),
    ):
        with pytest.raises(UsageError, match=why) as err:
            gem.run_cell_magic("gemimg", f"--ref {url} -o x", "a fox like this one")
        assert "0 requests paid" in one_line(err)
        with pytest.raises(UsageError, match=why):
            gem.run_cell_magic("gemimg", f"--ref {url} --sweep temperature=0.2,0.9 -o y", "a fox like this one")
    with pytest.raises(UsageError, match=r"ftp:// is not supported") as err:
        gem.run_cell_magic("gemimg", "--ref ftp://example.com/fox.png -o x", "a fox")
    one_line(err)
    assert submits() == 0


def test_a_reachable_reference_url_is_sent(gem: Any) -> None:
    url = get_session().client.upload_image(_png())
    gem.run_cell_magic("gemimg", f"--ref {url} -o x --wait", "a fox like this one")
    assert gem.user_ns["x"].state.has_image and submits() == 1


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buf, format="PNG")
    return buf.getvalue()


class _PngServer:
    """A local HTTP server (127.0.0.1) serving one PNG at ``/fox.png``; it counts what it was asked."""

    def __init__(self, data: bytes) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                seen.append(f"{self.command} {self.path}")
                found = self.path == "/fox.png"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data) if found else 0))
                self.end_headers()
                if body and found:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_private_reference_url_is_fetched_here_and_uploaded_on_the_real_gateway(
    ip: Any, tmp_path: Path, capsys: Any
) -> None:
    """A session on the real gateway (played by a simulator on loopback): a --ref on 127.0.0.1 is fetched
    and uploaded; the submit carries the uploaded URL, never the loopback one; one line says so."""
    import json

    from gemimg_jupyter.domain.settings import Settings
    from gemimg_jupyter.sim import SimConfig, SimServer

    from .support import FAKE_KEY

    state = tmp_path / "gateway-tasks.jsonl"  # the simulator's record of every accepted submit, image_urls included
    gateway = SimServer(SimConfig(latency=(0.05, 0.2), queue_delay=(0.0, 0.02)), state_file=state)
    gateway.start()
    local = _PngServer(_png())
    try:
        settings = quick_settings(tmp_path / "out", backend="toapis", api_key=FAKE_KEY, base_url=gateway.base_url)
        assert isinstance(settings, Settings) and settings.resolved_backend == "toapis"
        reset_session(settings)
        ip.run_line_magic("load_ext", "gemimg_jupyter")
        capsys.readouterr()
        ip.run_cell_magic("gemimg", f"--ref {local.url}/fox.png -o x --wait", "a fox like this one")
        out = capsys.readouterr().out
        ip.run_cell_magic("gemimg", f"--sweep ref={local.url}/fox.png,none -o s --wait", "a fox")  # a ref= axis
        with pytest.raises(UsageError, match="answered HTTP 404") as err:  # a private URL that is missing: free
            ip.run_cell_magic("gemimg", f"--ref {local.url}/gone.png -o y", "a fox")
        assert "0 requests paid" in one_line(err)
        stats = gateway.stats()
    finally:
        local.close()
        gateway.stop()
    [note] = [line for line in out.splitlines() if "private address" in line]
    assert note == (
        f"gemimg: reference {local.url}/fox.png is on a private address (127.0.0.1) the gateway cannot reach: "
        f"fetched here ({len(_png()):,} bytes) and uploaded instead"
    )
    assert ip.user_ns["x"].state is JobState.DONE and stats["uploads"] == 1  # uploaded once (by hash), used twice
    sent = [json.loads(line)["req"]["image_urls"] for line in state.read_text().splitlines()]
    assert len(sent) == stats["submits_accepted"] == 3  # x, and the sweep's two cells; the 404 paid nothing
    assert all(u.startswith(gateway.base_url + "/uploads/") for urls in sent for u in urls) and sorted(
        map(len, sent)
    ) == [0, 1, 1]
    assert all(not line.startswith("HEAD") for line in local.seen)  # fetched, never handed on to be checked
    assert local.seen.count("GET /fox.png") == 2  # the cell's and the sweep's (each cell line fetches its own)


@pytest.mark.parametrize(
    ("url", "private"),
    [
        ("http://127.0.0.1:8000/x.png", "127.0.0.1"), ("http://127.8.9.10/x.png", "127.8.9.10"),
        ("http://localhost/x.png", "127.0.0.1"), ("http://[::1]/x.png", "::1"),
        ("http://10.1.2.3/x.png", "10.1.2.3"), ("http://172.16.0.1/x.png", "172.16.0.1"),
        ("http://172.31.255.254/x.png", "172.31.255.254"), ("http://192.168.1.20/x.png", "192.168.1.20"),
        ("http://169.254.169.254/x.png", "169.254.169.254"), ("http://[fd12::1]/x.png", "fd12::1"),
        ("http://[fe80::1]/x.png", "fe80::1"), ("http://[::ffff:10.0.0.1]/x.png", "::ffff:10.0.0.1"),
        ("http://172.32.0.1/x.png", None), ("https://8.8.8.8/x.png", None), ("http://[2001:4860::8888]/x", None),
        ("http://no-such-host.invalid/x.png", None),  # unknown: the check before paying reports it
    ],
)  # fmt: skip
def test_which_reference_addresses_the_gateway_cannot_reach(url: str, private: str | None) -> None:
    from gemimg_jupyter.gateway.references import private_address

    assert private_address(url) == private


def test_a_private_reference_url_is_sent_as_it_is_to_the_simulator(gem: Any, sim: Any) -> None:
    local = _PngServer(_png())
    try:
        gem.run_cell_magic("gemimg", f"--ref {local.url}/fox.png -o x --wait", "a fox like this one")
    finally:
        local.close()
    assert sim.stats()["uploads"] == 0 and submits() == 1 and "GET /fox.png" not in local.seen


# ---------------------------------------------------------------- 4. edits wait for their parent


def test_the_edit_chain_of_docs_editing_runs_as_run_all_without_wait(gem: Any) -> None:
    from gemimg_jupyter.api.lineage import ledger_cbid

    gem.run_cell_magic("gemimg", "-o a", "A ceramic teapot on a wooden table")
    assert not gem.user_ns["a"].done(), "the cell returned while its job runs"
    gem.run_cell_magic("gemimg", "--edit a -o b", "Make the teapot cobalt blue")
    gem.run_cell_magic("gemimg", "--edit b -o c", "Add steam rising from the spout")
    a, b, c = (gem.user_ns[n] for n in "abc")
    assert c.result(60).state.has_image
    assert b.parent["cbid"] == ledger_cbid(a) and c.parent["cbid"] == ledger_cbid(b)
    assert len(get_session().lineage(c)) == 3 and submits() == 3


def test_an_edit_of_a_parent_that_fails_ends_failed_free_with_the_parents_reason(gem: Any, sim: Any) -> None:
    sim.configure(fail_rate=1.0, latency=(30, 30))  # the parent runs until the simulator's clock moves
    gem.run_cell_magic("gemimg", "-o a", "a kite")
    gem.run_cell_magic("gemimg", "--edit a -o b", "a red kite")  # the cell returns at once, b queued behind a
    a, b = gem.user_ns["a"], gem.user_ns["b"]
    assert not a.done() and b.state is JobState.QUEUED and b.waiting_for == a.id
    assert f"waiting for job {a.id}" in status_text(b)
    wait_for(lambda: a.task_id, 10, "the parent's submit")
    sim.advance(60)
    assert b.wait(30) and a.state is JobState.FAILED
    assert b.state is JobState.FAILED and b.error is not None
    assert re.search(rf"job {a.id} ended failed: .*; edit {b.id} was not sent \(0 requests paid\)", b.error), b.error
    assert submits() == 1, "the edit was never paid"
    with pytest.raises(UsageError, match=r"failed") as err:  # an edit of an image that already ended without one
        gem.run_cell_magic("gemimg", "--edit a -o c", "a red kite")
    one_line(err)
    sim.configure(fail_rate=0.0)
    assert submits() == 1 and "c" not in gem.user_ns


# ---------------------------------------------------------------- 6. names and indexes


def test_o_refuses_a_module_or_a_non_result_unless_forced(gem: Any) -> None:
    gem.run_cell("import json as gi\ndf = [1, 2]")
    for name, what in (("gi", "imported module"), ("df", "list"), ("load_ext", "magic")):
        with pytest.raises(UsageError, match=what) as err:
            gem.run_cell_magic("gemimg", f"-o {name}", "a fox")
        assert "--force" in one_line(err)
    assert gem.user_ns["df"] == [1, 2] and submits() == 0
    gem.run_cell_magic("gemimg", "-o df --force --wait", "a fox")
    gem.run_cell_magic("gemimg", "-o df --wait", "a fox at night")  # a result may replace a result
    assert gem.user_ns["df"].state.has_image


def test_sweep_indexes_work_like_python_and_out_of_range_says_the_range(gem: Any) -> None:
    gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.6,0.9 -o fox --wait", "a fox")
    fox = gem.user_ns["fox"]
    gem.run_cell_magic("gemimg", "--edit fox[-1] -o last --wait", "with snow")
    assert gem.user_ns["last"].parent["cbid"] == fox[2].cbid
    with pytest.raises(UsageError, match=r"fox has 3 image\(s\); valid indexes are 0 to 2 \(or -1 to -3\)") as err:
        gem.run_cell_magic("gemimg", "--edit fox[7] -o x", "with snow")
    one_line(err)


# ---------------------------------------------------------------- 7. small words


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("GEMIMG_RATE_TIER", "gold", "GEMIMG_RATE_TIER='gold' is not a rate tier (default, vip, svip); using 'default'"),
        ("GEMIMG_GRID_THEME", "neon", "GEMIMG_GRID_THEME='neon' is not a grid theme (auto, light, dark); using 'auto'"),
        ("GEMIMG_SIM_LATENCY", "fast", "GEMIMG_SIM_LATENCY='fast' should be seconds as 'min,max'"),
        ("GEMIMG_MAX_COST_USD", "lots", "GEMIMG_MAX_COST_USD='lots' is not a number of dollars (0 or more); using a budget of $0"),
    ],
)  # fmt: skip
def test_a_bad_value_in_the_environment_names_its_variable_and_commands_keep_working(
    ip: Any, monkeypatch: pytest.MonkeyPatch, sim: Any, capsys: Any, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("GEMIMG_BASE_URL", sim.base_url)
    monkeypatch.setenv("GEMIMG_BACKEND", "sim")
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    cost = ip.run_line_magic("gemimg", "cost")
    ip.run_line_magic("gemimg", "jobs")
    err = capsys.readouterr().err
    [line] = [ln for ln in err.splitlines() if variable in ln]  # one line, naming the variable
    assert line == f"gemimg: {says}" or line.startswith(f"gemimg: {says}")
    settings = get_session().settings
    assert "spent this session" in cost.text and settings.rate_tier == "default" and settings.grid_theme == "auto"
    assert settings.sim_options == {} and settings.max_cost_usd == (0.0 if variable == "GEMIMG_MAX_COST_USD" else None)
    if variable == "GEMIMG_MAX_COST_USD":  # an unreadable budget pays nothing: refused before any request
        with pytest.raises(UsageError, match="budget"):
            ip.run_cell_magic("gemimg", "-o x", "a fox")
        assert sim.stats()["submits_accepted"] == 0
    else:
        ip.run_cell_magic("gemimg", "-o x --wait", "a fox")
        assert ip.user_ns["x"].state is JobState.DONE


def test_a_bad_backend_in_the_environment_stops_with_one_line_naming_it(
    ip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where requests (and money) go is never guessed: one line, and every command that needs a session says it."""
    monkeypatch.setenv("GEMIMG_BACKEND", "simulator")
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("gemimg", "cost")
    assert one_line(err) == "GEMIMG_BACKEND='simulator' is not known; use one of auto, toapis, sim"


# ---------------------------------------------------------------- 5. each job's messages go to its own output


#: A second virtualenv with ipykernel 6.29 over the main one's packages (built once, kept; ``make clean`` drops it).
KERNEL6 = Path(__file__).resolve().parents[1] / ".venv-k6"
KERNEL6_PIN = "ipykernel==6.29.*"
#: What pip says when it cannot reach a package registry (the only case the ipykernel 6 run is skipped for).
_OFFLINE = ("No matching distribution", "Could not find a version", "NewConnectionError", "Network is unreachable")


def _kernel6_python() -> Path:
    """``.venv-k6/bin/python``: ipykernel 6.29 in its own site-packages, everything else (this package, IPython,
    pyzmq …) from the main virtualenv through a ``.pth`` file; made once (about 2 s), then reused."""
    import subprocess
    import sys
    import sysconfig

    python = KERNEL6 / "bin" / "python"
    stamp = KERNEL6 / f".installed-{KERNEL6_PIN}"
    if stamp.exists() and python.exists():
        return python
    import shutil

    shutil.rmtree(KERNEL6, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(KERNEL6)], check=True, timeout=120)
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = Path(subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True).stdout.strip())
    main = sysconfig.get_paths()["purelib"]  # addsitedir also reads its .pth files (the editable install)
    (own / "gemimg-main-venv.pth").write_text(f"import site; site.addsitedir({main!r})\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", KERNEL6_PIN]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        shutil.rmtree(KERNEL6, ignore_errors=True)
        if any(word in done.stderr for word in _OFFLINE):
            pytest.skip(f"pip cannot reach a package registry for {KERNEL6_PIN}: {done.stderr.strip()[-200:]}")
        raise AssertionError(done.stderr)
    stamp.write_text("ok\n", encoding="utf-8")
    return python


@pytest.fixture
def kernel6(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The name of a kernelspec (in a temporary ``JUPYTER_PATH``) that runs ipykernel 6.29."""
    import json

    spec = tmp_path / "jupyter" / "kernels" / "gemimg-ipykernel6"
    spec.mkdir(parents=True)
    argv = [str(_kernel6_python()), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python (ipykernel 6.29)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parents[1]))
    return spec.name


@pytest.mark.notebook
@pytest.mark.parametrize("kernel", ["ipykernel7", "ipykernel6"])
def test_a_size_note_lands_in_its_own_cells_output_in_a_real_kernel(
    tmp_path: Path, kernel: str, request: pytest.FixtureRequest
) -> None:
    """The job lands while a later cell prints and waits: its note is in its own cell, named, and nowhere else,
    on ipykernel 7 (this virtualenv's) and on ipykernel 6.29 (a second virtualenv, see :func:`_kernel6_python`)."""
    import nbformat

    from .test_notebooks import make_notebooks

    kernel_name = "python3" if kernel == "ipykernel7" else request.getfixturevalue("kernel6")

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%load_ext gemimg_jupyter\nimport gemimg_jupyter as gi\n"
            "gi.get_session().sim.configure(small_image_rate=1.0)"
        ),
        nbformat.v4.new_code_cell("%%gemimg -o fox --size 1:1\na paper-cut fox"),
        nbformat.v4.new_code_cell('print("a later cell")\nfox.wait(120)\nprint("fox", fox.state.value, fox.id)'),
        nbformat.v4.new_code_cell("%gemimg wait"),
        nbformat.v4.new_code_cell("import ipykernel\nprint('ipykernel', ipykernel.__version__)"),
    ]
    env = make_notebooks.sim_env(tmp_path / "out", GEMIMG_SIM_LATENCY="0.5,1")
    make_notebooks.execute(nb, cwd=tmp_path, env=env, kernel_name=kernel_name)

    def texts(cell: Any) -> str:
        return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)

    assert f"ipykernel {kernel[-1]}." in texts(nb.cells[-1]), texts(nb.cells[-1])
    later = texts(nb.cells[2])
    assert "a later cell" in later and "fox done" in later, later
    job_id = later.split()[-1]
    own = texts(nb.cells[1])
    assert f"job {job_id}: the gateway returned 512×512 pixels instead of the requested 1024×1024" in own, own
    for i, cell in enumerate(nb.cells):
        if i != 1:
            assert "instead of the requested" not in texts(cell), f"the note leaked into cell {i}"
    assert not [o for c in nb.cells for o in c.outputs if o.get("name") == "stderr"], "nothing on stderr"


@pytest.mark.notebook
def test_docs_editing_chain_runs_as_run_all_in_a_real_kernel(tmp_path: Path) -> None:
    """The three cells of docs/editing.md, verbatim and without ``--wait``, give the 3-step lineage."""
    import nbformat

    from .test_notebooks import ROOT, make_notebooks

    doc = (ROOT / "docs" / "editing.md").read_text(encoding="utf-8")
    block = doc.split("## Edit chains", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    chain = [cell.strip() for cell in block.split("\n\n") if cell.strip()]
    assert len(chain) == 3 and all("--wait" not in cell for cell in chain)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext gemimg_jupyter"),
        *(nbformat.v4.new_code_cell(cell) for cell in chain),
        nbformat.v4.new_code_cell("%gemimg wait"),
        nbformat.v4.new_code_cell(
            "from gemimg_jupyter.api.lineage import ledger_cbid\n"
            "print('steps', len(c.lineage()), b.parent['cbid'] == ledger_cbid(a), c.parent['cbid'] == ledger_cbid(b))"
        ),
        nbformat.v4.new_code_cell("%gemimg lineage c"),
    ]
    make_notebooks.execute(nb, cwd=tmp_path, env=make_notebooks.sim_env(tmp_path / "out"))
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in nb.cells[5].outputs)
    assert "steps 3 True True" in text, text
    assert not [o for c in nb.cells for o in c.outputs if o.output_type == "error"]


# ---------------------------------------------------------------- 7. small words (rest)


def test_a_unicode_dash_an_unknown_model_and_a_replaced_result_each_say_one_line(gem: Any, capsys: Any) -> None:
    for dash in ("\u2014", "\u2013", "\u2212"):
        with pytest.raises(UsageError, match=r"did you mean --size\?") as err:
            gem.run_cell_magic("gemimg", f"{dash}size 16:9 -o x", "a fox")
        assert f"U+{ord(dash):04X}" in one_line(err)
    with pytest.raises(UsageError, match=r"did you mean -n\?"):
        gem.run_cell_magic("gemimg", "\u2014n 2", "a fox")
    with pytest.raises(UsageError, match=r"did you mean nano-banana\?.*or an alias: .*nano-banana-pro") as err:
        gem.run_cell_magic("gemimg", "--model nano-bananas -o x", "a fox")
    one_line(err)
    assert submits() == 0 and "x" not in gem.user_ns
    gem.run_cell_magic("gemimg", "-o fox --wait", "a fox")
    capsys.readouterr()
    gem.run_cell_magic("gemimg", "-o fox --wait", "a fox")  # the same cell again (a cache hit): nothing to say
    assert "replaces" not in capsys.readouterr().out
    first = gem.user_ns["fox"]
    gem.run_cell_magic("gemimg", "-o fox --wait", "a fox at night")
    said = [line for line in capsys.readouterr().out.splitlines() if "replaces" in line]
    assert said == [
        f"gemimg: -o fox replaces the previous result in fox (job {first.id}; it stays in the ledger: %gemimg history)"
    ]


def test_a_moved_image_is_a_gemimg_error_with_its_path_and_cannot_be_picked(gem: Any, fx: Any) -> None:
    from gemimg_jupyter.domain.errors import GemimgError

    path = Path(fx.path)
    moved = path.with_name("elsewhere" + path.suffix)
    path.rename(moved)
    with pytest.raises(GemimgError, match=re.escape(str(path))):
        fx.image  # noqa: B018
    with pytest.raises(UsageError, match=r"no longer at .*moved or deleted") as err:
        gem.run_line_magic("gemimg", "pick fx")
    one_line(err)
    assert not fx.picked
    moved.rename(path)
    gem.run_line_magic("gemimg", "pick fx")
    assert fx.picked and fx.image.size == fx.params.pixel_size


# ---------------------------------------------------------------- 2. numbers agree (rest)


def test_two_overlapping_sweeps_and_the_cost_add_up(gem: Any, capsys: Any) -> None:
    gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.9 -o s1", "a lighthouse")
    gem.run_cell_magic("gemimg", "--sweep temperature=0.2,0.9,1.4 -o s2", "a lighthouse")  # 2 shared with s1
    gem.run_line_magic("gemimg", "wait")
    s1, s2 = (gem.user_ns[n] for n in ("s1", "s2"))
    price = s1.jobs[0].params.price_usd
    assert "2 requests, 0 cached" in capsys.readouterr().out
    assert s1.progress_text() == f"2/2 done, ${2 * price:.2f}"
    assert s2.progress_text() == f"3/3 done (2 cached), ${price:.2f}", "the plan line said 2 cached, ≈ one price"
    cost = get_session().cost()
    assert (cost["requests"], cost["cache_hits"]) == (3, 2) == (submits(), 2)
    assert cost["spent_usd"] == pytest.approx(3 * price) and cost["saved_usd"] == pytest.approx(2 * price)


def test_cancel_all_drop_shows_cancelled_not_failed(gem: Any, sim: Any) -> None:
    sim.configure(latency=(30, 30))
    gem.run_cell_magic("gemimg", "--sweep temperature=0.1,0.3,0.5,0.7 -o s3", "a harbour")
    gem.run_line_magic("gemimg", "cancel all --drop")
    s3 = gem.user_ns["s3"]
    assert s3.wait(30)
    text = s3.progress_text()
    assert text.startswith("0/4 done, 4 cancelled, $") and "failed" not in text, text


# ---------------------------------------------------------------- 6. ids after a restart


_EARLIER = """
import os, sys
from IPython.core.interactiveshell import InteractiveShell
from gemimg_jupyter.api.lineage import ledger_cbid
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "gemimg_jupyter")
ip.run_cell_magic("gemimg", "--sweep temperature=0.2,0.9 -o s --wait", "a lighthouse")
s = ip.user_ns["s"]
print("IDS", s.id, *(f"{j.id},{j.task_id},{ledger_cbid(j)}" for j in s.jobs))
"""


def test_ids_from_an_earlier_process_keep_working_and_its_numbers_agree(ip: Any, tmp_output: Path, capsys: Any) -> None:
    import subprocess
    import sys

    env = {**os.environ, "GEMIMG_BACKEND": "sim", "GEMIMG_OUTPUT_DIR": str(tmp_output), "GEMIMG_SIM_LATENCY": "0.2,0.4"}
    env.pop("TOAPIS_API_KEY", None)
    done = subprocess.run([sys.executable, "-c", _EARLIER], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("IDS ")]
    old_sweep, *images = line.split()[1:]
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    for image in images:
        short, task, cbid = image.split(",")
        for ident in (short, task, cbid):
            assert ip.run_line_magic("gemimg", f"lineage {ident}") is not None
            ip.run_line_magic("gemimg", f"report {ident}")
            ip.run_line_magic("gemimg", f"pick {ident}")
            assert get_session().info(ident)["file"]
    with pytest.raises(UsageError, match=rf"'{old_sweep}' is a sweep of an earlier session") as err:
        ip.run_line_magic("gemimg", f"lineage {old_sweep}")
    assert all(image.split(",")[0] in one_line(err) for image in images)
    ip.run_line_magic("gemimg", f"report {old_sweep}")  # rebuilt from its rows (tests/test_restart.py: every id)
    assert f"sweep_{old_sweep}.html" in capsys.readouterr().out
    capsys.readouterr()
    ip.run_cell_magic("gemimg", "--sweep temperature=0.2,0.9 -o s --wait", "a lighthouse")  # the same cell, again
    assert "2 requests, 2 cached, ≈ $0.00" in capsys.readouterr().out
    s = ip.user_ns["s"]
    assert s.progress_text() == "2/2 done (2 cached), $0.00" and all(j.cached for j in s.jobs)
    ip.run_line_magic("gemimg", f"report {s.id}")
    assert "report written to" in capsys.readouterr().out
    with pytest.raises(UsageError, match=rf"'{s.id}' is a sweep, not one image"):
        ip.run_line_magic("gemimg", f"lineage {s.id}")
