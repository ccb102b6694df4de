"""The app in a real browser: `streamlit run` on a free localhost port, every page opened by
headless Chromium (Debian's, which `.ci/run` installs) through Playwright; each page's key
element must show and no Streamlit error block. Screenshots go to test-artifacts/browser/
(and, with CTNET_SCREENSHOTS=docs, to docs/screenshots/ for the README)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from demo_fixture import REPO

CHROMIUM = "/usr/bin/chromium"
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_dir):
    port = _free_port()
    env = {**os.environ, "CTNET_DEMO_DIR": str(demo_dir), "PYTHONPATH": str(REPO)}
    log = (ARTIFACTS.parent / "streamlit.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert proc.poll() is None, f"streamlit exited: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "streamlit did not come up in 60 s"
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _idle(page, timeout_s: float) -> None:
    """Wait until Streamlit has finished running the script (its status widget is gone)."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        page.wait_for_timeout(250)
    raise AssertionError("the app kept running past the timeout")


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
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
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
                _idle(page, timeout)
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
