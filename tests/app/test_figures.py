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
    fig = figures.pareto(e, "/x/best", "acc1", "ratio", (81.0, "notes"))
    pts = next(t for t in fig.data if t.customdata is not None and len(t.x) == 2)
    assert pts.x[0] != pts.x[1]  # the same place: spread sideways
    assert any(s.type == "rect" and s.y0 == 80.0 and s.y1 == 81.0 for s in fig.layout.shapes)
    fig = figures.pareto(e, None, "acc1", "bytes")
    assert fig.layout.xaxis.title.text.startswith("bytes")
