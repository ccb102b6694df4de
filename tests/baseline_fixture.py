"""A demo whose run was fine-tuned from a plain baseline the demo describes in its
``demo.json``, with that baseline's own rate–distortion sweep (``ctnet rd``'s cache format,
every point made by ``RDPoint``, the strict parser): what the coordinator's CPU runs from the
shared 89.53 % ResNet-18 bring, built here so the tests need none of it.

The cache holds points that must be drawn (full val split, 3,925 images) and points that must
not: a 1,000-image subset, the 500-image sample, another model's weights."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ctnet import rd

SHA = hashlib.sha256(b"the fixture's plain ResNet-18").hexdigest()
OTHER_SHA = hashlib.sha256(b"some other model").hexdigest()
INIT_FROM = "../shared/models/fixture-plain.pt"  # as ctnet train --init-from records it; no such file
FULL, FULL_DATA = 3925, "imagenette2-128/val:11e6ff140f1f7611"
FP32_BYTES = 44_764_968
RUN = "fixture-from-plain"
# (method, codec, settings, bytes, top-1, images, limit, data, source)
POINTS = [
    ("nncodec", "nncodec", {"qp": -29, "nonweight_qp": -75, "use_dq": True}, 1_628_241, 89.40, FULL, None, FULL_DATA, SHA),
    ("nncodec", "nncodec", {"qp": -28, "nonweight_qp": -75, "use_dq": True}, 1_472_760, 88.59, FULL, None, FULL_DATA, SHA),
    ("int", "int8+zstd", {"bits": 8, "granularity": "per-tensor", "zstd": 19}, 7_398_521, 89.50, FULL, None, FULL_DATA,
     SHA),
    ("bundle", "hevc", {"codec": "hevc", "bit_depth": 8, "crf": 0, "preset": "medium", "pix_fmt": "gray"}, 9_149_130,
     89.58, FULL, None, FULL_DATA, SHA),
    ("fp32", "fp32", {}, FP32_BYTES, 89.53, FULL, None, FULL_DATA, SHA),
    # not on the full val split, or not this model: never drawn beside the CTNet points
    ("nncodec", "nncodec", {"qp": -27, "nonweight_qp": -75, "use_dq": True}, 1_227_184, 80.50, 1000, 1000, FULL_DATA,
     SHA),
    ("int", "int4+zstd", {"bits": 4, "granularity": "per-tensor", "zstd": 19}, 3_111_111, 70.00, 500, None,
     "sample/val:10f9785b40146a75", SHA),
    ("nncodec", "nncodec", {"qp": -30, "nonweight_qp": -75, "use_dq": True}, 2_222_222, 89.00, FULL, None, FULL_DATA,
     OTHER_SHA),
]
DRAWN = {1_628_241, 1_472_760, 7_398_521, 9_149_130, FP32_BYTES}  # the bytes of the points on the full split


def write_cache(path: Path) -> Path:
    for method, codec, settings, nbytes, acc, images, limit, data, source in POINTS:
        job = rd.Job(method, codec, tuple(sorted(settings.items())))
        point = rd.RDPoint(method=method, codec=codec, settings=settings, label=job.label(), bytes=nbytes,
                           ratio=FP32_BYTES / nbytes, acc1=acc, acc5=98.0, images=images, device="cpu",
                           encode_seconds=1.0, decode_seconds=0.5, source_sha256=source, data=data, limit=limit,
                           measured="2026-12-02T00:00:00", load_average=1.0)
        rd.write_point(path, rd.point_key(source, job, data, limit), point)
    return path


def index(default: str | None = f"runs/{RUN}/bundles/best", **change) -> dict:
    entry = {"name": "plain ResNet-18 (fixture)", "init_from": INIT_FROM, "sha256": SHA, "acc1": 89.53,
             "images": FULL, "rd": f"rd/{SHA[:32]}.json", **change}
    return {"format": "ctnet-demo", "version": 1, **({"default": default} if default else {}), "baselines": [entry]}


def build(dest: Path, demo: Path) -> Path:
    """``dest``: ``demo``'s runs, notes and sample (linked, not copied) plus one run fine-tuned
    from the fixture baseline (a copy of one of ``demo``'s bundles, decoded on the full split
    per its results.json), the baseline's rd cache in ``rd/`` and a ``demo.json`` naming it
    and the new run's bundle as the default."""
    dest.mkdir(parents=True)
    (dest / "runs").mkdir()
    for item in ("DEMO.md", "sample"):
        if (demo / item).exists():
            (dest / item).symlink_to(demo / item)
    sources = sorted(p for p in (demo / "runs").iterdir() if (p / "bundles").is_dir())
    for run in sources:
        (dest / "runs" / run.name).symlink_to(run)
    source = next(b for run in sources for b in sorted((run / "bundles").iterdir()) if (b / "manifest.json").is_file())
    run = dest / "runs" / RUN
    shutil.copytree(source, run / "bundles" / "best")
    (run / "config.json").write_text(json.dumps({"arch": "resnet18", "init_from": INIT_FROM, "epochs": 20}))
    size = sum(f.stat().st_size for f in (run / "bundles" / "best").iterdir())
    (run / "results.json").write_text(json.dumps({"best": {
        "bundle": "bundles/best", "total_bytes": size, "ratio": FP32_BYTES / size,
        "decoded": {"acc1": 88.9, "acc5": 98.5, "images": FULL, "device": "cpu", "data": "imagenette2-128 val"}}}))
    write_cache(dest / "rd" / f"{SHA[:32]}.json")
    (dest / "demo.json").write_text(json.dumps(index(), indent=1))
    return dest
