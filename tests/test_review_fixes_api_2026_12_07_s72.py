"""An outside review of the public API as a typed user sees it (2026-12-07, stop 72): the runtime
half of its fixes (the rest are annotations, which no test here can run a type checker on).
The first test fails on the code before it; the second holds the lazy loading as it was."""
from __future__ import annotations

import textwrap
from pathlib import Path

import densedet_tile as dt


def test_a_path_given_to_load_detector_reaches_a_factory_as_the_str_its_spec_keeps(tmp_path, monkeypatch):
    # load_detector(checkpoint=Path(...)) is now typed to take one, and hands every detector the
    # str DetectorSpec keeps (a user's factory got the Path object itself)
    (tmp_path / "path_factory_s72.py").write_text(textwrap.dedent("""
        class D:
            def __init__(self, config=None, checkpoint=None):
                self.got = (config, checkpoint)
            def predict(self, tiles):
                return []
        def make(config=None, checkpoint=None):
            return D(config, checkpoint)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    det = dt.load_detector("path_factory_s72:make", config=tmp_path / "c.py", checkpoint=Path("w.pt"))
    assert det.got == (str(tmp_path / "c.py"), "w.pt")
    assert all(type(v) is str for v in det.got)


def test_submodules_and_lazy_names_still_load_on_first_use():
    # (the lazy __getattr__ now hides from type checkers only: at run time it is as before)
    import subprocess
    import sys

    code = ("import sys, densedet_tile as dt; assert 'densedet_tile.scale' not in sys.modules; "
            "print(dt.scale.choose_scale.__name__, dt.detect.__name__, dt.audit.run_audit.__name__)\n"
            "try:\n    dt.detetc\nexcept AttributeError as e:\n    print(e)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["choose_scale detect run_audit",
                                     "module 'densedet_tile' has no attribute 'detetc'"]
