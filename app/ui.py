"""Pieces every page shows: the sidebar, the current-checkpoint header, the encode progress."""
from __future__ import annotations

import streamlit as st

from app import state
from ctnet import runs
from ctnet.codec.video import CODECS

# page files as st.page_link resolves them: relative to app/main.py
PAGE_LINKS = {"checkpoints": "../pages/checkpoints.py", "codec_lab": "../pages/codec_lab.py"}


def sidebar() -> None:
    with st.sidebar:
        st.caption("Current checkpoint")
        st.markdown(f"**{state.describe(state.current())}**")
        job = state.running_job()
        if job is not None:
            st.caption(f"Encoding {state.describe(job.source)} at {job.settings['preset']} in the background…")
        if state.demo_dir().is_dir() and str(state.demo_dir()) == st.session_state[state.RUN_ROOT]:
            st.caption(f"Browsing the embedded demo ({state.demo_dir().name}/): real runs, see its notes "
                       "on the Checkpoints page.")


def choose_default() -> None:
    """Open on the demo's best checkpoint when nothing is selected yet (loaded lazily)."""
    if state.current() is not None:
        return
    try:
        entries = runs.all_entries(state.catalog(st.session_state[state.RUN_ROOT]))
    except (runs.RunError, OSError):
        return
    entry = state.default_entry(entries)
    if entry is not None:
        st.session_state[state.CURRENT] = entry.path


def show_notice() -> None:
    notice = st.session_state.get(state.NOTICE)
    if notice:
        level, text = notice
        getattr(st, level)(text)
        st.session_state[state.NOTICE] = None


def current_model(title: str):
    """Page title and the current checkpoint's (path, cache key, model, meta); stops the
    page with a message when there is none or it cannot be loaded."""
    st.title(title)
    choose_default()
    show_notice()
    path = state.current()
    if path is None:
        st.info("No checkpoint selected: pick one on the Checkpoints page.")
        st.page_link(PAGE_LINKS["checkpoints"], label="Go to Checkpoints", icon=":material/scatter_plot:")
        st.stop()
    try:
        with st.spinner(f"Loading {state.describe(path)}…"):
            model, meta = state.load(path)
    except Exception as exc:  # loader errors name the problem
        st.error(f"Cannot load {state.describe(path)}: {exc}")
        st.stop()
    source = meta.get("source") or {}
    metrics = meta.get("metrics") or source.get("metrics") or {}
    epoch = meta.get("epoch", source.get("epoch"))
    arch = meta["model"]["arch"] + (" CTNet" if meta["model"].get("ctnet") else " plain")
    bits = [f"**{state.describe(path)}**", arch]
    if epoch is not None:
        bits.append(f"epoch {epoch}")
    if metrics.get("acc1") is not None:
        bits.append(f"top-1 {metrics['acc1']:.2f} % at training")
    if "bundle" in meta:
        bits.append(f"bundle {meta['bundle']['total_bytes']:,} B ({meta['bundle']['ratio']:.1f}×)")
    st.caption(" · ".join(bits))
    return path, state.current_key(), model, meta


def encode_progress() -> None:
    """Progress of the background encode, refreshed every second until it finishes; then
    the whole app reruns so every page sees the result. (Polling twice a second made the
    encode itself 2-3× slower on 2 cores: every fragment rerun costs the server CPU time.)"""
    @st.fragment(run_every=1.0)
    def _poll():
        job = st.session_state.get(state.LAB_JOB)
        if job is None:
            return
        if job.future.done():
            st.rerun()
        fraction, text = job.fraction()
        st.progress(fraction, text=f"Encoding {state.describe(job.source)}: {text}")
    _poll()


def settings_label(s: dict) -> str:
    """One line naming codec settings: codec, preset, rate, pixels, BN, order."""
    parts = [s["codec"]] + ([s["preset"]] if CODECS[s["codec"]].uses_preset else []) + [
        "lossless" if s["crf"] == 0 else f"CRF {s['crf']}", f"{s['bit_depth']}-bit {s['pix_fmt']}"]
    if s.get("dither"):
        parts.append(f"dither {s['dither']:g} (seed {s['seed']})")
    parts.append("BN raw" if s["bn_mode"] == "raw" else
                 f"BN video {s['bn_bit_depth']}-bit " + ("lossless" if s["bn_crf"] == 0 else f"CRF {s['bn_crf']}"))
    parts.append(f"{s['order']} order")
    if s.get("tile", 128) != 128:
        parts.append(f"tile {s['tile']}")
    return " · ".join(parts)


def data_controls(keys: dict[str, str]) -> tuple[str, int, str]:
    """Which images to evaluate on, how many and where: the embedded sample or a typed
    ImageNette folder, a class-balanced subset (0 = all), the device. One choice shared by
    the pages that evaluate (``keys`` names this page's widgets); returns (folder, limit, device)."""
    ss = st.session_state
    shared = {"source": state.ACC_SOURCE, "path": state.ACC_PATH, "limit": state.ACC_LIMIT, "device": state.ACC_DEVICE}
    for name, wkey in keys.items():
        if wkey not in ss:
            ss[wkey] = ss[shared[name]]
    sample = state.sample_dir()
    c1, c2, c3 = st.columns([3, 1, 1])
    with c1:
        source = st.radio("Data", ["sample", "path"], key=keys["source"], horizontal=True,
                          format_func=lambda v: f"embedded sample ({sample.parent.name}/sample)" if v == "sample"
                          else "full ImageNette folder")
        typed = st.text_input("ImageNette folder (its val/ split is used)", key=keys["path"],
                              placeholder="e.g. ../shared/data/imagenette2-128", disabled=source != "path").strip()
    with c2:
        limit = st.number_input("Images (0 = all)", min_value=0, step=50, key=keys["limit"],
                                help="A class-balanced subset of the val split.")
    with c3:
        device = st.selectbox("Device", state.devices(), key=keys["device"],
                              help="auto: CUDA when present (as training uses), else CPU.")
    for name, value in (("source", source), ("path", typed), ("limit", limit), ("device", device)):
        ss[shared[name]] = value
    return (str(sample) if source == "sample" else typed), int(limit), device
