"""The served app in headless Chromium: what ``bench/app.py`` and the browser test share."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's, which .ci/run installs
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_streamlit(demo: Path, output) -> tuple[subprocess.Popen, str]:
    """``streamlit run app/main.py`` on a free localhost port, opened on ``demo``; (process, url)."""
    port = free_port()
    env = {**os.environ, "CTNET_DEMO_DIR": str(demo), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"], cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float, poll_s: float = 0.1) -> None:
    """Until the server answers its health check; RuntimeError if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"streamlit did not come up in {timeout_s:.0f} s")
        time.sleep(poll_s)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_idle(page, timeout_s: float, quiet_s: float = 0.5, poll_ms: int = 50) -> None:
    """Until Streamlit's 'running' indicator has been gone for ``quiet_s`` seconds."""
    deadline, quiet = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count():
            quiet = None
        elif quiet is None:
            quiet = time.monotonic()
        elif time.monotonic() - quiet > quiet_s:
            return
        page.wait_for_timeout(poll_ms)
    raise TimeoutError("the app kept running past the timeout")
