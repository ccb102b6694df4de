"""The Codec lab's settings form, built from ``EncodeSettings`` (where every default lives)
and the codec registry (what each codec accepts): one widget per field, its choices from the
registry, so a field added to the dataclass shows up here without a hand-made mapping. The
widgets become one frozen ``EncodeSettings`` here, the one shape the app passes around (its
job keys, the URL, the encode worker's request); also its one-line label."""
from __future__ import annotations

from dataclasses import fields, replace

import streamlit as st

from ctnet.api import (BIT_DEPTHS, BN_MODES, CODECS, FRAME_SIZES, MAX_DITHER, ORDERS, PRESETS, BundleError, EncodeSettings,
                       default_codec)

# every field but the per-layer grids, which have their own widget (LAYER_GRID) and travel in
# a settings dict only when set ("layer_bits", as EncodeSettings.to_dict writes it)
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EncodeSettings) if f.name != "layer_bits")
TYPES = {n: type(getattr(EncodeSettings(), n)) for n in FIELDS}
TILES = (64, 128, 256)
PREFIX = "w_lab_"
LOSSLESS = PREFIX + "lossless"  # CRF is one field, two widgets: a lossless box and a slider
LAYER_GRID = PREFIX + "layer_grid"  # UNIFORM or one of the per-layer maps the page offers (LAYER_MAPS)
LAYER_MAPS = "lab_layer_maps"  # choice → {tensor: bits}, set by the page before the widgets are read
UNIFORM = "uniform (grid bit depth)"
AUTO = "auto (measured sensitivity)"  # the per-layer grids the lab can offer
OWN = "this bundle's own"

LABELS = {"codec": "Codec", "crf": "CRF (when not lossless)", "bit_depth": "Grid bit depth", "pix_fmt": "Pixel format",
          "preset": "Preset", "frame": "Frame size", "order": "Row/column order", "bn_mode": "BatchNorm",
          "dither": "Dither (pixel steps, 0 = off)", "seed": "Dither seed", "tile": "Grid tile"}
HELP = {
    "codec": "HEVC is the default; the others are compared on the Rate–distortion page. xz/zstd code the same "
             "levels without video.",
    "bit_depth": "Bits of the export grid (what export-aware training simulates); the frames are coded one "
                 "container depth deeper so signed levels fit.",
    "pix_fmt": "gray: 4:0:0 (HEVC RExt). yuv420: data in luma, neutral chroma (Main/Main10, hardware-decodable).",
    "frame": "Side of the coded frames: every layer's frequency planes are packed into S×S frames.",
    "order": "count: each layer's rows and columns sorted by their non-zero count (zeros gather, whole frames "
             "drop out); natural: model order.",
    "bn_mode": "affine: BN as its eval-mode scale and shift, as 24-bit floats; raw: the four float32 vectors (exact).",
    "tile": "The quantisation grid's tile (each tile has its own scale); training used 128.",
    "preset": "Encoder speed/size trade-off (video codecs).",
}


def key(name: str) -> str:
    return PREFIX + name


def defaults() -> EncodeSettings:
    """EncodeSettings' defaults, with the codec ``$CTNET_CODEC`` names (raises ValueError on a bad one)."""
    codec = default_codec()
    d = EncodeSettings()
    return d if codec == d.codec else replace(d, codec=codec, pix_fmt=CODECS[codec].pix_fmts[0])


def choices(name: str, s: EncodeSettings) -> tuple | None:
    """What a field may take under the current codec (None: a free number)."""
    c = CODECS[s.codec]
    return {"codec": tuple(CODECS), "bit_depth": BIT_DEPTHS, "pix_fmt": c.pix_fmts, "preset": PRESETS,
            "frame": FRAME_SIZES, "order": ORDERS, "bn_mode": BN_MODES, "tile": TILES}.get(name)


def disabled(name: str, s: EncodeSettings) -> bool:
    c = CODECS[s.codec]
    if name == "preset":
        return not c.uses_preset
    if name == "crf":
        return not c.lossy or s.crf == 0
    if name == "seed":
        return not s.dither
    if name == "bit_depth":  # a per-layer grid sets it (to its largest layer's)
        return st.session_state.get(LAYER_GRID, UNIFORM) != UNIFORM
    return False


def fit(s: EncodeSettings) -> EncodeSettings:
    """``s`` with every field within what its codec takes (after the codec changed)."""
    c = CODECS[s.codec]
    return replace(s, pix_fmt=s.pix_fmt if s.pix_fmt in c.pix_fmts else c.pix_fmts[0],
                   crf=min(s.crf, c.max_crf) if c.lossy else 0)


# --- widgets ------------------------------------------------------------------------------------

def widget_values(s: EncodeSettings) -> dict:
    out = {key(n): getattr(s, n) for n in FIELDS}
    out[LOSSLESS] = s.crf == 0
    out[key("crf")] = s.crf or 20
    maps = st.session_state.get(LAYER_MAPS) or {}
    own = dict(s.layer_bits)
    out[LAYER_GRID] = next((k for k, m in maps.items() if own and m == own), UNIFORM)
    return out


def seed(s: EncodeSettings, force: bool = False) -> None:
    """Give the widgets ``s`` (widgets own their values only while shown)."""
    for k, v in widget_values(s).items():
        if force or k not in st.session_state:
            st.session_state[k] = v


def from_widgets() -> EncodeSettings:
    """The widgets' values as one EncodeSettings (not yet validated: :func:`valid` says why
    a combination cannot be encoded)."""
    ss = st.session_state
    s = {n: TYPES[n](ss[key(n)]) for n in FIELDS}
    c = CODECS[s["codec"]]
    s["crf"] = 0 if (ss[LOSSLESS] or not c.lossy) else int(ss[key("crf")])
    layer_bits = (ss.get(LAYER_MAPS) or {}).get(ss.get(LAYER_GRID))
    if layer_bits:
        s.update(bit_depth=max(layer_bits.values()), layer_bits=dict(layer_bits))
    return EncodeSettings(**s)


def _on_codec() -> None:
    ss = st.session_state
    c = CODECS[ss[key("codec")]]
    if ss[key("pix_fmt")] not in c.pix_fmts:
        ss[key("pix_fmt")] = c.pix_fmts[0]
    if c.lossy:
        ss[key("crf")] = min(ss[key("crf")], c.max_crf)


def _widget(name: str, s: EncodeSettings) -> None:
    c = CODECS[s.codec]
    opts = choices(name, s)
    common = dict(key=key(name), help=HELP.get(name), disabled=disabled(name, s))
    if name == "codec":
        st.selectbox(LABELS[name], opts, format_func=lambda n: CODECS[n].label, on_change=_on_codec, **common)
    elif name == "crf":
        st.checkbox("Lossless (CRF 0)", key=LOSSLESS, disabled=not c.lossy)
        st.slider(LABELS[name], 1, c.max_crf if c.lossy else 51, **{**common, "disabled": not c.lossy
                                                                      or st.session_state[LOSSLESS]})
    elif opts is not None and len(opts) <= 3 and TYPES[name] is str:
        st.radio(LABELS[name], opts, horizontal=True, **common)
    elif opts is not None:
        st.selectbox(LABELS[name], opts, **common)
    elif TYPES[name] is float:
        st.slider(LABELS.get(name, name), 0.0, float(MAX_DITHER) if name == "dither" else 10.0, step=0.25, **common)
    else:
        st.number_input(LABELS.get(name, name), 0, 2**31 - 1, **common)


def render(width: int = 230) -> EncodeSettings:
    """Every field of EncodeSettings as a widget, each in a box ``width`` px wide that wraps
    to the next line (usable from 800 px wide up); the settings they hold."""
    s = from_widgets()
    maps = st.session_state.get(LAYER_MAPS) or {}
    with st.container(horizontal=True, wrap=True, gap="medium"):
        for name in FIELDS:
            with st.container(width=width):
                _widget(name, s)
        with st.container(width=width):
            options = [UNIFORM, *maps]
            if st.session_state.get(LAYER_GRID) not in options:
                st.session_state[LAYER_GRID] = UNIFORM
            st.selectbox("Per-layer grid", options, key=LAYER_GRID, disabled=not maps,
                         help="A grid per layer, chosen by each layer's measured sensitivity on a slice of the "
                              "train split (ctnet encode --bit-depth auto), or the one a bundle was coded with.")
    return from_widgets()


# --- labels, differences, URL ----------------------------------------------------------------------

def label(s: EncodeSettings) -> str:
    """One line naming codec settings: codec, preset, rate, grid, frames, order, BN."""
    c = CODECS.get(s.codec)
    bits = [b for _, b in s.layer_bits]
    grid = f"per-layer {min(bits)}–{max(bits)}-bit" if bits else f"{s.bit_depth}-bit"
    parts = [s.codec] + ([s.preset] if c is not None and c.uses_preset else []) + [
        "lossless" if s.crf == 0 else f"CRF {s.crf}", f"{grid} {s.pix_fmt}", f"{s.frame}² frames"]
    if s.dither:
        parts.append(f"dither {s.dither:g} (seed {s.seed})")
    parts.append(f"BN {s.bn_mode}")
    parts.append(f"{s.order} order")
    if s.tile != 128:
        parts.append(f"tile {s.tile}")
    return " · ".join(parts)


def diff(a: EncodeSettings, b: EncodeSettings) -> list[str]:
    """``field: a → b`` for every field that differs."""
    out = [f"{n} {getattr(a, n)!s} → {getattr(b, n)!s}" for n in FIELDS if getattr(a, n) != getattr(b, n)]
    if a.layer_bits != b.layer_bits:
        out.append("per-layer grid " + " → ".join(_grid_name(x) for x in (a, b)))
    return out


def _grid_name(s: EncodeSettings) -> str:
    bits = [b for _, b in s.layer_bits]
    return f"{min(bits)}–{max(bits)} bits" if bits else "uniform"


def to_query(s: EncodeSettings) -> dict[str, str]:
    """The fields that differ from the defaults, as URL parameters."""
    base = defaults()
    return {n: str(getattr(s, n)) for n in FIELDS if getattr(s, n) != getattr(base, n)}


def from_query(params: dict) -> tuple[EncodeSettings, str | None]:
    """Settings from URL parameters (missing fields: defaults); (defaults, reason) when they
    do not make valid settings."""
    base = defaults()
    try:
        s = replace(base, **{n: TYPES[n](params[n]) for n in FIELDS if n in params}).validate()
    except (ValueError, TypeError, BundleError) as exc:
        return base, f"the link's codec settings were ignored: {exc}"
    return s, None


def valid(s: EncodeSettings) -> EncodeSettings:
    """Raises BundleError naming the problem."""
    return s.validate()
