"""Rate–distortion sweeps (pages/rate_distortion.py): the points measured so far (the demo's
shipped sweeps and ``ctnet rd``'s cache) and a sweep of the missing ones in the background."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.accuracy import data_id, dataset_stamp, split
from app.background import runner
from app.jobs import Job
from app.keys import demo_dir
from app.models import digest, load
from ctnet import api, runs
from ctnet.api import RDError


RD_DIR = "rd"  # beside the demo's runs: cache files of the sweeps shipped with it (read-only)


@st.cache_data(max_entries=8, show_spinner=False)
def data_key(path: str, stamp: tuple) -> str:
    return api.data_id(path)


def rd_points(path: str, data: str, limit: int | None) -> list[dict]:
    """Every measured point of ``path`` on ``data``: the demo's shipped sweeps, then this
    machine's cache (``ctnet rd``'s, shared with the CLI), which wins where both have a point."""
    d, dkey = digest(path), data_key(data, dataset_stamp(data))
    found: dict[str, dict] = {}
    for cache in (demo_dir() / RD_DIR / f"{d[:32]}.json", api.default_cache(d)):
        found.update(api.matching_points(cache, d, dkey, limit))
    return list(found.values())


@st.cache_data(max_entries=8, show_spinner=False)
def _coder_points(cache: str, stamp: tuple, sha256: str, images: int) -> tuple[list[dict], str | None]:
    try:
        return api.full_split_points(cache, sha256, images), None
    except (RDError, OSError) as exc:
        return [], str(exc)


def coder_points(baseline: runs.Baseline | None) -> tuple[list[dict], str | None]:
    """The baseline's own weights stored every way ``ctnet rd`` measured them — NNCodec, INT8/INT4 +
    zstd, bundles — from the rd cache its demo.json names: only points on the whole val split it
    was measured on (``images``, no subset), the split the CTNet points' decoded top-1 is on. ([],
    None) without one; ([], reason) when the file cannot be used."""
    if baseline is None or not baseline.rd or not baseline.sha256 or not baseline.images:
        return [], None
    p = Path(baseline.rd)
    if not p.is_file():
        return [], f"{p.name}: the rd cache named for {baseline.name} is missing"
    return _coder_points(str(p), (p.stat().st_mtime_ns, p.stat().st_size), baseline.sha256, baseline.images)


def sweep_key(source: str, data: str, limit: int | None) -> tuple:
    return ("sweep", digest(source), data_id(data, limit, ""))


def sweep_job(source: str, data: str, limit: int | None) -> Job | None:
    return runner().get(sweep_key(source, data, limit))


def start_sweep(source: str, data: str, limit: int | None, todo: list, device: str = "auto") -> Job:
    """Measure ``todo`` (``api.RDJob``, those not measured yet) in the background."""
    loaded = load(source)
    # the Accuracy page's decoded images; a missing or malformed folder fails here, in the page
    images = split(data, loaded, limit)
    key = sweep_key(source, data, limit)
    old = runner().get(key)
    if old is not None and old.ok:
        runner().forget(key)  # a finished sweep: measure what is missing now

    def work(job: Job):
        def progress(done, total, point_job, point):
            job.report(done, total, f"{point_job.label()}")
        result = api.sweep(source, data, todo, limit=limit, loaded=loaded, progress=progress, device=device,
                          split=images)
        return {"errors": result.errors, "nncodec": result.nncodec, "points": len(result.points)}
    return runner().submit(key, "sweep", f"Measuring {len(todo)} points", work, units=len(todo), prior=30.0,
                           meta={"source": source})
