"""The Codec lab says what an encode did to the weights and how sure a top-1 change is
(issue 24.2–24.4): an encode on the bundle's own grid is labelled exact, another grid
re-quantises and says by how much; the sample's top-1 change carries its 95 % interval,
paired image by image; the tab's earlier encodes stay listed after the server drops their
decoded models; the time estimate scales with the model's size."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from demo_fixture import MAIN, PAGES
from test_pages import wait_for_jobs


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def wait(at: AppTest) -> AppTest:
    return ok(wait_for_jobs(at, seconds=1500))


def in_order(node):
    """Every element of the page in the order it is drawn (depth first)."""
    for child in getattr(node, "children", {}).values():
        yield child
        yield from in_order(child)


def v2_bundle(demo) -> str:
    v2 = [p.parent for p in sorted(demo.glob("runs/*/bundles/*/manifest.json"))
          if json.loads(p.read_text()).get("version") == 2]
    if not v2:
        pytest.skip("the demo holds no format-v2 bundle")
    return str(min(v2, key=lambda b: sum(f.stat().st_size for f in b.iterdir())))  # the quickest to code


def test_exact_requantised_interval_and_the_tabs_encodes(demo_env):
    at = AppTest.from_file(MAIN, default_timeout=900)
    at.query_params["ckpt"] = v2_bundle(demo_env)
    ok(at.run())
    at.switch_page(PAGES["codec_lab"]).run()
    next(b for b in at.button if b.label == "Use this bundle's own settings").click().run()
    at.selectbox(key="w_lab_preset").set_value("ultrafast").run()
    at.button(key="w_encode").click().run()
    wait(at)
    assert any(s.value.startswith("**Exact on the trained grid:**") for s in at.success), [s.value for s in at.success]
    # issue 24.6: what Encode produces comes before the settings form (in the first viewport)
    drawn = list(in_order(at.main))
    first_metric = next(i for i, e in enumerate(drawn) if e.type == "metric")
    settings_form = next(i for i, e in enumerate(drawn) if e.type == "expander" and "Codec settings" in str(
        getattr(e, "label", "")))
    assert first_metric < settings_form
    exact = next(m for m in at.metric if m.label.startswith("decoded top-1"))
    # issue 24.3: the change carries its interval (an exact encode: no image changed, ± 0.00)
    assert " ± " in exact.delta and exact.delta.endswith("vs source"), exact.delta
    assert any("no image of the 500 changed its top-1" in c.value for c in at.caption)

    own = at.session_state["lab_settings"].bit_depth
    at.selectbox(key="w_lab_bit_depth").set_value(10 if own != 10 else 8).run()
    at.button(key="w_encode").click().run()
    wait(at)
    warn = next(w.value for w in at.warning if w.value.startswith("**Re-quantised, not exact:**"))
    assert "bit_depth" in warn or "bit depth" in warn, warn
    assert "weight layers change, by up to" in warn
    moved = next(m for m in at.metric if m.label.startswith("decoded top-1"))
    assert " ± " in moved.delta, moved.delta
    words = " ".join(c.value for c in at.caption)
    assert "95 % interval" in words or "no image of the 500" in words

    # issue 24.4: both encodes listed; still listed once the server has dropped their decoded models
    from app import background
    table = next(df.value for df in at.dataframe if "on the server" in df.value.columns)
    assert len(table) == 2 and set(table["decoded"]) == {"exact", "re-quantised"}
    for j in background.runner().jobs("encode"):
        background.runner().forget(j.key)
    at.run()
    assert any("no longer holds a decoded model" in i.value for i in at.info)
    table = next(df.value for df in at.dataframe if "on the server" in df.value.columns)
    assert len(table) == 2 and (table["on the server"] == "no (Encode redoes it)").all()
    assert table["top-1 % (sample)"].notna().all()


def test_the_encode_estimate_follows_the_models_size(demo_env):
    """The same settings, two models: the estimate scales with each one's coded size, not with
    whatever the server encoded last."""
    from app import encodes, models
    from ctnet.api import EncodeSettings
    bundles = sorted(demo_env.glob("runs/*/bundles/*/manifest.json"))
    sizes = {str(b.parent): sum(f.stat().st_size for f in b.parent.iterdir()) for b in bundles}
    small, big = min(sizes, key=sizes.get), max(sizes, key=sizes.get)
    s = EncodeSettings()
    e_small, e_big = (encodes.encode_estimate(s, models.load(p)) for p in (small, big))
    assert e_big / e_small == pytest.approx(max(sizes[big], 3e5) / max(sizes[small], 3e5), rel=1e-6)
