"""Fixes from the outside reviews of 2026-12-07 (stop 71): the batch an out of memory brought a
detector down to holds for tiles of that side only, and until a --max-vram plan measures again."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from densedet_tile.detector.calls import DetectorCalls, forget_batch_caps

from fakes import BlobDetector

GPU_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


class _BigTilesOneAtATime(BlobDetector):
    """Runs out of GPU memory on more than one tile at a time of 64 px or more."""

    def __init__(self) -> None:
        super().__init__()
        self.device = "cuda:0"

    def predict(self, tiles):  # (BlobDetector.calls records each call's length)
        if len(tiles) > 1 and max(t.shape[0] for t in tiles) >= 64:
            self.calls.append(len(tiles))
            raise RuntimeError(GPU_OOM)
        return super().predict(tiles)


def _tiles(side: int, n: int) -> list[np.ndarray]:
    return [np.zeros((side, side, 3), np.uint8) for _ in range(n)]


def _quietly(calls: DetectorCalls, tiles) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no out of memory here
        calls.predict(tiles)


def _calls_without_running_out(det: _BigTilesOneAtATime, key: str) -> list[int]:
    """The detector's calls for two 64 px tiles asked at batch 2, none running out of memory."""
    det.calls.clear()
    _quietly(DetectorCalls(det, 2, key, key=key), _tiles(64, 2))
    return det.calls


def _calls_running_out(det: _BigTilesOneAtATime, key: str) -> list[int]:
    """The detector's calls for two 64 px tiles asked at batch 2, running out of memory."""
    det.calls.clear()
    with pytest.warns(RuntimeWarning, match="retrying with batch size"):
        DetectorCalls(det, 2, key, key=key).predict(_tiles(64, 2))
    return det.calls


def test_the_batch_cap_holds_for_the_side_that_ran_out_only():
    det = _BigTilesOneAtATime()
    with pytest.warns(RuntimeWarning, match="retrying with batch size"):
        DetectorCalls(det, 4, "big", key="big#1").predict(_tiles(64, 4))
    assert det.calls == [4, 2, 1, 1, 1, 1]
    # small tiles: the planned batch, not the big tiles' 1 (was 1 tile per call for good)
    det.calls.clear()
    _quietly(DetectorCalls(det, 4, "small", key="small#2"), _tiles(32, 8))
    assert det.calls == [4, 4]
    # big tiles again: where they came down to, without running out again
    det.calls.clear()
    _quietly(DetectorCalls(det, 4, "big2", key="big2#3"), _tiles(64, 2))
    assert det.calls == [1, 1]


def test_a_plan_finding_more_memory_forgets_the_caps_and_one_finding_as_much_keeps_them():
    from densedet_tile.vram import GiB

    det = _BigTilesOneAtATime()
    forget_batch_caps(det, 1 * GiB)  # a plan while another program held most of the card
    _calls_running_out(det, "big#1")
    forget_batch_caps(det, 1 * GiB)  # as much as before: the cap stays (else every image ran out again)
    assert _calls_without_running_out(det, "same#2") == [1, 1]
    forget_batch_caps(det, 4 * GiB)  # the card is free again: the planned batch is tried
    assert _calls_running_out(det, "freed#3") == [2, 1, 1]


def test_fit_to_vram_forgets_the_caps_once_it_has_planned_with_more_memory(monkeypatch):
    import densedet_tile.detector.base as base
    import densedet_tile.vram as vram
    from densedet_tile import RunSpec, TileSpec
    from densedet_tile.vram import GiB

    det = _BigTilesOneAtATime()
    monkeypatch.setattr(base, "device_of", lambda d, dev: "cuda:0")
    monkeypatch.setattr(base, "resolve_device", lambda dev: dev)

    def planned(budget):
        plan = vram.VramPlan(batch_size=2, tile=64, base_bytes=1, per_tile_bytes=1, budget_bytes=budget)
        monkeypatch.setattr(vram, "plan_batch", lambda *a, **k: plan)
        return vram.fit_to_vram(det, TileSpec(64), RunSpec(max_vram=4.0))

    planned(1 * GiB)
    _calls_running_out(det, "big#1")
    monkeypatch.setattr(vram, "plan_batch", lambda *a, **k: None)  # not planned: the caps stay
    vram.fit_to_vram(det, TileSpec(64), RunSpec(max_vram=4.0))
    planned(1 * GiB)  # (the same budget: they stay)
    assert _calls_without_running_out(det, "again#2") == [1, 1]
    planned(4 * GiB)
    assert _calls_running_out(det, "planned#3") == [2, 1, 1]


def test_the_reader_reads_no_more_tiles_at_a_time_than_the_cap(monkeypatch):
    # the cap was applied inside predict(): the reader still read the planned batch of tiles
    # (8 at a time of 4096 px tiles: 800 MB) to hand them over one by one
    import densedet_tile as dt
    import densedet_tile.pipeline as pipeline

    det = _BigTilesOneAtATime()
    img = np.zeros((64, 64 * 8, 3), np.uint8)
    with pytest.warns(RuntimeWarning, match="retrying with batch size"):
        dt.detect(img, det, tile=64, overlap=0.0, batch_size=8)
    sizes = []
    real = pipeline.iter_tile_batches

    def spy(src, tiles, batch_size, *a, **k):
        sizes.append(batch_size)
        return real(src, tiles, batch_size, *a, **k)

    monkeypatch.setattr(pipeline, "iter_tile_batches", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (tiles without overlap)
        warnings.simplefilter("error", RuntimeWarning)
        dt.detect(img, det, tile=64, overlap=0.0, batch_size=8)
    assert sizes == [1]


def test_tiles_the_probes_ran_inside_the_budget_fit():
    # 3 GiB of weights + 0.45 GiB per tile on a 4 GiB card: the probes ran one tile at 3.45 GiB
    # and two at 3.9, inside the budget; the 0.85 safety margin said "not even one tile fits"
    # (and shrank a native-size model's tile under the one that had just run two at a time)
    from densedet_tile.vram import GiB, plan_from_probes

    peaks = int(3.45 * GiB), int(3.9 * GiB)
    for resizes in (True, False):
        p = plan_from_probes(*peaks, budget_bytes=4 * GiB, tile=1024, resizes_tiles=resizes)
        assert (p.batch_size, p.tile, p.fits) == (2, 1024, True)
    # one tile inside, two over: batch 1 at the tile
    p = plan_from_probes(int(3.45 * GiB), int(4.2 * GiB), budget_bytes=4 * GiB, tile=1024, resizes_tiles=False)
    assert (p.batch_size, p.tile, p.fits) == (1, 1024, True)
    # past the probes, the margin still holds: 0.5 + 0.3 per tile in 4 GiB (3.4 usable) is 9
    p = plan_from_probes(int(0.8 * GiB), int(1.1 * GiB), budget_bytes=4 * GiB, tile=1024, resizes_tiles=False)
    assert p.batch_size == 9


def test_a_budget_moving_by_a_few_mb_keeps_the_caps():
    # what another program holds moves by a few MB from plan to plan: a rise of 2 MiB over the
    # budget the cap was learnt at forgot it, and every image ran out again (a diff review)
    from densedet_tile.vram import GiB

    det = _BigTilesOneAtATime()
    forget_batch_caps(det, 3 * GiB)
    _calls_running_out(det, "big#1")
    for budget in (3 * GiB + 2 * 2**20, 3 * GiB - 2 * 2**20, 3 * GiB):
        forget_batch_caps(det, budget)
        assert _calls_without_running_out(det, f"again#{budget}") == [1, 1]
