"""Checkpoints: pick a run folder or upload a checkpoint/bundle; table, Pareto plot and
training curves; choosing a point makes it the current checkpoint of every page."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import figures, keys, models, sweeps, ui
from ctnet import runs

ss = st.session_state
st.title("Checkpoints")
ui.show_notice()


def _select(path: str) -> None:
    reason = models.select(path)
    if reason is not None:
        ss[keys.NOTICE] = ("error", f"Cannot open {models.describe(path)}: {reason}. "
                                     f"The previous checkpoint ({models.describe(models.current())}) stays selected.")


def _on_pick() -> None:
    path = ss.get(keys.W_PICK)
    if path and path != models.current():
        _select(path)


def _on_root() -> None:
    """A folder typed: browse it, and open its default checkpoint unless the current one is in
    it (the URL then names both, so a reload or a shared link comes back here)."""
    root = (ss.get(keys.W_ROOT) or "").strip() or str(keys.demo_dir())
    ss[keys.RUN_ROOT] = root
    try:
        entries = runs.all_entries(models.catalog(root))
    except (runs.RunError, OSError):
        return  # the page says why
    if entries and models.current() not in {e.path for e in entries}:
        entry = models.default_entry(entries, models.demo_index(root)[0])
        if entry is not None:
            _select(entry.path)


def _on_upload() -> None:
    """An upload handled before the page (and its sidebar) draws: it is current at once."""
    upload = ss.get(keys.W_UPLOAD)
    if upload is None:
        return
    try:
        path = models.import_upload(upload.name, upload.getvalue())
        reason = models.select(path)
    except runs.RunError as exc:
        reason, path = str(exc), None
    if reason is None:
        models.remember_upload(upload.name, path)
    elif path:
        reason = reason.replace(path, upload.name)
    ss[keys.UPLOAD_SEEN] = (upload.file_id, reason)


def _on_pareto() -> None:
    points = (ss.get(keys.W_PARETO) or {}).get("selection", {}).get("points", [])
    paths = [p["customdata"][0] for p in points if p.get("customdata")]
    if paths and paths[0] != models.current():
        _select(paths[0])


# --- where to look ---------------------------------------------------------------------------
demo = keys.demo_dir()
if keys.W_ROOT not in ss:
    ss[keys.W_ROOT] = ss[keys.RUN_ROOT]
left, right = st.columns([3, 2])
with left:
    st.text_input("Run folder: a training output, a sweep of runs, or the demo", key=keys.W_ROOT, on_change=_on_root,
                  help="Default: the embedded demo. A `ctnet train --output-dir` folder, or a folder of them (a "
                       "sweep). The folder stays in the URL.")
with right:
    upload = st.file_uploader("…or upload a checkpoint (.safetensors, .pt) or a zipped bundle (.zip)",
                              type=["safetensors", "pt", "pth", "zip"], key=keys.W_UPLOAD, on_change=_on_upload)

seen = ss[keys.UPLOAD_SEEN]
if upload is not None and seen is not None and seen[0] == upload.file_id:
    if seen[1] is not None:
        st.error(f"Upload refused: {seen[1]}. The previous checkpoint "
                 f"({models.describe(models.current())}) stays selected.")
    else:
        st.success(f"Loaded {upload.name}; it is the current checkpoint.")

catalog: list[runs.Run] = []
folder = Path(ss[keys.RUN_ROOT]).expanduser()
if folder == demo and not demo.is_dir():
    st.error(f"The embedded demo is missing: {demo} does not exist. It ships with the repository: restore it "
             f"with `git checkout -- assets/demo`, or rebuild it from training runs with `python "
             f"scripts/build_demo.py --runs RUNS --data IMAGENETTE --select RUN:ROLE,...` (runs from "
             f"scripts/train_demo.sh). Or set CTNET_DEMO_DIR, or type a run folder above.")
else:
    try:
        catalog = models.catalog(folder)
    except (runs.RunError, OSError) as exc:
        st.error(f"Cannot browse {folder}: {exc}")

demo_notes = (demo / "DEMO.md").read_text(encoding="utf-8") if folder == demo and (demo / "DEMO.md").is_file() else ""
index, index_problem = models.demo_index(folder)
if index_problem:
    st.warning(f"{index_problem}; its default checkpoint and baselines are not used.")
if folder == demo and demo.is_dir():
    first = next((line.strip("# ").strip() for line in demo_notes.splitlines() if line.strip()),
                 "real training runs encoded as bundles (its DEMO.md, which says how they were made, is missing)")
    title, _, rest = first.partition(":")
    st.info(f"**{title.strip()}:** {rest.strip()}" if rest else f"**Embedded demo** — {first}")
    if demo_notes:
        with st.expander("What the demo holds (DEMO.md)"):
            st.markdown(demo_notes)

for run in catalog:
    for problem in run.problems:
        st.warning(f"{run.name}: {problem}")

entries = runs.all_entries(catalog)
ui.choose_default()
current = models.current()

# --- choosing the current checkpoint ---------------------------------------------------------
uploaded = models.upload_entries(ss[keys.UPLOADS])
has_decoded = any(e.decoded for e in entries)
which, axis = "acc1", "ratio"
if entries or uploaded:
    c1, c2 = st.columns(2)
    if has_decoded:
        choice = c1.radio("Accuracy axis", ["decoded top-1 (bundle, results.json)", "top-1 at training"],
                          horizontal=True, key=keys.W_PARETO_Y)
        which = "decoded" if choice.startswith("decoded") else "acc1"
    axis = c2.radio("Size axis", ["ratio", "bytes"], horizontal=True, key=keys.W_PARETO_X,
                    format_func=lambda a: "compression ratio" if a == "ratio" else "bytes")


def _accuracy_words(e: runs.Entry) -> str:
    """The accuracy a list or caption shows for ``e``: the one the plot's axis shows, named."""
    dec = (e.decoded or {}).get("acc1")
    if which == "decoded" and dec is not None:
        images = (e.decoded or {}).get("images")
        return f", decoded top-1 {dec:.2f} %" + (f" ({images:,} images)" if images else "")
    return f", top-1 at training {e.acc1:.2f} %" if e.acc1 is not None else ""


options = [e.path for e in entries] + [p for _, p in ss[keys.UPLOADS] if p not in {e.path for e in entries}]
labels = {e.path: e.label + (f" — epoch {e.epoch}" if e.epoch is not None else "") + _accuracy_words(e)
          + (f", {e.ratio:.1f}×" if e.ratio else "") for e in entries}
labels.update({p: f"uploaded: {name}" for name, p in ss[keys.UPLOADS]})
if current is not None and current not in options:
    options.append(current)
    labels[current] = models.describe(current)
if options:
    if current in options:
        ss[keys.W_PICK] = current
    st.selectbox("Current checkpoint (or click a point in the plot)", options, key=keys.W_PICK,
                 format_func=lambda p: labels.get(p, p), on_change=_on_pick)

if entries or uploaded:
    baselines = models.baselines(catalog, folder)
    cur_run = next((e.run for e in entries + uploaded if e.path == current), None)
    base = baselines.get(cur_run) or next((b for b in baselines.values() if b), None)
    coders, coder_problems = [], []
    for b in dict.fromkeys(b for b in baselines.values() if b is not None):
        points, problem = sweeps.coder_points(b)
        if points:
            coders.append((b, points))
        if problem:
            coder_problems.append(problem)
    fig = figures.pareto(entries + uploaded, current, which, axis, base, coders)
    st.plotly_chart(fig, key=keys.W_PARETO, on_select=_on_pareto, selection_mode="points",
                    config={"displaylogo": False})
    known = {b.acc1 for b in baselines.values() if b}
    if base is not None:
        st.caption(f"Dotted line: the baseline of the current run ({cur_run or 'none'}) the CTNet was fine-tuned "
                   f"from, {base.acc1:.2f} % ({base.source}); shaded: within 1 pt of it."
                   + (f" Other runs' baselines: {', '.join(f'{a:.2f} %' for a in sorted(known) if a != base.acc1)}."
                      if len(known) > 1 else "") + " Click a point to make it current; larger points: its run.")
    for b, points in coders:
        fine_tuned = sorted(r for r, rb in baselines.items() if rb == b)
        st.caption(f"Grey open symbols: {b.label}, the plain model {', '.join(fine_tuned)} "
                   f"{'was' if len(fine_tuned) == 1 else 'were'} fine-tuned from, stored post-training by other "
                   f"coders (NNCodec, INT8/INT4 + zstd, its plain weights as a lossless bundle; `ctnet rd`), each "
                   f"decoded and measured on the same {b.images:,} val images as the CTNet points' decoded top-1; "
                   "dash-dotted: their frontier.")
    for problem in coder_problems:
        st.warning(f"Baseline points not shown: {problem}.")
    if uploaded and which == "decoded":
        st.caption("Uploads are drawn at their top-1 at training (their decoded top-1 is not measured here).")
    if current is not None:
        with st.container(horizontal=True):
            st.caption(f"Open {models.describe(current)} in:")
            for page, label, icon in (("coefficients", "Coefficients", ":material/grid_on:"),
                                      ("frames", "Frames", ":material/movie:"),
                                      ("codec_lab", "Codec lab", ":material/science:"),
                                      ("accuracy", "Accuracy", ":material/target:"),
                                      ("compare", "Compare", ":material/compare:")):
                st.page_link(ui.PAGE_LINKS[page], label=label, icon=icon)
        try:
            cur = models.load(current)
        except Exception as exc:  # the loaders' errors name the problem
            st.error(f"Cannot load {models.describe(current)}: {exc}")
        else:
            ui.model_downloads(models.current_key(), cur,
                               models.describe(current).replace(" · ", "-").replace(" ", "_"), "checkpoints")
if entries:
    front = {e.path for e in runs.frontier(entries, which)}
    table = pd.DataFrame([{"current": "★" if e.path == current else "", "frontier": "✓" if e.path in front else "",
                           **e.row()} for e in entries])
    st.subheader(f"{len(entries)} checkpoints in {len(catalog)} run{'s' * (len(catalog) != 1)}")
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "top-1 %": st.column_config.NumberColumn(format="%.2f"),
        "decoded top-1 %": st.column_config.NumberColumn(format="%.2f"),
        "ratio": st.column_config.NumberColumn(format="%.1f×"),
        "est. bytes": st.column_config.NumberColumn(format="localized"),
        "real bytes": st.column_config.NumberColumn(format="localized"),
        "non-zero coeffs": st.column_config.NumberColumn(format="localized")})
    off = [e.est_bytes / e.real_bytes for e in entries if e.est_bytes and e.real_bytes]
    st.caption("Real bytes: every file of the bundle folder; the ratio uses them when a bundle exists. Est. bytes: "
               "training's size estimate at its export bit depth, as the run logged it"
               + (f" — here {min(off):.2f}–{max(off):.2f}× the real bytes (a run logs the estimator of its time; "
                  "the demo's were fitted to format-v1 bundles)." if off else ".")
               + " Top-1 %: the training run's evaluation; decoded: the bundle's, from its results.json.")
    logged = [r for r in catalog if r.log]
    if logged:
        st.subheader("Training curves")
        st.plotly_chart(figures.training_curves(logged, cur_run), config={"displaylogo": False})
elif catalog:
    st.warning(f"No checkpoints or bundles found under {folder}.")
