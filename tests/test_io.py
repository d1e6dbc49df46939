"""The one atomic writer: whole files or none, and the mode a plain open() gives under the umask."""

from __future__ import annotations

import os
import stat

import pytest

import densedet_tile as dt
from densedet_tile.io import TMP_SUFFIX, atomic_write, write_files
from densedet_tile.runner import Job, process_image
from fakes import BlobDetector, blob_image


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_get_the_mode_of_a_plain_open(tmp_path, umask):
    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(blob_image(300, 500, (10, 20, 100, 80))).save(img)
    out = tmp_path / "out"
    job = Job(tiling=dt.TileSpec(tile=256), formats=("json", "csv", "coco"), preview=True)
    outcome = process_image(img, BlobDetector(), job, out)
    assert outcome.status == "ok" and len(outcome.outputs) == 4
    with open(tmp_path / "plain.txt", "w") as fh:
        fh.write("x")
    want = _mode(tmp_path / "plain.txt")
    assert want == 0o666 & ~umask
    assert {p: _mode(p) for p in outcome.outputs} == {p: want for p in outcome.outputs}


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    # a report made private (chmod 600) came back readable to all on the next run; a new file
    # still gets the umask's mode
    (tmp_path / "private.json").write_text("old")
    os.chmod(tmp_path / "private.json", 0o600)
    (tmp_path / "shared.json").write_text("old")
    os.chmod(tmp_path / "shared.json", 0o664)
    write_files({tmp_path / "private.json": "new", tmp_path / "shared.json": "new", tmp_path / "fresh.json": "new"})
    assert (tmp_path / "private.json").read_text() == "new"
    assert _mode(tmp_path / "private.json") == 0o600 and _mode(tmp_path / "shared.json") == 0o664
    assert _mode(tmp_path / "fresh.json") == 0o666 & ~umask
    # its read and write bits only (no execute, set-id or sticky bit on an output), and a link
    # replaced by the output is no file of its own: the umask's mode
    (tmp_path / "tool").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "tool", 0o4755)
    (tmp_path / "odd.json").write_text("old")
    os.chmod(tmp_path / "odd.json", 0o2750)
    (tmp_path / "link.json").symlink_to(tmp_path / "tool")
    write_files({tmp_path / "odd.json": "new", tmp_path / "link.json": "new"})
    assert _mode(tmp_path / "odd.json") == 0o640
    assert not (tmp_path / "link.json").is_symlink() and _mode(tmp_path / "link.json") == 0o666 & ~umask
    assert _mode(tmp_path / "tool") == 0o4755 and (tmp_path / "tool").read_text() == "#!/bin/sh\n"


def test_write_files_is_all_or_nothing(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(TypeError):
        write_files({tmp_path / "keep.txt": "new", tmp_path / "bad.txt": 12345})  # type: ignore[dict-item]
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no temporary left


def test_atomic_write_replaces_whole_file(tmp_path):
    p = atomic_write(tmp_path / "sub" / "a.json", "{}")
    assert p.read_text() == "{}"
    atomic_write(p, b"[1]")
    assert p.read_bytes() == b"[1]"


class _RecordingSource:
    """An image source that records the windows read from it."""

    def __init__(self, img):
        self.img, self.width, self.height, self.reads = img, img.shape[1], img.shape[0], []

    def read(self, x, y, w, h):
        self.reads.append((x, y, w, h))
        return self.img[y : y + h, x : x + w]


def test_preview_reads_a_wide_image_in_bounded_bands_and_draws_the_same(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from densedet_tile import io as dio

    img = blob_image(300, 1600, (700, 100, 900, 220))
    res = dt.detect_image(img, BlobDetector(), tile=2048, device="cpu")
    assert len(res.detections) > 0
    whole = _RecordingSource(img)
    dio.write_preview(res, tmp_path / "whole.jpg", whole, max_side=img.shape[1] // 2)
    assert len(whole.reads) == 1
    budget = 3 * img.shape[1] * 20  # 20 full-width rows a band
    monkeypatch.setattr(dio, "PREVIEW_BAND_BYTES", budget)
    banded = _RecordingSource(img)
    dio.write_preview(res, tmp_path / "banded.jpg", banded, max_side=img.shape[1] // 2)
    assert len(banded.reads) > 3 and all(3 * w * h <= budget for _, _, w, h in banded.reads)
    assert sum(h for _, _, _, h in banded.reads) == img.shape[0]
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.jpg"), dtype=float) for n in ("whole", "banded"))
    assert a.shape == b.shape and np.abs(a - b).mean() < 4.0


def test_write_files_puts_back_what_it_replaced_when_a_later_target_fails(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("old a")
    b.mkdir()  # a folder where a file should go
    with pytest.raises(IsADirectoryError):
        write_files({a: "new a", c: "new c", b: "new b"})
    assert a.read_text() == "old a" and not c.exists() and b.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temporaries left
    # a rename that fails after others were done is undone too
    real_replace = os.replace

    def failing(src, dst):
        if str(dst).endswith("c.txt"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    b.rmdir()
    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        write_files({a: "new a", b: "new b", c: "new c"})
    monkeypatch.undo()
    assert a.read_text() == "old a" and not b.exists() and not c.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_failed_rerun_leaves_the_previous_outputs_as_they_were(tmp_path):
    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(blob_image(300, 400, (50, 60, 150, 200))).save(img)
    out = tmp_path / "out"
    first = process_image(img, BlobDetector(), Job(tiling=dt.TileSpec(tile=256), formats=("json", "csv")), out)
    assert first.status == "ok"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "shelf.preview.jpg").mkdir()  # the preview cannot be written this time
    again = process_image(img, BlobDetector(score=0.7), Job(tiling=dt.TileSpec(tile=256), formats=("json", "csv"),
                                                            preview=True), out)
    assert again.status == "error" and "shelf.preview.jpg" in again.error
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_failed_replace_of_an_existing_file_leaves_no_copy_of_it_behind(tmp_path, monkeypatch):
    files = {tmp_path / f"{n}.txt": f"old {n}" for n in "abc"}
    for p, text in files.items():
        p.write_text(text)
    real_replace = os.replace

    def failing(src, dst):  # the new c cannot land; putting the old files back works
        if str(dst).endswith("c.txt") and str(src).endswith(TMP_SUFFIX):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        write_files({p: "new" for p in files})
    monkeypatch.undo()
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {p.name: t for p, t in files.items()}


def test_a_name_near_the_file_system_limit_and_one_not_in_utf8_are_written(tmp_path):
    from PIL import Image

    long_name = "L" * (255 - len(".detections.json") - 4) + ".png"  # the JSON's name: 251 bytes
    wide_name = "\u3042" * 77 + ".png"  # 231 bytes of UTF-8 in 77 characters: the JSON's name 254 bytes
    odd_name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: a surrogate escape in Python
    out = tmp_path / "out"
    for name in (long_name, wide_name, odd_name):
        img = tmp_path / name
        Image.fromarray(blob_image(300, 500, (10, 20, 100, 80))).save(img)
        job = Job(tiling=dt.TileSpec(tile=256), formats=("json", "csv"))
        outcome = process_image(img, BlobDetector(), job, out)
        assert outcome.status == "ok", outcome.error
    csv_bytes = (out / os.fsdecode(b"caf\xe9.detections.csv")).read_bytes()
    assert b"caf\xe9.png," in csv_bytes  # the file's own bytes, as the folder lists it
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def _interrupt_on(monkeypatch, when):
    """os.replace raises KeyboardInterrupt (as a stop signal does) right after the call ``when``
    picks has done its work."""
    real = os.replace

    def replace(src, dst):
        real(src, dst)
        if when(str(src), str(dst)):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace)


def test_an_interruption_between_renames_puts_every_old_file_back(tmp_path, monkeypatch):
    files = {tmp_path / "a.json": "new a", tmp_path / "b.csv": "new b", tmp_path / "c.txt": "new c"}
    for p in list(files)[:2]:
        p.write_text("old " + p.name)
    # the second file has landed when the interruption comes
    _interrupt_on(monkeypatch, lambda src, dst: dst == str(tmp_path / "b.csv") and src.endswith(TMP_SUFFIX))
    with pytest.raises(KeyboardInterrupt):
        write_files(files)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.json": "old a.json", "b.csv": "old b.csv"}


def test_an_interruption_after_a_file_was_moved_aside_puts_it_back(tmp_path, monkeypatch):
    # where hard links fail the old file is moved aside first; stopping right after that move
    # must not lose it
    files = {tmp_path / "a.json": "new a", tmp_path / "b.csv": "new b"}
    for p in files:
        p.write_text("old " + p.name)

    def no_link(src, dst):
        raise OSError("no hard links here")

    monkeypatch.setattr(os, "link", no_link)
    _interrupt_on(monkeypatch, lambda src, dst: src == str(tmp_path / "b.csv"))
    with pytest.raises(KeyboardInterrupt):
        write_files(files)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.json": "old a.json", "b.csv": "old b.csv"}


def test_a_failed_write_names_the_file_asked_for(tmp_path, monkeypatch) -> None:
    # a full disk fails the write() of the temporary, which names no file: the error said only
    # "No space left on device", and the detect command then named the input image instead
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "o" / "a.detections.json"
    with pytest.raises(OSError) as info:
        write_files({target: b"{}"})
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == []  # nothing left behind


def test_an_output_that_cannot_be_replaced_is_named_not_its_temporary(tmp_path, monkeypatch) -> None:
    # an existing output that may not be moved (an immutable file, a folder with the sticky bit):
    # the error line named the temporary it was being moved aside to, ".o1.detections.xxxx.tmp.old"
    target = tmp_path / "o1.detections.json"
    target.write_text("old")
    real_replace = os.replace

    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted", src, None, dst)

    def stuck(src, dst):
        if str(src) == str(target):
            raise PermissionError(1, "Operation not permitted", src, None, dst)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(os, "replace", stuck)
    with pytest.raises(PermissionError) as err:
        write_files({target: "new"})
    assert err.value.filename == str(target) and err.value.filename2 is None and TMP_SUFFIX not in str(err.value)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [target.name] and target.read_text() == "old"


def test_the_sweep_leaves_other_programs_temporaries_alone(tmp_path):
    # ``.<name>.<8 characters>.tmp`` is what any program's mkstemp(prefix=".name.", suffix=".tmp")
    # leaves: a user's file of that shape, however old, is not this tool's to delete
    import time

    from densedet_tile.io import sweep_temporaries

    theirs = tmp_path / ".thesis.docx.a1b2c3d4.tmp"
    ours = tmp_path / f".a.detections.json.k3j_x9ab{TMP_SUFFIX}"
    ours_old = tmp_path / f".a.detections.csv.Zq81hh0p{TMP_SUFFIX}.old"
    stale = time.time() - 3600
    for f in (theirs, ours, ours_old):
        f.write_text("x")
        os.utime(f, (stale, stale))
    assert sweep_temporaries(tmp_path) == 2
    assert theirs.exists() and not ours.exists() and not ours_old.exists()


def test_the_sweep_takes_an_earlier_versions_temporaries_of_this_tools_outputs_only(tmp_path):
    # before 2026-12-06 the temporaries ended in ".tmp": those of an output named as the
    # caller's own, or of a name only this tool's outputs end in, are still swept; a ".txt"'s
    # (a YOLO label file's, or anyone's notes) is left
    import time

    from densedet_tile.io import sweep_temporaries

    old_state = tmp_path / ".m.state.pt.abcd1234.tmp"
    old_json = tmp_path / ".a.detections.json.k3j_x9ab.tmp"
    old_html = tmp_path / ".a.audit.html.Zq81hh0p.tmp.old"
    notes = tmp_path / ".notes.txt.a1b2c3d4.tmp"
    theirs = tmp_path / ".m.pt.abcd1234.tmp"  # not named as the caller's own
    stale = time.time() - 3600
    for f in (old_state, old_json, old_html, notes, theirs):
        f.write_text("x")
        os.utime(f, (stale, stale))
    assert sweep_temporaries(tmp_path, own=["m.state.pt"]) == 3
    assert not old_state.exists() and not old_json.exists() and not old_html.exists()
    assert notes.exists() and theirs.exists()
