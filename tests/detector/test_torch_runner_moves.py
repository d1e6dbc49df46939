"""The built-in model's torch runner put back where it was: after the out-of-memory fallback to
the CPU and the move back for the next image, the network on CUDA is in channels_last again, as
the runner built there has it (the move back left it in the CPU's contiguous layout). No GPU:
a spy on the network's ``to`` records the layout it is asked for."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from densedet_tile.detector.shelfnet import TorchRunner  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _Stays:
    """A mean/std tensor stand-in that 'moves' anywhere (no CUDA here)."""

    def to(self, device):
        return self


def _spied(runner: TorchRunner) -> list[tuple[str, object]]:
    """(device type, memory_format) of each ``runner.model.to`` call from now on; a move to CUDA
    is recorded but not made."""
    asked: list[tuple[str, object]] = []
    real = runner.model.to

    def to(*args, **kwargs):
        dev = next((a for a in args if isinstance(a, (str, torch.device))), kwargs.get("device"))
        kind = "" if dev is None else torch.device(dev).type
        asked.append((kind, kwargs.get("memory_format")))
        return runner.model if kind == "cuda" else real(*args, **kwargs)

    runner.model.to = to
    runner._mean, runner._std = _Stays(), _Stays()
    return asked


def _runner() -> TorchRunner:
    return TorchRunner(torch.nn.Conv2d(3, 4, 3), device="cpu", mean=MEAN, std=STD)


def test_the_layout_a_device_runs_in():
    from densedet_tile.detector.shelfnet import memory_format_for

    assert memory_format_for("cuda") is torch.channels_last
    assert memory_format_for(torch.device("cuda:1")) is torch.channels_last
    assert memory_format_for("cpu") is torch.contiguous_format


def test_the_move_back_to_cuda_puts_the_network_in_channels_last_again():
    runner = _runner()
    asked = _spied(runner)
    runner.to("cpu")  # the fallback (a runner built on the CPU: already there)
    runner.to("cuda")  # the next image: back to the GPU
    # the layout the network ends in after the move back: the constructor's on CUDA
    formats = [f for kind, f in asked if f is not None]
    assert formats and formats[-1] is torch.channels_last, asked
    assert runner._memory_format is torch.channels_last and runner.device.type == "cuda"
    runner.to("cpu")  # and down again: the CPU's own layout
    assert [f for _, f in asked if f is not None][-1] is torch.contiguous_format
    assert runner._memory_format is torch.contiguous_format and runner.device.type == "cpu"


def test_on_the_cpu_the_weights_end_contiguous_and_the_runner_still_runs():
    runner = _runner()
    runner.model.to(memory_format=torch.channels_last)  # as it was on CUDA
    runner.to("cpu")
    w = runner.model.weight
    assert w.is_contiguous() and not w.is_contiguous(memory_format=torch.channels_last)
    heat, _ = _heads(runner)
    assert heat.shape == (1, 4, 30, 30)


def _heads(runner: TorchRunner):
    # a Conv2d stands in for ShelfNet: the runner hands back (out, out)
    model = runner.model

    class _Two(torch.nn.Module):
        def forward(self, x):
            y = model(x)
            return y, y

    runner.model = _Two()
    try:
        return runner(np.zeros((1, 32, 32, 3), np.uint8))
    finally:
        runner.model = model
