"""run_batch in threads of a service (an outside review): each image's warnings go to its own
record, other threads' warnings and log records go where they always go, and the logging and
warnings set-up is as it was afterwards."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import pytest
from PIL import Image

from densedet_tile import TileSpec
from densedet_tile.batch import run_batch
from densedet_tile.runner import Job
from fakes import WarningBlob, blob_image


class GateBlob(WarningBlob):
    """Warns of its blob, then waits (inside the batch's capture) until the service has spoken."""

    def __init__(self, inside: threading.Event, spoken: threading.Event) -> None:
        super().__init__()
        self.inside, self.spoken = inside, spoken

    def predict(self, tiles):
        out = super().predict(tiles)
        warnings.warn("a batch image's own python warning", UserWarning)
        self.inside.set()
        assert self.spoken.wait(30)
        return out


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


@pytest.mark.filterwarnings("always:.*own python warning:UserWarning")  # (warnings are errors in the suite)
def test_batches_in_threads_keep_their_own_warnings_and_leave_the_service_its_own(tmp_path: Path) -> None:
    pkg = logging.getLogger("densedet_tile")
    before = (pkg.propagate, list(pkg.handlers), warnings.showwarning)
    shown: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):
        shown.append(str(message))

    root = logging.getLogger()
    rec = Recorder()
    root.addHandler(rec)
    warnings.showwarning = show
    inside = [threading.Event(), threading.Event()]
    spoken = threading.Event()
    results = {}
    try:
        def batch(k: int) -> None:
            img = tmp_path / f"in{k}" / f"shelf{k}.png"
            img.parent.mkdir()
            Image.fromarray(blob_image(300, 400, (50, 60, 150, 200))).save(img)
            results[k] = run_batch([img], tmp_path / f"out{k}", detector=GateBlob(inside[k], spoken),
                                   job=Job(tiling=TileSpec(tile=512)))

        threads = [threading.Thread(target=batch, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        assert all(e.wait(30) for e in inside)  # both batches are inside an image, holding its warnings
        logging.getLogger("densedet_tile.service").warning("the service's own warning")
        warnings.warn("the service's own python warning", UserWarning)
        spoken.set()
        for t in threads:
            t.join(60)
    finally:
        warnings.showwarning = before[2]
        root.removeHandler(rec)
    assert "the service's own warning" in rec.texts
    assert "the service's own python warning" in shown
    for k in (0, 1):
        (image,) = [r for r in results[k].records if r.get("event", "image") == "image"]
        said = " | ".join(text for _, text in image.get("warnings") or [])
        assert "looked odd" in said and "a batch image's own python warning" in said, image
        assert "service" not in said
    # the images' warnings stayed in their records (said again by the batch, with the image's name)
    assert "a blob 100 px wide looked odd" not in rec.texts
    assert "shelf0.png: a blob 100 px wide looked odd" in rec.texts
    assert (pkg.propagate, list(pkg.handlers)) == before[:2]


def test_what_the_tile_reader_thread_logs_goes_with_the_image_it_reads(monkeypatch) -> None:
    import numpy as np

    import densedet_tile.tiler.batching as batching
    from densedet_tile.runner import caught_warnings
    from densedet_tile.tiler import make_grid
    from densedet_tile.tiler.readers import open_image

    real = batching._read_batch

    def read_and_warn(src, batch):
        logging.getLogger("densedet_tile.tiler").warning("tile at %d read from a damaged strip", batch[0].x)
        return real(src, batch)

    monkeypatch.setattr(batching, "_read_batch", read_and_warn)
    img = np.zeros((100, 300, 3), np.uint8)
    with open_image(img) as src, caught_warnings() as caught:
        tiles = make_grid(300, 100, TileSpec(tile=100, overlap=0.0))
        got = list(batching.iter_tile_batches(src, tiles, 1, prefetch=2))
    assert len(got) == 3
    assert [text for _, text in caught] == [f"tile at {x} read from a damaged strip" for x in (0, 100, 200)]


def test_hooks_put_back_later_still_show_warnings_and_a_loggers_propagate_holds(monkeypatch) -> None:
    from densedet_tile import runner

    pkg = logging.getLogger("densedet_tile")
    rec = Recorder()
    root = logging.getLogger()
    root.addHandler(rec)
    monkeypatch.setattr(pkg, "propagate", False)  # the service keeps the package's records to itself
    try:
        started, go = threading.Event(), threading.Event()

        def capture() -> None:
            with runner.caught_warnings():
                started.set()
                go.wait(10)

        t = threading.Thread(target=capture)
        t.start()
        assert started.wait(10)
        logging.getLogger("densedet_tile.service").warning("kept to the package")
        go.set()
        t.join(10)
        assert "kept to the package" not in rec.texts and pkg.propagate is False
    finally:
        root.removeHandler(rec)
    # the hook put back after the last capture (logging.captureWarnings(False) does so) still shows:
    # what it hands on to is kept (it was dropped, and every later warning raised KeyError)
    assert "showwarning" in runner._HOOKS
    shown: list[str] = []
    monkeypatch.setattr(runner, "_HOOKS", {**runner._HOOKS, "showwarning": lambda m, *a, **k: shown.append(str(m))})
    monkeypatch.setattr(warnings, "showwarning", runner._show_warning)
    runner._show_warning("late", UserWarning, "f.py", 1)
    assert shown == ["late"]


def test_a_hook_put_back_by_a_catch_warnings_that_outlived_a_capture_is_never_saved_as_the_original(
        monkeypatch) -> None:
    from densedet_tile import runner

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # put back whatever happens
    outer = warnings.catch_warnings()
    with runner.caught_warnings():
        outer.__enter__()  # another thread's catch_warnings saves the hook in place: ours
    outer.__exit__(None, None, None)  # ... and puts it back after the capture ended
    assert warnings.showwarning is runner._show_warning
    with runner.caught_warnings():
        pass
    assert runner._HOOKS["showwarning"] is not runner._show_warning
    shown: list[str] = []
    monkeypatch.setitem(runner._HOOKS, "showwarning", lambda m, *a, **k: shown.append(str(m)))
    runner._show_warning("after", UserWarning, "f.py", 1)  # (RecursionError before)
    assert shown == ["after"]
