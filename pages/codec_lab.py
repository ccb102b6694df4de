"""Codec lab: re-encode the current checkpoint with any codec settings (in the background),
then bytes, ratio and decoded top-1 on the embedded sample (also in the background), bits
per non-zero level next to the zero-order entropy per layer, reconstruction error, the
change against the previous encode, and the bundle as a zip. Results that no longer match
the widgets are marked stale."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import accuracy, encodes, figures, forms, keys, models, ui, url
from app.jobs import KEEP
from ctnet import api
from ctnet import inspect as ci
from ctnet import runs
from ctnet.api import BundleError, DatasetError, EncodeSettings

GRID_FIELDS = ("bit_depth", "tile", "dither", "seed")  # what decides the levels a weight is rounded to
ss = st.session_state
path, key, loaded = ui.current_model("Codec lab")
budget = ss.get(keys.W_LAB_BUDGET, api.DEFAULT_BUDGET)
ss[forms.LAYER_MAPS], profile_problem = encodes.layer_grid_maps(path, loaded, budget)  # before the widgets are read
forms.seed(ss[keys.LAB_SETTINGS])
d = models.digest(path)


def _use(settings: EncodeSettings) -> None:
    forms.seed(forms.fit(settings), force=True)


# Encode and what it produces come first, above the settings, so a click's result is in view
# without scrolling (issue 24.6); the containers are filled once the settings are read
top = st.container()
with st.expander("Codec settings", expanded=True):
    settings = forms.render()
    if forms.AUTO in ss[forms.LAYER_MAPS]:
        st.number_input("Budget of the per-layer grid (auto, nats)", 0.0, 10.0, value=float(budget), step=0.005,
                        format="%.3f", key=keys.W_LAB_BUDGET,
                        help="How far the predictions on the train slice may move: the mean KL divergence from "
                             "the finest grid's, summed over layers each coarsened alone (ctnet encode --budget).")
    elif profile_problem:
        st.warning(f"Per-layer grid (auto): the sensitivity profile of this checkpoint cannot be used: {profile_problem}")
    else:
        st.caption("Per-layer grid (auto): no sensitivity profile of this checkpoint yet — `ctnet encode SOURCE "
                   "--bit-depth auto --data DATA --out DIR` measures one.")
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
    encodes.prepare_encoder(path, settings if invalid is None else None)


def _encode() -> None:
    """Button callback: runs before the page, so the page already shows the job."""
    try:
        encodes.start_encode(path, forms.from_widgets())
    except (BundleError, ValueError) as exc:
        ss[keys.NOTICE] = ("error", f"Cannot encode with these settings: {exc}")


with top:  # the buttons and the result, above the settings
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
                   f"{ui.estimate_text(encodes.encode_estimate(settings, loaded))} on this server (its seconds per MB "
                   f"at this codec and preset × this model's {encodes.encode_units(loaded):.1f} MB); then its top-1 "
                   "on the embedded sample is measured in the background.")
    ui.show_notice()
    if job is not None and job.cancelled:
        st.info("The encode of these settings was cancelled: press Encode to start it again.")
    elif job is not None and job.done and not job.ok:
        st.error(f"The encode failed: {job.error()}")

    # --- which result to show: the widgets' own, its preview while it runs, else the latest one (stale) --
    if job is not None and job.ok:
        encodes.drop_preview(path, settings)  # the exact one is in: the preview's slot goes back
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

    def _full_val() -> None:
        """The same change measured on a whole val split, in one click (the sample's interval is wide)."""
        if keys.W_LAB_FULL not in ss:
            ss[keys.W_LAB_FULL] = ss[keys.ACC_PATH]
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        folder = c1.text_input("ImageNette folder (its whole val split)", key=keys.W_LAB_FULL,
                               placeholder="e.g. ../shared/data/imagenette2-128").strip()
        ids = (("loaded", d), encodes.decoded_id(d, s))
        jobs = [accuracy.accuracy_job(mid, folder, None, "auto") if folder else None for mid in ids]
        if c2.button("Measure on the full val split", disabled=not folder or all(j is not None and (j.running or j.ok)
                                                                                 for j in jobs)):
            try:
                jobs = [accuracy.start_accuracy(ids[0], models.describe(path), loaded.model, loaded, folder, None, "auto"),
                        accuracy.start_accuracy(ids[1], f"{models.describe(path)} at {forms.label(s)}", res.model, loaded,
                                                folder, None, "auto")]
            except DatasetError as exc:
                st.error(f"Dataset problem: {exc}")
        ui.job_progress(jobs, "lab_full")
        full = [j.result() if j is not None and j.ok else None for j in jobs]
        pd_full = accuracy.paired(*full)
        if full[1] is not None and pd_full is not None:
            st.caption(f"**Full val split** ({full[1]['images']:,} images of {Path(folder).name}): decoded top-1 "
                       f"{full[1]['acc1']:.2f} %, {accuracy.delta_text(pd_full)} ({full[0]['acc1']:.2f} %); "
                       + accuracy.delta_words(pd_full))

    history = encodes.history()
    for j in done_here:  # kept as a few numbers once the job store drops their decoded models
        if j.key not in history and not j.meta.get("preview_of"):
            encodes.remember(j, ci.encode_fidelity(j.result()["result"].layers, j.result()["settings"].crf))


    def _history_table() -> None:
        mine = sorted((h for h in history.values() if h["digest"] == d), key=lambda h: h["finished"], reverse=True)
        if not mine:
            return
        held = {j.key for j in done_here}
        st.markdown(f"**Encodes of this checkpoint** on this server ({len(mine)}, newest first)")
        st.dataframe(pd.DataFrame([{
            "settings": h["label"], "bytes": h["bytes"], "ratio ×": h["ratio"],
            "decoded": "exact" if h["exact"] else ("re-quantised" if h["lossless"] else "lossy"),
            "top-1 % (sample)": h["top1"], "Δ vs source": h["delta"], "seconds": h["seconds"],
            "on the server": "shown" if shown is not None and h["key"] == shown.key else
            ("yes" if h["key"] in held else "no (Encode redoes it)")} for h in mine]),
            hide_index=True, width="stretch", height=min(36 * (len(mine) + 1) + 2, 250), column_config={
                "bytes": st.column_config.NumberColumn(format="localized"),
                "ratio ×": st.column_config.NumberColumn(format="%.2f"),
                "top-1 % (sample)": st.column_config.NumberColumn(format="%.2f"),
                "seconds": st.column_config.NumberColumn(format="%.1f")})

    if shown is None:
        if job is None or not job.running:
            if any(h["digest"] == d for h in history.values()):
                st.info("The server no longer holds a decoded model of this checkpoint (it keeps the last "
                        f"{KEEP['encode']} encodes of every tab); its earlier encodes are listed below. Press Encode "
                        "to see these settings.")
            else:
                st.info("No encode of this checkpoint yet: choose settings and press Encode.")
        _history_table()
        st.stop()

    lab = shown.result()
    res, s = lab["result"], lab["settings"]
    fidelity = ci.encode_fidelity(res.layers, s.crf)
    if previewing:
        st.info(f"**Preview**, coded at {encodes.PREVIEW_PRESET}"
                + (" with x265's short GOP (3 B-frames, 1 reference)" if s.codec == "hevc" else "")
                + f" while the exact encode at {settings.preset} runs: the same levels, so the decoded model, its "
                "errors and its top-1 are already those of the exact encode; only the bytes will change (the preview "
                "spends some 5–15 % more). This page shows the exact result when it is done.")
    if stale:
        st.warning("**Stale:** the results below are those of an earlier encode; the widgets now differ ("
                   + "; ".join(forms.diff(s, settings)) + "). Press Encode to see these settings.")
    st.subheader(f"Encoded at {forms.label(s)}")
    moved = (f"{fidelity.changed} of {fidelity.layers} weight layers change, by up to {fidelity.max_error:.3g} "
             f"({fidelity.worst}, whose largest half quantisation step is {fidelity.half_step:.3g})")
    if fidelity.exact:
        st.success("**Exact on the trained grid:** lossless, and the weights already sit on this grid: every coded "
                   "weight decodes bit for bit.")
    elif fidelity.lossless:
        own = loaded.settings or forms.defaults()
        differ = [x for x in forms.diff(own, s) if x.split(" ")[0] in GRID_FIELDS]
        st.warning("**Re-quantised, not exact:** the codec is lossless, but this grid is not the one the weights sit on"
                   + (f" (against {'the bundle' if loaded.settings else 'the export grid'}'s own: {'; '.join(differ)})"
                      if differ else "") + f", so they are rounded onto it: {moved}. The decoded top-1 can differ from "
                   "the source's.")
    else:
        st.info(f"**Lossy (CRF {s.crf}):** the codec changes levels: {moved}.")

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
    paired = accuracy.paired(src_r, dec_r)
    if dec_r is not None:
        sure = paired is not None and (paired.low > 0 or paired.high < 0)
        m3.metric(f"decoded top-1 (sample, {dec_r['images']} img)", f"{dec_r['acc1']:.2f} %",
                  delta=accuracy.delta_text(paired) if paired is not None else None,
                  delta_color="normal" if sure else "off",
                  help="± : the 95 % interval of the change, paired image by image against the source on the same "
                       "images (grey: not distinguishable from no change).")
        if shown.key in history:
            change = accuracy.delta_text(paired).removesuffix(" vs source") if paired else None
            history[shown.key].update(top1=dec_r["acc1"], delta=change)
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
    src_line = (f"Source (as loaded): top-1 {src_r['acc1']:.2f} % on the same {src_r['images']} sample images"
                + (f"; {accuracy.delta_words(paired)} " if paired is not None else ". ") if src_r is not None else "")
    if dec_r is not None and accuracy.chance_level(dec_r["acc1"], loaded.num_classes):
        st.warning(f"**The decoded model is broken at these settings:** {dec_r['acc1']:.2f} % is chance level for "
                   f"{loaded.num_classes} classes — the codec destroyed the weights, not just a little accuracy.")
    st.caption(src_line + f"{res.nonzero:,} non-zero levels; weights {res.weights_bytes:,} B, tables and "
               f"manifest {res.metadata_bytes:,} B; encode + decode {lab['seconds']:.1f} s; "
               f"{sum(x['frames'] for x in res.streams)} coded frames of {len(res.frame_info)} in the plan.")
    _full_val()
    _history_table()
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
