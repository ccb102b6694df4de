"""Plotly figures of what ctnet.runs / ctnet.inspect compute (no computation here)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ctnet import api, runs

PALETTE = qualitative.Plotly + qualitative.D3


def run_colours(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def log_ticks(lo: float, hi: float, fmt) -> tuple[list[float], list[str]]:
    """Tick values 1-2-5 per decade covering [lo, hi] (a log axis), labelled by ``fmt``:
    readable where Plotly's own minor ticks read "2 3 … 9"."""
    if not lo or not hi or lo <= 0 or hi <= 0:
        return [], []
    vals = []
    for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** e
            if lo / 1.3 <= v <= hi * 1.3:
                vals.append(v)
    return vals, [fmt(v) for v in vals]


def human_bytes(v: float) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= k:
            return f"{v / k:g} {unit}"
    return f"{v:g} B"


def pareto(entries: list[runs.Entry], current: str | None, which: str, axis: str = "ratio",
           baseline: tuple[float, str] | None = None) -> go.Figure:
    """Accuracy against compression ratio (or bytes), one colour per run, the current run's
    points larger, the frontier over all runs, the current checkpoint starred, the baseline
    (when known) as a line with the 1-pt band below it; each point's customdata is its path.
    Coincident points are spread a little sideways (hover says the true value)."""
    colours = run_colours([e.run for e in entries])
    cur_run = next((e.run for e in entries if e.path == current), None)

    def xval(e: runs.Entry) -> float | None:
        return e.ratio if axis == "ratio" else (e.real_bytes or e.est_bytes)

    fig = go.Figure()
    if baseline is not None:
        acc, where = baseline
        fig.add_hrect(y0=acc - 1.0, y1=acc, fillcolor="#2ca02c", opacity=0.08, line_width=0)
        fig.add_hline(y=acc, line=dict(color="#2ca02c", dash="dot"),
                      annotation_text=f"baseline {acc:.2f} % ({where}); band: within 1 pt",
                      annotation_position="top left")
    xs_all = []
    for run in sorted(colours):
        for kind, symbol in (("real", "circle"), ("estimated", "circle-open")):
            pts = [e for e in entries if e.run == run and e.ratio_kind == kind
                   and runs.accuracy_of(e, which) is not None and xval(e)]
            if not pts:
                continue
            xs_all.extend(xval(e) for e in pts)
            mine = run == cur_run
            fig.add_trace(go.Scatter(
                x=[xval(e) for e in pts], y=[runs.accuracy_of(e, which) for e in pts], mode="markers",
                name=f"{run}" + ("" if kind == "real" else " (estimated size)"), legendgroup=run,
                opacity=1.0 if mine or cur_run is None else 0.55,
                marker=dict(color=colours[run], size=14 if mine else 10, symbol=symbol,
                            line=dict(width=2, color="black" if mine else colours[run])),
                customdata=[[e.path, e.label, e.epoch if e.epoch is not None else "–",
                             f"{e.real_bytes or e.est_bytes:,}", e.ratio or 0.0] for e in pts],
                hovertemplate="<b>%{customdata[1]}</b><br>epoch %{customdata[2]}<br>top-1 %{y:.2f} %<br>"
                              "%{customdata[4]:.1f}× (%{customdata[3]} B, " + kind + ")<br>%{customdata[0]}"
                              "<extra></extra>"))
    # spread coincident points across traces (the same place in two runs)
    seen: list[tuple[float, float]] = []
    for tr in fig.data:
        if tr.customdata is None:
            continue
        xs = list(tr.x)
        for i, (x, y) in enumerate(zip(tr.x, tr.y)):
            k = sum(1 for (a, b) in seen if abs(np.log(a / x)) < 0.015 and abs(b - y) < 0.05)
            seen.append((x, y))
            if k:
                xs[i] = x * 1.03 ** ((k + 1) // 2 * (1 if k % 2 else -1))
        tr.x = xs
    front = runs.frontier(entries, which)
    if len(front) > 1:
        fx = [xval(e) for e in front]
        # the attainable staircase: asking for a ratio (a size) between two frontier points gets
        # the accuracy of the one with the higher ratio (fewer bytes)
        fig.add_trace(go.Scatter(x=fx, y=[runs.accuracy_of(e, which) for e in front], mode="lines",
                                 name="frontier", line=dict(color="#444", dash="dash", shape="vh"),
                                 hoverinfo="skip"))
    cur = [e for e in entries if e.path == current and runs.accuracy_of(e, which) is not None and xval(e)]
    if cur:
        fig.add_trace(go.Scatter(x=[xval(cur[0])], y=[runs.accuracy_of(cur[0], which)], mode="markers",
                                 name="current", marker=dict(symbol="star", size=22, color="gold",
                                                             line=dict(width=1, color="black")),
                                 customdata=[[cur[0].path, cur[0].label, cur[0].epoch, "", 0.0]],
                                 hovertemplate="<b>current: %{customdata[1]}</b><extra></extra>"))
    if xs_all:
        fmt = (lambda v: f"{v:g}×") if axis == "ratio" else human_bytes
        vals, text = log_ticks(min(xs_all), max(xs_all), fmt)
        fig.update_xaxes(tickvals=vals, ticktext=text, minor=dict(showgrid=False, ticks=""))
    fig.update_layout(xaxis_title="compression ratio vs fp32 (×, log)" if axis == "ratio" else "bytes (log)",
                      yaxis_title="decoded top-1 (%)" if which == "decoded" else "top-1 at training (%)",
                      xaxis_type="log", height=480, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", y=-0.22), clickmode="event+select")
    return fig


def training_curves(run_list: list[runs.Run], current_run: str | None = None) -> go.Figure:
    """Top-1, estimated size and rate proxy over epochs, one panel each (stacked: readable at
    any width), the current run drawn thicker."""
    colours = run_colours([r.name for r in run_list])
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("top-1 at training (%)", "estimated export size (MB, log)",
                                        "rate proxy (bits, log)"))
    for r in run_list:
        if not r.log:
            continue
        ep = [row["epoch"] for row in r.log]
        width = 3.5 if r.name == current_run else 1.8
        for row_i, values in enumerate((
                [row.get("acc1") for row in r.log],
                [row["est_bytes_export"] / 1e6 if row.get("est_bytes_export") is not None else None for row in r.log],
                [row.get("rate") for row in r.log]), 1):
            fig.add_trace(go.Scatter(x=ep, y=values, mode="lines", name=r.name, legendgroup=r.name,
                                     showlegend=row_i == 1, line=dict(color=colours[r.name], width=width),
                                     hovertemplate=r.name + "<br>epoch %{x}: %{y:.4g}<extra></extra>"),
                          row=row_i, col=1)
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_yaxes(type="log", row=3, col=1)
    fig.update_xaxes(title_text="epoch", row=3, col=1)
    fig.update_layout(height=820, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.08),
                      hovermode="closest")
    return fig


KIND_COLOURS = {"spatial DCT": "#636EFA", "channel DCT": "#EF553B", "plain": "#00CC96"}


def sparsity_bars(rows: list[dict]) -> go.Figure:
    """Non-zero share per layer, one colour (and legend entry) per kind of stored tensor."""
    fig = go.Figure()
    order = {r["layer"]: i for i, r in enumerate(rows)}
    for kind, colour in KIND_COLOURS.items():
        sub = [r for r in rows if r["kind"] == kind]
        if not sub:
            continue
        fig.add_trace(go.Bar(x=[r["layer"] for r in sub], y=[r["non-zero %"] for r in sub], name=kind,
                             marker_color=colour, customdata=[[r["non-zero"], r["values"]] for r in sub],
                             hovertemplate="%{x}<br>" + kind + "<br>%{y:.2f} % non-zero "
                                           "(%{customdata[0]:,} of %{customdata[1]:,})<extra></extra>"))
    fig.update_xaxes(categoryorder="array", categoryarray=sorted(order, key=order.get))
    fig.update_layout(yaxis_title="non-zero (%)", yaxis_type="log", height=360,
                      margin=dict(l=10, r=10, t=40, b=10), xaxis_tickangle=-60,
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", title_text="stored as"))
    return fig


def coefficient_heatmap(logmag: np.ndarray, factor: int, tile: int | None, floor_log: float,
                        axes: tuple[str, str] = ("row", "column")) -> go.Figure:
    """log10|c| of the exported image, axes in coefficient coordinates (row, column of the
    layer's image); ``factor`` > 1: the image was max-pooled for display (each cell covers
    factor×factor coefficients, labelled by its first); dotted lines every ``tile`` (None:
    none, for a layout that is not the exported image)."""
    h, w = logmag.shape
    ys, xs = np.arange(h) * factor, np.arange(w) * factor
    fig = go.Figure(go.Heatmap(z=logmag, x=xs, y=ys, colorscale="Viridis", zmin=floor_log, zmax=float(np.max(logmag)),
                               colorbar=dict(title="log10|c|"),
                               hovertemplate=f"{axes[0]} %{{y}}, {axes[1]} %{{x}}"
                                             + (f" (+{factor - 1}, block max)" if factor > 1 else "")
                                             + "<br>log10|c| %{z:.2f}<extra></extra>"))
    for k in range(1, int(np.ceil(h * factor / tile)) if tile else 0):
        fig.add_hline(y=k * tile - factor / 2, line=dict(color="white", width=1, dash="dot"))
    for k in range(1, int(np.ceil(w * factor / tile)) if tile else 0):
        fig.add_vline(x=k * tile - factor / 2, line=dict(color="white", width=1, dash="dot"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", title_text=axes[0])
    fig.update_xaxes(constrain="domain", title_text=axes[1])
    fig.update_layout(height=min(900, max(320, int(620 * h / max(w, 1)) + 80)), margin=dict(l=10, r=10, t=10, b=10))
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
    curves = sorted({p["codec"] for p in points if p["method"] != "fp32"})
    colours = run_colours(curves)
    fig = go.Figure()
    for codec in curves:
        pts = sorted((p for p in points if p["codec"] == codec), key=lambda p: p["bytes"])
        front = api.rd_frontier(pts)
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



def thumbnail_picker(grid: np.ndarray, n: int, columns: int, thumb: int, gap: int, labels: list[str],
                     current: int | None) -> go.Figure:
    """The thumbnails image (drawn cell by cell: sharp) with one invisible marker per frame
    on top, so a click selects that frame (customdata: its position); the current one boxed."""
    h, w = grid.shape
    fig = go.Figure(go.Heatmap(z=grid[::-1], colorscale="gray", zmin=0, zmax=255, showscale=False, hoverinfo="skip",
                               zsmooth=False))
    step = thumb + gap
    xs = [(j % columns) * step + thumb / 2 for j in range(n)]
    ys = [h - 1 - ((j // columns) * step + thumb / 2) for j in range(n)]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=thumb, symbol="square", opacity=0.01,
                                                                     color="red"),
                             customdata=[[j, labels[j]] for j in range(n)],
                             hovertemplate="frame %{customdata[0]}<br>%{customdata[1]}<extra></extra>"))
    if current is not None and 0 <= current < n:
        x0, y0 = (current % columns) * step - 0.5, h - ((current // columns) * step) - 0.5
        fig.add_shape(type="rect", x0=x0, x1=x0 + thumb, y0=y0 - thumb, y1=y0, line=dict(color="#ff4b4b", width=2))
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[-0.5, h - 0.5], scaleanchor="x", constrain="domain", constraintoward="top")
    # the height for a chart ~700 px wide (it is drawn at most 2 px per thumbnail pixel)
    fig.update_layout(height=max(80, int(min(2 * w, 700) * h / w) + 6), margin=dict(l=0, r=0, t=0, b=0), showlegend=False,
                      clickmode="event+select", dragmode=False, plot_bgcolor="white")
    return fig


def bits_per_nonzero(rows: list[dict]) -> go.Figure:
    """Per layer: bits per non-zero level of the encode, and the zero-order entropy H0 per
    non-zero level of the same levels."""
    names = [r["layer"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[r.get("bits/nz") for r in rows], name="coded bits / non-zero",
                         marker_color="#636EFA"))
    fig.add_trace(go.Scatter(x=names, y=[r.get("H0 bits/nz") for r in rows], mode="markers",
                             name="H0 bits / non-zero", marker=dict(symbol="line-ew-open", size=14, color="black",
                                                                     line=dict(width=2))))
    fig.update_layout(yaxis_title="bits per non-zero level", height=340, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_tickangle=-60, legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig


def compare_bars(rows: list[dict], what: str, names: tuple[str, str], log: bool = True) -> go.Figure:
    """Per layer, ``what`` of A and B side by side (rows of ``ctnet.inspect.compare_layers``)."""
    layers = [r["layer"] for r in rows]
    fig = go.Figure()
    for tag, colour, name in (("A", "#636EFA", names[0]), ("B", "#EF553B", names[1])):
        fig.add_trace(go.Bar(x=layers, y=[r.get(f"{what} {tag}") for r in rows], name=f"{tag}: {name}",
                             marker_color=colour))
    fig.update_layout(yaxis_title=what, yaxis_type="log" if log else "linear", barmode="group", height=380,
                      margin=dict(l=10, r=10, t=60, b=10), xaxis_tickangle=-60,
                      legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig
