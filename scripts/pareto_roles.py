"""Which checkpoints of a training run to encode: `best`, `smallest` and the best_{N}x roles that
lie on the run's own accuracy-vs-ratio frontier (by training's log), at most --max of them,
spread over the ratios. Prints RUN:ROLE,ROLE,… for scripts/build_demo.py --select.

    python scripts/pareto_roles.py runs/cpu18-lam5e-7 [--max 6]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ctnet import runs  # noqa: E402


def frontier_roles(run: Path, limit: int) -> list[str]:
    read = runs.read_run(run)  # the log, and each checkpoint's epoch from its header (no tensors read)
    rows = {r["epoch"]: r for r in read.log}
    epoch_of = {name: int(e.epoch) for e in read.entries if e.kind == "checkpoint" and e.epoch is not None
                for name in e.roles if name != "last"}
    points = sorted({(rows[e]["ratio"], rows[e]["acc1"], e) for e in epoch_of.values()})
    front = [p for p in points if not any(q[0] >= p[0] and q[1] > p[1] for q in points if q != p)]
    picked = {epoch_of["best"], epoch_of["smallest"]}
    # spread the rest evenly in log-ratio over the frontier
    rest = [p for p in front if p[2] not in picked]
    if rest and limit > len(picked):
        k = min(limit - len(picked), len(rest))
        lo, hi = math.log(rest[0][0]), math.log(rest[-1][0])
        for i in range(k):
            target = lo + (hi - lo) * (i / max(1, k - 1))
            picked.add(min(rest, key=lambda p: abs(math.log(p[0]) - target))[2])
    names = []
    for e in sorted(picked, key=lambda e: -rows[e]["ratio"]):
        # prefer the plain names; else the best_{N}x with the largest N pointing at that epoch
        for name in ("best", "smallest"):
            if epoch_of[name] == e:
                names.append(name)
                break
        else:
            names.append(max((n for n, ep in epoch_of.items() if ep == e and n.startswith("best_")),
                             key=lambda n: int(n[5:-1])))
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--max", type=int, default=6)
    args = ap.parse_args(argv)
    run = Path(args.run)
    print(f"{run.name}:{','.join(frontier_roles(run, args.max))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
