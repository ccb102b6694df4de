"""The app's one place for session keys, the URL, and the cached wrappers around ctnet.

Loaded models are cached with ``st.cache_resource`` (shared by every session, at most
``MAX_MODELS`` of them: an LRU bounds the server's memory) and treated as read-only: nothing
in the app trains, moves or edits them; evaluation on another device works on a copy.
Derived arrays are cached with ``st.cache_data``, keyed by the model's path and file stamp.

Background work (encodes, accuracy runs, RD sweeps) goes through one runner, ``app.jobs``,
whose jobs are keyed by what decides their result — the checkpoint's *content* hash, the
codec settings, the data — in a server-wide store: a reload, a second tab or a shared link
finds a running or finished job again. What a reload must restore (current checkpoint,
codec settings; the page is the URL's path) is kept in the URL's query parameters.
"""
from __future__ import annotations

import copy
import gc
import hashlib
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from app import forms
from app.jobs import Job, Runner, error_text
from app.worker import Worker
from ctnet import api, runs
from ctnet.codec.bundle import EncodeResult
from ctnet import inspect as ci

REPO = Path(__file__).resolve().parents[1]
DEMO_ENV = "CTNET_DEMO_DIR"
MAX_MODELS = 6  # decoded models kept by the server (CTNet-18: ~45 MB each)

# --- session keys (all of them) ----------------------------------------------------------------
RUN_ROOT = "run_root"  # folder the Checkpoints page browses
CURRENT = "current"  # path of the current checkpoint file or bundle folder, for every page
UPLOADS = "uploads"  # [(label, path)] of this session's uploaded checkpoints and bundles
UPLOAD_SEEN = "upload_seen"  # file id of the last upload handled, so a rerun does not redo it
NOTICE = "notice"  # (level, text) to show once on the next run (e.g. after a failed selection)
LAB_SETTINGS = "lab_settings"  # EncodeSettings fields (dict) the Codec lab encodes with
LAB_ENCODES = "lab_encodes"  # job keys of this session's encodes, oldest first
URL_READ = "url_read"  # the URL's state was read into this session
ACC_SOURCE = "acc_source"  # "sample" or "path"
ACC_PATH = "acc_path"  # full ImageNette path typed by the user
ACC_LIMIT = "acc_limit"  # images to evaluate (0 = all)
ACC_DEVICE = "acc_device"
ACC_PICK = "acc_pick"  # which decoded model the Accuracy page measures (an encode job key, or "loaded")
COMPARE = "compare"  # the two models of the Compare page

# widget keys: widgets own their values only while rendered, so values that must survive a
# page change are copied into the keys above
W_ROOT = "w_root"
W_PICK = "w_pick"
W_PARETO = "w_pareto"
W_PARETO_Y = "w_pareto_y"
W_PARETO_X = "w_pareto_x"
W_UPLOAD = "w_upload"
W_GRID = "w_grid"
W_Q = "w_q"
W_LAYER = "w_layer"
W_FRAME = "w_frame"
W_LAB_BUDGET = "w_lab_budget"
W_THUMBS = "w_thumbs"
W_PLAY = "w_play"
W_FPS = "w_fps"
W_VIEW = "w_view"
W_ENCODE = "w_encode"
W_ACC_PICK = "w_acc_pick"
W_CMP = {"a": "w_cmp_a", "b": "w_cmp_b"}
# the data choice (shared ACC_* values) as each page's widgets hold it
W_ACC_DATA = {"source": "w_acc_source", "path": "w_acc_path", "limit": "w_acc_limit", "device": "w_acc_device"}
W_RD_DATA = {"source": "w_rd_source", "path": "w_rd_path", "limit": "w_rd_limit", "device": "w_rd_device"}
W_RD = {name: f"w_rd_{name}" for name in ("codecs", "bits", "lossy", "baselines", "measure", "floor")}
RD_FLOOR_DEFAULT = "rd_floor_default"  # the floor the Rate–distortion page last proposed
W_ACC_RUN = "w_acc_run"


def lab_defaults() -> dict:
    """The Codec lab's first settings: EncodeSettings' defaults (codec: ``$CTNET_CODEC``)."""
    return forms.defaults()


def demo_dir() -> Path:
    """The embedded demo (``assets/demo`` beside this checkout, or ``$CTNET_DEMO_DIR``)."""
    return Path(os.environ.get(DEMO_ENV) or REPO / "assets" / "demo")


def sample_dir() -> Path:
    return demo_dir() / "sample"


def init_session() -> None:
    ss = st.session_state
    ss.setdefault(RUN_ROOT, str(demo_dir()))
    ss.setdefault(CURRENT, None)
    ss.setdefault(UPLOADS, [])
    ss.setdefault(UPLOAD_SEEN, None)
    ss.setdefault(NOTICE, None)
    if LAB_SETTINGS not in ss:
        try:
            ss[LAB_SETTINGS] = lab_defaults()
        except ValueError as exc:  # a bad $CTNET_CODEC: say so, start from HEVC
            from ctnet.codec.manifest import EncodeSettings
            ss[LAB_SETTINGS] = EncodeSettings().to_dict()
            ss[NOTICE] = ("error", str(exc))
    ss.setdefault(LAB_ENCODES, [])
    ss.setdefault(ACC_SOURCE, "sample")
    ss.setdefault(ACC_PATH, "")
    ss.setdefault(ACC_LIMIT, 0)
    ss.setdefault(ACC_DEVICE, "auto")
    ss.setdefault(ACC_PICK, None)
    ss.setdefault(COMPARE, {"a": None, "b": None})


# --- the URL: current checkpoint and codec settings ------------------------------------------------

def url_name(path: str | None) -> str | None:
    """How the URL names a checkpoint: relative to the demo, ``upload:<hash>``, or its path."""
    if path is None:
        return None
    for h, (_, p) in _uploads().items():
        if p == path:
            return f"upload:{h}"
    try:
        return str(Path(path).relative_to(demo_dir()))
    except ValueError:
        return path


def from_url_name(name: str) -> str | None:
    if name.startswith("upload:"):
        hit = _uploads().get(name[len("upload:"):])
        return hit[1] if hit else None
    p = Path(name)
    return str(p if p.is_absolute() else demo_dir() / p)


def read_url() -> None:
    """Once per session (first run, a reload, a shared link): the URL's checkpoint and codec
    settings become the session's."""
    ss = st.session_state
    if ss.get(URL_READ):
        return
    ss[URL_READ] = True
    params = st.query_params.to_dict()
    problems = []
    settings, reason = forms.from_query(params)
    if reason is None:
        ss[LAB_SETTINGS] = settings
    else:
        problems.append(reason[0].upper() + reason[1:])
    root = params.get("root")
    if root and Path(root).is_dir():
        ss[RUN_ROOT] = root
    name = params.get("ckpt")
    if name:
        path = from_url_name(name)
        why = "it is no longer on this server" if path is None else select(path)
        if why is not None:
            problems.append(f"The link's checkpoint ({name}) could not be opened: {why}. The default checkpoint "
                            "is shown.")
        elif name.startswith("upload:"):
            label, p = _uploads()[name[len("upload:"):]]
            remember_upload(label, p)
    if problems:
        ss[NOTICE] = ("warning", " ".join(problems))


def write_url() -> None:
    """The session's checkpoint and codec settings into the URL (every run; the page is the
    URL's path)."""
    ss = st.session_state
    want = {**forms.to_query(ss.get(LAB_SETTINGS) or lab_defaults())}
    name = url_name(current())
    if name:
        want["ckpt"] = name
    if ss.get(RUN_ROOT) and ss[RUN_ROOT] != str(demo_dir()):
        want["root"] = ss[RUN_ROOT]
    if st.query_params.to_dict() != want:
        st.query_params.from_dict(want)


# --- runs and models ---------------------------------------------------------------------------

@st.cache_data(max_entries=16, show_spinner=False)
def _catalog(root: str, stamp: tuple) -> list[runs.Run]:
    return runs.discover(root)


def catalog(root: str | os.PathLike) -> list[runs.Run]:
    """The runs under ``root`` (raises ``runs.RunError`` naming the problem)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise runs.RunError(f"{root} does not exist")
    return _catalog(str(root), runs.catalog_stamp(root))


@st.cache_resource(max_entries=MAX_MODELS, show_spinner=False)
def _load(path: str, stamp: tuple):
    model, meta = api.load_any(path)
    model.requires_grad_(False)  # nothing here trains it
    return model, meta


def load(path: str):
    """(model, metadata) of a checkpoint file or bundle folder, shared and read-only.
    Raises the loader's error (CheckpointError, BundleError, ValueError) naming the problem."""
    return _load(path, runs.stamp(path))


def current() -> str | None:
    return st.session_state.get(CURRENT)


def current_key() -> tuple | None:
    """Cache key of the current checkpoint: its path and file stamp."""
    path = current()
    if path is None or not os.path.exists(path):
        return None
    return runs.stamp(path)


def select(path: str) -> str | None:
    """Make ``path`` the current checkpoint if it loads; else keep the previous one and
    return the reason."""
    if not os.path.exists(path):
        return f"{describe(path)} does not exist"
    try:
        load(path)
    except Exception as exc:  # the loaders' errors name the problem; the app stays up
        return _reason(exc)
    if st.session_state.get(CURRENT) != path:
        gc.collect()  # once per switch, not after every run (.streamlit/config.toml): models evicted from the LRU go now
    st.session_state[CURRENT] = path
    return None


def _reason(exc: BaseException) -> str:
    text = error_text(exc)
    root = str(_upload_root())  # the server's upload folder: not the user's business
    return re.sub(re.escape(root) + r"(/[0-9a-f]{16})?/?", "", text)


def describe(path: str | None) -> str:
    """Short name of a checkpoint for headers: run/role or the uploaded file's name."""
    if path is None:
        return "none"
    for label, p in st.session_state.get(UPLOADS, []):
        if p == path:
            return f"uploaded: {label}"
    for label, p in _uploads().values():
        if p == path:
            return f"uploaded: {label}"
    p = Path(path)
    if p.parent.name in (runs.CHECKPOINT_DIR, runs.BUNDLE_DIR):
        return f"{p.parent.parent.name} · {p.stem if p.is_file() else p.name}" + (" (bundle)" if p.is_dir() else "")
    return p.name


# --- uploads: kept for the server's lifetime under their content hash ----------------------------------

@st.cache_resource
def _upload_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="ctnet-uploads-"))


@st.cache_resource
def _uploads() -> dict[str, tuple[str, str]]:
    """content hash (16 hex) → (file name, path of the imported checkpoint or bundle)."""
    return {}


def import_upload(name: str, data: bytes) -> str:
    """Import an uploaded file once per content (raises ``runs.RunError`` naming the
    problem, without the server's folder in it)."""
    h = hashlib.sha256(data).hexdigest()[:16]
    known = _uploads().get(h)
    if known is not None and os.path.exists(known[1]):
        return known[1]
    folder = _upload_root() / h
    try:
        path = str(runs.import_upload(name, data, folder))
    except runs.RunError as exc:
        raise runs.RunError(_reason(exc)) from None
    _uploads()[h] = (name, path)
    return path


def remember_upload(label: str, path: str) -> None:
    uploads = [u for u in st.session_state[UPLOADS] if u[1] != path]
    st.session_state[UPLOADS] = uploads + [(label, path)]


def default_entry(entries: list[runs.Entry]) -> runs.Entry | None:
    """What the app opens on: the most accurate checkpoint on the frontier (decoded
    accuracy when the run measured it)."""
    which = "decoded" if entries and all(e.decoded for e in entries) else "acc1"
    front = runs.frontier(entries, which)
    if front:
        return max(front, key=lambda e: (runs.accuracy_of(e, which), e.ratio))
    return entries[0] if entries else None


@st.cache_data(max_entries=64, show_spinner=False)
def source_digest(path: str, stamp: tuple) -> str:
    from ctnet import rd
    return rd.source_hash(path)


def digest(path: str) -> str:
    """Content hash of a checkpoint file or bundle folder (what job keys name it by)."""
    return source_digest(path, runs.stamp(path))


# --- derived arrays (st.cache_data: keyed by the checkpoint's stamp) -----------------------------

@st.cache_data(max_entries=16, show_spinner=False)
def layer_stats(key: tuple, q: float, _model) -> list[dict]:
    return ci.layer_stats(_model, q)


@st.cache_data(max_entries=16, show_spinner=False)
def grid_stats(key: tuple, _model, _meta) -> list[dict]:
    return ci.grid_stats(_model, _meta)


@st.cache_data(max_entries=16, show_spinner=False)
def layer_summary(key: tuple, _model, _meta) -> dict[str, dict]:
    return ci.layer_summary(_model, _meta)


@st.cache_data(max_entries=32, show_spinner=False)
def level_frequency_map(key: tuple, name: str, _model, _meta, _settings):
    """``key``: what names the model (its file stamp, or an encode's job key)."""
    return ci.level_frequency_map(_model, _meta, name, _settings)


@st.cache_data(max_entries=16, show_spinner=False)
def coefficient_image(key: tuple, name: str, _model) -> np.ndarray:
    return ci.coefficient_image(ci.coefficient_tensors(_model)[name])


@st.cache_data(max_entries=16, show_spinner=False)
def frequency_maps(key: tuple, name: str, q: float, _model):
    return ci.frequency_maps(_model, name, q)


@st.cache_data(max_entries=32, show_spinner=False)
def histogram(key: tuple, name: str, q: float, _model):
    return ci.magnitude_histogram(ci.coefficient_tensors(_model)[name], q)


def layout_of(settings: dict) -> tuple:
    """The settings that decide how levels become frames (not how frames are coded)."""
    return tuple((k, settings[k]) for k in ("codec", "bit_depth", "frame", "order", "dither", "seed", "tile")) + \
        tuple(sorted((settings.get("layer_bits") or {}).items()))


@st.cache_resource(max_entries=3, show_spinner=False)
def coded_frames(key: tuple, layout: tuple, _model, _meta, _settings: dict) -> ci.CodedFrames:
    """The frames the codec sees under these settings (shared, read-only)."""
    return ci.coded_frames(_model, _meta, _settings)


VIEWS = {"levels": "|level|, stretched", "pixels": "pixels as coded (top 8 bits)"}


@st.cache_data(max_entries=6, show_spinner=False)
def frame_view(key: tuple, layout: tuple, view: str, _frames: ci.CodedFrames) -> np.ndarray:
    """8-bit frames to show: |level| stretched, or the coded pixels' top 8 bits."""
    if view == "levels":
        return ci.level_view(_frames.pixels, _frames.container_bits)
    return ci.to_uint8(_frames.pixels, _frames.container_bits)


@st.cache_data(max_entries=8, show_spinner=False)
def thumbnails(key: tuple, layout: tuple, view: str, thumb: int, columns: int, _frames8: np.ndarray) -> np.ndarray:
    return ci.thumbnail_grid(_frames8, thumb=thumb, columns=columns, gap=2, pool="max")


PREVIEW_SIDE = 256  # the preview video's frames: at most this many pixels a side (it is shown ≤ 512 px wide)


@st.cache_data(max_entries=6, show_spinner=False)
def preview_video(key: tuple, layout: tuple, view: str, fps: int, _frames8) -> bytes:
    from ctnet.codec import video
    frames = _frames8
    side = max(frames.shape[1:])
    if side > PREVIEW_SIDE:  # shrink by max-pooling, so sparse levels stay visible
        frames = np.stack([ci.max_pool(f.astype(np.float32), PREVIEW_SIDE)[0] for f in frames]).astype(np.uint8)
    else:
        frames = ci.upscale(frames, max(1, PREVIEW_SIDE // side))
    return video.preview_mp4(list(frames), fps)


def frame_bytes(path: str, meta: dict, settings: dict) -> tuple[list | None, str | None]:
    """Bytes of each plan frame (None for frames not coded) and where they come from: this
    session's encode of this checkpoint at these settings when there is one, else the
    bundle's own manifest when the bundle was made with these settings; (None, None) else."""
    job = encode_job(path, settings)
    if job is not None and job.ok:
        info = job.result()["result"].frame_info
        return [f["bytes"] if f["coded"] else None for f in info], \
            f"the Codec lab's encode ({forms.label(settings)})"
    b = meta.get("bundle") or {}
    if b.get("frame_bytes") is not None and meta.get("settings") == settings:
        fb = b["frame_bytes"]
        return [int(x) if x else None for x in fb], "this bundle's manifest"
    return None, None


# --- background jobs: encode, accuracy, sweeps (one runner, app/jobs.py) --------------------------------

@st.cache_resource
def runner() -> Runner:
    """The server's one job runner and store (shared by every session and tab)."""
    lab_worker()  # started with the runner, so it is warm by the first encode
    return Runner()


@st.cache_resource
def lab_worker() -> Worker:
    """The process the Codec lab's encodes run in (app/worker.py: why, and how it cancels)."""
    worker = Worker()
    worker.start()
    return worker


# seconds per encode at each preset before one was timed here (CTNet-18, 2 cores)
ENCODE_PRIOR = {"ultrafast": 6.0, "superfast": 6.0, "veryfast": 6.5, "faster": 7.0, "fast": 7.0, "medium": 8.0,
                "slow": 15.0, "slower": 40.0, "veryslow": 80.0, "placebo": 160.0}
EVAL_PRIOR = 0.012  # seconds per image on 2 CPU cores (CTNet-18 at 128 px)


def encode_key(path: str, settings: dict) -> tuple:
    return ("encode", digest(path), forms.canonical(settings))


def decoded_id(d: str, settings: dict) -> tuple:
    """Model id (for accuracy jobs) of the model that an encode of the checkpoint with content
    hash ``d`` at ``settings`` decodes to. A lossless encode decodes to the same levels at
    every preset, so the preset is not part of it: its preview and the exact encode share one
    accuracy run."""
    return ("encode", d, forms.canonical({**settings, "preset": "*"} if settings["crf"] == 0 else settings))


# The lab's quick preview: a lossless encode of a large model at a slower x26x preset is coded
# at ultrafast first (the same levels, so the same decoded model and accuracy; a little more
# bytes) and shown until the exact encode is done. On 2 cores the densest demo checkpoint
# (2.9 MB) takes ~3.3 s to code at medium, ~2 s at ultrafast; models under PREVIEW_ABOVE
# bytes code in 1–2.5 s, where a preview would only delay the exact result.
PREVIEW_PRESET = "ultrafast"
PREVIEW_CODECS = ("hevc", "h264")
PREVIEW_ABOVE = 1_500_000  # bytes of the model's bundle (or training's estimate of them)


def preview_settings(settings: dict, meta: dict | None = None) -> dict | None:
    """The settings of the quick preview of an encode at ``settings`` of the model with
    metadata ``meta``; None when it has none."""
    if settings["codec"] not in PREVIEW_CODECS or settings["crf"] != 0 or settings["preset"] == PREVIEW_PRESET:
        return None
    if meta is not None:
        size = (meta.get("bundle") or {}).get("total_bytes") or (meta.get("metrics") or {}).get("est_bytes_export")
        if isinstance(size, (int, float)) and size <= PREVIEW_ABOVE:
            return None
    return {**settings, "preset": PREVIEW_PRESET}


def preview_job(path: str | None, settings: dict) -> Job | None:
    """The quick preview of the encode of ``path`` at ``settings`` (running or finished)."""
    preview = preview_settings(settings)  # whether or not the model is large: a preview made earlier is shown
    return encode_job(path, preview) if preview is not None else None


def encode_job(path: str | None, settings: dict) -> Job | None:
    """The encode of ``path`` at ``settings``, running or finished, whoever started it."""
    if path is None or not os.path.exists(path):
        return None
    return runner().get(encode_key(path, settings))


def _encode_work(source: str, settings: dict, worker: Worker):
    def work(job: Job) -> dict:
        """Lane thread: the encode runs in the lab's worker process, its result is rebuilt
        here. Touches no Streamlit state."""
        out = worker.run("encode", {"path": source, "settings": dict(settings)}, report=job.report,
                         cancel=job.cancel_event)
        job.report(1, 1, "receiving the result")
        result = EncodeResult.from_report(out.pop("report"))
        result.model.requires_grad_(False)
        return {"source": source, "settings": dict(settings), "result": result, **out, "finished": time.time()}
    return work


def prepare_encoder(source: str) -> None:
    """Have the lab's worker load ``source`` (and warm its encoder) while the user looks at the
    settings, so Encode starts coding at once. Once per checkpoint content; queued like any
    job, so an encode asked for meanwhile simply runs after it."""
    worker = lab_worker()
    runner().submit(("prepare", digest(source)), "prepare", f"Preparing the encoder for {describe(source)}",
                    lambda job: worker.run("prepare", {"path": source}, report=job.report, cancel=job.cancel_event))


def encode_estimate(settings: dict) -> float | None:
    return runner().estimate(f"encode:{settings['preset']}", 1, ENCODE_PRIOR.get(settings["preset"]))


def start_encode(source: str, settings: dict) -> Job:
    """The encode of ``source`` at ``settings``: the existing job (running or done), else a
    new one (queued behind any other). A bad combination raises BundleError, in the page."""
    forms.valid(settings)
    _, meta = load(source)  # a checkpoint that does not load fails here, in the page
    preview = preview_settings(settings, meta)
    if preview is not None and encode_job(source, settings) is None:
        _submit_encode(source, preview, f"Preview of {describe(source)} at {PREVIEW_PRESET}")
    job = _submit_encode(source, settings, f"Encoding {describe(source)} at {settings['preset']}")
    encodes = [k for k in st.session_state[LAB_ENCODES] if k != job.key]
    st.session_state[LAB_ENCODES] = encodes + [job.key]
    return job


def _submit_encode(source: str, settings: dict, label: str) -> Job:
    return runner().submit(encode_key(source, settings), "encode", label, _encode_work(source, dict(settings), lab_worker()),
                           units=1, prior=ENCODE_PRIOR.get(settings["preset"]), rate_key=f"encode:{settings['preset']}",
                           meta={"source": source, "settings": dict(settings)})


def running_jobs(kind: str | None = None) -> list[Job]:
    return runner().jobs(kind, where=lambda j: j.running)


def encodes_of(path: str | None) -> list[Job]:
    """Finished encodes of ``path`` (by content) the server holds, oldest first: this session's
    and any other tab's."""
    if path is None or not os.path.exists(path):
        return []
    d = digest(path)
    return runner().jobs("encode", where=lambda j: j.ok and j.key[1] == d)


def cancel(job: Job) -> None:
    runner().cancel(job.key)


# --- accuracy ---------------------------------------------------------------------------------

def dataset_stamp(path: str) -> tuple:
    p = Path(path).expanduser()
    return (str(p), p.stat().st_mtime_ns) if p.exists() else (str(p),)


@st.cache_resource
def _split_store() -> tuple[dict, threading.Lock]:
    """Decoded val images per (folder, stamp, classes, size, subset), shared by sessions; a
    plain store rather than a cached function, whose cache hits would replay the caller's
    progress-bar calls into whatever page asks next."""
    return {}, threading.Lock()


def split(path: str, num_classes: int, size: int, limit: int | None, progress=None):
    """Decoded val images (read-only, shared). Raises DatasetError naming the problem."""
    from ctnet.data import load_split, split_dir
    split_dir(path, "val")  # a missing or wrongly laid out folder fails here, before caching
    key = (str(Path(path).expanduser()), dataset_stamp(path), num_classes, size, limit)
    store, lock = _split_store()
    with lock:
        if key in store:
            return store[key]
    data = load_split(key[0], "val", num_classes=num_classes, size=size, limit=limit, cache=True, progress=progress)
    with lock:
        while len(store) >= 4:
            store.pop(next(iter(store)))
        store[key] = data
    return data


def evaluate(model, data, device: str, progress=None) -> dict:
    """Top-1/top-5 and confusion matrix; the shared model is never moved: another device
    gets a copy."""
    from ctnet.evaluate import evaluate as run_eval, resolve_device
    dev = resolve_device(device)
    m = model if dev.type == "cpu" else copy.deepcopy(model).to(dev)
    with torch.no_grad():
        return run_eval(m, data, device=dev, batch_size=100, progress=progress, confusion=True)


def devices() -> list[str]:
    """What the Accuracy page offers: auto (CUDA when present, as training does), cpu, each GPU."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return out


def data_id(data_path: str, limit: int | None, device: str) -> tuple:
    return (str(Path(data_path).expanduser()), dataset_stamp(data_path), limit, device)


def accuracy_key(model_id: tuple, data_path: str, limit: int | None, device: str) -> tuple:
    """``model_id``: ("loaded", content hash) for the checkpoint or bundle as loaded,
    ("encode", content hash, settings) for a re-encode's decoded model."""
    return ("accuracy", model_id, data_id(data_path, limit, device))


def accuracy_job(model_id: tuple, data_path: str, limit: int | None, device: str) -> Job | None:
    return runner().get(accuracy_key(model_id, data_path, limit, device))


def start_accuracy(model_id: tuple, label: str, model, meta: dict, data_path: str, limit: int | None,
                   device: str) -> Job:
    """Top-1/top-5 of ``model`` on ``data_path`` in the background (cached by the key). A
    missing or malformed data folder raises DatasetError here, in the page."""
    from ctnet.data import label_map, list_images, split_dir
    key = accuracy_key(model_id, data_path, limit, device)
    old = runner().get(key)
    if old is not None and (old.running or old.ok):  # what submit returns; its folder was checked then
        return old
    num_classes, size = int(meta["model"]["num_classes"]), int(meta.get("image_size", 128))
    list_images(split_dir(data_path, "val"), meta.get("label_map") or label_map(num_classes))  # fails here, not later

    def work(job: Job) -> dict:
        job.report(0, 1, "reading images")
        data = split(data_path, num_classes, size, limit,
                     progress=lambda done, total: job.report(done, total, f"reading images {done}/{total}"))
        t0 = time.perf_counter()
        res = evaluate(model, data, device, progress=lambda done, total: job.report(
            done, total, f"{done}/{total} images"))
        res["seconds"] = time.perf_counter() - t0
        res["data"] = data_path
        return res
    units = limit or 500
    return runner().submit(key, "accuracy", f"Top-1 of {label}", work,
                           units=units, prior=EVAL_PRIOR, meta={"label": label, "model_id": model_id})


def lab_accuracy(path: str, settings: dict) -> tuple[Job | None, Job | None]:
    """The Codec lab's accuracy on the embedded sample: (the checkpoint as loaded, the
    decoded re-encode at ``settings``), started in the background once the encode is done."""
    sample = sample_dir()
    if not (sample / "val").is_dir():
        return None, None
    enc = encode_job(path, settings)
    if enc is None or not enc.ok:
        return None, None
    model, meta = load(path)
    d = digest(path)
    src = start_accuracy(("loaded", d), describe(path), model, meta, str(sample), None, "auto")
    dec = start_accuracy(decoded_id(d, settings), f"{describe(path)} at {forms.label(settings)}",
                         enc.result()["result"].model, meta, str(sample), None, "auto")
    return src, dec



def model_summary(path: str, job: Job | None = None, entry: runs.Entry | None = None) -> dict:
    """What the Compare page shows of one model — the checkpoint or bundle at ``path``, or
    the lab's encode ``job`` of it: per-layer {bytes, non-zero, values}, total bytes, ratio,
    the model and its id for accuracy jobs, and the accuracies known (stored in results.json,
    at training, measured here on the embedded sample)."""
    model, meta = load(path)
    d = digest(path)
    if job is not None:
        res = job.result()["result"]
        layers = {x["name"]: {"bytes": x["bytes"], "non-zero": x["nonzero"], "values": None}
                  for x in res.layers if x["kind"] == "weight"}
        out = {"layers": layers, "total": res.total_bytes, "ratio": res.ratio, "model": res.model,
               "model_id": decoded_id(d, job.meta["settings"]), "meta": meta, "acc": {},
               "settings": job.meta["settings"], "key": job.key}
    else:
        b = meta.get("bundle") or {}
        out = {"layers": layer_summary(runs.stamp(path), model, meta), "total": b.get("total_bytes"),
               "ratio": b.get("ratio"), "model": model, "model_id": ("loaded", d), "meta": meta, "acc": {},
               "settings": meta["settings"] if b.get("version") == 2 else None, "key": runs.stamp(path)}
        if entry is not None and entry.decoded:
            out["acc"]["stored (results.json)"] = entry.decoded.get("acc1")
        m = meta.get("metrics") or (meta.get("source") or {}).get("metrics") or {}
        if m.get("acc1") is not None:
            out["acc"]["at training"] = m["acc1"]
    acc = accuracy_job(out["model_id"], str(sample_dir()), None, "auto")
    if acc is not None and acc.ok:
        out["acc"]["sample (measured here)"] = acc.result()["acc1"]
    out["acc_job"] = acc
    return out


# --- per-layer grids (the Codec lab) -----------------------------------------------------------------

SENSITIVITY_DIR = "sensitivity"  # beside the demo's runs: the sensitivity profiles of its bundles (read-only)


def sensitivity_profile(d: str):
    """The sensitivity profile of the model with content hash ``d``: the demo's, else this
    machine's (``ctnet encode --bit-depth auto`` caches it); None when none was measured.
    Read on every call (a small file), so a profile measured meanwhile shows up."""
    from ctnet import bitalloc
    return bitalloc.find_profile(d, folders=(demo_dir() / SENSITIVITY_DIR,))


def layer_grid_maps(path: str, meta: dict, budget: float) -> dict[str, dict[str, int]]:
    """The per-layer grids the lab offers for ``path``: the allocation of its sensitivity
    profile at ``budget``, and the bundle's own per-layer grid when it has one."""
    from ctnet import bitalloc
    maps = {}
    prof = sensitivity_profile(digest(path))
    if prof is not None:
        maps[forms.AUTO] = bitalloc.allocate(prof, budget)
    own = (meta.get("settings") or {}).get("layer_bits") if (meta.get("bundle") or {}).get("version") == 2 else None
    if own:
        maps[forms.OWN] = dict(own)
    return maps


# --- rate–distortion sweeps (pages/rate_distortion.py) ----------------------------------------------

RD_DIR = "rd"  # beside the demo's runs: cache files of the sweeps shipped with it (read-only)


@st.cache_data(max_entries=8, show_spinner=False)
def data_key(path: str, stamp: tuple) -> str:
    from ctnet import rd
    return rd.data_id(path)


def rd_points(path: str, data: str, limit: int | None) -> list[dict]:
    """Every measured point of ``path`` on ``data``: the demo's shipped sweeps, then this
    machine's cache (``ctnet rd``'s, shared with the CLI), which wins where both have a point."""
    from ctnet import rd
    d, dkey = digest(path), data_key(data, dataset_stamp(data))
    found: dict[str, dict] = {}
    for cache in (demo_dir() / RD_DIR / f"{d[:32]}.json", rd.default_cache(d)):
        found.update(rd.matching_points(cache, d, dkey, limit))
    return list(found.values())


def sweep_key(source: str, data: str, limit: int | None) -> tuple:
    return ("sweep", digest(source), data_id(data, limit, ""))


def sweep_job(source: str, data: str, limit: int | None) -> Job | None:
    return runner().get(sweep_key(source, data, limit))


def start_sweep(source: str, data: str, limit: int | None, todo: list, device: str = "auto") -> Job:
    """Measure ``todo`` (``ctnet.rd.Job``, those not measured yet) in the background."""
    from ctnet import rd
    model, meta = load(source)
    # the Accuracy page's decoded images; a missing or malformed folder fails here, in the page
    images = split(data, int(meta["model"]["num_classes"]), int(meta.get("image_size", 128)), limit)
    key = sweep_key(source, data, limit)
    old = runner().get(key)
    if old is not None and old.ok:
        runner().forget(key)  # a finished sweep: measure what is missing now

    def work(job: Job):
        def progress(done, total, point_job, point):
            job.report(done, total, f"{point_job.label()}")
        result = rd.sweep(source, data, todo, limit=limit, loaded=(model, meta), progress=progress, device=device,
                          split=images)
        return {"errors": result.errors, "nncodec": result.nncodec, "points": len(result.points)}
    return runner().submit(key, "sweep", f"Measuring {len(todo)} points", work, units=len(todo), prior=30.0,
                           meta={"source": source})
