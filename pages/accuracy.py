"""Accuracy: decoded against original top-1/top-5 on ImageNette (the embedded sample or a
full copy), with a confusion matrix; results cached per (checkpoint, codec settings, data)."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app import figures, state, ui
from ctnet.data import DatasetError, class_names, label_map

ss = st.session_state
path, key, model, meta = ui.current_model("Accuracy")
num_classes, size = int(meta["model"]["num_classes"]), int(meta.get("image_size", 128))

# --- which data, how much, where ------------------------------------------------------------------
data_path, limit, device = ui.data_controls(state.W_ACC_DATA)
limit = limit or None  # 0 = all

# --- which models: the original and the decoded one ----------------------------------------------
lab = state.lab_result_for(path)
loaded_label = ("bundle as stored (decoded from its H.265 streams)" if "bundle" in meta
                else "checkpoint (fp32 coefficients)")
candidates = []  # (role, label, model, cache key part)
if lab is not None:
    candidates.append(("original", loaded_label, model, ("loaded",)))
    candidates.append(("decoded", f"re-encoded and decoded at {ui.settings_label(lab['settings'])}",
                       lab["result"]["model"], ("lab", tuple(sorted(lab["settings"].items())), lab["finished"])))
elif "bundle" in meta:
    candidates.append(("decoded", loaded_label, model, ("loaded",)))
else:
    candidates.append(("original", loaded_label, model, ("loaded",)))
    st.info("There is no decoded model of this checkpoint yet: encode it with the Codec lab's settings "
            f"({ui.settings_label(ss[state.LAB_SETTINGS])}) to compare.")
    if state.running_job() is None and st.button("Encode with the Codec lab's settings"):
        state.start_encode(path, ss[state.LAB_SETTINGS])
    if state.running_job() is not None:
        ui.encode_progress()

source_metrics = (meta.get("source") or {}).get("metrics") if "bundle" in meta else None


def _key(part: tuple) -> tuple:
    return (key, part, data_path, state.dataset_stamp(data_path) if data_path else None, limit, device)


run = st.button("Run", type="primary", key=state.W_ACC_RUN)
results = {role: state.accuracy_cached(_key(part)) for role, _, _, part in candidates}
if run:
    if not data_path:
        st.error("No dataset folder given: type the path of an ImageNette copy (with val/<WNID>/ folders).")
    else:
        try:
            bar = st.progress(0.0, text="Reading images…")
            data = state.split(data_path, num_classes, size, limit, progress=lambda done, total:
                               bar.progress(done / total, text=f"Reading images {done}/{total}"))
            for n, (role, label, m, part) in enumerate(candidates):
                if results[role] is not None:
                    continue
                t0 = time.perf_counter()
                res = state.evaluate(m, data, device, progress=lambda done, total, n=n, label=label: bar.progress(
                    (n + done / total) / len(candidates), text=f"Evaluating {label}: {done}/{total} images"))
                res["seconds"] = time.perf_counter() - t0
                state.accuracy_store(_key(part), res)
                results[role] = res
            bar.progress(1.0, text="Done")
        except DatasetError as exc:
            st.error(f"Dataset problem: {exc}")
        except RuntimeError as exc:  # e.g. CUDA asked for but absent
            st.error(f"Evaluation failed: {exc}")

rows = []
for role, label, _, _ in candidates:
    r = results[role]
    rows.append({"model": role, "what": label, "top-1 %": r["acc1"] if r else None, "top-5 %": r["acc5"] if r else None,
                 "images": r["images"] if r else None, "device": r["device"] if r else None,
                 "seconds": r["seconds"] if r else None})
if source_metrics:
    rows.append({"model": "source (reference)", "what": "the checkpoint this bundle was encoded from, measured "
                 "by its training run on the full val split", "top-1 %": source_metrics.get("acc1"),
                 "top-5 %": source_metrics.get("acc5"), "images": None, "device": None, "seconds": None})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
    "top-1 %": st.column_config.NumberColumn(format="%.2f"), "top-5 %": st.column_config.NumberColumn(format="%.2f"),
    "seconds": st.column_config.NumberColumn(format="%.1f")})

done = {role: r for role, r in results.items() if r is not None}
if "original" in done and "decoded" in done:
    d1 = done["decoded"]["acc1"] - done["original"]["acc1"]
    d5 = done["decoded"]["acc5"] - done["original"]["acc5"]
    a, b = st.columns(2)
    a.metric("decoded top-1", f"{done['decoded']['acc1']:.2f} %", delta=f"{d1:+.2f} pt vs original")
    b.metric("decoded top-5", f"{done['decoded']['acc5']:.2f} %", delta=f"{d5:+.2f} pt vs original")
if done:
    role = "decoded" if "decoded" in done else "original"
    r = done[role]
    names = class_names(meta.get("label_map") or label_map(num_classes))
    st.subheader(f"Confusion matrix ({role}, {r['images']} images on {r['device']})")
    st.plotly_chart(figures.confusion(r["confusion"], [names.get(c, str(c)) for c in r["classes"]]),
                    config={"displaylogo": False})
    where = "the embedded sample" if ss[state.ACC_SOURCE] == "sample" else Path(data_path).name
    st.caption(f"Data: {where} ({data_path}). Results are cached per checkpoint, codec settings, data, subset "
               "and device; press Run to measure what is missing.")
elif not run:
    st.caption("Press Run to measure top-1/top-5 (results are cached per checkpoint, codec settings and data).")
