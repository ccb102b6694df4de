"""Rate–distortion sweeps (pages/rate_distortion.py): the points measured so far (the demo's
shipped sweeps and ``ctnet rd``'s cache) and a sweep of the missing ones in the background."""
from __future__ import annotations

import streamlit as st

from app.accuracy import data_id, dataset_stamp, split
from app.background import runner
from app.jobs import Job
from app.keys import demo_dir
from app.models import digest, load
from ctnet import api


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
