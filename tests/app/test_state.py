"""app.jobs (the one runner of background work) and app.forms (the Codec lab's form built
from EncodeSettings): re-attaching to jobs by key, estimates, cancel, the LRU bound, the
settings' URL round trip."""
from __future__ import annotations

import threading
import time
from dataclasses import fields, replace

import pytest

from app import forms, jobs
from ctnet.codec.manifest import EncodeSettings


def wait(job: jobs.Job, seconds: float = 10) -> jobs.Job:
    deadline = time.monotonic() + seconds
    while not job.done:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return job


def test_a_key_runs_once_and_reattaches():
    r = jobs.Runner()
    calls = []

    def work(job):
        calls.append(1)
        job.report(1, 2, "half")
        return 42
    a = r.submit(("encode", "x"), "encode", "A", work)
    b = r.submit(("encode", "x"), "encode", "A again", work)  # a reload or a second tab
    assert a is b
    assert wait(a).result() == 42 and calls == [1]
    assert r.submit(("encode", "x"), "encode", "A", work) is a  # finished: the same result, not run again
    assert r.get(("encode", "x")) is a and r.jobs("encode") == [a]


def test_failed_jobs_say_why_and_run_again():
    r = jobs.Runner()

    def boom(job):
        raise ValueError("bad settings: crf 99")
    job = wait(r.submit(("k",), "encode", "bad", boom))
    assert not job.ok and job.error() == "bad settings: crf 99"
    again = r.submit(("k",), "encode", "bad", lambda job: 1)
    assert again is not job and wait(again).result() == 1


def test_estimate_from_the_last_job_of_its_kind():
    r = jobs.Runner()
    assert r.estimate("accuracy", 100) is None
    assert r.estimate("accuracy", 100, prior=0.01) == pytest.approx(1.0)
    job = r.submit(("a",), "accuracy", "eval", lambda job: time.sleep(0.05), units=10)
    wait(job)
    est = r.estimate("accuracy", 100)
    assert est == pytest.approx(10 * job.elapsed(), rel=0.3)
    nxt = r.submit(("b",), "accuracy", "eval", lambda job: None, units=20)
    assert nxt.estimate == pytest.approx(2 * job.elapsed(), rel=0.3)


def test_cancel_a_queued_and_a_running_job():
    r = jobs.Runner()
    gate = threading.Event()
    started = threading.Event()

    def slow(job):
        started.set()
        for i in range(1000):
            gate.wait(0.01)
            job.report(i, 1000)  # raises Cancelled once cancel is asked for
        return "finished"
    running = r.submit(("a",), "encode", "slow", slow)
    queued = r.submit(("b",), "encode", "after it", lambda job: "never")  # same lane: waits
    started.wait(5)
    assert queued.queued and queued.fraction()[1].endswith("waiting for the job before it")
    assert r.cancel(("b",)) and r.cancel(("a",))
    wait(running)
    wait(queued)
    assert running.cancelled and running.error() == "cancelled" and running.result() is None
    assert queued.cancelled


def test_finished_jobs_are_bounded_per_kind(monkeypatch):
    monkeypatch.setitem(jobs.KEEP, "encode", 2)
    r = jobs.Runner()
    done = [wait(r.submit(("e", i), "encode", f"e{i}", lambda job: i)) for i in range(4)]
    assert [j.key for j in r.jobs("encode")] == [("e", 2), ("e", 3)]
    assert done[0].result() == 0  # a page holding a job keeps its result


def test_progress_text():
    job = jobs.Job(("k",), "encode", "Encoding x", estimate=10.0)
    job.started = time.time() - 5
    job.future = __import__("concurrent.futures").futures.Future()
    f, text = job.fraction()
    assert 0.4 < f < 0.6 and "of ≈10 s" in text
    job.progress[:] = [3, 4, "3/4 frames coded"]
    assert job.fraction()[0] == 0.75 and "3/4 frames coded" in job.fraction()[1]


# --- the form --------------------------------------------------------------------------------------

def test_every_setting_has_a_widget_with_the_dataclass_default():
    names = [f.name for f in fields(EncodeSettings) if f.name != "layer_bits"]  # per-layer grids: a map, not a widget
    assert forms.FIELDS == tuple(names)
    d = forms.defaults()
    assert d == EncodeSettings()
    for n in names:
        assert n in forms.LABELS
        opts = forms.choices(n, d)
        assert opts is None or getattr(d, n) in opts
    assert set(forms.widget_values(d)) == {forms.key(n) for n in names} | {forms.LOSSLESS, forms.LAYER_GRID}
    assert forms.widget_values(d)[forms.LAYER_GRID] == forms.UNIFORM


def test_settings_round_trip_through_the_url():
    s = replace(forms.defaults(), crf=30, preset="ultrafast", frame=128, order="natural", dither=0.5, seed=3)
    q = forms.to_query(s)
    assert q == {"crf": "30", "preset": "ultrafast", "frame": "128", "order": "natural", "dither": "0.5", "seed": "3"}
    back, why = forms.from_query(q)
    assert why is None and back == s
    bad, why = forms.from_query({"frame": "100"})
    assert bad == forms.defaults() and "frame size" in why
    bad, why = forms.from_query({"crf": "abc"})
    assert bad == forms.defaults() and "ignored" in why


def test_fit_keeps_a_codec_within_what_it_takes():
    s = forms.fit(replace(forms.defaults(), codec="av1"))
    assert s.pix_fmt == "yuv420"
    forms.valid(s)
    s = forms.fit(replace(forms.defaults(), codec="xz", crf=20))
    assert s.crf == 0 and forms.valid(s)
    assert "crf 0 → 20" in forms.diff(forms.defaults(), replace(forms.defaults(), crf=20))
