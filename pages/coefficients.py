"""Coefficients: per-layer sparsity — by default the non-zero levels on the checkpoint's own
export grid, the count the results table and the bundle use — one layer's DCT coefficients
as the exported image (axes in coefficient rows/columns), per-frequency energy and non-zero
maps, and the magnitude histogram against q/2."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app import figures, keys, ui, views
from ctnet import inspect as ci

MAX_HEATMAP_SIDE = 512  # larger images are max-pooled for display (plotly draws every cell)
FLOOR = 1e-6

ss = st.session_state
path, key, loaded = ui.current_model("Coefficients")
model = loaded.model

GRID, UNIFORM = "export grid", "uniform q"
grid_rows = views.grid_stats(key, loaded)
mode = st.radio("Count non-zero coefficients", [GRID, UNIFORM], horizontal=True, key=keys.W_GRID,
                format_func=lambda m: "levels ≠ 0 on the checkpoint's export grid (what a bundle codes)" if m == GRID
                else "|c| ≥ q/2 at one uniform step q (the paper's rate proxy)")
if mode == GRID:
    rows = grid_rows
    q = None
else:
    default_q = float((loaded.train_config or {}).get("qstep") or 0.1)
    if keys.W_Q not in ss:
        ss[keys.W_Q] = default_q
    q = st.number_input("Quantisation step q (a coefficient counts as non-zero when |c| ≥ q/2)", min_value=1e-5,
                        max_value=10.0, step=0.01, format="%.4f", key=keys.W_Q)
    rows = views.layer_stats(key, q, model)
total = sum(r["values"] for r in rows)
nz = sum(r["non-zero"] for r in rows)
c1, c2, c3 = st.columns(3)
c1.metric("stored coefficients", f"{total:,}")
c2.metric("non-zero levels on the export grid" if q is None else f"non-zero at q/2 = {q / 2:g}", f"{nz:,}")
c3.metric("sparsity", f"{100.0 * (total - nz) / total:.2f} %")
if q is None:
    st.caption(f"The grid of {'this bundle' if loaded.bundle is not None else 'an 8-bit export (EncodeSettings defaults)'}: "
               "per-tile scales, levels rounded as the encoder rounds them; the results table and the Codec lab "
               "count the same levels.")

st.subheader("Sparsity per layer")
st.plotly_chart(figures.sparsity_bars(rows), config={"displaylogo": False})
with st.expander("Per-layer table"):
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "q (largest step)": st.column_config.NumberColumn(format="%.4g"),
        "non-zero %": st.column_config.NumberColumn(format="%.3f"),
        "sparsity %": st.column_config.NumberColumn(format="%.3f"),
        "max |c|": st.column_config.NumberColumn(format="%.4g"),
        "energy": st.column_config.NumberColumn(format="%.4g")})

names = [r["layer"] for r in rows]
if ss.get(keys.W_LAYER) not in names:
    ss[keys.W_LAYER] = next((r["layer"] for r in rows if r["kind"] == ci.KIND_SPATIAL), names[0])
by_name = {r["layer"]: r for r in rows}
layer = st.selectbox("Layer", names, key=keys.W_LAYER,
                     format_func=lambda n: f"{n}  ({by_name[n]['kind']}, {by_name[n]['structure']}, "
                                           f"{by_name[n]['shape']})")
row = by_name[layer]
# the step this layer is judged at: q, or on the export grid its largest tile step
lq = q if q is not None else max(float(row.get("q (largest step)") or 0.0), 1e-6)

grid = ci.filter_grid(model, layer)  # depthwise kernels: their C·K_h × K_w image is too thin to look at
if grid is None:
    st.subheader(f"{layer} as the exported image ({row['image']}, log10 |c|)")
    img = views.coefficient_image(key, layer, model)
    tile: int | None = ss[keys.LAB_SETTINGS].tile
    axes = (("output channel × k_h", "input channel (of its group) × k_w") if row["kind"] == ci.KIND_SPATIAL
            else ("output feature", "input feature") if row["structure"].startswith("Linear")
            else ("output channel", "input channel"))
else:
    img, per_row = grid
    st.subheader(f"{layer}: its {row['shape'].split('×')[0]} filters, {per_row} to a row (log10 |c|)")
    tile, axes = None, ("filter row × k_h", "filter column × k_w")
shown, factor = ci.max_pool(ci.log_magnitude(img, FLOOR), MAX_HEATMAP_SIDE)
st.plotly_chart(figures.coefficient_heatmap(shown, factor, tile, math.log10(FLOOR), axes),
                config={"displaylogo": False, "scrollZoom": True})
if grid is None:
    note = f"Dotted lines: the {tile}×{tile} tiles that become video frames. "
else:
    note = (f"Filter n is the K_h×K_w block in grid row n // {per_row}, column n % {per_row}; the bundle stores "
            f"them as the {row['image']} image. ")
note += "Drag to zoom, double-click to reset."
if factor > 1:
    note += f" Shown max-pooled {factor}×{factor} (each cell is its block's largest |c|)."
if row["kind"] == ci.KIND_SPATIAL and grid is None:
    note += " Each filter is a K_h×K_w block: rows are output channels × k_h, columns input channels × k_w."
st.caption(note)

st.subheader("Per-frequency maps")
maps = views.frequency_maps(key, layer, lq, model)
if maps is None:
    st.info(f"{layer} is not stored in a transform domain made of repeated blocks "
            f"({row['kind']}), so there is no per-frequency aggregate to show.")
else:
    a, b = st.columns(2)
    a.plotly_chart(figures.frequency_heatmap(maps.energy, "mean energy c²", maps.axes, log=True),
                   config={"displaylogo": False})
    b.plotly_chart(figures.frequency_heatmap(maps.nonzero, f"fraction non-zero (|c| ≥ {lq / 2:.3g})", maps.axes,
                                             log=False), config={"displaylogo": False})
    st.caption("Aggregated over every filter of the layer (spatial DCT) or every B×B block of the channel "
               "matrix (channel DCT); (0, 0) is the DC coefficient.")

st.subheader("Magnitude histogram")
h = views.histogram(key, layer, lq, model)
st.plotly_chart(figures.magnitude_histogram(h, lq), config={"displaylogo": False})
st.caption(f"{h.above:,} coefficients at or above q/2 survive rounding at step q; {h.below:,} below it would "
           f"round to zero; {h.zeros:,} are exactly zero."
           + (f" On the export grid q is per tile: the line is at half this layer's largest step ({lq:.3g})."
              if q is None else ""))
