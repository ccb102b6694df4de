"""The app in a real browser: `streamlit run` on a free localhost port, every page opened by
headless Chromium (Debian's, which `.ci/run` installs) through Playwright; each page's key
element must show and no Streamlit error block. Screenshots go to test-artifacts/browser/
(and, with CTNET_SCREENSHOTS=docs, to docs/screenshots/ for the README)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from demo_fixture import REPO  # first: it puts the checkout on sys.path, for bench
from bench._browser import CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_healthy, wait_idle

ARTIFACTS = REPO / "test-artifacts" / "browser"
DOCS = REPO / "docs" / "screenshots"
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
# page url, key element, what to do first (None: nothing), seconds the key element may take
PAGES = [
    ("checkpoints", ".js-plotly-plot .scatterlayer", None, 120),
    ("coefficients", ".js-plotly-plot .heatmaplayer", None, 120),
    ("frames", "video", None, 180),
    ("codec_lab", '[data-testid="stMetric"]', "encode", 300),
    ("accuracy", ".js-plotly-plot .heatmaplayer", "run", 300),
    ("rate_distortion", ".js-plotly-plot .scatterlayer", None, 120),  # the demo ships its sweep
]
URLS = {"checkpoints": "", "coefficients": "coefficients", "frames": "frames", "codec_lab": "codec-lab",
        "accuracy": "accuracy", "rate_distortion": "rate-distortion"}


@pytest.fixture(scope="module")
def server(demo_dir):
    log = (ARTIFACTS.parent / "streamlit.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc, url = start_streamlit(demo_dir, out)
        try:
            try:
                wait_healthy(proc, url, timeout_s=60, poll_s=0.5)
            except RuntimeError as exc:
                pytest.fail(f"{exc}: {log.read_text()[-2000:]}")
            yield url
        finally:
            stop(proc)


def test_every_page_in_chromium(server):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser test drives Debian's chromium, which .ci/run installs "
                    f"(apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: `make test` installs it from requirements.txt")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            for name, key, action, timeout in PAGES:
                page.goto(f"{server}/{URLS[name]}", wait_until="domcontentloaded")
                page.wait_for_selector("h1", timeout=timeout * 1000)
                if action == "encode":
                    page.get_by_text("Preset", exact=True).wait_for(timeout=timeout * 1000)
                    page.get_by_role("button", name="Encode", exact=True).click()
                elif action == "run":
                    page.get_by_role("button", name="Run", exact=True).click()
                page.wait_for_selector(key, state="attached", timeout=timeout * 1000)
                wait_idle(page, timeout, quiet_s=1.5, poll_ms=250)
                shot = ARTIFACTS / f"{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert page.locator(ERRORS).count() == 0, \
                    f"{name}: error shown: {page.locator(ERRORS).first.inner_text()[:500]} (see {shot})"
                title = page.locator("h1").first.inner_text()
                assert title.startswith({"codec_lab": "Codec lab", "rate_distortion": "Rate–distortion"}.get(name, name.capitalize())), title
                if os.environ.get("CTNET_SCREENSHOTS") == "docs":
                    DOCS.mkdir(parents=True, exist_ok=True)
                    _small_png(shot, DOCS / f"{name}.png")
        finally:
            browser.close()


def _small_png(src: Path, dest: Path) -> None:
    """A README-sized copy: 128-colour palette, at most 1000 px wide."""
    from PIL import Image
    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > 1000:
            im = im.resize((1000, round(im.height * 1000 / im.width)), Image.LANCZOS)
        im.quantize(128, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
    shutil.copystat(src, dest)
