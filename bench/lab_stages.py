"""Where the Codec lab's time goes between checkpoint selection, the Encode click and its first result, stage by stage:

    .venv/bin/python bench/lab_stages.py SOURCE... [--preset medium] [--json-out FILE]

For each model source (a demo bundle folder, a checkpoint file, a plain torchvision ``.pt`` as an
upload is loaded), the lab's own calls in one process, in the lab's order: what the worker does on
checkpoint selection (``prepare``: load the source, lay it out for the lab's settings); on the click,
the quick preview when the lab codes one (``encode`` task with ``quick``, at ultrafast) and the exact
encode at ``--preset``, each split into its stages (x265 encode, decode back and compare, the
tables, the rebuild from what a decoder sees with its checks, the per-layer report, the
reconstruction errors), the result pickled as it crosses the socket, and the server's ``from_report``
(member sizes and SHA-256, the rebuilt model's checks). Stage times come from wrapping the named
functions, each as [wall, CPU] seconds (inclusive: nested stages are listed inside their task; CPU
of the whole process, x265's threads included); on a loaded machine read them as shares of one
run, the CPU seconds first.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import pickle
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]  # bench/app.py is not app/

# (module, attribute, stage): wrapped to add their wall time to the stage
STAGES = [
    ("ctnet.codec.bundle", "layout", "quantise + lay out"),
    ("ctnet.codec.bundle", "prepare_encode", "prepare: pixels, tables, lossless rebuild + errors"),
    ("ctnet.codec.plan", "to_pixels", "levels → pixels"),
    ("ctnet.codec.video", "_encode", "x265 encode"),
    ("ctnet.codec.video", "_decode_like", "decode back + compare"),
    ("ctnet.codec.tables", "compress", "tables (LZMA)"),
    ("ctnet.codec.bundle", "Reader.__init__", "reader: model built from the manifest"),
    ("ctnet.codec.bundle", "Reader._levels", "decode the stream"),
    ("ctnet.codec.bundle", "Reader.rebuild", "rebuild from the decoded levels"),
    ("ctnet.codec.decoded", "model_check", "model check (SHA-256 of the DCT weights)"),
    ("ctnet.codec.decoded", "non_finite_part", "finite check (materialised weights + probe)"),
    ("ctnet.codec.decoded", "check_members", "member sizes + SHA-256"),
    ("ctnet.codec.bundle", "_layer_rows", "per-layer report (errors, H0)"),
    ("ctnet.codec.bundle", "_layer_report", "per-layer report (errors, H0)"),  # its name before 2026-12-02
]
TIMES: dict[str, list[float]] = {}  # stage → [wall s, CPU s of the process (x265's threads too)]


def _wrap() -> None:
    for mod_name, attr, stage in STAGES:
        owner = importlib.import_module(mod_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        fn = getattr(owner, name, None)
        if fn is None:  # a stage this checkout does not have (the bench also times older checkouts)
            continue

        def timed(*a, _fn=fn, _stage=stage, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return _fn(*a, **k)
            finally:
                acc = TIMES.setdefault(_stage, [0.0, 0.0])
                acc[0] += time.perf_counter() - t0
                acc[1] += time.process_time() - c0
        setattr(owner, name, functools.wraps(fn)(timed))
        for user in ("ctnet.codec.bundle", "ctnet.codec.v1"):  # names imported into the readers
            m = importlib.import_module(user)
            if getattr(m, name, None) is fn:
                setattr(m, name, getattr(owner, name))


def _stage(label: str, fn) -> tuple[dict, object]:
    """``fn()`` timed (wall and CPU seconds) with the named stages inside it: [wall, CPU] each."""
    TIMES.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"stage": label, "s": round(wall, 3), "cpu_s": round(cpu, 3),
            **{k: [round(v[0], 3), round(v[1], 3)] for k, v in TIMES.items()}}, out


def _encode(W, api, path: str, settings: dict, quick: bool, label: str) -> list[dict]:
    task, out = _stage(label, lambda: W.encode_task(path=path, settings=settings, quick=quick,
                                                    progress=lambda *a: None))
    task["api.encode"] = round(out["seconds"], 3)
    blob = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
    sent, back = _stage("  its result pickled across the socket", lambda: pickle.loads(blob))
    sent["MB"] = round(len(blob) / 1e6, 1)
    rebuilt, result = _stage("  server: from_report", lambda: api.encode_result(back.pop("report")))
    task["bytes"] = result.total_bytes
    return [task, sent, rebuilt]


def measure(path: str, preset: str) -> dict:
    from app import worker as W
    from ctnet import api
    W._MODELS.clear()
    W._LAYOUT.clear()
    settings = api.EncodeSettings(preset=preset).to_dict()
    rows, _ = _stage("on selection: prepare (load + lay out)",
                     lambda: W.prepare_task(path=path, settings=settings, progress=lambda *a: None))
    rows = [rows]
    rows += _encode(W, api, path, {**settings, "preset": "ultrafast"}, True, "click: quick preview (ultrafast, short GOP)")
    rows += _encode(W, api, path, settings, False, f"then: exact encode ({preset})")
    return {"source": path, "preset": preset, "stages": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="+")
    p.add_argument("--preset", default="medium")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    from ctnet import api
    api.warm_codec()
    _wrap()
    rows = []
    for src in args.sources:
        row = measure(src, args.preset)
        rows.append(row)
        print(src)
        for st in row["stages"]:
            print("  " + json.dumps(st))
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
