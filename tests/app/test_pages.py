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


def wait_for_encode(at: AppTest, seconds: float = 240) -> AppTest:
    """Rerun until the background encode has landed (what the page's poller does live)."""
    deadline = time.monotonic() + seconds
    while at.session_state["lab_job"] is not None:
        assert time.monotonic() < deadline, "encode did not finish"
        time.sleep(0.5)
        at.run()
    return at


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_on_the_demo(demo_env, page):
    at = ok(app(page))
    assert at.title[0].value == {"checkpoints": "Checkpoints", "coefficients": "Coefficients", "frames": "Frames",
                                 "codec_lab": "Codec lab", "accuracy": "Accuracy", "rate_distortion": "Rate–distortion"}[page]
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


def test_demo_notes_and_table(demo_env):
    at = ok(app("checkpoints"))
    assert any("Embedded demo" in i.value for i in at.info)
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
    pick = at.selectbox(key="w_pick")
    assert pick.value == before  # the demo's checkpoint stays current until another is picked
    pick.set_value(choice).run()
    ok(at)
    assert current(at) == choice
    at.switch_page(PAGES["coefficients"]).run()
    ok(at)
    assert "ctnet18-cpu-smoke" in at.main.caption[0].value


def test_coefficients_widgets(demo_env):
    at = ok(app("coefficients"))
    nz_default = metric(at, "non-zero")
    layers = at.selectbox(key="w_layer").options
    at.selectbox(key="w_layer").set_value("layer4.1.conv2.weight_dct").run()
    ok(at)
    assert any("512×512×3×3" in s.value or "1536×1536" in s.value for s in [*at.subheader, *at.caption])
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
    streams = at.selectbox(key="w_stream").options
    assert streams[0].startswith("w_128x128")
    at.radio(key="w_scrub_order").set_value("similarity").run()
    at.slider(key="w_scrub").set_value(3).run()
    ok(at)
    at.selectbox(key="w_stream").set_value(streams[-1]).run()
    ok(at)
    assert at.get("video")


def test_encode_compare_and_evaluate(demo_env):
    """Re-encode at ultrafast, again at CRF 30; the change table appears; the Frames page
    gets bytes per frame; the Accuracy page compares original and decoded."""
    at = ok(app("codec_lab"))
    at.selectbox(key="w_lab_preset").set_value("ultrafast").run()
    at.button(key="w_encode").click().run()
    assert at.session_state["lab_job"] is not None
    assert at.button(key="w_encode").disabled  # one encode at a time
    # the encode runs in the background: another page renders meanwhile
    at.switch_page(PAGES["coefficients"]).run()
    ok(at)
    at.switch_page(PAGES["codec_lab"]).run()
    ok(wait_for_encode(at))
    lossless = at.session_state["lab_result"]["result"]
    assert metric(at, "bundle bytes") == f"{lossless['total_bytes']:,}"
    assert lossless["total_bytes"] == sum(len(b) for b in lossless["files"].values())
    assert at.get("download_button")
    at.checkbox(key="w_lab_lossless").uncheck().run()
    at.slider(key="w_lab_crf").set_value(30).run()
    at.button(key="w_encode").click().run()
    ok(wait_for_encode(at))
    lossy = at.session_state["lab_result"]["result"]
    assert lossy["total_bytes"] < lossless["total_bytes"]
    assert at.session_state["lab_previous"]["total_bytes"] == lossless["total_bytes"]
    assert any("Change against the previous encode" in m.value for m in at.markdown)

    at.switch_page(PAGES["frames"]).run()
    ok(at)
    assert any("From the Codec lab's encode" in c.value for c in at.caption)

    at.switch_page(PAGES["accuracy"]).run()
    ok(at)
    at.number_input(key="w_acc_limit").set_value(10).run()
    at.button(key="w_acc_run").click().run()
    ok(at)
    table = at.dataframe[0].value
    measured = table[table["model"].isin(["original", "decoded"])]
    assert list(measured["images"]) == [10, 10]
    assert measured["top-1 %"].between(0, 100).all()
    assert any(s.value.startswith("Confusion matrix (decoded") for s in at.subheader)


def test_accuracy_on_the_sample_subset(demo_env):
    at = ok(app("accuracy"))
    at.number_input(key="w_acc_limit").set_value(20).run()
    at.button(key="w_acc_run").click().run()
    ok(at)
    row = at.dataframe[0].value.iloc[0]
    assert row["images"] == 20 and 0 <= row["top-1 %"] <= 100
    assert "cpu" in row["device"] or "cuda" in row["device"]


# --- bad input ---------------------------------------------------------------------------------

def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="w_upload").upload(name, data).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_upload_non_checkpoint(demo_env):
    at = ok(app("checkpoints"))
    before = current(at)
    upload(at, "notes.safetensors", b"this is not a checkpoint at all" * 10)
    assert "not a readable safetensors file" in errors(at)
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
    assert "unknown class folder(s) cats" in errors(at)
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
    from app import state
    from ctnet.api import load_any
    at = app()
    for page in PAGES:
        ok(at.switch_page(PAGES[page]).run())
    path = current(at)
    shared, _ = state.load(path)
    fresh, _ = load_any(path)
    a, b = shared.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in shared.parameters())


def test_codec_lab_other_codecs(demo_env):
    """Choosing AV1 keeps the bit depth and pixel format within what SVT-AV1 takes; a plane
    codec (xz) encodes lossless-only and its bundle decodes to the same coefficients."""
    at = ok(app("codec_lab"))
    at.selectbox(key="w_lab_bit_depth").set_value(12).run()
    at.selectbox(key="w_lab_codec").set_value("av1").run()
    ok(at)
    assert at.selectbox(key="w_lab_bit_depth").value in (8, 10)
    assert at.radio(key="w_lab_pix_fmt").value == "yuv420"
    at.selectbox(key="w_lab_codec").set_value("xz").run()
    assert at.checkbox(key="w_lab_lossless").disabled and at.selectbox(key="w_lab_preset").disabled
    at.button(key="w_encode").click().run()
    ok(wait_for_encode(at))
    lab = at.session_state["lab_result"]
    assert lab["settings"]["codec"] == "xz" and lab["settings"]["crf"] == 0
    assert any(name.endswith(".xz") for name in lab["result"]["files"])
    assert any("xz" in s.value for s in at.subheader)
