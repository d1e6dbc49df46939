"""Selecting from a Detections (a mask, indices, a slice, an int) skips the second validation
but still gives owned, read-only arrays of the right dtypes, and a selection of another shape
is still refused."""

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError


def _dets() -> dt.Detections:
    return dt.Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], np.float32),
                         np.array([0.9, 0.5, 0.3]), np.array([0, 1, 2]))


@pytest.mark.parametrize("index", [[0, 2], np.array([True, False, True]), slice(0, 3, 2), np.array([0, 2])])
def test_a_selection_is_owned_read_only_and_typed(index):
    d = _dets()
    e = d[index]
    np.testing.assert_array_equal(e.xyxy, d.xyxy[[0, 2]])
    np.testing.assert_array_equal(e.scores, d.scores[[0, 2]])
    np.testing.assert_array_equal(e.labels, [0, 2])
    for got, src, dtype in ((e.xyxy, d.xyxy, np.float32), (e.scores, d.scores, np.float32),
                            (e.labels, d.labels, np.int64)):
        assert got.dtype == dtype and not got.flags.writeable and not np.shares_memory(got, src)
        with pytest.raises(ValueError):
            got[...] = 0


def test_an_int_and_an_empty_selection():
    d = _dets()
    assert d[1].xyxy.shape == (1, 4) and d[1].labels.tolist() == [1]
    e = d[np.zeros(3, bool)]
    assert len(e) == 0 and e.xyxy.shape == (0, 4)


def test_an_index_of_another_shape_is_refused():
    with pytest.raises(InvalidInputError, match="expected shape"):
        _dets()[np.array([[0, 1]])]


@pytest.mark.parametrize("flag", [True, False, np.True_])
def test_a_single_bool_is_refused_not_taken_for_box_one(flag):
    with pytest.raises(InvalidInputError, match="no selection"):
        _dets()[flag]
    assert len(_dets()[np.array([True, False, True])]) == 2  # a mask still selects
