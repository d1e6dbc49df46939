"""Fixes from an outside review of adapt (2026-12-07, stop 71)."""

from __future__ import annotations

import pytest
import torch

from densedet_tile.errors import InvalidInputError
from densedet_tile.train.adapt import adapt, output_paths

from test_adapt_run import TINY, _stop_at, photos  # noqa: F401  (photos: the fixture)


#: (the stop signals at their default handlers: see default_stop_handlers in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("default_stop_handlers")


def test_a_state_whose_tensors_were_damaged_is_refused(photos, tmp_path):  # noqa: F811
    # torch's format has no checksum: bytes zeroed inside a tensor of the state loaded as other
    # weights and the run went on from them without a word
    out = tmp_path / "d.pt"
    assert adapt(photos, out, TINY, device="cpu", should_stop=_stop_at(4)).status == "stopped"
    sp = output_paths(out)["state"]
    s = torch.load(sp, map_location="cpu", weights_only=True)
    name = next(iter(s["ema"]))
    s["ema"][name] = torch.zeros_like(s["ema"][name])  # (saved again with the old checksum)
    torch.save(s, sp)
    with pytest.raises(InvalidInputError, match=r"d\.state\.pt: the saved state is damaged \(its contents do not match"):
        adapt(photos, out, None, device="cpu", resume=True)
    # a state without a checksum (saved before it had one) is resumed as before
    del s["digest"]
    torch.save(s, sp)
    assert adapt(photos, out, None, device="cpu", resume=True).status == "done"


def test_a_stop_while_setting_up_is_one_line(photos, tmp_path, monkeypatch, capsys):  # noqa: F811
    # SIGTERM in the first seconds (torch's import, reading the photos) ended the run without a word
    import os
    import signal

    import densedet_tile.train.adapt as adapt_module
    from densedet_tile.cli.adapt import adapt_main

    class Stopped:
        def __init__(self, *a, **k):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # (the handler runs between bytecodes, at once)
                pass
            raise AssertionError("SIGTERM did not stop the set-up")

    monkeypatch.setattr(adapt_module, "AdaptRun", Stopped)
    assert adapt_main([str(photos), "--out", str(tmp_path / "x.pt"), "--steps", "2"]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["densedet-tile adapt: error: stopped by SIGTERM before the run started; nothing was written"]
    assert not list(tmp_path.iterdir())


def test_an_out_inside_a_file_says_it_is_a_file(photos, tmp_path):  # noqa: F811
    (tmp_path / "a.pt").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match=r"its folder .*a\.pt is a file, not a folder"):
        adapt(photos, tmp_path / "a.pt" / "x.pt", TINY, device="cpu")


def test_sighup_during_the_run_stops_it_as_sigterm_does(photos, tmp_path, monkeypatch, capsys):  # noqa: F811
    # a closed terminal killed a running adapt without a word or a saved state (SIGHUP was
    # handled while setting up only)
    import os
    import signal

    import densedet_tile.train.adapt as adapt_module
    from densedet_tile.cli.adapt import adapt_main

    asked = []

    class Run:
        def __init__(self, *a, should_stop, **k):
            self.should_stop = should_stop
            self.paths = {"state": tmp_path / "x.state.pt"}

        def run(self):
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(1000):  # (the handler runs between bytecodes, at once)
                pass
            asked.append(self.should_stop())
            raise KeyboardInterrupt  # (as a second signal aborts the run)

    monkeypatch.setattr(adapt_module, "AdaptRun", Run)
    assert adapt_main([str(photos), "--out", str(tmp_path / "x.pt"), "--steps", "2"]) == 129
    assert asked == [True]
    assert "SIGHUP: stopping after this step" in capsys.readouterr().err


def test_the_state_digest_is_stable_for_sets_and_conjugate_views():
    from densedet_tile.train.adapt import _state_digest

    words = [f"photo_{i}.jpg" for i in range(50)]
    assert _state_digest({"x": set(words)}) == _state_digest({"x": set(reversed(words))})
    z = torch.tensor([1 + 2j, 3 - 1j])
    assert _state_digest({"z": z.conj()}) == _state_digest({"z": torch.tensor([1 - 2j, 3 + 1j])})
    assert _state_digest({"z": z}) != _state_digest({"z": z.conj().resolve_conj()})
