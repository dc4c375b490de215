"""Keep what the gateway sent (issue #22): the stored file is the served bytes; provenance is a sidecar.

Sessions run on the simulator over real loopback HTTP; what the simulator
served is read back from its own cache and compared byte for byte with the
stored file. An output folder written the previous way (a PNG with our
``gemimg`` chunk, no sidecar) is made by that code path and read by this one.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image, ImageChops, ImageStat

from gemimg_jupyter.api.session import Session
from gemimg_jupyter.draw.images import embed_provenance, read_provenance, sidecar_path, strip_provenance
from gemimg_jupyter.ledger import picks
from gemimg_jupyter.ledger.files import write_atomic
from gemimg_jupyter.ledger.store import Store
from gemimg_jupyter.sim import api as sim_api

from .support import quick_settings


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


def served(sess: Session, job: Any) -> bytes:
    """The bytes the simulator served for a job's task (its download cache)."""
    return bytes(sess.sim.state.cache[job.task_id])


@pytest.mark.parametrize(
    ("options", "suffix", "credentials"),
    [
        pytest.param({}, ".jpg", None, id="jpeg-default"),
        pytest.param({"exif_orientation": 6}, ".jpg", None, id="jpeg-exif-orientation-6"),
        pytest.param({"image_format": "png", "content_credentials": True}, ".png", "PNG caBX chunk", id="png-c2pa"),
        pytest.param({"content_credentials": True}, ".jpg", "JPEG APP11 JUMBF segment", id="jpeg-c2pa"),
        pytest.param({"image_format": "webp", "content_credentials": True}, ".webp", "WebP C2PA chunk", id="webp-c2pa"),
    ],
)
def test_every_stored_image_is_the_served_bytes(
    tmp_output: Path, options: dict[str, Any], suffix: str, credentials: str | None
) -> None:
    settings = quick_settings(tmp_output)
    sess = Session(settings.replace(sim_options={**settings.sim_options, **options}))
    try:
        jobs = [sess.generate("a paper-cut fox", size="16:9", wait=True, repeat=r) for r in range(2)]
        for job in jobs:
            path = Path(job.path or "")
            data = path.read_bytes()
            assert path.suffix == suffix
            assert sha(data) == sha(served(sess, job))
            prov = read_provenance(path)
            assert prov["file"]["sha256"] == sha(data) and prov["task_id"] == job.task_id
            assert prov["file"]["content_credentials"] == credentials
            assert prov["file"]["suspect"] is None and "size_note" not in prov
            thumb = job.thumbnail(160)
            assert thumb.width > thumb.height  # 16:9 as asked, whatever way the pixels are stored
    finally:
        sess.close()


@pytest.mark.parametrize(
    ("controls", "suffix", "fmt"),
    [
        pytest.param({"output_format": "webp"}, ".webp", "WEBP", id="webp"),
        pytest.param({"output_format": "png"}, ".png", "PNG", id="png"),
        pytest.param({"output_format": "jpeg", "quality": 40}, ".jpg", "JPEG", id="jpeg-quality"),
    ],
)
def test_the_output_format_control_decides_the_served_and_stored_format(
    tmp_output: Path, controls: dict[str, Any], suffix: str, fmt: str
) -> None:
    settings = quick_settings(tmp_output)
    sess = Session(settings.replace(sim_options={**settings.sim_options, "image_format": "jpeg"}))
    try:
        job = sess.generate("a paper-cut fox", model="gemini-2.5-flash-image-official", wait=True, **controls)
        path = Path(job.path or "")
        data = path.read_bytes()
        assert path.suffix == suffix and sha(data) == sha(served(sess, job))
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == fmt
        assert read_provenance(path)["file"]["format"] == fmt.lower()
        if "quality" in controls:  # quality 40 is visibly smaller than the default 90
            plain = sess.generate("a paper-cut fox", model="gemini-2.5-flash-image-official", output_format="jpeg",
                                  wait=True)  # fmt: skip
            assert len(data) < len(Path(plain.path or "").read_bytes())
    finally:
        sess.close()


def test_the_magics_format_option_stores_that_format(ip: Any, tmp_output: Path) -> None:
    from gemimg_jupyter.api.session import get_session, reset_session

    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    try:
        for fmt, suffix in (("webp", ".webp"), ("png", ".png")):
            ip.run_cell_magic("gemimg", f"-m gemini-2.5-flash-image-official --format {fmt} -o img --wait", "a fox")
            job = ip.user_ns["img"]
            path = Path(job.path)
            assert path.suffix == suffix and sha(path.read_bytes()) == sha(served(get_session(), job))
    finally:
        ip.run_line_magic("unload_ext", "gemimg_jupyter")


def test_exif_orientation_is_applied_in_the_thumbnail(tmp_output: Path) -> None:
    settings = quick_settings(tmp_output)
    upright = Session(settings)
    turned = Session(settings.replace(output_dir=tmp_output / "turned",
                                      sim_options={**settings.sim_options, "exif_orientation": 6}))  # fmt: skip
    try:
        a = upright.generate("a red fox in the snow", size="16:9", wait=True)
        b = turned.generate("a red fox in the snow", size="16:9", wait=True, fresh=True)
        with Image.open(b.path or "") as stored:
            assert stored.size == (768, 1344) and stored.getexif()[0x0112] == 6  # the pixels are stored turned
        stored = Path(b.path or "").read_bytes()
        assert b.image.size == a.image.size == (1344, 768)  # the full-size image is shown upright too
        assert 0x0112 not in b.image.getexif() or b.image.getexif()[0x0112] == 1
        assert Path(b.path or "").read_bytes() == stored and sha(stored) == sha(served(turned, b))  # file unchanged
        ta, tb = a.thumbnail(96), b.thumbnail(96)
        assert ta.size == tb.size == (96, 55)
        # the same picture, shown upright: JPEG noise aside, the pixels agree
        diff = ImageChops.difference(ta, tb)
        assert max(hi for _, hi in diff.getextrema()) < 64
        assert ImageStat.Stat(diff).mean[0] < 6
    finally:
        upright.close()
        turned.close()


def _cmyk_jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("CMYK").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _palette_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(buf, format="PNG")
    return buf.getvalue()


def _png_16bit(img: Image.Image) -> bytes:
    deep = img.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
    buf = io.BytesIO()
    deep.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("encoder", "mode"),
    [(_cmyk_jpeg, "CMYK"), (_palette_png, "P"), (_png_16bit, "I;16")],
    ids=["cmyk-jpeg", "palette-png", "16bit-png"],
)
def test_cmyk_palette_and_16_bit_images_are_stored_and_shown(
    tmp_output: Path, monkeypatch: pytest.MonkeyPatch, encoder: Any, mode: str
) -> None:
    monkeypatch.setattr(sim_api, "encode", lambda image, fmt, **_: encoder(image))
    sess = Session(quick_settings(tmp_output))
    try:
        sweep = sess.sweep("a golden sunset over the sea", axes=["temperature=0.2,0.9"], yes=True)
        for job in sweep.jobs:
            data = Path(job.path or "").read_bytes()
            assert sha(data) == sha(served(sess, job))
            with Image.open(io.BytesIO(data)) as stored:
                assert stored.mode == mode
            thumb = job.thumbnail(64)
            assert thumb.mode == "RGB" and thumb.size == (64, 64)
            assert max(ImageStat.Stat(thumb).stddev) > 5  # a picture, not a blank or clipped tile
            assert read_provenance(job.path or "")["file"]["suspect"] is None
        grid = sweep.grid()
        assert grid.mode == "RGB" and grid.width > 2 * 64
    finally:
        sess.close()


def _xmp_provenance(xmp: bytes | str) -> dict[str, Any]:
    """Our JSON from an XMP packet (the ``gemimg:provenance`` property)."""
    import xml.etree.ElementTree as ET

    from gemimg_jupyter.draw.embed import XMP_NAMESPACE

    root = ET.fromstring(xmp.encode() if isinstance(xmp, str) else xmp)
    found = root.find(f".//{{{XMP_NAMESPACE}}}provenance")
    assert found is not None and found.text
    return dict(json.loads(found.text))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_export_embeds_parameters_and_leaves_the_original_alone(tmp_output: Path, fmt: str) -> None:
    settings = quick_settings(tmp_output)
    sess = Session(settings.replace(sim_options={**settings.sim_options, "image_format": fmt,
                                                 "content_credentials": True}))  # fmt: skip
    try:
        job = sess.generate("a paper-cut fox", temperature=0.7, wait=True)
        original = Path(job.path or "").read_bytes()
        copy = job.export(tmp_output.parent / "shared" / "fox.png", embed=True)
        assert copy.suffix == Path(job.path or "").suffix  # the file's own format decides the extension
        assert Path(job.path or "").read_bytes() == original
        with Image.open(copy) as img, Image.open(io.BytesIO(original)) as orig:
            assert img.tobytes() == orig.tobytes()  # pixels untouched
            if fmt == "png":
                text = img.info["parameters"]
                ours = json.loads(img.info["gemimg"])
            elif fmt == "webp":
                text = img.getexif().get_ifd(0x8769)[0x9286].removeprefix(b"UNICODE\x00").decode("utf-16-be")
                ours = _xmp_provenance(img.info["xmp"])
            else:
                text = img.getexif().get_ifd(0x8769)[0x9286].removeprefix(b"UNICODE\x00").decode("utf-16-be")
                ours = json.loads(img.info["comment"].removeprefix(b"gemimg:"))
        assert text.startswith("a paper-cut fox\n") and "Temperature: 0.7" in text
        assert ours["task_id"] == job.task_id and ours["export"]["sha256"] == sha(original)
        assert read_provenance(copy)["export"]["embedded"] is True
        plain = job.export(tmp_output.parent / "shared" / "plain", embed=False)
        assert plain.read_bytes() == original
    finally:
        sess.close()


def test_info_shows_the_sidecar_and_the_content_credentials(ip: Any, tmp_output: Path) -> None:
    from gemimg_jupyter.api.session import reset_session

    settings = quick_settings(tmp_output)
    reset_session(settings.replace(sim_options={**settings.sim_options, "content_credentials": True}))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.run_cell_magic("gemimg", "-o fox --wait", "a paper-cut fox")
    job = ip.user_ns["fox"]
    assert job.info()["file"]["content_credentials"] == "JPEG APP11 JUMBF segment"
    for name in ("fox", job.id, str(job.path)):
        out = ip.run_line_magic("gemimg", f"info {name}")
        assert "content credentials  C2PA manifest present (not validated): JPEG APP11 JUMBF segment" in out.text
        assert job.task_id in out.text and "sidecar" in out.text and "valid " not in out.text
    ip.run_line_magic("unload_ext", "gemimg_jupyter")


def _flat(colour: tuple[int, int, int]) -> Any:
    def encoder(image: Image.Image, fmt: str, **_: Any) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", image.size, colour).save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    return encoder


def test_paid_but_unusable_images_are_flagged_and_counted_apart(
    ip: Any, tmp_output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemimg_jupyter.api.session import get_session, reset_session

    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    ip.run_cell_magic("gemimg", "-o good --wait", "a paper-cut fox")
    monkeypatch.setattr(sim_api, "encode", _flat((0, 0, 0)))
    ip.run_cell_magic("gemimg", "-o dark --wait", "a lighthouse at night")
    monkeypatch.setattr(sim_api, "encode", _flat((120, 160, 200)))
    ip.run_cell_magic("gemimg", "-o flat --wait", "a calm sky")
    good, dark, flat = (ip.user_ns[n] for n in ("good", "dark", "flat"))
    assert good.info()["file"]["suspect"] is None
    assert dark.info()["file"]["suspect"] == "all black"
    assert flat.info()["file"]["suspect"].startswith("one flat colour")
    assert all(Path(j.path).is_file() for j in (good, dark, flat))  # flagged, never deleted
    cost = get_session().cost()
    assert cost["suspect_images"] == 2 and cost["suspect_usd"] == pytest.approx(dark.cost_usd + flat.cost_usd)
    text = ip.run_line_magic("gemimg", "cost").text
    assert "paid but suspect" in text and "all black, one flat colour" in text and "usable: 1" in text
    ip.run_line_magic("unload_ext", "gemimg_jupyter")


def _orange_pixels(img: Image.Image) -> int:
    """How many pixels have the suspect mark's orange."""
    from gemimg_jupyter.draw.primitives import SUSPECT

    colours = img.convert("RGB").getcolors(maxcolors=img.width * img.height) or []
    return sum(n for n, colour in colours if colour == SUSPECT.edge)


def test_a_suspect_image_is_marked_in_its_output_grid_report_and_history(
    ip: Any, tmp_output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemimg_jupyter.api.session import get_session, reset_session
    from gemimg_jupyter.display import live

    reset_session(quick_settings(tmp_output))
    ip.run_line_magic("load_ext", "gemimg_jupyter")
    sess = get_session()
    ip.run_cell_magic("gemimg", "-o good --wait", "a paper-cut fox")
    good_out = ip.display_pub.outputs[-1]["data"]
    good_sweep = sess.sweep("a paper-cut fox", axes=["temperature=0.2,0.9"], yes=True)
    monkeypatch.setattr(sim_api, "encode", _flat((0, 0, 0)))
    ip.run_cell_magic("gemimg", "-o dark --wait", "a lighthouse at night")
    dark_out = ip.display_pub.outputs[-1]["data"]
    dark_sweep = sess.sweep("a lighthouse at night", axes=["temperature=0.2,0.9"], yes=True)
    good, dark = ip.user_ns["good"], ip.user_ns["dark"]

    # the job's output: the finished line under the image, and the status line while it is shown
    assert dark.suspect == "all black" and good.suspect is None
    assert "⚠ suspect: all black" in dark_out["text/plain"] and "⚠ suspect: all black" in dark_out["text/html"]
    assert "⚠ suspect" not in good_out["text/plain"] and "⚠ suspect" not in good_out["text/html"]
    assert "⚠ suspect: all black" in live.status_text(dark) and "gemimg-suspect" in live.status_html(dark)
    assert "⚠ suspect" not in live.status_text(good)

    # the grid tile: an orange frame and label (the good sweep's grid has none of it)
    assert [j.suspect for j in dark_sweep.jobs] == ["all black", "all black"]
    dark_grid, good_grid = dark_sweep.grid(), good_sweep.grid()
    assert _orange_pixels(dark_grid) > _orange_pixels(good_grid) + 4 * 100

    # the HTML report of the sweep and of the image's chain
    for target in (dark_sweep, dark):
        page = sess.save_report(target).read_text()
        assert "class='suspect-mark'" in page and "⚠ suspect: all black" in page
    assert "class='suspect-mark'" not in sess.save_report(good_sweep).read_text()

    # the history: the listing says why, the contact sheet marks the tile
    strip = ip.run_line_magic("gemimg", "history")
    lines = {it["prompt"]: it["suspect"] for it in strip.items}
    assert lines == {"a lighthouse at night": "all black", "a paper-cut fox": None}
    assert strip.text.count("⚠ suspect: all black") == 3 and strip.text.count("\n") == 6
    with Image.open(io.BytesIO(strip.png)) as sheet:
        assert _orange_pixels(sheet) > 3 * 100
    ip.run_line_magic("unload_ext", "gemimg_jupyter")


class _FakeReader:
    """Stands in for c2pa-python's ``Reader`` (the optional extra is not a test dependency)."""

    seen: ClassVar[list[tuple[str, bytes]]] = []
    answer: ClassVar[dict[str, Any]] = {}

    def __init__(self, media_type: str, stream: io.BytesIO) -> None:
        _FakeReader.seen.append((media_type, stream.read()))

    def __enter__(self) -> _FakeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def json(self) -> str:
        return json.dumps(self.answer)


def test_the_report_shows_content_credentials_and_validates_only_with_c2pa_python(
    tmp_output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    settings = quick_settings(tmp_output)
    sess = Session(settings.replace(sim_options={**settings.sim_options, "content_credentials": True}))
    plain = Session(settings.replace(output_dir=tmp_output / "plain"))
    try:
        marked, bare = sess.generate("a paper-cut fox", wait=True), plain.generate("a paper-cut fox", wait=True)
        page = sess.save_report(marked).read_text()
        assert "content credentials: present (not validated): JPEG APP11 JUMBF segment" in page
        assert "c2pa-python" not in page and "valid)" not in page.replace("(not validated)", "")
        assert "content credentials: absent" in plain.save_report(bare).read_text()

        fake = types.ModuleType("c2pa")
        fake.Reader = _FakeReader  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "c2pa", fake)
        _FakeReader.answer = {
            "active_manifest": "urn:c2pa:1",
            "manifests": {"urn:c2pa:1": {"signature_info": {"issuer": "Google LLC"}}},
            "validation_state": "Valid",
        }
        page = sess.save_report(marked).read_text()
        assert "present: JPEG APP11 JUMBF segment; issuer Google LLC; valid (checked with c2pa-python)" in page
        assert _FakeReader.seen[-1] == ("image/jpeg", Path(marked.path or "").read_bytes())  # the kept bytes
        _FakeReader.answer = {"active_manifest": "urn:c2pa:1", "manifests": {},
                              "validation_status": [{"code": "assertion.dataHash.mismatch"}]}  # fmt: skip
        info = marked.info()
        assert info["credentials"].startswith("present: JPEG APP11 JUMBF segment; issuer not named; invalid: ")
        assert "assertion.dataHash.mismatch" in info["credentials"]
        assert bare.info()["credentials"] == "absent" and len(_FakeReader.seen) == 2  # no manifest: not asked
    finally:
        sess.close()
        plain.close()


def _webp_chunks(data: bytes) -> dict[bytes, bytes]:
    from gemimg_jupyter.draw.embed import _riff_chunks

    return dict(_riff_chunks(data))


@pytest.mark.parametrize("lossless", [False, True], ids=["vp8", "vp8l-alpha"])
def test_a_simple_webp_gets_a_vp8x_header_and_keeps_its_bitstream(lossless: bool) -> None:
    from gemimg_jupyter.draw.embed import embedded_copy

    picture = Image.new("RGBA" if lossless else "RGB", (37, 21), (200, 80, 40, 128) if lossless else (200, 80, 40))
    buf = io.BytesIO()
    picture.save(buf, format="WEBP", lossless=lossless)
    data = buf.getvalue()
    kind = b"VP8L" if lossless else b"VP8 "
    assert list(_webp_chunks(data)) == [kind]  # the simple format: one bitstream chunk, no VP8X
    prov = {"params": {"prompt": "a paper-cut fox", "model": "m", "size": "1:1"}, "task_id": "t1"}
    copy = embedded_copy(data, prov)
    chunks = _webp_chunks(copy)
    assert list(chunks) == [b"VP8X", kind, b"EXIF", b"XMP "] and chunks[kind] == _webp_chunks(data)[kind]
    with Image.open(io.BytesIO(copy)) as img, Image.open(io.BytesIO(data)) as orig:
        assert img.size == (37, 21) and img.mode == orig.mode and img.tobytes() == orig.tobytes()
        assert _xmp_provenance(img.info["xmp"])["task_id"] == "t1"
        comment = img.getexif().get_ifd(0x8769)[0x9286].removeprefix(b"UNICODE\x00").decode("utf-16-be")
        assert comment.startswith("a paper-cut fox")
