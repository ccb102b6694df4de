"""Training: log/checkpoint contract, Pareto roles, resume after a kill, NaN stop, DDP, bad flags."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision

from ctnet.checkpoint import read_checkpoint
from ctnet.cli import main
from ctnet.train import ParetoTracker, TrainConfig, fit, recover_replace
from trust_fixtures import TINY_TRAIN, one_line_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--image-size", "32", "--batch-size", "10", "--cache-dataset", "--workers", "0", "--device", "cpu"]
LOG_KEYS = {"epoch", "acc1", "acc5", "loss", "rate", "est_bytes", "fp32_bytes", "ratio", "nonzero", "lr", "seconds"}


def _log(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_ctnet_training_writes_log_and_checkpoints(tiny_imagenette, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "2", "--pixel-bit-depth", "8",
                 "--lambda-rate", "1e-5", "--lambda-alpha", "0.5", "--seed", "1", *TINY]) == 0
    rows = _log(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert LOG_KEYS <= set(rows[0]) and set(rows[0]["est_bytes"]) == {"8", "10", "12"}
    assert rows[0]["fp32_bytes"] == 44_764_968 and rows[0]["rate"] > 0
    assert rows[0]["ratio"] == pytest.approx(rows[0]["fp32_bytes"] / rows[0]["est_bytes"]["8"])
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"last.safetensors", "best.safetensors", "smallest.safetensors"} <= names
    meta = read_checkpoint(run / "checkpoints" / "best.safetensors").meta
    assert meta["model"]["ctnet"] and meta["model"]["dct_block_size"] == 16
    assert meta["label_map"]["n03888257"] == 9 and meta["image_size"] == 32 and meta["pixel_bit_depth"] == 8
    assert meta["train_config"]["lambda_rate"] == 1e-5 and "metrics" in meta


def test_export_dither_trains_and_is_recorded(tiny_imagenette, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "1", "--limit-train", "20",
                 "--limit-val", "10", "--pixel-bit-depth", "5", "--rate-grid", "export", "--export-dither", "0.5",
                 "--lambda-rate", "1e-5", "--arch", "mobilenet_v3_small", *TINY]) == 0  # 20 images, batches of 10: two steps
    assert json.loads((run / "config.json").read_text())["export_dither"] == 0.5
    rows = _log(run)
    assert len(rows) == 1 and rows[0]["rate"] > 0 and rows[0]["export_bits"] == 5
    meta = read_checkpoint(run / "checkpoints" / "last.safetensors").meta
    assert meta["train_config"]["export_dither"] == 0.5 and meta["pixel_bit_depth"] == 5


def test_pareto_tracker_keeps_most_accurate_per_ratio():
    t = ParetoTracker()
    row = lambda e, acc, ratio: {"epoch": e, "acc1": acc, "ratio": ratio, "est_bytes_export": 1000 / ratio}
    assert set(t.update(row(1, 80.0, 6.5))) == {"best", "smallest", "best_5x", "best_6x"}
    assert set(t.update(row(2, 70.0, 8.2))) == {"smallest", "best_7x", "best_8x"}
    assert set(t.update(row(3, 85.0, 7.1))) == {"best", "best_5x", "best_6x", "best_7x"}
    assert t.roles["best_8x"]["epoch"] == 2 and t.roles["best_7x"]["epoch"] == 3
    assert t.update(row(4, 10.0, 4.0)) == []


def test_init_from_plain_checkpoint_converts_with_forward_dct(tiny_imagenette, shared_resnet18, tmp_path):
    run = tmp_path / "run"
    result = fit(TrainConfig(data=str(tiny_imagenette), output_dir=str(run), init_from=str(shared_resnet18),
                             evaluate_only=True, image_size=64, workers=0, device="cpu"), log=lambda *_: None)
    assert result["images"] == 20 and result["acc1"] >= 50  # a trained network, not a re-initialised one


def test_resume_after_kill(tiny_imagenette, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "ctnet", "train", str(tiny_imagenette), "--output-dir", str(run),
            "--epochs", "4", "--lambda-rate", "1e-5", *TINY]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 1
                                          and (run / "checkpoints" / "last.safetensors").exists()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [r["epoch"] for r in _log(run)]
    assert done and done[-1] < 4, "the run finished before it could be killed"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "4", *TINY,
                 "--resume", str(run / "checkpoints" / "last.safetensors")]) == 0
    epochs = [r["epoch"] for r in _log(run)]
    assert epochs == [1, 2, 3, 4]
    last = read_checkpoint(run / "checkpoints" / "last.safetensors").meta
    assert last["resume_state"]["epoch"] == 4


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_imagenette, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "1", *TINY]) == 0
    last = run / "checkpoints" / "last.safetensors"
    before = last.read_bytes()
    import ctnet.train as train_mod
    monkeypatch.setattr(train_mod.F, "cross_entropy", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "3", *TINY,
                 "--resume", str(last)]) == 2
    assert "loss became nan" in capsys.readouterr().err
    assert last.read_bytes() == before
    assert [r["epoch"] for r in _log(run)] == [1]


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs"),
    (["--lr", "-1"], "--lr"),
    (["--dct-dropout", "1.5"], "--dct-dropout"),
    (["--qstep", "0"], "--qstep"),
    (["--num-classes", "7"], "10 classes, more than the model's 7-class head"),
    (["--plain", "--pixel-bit-depth", "8"], "--pixel-bit-depth"),
    (["--pixel-bit-depth", "6", "--rate-grid", "export", "--export-dither", "-0.5"], "--export-dither must be in [0, 4]"),
    (["--pixel-bit-depth", "6", "--rate-grid", "export", "--export-dither", "4.5"], "--export-dither must be in [0, 4]"),
    (["--pixel-bit-depth", "6", "--rate-grid", "export", "--export-dither", "nan"], "--export-dither must be a finite"),
    (["--pixel-bit-depth", "6", "--export-dither", "0.5"], "needs --pixel-bit-depth N and --rate-grid export"),
    (["--rate-grid", "export", "--export-dither", "0.5"], "needs --pixel-bit-depth N and --rate-grid export"),
])
def test_out_of_range_flags(tiny_imagenette, tmp_path, flags, message, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), *TINY, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not run.exists()


def test_init_from_mismatches_are_refused(tiny_imagenette, shared_resnet18, tmp_path, capsys):
    args = ["train", str(tiny_imagenette), "--output-dir", str(tmp_path / "r"), *TINY]
    assert main([*args, "--arch", "resnet50", "--init-from", str(shared_resnet18)]) == 2
    assert "is a resnet18" in capsys.readouterr().err
    run = tmp_path / "ct"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "1", *TINY]) == 0
    assert main([*args, "--init-from", str(run / "checkpoints" / "best.safetensors"), "--dct-block-size", "8"]) == 2
    assert "block size 16" in capsys.readouterr().err


def test_ddp_two_cpu_processes(tiny_imagenette, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "ctnet", "train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "1",
                           "--lambda-rate", "1e-5", *TINY], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _log(run)
    assert [r["epoch"] for r in rows] == [1]
    assert rows[0]["acc1"] >= 0 and (run / "checkpoints" / "last.safetensors").exists()


def test_distill_loss_is_zero_for_the_teacher_itself():
    from ctnet.train import distill_loss
    logits = torch.randn(8, 10)
    assert distill_loss(logits, logits, 4.0).abs().item() < 1e-6
    assert distill_loss(torch.randn(8, 10), logits, 4.0).item() > 0


def test_distill_from_trains_and_refuses_teachers_that_do_not_fit(tiny_imagenette, shared_resnet18, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_imagenette), "--output-dir", str(run), "--epochs", "1", "--init-from",
                 str(shared_resnet18), "--distill-from", str(shared_resnet18), "--distill-weight", "0.7", *TINY,
                 "--image-size", "128", "--limit-train", "20"]) == 0
    config = read_checkpoint(run / "checkpoints" / "last.safetensors").meta["train_config"]
    assert config["distill_from"] == str(shared_resnet18) and config["distill_weight"] == 0.7
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    wide = tmp_path / "wide.pt"
    from ctnet.models import plain_model
    torch.save(plain_model("resnet18", num_classes=1000).state_dict(), wide)
    for teacher, extra, message in [(junk, [], "--distill-from"), (wide, [], "has 1000 classes"),
                                    (run / "checkpoints" / "best.safetensors", ["--image-size", "64"], "at 128 px")]:
        out = tmp_path / "refused"
        args = ["train", str(tiny_imagenette), "--output-dir", str(out), *TINY, *extra, "--distill-from", str(teacher)]
        assert main(args) == 2
        last = capsys.readouterr().err.splitlines()[-1]  # (torch.compile's CUDA_HOME warning may precede it)
        assert last.startswith("ctnet train: error: --distill-from") and message in last, last
        assert not out.exists()


def test_own_dataset_and_architecture_end_to_end(relabelled_data, tmp_path, capsys):
    """A user's 4-class folder and a MobileNetV3: `ctnet train DATA` needs no class count; the
    label map travels into the checkpoint, the bundle and the exported ONNX file, and every
    evaluation reads the folders by it."""
    run = tmp_path / "run"
    assert main(["train", str(relabelled_data), "--arch", "mobilenet_v3_small", "--output-dir", str(run),
                 "--epochs", "1", "--pixel-bit-depth", "8", "--rate-grid", "export", "--lambda-rate", "1e-6", *TINY]) == 0
    best = run / "checkpoints" / "best.safetensors"
    meta = read_checkpoint(best).meta
    labels = {"dog": 0, "fish": 1, "horn": 2, "parachute": 3}
    assert meta["model"]["arch"] == "mobilenet_v3_small" and meta["model"]["num_classes"] == 4
    assert meta["label_map"] == labels
    bundle = tmp_path / "bundle"
    assert main(["encode", str(best), "--out", str(bundle), "--preset", "ultrafast"]) == 0
    assert json.loads((bundle / "manifest.json").read_text())["label_map"] == labels
    capsys.readouterr()
    assert main(["decode", str(bundle), "--data", str(relabelled_data), "--out", str(tmp_path / "m.onnx"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 8 and report["onnx_max_abs_diff"] < 1e-3
    assert main(["eval", str(tmp_path / "m.onnx"), "--data", str(relabelled_data), "--json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["acc1"] == report["acc1"]


def test_init_from_a_users_torchvision_state_dict(relabelled_data, tmp_path, capsys):
    """`--init-from my.pth --arch NAME`: a plain torchvision state dict (here a MobileNetV2 with a
    4-class head, saved the usual way) is recognised by its tensors, its head size read from
    the weights; a wrong --arch is named."""
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(num_classes=4)
    torch.save(net.state_dict(), tmp_path / "my.pth")
    result = fit(TrainConfig(data=str(relabelled_data), output_dir=str(tmp_path / "r"), arch="mobilenet_v2",
                             init_from=str(tmp_path / "my.pth"), evaluate_only=True, image_size=32, workers=0,
                             device="cpu"), log=lambda *_: None)
    assert result["images"] == 8 and result["arch"] == "mobilenet_v2"
    run = tmp_path / "ft"
    assert main(["train", str(relabelled_data), "--arch", "mobilenet_v2", "--init-from", str(tmp_path / "my.pth"),
                 "--output-dir", str(run), "--epochs", "1", *TINY]) == 0
    meta = read_checkpoint(run / "checkpoints" / "best.safetensors").meta
    assert meta["model"]["num_classes"] == 4 and meta["label_map"] == {"dog": 0, "fish": 1, "horn": 2, "parachute": 3}
    assert main(["train", str(relabelled_data), "--arch", "efficientnet_b0", "--init-from", str(tmp_path / "my.pth"),
                 "--output-dir", str(tmp_path / "x"), *TINY]) == 2
    assert "is a mobilenet_v2, but --arch is efficientnet_b0" in capsys.readouterr().err
    torch.save({k: v for k, v in net.state_dict().items() if "features.18" not in k}, tmp_path / "cut.pth")
    assert main(["train", str(relabelled_data), "--arch", "mobilenet_v2", "--init-from", str(tmp_path / "cut.pth"),
                 "--output-dir", str(tmp_path / "y"), *TINY]) == 2
    assert "fits no architecture CTNet holds; the closest: weights do not fit a mobilenet_v2" in capsys.readouterr().err


# --- runs are never lost; temporary files; modes; disk full ----------------------------------

def _log_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_existing_run_is_refused_and_replaced_atomically_with_force(tmp_path, images, capsys):
    run = tmp_path / "run"
    assert main(["train", str(images), "--output-dir", str(run), "--epochs", "2", *TINY_TRAIN]) == 0
    before = (run / "train_log.jsonl").read_bytes()
    last = (run / "checkpoints" / "last.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(images), "--output-dir", str(run), "--epochs", "1", *TINY_TRAIN]) == 2
    err = one_line_error(capsys)
    assert "already holds a run" in err and "--resume" in err and "--force" in err
    assert (run / "train_log.jsonl").read_bytes() == before
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == last
    assert main(["train", str(images), "--output-dir", str(run), "--force", "--resume", "x", *TINY_TRAIN]) == 2
    assert "--force" in one_line_error(capsys)

    seen = []

    def log(msg):  # while the new run trains, the old one is whole at its path
        if msg.startswith("epoch"):
            seen.append((run / "train_log.jsonl").read_bytes() == before
                        and (run / "checkpoints" / "last.safetensors").read_bytes() == last)
    cfg = TrainConfig(data=str(images), output_dir=str(run), epochs=1, force=True, image_size=16, batch_size=10,
                      workers=0, device="cpu", limit_train=10, limit_val=10, lambda_rate=0.0)
    fit(cfg, log=log)
    assert seen == [True]
    assert [r["epoch"] for r in _log_rows(run)] == [1]
    assert json.loads((run / "config.json").read_text())["output_dir"] == str(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or old folder left
    assert not (run / ".ctnet-replace-complete").exists()


def test_interrupted_replace_is_recovered_or_reported(tmp_path):
    run, new, old = tmp_path / "run", tmp_path / ".run.new", tmp_path / ".run.old"
    # killed between the two renames: the old run aside, the complete new one beside it
    old.mkdir()
    (old / "train_log.jsonl").write_text("old\n")
    new.mkdir()
    (new / "train_log.jsonl").write_text("new\n")
    (new / ".ctnet-replace-complete").touch()
    messages = []
    recover_replace(run, log=messages.append)
    assert (run / "train_log.jsonl").read_text() == "new\n" and not old.exists() and not new.exists()
    assert not (run / ".ctnet-replace-complete").exists() and "finished replacing" in messages[0]
    # killed while the new run trained: the old one stays, the incomplete one is not put in place
    new.mkdir()
    (new / "train_log.jsonl").write_text("partial\n")
    recover_replace(run, log=messages.append)
    assert (run / "train_log.jsonl").read_text() == "new\n" and new.exists()
    # the old run moved aside, nothing complete: it is put back
    os.replace(run, old)
    recover_replace(run, log=messages.append)
    assert (run / "train_log.jsonl").read_text() == "new\n" and "restored" in messages[-1]
