"""What a reload must restore, kept in the URL's query parameters: the current checkpoint and
the codec settings (the page is the URL's path). Read once per session, written every run."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import forms
from app.keys import LAB_SETTINGS, NOTICE, RUN_ROOT, URL_READ, demo_dir, lab_defaults
from app.models import server_uploads, current, remember_upload, select


def url_name(path: str | None) -> str | None:
    """How the URL names a checkpoint: relative to the demo, ``upload:<hash>``, or its path."""
    if path is None:
        return None
    for h, (_, p) in server_uploads().items():
        if p == path:
            return f"upload:{h}"
    try:
        return str(Path(path).relative_to(demo_dir()))
    except ValueError:
        return path


def from_url_name(name: str) -> str | None:
    if name.startswith("upload:"):
        hit = server_uploads().get(name[len("upload:"):])
        return hit[1] if hit else None
    p = Path(name)
    return str(p if p.is_absolute() else demo_dir() / p)


def read_url() -> None:
    """Once per session (first run, a reload, a shared link): the URL's checkpoint and codec
    settings become the session's."""
    ss = st.session_state
    if ss.get(URL_READ):
        return
    ss[URL_READ] = True
    params = st.query_params.to_dict()
    problems = []
    settings, reason = forms.from_query(params)
    if reason is None:
        ss[LAB_SETTINGS] = settings
    else:
        problems.append(reason[0].upper() + reason[1:])
    root = params.get("root")
    if root and Path(root).is_dir():
        ss[RUN_ROOT] = root
    name = params.get("ckpt")
    if name:
        path = from_url_name(name)
        why = "it is no longer on this server" if path is None else select(path)
        if why is not None:
            problems.append(f"The link's checkpoint ({name}) could not be opened: {why}. The default checkpoint "
                            "is shown.")
        elif name.startswith("upload:"):
            label, p = server_uploads()[name[len("upload:"):]]
            remember_upload(label, p)
    if problems:
        ss[NOTICE] = ("warning", " ".join(problems))


def write_url() -> None:
    """The session's checkpoint and codec settings into the URL (every run; the page is the
    URL's path)."""
    ss = st.session_state
    want = {**forms.to_query(ss.get(LAB_SETTINGS) or lab_defaults())}
    name = url_name(current())
    if name:
        want["ckpt"] = name
    if ss.get(RUN_ROOT) and ss[RUN_ROOT] != str(demo_dir()):
        want["root"] = ss[RUN_ROOT]
    if st.query_params.to_dict() != want:
        st.query_params.from_dict(want)
