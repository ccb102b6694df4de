"""Frames: the coefficient levels as the video frames the codec really sees (format v2: one
stream of S×S frames, each layer's frequency planes with rows/columns ordered by non-zero
class; all-zero frames are not coded). Clickable thumbnails, a frame viewer with step and
play, what each frame holds (layer, frequencies, rows, columns), bytes per frame and a
small H.264 preview."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import encodes, figures, forms, keys, ui, views
from ctnet import inspect as ci

MAX_SHOWN = 512  # the frame viewer and the preview are never wider than this (px)
THUMB = 32  # thumbnail side (px, max-pooled: isolated levels stay visible)
COLUMNS = 16

ss = st.session_state
path, key, loaded = ui.current_model("Frames")
settings = ss[keys.LAB_SETTINGS]
layout = views.layout_of(settings)
st.html("<style>[data-testid='stImage'] img, [data-testid='stFullScreenFrame'] img "
        "{image-rendering: pixelated;}</style>")

with st.spinner("Laying the levels out as frames…"):
    cf = views.coded_frames(key, layout, loaded, settings)
n = len(cf.ids)
st.caption(f"Laid out as the Codec lab's settings say ({forms.label(settings)}): {cf.plan_frames} frames of "
           f"{cf.frame}×{cf.frame} in the plan, {n} coded ({cf.plan_frames - n} hold only level 0 and are not "
           f"coded), {cf.container_bits}-bit pixels with level 0 at {1 << (cf.container_bits - 1)}. "
           "Change the settings in the Codec lab.")
if n == 0:
    st.info("Every level is 0 at these settings: no frame is coded.")
    st.stop()

view = st.radio("Show", list(views.VIEWS), format_func=views.VIEWS.get, horizontal=True, key=keys.W_VIEW,
                help="The coded pixels are nearly uniform grey around level 0; |level| stretched makes the "
                     "sparse levels visible.")
frames8 = views.frame_view(key, layout, view, cf)
fbytes, bytes_from = encodes.frame_bytes(path, loaded, settings)

if not isinstance(ss.get(keys.W_FRAME), int) or not 0 <= ss[keys.W_FRAME] < n:
    ss[keys.W_FRAME] = 0


def _on_thumb() -> None:
    points = (ss.get(keys.W_THUMBS) or {}).get("selection", {}).get("points", [])
    picked = [p["customdata"][0] for p in points if p.get("customdata")]
    if picked:
        ss[keys.W_FRAME] = int(picked[0])


def _step(d: int) -> None:
    ss[keys.W_FRAME] = (ss.get(keys.W_FRAME, 0) + d) % n


st.subheader("Coded frames")
cols = min(COLUMNS, n)
grid = views.thumbnails(key, layout, view, THUMB, cols, frames8)
st.plotly_chart(figures.thumbnail_picker(grid, n, cols, THUMB, 2, cf.labels, ss[keys.W_FRAME]), key=keys.W_THUMBS,
                on_select=_on_thumb, selection_mode="points", config={"displaylogo": False, "displayModeBar": False},
                width=min(MAX_SHOWN * 2, cols * (THUMB + 2) * 2))
st.caption("Each thumbnail is one coded frame in stream order (max-pooled to 32 px). Click one to open it below.")

st.subheader("Frame viewer")
playing = st.toggle("Play", key=keys.W_PLAY)
fps = st.select_slider("Frames per second", [1, 2, 4, 8, 12], value=4, key=keys.W_FPS)


@st.fragment(run_every=1.0 / fps if playing else None)
def viewer() -> None:
    if playing:
        _step(1)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.button("◀", key="w_frame_prev", on_click=_step, args=(-1,), help="Previous frame")
        st.button("▶", key="w_frame_next", on_click=_step, args=(1,), help="Next frame")
    pos = st.slider("Coded frame (stream order)", 0, n - 1, key=keys.W_FRAME) if n > 1 else 0
    fid = cf.ids[pos]
    info = cf.info[fid]
    # side by side when there is room, the table below the frame when not (800 px wide)
    row = st.container(horizontal=True, wrap=True, gap="medium")
    left, right = row.container(width=MAX_SHOWN), row.container(width=420)
    img = frames8[pos]
    k = max(1, MAX_SHOWN // max(img.shape))
    left.image(ci.upscale(img[None], k)[0], width="content",  # its own pixels, never wider than the page
               caption=f"coded frame {pos} = plan frame {fid}, {cf.frame}×{cf.frame}")
    levels = np.asarray(cf.pixels[pos], np.int64) - (1 << (cf.container_bits - 1))
    b = fbytes[fid] if fbytes is not None else None
    right.markdown(f"**{cf.labels[pos]}**")
    right.dataframe(pd.DataFrame([
        {"": "layer", "value": info["layer"]},
        {"": "non-zero levels", "value": f"{int(np.count_nonzero(levels)):,} of {levels.size:,}"},
        {"": "largest |level|", "value": str(int(np.abs(levels).max()))},
        {"": "bytes in the encode", "value": f"{b:,}" if b is not None else "–"}]), hide_index=True, width="stretch")
    parts = info.get("parts") or []
    right.dataframe(pd.DataFrame([{"plane": p["plane"], "frequency (k_h, k_w)": str(tuple(p["frequency"]))
                                   if p["frequency"] is not None else "–",
                                   "rows": f"{p['rows'][0]}–{p['rows'][1] - 1}",
                                   "cols": f"{p['cols'][0]}–{p['cols'][1] - 1}"} for p in parts]),
                    hide_index=True, width="stretch", height=min(300, 35 * (len(parts) + 1) + 3))
    right.caption("Rows and columns are the layer's, in the coded (non-zero class) order when the order "
                  "setting is 'count'.")


viewer()

st.subheader("Bytes per frame")
if fbytes is None:
    st.info("Bytes per frame come from an encode: run one in the Codec lab with these settings.")
    st.page_link(ui.PAGE_LINKS["codec_lab"], label="Go to Codec lab", icon=":material/science:")
else:
    sizes = [fbytes[f] for f in cf.ids]
    st.plotly_chart(figures.frame_bytes(sizes, cf.labels), config={"displaylogo": False})
    known = [x for x in sizes if x is not None]
    st.caption(f"From {bytes_from}: {sum(known):,} B in {len(known)} coded frames; the first (I) frame "
               f"{known[0]:,} B, the others {np.mean(known[1:]) if len(known) > 1 else 0:,.0f} B on average.")

st.subheader("Preview video")
with st.spinner("Making an H.264 preview…"):
    mp4 = views.preview_video(key, layout, view, 12, frames8)
st.video(mp4, format="video/mp4", loop=True, width=MAX_SHOWN)
st.caption(f"The {n} coded frames in stream order at 12 fps as H.264 (browsers rarely play HEVC), shown as "
           f"{views.VIEWS[view]}, at most {views.PREVIEW_SIDE} px a side. A lossy preview: {len(mp4):,} B, "
           "not the bundle's stream.")
