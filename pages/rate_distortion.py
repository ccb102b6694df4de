"""Rate–distortion: bytes against decoded top-1 of the current checkpoint stored every way
ctnet knows (each codec at each bit depth and CRF, NNCodec, INT8/INT4 + zstd), measured by
``ctnet.rd`` on the same weights and images; the best method at an accuracy floor."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import background, figures, keys, sweeps, ui
from ctnet import api
from ctnet.api import CODECS, DatasetError, RDError, nncodec_status

ss = st.session_state
path, key, loaded = ui.current_model("Rate–distortion")

# --- which images: shared with the Accuracy page ---------------------------------------------------
data, limit, device = ui.data_controls(keys.W_RD_DATA)
limit = limit or None  # 0 = all
if not data:
    st.info("Type the path of a dataset (ImageNette, or your own with val/<class>/ folders), or use the embedded "
            "sample.")
    st.stop()

sweep = sweeps.sweep_job(path, data, limit)
if sweep is not None and sweep.ok and sweep.result()["errors"]:
    st.warning("Some points failed: " + "; ".join(f"{e['label']}: {e['error']}" for e in sweep.result()["errors"]))
elif sweep is not None and sweep.done and not sweep.ok:
    st.error(f"The last sweep failed: {sweep.error()}")

try:
    points = sweeps.rd_points(path, data, limit)
except (DatasetError, RDError, OSError) as exc:
    st.error(f"Cannot read the measurements for this data: {exc}")
    st.stop()

# --- what to measure ---------------------------------------------------------------------------------
nnc_ok, nnc_why = nncodec_status()
with st.expander("Measure points", expanded=not points):
    m1, m2, m3 = st.columns([3, 1, 2])
    codecs = m1.multiselect("Codecs", list(CODECS), default=list(CODECS), key=keys.W_RD["codecs"],
                            format_func=lambda n: CODECS[n].label)
    bits = m2.multiselect("Bit depths", list(api.BIT_DEPTHS), default=list(api.DEFAULT_BITS), key=keys.W_RD["bits"])
    lossy = m3.checkbox("Lossy CRFs too", value=True, key=keys.W_RD["lossy"],
                        help=f"HEVC/H.264 CRF {', '.join(map(str, api.LOSSY_CRFS['hevc']))}; "
                        f"AV1 CRF {', '.join(map(str, api.LOSSY_CRFS['av1']))}. Lossless (CRF 0) is always measured.")
    baselines = m3.checkbox("Baselines (fp32, INT8/INT4 + zstd, NNCodec)", value=True, key=keys.W_RD["baselines"],
                            help=None if nnc_ok else f"NNCodec: {nnc_why}")
    try:
        jobs = api.bundle_jobs(codecs, bits=bits or [8], crfs=None if lossy else {c: () for c in CODECS}) + \
            (api.baseline_jobs(nncodec_qps=api.NNCODEC_QPS if nnc_ok else ()) if baselines else [])
    except RDError as exc:
        st.error(str(exc))
        jobs = []
    new = api.missing_jobs(jobs, points)
    n_img = limit or (500 if data == str(keys.sample_dir()) else 3925)  # the sample; ImageNette's val split
    est = background.runner().estimate("sweep", len(new), 15.0 * n_img / 500)
    st.caption(f"{len(jobs)} points asked for, {len(jobs) - len(new)} already measured, {len(new)} to measure "
               f"(each: encode, decode, evaluate; {ui.estimate_text(est) if new else 'nothing'} on this server). "
               "Points are cached, here and for `ctnet rd`.")
    if not nnc_ok:
        st.caption(f"NNCodec points are skipped: {nnc_why}.")
    running = sweep is not None and sweep.running
    if st.button("Measure", type="primary", key=keys.W_RD["measure"], disabled=not new or running):
        try:
            sweep = sweeps.start_sweep(path, data, limit, new, device)
        except (DatasetError, RDError, OSError) as exc:
            st.error(f"Cannot start: {exc}")

ui.job_progress([sweep], "rd", every=2.0)

if not points:
    st.info("No measurements of this checkpoint on these images yet: choose what to measure and press Measure.")
    st.stop()

# --- the curves --------------------------------------------------------------------------------------
ref = api.reference_point(points)
default_floor = round(ref["acc1"] - api.TOLERANCE, 2) if ref else max(p["acc1"] for p in points) - 1.0
if ss.get(keys.RD_FLOOR_DEFAULT) != default_floor or keys.W_RD["floor"] not in ss:  # a new reference
    ss[keys.RD_FLOOR_DEFAULT] = ss[keys.W_RD["floor"]] = float(default_floor)
floor = st.number_input("Accuracy floor (decoded top-1 %)", 0.0, 100.0, step=0.1, key=keys.W_RD["floor"],
                        help=f"Default: the weights as loaded (fp32) minus {api.TOLERANCE} points, i.e. equal accuracy.")
st.plotly_chart(figures.rd_curves(points, floor, ref), config={"displaylogo": False})
n_images = {p["images"] for p in points}
hidden = sum(p["acc1"] < floor - figures.RD_SPAN for p in points)
st.caption(f"{len(points)} points on {', '.join(map(str, sorted(n_images)))} images of {data}"
           + (f" (class-balanced subset of {limit})" if limit else "") + ". Bytes are everything needed to rebuild "
           "the model; solid lines join each method's Pareto-optimal points."
           + (f" {hidden} points more than {figures.RD_SPAN:g} pt below the floor are off the chart (see the table)."
              if hidden else ""))

best = api.best_at_floor(points, floor)
st.subheader(f"Smallest of each method at top-1 ≥ {floor:.2f} %")
if best["per_codec"]:
    top = best["best"]
    st.success(f"Best: **{top['label']}**, {top['bytes']:,} B ({top['ratio']:.1f}×), top-1 {top['acc1']:.2f} %"
               + (f", {top['vs_hevc']:.2f}× the bytes of HEVC's best" if top["vs_hevc"] is not None else ""))
    st.dataframe(pd.DataFrame([{"method": r["codec"], "point": r["label"], "bytes": r["bytes"], "ratio ×": r["ratio"],
                                "top-1 %": r["acc1"], "bytes vs HEVC": r["vs_hevc"], "encode s": r["encode_seconds"],
                                "decode s": r["decode_seconds"]} for r in best["per_codec"]]),
                 hide_index=True, width="stretch", column_config={
                     "ratio ×": st.column_config.NumberColumn(format="%.1f"),
                     "top-1 %": st.column_config.NumberColumn(format="%.2f"),
                     "bytes": st.column_config.NumberColumn(format="localized"),
                     "bytes vs HEVC": st.column_config.NumberColumn(format="%.3f")})
else:
    st.warning("No measured point reaches this floor.")
if best.get("missing"):
    st.caption("No point at the floor: " + ", ".join(best["missing"]))

with st.expander("All points", expanded=False):
    st.dataframe(pd.DataFrame([{"method": p["codec"], "point": p["label"], "bytes": p["bytes"], "ratio ×": p["ratio"],
                                "top-1 %": p["acc1"], "top-5 %": p["acc5"], "encode s": p["encode_seconds"],
                                "decode s": p["decode_seconds"], "device": p["device"], "measured": p["measured"]}
                               for p in sorted(points, key=lambda p: (p["codec"], p["bytes"]))]),
                 hide_index=True, width="stretch", column_config={
                     "ratio ×": st.column_config.NumberColumn(format="%.1f"),
                     "top-1 %": st.column_config.NumberColumn(format="%.2f"),
                     "top-5 %": st.column_config.NumberColumn(format="%.2f"),
                     "bytes": st.column_config.NumberColumn(format="localized")})
