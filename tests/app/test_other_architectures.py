"""The app on a network that is not a ResNet and a dataset that is not ImageNette: a CTNet
MobileNetV3-small (depthwise 3×3 and 5×5 kernels, SE blocks with biases, Linear layers) with
a 4-class label map of other class names — browsed, its coefficients and frames shown,
encoded, and its accuracy measured with the dataset's own class names."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctnet.checkpoint import save_checkpoint
from ctnet.export import bn_layers, video_tensors
from ctnet.layers import configure_export_training
from ctnet.models import ModelSpec, plain_model, replace_with_dct_convs
from test_pages import PAGES, app, current, ok, wait_for_jobs

LABELS = {"dog": 0, "fish": 1, "horn": 2, "parachute": 3}  # the relabelled_data fixture's classes


@pytest.fixture(scope="module")
def mobilenet_run(tmp_path_factory) -> Path:
    """A training-run folder holding one CTNet MobileNetV3-small checkpoint whose weights look
    rate-trained (5 % of the levels non-zero)."""
    torch.manual_seed(0)
    model = configure_export_training(replace_with_dct_convs(plain_model("mobilenet_v3_small", num_classes=4)),
                                      pixel_bit_depth=8)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in video_tensors(model).values():
            t.mul_(torch.rand(t.shape, generator=g) < 0.05)
        for m in bn_layers(model).values():
            m.running_var.fill_(1.0)
    run = tmp_path_factory.mktemp("runs") / "mobilenet-own-data"
    save_checkpoint(run / "checkpoints" / "best.safetensors", model.eval(),
                    {"model": ModelSpec("mobilenet_v3_small", 4, True, 16).to_dict(), "label_map": LABELS,
                     "image_size": 64, "pixel_bit_depth": 8, "epoch": 1, "metrics": {"epoch": 1, "acc1": 25.0}})
    return run


def _select(at, run: Path):
    at.text_input(key="w_root").set_value(str(run)).run()
    at.selectbox(key="w_pick").set_value(at.dataframe[0].value["file"][0]).run()
    return ok(at)


def test_coefficients_and_frames_of_depthwise_se_and_linear_layers(demo_env, mobilenet_run):
    at = _select(ok(app("checkpoints")), mobilenet_run)
    assert current(at).endswith("best.safetensors")
    at.switch_page(PAGES["coefficients"]).run()
    ok(at)
    # AppTest lists a selectbox's options as shown: "name  (kind, structure, shape)"
    label = {text.split("  (")[0]: text for text in at.selectbox(key="w_layer").options}
    depthwise = next(n for n, text in label.items() if "depthwise 5×5" in text)
    at.selectbox(key="w_layer").set_value(depthwise).run()
    ok(at)
    assert any("filters" in s.value and "to a row" in s.value for s in at.subheader)  # the filter grid
    maps = [c for c in at.caption if "(0, 0) is the DC coefficient" in c.value]
    assert maps  # per-frequency maps over the depthwise filters
    se_bias = next(n for n, text in label.items() if ".fc1.bias" in n and "bias" in text)
    at.selectbox(key="w_layer").set_value(se_bias).run()
    ok(at)
    linear = next(n for n, text in label.items() if "Linear 576→1024" in text)
    at.selectbox(key="w_layer").set_value(linear).run()
    ok(at)
    assert any("no per-frequency aggregate" in i.value for i in at.info)

    at.switch_page(PAGES["frames"]).run()
    ok(at)
    assert any("frames of 256×256 in the plan" in c.value for c in at.caption)
    from app import models
    from ctnet import inspect as ci
    loaded = models.load(current(at))
    cf = ci.coded_frames(loaded.model, loaded.meta, at.session_state["lab_settings"])
    pos = next(i for i, text in enumerate(cf.labels) if text.startswith(depthwise))  # a depthwise layer's frame
    at.slider(key="w_frame").set_value(pos).run()
    ok(at)
    assert any(m.value == f"**{cf.labels[pos]}**" for m in at.markdown) and "· freq (0,0)…(4,4)" in cf.labels[pos]


def test_encode_and_accuracy_with_the_dataset_s_own_class_names(demo_env, mobilenet_run, relabelled_data):
    at = _select(ok(app("checkpoints")), mobilenet_run)
    at.switch_page(PAGES["codec_lab"]).run()
    at.selectbox(key="w_lab_preset").set_value("ultrafast").run()
    at.button(key="w_encode").click().run()
    ok(wait_for_jobs(at))
    at.switch_page(PAGES["accuracy"]).run()
    ok(at)
    at.radio(key="w_acc_source").set_value("path").run()
    at.text_input(key="w_acc_path").set_value(str(relabelled_data)).run()
    at.button(key="w_acc_run").click().run()
    ok(wait_for_jobs(at))
    table = at.dataframe[0].value
    measured = table[table["model"].isin(["original", "decoded"])]
    assert list(measured["images"]) == [8, 8]  # the 4 classes' 2 val images each
    figure = next(c for c in at.get("plotly_chart") if '"true class"' in c.proto.spec)
    assert all(f'"{name}"' in figure.proto.spec for name in LABELS)  # the confusion matrix names the classes
