"""Fixes after an outside review of the detection command (2026-12-06): each test fails on the
code before it."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from fakes import blob_image, run_cli


def _photo(path, box=(100, 100, 300, 260)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(600, 900, box)).save(path)


def test_a_glob_over_an_earlier_runs_folder_leaves_its_detections_json_out(tmp_path):
    # `densedet-tile *` where an earlier run wrote its results beside the photos: the earlier
    # JSONs were taken as inputs, and the run stopped (exit 2) on "this input is where the
    # detections JSON ... would be written", nothing processed
    _photo(tmp_path / "one.png")
    _photo(tmp_path / "two.png", (400, 200, 700, 380))
    args = ("--detector", "fakes:make_blob", "-q", "--device", "cpu", "--preview")
    assert run_cli("one.png", "two.png", *args, cwd=tmp_path).returncode == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "one.detections.json" in names and "two.preview.jpg" in names
    r = run_cli(*names, *args, "--format", "json,csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for stem in ("one", "two"):
        assert f"{stem}.detections.json: left out: the detections JSON of an earlier run" in r.stderr
        assert (tmp_path / f"{stem}.detections.csv").is_file()
        doc = json.loads((tmp_path / f"{stem}.detections.json").read_text())
        assert doc["image"]["path"] == f"{stem}.png"
    # a JSON of that name that this tool did not write is not taken for one (it is an input)
    (tmp_path / "x.detections.json").write_text(json.dumps({"some": "thing"}))
    r = run_cli("x.detections.json", *args, cwd=tmp_path)
    assert r.returncode == 1 and "left out" not in r.stderr


def test_the_other_photo_is_named_by_a_path_that_exists_from_anywhere(tmp_path):
    # the warning gave the other photo's path as its run was given it (relative to where that
    # ran): "made from another photo of that name (b/shelf.jpg)", said from a/, pointed nowhere
    _photo(tmp_path / "in" / "b" / "shelf.png")
    _photo(tmp_path / "in" / "a" / "shelf.png", (400, 200, 700, 380))
    args = ("--detector", "fakes:make_blob", "-q", "--device", "cpu", "--out", str(tmp_path / "O"))
    assert run_cli("b/shelf.png", *args, cwd=tmp_path / "in").returncode == 0
    r = run_cli("shelf.png", *args, cwd=tmp_path / "in" / "a")
    assert r.returncode == 0, r.stderr
    other = (tmp_path / "in" / "b" / "shelf.png").resolve()
    assert f"made from another photo of that name ({other})" in r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["audit", "--help"]])
def test_help_and_version_on_a_full_disk_fail_in_one_line(argv):
    # argparse swallows the failed write: these exited 0 having printed nothing
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "densedet_tile", *argv], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=300)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        f"densedet-tile{' audit' if argv[0] == 'audit' else ''}: error: standard output: No space left on device"]
    ok = subprocess.run([sys.executable, "-m", "densedet_tile", *argv], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and ok.stdout and not ok.stderr


def test_an_empty_out_a_dangling_link_and_a_bad_device_are_refused_by_name(tmp_path):
    _photo(tmp_path / "p.png")
    args = ("p.png", "--detector", "fakes:make_blob", "-q")
    # --out "" (an unset $OUT) wrote into the current folder without a word
    r = run_cli(*args, "--out", "", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "densedet-tile: error: --out is empty: give a folder (. for the current one)"
    assert not (tmp_path / "p.detections.json").exists()
    # a link to a folder that is gone: it said "cannot write there (File exists)"
    (tmp_path / "dl").symlink_to(tmp_path / "gone")
    r = run_cli(*args, "--out", "dl", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 2 and f"--out dl: a link to {tmp_path / 'gone'}, which does not exist" in r.stderr
    # the option is named, as for every other bad value
    r = run_cli(*args, "--device", "foo", cwd=tmp_path)
    assert r.returncode == 2 and "argument --device: device must be auto, cpu, cuda or cuda:N; got 'foo'" in r.stderr
    r = run_cli("adapt", str(tmp_path), "--out", "m.pt", "--device", "foo", cwd=tmp_path)
    assert r.returncode == 2 and "argument --device: device must be" in r.stderr


def test_every_ray_value_the_error_offers_is_in_batch_help(tmp_path, monkeypatch, capsys):
    # the error for a bad --ray offered 'default', which neither --help nor README listed
    import re

    from densedet_tile.cli.batch import build_parser
    from densedet_tile.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["batch", "x.jpg", "--out", "o", "--ray", "not an address"]) == 2
    err = capsys.readouterr().err
    offered = re.findall(r"'([a-z]+)'", err.split("give", 1)[1])
    assert "default" in offered
    ray_help = next(a.help for a in build_parser()._actions if "--ray" in a.option_strings)
    assert all(f"'{word}'" in ray_help for word in offered), (offered, ray_help)


@pytest.mark.parametrize("verb", [(), ("batch", "--ray", "none")])
def test_inputs_may_follow_options_and_a_dashed_file_name_is_named(tmp_path, verb):
    # an outside review: `densedet-tile a.png -q --out o b.png` said "unrecognized arguments:
    # b.png", and a photo named -x.png only "the following arguments are required: INPUT"
    _photo(tmp_path / "a.png")
    _photo(tmp_path / "b.png", (400, 200, 700, 380))
    _photo(tmp_path / "-x.png")
    args = ("--detector", "fakes:make_blob", "--device", "cpu")
    r = run_cli(*verb, "a.png", "-q", "--out", "o", *args, "b.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "o").glob("*.detections.json")} == {"a.detections.json", "b.detections.json"}
    r = run_cli(*verb, "--out", "o2", *args, "-q", "-x.png", cwd=tmp_path)
    assert r.returncode == 2 and not (tmp_path / "o2").exists()
    assert r.stderr.strip().splitlines()[-1].endswith(
        "-x.png: a name that starts with '-' reads as an option; write it as ./-x.png, or put it after -- "
        "(--help lists the options)")
    # both ways it offers work, "--" among them (which Python 3.11's intermixed parsing loses),
    # also after options that follow an input (a second look at this fix)
    for k, how in enumerate((("./-x.png",), ("--", "-x.png"), ("a.png", "-q", "--", "-x.png"))):
        r = run_cli(*verb, "--out", f"o3{k}", "-q", *args, *how, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"o3{k}" / "-x.detections.json").is_file()
    # names argparse reads as positionals anyway (no option looks like a negative number), short
    # options run together, and an abbreviated option's value are not taken for such a file
    for name in ("-1", "-qh"):
        (tmp_path / name).write_bytes((tmp_path / "a.png").read_bytes())
    r = run_cli(*verb, "a.png", "--out", "o5", "-q", *args, "-1", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "o5" / "-1.detections.json").is_file(), r.stderr
    assert run_cli(*verb, "-qh", cwd=tmp_path).returncode == 0  # help
    r = run_cli(*verb, "--out", "o6", "--check", "-x.png", "a.png", cwd=tmp_path)
    assert r.returncode == 2 and "reads as an option" not in r.stderr
    # an unknown option that is no file is still argparse's own complaint
    r = run_cli(*verb, "--out", "o4", "-q", *args, "--bogus", "a.png", cwd=tmp_path)
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr


def test_audit_keeps_a_trailing_double_dash_and_names_after_it(tmp_path):
    # a second look at the option parsing fix: audit (parsed intermixed all along) refused
    # "audit a.png ... --" and "audit a.png -- -x.png" under the first fix
    _photo(tmp_path / "a.png")
    args = ("--detector", "fakes:make_blob", "--device", "cpu", "-q")
    r = run_cli("audit", "a.png", *args, "--out", "o1", "--", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "o1" / "a.audit.json").is_file(), r.stderr
    _photo(tmp_path / "-x.png")
    r = run_cli("audit", *args, "--out", "o2", "--", "-x.png", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "o2" / "-x.audit.json").is_file(), r.stderr


@pytest.mark.skipif(os.name != "posix", reason="the test holds the lock with flock")
def test_detect_into_a_folder_a_batch_run_holds_is_refused_in_one_line(tmp_path):
    # a batch run sweeps its images' temporaries whatever their age: a detect run writing the
    # same names into its folder meanwhile failed on an image with "... .tmp: No such file or
    # directory" (an outside review)
    _photo(tmp_path / "a.png")
    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.jsonl").write_text("")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / 'manifest.jsonl')!r}, os.O_WRONLY | os.O_APPEND)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ("a.png", "--out", "o", "--detector", "fakes:make_blob", "--device", "cpu", "-q")
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.strip().endswith(
            "a densedet-tile batch run is writing there (its manifest.jsonl is locked); wait for it to end or "
            "choose another --out"), r.stderr
        assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the batch gone (its log left behind, unlocked), detect runs
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0 and (out / "a.detections.json").is_file(), r.stderr
