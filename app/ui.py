"""Pieces every page shows: the sidebar, the current-checkpoint header, job progress."""
from __future__ import annotations

import streamlit as st

from app import accuracy, background, keys, models
from app.jobs import Job
from ctnet import api, runs
from ctnet.api import LoadedModel

# page files as st.page_link resolves them: relative to app/main.py
PAGE_LINKS = {name: f"../pages/{name}.py" for name in ("checkpoints", "coefficients", "frames", "codec_lab",
                                                       "accuracy", "compare", "rate_distortion")}


def sidebar() -> None:
    with st.sidebar:
        st.caption("Current checkpoint")
        st.markdown(f"**{models.describe(models.current())}**")
        for job in background.running_jobs():
            st.caption(f"{job.label}{' (queued)' if job.queued else ''}…")
        if keys.demo_dir().is_dir() and str(keys.demo_dir()) == st.session_state[keys.RUN_ROOT]:
            st.caption(f"Browsing the embedded demo ({keys.demo_dir().name}/): real runs, see its notes "
                       "on the Checkpoints page.")


def choose_default() -> None:
    """Open on the browsed folder's default checkpoint (its demo.json's ``default``, else its best)
    when nothing is selected yet (loaded lazily)."""
    if models.current() is not None:
        return
    root = st.session_state[keys.RUN_ROOT]
    try:
        entries = runs.all_entries(models.catalog(root))
    except (runs.RunError, OSError):
        return
    entry = models.default_entry(entries, models.demo_index(root)[0])
    if entry is not None:
        st.session_state[keys.CURRENT] = entry.path


def show_notice() -> None:
    notice = st.session_state.get(keys.NOTICE)
    if notice:
        level, text = notice
        getattr(st, level)(text)
        st.session_state[keys.NOTICE] = None


def current_model(title: str):
    """Page title and the current checkpoint's (path, cache key, LoadedModel); stops the
    page with a message when there is none or it cannot be loaded."""
    st.title(title)
    choose_default()
    show_notice()
    path = models.current()
    if path is None:
        st.info("No checkpoint selected: pick one on the Checkpoints page.")
        st.page_link(PAGE_LINKS["checkpoints"], label="Go to Checkpoints", icon=":material/scatter_plot:")
        st.stop()
    try:
        with st.spinner(f"Loading {models.describe(path)}…"):
            loaded = models.load(path)
    except Exception as exc:  # loader errors name the problem
        st.error(f"Cannot load {models.describe(path)}: {exc}")
        st.stop()
    arch = loaded.spec.arch + (" CTNet" if loaded.spec.ctnet else " plain")
    bits = [f"**{models.describe(path)}**", arch]
    if loaded.epoch is not None:
        bits.append(f"epoch {loaded.epoch}")
    if loaded.metrics.get("acc1") is not None:
        bits.append(f"top-1 {loaded.metrics['acc1']:.2f} % at training")
    if loaded.bundle is not None:
        bits.append(f"bundle {loaded.bundle.total_bytes:,} B ({loaded.bundle.ratio:.1f}×)")
    st.caption(" · ".join(bits))
    return path, models.current_key(), loaded


def job_progress(jobs: list[Job | None], key: str, every: float = 1.0) -> None:
    """Progress bars of ``jobs`` (with an estimate and a Cancel button), refreshed every
    ``every`` seconds until one of them finishes; then the whole app reruns so every page sees
    its result (e.g. the lab's preview while the exact encode still runs). Each poll is a
    fragment rerun: cheap now that Streamlit's full GC after every run is off
    (.streamlit/config.toml) and encodes run in their own process."""
    running = [j.key for j in jobs if j is not None and j.running]  # a finished one would rerun the app forever
    if not running:
        return

    @st.fragment(run_every=every)
    def _poll():
        live = [background.runner().get(k) for k in running]
        if any(j is None or j.done for j in live):
            st.rerun()
        for i, job in enumerate(live):
            if job is None or job.done:
                continue
            fraction, text = job.fraction()
            a, b = st.columns([6, 1], vertical_alignment="bottom")
            a.progress(fraction, text=text)
            if b.button("Cancel", key=f"{key}_cancel_{i}", help="A queued job never starts; an encode stops at "
                                                               "once, other jobs at their next progress report."):
                background.cancel(job)
                st.rerun()
    _poll()


def estimate_text(seconds: float | None) -> str:
    if seconds is None:
        return "no estimate yet"
    return f"≈{seconds:.0f} s" if seconds < 120 else f"≈{seconds / 60:.0f} min"


def data_controls(widgets: dict[str, str]) -> tuple[str, int, str]:
    """Which images to evaluate on, how many and where: the embedded sample or a typed
    dataset folder (ImageNette or the user's own), a class-balanced subset (0 = all), the device. One choice shared by
    the pages that evaluate (``widgets`` names this page's widget keys); returns (folder, limit, device)."""
    ss = st.session_state
    shared = {"source": keys.ACC_SOURCE, "path": keys.ACC_PATH, "limit": keys.ACC_LIMIT, "device": keys.ACC_DEVICE}
    for name, wkey in widgets.items():
        if wkey not in ss:
            ss[wkey] = ss[shared[name]]
    sample = keys.sample_dir()
    c1, c2, c3 = st.columns([3, 1, 1])
    with c1:
        source = st.radio("Data", ["sample", "path"], key=widgets["source"], horizontal=True,
                          format_func=lambda v: f"embedded sample ({sample.parent.name}/sample)" if v == "sample"
                          else "a dataset folder")
        typed = st.text_input("Dataset folder (its val/<class>/ folders are used: ImageNette or your own)",
                              key=widgets["path"],
                              placeholder="e.g. ../shared/data/imagenette2-128", disabled=source != "path").strip()
    with c2:
        limit = st.number_input("Images (0 = all)", min_value=0, step=50, key=widgets["limit"],
                                help="A class-balanced subset of the val split.")
    with c3:
        device = st.selectbox("Device", accuracy.devices(), key=widgets["device"],
                              help="auto: CUDA when present (as training uses), else CPU.")
    for name, value in (("source", source), ("path", typed), ("limit", limit), ("device", device)):
        ss[shared[name]] = value
    return (str(sample) if source == "sample" else typed), int(limit), device


DOWNLOAD_FORMATS = {"safetensors": "plain torchvision (safetensors)", "onnx": "ONNX (opset 17)",
                    "ctnet": "CTNet checkpoint (DCT coefficients)"}


@st.cache_resource(max_entries=3, show_spinner=False)  # bytes: shared, not copied per hit
def _model_file(key, fmt: str, _loaded: LoadedModel) -> tuple[bytes, str]:
    return api.model_file(_loaded, fmt)


def model_downloads(key, loaded: LoadedModel, stem: str, where: str) -> None:
    """The decoded model as a file (``ctnet decode --out``): pick a format, prepare, download."""
    c1, c2 = st.columns([3, 2])
    fmt = c1.selectbox("Decoded model as", list(DOWNLOAD_FORMATS), format_func=DOWNLOAD_FORMATS.get,
                       key=f"w_dl_fmt_{where}")
    if c2.button("Prepare file", key=f"w_dl_prepare_{where}"):
        try:
            with st.spinner(f"Writing {DOWNLOAD_FORMATS[fmt]}…"):
                st.session_state[f"dl_ready_{where}"] = (key, fmt, *_model_file(key, fmt, loaded))
        except Exception as exc:  # the exporter's errors name the problem
            st.error(f"Cannot export: {exc}")
    ready = st.session_state.get(f"dl_ready_{where}")
    if ready and ready[0] == key and ready[1] == fmt:
        data, suffix = ready[2], ready[3]
        st.download_button(f"Download {DOWNLOAD_FORMATS[fmt]} ({len(data):,} B)", data, file_name=f"{stem}{suffix}",
                           mime="application/octet-stream", key=f"w_dl_{where}")
