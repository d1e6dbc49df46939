"""Value parsers for argparse shared by every ``densedet-tile`` verb.

Each raises :class:`argparse.ArgumentTypeError` with a message saying what it expected, which
argparse turns into a one-line usage error and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["positive_int", "nonneg_int", "positive_float", "nonneg_float", "fraction"]


def _int(text: str, lo: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def _float(text: str, ok: Callable[[float], bool], what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(v) and ok(v)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int(text, 1, "a positive integer")


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    return _int(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _float(text, lambda v: v > 0, "a positive number")


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    return _float(text, lambda v: v >= 0, "a number >= 0")


def fraction(lo: float, hi: float, *, hi_open: bool = False) -> Callable[[str], float]:
    """A parser for numbers in [lo, hi] (or [lo, hi) with ``hi_open``)."""
    bracket = ")" if hi_open else "]"
    what = f"a value in [{lo}, {hi}{bracket}"

    def parse(text: str) -> float:
        return _float(text, lambda v: lo <= v < hi if hi_open else lo <= v <= hi, what)

    return parse
