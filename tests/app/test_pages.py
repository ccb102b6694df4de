"""Every page on the demo through Streamlit's AppTest: renders without exception, its main
widgets work, bad input gives an st.error naming the problem and keeps the app and the
selected checkpoint as they were."""
from __future__ import annotations

import io
import os
import pickle
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from demo_fixture import MAIN, PAGES

TIMEOUT = 180


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(PAGES[page]).run()
    return at


def ok(at: AppTest) -> AppTest:
    """No exception and no error block on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def current(at: AppTest) -> str | None:
    return at.session_state["current"]


def errors(at: AppTest) -> str:
    return " | ".join(e.value for e in at.error)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


def wait_for_jobs(at: AppTest, seconds: float = 300) -> AppTest:
    """Rerun until a rerun starts and ends with no background job running (what the pages'
    pollers do live). A rerun can start a job (the accuracy of a finished encode), so an idle
    moment before a rerun is not enough: its page would still show "measuring…"."""
    from app import background
    deadline = time.monotonic() + seconds
    while True:
        idle_before = not background.running_jobs()
        at.run()
        if idle_before and not background.running_jobs():
            return at
        assert time.monotonic() < deadline, [(j.label, j.progress, j.elapsed()) for j in background.running_jobs()]
        time.sleep(0.5)


def lab_shown(at: AppTest) -> dict:
    """The encode the Codec lab shows for its widgets' settings (job result)."""
    from app import encodes
    job = encodes.encode_job(current(at), at.session_state["lab_settings"])
    assert job is not None and job.ok, job and job.error()
    return job.result()


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_on_the_demo(demo_env, page):
    at = ok(app(page))
    assert at.title[0].value == {"checkpoints": "Checkpoints", "coefficients": "Coefficients", "frames": "Frames",
                                 "codec_lab": "Codec lab", "accuracy": "Accuracy", "rate_distortion": "Rate–distortion",
                                 "compare": "Compare"}[page]
    assert current(at) is not None and str(demo_env) in current(at)  # the demo opens by default
    if page == "checkpoints":
        assert at.selectbox(key="w_pick").options
        assert at.dataframe, "checkpoint table missing"
    if page == "coefficients":
        assert at.selectbox(key="w_layer").value.endswith("weight_dct")
    if page == "frames":
        assert at.get("video"), "preview video missing"
    if page == "codec_lab":
        assert at.button(key="w_encode")
        # one widget per EncodeSettings field, seeded with its default
        from app import forms
        for name, value in forms.defaults().to_dict().items():
            if name != "crf":
                assert at.session_state[forms.key(name)] == value, name
    if page == "compare":
        assert at.dataframe and at.metric


def test_demo_notes_and_table(demo_env):
    at = ok(app("checkpoints"))
    assert any("Embedded demo" in i.value for i in at.info)
    assert not any("Embedded demo — Embedded demo" in i.value for i in at.info)
    table = at.dataframe[0].value
    assert {"epoch", "top-1 %", "est. bytes", "real bytes", "ratio", "non-zero coeffs"} <= set(table.columns)
    bundles = table[table["kind"] == "bundle"]
    assert len(bundles) >= 1
    # real bytes are the bundle folder's size, and the ratio follows from them
    for _, row in bundles.iterrows():
        size = sum(p.stat().st_size for p in Path(row["file"]).iterdir())
        assert row["real bytes"] == size
        assert row["ratio"] > 1


def test_select_checkpoint_from_a_training_folder(demo_env, training_run):
    at = ok(app("checkpoints"))
    before = current(at)
    at.text_input(key="w_root").set_value(str(training_run)).run()
    ok(at)
    # every role file of the one trained epoch is listed once, roles merged
    table = at.dataframe[0].value
    assert len(table) == 1 and set(table["roles"][0].split(", ")) == {
        p.stem for p in (training_run / "checkpoints").glob("*.safetensors")}
    choice = table["file"][0]
    assert choice != before and choice.endswith(".safetensors")
    # issue 24.1: typing the folder opens its checkpoint, and the URL names both, so a reload or a
    # shared link comes back to the folder, not to the demo
    assert current(at) == choice and at.selectbox(key="w_pick").value == choice
    assert at.query_params["root"] == str(training_run) and at.query_params["ckpt"] == choice
    at.switch_page(PAGES["coefficients"]).run()
    ok(at)
    assert "ctnet18-cpu-smoke" in at.main.caption[0].value
    shared = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for k, v in dict(at.query_params).items():
        shared.query_params[k] = v
    ok(shared.run())
    assert current(shared) == choice and shared.session_state["run_root"] == str(training_run)
    assert shared.text_input(key="w_root").value == str(training_run)
    assert len(shared.dataframe[0].value) == 1
    # a folder typed while one of its checkpoints is current keeps that one
    shared.text_input(key="w_root").set_value(str(training_run) + "/").run()
    assert current(shared) == choice


def test_coefficients_widgets(demo_env):
    at = ok(app("coefficients"))
    # by default: levels ≠ 0 on the checkpoint's export grid, the count the bundle codes
    from app import models
    from ctnet import inspect as ci
    loaded = models.load(current(at))
    grid_nz = sum(r["non-zero"] for r in ci.grid_stats(loaded.model, loaded.meta))
    assert metric(at, "non-zero levels on the export grid") == f"{grid_nz:,}"
    layers = at.selectbox(key="w_layer").options
    at.selectbox(key="w_layer").set_value("layer4.1.conv2.weight_dct").run()
    ok(at)
    assert any("512×512×3×3" in s.value or "1536×1536" in s.value for s in [*at.subheader, *at.caption])
    at.radio(key="w_grid").set_value("uniform q").run()
    nz_default = metric(at, "non-zero")
    at.number_input(key="w_q").set_value(0.5).run()
    ok(at)
    assert metric(at, "non-zero") != nz_default  # a coarser step keeps fewer coefficients
    channel = next(n for n in layers if "downsample" in n)
    at.selectbox(key="w_layer").set_value(channel).run()
    ok(at)
    fc = next(n for n in layers if n.startswith("fc."))
    at.selectbox(key="w_layer").set_value(fc).run()
    ok(at)
    assert any("no per-frequency aggregate" in i.value for i in at.info)


def test_frames_widgets(demo_env):
    at = ok(app("frames"))
    assert any("frames of 256×256 in the plan" in c.value for c in at.caption)
    slider = at.slider(key="w_frame")
    assert slider.value == 0 and slider.max > 3
    at.slider(key="w_frame").set_value(3).run()
    ok(at)
    assert at.slider(key="w_frame").value == 3
    at.button(key="w_frame_next").click().run()
    assert at.slider(key="w_frame").value == 4
    at.button(key="w_frame_prev").click().run()
    at.button(key="w_frame_prev").click().run()
    assert at.slider(key="w_frame").value == 2
    # what the frame holds: its layer and the planes, frequencies, rows, columns
    assert any("· rows " in m.value for m in at.markdown)
    assert any("frequency (k_h, k_w)" in df.value.columns for df in at.dataframe)
    at.radio(key="w_view").set_value("pixels").run()
    ok(at)
    assert at.get("video")


def test_encode_compare_and_evaluate(demo_env):
    """Re-encode at ultrafast (its sample top-1 measured in the background), again at CRF 30:
    the change table, the stale cue in between; the Frames page gets bytes per frame; the
    Accuracy page lets the user pick which encode it measures."""
    at = ok(app("codec_lab"))
    at.selectbox(key="w_lab_preset").set_value("ultrafast").run()
    at.button(key="w_encode").click().run()
    assert at.button(key="w_encode").disabled  # this encode runs: not twice
    # the encode runs in the background: another page renders meanwhile
    at.switch_page(PAGES["coefficients"]).run()
    ok(at)
    at.switch_page(PAGES["codec_lab"]).run()
    ok(wait_for_jobs(at))
    lossless = lab_shown(at)["result"]
    assert metric(at, "bundle bytes") == f"{lossless.total_bytes:,}"
    assert lossless.total_bytes == sum(len(b) for b in lossless.files.values())
    top1 = metric(at, "decoded top-1")
    assert top1.endswith("%") and 0 <= float(top1[:-2]) <= 100  # measured in the background
    assert at.get("download_button")
    table = next(d.value for d in at.dataframe if "layer" in d.value.columns)  # the per-layer table
    assert {"bits/nz", "H0 bits/nz"} <= set(table.columns) and table.iloc[-1]["layer"] == "total (weights)"
    at.checkbox(key="w_lab_lossless").uncheck().run()
    at.slider(key="w_lab_crf").set_value(30).run()
    assert any("Stale" in w.value and "crf 0 → 30" in w.value for w in at.warning)  # results ≠ widgets
    at.button(key="w_encode").click().run()
    ok(wait_for_jobs(at))
    assert not any("Stale" in w.value for w in at.warning)
    lossy = lab_shown(at)["result"]
    assert lossy.total_bytes < lossless.total_bytes
    assert any("Change against the previous encode" in m.value for m in at.markdown)

    at.switch_page(PAGES["frames"]).run()
    ok(at)
    assert any("From the Codec lab's encode" in c.value for c in at.caption)

    at.switch_page(PAGES["accuracy"]).run()
    ok(at)
    pick = at.selectbox(key="w_acc_pick")
    assert len(pick.options) >= 3 and "CRF 30" in pick.value  # the bundle, then the encodes; default: the lab's
    assert any("CRF 30" in m.value for m in at.markdown if m.value.startswith("**Measuring:**"))
    prefix = "re-encoded in the Codec lab at "
    pick.set_value(next(o for o in pick.options if "ultrafast · lossless" in o).removeprefix(prefix)).run()
    assert any("lossless" in m.value for m in at.markdown if m.value.startswith("**Measuring:**"))
    at.number_input(key="w_acc_limit").set_value(10).run()
    at.button(key="w_acc_run").click().run()
    ok(wait_for_jobs(at))
    table = at.dataframe[0].value
    measured = table[table["model"].isin(["original", "decoded"])]
    assert [str(x).split()[0] for x in measured["images"]] == ["10", "10"]  # "10 of the embedded sample"
    assert measured["top-1 %"].between(0, 100).all()
    assert any(s.value.startswith("Confusion matrix (decoded") for s in at.subheader)

    at.switch_page(PAGES["compare"]).run()
    ok(at)
    b = at.selectbox(key="w_cmp_b")
    assert b.format_func(b.value).startswith("lab encode:")  # default B: the latest encode of the current one
    assert {"bytes A", "bytes B", "Δ bytes", "bits/nz B"} <= set(at.dataframe[0].value.columns)
    at.selectbox(key="w_cmp_layer").set_value("layer2.0.conv1.weight_dct").run()
    ok(at)
    assert any(m.value.startswith("**Sparsity map**") for m in at.markdown)


def test_accuracy_on_the_sample_subset(demo_env):
    at = ok(app("accuracy"))
    at.number_input(key="w_acc_limit").set_value(20).run()
    # an estimate before it starts (1 model, or 2 when the server holds an encode of this checkpoint)
    assert any(c.value.startswith("Run measures ") and ": ≈" in c.value for c in at.caption)
    at.button(key="w_acc_run").click().run()
    ok(wait_for_jobs(at))
    row = at.dataframe[0].value.iloc[0]
    assert str(row["images"]).split()[0] == "20" and 0 <= row["top-1 %"] <= 100  # "20 of the embedded sample"
    assert "cpu" in row["device"] or "cuda" in row["device"]


# --- bad input ---------------------------------------------------------------------------------

def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="w_upload").upload(name, data).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_upload_non_checkpoint(demo_env):
    at = ok(app("checkpoints"))
    before = current(at)
    for name in ("notes.safetensors", "notes.pt"):  # named for what it is not, whatever its suffix says
        upload(at, name, name.encode() + b": this is not a checkpoint at all" * 10)
        assert f"{name}: not a checkpoint: neither a safetensors file" in errors(at)
        assert "ctnet-uploads-" not in errors(at) and "/tmp" not in errors(at)  # no server path shown
        assert f"Upload refused: {name}: " in errors(at)  # nor the server's hash folder
        assert current(at) == before
    upload(at, "bundle.zip", b"this is not a zip archive" * 10)
    assert "bundle.zip: not a zip archive" in errors(at) and "expected a checkpoint" not in errors(at)
    assert current(at) == before


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_upload_crafted_pickle_is_refused_and_not_run(demo_env, tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(2, 2), "evil": _Exploit()}, buf)
    at = ok(app("checkpoints"))
    before = current(at)
    upload(at, "model.pt", buf.getvalue())
    assert "refused to load" in errors(at)
    assert not marker.exists()
    assert current(at) == before
    # a bare pickle (not torch's zip) is refused too
    upload(at, "legacy.pth", pickle.dumps(_Exploit(), protocol=2))
    assert "refused" in errors(at) and not marker.exists()
    assert current(at) == before


def _zip_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{folder.name}/{p.name}")
    return buf.getvalue()


def _a_bundle(demo_dir: Path) -> Path:
    return next(demo_dir.glob("runs/*/bundles/*"))


def test_upload_truncated_bundle(demo_env):
    data = _zip_of(_a_bundle(demo_env))
    at = ok(app("checkpoints"))
    before = current(at)
    upload(at, "bundle.zip", data[: len(data) // 2])
    assert "zip" in errors(at) and "truncated" in errors(at)
    assert current(at) == before


def test_upload_corrupted_bundle(demo_env, tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(_a_bundle(demo_env), folder)
    stream = max(folder.glob("*.mp4"), key=lambda p: p.stat().st_size)
    raw = bytearray(stream.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    stream.write_bytes(bytes(raw))
    at = ok(app("checkpoints"))
    before = current(at)
    upload(at, "bundle.zip", _zip_of(folder))
    assert "SHA-256" in errors(at) and stream.name in errors(at)
    assert current(at) == before


def test_upload_good_bundle_becomes_current(demo_env):
    at = ok(app("checkpoints"))
    upload(at, "bundle.zip", _zip_of(_a_bundle(demo_env)))
    ok(at)
    assert current(at).endswith("/bundle") and "ctnet-uploads-" in current(at)
    assert any("bundle.zip" in m.value for m in at.sidebar.markdown)  # the sidebar names it at once
    at.switch_page(PAGES["coefficients"]).run()
    assert "uploaded: bundle.zip" in ok(at).main.caption[0].value


def test_bad_dataset_paths(demo_env, tmp_path):
    at = ok(app("accuracy"))
    at.radio(key="w_acc_source").set_value("path").run()
    missing = tmp_path / "no-such-imagenette"
    at.text_input(key="w_acc_path").set_value(str(missing)).run()
    at.button(key="w_acc_run").click().run()
    assert not at.exception
    assert f"{missing} does not exist" in errors(at)
    wrong = tmp_path / "wrong-layout"
    (wrong / "val" / "cats").mkdir(parents=True)
    at.text_input(key="w_acc_path").set_value(str(wrong)).run()
    at.button(key="w_acc_run").click().run()
    assert not at.exception
    assert "class folder(s) cats not among the model's" in errors(at)
    assert str(demo_env) in current(at)


def test_bad_run_folder(demo_env, tmp_path):
    at = ok(app("checkpoints"))
    before = current(at)
    at.text_input(key="w_root").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception and "does not exist" in errors(at)
    (tmp_path / "empty").mkdir()
    at.text_input(key="w_root").set_value(str(tmp_path / "empty")).run()
    assert not at.exception and "holds no run" in errors(at)
    assert current(at) == before


def test_missing_demo_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("CTNET_DEMO_DIR", str(tmp_path / "demo"))
    at = app("checkpoints")
    assert not at.exception
    assert "embedded demo is missing" in errors(at)
    for page in ("coefficients", "frames", "codec_lab", "accuracy"):
        at.switch_page(PAGES[page]).run()
        assert not at.exception
        assert any("No checkpoint selected" in i.value for i in at.info)


def test_cached_models_are_never_mutated(demo_env):
    """After every page has used the shared model, its tensors equal a fresh load's."""
    from app import models
    from ctnet.api import load_any
    at = app()
    for page in PAGES:
        ok(at.switch_page(PAGES[page]).run())
    path = current(at)
    shared, fresh = models.load(path).model, load_any(path).model
    a, b = shared.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in shared.parameters())


def test_codec_lab_other_codecs(demo_env):
    """Choosing AV1 keeps the bit depth and pixel format within what SVT-AV1 takes; a plane
    codec (xz) encodes lossless-only and its bundle decodes to the same coefficients."""
    at = ok(app("codec_lab"))
    at.selectbox(key="w_lab_codec").set_value("av1").run()
    ok(at)
    assert at.radio(key="w_lab_pix_fmt").value == "yuv420"
    at.selectbox(key="w_lab_codec").set_value("xz").run()
    assert at.checkbox(key="w_lab_lossless").disabled and at.selectbox(key="w_lab_preset").disabled
    at.button(key="w_encode").click().run()
    ok(wait_for_jobs(at))
    lab = lab_shown(at)
    assert lab["settings"].codec == "xz" and lab["settings"].crf == 0
    assert any(name.endswith(".xz") for name in lab["result"].files)
    assert any("xz" in s.value for s in at.subheader)


def test_codec_lab_takes_a_bundles_own_settings(demo_env):
    """A v2 bundle's settings come back into the widgets with one click; the Frames page then
    shows that bundle's own bytes per frame (from its manifest)."""
    import json
    v2 = [p.parent for p in sorted(demo_env.glob("runs/*/bundles/*/manifest.json"))
          if json.loads(p.read_text()).get("version") == 2]
    if not v2:
        pytest.skip("the demo holds no format-v2 bundle yet")
    at = ok(app("checkpoints"))
    at.selectbox(key="w_pick").set_value(str(v2[0])).run()
    at.switch_page(PAGES["codec_lab"]).run()
    at.selectbox(key="w_lab_preset").set_value("ultrafast").run()
    at.button(key="w_encode")  # present
    use = next(b for b in at.button if b.label == "Use this bundle's own settings")
    use.click().run()
    ok(at)
    own = json.loads((v2[0] / "manifest.json").read_text())["settings"]
    assert at.session_state["lab_settings"].to_dict() == own
    at.switch_page(PAGES["frames"]).run()
    ok(at)
    assert any("From this bundle's manifest" in c.value for c in at.caption)


def test_checkpoints_page_offers_the_decoded_model_as_a_torchvision_file(demo_env):
    """`ctnet decode --out` from the page: the plain safetensors loads into torchvision."""
    import torchvision
    from safetensors.torch import load as st_load
    at = ok(app("checkpoints"))
    at.selectbox(key="w_dl_fmt_checkpoints").set_value("safetensors").run()
    at.button(key="w_dl_prepare_checkpoints").click().run()
    ok(at)
    key, fmt, data, suffix = at.session_state["dl_ready_checkpoints"]
    assert fmt == "safetensors" and suffix == ".safetensors"
    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(st_load(data))  # strict: a plain torchvision state dict


def test_codec_lab_per_layer_grid_from_a_sensitivity_profile(demo_env, monkeypatch, tmp_path):
    """With a sensitivity profile of the current checkpoint (here written into the machine's
    cache), the lab offers a per-layer grid: the allocation at the budget, encoded exactly so;
    without one it says how to measure it."""
    from ctnet import bitalloc, rd
    from ctnet.export import video_tensors
    monkeypatch.setenv(bitalloc.CACHE_ENV, str(tmp_path / "sensitivity"))
    at = ok(app("codec_lab"))
    assert at.selectbox(key="w_lab_layer_grid").disabled
    assert any("no sensitivity profile" in c.value for c in at.caption)
    path = current(at)
    # a profile file that cannot be used (damaged, or written by an older ctnet) is named on the page
    bad = bitalloc.profile_path(rd.source_hash(path))
    bad.parent.mkdir(parents=True)
    bad.write_text('{"format": "ctnet-sensitivity", "version": 1}')
    at.run()
    assert not at.exception and any("cannot be used" in w.value and "source_sha256" in w.value for w in at.warning)
    from app import models
    names = list(video_tensors(models.load(path).model))
    cands = (4, 8)
    # layer 0 is sensitive (its 4-bit grid moves the predictions), the others are not
    kl = {n: {4: 0.5 if i == 0 else 0.0001, 8: 0.0} for i, n in enumerate(names)}
    prof = bitalloc.Profile(rd.source_hash(path), "x/train:0", 8, cands, 1.0, 90.0, kl,
                            {n: {b: 1.0 for b in cands} for n in names}, {n: {b: 90.0 for b in cands} for n in names},
                            {n: {4: 100.0, 8: 200.0} for n in names})
    bitalloc.write_profile(bitalloc.profile_path(prof.source_sha256), prof)
    at.run()
    ok(at)
    at.selectbox(key="w_lab_layer_grid").set_value("auto (measured sensitivity)").run()
    at.selectbox(key="w_lab_preset").set_value("ultrafast").run()
    ok(at)
    assert at.selectbox(key="w_lab_bit_depth").disabled
    want = {n: 8 if i == 0 else 4 for i, n in enumerate(names)}
    assert dict(at.session_state["lab_settings"].layer_bits) == want
    at.button(key="w_encode").click().run()
    ok(wait_for_jobs(at))
    lab = lab_shown(at)
    assert dict(lab["settings"].layer_bits) == want and lab["settings"].bit_depth == 8
    assert {x["name"]: x["bits"] for x in lab["result"].layers if x["kind"] == "weight"} == want
    assert any("per-layer 4–8-bit" in s.value for s in at.subheader)
