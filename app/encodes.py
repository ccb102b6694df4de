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
from app.keys import LAB_ENCODES, demo_dir
from app.models import describe, digest, load
from app.worker import Worker
from ctnet import api
from ctnet.api import EncodeSettings, LoadedModel


# seconds per MB of coded model at each preset before one was timed here (a 2.9 MB CTNet-18, 2 cores)
ENCODE_PRIOR = {"ultrafast": 2.0, "superfast": 2.0, "veryfast": 2.2, "faster": 2.4, "fast": 2.4, "medium": 2.8,
                "slow": 5.0, "slower": 14.0, "veryslow": 28.0, "placebo": 55.0}
MIN_UNITS = 0.3  # MB: below it an encode's time is mostly its fixed cost (load, tables, decode)


def encode_units(loaded: LoadedModel) -> float:
    """What an encode's time scales with: the model's coded size in MB — its bundle's bytes,
    else training's estimate of them, else its non-zero weights at ~6 bits each (a dense
    uploaded model codes ~10× slower than a sparse CTNet)."""
    size = loaded.bundle.total_bytes if loaded.bundle is not None else loaded.metrics.get("est_bytes_export")
    if not isinstance(size, (int, float)) or size <= 0:
        size = 0.75 * sum(int(p.count_nonzero()) for p in loaded.model.parameters() if p.dim() > 1)
    return max(float(size) / 1e6, MIN_UNITS)


def encode_key(path: str, settings: EncodeSettings, preview: bool = False) -> tuple:
    """The job key of the encode of ``path`` at ``settings``; ``preview``: of the quick preview
    coded at those settings (x265's short GOP: other bytes than an encode at them)."""
    return ("encode", digest(path), settings) + (("preview",) if preview else ())


def decoded_id(d: str, settings: EncodeSettings) -> tuple:
    """Model id (for accuracy jobs) of the model that an encode of the checkpoint with content
    hash ``d`` at ``settings`` decodes to. A lossless encode decodes to the same levels at
    every preset, so the preset is not part of it: its preview and the exact encode share one
    accuracy run."""
    return ("encode", d, replace(settings, preset="*") if settings.crf == 0 else settings)


# The lab's quick preview: a lossless encode at a slower x26x preset that is predicted to take
# longer than PREVIEW_AFTER_S is coded at ultrafast first — HEVC with x265's own short GOP
# (``api.encode(quick=True)``: 2.5–2.9× faster than ultrafast with SPEC §4's 16 B-frames and
# references) — the same levels, so the same decoded model and accuracy, 6–13 % more bytes, and
# shown until the exact encode is done. The
# prediction is the lab's own estimate (this server's last seconds per MB at that preset, else
# ENCODE_PRIOR, × the model's coded size: its bundle's bytes, training's estimate, else its
# non-zero weights), so a dense upload gets a preview and a sparse one does not, and a loaded
# server previews more. Click → first result is that encode plus ~1.5 s (the worker's report,
# the server's rebuild, the page's rerun; docs/app.md); the preview delays the exact result by its
# own time, so an encode predicted to be quick goes first.
PREVIEW_PRESET = "ultrafast"
PREVIEW_CODECS = ("hevc", "h264")
PREVIEW_AFTER_S = 2.5  # predicted seconds of the exact encode above which its preview is coded first


def wants_preview(predicted_s: float | None) -> bool:
    """Whether an encode predicted to take ``predicted_s`` seconds (None: no estimate) is
    previewed first."""
    return predicted_s is None or predicted_s > PREVIEW_AFTER_S


def preview_settings(settings: EncodeSettings, loaded: LoadedModel | None = None) -> EncodeSettings | None:
    """The settings of the quick preview of an encode at ``settings`` of the model
    ``loaded`` (without it: of any model); None when it has none."""
    if settings.codec not in PREVIEW_CODECS or settings.crf != 0 or settings.preset == PREVIEW_PRESET:
        return None
    if loaded is not None and not wants_preview(encode_estimate(settings, loaded)):
        return None
    return replace(settings, preset=PREVIEW_PRESET)


def preview_job(path: str | None, settings: EncodeSettings) -> Job | None:
    """The quick preview of the encode of ``path`` at ``settings`` (running or finished)."""
    preview = preview_settings(settings)  # whether or not the model is large: a preview made earlier is shown
    return encode_job(path, preview, preview=True) if preview is not None else None


def encode_job(path: str | None, settings: EncodeSettings, preview: bool = False) -> Job | None:
    """The encode of ``path`` at ``settings`` (``preview``: the quick preview coded at them),
    running or finished, whoever started it."""
    if path is None or not os.path.exists(path):
        return None
    return runner().get(encode_key(path, settings, preview))


def _encode_work(source: str, settings: EncodeSettings, worker: Worker, quick: bool = False):
    def work(job: Job) -> dict:
        """Lane thread: the encode runs in the lab's worker process (the settings cross as
        their dict), its result is rebuilt here. Touches no Streamlit state."""
        out = worker.run("encode", {"path": source, "settings": settings.to_dict(), "quick": quick},
                         report=job.report, cancel=job.cancel_event)
        job.report(1, 1, "receiving the result")
        result = api.encode_result(out.pop("report"))
        result.model.requires_grad_(False)
        return {"source": source, "settings": settings, "result": result, **out, "finished": time.time()}
    return work


def prepare_encoder(source: str, settings: EncodeSettings | None) -> None:
    """Have the lab's worker load ``source`` and lay it out for ``settings`` (the widgets' grid
    and frames, when they are valid: what every codec and preset codes) while the user looks
    at the settings, so Encode starts coding at once. Once per checkpoint content and grid;
    queued like any job, so an encode asked for meanwhile simply runs after it."""
    worker = lab_worker()
    args = {"path": source, "settings": settings.to_dict() if settings is not None else None}
    grid = api.layout_key(settings) if settings is not None else None
    runner().submit(("prepare", digest(source), grid), "prepare", f"Preparing the encoder for {describe(source)}",
                    lambda job: worker.run("prepare", args, report=job.report, cancel=job.cancel_event))


def _rate_key(settings: EncodeSettings, preview: bool = False) -> str:
    return f"encode:{settings.codec}:{settings.preset}:{'lossless' if settings.crf == 0 else 'lossy'}" + \
        (":preview" if preview else "")


def encode_estimate(settings: EncodeSettings, loaded: LoadedModel) -> float | None:
    """Seconds an encode of ``loaded`` at ``settings`` should take: this server's last encode at
    the same codec, preset and rate mode per MB of model, times this model's size."""
    return runner().estimate(_rate_key(settings), encode_units(loaded), ENCODE_PRIOR.get(settings.preset))


def start_encode(source: str, settings: EncodeSettings) -> Job:
    """The encode of ``source`` at ``settings``: the existing job (running or done), else a
    new one (queued behind any other). A bad combination raises BundleError, in the page."""
    forms.valid(settings)
    loaded = load(source)  # a checkpoint that does not load fails here, in the page
    preview = preview_settings(settings, loaded)
    if preview is not None and encode_job(source, settings) is None:
        _submit_encode(source, loaded, preview, f"Preview of {describe(source)} at {PREVIEW_PRESET}", of=settings)
    job = _submit_encode(source, loaded, settings, f"Encoding {describe(source)} at {settings.preset}")
    encodes = [k for k in st.session_state[LAB_ENCODES] if k != job.key]
    st.session_state[LAB_ENCODES] = encodes + [job.key]
    return job


def _submit_encode(source: str, loaded: LoadedModel, settings: EncodeSettings, label: str,
                   of: EncodeSettings | None = None) -> Job:
    """The encode of ``source`` at ``settings``; ``of``: it is the quick preview of the encode
    at those settings (coded with x265's short GOP, ``api.encode(quick=True)``)."""
    quick = of is not None
    return runner().submit(encode_key(source, settings, quick), "encode", label,
                           _encode_work(source, settings, lab_worker(), quick),
                           units=encode_units(loaded), prior=ENCODE_PRIOR.get(settings.preset),
                           rate_key=_rate_key(settings, quick), meta={"source": source, "settings": settings,
                                                                      "preview_of": of})


def drop_preview(path: str, settings: EncodeSettings) -> None:
    """The exact encode is in: its preview's slot goes back to the server's other encodes."""
    preview = preview_settings(settings)
    if preview is not None:
        runner().forget(encode_key(path, preview, preview=True))


HISTORY_KEEP = 500  # encode summaries the server keeps (a few hundred bytes each)


@st.cache_resource
def history() -> dict[tuple, dict]:
    """job key → :func:`encode_summary` of every finished encode on this server, oldest first:
    what the lab lists after the job store has dropped an encode's decoded model (it keeps
    ``jobs.KEEP["encode"]``), and after a reload."""
    return {}


def remember(job: Job, fidelity) -> dict:
    """Keep ``job``'s summary (once); the oldest go past HISTORY_KEEP."""
    store = history()
    if job.key not in store:
        store[job.key] = encode_summary(job, fidelity)
        while len(store) > HISTORY_KEEP:
            store.pop(next(iter(store)))
    return store[job.key]


def encode_summary(job: Job, fidelity) -> dict:
    """What the server keeps of a finished encode once it drops the decoded model: a few
    numbers (the lab's list of this checkpoint's encodes)."""
    lab = job.result()
    res, s = lab["result"], lab["settings"]
    return {"key": job.key, "digest": job.key[1], "settings": s, "label": forms.label(s), "bytes": res.total_bytes,
            "ratio": res.ratio, "nonzero": res.nonzero, "seconds": lab["seconds"], "finished": job.finished or 0.0,
            "exact": fidelity.exact, "lossless": fidelity.lossless, "max_error": fidelity.max_error, "top1": None,
            "delta": None}


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


# --- per-layer grids (the Codec lab) -----------------------------------------------------------------

SENSITIVITY_DIR = "sensitivity"  # beside the demo's runs: the sensitivity profiles of its bundles (read-only)


def sensitivity_profile(d: str) -> api.SensitivityProfile | None:
    """The sensitivity profile of the model with content hash ``d``: the demo's, else this
    machine's (``ctnet encode --bit-depth auto`` caches it); None when none was measured.
    Read on every call (a small file), so a profile measured meanwhile shows up."""
    return api.find_profile(d, folders=(demo_dir() / SENSITIVITY_DIR,))


def layer_grid_maps(path: str, loaded: LoadedModel, budget: float) -> tuple[dict[str, dict[str, int]], str | None]:
    """The per-layer grids the lab offers for ``path``: the allocation of its sensitivity
    profile at ``budget``, and a format-v2 bundle's own per-layer grid when it has one; and why
    the profile cannot be used, when it cannot (a damaged or outdated file: the page says so)."""
    maps, problem = {}, None
    try:
        prof = sensitivity_profile(digest(path))
        if prof is not None:
            maps[forms.AUTO] = api.allocate_layer_bits(prof, budget)
    except api.AllocationError as exc:
        problem = str(exc)
    if loaded.settings is not None and loaded.settings.layer_bits:
        maps[forms.OWN] = dict(loaded.settings.layer_bits)
    return maps, problem
