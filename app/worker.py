"""The Codec lab's encodes run in a warm process of their own, not in a server thread.

Why: x265 hands control back to Python after every coded frame, and in the server process
each return waits for the GIL that Streamlit's threads hold in turn. Measured with
``bench/app.py`` on 2 cores: the densest demo checkpoint's encode took 9.2 s in a server
thread against 3.7 s as a plain library call. In its own process it runs at library speed,
and Cancel stops it at once: the process is ended and a fresh one started.

One ``Worker`` runs one task at a time (the job runner's lane already serialises them).
Tasks are named functions in ``TASKS``; they take keyword arguments and a ``progress(done,
total, text)`` callback and return something picklable. A task's exception reaches the
caller as ``WorkerError`` with the task's one-line message; a worker that dies (killed,
out of memory) is reported the same way and replaced on the next call.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from app.jobs import Cancelled, error_text

REPO = Path(__file__).resolve().parents[1]


class WorkerError(Exception):
    """A task failed in the worker, or the worker process stopped."""


# --- inside the worker process -----------------------------------------------------------------

_MODELS: OrderedDict = OrderedDict()  # (path, stamp) → LoadedModel; the last two sources


def _load(path: str):
    from ctnet import api, runs
    key = (path, runs.stamp(path))
    if key not in _MODELS:
        loaded = api.load_any(path)
        loaded.model.requires_grad_(False)
        _MODELS[key] = loaded
        while len(_MODELS) > 2:
            _MODELS.popitem(last=False)
    _MODELS.move_to_end(key)
    return _MODELS[key]


_LAYOUT: dict = {}  # (path, stamp, layout key) → the model laid out: the last one only (~4 bytes a level)


def _laid_out(path: str, settings, loaded):
    """The model at ``path`` quantised and laid out for ``settings``: made once for a preview,
    its exact encode and the selection's prepare (the same levels at every codec and preset)."""
    from ctnet import api, runs
    key = (path, runs.stamp(path), api.layout_key(settings))
    if key not in _LAYOUT:
        _LAYOUT.clear()
        _LAYOUT[key] = api.lay_out(loaded, settings)
    return _LAYOUT[key]


def encode_task(*, path: str, settings: dict, progress: Callable[..., None], quick: bool = False) -> dict:
    """Encode the checkpoint or bundle at ``path`` with ``settings`` (an EncodeSettings' dict;
    ``quick``: the lab's preview, ``api.encode(quick=True)``). Returns {seconds, report: the
    ``EncodeResult``'s ``report()`` (``EncodeResult.from_report`` rebuilds it), errors:
    per-layer reconstruction errors}."""
    from ctnet import api
    from ctnet import inspect as ci
    loaded = _load(path)
    t0 = time.perf_counter()
    progress(0, 0, "quantising and laying out")
    s = api.EncodeSettings(**settings).validate()
    try:
        laid_out = _laid_out(path, s, loaded)
    except Exception:  # noqa: BLE001 - api.encode checks the model first and says what is wrong
        laid_out = None
    result = api.encode(loaded, s, laid_out=laid_out, quick=quick,
                        progress=lambda done, total: progress(done, total, f"{done}/{total} frames coded"))
    seconds = time.perf_counter() - t0
    progress(1, 1, "measuring the reconstruction error")
    errors = ci.layer_errors(result.layers)  # measured by the encoder (the same as ci.reconstruction_errors)
    return {"seconds": seconds, "report": result.report(), "errors": errors}


def prepare_task(*, path: str, progress: Callable[..., None], settings: dict | None = None) -> dict:
    """Load the checkpoint at ``path`` into the worker ahead of its encode (a bundle is decoded)
    and lay it out for ``settings`` (the lab's current ones): up to ~1 s the user's Encode need
    not wait for."""
    from ctnet import api
    t0 = time.perf_counter()
    progress(0, 1, "loading the checkpoint into the encoder's process")
    loaded = _load(path)
    if settings is not None:
        progress(0, 1, "quantising and laying out its frames")
        _laid_out(path, api.EncodeSettings(**settings).validate(), loaded)
    return {"seconds": time.perf_counter() - t0}


TASKS: dict[str, Callable[..., Any]] = {"encode": encode_task, "prepare": prepare_task}


def _serve(conn) -> None:
    """The worker's loop: (task name, kwargs) in; progress, then the result or the error, out."""
    from ctnet import api
    api.warm_codec()  # the first task should not pay for the imports
    conn.send(("ready",))
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the server is gone
            return
        if request is None:
            return
        name, kwargs = request
        try:
            out = TASKS[name](progress=lambda done, total, text="": conn.send(("progress", done, total, text)),
                              **kwargs)
            conn.send(("result", out))
        except Exception as exc:  # the task's own error: its message goes back as one line
            conn.send(("error", error_text(exc)))


# --- in the server -----------------------------------------------------------------------------

class Worker:
    """A spawned process kept warm for ``run``. Thread-safe; one task at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._ready = False

    def start(self) -> None:
        """Start the process if none runs (returns at once; it warms up in the background).
        A plain subprocess rather than multiprocessing's spawn, which would re-run the
        server's main script in the child."""
        if self._proc is not None and self._proc.poll() is None:
            return
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen([sys.executable, "-m", "app.worker", str(theirs.fileno())],
                                      pass_fds=[theirs.fileno()], cwd=REPO, stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn, self._ready = Connection(ours.detach()), False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def run(self, task: str, kwargs: dict, *, report: Callable[[float, float, str], None],
            cancel: threading.Event) -> Any:
        """Run ``task`` in the worker; ``report`` gets its progress. When ``cancel`` is set the
        worker is ended at once and ``Cancelled`` raised."""
        with self._lock:
            self.start()
            try:
                if not self._ready:
                    self._expect("ready", cancel)
                    self._ready = True
                self._conn.send((task, kwargs))
                while True:
                    msg = self._expect(None, cancel)
                    if msg[0] == "progress":
                        report(*msg[1:])
                    elif msg[0] == "result":
                        return msg[1]
                    else:
                        raise WorkerError(msg[1])
            except (Cancelled, EOFError, OSError) as exc:
                code = self._proc.poll() if self._proc is not None else None
                self.stop()
                if isinstance(exc, Cancelled):
                    raise
                raise WorkerError(f"the lab's worker process stopped (exit code {code}); the next job starts a "
                                  "new one") from None

    def _expect(self, kind: str | None, cancel: threading.Event) -> tuple:
        while not self._conn.poll(0.05):
            if cancel.is_set():
                raise Cancelled("cancelled")
            if self._proc.poll() is not None:
                raise EOFError
        msg = self._conn.recv()
        if kind is not None and msg[0] != kind:
            raise OSError(f"the worker sent {msg[0]!r} before {kind!r}")
        if cancel.is_set():
            raise Cancelled("cancelled")
        return msg


if __name__ == "__main__":  # started by Worker.start: the socket's descriptor is the argument
    _serve(Connection(int(sys.argv[1])))
