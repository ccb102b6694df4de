"""Does the rate proxy see the format-v2 coder? Per stored tensor of each source: the proxy
R (export grid, 8 bit, the training's steepness) against the tensor's real bytes in a v2
bundle, fitted with one scale, then with a group term G — the non-empty rows and columns of
each frequency plane, which v2's layout makes cheap when empty (issue 13, part 4).

    .venv/bin/python bench/proxy_calibration.py BUNDLE_OR_CKPT [...]
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ctnet import api  # noqa: E402
from ctnet.rate import rate_terms, layer_rate  # noqa: E402
from ctnet.quant import export_step  # noqa: E402
from ctnet.codec import bundle as B, plan as PL  # noqa: E402
from ctnet.codec.manifest import EncodeSettings  # noqa: E402
srcs = sys.argv[1:]  # sources: checkpoints or bundles
rows = []
for s in srcs:
    loaded = api.load_any(s)
    m, meta = loaded.model, loaded.meta
    enc = B.encode_model(m, meta, EncodeSettings())
    by = {x["name"]: x for x in enc.layers if x["kind"] == "weight"}
    lay = B.layout(m, meta, EncodeSettings())
    grids = {g.name: g for g in lay.grids}
    with torch.no_grad():
        for name, c, w in rate_terms(m):
            key = name + ".weight_dct" if name + ".weight_dct" in by else name + ".weight"
            R = float(layer_rate(c, w, export_step(c, 8), 10.0))
            g = grids[key]
            planes = PL.to_planes(g.levels)
            G = int((planes != 0).any(axis=2).sum() + (planes != 0).any(axis=1).sum())  # non-empty rows+cols per plane
            rows.append((R / 8, G, by[key]["bytes"], s.split("/")[-3] if "runs" in s else s))
X = np.array([(r[0], r[1]) for r in rows])
y = np.array([r[2] for r in rows], float)
k = (X[:, 0] @ y) / (X[:, 0] @ X[:, 0])
e1 = np.abs(k * X[:, 0] - y).sum() / y.sum()
coef, *_ = np.linalg.lstsq(X, y, rcond=None)
e2 = np.abs(X @ coef - y).sum() / y.sum()
corr = np.corrcoef(X[:, 0], y)[0, 1]
print(f"layers {len(rows)}; bytes ≈ {k:.3f}·R/8: corr {corr:.3f}, total abs error {100*e1:.1f} % of bytes")
print(f"bytes ≈ {coef[0]:.3f}·R/8 + {coef[1]:.3f}·G (non-empty rows+cols per plane): total abs error {100*e2:.1f} %")
for s in sorted(set(r[3] for r in rows)):
    sel = [r for r in rows if r[3] == s]
    yt = sum(r[2] for r in sel)
    p1 = sum(k * r[0] for r in sel)
    p2 = sum(coef[0] * r[0] + coef[1] * r[1] for r in sel)
    print(f"  {s}: v2 weight bytes {yt:,.0f}  rate-proxy fit {100*(p1/yt-1):+.1f} %  with group term {100*(p2/yt-1):+.1f} %")
