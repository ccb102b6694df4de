"""Build the app's embedded demo (assets/demo) from training runs, or re-encode its bundles.

    python scripts/build_demo.py --runs runs/gpu --data ../shared/data/imagenette2-128 \
        --select ctnet18-export-lam1e-6:best,smallest ctnet18-export-lam1e-7:best,best_21x ...
    python scripts/build_demo.py --reencode --data ../shared/data/imagenette2-128   # every demo bundle → v2

``--reencode`` transcodes every bundle already in the demo to the current format with the
default settings (the decoded weights keep their grid, so they stay exactly the same),
measures the new bundle's decoded top-1 on the full val split, keeps the previous bundle's
bytes and decoded top-1 under ``previous`` in ``results.json``, and replaces the bundle.

For every selected checkpoint: encode it (8-bit lossless H.265, BN raw, unless told
otherwise: ``--bit-depth N`` for a run trained with ``--pixel-bit-depth N``, and ``--dither A``
for one trained with ``--export-dither A``; a run whose ``config.json`` asks for another grid
is named in a note), write the bundle to ``assets/demo/runs/<run>/bundles/<role>/``, decode it back
and measure its top-1/top-5 on the full val split; the measurements go to
``results.json`` beside the run's ``train_log.jsonl`` and ``config.json``. A class-balanced
sample of real val images (``--sample-per-class``) goes to ``assets/demo/sample/val``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctnet import api  # noqa: E402
from ctnet.fileio import atomic_write_text  # noqa: E402
from ctnet.codec.manifest import EncodeSettings  # noqa: E402
from ctnet.data import load_split, split_dir  # noqa: E402
from ctnet.evaluate import evaluate  # noqa: E402


def copy_sample(data: Path, dest: Path, per_class: int) -> int:
    val = split_dir(data, "val")
    if dest.exists():
        shutil.rmtree(dest)
    n = 0
    for class_dir in sorted(p for p in val.iterdir() if p.is_dir()):
        (dest / class_dir.name).mkdir(parents=True)
        for img in sorted(class_dir.iterdir())[:per_class]:
            shutil.copy(img, dest / class_dir.name / img.name)
            n += 1
    return n


def reencode(out: Path, data: str, settings) -> int:
    splits = {}
    for results_path in sorted((out / "runs").glob("*/results.json")):
        results = json.loads(results_path.read_text())
        for role, r in sorted(results.items()):
            bundle = results_path.parent / r["bundle"]
            loaded = api.load_any(bundle)
            enc = api.encode(loaded, settings)
            key = (loaded.num_classes, loaded.image_size, json.dumps(loaded.label_map))
            if key not in splits:
                splits[key] = load_split(data, "val", labels=loaded.label_map, num_classes=key[0], size=key[1],
                                         cache=True)
            decoded = evaluate(api.decode(enc.files).model, splits[key], workers=0)
            was_v1 = "bn_crf" in r["settings"]  # v1 settings; a bundle replaced by an interrupted run is v2 already
            previous = r.get("previous") or {"version": 1 if was_v1 else loaded.bundle.version,
                                             "total_bytes": r["total_bytes"],
                                             "ratio": r["ratio"], "settings": r["settings"],
                                             "decoded": r["decoded"]}
            api.write_encoded(enc, bundle, overwrite=True)
            results[role] = {**r, "total_bytes": enc.total_bytes, "ratio": enc.ratio,
                             "settings": enc.settings, "bits_per_nonzero": enc.bits_per_nonzero,
                             "entropy_bits_per_nonzero": enc.entropy_bits_per_nonzero, "nonzero": enc.nonzero,
                             "files": {k: len(v) for k, v in sorted(enc.files.items())}, "digest": enc.digest,
                             "decoded": {**decoded, "data": f"{Path(data).name} val"}, "previous": previous}
            atomic_write_text(results_path, json.dumps(results, indent=1))
            print(f"{results_path.parent.name}:{role}: {previous['total_bytes']:,} → {enc.total_bytes:,} B "
                  f"({enc.ratio:.1f}x), decoded top-1 {previous['decoded']['acc1']:.2f} → {decoded['acc1']:.2f} %",
                  flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reencode", action="store_true", help="re-encode the demo's bundles (see above)")
    ap.add_argument("--runs", help="folder of training runs (each with checkpoints/)")
    ap.add_argument("--data", required=True, help="ImageNette root; its full val split is used")
    ap.add_argument("--out", default="assets/demo")
    ap.add_argument("--select", nargs="+", metavar="RUN:ROLE[,ROLE...]")
    ap.add_argument("--sample-per-class", type=int, default=50)
    ap.add_argument("--crf", type=int, default=0)
    ap.add_argument("--bit-depth", type=int, default=8)
    ap.add_argument("--dither", type=float, default=0.0, metavar="A",
                    help="subtractive dither in pixel steps (the --export-dither the runs were trained with)")
    ap.add_argument("--preset", default="medium")
    args = ap.parse_args(argv)
    settings = EncodeSettings(crf=args.crf, bit_depth=args.bit_depth, preset=args.preset, dither=args.dither).validate()
    if args.reencode:
        return reencode(Path(args.out), args.data, settings)
    if not (args.runs and args.select):
        ap.error("--runs and --select are needed (or --reencode)")
    runs, out = Path(args.runs), Path(args.out)
    n = copy_sample(Path(args.data), out / "sample" / "val", args.sample_per_class)
    print(f"sample: {n} val images")
    splits = {}
    for item in args.select:
        run_name, roles = item.split(":")
        src, dst = runs / run_name, out / "runs" / run_name
        (dst / "bundles").mkdir(parents=True, exist_ok=True)
        for name in ("train_log.jsonl", "config.json"):
            shutil.copyfile(src / name, dst / name)
        trained = json.loads((src / "config.json").read_text())
        grid = (trained.get("pixel_bit_depth", 0), float(trained.get("export_dither", 0.0)))
        if grid[0] and grid != (settings.bit_depth, settings.dither):  # export-aware, for another grid
            print(f"note: {run_name} was trained for --bit-depth {grid[0]} --dither {grid[1]:g}; encoding with "
                  f"--bit-depth {settings.bit_depth} --dither {settings.dither:g}", file=sys.stderr, flush=True)
        results_path = dst / "results.json"
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        for role in roles.split(","):
            loaded = api.load_any(src / "checkpoints" / f"{role}.safetensors")
            enc = api.encode(loaded, settings)
            bundle = api.write_encoded(enc, dst / "bundles" / role, overwrite=True)
            key = (loaded.num_classes, loaded.image_size, json.dumps(loaded.label_map))
            if key not in splits:
                splits[key] = load_split(args.data, "val", labels=loaded.label_map, num_classes=key[0],
                                         size=key[1], cache=True)
            decoded = evaluate(api.decode(bundle).model, splits[key], workers=0)
            results[role] = {"bundle": f"bundles/{role}", "total_bytes": enc.total_bytes, "ratio": enc.ratio,
                             "epoch": loaded.epoch, "acc1_before_export": loaded.metrics.get("acc1"),
                             "settings": settings.to_dict(),
                             "decoded": {**decoded, "data": f"{Path(args.data).name} val"}}
            print(f"{run_name}:{role} epoch {loaded.epoch}: {enc.total_bytes:,} B "
                  f"({enc.ratio:.1f}x), decoded top-1 {decoded['acc1']:.2f} % on {decoded['images']} images",
                  flush=True)
            atomic_write_text(results_path, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
