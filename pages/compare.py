"""Compare: two models side by side — checkpoints, bundles (the run folder's, uploads) or the
Codec lab's encodes — per-layer bytes, non-zero levels on the export grid, bits per non-zero
and sparsity, their accuracy (stored, at training, and measured on the embedded sample in
the background), with the differences B − A."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from app import accuracy, background, figures, forms, keys, models, ui, views
from ctnet import inspect as ci
from ctnet import runs

ss = st.session_state
st.title("Compare")
ui.show_notice()

# --- what can be compared ---------------------------------------------------------------------------
entries: list[runs.Entry] = []
try:
    entries = runs.all_entries(models.catalog(ss[keys.RUN_ROOT]))
except (runs.RunError, OSError) as exc:
    st.warning(f"Cannot browse {ss[keys.RUN_ROOT]}: {exc}")
options: dict[str, dict] = {}
for e in entries:
    options[f"path:{e.path}"] = {"label": e.label + (f" — epoch {e.epoch}" if e.epoch is not None else ""),
                                 "path": e.path, "entry": e}
for name, p in ss[keys.UPLOADS]:
    options.setdefault(f"path:{p}", {"label": f"uploaded: {name}", "path": p, "entry": None})
cur = models.current()
if cur is not None:
    options.setdefault(f"path:{cur}", {"label": models.describe(cur), "path": cur, "entry": None})
for job in background.runner().jobs("encode", where=lambda j: j.ok):
    src = job.meta["source"]
    label = f"lab encode: {models.describe(src)} at {forms.label(job.meta['settings'])}"
    options["enc:" + hashlib.sha256(repr(job.key).encode()).hexdigest()[:16]] = {"label": label,
                           "path": src, "job": job}
if len(options) < 2:
    st.info("Two models are needed: browse a run folder with several checkpoints on the Checkpoints page, or "
            "encode the current checkpoint in the Codec lab.")
    st.stop()

ids = list(options)
saved = ss[keys.COMPARE]
defaults = {"a": f"path:{cur}" if f"path:{cur}" in options else ids[0]}
defaults["b"] = next((k for k in reversed(ids) if k.startswith("enc:") and options[k]["path"] == cur),
                     next(k for k in ids if k != defaults["a"]))
for side in ("a", "b"):
    if ss.get(keys.W_CMP[side]) not in options:
        ss[keys.W_CMP[side]] = saved.get(side) if saved.get(side) in options else defaults[side]
ca, cb = st.columns(2)
a_key = ca.selectbox("A", ids, key=keys.W_CMP["a"], format_func=lambda k: options[k]["label"])
b_key = cb.selectbox("B", ids, key=keys.W_CMP["b"], format_func=lambda k: options[k]["label"])
ss[keys.COMPARE] = {"a": a_key, "b": b_key}


with st.spinner("Reading both models…"):
    try:
        A, B = (accuracy.model_summary(o["path"], o.get("job"), o.get("entry")) for o in (options[a_key], options[b_key]))
    except Exception as exc:  # loader errors name the problem
        st.error(f"Cannot compare: {exc}")
        st.stop()

rows = ci.compare_layers(A["layers"], B["layers"])
nonzero = {tag: sum(r[f"non-zero {tag}"] or 0 for r in rows) for tag in ("A", "B")}
m1, m2, m3 = st.columns(3)
for col, tag, s in ((m1, "A", A), (m2, "B", B)):
    col.metric(f"{tag}: bytes", f"{s['total']:,}" if s["total"] else "– (no bundle)",
               help=options[a_key if tag == "A" else b_key]["label"])
    col.caption(f"{nonzero[tag]:,} non-zero levels" + (f" · {s['ratio']:.1f}×" if s["ratio"] else "")
                + "".join(f" · top-1 {v:.2f} % {k}" for k, v in s["acc"].items() if v is not None))
if A["total"] and B["total"]:
    m3.metric("B − A bytes", f"{B['total'] - A['total']:+,}",
              delta=f"{100.0 * (B['total'] - A['total']) / A['total']:+.1f} %", delta_color="inverse")
common = [k for k in A["acc"] if k in B["acc"] and A["acc"][k] is not None and B["acc"][k] is not None]
if common:
    k = common[0]
    m3.metric(f"B − A top-1 ({k})", f"{B['acc'][k] - A['acc'][k]:+.2f} pt")

sample = keys.sample_dir()
todo = [(tag, s) for tag, s in (("A", A), ("B", B)) if s["acc_job"] is None or (s["acc_job"].done and not s["acc_job"].ok)]
if todo and (sample / "val").is_dir():
    est = background.runner().estimate("accuracy", 500 * len(todo), accuracy.EVAL_PRIOR)
    if st.button(f"Measure top-1 on the embedded sample ({ui.estimate_text(est)})", key="w_cmp_measure"):
        for tag, s in todo:
            accuracy.start_accuracy(s["model_id"], options[a_key if tag == "A" else b_key]["label"], s["model"],
                                 s["loaded"], str(sample), None, "auto")
        st.rerun()
ui.job_progress([s["acc_job"] for s in (A, B)], "cmp")

names = (options[a_key]["label"], options[b_key]["label"])
if any(r["bytes A"] for r in rows) or any(r["bytes B"] for r in rows):
    st.markdown("**Bytes per layer**")
    st.plotly_chart(figures.compare_bars(rows, "bytes", names), config={"displaylogo": False})
st.markdown("**Non-zero levels per layer** (export grid)")
st.plotly_chart(figures.compare_bars(rows, "non-zero", names), config={"displaylogo": False})
if any(r["bits/nz A"] for r in rows) and any(r["bits/nz B"] for r in rows):
    st.markdown("**Bits per non-zero level**")
    st.plotly_chart(figures.compare_bars(rows, "bits/nz", names, log=False), config={"displaylogo": False})
spatial = [r["layer"] for r in rows if r["layer"].endswith("weight_dct") and r["non-zero A"] is not None
           and r["non-zero B"] is not None]
maps = {}
if spatial:
    st.markdown("**Sparsity map**: fraction of non-zero levels per DCT frequency of one layer, over its filters")
    layer = st.selectbox("Layer", spatial, key="w_cmp_layer")
    maps = {tag: views.level_frequency_map(m["key"], layer, m["model"], m["loaded"].meta, m["settings"])
            for tag, m in (("A", A), ("B", B))}
if maps and maps["A"] is not None and maps["B"] is not None:
    c1, c2, c3 = st.columns(3)
    axes = ("k_h", "k_w")
    c1.plotly_chart(figures.frequency_heatmap(maps["A"], "A: non-zero fraction", axes, log=False),
                    config={"displaylogo": False})
    c2.plotly_chart(figures.frequency_heatmap(maps["B"], "B: non-zero fraction", axes, log=False),
                    config={"displaylogo": False})
    c3.plotly_chart(figures.frequency_heatmap(maps["B"] - maps["A"], "B − A", axes, log=False, diverging=True),
                    config={"displaylogo": False})
elif spatial:
    st.caption(f"{layer} is not a spatial DCT convolution: no per-frequency map.")
st.markdown("**Per layer** (Δ = B − A)")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
    **{c: st.column_config.NumberColumn(format="%.2f") for c in ("bits/nz A", "bits/nz B")},
    **{c: st.column_config.NumberColumn(format="localized") for c in ("bytes A", "bytes B", "non-zero A", "non-zero B",
                                                                      "Δ bytes", "Δ non-zero")}})
st.caption("Non-zero levels: levels ≠ 0 on each model's export grid (a bundle's own grid; a checkpoint's at the "
           "default 8-bit settings). Bytes: a bundle's per-layer stream bytes (none for a checkpoint file). "
           f"Sample accuracy: {Path(sample).parent.name}/sample, 500 images.")
