"""The --max-vram planner's arithmetic (the CUDA probing itself needs a GPU: scripts/bench_gpu)."""

import pytest

from densedet_tile import InvalidInputError
from densedet_tile.vram import GiB, MAX_BATCH, SAFETY, plan_from_probes


def test_batch_is_largest_that_fits():
    # base 1 GiB, 0.5 GiB per tile, budget 4 GiB -> (4*0.85 - 1) / 0.5 = 4.8 -> 4
    p = plan_from_probes(int(1.5 * GiB), int(2.0 * GiB), budget_bytes=4 * GiB, tile=1280, resizes_tiles=False)
    assert p.batch_size == 4 and p.tile == 1280
    assert p.base_bytes + p.batch_size * p.per_tile_bytes <= 4 * GiB * SAFETY
    assert p.base_bytes + (p.batch_size + 1) * p.per_tile_bytes > 4 * GiB * SAFETY


def test_batch_capped():
    p = plan_from_probes(GiB // 10, GiB // 10 + 1000, budget_bytes=80 * GiB, tile=1280, resizes_tiles=False)
    assert p.batch_size == MAX_BATCH


def test_tile_shrinks_when_one_tile_does_not_fit_and_model_takes_native_pixels():
    # base 0.5 GiB, 3 GiB per 1280 tile, budget 2 GiB
    p = plan_from_probes(int(3.5 * GiB), int(6.5 * GiB), budget_bytes=2 * GiB, tile=1280, resizes_tiles=False)
    assert p.batch_size == 1 and 256 <= p.tile < 1280 and p.tile % 32 == 0
    assert p.base_bytes + p.per_tile_bytes <= 2 * GiB * SAFETY


def test_tile_kept_when_model_resizes_tiles():
    p = plan_from_probes(int(3.5 * GiB), int(6.5 * GiB), budget_bytes=2 * GiB, tile=1280, resizes_tiles=True)
    assert (p.batch_size, p.tile) == (1, 1280)


def test_rejects_non_positive_budget():
    with pytest.raises(InvalidInputError):
        plan_from_probes(1, 2, budget_bytes=0, tile=1280, resizes_tiles=False)


def test_the_plan_is_made_at_the_side_the_model_will_see(monkeypatch):
    import densedet_tile.detector.base as base
    import densedet_tile.vram as vram
    from densedet_tile import RunSpec, TileSpec

    asked = {}

    def fake_plan(detector, *, tile, input_size, max_vram_gb, device):
        asked.update(tile=tile, input_size=input_size)
        return None

    monkeypatch.setattr(vram, "plan_batch", fake_plan)
    monkeypatch.setattr(base, "device_of", lambda det, dev: "cpu-as-if-cuda")

    class Native:  # a model without an input size: it sees tiles at their own pixels
        def predict(self, tiles):
            return []

    vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0, scale=2.0))
    assert asked == {"tile": 1280, "input_size": 2560}  # four times the pixels of the tile
    vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0))
    assert asked == {"tile": 1280, "input_size": None}
