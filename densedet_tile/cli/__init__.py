"""The command line, the top floor: ``densedet-tile [VERB] ...``.

One module per verb (:mod:`.detect` is the default, then :mod:`.batch`, :mod:`.eval`,
:mod:`.audit`, :mod:`.convert`, :mod:`.adapt`) and :mod:`.options`, which turns the shared flags into specs.
The library never imports this package.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Sequence

__all__ = ["main", "VERBS"]

#: Verb -> (module, entry point). Anything else on the command line is an input of the default verb.
VERBS: dict[str, tuple[str, str]] = {
    "batch": ("batch", "batch_main"),
    "eval": ("eval", "eval_main"),
    "audit": ("audit", "audit_main"),
    "convert-checkpoint": ("convert", "convert_main"),
    "adapt": ("adapt", "adapt_main"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``densedet-tile`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="densedet-tile: %(levelname)s: %(message)s")
    module, entry = VERBS.get(argv[0], ("detect", "detect_main")) if argv else ("detect", "detect_main")
    if module != "detect":
        argv = argv[1:]
    run = getattr(importlib.import_module(f".{module}", __name__), entry)
    return run(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
