"""torch for the training modules, or one line naming the extra that brings it.

Imported first by each module of :mod:`densedet_tile.train` that needs torch, so that on the
light install ``import densedet_tile.train.adapt`` (or ``from densedet_tile.train import
find_photos``) says what to install, as the rest of the API does, instead of a bare
``ModuleNotFoundError: No module named 'torch'``.
"""

from __future__ import annotations

from ..errors import MissingDependencyError

try:
    import torch  # noqa: F401
except ImportError as exc:
    raise MissingDependencyError("training and adapting the built-in model (densedet_tile.train)", "torch",
                                 "train", exc) from exc
