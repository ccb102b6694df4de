"""ctnet.runs: discovering runs, the frontier, uploads and the download zip."""
from __future__ import annotations

import io
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

import baseline_fixture
from ctnet import runs


def test_pareto_front_keeps_only_undominated_points():
    pts = [(10, 80), (20, 85), (15, 84), (30, 70), (20, 83), (5, 90), (30, 70)]
    assert runs.pareto_front(pts) == [5, 1, 3]  # by ratio: (5,90) (20,85) (30,70); (15,84) is beaten
    assert runs.pareto_front([]) == []
    assert runs.pareto_front([(1, 1)]) == [0]


def test_read_log_skips_a_line_being_written_and_names_a_broken_one(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"epoch": 1, "acc1": 50}\n{"epoch": 2, "acc1": 60}\n{"epoch": 3, "ac')
    assert [r["epoch"] for r in runs.read_log(log)] == [1, 2]
    log.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(runs.RunError, match="line 2 is not JSON"):
        runs.read_log(log)
    log.write_text('[1, 2]\n')
    with pytest.raises(runs.RunError, match="line 1 is not an epoch record"):
        runs.read_log(log)


def test_training_folder_lists_each_epoch_once(training_run):
    [run] = runs.discover(training_run)
    ckpts = sorted((training_run / "checkpoints").glob("*.safetensors"))
    # best/smallest/best_Nx are hard links of epoch 1, last a separate write of it: one entry
    assert len({p.stat().st_ino for p in ckpts}) == 2
    assert len(run.entries) == 1
    entry = run.entries[0]
    assert set(entry.roles) == {p.stem for p in ckpts}
    assert entry.roles[0] == "best" and entry.kind == "checkpoint" and entry.epoch == 1
    assert entry.acc1 == run.log[0]["acc1"] and entry.est_bytes == run.log[0]["est_bytes_export"]
    assert entry.ratio == pytest.approx(run.log[0]["ratio"])
    assert entry.ratio_kind == "estimated" and not run.problems


def test_copied_role_files_merge_by_epoch(training_run, tmp_path):
    """After a transfer the hard links are plain copies: the epoch still identifies them."""
    run_dir = tmp_path / "copied"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(training_run / "train_log.jsonl", run_dir)
    for p in (training_run / "checkpoints").glob("*.safetensors"):
        shutil.copy(p, run_dir / "checkpoints" / p.name)
    [run] = runs.discover(run_dir)
    assert len(run.entries) == 1


def test_demo_layout_and_sweep(demo_dir, training_run, tmp_path):
    demo_runs = runs.discover(demo_dir)
    assert demo_runs and all(r.entries for r in demo_runs)
    bundle = next(e for e in runs.all_entries(demo_runs) if e.kind == "bundle")
    assert bundle.real_bytes == sum(p.stat().st_size for p in Path(bundle.path).iterdir())
    assert bundle.ratio == pytest.approx(bundle.fp32_bytes / bundle.real_bytes) and bundle.ratio_kind == "real"
    assert bundle.decoded is not None and 0 <= bundle.decoded["acc1"] <= 100
    # a sweep: a folder of runs, one of each layout
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    os.symlink(training_run, sweep / "a-training-run")
    os.symlink(next((demo_dir / "runs").iterdir()), sweep / "b-demo-run")
    found = runs.discover(sweep)
    assert [r.name for r in found] == ["a-training-run", "b-demo-run"]
    assert {e.kind for e in runs.all_entries(found)} == {"checkpoint", "bundle"}


def test_discover_names_what_is_wrong(tmp_path):
    with pytest.raises(runs.RunError, match="does not exist"):
        runs.discover(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(runs.RunError, match="is not a folder"):
        runs.discover(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.RunError, match="holds no run"):
        runs.discover(tmp_path / "empty")


def test_broken_files_in_a_run_are_reported_not_fatal(tmp_path):
    run_dir = tmp_path / "r"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.safetensors").write_bytes(b"\x00" * 64)
    (run_dir / "bundles" / "b").mkdir(parents=True)
    (run_dir / "bundles" / "b" / "manifest.json").write_text('{"format": "other"}')
    [run] = runs.discover(run_dir)
    assert run.entries == []
    assert any("best.safetensors" in p for p in run.problems)
    assert any("bundles/b" in p and "format" in p for p in run.problems)


def _zip(members: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_upload_refuses_unsafe_archives(tmp_path):
    manifest = b'{"format": "ctnet-bundle"}'
    with pytest.raises(runs.RunError, match="unsafe path"):
        runs.import_upload("b.zip", _zip({"b/manifest.json": manifest, "b/../../evil": b"x"}), tmp_path)
    with pytest.raises(runs.RunError, match="links are refused"):
        runs.import_upload("b.zip", _zip({"b/manifest.json": manifest, "b/w.mp4": b"/etc/passwd"},
                                         {"b/w.mp4": stat.S_IFLNK | 0o777}), tmp_path)
    with pytest.raises(runs.RunError, match="outside the bundle folder"):
        runs.import_upload("b.zip", _zip({"b/manifest.json": manifest, "c/w.mp4": b"x"}), tmp_path)
    with pytest.raises(runs.RunError, match="holds no manifest.json"):
        runs.import_upload("b.zip", _zip({"notes.txt": b"x"}), tmp_path)
    with pytest.raises(runs.RunError, match="too large"):
        runs.import_upload("b.zip", _zip({"manifest.json": manifest, "w.mp4": b"\0" * (64 << 20)}), tmp_path)
    with pytest.raises(runs.RunError, match="expected a checkpoint"):
        runs.import_upload("notes.txt", b"hello", tmp_path)
    with pytest.raises(runs.RunError, match="empty"):
        runs.import_upload("x.pt", b"", tmp_path)
    assert not any(p.name == "evil" for p in tmp_path.rglob("*"))


def test_zip_bundle_round_trip(demo_dir, tmp_path):
    from ctnet.codec.bundle import read_bundle
    src = next(demo_dir.glob("runs/*/bundles/*"))
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    data = runs.zip_bundle(files, "my-bundle")
    assert data == runs.zip_bundle(files, "my-bundle")  # deterministic
    path = runs.import_upload("my-bundle.zip", data, tmp_path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == files
    model, meta = read_bundle(path)
    assert meta["bundle"]["total_bytes"] == sum(len(b) for b in files.values())


def test_stamp_changes_with_the_file(tmp_path):
    p = tmp_path / "a.safetensors"
    p.write_bytes(b"1")
    before = runs.stamp(p)
    p.write_bytes(b"22")
    assert runs.stamp(p) != before


def test_results_json_is_optional_and_checked(demo_dir, tmp_path):
    source = next((demo_dir / "runs").iterdir())
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    (run_dir / "results.json").write_text("[1, 2]")
    [run] = runs.discover(run_dir)
    assert all(e.decoded is None for e in run.entries)
    assert any("results.json: ignored" in p for p in run.problems)
    (run_dir / "results.json").unlink()
    [run] = runs.discover(run_dir)
    assert run.entries and not run.problems
    json.loads((source / "results.json").read_text())  # the demo's own is valid JSON


def test_catalog_stamp_sees_a_new_epoch_in_a_sweep(tmp_path):
    run_dir = tmp_path / "sweep" / "r1"
    run_dir.mkdir(parents=True)
    log = run_dir / "train_log.jsonl"
    log.write_text('{"epoch": 1}\n')
    before = runs.catalog_stamp(tmp_path / "sweep")
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    os.utime(log, ns=(1, 1))  # whatever the clock's resolution, the size changed too
    assert runs.catalog_stamp(tmp_path / "sweep") != before


def test_baseline_from_init_from_or_the_demo_notes(tmp_path):
    notes = runs.notes_baselines("| run | proxy | epochs | baseline |\n|---|---|---|---|\n"
                                 "| `a` | λ = 1e-7 | 40 of 40 | 88.18 % |\n| `b` | λ | 20 | 87.69 % |\n")
    assert notes == {"a": 88.18, "b": 87.69}
    run = runs.Run(name="a", path=str(tmp_path), config={"init_from": str(tmp_path / "missing.safetensors")})
    assert runs.baseline(run, notes) == runs.Baseline(88.18, "the demo's notes")
    assert runs.baseline(runs.Run(name="c", path=str(tmp_path)), notes) is None


def test_the_demo_index_names_the_default_and_each_runs_baseline(tmp_path):
    """demo.json: a run is matched to its baseline by the init_from its config.json records;
    the baseline's top-1, SHA-256, image count and rd cache come with it; the index wins over
    the notes; a run from another init_from falls back to them."""
    (tmp_path / "demo.json").write_text(json.dumps(baseline_fixture.index()))
    index = runs.read_demo_index(tmp_path)
    assert index.default_path() == str(tmp_path / "runs" / baseline_fixture.RUN / "bundles" / "best")
    run = runs.Run(name="cpu18", path=str(tmp_path / "runs" / "cpu18"), config={"init_from": baseline_fixture.INIT_FROM})
    b = runs.baseline(run, {"cpu18": 10.0}, index)
    assert (b.acc1, b.sha256, b.images) == (89.53, baseline_fixture.SHA, 3925)
    assert b.rd == str(tmp_path / "rd" / f"{baseline_fixture.SHA[:32]}.json")
    assert b.label == "plain ResNet-18 (fixture) (89.53 %)" and b.source.startswith("demo.json")
    elsewhere = runs.Run(name="x", path=str(tmp_path), config={"init_from": "/other/machine/models/fixture-plain.pt"})
    assert runs.baseline(elsewhere, {}, index).sha256 == baseline_fixture.SHA  # the same file name, another folder
    other = runs.Run(name="old", path=str(tmp_path), config={"init_from": "/tmp/runs/resnet18-plain/best.safetensors"})
    assert runs.baseline(other, {"old": 88.18}, index) == runs.Baseline(88.18, "the demo's notes")
    assert runs.read_demo_index(tmp_path / "nowhere") == runs.DemoIndex(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("doc, words", [
    ({"format": "ctnet-rd-cache", "version": 1}, "not a CTNet demo index"),
    ({**baseline_fixture.index(), "version": 2}, "demo index version 2"),
    ({**baseline_fixture.index(), "extra": 1}, "unknown field 'extra'"),
    (baseline_fixture.index(default="../elsewhere/best"), "default must be a path inside the demo folder"),
    (baseline_fixture.index(default="/abs/best"), "default must be a path inside the demo folder"),
    (baseline_fixture.index(sha256="ABC"), "baselines[0].sha256 must be 64 lowercase hex digits"),
    (baseline_fixture.index(acc1=101), "baselines[0].acc1 must be a top-1 in percent"),
    (baseline_fixture.index(acc1=True), "baselines[0].acc1 must be a top-1 in percent"),
    (baseline_fixture.index(images=0), "baselines[0].images must be a positive integer"),
    (baseline_fixture.index(rd="../../etc/passwd"), "baselines[0].rd must be a path inside the demo folder"),
    (baseline_fixture.index(color="red"), "baselines[0]: unknown field 'color'"),
    ({**baseline_fixture.index(), "baselines": [{"name": "x"}]}, "baselines[0]: 'acc1' is missing"),
    ({**baseline_fixture.index(), "baselines": [baseline_fixture.index()["baselines"][0]] * 2}, "same init_from"),
], ids=["format", "version", "unknown", "default-up", "default-abs", "sha", "acc-range", "acc-bool", "images",
        "rd-up", "unknown-entry-field", "missing", "duplicate"])
def test_a_bad_demo_index_is_a_one_line_error_naming_the_field(tmp_path, doc, words):
    (tmp_path / "demo.json").write_text(json.dumps(doc))
    with pytest.raises(runs.RunError) as info:
        runs.read_demo_index(tmp_path)
    assert words in str(info.value) and str(info.value).startswith(str(tmp_path / "demo.json"))
    assert "\n" not in str(info.value)
    (tmp_path / "demo.json").write_text("{")
    with pytest.raises(runs.RunError, match="not readable JSON"):
        runs.read_demo_index(tmp_path)


