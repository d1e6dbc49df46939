"""Fixes from an outside review of convert-checkpoint (2026-12-07, stop 71)."""

from __future__ import annotations

import os
import pickle
import signal
from collections import OrderedDict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from densedet_tile.detector.checkpoints import load_checkpoint  # noqa: E402
from densedet_tile.errors import DetectorError  # noqa: E402

from test_convert_checkpoint import v3_state_dict  # noqa: E402,F401  (the fixture)


#: (the stop signals at their default handlers: see default_stop_handlers in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("default_stop_handlers")


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "v1.pth"
    torch.save({"state_dict": OrderedDict(w=torch.zeros(2))}, src)
    return src


@pytest.mark.parametrize("how,status,said", [("int", 130, "interrupted"), ("term", 143, "SIGTERM")])
def test_a_stopped_conversion_says_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys, how, status, said):
    # Ctrl-C printed a traceback and left the folders it made; SIGTERM left a part-written
    # temporary file and the folders
    import densedet_tile.detector.convert as conv
    from densedet_tile.cli.convert import convert_main

    def stopped(src, dst, **kw):
        os.makedirs(os.path.dirname(dst), exist_ok=True)  # (as writing the file makes them)
        if how == "int":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # (the handler runs between bytecodes, at once)
            pass
        raise AssertionError("SIGTERM did not stop the conversion")

    monkeypatch.setattr(conv, "convert", stopped)
    dst = tmp_path / "a" / "b" / "out.pth"
    assert convert_main([str(_source(tmp_path)), str(dst), "--no-verify"]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert not (tmp_path / "a").exists()


def test_a_plain_pickle_is_named_as_no_torch_checkpoint(tmp_path):
    # it got the unpickler's "Unsupported operand 149"
    p = tmp_path / "p5.pkl"
    p.write_bytes(pickle.dumps({"a": 1}, protocol=5))
    with pytest.raises(DetectorError, match=r"p5\.pkl: a Python pickle, but not a PyTorch checkpoint"):
        load_checkpoint(str(p))
    legacy = tmp_path / "legacy.pt"  # torch's old format is a pickle too, and still loads
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(str(legacy))["a"], torch.ones(2))
    # at protocol 4 or 5 the safe loader cannot read it: said so, not "Unsupported operand 149"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    with pytest.raises(DetectorError, match=r"legacy format at pickle protocol 4, which the safe loader cannot read"):
        load_checkpoint(str(legacy))


def test_a_conversion_that_fails_to_verify_does_not_first_warn_it_was_written(tmp_path, caplog, v3_state_dict):
    # "written with the class name 'product'" came before the error that nothing was written
    from densedet_tile.configs import config_path
    from densedet_tile.detector.convert import convert

    from test_convert_checkpoint import COCO_NAMES, to_v1_layout

    old = to_v1_layout(v3_state_dict)
    old.pop("module.neck.1.refine.g.conv.weight")
    src = tmp_path / "v1.pth"
    torch.save({"meta": {"mmdet_version": "1.0rc1", "CLASSES": COCO_NAMES}, "state_dict": old}, src)
    with caplog.at_level("WARNING", logger="densedet_tile"), pytest.raises(DetectorError, match="missing"):
        convert(src, tmp_path / "out.pth", config=config_path("densedet-r18-light"))
    assert not any("written with" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "out.pth").exists()


def test_a_stop_while_mmdet_is_imported_is_one_line_too(tmp_path, monkeypatch, capsys):
    # the config's check imports mmdet (seconds): Ctrl-C there was a 47-69 line traceback
    pytest.importorskip("mmdet")
    import densedet_tile.detector.mmdet_adapter as mm
    from densedet_tile.cli.convert import convert_main

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(mm, "_import_stack", interrupted)
    assert convert_main([str(_source(tmp_path)), str(tmp_path / "o" / "out.pth")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_stop_turned_into_an_error_is_said_once(tmp_path, monkeypatch, capsys):
    # a SIGTERM during an import comes out as the import's error, worded as a stop: that line was
    # followed by a second one, "stopped by SIGTERM"
    pytest.importorskip("mmdet")
    import densedet_tile.detector.mmdet_adapter as mm
    from densedet_tile.cli.convert import convert_main
    from densedet_tile.errors import DetectorError

    def stopped_while_importing():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        except KeyboardInterrupt:
            raise DetectorError("stopped by SIGTERM while convert-checkpoint loaded 'mmdet'") from None

    monkeypatch.setattr(mm, "_import_stack", stopped_while_importing)
    assert convert_main([str(_source(tmp_path)), str(tmp_path / "o" / "out.pth")]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "while convert-checkpoint loaded 'mmdet'" in err[0], err
