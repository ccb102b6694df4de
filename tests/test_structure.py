"""The structure the design promises, checked: the command line is a layer of its own (no
library module imports ``ctnet.cli``), only ``ctnet.codec.video`` imports PyAV, ``ctnet``
never imports streamlit, and describing the codecs (``ctnet rd --help``) loads no PyAV."""
import ast
import subprocess
import sys
from pathlib import Path

CTNET = Path(__file__).resolve().parents[1] / "ctnet"


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
