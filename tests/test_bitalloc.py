"""Per-layer grids by measured sensitivity (``ctnet.bitalloc``): the profile of a real model
on real images, its strict reader, the allocation under a budget, and ``ctnet encode
--bit-depth auto`` / a per-layer map from the command line."""
import json

import pytest
import torch

from codec_fixtures import sparse_ctnet18
from ctnet import bitalloc, cli, quant
from ctnet.checkpoint import save_checkpoint
from ctnet.codec import bundle as B
from ctnet.export import video_tensors


def _profile(kl: dict[str, dict[int, float]], sizes: dict[str, dict[int, float]]) -> bitalloc.Profile:
    cands = tuple(sorted(next(iter(sizes.values()))))
    loss = {n: {b: 1.0 + d for b, d in per.items()} for n, per in kl.items()}
    return bitalloc.Profile("ab" * 32, "x/train:0", 64, cands, 1.0, 90.0, kl, loss,
                            {n: {b: 90.0 for b in cands} for n in kl}, sizes)


def test_allocation_spends_the_budget_where_bytes_are_cheapest_to_save():
    # "big" saves 6000 B from 8 to 4 bits for a loss of 0.02; "small" saves 100 B for 0.02
    sizes = {"big": {4: 4000.0, 6: 7000.0, 8: 10000.0}, "small": {4: 900.0, 6: 950.0, 8: 1000.0}}
    deltas = {"big": {4: 0.02, 6: 0.005, 8: 0.0}, "small": {4: 0.02, 6: 0.005, 8: 0.0}}
    prof = _profile(deltas, sizes)
    assert bitalloc.allocate(prof, 0.0) == {"big": 8, "small": 8}
    assert bitalloc.allocate(prof, 0.006) == {"big": 6, "small": 8}
    assert bitalloc.allocate(prof, 0.021) == {"big": 4, "small": 8}
    assert bitalloc.allocate(prof, 1.0) == {"big": 4, "small": 4}
    chosen = bitalloc.allocate(prof, 0.021)
    assert bitalloc.summary(prof, chosen) == {"est_bytes": 5000, "est_bytes_top": 11000,
                                              "summed_kl": pytest.approx(0.02), "bits": {4: 1, 6: 0, 8: 1}}
    # a coarser grid that changed no prediction is free: taken even at budget 0
    free = _profile({"big": {4: 0.0, 6: 0.0, 8: 0.0}, "small": deltas["small"]}, sizes)
    assert bitalloc.allocate(free, 0.0) == {"big": 4, "small": 8}
    for bad in (-0.1, float("nan"), True):
        with pytest.raises(bitalloc.AllocationError, match="budget must be a finite number of nats"):
            bitalloc.allocate(prof, bad)


def test_profile_reader_is_strict(tmp_path):
    prof = _profile({"a": {6: 0.01, 8: 0.0}}, {"a": {6: 10.0, 8: 20.0}})
    path = tmp_path / "p.json"
    bitalloc.write_profile(path, prof)
    assert bitalloc.read_profile(path) == prof
    assert bitalloc.read_profile(tmp_path / "none.json") is None
    good = prof.to_json()
    for edit, message in [(lambda d: d.update(format="x"), "not a ctnet sensitivity profile"),
                          (lambda d: d.update(version=2), "version 2"),
                          (lambda d: d.update(candidates=[6, 13]), "'candidates'"),
                          (lambda d: d["loss"]["a"].pop("6"), "one value per candidate grid"),
                          (lambda d: d["acc1"]["a"].update({"6": 101}), "'acc1.a.6'"),
                          (lambda d: d["est_bytes"].update(b={"6": 1, "8": 2}), "name the same tensors"),
                          (lambda d: d["kl"]["a"].update({"6": -1}), "'kl.a.6'"),
                          (lambda d: d.update(base_loss=float("inf")), "'base_loss'")]:
        doc = json.loads(json.dumps(good))
        edit(doc)
        path.write_text(json.dumps(doc))
        with pytest.raises(bitalloc.AllocationError, match=message):
            bitalloc.read_profile(path)
    path.write_text("{not json")
    with pytest.raises(bitalloc.AllocationError, match="not a readable sensitivity profile"):
        bitalloc.read_profile(path)


def test_measured_profile_of_a_model_on_real_train_images(tiny_imagenette):
    model, meta = sparse_ctnet18(seed=3, keep=0.02)
    split = bitalloc.train_slice(tiny_imagenette, meta, 10)
    prof = bitalloc.measure(model, split, source_sha256="cd" * 32, data=bitalloc.data_id(tiny_imagenette),
                            candidates=(4, 8), batch_size=5)
    names = list(video_tensors(model))
    assert prof.tensors == names and prof.images == 10 and prof.candidates == (4, 8)
    assert prof.data.startswith(tiny_imagenette.name + "/train:")
    for n in names:
        assert prof.kl[n][8] == 0.0 and prof.loss[n][8] == prof.base_loss and prof.est_bytes[n][4] > 0
        assert prof.kl[n][4] >= 0.0
    assert any(prof.kl[n][4] > 0 for n in names)  # coarsening some layer moved the predictions
    # the reference is every tensor on the 8-bit grid: what the combined measurement compares with
    same = bitalloc.measure_combined(model, split, {n: 8 for n in names}, batch_size=5)
    assert same == {"kl": 0.0, "loss": pytest.approx(prof.base_loss, rel=1e-6), "acc1": prof.base_acc1}
    one = bitalloc.measure_combined(model, split, {n: 4 if n == names[0] else 8 for n in names}, batch_size=5)
    assert one["kl"] == pytest.approx(prof.kl[names[0]][4], rel=1e-5, abs=1e-9)
    t = video_tensors(model)["layer1.0.conv1.weight_dct"]
    assert torch.equal(bitalloc._on_grid(t, 5), quant.fake_quantize(t, 5).detach())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model, meta = sparse_ctnet18(seed=4)
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    save_checkpoint(path, model, meta)
    return path, model


def test_cli_bit_depth_n_and_per_layer_maps(ckpt, tmp_path, capsys):
    path, model = ckpt
    assert cli.main(["encode", str(path), "--out", str(tmp_path / "b6"), "--bit-depth", "6", "--preset", "ultrafast",
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["bit_depth"] == 6 and {x["bits"] for x in report["layers"] if x["kind"] == "weight"} == {6}
    names = list(video_tensors(model))
    layer_map = {n: 5 if "layer4" in n else 7 for n in names}
    (tmp_path / "map.json").write_text(json.dumps(layer_map))
    assert cli.main(["encode", str(path), "--out", str(tmp_path / "pl"), "--bit-depth", str(tmp_path / "map.json"),
                     "--preset", "ultrafast", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["layer_bits"] == layer_map and report["settings"]["bit_depth"] == 7
    # a bundle's manifest is a map too: the same grid again
    assert cli.main(["encode", str(path), "--out", str(tmp_path / "pl2"), "--bit-depth",
                     str(tmp_path / "pl" / "manifest.json"), "--preset", "ultrafast"]) == 0
    assert (tmp_path / "pl2" / "tables.bin").read_bytes() == (tmp_path / "pl" / "tables.bin").read_bytes()
    capsys.readouterr()
    bad_maps = [({**layer_map, "layer5.weight": 6}, "does not have: layer5.weight"),
                ({n: b for n, b in layer_map.items() if n != "fc.bias"}, "leave out 1 of the model's"),
                ({**layer_map, "fc.bias": 3}, "fc.bias asks for a 3-bit grid"),
                ([6, 7], "a per-layer bit-depth map is a JSON object")]
    for i, (bad, message) in enumerate(bad_maps):
        (tmp_path / f"bad{i}.json").write_text(json.dumps(bad))
        assert cli.main(["encode", str(path), "--out", str(tmp_path / f"x{i}"), "--bit-depth",
                         str(tmp_path / f"bad{i}.json")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / f"x{i}").exists()  # nothing written
    for arg, message in (("3", "--bit-depth must be 4..12"), ("13", "--bit-depth must be 4..12"),
                         ("nine", "not 4..12, 'auto' or an existing JSON file")):
        assert cli.main(["encode", str(path), "--out", str(tmp_path / "y"), "--bit-depth", arg]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["encode", str(path), "--out", str(tmp_path / "y"), "--bit-depth", "auto"]) == 2
    assert "pass --data DIR" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_cli_bit_depth_auto_measures_once_then_reuses_the_profile(ckpt, tiny_imagenette, tmp_path, monkeypatch,
                                                                  capsys):
    path, model = ckpt
    monkeypatch.setenv(bitalloc.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(bitalloc, "CANDIDATES", (5, 8))  # two grids: half the evaluations
    args = ["encode", str(path), "--bit-depth", "auto", "--data", str(tiny_imagenette), "--auto-images", "10",
            "--budget", "1000", "--preset", "ultrafast", "--json"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 0
    report = json.loads(capsys.readouterr().out)
    lb = report["settings"]["layer_bits"]
    assert set(lb) == set(video_tensors(model)) and set(lb.values()) <= {5, 8}
    assert report["auto"]["images"] == 10 and report["auto"]["budget"] == 1000
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_measuring(*a, **k):
        raise AssertionError("measured again")
    monkeypatch.setattr(bitalloc, "measure", no_measuring)
    assert cli.main(args + ["--out", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["layer_bits"] == lb
    decoded, meta = B.read_bundle(tmp_path / "b")
    got = video_tensors(decoded)
    for name, t in video_tensors(model).items():
        assert torch.equal(got[name], quant.fake_quantize(t, lb[name]).detach()), name
