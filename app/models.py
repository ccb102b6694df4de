"""Runs, checkpoints and uploads: the run catalog, the loaded models (``st.cache_resource``,
shared by every session, at most ``MAX_MODELS``: an LRU bounds the server's memory; treated as
read-only — nothing in the app trains, moves or edits them), the current checkpoint, the
server's uploads (kept under their content hash) and the content digest jobs are keyed by."""
from __future__ import annotations

import gc
import hashlib
import os
import re
import tempfile
from pathlib import Path

import streamlit as st

from app.jobs import error_text
from app.keys import CURRENT, UPLOADS
from ctnet import api, runs
from ctnet.api import LoadedModel


MAX_MODELS = 6  # decoded models kept by the server (CTNet-18: ~45 MB each)


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
def _load(path: str, stamp: tuple) -> LoadedModel:
    loaded = api.load_any(path)
    loaded.model.requires_grad_(False)  # nothing here trains it
    return loaded


def load(path: str) -> LoadedModel:
    """The checkpoint file or bundle folder at ``path``, loaded, shared and read-only.
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
    for label, p in server_uploads().values():
        if p == path:
            return f"uploaded: {label}"
    p = Path(path)
    if p.parent.name in (runs.CHECKPOINT_DIR, runs.BUNDLE_DIR):
        return f"{p.parent.parent.name} · {p.stem if p.is_file() else p.name}" + (" (bundle)" if p.is_dir() else "")
    return p.name


@st.cache_resource
def _upload_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="ctnet-uploads-"))


@st.cache_resource
def server_uploads() -> dict[str, tuple[str, str]]:
    """content hash (16 hex) → (file name, path of the imported checkpoint or bundle)."""
    return {}


def import_upload(name: str, data: bytes) -> str:
    """Import an uploaded file once per content (raises ``runs.RunError`` naming the
    problem, without the server's folder in it)."""
    h = hashlib.sha256(data).hexdigest()[:16]
    known = server_uploads().get(h)
    if known is not None and os.path.exists(known[1]):
        return known[1]
    folder = _upload_root()  # runs.import_upload files it under the same content hash: one level to hide
    try:
        path = str(runs.import_upload(name, data, folder))
    except runs.RunError as exc:
        raise runs.RunError(_reason(exc)) from None
    server_uploads()[h] = (name, path)
    return path


@st.cache_data(max_entries=32, show_spinner=False)
def _upload_entry(label: str, path: str, stamp: tuple) -> runs.Entry:
    loaded = load(path)
    b, m = loaded.bundle, loaded.metrics
    return runs.Entry(run="uploads", roles=(label,), path=path, kind="bundle" if b is not None else "checkpoint",
                      epoch=loaded.epoch, arch=loaded.spec.arch, acc1=m.get("acc1"), acc5=m.get("acc5"),
                      est_bytes=m.get("est_bytes_export"), real_bytes=b.total_bytes if b is not None else None,
                      fp32_bytes=b.fp32_bytes if b is not None else m.get("fp32_bytes"), nonzero=m.get("nonzero"))


def upload_entries(uploads: list[tuple[str, str]]) -> list[runs.Entry]:
    """This session's uploads as entries the Pareto plot can draw (those that still load)."""
    out = []
    for label, path in uploads:
        try:
            out.append(_upload_entry(label, path, runs.stamp(path)))
        except Exception:  # noqa: BLE001 - a gone or broken upload is simply not drawn
            continue
    return out


def remember_upload(label: str, path: str) -> None:
    uploads = [u for u in st.session_state[UPLOADS] if u[1] != path]
    st.session_state[UPLOADS] = uploads + [(label, path)]


@st.cache_data(max_entries=8, show_spinner=False)
def _demo_index(folder: str, stamp: tuple) -> tuple[runs.DemoIndex, str | None]:
    try:
        return runs.read_demo_index(folder), None
    except runs.RunError as exc:
        return runs.DemoIndex(folder), str(exc)


def demo_index(folder: str | os.PathLike) -> tuple[runs.DemoIndex, str | None]:
    """The browsed folder's ``demo.json`` (its default checkpoint, its runs' baselines) and the
    reason it was ignored, if it was (an empty index then)."""
    p = Path(folder).expanduser() / runs.DEMO_INDEX
    stamp = (p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else None
    return _demo_index(str(Path(folder).expanduser()), (str(p), stamp))


def baselines(catalog: list[runs.Run], folder: str | os.PathLike) -> dict[str, runs.Baseline | None]:
    """run name → the baseline it was fine-tuned from (``runs.baseline``: the folder's
    demo.json, the --init-from file, the demo's DEMO.md notes)."""
    folder = Path(folder).expanduser()
    notes_file = folder / "DEMO.md"
    notes = runs.notes_baselines(notes_file.read_text(encoding="utf-8")) if notes_file.is_file() else {}
    index, _ = demo_index(folder)
    return {r.name: runs.baseline(r, notes, index) for r in catalog}


def default_entry(entries: list[runs.Entry], index: runs.DemoIndex | None = None) -> runs.Entry | None:
    """What the app opens on: the checkpoint the folder's demo.json names as ``default``, else
    the most accurate checkpoint on the frontier (decoded accuracy when the run measured it)."""
    want = index.default_path() if index is not None else None
    if want:
        want = os.path.normpath(want)
        for e in entries:
            if want in {os.path.normpath(Path(e.path).parent / r) for r in e.roles} | {os.path.normpath(e.path)}:
                return e
    which = "decoded" if entries and all(e.decoded for e in entries) else "acc1"
    front = runs.frontier(entries, which)
    if front:
        return max(front, key=lambda e: (runs.accuracy_of(e, which), e.ratio))
    return entries[0] if entries else None


@st.cache_data(max_entries=64, show_spinner=False)
def source_digest(path: str, stamp: tuple) -> str:
    return api.source_hash(path)


def digest(path: str) -> str:
    """Content hash of a checkpoint file or bundle folder (what job keys name it by)."""
    return source_digest(path, runs.stamp(path))
