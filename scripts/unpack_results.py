"""Rebuild ctnet checkpoints from ``pack_results.py`` files: PACK_DIR → RUNS_DIR.

Each ``<role>.st.xz`` becomes ``RUNS_DIR/<run>/checkpoints/<role>.safetensors``; a packed
CTNet tensor is dequantised exactly as the export (and the training forward pass) does.
"""
from __future__ import annotations

import json
import lzma
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors.torch import load  # noqa: E402

from ctnet.checkpoint import save_checkpoint  # noqa: E402
from ctnet.quant import dequantize_image, image_to_tensor  # noqa: E402


def unpack_file(src: Path, dest: Path) -> None:
    raw = lzma.decompress(src.read_bytes())
    from safetensors import safe_open  # header metadata
    tmp = dest.with_suffix(".tmp-header")
    tmp.write_bytes(raw)
    with safe_open(str(tmp), framework="pt") as f:
        header = f.metadata()
    tmp.unlink()
    tensors = load(raw)
    packed = json.loads(header["packed"])
    state = {k[4:]: v.float() if header["fp16"] == "1" and v.is_floating_point() else v
             for k, v in tensors.items() if k.startswith("raw.")}
    for name, shape in packed.items():
        img = dequantize_image(tensors[f"pix.{name}"].long(), tensors[f"scale.{name}"],
                               tensors[f"zp.{name}"].long())
        state[name] = image_to_tensor(img, shape).contiguous()
    meta = json.loads(header["ctnet"])
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    if header["fp16"] == "1":
        meta["note"] = "weights brought back from the GPU machine in float16"
    save_checkpoint(dest, state, meta)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pack, runs = Path(argv[0]), Path(argv[1])
    for run in sorted(p for p in pack.iterdir() if p.is_dir()):
        out = runs / run.name
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        for name in ("train_log.jsonl", "config.json"):
            shutil.copyfile(run / name, out / name)
        for src in sorted(run.glob("*.st.xz")):
            dest = out / "checkpoints" / (src.name[: -len(".st.xz")] + ".safetensors")
            unpack_file(src, dest)
            print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
