"""Top-1/top-5 in the background: decoded val images shared by sessions, the devices offered,
accuracy jobs keyed by (model, data, subset, device), the Codec lab's accuracy on the
embedded sample and what the Compare page shows of one model."""
from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import streamlit as st
import torch

from app import forms
from app.background import runner
from app.encodes import decoded_id, encode_job
from app.jobs import Job
from app.keys import sample_dir
from app.models import describe, digest, load
from app.views import layer_summary
from ctnet import api, runs
from ctnet import inspect as ci
from ctnet.api import EncodeSettings, LoadedModel


EVAL_PRIOR = 0.012  # seconds per image on 2 CPU cores (CTNet-18 at 128 px)


def dataset_stamp(path: str) -> tuple:
    p = Path(path).expanduser()
    return (str(p), p.stat().st_mtime_ns) if p.exists() else (str(p),)


@st.cache_resource
def _split_store() -> tuple[dict, threading.Lock]:
    """Decoded val images per (folder, stamp, label map, classes, size, subset), shared by sessions; a
    plain store rather than a cached function, whose cache hits would replay the caller's
    progress-bar calls into whatever page asks next."""
    return {}, threading.Lock()


def split(path: str, loaded: LoadedModel, limit: int | None, progress=None):
    """Decoded val images (read-only, shared), labelled by the model's label map. Raises
    DatasetError naming the problem."""
    api.split_dir(path, "val")  # a missing or wrongly laid out folder fails here, before caching
    labels = loaded.label_map
    key = (str(Path(path).expanduser()), dataset_stamp(path), json.dumps(labels, sort_keys=True), loaded.num_classes,
           loaded.image_size, limit)
    store, lock = _split_store()
    with lock:
        if key in store:
            return store[key]
    data = api.load_split(key[0], "val", labels=labels, num_classes=loaded.num_classes, size=loaded.image_size,
                          limit=limit, cache=True, progress=progress)
    with lock:
        while len(store) >= 4:
            store.pop(next(iter(store)))
        store[key] = data
    return data


def evaluate(model, data, device: str, progress=None) -> dict:
    """Top-1/top-5 and confusion matrix; the shared model is never moved: another device
    gets a copy."""
    dev = api.resolve_device(device)
    m = model if dev.type == "cpu" else copy.deepcopy(model).to(dev)
    with torch.no_grad():
        return api.evaluate(m, data, device=dev, batch_size=100, progress=progress, confusion=True, hits=True)


def paired(reference: dict | None, model: dict | None) -> ci.PairedDelta | None:
    """The change of top-1 from ``reference`` to ``model`` (two accuracy results on the same
    images), image by image, with its 95 % interval; None when either is missing or they were
    measured on different images."""
    if not reference or not model or "hits" not in reference or "hits" not in model:
        return None
    if reference.get("data") != model.get("data") or len(reference["hits"]) != len(model["hits"]):
        return None
    return ci.paired_delta(reference["hits"], model["hits"])


def _signed(v: float) -> str:
    return f"{v:+.2f}".replace("-", "−")


def delta_text(d: ci.PairedDelta, against: str = "source") -> str:
    """"−0.20 pt ± 0.39 vs source" (95 % interval, paired on the same images)."""
    return f"{_signed(d.delta)} pt ± {d.half_width:.2f} vs {against}"


def delta_words(d: ci.PairedDelta) -> str:
    """What the interval means, for a caption beside it."""
    changed = d.lost + d.gained
    if not changed:
        return f"no image of the {d.images:,} changed its top-1 prediction: the same accuracy."
    sure = d.low > 0 or d.high < 0
    return (f"{changed} of the {d.images:,} images changed their top-1 ({d.lost} now wrong, {d.gained} now right); "
            f"95 % interval {_signed(d.low)} … {_signed(d.high)} pt, paired on the same images — "
            + ("a real change." if sure else "not distinguishable from no change on these images."))


def chance_level(acc1: float, num_classes: int) -> bool:
    """A top-1 no better than about twice chance: the model is broken, not slightly worse."""
    return acc1 <= 200.0 / max(num_classes, 1)


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


def start_accuracy(model_id: tuple, label: str, model, loaded: LoadedModel, data_path: str, limit: int | None,
                   device: str) -> Job:
    """Top-1/top-5 of ``model`` (``loaded``'s, or a decoded re-encode of it) on ``data_path``
    in the background (cached by the key). A missing or malformed data folder raises
    DatasetError here, in the page."""
    key = accuracy_key(model_id, data_path, limit, device)
    old = runner().get(key)
    if old is not None and (old.running or old.ok):  # what submit returns; its folder was checked then
        return old
    labels = loaded.label_map or api.dataset_label_map(data_path, loaded.num_classes)
    api.list_images(api.split_dir(data_path, "val"), labels)  # fails here, not later

    def work(job: Job) -> dict:
        job.report(0, 1, "reading images")
        data = split(data_path, loaded, limit,
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


def lab_accuracy(path: str, settings: EncodeSettings) -> tuple[Job | None, Job | None]:
    """The Codec lab's accuracy on the embedded sample: (the checkpoint as loaded, the
    decoded re-encode at ``settings``), started in the background once the encode is done."""
    sample = sample_dir()
    if not (sample / "val").is_dir():
        return None, None
    enc = encode_job(path, settings)
    if enc is None or not enc.ok:
        return None, None
    loaded = load(path)
    try:
        labels = loaded.label_map or api.dataset_label_map(sample, loaded.num_classes)
    except api.DatasetError:
        return None, None
    if not set(api.class_folders(sample / "val")) <= labels.keys():  # a model of another dataset than ImageNette's
        return None, None
    d = digest(path)
    src = start_accuracy(("loaded", d), describe(path), loaded.model, loaded, str(sample), None, "auto")
    dec = start_accuracy(decoded_id(d, settings), f"{describe(path)} at {forms.label(settings)}",
                         enc.result()["result"].model, loaded, str(sample), None, "auto")
    return src, dec


def model_summary(path: str, job: Job | None = None, entry: runs.Entry | None = None) -> dict:
    """What the Compare page shows of one model — the checkpoint or bundle at ``path``, or
    the lab's encode ``job`` of it: per-layer {bytes, non-zero, values}, total bytes, ratio,
    the model and its id for accuracy jobs, and the accuracies known (stored in results.json,
    at training, measured here on the embedded sample)."""
    loaded = load(path)
    d = digest(path)
    if job is not None:
        res = job.result()["result"]
        layers = {x["name"]: {"bytes": x["bytes"], "non-zero": x["nonzero"], "values": None}
                  for x in res.layers if x["kind"] == "weight"}
        out = {"layers": layers, "total": res.total_bytes, "ratio": res.ratio, "model": res.model,
               "model_id": decoded_id(d, job.meta["settings"]), "loaded": loaded, "acc": {},
               "settings": job.meta["settings"], "key": job.key}
    else:
        b = loaded.bundle
        out = {"layers": layer_summary(runs.stamp(path), loaded), "total": b.total_bytes if b else None,
               "ratio": b.ratio if b else None, "model": loaded.model, "model_id": ("loaded", d), "loaded": loaded,
               "acc": {}, "settings": loaded.settings, "key": runs.stamp(path)}
        if entry is not None and entry.decoded:
            out["acc"]["stored (results.json)"] = entry.decoded.get("acc1")
        if loaded.metrics.get("acc1") is not None:
            out["acc"]["at training"] = loaded.metrics["acc1"]
    acc = accuracy_job(out["model_id"], str(sample_dir()), None, "auto")
    if acc is not None and acc.ok:
        out["acc"]["sample (measured here)"] = acc.result()["acc1"]
    out["acc_job"] = acc
    return out
