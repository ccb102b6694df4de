import tarfile

import pytest
import torch

from ctnet.checkpoint import save_checkpoint
from ctnet.cli import main
import ctnet.data
from ctnet.data import (DatasetError, balanced_subset, class_names, dataset_classes, dataset_label_map,
                        download_imagenette, folder_label_map, label_map, list_images, load_image, load_split,
                        split_dir)
from trust_fixtures import SPEC, bomb, one_line_error


def test_label_maps():
    ten = label_map(10)
    assert list(ten.values()) == list(range(10))
    imagenet = label_map(1000)
    assert imagenet["n01440764"] == 0 and imagenet["n02102040"] == 217 and imagenet["n03888257"] == 701
    assert sorted(imagenet.values()) == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    with pytest.raises(DatasetError):
        label_map(7)


def test_split_uses_imagenet_indices_for_1000_classes(tiny_imagenette):
    split = load_split(tiny_imagenette, "val", num_classes=1000, size=32)
    assert sorted(set(split.labels.tolist())) == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    cached = load_split(tiny_imagenette, "val", num_classes=10, size=32, cache=True)
    assert cached.images.shape == (20, 3, 32, 32) and cached.images.dtype == torch.uint8
    assert sorted(set(cached.labels.tolist())) == list(range(10))


def test_balanced_subset_takes_every_class():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    idx = balanced_subset(labels, 6)
    assert sorted(labels[idx].tolist()) == [0, 0, 1, 1, 2, 2]


def test_bad_dataset_folders(tmp_path, tiny_imagenette):
    with pytest.raises(DatasetError, match="does not exist"):
        split_dir(tmp_path / "missing", "val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no 'val' folder"):
        split_dir(tmp_path / "empty", "val")
    odd = tmp_path / "odd" / "val" / "n99999999"
    odd.mkdir(parents=True)
    with pytest.raises(DatasetError, match="n99999999 not among the model's 10 classes"):
        list_images(odd.parent, label_map(10))
    hollow = tmp_path / "hollow" / "val" / "n01440764"
    hollow.mkdir(parents=True)
    with pytest.raises(DatasetError, match="n01440764: class folder holds no images"):
        list_images(hollow.parent, label_map(10))


def test_cli_reports_missing_dataset(tmp_path, shared_resnet18, capsys):
    assert main(["eval", str(shared_resnet18), "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _archive(tmp_path, tiny_imagenette, top="imagenette2-160"):
    path = tmp_path / "imagenette2-160.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tiny_imagenette, arcname=top)
    return path


def test_download_from_local_archive(tmp_path, tiny_imagenette):
    archive = _archive(tmp_path, tiny_imagenette)
    dest = tmp_path / "data"
    assert main(["download", "imagenette", str(dest), "--variant", "160", "--url", archive.as_uri()]) == 0
    root = dest / "imagenette2-160"
    assert len(list((root / "val").rglob("*.webp"))) == 20
    assert [p.name for p in dest.iterdir()] == ["imagenette2-160"]  # no temporary leftovers


def test_download_rejects_bad_archives(tmp_path, tiny_imagenette):
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match="not a valid"):
        download_imagenette("160", tmp_path / "d1", url=bad.as_uri())
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tiny_imagenette / "val", arcname="../escaped")
    with pytest.raises(DatasetError):
        download_imagenette("160", tmp_path / "d2", url=evil.as_uri())
    assert not (tmp_path / "escaped").exists()
    with pytest.raises(DatasetError, match="could not download"):
        download_imagenette("160", tmp_path / "d3", url=(tmp_path / "absent.tgz").as_uri())


def test_any_image_folder_is_a_dataset(relabelled_data):
    """Class names are the folders' (sorted), the class count is theirs; ImageNette keeps its
    WordNet IDs (names shown, ImageNet indices under a 1000-class head)."""
    assert dataset_classes(relabelled_data) == ["dog", "fish", "horn", "parachute"]
    labels = dataset_label_map(relabelled_data)
    assert labels == {"dog": 0, "fish": 1, "horn": 2, "parachute": 3}
    assert class_names(labels) == {0: "dog", 1: "fish", 2: "horn", 3: "parachute"}
    split = load_split(relabelled_data, "val", labels=labels, size=32)
    assert len(split) == 8 and sorted(set(split.labels.tolist())) == [0, 1, 2, 3]
    assert folder_label_map(["dog", "fish"], 10) == {"dog": 0, "fish": 1}  # a larger head: its first outputs
    with pytest.raises(DatasetError, match="the dataset has 2 classes, more than the model's 1-class head"):
        folder_label_map(["dog", "fish"], 1)
    assert class_names(label_map(1000))[701] == "parachute"
    with pytest.raises(DatasetError, match=r"class folder\(s\) parachute not among the model's 4 classes \(cat, dog"):
        list_images(relabelled_data / "val", {"cat": 0, "dog": 1, "fish": 2, "horn": 3})


def _dataset(root, train, val):
    for split, classes in (("train", train), ("val", val)):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                (root / split / name / f"{i}.png").write_bytes(b"")
    return root


def test_bad_layouts_are_named_errors(tmp_path, monkeypatch):
    (tmp_path / "a" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has no val split"):
        dataset_classes(tmp_path / "a")
    with pytest.raises(DatasetError, match="class 'dog' is in val/ but not in train/"):
        dataset_classes(_dataset(tmp_path / "b", {"cat": 1}, {"cat": 1, "dog": 1}))
    with pytest.raises(DatasetError, match="class 'dog' .and 1 more. is in train/ but not in val/"):
        dataset_classes(_dataset(tmp_path / "c", {"cat": 1, "dog": 1, "emu": 1}, {"cat": 1}))
    empty = _dataset(tmp_path / "d", {"cat": 1, "dog": 0}, {"cat": 1, "dog": 1})
    with pytest.raises(DatasetError, match="dog: class folder holds no images"):
        list_images(empty / "train", dataset_label_map(empty))
    with pytest.raises(DatasetError, match="a class name must not hold control characters"):
        dataset_classes(_dataset(tmp_path / "e", {"new\nline": 1}, {"new\nline": 1}))
    monkeypatch.setattr(ctnet.data, "MAX_NUM_CLASSES", 3)
    with pytest.raises(DatasetError, match="more than 3 class folders"):
        dataset_classes(_dataset(tmp_path / "f", dict.fromkeys("abcd", 1), dict.fromkeys("abcd", 1)))
    (tmp_path / "g" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folders"):
        dataset_classes(tmp_path / "g")


# --- data: decompression bombs, worker errors --------------------------------------------------

def test_decompression_bomb_is_one_line_naming_the_file(tmp_path, bad_images, state, capsys):
    png = bomb(bad_images / "val" / "n01440764" / "b.png")
    with pytest.raises(DatasetError, match="too large to decode safely") as info:
        load_image(png, 16)
    assert str(png) in str(info.value)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    assert main(["eval", str(ckpt), "--data", str(bad_images), "--device", "cpu", "--workers", "0"]) == 2
    assert str(png) in one_line_error(capsys)
    bomb(bad_images / "train" / "n01440764" / "b.png")
    for extra in ([], ["--cache-dataset"]):
        assert main(["train", str(bad_images), "--output-dir", str(tmp_path / "run"), "--epochs", "1",
                     "--image-size", "16", "--batch-size", "10", "--workers", "0", "--device", "cpu", *extra]) == 2
        assert "b.png" in one_line_error(capsys)


def test_worker_error_is_the_original_one_line(tmp_path, bad_images, state, capsys):
    broken = bad_images / "val" / "n01440764" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    assert main(["eval", str(ckpt), "--data", str(bad_images), "--device", "cpu", "--workers", "2",
                 "--batch-size", "4"]) == 2
    err = one_line_error(capsys)
    assert str(broken) in err and "Traceback" not in err and "DataLoader" not in err
