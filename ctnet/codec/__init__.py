"""The H.265 codec: the export grid as frames (``plan``, ``frames``), the side tables
(``tables``), the typed manifest (``manifest``), the codec registry (``registry``), frames →
streams (``video``, the only module that imports PyAV; ``planes`` for xz/zstd), and bundles
(``bundle``; format v1 is read by ``v1``). Its commands live in :mod:`ctnet.cli.codec`; the
app and the CLI reach it through :mod:`ctnet.api`.

This package's ``__init__`` imports nothing, so importing a module of it loads only what that
module needs: training machines without PyAV can still import ``ctnet`` and its CLI.
"""
