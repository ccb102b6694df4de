"""The app in a real browser: `streamlit run` on a free localhost port, every page opened by
headless Chromium (Debian's, which `.ci/run` installs) through Playwright; each page's key
element must show and no Streamlit error block. The Codec lab's page is reloaded mid-encode
and must still show the result; its URL, opened in a fresh browser context (a shared link),
must show the same checkpoint and settings; at 800 px wide the lab's buttons stay on screen;
no request leaves localhost. Screenshots go to test-artifacts/browser/ (and, with
CTNET_SCREENSHOTS=docs, to docs/screenshots/ for the README)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from demo_fixture import REPO  # first: it puts the checkout on sys.path, for bench
from bench._browser import CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_healthy, wait_idle

pytestmark = pytest.mark.browser

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
    ("compare", '[data-testid="stDataFrame"]', None, 180),
    ("rate_distortion", ".js-plotly-plot .scatterlayer", None, 120),  # the demo ships its sweep
]
URLS = {"checkpoints": "", "coefficients": "coefficients", "frames": "frames", "codec_lab": "codec-lab",
        "accuracy": "accuracy", "compare": "compare", "rate_distortion": "rate-distortion"}
LOCAL = {"127.0.0.1", "localhost"}


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
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1800})
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            for name, key, action, timeout in PAGES:
                page.goto(f"{server}/{URLS[name]}", wait_until="domcontentloaded")
                page.wait_for_selector("h1", timeout=timeout * 1000)
                if action == "encode":
                    page.get_by_text("Preset", exact=True).wait_for(timeout=timeout * 1000)
                    page.get_by_role("button", name="Encode", exact=True).click()
                    page.get_by_text("Cancel", exact=True).first.wait_for(timeout=60_000)
                    page.reload(wait_until="domcontentloaded")  # mid-encode: the job is found again
                    page.wait_for_selector("h1", timeout=timeout * 1000)
                elif action == "run":
                    run = page.get_by_role("button", name="Run", exact=True)
                    run.wait_for(timeout=timeout * 1000)
                    if run.is_enabled():  # else the lab's encode was measured already, on the same images
                        run.click()
                page.wait_for_selector(key, state="attached", timeout=timeout * 1000)
                if action == "encode":  # its sample top-1, measured in the background
                    page.get_by_text("measuring…").wait_for(state="detached", timeout=timeout * 1000)
                wait_idle(page, timeout, quiet_s=1.5, poll_ms=250)
                shot = ARTIFACTS / f"{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert page.locator(ERRORS).count() == 0, \
                    f"{name}: error shown: {page.locator(ERRORS).first.inner_text()[:500]} (see {shot})"
                title = page.locator("h1").first.inner_text()
                titles = {"codec_lab": "Codec lab", "rate_distortion": "Rate–distortion"}
                assert title.startswith(titles.get(name, name.capitalize())), title
                if name == "frames":  # Play steps through the frames by itself; the preview stays ≤ 512 px wide
                    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').last
                    before = int(thumb.input_value())
                    page.get_by_text("Play", exact=True).click()
                    page.wait_for_timeout(4000)
                    page.get_by_text("Play", exact=True).click()
                    assert int(thumb.input_value()) != before, "Play did not advance the frames"
                    box = page.locator("video").bounding_box()
                    assert box is not None and box["width"] <= 520, box
                if action == "encode":
                    assert page.get_by_text("Encoded at ").count(), "the result of the encode is not shown"
                    lab_url = page.url
                if os.environ.get("CTNET_SCREENSHOTS") == "docs":
                    DOCS.mkdir(parents=True, exist_ok=True)
                    _small_png(shot, DOCS / f"{name}.png")

            # a shared link (fresh context: no cookies, no session) opens the same checkpoint and
            # settings, and finds the finished encode
            assert "ckpt=" in lab_url, lab_url
            other = browser.new_context(viewport={"width": 800, "height": 1400})
            other.on("request", lambda r: requests.append(r.url))
            narrow = other.new_page()
            narrow.goto(lab_url, wait_until="domcontentloaded")
            narrow.get_by_text("Encoded at ").first.wait_for(timeout=120_000)
            wait_idle(narrow, 120, quiet_s=1.5, poll_ms=250)
            narrow.screenshot(path=str(ARTIFACTS / "codec_lab_800px.png"), full_page=True)
            # usable at 800 px: the lab's buttons are on screen, not cut off
            for label in ("Encode", "Defaults"):
                box = narrow.get_by_role("button", name=label, exact=True).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 800, (label, box)
            assert narrow.locator(ERRORS).count() == 0
        finally:
            browser.close()
    outside = sorted({u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
                      and urlparse(u).hostname not in LOCAL})
    assert not outside, f"requests left localhost: {outside[:5]}"


HEADLINE = json.loads((REPO / "assets/demo/demo.json").read_text())["default"]  # what the app opens on
# where Plotly draws the Pareto marker of the checkpoint whose path ends in `path` (page pixels)
POINT_JS = """(path) => {
  const gd = document.querySelector('.js-plotly-plot');
  const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  for (const tr of gd._fullData) {
    if (!tr.customdata || tr.name === 'current') continue;
    for (let i = 0; i < tr.customdata.length; i++) {
      const p = String(tr.customdata[i][0]);
      if (p.endsWith('/' + path)) return [r.left + xa._offset + xa.c2p(tr.x[i]), r.top + ya._offset + ya.c2p(tr.y[i])];
    }
  }
  return null;
}"""


def _until(page, check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out: {what} (url {page.url})")


def test_a_newcomers_walk_in_chromium(server, demo_dir):
    """Issue 24, as a new user met it at 1400×1000: (9) the headline Pareto point can be
    clicked; (1) a typed run folder survives a reload and a shared link; (2) an encode on
    another grid says it re-quantises; (3) its top-1 change shows an interval; (6) the result
    is in the first viewport; (4) the earlier encode stays listed."""
    from playwright.sync_api import sync_playwright
    headline = HEADLINE if (demo_dir / HEADLINE).is_dir() else \
        str(sorted(demo_dir.glob("runs/*/bundles/best"))[-1].relative_to(demo_dir))
    other = next(str(p.relative_to(demo_dir)) for p in sorted(demo_dir.glob("runs/*/bundles/*"))
                 if str(p.relative_to(demo_dir)) != headline)
    folder = demo_dir / "runs" / Path(other).parts[1]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            # 9: open on another checkpoint, click the headline's marker: it becomes current
            page.goto(f"{server}/?ckpt={other}", wait_until="domcontentloaded")
            page.wait_for_selector(".js-plotly-plot .scatterlayer .point", timeout=180_000)
            wait_idle(page, 120, quiet_s=1.0, poll_ms=250)
            page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            x, y = page.evaluate(POINT_JS, headline)
            page.mouse.move(x, y)
            page.wait_for_timeout(300)
            page.mouse.click(x, y)
            _until(page, lambda: f"ckpt={headline.replace('/', '%2F')}" in page.url or f"ckpt={headline}" in page.url,
                   60, "the headline point did not become current")
            # 1: a typed run folder is kept in the URL; a reload and a shared link come back to it
            box = page.get_by_role("textbox", name=re.compile("Run folder"))
            box.fill(str(folder))
            box.press("Enter")
            _until(page, lambda: "root=" in page.url, 60, "the run folder is not in the URL")
            wait_idle(page, 120, quiet_s=1.0, poll_ms=250)
            shared = page.url
            page.reload(wait_until="domcontentloaded")
            page.wait_for_selector("h1", timeout=120_000)
            wait_idle(page, 120, quiet_s=1.0, poll_ms=250)
            def shows_folder(p) -> bool:  # polled: the first render draws skeletons before the widgets
                return p.get_by_role("textbox", name=re.compile("Run folder")).input_value() == str(folder)
            _until(page, lambda: shows_folder(page), 120, "a reload lost the run folder")
            fresh = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            fresh.goto(shared, wait_until="domcontentloaded")
            fresh.wait_for_selector("h1", timeout=120_000)
            wait_idle(fresh, 120, quiet_s=1.0, poll_ms=250)
            _until(fresh, lambda: shows_folder(fresh), 120, "a shared link lost the run folder")
            assert fresh.locator('[data-testid="stSidebar"]').get_by_text(f"{folder.name} ·").count()
            # 2, 3, 6: an encode on a grid of another bit depth, at 1400×1000, nothing scrolled
            lab = f"{server}/codec-lab?ckpt={other}&preset=ultrafast&bit_depth=10"
            page.goto(lab, wait_until="domcontentloaded")
            page.get_by_role("button", name="Encode", exact=True).click(timeout=180_000)
            page.get_by_text("Re-quantised, not exact").wait_for(timeout=300_000)
            delta = page.locator('[data-testid="stMetricDelta"]', has_text="±")
            delta.first.wait_for(timeout=300_000)
            for what, loc in (("Encode button", page.get_by_role("button", name="Encode", exact=True)),
                              ("re-quantised label", page.get_by_text("Re-quantised, not exact")),
                              ("top-1 change", delta.first)):
                b = loc.bounding_box()
                assert b is not None and b["y"] >= 0 and b["y"] + b["height"] <= 1000, (what, b)
            page.screenshot(path=str(ARTIFACTS / "codec_lab_1400x1000.png"))
            # 4: a second encode (a new session: another URL) lists the first one too
            page.goto(f"{server}/codec-lab?ckpt={other}&preset=ultrafast", wait_until="domcontentloaded")
            page.get_by_role("button", name="Encode", exact=True).click(timeout=180_000)
            listed = page.get_by_text(re.compile(r"Encodes of this checkpoint on this server \((\d+), newest first\)"))
            listed.first.wait_for(timeout=300_000)  # the first encode is listed while the second one runs

            def listed_count() -> int:  # a rerun briefly shows the stale element beside the new one
                return max(int(re.search(r"\((\d+), newest", t).group(1)) for t in listed.all_inner_texts())
            _until(page, lambda: listed_count() >= 2, 300, "the second encode is not listed")
            assert page.locator(ERRORS).count() == 0
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
