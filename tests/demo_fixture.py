"""Build a demo folder in the layout of ``assets/demo`` from real training runs.

The app tests use ``assets/demo`` when it exists; until then they build a small one with
:func:`build_demo` from a short real CPU training run (see ``tests/conftest.py``). It also
builds a development demo from local runs::

    .venv/bin/python tests/demo_fixture.py DEST --data ../shared/data/imagenette2-128 \
        --run runs/gpu/ctnet18-export-lam1e-6:best,smallest --run ... [--preset fast]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# what the app tests open: the entry point, and each page as AppTest.switch_page names it
MAIN = str(REPO / "app" / "main.py")
PAGES = {"checkpoints": "../pages/checkpoints.py", "coefficients": "../pages/coefficients.py",
         "frames": "../pages/frames.py", "codec_lab": "../pages/codec_lab.py", "accuracy": "../pages/accuracy.py",
         "compare": "../pages/compare.py", "rate_distortion": "../pages/rate_distortion.py"}

from ctnet import api  # noqa: E402
from ctnet.data import load_split  # noqa: E402
from ctnet.evaluate import evaluate  # noqa: E402


def copy_sample(data: Path, dest: Path, per_class: int) -> int:
    """The first ``per_class`` val images of every class folder of ``data``."""
    n = 0
    for class_dir in sorted((data / "val").iterdir()):
        if not class_dir.is_dir():
            continue
        out = dest / "val" / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for img in sorted(class_dir.iterdir())[:per_class]:
            shutil.copy(img, out / img.name)
            n += 1
    return n


def build_demo(dest: Path, run_roles: dict[str, tuple[Path, list[str]]], data: Path, *, per_class: int,
               preset: str = "fast", eval_data: Path | None = None, eval_limit: int | None = None,
               note: str = "", log=print) -> Path:
    """``dest/{DEMO.md, sample/val/<WNID>/, runs/<name>/{train_log.jsonl, config.json,
    bundles/<role>/, results.json}}``: every bundle encoded (8-bit lossless, raw BN, at
    ``preset``) from the run's checkpoint and its decoded accuracy measured on
    ``eval_data`` (default: the copied sample)."""
    dest.mkdir(parents=True, exist_ok=True)
    images = copy_sample(data, dest / "sample", per_class)
    eval_root = eval_data or dest / "sample"
    lines = []
    for name, (run_dir, roles) in run_roles.items():
        out = dest / "runs" / name
        (out / "bundles").mkdir(parents=True, exist_ok=True)
        for f in ("train_log.jsonl", "config.json"):
            if (run_dir / f).is_file():
                shutil.copy(run_dir / f, out / f)
        results, by_epoch = {}, {}
        for role in roles:
            loaded = api.load_any(run_dir / "checkpoints" / f"{role}.safetensors")
            meta = loaded.meta
            target = out / "bundles" / role
            if meta.get("epoch") in by_epoch:  # role files of one epoch: the same bundle
                shutil.copytree(out / "bundles" / by_epoch[meta["epoch"]], target)
                results[role] = {**results[by_epoch[meta["epoch"]]], "bundle": f"bundles/{role}"}
                continue
            t0 = time.perf_counter()
            enc = api.encode(loaded, preset=preset)
            api.write_encoded(enc, target)
            split = load_split(eval_root, "val", num_classes=loaded.num_classes, size=loaded.image_size,
                               limit=eval_limit, cache=True)
            acc = evaluate(enc.model, split, device="cpu", batch_size=100)
            results[role] = {"bundle": f"bundles/{role}", "total_bytes": enc.total_bytes, "ratio": enc.ratio,
                             "decoded": {"acc1": acc["acc1"], "acc5": acc["acc5"], "images": acc["images"],
                                         "data": str(eval_root), "device": acc["device"]}}
            by_epoch[meta.get("epoch")] = role
            log(f"{name}/{role}: epoch {meta.get('epoch')}, {enc.total_bytes:,} B ({enc.ratio:.1f}x), "
                f"decoded top-1 {acc['acc1']:.2f} % on {acc['images']} images ({time.perf_counter() - t0:.0f} s)")
            lines.append(f"- `{name}/{role}`: epoch {meta.get('epoch')}, {enc.total_bytes:,} B "
                         f"({enc.ratio:.1f}×), decoded top-1 {acc['acc1']:.2f} % on {acc['images']} images")
        (out / "results.json").write_text(json.dumps(results, indent=2))
    (dest / "DEMO.md").write_text(
        f"# Test demo: real runs, encoded at {preset}\n\n{note}\n\n"
        f"Sample: {images} val images ({per_class} per class) copied from `{data}`.\n"
        f"Bundles: 8-bit lossless, raw BN, preset {preset}; decoded accuracy measured on `{eval_root}`.\n\n"
        + "\n".join(lines) + "\n")
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dest", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", action="append", required=True, help="RUN_DIR:role,role")
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--preset", default="fast")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    run_roles = {}
    for spec in args.run:
        run_dir, roles = spec.rsplit(":", 1)
        run_roles[Path(run_dir).name] = (Path(run_dir), roles.split(","))
    build_demo(args.dest, run_roles, args.data, per_class=args.per_class, preset=args.preset,
               eval_data=args.data, eval_limit=args.eval_limit, note=args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
