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

    def fake_plan(detector, *, tile, input_size, max_vram_gb, device, resizes_tiles):
        asked.update(tile=tile, input_size=input_size, resizes=resizes_tiles)
        return None

    monkeypatch.setattr(vram, "plan_batch", fake_plan)
    monkeypatch.setattr(base, "device_of", lambda det, dev: "cpu-as-if-cuda")

    class Native:  # a model without an input size: it sees tiles at their own pixels
        def predict(self, tiles):
            return []

    vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0, scale=2.0))
    # four times the pixels of the tile, and still a model whose input grows with the tile
    assert asked == {"tile": 1280, "input_size": 2560, "resizes": False}
    vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0))
    assert asked == {"tile": 1280, "input_size": None, "resizes": False}
    vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0, input_size=800))
    assert asked == {"tile": 1280, "input_size": 800, "resizes": True}


def _simulated_card(monkeypatch, fits_side: int):
    """plan_batch on a pretend 4 GiB card: the cap is not set, and a probe at a side above
    ``fits_side`` runs out of memory (peaks otherwise proportional to the pixels)."""
    import torch

    import densedet_tile.vram as vram

    sides = []
    monkeypatch.setattr(vram, "apply_vram_cap", lambda gb, device: int(gb * GiB))

    def probe(predict, side, device):
        sides.append(side)
        if side > fits_side:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        per = side * side * 400
        return GiB // 4 + per, GiB // 4 + 2 * per

    monkeypatch.setattr(vram, "_probe_peaks", probe)
    return vram, sides


def test_a_native_size_model_whose_probe_runs_out_is_probed_again_at_half_the_tile(monkeypatch):
    vram, sides = _simulated_card(monkeypatch, fits_side=700)

    class Native:
        def predict(self, tiles):
            return []

    with _no_warning():
        plan = vram.plan_batch(Native(), tile=1280, input_size=None, max_vram_gb=4.0, device="cuda:0")
    assert sides[0] == 1280 and sides[1] == 640 and plan.tile == 640 and plan.batch_size >= 1
    # a model that resizes every tile to its input gains nothing from a smaller tile
    sides.clear()
    plan = vram.plan_batch(Native(), tile=1280, input_size=1280, max_vram_gb=4.0, device="cuda:0",
                           resizes_tiles=True)
    assert sides == [1280] and (plan.batch_size, plan.tile) == (1, 1280)


def test_max_vram_says_it_cannot_plan_for_onnx_runtime(monkeypatch):
    vram, sides = _simulated_card(monkeypatch, fits_side=10_000)

    class OnOrt:
        info = {"framework": "onnxruntime"}

        def predict(self, tiles):
            return []

    with pytest.warns(RuntimeWarning, match="onnxruntime"):
        assert vram.plan_batch(OnOrt(), tile=1280, input_size=640, max_vram_gb=4.0, device="cuda:0") is None
    assert sides == []


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", RuntimeWarning)

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


def test_the_budget_is_what_the_card_has_free(monkeypatch):
    # A 4 GiB card with 1.5 GiB taken by the display: a --max-vram 4 budget is the 2.5 GiB left.
    import torch

    import densedet_tile.vram as vram

    class Props:
        total_memory = 4 * GiB

    fractions = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda idx: Props())
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, idx: fractions.append(f))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda idx: (int(2.5 * GiB), 4 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda idx: 0)
    assert vram.apply_vram_cap(4.0, "cuda:0") == int(2.5 * GiB)
    assert vram.apply_vram_cap(2.0, "cuda:0") == 2 * GiB and fractions[-1] == 0.5



def test_tile_auto_is_planned_at_one_tile_and_not_shrunk(monkeypatch):
    # tile=auto picks its tile from the image later: a probe that runs out at the default tile
    # gives batch 1, not a batch planned for a smaller tile that is never used.
    vram, sides = _simulated_card(monkeypatch, fits_side=700)
    import densedet_tile.detector.base as base
    from densedet_tile import RunSpec, TileSpec

    monkeypatch.setattr(base, "device_of", lambda det, dev: "cuda:0")
    monkeypatch.setattr(base, "resolve_device", lambda dev: dev)

    class Native:
        def predict(self, tiles):
            return []

    tiling, run = vram.fit_to_vram(Native(), TileSpec("auto"), RunSpec(max_vram=4.0))
    assert tiling.tile == "auto" and run.batch_size == 1 and sides == [1280]
    sides.clear()
    tiling, run = vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0))
    assert tiling.tile == 640 and sides == [1280, 640]


def _fake_cuda(monkeypatch, per_tile: int, card: int):
    """torch.cuda's peak-memory calls on a pretend card: each predict of b tiles peaks at
    ``b * per_tile`` and runs out of memory past ``card`` bytes."""
    import torch

    state = {"peak": 0}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: state.update(peak=0))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: state["peak"])

    class Native:  # no input size of its own: it sees tiles at their pixels
        def predict(self, tiles):
            need = len(tiles) * per_tile
            if need > card:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            state["peak"] = need
            return []

    return Native()


def test_one_tile_fitting_and_two_not_is_batch_one_at_the_same_tile(monkeypatch):
    # the two-tile probe running out made the planner halve the tile (four times the tiles and
    # seams) although one tile fitted: the README says the tile is halved until one fits
    import densedet_tile.vram as vram

    monkeypatch.setattr(vram, "apply_vram_cap", lambda gb, device: int(gb * GiB))
    det = _fake_cuda(monkeypatch, per_tile=2 * GiB, card=3 * GiB)
    plan = vram.plan_batch(det, tile=1280, input_size=None, max_vram_gb=4.0, device="cuda:0")
    assert (plan.batch_size, plan.tile) == (1, 1280)


def test_a_later_larger_budget_lifts_the_cap_and_a_shortage_is_said_once(monkeypatch, caplog):
    import torch

    import densedet_tile.vram as vram

    class Props:
        total_memory = 24 * GiB

    fractions = []
    monkeypatch.setattr(vram, "_SAID_FREE", set())
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda idx: Props())
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, idx: fractions.append(f))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda idx: (20 * GiB, 24 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda idx: 0)
    assert vram.apply_vram_cap(2.0, "cuda:0") == 2 * GiB and fractions[-1] == 2 / 24
    assert vram.apply_vram_cap(32.0, "cuda:0") == 20 * GiB and fractions[-1] == 1.0  # the 2 GiB cap is gone
    with caplog.at_level("WARNING", logger="densedet_tile.vram"):
        for _ in range(3):  # the pipeline applies the cap for every image
            vram.apply_vram_cap(22.0, "cuda:0")
    assert sum(r.getMessage().startswith("max_vram 22 GiB: only 20.00 GiB") for r in caplog.records) == 1


def test_out_of_memory_halves_the_batch_rounding_up():
    # batch 4 on an image of 3 tiles, 2 fit: 3 -> 2, not 3 -> 1 for the rest of the run
    import warnings

    import torch

    from densedet_tile.detector.calls import DetectorCalls
    from fakes import BlobDetector, blob_image

    class TwoFit(BlobDetector):
        def predict(self, tiles):
            if len(tiles) > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return super().predict(tiles)

    calls = DetectorCalls(TwoFit(), 4, "a.png")
    tiles = [blob_image(64, 64, (5, 5, 20, 20))] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert len(calls.predict(tiles)) == 3
    assert calls.batch_size == 2


def test_a_gpu_number_the_machine_does_not_have_is_refused_with_one_line(monkeypatch):
    # cuda:1 on a one-GPU machine was accepted; what touched it first then failed its own way
    # (an AssertionError traceback out of the --max-vram planner in a batch)
    import torch

    from densedet_tile.detector.base import resolve_device
    from densedet_tile.types import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0" and resolve_device("cuda") == "cuda"
    with pytest.raises(InvalidInputError, match=r"'cuda:1' was requested but this machine has 1 GPU \(cuda:0\)"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(InvalidInputError, match=r"has 2 GPUs \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:7")
    assert check_device("CUDA:01") == "cuda:1"


def test_a_failing_max_vram_probe_is_one_line_naming_the_detector(monkeypatch):
    # a CUDA failure that is not out-of-memory in the probes escaped batch's error handling as a
    # traceback (a cuBLAS allocation failure was that example; it counts as out-of-memory now)
    import densedet_tile.detector.base as base
    import densedet_tile.vram as vram
    from densedet_tile import DetectorError, RunSpec, TileSpec
    from densedet_tile.runner import Job, build_detector

    monkeypatch.setattr(vram, "apply_vram_cap", lambda gb, device: int(gb * GiB))
    monkeypatch.setattr(base, "device_of", lambda det, dev: "cuda:0")
    monkeypatch.setattr(base, "resolve_device", lambda dev: dev)

    def probe(predict, side, device):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(vram, "_probe_peaks", probe)

    class Native:
        def predict(self, tiles):
            return []

    with pytest.raises(DetectorError, match="detector 'Native': planning --max-vram failed: RuntimeError: CUDA error"):
        build_detector(Native(), Job(tiling=TileSpec(1280), run=RunSpec(max_vram=4.0)))


def test_a_scale_past_the_largest_input_is_refused_before_any_probe(monkeypatch):
    # the probes allocate blank tiles of the side first: scale 100 asked two of 128 000 px
    vram, sides = _simulated_card(monkeypatch, fits_side=10**6)
    import densedet_tile.detector.base as base
    from densedet_tile import RunSpec, TileSpec

    monkeypatch.setattr(base, "device_of", lambda det, dev: "cuda:0")
    monkeypatch.setattr(base, "resolve_device", lambda dev: dev)

    class Native:
        def predict(self, tiles):
            return []

    with pytest.raises(InvalidInputError, match="scale 100 would show a 1280 px tile as 128000 px"):
        vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0, scale=100.0))
    assert sides == []


def test_building_keeps_the_kind_of_a_bad_option_error():
    # an option refused while building is still an InvalidInputError (a ValueError) for callers,
    # named after the detector
    from densedet_tile.detector.registry import DetectorSpec
    from densedet_tile.runner import Job, build_detector

    with pytest.raises(InvalidInputError, match="^detector 'onnx': "):
        build_detector(DetectorSpec(kind="onnx", options={"input_size": 640}), Job())


def test_probes_that_see_no_memory_growth_do_not_plan_the_largest_batch(monkeypatch, caplog):
    # a detector allocating outside torch's sight (its own runtime, undeclared) showed 0 bytes
    # per tile, and the arithmetic planned batch 16 on nothing
    import densedet_tile.vram as vram

    monkeypatch.setattr(vram, "apply_vram_cap", lambda gb, device: int(gb * GiB))
    det = _fake_cuda(monkeypatch, per_tile=0, card=3 * GiB)
    with caplog.at_level("WARNING", logger="densedet_tile.vram"):
        plan = vram.plan_batch(det, tile=1280, input_size=640, max_vram_gb=4.0, device="cuda:0")
    assert (plan.batch_size, plan.tile) == (4, 1280)
    assert any("saw no GPU memory grow" in r.getMessage() for r in caplog.records)


def test_the_probe_tells_the_detector_the_side_the_run_resizes_tiles_to(monkeypatch):
    # an adapter whose model resizes on its own reads engine_input_size() to keep the engine's
    # tiles as they come; the probe must call it as the run will, or it measures another size
    pytest.importorskip("torch")
    from densedet_tile import vram
    from densedet_tile.detector.base import engine_input_size

    det = _fake_cuda(monkeypatch, per_tile=GiB, card=8 * GiB)
    told: list[object] = []
    plain = det.predict
    det.predict = lambda tiles: (told.append(engine_input_size()), plain(tiles))[1]
    monkeypatch.setattr(vram, "apply_vram_cap", lambda gb, device: int(gb * GiB))
    monkeypatch.setattr(vram, "_own_allocator", lambda d: None)
    vram.plan_batch(det, tile=1280, input_size=640, max_vram_gb=6.0, device="cuda:0")
    assert told and set(told) == {640}
    told.clear()
    vram.plan_batch(det, tile=1280, input_size=None, max_vram_gb=6.0, device="cuda:0")
    assert told and set(told) == {None}
    assert engine_input_size() is None  # nothing left behind


def test_the_planned_tile_never_exceeds_the_tile_asked_and_nothing_fitting_is_not_said_to_fit(monkeypatch, caplog):
    # --tile 192 came back as 256 (the shrink floor) with "tile reduced to 256 px to fit", over
    # budget; and a probe that ran out at every tile was said to fit too (an outside review)
    import densedet_tile.detector.base as base
    import densedet_tile.vram as vram
    from densedet_tile import RunSpec, TileSpec

    # base 0.94 GiB + 0.08 GiB per 192 px tile, in a 1 GiB budget (0.85 GiB usable): none fits
    p = plan_from_probes(int(1.02 * GiB), int(1.10 * GiB), budget_bytes=GiB, tile=192, resizes_tiles=False)
    assert p.tile == 192  # was 256
    assert (p.batch_size, p.fits) == (1, False)
    # a shrink that reaches the floor and still does not fit is not a fit either
    p = plan_from_probes(int(3.5 * GiB), int(6.5 * GiB), budget_bytes=int(0.6 * GiB), tile=1280, resizes_tiles=False)
    assert p.tile == 256 and not p.fits
    p = plan_from_probes(int(3.5 * GiB), int(6.5 * GiB), budget_bytes=2 * GiB, tile=1280, resizes_tiles=False)
    assert p.fits and p.base_bytes + p.per_tile_bytes <= 2 * GiB * SAFETY

    monkeypatch.setattr(base, "device_of", lambda det, dev: "cuda:0")
    monkeypatch.setattr(base, "resolve_device", lambda dev: dev)
    monkeypatch.setattr(vram, "apply_vram_cap", lambda gb, device: int(gb * GiB))
    monkeypatch.setattr(vram, "_probe_peaks", lambda predict, side, device: (int(1.02 * GiB), int(1.10 * GiB)))

    class Native:
        def predict(self, tiles):
            return []

    with caplog.at_level("WARNING", logger="densedet_tile.vram"):
        tiling, run = vram.fit_to_vram(Native(), TileSpec(192, overlap=0.2), RunSpec(max_vram=1.0))
    assert tiling.tile == 192 and run.batch_size == 1
    said = [r.getMessage() for r in caplog.records]
    assert not any("to fit" in m for m in said)
    assert any("not even one 192 px tile fits; running at batch 1" in m for m in said)

    # every probe runs out, down to the smallest tile: the tile asked for is kept (the smallest,
    # which does not fit either, only made more tiles), and not said "to fit"
    vram_, sides = _simulated_card(monkeypatch, fits_side=100)
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile.vram"):
        tiling, run = vram.fit_to_vram(Native(), TileSpec(1280), RunSpec(max_vram=4.0))
    said = [r.getMessage() for r in caplog.records]
    assert run.batch_size == 1 and not any("to fit" in m for m in said)
    assert tiling.tile == 1280
    assert any("not even one 1280 px tile fits (nor one of 256 px)" in m for m in said)


def test_a_budget_too_small_for_any_detector_is_refused_with_one_line(capsys):
    # 1e-9 (or 1e-300) GiB passed as positive and capped the allocator at 1 (or 0) bytes: every
    # tile then ran out of memory and went to the CPU (an outside review)
    import argparse

    from densedet_tile import RunSpec
    from densedet_tile.cli.options import add_detector_options, one_line_usage_errors
    from densedet_tile import types
    from densedet_tile.vram import apply_vram_cap

    MIN_VRAM_GB = getattr(types, "MIN_VRAM_GB", 0.25)

    for tiny in (1e-300, 1e-9, 0.1):
        with pytest.raises(InvalidInputError, match=rf"^max_vram must be at least {MIN_VRAM_GB:g} GiB .*got {tiny!r}$"):
            RunSpec(max_vram=tiny)
        with pytest.raises(InvalidInputError, match=r"max_vram \(--max-vram\) must be at least"):
            apply_vram_cap(tiny, "cuda:0")
    assert RunSpec(max_vram=MIN_VRAM_GB).max_vram == MIN_VRAM_GB and RunSpec(max_vram=4.0).max_vram == 4.0
    p = one_line_usage_errors(argparse.ArgumentParser(prog="densedet"))
    add_detector_options(p)
    assert p.parse_args(["--max-vram", "4"]).max_vram == 4.0
    with pytest.raises(SystemExit):
        p.parse_args(["--max-vram", "1e-9"])
    err = capsys.readouterr().err.strip()
    assert "--max-vram" in err and f">= {MIN_VRAM_GB:g}" in err and "'1e-9'" in err and "\n" not in err, err


def _pretend_card(monkeypatch, total=8 * GiB):
    """torch.cuda on a pretend card of ``total`` bytes: peak memory as the detector reports it,
    and the allocator fraction set (``state["fraction"]``)."""
    import torch

    state = {"peak": 0, "fraction": None}

    class Props:
        total_memory = total

    c = torch.cuda
    for name, fn in dict(
        is_available=lambda: True, device_count=lambda: 1, current_device=lambda: 0,
        get_device_properties=lambda idx: Props(),
        set_per_process_memory_fraction=lambda f, idx=None: state.update(fraction=f),
        mem_get_info=lambda idx=None: (total, total), memory_reserved=lambda idx=None: 0,
        synchronize=lambda device=None: None, empty_cache=lambda: None,
        reset_peak_memory_stats=lambda device=None: state.update(peak=0),
        max_memory_allocated=lambda device=None: state["peak"],
    ).items():
        monkeypatch.setattr(c, name, fn)
    return state


def _gpu_blob(state, *, base=GiB, per_tile=GiB // 2, card=100 * GiB):
    """A detector on "cuda" costing ``base + n * per_tile`` bytes; out of memory past ``card``
    or while ``oom_all`` is set (another program holding the card)."""
    import torch

    from fakes import BlobDetector

    class GpuBlob(BlobDetector):
        device = "cuda"
        oom_all = False

        def __init__(self):
            super().__init__()
            self.calls = []

        def to(self, device):
            self.device = str(device)
            return self

        def predict(self, tiles):
            if self.device != "cpu":
                need = base + len(tiles) * per_tile
                if self.oom_all or need > card:
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
                state["peak"] = need
            self.calls.append((self.device, len(tiles)))
            return super().predict(tiles)

    return GpuBlob()


def test_max_vram_after_a_cpu_fallback_plans_for_the_gpu(monkeypatch):
    # image 1 ran out of GPU memory and finished on the CPU; image 2 was planned before the
    # detector moved back: "max_vram applies to CUDA devices only; ignored on the CPU", and batch
    # 1 on the GPU (an outside review). Each image probes again: a plan made while another
    # program held the card must not keep later images at batch 1 (a second look)
    import warnings

    import densedet_tile as dt
    from fakes import blob_image

    state = _pretend_card(monkeypatch)
    det = _gpu_blob(state)
    img = blob_image(1000, 3000, (1100, 100, 1200, 200))
    det.oom_all = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r1 = dt.detect_image(img, det, tile=500, overlap=0.2, device="cuda", max_vram=4.0)
    assert r1.settings["device"] == "cpu"
    det.oom_all = False  # the card is free again
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        r2 = dt.detect_image(img, det, tile=500, overlap=0.2, device="cuda", max_vram=4.0)
    assert not [str(w.message) for w in said if "max_vram" in str(w.message)]
    # base 1 GiB + 0.5 GiB per tile in 4 GiB * 0.85: batch 4, as a fresh detector gets
    assert (r2.settings["device"], r2.settings["batch_size"]) == ("cuda", 4)
    r3 = dt.detect_image(img, det, tile=500, overlap=0.2, device="cuda", max_vram=4.0)
    assert r3.settings["batch_size"] == 4
    assert state["fraction"] == 0.5  # the 4 GiB cap of 8


def test_max_vram_beside_a_batch_size_says_it_does_nothing_where_it_cannot_apply(tmp_path):
    # with --batch-size the planner does not run, so its "ignored on the CPU" was never said, and
    # the run went on with max_vram in its settings as if applied (an outside review)
    import subprocess
    import sys

    from PIL import Image

    img = tmp_path / "shelf.png"
    import numpy as np

    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(img)

    def said(*extra):
        r = subprocess.run([sys.executable, "-m", "densedet_tile", str(img), "--out", str(tmp_path / "o"),
                            "--device", "cpu", "--max-vram", "2", "-q", *extra], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return [line for line in r.stderr.splitlines() if "max_vram" in line]

    planned = said()
    assert len(planned) == 1 and "ignored on the CPU" in planned[0]  # as before: the planner says it
    given = said("--batch-size", "4")
    assert len(given) == 1 and "ignored on the CPU" in given[0]
