"""app.state's background encode: the worker touches no Streamlit state, reports progress
when ctnet.api.encode takes a callback, and the progress bar says what it is based on."""
from __future__ import annotations

import time
from concurrent.futures import Future

import torch

from app import state


def test_encode_job_passes_a_progress_callback_when_the_api_has_one(monkeypatch):
    seen = []

    def encode_with_progress(model, meta, settings=None, *, progress=None, **overrides):
        for done in (4, 10):
            progress(done, 10)
            seen.append(done)
        return {"streams": [{"frames": 10}], "model": model, "layers": [], "total_bytes": 1}

    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    monkeypatch.setattr(state.api, "encode", encode_with_progress)
    done = [0]
    out = state._encode_job("src", model, {}, dict(state.LAB_DEFAULTS, preset="veryslow"), done)
    assert seen == [4, 10] and done == [10]
    assert out["source"] == "src" and out["errors"]["0.weight"]["max_abs"] == 0.0
    assert state._timings()["veryslow"] > 0


def test_encode_job_estimates_from_the_last_encode_until_frames_are_reported():
    job = state.EncodeJob("src", dict(state.LAB_DEFAULTS, preset="placebo"), Future(), frames=100)
    state._timings().pop("placebo", None)
    fraction, text = job.fraction()
    assert fraction == 0.0 and "no estimate yet" in text
    state._timings()["placebo"] = 0.01  # 1 s for 100 frames
    job.started = time.perf_counter() - 0.5
    fraction, text = job.fraction()
    assert 0.4 < fraction < 0.9 and "≈1 s" in text
    job.done_frames[0] = 25
    assert job.fraction() == (0.25, "25/100 frames coded")
