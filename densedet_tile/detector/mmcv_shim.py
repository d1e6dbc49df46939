"""Stand-ins for the compiled ``mmcv._ext`` ops that MMDetection needs at inference.

``mmcv-lite`` ships all of mmcv's Python code but not its compiled extension ``mmcv._ext``;
every ``mmcv.ops`` module looks its kernels up in that extension when it is imported, so with
mmcv-lite alone ``import mmdet.models`` fails. Building full mmcv 2.1.0 takes about half an
hour on two cores. The two-stage and one-stage detectors we run (Cascade/Faster R-CNN,
RetinaNet, RTMDet) call only two kernels at inference, both of which torchvision provides:

* ``nms(boxes, scores, iou_threshold, offset)`` -> kept indices, best score first;
* ``roi_align_forward(input, rois, output, argmax_y, argmax_x, *, aligned_height,
  aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned)`` -> writes ``output``
  in place (average pooling only).

:func:`install` registers a module object as ``mmcv._ext`` that supplies those two and, for
every other name mmcv asks for, a stub that raises :class:`ShimOpUnavailableError` naming the
op when it is called (mmcv only checks that the names exist at import time). The shim is
installed only when the real ``mmcv._ext`` cannot be found: with full mmcv nothing changes.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any, Callable

from ..errors import DetectorError, MissingDependencyError

__all__ = ["install", "is_active", "SUPPLIED_OPS", "ShimOpUnavailableError"]

_EXT_NAME = "mmcv._ext"


class ShimOpUnavailableError(DetectorError, NotImplementedError):
    """An mmcv op was called that the torchvision-backed shim cannot supply."""


def _nms(boxes: Any, scores: Any, iou_threshold: float, offset: int = 0) -> Any:
    """mmcv's ``nms`` kernel: indices (int64) of the kept boxes, highest score first.

    ``boxes`` (N, 4) xyxy, ``scores`` (N,). ``offset`` 1 is the legacy pixel convention of
    MMDetection 1.x (width = x2 - x1 + 1); it equals plain NMS on boxes whose x2 and y2 are
    moved out by one pixel, which is what we hand to torchvision.
    """
    import torch
    from torchvision.ops import nms as tv_nms

    if offset not in (0, 1):
        raise ShimOpUnavailableError(f"mmcv op 'nms': offset must be 0 or 1, got {offset!r}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b = boxes.float()
    if offset:
        b = b.clone()
        b[:, 2:4] += 1.0
    return tv_nms(b, scores.float(), float(iou_threshold))


def _roi_align_forward(
    input: Any,
    rois: Any,
    output: Any,
    argmax_y: Any,
    argmax_x: Any,
    *,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """mmcv's ``roi_align_forward`` kernel for average pooling, written into ``output``.

    ``input`` (B, C, H, W) features, ``rois`` (K, 5) rows of (batch index, x1, y1, x2, y2) in
    input-image pixels, scaled to the feature map by ``spatial_scale``; ``output`` (K, C,
    aligned_height, aligned_width). ``sampling_ratio`` <= 0 means adaptive, as in torchvision.
    """
    from torchvision.ops import roi_align as tv_roi_align

    if int(pool_mode) != 1:
        raise ShimOpUnavailableError(
            "mmcv op 'roi_align_forward' with pool_mode='max' is not available without the "
            "compiled mmcv._ext (the torchvision shim supplies pool_mode='avg' only); install full mmcv"
        )
    if rois.numel() == 0:
        return None
    result = tv_roi_align(
        input,
        rois.to(input.dtype),
        (int(aligned_height), int(aligned_width)),
        spatial_scale=float(spatial_scale),
        sampling_ratio=int(sampling_ratio),
        aligned=bool(aligned),
    )
    output.copy_(result)
    return None


SUPPLIED_OPS: dict[str, Callable[..., Any]] = {
    "nms": _nms,
    "roi_align_forward": _roi_align_forward,
}


def _unavailable(name: str) -> Callable[..., Any]:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise ShimOpUnavailableError(
            f"mmcv op {name!r} is not available: mmcv._ext (compiled mmcv) is not installed and "
            f"densedet-tile's torchvision shim supplies only {', '.join(sorted(SUPPLIED_OPS))}; "
            "install full mmcv 2.1.0 to use a model that needs it"
        )

    stub.__name__ = name
    stub.__qualname__ = f"mmcv_shim.unavailable.{name}"
    return stub


class _ShimExtModule(types.ModuleType):
    """``mmcv._ext`` look-alike: supplied ops are real, every other name is a raising stub."""

    _densedet_shim = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _unavailable(name)


def _make_module() -> types.ModuleType:
    mod = _ShimExtModule(_EXT_NAME, "densedet-tile stand-in for mmcv's compiled ops (torchvision)")
    # a spec with no loader: importlib.util.find_spec answers (instead of raising ValueError for a
    # module without one), and mmengine's mmcv_full_available() still says no compiled ops
    mod.__spec__ = importlib.machinery.ModuleSpec(_EXT_NAME, None)
    for name, fn in SUPPLIED_OPS.items():
        setattr(mod, name, fn)
    return mod


def is_active() -> bool:
    """Whether the shim (not a compiled extension) is what ``mmcv._ext`` currently resolves to."""
    return bool(getattr(sys.modules.get(_EXT_NAME), "_densedet_shim", False))


def install() -> bool:
    """Make ``mmcv.ops`` importable with mmcv-lite; return True when the shim was installed.

    Does nothing and returns False when a compiled ``mmcv._ext`` exists (full mmcv). Safe to
    call many times. Raises :class:`MissingDependencyError` when mmcv itself is missing.
    """
    if is_active():
        return True
    try:
        importlib.import_module("mmcv")
    except ImportError as exc:
        raise MissingDependencyError("the mmdet detector", "mmcv-lite", "mmdet", exc) from exc
    if _EXT_NAME in sys.modules or importlib.util.find_spec(_EXT_NAME) is not None:
        return False
    mod = _make_module()
    sys.modules[_EXT_NAME] = mod
    parent = sys.modules["mmcv"]
    setattr(parent, "_ext", mod)
    return True
