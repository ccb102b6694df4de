"""The app's one place for session keys, and the cached wrappers around ctnet.

Loaded models are cached with ``st.cache_resource`` (shared by every session) and treated
as read-only: nothing in the app trains, moves or edits them; evaluation on another device
works on a copy. Derived arrays are cached with ``st.cache_data``, keyed by the model's
path and file stamp. Re-encoding runs in a worker thread (one at a time for the whole
server, so two encodes never fight over the two cores) and lands in the session when done,
so the other pages stay usable meanwhile.
"""
from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from ctnet import api, runs
from ctnet import inspect as ci

REPO = Path(__file__).resolve().parents[1]
DEMO_ENV = "CTNET_DEMO_DIR"

# --- session keys (all of them) ----------------------------------------------------------------
RUN_ROOT = "run_root"  # folder the Checkpoints page browses
CURRENT = "current"  # path of the current checkpoint file or bundle folder, for every page
UPLOADS = "uploads"  # [(label, path)] of this session's uploaded checkpoints and bundles
UPLOAD_DIR = "upload_dir"  # this session's folder for uploads
UPLOAD_SEEN = "upload_seen"  # file id of the last upload handled, so a rerun does not redo it
NOTICE = "notice"  # (level, text) to show once on the next run (e.g. after a failed selection)
LAB_SETTINGS = "lab_settings"  # EncodeSettings fields the Codec lab encodes with
LAB_JOB = "lab_job"  # the running EncodeJob, if any
LAB_RESULT = "lab_result"  # the latest finished encode (dict, see _encode_job)
LAB_PREVIOUS = "lab_previous"  # the one before it, same source: layers and totals only
LAB_ERROR = "lab_error"  # why the last encode failed
ACC_SOURCE = "acc_source"  # "sample" or "path"
ACC_PATH = "acc_path"  # full ImageNette path typed by the user
ACC_LIMIT = "acc_limit"  # images to evaluate (0 = all)
ACC_DEVICE = "acc_device"

# widget keys: widgets own their values only while rendered, so values that must survive a
# page change are copied into the keys above
W_ROOT = "w_root"
W_PICK = "w_pick"
W_PARETO = "w_pareto"
W_PARETO_Y = "w_pareto_y"
W_UPLOAD = "w_upload"
W_Q = "w_q"
W_LAYER = "w_layer"
W_STREAM = "w_stream"
W_SCRUB_ORDER = "w_scrub_order"
W_SCRUB = "w_scrub"
W_FPS = "w_fps"
W_VIEW = "w_view"
W_LAB = {name: f"w_lab_{name}" for name in ("codec", "lossless", "crf", "bit_depth", "pix_fmt", "preset", "dither", "seed",
                                            "bn_mode", "bn_crf", "bn_bit_depth", "order", "tile")}
W_ENCODE = "w_encode"
# the data choice (shared ACC_* values) as each page's widgets hold it
W_ACC_DATA = {"source": "w_acc_source", "path": "w_acc_path", "limit": "w_acc_limit", "device": "w_acc_device"}
W_RD_DATA = {"source": "w_rd_source", "path": "w_rd_path", "limit": "w_rd_limit", "device": "w_rd_device"}
W_RD = {name: f"w_rd_{name}" for name in ("codecs", "bits", "lossy", "baselines", "measure", "floor")}
RD_FLOOR_DEFAULT = "rd_floor_default"  # the floor the Rate–distortion page last proposed
W_ACC_RUN = "w_acc_run"

LAB_DEFAULTS = {"codec": "hevc", "crf": 0, "bit_depth": 8, "pix_fmt": "gray", "preset": "medium", "dither": 0.0, "seed": 0,
                "bn_mode": "raw", "bn_crf": 0, "bn_bit_depth": 12, "order": "similarity", "tile": 128}


def lab_defaults() -> dict:
    """The Codec lab's first settings: HEVC, or the codec ``$CTNET_CODEC`` names."""
    from ctnet.codec.video import CODECS, default_codec
    codec = default_codec()
    return {**LAB_DEFAULTS, "codec": codec, "pix_fmt": CODECS[codec].pix_fmts[0]}


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
            ss[LAB_SETTINGS] = dict(LAB_DEFAULTS)
            ss[NOTICE] = ("error", str(exc))
    ss.setdefault(LAB_JOB, None)
    ss.setdefault(LAB_RESULT, None)
    ss.setdefault(LAB_PREVIOUS, None)
    ss.setdefault(LAB_ERROR, None)
    ss.setdefault(ACC_SOURCE, "sample")
    ss.setdefault(ACC_PATH, "")
    ss.setdefault(ACC_LIMIT, 0)
    ss.setdefault(ACC_DEVICE, "auto")
    ss.setdefault(UPLOAD_DIR, None)  # made on the first upload


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


@st.cache_resource(max_entries=6, show_spinner=False)
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
    try:
        load(path)
    except Exception as exc:  # the loaders' errors name the problem; the app stays up
        return _reason(exc)
    st.session_state[CURRENT] = path
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if len(text) > 600 else text


def describe(path: str | None) -> str:
    """Short name of a checkpoint for headers: run/role or the uploaded file's name."""
    if path is None:
        return "none"
    for label, p in st.session_state.get(UPLOADS, []):
        if p == path:
            return f"uploaded: {label}"
    p = Path(path)
    if p.parent.name in (runs.CHECKPOINT_DIR, runs.BUNDLE_DIR):
        return f"{p.parent.parent.name} · {p.stem if p.is_file() else p.name}" + (" (bundle)" if p.is_dir() else "")
    return p.name


def import_upload(name: str, data: bytes) -> str:
    if st.session_state[UPLOAD_DIR] is None:
        st.session_state[UPLOAD_DIR] = tempfile.mkdtemp(prefix="ctnet-uploads-")
    return str(runs.import_upload(name, data, st.session_state[UPLOAD_DIR]))


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


# --- derived arrays (st.cache_data: keyed by the checkpoint's stamp) -----------------------------

@st.cache_data(max_entries=16, show_spinner=False)
def layer_stats(key: tuple, q: float, _model) -> list[dict]:
    return ci.layer_stats(_model, q)


@st.cache_data(max_entries=16, show_spinner=False)
def coefficient_image(key: tuple, name: str, _model) -> np.ndarray:
    return ci.coefficient_image(ci.coefficient_tensors(_model)[name])


@st.cache_data(max_entries=16, show_spinner=False)
def frequency_maps(key: tuple, name: str, q: float, _model):
    return ci.frequency_maps(_model, name, q)


@st.cache_data(max_entries=32, show_spinner=False)
def histogram(key: tuple, name: str, q: float, _model):
    return ci.magnitude_histogram(ci.coefficient_tensors(_model)[name], q)


def layout_of(settings: dict) -> dict:
    """The settings that decide how tensors become frames (not how frames are coded)."""
    return {"codec": settings["codec"], "bit_depth": settings["bit_depth"], "tile": settings["tile"],
            "pix_fmt": settings["pix_fmt"],
            "dither": settings["dither"], "seed": settings["seed"],
            "bn_bit_depth": settings["bn_bit_depth"] if settings["bn_mode"] == "video" else None}


@st.cache_data(max_entries=4, show_spinner=False)
def streams(key: tuple, layout: tuple, _model) -> list[ci.Stream]:
    return ci.model_streams(_model, **dict(layout))


@st.cache_data(max_entries=16, show_spinner=False)
def similarity_order(key: tuple, layout: tuple, stream: str, _frames: np.ndarray) -> list[int]:
    return ci.similarity_order(_frames)


VIEWS = {"magnitude": "|pixel − zero level|, stretched", "coded": "pixels as coded (top 8 bits)"}


@st.cache_data(max_entries=8, show_spinner=False)
def frame_view(key: tuple, layout: tuple, stream: str, view: str, bit_depth: int, _frames: np.ndarray) -> np.ndarray:
    """8-bit frames to show: the coded pixels, or their distance from the frame's zero level."""
    return ci.magnitude_view(_frames) if view == "magnitude" else ci.to_uint8(_frames, bit_depth)


@st.cache_data(max_entries=16, show_spinner=False)
def thumbnails(key: tuple, layout: tuple, stream: str, view: str, order_name: str, _frames8: np.ndarray,
               _order) -> np.ndarray:
    return ci.thumbnail_grid(_frames8, _order, thumb=20, columns=26, pool="max" if view == "magnitude" else "mean")


@st.cache_data(max_entries=8, show_spinner=False)
def preview_video(key: tuple, layout: tuple, stream: str, view: str, order_name: str, fps: int, _frames8,
                  _order) -> bytes:
    from ctnet.codec import video
    frames = _frames8[_order]
    factor = max(1, min(4, 384 // max(frames.shape[1:])))
    return video.preview_mp4(list(ci.upscale(frames, factor)), fps)


def frame_bytes(path: str, meta: dict, layout: dict, stream: str) -> tuple[dict | None, list | None, str | None]:
    """Bytes of each frame of ``stream`` (global frame number → bytes), the stream's coded
    order and where they come from: the Codec lab's latest encode of this checkpoint when
    it laid frames out the same way, else the bundle's own manifest; (None, None, None)
    when neither applies."""
    lab = lab_result_for(path)
    if lab is not None and layout_of(lab["settings"]) == layout:
        s = next((s for s in lab["result"]["streams"] if s["file"].startswith(stream + ".")), None)
        if s is not None:
            return ci.frame_bytes_from_streams([s]), s["order"], \
                f"the Codec lab's encode ({lab['settings']['preset']}, CRF {lab['settings']['crf']})"
    if "bundle" in meta and layout_of({**LAB_DEFAULTS, **meta["settings"]}) == layout:
        s = next((s for s in meta["streams"] if s["file"].startswith(stream + ".")), None)
        if s is not None:
            return ci.frame_bytes_from_manifest(meta), s["order"], "this bundle's manifest"
    return None, None, None


# --- re-encoding in the background ---------------------------------------------------------------

@st.cache_resource
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctnet-encode")


@st.cache_resource
def _timings() -> dict:
    """Seconds per frame of the last encode at each preset: the progress estimate."""
    return {}


@dataclass
class EncodeJob:
    source: str
    settings: dict
    future: Future
    frames: int
    started: float = field(default_factory=time.perf_counter)
    done_frames: list = field(default_factory=lambda: [0])  # written by the worker's progress callback

    def estimate(self) -> float | None:
        per_frame = _timings().get(self.settings["preset"])
        return per_frame * self.frames if per_frame else None

    def fraction(self) -> tuple[float, str]:
        """(fraction done, what it is based on) for the progress bar."""
        elapsed = time.perf_counter() - self.started
        if self.done_frames[0]:
            return min(self.done_frames[0] / self.frames, 1.0), f"{self.done_frames[0]}/{self.frames} frames coded"
        est = self.estimate()
        if est:
            return min(elapsed / est, 0.99), \
                f"{elapsed:.1f} s of ≈{est:.0f} s (time of the last {self.settings['preset']} encode)"
        return 0.0, f"{elapsed:.1f} s (first encode at {self.settings['preset']}: no estimate yet)"


def _encode_job(source: str, model, meta, settings: dict, done_frames: list) -> dict:
    """Worker thread: encode, decode, measure. Touches no Streamlit state."""
    t0 = time.perf_counter()
    result = api.encode(model, meta, dict(settings), progress=lambda done, total: done_frames.__setitem__(0, done))
    seconds = time.perf_counter() - t0
    frames = sum(s["frames"] for s in result["streams"])
    _timings()[settings["preset"]] = seconds / max(frames, 1)
    errors = ci.reconstruction_errors(model, result["model"])
    return {"source": source, "settings": dict(settings), "seconds": seconds, "result": result, "errors": errors,
            "finished": time.time()}


def start_encode(source: str, settings: dict) -> EncodeJob | None:
    """Queue an encode of ``source`` with ``settings`` unless one is already running."""
    job = st.session_state.get(LAB_JOB)
    if job is not None and not job.future.done():
        return job
    model, meta = load(source)
    from ctnet.codec.bundle import EncodeSettings
    EncodeSettings(**settings).validate()  # a bad combination fails here, in the page, with its reason
    frames = frame_count(model, settings)
    done = [0]
    future = _executor().submit(_encode_job, source, model, meta, dict(settings), done)
    job = EncodeJob(source, dict(settings), future, frames, done_frames=done)
    st.session_state[LAB_JOB] = job
    st.session_state[LAB_ERROR] = None
    return job


def frame_count(model, settings: dict) -> int:
    from ctnet import export, quant
    n = export.frame_count(model, settings["tile"])
    if settings["bn_mode"] == "video":
        n += sum(len(quant.tile_boxes(4, m.num_features, settings["tile"])) for m in export.bn_layers(model).values())
    return n


def running_job() -> EncodeJob | None:
    job = st.session_state.get(LAB_JOB)
    return job if job is not None and not job.future.done() else None


def collect_job() -> None:
    """Move a finished encode into the session (every run, whichever page is open)."""
    job = st.session_state.get(LAB_JOB)
    if job is None or not job.future.done():
        return
    st.session_state[LAB_JOB] = None
    try:
        outcome = job.future.result()
    except Exception as exc:  # BundleError, VideoError …: their messages name the problem
        st.session_state[LAB_ERROR] = _reason(exc)
        return
    prev = st.session_state.get(LAB_RESULT)
    if prev is not None and prev["source"] == outcome["source"]:
        st.session_state[LAB_PREVIOUS] = {"settings": prev["settings"], "layers": prev["result"]["layers"],
                                          "total_bytes": prev["result"]["total_bytes"],
                                          "ratio": prev["result"]["ratio"]}
    else:
        st.session_state[LAB_PREVIOUS] = None
    st.session_state[LAB_RESULT] = outcome


def lab_result_for(path: str | None) -> dict | None:
    res = st.session_state.get(LAB_RESULT)
    return res if res is not None and path is not None and res["source"] == path else None


# --- accuracy ---------------------------------------------------------------------------------

@st.cache_resource
def _accuracy_store() -> tuple[dict, threading.Lock]:
    """Results per (model, codec settings, data, subset, device), shared by sessions."""
    return {}, threading.Lock()


def accuracy_cached(key: tuple) -> dict | None:
    store, lock = _accuracy_store()
    with lock:
        return store.get(key)


def accuracy_store(key: tuple, result: dict) -> None:
    store, lock = _accuracy_store()
    with lock:
        store[key] = result


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


# --- rate–distortion sweeps (pages/rate_distortion.py) ----------------------------------------------

RD_JOB = "rd_job"  # the running SweepJob, if any
RD_ERROR = "rd_error"  # why the last sweep failed
RD_DIR = "rd"  # beside the demo's runs: cache files of the sweeps shipped with it (read-only)


@st.cache_resource
def _rd_executor() -> ThreadPoolExecutor:
    """Sweeps get their own worker, so a long one never queues the Codec lab's encodes."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctnet-rd")


@dataclass
class SweepJob:
    source: str
    data: str
    limit: int | None
    future: Future
    total: int
    status: list = field(default_factory=lambda: [0, ""])  # [points done, what runs now]: written by the worker
    started: float = field(default_factory=time.perf_counter)


@st.cache_data(max_entries=32, show_spinner=False)
def source_digest(path: str, stamp: tuple) -> str:
    from ctnet import rd
    return rd.source_hash(path)


@st.cache_data(max_entries=8, show_spinner=False)
def data_key(path: str, stamp: tuple) -> str:
    from ctnet import rd
    return rd.data_id(path)


def rd_points(path: str, data: str, limit: int | None) -> list[dict]:
    """Every measured point of ``path`` on ``data``: the demo's shipped sweeps, then this
    machine's cache (``ctnet rd``'s, shared with the CLI), which wins where both have a point."""
    from ctnet import rd
    digest, dkey = source_digest(path, runs.stamp(path)), data_key(data, dataset_stamp(data))
    found: dict[str, dict] = {}
    for cache in (demo_dir() / RD_DIR / f"{digest[:32]}.json", rd.default_cache(digest)):
        found.update(rd.matching_points(cache, digest, dkey, limit))
    return list(found.values())


def start_sweep(source: str, data: str, limit: int | None, jobs: list, device: str = "auto") -> SweepJob | None:
    """Measure ``jobs`` (``ctnet.rd.Job``, those not measured yet) in the background."""
    from ctnet import rd
    job = st.session_state.get(RD_JOB)
    if job is not None and not job.future.done():
        return job
    model, meta = load(source)
    # the Accuracy page's decoded images; a missing or malformed folder fails here, in the page
    images = split(data, int(meta["model"]["num_classes"]), int(meta.get("image_size", 128)), limit)
    status = [0, ""]

    def progress(done, total, job, point):
        status[0], status[1] = done, job.label()

    def work():
        return rd.sweep(source, data, jobs, limit=limit, loaded=(model, meta), progress=progress,
                        device=device, split=images)
    job = SweepJob(source, data, limit, _rd_executor().submit(work), len(jobs), status)
    st.session_state[RD_JOB] = job
    st.session_state[RD_ERROR] = None
    return job


def running_sweep() -> SweepJob | None:
    job = st.session_state.get(RD_JOB)
    return job if job is not None and not job.future.done() else None


def collect_sweep() -> dict | None:
    """A finished sweep's outcome (its failed points) once; its points are in the cache."""
    job = st.session_state.get(RD_JOB)
    if job is None or not job.future.done():
        return None
    st.session_state[RD_JOB] = None
    try:
        result = job.future.result()
    except Exception as exc:  # RDError, DatasetError …: their messages name the problem
        st.session_state[RD_ERROR] = _reason(exc)
        return None
    return {"errors": result.errors, "nncodec": result.nncodec, "points": len(result.points)}
