"""Killing tests for surviving mutants of densedet_tile/audit/heatmap.py (generated data only)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from densedet_tile.audit.heatmap import MAX_CELLS, check_cell, density_grid, heatmap_png
from densedet_tile.errors import InvalidInputError


def test_a_grid_of_exactly_max_cells_is_allowed() -> None:
    # heatmap.py:82 "more than MAX_CELLS" is refused; 500 x 500 cells of 1 px is exactly the limit
    assert MAX_CELLS == 250_000
    check_cell(1, 500, 500)
    assert density_grid(np.array([[10.0, 10, 20, 20]]), 500, 500, cell=1).counts.shape == (500, 500)
    with pytest.raises(InvalidInputError, match="250,001 cells"):
        check_cell(1, 250_001, 1)


def test_the_png_blows_each_cell_up_to_the_longer_side_asked() -> None:
    # heatmap.py:136 each cell is an equal block, the longer side at most max_side: 4 x 2 cells
    # at 1600 px are 400 px blocks
    grid = density_grid(np.array([[10.0, 10, 20, 20], [300.0, 50, 320, 70]]), 400, 200, cell=100)
    img = Image.open(io.BytesIO(heatmap_png(grid, max_side=1600)))
    assert img.size == (1600, 800)
    assert Image.open(io.BytesIO(heatmap_png(grid, max_side=3))).size == (4, 2)  # at least a pixel a cell
