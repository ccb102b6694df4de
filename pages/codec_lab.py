"""Codec lab: re-encode the current checkpoint with any codec settings (in the background),
then sizes, bits per coefficient and reconstruction error per layer, the change against
the previous encode, and the bundle as a zip."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import figures, state, ui
from ctnet import inspect as ci
from ctnet import runs
from ctnet.codec.bundle import BN_MODES, BundleError
from ctnet.codec.frames import MAX_DITHER, ORDERS
from ctnet.codec.video import CODECS, PRESETS

ss = st.session_state
W = state.W_LAB
path, key, model, meta = ui.current_model("Codec lab")
settings = ss[state.LAB_SETTINGS]

# settings whose widget holds the value as is (CRF is split into a lossless box and a slider)
AS_IS = ("codec", "bit_depth", "pix_fmt", "preset", "dither", "seed", "bn_mode", "bn_crf", "bn_bit_depth", "order", "tile")


def _widget_values(s: dict) -> dict:
    return {"lossless": s["crf"] == 0, "crf": s["crf"] or 20, **{k: s[k] for k in AS_IS}}


# widgets own their values only while this page is shown: seed them from the saved settings
for name, value in _widget_values(settings).items():
    ss.setdefault(W[name], value)


def _use_bundle_settings() -> None:
    for name, value in _widget_values(meta["settings"]).items():
        ss[W[name]] = value


def _fit_codec() -> None:
    """Keep bit depth and pixel format within what the newly chosen codec takes."""
    c = CODECS[ss[W["codec"]]]
    if ss[W["bit_depth"]] not in c.bit_depths:
        ss[W["bit_depth"]] = c.bit_depths[0]
    if ss[W["bn_bit_depth"]] not in c.bit_depths:
        ss[W["bn_bit_depth"]] = c.bit_depths[-1]
    if ss[W["pix_fmt"]] not in c.pix_fmts:
        ss[W["pix_fmt"]] = c.pix_fmts[0]
    if c.lossy:
        ss[W["crf"]] = min(ss[W["crf"]], c.max_crf)


codec = CODECS[ss[W["codec"]]]
c1, c2, c3, c4 = st.columns(4)
with c1:
    st.selectbox("Codec", list(CODECS), key=W["codec"], on_change=_fit_codec, format_func=lambda n: CODECS[n].label,
                 help="HEVC is the default; the others are compared on the Rate–distortion page. xz/zstd code "
                      "the same pixels without video.")
    st.checkbox("Lossless (CRF 0)", key=W["lossless"], disabled=not codec.lossy)
    st.slider("CRF (when not lossless)", 1, codec.max_crf if codec.lossy else 51, key=W["crf"],
              disabled=ss[W["lossless"]] or not codec.lossy)
    st.selectbox("Preset", PRESETS, key=W["preset"], disabled=not codec.uses_preset)
with c2:
    st.selectbox("Bit depth", codec.bit_depths, key=W["bit_depth"])
    st.radio("Pixel format", codec.pix_fmts, key=W["pix_fmt"], horizontal=True,
             help="gray: 4:0:0, HEVC RExt. yuv420: data in luma, neutral chroma; Main/Main10, hardware-decodable.")
    st.selectbox("Tile size", [64, 128, 256], key=W["tile"], help="Largest frame side; bigger images are cut.")
with c3:
    st.slider("Dither amplitude (pixel steps, 0 = off)", 0.0, float(MAX_DITHER), step=0.25, key=W["dither"])
    st.number_input("Dither seed", 0, 2**31 - 1, key=W["seed"])
    st.radio("Frame order", ORDERS, key=W["order"], horizontal=True)
with c4:
    st.radio("BatchNorm", BN_MODES, key=W["bn_mode"], horizontal=True,
             help="raw: float32 tensors (~82 KB for CTNet-18). video: its own stream.")
    st.slider("BN CRF (0 = lossless)", 0, 51, key=W["bn_crf"], disabled=ss[W["bn_mode"]] != "video")
    st.selectbox("BN bit depth", codec.bit_depths, key=W["bn_bit_depth"], disabled=ss[W["bn_mode"]] != "video")



def _from_widgets() -> dict:
    lossless = ss[W["lossless"]] or not CODECS[ss[W["codec"]]].lossy
    return {"codec": ss[W["codec"]], "crf": 0 if lossless else int(ss[W["crf"]]), "bit_depth": int(ss[W["bit_depth"]]),
            "pix_fmt": ss[W["pix_fmt"]], "preset": ss[W["preset"]], "dither": float(ss[W["dither"]]),
            "seed": int(ss[W["seed"]]), "bn_mode": ss[W["bn_mode"]], "bn_crf": int(ss[W["bn_crf"]]),
            "bn_bit_depth": int(ss[W["bn_bit_depth"]]), "order": ss[W["order"]], "tile": int(ss[W["tile"]])}


ss[state.LAB_SETTINGS] = settings = _from_widgets()

def _encode() -> None:
    """Button callback: runs before the page, so the page already shows the job."""
    try:
        state.start_encode(path, _from_widgets())
    except (BundleError, ValueError) as exc:
        ss[state.NOTICE] = ("error", f"Cannot encode with these settings: {exc}")


b1, b2, _ = st.columns([1, 2, 3])
b1.button("Encode", type="primary", key=state.W_ENCODE, disabled=state.running_job() is not None, on_click=_encode)
if "bundle" in meta:
    b2.button("Use this bundle's own settings", on_click=_use_bundle_settings)
ui.show_notice()
if state.running_job() is not None:
    ui.encode_progress()
    st.caption("The encode runs in the background: other pages stay usable, and its result appears here.")
if ss[state.LAB_ERROR]:
    st.error(f"The last encode failed: {ss[state.LAB_ERROR]}")

lab = state.lab_result_for(path)
if lab is None:
    if state.running_job() is None:
        st.info("No encode of this checkpoint yet: choose settings and press Encode.")
    st.stop()

res, prev = lab["result"], ss[state.LAB_PREVIOUS]
s = lab["settings"]
st.subheader(f"Encoded at {ui.settings_label(s)}")
m1, m2, m3, m4 = st.columns(4)
m1.metric("bundle bytes", f"{res['total_bytes']:,}",
          delta=f"{res['total_bytes'] - prev['total_bytes']:+,} B vs previous" if prev else None, delta_color="inverse")
m2.metric("ratio vs fp32", f"{res['ratio']:.2f}×", delta=f"{res['ratio'] - prev['ratio']:+.2f}×" if prev else None)
m3.metric("encode + decode", f"{lab['seconds']:.1f} s")
m4.metric(f"frames in {len(res['streams'])} streams", f"{sum(x['frames'] for x in res['streams']):,}")
if "bundle" in meta:
    st.caption(f"The bundle this checkpoint was loaded from holds {meta['bundle']['total_bytes']:,} B "
               f"({meta['bundle']['ratio']:.2f}×) at {ui.settings_label(meta['settings'])}.")

rows = ci.encode_layer_table(res["layers"], lab["errors"])
video_rows = [r for r in rows if r["frames"]]
prev_bytes = {layer["name"]: layer["bytes"] for layer in prev["layers"]} if prev else None
st.markdown("**Bytes per layer**" + (" (grey: previous encode)" if prev else ""))
st.plotly_chart(figures.layer_bars(video_rows, "bytes", "bytes", log=True, previous=prev_bytes),
                config={"displaylogo": False})
a, b = st.columns(2)
with a:
    st.markdown("**Bits per coefficient**")
    st.plotly_chart(figures.layer_bars(video_rows, "bits/coeff", "bits per stored value", log=True),
                    config={"displaylogo": False})
    st.caption("Small tensors pay for a whole padded frame (16×16 at least) and its headers.")
with b:
    st.markdown("**Reconstruction error** (decoded − source)")
    st.plotly_chart(figures.error_chart(video_rows), config={"displaylogo": False})
    st.caption("No bar: decoded exactly (a lossless encode of values already on the export grid).")
with st.expander("Per-layer table", expanded=False):
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "bits/coeff": st.column_config.NumberColumn(format="%.3f"),
        "max |err|": st.column_config.NumberColumn(format="%.3g"),
        "half step": st.column_config.NumberColumn(format="%.3g"),
        "rms err": st.column_config.NumberColumn(format="%.3g"),
        "rel. rms err": st.column_config.NumberColumn(format="%.3g")})
if prev:
    st.markdown(f"**Change against the previous encode** ({ui.settings_label(prev['settings'])})")
    st.dataframe(pd.DataFrame(ci.encode_changes(prev["layers"], res["layers"])), hide_index=True, width="stretch",
                 column_config={"Δ %": st.column_config.NumberColumn(format="%+.2f"),
                                "max |err| before": st.column_config.NumberColumn(format="%.3g"),
                                "max |err| now": st.column_config.NumberColumn(format="%.3g")})
with st.expander("Streams"):
    st.dataframe(pd.DataFrame([{k: x[k] for k in ("file", "kind", "height", "width", "frames", "bytes", "workaround")}
                               for x in res["streams"]]), hide_index=True, width="stretch")

stem = (f"{state.describe(path).replace(' · ', '-').replace(' ', '_').replace(':', '')}-{s['codec']}-"
        f"{s['preset']}-crf{s['crf']}")
st.download_button("Download this bundle (zip)", runs.zip_bundle(res["files"], stem), file_name=f"{stem}.zip",
                   mime="application/zip", type="secondary")
