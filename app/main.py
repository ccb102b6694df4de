"""CTNet explorer: ``streamlit run app/main.py`` (``make app``).

Seven pages (``pages/``), one current checkpoint shared by all of them, the embedded demo in
``assets/demo`` (or ``$CTNET_DEMO_DIR``) opened by default. The current checkpoint and the
codec settings live in the URL, so a reload, back/forward, a bookmark or a shared link
restores them; background jobs live on the server (``app/jobs.py``), so a reload re-attaches.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts app/ on the path, not the checkout
    sys.path.insert(0, str(REPO))

import streamlit as st  # noqa: E402

from app import keys, ui, url  # noqa: E402

# a local image: a Material or emoji page_icon makes the browser fetch the favicon from the internet
st.set_page_config(page_title="CTNet explorer", page_icon=str(REPO / "app" / "favicon.png"), layout="wide")
keys.init_session()
url.read_url()
ui.choose_default()

PAGES = REPO / "pages"
nav = st.navigation([
    st.Page(PAGES / "checkpoints.py", title="Checkpoints", icon=":material/scatter_plot:", url_path="checkpoints",
            default=True),
    st.Page(PAGES / "coefficients.py", title="Coefficients", icon=":material/grid_on:", url_path="coefficients"),
    st.Page(PAGES / "frames.py", title="Frames", icon=":material/movie:", url_path="frames"),
    st.Page(PAGES / "codec_lab.py", title="Codec lab", icon=":material/science:", url_path="codec-lab"),
    st.Page(PAGES / "accuracy.py", title="Accuracy", icon=":material/target:", url_path="accuracy"),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page(PAGES / "rate_distortion.py", title="Rate–distortion", icon=":material/show_chart:",
            url_path="rate-distortion"),
])
ui.sidebar()
url.write_url()  # pages that change it in their body (Codec lab, uploads) write it again
nav.run()
