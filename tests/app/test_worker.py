"""The Codec lab's worker process (app/worker.py): the same encode as the library, progress
per coded frame, an immediate cancel, one-line errors, and a fresh process after one dies."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from app.jobs import Cancelled
from app.worker import Worker, WorkerError
from ctnet.codec.bundle import BundleError, EncodeResult
from demo_fixture import REPO

BUNDLE = str(REPO / "tests" / "assets" / "v2" / "lam1e-6-smallest")
FAST = {"preset": "ultrafast"}


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    w.start()
    yield w
    w.stop()


def run(worker, settings=FAST, report=None, cancel=None):
    return worker.run("encode", {"path": BUNDLE, "settings": settings}, report=report or (lambda *a: None),
                      cancel=cancel or threading.Event())


def test_the_worker_encodes_what_the_library_encodes_and_reports_each_frame(worker):
    from ctnet import api
    seen = []
    out = run(worker, report=lambda done, total, text: seen.append((done, total, text)))
    here = api.encode(api.load_any(BUNDLE), api.EncodeSettings(**FAST))
    assert "model" not in out["report"]  # rebuilt by the caller from its tensors
    result = EncodeResult.from_report(out["report"])
    assert result.digest == here.digest and result.files == here.files
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), here.model.state_dict().values()))
    assert set(out["errors"]) == {row["name"] for row in here.layers if row["kind"] == "weight"}
    frames = here.streams[0]["frames"]
    coded = [d for d, t, text in seen if t == frames and text.endswith("frames coded")]
    assert coded == list(range(1, frames + 1))
    assert out["seconds"] > 0


def test_a_model_laid_out_on_selection_encodes_as_the_library_does_at_any_grid(worker):
    """``prepare`` lays the model out for the lab's settings; the encodes after it (another
    preset: the same layout; another grid: a new one) give the library's bundles."""
    from ctnet import api
    loaded = api.load_any(BUNDLE)
    out = worker.run("prepare", {"path": BUNDLE, "settings": api.EncodeSettings(**FAST).to_dict()},
                     report=lambda *a: None, cancel=threading.Event())
    assert out["seconds"] > 0
    for settings in (FAST, {"preset": "superfast"}, {"preset": "ultrafast", "bit_depth": 10}):
        got = EncodeResult.from_report(run(worker, settings)["report"])
        here = api.encode(loaded, api.EncodeSettings(**settings))
        assert got.files == here.files and got.layers == here.layers, settings
        assert all(torch.equal(a, b) for a, b in zip(got.model.state_dict().values(), here.model.state_dict().values()))


def test_cancel_ends_the_encode_at_once_and_the_next_job_gets_a_new_worker(worker):
    cancel = threading.Event()
    first_pid = worker.pid

    def report(done, total, text):
        if text.endswith("frames coded"):
            cancel.set()  # as soon as the first frame is coded

    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        run(worker, {"preset": "medium"}, report=report, cancel=cancel)
    assert time.perf_counter() - t0 < 30
    assert worker.pid is None  # ended, not left coding in the background
    out = run(worker)
    assert out["report"]["files"] and worker.pid not in (None, first_pid)


def test_a_task_error_is_one_line_and_the_worker_stays(worker):
    run(worker)
    pid = worker.pid
    with pytest.raises(WorkerError, match=r"^CRF must be an integer in 0\.\.51 for hevc"):
        run(worker, {"crf": 99})
    with pytest.raises(WorkerError, match="no-such-bundle"):
        worker.run("encode", {"path": "/no-such-bundle", "settings": FAST}, report=lambda *a: None,
                   cancel=threading.Event())
    assert worker.pid == pid


def test_a_worker_killed_mid_encode_is_reported_and_replaced(worker):
    run(worker)

    def report(done, total, text):
        if text.endswith("frames coded") and worker.pid is not None:
            os.kill(worker.pid, signal.SIGKILL)  # e.g. the kernel's out-of-memory killer

    with pytest.raises(WorkerError, match="worker process stopped"):
        run(worker, {"preset": "medium"}, report=report)
    assert run(worker)["report"]["files"]


def test_a_report_rebuilds_only_the_bundle_it_describes(worker):
    report = run(worker)["report"]
    other = run(worker, {"preset": "ultrafast", "frame": 128})["report"]
    with pytest.raises(BundleError, match="another bundle"):
        EncodeResult.from_report({**report, "files": other["files"]})
    with pytest.raises(BundleError, match="not an encode report"):
        EncodeResult.from_report({k: v for k, v in report.items() if k != "frames"})
