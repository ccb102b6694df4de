"""Shared timing helper for the bench scripts: interleaved repetitions, median seconds."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 2,
                        sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Run every function ``warmup`` times, then ``repeats`` rounds of one call each, in
    turn, so that machine noise hits all of them alike; return the median seconds.
    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before and after each timed call only,
    so the device is drained around the timing and nowhere inside the functions."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def batch_bench_args(description: str, batch: int, repeats: int, argv=None):
    """The flags both model benches take (--batch, --size, --repeats, --device), parsed;
    then the seeded device and one random input batch: ``(args, device, x)``."""
    import argparse

    import torch
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    return args, dev, torch.randn(args.batch, 3, args.size, args.size, device=dev)


def print_ratios(title: str, medians: dict[str, float], width: int, digits: int) -> None:
    """Each median in ms and as a ratio of the first (the baseline)."""
    base = next(iter(medians.values()))
    print(title)
    for name, t in medians.items():
        print(f"  {name:<{width}} {t * 1000:9.1f} ms   {t / base:5.{digits}f}x")
