"""The training API on the light install: one error naming the extra, as the rest of the API."""

from __future__ import annotations

import importlib
import sys

import pytest

import densedet_tile
from densedet_tile.errors import MissingDependencyError


def _train_modules() -> list[str]:
    return [m for m in sys.modules if m == "densedet_tile.train" or m.startswith("densedet_tile.train.")]


@pytest.fixture
def _forget_train(monkeypatch):
    """Import densedet_tile.train afresh in this test; everything put back as it was after it:
    the modules (those the test imported anew, without torch, are dropped), and the package's
    attribute that a new import rebinds."""
    old = importlib.import_module("densedet_tile.train")
    monkeypatch.setattr(densedet_tile, "train", old, raising=False)
    had = set(_train_modules())
    for name in had:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in set(_train_modules()) - had:
        del sys.modules[name]


@pytest.mark.parametrize("load", [
    lambda: importlib.import_module("densedet_tile.train.adapt"),
    lambda: importlib.import_module("densedet_tile.train.losses"),
    lambda: importlib.import_module("densedet_tile.train").find_photos,
    lambda: importlib.import_module("densedet_tile.train").ShelfStream,
])
def test_a_training_module_without_torch_names_the_extra(monkeypatch, load, _forget_train):
    # a bare "No module named 'torch'" before: the modules imported it first thing
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as err:
        load()
    msg = str(err.value)
    assert "'torch'" in msg and "pip install 'densedet-tile[train]'" in msg and "\n" not in msg


def test_the_torch_free_parts_still_load_without_torch(monkeypatch, _forget_train):
    # adapt's settings and the pseudo-labels' fusion need no torch (adapt --help on the light install)
    monkeypatch.setitem(sys.modules, "torch", None)
    train = importlib.import_module("densedet_tile.train")
    assert train.AdaptSettings is not None and train.fuse_views is not None
