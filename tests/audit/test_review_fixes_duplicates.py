"""A detector that repeats one box many times: the audit's neighbour search asks the spatial
index once per distinct box (a pile of k copies gave k^2 candidate pairs: 20 000 copies ran out
of memory), with the same neighbours as before."""

from __future__ import annotations

import numpy as np
import shapely

from densedet_tile.audit import run_audit
from densedet_tile.audit import neighbours as nb


def _pick(a: np.ndarray, i: np.ndarray, j: np.ndarray) -> dict[int, int]:
    """Each box's chosen neighbour (leftmost left edge, ties the lower index), as callers pick."""
    order = np.lexsort((j, a[j, 0], i))
    i, j = i[order], j[order]
    first = np.r_[True, i[1:] != i[:-1]] if len(i) else np.zeros(0, bool)
    return dict(zip(i[first].tolist(), j[first].tolist()))


def test_copies_of_boxes_change_no_neighbour_and_no_stacking() -> None:
    rng = np.random.default_rng(1)
    for trial in range(30):
        base = np.round(rng.uniform(0, 500, (60, 2)))
        b = np.c_[base, base + rng.integers(5, 60, (60, 2))].astype(float)
        a = np.r_[b, b[rng.integers(0, 60, 40)]][rng.permutation(100)]
        assert _pick(a, *nb._candidates(a, 1.0, 0.5)) == _pick(a, *nb._distinct_candidates(a, 1.0, 0.5)), trial
        # stacking decided per box, copies or not: the same as for each box's first copy
        u, first, inverse = nb._distinct(a)
        assert (nb.stands_on_another(a) == nb.stands_on_another(u)[inverse]).all()


def test_a_pile_of_copies_asks_the_index_once_per_distinct_box(monkeypatch) -> None:
    sizes = []
    real = shapely.STRtree.query

    def counted(self, geoms, *args, **kwargs):
        out = real(self, geoms, *args, **kwargs)
        sizes.append(out.shape[-1])
        return out

    monkeypatch.setattr(shapely.STRtree, "query", counted)
    k = 3000
    pile = np.tile([[100.0, 100.0, 200.0, 300.0]], (k, 1))
    row = np.array([[300.0 + 110 * n, 100.0, 400.0 + 110 * n, 300.0] for n in range(10)])
    res = run_audit(np.r_[pile, row], 20000, 1000)
    assert sum(p.layout.assignment.size for p in res.parts) == k + 10  # every box audited
    assert sizes and max(sizes) < 10 * (k + 10), max(sizes)  # not k^2 = 9 000 000


def test_row_labels_are_drawn_only_where_the_preview_leaves_a_row_room_for_them(monkeypatch) -> None:
    from PIL import ImageDraw

    from densedet_tile.audit.report import render_preview
    from densedet_tile.synth.audit_aisles import synthetic_bays

    aisle = synthetic_bays(np.random.default_rng([3, 97]), n_bays=2, perspective_deg=0.0, roll_deg=0.0)
    res = run_audit(aisle.xyxy, aisle.width, aisle.height)
    texts: list[str] = []
    real = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, *a, **k: (texts.append(text),
                                                                                          real(self, xy, text, *a, **k))[1])
    n_rows = sum(len(p.layout.rows) for p in res.parts)
    render_preview(res, None)  # the aisle fits at about its size: every row labelled
    assert sum(t.count(".") == 1 and t.replace(".", "").isdigit() for t in texts) == n_rows
    texts.clear()
    render_preview(res, None, max_width=aisle.width // 40, max_height=aisle.height // 40)  # shrunk 40 times
    assert not [t for t in texts if t.count(".") == 1 and t.replace(".", "").isdigit()]
    assert any(t.startswith("bay") for t in texts)  # bays are still named
