#!/usr/bin/env python
"""Export the built-in model's weights (``default.pt``) to ONNX for the light install.

Re-run after every training run that changes ``densedet_tile/detector/weights/default.pt``:

    pip install -e ".[onnx]"            # torch, onnx, onnxscript
    python scripts/export_default_onnx.py            # writes weights/default.onnx (int8) and checks it

The graph is the network alone (opset 17): input ``input`` float32 (N, 3, H, W) normalised RGB
(H, W multiples of 32, any size), outputs ``heat_logits`` (N, 1, H/8, W/8) and ``dist``
(N, 4, H/8, W/8), the raw outputs of ``ShelfNet.forward``. Decoding stays in numpy
(:func:`densedet_tile.detector.builtin.decode`), shared with the torch runtime. The file carries
the checkpoint's config and training info and the SHA-256 of the ``.pt`` it came from as
metadata (``densedet_config``, ``densedet_info``, ``source_sha256``, ``format``); a test checks
that the shipped ``.onnx`` was exported from the shipped ``.pt``.

``--format int8`` (the default, the one shipped) quantises statically: QDQ, per-channel int8
weights, uint8 activations calibrated on 32 generated shelf tiles (fixed seed, so a re-export of
the same ``.pt`` gives the same file). ``--format fp32`` is the plain export (boxes within 1e-4 px
of torch), ``--format fp16`` stores fp16 weights (float32 inputs/outputs). The shipped format was
chosen by measurement (BENCHMARKS.md, "The light install"): int8 lost 0.0016 AP on the
generated held-out set and ran the network ~1.5x faster than fp32 on a 2-core AVX2 CPU; fp16 was
slower than fp32 there.

After writing, the script runs both runtimes on generated shelves and prints the largest box
difference (``--no-check`` skips that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WEIGHTS_DIR = ROOT / "densedet_tile" / "detector" / "weights"


def _shelves_module():
    try:
        from densedet_tile.synth import shelves  # a later layout
    except ImportError:
        from densedet_tile.synth import shelves
    return shelves


def calibration_tiles(n: int, seed: int = 424242, size: int = 640) -> list[np.ndarray]:
    """``n`` generated shelf crops at the model's input size (seed away from training's 0)."""
    shelves = _shelves_module()
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        img, _ = shelves.training_sample(rng, size=size, tile=(1280 if k % 2 else 960), scale_range=(0.7, 1.4))
        out.append(img)
    return out


def normalise(tiles: list[np.ndarray], mean, std) -> np.ndarray:
    x = np.stack(tiles).astype(np.float32).transpose(0, 3, 1, 2)
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1) * 255.0
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1) * 255.0
    return np.ascontiguousarray((x - m) / s)


def export_fp32(weights: Path, out: Path, *, opset: int = 17) -> dict:
    """Export ``weights`` (a ShelfNet checkpoint) to ``out`` as fp32 ONNX; returns the metadata."""
    import onnx
    import torch

    from densedet_tile.detector.builtin import DEFAULT_CONFIG, model_config, threshold_problem
    from densedet_tile.detector.shelfnet import model_from_checkpoint, read_checkpoint

    from densedet_tile.errors import DetectorError

    raw = weights.read_bytes()
    try:
        ckpt = read_checkpoint(raw)  # (read from these bytes: the SHA-256 below is of what was loaded)
    except DetectorError as exc:
        raise DetectorError(f"--weights {weights}: cannot be read as a torch checkpoint with weights_only=True "
                            f"({type(exc.__cause__).__name__}; not a .pt file, damaged, or holding objects that are "
                            "not weights)") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict)
            and isinstance(ckpt.get("state_dict"), dict)):
        raise DetectorError(f"--weights {weights}: not a ShelfNet weights file (no 'config' and 'state_dict')")
    problem = threshold_problem(ckpt.get("info"))
    if problem:  # (exported, it would be refused at load, as the .pt is)
        raise DetectorError(f"--weights {weights}: {problem}")
    config = model_config(ckpt["config"])
    model = model_from_checkpoint(ckpt, config, source=f"--weights {weights}")
    size = int(config["input_size"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        _torch_export(model, torch.zeros(1, 3, size, size), tmp_path, opset)
        proto = onnx.load(str(tmp_path))
    meta = {
        "densedet_config": json.dumps({k: ckpt["config"].get(k, DEFAULT_CONFIG.get(k)) for k in
                                       sorted(set(ckpt["config"]) | {"input_size", "stride", "mean", "std"})}),
        "densedet_info": json.dumps(ckpt.get("info", {}), default=str),
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "source_file": weights.name,
        "format": "fp32",
        "exporter": f"torch {torch.__version__} (opset {real_opset(proto)})",
    }
    if real_opset(proto) != opset:
        print(f"note: asked for opset {opset}, the exporter wrote opset {real_opset(proto)} (recorded)",
              file=sys.stderr)
    _set_meta(proto, meta)
    proto.doc_string = "densedet-tile built-in model (ShelfNet): raw heatmap logits and ltrb distances"
    onnx.checker.check_model(proto)
    save_model(proto, out)
    return meta


def real_opset(proto) -> int:
    """The default-domain (ai.onnx) opset version the model declares."""
    return max((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def save_model(proto, out: Path) -> None:
    """Serialise ``proto`` to ``out`` atomically: a kill leaves the old file or the new one, never
    a truncated one. The ``exporter`` metadata gets the opset the file really declares."""
    from densedet_tile.io import atomic_write

    meta = {p.key: p.value for p in proto.metadata_props}
    if "exporter" in meta:
        meta["exporter"] = re.sub(r"\(opset \d+\)", f"(opset {real_opset(proto)})", meta["exporter"])
        _set_meta(proto, meta)
    atomic_write(out, proto.SerializeToString())


def _torch_export(model, dummy, path: Path, opset: int) -> None:
    """torch -> ONNX with symbolic N, H, W.

    The TorchScript exporter folds each BatchNorm into its convolution and gives the compact
    graph that measured fastest on ONNX Runtime; where a torch release no longer has it, the
    torch.export-based exporter is used on a copy with the BatchNorms fused by hand.
    """
    import warnings

    import torch

    names = dict(input_names=["input"], output_names=["heat_logits", "dist"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, still present
            torch.onnx.export(
                model, (dummy,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
                dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "heat_logits": {0: "N", 2: "h", 3: "w"},
                              "dist": {0: "N", 2: "h", 3: "w"}}, **names,
            )
        return
    except (TypeError, RuntimeError, ImportError) as exc:
        print(f"TorchScript exporter unavailable ({type(exc).__name__}); using torch.export", file=sys.stderr)
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from densedet_tile.detector.shelfnet import _ConvBN

    fused = copy.deepcopy(model)
    for mod in fused.modules():
        if isinstance(mod, _ConvBN):
            mod[0] = fuse_conv_bn_eval(mod[0], mod[1])
            mod[1] = torch.nn.Identity()
    n, h, w = (torch.export.Dim(k, min=1, max=1024) for k in ("N", "H", "W"))
    prog = torch.onnx.export(fused, (dummy,), None, dynamo=True, opset_version=opset,
                             dynamic_shapes=({0: n, 2: 32 * h, 3: 32 * w},), optimize=True, **names)
    prog.save(str(path))


def _set_meta(proto, meta: dict) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)


def to_fp16(src: Path, out: Path) -> None:
    """fp16 weights and activations, float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    half = convert_float_to_float16(proto, keep_io_types=True)
    meta["format"] = "fp16"
    _set_meta(half, meta)
    save_model(half, out)


def to_int8(src: Path, out: Path, *, calib: int = 32) -> None:
    """Static int8 (QDQ, per-channel weights) calibrated on ``calib`` generated shelf tiles."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from densedet_tile.detector.builtin import DEFAULT_CONFIG

    tiles = calibration_tiles(calib)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"input": normalise([t], DEFAULT_CONFIG["mean"], DEFAULT_CONFIG["std"])} for t in tiles])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre, quant = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(quant), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(str(quant))
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    meta["format"] = "int8"
    _set_meta(proto, meta)
    save_model(proto, out)


def match_boxes(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Pair each box of ``a`` with its highest-IoU box of ``b`` (one to one, greedily, IoU > 0.5).

    Returns (boxes left unpaired in either set, largest coordinate difference of a pair in px).
    """
    if len(a) == 0 or len(b) == 0:
        return len(a) + len(b), 0.0
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    iou = inter / (area(a)[:, None] + area(b)[None, :] - inter)
    used = np.zeros(len(b), bool)
    worst, paired = 0.0, 0
    for i in np.argsort(-iou.max(axis=1), kind="stable"):
        cand = np.where(used, -1.0, iou[i])
        j = int(cand.argmax())
        if cand[j] > 0.5:
            used[j] = True
            paired += 1
            worst = max(worst, float(np.abs(a[i] - b[j]).max()))
    return len(a) + len(b) - 2 * paired, worst


def check(onnx_path: Path, weights: Path, n: int = 4) -> dict:
    """Boxes of the ONNX file vs the torch model (fp32) on ``n`` generated shelves (CPU)."""
    from densedet_tile.detector.builtin import load_default

    a = load_default(device="cpu", runtime="onnxruntime", weights=str(onnx_path))
    b = load_default(device="cpu", runtime="torch", weights=str(weights))
    worst, unpaired, counts = 0.0, 0, []
    for t in calibration_tiles(n, seed=515151):
        da, db = a.predict([t])[0], b.predict([t])[0]
        counts.append((len(da), len(db)))
        u, w = match_boxes(np.array(da.xyxy), np.array(db.xyxy))
        unpaired, worst = unpaired + u, max(worst, w)
    return {"counts_onnx_torch": counts, "unpaired": unpaired, "max_box_diff_px": round(worst, 5)}


def opset_range() -> tuple[int, int]:
    """The opsets this script exports: from 13 (per-channel int8 QDQ needs it) to the newest the
    installed torch's TorchScript exporter writes."""
    try:
        from torch.onnx import _constants

        top = int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET))
    except (ImportError, AttributeError):
        top = 20
    return 13, top


def check_args(args, weights: Path, out: Path) -> None:
    """Refuse bad options in one line before any work is done."""
    from densedet_tile.errors import InvalidInputError
    from densedet_tile.io import refuse_overwriting_input

    if not weights.is_file():
        raise InvalidInputError(f"--weights {weights}: no such file")
    if out.is_dir():
        raise InvalidInputError(f"--out {out}: is a folder; give the path of the .onnx file to write")
    if not out.parent.is_dir():
        raise InvalidInputError(f"--out {out}: the folder {out.parent} does not exist")
    refuse_overwriting_input(out, {"--weights": weights}, option="--out")
    if args.calib < 1:
        raise InvalidInputError(f"--calib {args.calib}: must be at least 1 (calibration tiles for int8)")
    lo, hi = opset_range()
    if not lo <= args.opset <= hi:
        raise InvalidInputError(f"--opset {args.opset}: must be in {lo}..{hi} (per-channel int8 needs 13; "
                                f"{hi} is the newest this torch exports)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(WEIGHTS_DIR / "default.pt"), help="ShelfNet checkpoint (.pt)")
    ap.add_argument("--out", default=str(WEIGHTS_DIR / "default.onnx"))
    ap.add_argument("--format", choices=["fp32", "fp16", "int8"], default="int8")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--calib", type=int, default=32, help="calibration tiles for int8")
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args(argv)
    import importlib.util

    from densedet_tile.errors import InvalidInputError

    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:  # the light install: one line naming the extra, not a traceback
        raise InvalidInputError(f"exporting needs {' and '.join(missing)}: pip install 'densedet-tile[onnx]'")
    out = Path(args.out)
    weights = Path(args.weights)
    check_args(args, weights, out)
    if args.format == "fp32":
        export_fp32(weights, out, opset=args.opset)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "fp32.onnx"
            export_fp32(weights, base, opset=args.opset)
            (to_fp16 if args.format == "fp16" else to_int8)(base, out, **({"calib": args.calib} if args.format == "int8" else {}))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB, {args.format})")
    if not args.no_check:
        print(json.dumps(check(out, weights)))
    return 0


if __name__ == "__main__":
    from _bench_common import run_script  # noqa: E402

    raise SystemExit(run_script(main, "export_default_onnx"))
