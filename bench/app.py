"""The app's figures, measured in one run on this machine, through a real browser:

    .venv/bin/python bench/app.py [--demo DIR] [--upload FILE] [--only NAME ...] [--json-out FILE]

* cold start: `streamlit run` launched → the Checkpoints page's Pareto plot drawn in Chromium;
* switching checkpoint: another one picked in the Checkpoints page → the app idle again
  (the new model loaded: a bundle is decoded from its H.265 streams);
* re-encoding CTNet-18 at the lab's default settings (`medium`, lossless): the Codec lab's
  Encode pressed → its first result shown (the ultrafast preview, app/encodes.py), → the exact
  medium result shown, then → its decoded top-1 on the embedded sample shown
  (measured in the background: the accuracy in the lab); at the end, the same click → result
  for every other demo checkpoint, and for an uploaded plain ResNet-18 (``--upload``, default
  ``../shared/models/resnet18-imagenette128-scratch.pt``: sent through the Checkpoints page's
  uploader in the browser, then one Encode click at the lab's defaults);
* the Compare page opened (the checkpoint against its re-encode) → its per-layer table shown;
* decoded accuracy on the embedded sample: the Accuracy page's Run pressed → the confusion
  matrix shown (of another subset, so nothing is cached);
* the server's peak memory (VmHWM of the `streamlit run` process) and its worker's (the
  process the lab's encodes run in).

``--only NAME ...``: after the cold start, only the lab's click → result on the demo checkpoints
whose ``run · role`` holds one of the NAMEs, and on the upload when a NAME is ``upload`` (a
quick check of the bench itself; the other figures are not measured).

The last two are also timed as plain library calls (``ctnet.api.encode``, ``evaluate``) on the
same checkpoint, so the app's own overhead shows. Needs Debian's chromium and playwright
(what the browser test uses).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._browser import CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_healthy, wait_idle  # noqa: E402


UPLOAD = REPO.parent / "shared" / "models" / "resnet18-imagenette128-scratch.pt"


def browser_figures(demo: Path, upload: Path | None, log, only: list[str] | None = None) -> dict:
    from playwright.sync_api import sync_playwright
    out: dict = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        t0 = time.perf_counter()
        server, url = start_streamlit(demo, subprocess.DEVNULL)
        try:
            wait_healthy(server, url, timeout_s=600)
            page.goto(url)
            page.wait_for_selector(".js-plotly-plot .scatterlayer", state="attached", timeout=600_000)
            out["cold_start_s"] = time.perf_counter() - t0
            wait_idle(page, 600)
            log(f"cold start to first page rendered: {out['cold_start_s']:.1f} s")
            if only is not None:
                out["reencode_every_checkpoint"] = lab_every_checkpoint(page, url, demo, None, log, only)
                if upload is not None and "upload" in only:
                    out["upload"] = lab_upload(page, url, upload, log)
                return out

            current = page.locator('[data-testid="stSidebar"] strong').first.inner_text()
            page.locator('[data-testid="stSelectbox"]').first.click()
            options = page.get_by_role("option")
            target = next(i for i in range(options.count())
                          if not options.nth(i).inner_text().startswith(current.split(" (bundle)")[0] + " "))
            label = options.nth(target).inner_text()
            t0 = time.perf_counter()
            options.nth(target).click()
            page.wait_for_function("c => { const s = document.querySelector('[data-testid=\"stSidebar\"] strong');"
                                   " return s && s.innerText !== c; }", arg=current, timeout=600_000)
            wait_idle(page, 600)
            out["switch_checkpoint_s"] = time.perf_counter() - t0
            log(f"switching checkpoint (to {label.split(' — ')[0]}): {out['switch_checkpoint_s']:.1f} s")

            out["checkpoint"] = label.split(" — ")[0]
            # the sidebar keeps the session (and so the checkpoint just picked)
            page.locator('[data-testid="stSidebarNav"]').get_by_text("Codec lab", exact=True).click()
            page.get_by_role("button", name="Encode", exact=True).wait_for(timeout=600_000)
            wait_idle(page, 600)
            t0 = time.perf_counter()
            click = encode_click(page)
            out.update({f"reencode_{k}": v for k, v in click.items()})
            until_measured(page)
            out["reencode_and_accuracy_app_s"] = time.perf_counter() - t0
            wait_idle(page, 600)
            top1 = page.locator('[data-testid="stMetric"]').filter(has_text="decoded top-1").inner_text()
            found = re.search(r"([0-9.]+ %)", top1)
            out["lab_top1"] = found.group(1) if found else top1
            log(f"re-encoding at medium in the app: click → first result {click['first_s']:.1f} s "
                f"({'the ultrafast preview' if click['preview'] else 'the exact encode'}), → exact result "
                f"{click['exact_s']:.1f} s (its encode + decode in the worker {click['worker_s']:.1f} s); → its sample "
                f"top-1 shown: {out['reencode_and_accuracy_app_s']:.1f} s ({out['lab_top1']})")

            t0 = time.perf_counter()
            page.locator('[data-testid="stSidebarNav"]').get_by_text("Compare", exact=True).click()
            page.wait_for_selector('[data-testid="stDataFrame"]', state="attached", timeout=600_000)
            wait_idle(page, 600)
            out["compare_app_s"] = time.perf_counter() - t0
            log(f"Compare page (checkpoint against its re-encode): {out['compare_app_s']:.1f} s")

            page.locator('[data-testid="stSidebarNav"]').get_by_text("Accuracy", exact=True).click()
            page.get_by_role("button", name="Run", exact=True).wait_for(timeout=600_000)
            wait_idle(page, 600)
            limit = page.locator('input[aria-label="Images (0 = all)"]')
            limit.fill("400")
            limit.press("Enter")
            wait_idle(page, 600)
            t0 = time.perf_counter()
            page.get_by_role("button", name="Run", exact=True).click()
            page.wait_for_selector(".js-plotly-plot .heatmaplayer", state="attached", timeout=600_000)
            out["accuracy_sample_app_s"] = time.perf_counter() - t0
            log(f"decoded accuracy on 400 sample images in the app (two models): {out['accuracy_sample_app_s']:.1f} s")
            out["server_peak_rss_mb"] = peak_rss_mb(server.pid)
            out["worker_peak_rss_mb"] = sum(peak_rss_mb(p) for p in child_pids(server.pid))
            log(f"server peak memory (VmHWM): {out['server_peak_rss_mb']:.0f} MB; the lab's worker process: "
                f"{out['worker_peak_rss_mb']:.0f} MB")

            # ten checkpoints opened one after the other: the LRU on decoded models bounds memory
            page.locator('[data-testid="stSidebarNav"]').get_by_text("Checkpoints", exact=True).click()
            page.wait_for_selector(".js-plotly-plot .scatterlayer", state="attached", timeout=600_000)
            wait_idle(page, 600)
            for i in range(10):
                page.locator('[data-testid="stSelectbox"]').first.click()
                options = page.get_by_role("option")
                options.nth(i % options.count()).click()
                wait_idle(page, 600)
            out["server_rss_after_10_checkpoints_mb"] = peak_rss_mb(server.pid, "VmRSS:")
            out["server_peak_rss_after_10_checkpoints_mb"] = peak_rss_mb(server.pid)
            out["worker_rss_after_10_checkpoints_mb"] = sum(peak_rss_mb(p, "VmRSS:") for p in child_pids(server.pid))
            log(f"server memory after opening 10 checkpoints: {out['server_rss_after_10_checkpoints_mb']:.0f} MB "
                f"(peak {out['server_peak_rss_after_10_checkpoints_mb']:.0f} MB); worker "
                f"{out['worker_rss_after_10_checkpoints_mb']:.0f} MB")
            out["reencode_every_checkpoint"] = lab_every_checkpoint(page, url, demo, out["checkpoint"], log)
            if upload is not None:
                out["upload"] = lab_upload(page, url, upload, log)
        finally:
            stop(server)
            browser.close()
    return out


def lab_every_checkpoint(page, url: str, demo: Path, done: str | None, log, only: list[str] | None = None) -> list[dict]:
    """Codec lab, defaults, Encode click → result for every demo checkpoint (opened by its
    link, as a bookmark would; ``done`` was measured above; ``only``: those whose name holds
    one of these), each once the previous one's result and sample top-1 are on screen."""
    rows = []
    for bundle in sorted(demo.glob("runs/*/bundles/*")):
        name = f"{bundle.parents[1].name} · {bundle.name}"
        if (done is not None and done.startswith(name + " ")) or (only is not None and not any(n in name for n in only)):
            continue
        page.goto(f"{url}/codec-lab?ckpt={bundle.relative_to(demo)}")
        button = page.get_by_role("button", name="Encode", exact=True)
        button.wait_for(timeout=600_000)
        wait_idle(page, 600)
        time.sleep(1.0)  # the user reads the settings; the worker loads the checkpoint meanwhile
        click = encode_click(page)
        until_measured(page)
        rows.append({"checkpoint": name, **click})
        log(f"  {name}: click → first result {click['first_s']:.1f} s"
            f"{' (preview)' if click['preview'] else ''}, exact {click['exact_s']:.1f} s "
            f"(encode + decode {click['worker_s']:.1f} s)")
        wait_idle(page, 600)
    return rows


def lab_upload(page, url: str, upload: Path, log) -> dict:
    """A plain checkpoint sent through the Checkpoints page's uploader (→ "Loaded …" shown: it
    is current), then the Codec lab opened from the sidebar (the same session) and, once the
    user has read the settings for a second, Encode at the lab's defaults: click → result, as
    for the demo checkpoints."""
    page.goto(url)
    page.wait_for_selector(".js-plotly-plot .scatterlayer", state="attached", timeout=600_000)
    wait_idle(page, 600)
    t0 = time.perf_counter()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(upload))
    page.get_by_text(f"Loaded {upload.name}; it is the current checkpoint.").wait_for(timeout=600_000)
    wait_idle(page, 600)
    upload_s = time.perf_counter() - t0
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Codec lab", exact=True).click()
    page.get_by_role("button", name="Encode", exact=True).wait_for(timeout=600_000)
    wait_idle(page, 600)
    time.sleep(1.0)  # as for the demo checkpoints: the worker loads and lays out the model meanwhile
    click = encode_click(page)
    until_measured(page)
    wait_idle(page, 600)
    log(f"  uploaded {upload.name} (uploaded and current in {upload_s:.1f} s): click → first result "
        f"{click['first_s']:.1f} s{' (preview)' if click['preview'] else ''}, exact {click['exact_s']:.1f} s "
        f"(encode + decode {click['worker_s']:.1f} s)")
    return {"file": upload.name, "bytes": upload.stat().st_size, "upload_s": round(upload_s, 2), **click}


def until_measured(page, timeout_s: float = 600) -> None:
    """Until no "measuring…" is shown (a rerun can briefly show two: the stale one and the new)."""
    deadline = time.monotonic() + timeout_s
    while page.get_by_text("measuring…").count():
        if time.monotonic() > deadline:
            raise TimeoutError("the decoded top-1 was still being measured")
        page.wait_for_timeout(200)


def encode_click(page) -> dict:
    """The Codec lab's Encode pressed (defaults: HEVC medium, lossless) → the first result shown
    (the ultrafast preview, or the exact encode when it came first) and → the exact result."""
    t0 = time.perf_counter()
    page.get_by_role("button", name="Encode", exact=True).click()
    page.wait_for_selector('[data-testid="stMetric"]', timeout=600_000)
    first = time.perf_counter() - t0
    preview = page.get_by_text("Preview, coded at").count() > 0
    page.wait_for_function("() => [...document.querySelectorAll('h3')].some(h => "
                           "h.innerText.startsWith('Encoded at hevc · medium'))", timeout=600_000)
    exact = time.perf_counter() - t0
    caption = page.get_by_text("encode + decode").first.inner_text()
    worker = float(re.search(r"encode \+ decode ([0-9.]+) s", caption).group(1))
    return {"first_s": round(first, 2), "preview": preview, "exact_s": round(exact, 2), "worker_s": worker}


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the app's worker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def peak_rss_mb(pid: int, field: str = "VmHWM:") -> float:
    """The process's peak (VmHWM) or current (VmRSS) resident memory in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def library_figures(demo: Path, label: str, log) -> dict:
    """The same two operations as library calls, on the checkpoint the app used."""
    from ctnet import api, runs
    entry = next(e for e in runs.all_entries(runs.discover(demo)) if e.label == label)
    loaded = api.load_any(entry.path)
    out = {}
    t0 = time.perf_counter()
    enc = api.encode(loaded)
    out["encode_s"] = time.perf_counter() - t0
    out["encode_bytes"] = enc.total_bytes
    log(f"ctnet.api.encode at the defaults, same checkpoint: {out['encode_s']:.1f} s, {enc.total_bytes:,} B")
    t0 = time.perf_counter()
    split = api.load_split(demo / "sample", "val", labels=loaded.label_map, num_classes=loaded.num_classes,
                           size=loaded.image_size, cache=True)
    res = api.evaluate(enc.model, split, device="cpu", batch_size=100)
    out["accuracy_sample_s"] = time.perf_counter() - t0
    out["accuracy_sample_images"] = res["images"]
    log(f"decode-side evaluation on the sample ({res['images']} images, read + infer): "
        f"{out['accuracy_sample_s']:.1f} s, top-1 {res['acc1']:.2f} %")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo", type=Path, default=Path(os.environ.get("CTNET_DEMO_DIR") or REPO / "assets" / "demo"))
    p.add_argument("--upload", type=Path, default=UPLOAD,
                   help="a plain checkpoint to upload and encode in the lab (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="only the lab's click → result on these demo checkpoints (part of 'run · role') and "
                        "'upload'")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if not args.upload.is_file():
        p.error(f"--upload {args.upload}: no such file")
    import torch
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
               "python": platform.python_version(), "processor": platform.processor() or platform.machine()}
    print(f"machine: {machine}")
    app = browser_figures(args.demo, args.upload, print, args.only)
    result = {"machine": machine, "demo": str(args.demo), **app}
    if args.only is None:
        result["library"] = library_figures(args.demo, app["checkpoint"], print)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
