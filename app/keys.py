"""The app's session and widget keys (all of them), the demo's folders and a session's first
values. Widgets own their values only while rendered, so values that must survive a page
change live under the session keys."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app import forms
from ctnet.api import EncodeSettings


REPO = Path(__file__).resolve().parents[1]
DEMO_ENV = "CTNET_DEMO_DIR"


RUN_ROOT = "run_root"  # folder the Checkpoints page browses
CURRENT = "current"  # path of the current checkpoint file or bundle folder, for every page
UPLOADS = "uploads"  # [(label, path)] of this session's uploaded checkpoints and bundles
UPLOAD_SEEN = "upload_seen"  # file id of the last upload handled, so a rerun does not redo it
NOTICE = "notice"  # (level, text) to show once on the next run (e.g. after a failed selection)
LAB_SETTINGS = "lab_settings"  # the EncodeSettings the Codec lab encodes with
LAB_ENCODES = "lab_encodes"  # job keys of this session's encodes, oldest first
W_LAB_FULL = "w_full_val"  # the ImageNette folder the lab measures the full val split on
URL_READ = "url_read"  # the URL's state was read into this session
ACC_SOURCE = "acc_source"  # "sample" or "path"
ACC_PATH = "acc_path"  # full ImageNette path typed by the user
ACC_LIMIT = "acc_limit"  # images to evaluate (0 = all)
ACC_DEVICE = "acc_device"
ACC_PICK = "acc_pick"  # which decoded model the Accuracy page measures (an encode job key, or "loaded")
COMPARE = "compare"  # the two models of the Compare page

# widget keys: widgets own their values only while rendered, so values that must survive a
# page change are copied into the keys above
W_ROOT = "w_root"
W_PICK = "w_pick"
W_PARETO = "w_pareto"
W_PARETO_Y = "w_pareto_y"
W_PARETO_X = "w_pareto_x"
W_UPLOAD = "w_upload"
W_GRID = "w_grid"
W_Q = "w_q"
W_LAYER = "w_layer"
W_FRAME = "w_frame"
W_LAB_BUDGET = "w_lab_budget"
W_THUMBS = "w_thumbs"
W_PLAY = "w_play"
W_FPS = "w_fps"
W_VIEW = "w_view"
W_ENCODE = "w_encode"
W_ACC_PICK = "w_acc_pick"
W_CMP = {"a": "w_cmp_a", "b": "w_cmp_b"}
# the data choice (shared ACC_* values) as each page's widgets hold it
W_ACC_DATA = {"source": "w_acc_source", "path": "w_acc_path", "limit": "w_acc_limit", "device": "w_acc_device"}
W_RD_DATA = {"source": "w_rd_source", "path": "w_rd_path", "limit": "w_rd_limit", "device": "w_rd_device"}
W_RD = {name: f"w_rd_{name}" for name in ("codecs", "bits", "lossy", "baselines", "measure", "floor")}
RD_FLOOR_DEFAULT = "rd_floor_default"  # the floor the Rate–distortion page last proposed
W_ACC_RUN = "w_acc_run"


def lab_defaults() -> EncodeSettings:
    """The Codec lab's first settings: EncodeSettings' defaults (codec: ``$CTNET_CODEC``)."""
    return forms.defaults()


def demo_dir() -> Path:
    """The embedded demo (``assets/demo`` beside this checkout, or ``$CTNET_DEMO_DIR``)."""
    return Path(os.environ.get(DEMO_ENV) or REPO / "assets" / "demo")


def sample_dir() -> Path:
    return demo_dir() / "sample"


def init_session() -> None:
    ss = st.session_state
    ss.setdefault(RUN_ROOT, str(demo_dir()))
    ss.setdefault(CURRENT, None)
    ss.setdefault(UPLOADS, [])
    ss.setdefault(UPLOAD_SEEN, None)
    ss.setdefault(NOTICE, None)
    if LAB_SETTINGS not in ss:
        try:
            ss[LAB_SETTINGS] = lab_defaults()
        except ValueError as exc:  # a bad $CTNET_CODEC: say so, start from HEVC
            ss[LAB_SETTINGS] = EncodeSettings()
            ss[NOTICE] = ("error", str(exc))
    ss.setdefault(LAB_ENCODES, [])
    ss.setdefault(ACC_SOURCE, "sample")
    ss.setdefault(ACC_PATH, "")
    ss.setdefault(ACC_LIMIT, 0)
    ss.setdefault(ACC_DEVICE, "auto")
    ss.setdefault(ACC_PICK, None)
    ss.setdefault(COMPARE, {"a": None, "b": None})
