"""Pack a GPU machine's training runs into few small files to bring back (no PyAV needed).

A CTNet checkpoint trained with --pixel-bit-depth B is fully described, for its B-bit
export, by its B-bit tile pixels: they are stored as integers (plus per-tile scale and
zero point, BN and the metadata) and xz-compressed; ``unpack_results.py`` rebuilds the
checkpoint bit-exactly with ``ctnet.quant.dequantize_image``. Plain baselines travel as
fp16. Usage: pack_results.py RUNS_DIR PACK_DIR [--max-per-run N]
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from safetensors.torch import save  # noqa: E402

from ctnet.checkpoint import read_checkpoint, model_from_checkpoint  # noqa: E402
from ctnet.export import video_tensors  # noqa: E402
from ctnet.quant import quantize_image, tensor_to_image  # noqa: E402


def pareto_files(run: Path, max_files: int) -> list[tuple[str, Path]]:
    """Distinct checkpoint files of a run (hard links counted once), spread over ratios."""
    seen, files = set(), []
    folder = run / "checkpoints"
    roles = sorted((p for p in folder.glob("best_*x.safetensors")), key=lambda p: int(p.stem[5:-1]))
    for p in [folder / "best.safetensors", *roles, folder / "smallest.safetensors"]:
        if p.exists() and p.stat().st_ino not in seen:
            seen.add(p.stat().st_ino)
            files.append((p.stem, p))
    if len(files) > max_files:  # keep best, smallest and evenly spaced ratios between
        if max_files == 1:
            return files[:1]
        idx = sorted({round(i * (len(files) - 1) / (max_files - 1)) for i in range(max_files)})
        files = [files[i] for i in idx]
    return files


def pack_one(args) -> str:
    path, dest = args
    ckpt = read_checkpoint(path)
    bits = int(ckpt.meta.get("pixel_bit_depth", 0))
    tensors, packed = {}, {}
    if bits:
        model = model_from_checkpoint(ckpt)
        video = video_tensors(model)
        for name, value in ckpt.state_dict.items():
            if name in video:
                pixels, scale, zero_point = quantize_image(tensor_to_image(value), bits)
                dtype = torch.uint8 if bits == 8 else torch.int16
                tensors[f"pix.{name}"] = pixels.to(dtype)
                tensors[f"scale.{name}"] = scale
                tensors[f"zp.{name}"] = zero_point.to(torch.int16)
                packed[name] = list(value.shape)
            else:
                tensors[f"raw.{name}"] = value
    else:
        for name, value in ckpt.state_dict.items():
            tensors[f"raw.{name}"] = value.half() if value.is_floating_point() else value
    meta = {"ctnet": json.dumps(ckpt.meta), "packed": json.dumps(packed), "bits": str(bits),
            "fp16": "0" if bits else "1"}
    blob = lzma.compress(save(tensors, metadata=meta), preset=6)
    Path(dest).write_bytes(blob)
    return f"{dest} {len(blob)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("pack")
    ap.add_argument("--max-per-run", type=int, default=8)
    args = ap.parse_args(argv)
    runs, pack = Path(args.runs), Path(args.pack)
    pack.mkdir(parents=True, exist_ok=True)
    jobs = []
    for run in sorted(p for p in runs.iterdir() if (p / "train_log.jsonl").exists()):
        out = pack / run.name
        out.mkdir(exist_ok=True)
        for name in ("train_log.jsonl", "config.json"):
            (out / name).write_bytes((run / name).read_bytes())
        plain = json.loads((run / "config.json").read_text()).get("plain", False)
        files = pareto_files(run, 1 if plain else args.max_per_run)
        jobs += [(str(p), str(out / f"{role}.st.xz")) for role, p in files]
    with ProcessPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
        for line in pool.map(pack_one, jobs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
