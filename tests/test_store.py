"""Ledger and image files: safe names, atomic writes, provenance, two processes on one directory."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from gemimg_jupyter.draw.images import read_provenance
from gemimg_jupyter.ledger.store import Store, safe_filename, slug


def png(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 45), color).save(buf, format="PNG")
    return buf.getvalue()


def test_file_names_are_readable_and_safe() -> None:
    name = safe_filename({"prompt": "A paper-cut fox", "temperature": 0.8, "size": "16:9"}, "ab12cd34", 0)
    assert name.endswith("_a-paper-cut-fox_t0.8_16x9_ab12cd.png")
    evil = safe_filename({"prompt": "../../etc/passwd\x00<script>\n" + "z" * 500, "size": "1:1"}, "../..", 0)
    assert "/" not in evil and "\x00" not in evil and "<" not in evil and ".." not in evil.removesuffix(".png")
    assert len(evil) < 90
    assert slug("日本語だけ") == "image"


def test_write_is_atomic_and_refuses_traversal(tmp_output: Path) -> None:
    store = Store(tmp_output)
    path = store.write_image(png(), "x.png", {"params": {"prompt": "fox"}, "task_id": "t1"})
    assert path.parent == store.images_dir and read_provenance(path)["task_id"] == "t1"
    again = store.write_image(png(), "x.png", {"task_id": "t2"})
    assert again != path and again.name == "x-2.png"
    for bad in ("../escape.png", "/abs.png", "a/b.png", ".."):
        with pytest.raises(ValueError, match="unsafe file name"):
            store.write_bytes(b"x", bad)
    assert not list(store.images_dir.glob(".tmp-*"))
    assert not (tmp_output.parent / "escape.png").exists()


def test_rows_lookup_and_totals(tmp_output: Path) -> None:
    store = Store(tmp_output)
    store.add(cbid="c1", key="k1", repeat=0, params={"prompt": "fox"}, backend="sim", price_usd=0.05)
    assert store.lookup("k1") is None  # not done yet
    assert [r.cbid for r in store.pending("sim")] == ["c1"]
    path = store.write_image(png(), "f.png", {})
    store.update("c1", state="done", task_id="t1", path=str(path), cost_usd=0.05, finished=1.0)
    hit = store.lookup("k1")
    assert hit is not None and hit.task_id == "t1"
    path.unlink()
    assert store.lookup("k1") is None  # a row never points at a missing file
    assert store.totals()["spent"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="cannot update"):
        store.update("c1", key="other")


def test_find_by_cbid_task_id_or_short_id_prefers_finished_rows(tmp_output: Path) -> None:
    store = Store(tmp_output)
    store.add(cbid="aaaa-abc123", key="k1", repeat=0, params={"prompt": "fox"}, backend="sim", price_usd=0.05)
    store.add(cbid="bbbb-abc123", key="k2", repeat=0, params={"prompt": "owl"}, backend="sim", price_usd=0.05)
    store.update("aaaa-abc123", state="done", task_id="tsk_1", path=str(store.write_image(png(), "a.png", {})))
    assert store.find("bbbb-abc123").cbid == "bbbb-abc123"  # a whole cbid is that row
    assert store.find(" tsk_1 ").cbid == "aaaa-abc123"
    assert store.find("ABC123").cbid == "aaaa-abc123", "a short id: the finished row wins over the newer unfinished one"
    assert store.find("zzz999") is None and store.find("  ") is None
    parent = {"prompt": "fox", "parent": {"cbid": "aaaa-abc123"}}
    for n in range(3):
        store.add(cbid=f"e{n}", key=f"ke{n}", repeat=0, params=parent, backend="sim", price_usd=0.05)
    store.update("e0", state="done")
    store.update("e1", state="done")
    assert store.edit_counts() == {"aaaa-abc123": 2}, "only finished edits count"


def _hammer(root: str, start: int) -> None:
    store = Store(root)
    for i in range(start, start + 40):
        store.add(cbid=f"c{i}", key=f"k{i}", repeat=0, params={"i": i}, backend="sim", price_usd=0.01)
        store.update(f"c{i}", state="done", finished=float(i))
    store.close()


def test_two_processes_share_one_ledger(tmp_output: Path) -> None:
    Store(tmp_output).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_output), n * 1000)) for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = Store(tmp_output).rows()
    assert len(rows) == 80 and all(r.state == "done" for r in rows)


def test_a_moved_output_folder_keeps_its_cache(tmp_output: Path) -> None:
    import shutil

    store = Store(tmp_output)
    store.add(cbid="c1", key="k1", repeat=0, params={"prompt": "fox"}, backend="sim", price_usd=0.05)
    path = store.write_image(png(), "fox.png", {"task_id": "t1"})
    store.update("c1", state="done", path=str(path), finished=1.0)
    store.close()
    moved = tmp_output.parent / "moved"
    shutil.move(str(tmp_output), moved)
    hit = Store(moved).lookup("k1")
    assert hit is not None and hit.path == str(moved.resolve() / "images" / "fox.png")


def test_another_backends_unfinished_row_is_not_free_because_the_claim_would_pay(tmp_output: Path) -> None:
    store = Store(tmp_output)
    store.add(cbid="c-sim", key="K", repeat=0, params={}, backend="sim", price_usd=0.05)
    store.update("c-sim", state="timeout", owner=None)  # resumable, and its owner is gone
    assert store.cached_keys(["K"], backend="toapis") == set(), "the quote must say a gateway run pays for it"
    request = {"cbid": "c-real", "key": "K", "repeat": 0, "params": {}, "backend": "toapis", "price_usd": 0.05}
    (claim,) = store.claim_many([{**request, "sweep_id": None}])
    assert claim.kind == "new", "and the ledger indeed makes it a new, paid request"
    assert store.cached_keys(["K"], backend="sim") == {"K"}, "its own backend would take it over for free"


def test_cached_keys_checks_many_keys_at_once(tmp_output: Path) -> None:
    store = Store(tmp_output)
    for i in range(3):
        store.add(cbid=f"c{i}", key=f"k{i}", repeat=0, params={}, backend="sim", price_usd=0.05)
        path = store.write_image(png(), f"f{i}.png", {})
        store.update(f"c{i}", state="done", path=str(path), finished=float(i))
    (store.images_dir / "f1.png").unlink()
    keys = [f"k{i}" for i in range(3)] + [f"missing{i}" for i in range(600)]
    assert store.cached_keys(keys) == {"k0", "k2"}


def test_half_written_files_left_by_a_killed_process_are_removed_when_a_store_opens(tmp_output: Path) -> None:
    images = tmp_output / "images"
    images.mkdir(parents=True)
    old, young = images / ".tmp-killed.part", images / ".tmp-writing.part"
    old.write_bytes(b"half")
    young.write_bytes(b"in progress")
    os.utime(old, (time.time() - 120, time.time() - 120))  # left a minute and more ago by a kill -9
    Store(tmp_output).close()
    assert not old.exists()
    assert young.exists()  # maybe another live process's write in progress: kept
