"""One runner for every background task of the app (encodes, accuracy runs, RD sweeps).

Jobs live in a server-wide store (``runner()``, an ``st.cache_resource``) keyed by what
decides their result — e.g. ("encode", checkpoint content hash, settings) — so a reload, a
second tab or another page re-attaches to a running or finished job instead of starting it
again or losing it. Each job reports progress (``Job.report``), has an estimate before it
starts (from the last jobs of its kind), and can be cancelled: a queued job never starts,
a running one stops at its next progress report (an encode, which runs in the lab's worker
process, app/worker.py, stops at once: the process is ended). Finished jobs are kept per kind in LRU
order, ``KEEP`` of each (an encode holds a decoded model: ~45 MB for CTNet-18).

Nothing here touches Streamlit state from a worker thread.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

KEEP = {"encode": 6, "accuracy": 256, "sweep": 8, "prepare": 16}
# lanes: one worker each, so two encodes never fight over the cores; an encode never queues
# behind accuracy runs or sweeps (the user is waiting for it), and those pause at their next
# progress report while an encode runs (``Job.report``), so it has the cores to itself
LANES = {"encode": "encode", "prepare": "encode", "accuracy": "main", "sweep": "long"}
YIELDS = ("accuracy", "sweep")  # kinds that pause while an encode runs


def error_text(exc: BaseException) -> str:
    """An exception as the one line (or short paragraph) the app shows."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if len(text) > 600 else text


class Cancelled(Exception):
    """Raised inside a job when its cancel was asked for."""


@dataclass
class Job:
    key: tuple
    kind: str
    label: str
    units: float = 1.0  # what the estimate scales with (frames, images, points)
    estimate: float | None = None  # seconds, from earlier jobs of this kind
    future: Future | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: list = field(default_factory=lambda: [0, 0, ""])  # done, total, what runs now
    meta: dict = field(default_factory=dict)  # what the pages need to describe the job
    no_encode: threading.Event | None = None  # set while no encode runs (for kinds in YIELDS)

    # --- called by the worker ---
    def report(self, done: float, total: float, text: str = "") -> None:
        self.progress[:] = [done, total, text]
        if self.cancel_event.is_set():
            raise Cancelled(f"{self.label}: cancelled")
        if self.no_encode is not None and not self.no_encode.is_set():
            self.progress[2] = f"{text} (paused while an encode runs)".strip()
            while not self.no_encode.wait(0.2):
                if self.cancel_event.is_set():
                    raise Cancelled(f"{self.label}: cancelled")
            self.progress[2] = text

    # --- called by pages ---
    @property
    def running(self) -> bool:
        return self.future is not None and not self.future.done()

    @property
    def queued(self) -> bool:
        return self.running and self.started is None

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    @property
    def cancelled(self) -> bool:
        return self.done and (self.future.cancelled() or isinstance(self.future.exception(), Cancelled))

    @property
    def ok(self) -> bool:
        return self.done and not self.future.cancelled() and self.future.exception() is None

    def result(self):
        return self.future.result() if self.ok else None

    def error(self) -> str | None:
        if not self.done or self.ok:
            return None
        if self.cancelled:
            return "cancelled"
        exc = self.future.exception()
        assert exc is not None  # done, not ok, not cancelled
        return error_text(exc)

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def fraction(self) -> tuple[float, str]:
        """(fraction done, what it says) for a progress bar."""
        if self.queued:
            return 0.0, f"{self.label}: waiting for the job before it"
        done, total, text = self.progress
        el = self.elapsed()
        if total:
            f = min(done / total, 1.0)
            return f, f"{self.label}: {text or f'{done:g}/{total:g}'} ({el:.0f} s)"
        if self.estimate:
            return min(el / self.estimate, 0.99), f"{self.label}: {el:.0f} s of ≈{self.estimate:.0f} s"
        return 0.0, f"{self.label}: {el:.0f} s (no estimate yet)"


class Runner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[tuple, Job] = OrderedDict()
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        self._rates: dict[str, float] = {}  # kind → seconds per unit of the last job
        self._encodes = 0  # encodes running now
        self._no_encode = threading.Event()
        self._no_encode.set()

    def _lane(self, name: str) -> ThreadPoolExecutor:
        if name not in self._lanes:
            self._lanes[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ctnet-{name}")
        return self._lanes[name]

    def estimate(self, kind: str, units: float, prior: float | None = None) -> float | None:
        """Seconds a job of ``kind`` over ``units`` should take: the last one's rate, else ``prior``
        (seconds per unit)."""
        rate = self._rates.get(kind, prior)
        return rate * units if rate else None

    def get(self, key: tuple) -> Job | None:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                self._jobs.move_to_end(key)
            return job

    def jobs(self, kind: str | None = None, where: Callable[[Job], bool] | None = None) -> list[Job]:
        """Jobs (oldest first) of ``kind`` that satisfy ``where``."""
        with self._lock:
            out = [j for j in self._jobs.values() if kind is None or j.kind == kind]
        return [j for j in sorted(out, key=lambda j: j.submitted) if where is None or where(j)]

    def submit(self, key: tuple, kind: str, label: str, fn: Callable[["Job"], object], *, units: float = 1.0,
               prior: float | None = None, rate_key: str | None = None, meta: dict | None = None) -> Job:
        """The job of ``key``: the existing one when it runs or succeeded, else a new one
        running ``fn(job)`` in its kind's lane. Its estimate: ``units`` × the seconds per unit
        of the last job of ``rate_key`` (default: the kind), else × ``prior``."""
        with self._lock:
            old = self._jobs.get(key)
            if old is not None and (old.running or old.ok):
                self._jobs.move_to_end(key)
                return old
            rate_key = rate_key or kind
            job = Job(key, kind, label, units=units, estimate=self.estimate(rate_key, units, prior),
                      meta=dict(meta or {}), no_encode=self._no_encode if kind in YIELDS else None)
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            self._trim(kind)

        def work():
            job.started = time.time()
            if kind == "encode":
                self._encoding(+1)
            try:
                if job.cancel_event.is_set():
                    raise Cancelled(f"{label}: cancelled")
                out = fn(job)
                self._rates[rate_key] = (time.time() - job.started) / max(units, 1e-9)
                return out
            finally:
                job.finished = time.time()
                if kind == "encode":
                    self._encoding(-1)

        job.future = self._lane(LANES.get(kind, "main")).submit(work)
        return job

    def _encoding(self, step: int) -> None:
        with self._lock:
            self._encodes += step
            if self._encodes:
                self._no_encode.clear()
            else:
                self._no_encode.set()

    def cancel(self, key: tuple) -> bool:
        job = self.get(key)
        if job is None or job.done:
            return False
        job.cancel_event.set()
        if job.future is not None and job.future.cancel():
            job.finished = time.time()
        return True

    def _trim(self, kind: str) -> None:
        keep = KEEP.get(kind, 16)
        done = [k for k, j in self._jobs.items() if j.kind == kind and not j.running]
        for k in done[: max(0, len(done) - keep)]:
            del self._jobs[k]

    def forget(self, key: tuple) -> None:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.running:
                del self._jobs[key]


__all__ = ["Cancelled", "Job", "KEEP", "Runner", "error_text"]
