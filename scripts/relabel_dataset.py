"""Make a user-style image folder from ImageNette: a few of its classes under other names.

    python scripts/relabel_dataset.py SRC DST [WNID=name ...] [--force]

SRC is an ImageNette root (train/ and val/ of WordNet-ID folders); DST gets train/<name>/ and
val/<name>/ with every image of the chosen classes (hard links where the file system allows,
else copies). Default classes: tench → fish, English springer → dog, French horn → horn,
parachute → parachute. DST is written beside itself and renamed into place when complete.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

DEFAULT = ("n01440764=fish", "n02102040=dog", "n03394916=horn", "n03888257=parachute")


def relabel(src: Path, dst: Path, classes: dict[str, str], force: bool = False) -> Path:
    if dst.exists() and not force:
        raise SystemExit(f"{dst} exists; pass --force to replace it")
    if len(set(classes.values())) != len(classes):
        raise SystemExit("two classes get the same name")
    tmp = dst.parent / f".{dst.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for split in ("train", "val"):
        for wnid, name in classes.items():
            folder = src / split / wnid
            if not folder.is_dir():
                raise SystemExit(f"{folder} does not exist")
            out = tmp / split / name
            out.mkdir(parents=True)
            for image in sorted(folder.iterdir()):
                try:
                    os.link(image, out / image.name)
                except OSError:
                    shutil.copy2(image, out / image.name)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("classes", nargs="*", default=list(DEFAULT), metavar="WNID=name")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    classes = dict(c.split("=", 1) for c in args.classes)
    out = relabel(args.src, args.dst, classes, args.force)
    counts = {s: sum(1 for _ in (out / s).rglob("*") if _.is_file()) for s in ("train", "val")}
    print(f"{out}: {len(classes)} classes ({', '.join(classes.values())}), {counts['train']} train / "
          f"{counts['val']} val images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
