"""Codec lab: re-encode the current checkpoint with any codec settings (in the background),
then bytes, ratio and decoded top-1 on the embedded sample (also in the background), bits
per non-zero level next to the zero-order entropy per layer, reconstruction error, the
change against the previous encode, and the bundle as a zip. Results that no longer match
the widgets are marked stale."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import accuracy, encodes, figures, forms, keys, models, ui, url
from ctnet import api
from ctnet import inspect as ci
from ctnet import runs
from ctnet.api import BundleError, EncodeSettings

ss = st.session_state
path, key, loaded = ui.current_model("Codec lab")
forms.seed(ss[keys.LAB_SETTINGS])


def _use(settings: EncodeSettings) -> None:
    forms.seed(forms.fit(settings), force=True)


with st.expander("Codec settings", expanded=True):
    settings = forms.render()
ss[keys.LAB_SETTINGS] = settings
url.write_url()  # now: the page may stop early below
bundle_settings = loaded.settings  # a format-v2 bundle's own

try:
    forms.valid(settings)
    invalid = None
except BundleError as exc:
    invalid = str(exc)
job = encodes.encode_job(path, settings) if invalid is None else None
preview = encodes.preview_job(path, settings) if invalid is None else None
if job is None:
    encodes.prepare_encoder(path)


def _encode() -> None:
    """Button callback: runs before the page, so the page already shows the job."""
    try:
        encodes.start_encode(path, forms.from_widgets())
    except (BundleError, ValueError) as exc:
        ss[keys.NOTICE] = ("error", f"Cannot encode with these settings: {exc}")


with st.container(horizontal=True):
    st.button("Encode", type="primary", key=keys.W_ENCODE, on_click=_encode,
              disabled=invalid is not None or (job is not None and (job.running or job.ok)))
    if bundle_settings:
        st.button("Use this bundle's own settings", on_click=_use, args=(bundle_settings,))
    st.button("Defaults", on_click=_use, args=(keys.lab_defaults(),))
if invalid:
    st.error(f"These settings cannot be encoded: {invalid}")
elif job is None:
    st.caption(f"Encode + decode of this checkpoint at {settings.preset}: "
               f"{ui.estimate_text(encodes.encode_estimate(settings))} on this server; then its top-1 on the "
               "embedded sample is measured in the background.")
ui.show_notice()
if job is not None and job.cancelled:
    st.info("The encode of these settings was cancelled: press Encode to start it again.")
elif job is not None and job.done and not job.ok:
    st.error(f"The encode failed: {job.error()}")

# --- which result to show: the widgets' own, its preview while it runs, else the latest one (stale) --
shown = job if job is not None and job.ok else None
previewing = shown is None and job is not None and job.running and preview is not None and preview.ok
if previewing:
    shown = preview
stale = False
done_here = encodes.encodes_of(path)  # finished encodes of this checkpoint (any tab), oldest first
if shown is None:
    mine = [j for j in done_here if j.key in ss[keys.LAB_ENCODES]]
    if mine or done_here:  # this session's latest, else any tab's
        shown, stale = (mine or done_here)[-1], True
progress = [preview, job]
if shown is not None:
    src_acc, dec_acc = accuracy.lab_accuracy(path, shown.result()["settings"])
    progress += [src_acc, dec_acc]
else:
    src_acc = dec_acc = None
ui.job_progress(progress, "lab", every=0.5)  # the encode runs in another process: polling is cheap
if job is not None and job.running:
    st.caption("The encode runs in the background: other pages stay usable, a reload finds it again, and its "
               "result appears here.")

if shown is None:
    if job is None or not job.running:
        st.info("No encode of this checkpoint yet: choose settings and press Encode.")
    st.stop()

lab = shown.result()
res, s = lab["result"], lab["settings"]
if previewing:
    st.info(f"**Preview**, coded at {encodes.PREVIEW_PRESET} while the exact encode at {settings.preset} runs: the "
            "same levels, so the decoded model, its errors and its top-1 are already those of the exact encode; "
            f"only the bytes will change ({encodes.PREVIEW_PRESET} spends a little more). This page shows the exact "
            "result when it is done.")
if stale:
    st.warning("**Stale:** the results below are those of an earlier encode; the widgets now differ ("
               + "; ".join(forms.diff(s, settings)) + "). Press Encode to see these settings.")
st.subheader(f"Encoded at {forms.label(s)}")

# the previous encode of this checkpoint in this session (for the change)
before = [j for j in done_here if j.key != shown.key and (j.finished or 0) <= (shown.finished or 0)]
prev_job = before[-1] if before else None
prev = prev_job.result() if prev_job is not None else None

metrics = st.container(horizontal=True, wrap=True)  # wraps rather than cutting numbers off at 800 px
m1, m2, m3, m4 = (metrics.container(width=220) for _ in range(4))
m1.metric("bundle bytes", f"{res.total_bytes:,}", delta_color="inverse",
          delta=f"{res.total_bytes - prev['result'].total_bytes:+,} B vs previous" if prev else None)
m2.metric("ratio vs fp32", f"{res.ratio:.2f}×",
          delta=f"{res.ratio - prev['result'].ratio:+.2f}× vs previous" if prev else None)
src_r = src_acc.result() if src_acc is not None else None
dec_r = dec_acc.result() if dec_acc is not None else None
if dec_r is not None:
    m3.metric(f"decoded top-1 (sample, {dec_r['images']} img)", f"{dec_r['acc1']:.2f} %",
              delta=f"{dec_r['acc1'] - src_r['acc1']:+.2f} pt vs source" if src_r is not None else None)
elif dec_acc is not None and not dec_acc.done:
    m3.metric("decoded top-1 (sample)", "measuring…")
else:
    m3.metric("decoded top-1 (sample)", "–", help=dec_acc.error() if dec_acc is not None else
              "No embedded sample to measure on, or the sample (ImageNette) holds classes this model was not "
              "trained on: measure it on your data in the Accuracy page.")
bpnz, h0 = res.bits_per_nonzero, res.entropy_bits_per_nonzero
m4.metric("bits per non-zero level", f"{bpnz:.2f}" if bpnz else "–",
          help="Weight stream bytes × 8 / non-zero levels; H0 = the levels' zero-order entropy per non-zero.",
          delta=f"H0 {h0:.2f}" if h0 else None, delta_color="off")
src_line = (f"Source (as loaded): top-1 {src_r['acc1']:.2f} % on the same {src_r['images']} sample images. "
            if src_r is not None else "")
st.caption(src_line + f"{res.nonzero:,} non-zero levels; weights {res.weights_bytes:,} B, tables and "
           f"manifest {res.metadata_bytes:,} B; encode + decode {lab['seconds']:.1f} s; "
           f"{sum(x['frames'] for x in res.streams)} coded frames of {len(res.frame_info)} in the plan.")
if loaded.bundle is not None:
    st.caption(f"The bundle this checkpoint was loaded from holds {loaded.bundle.total_bytes:,} B "
               f"({loaded.bundle.ratio:.2f}×) at "
               + (f"{forms.label(loaded.settings)}." if loaded.settings else f"format v{loaded.bundle.version}."))

rows = ci.encode_layer_table(res.layers, lab["errors"])
video_rows = [r for r in rows if r["kind"] == "weight"]
prev_bytes = {layer["name"]: layer["bytes"] for layer in prev["result"].layers} if prev else None
st.markdown("**Bytes per layer**" + (" (grey: previous encode)" if prev else ""))
st.plotly_chart(figures.layer_bars(video_rows, "bytes", "bytes", log=True, previous=prev_bytes),
                config={"displaylogo": False})
a, b = st.columns(2)
with a:
    st.markdown("**Bits per non-zero level** against the zero-order entropy H0")
    st.plotly_chart(figures.bits_per_nonzero(video_rows), config={"displaylogo": False})
    st.caption("Above H0: what the codec's context modelling does not win back (frame headers, zero runs); "
               "below: it exploits structure between levels.")
with b:
    st.markdown("**Reconstruction error** (decoded − source)")
    st.plotly_chart(figures.error_chart(video_rows), config={"displaylogo": False})
    st.caption("No bar: decoded exactly (a lossless encode of values already on the export grid).")
total = {"layer": "total (weights)", "kind": "", "bytes": res.weights_bytes, "non-zero": res.nonzero,
         "bits/nz": bpnz, "H0 bits/nz": h0}
with st.expander("Per-layer table", expanded=False):
    st.dataframe(pd.DataFrame(rows + [total]), hide_index=True, width="stretch", column_config={
        "bits/coeff": st.column_config.NumberColumn(format="%.3f"),
        "bits/nz": st.column_config.NumberColumn(format="%.2f"),
        "H0 bits/nz": st.column_config.NumberColumn(format="%.2f"),
        "max |err|": st.column_config.NumberColumn(format="%.3g"),
        "half step": st.column_config.NumberColumn(format="%.3g"),
        "rms err": st.column_config.NumberColumn(format="%.3g"),
        "rel. rms err": st.column_config.NumberColumn(format="%.3g")})
if prev:
    st.markdown(f"**Change against the previous encode** ({forms.label(prev['settings'])})")
    st.dataframe(pd.DataFrame(ci.encode_changes(prev["result"].layers, res.layers)), hide_index=True,
                 width="stretch", column_config={"Δ %": st.column_config.NumberColumn(format="%+.2f"),
                                                 "max |err| before": st.column_config.NumberColumn(format="%.3g"),
                                                 "max |err| now": st.column_config.NumberColumn(format="%.3g")})
with st.expander("Streams and files"):
    st.dataframe(pd.DataFrame([{k: x.get(k) for k in ("file", "kind", "height", "width", "frames", "bytes",
                                                        "workaround")} for x in res.streams]),
                 hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame([{"file": n, "bytes": len(b)} for n, b in sorted(res.files.items())]),
                 hide_index=True, width="stretch")

stem = (f"{models.describe(path).replace(' · ', '-').replace(' ', '_').replace(':', '')}-{s.codec}-"
        f"{s.preset}-crf{s.crf}")
st.download_button("Download this bundle (zip)", lambda: runs.zip_bundle(res.files, stem),  # zipped on the click
                   file_name=f"{stem}.zip", mime="application/zip", type="secondary")
ui.model_downloads(("lab", res.digest), api.encoded_model(res), stem, "lab")
