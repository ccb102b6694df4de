"""The README's table of every registered architecture: where its parameters sit, as
``ctnet summary --arch NAME --num-classes N --json`` reports them.

    python scripts/architecture_table.py [--num-classes 10 1000]

Per architecture: parameters (with BN statistics, as the fp32 size counts them) and the shares
in spatial DCT convs, channel-DCT 1×1, plain layers (every Linear, grouped 1×1) and the rest
(BN, LayerNorm, layer scale), for the first head size; the DCT-able share (spatial + channel
DCT) for every head size asked for.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ctnet.cli import main as ctnet  # noqa: E402
from ctnet.models import REGISTRY  # noqa: E402


def summary(arch: str, num_classes: int) -> dict[str, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if ctnet(["summary", "--arch", arch, "--num-classes", str(num_classes), "--json"]) != 0:
            raise SystemExit(f"ctnet summary --arch {arch} failed")
    return {r["group"]: r for r in json.loads(out.getvalue())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-classes", type=int, nargs="+", default=[10, 1000])
    args = p.parse_args(argv)
    first, *rest = args.num_classes
    share = lambda rows, g: 100 * rows[g]["share"] if g in rows else 0.0
    dct_able = lambda rows: share(rows, "spatial DCT") + share(rows, "channel-DCT 1x1")
    print(f"| architecture | what it holds | parameters ({first} classes) | spatial DCT | channel-DCT 1×1 | plain | "
          f"other | DCT-able ({first} classes) |" + "".join(f" DCT-able ({n} classes) |" for n in rest))
    print("|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(rest))
    for arch in REGISTRY:
        rows = summary(arch.name, first)
        cells = [f"{share(rows, g):.1f} %" for g in ("spatial DCT", "channel-DCT 1x1", "plain", "other")]
        print(f"| `{arch.name}` | {arch.layers} | {rows['total']['parameters']:,} | {' | '.join(cells)} | "
              f"**{dct_able(rows):.1f} %** |" + "".join(f" {dct_able(summary(arch.name, n)):.1f} % |" for n in rest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
