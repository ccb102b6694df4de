"""The job runner's lanes: an encode never queues behind accuracy runs, and those pause at
their next progress report while it runs (the user is waiting for the encode)."""
from __future__ import annotations

import threading
import time

from app.jobs import Runner


def test_an_encode_does_not_wait_for_accuracy_runs_and_they_pause_meanwhile():
    runner = Runner()
    reports, release = [], threading.Event()

    def accuracy(job):
        for i in range(200):
            job.report(i, 200)
            reports.append(time.monotonic())
            time.sleep(0.01)
        return "accuracy done"

    def encode(job):
        time.sleep(0.3)  # let any report in flight land
        reports.append("encode running")
        release.wait(10)
        return "encoded"

    acc = runner.submit(("accuracy", 1), "accuracy", "acc", accuracy)
    while not reports:
        time.sleep(0.01)
    enc = runner.submit(("encode", 1), "encode", "enc", encode)
    while "encode running" not in reports:
        time.sleep(0.01)
    assert acc.running and "paused while an encode runs" in acc.progress[2]
    t_mark = time.monotonic()
    time.sleep(0.5)
    assert not [t for t in reports if isinstance(t, float) and t > t_mark]  # paused
    release.set()
    assert enc.future.result(10) == "encoded" and acc.future.result(30) == "accuracy done"
    assert "paused" not in acc.progress[2]


def test_a_paused_accuracy_run_can_still_be_cancelled():
    runner = Runner()
    release, started = threading.Event(), threading.Event()

    def encode(job):
        started.set()
        release.wait(10)

    def accuracy(job):
        for i in range(1000):
            job.report(i, 1000)
            time.sleep(0.01)

    runner.submit(("encode", 2), "encode", "enc", encode)
    started.wait(5)
    acc = runner.submit(("accuracy", 2), "accuracy", "acc", accuracy)
    time.sleep(0.3)
    runner.cancel(acc.key)
    deadline = time.monotonic() + 5
    while not acc.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert acc.cancelled
    release.set()
