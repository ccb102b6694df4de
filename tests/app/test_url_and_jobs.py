"""State that survives a reload: the current checkpoint and codec settings in the URL, and
background jobs in the server's store, found again by a new session (a reload, a second
tab, a shared link) instead of being lost or run twice."""
from __future__ import annotations

from dataclasses import replace

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from demo_fixture import MAIN, PAGES, REPO


def session(params: dict | None = None, page: str | None = None) -> AppTest:
    """A new browser session opening the app's URL with ``params``."""
    at = AppTest.from_file(MAIN, default_timeout=240)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.run()
    if page is not None:
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def bundles(demo: Path) -> list[str]:
    return sorted(str(p.relative_to(demo)) for p in demo.glob("runs/*/bundles/*"))


def test_url_holds_checkpoint_and_settings_and_a_shared_link_restores_them(demo_env):
    at = session()
    first = at.session_state["current"]
    assert at.query_params["ckpt"] == str(Path(first).relative_to(demo_env))
    other = next(b for b in bundles(demo_env) if str(demo_env / b) != first)
    at.selectbox(key="w_pick").set_value(str(demo_env / other)).run()
    assert at.query_params["ckpt"] == other
    at.switch_page(PAGES["codec_lab"]).run()
    at.checkbox(key="w_lab_lossless").uncheck().run()
    at.slider(key="w_lab_crf").set_value(30).run()
    at.selectbox(key="w_lab_frame").set_value(128).run()
    url = dict(at.query_params)
    assert url == {"ckpt": other, "crf": "30", "frame": "128"}
    # a reload / bookmark / shared link: a new session with that URL, on any page
    again = session(url, "codec_lab")
    assert again.session_state["current"] == str(demo_env / other)
    assert again.session_state["lab_settings"].crf == 30 and again.session_state["lab_settings"].frame == 128
    assert again.slider(key="w_lab_crf").value == 30 and not again.checkbox(key="w_lab_lossless").value
    assert again.selectbox(key="w_lab_frame").value == 128


def test_a_broken_link_says_so_and_opens_the_default(demo_env):
    at = session({"ckpt": "runs/no-such-run/bundles/best", "frame": "100"})
    text = " ".join(w.value for w in at.warning)
    assert "could not be opened" in text and "frame size" in text
    assert at.session_state["current"] is not None and str(demo_env) in at.session_state["current"]
    assert at.session_state["lab_settings"].frame == 256


def test_a_reload_reattaches_to_a_running_encode(demo_env):
    from app import background, encodes
    url = {"preset": "ultrafast", "order": "natural"}
    first = session(url, "codec_lab")
    first.button(key="w_encode").click().run()
    job = encodes.encode_job(first.session_state["current"], first.session_state["lab_settings"])
    assert job is not None and not job.ok
    # the page is reloaded mid-encode: a new session with the same URL finds the same job
    second = session(dict(first.query_params), "codec_lab")
    assert encodes.encode_job(second.session_state["current"], second.session_state["lab_settings"]) is job
    assert second.button(key="w_encode").disabled  # not started twice
    deadline = time.monotonic() + 240
    while not job.done:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    second.run()
    assert not second.exception and not second.error
    assert any(s.value.startswith("Encoded at hevc · ultrafast") for s in second.subheader)
    assert len(background.runner().jobs("encode", where=lambda j: j.key == job.key)) == 1


def test_the_favicon_is_local():
    """A Material or emoji page_icon makes the browser fetch the favicon from the internet."""
    text = (REPO / "app" / "main.py").read_text()
    assert 'page_icon=str(REPO / "app" / "favicon.png")' in text
    assert (REPO / "app" / "favicon.png").stat().st_size < 4096


def test_cancel_an_encode_from_the_lab(demo_env):
    """Cancel (in the progress fragment) stops the job; the lab says so and Encode starts it again."""
    from app import background, encodes
    at = session({"preset": "ultrafast", "frame": "128"}, "codec_lab")
    at.button(key="w_encode").click().run()
    job = encodes.encode_job(at.session_state["current"], at.session_state["lab_settings"])
    assert job is not None and job.running
    at.button(key="lab_cancel_0").click().run()
    deadline = time.monotonic() + 240
    while not job.done:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    at.run()
    assert job.cancelled and job.result() is None
    assert any("was cancelled" in i.value for i in at.info)
    assert not at.button(key="w_encode").disabled
    at.button(key="w_encode").click().run()
    again = encodes.encode_job(at.session_state["current"], at.session_state["lab_settings"])
    assert again is not job and again.running or again.ok
    background.cancel(again)


def test_the_preview_follows_the_predicted_encode_time_of_this_model(demo_env):
    """A preview is coded first when the exact encode is predicted to take over
    PREVIEW_AFTER_S: by the model's coded size — for a model without a bundle or training's
    estimate, its non-zero weights, so a dense upload is previewed and a sparse one is not —
    times this server's measured seconds per MB at that preset."""
    from app import background, encodes, models
    at = session(page="codec_lab")
    path, settings = at.session_state["current"], at.session_state["lab_settings"]
    assert encodes.wants_preview(None) and not encodes.wants_preview(encodes.PREVIEW_AFTER_S)
    assert encodes.wants_preview(encodes.PREVIEW_AFTER_S + 0.1)
    loaded = models.load(path)
    unknown = replace(loaded, bundle=None, metrics={})  # as an upload of a plain checkpoint file
    units = encodes.encode_units(unknown)
    nonzero = sum(int(p.count_nonzero()) for p in loaded.model.parameters() if p.dim() > 1)
    assert units == max(0.75 * nonzero / 1e6, encodes.MIN_UNITS)
    rates = background.runner()._rates
    key = encodes._rate_key(settings)
    try:
        rates[key] = 2 * encodes.PREVIEW_AFTER_S / units  # this model would take twice the budget
        assert encodes.preview_settings(settings, unknown) == replace(settings, preset=encodes.PREVIEW_PRESET)
        rates[key] = 0.5 * encodes.PREVIEW_AFTER_S / units  # a faster server (or a sparser model): half of it
        assert encodes.preview_settings(settings, unknown) is None
    finally:
        rates.pop(key, None)


def test_a_slow_lossless_encode_shows_its_preview_until_the_exact_one_is_done(demo_env):
    """Encode at medium (lossless): an ultrafast preview is coded first and shown, marked as
    such, while the exact encode runs; both decode to the same model, so one accuracy run
    serves both."""
    from app import background, encodes, models
    from app.jobs import Cancelled
    from ctnet.codec.registry import QUICK
    at = session(page="codec_lab")
    path, settings = at.session_state["current"], at.session_state["lab_settings"]
    assert settings.preset == "medium" and settings.crf == 0
    preview = encodes.preview_settings(settings)
    assert preview == replace(settings, preset="ultrafast")
    d = models.digest(path)
    assert encodes.decoded_id(d, preview) == encodes.decoded_id(d, settings)
    assert encodes.decoded_id(d, replace(settings, crf=20)) != encodes.decoded_id(d, replace(settings, crf=20, preset="fast"))
    assert encodes.preview_settings(replace(settings, crf=20)) is None and encodes.preview_settings(preview) is None
    loaded = models.load(path)
    background.runner()._rates.pop(encodes._rate_key(settings), None)  # predicted from the prior: 2.8 s per MB
    small, large = (replace(loaded, bundle=replace(loaded.bundle, total_bytes=n)) for n in (800_000, 2_900_000))
    assert encodes.preview_settings(settings, small) is None and encodes.preview_settings(settings, large) == preview

    def held(job):  # the exact encode, held back as a long one would be
        while not job.cancel_event.wait(0.05):
            pass
        raise Cancelled("cancelled")
    quick = encodes._submit_encode(path, loaded, preview, "preview", of=settings)  # queued first, as start_encode does
    exact = background.runner().submit(encodes.encode_key(path, settings), "encode", "held exact encode", held)
    try:
        deadline = time.monotonic() + 240
        while not quick.done:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        at.run()
        assert not at.exception and quick.ok
        assert quick.result()["result"].manifest["coding"]["workaround"] == QUICK  # x265's short GOP
        assert quick.key != encodes.encode_key(path, preview)  # not what an encode at ultrafast would find
        assert any(i.value.startswith("**Preview**, coded at ultrafast") for i in at.info)
        shown = next(m.value for m in at.metric if m.label.startswith("bundle bytes"))
        assert shown == f"{quick.result()['result'].total_bytes:,}"
        assert not any("Stale" in w.value for w in at.warning)
    finally:
        background.runner().cancel(exact.key)
    deadline = time.monotonic() + 30
    while not exact.done:
        assert time.monotonic() < deadline
        time.sleep(0.1)
