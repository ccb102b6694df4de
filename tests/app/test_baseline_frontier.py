"""Both frontiers on one baseline (issue 18): a demo whose ``demo.json`` names the plain
model its runs were fine-tuned from and ships that model's own ``ctnet rd`` cache; the
Checkpoints and Rate–distortion pages draw the baseline's post-training points (NNCodec,
INT8 + zstd, a lossless bundle) as a labelled grey series beside the CTNet checkpoints — only
the points measured on the same full val split — and the app opens on the index's default."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

import baseline_fixture as bf
from demo_fixture import MAIN, PAGES


@pytest.fixture
def baseline_demo(demo_dir, monkeypatch, tmp_path):
    demo = bf.build(tmp_path / "demo", demo_dir)
    monkeypatch.setenv("CTNET_DEMO_DIR", str(demo))
    monkeypatch.setenv("CTNET_RD_CACHE", str(tmp_path / "rd-cache"))
    return demo


def figures_of(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def coder_traces(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if "post-training" in str(t.get("hovertemplate", "")) + str(t.get("name", ""))
            and t.get("mode", "").startswith("markers")]


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_checkpoints_page_draws_the_baselines_coders_beside_the_ctnet_points(baseline_demo):
    at = ok(AppTest.from_file(MAIN, default_timeout=240).run())
    assert at.session_state["current"] == str(baseline_demo / "runs" / bf.RUN / "bundles" / "best")  # demo.json's
    fig = figures_of(at)[0]
    drawn = coder_traces(fig)
    assert drawn, [t.get("name") for t in fig["data"]]
    # every full-split point of the baseline except fp32 (the dotted line is the baseline's top-1),
    # none of the subset, sample or other-model points; labelled by method and setting
    got = {int(cd[1].replace(",", "")) for t in drawn for cd in t["customdata"]}
    assert got == bf.DRAWN - {bf.FP32_BYTES}
    labels = {cd[0] for t in drawn for cd in t["customdata"]}
    assert {"NNCodec qp −29", "NNCodec qp −28", "INT8 + zstd"} <= labels and any("lossless" in s for s in labels)
    assert all("plain ResNet-18 (fixture) (89.53 %)" in t["name"] for t in drawn)
    # the same axes: the CTNet run's decoded point is on the plot too
    ctnet = [t for t in fig["data"] if t.get("name") == bf.RUN]
    assert ctnet and ctnet[0]["y"] == [88.9]
    assert any("Grey open symbols" in c.value and "3,925 val images" in c.value for c in at.caption)


def test_rate_distortion_page_shows_both_frontiers_on_the_full_split(baseline_demo):
    at = AppTest.from_file(MAIN, default_timeout=240).run()
    at.switch_page(PAGES["rate_distortion"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("on one baseline" in h.value for h in at.subheader)
    both = figures_of(at)[0]
    assert {int(cd[1].replace(",", "")) for t in coder_traces(both) for cd in t["customdata"]} \
        == bf.DRAWN - {bf.FP32_BYTES}
    assert [t["y"] for t in both["data"] if t.get("name") == bf.RUN] == [[88.9]]
    table = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert len(table) == len(bf.DRAWN) + 1  # its fp32 row too, and the CTNet checkpoint


def test_a_broken_demo_index_is_named_and_the_app_still_opens(baseline_demo):
    (baseline_demo / "demo.json").write_text('{"format": "ctnet-demo", "version": 9}')
    at = AppTest.from_file(MAIN, default_timeout=240).run()
    assert not at.exception
    assert any("demo index version 9" in w.value for w in at.warning)
    assert at.session_state["current"] is not None
    (baseline_demo / "demo.json").write_text(json.dumps(bf.index()))
    (baseline_demo / "rd" / f"{bf.SHA[:32]}.json").unlink()
    at = AppTest.from_file(MAIN, default_timeout=240).run()
    assert any("rd cache named for plain ResNet-18 (fixture) is missing" in w.value for w in at.warning)
