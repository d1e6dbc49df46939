"""scripts/train_default.py (resume, budgets, refusing to replace a trained model, image count),
scripts/export_default_onnx.py (atomic output, refusals, real opset) and scripts/eval_default.py
(--limit, --out checked up front), run in this process at tiny sizes."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
TINY = ["--size", "96", "--batch", "2", "--workers", "0", "--save-every", "1000"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_review_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def train():
    return _script("train_default")


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _rows(path: Path) -> list[list[str]]:
    """The log rows without the seconds column (wall time)."""
    with path.open(newline="") as fh:
        return [r[:1] + r[2:] for r in csv.reader(fh)]


def _assert_same_model(a: Path, b: Path) -> None:
    """The two runs' saved states hold the same model."""
    sa, sb = _load(a / "state.pt"), _load(b / "state.pt")
    for k, v in sa["model"].items():
        torch.testing.assert_close(sb["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)


# --- resume ---------------------------------------------------------------------------------

def test_stopped_and_resumed_run_matches_an_uninterrupted_one(train, tmp_path) -> None:
    args = [*TINY, "--steps", "6", "--reuse", "2", "--seed", "3"]
    assert train.main([*args, "--out", str(tmp_path / "whole")]) == 0
    # step 3 stops in the middle of the second batch (2 steps per batch): the resumed run must
    # pick the same batch up again, then draw the next samples rather than the first ones again
    assert train.main([*args, "--stop-at-step", "3", "--out", str(tmp_path / "parts")]) == 0
    first = _load(tmp_path / "parts" / "state.pt")
    assert first["step"] == 3 and _load(tmp_path / "parts" / "default.pt")["info"]["steps"] == 3
    # a row logged after the state's last save (a kill between the two) is not kept twice
    with (tmp_path / "parts" / "train_log.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow([4, "9.9", 99, "1", "1", "1", "1", "1"])
    assert train.main(["--resume", "--workers", "0", "--out", str(tmp_path / "parts")]) == 0

    whole, parts = _load(tmp_path / "whole" / "state.pt"), _load(tmp_path / "parts" / "state.pt")
    for key in ("model", "ema"):
        for k, v in whole[key].items():
            torch.testing.assert_close(parts[key][k], v, rtol=1e-5, atol=1e-6, msg=f"{key} {k}")
    wa, wb = _load(tmp_path / "whole" / "default.pt"), _load(tmp_path / "parts" / "default.pt")
    for k, v in wa["state_dict"].items():
        torch.testing.assert_close(wb["state_dict"][k], v, rtol=1e-3, atol=1e-4)
    assert _rows(tmp_path / "parts" / "train_log.csv") == _rows(tmp_path / "whole" / "train_log.csv")
    assert len(_rows(tmp_path / "whole" / "train_log.csv")) == 7  # header + steps 1..6
    assert wb["info"]["steps"] == wa["info"]["steps"] == 6
    assert wb["info"]["images"] == wa["info"]["images"] == 6  # 3 batches of 2, each used twice
    assert wb["info"]["sessions"] == 2


def test_a_resumed_run_keeps_its_own_session_options_unless_given(train, tmp_path) -> None:
    # --workers 0 came back as the default 2, and a CUDA run resumed without --device went on
    # on the CPU (an outside review, 2026-12-07)
    out = tmp_path / "r"
    assert train.main([*TINY, "--steps", "3", "--stop-at-step", "1", "--save-every", "5", "--out", str(out)]) == 0
    seen = {}
    real = train._check_options

    def spy(opts):
        seen.update(opts)
        return real(opts)

    train._check_options = spy
    try:
        assert train.main(["--resume", "--stop-at-step", "2", "--out", str(out)]) == 0
        assert (seen["workers"], seen["save_every"], seen["device"]) == (0, 5.0, "cpu")
        seen.clear()
        assert train.main(["--resume", "--workers", "1", "--out", str(out)]) == 0
        assert seen["workers"] == 1
    finally:
        train._check_options = real


def test_a_gpu_run_resumed_on_a_machine_without_one_goes_on_on_the_cpu(train, tmp_path, capsys) -> None:
    # (with the session's device kept, a CUDA run's state was refused on a CPU machine: "--device
    # cuda: torch sees no CUDA GPU", though no --device was given; a diff review)
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "r"
    assert train.main([*TINY, "--steps", "2", "--stop-at-step", "1", "--out", str(out)]) == 0
    st = _load(out / "state.pt")
    st["device"] = "cuda"
    st["session"] = {**st["session"], "device": "cuda"}
    torch.save(st, out / "state.pt")
    capsys.readouterr()
    assert train.main(["--resume", "--out", str(out)]) == 0
    assert "the run trained on cuda; this machine has no CUDA GPU" in capsys.readouterr().err
    assert _load(out / "state.pt")["step"] == 2


def test_images_count_only_batches_trained_on(train, tmp_path) -> None:
    assert train.main([*TINY, "--steps", "2", "--out", str(tmp_path / "r")]) == 0
    info = _load(tmp_path / "r" / "default.pt")["info"]
    assert (info["steps"], info["images"]) == (2, 4)  # not 6: the batch loaded after the last step


def test_resume_refuses_a_changed_run_option_and_nothing_to_resume(train, tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert train.main([*TINY, "--steps", "2", "--stop-at-step", "1", "--out", str(out)]) == 0
    before = (out / "state.pt").read_bytes()
    capsys.readouterr()
    assert train.cli(["--resume", "--lr", "1e-4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--lr 0.0001" in err and "--lr 0.002" in err
    assert (out / "state.pt").read_bytes() == before
    assert train.cli(["--resume", "--out", str(tmp_path / "none")]) == 2
    assert "state.pt does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


# --- refusing bad options, before anything is written ----------------------------------------

@pytest.mark.parametrize("extra, expect", [
    (["--steps", "0"], "--steps 0"),
    (["--steps", "-5"], "--steps -5"),
    (["--minutes", "0"], "--minutes 0"),
    (["--minutes", "-1"], "--minutes -1"),
    (["--steps", "3", "--reuse", "0"], "--reuse 0"),
    (["--steps", "3", "--batch", "0"], "--batch 0"),
    (["--steps", "3", "--batch", "-2"], "--batch -2"),
    (["--steps", "3", "--workers", "-1"], "--workers -1"),
    (["--steps", "3", "--device", "cuda"], "--device cuda"),
    (["--steps", "3", "--init", "NOTCKPT"], "--init"),
    (["--steps", "3", "--stop-at-step", "0"], "--stop-at-step 0"),
    (["--steps", "3", "--distill", "1"], "--distill keeps the --init"),
    (["--steps", "3", "--distill", "-1"], "--distill -1"),
])
def test_bad_options_fail_in_one_line_and_write_nothing(train, tmp_path, capsys, monkeypatch, extra, expect) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    extra = [str(bad) if a == "NOTCKPT" else a for a in extra]
    out = tmp_path / "a" / "b"
    assert train.cli([*TINY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train_default: ") and "\n" not in err and expect in err
    assert not (tmp_path / "a").exists()


def test_out_that_is_a_file_is_refused(train, tmp_path, capsys) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    assert train.cli([*TINY, "--steps", "1", "--out", str(f)]) == 2
    assert "--out" in capsys.readouterr().err and f.read_text() == "x"


# --- a trained model already in --out -------------------------------------------------------

def test_existing_model_is_kept_unless_resume_or_overwrite(train, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "r"
    assert train.main([*TINY, "--steps", "1", "--out", str(out)]) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(files) == {"default.pt", "state.pt", "train_log.csv"}
    capsys.readouterr()
    assert train.cli([*TINY, "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds default.pt" in err and "--resume" in err and "--overwrite" in err

    def broken(*a, **k):  # the new run fails before its first step
        raise RuntimeError("device lost")

    monkeypatch.setattr(train, "train_step", broken)
    with pytest.raises(RuntimeError, match="device lost"):
        train.main([*TINY, "--steps", "1", "--overwrite", "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_crash_after_some_steps_leaves_a_state_to_resume(train, tmp_path, monkeypatch) -> None:
    out = tmp_path / "r"
    real, calls = train.train_step, []

    def fails_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(*a, **k)

    monkeypatch.setattr(train, "train_step", fails_third)
    with pytest.raises(RuntimeError):
        train.main([*TINY, "--steps", "4", "--out", str(out)])
    st = _load(out / "state.pt")
    assert st["step"] == 2 and "aborted" in _load(out / "default.pt")["info"]
    monkeypatch.setattr(train, "train_step", real)
    # --workers 0: no loader processes (torch warns when fewer CPUs are free than the default 2)
    assert train.main(["--resume", "--workers", "0", "--out", str(out)]) == 0
    assert _load(out / "default.pt")["info"]["steps"] == 4
    assert [r[0] for r in _rows(out / "train_log.csv")] == ["step", "1", "2", "3", "4"]


def test_a_stop_inside_a_step_never_saves_weights_ahead_of_their_step_count(train, tmp_path, monkeypatch) -> None:
    # a kill that lands after the optimizer's update but before the counters move: the abort
    # must not save that half-finished step; the last periodic save (every step here) stands
    out, whole = tmp_path / "torn", tmp_path / "whole"
    assert train.main([*TINY, "--steps", "4", "--seed", "5", "--out", str(whole)]) == 0
    real, calls = train.train_step, []

    def killed_after_the_update(*a, **k):
        terms = real(*a, **k)
        calls.append(1)
        if len(calls) == 3:
            raise SystemExit(143)
        return terms

    monkeypatch.setattr(train, "train_step", killed_after_the_update)
    with pytest.raises(SystemExit):
        train.main([*TINY, "--steps", "4", "--seed", "5", "--save-every", "0", "--out", str(out)])
    st = _load(out / "state.pt")
    assert st["step"] == 2 and int(next(iter(st["opt"]["state"].values()))["step"]) == 2
    monkeypatch.setattr(train, "train_step", real)
    assert train.main(["--resume", "--workers", "0", "--out", str(out)]) == 0
    _assert_same_model(whole, out)


def test_sigterm_finishes_the_step_saves_and_exits_143(train, tmp_path, monkeypatch) -> None:
    import os
    import signal

    out, whole = tmp_path / "term", tmp_path / "whole"
    assert train.main([*TINY, "--steps", "4", "--seed", "6", "--out", str(whole)]) == 0
    real, calls = train.train_step, []

    def signalled_during_the_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered while the step runs
        return real(*a, **k)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(train, "train_step", signalled_during_the_second)
    assert train.main([*TINY, "--steps", "4", "--seed", "6", "--out", str(out)]) == 143
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back
    assert _load(out / "state.pt")["step"] == 2  # the step under way was finished, then saved
    monkeypatch.setattr(train, "train_step", real)
    assert train.main(["--resume", "--workers", "0", "--out", str(out)]) == 0
    _assert_same_model(whole, out)


def test_an_overwrite_killed_before_its_first_save_leaves_the_earlier_run_whole(train, tmp_path, monkeypatch) -> None:
    out = tmp_path / "o"
    assert train.main([*TINY, "--steps", "6", "--seed", "1", "--stop-at-step", "4", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = train.train_step, []

    def killed_third(*a, **k):  # killed in the middle of its third step: nothing it did is saved
        terms = real(*a, **k)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return terms

    monkeypatch.setattr(train, "train_step", killed_third)
    with pytest.raises(KeyboardInterrupt):  # a new run, never saved (checkpoints every 1000 s)
        train.main([*TINY, "--steps", "6", "--seed", "9", "--overwrite", "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # its rows did not land in the log
    monkeypatch.setattr(train, "train_step", real)
    assert train.main(["--resume", "--workers", "0", "--out", str(out)]) == 0
    assert [r[0] for r in _rows(out / "train_log.csv")] == ["step", "1", "2", "3", "4", "5", "6"]


# --- export_default_onnx.py ----------------------------------------------------------------

@pytest.fixture(scope="module")
def export():
    pytest.importorskip("onnx")
    return _script("export_default_onnx")


def _run_export(export, argv, capsys) -> tuple[int, str]:
    from densedet_tile.errors import DensedetError

    capsys.readouterr()
    try:
        rc = export.main(argv)
    except DensedetError as exc:
        return 2, str(exc)
    return rc, capsys.readouterr().err


def _weights(tmp_path: Path) -> Path:
    """A copy of the shipped weights (the original is never written to)."""
    w = tmp_path / "w.pt"
    w.write_bytes((REPO / "densedet_tile" / "detector" / "weights" / "default.pt").read_bytes())
    return w


@pytest.mark.parametrize("extra, expect", [
    (["--calib", "0"], "--calib 0"),
    (["--calib", "-3"], "--calib -3"),
    (["--opset", "5"], "--opset 5"),
    (["--out", "DIR"], "is a folder"),
    (["--out", "SAME"], "--weights file"),
])
def test_export_refuses_bad_options_before_exporting(export, tmp_path, capsys, extra, expect) -> None:
    w = _weights(tmp_path)
    extra = [str(tmp_path) if a == "DIR" else str(w) if a == "SAME" else a for a in extra]
    argv = ["--weights", str(w), "--out", str(tmp_path / "x.onnx"), *extra, "--no-check"]
    before = w.read_bytes()
    rc, err = _run_export(export, argv, capsys)
    assert rc == 2 and expect in err and "\n" not in err
    assert w.read_bytes() == before and not (tmp_path / "x.onnx").exists()


def test_export_names_the_bad_weights_file(export, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    rc, err = _run_export(export, ["--weights", str(bad), "--out", str(tmp_path / "x.onnx"), "--format", "fp32",
                                   "--no-check"], capsys)
    assert rc == 2 and str(bad) in err and "built-in" not in err


def test_export_replaces_the_old_file_atomically_and_records_the_real_opset(export, tmp_path, monkeypatch) -> None:
    import onnx

    import densedet_tile.io as dio

    out = tmp_path / "x.onnx"
    out.write_bytes(b"the good old model")
    w = _weights(tmp_path)

    real_replace = dio.os.replace

    def no_rename(src, dst):  # the atomic path: the rename into place is the step cut short
        if Path(dst) == out:
            raise OSError("killed before the rename")
        return real_replace(src, dst)

    monkeypatch.setattr(dio.os, "replace", no_rename)
    with pytest.raises(OSError):
        export.export_fp32(w, out, opset=17)
    assert out.read_bytes() == b"the good old model"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.onnx")]
    monkeypatch.setattr(dio.os, "replace", real_replace)
    meta = export.export_fp32(w, out, opset=17)
    proto = onnx.load(str(out))
    real = export.real_opset(proto)
    assert meta["exporter"].endswith(f"(opset {real})")
    assert {p.key: p.value for p in proto.metadata_props}["exporter"].endswith(f"(opset {real})")


# --- eval_default.py -----------------------------------------------------------------------

@pytest.mark.parametrize("extra, expect", [
    (["--limit", "0"], "--limit 0"),
    (["--limit", "-1"], "--limit -1"),
    (["--out", "MISSING/e.json"], "does not exist"),
    (["--out", "DIR"], "is a folder"),
])
def test_eval_checks_limit_and_out_before_evaluating(tmp_path, monkeypatch, extra, expect) -> None:
    from densedet_tile.errors import InvalidInputError

    ev = _script("eval_default")
    monkeypatch.setattr(ev, "evaluate", lambda args: pytest.fail("evaluated before refusing"))
    extra = [a.replace("MISSING", str(tmp_path / "missing")).replace("DIR", str(tmp_path)) for a in extra]
    with pytest.raises(InvalidInputError, match=re.escape(expect)):
        ev.main(["--data", str(tmp_path), *extra])


def test_distill_starts_at_zero_and_is_kept_by_a_resumed_run(train, tmp_path, capsys) -> None:
    """--distill with --init: the frozen teacher is the --init weights in the student's BatchNorm
    mode, so the term is 0 until the student moves; a resumed run keeps the option."""
    init = REPO / "densedet_tile" / "detector" / "weights" / "default.pt"
    out = tmp_path / "d"
    args = [*TINY, "--steps", "3", "--init", str(init), "--distill", "2", "--lr", "1e-12"]
    assert train.main([*args, "--stop-at-step", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    values = [float(v) for v in re.findall(r"distill (-?[0-9.]+)", printed)]
    assert len(values) == 2 and all(abs(v) < 1e-3 for v in values)
    assert _load(out / "default.pt")["info"]["distill"] == 2.0
    assert train.cli(["--resume", "--distill", "1", "--out", str(out)]) == 2
    assert "--distill 1.0: the run" in capsys.readouterr().err
    assert train.main(["--resume", "--workers", "0", "--out", str(out)]) == 0
    assert _load(out / "state.pt")["step"] == 3 and "distill" in capsys.readouterr().out
    with (out / "train_log.csv").open(newline="") as fh:  # the term is a column of the log too
        log = list(csv.DictReader(fh))
    assert [r["step"] for r in log] == ["1", "2", "3"] and all(abs(float(r["distill"])) < 1e-3 for r in log)


def test_a_distill_run_given_a_relative_init_resumes_from_another_folder(train, tmp_path, monkeypatch) -> None:
    import shutil

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(REPO / "densedet_tile" / "detector" / "weights" / "default.pt", tmp_path / "a" / "w.pt")
    monkeypatch.chdir(tmp_path / "a")
    assert train.main([*TINY, "--steps", "2", "--init", "w.pt", "--distill", "1", "--stop-at-step", "1",
                       "--out", str(tmp_path / "run")]) == 0
    monkeypatch.chdir(tmp_path / "b")  # the teacher is read again on resume: not from b/w.pt
    assert train.main(["--resume", "--workers", "0", "--out", str(tmp_path / "run")]) == 0
    assert _load(tmp_path / "run" / "state.pt")["step"] == 2


# --- the GPU recipe's one chance (an outside review, 2026-12-05) ------------------------------

def test_the_state_can_live_outside_the_folder_that_comes_back(train, tmp_path, capsys) -> None:
    # a device call brings back at most 16 MiB a file: the 60 MB state.pt goes elsewhere
    out, state = tmp_path / "out", tmp_path / "state"
    args = [*TINY, "--steps", "4", "--seed", "5"]
    assert train.main([*args, "--stop-at-step", "2", "--out", str(out), "--state-dir", str(state)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["default.pt", "train_log.csv"]
    assert [p.name for p in state.iterdir()] == ["state.pt"] and _load(state / "state.pt")["step"] == 2
    assert f"--resume --out {out} --state-dir {state}" in capsys.readouterr().out
    # a new run over it is refused as over a state in --out; --resume finds it there
    from densedet_tile.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="already holds"):
        train.main([*args, "--out", str(out)])
    assert train.main(["--resume", "--workers", "0", "--out", str(out), "--state-dir", str(state)]) == 0
    assert _load(state / "state.pt")["step"] == 4 and _load(out / "default.pt")["info"]["steps"] == 4


def test_a_sample_the_generator_fails_on_is_drawn_again_not_the_end_of_the_run(monkeypatch, capsys) -> None:
    import numpy as np

    import densedet_tile.train.data as data

    real = data.training_sample
    seeds: list[list[int]] = []

    def flaky(rng, **kw):
        seeds.append(list(rng.bit_generator.seed_seq.entropy))
        if len(seeds) == 1:
            raise ValueError("an unlucky draw")
        return real(rng, **kw)

    monkeypatch.setattr(data, "training_sample", flaky)
    stream = data.ShelfStream(seed=7, size=96, stride=4, tile_ratio=2.0, start=10)
    img, *_ = stream[2]
    assert seeds == [[7, 12], [7, 12, 1]]  # the same item again from a seed of its own
    assert "sample 12 (seed 7, try 1) failed: ValueError: an unlucky draw" in capsys.readouterr().err
    again = real(np.random.default_rng([7, 12, 1]), size=96, tile=192)[0]
    assert np.array_equal(img.numpy(), np.array(again))
    monkeypatch.setattr(data, "training_sample", lambda rng, **kw: (_ for _ in ()).throw(ValueError("always")))
    with pytest.raises(ValueError, match="always"):  # a generator that always fails still says so
        stream[0]


def test_a_served_threshold_out_of_range_is_refused_by_the_export_and_by_an_onnx_file_s_load(export, tmp_path,
                                                                                             capsys) -> None:
    # weights asking to be served at 1.5: the .pt was refused at load, its ONNX export served at
    # the default 0.45 without a word (an outside review, 2026-12-07)
    import json

    import onnx
    import torch

    from densedet_tile.detector.builtin import load_default
    from densedet_tile.errors import DetectorError

    ck = torch.load(_weights(tmp_path), weights_only=True)
    ck["info"] = {**dict(ck.get("info") or {}), "score_thr": 1.5}
    bad = tmp_path / "bad_thr.pt"
    torch.save(ck, bad)
    rc, err = _run_export(export, ["--weights", str(bad), "--out", str(tmp_path / "bad.onnx"), "--format", "fp32",
                                   "--no-check"], capsys)
    assert rc == 2 and "its info's score_thr must be a number between 0 and 1, got 1.5" in err
    assert not (tmp_path / "bad.onnx").exists()
    # an export made otherwise (an older script, a hand edit) is refused where it is loaded
    good = tmp_path / "good.onnx"
    rc, _ = _run_export(export, ["--weights", str(_weights(tmp_path)), "--out", str(good), "--format", "fp32",
                                 "--no-check"], capsys)
    assert rc == 0
    proto = onnx.load(str(good))
    for p in proto.metadata_props:
        if p.key == "densedet_info":
            p.value = json.dumps({**json.loads(p.value), "score_thr": 1.5})
    edited = tmp_path / "edited.onnx"
    onnx.save(proto, str(edited))
    with pytest.raises(DetectorError, match=rf"{edited}: its info's score_thr must be a number between 0 and 1"):
        load_default(device="cpu", runtime="onnxruntime", weights=str(edited))
    assert load_default(device="cpu", runtime="onnxruntime", weights=str(good)).score_thr == pytest.approx(0.45)
