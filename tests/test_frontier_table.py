"""scripts/frontier_table.py: the README's one-baseline table, from the committed full-val rd sweep
of the shared ResNet-18 and the demo's CPU runs fine-tuned from it."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RD = REPO / "docs" / "rd" / "resnet18-89.53-fullval.json"
RUN = REPO / "assets" / "demo" / "runs" / "cpu18-lam5e-7"
SHARED = REPO.parent / "shared" / "models" / "resnet18-imagenette128-scratch.pt"

spec = importlib.util.spec_from_file_location("frontier_table", REPO / "scripts" / "frontier_table.py")
frontier_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(frontier_table)

needs_shared = pytest.mark.skipif(not SHARED.is_file(), reason="the shared ResNet-18 is not here")


@needs_shared
def test_table_rows_are_the_measured_files(capsys):
    assert frontier_table.main(["--rd", str(RD), str(RUN)]) == 0
    out = capsys.readouterr().out
    results = json.loads((RUN / "results.json").read_text())
    rd = json.loads(RD.read_text())
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == len(results) + sum(p.get("acc1") is not None for p in rd["points"])
    for r in results.values():
        assert f"{r['total_bytes']:,}" in out and f"{r['decoded']['acc1']:.2f} %" in out
    ratios = [float(line.split("|")[3].strip().rstrip("×")) for line in rows]
    assert ratios == sorted(ratios)


@needs_shared
def test_a_run_from_another_baseline_is_refused(tmp_path):
    other = tmp_path / "run"
    shutil.copytree(RUN, other, ignore=shutil.ignore_patterns("bundles"))
    cfg = json.loads((other / "config.json").read_text())
    fake = tmp_path / "other.pt"
    fake.write_bytes(b"not the shared model")
    cfg["init_from"] = str(fake)
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="not from the rd sweep's checkpoint"):
        frontier_table.main(["--rd", str(RD), str(other)])
    cfg["init_from"] = str(tmp_path / "gone.pt")
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="cannot be confirmed"):
        frontier_table.main(["--rd", str(RD), str(other)])


def test_points_on_different_images_are_refused(tmp_path):
    rd = json.loads(RD.read_text())
    rd["points"][0]["images"] = 1000
    path = tmp_path / "rd.json"
    path.write_text(json.dumps(rd))
    with pytest.raises(SystemExit, match="different numbers of images"):
        frontier_table.main(["--rd", str(path)] + ([str(RUN)] if SHARED.is_file() else []))


def test_a_run_s_label_names_its_recipe():
    base = {"lambda_rate": 5e-7, "pixel_bit_depth": 8}
    assert frontier_table.run_label(base) == "λ = 5e-07"
    assert frontier_table.run_label({**base, "pixel_bit_depth": 6}) == "λ = 5e-07, 6-bit grid"
    assert frontier_table.run_label({**base, "pixel_bit_depth": 6, "export_dither": 0.5}) == \
        "λ = 5e-07, 6-bit grid, dither 0.5"
    assert frontier_table.run_label({**base, "distill_from": "t.pt", "distill_temperature": 4.0,
                                     "distill_weight": 0.5}) == "λ = 5e-07, distilled (T = 4, w = 0.5)"


def test_a_run_s_name_says_its_architecture():
    assert frontier_table.ctnet_name({}) == "CTNet-18"  # runs before --arch was recorded
    assert frontier_table.ctnet_name({"arch": "resnet18"}) == "CTNet-18"
    assert frontier_table.ctnet_name({"arch": "mobilenet_v2"}) == "CTNet-mobilenet_v2"
