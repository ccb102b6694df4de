"""The Rate–distortion page: measures points in the background on real sample images,
caches them (a second visit measures nothing), names the best method at the floor, and
refuses bad data folders with a message."""
from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from demo_fixture import MAIN, PAGES


@pytest.fixture
def rd_cache(monkeypatch, tmp_path):
    cache = tmp_path / "rd-cache"
    monkeypatch.setenv("CTNET_RD_CACHE", str(cache))
    return cache


def page() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=240).run()
    at.switch_page(PAGES["rate_distortion"]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def measure(at: AppTest, codecs: list[str], seconds: float = 300) -> AppTest:
    at.number_input(key="w_rd_limit").set_value(20).run()
    at.multiselect(key="w_rd_codecs").set_value(codecs).run()
    at.multiselect(key="w_rd_bits").set_value([8]).run()
    at.checkbox(key="w_rd_lossy").uncheck().run()
    assert not at.button(key="w_rd_measure").disabled, ([c.value for c in at.caption], [e.value for e in at.error])
    at.button(key="w_rd_measure").click().run()
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    from app import background
    assert background.running_jobs("sweep")  # the sweep runs in the background
    deadline = time.monotonic() + seconds
    while background.running_jobs("sweep"):
        assert time.monotonic() < deadline, "sweep did not finish"
        time.sleep(0.5)
        at.run()
    at.run()
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    return at


def test_measure_cache_and_best_at_floor(demo_env, rd_cache):
    at = page()
    if not any(s.value.startswith("Best:") for s in at.success):  # the demo may ship its own sweep
        assert any("No measurements" in i.value for i in at.info)
    at = measure(at, ["xz", "ffv1"])
    points = at.dataframe[-1].value
    methods = set(points["method"])
    assert {"xz", "ffv1", "fp32", "int8+zstd", "int4+zstd"} <= methods
    xz = points[points["method"] == "xz"].iloc[0]
    assert 0 < xz["bytes"] < points[points["method"] == "fp32"].iloc[0]["bytes"] / 10
    # a lossless coder of the same pixels decodes to the same model: the same accuracy
    ffv1 = points[points["method"] == "ffv1"].iloc[0]
    assert xz["top-1 %"] == ffv1["top-1 %"]
    assert any(s.value.startswith("Best:") for s in at.success)
    stored = json.loads(next(rd_cache.glob("*.json")).read_text())["points"]
    assert len(stored) >= 5 and all(p["images"] == 20 for p in stored.values())
    # a new session finds them in the cache: nothing left to measure for the same request
    again = page()
    again.number_input(key="w_rd_limit").set_value(20).run()
    again.multiselect(key="w_rd_codecs").set_value(["xz", "ffv1"]).run()
    again.multiselect(key="w_rd_bits").set_value([8]).run()
    again.checkbox(key="w_rd_lossy").uncheck().run()
    assert any(", 0 to measure" in c.value for c in again.caption)
    assert again.button(key="w_rd_measure").disabled
    # a floor nothing reaches says so
    again.number_input(key="w_rd_floor").set_value(100.0).run()
    assert any("No measured point reaches this floor" in w.value for w in again.warning)


def test_bad_data_folder(demo_env, rd_cache, tmp_path):
    at = page()
    at.radio(key="w_rd_source").set_value("path").run()
    missing = tmp_path / "no-such-imagenette"
    at.text_input(key="w_rd_path").set_value(str(missing)).run()
    assert not at.exception
    assert any(f"{missing} does not exist" in e.value for e in at.error)
    assert str(demo_env) in at.session_state["current"]


def test_a_tampered_cache_is_a_message_not_a_crash(demo_env, rd_cache):
    shipped = sorted((demo_env / "rd").glob("*.json"))
    if not shipped:
        pytest.skip("the demo ships no rd cache to copy")
    rd_cache.mkdir(parents=True)
    for f in shipped:  # this machine's cache of the demo's checkpoint, one point edited by hand
        doc = json.loads(f.read_text())
        doc["points"][min(doc["points"])]["acc1"] = "abc"
        (rd_cache / f.name).write_text(json.dumps(doc))
    at = AppTest.from_file(MAIN, default_timeout=240).run()
    at.switch_page(PAGES["rate_distortion"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(e.value.startswith("Cannot read the measurements for this data: ") and
               "'acc1' must be a number in 0..100, not 'abc'" in e.value for e in at.error), [e.value for e in at.error]
