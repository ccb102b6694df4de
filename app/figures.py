"""Plotly figures of what ctnet.runs / ctnet.inspect compute (no computation here)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ctnet import runs

PALETTE = qualitative.Plotly + qualitative.D3


def run_colours(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def pareto(entries: list[runs.Entry], current: str | None, which: str) -> go.Figure:
    """Accuracy against compression ratio, one colour per run, the frontier over all runs,
    the current checkpoint starred; each point's customdata is its path."""
    colours = run_colours([e.run for e in entries])
    fig = go.Figure()
    for run in sorted(colours):
        for kind, symbol in (("real", "circle"), ("estimated", "circle-open")):
            pts = [e for e in entries if e.run == run and e.ratio_kind == kind
                   and runs.accuracy_of(e, which) is not None and e.ratio]
            if not pts:
                continue
            fig.add_trace(go.Scatter(
                x=[e.ratio for e in pts], y=[runs.accuracy_of(e, which) for e in pts], mode="markers",
                name=f"{run}" + ("" if kind == "real" else " (estimated size)"), legendgroup=run,
                marker=dict(color=colours[run], size=11, symbol=symbol, line=dict(width=2, color=colours[run])),
                customdata=[[e.path, e.label, e.epoch if e.epoch is not None else "–",
                             f"{e.real_bytes or e.est_bytes:,}"] for e in pts],
                hovertemplate="<b>%{customdata[1]}</b><br>epoch %{customdata[2]}<br>top-1 %{y:.2f} %<br>"
                              "%{x:.1f}× (%{customdata[3]} B, " + kind + ")<br>%{customdata[0]}<extra></extra>"))
    front = runs.frontier(entries, which)
    if len(front) > 1:
        # the attainable staircase: asking for a ratio between two frontier points gets the
        # accuracy of the one with the higher ratio
        fig.add_trace(go.Scatter(x=[e.ratio for e in front], y=[runs.accuracy_of(e, which) for e in front],
                                 mode="lines", name="frontier", line=dict(color="#444", dash="dash", shape="vh"),
                                 hoverinfo="skip"))
    cur = [e for e in entries if e.path == current and runs.accuracy_of(e, which) is not None and e.ratio]
    if cur:
        fig.add_trace(go.Scatter(x=[cur[0].ratio], y=[runs.accuracy_of(cur[0], which)], mode="markers",
                                 name="current", marker=dict(symbol="star", size=20, color="gold",
                                                             line=dict(width=1, color="black")),
                                 customdata=[[cur[0].path, cur[0].label, cur[0].epoch, ""]],
                                 hovertemplate="<b>current: %{customdata[1]}</b><extra></extra>"))
    fig.update_layout(xaxis_title="compression ratio vs fp32 (×)",
                      yaxis_title="decoded top-1 (%)" if which == "decoded" else "top-1 at training (%)",
                      xaxis_type="log", height=460, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", y=-0.2), clickmode="event+select")
    return fig


def training_curves(run_list: list[runs.Run]) -> go.Figure:
    colours = run_colours([r.name for r in run_list])
    fig = make_subplots(rows=1, cols=3, subplot_titles=("top-1 (%)", "estimated size (MB)", "rate proxy (bits)"))
    for r in run_list:
        if not r.log:
            continue
        ep = [row["epoch"] for row in r.log]
        for col, values in enumerate((
                [row.get("acc1") for row in r.log],
                [row["est_bytes_export"] / 1e6 if row.get("est_bytes_export") is not None else None for row in r.log],
                [row.get("rate") for row in r.log]), 1):
            fig.add_trace(go.Scatter(x=ep, y=values, mode="lines", name=r.name, legendgroup=r.name,
                                     showlegend=col == 1, line=dict(color=colours[r.name])), row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def sparsity_bars(rows: list[dict]) -> go.Figure:
    names = [r["layer"] for r in rows]
    fig = go.Figure(go.Bar(x=names, y=[r["non-zero %"] for r in rows],
                           customdata=[[r["non-zero"], r["values"], r["kind"]] for r in rows],
                           marker_color=["#636EFA" if r["kind"] == "spatial DCT" else "#EF553B"
                                         if r["kind"] == "channel DCT" else "#00CC96" for r in rows],
                           hovertemplate="%{x}<br>%{customdata[2]}<br>%{y:.2f} % non-zero "
                                         "(%{customdata[0]:,} of %{customdata[1]:,})<extra></extra>"))
    fig.update_layout(yaxis_title="non-zero coefficients (%)", yaxis_type="log", height=320,
                      margin=dict(l=10, r=10, t=10, b=10), xaxis_tickangle=-60)
    return fig


def coefficient_heatmap(logmag: np.ndarray, factor: int, tile: int, floor_log: float) -> go.Figure:
    """log10|c| of the exported image; ``factor`` > 1: the image was max-pooled for display."""
    h, w = logmag.shape
    fig = go.Figure(go.Heatmap(z=logmag, colorscale="Viridis", zmin=floor_log, zmax=float(np.max(logmag)),
                               colorbar=dict(title="log10|c|"),
                               hovertemplate=(f"row %{{y}}·{factor}, col %{{x}}·{factor}" if factor > 1
                                              else "row %{y}, col %{x}") + "<br>log10|c| %{z:.2f}<extra></extra>"))
    step = tile / factor
    for k in range(1, int(np.ceil(h / step))):
        fig.add_hline(y=k * step - 0.5, line=dict(color="white", width=1, dash="dot"))
    for k in range(1, int(np.ceil(w / step))):
        fig.add_vline(x=k * step - 0.5, line=dict(color="white", width=1, dash="dot"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(height=min(900, max(320, int(620 * h / max(w, 1)) + 60)), margin=dict(l=10, r=10, t=10, b=10))
    return fig


def frequency_heatmap(z: np.ndarray, title: str, axes: tuple[str, str], log: bool) -> go.Figure:
    # exact zeros have no logarithm: left blank rather than pinned to an arbitrary floor
    values = np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan) if log else z
    fig = go.Figure(go.Heatmap(z=values, colorscale="Magma" if log else "Blues",
                               text=np.vectorize(lambda v: f"{v:.3g}")(z),
                               texttemplate="%{text}" if z.size <= 64 else None,
                               colorbar=dict(title="log10" if log else ""),
                               hovertemplate=f"{axes[0]} %{{y}}, {axes[1]} %{{x}}<br>{title} %{{text}}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text=axes[0], scaleanchor="x")
    fig.update_xaxes(title_text=axes[1])
    fig.update_layout(title=title, height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def magnitude_histogram(h, q: float) -> go.Figure:
    centres = (h.edges[:-1] + h.edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centres, y=h.counts, width=np.diff(h.edges), marker_color=np.where(
        centres >= h.threshold, "#636EFA", "#BBBBBB"), hovertemplate="log10|c| %{x:.2f}: %{y:,}<extra></extra>"))
    fig.add_vline(x=h.threshold, line=dict(color="red", dash="dash"),
                  annotation_text=f"q/2 = {q / 2:g}", annotation_position="top")
    fig.update_layout(xaxis_title="log10 |c| (exact zeros not shown)", yaxis_title="coefficients", yaxis_type="log",
                      height=320, margin=dict(l=10, r=10, t=30, b=10), bargap=0)
    return fig


def mse_curves(curves: dict[str, np.ndarray]) -> go.Figure:
    fig = go.Figure()
    for name, y in curves.items():
        fig.add_trace(go.Scatter(y=y, mode="lines", name=f"{name} (mean {y.mean():.1f})" if len(y) else name))
    fig.update_layout(xaxis_title="frame pair (position in stream)", yaxis_title="MSE between adjacent frames",
                      yaxis_type="log", height=300, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h"))
    return fig


def frame_image(frame8: np.ndarray, title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=frame8, colorscale="gray", zmin=0, zmax=255, showscale=False,
                               hovertemplate="row %{y}, col %{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(title=title, height=460, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def frame_bytes(values: list[int | None], labels: list[str]) -> go.Figure:
    fig = go.Figure(go.Bar(y=values, customdata=labels, hovertemplate="%{customdata}<br>%{y:,} B<extra></extra>"))
    fig.update_layout(xaxis_title="position in stream (coded order of the encode)", yaxis_title="bytes",
                      yaxis_type="log", height=300, margin=dict(l=10, r=10, t=10, b=10), bargap=0)
    return fig


def layer_bars(rows: list[dict], value: str, title: str, log: bool = False, previous: dict | None = None) -> go.Figure:
    fig = go.Figure()
    if previous:
        fig.add_trace(go.Bar(x=[r["layer"] for r in rows], y=[previous.get(r["layer"]) for r in rows],
                             name="previous encode", marker_color="#BBBBBB"))
    fig.add_trace(go.Bar(x=[r["layer"] for r in rows], y=[r[value] for r in rows], name="this encode",
                         marker_color="#636EFA"))
    fig.update_layout(yaxis_title=title, yaxis_type="log" if log else "linear", height=320, barmode="group",
                      margin=dict(l=10, r=10, t=10, b=10), xaxis_tickangle=-60, legend=dict(orientation="h"))
    return fig


def error_chart(rows: list[dict]) -> go.Figure:
    layers = [r["layer"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=layers, y=[r["max |err|"] for r in rows], name="max |error|"))
    if rows and "rms err" in rows[0]:
        fig.add_trace(go.Bar(x=layers, y=[r["rms err"] for r in rows], name="RMS error"))
    fig.add_trace(go.Scatter(x=layers, y=[r["half step"] for r in rows], mode="markers",
                             name="half a quantisation step",
                             marker=dict(symbol="line-ew-open", size=14, color="black")))
    fig.update_layout(yaxis_title="reconstruction error", yaxis_type="log", height=320, barmode="group",
                      margin=dict(l=10, r=10, t=10, b=10), xaxis_tickangle=-60, legend=dict(orientation="h"))
    return fig


def confusion(matrix: list[list[int]], names: list[str]) -> go.Figure:
    m = np.asarray(matrix)
    cols = names + (["other"] if m.shape[1] == len(names) + 1 else [])
    fig = go.Figure(go.Heatmap(z=m, x=cols, y=names, colorscale="Blues", text=m, texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="true class")
    fig.update_xaxes(title_text="predicted class")
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=10, b=10))
    return fig


RD_SPAN = 8.0  # top-1 points shown below the floor on the rate–distortion chart


def rd_curves(points: list[dict], floor: float | None, reference: dict | None) -> go.Figure:
    """Decoded top-1 against bytes (log), one colour per method: every point as a marker,
    the method's Pareto-optimal points joined; the fp32 reference and the floor as lines."""
    from ctnet import rd
    curves = sorted({p["codec"] for p in points if p["method"] != "fp32"})
    colours = run_colours(curves)
    fig = go.Figure()
    for codec in curves:
        pts = sorted((p for p in points if p["codec"] == codec), key=lambda p: p["bytes"])
        front = rd.frontier(pts)
        fig.add_trace(go.Scatter(
            x=[p["bytes"] for p in front], y=[p["acc1"] for p in front], mode="lines", legendgroup=codec,
            showlegend=False, line=dict(color=colours[codec], width=2), hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=[p["bytes"] for p in pts], y=[p["acc1"] for p in pts], mode="markers", name=codec, legendgroup=codec,
            marker=dict(color=colours[codec], size=9),
            customdata=[[p["label"], f"{p['bytes']:,}", p["ratio"], p["encode_seconds"], p["decode_seconds"]]
                        for p in pts],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} B (%{customdata[2]:.1f}×)<br>"
                          "top-1 %{y:.2f} %<br>encode %{customdata[3]:.1f} s, decode %{customdata[4]:.2f} s"
                          "<extra></extra>"))
    if reference is not None:
        fig.add_hline(y=reference["acc1"], line=dict(color="#444", dash="dot"),
                      annotation_text=f"fp32 {reference['acc1']:.2f} % ({reference['bytes']:,} B)",
                      annotation_position="bottom right")
    if floor is not None:
        fig.add_hline(y=floor, line=dict(color="red", dash="dash"), annotation_text=f"floor {floor:.2f} %",
                      annotation_position="top left")
    top = max([p["acc1"] for p in points] + ([reference["acc1"]] if reference else []))
    low = min([p["acc1"] for p in points] + ([floor] if floor is not None else []))
    # the interesting part is near the reference: points far below it are off the chart
    # (they stay in the tables), else one broken setting flattens every curve
    bottom = max(low, min(top, floor if floor is not None else top) - RD_SPAN) - 0.5
    fig.update_layout(xaxis_title="bytes (log)", yaxis_title="decoded top-1 (%)", xaxis_type="log", height=480,
                      yaxis_range=[bottom, top + 0.5], margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", y=-0.2))
    return fig

