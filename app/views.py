"""Derived arrays the pages show, cached (``st.cache_data``, keyed by the checkpoint's stamp or
an encode's job key): coefficient statistics, the export grid, the frames the codec sees,
thumbnails and the preview video."""
from __future__ import annotations

import numpy as np
import streamlit as st

from ctnet import api
from ctnet import inspect as ci
from ctnet.api import EncodeSettings, LoadedModel


@st.cache_data(max_entries=16, show_spinner=False)
def layer_stats(key: tuple, q: float, _model) -> list[dict]:
    return ci.layer_stats(_model, q)


@st.cache_data(max_entries=16, show_spinner=False)
def grid_stats(key: tuple, _loaded: LoadedModel) -> list[dict]:
    return ci.grid_stats(_loaded.model, _loaded.meta)


@st.cache_data(max_entries=16, show_spinner=False)
def layer_summary(key: tuple, _loaded: LoadedModel) -> dict[str, dict]:
    return ci.layer_summary(_loaded)


@st.cache_data(max_entries=32, show_spinner=False)
def level_frequency_map(key: tuple, name: str, _model, _meta, _settings: EncodeSettings | None):
    """``key``: what names the model (its file stamp, or an encode's job key)."""
    return ci.level_frequency_map(_model, _meta, name, _settings)


@st.cache_data(max_entries=16, show_spinner=False)
def coefficient_image(key: tuple, name: str, _model) -> np.ndarray:
    return ci.coefficient_image(ci.coefficient_tensors(_model)[name])


@st.cache_data(max_entries=16, show_spinner=False)
def frequency_maps(key: tuple, name: str, q: float, _model):
    return ci.frequency_maps(_model, name, q)


@st.cache_data(max_entries=32, show_spinner=False)
def histogram(key: tuple, name: str, q: float, _model):
    return ci.magnitude_histogram(ci.coefficient_tensors(_model)[name], q)


def layout_of(settings: EncodeSettings) -> tuple:
    """The settings that decide how levels become frames (not how frames are coded)."""
    return tuple((k, getattr(settings, k)) for k in ("codec", "bit_depth", "frame", "order", "dither", "seed", "tile")) + \
        settings.layer_bits


@st.cache_resource(max_entries=3, show_spinner=False)
def coded_frames(key: tuple, layout: tuple, _loaded: LoadedModel, _settings: EncodeSettings) -> ci.CodedFrames:
    """The frames the codec sees under these settings (shared, read-only)."""
    return ci.coded_frames(_loaded.model, _loaded.meta, _settings)


VIEWS = {"levels": "|level|, stretched", "pixels": "pixels as coded (top 8 bits)"}


@st.cache_data(max_entries=6, show_spinner=False)
def frame_view(key: tuple, layout: tuple, view: str, _frames: ci.CodedFrames) -> np.ndarray:
    """8-bit frames to show: |level| stretched, or the coded pixels' top 8 bits."""
    if view == "levels":
        return ci.level_view(_frames.pixels, _frames.container_bits)
    return ci.to_uint8(_frames.pixels, _frames.container_bits)


@st.cache_data(max_entries=8, show_spinner=False)
def thumbnails(key: tuple, layout: tuple, view: str, thumb: int, columns: int, _frames8: np.ndarray) -> np.ndarray:
    return ci.thumbnail_grid(_frames8, thumb=thumb, columns=columns, gap=2, pool="max")


PREVIEW_SIDE = 256  # the preview video's frames: at most this many pixels a side (it is shown ≤ 512 px wide)


@st.cache_data(max_entries=6, show_spinner=False)
def preview_video(key: tuple, layout: tuple, view: str, fps: int, _frames8) -> bytes:
    frames = _frames8
    side = max(frames.shape[1:])
    if side > PREVIEW_SIDE:  # shrink by max-pooling, so sparse levels stay visible
        frames = np.stack([ci.max_pool(f.astype(np.float32), PREVIEW_SIDE)[0] for f in frames]).astype(np.uint8)
    else:
        frames = ci.upscale(frames, max(1, PREVIEW_SIDE // side))
    return api.preview_mp4(list(frames), fps)
