"""The Codec lab's encodes: job keys (the checkpoint's content hash and the frozen
``EncodeSettings``), the quick-preview policy, starting and finding encodes (they run in the
lab's worker process; the settings cross to it once, as their dict), and the bytes per frame
the Frames page shows."""
from __future__ import annotations

import os
import time
from dataclasses import replace

import streamlit as st

from app import forms
from app.background import lab_worker, runner
from app.jobs import Job
from app.keys import LAB_ENCODES
from app.models import describe, digest, load
from app.worker import Worker
from ctnet import api
from ctnet.api import EncodeSettings, LoadedModel


# seconds per encode at each preset before one was timed here (CTNet-18, 2 cores)
ENCODE_PRIOR = {"ultrafast": 6.0, "superfast": 6.0, "veryfast": 6.5, "faster": 7.0, "fast": 7.0, "medium": 8.0,
                "slow": 15.0, "slower": 40.0, "veryslow": 80.0, "placebo": 160.0}


def encode_key(path: str, settings: EncodeSettings) -> tuple:
    return ("encode", digest(path), settings)


def decoded_id(d: str, settings: EncodeSettings) -> tuple:
    """Model id (for accuracy jobs) of the model that an encode of the checkpoint with content
    hash ``d`` at ``settings`` decodes to. A lossless encode decodes to the same levels at
    every preset, so the preset is not part of it: its preview and the exact encode share one
    accuracy run."""
    return ("encode", d, replace(settings, preset="*") if settings.crf == 0 else settings)


# The lab's quick preview: a lossless encode of a large model at a slower x26x preset is coded
# at ultrafast first (the same levels, so the same decoded model and accuracy; a little more
# bytes) and shown until the exact encode is done. On 2 cores the densest demo checkpoint
# (2.9 MB) takes ~3.3 s to code at medium, ~2 s at ultrafast; models under PREVIEW_ABOVE
# bytes code in 1–2.5 s, where a preview would only delay the exact result.
PREVIEW_PRESET = "ultrafast"
PREVIEW_CODECS = ("hevc", "h264")
PREVIEW_ABOVE = 1_500_000  # bytes of the model's bundle (or training's estimate of them)


def preview_settings(settings: EncodeSettings, loaded: LoadedModel | None = None) -> EncodeSettings | None:
    """The settings of the quick preview of an encode at ``settings`` of the model
    ``loaded``; None when it has none."""
    if settings.codec not in PREVIEW_CODECS or settings.crf != 0 or settings.preset == PREVIEW_PRESET:
        return None
    if loaded is not None:
        size = loaded.bundle.total_bytes if loaded.bundle is not None else loaded.metrics.get("est_bytes_export")
        if isinstance(size, (int, float)) and size <= PREVIEW_ABOVE:
            return None
    return replace(settings, preset=PREVIEW_PRESET)


def preview_job(path: str | None, settings: EncodeSettings) -> Job | None:
    """The quick preview of the encode of ``path`` at ``settings`` (running or finished)."""
    preview = preview_settings(settings)  # whether or not the model is large: a preview made earlier is shown
    return encode_job(path, preview) if preview is not None else None


def encode_job(path: str | None, settings: EncodeSettings) -> Job | None:
    """The encode of ``path`` at ``settings``, running or finished, whoever started it."""
    if path is None or not os.path.exists(path):
        return None
    return runner().get(encode_key(path, settings))


def _encode_work(source: str, settings: EncodeSettings, worker: Worker):
    def work(job: Job) -> dict:
        """Lane thread: the encode runs in the lab's worker process (the settings cross as
        their dict), its result is rebuilt here. Touches no Streamlit state."""
        out = worker.run("encode", {"path": source, "settings": settings.to_dict()}, report=job.report,
                         cancel=job.cancel_event)
        job.report(1, 1, "receiving the result")
        result = api.encode_result(out.pop("report"))
        result.model.requires_grad_(False)
        return {"source": source, "settings": settings, "result": result, **out, "finished": time.time()}
    return work


def prepare_encoder(source: str) -> None:
    """Have the lab's worker load ``source`` (and warm its encoder) while the user looks at the
    settings, so Encode starts coding at once. Once per checkpoint content; queued like any
    job, so an encode asked for meanwhile simply runs after it."""
    worker = lab_worker()
    runner().submit(("prepare", digest(source)), "prepare", f"Preparing the encoder for {describe(source)}",
                    lambda job: worker.run("prepare", {"path": source}, report=job.report, cancel=job.cancel_event))


def encode_estimate(settings: EncodeSettings) -> float | None:
    return runner().estimate(f"encode:{settings.preset}", 1, ENCODE_PRIOR.get(settings.preset))


def start_encode(source: str, settings: EncodeSettings) -> Job:
    """The encode of ``source`` at ``settings``: the existing job (running or done), else a
    new one (queued behind any other). A bad combination raises BundleError, in the page."""
    forms.valid(settings)
    preview = preview_settings(settings, load(source))  # a checkpoint that does not load fails here, in the page
    if preview is not None and encode_job(source, settings) is None:
        _submit_encode(source, preview, f"Preview of {describe(source)} at {PREVIEW_PRESET}")
    job = _submit_encode(source, settings, f"Encoding {describe(source)} at {settings.preset}")
    encodes = [k for k in st.session_state[LAB_ENCODES] if k != job.key]
    st.session_state[LAB_ENCODES] = encodes + [job.key]
    return job


def _submit_encode(source: str, settings: EncodeSettings, label: str) -> Job:
    return runner().submit(encode_key(source, settings), "encode", label, _encode_work(source, settings, lab_worker()),
                           units=1, prior=ENCODE_PRIOR.get(settings.preset), rate_key=f"encode:{settings.preset}",
                           meta={"source": source, "settings": settings})


def encodes_of(path: str | None) -> list[Job]:
    """Finished encodes of ``path`` (by content) the server holds, oldest first: this session's
    and any other tab's."""
    if path is None or not os.path.exists(path):
        return []
    d = digest(path)
    return runner().jobs("encode", where=lambda j: j.ok and j.key[1] == d)


def frame_bytes(path: str, loaded: LoadedModel, settings: EncodeSettings) -> tuple[list | None, str | None]:
    """Bytes of each plan frame (None for frames not coded) and where they come from: this
    session's encode of this checkpoint at these settings when there is one, else the
    bundle's own manifest when the bundle was made with these settings; (None, None) else."""
    job = encode_job(path, settings)
    if job is not None and job.ok:
        info = job.result()["result"].frame_info
        return [f["bytes"] if f["coded"] else None for f in info], \
            f"the Codec lab's encode ({forms.label(settings)})"
    b = loaded.bundle
    if b is not None and b.frame_bytes is not None and loaded.settings == settings:
        return [x or None for x in b.frame_bytes], "this bundle's manifest"
    return None, None
