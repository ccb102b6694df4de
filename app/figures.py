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


# the post-training coders of a baseline's own weights, as the Pareto plot draws them
BASELINE_SYMBOLS = {"nncodec": "diamond", "int": "square", "bundle": "triangle-up", "fp16": "cross"}
BASELINE_COLOUR = "#555555"
SPREAD_PX = 13  # markers closer than this (at a ~900×400 px plot) are moved apart sideways


def coder_label(point: dict, short: bool = False) -> str:
    """A baseline point's method and setting as the plot says it: "NNCodec qp −29", "INT8 +
    zstd", "HEVC 8-bit lossless" (``short``: the setting only, "−29")."""
    s, m = point["settings"], point["method"]
    if m == "nncodec":
        qp = f"{s['qp']}".replace("-", "−")
        return qp if short else f"NNCodec qp {qp}"
    if m == "int":
        return f"INT{s['bits']}" if short else f"INT{s['bits']} + zstd"
    if m == "bundle":
        codec = api.CODECS[point["codec"]].label.split(" ")[0] if point["codec"] in api.CODECS else point["codec"]
        rate = "lossless" if s.get("crf") == 0 else f"CRF {s.get('crf')}"
        return f"{codec} {rate}" if short else f"{codec} {s.get('bit_depth')}-bit {rate}"
    return point["label"]


def _method_name(method: str) -> str:
    return {"nncodec": "NNCodec", "int": "INT8/INT4 + zstd", "bundle": "its plain weights as a bundle",
            "fp16": "fp16 + zstd"}.get(method, method)


def spread(fig: go.Figure, log_x: bool = True, width_px: float = 900.0, height_px: float = 400.0,
           min_px: float = SPREAD_PX) -> None:
    """Move markers that would sit on one another apart sideways (alternately right and left,
    in steps of ``min_px`` at a plot of about ``width_px`` × ``height_px``), so each one can be
    hovered and clicked; their hover text keeps the true values (customdata)."""
    xs = [x for tr in fig.data if tr.mode and "markers" in tr.mode for x in tr.x]
    ys = [y for tr in fig.data if tr.mode and "markers" in tr.mode for y in tr.y]
    if len(xs) < 2:
        return
    fx = (lambda v: float(np.log10(v))) if log_x else float
    lo, hi = min(map(fx, xs)), max(map(fx, xs))
    ylo, yhi = min(ys), max(ys)
    sx, sy = width_px / ((hi - lo) or 1.0), height_px / ((yhi - ylo) or 1.0)
    placed: list[tuple[float, float]] = []
    for tr in fig.data:
        if not tr.mode or "markers" not in tr.mode:
            continue
        new_x = list(tr.x)
        for i, (x, y) in enumerate(zip(tr.x, tr.y)):
            px, py = (fx(x) - lo) * sx, (y - ylo) * sy
            k = 0
            while True:
                off = (k + 1) // 2 * min_px * (1 if k % 2 else -1)
                if all((px + off - a) ** 2 + (py - b) ** 2 >= min_px ** 2 for a, b in placed):
                    break
                k += 1
            placed.append((px + off, py))
            if off:
                v = (px + off) / sx + lo
                new_x[i] = 10 ** v if log_x else v
        tr.x = new_x


def pareto(entries: list[runs.Entry], current: str | None, which: str, axis: str = "ratio",
           baseline: runs.Baseline | None = None,
           coders: list[tuple[runs.Baseline, list[dict]]] | None = None) -> go.Figure:
    """Accuracy against compression ratio (or bytes), one colour per run, the current run's
    points larger, the frontier over all runs, the current checkpoint starred, the baseline
    (when known) as a line with the 1-pt band below it; each point's customdata is its path.
    ``coders``: for a baseline, its own weights stored post-training (NNCodec, INT8 + zstd, a
    lossless bundle: rd points on the same val split), a grey series with its frontier, each
    point labelled by method and setting. Points that would overlap are spread sideways
    (hover says the true value)."""
    colours = run_colours([e.run for e in entries])
    cur_run = next((e.run for e in entries if e.path == current), None)

    def xval(e: runs.Entry) -> float | None:
        return e.ratio if axis == "ratio" else (e.real_bytes or e.est_bytes)

    fig = go.Figure()
    if baseline is not None:
        fig.add_hrect(y0=baseline.acc1 - 1.0, y1=baseline.acc1, fillcolor="#2ca02c", opacity=0.08, line_width=0)
        fig.add_hline(y=baseline.acc1, line=dict(color="#2ca02c", dash="dot"),
                      annotation_text=f"baseline {baseline.acc1:.2f} % ({baseline.source}); band: within 1 pt",
                      annotation_position="top left")
    xs_all: list[float] = []
    for base, points in coders or []:
        pts = sorted((p for p in points if p["method"] != "fp32"), key=lambda p: p["bytes"])
        if not pts:
            continue
        px = [p["ratio"] if axis == "ratio" else p["bytes"] for p in pts]
        xs_all.extend(px)
        front = api.rd_frontier(pts)
        fig.add_trace(go.Scatter(x=[p["ratio"] if axis == "ratio" else p["bytes"] for p in front],
                                 y=[p["acc1"] for p in front], mode="lines", name=f"{base.label}: post-training "
                                 "frontier", line=dict(color=BASELINE_COLOUR, width=1.5, dash="dashdot"),
                                 hoverinfo="skip", legendgroup=f"coders:{base.name}"))
        for method in sorted({p["method"] for p in pts}):
            sub = [p for p in pts if p["method"] == method]
            fig.add_trace(go.Scatter(
                x=[p["ratio"] if axis == "ratio" else p["bytes"] for p in sub], y=[p["acc1"] for p in sub],
                mode="markers+text", text=[coder_label(p, short=True) for p in sub], textposition="bottom center",
                textfont=dict(size=10, color=BASELINE_COLOUR), legendgroup=f"coders:{base.name}",
                name=f"{base.label} · {_method_name(method)}",
                marker=dict(symbol=BASELINE_SYMBOLS.get(method, "x"), size=10, color="white",
                            line=dict(width=2, color=BASELINE_COLOUR)),
                customdata=[[coder_label(p), f"{p['bytes']:,}", p["ratio"], p["images"], base.label] for p in sub],
                hovertemplate="<b>%{customdata[4]}, %{customdata[0]}</b><br>decoded top-1 %{y:.2f} % "
                              "(%{customdata[3]} images)<br>%{customdata[2]:.1f}× (%{customdata[1]} B)"
                              "<extra>post-training, same val split</extra>"))
    for run in sorted(colours):
        for kind, symbol in (("real", "circle"), ("estimated", "circle-open")):
            pts_e = [e for e in entries if e.run == run and e.ratio_kind == kind
                     and runs.accuracy_of(e, which) is not None and xval(e)]
            if not pts_e:
                continue
            xs_all.extend(xval(e) for e in pts_e)
            mine = run == cur_run
            fig.add_trace(go.Scatter(
                x=[xval(e) for e in pts_e], y=[runs.accuracy_of(e, which) for e in pts_e], mode="markers",
                name=f"{run}" + ("" if kind == "real" else " (estimated size)"), legendgroup=run,
                opacity=1.0 if mine or cur_run is None else 0.55,
                marker=dict(color=colours[run], size=14 if mine else 10, symbol=symbol,
                            line=dict(width=2, color="black" if mine else colours[run])),
                customdata=[[e.path, e.label, e.epoch if e.epoch is not None else "–",
                             f"{e.real_bytes or e.est_bytes:,}", e.ratio or 0.0] for e in pts_e],
                hovertemplate="<b>%{customdata[1]}</b><br>epoch %{customdata[2]}<br>top-1 %{y:.2f} %<br>"
                              "%{customdata[4]:.1f}× (%{customdata[3]} B, " + kind + ")<br>%{customdata[0]}"
                              "<extra></extra>"))
    # the current run last: drawn on top, so its points are the ones a click finds
    order = sorted(range(len(fig.data)), key=lambda i: (fig.data[i].legendgroup == cur_run, i))
    fig.data = tuple(fig.data[i] for i in order)
    spread(fig)
    where = {cd[0]: (x, y) for tr in fig.data if tr.customdata is not None and tr.legendgroup in colours
             for cd, x, y in zip(tr.customdata, tr.x, tr.y)}
    front = runs.frontier(entries, which)
    if len(front) > 1:
        fx = [xval(e) for e in front]
        # the attainable staircase: asking for a ratio (a size) between two frontier points gets
        # the accuracy of the one with the higher ratio (fewer bytes)
        fig.add_trace(go.Scatter(x=fx, y=[runs.accuracy_of(e, which) for e in front], mode="lines",
                                 name="CTNet frontier", line=dict(color="#444", dash="dash", shape="vh"),
                                 hoverinfo="skip"))
    cur = [e for e in entries if e.path == current and e.path in where]
    if cur:
        x, y = where[cur[0].path]  # where its marker is drawn (spread or not)
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name="current",
                                 marker=dict(symbol="star", size=22, color="gold", line=dict(width=1, color="black")),
                                 customdata=[[cur[0].path, cur[0].label, cur[0].epoch, "", 0.0]],
                                 hovertemplate="<b>current: %{customdata[1]}</b><extra></extra>"))
    if xs_all:
        fmt = (lambda v: f"{v:g}×") if axis == "ratio" else human_bytes
        vals, text = log_ticks(min(xs_all), max(xs_all), fmt)
        fig.update_xaxes(tickvals=vals, ticktext=text, minor=dict(showgrid=False, ticks=""))
    fig.update_layout(xaxis_title="compression ratio vs fp32 (×, log)" if axis == "ratio" else "bytes (log)",
                      yaxis_title="decoded top-1 (%)" if which == "decoded" else "top-1 at training (%)",
                      xaxis_type="log", height=520, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", y=-0.2), clickmode="event+select")
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


def frequency_heatmap(z: np.ndarray, title: str, axes: tuple[str, str], log: bool,
                      diverging: bool = False) -> go.Figure:
    """A per-frequency map; ``diverging``: a difference, on a red–blue scale centred at 0 (no
    change is white, not the darkest cell)."""
    # exact zeros have no logarithm: left blank rather than pinned to an arbitrary floor
    values = np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan) if log else z
    span = float(np.nanmax(np.abs(z))) if diverging and z.size else 0.0
    scale = dict(colorscale="RdBu_r", zmid=0.0, zmin=-(span or 1.0), zmax=span or 1.0) if diverging else \
        dict(colorscale="Magma" if log else "Blues")
    fig = go.Figure(go.Heatmap(z=values, **scale,
                               text=np.vectorize(lambda v: f"{v:.2g}")(z),
                               texttemplate="%{text}" if z.size <= 64 else None,
                               textfont=dict(size=10),
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


BIT_SYMBOLS = {8: "circle", 10: "diamond", 12: "square", 4: "triangle-down", 5: "triangle-left", 6: "triangle-right",
               7: "triangle-up", 9: "pentagon", 11: "hexagon"}  # a bundle point's grid bit depth


def rd_curves(points: list[dict], floor: float | None, reference: dict | None,
              coders: tuple[runs.Baseline, list[dict]] | None = None) -> go.Figure:
    """Decoded top-1 against bytes (log), one colour per method and one marker shape per grid
    bit depth: every point as a marker, the method's Pareto-optimal points joined; the fp32
    reference and the floor as lines, labelled off the lines. ``coders``: a baseline and its own
    points on the same images (grey, labelled by method and setting)."""
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
            marker=dict(color=colours[codec], size=9, line=dict(width=1, color="white"),
                        symbol=[BIT_SYMBOLS.get(p["settings"].get("bit_depth"), "circle") if p["method"] == "bundle"
                                else "circle" for p in pts]),
            customdata=[[p["label"], f"{p['bytes']:,}", p["ratio"], p["encode_seconds"], p["decode_seconds"]]
                        for p in pts],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} B (%{customdata[2]:.1f}×)<br>"
                          "top-1 %{y:.2f} %<br>encode %{customdata[3]:.1f} s, decode %{customdata[4]:.2f} s"
                          "<extra></extra>"))
    depths = sorted({p["settings"].get("bit_depth") for p in points if p["method"] == "bundle"} - {None})
    if len(depths) > 1:  # a legend of the shapes
        for b in depths:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{b}-bit grid",
                                     marker=dict(symbol=BIT_SYMBOLS.get(b, "circle"), size=9, color="#888")))
    all_acc = [p["acc1"] for p in points]
    if coders is not None:
        base, cpts = coders
        cpts = sorted((p for p in cpts if p["method"] != "fp32"), key=lambda p: p["bytes"])
        if cpts:
            all_acc += [p["acc1"] for p in cpts]
            front = api.rd_frontier(cpts)
            fig.add_trace(go.Scatter(x=[p["bytes"] for p in front], y=[p["acc1"] for p in front], mode="lines",
                                     line=dict(color=BASELINE_COLOUR, width=1.5, dash="dashdot"), hoverinfo="skip",
                                     name=f"{base.label}: post-training frontier", legendgroup="coders"))
            fig.add_trace(go.Scatter(
                x=[p["bytes"] for p in cpts], y=[p["acc1"] for p in cpts], mode="markers+text",
                text=[coder_label(p, short=True) for p in cpts], textposition="bottom center",
                textfont=dict(size=10, color=BASELINE_COLOUR), name=f"{base.label}, post-training", legendgroup="coders",
                marker=dict(symbol=[BASELINE_SYMBOLS.get(p["method"], "x") for p in cpts], size=10, color="white",
                            line=dict(width=2, color=BASELINE_COLOUR)),
                customdata=[[coder_label(p), f"{p['bytes']:,}", p["ratio"]] for p in cpts],
                hovertemplate="<b>" + base.label + ", %{customdata[0]}</b><br>%{customdata[1]} B "
                              "(%{customdata[2]:.1f}×)<br>top-1 %{y:.2f} %<extra>the baseline's own weights</extra>"))
    # labels beside the lines, on a white ground: never struck through, never on each other
    label = dict(bgcolor="rgba(255,255,255,0.85)", font=dict(size=11))
    if reference is not None:
        fig.add_hline(y=reference["acc1"], line=dict(color="#444", dash="dot"),
                      annotation=dict(text=f"fp32 {reference['acc1']:.2f} % ({reference['bytes']:,} B)",
                                      yshift=10, **label), annotation_position="top right")
    if floor is not None:
        fig.add_hline(y=floor, line=dict(color="red", dash="dash"),
                      annotation=dict(text=f"floor {floor:.2f} %", yshift=-10, **label),
                      annotation_position="bottom left")
    top = max(all_acc + ([reference["acc1"]] if reference else []))
    low = min(all_acc + ([floor] if floor is not None else []))
    # the interesting part is near the reference: points far below it are off the chart
    # (they stay in the tables), else one broken setting flattens every curve
    bottom = max(low, min(top, floor if floor is not None else top) - RD_SPAN) - 0.5
    fig.update_layout(xaxis_title="bytes (log)", yaxis_title="decoded top-1 (%)", xaxis_type="log", height=480,
                      yaxis_range=[bottom, top + 0.8], margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", y=-0.2))
    return fig



def bit_depth_points(points: list[dict]) -> dict[str, list[dict]]:
    """Per codec, its lossless bundle points at default settings but the grid (one per bit
    depth), by bit depth: the post-hoc bit-depth curve of the weights. Codecs with fewer
    than two depths are left out."""
    out: dict[str, list[dict]] = {}
    for p in points:
        s = p["settings"]
        if p["method"] == "bundle" and s.get("crf") == 0 and not s.get("dither") and s.get("tile", 128) == 128:
            out.setdefault(p["codec"], []).append(p)
    curves = {}
    for codec, pts in out.items():
        by_bits = {}
        for q in sorted(pts, key=lambda q: q["bytes"]):
            by_bits.setdefault(q["settings"]["bit_depth"], q)  # the smallest point of each depth
        if len(by_bits) >= 2:
            curves[codec] = [by_bits[b] for b in sorted(by_bits)]
    return curves


def bit_depth_curve(points: list[dict], reference: dict | None) -> go.Figure:
    """Decoded top-1 and bytes against the grid's bit depth, one colour per codec
    (:func:`bit_depth_points`): what re-quantising the same weights to a coarser grid costs
    in accuracy and saves in bytes."""
    curves = bit_depth_points(points)
    colours = run_colours(sorted(curves))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("decoded top-1 (%)", "bytes (log)"))
    for codec, pts in sorted(curves.items()):
        bits = [p["settings"]["bit_depth"] for p in pts]
        hover = [[p["label"], f"{p['bytes']:,}", p["ratio"], p["acc1"]] for p in pts]
        template = "<b>%{customdata[0]}</b><br>%{customdata[1]} B (%{customdata[2]:.1f}×)<br>top-1 " \
                   "%{customdata[3]:.2f} %<extra></extra>"
        for col, y in ((1, [p["acc1"] for p in pts]), (2, [p["bytes"] for p in pts])):
            fig.add_trace(go.Scatter(x=bits, y=y, mode="lines+markers", name=codec, legendgroup=codec,
                                     showlegend=col == 1, line=dict(color=colours[codec], width=2),
                                     customdata=hover, hovertemplate=template), row=1, col=col)
    if reference is not None:
        fig.add_hline(y=reference["acc1"], line=dict(color="#444", dash="dot"), row=1, col=1,
                      annotation_text=f"fp32 {reference['acc1']:.2f} %", annotation_position="bottom right")
    fig.update_xaxes(title_text="grid bits", dtick=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
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
