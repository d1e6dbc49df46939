"""``densedet-tile convert-checkpoint``: a 1.x SKU110K-DenseDet checkpoint for the shipped 3.x config.

Exit 0 when the checkpoint was written, 2 for bad usage or a checkpoint that does not fit.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from ..errors import DensedetError, one_line
from ..io import ensure_out_file, new_folders, refuse_overwriting_input, remove_empty
from .options import EXIT_OK, EXIT_USAGE, StopSignals, _int, error, parse

__all__ = ["convert_main", "build_parser"]

PROG = "densedet-tile convert-checkpoint"


def _with_background(text: str) -> int:
    """A 1.x class count, the background included: 2 or more."""
    return _int(text, 2, "an integer of 2 or more (the background and a class)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Upgrade the MMDetection 1.x SKU110K-DenseDet checkpoint (keys, class-row order) to the "
        "mmdet 3.x DenseDet config shipped with densedet-tile; the result loads with torch.load(weights_only=True).",
        epilog="Needs torch and the MMDetection stack: pip install 'densedet-tile[mmdet]' (torch alone, "
        "pip install 'densedet-tile[torch]', with --no-verify).",
    )
    p.add_argument("src", help="MMDetection 1.x DenseDet checkpoint (.pth)")
    p.add_argument("dst", help="where to write the 3.x checkpoint")
    p.add_argument("--config", default="densedet-x101",
                   help="shipped config name or config file to verify against (default: %(default)s)")
    p.add_argument("--no-verify", action="store_true", help="skip building the model to check keys and shapes")
    p.add_argument("--num-classes-v1", type=_with_background, default=2,
                   help="1.x num_classes, background included: 2 or more (default: %(default)s)")
    return p


def convert_main(argv: Sequence[str]) -> int:
    """Entry point of ``densedet-tile convert-checkpoint``; returns the exit status."""
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    import importlib.util

    from ..errors import MissingDependencyError

    if importlib.util.find_spec("torch") is None:  # needed either way: one line, the extra this run needs
        error(PROG, one_line(MissingDependencyError(
            "convert-checkpoint (to read and write checkpoints; [mmdet] also checks the result against an mmdet "
            "config, which --no-verify skips)", "torch", "mmdet" if not args.no_verify else "torch")))
        return EXIT_USAGE
    if not args.no_verify:  # verifying builds the mmdet model: say [mmdet] up front
        for module, dist in (("mmengine", "mmengine"), ("mmcv", "mmcv-lite"), ("mmdet", "mmdet")):
            if importlib.util.find_spec(module) is None:
                error(PROG, one_line(MissingDependencyError(
                    "convert-checkpoint (it checks the result against an mmdet config; --no-verify skips that)",
                    dist, "mmdet")))
                return EXIT_USAGE
    # a stop (Ctrl-C, SIGTERM, SIGHUP) ends it as a failure does, from the imports on: one line,
    # the temporary file and the folders it made gone (SIGTERM left a part-written temporary file,
    # Ctrl-C a traceback and the folders; during mmdet's imports, seconds long, a traceback too:
    # outside reviews)
    made = new_folders(os.path.dirname(os.path.abspath(os.path.expanduser(args.dst))))
    with StopSignals() as stop:
        try:
            code = _convert(args, made)
        except KeyboardInterrupt:
            code = None
    if code is None or stop.signum is not None:  # (a stop an import turned into its own error counts too)
        remove_empty(made)
        if code in (None, EXIT_OK):  # (else the error it turned into was said: one line, not two)
            error(PROG, stop.reason)
        return stop.exit_status
    return code


def _convert(args: argparse.Namespace, made: list) -> int:
    from ..detector.convert import EXACTNESS_SUMMARY, convert

    try:  # the destination first, named as such: nothing is converted for a place it cannot go
        refuse_overwriting_input(args.dst, {"source checkpoint": args.src}, option="dst")
        ensure_out_file(args.dst, option="dst")
        if not args.no_verify:  # and the config: a wrong one is the config's, said before any conversion
            from ..configs import find_config
            from ..detector.mmdet_adapter import _import_stack, read_config

            _import_stack()
            read_config(find_config(args.config), args.config)
    except (DensedetError, OSError) as exc:
        error(PROG, one_line(exc))
        return EXIT_USAGE
    try:
        meta = convert(args.src, args.dst, config=None if args.no_verify else args.config,
                       num_classes_v1=args.num_classes_v1)
    except (DensedetError, OSError) as exc:
        remove_empty(made)
        said = one_line(exc)  # (the config's faults name the config, not the checkpoint)
        error(PROG, said if args.src in said or said.startswith("mmdet config ") else f"{args.src}: {said}")
        return EXIT_USAGE
    print(f"wrote {args.dst} (classes: {', '.join(meta['dataset_meta']['classes'])})")
    print(EXACTNESS_SUMMARY, end="")
    return EXIT_OK
