"""Frames: the coefficient tiles as the video frames the codec sees, in natural and in
similarity order; adjacent-frame MSE, a scrubber, bytes per frame and a playable preview."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, state, ui
from ctnet import inspect as ci

ss = st.session_state
path, key, model, meta = ui.current_model("Frames")

settings = ss[state.LAB_SETTINGS]
layout = state.layout_of(settings)
layout_key = tuple(layout.items())
st.caption(f"Laid out as the Codec lab's settings say: {settings['codec']}, "
           f"{settings['bit_depth']}-bit pixels, tiles of "
           f"{settings['tile']}×{settings['tile']}, {settings['pix_fmt']}"
           + (f", dither {settings['dither']:g}" if settings["dither"] else "")
           + (", BN as video" if settings["bn_mode"] == "video" else "") + ". Change them in the Codec lab.")

with st.spinner("Quantising tiles…"):
    streams = state.streams(key, layout_key, model)
by_name = {s.name: s for s in streams}
if ss.get(state.W_STREAM) not in by_name:
    ss[state.W_STREAM] = streams[0].name
name = st.selectbox("Stream (tiles of one size share a video stream)", list(by_name), key=state.W_STREAM,
                    format_func=lambda n: f"{n}: {len(by_name[n].ids)} frames of "
                                          f"{by_name[n].height}×{by_name[n].width}")
stream = by_name[name]
view = st.radio("Show", list(state.VIEWS), format_func=state.VIEWS.get, horizontal=True, key=state.W_VIEW,
                help="The coded frames are nearly uniform grey around each tile's zero level; the stretched "
                     "magnitude makes the sparse coefficients visible.")
bits = settings["bit_depth"] if stream.kind == "weight" else settings["bn_bit_depth"]
frames8 = state.frame_view(key, layout_key, name, view, bits, stream.frames)
natural = list(range(len(stream.ids)))
with st.spinner("Ordering frames by similarity…"):
    similar = state.similarity_order(key, layout_key, name, stream.frames)
orders = {"natural": natural, "similarity": similar}

st.subheader("Thumbnails")
left, right = st.columns(2)
for col, order_name in ((left, "natural"), (right, "similarity")):
    col.markdown(f"**{order_name} order**" + (" (model order: layer by layer, tiles row-major)"
                                              if order_name == "natural" else " (greedy nearest neighbour on MSE, "
                                                                              "as the encoder orders them)"))
    col.image(state.thumbnails(key, layout_key, name, view, order_name, frames8, orders[order_name]), width="stretch")

st.subheader("Adjacent-frame MSE")
curves = {o: ci.adjacent_mse(stream.frames.astype(np.float64), orders[o]) for o in orders}
if len(stream.ids) > 1:
    st.plotly_chart(figures.mse_curves(curves), config={"displaylogo": False})
    st.caption("Lower is easier for inter prediction; the similarity order is what the bundle stores "
               "(with the permutation) when the order setting is 'similarity'.")
else:
    st.info("This stream has a single frame.")

fbytes, coded, bytes_from = state.frame_bytes(path, meta, layout, name)

st.subheader("Frame scrubber")
order_name = st.radio("Order", list(orders), horizontal=True, key=state.W_SCRUB_ORDER)
order = orders[order_name]
if len(order) > 1:
    if not 0 <= ss.get(state.W_SCRUB, 0) < len(order):
        ss[state.W_SCRUB] = 0
    pos = st.slider("Position in stream", 0, len(order) - 1, key=state.W_SCRUB)
else:
    pos = 0
i = order[min(pos, len(order) - 1)]
fid = stream.ids[i]
title = f"frame {fid}" + (f" — {fbytes[fid]:,} B" if fbytes and fid in fbytes else "")
left, right = st.columns([3, 2])
left.plotly_chart(figures.frame_image(frames8[i], title), config={"displaylogo": False})
raw = stream.frames[i]
zero = int(ci.zero_levels(raw[None])[0])
right.markdown(f"**{stream.labels[i]}**  \nframe {fid} of the bundle, position {pos} in {order_name} order")
right.dataframe(pd.DataFrame([
    {"": "zero level (most common pixel)", "value": str(zero)},
    {"": "pixels off the zero level", "value": f"{int((raw != zero).sum()):,} of {raw.size:,}"},
    {"": "pixel range", "value": f"{int(raw.min())} … {int(raw.max())}"},
    {"": "bytes in the encode", "value": f"{fbytes[fid]:,}" if fbytes and fid in fbytes else "–"}]),
    hide_index=True, width="stretch")

st.subheader("Bytes per frame")
if fbytes is None:
    st.info("Bytes per frame come from an encode: run one in the Codec lab with these settings.")
    st.page_link(ui.PAGE_LINKS["codec_lab"], label="Go to Codec lab", icon=":material/science:")
else:
    label_of = dict(zip(stream.ids, stream.labels))
    st.plotly_chart(figures.frame_bytes([fbytes.get(f) for f in coded], [label_of.get(f, str(f)) for f in coded]),
                    config={"displaylogo": False})
    sizes = [fbytes[f] for f in coded if f in fbytes]
    st.caption(f"From {bytes_from}: {sum(sizes):,} B in {len(sizes)} frames; the first (I) frame "
               f"{sizes[0]:,} B, the others {np.mean(sizes[1:]) if len(sizes) > 1 else 0:,.0f} B on average.")

st.subheader("Preview video")
fps = st.select_slider("Frames per second", [2, 6, 12, 24, 48], value=12, key=state.W_FPS)
with st.spinner("Making an H.264 preview…"):
    mp4 = state.preview_video(key, layout_key, name, view, order_name, fps, frames8, order)
st.video(mp4, format="video/mp4", loop=True)
st.caption(f"The {len(order)} frames of {name} in {order_name} order as H.264 (browsers rarely play HEVC), "
           f"shown as {state.VIEWS[view]}, enlarged without smoothing. A lossy preview: {len(mp4):,} B, "
           "not the bundle's stream.")
