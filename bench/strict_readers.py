"""Issue 23 item 5, measured on the smallest of the three validator families: ctnet.rd's point
reader as it is, against the same reader rewritten on msgspec and on pydantic v2 (strict,
extra="forbid", bounds from ctnet.limits; bench/rd_points_lib.py). Four things per reader:

(a) tests/test_rd.py's parser tests (the tampered points, the corrupted caches, the CLI's
    one-line exit 2, the shipped caches' round trip) run on each reader: passed / failed;
(b) hostile inputs under the 64 MiB cache cap, one field far past its bound: peak memory
    (tracemalloc's, and the resident set's for allocations tracemalloc cannot see) and time of
    the parse, as a ratio to ctnet's reader in the same run; for the libraries also their best
    case, the whole cache decoded from text straight into typed points;
(c) lines of code (non-blank, non-comment) of each reader's checks;
(d) import cost each library adds to ctnet.rd's (CPU and wall ms, median of fresh processes).

    .venv/bin/pip install msgspec==0.23.0 pydantic==2.14.4   # not ctnet dependencies
    nice -n 19 env OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python bench/strict_readers.py [--json-out F]
"""
from __future__ import annotations

import argparse
import functools
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
print = functools.partial(print, flush=True)  # noqa: A001  (a long run's output survives an interrupt)
sys.path.insert(0, str(REPO))

TESTS = ["tests/test_rd.py", "-k", "tampered or corrupted or round_trips or malformed or shipped or two_writing "
         "or full_split"]
READERS = ("ctnet", "msgspec", "pydantic")
KEY = "3f2a" + "0" * 60
REUSED = ("_Invalid", "_show", "_name", "_json", "_streams", "_notes")  # what the prototypes call


# --- (a) the tests, on each reader --------------------------------------------------------------------

def run_tests(reader: str) -> dict:
    """tests/test_rd.py's parser tests in a fresh process with RDPoint's checks swapped for ``reader``'s."""
    code = ("import sys, pytest\nsys.path.insert(0, 'bench')\n"
            + ("plugins = []\n" if reader == "ctnet" else
               f"import rd_points_lib as L\nplugins = [L.Swap(L.check({reader!r}))]\n")
            + f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-rf', *{TESTS!r}], plugins=plugins))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    tail = [x for x in r.stdout.splitlines() if x.strip()]
    summary = tail[-1] if tail else r.stderr[-300:]
    failed = [x[len("FAILED "):] for x in tail if x.startswith("FAILED ")]
    count = {w: int(n) for n, w in (p.split()[:2] for p in summary.strip("= ").split(" in ")[0].split(", "))
             if w in ("passed", "failed")}
    return {"passed": count.get("passed", 0), "failed": count.get("failed", 0), "failures": failed}


# --- (b) hostile inputs: memory and time -------------------------------------------------------------

def _point(**change) -> dict:
    p = {"method": "fp32", "codec": "fp32", "settings": {}, "label": "fp32 (weights as loaded)", "bytes": 1000,
         "ratio": 1.0, "acc1": 80.0, "acc5": 95.0, "images": 500, "device": "cpu", "encode_seconds": 0.0,
         "decode_seconds": 0.0, "source_sha256": "b3" * 32, "data": "d/val:0", "limit": None,
         "measured": "2026-12-02T00:00:00", "load_average": None}
    return {**p, **change}


def _cache(point: dict) -> bytes:
    return json.dumps({"format": "ctnet-rd-cache", "version": 1, "points": {KEY: point}}).encode()


def hostile() -> list[tuple[str, bytes]]:
    return [
        ("files: 1,000,000 entries (bound 256)", _cache(_point(files={f"f{i}": i for i in range(1_000_000)}))),
        ("settings: 1,000,000 entries (bound 64)", _cache(_point(settings={f"k{i}": i for i in range(1_000_000)}))),
        ("notes: a list of 1,000,000 values (bound 10,000)", _cache(_point(notes={"v": list(range(1_000_000))}))),
        ("label: 30,000,000 characters (bound 512)", _cache(_point(label="x" * 30_000_000))),
        ("bytes: a 4,300-digit integer (bound 2**53)", _cache(_point(bytes=1)).replace(
            b'"bytes": 1,', b'"bytes": ' + b"9" * 4300 + b",")),
        ("notes nested 100,000 deep (bound 8)", _cache(_point(notes={"v": 0})).replace(
            b'{"v": 0}', b'{"v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
    ]


MEASURE = r"""
import json, sys, time, tracemalloc
sys.path.insert(0, 'bench')
reader, mode, path = sys.argv[1:4]
from ctnet import rd as RD
from ctnet.errors import CtnetError
if reader != 'ctnet':
    import rd_points_lib as L
    if mode == 'typed':  # the library's best case: text straight into typed points, no dict first
        if reader == 'msgspec':
            import msgspec
            from rd_points_msgspec import MPoint
            class MCache(msgspec.Struct):
                format: str
                version: int
                points: dict[str, MPoint]
            parse = lambda b: msgspec.json.decode(b, type=MCache)
        else:
            from pydantic import BaseModel, ConfigDict
            from rd_points_pydantic import PPoint
            class PCache(BaseModel):
                model_config = ConfigDict(strict=True)
                format: str
                version: int
                points: dict[str, PPoint]
            parse = lambda b: PCache.model_validate_json(b)
    else:
        L.Swap(L.check(reader)).pytest_sessionstart(None)
if mode != 'typed':
    parse = lambda b: RD.read_cache(path)
text = open(path, 'rb').read()
def status(key):
    return int(next(x for x in open('/proc/self/status') if x.startswith(key)).split()[1]) / 1024
open('/proc/self/clear_refs', 'w').write('5')
rss = status('VmRSS')
tracemalloc.start()
t0 = time.perf_counter()
try:
    parse(text)
    outcome = 'ACCEPTED'
except CtnetError as exc:
    outcome = str(exc).split(': point ')[-1]
except Exception as exc:
    outcome = f'{type(exc).__name__}: {exc}'
seconds = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1] / 2**20
tracemalloc.stop()
print(json.dumps({'outcome': outcome[:160], 'one_line': '\n' not in outcome, 'seconds': seconds,
                  'traced_mb': peak, 'rss_mb': status('VmHWM') - rss}))
"""


def measure(reader: str, mode: str, path: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", MEASURE, reader, mode, str(path)], cwd=REPO, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode:
        return {"outcome": f"crashed: {r.stderr.strip().splitlines()[-1][:140]}", "one_line": False,
                "seconds": float("nan"), "traced_mb": float("nan"), "rss_mb": float("nan")}
    return json.loads(r.stdout.splitlines()[-1])


# --- (c) lines of code, (d) import time ------------------------------------------------------------

def code_lines(text: str) -> int:
    return sum(1 for x in text.splitlines() if x.strip() and not x.strip().startswith("#"))


def loc() -> dict:
    rd_src = (REPO / "ctnet" / "rd.py").read_text()
    tree = ast.parse(rd_src)
    lines = rd_src.splitlines()
    # ctnet's point checks: _Invalid … _OPTIONAL (the checkers, RDPoint's __post_init__ and from_dict)
    start = next(n.lineno for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Invalid")
    end = next(n.end_lineno for n in tree.body if isinstance(n, ast.Assign)
               and any(getattr(t, "id", "") == "_OPTIONAL" for t in n.targets))
    point = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RDPoint")
    fields = next(n for n in point.body if isinstance(n, ast.FunctionDef) and n.name == "__post_init__").lineno
    to_dict = next(n for n in point.body if isinstance(n, ast.FunctionDef) and n.name == "to_dict").lineno
    ours = code_lines("\n".join(lines[start - 1:point.lineno - 1] + lines[fields - 1:to_dict - 1]
                                + lines[to_dict - 1 + 4:end]))  # to_dict's 4 lines are not a check
    def body(name: str) -> int:  # a bench file's code, without its docstring and the test harness
        text = (REPO / "bench" / name).read_text()
        return code_lines(text.split('"""', 2)[2].split("# --- how tests/test_rd.py runs", 1)[0])
    shared = body("rd_points_lib.py")
    return {"ctnet": ours, "msgspec": body("rd_points_msgspec.py") + shared,
            "pydantic": body("rd_points_pydantic.py") + shared,
            "ctnet.rd code both reuse (it stays)": sum(code_lines("\n".join(lines[n.lineno - 1:n.end_lineno]))
                                                      for n in tree.body if getattr(n, "name", "") in REUSED)}


IMPORTS = r"""
import sys, time
def cost(stmt):  # CPU seconds (a loaded machine's wall clock is someone else's), and wall seconds
    c, w = time.process_time(), time.perf_counter()
    exec(stmt, {})
    return [1000 * (time.process_time() - c), 1000 * (time.perf_counter() - w)]
print([cost("import ctnet.rd"), cost("import rd_points_msgspec"), cost("import rd_points_pydantic")])
"""


def import_ms(runs: int) -> dict:
    """ms (CPU, wall) of importing ctnet.rd as it is, then what each prototype adds to it (its
    library and its models), each in ``runs`` fresh processes: the medians."""
    got = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-c", IMPORTS], cwd=REPO, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'bench'}"})
        got.append(ast.literal_eval(r.stdout.splitlines()[-1]))
    names = ("ctnet.rd (as it is)", "msgspec prototype (msgspec + its models)",
             "pydantic prototype (pydantic + its models)")
    return {n: {"cpu_ms": statistics.median(g[i][0] for g in got), "wall_ms": statistics.median(g[i][1] for g in got)}
            for i, n in enumerate(names)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--runs", type=int, default=3, help="fresh processes for the import cost (default 3)")
    args = ap.parse_args(argv)
    import msgspec
    import pydantic
    print(f"msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}; the machine is loaded (a training run on "
          "both cores): times are ratios to ctnet's reader measured in this run")
    result: dict = {"versions": {"msgspec": msgspec.__version__, "pydantic": pydantic.VERSION}}

    print("\n(a) tests/test_rd.py's parser tests on each reader")
    result["tests"] = {}
    for reader in READERS:
        t = result["tests"][reader] = run_tests(reader)
        print(f"  {reader:8} {t['passed']} passed, {t['failed']} failed" + "".join(f"\n      {f[:220]}" for f in t["failures"]))

    print("\n(b) hostile caches: outcome, peak memory (tracemalloc / resident set) and time, ratio to ctnet")
    result["hostile"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in hostile():
            path = Path(tmp) / "c.json"
            path.write_bytes(text)
            row = {"input": name, "mb": len(text) / 2**20}
            for reader in READERS:
                row[reader] = measure(reader, "dict", path)
            for reader in ("msgspec", "pydantic"):
                row[f"{reader} typed"] = measure(reader, "typed", path)
            result["hostile"].append(row)
            base = row["ctnet"]
            print(f"  {name} ({row['mb']:.1f} MB of text)")
            for k in ("ctnet", "msgspec", "pydantic", "msgspec typed", "pydantic typed"):
                c = row[k]
                ratio = (f"×{c['traced_mb'] / base['traced_mb']:.2f} / ×{c['rss_mb'] / max(base['rss_mb'], 1):.2f} / "
                         f"×{c['seconds'] / base['seconds']:.2f}")
                print(f"    {k:15} {c['traced_mb']:7.1f} / {c['rss_mb']:6.0f} MB, {c['seconds'] * 1000:7.0f} ms"
                      f"  ({ratio})  {'' if c['one_line'] else '[NOT ONE LINE] '}{c['outcome'][:110]}")

    result["loc"] = loc()
    print("\n(c) lines of code (non-blank, non-comment) of the point checks: " + ", ".join(
        f"{k} {v}" for k, v in result["loc"].items()))

    result["import_ms"] = import_ms(args.runs)
    print(f"\n(d) import: ms of CPU (wall), median of {args.runs} fresh processes: " + ", ".join(
        f"{k} {v['cpu_ms']:.0f} ({v['wall_ms']:.0f})" for k, v in result["import_ms"].items()), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
