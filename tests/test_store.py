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


MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 253:1 / / rw,relatime - ext4 /dev/vda rw
40 27 0:45 / /home rw,relatime shared:20 - nfs4 fileserver:/export/home rw,vers=4.2
41 40 0:46 / /home/ann/My\040Drive rw,nosuid - fuse.drive drive rw,user_id=0
42 27 0:47 / /mnt/share rw - cifs //nas/share rw,vers=3.0
45 27 0:49 / /mnt/smb rw - cifs //nas/other rw
43 27 8:17 / /mnt/usb rw - fuseblk /dev/sdb1 rw
44 27 0:48 / /mnt/share rw - tmpfs tmpfs rw
"""


def test_the_mountinfo_parser_finds_the_file_system_of_the_longest_mount_above_a_path() -> None:
    from gemimg_jupyter.ledger.schema import filesystem_type, network_filesystem, parse_mountinfo

    assert ("/home/ann/My Drive", "fuse.drive") in parse_mountinfo(MOUNTINFO)  # \040 is a space
    assert parse_mountinfo("garbage\n\n1 2 3\n") == []
    found = {
        "/home/ann/notebooks/out": "nfs4",
        "/home/ann/My Drive/gemimg_outputs": "fuse.drive",
        "/home/ann/My Drivex": "nfs4",  # a mount point is a whole path component
        "/mnt/share/out": "tmpfs",  # the later of two mounts on one point hides the other
        "/mnt/usb/out": "fuseblk",
        "/mnt/smb/out": "cifs",
        "/srv/data": "ext4",
        "/": "ext4",
    }
    for path, fstype in found.items():
        assert filesystem_type(Path(path), MOUNTINFO) == fstype, path
    network = {path: network_filesystem(Path(path), {}, MOUNTINFO) for path in found}
    assert {p for p, fs in network.items() if fs} == {"/home/ann/notebooks/out", "/home/ann/My Drive/gemimg_outputs",
                                                      "/home/ann/My Drivex", "/mnt/smb/out"}  # fmt: skip
    assert network_filesystem(Path("/"), {"GEMIMG_NETWORK_FS": "1"}) == "network (GEMIMG_NETWORK_FS=1)"
    assert network_filesystem(Path("/home/x"), {"GEMIMG_NETWORK_FS": "0"}, MOUNTINFO) is None
    assert network_filesystem(Path("/"), {"GEMIMG_NETWORK_FS": "0"}) is None
