"""Accuracy: decoded against original top-1/top-5 on a dataset (the embedded ImageNette sample,
a full copy or the user's own folder, read by the model's label map), with a confusion matrix
in its class names. It says exactly which decoded model it measures — the
bundle as stored, or one of the encodes of this checkpoint made in the Codec lab (picked
here) — and measures in the background (with an estimate, progress and cancel); results are
kept per (model content, codec settings, data, subset, device)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import accuracy, background, encodes, figures, forms, keys, models, ui
from ctnet.api import DatasetError, class_names, label_map

ss = st.session_state
path, key, loaded = ui.current_model("Accuracy")
model, num_classes = loaded.model, loaded.num_classes
d = models.digest(path)
is_bundle = loaded.bundle is not None

# --- which data, how much, where ------------------------------------------------------------------
data_path, limit, device = ui.data_controls(keys.W_ACC_DATA)
limit = limit or None  # 0 = all

# --- which decoded model: the bundle as stored, or one of the lab's encodes of this checkpoint ------
lab_encodes = {forms.label(j.meta["settings"]): j for j in encodes.encodes_of(path)}
LOADED = "as loaded"
options = ([LOADED] if is_bundle else []) + list(lab_encodes)
lab_label = forms.label(ss[keys.LAB_SETTINGS])
if options:
    if ss.get(keys.ACC_PICK) not in options:  # default: what the lab shows now, else the latest
        ss[keys.ACC_PICK] = lab_label if lab_label in lab_encodes else options[-1]
    if ss.get(keys.W_ACC_PICK) not in options:
        ss[keys.W_ACC_PICK] = ss[keys.ACC_PICK]
    pick = st.selectbox("Decoded model to measure", options, key=keys.W_ACC_PICK,
                        format_func=lambda o: "the bundle as stored (decoded from its streams)" if o == LOADED
                        else f"re-encoded in the Codec lab at {o}",
                        help="Encodes of this checkpoint made in the Codec lab (by this or another tab) that the "
                             "server still holds.")
    ss[keys.ACC_PICK] = pick
else:
    pick = None

loaded_label = "bundle as stored" if is_bundle else "checkpoint (fp32 coefficients)"
candidates = []  # (role, what, model, model id)
if pick is not None and pick != LOADED:
    job = lab_encodes[pick]
    candidates.append(("original", loaded_label, model, ("loaded", d)))
    candidates.append(("decoded", f"re-encoded and decoded at {pick}", job.result()["result"].model,
                       encodes.decoded_id(d, job.meta["settings"])))
elif is_bundle:
    candidates.append(("decoded", loaded_label, model, ("loaded", d)))
else:
    candidates.append(("original", loaded_label, model, ("loaded", d)))
    st.info("There is no decoded model of this checkpoint yet: encode it in the Codec lab (its settings now: "
            f"{forms.label(ss[keys.LAB_SETTINGS])}) to compare.")
    if st.button("Encode with the Codec lab's settings"):
        encodes.start_encode(path, ss[keys.LAB_SETTINGS])
        st.rerun()
    ui.job_progress(background.running_jobs("encode"), "acc_enc")
measured = candidates[-1]
st.markdown(f"**Measuring:** {measured[1]} — {models.describe(path)}"
            + (f", against the {loaded_label}" if len(candidates) > 1 else ""))

source_metrics = loaded.metrics if is_bundle else None
jobs = {role: (accuracy.accuracy_job(mid, data_path, limit, device) if data_path else None)
        for role, _, _, mid in candidates}
results = {role: (j.result() if j is not None and j.ok else None) for role, j in jobs.items()}
missing = [c for c in candidates if results[c[0]] is None and (jobs[c[0]] is None or jobs[c[0]].done)]
images = limit or (500 if ss[keys.ACC_SOURCE] == "sample" else 3925)  # the sample; ImageNette's val split
est = background.runner().estimate("accuracy", images * len(missing), accuracy.EVAL_PRIOR)
run = st.button("Run", type="primary", key=keys.W_ACC_RUN, disabled=not missing,
                help=f"Measures what is missing ({ui.estimate_text(est)}, in the background).")
if missing:
    st.caption(f"Run measures {len(missing)} model{'s' * (len(missing) != 1)}: {ui.estimate_text(est)} "
               f"on this server ({'all' if not limit else limit} images).")
if run:
    if not data_path:
        st.error("No dataset folder given: type the path of a dataset (ImageNette, or your own with val/<class>/ "
                 "folders).")
    else:
        try:
            for role, label, m, mid in missing:
                jobs[role] = accuracy.start_accuracy(mid, label, m, loaded, data_path, limit, device)
        except DatasetError as exc:
            st.error(f"Dataset problem: {exc}")
for role, j in jobs.items():
    if j is not None and j.done and not j.ok:
        st.error(f"Evaluation of the {role} model failed: {j.error()}")
ui.job_progress(list(jobs.values()), "acc")

rows = []
here = "the embedded sample" if ss[keys.ACC_SOURCE] == "sample" else Path(data_path or "?").name
for role, label, _, _ in candidates:
    r = results[role]
    rows.append({"model": role, "images": f"{r['images']:,} of {here}" if r else None,
                 "top-1 %": r["acc1"] if r else None, "top-5 %": r["acc5"] if r else None, "what": label,
                 "device": r["device"] if r else None, "seconds": r["seconds"] if r else None})
if source_metrics:
    # other images than the rows above: said in the row's own cells, not in a column off screen
    rows.append({"model": "source, at training (other images)", "images": "full val split, by its training run",
                 "top-1 %": source_metrics.get("acc1"), "top-5 %": source_metrics.get("acc5"),
                 "what": "the checkpoint this bundle was encoded from — not comparable with the rows above, "
                 "which are measured here on other images", "device": None, "seconds": None})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
    "top-1 %": st.column_config.NumberColumn(format="%.2f"), "top-5 %": st.column_config.NumberColumn(format="%.2f"),
    "seconds": st.column_config.NumberColumn(format="%.1f")})

done = {role: r for role, r in results.items() if r is not None}
if "original" in done and "decoded" in done:
    d5 = done["decoded"]["acc5"] - done["original"]["acc5"]
    paired = accuracy.paired(done["original"], done["decoded"])
    sure = paired is not None and (paired.low > 0 or paired.high < 0)
    a, b = st.columns(2)
    a.metric("decoded top-1", f"{done['decoded']['acc1']:.2f} %", delta_color="normal" if sure else "off",
             delta=accuracy.delta_text(paired, "original") if paired is not None else
             f"{done['decoded']['acc1'] - done['original']['acc1']:+.2f} pt vs original")
    b.metric("decoded top-5", f"{done['decoded']['acc5']:.2f} %", delta=f"{d5:+.2f} pt vs original")
    if paired is not None:
        st.caption(accuracy.delta_words(paired))
if done:
    role = "decoded" if "decoded" in done else "original"
    r = done[role]
    names = class_names(loaded.label_map or (label_map(num_classes) if num_classes in (10, 1000) else {}))
    st.subheader(f"Confusion matrix ({role}, {r['images']} images on {r['device']})")
    st.plotly_chart(figures.confusion(r["confusion"], [names.get(c, str(c)) for c in r["classes"]]),
                    config={"displaylogo": False})
    where = "the embedded sample" if ss[keys.ACC_SOURCE] == "sample" else Path(data_path).name
    st.caption(f"Data: {where} ({data_path}). Results are kept per model content, codec settings, data, subset "
               "and device; Run measures what is missing.")
elif not any(j is not None and j.running for j in jobs.values()):
    st.caption("Press Run to measure top-1/top-5 (results are kept per model, codec settings and data).")
