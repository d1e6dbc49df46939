#!/usr/bin/env python
"""Write a synthetic shelf dataset: full-size photos plus SKU-110K style annotations.

    python scripts/make_shelves.py --out data/shelves_val --n 50 --seed 1000

Creates ``OUT/images/shelf_<seed>_<iiii>.jpg`` (2448x3264 portrait and 3264x2448 landscape,
alternating, products about 260 px tall as in SKU-110K phone photos, jittered x0.7..x1.4) and
``OUT/annotations.csv`` with rows ``image_name,x1,y1,x2,y2,class,image_width,image_height``.
Image i depends only on (seed, i). The training stream (scripts/train_default.py) uses seed 0
and model-input-sized crops; use a different seed for held-out sets.

The options are checked before anything is written (a bad one: one line, exit status 2). OUT
must be new, empty, or an earlier set written by this script, which is replaced (images it had
that the new set lacks are removed). Images are written atomically and ``annotations.csv`` last,
so a folder without ``annotations.csv`` holds an interrupted run: run the command again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densedet_tile.errors import InvalidInputError  # noqa: E402
from densedet_tile.synth.shelves import PHOTO_PRODUCT_HEIGHT, check_dataset_args, write_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, required=True, help="number of images")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--width", type=int, default=2448)
    ap.add_argument("--height", type=int, default=3264)
    ap.add_argument("--product-height", type=float, default=PHOTO_PRODUCT_HEIGHT)
    args = ap.parse_args(argv)
    check_dataset_args(args.n, args.seed, args.width, args.height, args.product_height, as_options=True)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out}: exists and is not a folder")
    t = time.time()
    csv_path = write_dataset(args.out, n=args.n, seed=args.seed, width=args.width, height=args.height,
                             product_height=args.product_height)
    print(f"wrote {args.n} images and {csv_path} in {time.time() - t:.1f}s")
    return 0


if __name__ == "__main__":
    from _bench_common import run_script  # noqa: E402

    raise SystemExit(run_script(main, "make_shelves"))
