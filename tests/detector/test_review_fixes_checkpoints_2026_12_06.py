"""A file that is no checkpoint (a plain pickle of another protocol) gets the one-line error
alone: torch's two-line note on the pickle's protocol is not printed before it (an outside
review of `adapt --from`)."""

from __future__ import annotations

import pickle
import warnings

import pytest

pytest.importorskip("torch")

from densedet_tile.detector.checkpoints import load_checkpoint  # noqa: E402
from densedet_tile.detector.shelfnet import read_checkpoint  # noqa: E402
from densedet_tile.errors import DetectorError  # noqa: E402


@pytest.mark.parametrize("read", [load_checkpoint, read_checkpoint])
def test_a_plain_pickle_is_refused_without_torchs_protocol_note(tmp_path, read) -> None:
    path = tmp_path / "notes.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            read(path)
        except DetectorError:
            pass
    assert not [w for w in seen if "pickle protocol" in str(w.message)], [str(w.message) for w in seen]
