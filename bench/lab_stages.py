"""Where the Codec lab's Encode click → first result goes, stage by stage, as the lab's own calls in one process:

    .venv/bin/python bench/lab_stages.py [--preset P] SOURCE... [--json-out FILE]

For each model source (a demo bundle folder, a checkpoint file, a plain torchvision ``.pt`` as an
upload would be loaded), once: what the worker does on checkpoint selection (``prepare``: load it,
lay it out for the lab's settings), then on the click the worker's ``encode`` task split into its stages (quantise + lay out, x265 encode, decode back and
compare, the tables, the rebuild from what a decoder sees with its checks, the per-layer report, the
reconstruction errors, the report's tensors), the result pickled across the socket, and the server's
``from_report`` (member sizes and SHA-256, the rebuilt model's checks). Stage times come from
wrapping the named functions (inclusive wall time, so nested stages are listed under their parent);
on a loaded machine read them as shares of one run.
"""
from __future__ import annotations

import argparse
import functools
import json
import pickle
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]  # bench/app.py is not app/

# (module, attribute, stage name): wrapped to add their wall time to the stage
STAGES = [
    ("ctnet.codec.bundle", "layout", "quantise + lay out"),
    ("ctnet.codec.video", "_encode", "x265 encode"),
    ("ctnet.codec.video", "_decode_like", "decode back + compare"),
    ("ctnet.codec.bundle", "T.compress", "tables (LZMA)"),
    ("ctnet.codec.bundle", "Reader.__init__", "reader: model built from the manifest"),
    ("ctnet.codec.bundle", "Reader.rebuild", "rebuild from the decoded levels"),
    ("ctnet.codec.bundle", "Reader._levels", "decode the stream (load)"),
    ("ctnet.codec.decoded", "model_check", "model check (SHA-256 of the DCT weights)"),
    ("ctnet.codec.decoded", "non_finite_part", "finite check (materialised weights + probe)"),
    ("ctnet.codec.decoded", "check_members", "member sizes + SHA-256"),
    ("ctnet.codec.bundle", "_layer_report", "per-layer report"),
]


def _wrap() -> None:
    import importlib
    for mod_name, attr, stage in STAGES:
        owner = importlib.import_module(mod_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        fn = getattr(owner, name)

        def timed(*a, _fn=fn, _stage=stage, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                TIMES[_stage] = TIMES.get(_stage, 0.0) + time.perf_counter() - t0
        setattr(owner, name, functools.wraps(fn)(timed))
        if mod_name == "ctnet.codec.decoded":  # imported by name into the readers
            import ctnet.codec.bundle as B
            if getattr(B, name, None) is fn:
                setattr(B, name, getattr(owner, name))


def measure(path: str, preset: str) -> dict:
    from app import worker as W
    from ctnet import api
    W._MODELS.clear()
    TIMES.clear()
    stages: dict = {}
    W._LAYOUT.clear()
    settings = api.EncodeSettings(preset=preset).to_dict()
    t0 = time.perf_counter()
    W.prepare_task(path=path, settings=settings, progress=lambda *a: None)
    stages["on selection: prepare (load + lay out)"] = {"s": time.perf_counter() - t0, **_take()}
    t0 = time.perf_counter()
    out = W.encode_task(path=path, settings=settings, progress=lambda *a: None)
    stages["worker encode task"] = {"s": time.perf_counter() - t0, "api.encode": out["seconds"], **_take()}
    t0 = time.perf_counter()
    blob = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
    out = pickle.loads(blob)
    stages["pickle across the socket"] = {"s": time.perf_counter() - t0, "MB": len(blob) / 1e6}
    t0 = time.perf_counter()
    result = api.encode_result(out.pop("report"))
    stages["server: from_report"] = {"s": time.perf_counter() - t0, **_take()}
    return {"source": path, "preset": preset, "bytes": result.total_bytes, "stages": stages}


TIMES: dict[str, float] = {}


def _take() -> dict:
    out = {k: round(v, 3) for k, v in TIMES.items()}
    TIMES.clear()
    return out


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
        print(json.dumps(row, default=lambda x: round(x, 3)), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
