"""The structure the design promises, checked: no import cycle among ctnet's modules (imports
inside functions count), the floor (errors, limits, fileio, strict) imports nothing from ctnet, the CLI
and the app reach the library only through ``ctnet.api`` (and the read-only ``ctnet.inspect``
and ``ctnet.runs``), the command line is a layer of its own (no library module imports ``ctnet.cli``), only
``ctnet.codec.video`` imports PyAV, ``ctnet`` never imports streamlit, and describing the
codecs (``ctnet rd --help``) loads no PyAV."""
import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CTNET = REPO / "ctnet"
FLOOR = ("ctnet.errors", "ctnet.fileio", "ctnet.limits", "ctnet.strict")
DOOR = ("ctnet.api", "ctnet.inspect", "ctnet.runs")  # all that the CLI and the app may import of ctnet


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names |= {f"{base}.{a.name}" if base.endswith(".") is False else base + a.name for a in node.names}
    return names


def _module_name(path: Path) -> str:
    parts = ("ctnet",) + path.relative_to(CTNET).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the ctnet modules it imports, anywhere in the file (inside functions and
    ``TYPE_CHECKING`` blocks too). ``from P import n`` depends on the package ``P`` (its
    ``__init__`` runs first) and on ``P.n`` where that is a module."""
    files = {_module_name(p): p for p in CTNET.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                deps |= {base} | {f"{base}.{a.name}" for a in node.names}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as one cycle
    through it: a -> b -> … -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:  # a shortest way back to the start, inside the group
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        while frontier and start not in {w for v in frontier for w in graph[v]}:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & group):
                    if w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        last = next(v for v in frontier if start in graph[v])
        out.append(paths[last] + [start])
    return out


def test_there_is_no_import_cycle_among_ctnet_modules():
    found = cycles(import_graph())
    assert not found, "import cycle(s): " + "; ".join(" -> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle_closed_inside_a_function():
    graph = import_graph()
    assert not cycles(graph)
    graph["ctnet.limits"] = graph["ctnet.limits"] | {"ctnet.quant"}  # quant imports limits
    assert cycles(graph) == [["ctnet.limits", "ctnet.quant", "ctnet.limits"]]


def test_the_floor_imports_nothing_from_ctnet():
    graph = import_graph()
    assert {m: graph[m] for m in FLOOR} == {m: set() for m in FLOOR}


def _ctnet_imports_of(path: Path, package: str | None = None) -> set[str]:
    """The ctnet modules a file outside the library (or in ``ctnet.cli``) imports by name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ctnet"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # inside ctnet.cli: resolve against the package
                assert package is not None, path
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "ctnet":
                found |= {f"ctnet.{a.name}" for a in node.names}
            elif base.startswith("ctnet."):
                found.add(base)
    return found


def test_the_cli_and_the_app_come_in_through_the_door():
    outside = {p: _ctnet_imports_of(p) for d in ("app", "pages") for p in sorted((REPO / d).rglob("*.py"))}
    outside |= {p: _ctnet_imports_of(p, "ctnet.cli") - {"ctnet.cli.common"} for p in sorted((CTNET / "cli").glob("*.py"))}
    past = {str(p.relative_to(REPO)): sorted(m - set(DOOR)) for p, m in outside.items() if m - set(DOOR)}
    assert not past, f"imports past ctnet.api / ctnet.inspect / ctnet.runs: {past}"
    assert any("ctnet.api" in m for m in outside.values())  # the check sees imports at all


def readme_layers() -> dict[str, int]:
    """Module → layer, as the README's map draws them: lines `` N file, file …`` under
    ``ctnet/`` (``cli/`` stands for the package and every module in it)."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("\n## Map\n"):].split("```")[1]
    layers = {}
    for line in block.splitlines():
        m = re.match(r"^ (\d+) (\S.*?)(?:\s{2,}.*)?$", line)
        if not m:
            continue
        for item in (x.strip() for x in m.group(2).split(",")):
            if item.endswith("/"):  # a package: its __init__ and every module in it
                package = "ctnet." + item.strip("/").replace("/", ".")
                layers.update({mod: int(m.group(1)) for mod in import_graph() if mod == package
                               or mod.startswith(package + ".")})
            else:
                layers["ctnet." + item.removesuffix(".py").replace("/", ".")] = int(m.group(1))
    return layers


PACKAGES = ("ctnet", "ctnet.codec")  # where ``from . import x`` lands first: re-exports, not a layer


def test_the_readme_map_draws_every_module_in_its_layer():
    graph, layers = import_graph(), readme_layers()
    assert set(layers) == set(graph) - set(PACKAGES), "modules missing from / unknown to the README's map: " \
        f"{sorted(set(graph) - set(PACKAGES) - set(layers))} / {sorted(set(layers) - set(graph))}"
    upward = [f"{m} (layer {layers[m]}) imports {d} (layer {layers[d]})" for m, deps in graph.items() if m in layers
              for d in sorted(deps) if d in layers and layers[d] > layers[m]]
    assert not upward, "imports against the README map's layers: " + "; ".join(upward)
    assert [layers[m] for m in FLOOR] == [0] * len(FLOOR) and layers["ctnet.api"] > layers["ctnet.rd"]


def test_library_modules_do_not_import_the_cli_or_streamlit():
    for path in CTNET.rglob("*.py"):
        if "cli" in path.relative_to(CTNET).parts or path.name == "__main__.py":  # the entry points
            continue
        names = _imports(path)
        assert not any(n.split(".")[-1] == "cli" or ".cli." in n or n.startswith("ctnet.cli") for n in names), path
        assert not any(n == "streamlit" or n.startswith("streamlit.") for n in names), path


def test_only_the_video_module_imports_av():
    importers = sorted(str(p.relative_to(CTNET)) for p in CTNET.rglob("*.py") if "av" in _imports(p))
    assert importers == ["codec/video.py"]


def test_help_and_codec_descriptions_load_no_pyav():
    code = ("import sys\nfrom ctnet.cli import main\n"
            "for argv in (['rd', '--help'], ['encode', '--help'], ['verify', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('av' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
