"""The server's one job runner (``app.jobs``: every encode, accuracy run and sweep, keyed by
what decides its result, so a reload or a second tab finds a job again) and the Codec lab's
worker process, both shared by every session."""
from __future__ import annotations

import streamlit as st

from app.jobs import Job, Runner
from app.worker import Worker


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


def running_jobs(kind: str | None = None) -> list[Job]:
    return runner().jobs(kind, where=lambda j: j.running)


def cancel(job: Job) -> None:
    runner().cancel(job.key)
