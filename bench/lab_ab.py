"""The Codec lab's click → first result as library calls at two checkouts, alternated under the same load:

    git worktree add --detach /tmp/other COMMIT
    .venv/bin/python bench/lab_ab.py --a /tmp/other --b . [--rounds 3] SOURCE=FIRST_A,FIRST_B ...

FIRST_A / FIRST_B: what each checkout's lab codes first for that source on the click — a preset
(``medium``: the exact encode) or ``quick`` (the short-GOP ultrafast preview of a checkout that has
``api.encode(quick=)``; a plain ``ultrafast`` is the older preview). Each checkout runs in a warm
process of its own; per source and round both do, one after the other (the order alternates), the
worker's ``prepare`` (load, and lay out where the checkout does so; timed apart, before the click),
then the click path: the worker's ``encode_task``, its result pickled, the server's
``from_report``. Prints one JSON line per run and the median ratio B/A per source, of the wall
seconds and of the process's CPU seconds (x265's threads included: what a loaded machine
distorts least). On a loaded machine the ratio is the figure, not the seconds.
"""
from __future__ import annotations

import argparse
import inspect
import json
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path


def serve(repo: str) -> None:
    """One checkout's side: requests ``path<TAB>first`` on stdin, one JSON line each on stdout."""
    bench = Path(__file__).resolve().parent  # bench/app.py is not app/
    sys.path[:] = [repo] + [p for p in sys.path if Path(p or ".").resolve() != bench]
    from app import worker as W
    from ctnet import api
    api.warm_codec()
    new = "quick" in inspect.signature(W.encode_task).parameters
    print("ready", flush=True)
    for line in sys.stdin:
        path, first = line.rstrip("\n").split("\t")
        quick = first == "quick"
        W._MODELS.clear()
        getattr(W, "_LAYOUT", {}).clear()
        settings = api.EncodeSettings(preset="ultrafast" if quick else first).to_dict()
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        if "settings" in inspect.signature(W.prepare_task).parameters:
            W.prepare_task(path=path, settings=settings, progress=lambda *a: None)
        else:
            W.prepare_task(path=path, progress=lambda *a: None)
        t["prepare_s"] = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        out = W.encode_task(path=path, settings=settings, progress=lambda *a: None, **({"quick": quick} if new else {}))
        out = pickle.loads(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
        result = api.encode_result(out.pop("report"))
        t["click_s"], t["click_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({**{k: round(v, 3) for k, v in t.items()}, "bytes": result.total_bytes}), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("jobs", nargs="+", metavar="SOURCE=FIRST_A,FIRST_B")
    p.add_argument("--a", required=True, help="checkout A (e.g. a detached worktree of main)")
    p.add_argument("--b", default=".", help="checkout B")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    repos = {"a": str(Path(args.a).resolve()), "b": str(Path(args.b).resolve())}
    procs = {k: subprocess.Popen([sys.executable, __file__, "--a", "-", "--serve", r, "x=y,z"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for k, r in repos.items()}
    for proc in procs.values():
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    ratios: dict[str, list[float]] = {}
    cpu_ratios: dict[str, list[float]] = {}  # CPU seconds of the process (x265's threads included)
    for rnd in range(args.rounds):
        for job in args.jobs:
            source, firsts = job.rsplit("=", 1)
            first = dict(zip("ab", firsts.split(",")))
            rows = {}
            for k in ("ab" if rnd % 2 == 0 else "ba"):
                proc = procs[k]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{source}\t{first[k]}\n")
                proc.stdin.flush()
                rows[k] = json.loads(proc.stdout.readline())
                print(json.dumps({"round": rnd, "checkout": repos[k], "source": source, "first": first[k], **rows[k]}),
                      flush=True)
            ratios.setdefault(source, []).append(rows["b"]["click_s"] / rows["a"]["click_s"])
            cpu_ratios.setdefault(source, []).append(rows["b"]["click_cpu_s"] / rows["a"]["click_cpu_s"])
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    for source, r in ratios.items():
        c = cpu_ratios[source]
        print(f"{source}: click → first result B/A median {statistics.median(r):.2f} (range {min(r):.2f}–{max(r):.2f}, "
              f"{len(r)} rounds); its CPU seconds B/A {statistics.median(c):.2f} ({min(c):.2f}–{max(c):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
