"""Every number, id and path tells the truth (issue #26), through a real ``InteractiveShell`` on the simulator.

Paths: a report or a grid export writes only regular files; a folder gets the file inside it, and a
symbolic link, a FIFO or a missing folder is refused in one line and left as it was. Money is counted
at the simulator (``submits_accepted``) wherever it is involved.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from gemimg_jupyter.api.session import get_session, reset_session

from .conftest import quick_settings


@pytest.fixture
def gem(ip: Any, tmp_output: Path) -> Iterator[Any]:
    """A shell with the extension loaded on a fast simulator session."""
    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    yield ip


def submits() -> int:
    return int(get_session().sim.stats()["submits_accepted"])


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
