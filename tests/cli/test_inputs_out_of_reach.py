"""Inputs whose state cannot be told (a file in a folder the user may not enter, a name longer
than the file system takes): each fails on its own line and the other inputs still run, as an
unreadable file in a readable folder does (an outside review of 2026-12-06). Each test fails on
the code before it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import densedet_tile.cli.batch as batch_cli
from densedet_tile.cli import main
from fakes import blob_photo as _photo
from fakes import error_lines as _errors

TESTS = Path(__file__).resolve().parents[1]
BLOB = ["--detector", "fakes:make_blob", "--tile", "256", "--device", "cpu"]
#: a file name no file system takes (a component over 255 bytes): ENAMETOOLONG, for root too
TOO_LONG = "x" * 300 + ".png"
#: a file name that is fine, but whose outputs' names (<stem>.detections.json) are too long
LONG_OUTPUTS = "m" * 245 + ".png"




def _no_bypass() -> list[str]:
    """What to run a child under so that a folder of mode 000 keeps it out: nothing for a user
    who is not root; for root, setpriv without the capabilities that pass over permissions.
    Skips where neither can be had."""
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: a folder of mode 000 does not keep root out")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps]


def _kept_out(prefix: list[str], cwd: Path, path: str) -> bool:
    """Whether a child run under ``prefix`` is refused ``path`` for want of permission: its own
    exit code says so, so that setpriv failing for another reason skips rather than passes for it."""
    probe = subprocess.run([*prefix, sys.executable, "-c",
                            f"import os, sys\ntry:\n    os.stat({path!r})\nexcept PermissionError:\n    sys.exit(13)"],
                           cwd=cwd, capture_output=True, text=True, timeout=60)
    return probe.returncode == 13


def _locked_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``densedet-tile ARGS`` in ``tmp_path``, where ``locked/a.png`` lies in a folder of mode
    000 and ``ok.png`` beside it, as a user whom the mode keeps out."""
    _photo(tmp_path / "locked" / "a.png")
    _photo(tmp_path / "ok.png")
    prefix = _no_bypass()
    (tmp_path / "locked").chmod(0)
    try:
        if not _kept_out(prefix, tmp_path, "locked/a.png"):
            pytest.skip("a folder of mode 000 does not keep this user out")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        return subprocess.run([*prefix, sys.executable, "-m", "densedet_tile", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, errors="backslashreplace", timeout=300)
    finally:
        (tmp_path / "locked").chmod(0o755)


# -- batch ------------------------------------------------------------------------------------------
def test_batch_runs_the_others_past_an_input_in_a_folder_it_may_not_enter(tmp_path: Path) -> None:
    # before: "error: --out o: .../locked/a.png: Permission denied", then a traceback ending in
    # ImportError (_PATH_ERRORS), exit 1, ok.png never run and an empty o/ left behind
    r = _locked_run(tmp_path, "batch", "locked/a.png", "ok.png", "--out", "o", "--ray", "none", "-q", *BLOB)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "--out" not in r.stderr
    (line,) = _errors(r.stderr)
    assert line.startswith("densedet-tile batch: error: ") and "locked/a.png: permission denied" in line.lower()
    assert (tmp_path / "o" / "ok.detections.json").is_file()


def test_batch_runs_the_others_past_an_input_whose_name_is_too_long(tmp_path: Path, monkeypatch,
                                                                     capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / "ok.png")
    rc = main(["batch", TOO_LONG, "ok.png", "--out", "o", "--ray", "none", "-q", *BLOB])
    err = capsys.readouterr().err
    assert rc == 1, err
    (line,) = _errors(err)
    assert TOO_LONG in line and "too long" in line.lower()
    assert (tmp_path / "o" / "ok.detections.json").is_file()


def test_batch_runs_the_others_past_an_input_whose_outputs_names_are_too_long(tmp_path: Path, monkeypatch,
                                                                              capsys) -> None:
    # the photo's name is fine, <its stem>.detections.json is not: checking whether it was done
    # before raised and stopped the run
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / LONG_OUTPUTS)
    _photo(tmp_path / "ok.png")
    rc = main(["batch", LONG_OUTPUTS, "ok.png", "--out", "o", "--ray", "none", "-q", *BLOB])
    err = capsys.readouterr().err
    assert rc == 1, err
    (line,) = _errors(err)
    assert "too long" in line.lower()
    assert (tmp_path / "o" / "ok.detections.json").is_file()


@pytest.mark.parametrize(("exc", "said", "status"), [
    (PermissionError(13, "Permission denied", "IN/locked/a.png"), "IN/locked/a.png: Permission denied", 2),
    (OSError(28, "No space left on device", "OUT/manifest.jsonl"),
     "--out OUT: OUT/manifest.jsonl: No space left on device", 1),
])
def test_a_system_error_that_stops_a_batch_run_is_one_line_and_leaves_no_empty_folder(
        exc: OSError, said: str, status: int, tmp_path: Path, monkeypatch, capsys) -> None:
    # before: the except branch imported _PATH_ERRORS, gone from the package: a traceback ending
    # in ImportError; its line called any such error an --out problem; the folder made stayed
    out = tmp_path / "o"
    exc.filename = exc.filename.replace("IN", str(tmp_path)).replace("OUT", str(out))
    said = said.replace("IN", str(tmp_path)).replace("OUT", str(out))

    def stops(inputs, out_dir, **kwargs):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        raise exc

    monkeypatch.setattr(batch_cli, "run_batch", stops)
    _photo(tmp_path / "ok.png")
    rc = main(["batch", str(tmp_path / "ok.png"), "--out", str(out), "--ray", "none", *BLOB])
    err = capsys.readouterr().err
    assert rc == status
    assert err.strip().splitlines() == [f"densedet-tile batch: error: {said}"]
    assert not out.exists()


# -- detect (the default verb) ----------------------------------------------------------------------
def test_detect_runs_the_others_past_an_input_in_a_folder_it_may_not_enter(tmp_path: Path) -> None:
    # before: its error line, then Path.is_dir() on it raised: "error: locked/a.png: Permission
    # denied" once more as the run's, exit 2, and ok.png never run
    r = _locked_run(tmp_path, "locked/a.png", "ok.png", "--out", "o", "-q", *BLOB)
    assert r.returncode == 1, r.stderr
    (line,) = _errors(r.stderr)
    assert line.lower() == "densedet-tile: error: locked/a.png: permission denied"
    assert (tmp_path / "o" / "ok.detections.json").is_file()


def test_detect_runs_the_others_past_an_input_whose_name_is_too_long(tmp_path: Path, monkeypatch,
                                                                      capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / "ok.png")
    rc = main([TOO_LONG, "ok.png", "--out", "o", "-q", *BLOB])
    err = capsys.readouterr().err
    assert rc == 1, err
    (line,) = _errors(err)
    assert TOO_LONG in line and "too long" in line.lower()
    assert (tmp_path / "o" / "ok.detections.json").is_file()


# -- audit, eval, adapt -----------------------------------------------------------------------------
def test_audit_of_a_photo_it_cannot_look_at_is_as_an_unreadable_photo(tmp_path: Path, monkeypatch, capsys) -> None:
    # before: Path.is_dir() raised, said as Python says it ("[Errno 36] File name too long:
    # 'xxx...'"), exit 1; an unreadable or missing photo is "PHOTO: why", exit 2
    monkeypatch.chdir(tmp_path)
    rc = main(["audit", TOO_LONG, "--out", "o", *BLOB])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == [f"densedet-tile audit: error: {TOO_LONG}: File name too long"]


def test_audit_of_a_photo_in_a_folder_it_may_not_enter_names_it_as_the_other_verbs_do(tmp_path: Path) -> None:
    r = _locked_run(tmp_path, "audit", "locked/a.png", "--out", "o", *BLOB)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["densedet-tile audit: error: locked/a.png: Permission denied"]


def test_eval_says_a_system_error_as_the_other_verbs_do(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gt.csv").write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                                     "a.png,10,20,100,80,product,500,300\n")
    rc = main(["eval", TOO_LONG, "gt.csv"])
    err = capsys.readouterr().err
    assert rc == 2  # a name too long is a path given wrong (exit 2, as audit's photo of such a name)
    assert err.strip().splitlines() == [f"densedet-tile eval: error: {TOO_LONG}: File name too long"]


def test_adapt_skips_a_photo_in_a_folder_it_may_list_but_not_enter(tmp_path: Path) -> None:
    # a subfolder of mode r--: its names are listed, but whether each is a file cannot be told;
    # Path.is_file() raised and ended the run before any training ("error: photos/sub/b.png:
    # Permission denied"), where an unreadable photo is skipped with its reason
    pytest.importorskip("torch")
    _photo(tmp_path / "photos" / "a.png")
    _photo(tmp_path / "photos" / "sub" / "b.png")
    prefix = _no_bypass()
    (tmp_path / "photos" / "sub").chmod(0o644)
    code = ("from densedet_tile.train.adapt import find_photos\n"
            "good, bad, other = find_photos('photos')\n"
            "print([p.as_posix() for p in good], [(p.as_posix(), why) for p, why in bad], other)\n")
    try:
        if not _kept_out(prefix, tmp_path, "photos/sub/b.png"):
            pytest.skip("a folder of mode r-- does not keep this user out")
        r = subprocess.run([*prefix, sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    finally:
        (tmp_path / "photos" / "sub").chmod(0o755)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("['photos/a.png'] [('photos/sub/b.png', 'photos/sub/b.png: Permission denied')] 0")
