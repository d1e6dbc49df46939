"""Running the engine on several workers: the Ray actor pool behind ``densedet-tile batch``.

:mod:`.ray_pool` imports Ray at module import time, so import it only when Ray is wanted;
``import densedet_tile.distributed`` itself is light and works without Ray installed.
"""

from __future__ import annotations

from ..errors import MissingDependencyError

__all__ = ["ray_installed", "require_ray"]


def ray_installed() -> bool:
    """Whether Ray itself is installed, not a folder named ``ray`` that the import found first
    (a namespace package: ``python -m densedet_tile batch`` run in /tmp, where Ray's own temp
    folder /tmp/ray lies, took it for Ray and failed on ``ray.exceptions``; an outside review).
    Imports Ray when it is there (a broken install raises its ImportError)."""
    import importlib.util

    spec = importlib.util.find_spec("ray")
    if spec is None or spec.origin in (None, "namespace"):  # (a folder without __init__.py)
        return False
    import ray  # noqa: F401

    return True


def require_ray(feature: str = "densedet-tile batch on Ray") -> None:
    """Raise :class:`~densedet_tile.errors.MissingDependencyError` when Ray is not importable."""
    try:
        if not ray_installed():
            raise ModuleNotFoundError("No module named 'ray'", name="ray")
    except ImportError as exc:
        raise MissingDependencyError(feature, "ray", "ray", exc) from None
