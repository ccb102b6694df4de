"""The app's Plotly figures (app/figures.py) read well."""
from __future__ import annotations

from app import figures
from ctnet import runs


def test_pareto_figure_reads_well():
    """1-2-5 log ticks (not Plotly's "2 3 … 9"), the baseline with its 1-pt band, coincident
    points spread apart, a bytes axis."""
    vals, text = figures.log_ticks(9.0, 110.0, lambda v: f"{v:g}×")
    assert text == ["10×", "20×", "50×", "100×"] and vals == [10.0, 20.0, 50.0, 100.0]
    assert figures.human_bytes(2_500_000) == "2.5 MB" and figures.human_bytes(500_000) == "500 kB"
    e = [runs.Entry(run="r", roles=(role,), path=f"/x/{role}", kind="bundle", acc1=80.0, real_bytes=1000,
                    fp32_bytes=50_000) for role in ("best", "smallest")]
    fig = figures.pareto(e, "/x/best", "acc1", "ratio", runs.Baseline(81.0, "notes"))
    pts = next(t for t in fig.data if t.customdata is not None and len(t.x) == 2)
    assert pts.x[0] != pts.x[1]  # the same place: spread sideways
    assert any(s.type == "rect" and s.y0 == 80.0 and s.y1 == 81.0 for s in fig.layout.shapes)
    fig = figures.pareto(e, None, "acc1", "bytes")
    assert fig.layout.xaxis.title.text.startswith("bytes")


def _pixels(fig, width=900.0, height=400.0):
    """Each marker's place in the plot spread() models (log x), by its checkpoint path."""
    import math
    pts = [(cd[0], x, y) for t in fig.data if t.customdata is not None and t.name != "current"
           for cd, x, y in zip(t.customdata, t.x, t.y)]
    xs, ys = [math.log10(x) for _, x, _ in pts], [y for *_, y in pts]
    sx, sy = width / ((max(xs) - min(xs)) or 1), height / ((max(ys) - min(ys)) or 1)
    return {p: ((math.log10(x) - min(xs)) * sx, (y - min(ys)) * sy) for p, x, y in pts}


def test_pareto_points_that_would_overlap_are_moved_apart_and_each_stays_clickable():
    """Issue 24.9: the README's headline point sat under two others within a few pixels;
    every marker is now at least SPREAD_PX from every other, the current run is drawn last (on
    top, what a click finds) and the star sits on its moved marker."""
    e = [runs.Entry(run="lam5e-7", roles=(role,), path=f"/x/{role}", kind="bundle", acc1=acc, real_bytes=nbytes,
                    fp32_bytes=44_764_968) for role, acc, nbytes in
         (("best", 89.10, 600_000), ("best_74x", 89.08, 604_000), ("smallest", 89.05, 610_000))]
    e += [runs.Entry(run="lam1e-7", roles=("best",), path="/y/best", kind="bundle", acc1=89.5, real_bytes=1_500_000,
                     fp32_bytes=44_764_968),
          runs.Entry(run="lam1e-5", roles=("best",), path="/z/best", kind="bundle", acc1=80.0, real_bytes=200_000,
                     fp32_bytes=44_764_968)]
    fig = figures.pareto(e, "/x/best", "acc1", "ratio")
    where = _pixels(fig)
    assert len(where) == 5
    for a in where:
        for b in where:
            if a < b:
                (ax, ay), (bx, by) = where[a], where[b]
                assert (ax - bx) ** 2 + (ay - by) ** 2 >= figures.SPREAD_PX ** 2 - 1e-6, (a, b)
    marker_traces = [t for t in fig.data if t.customdata is not None and t.name != "current"]
    assert marker_traces[-1].legendgroup == "lam5e-7"  # the current run on top
    star = next(t for t in fig.data if t.name == "current")
    best = next(t for t in marker_traces if "/x/best" in [cd[0] for cd in t.customdata])
    i = [cd[0] for cd in best.customdata].index("/x/best")
    assert (star.x[0], star.y[0]) == (best.x[i], best.y[i])
    # hover keeps the true ratio
    assert best.customdata[i][4] == e[0].ratio


def test_a_difference_map_is_centred_at_zero():
    """Issue 24.10: B − A on a diverging scale centred at 0, so "no change" is the middle colour."""
    import numpy as np
    fig = figures.frequency_heatmap(np.array([[0.0, 0.25], [-0.5, 0.0]]), "B − A", ("k_h", "k_w"), log=False,
                                    diverging=True)
    h = fig.data[0]
    assert h.zmid == 0.0 and (h.zmin, h.zmax) == (-0.5, 0.5) and h.colorscale[0][1] != h.colorscale[-1][1]
