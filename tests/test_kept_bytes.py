"""Keep what the gateway sent (issue #22): the stored file is the served bytes; provenance is a sidecar.

Sessions run on the simulator over real loopback HTTP; what the simulator
served is read back from its own cache and compared byte for byte with the
stored file. An output folder written the previous way (a PNG with our
``gemimg`` chunk, no sidecar) is made by that code path and read by this one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gemimg_jupyter.api.session import Session
from gemimg_jupyter.draw.images import embed_provenance, read_provenance, sidecar_path, strip_provenance
from gemimg_jupyter.ledger import picks
from gemimg_jupyter.ledger.files import write_atomic
from gemimg_jupyter.ledger.store import Store

from .conftest import quick_settings


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sess(tmp_output: Path) -> Iterator[Session]:
    s = Session(quick_settings(tmp_output))
    yield s
    s.close()


def _previous_write_image(self: Store, data: bytes, name: str, provenance: Any, *, folder: str = "images") -> Path:
    """How images were written before: our chunks spliced into a PNG, anything else re-encoded as PNG."""
    return self.write_bytes(embed_provenance(data, provenance), name, folder=folder)


def _previous_pick_rewrite(path: str | None, pick: dict[str, object] | None) -> None:
    """How picks were written before: the PNG's chunk rewritten in place."""
    if path:
        data = Path(path).read_bytes()
        prov = read_provenance(data)
        prov.pop("pick", None) if pick is None else prov.update(pick=pick)
        write_atomic(Path(path), embed_provenance(data, prov))


def test_an_old_output_folder_still_serves_cache_hits_picks_and_lineage(
    tmp_output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(Store, "write_image", _previous_write_image)
        old.setattr(picks, "_rewrite_provenance", _previous_pick_rewrite)
        before = Session(quick_settings(tmp_output))
        a = before.generate("a paper-cut fox", wait=True)
        b = a.edit("make it blue")
        before.pick(a, note="keeper")
        paths = {a.cbid: Path(a.path or ""), b.cbid: Path(b.path or "")}
        before.close()
    assert all(p.suffix == ".png" and not sidecar_path(p).exists() for p in paths.values())
    old_bytes = {cbid: p.read_bytes() for cbid, p in paths.items()}
    assert read_provenance(paths[a.cbid])["pick"]["note"] == "keeper"  # from the PNG chunk

    now = Session(quick_settings(tmp_output))
    try:
        sent = now.sim.stats()["submits_accepted"]
        again = now.generate("a paper-cut fox", wait=True)
        assert again.cached and Path(again.path or "") == paths[a.cbid]
        edit = again.edit("make it blue")  # the parent's identity is its image without our chunks
        assert edit.cached and Path(edit.path or "") == paths[b.cbid]
        assert now.sim.stats()["submits_accepted"] == sent
        assert [p.note for p in now.picks()] == ["keeper"]
        chain = now.lineage(edit)
        assert [s.row.cbid for s in chain.steps] == [a.cbid, b.cbid] and not chain.broken
        prov = read_provenance(paths[b.cbid])
        assert prov["parent"]["sha256"] == sha(strip_provenance(old_bytes[a.cbid]))

        now.pick(again, note="still a keeper")  # a pick writes the sidecar lazily, never the PNG
        assert read_provenance(paths[a.cbid])["pick"]["note"] == "still a keeper"
        assert json.loads(sidecar_path(paths[a.cbid]).read_text())["task_id"] == a.task_id
        assert {cbid: p.read_bytes() for cbid, p in paths.items()} == old_bytes
    finally:
        now.close()


def test_a_pick_rewrites_the_sidecar_and_never_the_image(sess: Session) -> None:
    job = sess.generate("a glass vase", wait=True)
    path = Path(job.path or "")
    data = path.read_bytes()
    sess.pick(job, note="keeper")
    assert json.loads(sidecar_path(path).read_text())["pick"]["note"] == "keeper"
    assert sess.unpick(job)
    assert "pick" not in json.loads(sidecar_path(path).read_text())
    assert path.read_bytes() == data
    assert read_provenance(path)["file"]["sha256"] == sha(data)
