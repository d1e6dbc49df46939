"""Model configs shipped with densedet-tile, found by name or by path.

Each ``.py`` file here is an MMDetection 3.x config (read with ``mmengine.Config.fromfile``,
never imported as a module). Short names:

| name | file | what |
|---|---|---|
| ``densedet-x101`` | ``densedet_x101_32x4d_cascade_bfp.py`` | SKU110K-DenseDet ported to mmdet 3.x, for tiles |
| ``densedet-x101-whole`` | ``densedet_x101_32x4d_cascade_bfp_wholeimage.py`` | the same at the original whole-photo scale |
| ``densedet-r18-light`` | ``densedet_r18_cascade_bfp_light.py`` | same structure, ResNet-18: tests and CPU smoke runs |
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidInputError

__all__ = ["CONFIGS", "config_path", "find_config"]

#: Short name -> file name of each shipped config.
CONFIGS: dict[str, str] = {
    "densedet-x101": "densedet_x101_32x4d_cascade_bfp.py",
    "densedet-x101-whole": "densedet_x101_32x4d_cascade_bfp_wholeimage.py",
    "densedet-r18-light": "densedet_r18_cascade_bfp_light.py",
}

_HERE = Path(__file__).resolve().parent


def config_path(name: str) -> Path:
    """The installed file of the shipped config ``name`` (a short name or its file name)."""
    file = CONFIGS.get(name, name)
    if file not in CONFIGS.values():
        raise InvalidInputError(f"unknown config {name!r}: shipped configs are {', '.join(CONFIGS)}")
    return _HERE / file


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """A config given as a shipped name (``densedet-x101``) or file name, or as a path to a file.

    An existing file wins over a shipped name; anything else raises
    :class:`~densedet_tile.errors.InvalidInputError` listing the shipped names.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    text = str(name_or_path)
    if text in CONFIGS or text in CONFIGS.values():
        return config_path(text)
    raise InvalidInputError(
        f"config {text!r}: no such file, and not a shipped config ({', '.join(CONFIGS)})"
    )
