"""Running the engine on several workers: the Ray actor pool behind ``densedet-tile batch``.

:mod:`.ray_pool` imports Ray at module import time, so import it only when Ray is wanted;
``import densedet_tile.distributed`` itself is light and works without Ray installed.
"""

from __future__ import annotations

from ..errors import MissingDependencyError

__all__ = ["require_ray"]


def require_ray(feature: str = "densedet-tile batch on Ray") -> None:
    """Raise :class:`~densedet_tile.errors.MissingDependencyError` when Ray is not importable."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise MissingDependencyError(feature, "ray", "ray") from None
