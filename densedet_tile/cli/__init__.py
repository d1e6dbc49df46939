"""The command line, the top floor: ``densedet-tile [VERB] ...``.

One module per verb (:mod:`.detect` is the default, then :mod:`.batch`, :mod:`.eval`,
:mod:`.audit`, :mod:`.convert`, :mod:`.adapt`) and :mod:`.options`, which turns the shared flags into specs.
The library never imports this package.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

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
    with _one_line_warnings():
        return run(argv)


_PACKAGE = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """While a verb runs, show the package's own warnings as the log lines are shown
    (``densedet-tile: WARNING: ...``) instead of Python's two lines with a file name and a line of
    our source; warnings from other libraries keep Python's format, whose file name helps to find
    them. The previous ``warnings.showwarning`` comes back afterwards."""
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        try:
            ours = Path(filename).resolve().is_relative_to(_PACKAGE)
        except (OSError, ValueError):
            ours = False
        if ours:
            logging.getLogger("densedet_tile").warning("%s", message)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
