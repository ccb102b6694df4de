"""Rate–distortion: bytes against decoded top-1 of the current checkpoint stored every way
ctnet knows (each codec at each bit depth and CRF, NNCodec, INT8/INT4 + zstd), measured by
``ctnet.rd`` on the same weights and images; the best method at an accuracy floor."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import background, figures, keys, models, sweeps, ui
from ctnet import api
from ctnet.api import CODECS, DatasetError, RDError, RunError, nncodec_status

ss = st.session_state
path, key, loaded = ui.current_model("Rate–distortion")

# --- both frontiers on one baseline: what the demo ships, measured on the full val split -----------
root = ss[keys.RUN_ROOT]
try:
    catalog = models.catalog(root)
except (RunError, OSError):
    catalog = []
bases = models.baselines(catalog, root)
run = next((r for r in catalog if any(e.path == path for e in r.entries)), None)
base = bases.get(run.name) if run is not None else None
coder_pts, coder_problem = sweeps.coder_points(base)
if coder_problem:
    st.warning(f"The baseline's own points are not shown: {coder_problem}.")
if base is not None and coder_pts:
    same = [e for r in catalog if bases.get(r.name) == base for e in r.entries if (e.decoded or {}).get("images")
            == base.images]
    st.subheader(f"CTNet against post-training coders of {base.name}, on one baseline")
    st.plotly_chart(figures.pareto(same, path, "decoded", "bytes", base, [(base, coder_pts)]),
                    config={"displaylogo": False}, key="w_rd_both")
    fine_tuned = sorted({e.run for e in same})
    st.caption(f"Every point decoded and measured on the same {base.images:,} val images (the full split). Coloured: "
               f"the CTNet checkpoints fine-tuned from {base.name} ({', '.join(fine_tuned)}; decoded bundles, their "
               f"results.json); grey: {base.name}'s own weights stored post-training — NNCodec, INT8/INT4 + zstd, "
               f"its plain weights as a lossless bundle — measured by `ctnet rd` ({Path(base.rd or '').name}, "
               "shipped with the demo). The baseline itself: the dotted line.")
    with st.expander("Both frontiers as a table"):
        rows = [{"model": f"CTNet {e.label}", "bytes": e.real_bytes, "ratio ×": e.ratio,
                 "decoded top-1 %": (e.decoded or {}).get("acc1")} for e in same]
        rows += [{"model": f"{base.name}: {figures.coder_label(p)}", "bytes": p["bytes"], "ratio ×": p["ratio"],
                  "decoded top-1 %": p["acc1"]} for p in coder_pts]
        st.dataframe(pd.DataFrame(sorted(rows, key=lambda r: r["bytes"] or 0)), hide_index=True, width="stretch",
                     column_config={"ratio ×": st.column_config.NumberColumn(format="%.1f"),
                                    "decoded top-1 %": st.column_config.NumberColumn(format="%.2f"),
                                    "bytes": st.column_config.NumberColumn(format="localized")})
    st.subheader("This checkpoint stored every way")

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
    bits = m2.multiselect("Grid bit depths", list(api.BIT_DEPTHS), default=list(api.DEFAULT_BITS), key=keys.W_RD["bits"],
                          help="Bits of the export grid the weights are re-quantised to (no retraining); "
                               "grids up to 7 bits are coded in 8-bit frames.")
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
same_images = [p for p in coder_pts if p["data"] in {q["data"] for q in points} and p["limit"] == limit]
st.plotly_chart(figures.rd_curves(points, floor, ref, (base, same_images) if base is not None and same_images else None),
                config={"displaylogo": False})
n_images = {p["images"] for p in points}
hidden = sum(p["acc1"] < floor - figures.RD_SPAN for p in points)
st.caption(f"{len(points)} points on {', '.join(map(str, sorted(n_images)))} images of {data}"
           + (f" (class-balanced subset of {limit})" if limit else "") + ". Bytes are everything needed to rebuild "
           "the model; solid lines join each method's Pareto-optimal points."
           + (f" {hidden} points more than {figures.RD_SPAN:g} pt below the floor are off the chart (see the table)."
              if hidden else ""))

if figures.bit_depth_points(points):
    st.markdown("**Post-hoc bit-depth curve**: the same weights re-quantised to each grid (no retraining), "
                "lossless")
    st.plotly_chart(figures.bit_depth_curve(points, ref), config={"displaylogo": False})
    st.caption("Lossless points of each codec at the default frame, tile and order, one per grid bit depth "
               "(`ctnet rd SOURCE --data DATA --bits 4 5 6 7 8 --crfs 0` measures them). A model trained at a "
               "grid (`ctnet train --pixel-bit-depth N`) sits on it exactly; coarser grids re-quantise it.")

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
