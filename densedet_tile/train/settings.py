"""The settings of an adapt run (:class:`AdaptSettings`), apart from the run itself so that
``densedet-tile adapt --help`` can show its defaults without torch (the light install)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import InvalidInputError
from ..types import DEFAULT_MAX_PIXELS
from .pseudo import LabelSettings

__all__ = ["AdaptSettings", "SEED_LIMIT"]

#: Seeds run from 0 to 2**32 - 1 (what numpy and torch both take whole, with room for the step
#: the run adds).
SEED_LIMIT = 2**32
#: The longest budget a run takes, minutes (about two years: longer is a typo, not a plan).
MAX_MINUTES = 1e6


@dataclass(frozen=True)
class AdaptSettings:
    """Everything that decides what an adapt run does (saved in its state and its output).

    Budget: ``minutes`` (wall time, labelling included) and/or ``steps`` (optimiser steps);
    the run ends at whichever comes first. ``rounds`` labelling rounds share the budget equally;
    with a time budget a round spends at most ``label_share`` of its time labelling (photos left
    over keep their labels from an earlier round, or wait for a later one). ``holdout`` photos
    are kept out of training and labelling and checked before and after. Batches hold ``batch``
    crops of ``size`` px, ``synth`` of them generated shelves (drawn from a pool of
    ``synth_pool`` shelves). ``lr`` (AdamW, ``warmup`` steps, cosine decay), ``ema`` decay of the
    weight average that labels and is saved. ``labels``: how pseudo-labels are made.
    ``serve_thr``: the score threshold the adapted weights are served at, written into their
    ``info``; None (the default) picks it at the end of the run: self-training lifts the scores
    of everything the model finds, its own mistakes included, so a fixed threshold over-counts
    more the longer it trains. The served threshold is the one at which the final weights, run
    plainly, count as many boxes on ``calib_photos`` training photos (never the held-out ones)
    as the larger of two counts there: their own pseudo-labels (boxes the test-time views agree
    on, see :mod:`.pseudo`) and the starting weights' boxes at their own threshold
    (docs/adapt.md). ``max_pixels``: photos with more pixels are skipped (None: no limit).
    """

    minutes: float | None = 60.0
    steps: int | None = None
    rounds: int = 3
    holdout: int = 0
    seed: int = 0
    size: int = 384
    batch: int = 8
    synth: float = 0.5
    synth_pool: int = 256
    lr: float = 3e-4
    warmup: int = 20
    ema: float = 0.99
    label_share: float = 0.5
    save_every: float = 120.0
    serve_thr: float | None = None
    calib_photos: int = 24
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    labels: LabelSettings = field(default_factory=LabelSettings)

    def __post_init__(self) -> None:
        def bad(what: str) -> InvalidInputError:
            return InvalidInputError(f"adapt: {what}")

        if self.minutes is None and self.steps is None:
            raise bad("give a budget: minutes, steps or both")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise bad(f"minutes must be > 0, got {self.minutes!r}")
        if self.minutes is not None and self.minutes > MAX_MINUTES:
            # (1e308 minutes passed, then the time left overflowed to infinity in the progress line)
            raise bad(f"minutes must be at most {MAX_MINUTES:g} (about {MAX_MINUTES / 525600:.1f} years), "
                      f"got {self.minutes!r}")
        if self.steps is not None and self.steps < 1:
            raise bad(f"steps must be >= 1, got {self.steps!r}")
        if self.rounds < 1:
            raise bad(f"rounds must be >= 1, got {self.rounds!r}")
        if self.holdout < 0:
            raise bad(f"holdout must be >= 0, got {self.holdout!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < SEED_LIMIT:
            # torch seeds its generators with 64-bit integers, and the run adds the step to the
            # seed times a million: a larger seed failed at the first step, and on every resume
            raise bad(f"seed must be an integer from 0 to {SEED_LIMIT - 1}, got {self.seed!r}")
        if self.size < 64 or self.size % 32:
            raise bad(f"size must be a multiple of 32 and at least 64, got {self.size!r}")
        if self.batch < 1:
            raise bad(f"batch must be >= 1, got {self.batch!r}")
        if not 0.0 <= self.synth < 1.0:
            raise bad(f"synth must be a fraction in [0, 1), got {self.synth!r}")
        if self.synth_pool < 1:
            raise bad(f"synth_pool must be >= 1, got {self.synth_pool!r}")
        if not (self.lr > 0 and 0.0 <= self.ema < 1.0 and 0.0 < self.label_share <= 1.0 and self.save_every > 0):
            raise bad("lr, ema, label_share or save_every out of range")
        if self.warmup < 0:
            raise bad(f"warmup must be >= 0, got {self.warmup!r}")
        if self.serve_thr is not None and not 0.0 < self.serve_thr < 1.0:
            raise bad(f"serve_thr must be in (0, 1) or None (picked from counts), got {self.serve_thr!r}")
        if isinstance(self.calib_photos, bool) or not isinstance(self.calib_photos, int) or self.calib_photos < 1:
            raise bad(f"calib_photos must be a positive integer, got {self.calib_photos!r}")
        if self.max_pixels is not None and (isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int)
                                            or self.max_pixels < 1):
            raise bad(f"max_pixels must be a positive integer or None, got {self.max_pixels!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"]["scales"] = list(self.labels.scales)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AdaptSettings":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and k != "labels"}
        lab = dict(d.get("labels", {}))
        lab["scales"] = tuple(lab.get("scales", LabelSettings().scales))
        return cls(**kw, labels=LabelSettings(**lab))

    @property
    def n_synth(self) -> int:
        """Generated shelves per batch: ``synth`` of it, rounded, but always leaving room for at
        least one crop of a photo (so a ``synth`` near 1 cannot make batches of generated shelves
        only)."""
        return min(int(round(self.batch * self.synth)), self.batch - 1)
