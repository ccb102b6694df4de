"""Runs and their checkpoints as the app browses them.

A *run* is a folder written by ``ctnet train`` (``train_log.jsonl``, ``config.json``,
``checkpoints/<role>.safetensors``) or a run of the embedded demo (``bundles/<role>/`` written
by ``ctnet encode`` and a ``results.json`` with their decoded accuracy). A *sweep* is a folder
of runs; the demo root holds its runs in ``runs/``. :func:`discover` accepts any of these.

Every checkpoint's numbers come from its metadata (safetensors header, bundle manifest), so
browsing a sweep never loads weights. Uploaded files are stored by :func:`import_upload`
after checks that refuse anything a loader should not be handed (links, paths leaving the
folder, oversized or damaged archives); the loaders then validate the contents.

No Streamlit here: the app's pages only draw what these functions return.
"""
from __future__ import annotations

from .errors import RunError

import hashlib
import io
import json
import os
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

LOG_NAME = "train_log.jsonl"
CONFIG_NAME = "config.json"
RESULTS_NAME = "results.json"
CHECKPOINT_DIR = "checkpoints"
BUNDLE_DIR = "bundles"
MANIFEST = "manifest.json"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
MAX_UPLOAD_BYTES = 2 << 30
MAX_ZIP_MEMBERS = 4096
MAX_ZIP_RATIO = 200  # uncompressed/compressed beyond this is a zip bomb, not a bundle



@dataclass(frozen=True)
class Entry:
    """One checkpoint (file) or bundle (directory) of a run, with the numbers the app lists."""

    run: str
    roles: tuple[str, ...]
    path: str
    kind: str  # "checkpoint" or "bundle"
    epoch: int | None = None
    arch: str | None = None
    acc1: float | None = None  # top-1 of the training run's evaluation at this epoch
    acc5: float | None = None
    est_bytes: int | None = None  # training's size estimate at its export bit depth
    real_bytes: int | None = None  # every byte of the bundle directory
    fp32_bytes: int | None = None
    nonzero: int | None = None
    decoded: dict | None = None  # results.json: acc1, acc5, images, data, device

    @property
    def ratio(self) -> float | None:
        """Compression ratio against fp32: of the real bundle when there is one, else estimated."""
        size = self.real_bytes or self.est_bytes
        return self.fp32_bytes / size if size and self.fp32_bytes else None

    @property
    def ratio_kind(self) -> str:
        return "real" if self.real_bytes else "estimated"

    @property
    def label(self) -> str:
        return f"{self.run} · {'+'.join(self.roles)}" + (" (bundle)" if self.kind == "bundle" else "")

    def row(self) -> dict:
        """Table row (what the Checkpoints page lists)."""
        dec = self.decoded or {}
        return {"run": self.run, "roles": ", ".join(self.roles), "kind": self.kind, "epoch": self.epoch,
                "top-1 %": self.acc1, "decoded top-1 %": dec.get("acc1"), "est. bytes": self.est_bytes,
                "real bytes": self.real_bytes, "ratio": self.ratio, "ratio from": self.ratio_kind,
                "non-zero coeffs": self.nonzero, "file": self.path}


@dataclass
class Run:
    name: str
    path: str
    log: list[dict] = field(default_factory=list)
    config: dict | None = None
    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files skipped, with the reason


# --- reading one run ---------------------------------------------------------------------------

def read_log(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``train_log.jsonl``. A last line without its newline is a write in
    progress and is skipped; any other malformed line is an error naming it."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            raise RunError(f"{path}: line {i} is nested too deeply to be an epoch record") from None
        except json.JSONDecodeError as exc:
            if i == len(lines):  # no newline after it: still being written
                break
            raise RunError(f"{path}: line {i} is not JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or "epoch" not in row:
            raise RunError(f"{path}: line {i} is not an epoch record")
        rows.append(row)
    return rows


def is_run(path: Path) -> bool:
    return path.is_dir() and ((path / LOG_NAME).is_file() or (path / CHECKPOINT_DIR).is_dir()
                              or (path / BUNDLE_DIR).is_dir())


def _checkpoint_meta(path: Path) -> dict:
    """The metadata a checkpoint carries, without reading its tensors."""
    from safetensors import SafetensorError, safe_open
    if path.suffix != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        return json.loads(header["ctnet"]) if "ctnet" in header else {}
    except (SafetensorError, OSError, ValueError, RecursionError) as exc:
        raise RunError(f"{path.name}: unreadable checkpoint header ({exc})") from exc


def _checkpoint_entries(run: Run, folder: Path) -> list[Entry]:
    """One entry per distinct checkpoint: role files are hard links to one written epoch
    (or copies of it, after a transfer), so files sharing an inode or an epoch merge."""
    groups: dict[tuple, dict] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix not in CHECKPOINT_SUFFIXES or not p.is_file():
            continue
        try:
            meta = _checkpoint_meta(p)
        except RunError as exc:
            run.problems.append(str(exc))
            continue
        st = p.stat()
        epoch = meta.get("epoch")
        key = ("epoch", epoch) if epoch is not None else ("inode", st.st_dev, st.st_ino)
        inode_key = ("inode", st.st_dev, st.st_ino)
        group = groups.get(key) or groups.get(inode_key) or {"files": {}, "meta": meta}
        groups.setdefault(key, group)
        groups.setdefault(inode_key, group)
        group["files"][p.stem] = p
    entries, seen = [], set()
    for group in groups.values():
        if id(group) in seen:
            continue
        seen.add(id(group))
        meta, m = group["meta"], group["meta"].get("metrics") or {}
        roles = sorted(group["files"], key=_role_order)
        entries.append(Entry(run=run.name, roles=tuple(roles), path=str(group["files"][roles[0]]), kind="checkpoint",
                             epoch=meta.get("epoch"), arch=(meta.get("model") or {}).get("arch"),
                             acc1=m.get("acc1"), acc5=m.get("acc5"), est_bytes=m.get("est_bytes_export"),
                             fp32_bytes=m.get("fp32_bytes"), nonzero=m.get("nonzero")))
    return entries


def _role_order(role: str) -> tuple:
    """best, then best_{N}x by N, smallest, last, anything else."""
    if role == "best":
        return (0, 0, role)
    if role.startswith("best_") and role.endswith("x") and role[5:-1].isdigit():
        return (1, int(role[5:-1]), role)
    return ({"smallest": 2, "last": 3}.get(role, 4), 0, role)


def _results(run_dir: Path, run: Run) -> dict:
    p = run_dir / RESULTS_NAME
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError, RecursionError) as exc:
        run.problems.append(f"{RESULTS_NAME}: ignored ({exc})")
        return {}
    # keyed by the bundle folder each result describes
    return {str(Path(v["bundle"])): {"role": k, **v} for k, v in data.items()
            if isinstance(v, dict) and isinstance(v.get("bundle"), str)}


def _bundle_entries(run: Run, folder: Path, results: dict) -> list[Entry]:
    from .codec.bundle import BundleError, directory_bytes, read_manifest
    groups: dict[str, dict] = {}
    for d in sorted(folder.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        try:
            raw = (d / MANIFEST).read_bytes()
            manifest = read_manifest(raw)
            size = directory_bytes(d)
        except FileNotFoundError:
            run.problems.append(f"{BUNDLE_DIR}/{d.name}: no {MANIFEST}")
            continue
        except (BundleError, OSError) as exc:
            run.problems.append(f"{BUNDLE_DIR}/{d.name}: {exc}")
            continue
        # the manifest holds every stream's SHA-256: equal manifests are equal bundles
        digest = hashlib.sha256(raw).hexdigest()
        group = groups.setdefault(digest, {"roles": [], "dirs": [], "manifest": manifest, "bytes": {}})
        group["bytes"][d.name] = size
        group["roles"].append(d.name)
        group["dirs"].append(d)
    entries = []
    for group in groups.values():
        manifest = group["manifest"]
        roles = sorted(group["roles"], key=_role_order)
        d = folder / roles[0]
        source = manifest.get("source") or {}
        m = source.get("metrics") or {}
        res = results.get(str(Path(BUNDLE_DIR) / roles[0])) or next(
            (results.get(str(Path(BUNDLE_DIR) / r)) for r in roles if str(Path(BUNDLE_DIR) / r) in results), None)
        entries.append(Entry(run=run.name, roles=tuple(roles), path=str(d), kind="bundle",
                             epoch=source.get("epoch"), arch=(manifest.get("model") or {}).get("arch"),
                             acc1=m.get("acc1"), acc5=m.get("acc5"), est_bytes=m.get("est_bytes_export"),
                             real_bytes=group["bytes"][roles[0]], fp32_bytes=manifest.get("fp32_bytes"),
                             nonzero=m.get("nonzero"), decoded=(res or {}).get("decoded")))
    return entries


def read_run(path: str | os.PathLike, name: str | None = None) -> Run:
    path = Path(path)
    run = Run(name=name or path.name, path=str(path))
    if (path / LOG_NAME).is_file():
        try:
            run.log = read_log(path / LOG_NAME)
        except (RunError, OSError, UnicodeDecodeError) as exc:
            run.problems.append(str(exc))
    if (path / CONFIG_NAME).is_file():
        try:
            run.config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        except (ValueError, OSError, RecursionError) as exc:
            run.problems.append(f"{CONFIG_NAME}: ignored ({exc})")
    if (path / CHECKPOINT_DIR).is_dir():
        run.entries += _checkpoint_entries(run, path / CHECKPOINT_DIR)
    if (path / BUNDLE_DIR).is_dir():
        run.entries += _bundle_entries(run, path / BUNDLE_DIR, _results(path, run))
    run.entries.sort(key=lambda e: (e.epoch if e.epoch is not None else -1, e.kind))
    return run


def discover(root: str | os.PathLike) -> list[Run]:
    """The runs under ``root``: ``root`` itself when it is a run, else the runs among its
    sub-folders (a sweep), else those in ``root/runs`` (the demo layout)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise RunError(f"{root} does not exist")
    if not root.is_dir():
        raise RunError(f"{root} is not a folder")
    if is_run(root):
        return [read_run(root)]
    for folder in (root, root / "runs"):
        if folder.is_dir():
            runs = [read_run(p) for p in sorted(folder.iterdir()) if not p.name.startswith(".") and is_run(p)]
            if runs:
                return runs
    raise RunError(f"{root} holds no run: expected {LOG_NAME}, {CHECKPOINT_DIR}/ or {BUNDLE_DIR}/ in it, "
                   f"in its sub-folders (a sweep) or in its runs/ folder (the demo)")


def stamp(path: str | os.PathLike) -> tuple:
    """What changes when a checkpoint file, bundle or run folder changes: a cache key."""
    path = Path(path)
    st = path.stat()
    if path.is_dir():
        parts: list[object] = [st.st_mtime_ns]
        for name in (MANIFEST, LOG_NAME, RESULTS_NAME):
            p = path / name
            if p.exists():
                s = p.stat()
                parts.append((name, s.st_mtime_ns, s.st_size))
        for sub in (CHECKPOINT_DIR, BUNDLE_DIR, "runs"):
            if (path / sub).is_dir():
                parts.append((sub, (path / sub).stat().st_mtime_ns))
        return (str(path), *parts)
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def catalog_stamp(root: str | os.PathLike) -> tuple:
    """Stamp of everything :func:`discover` reads under ``root`` (the folder, its runs and
    the demo's ``runs/``), so a cached catalogue notices a new epoch, checkpoint or bundle."""
    root = Path(root)
    parts = [stamp(root)]
    for folder in (root, root / "runs"):
        if folder.is_dir():
            parts += [stamp(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return tuple(parts)


# --- the frontier ------------------------------------------------------------------------------

def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (larger is better on both),
    ordered by the first coordinate. Equal points: the first one listed stays."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1], i))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def all_entries(runs: Iterable[Run]) -> list[Entry]:
    return [e for r in runs for e in r.entries]


def frontier(entries: Sequence[Entry], accuracy: str = "acc1") -> list[Entry]:
    """The entries on the accuracy/ratio frontier (``accuracy``: ``acc1`` at training or
    ``decoded``), skipping those without both numbers."""
    pts, keep = [], []
    for e in entries:
        acc = accuracy_of(e, accuracy)
        if acc is not None and e.ratio is not None:
            pts.append((e.ratio, acc))
            keep.append(e)
    return [keep[i] for i in pareto_front(pts)]


def accuracy_of(entry: Entry, which: str = "acc1") -> float | None:
    if which == "decoded":
        return (entry.decoded or {}).get("acc1")
    return entry.acc1


# --- uploads and downloads -------------------------------------------------------------------

def _safe_member(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in p.parts) \
            or (len(p.parts) and ":" in p.parts[0]):
        raise RunError(f"archive member {name!r} has an unsafe path")
    return p


def _bundle_prefix(zf: zipfile.ZipFile) -> PurePosixPath | None:
    """Where the bundle's files sit in the archive (root, or one top folder); None when the
    archive holds no manifest.json (so it is not a bundle)."""
    names = [PurePosixPath(i.filename) for i in zf.infolist() if not i.is_dir()]
    manifests = [n for n in names if n.name == MANIFEST]
    if not manifests:
        return None
    if len(manifests) > 1:
        raise RunError(f"archive holds {len(manifests)} {MANIFEST} files; upload one bundle at a time")
    prefix = manifests[0].parent
    if len(prefix.parts) > 1:
        raise RunError(f"{MANIFEST} is nested too deep in the archive ({manifests[0]})")
    return prefix


def _extract_bundle(data: bytes, dest: Path) -> Path:
    """Unpack a zipped bundle into ``dest``: its manifest first (at most a MiB inflated), checked
    against the model it describes (``ctnet.codec.bundle.reader``), then exactly the members
    it names, each declared at the size the manifest states and inflated a MiB at a time into
    a temporary folder while it is hashed — never more bytes than the manifest allows — and
    the folder renamed into place only when every member matched."""
    from .codec.bundle import reader
    from .codec.manifest import MAX_MANIFEST_BYTES, check_name
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise RunError(f"not a readable zip archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise RunError(f"archive has {len(infos)} members; a bundle has a handful")
        prefix = _bundle_prefix(zf)
        if prefix is None:
            raise RunError(f"zip archive holds no {MANIFEST}: not a CTNet bundle")
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            path = _safe_member(info.filename)
            if info.is_dir():
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no type
            if kind and kind != stat.S_IFREG:
                raise RunError(f"archive member {info.filename[:80]!r} is not a regular file (links are refused)")
            if path.parent != prefix:
                raise RunError(f"archive member {info.filename[:80]!r} is outside the bundle folder")
            try:
                members[check_name(path.name)] = info
            except ValueError as exc:
                raise RunError(f"archive member {info.filename[:80]!r}: {exc}") from None
        declared = sum(i.file_size for i in members.values())
        if declared > MAX_UPLOAD_BYTES or declared > MAX_ZIP_RATIO * max(len(data), 1):
            raise RunError(f"archive expands to {declared} bytes: too large for a bundle")
        manifest = _inflate(zf, members[MANIFEST], MAX_MANIFEST_BYTES)
        try:
            expected = reader(manifest).members
        except ValueError as exc:
            raise RunError(f"{MANIFEST}: {exc}") from None
        unlisted = sorted(set(members) - set(expected) - {MANIFEST})
        missing = sorted(set(expected) - set(members))
        if unlisted or missing:
            raise RunError(f"archive member {(unlisted or missing)[0]!r} is "
                           + ("not part of the bundle its manifest describes" if unlisted else "missing"))
        for name, (size, _) in expected.items():
            if members[name].file_size != size:
                raise RunError(f"archive member {name!r} declares {members[name].file_size} bytes, the manifest "
                               f"says {size}")
        tmp = dest.parent / f".{dest.name}.~{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            (tmp / MANIFEST).write_bytes(manifest)
            for name, (size, digest) in expected.items():
                h = hashlib.sha256()
                with open(tmp / name, "wb") as out:
                    for chunk in _chunks(zf, members[name], size):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != digest:
                    raise RunError(f"archive member {name!r} does not match its manifest's SHA-256 (damaged)")
            if not dest.exists():  # else another import of the same content got there first: keep that
                os.replace(tmp, dest)
        except OSError as exc:
            raise RunError(f"could not store the bundle ({exc.strerror or exc})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int):
    """A member's bytes, inflated a MiB at a time; more than ``limit`` bytes, a damaged
    deflate stream or a bad CRC is a RunError (nothing past the limit is ever inflated)."""
    done = 0
    try:
        with zf.open(info) as f:
            while chunk := f.read(1 << 20):
                done += len(chunk)
                if done > limit:
                    raise RunError(f"archive member {info.filename[:80]!r} inflates past its {limit} bytes")
                yield chunk
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise RunError(f"archive member {info.filename[:80]!r} is damaged or truncated ({exc})") from None
    if done != info.file_size:
        raise RunError(f"archive member {info.filename[:80]!r} is {done} bytes, it declares {info.file_size}")


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise RunError(f"archive member {info.filename[:80]!r} declares {info.file_size} bytes; at most {limit}")
    return b"".join(_chunks(zf, info, limit))


def import_upload(name: str, data: bytes, folder: str | os.PathLike) -> Path:
    """Store an uploaded checkpoint file or zipped bundle under ``folder`` (one sub-folder
    per content hash) and return what a loader should read: the file, or the bundle folder.
    Refuses what is not plausibly either; the loader checks the rest. Every failure is a
    RunError, and a failed import leaves nothing behind."""
    if not data:
        raise RunError(f"{name}: the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise RunError(f"{name}: {len(data)} bytes is more than an upload may hold")
    digest = hashlib.sha256(data).hexdigest()[:16]
    dest = Path(folder) / digest
    is_zip = data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06"
    if is_zip:
        # torch.save writes zip files too: only an archive with a manifest is a bundle
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                prefix = _bundle_prefix(zf)
        except RunError as exc:
            raise RunError(f"{name}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - zipfile raises many kinds on a malformed archive
            if name.lower().endswith(".zip"):
                raise RunError(f"{name}: not a readable zip archive ({type(exc).__name__}: {str(exc)[:200]}); "
                               f"truncated?") from None
            prefix = None  # a torch.save file the zip reader does not like: the checkpoint loader decides
        if prefix is not None or name.lower().endswith(".zip"):
            try:
                dest.mkdir(parents=True, exist_ok=True)
                return _extract_bundle(data, dest / "bundle")
            except RunError as exc:
                raise RunError(f"{name}: {exc}") from None
            except OSError as exc:
                raise RunError(f"{name}: could not store the upload ({exc.strerror or exc})") from None
            except Exception as exc:  # noqa: BLE001 - zipfile raises many kinds on a malformed archive
                raise RunError(f"{name}: a damaged zip archive ({type(exc).__name__}: {str(exc)[:200]})") from None
            finally:
                _remove_if_empty(dest)
    if name.lower().endswith(".zip"):
        raise RunError(f"{name}: not a zip archive (a zipped bundle starts with the bytes 'PK'); truncated or "
                       f"another kind of file?")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[-128:] or "upload"
    if Path(safe).suffix not in CHECKPOINT_SUFFIXES:
        raise RunError(f"{name}: expected a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) or a zipped bundle (.zip)")
    target = dest / safe
    tmp = dest / f".{safe}.~{os.getpid()}.tmp"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        raise RunError(f"{name}: could not store the upload ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
        _remove_if_empty(dest)
    return target


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when nothing was stored in it
    except OSError:
        pass


def zip_bundle(files: dict[str, bytes], folder: str = "bundle") -> bytes:
    """A bundle's files as a zip archive holding one folder (what the app offers to
    download); fixed timestamps, so equal bundles give equal archives."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            # streams are already compressed; only the manifest gains from deflate
            info.compress_type = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            zf.writestr(info, files[name])
    return buf.getvalue()


# --- baselines (the --init-from source of a fine-tuned run) ---------------------------------------

_NOTES_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|.*\|\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*\|\s*$")


def notes_baselines(text: str) -> dict[str, float]:
    """run name → baseline top-1 (%) from a demo's notes: table rows ``| `run` | … | 88.18 % |``
    (the last column)."""
    out = {}
    for line in text.splitlines():
        m = _NOTES_ROW.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


@dataclass(frozen=True)
class Baseline:
    """The model a run was fine-tuned from (``--init-from``) as the app draws it: its top-1 (a
    dotted line) and, when the demo ships one, its own rate–distortion sweep: ``rd``, a ``ctnet
    rd`` cache file whose points measured on the weights with SHA-256 ``sha256`` on all
    ``images`` val images are drawn beside the CTNet points (:func:`DemoIndex.baseline_for`)."""

    acc1: float
    source: str  # where the top-1 comes from, for captions
    name: str | None = None
    sha256: str | None = None
    images: int | None = None
    rd: str | None = None  # absolute path of the rd cache file

    @property
    def label(self) -> str:
        return f"{self.name or 'baseline'} ({self.acc1:.2f} %)"


DEMO_INDEX = "demo.json"  # beside the demo's runs/: its default checkpoint and its runs' baselines
DEMO_FORMAT = "ctnet-demo"
DEMO_VERSION = 1
_BASELINE_FIELDS = {"name", "init_from", "sha256", "acc1", "images", "rd"}


@dataclass(frozen=True)
class DemoIndex:
    """A demo's ``demo.json`` (docs/app.md): the checkpoint the app opens on (``default``, a path
    relative to the demo) and the baselines its runs were fine-tuned from, matched to a run by
    the ``init_from`` its ``config.json`` records (what ``ctnet train --init-from`` was given)."""

    folder: str
    default: str | None = None
    baselines: tuple[dict, ...] = ()

    def default_path(self) -> str | None:
        return str(Path(self.folder) / self.default) if self.default else None

    def baseline_for(self, run: Run) -> Baseline | None:
        """The baseline whose ``init_from`` is the run's, else the one baseline with the same
        file name (runs made on other machines record the same model under other folders)."""
        src = (run.config or {}).get("init_from")
        if not isinstance(src, str) or not src:
            return None
        hits = [b for b in self.baselines if b["init_from"] == src] or \
            [b for b in self.baselines if PurePosixPath(b["init_from"]).name == PurePosixPath(src).name]
        if len(hits) != 1:
            return None
        b = hits[0]
        return Baseline(acc1=b["acc1"], source=f"{DEMO_INDEX}: {b['name']}", name=b["name"], sha256=b["sha256"],
                        images=b["images"], rd=str(Path(self.folder) / b["rd"]) if b.get("rd") else None)


def _inside(value, where: str) -> str:
    """A relative path that stays inside the demo folder."""
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise RunError(f"{where} must be a path relative to the demo folder")
    p = PurePosixPath(value)
    if p.is_absolute() or "\\" in value or any(part in ("", ".", "..") for part in p.parts):
        raise RunError(f"{where} must be a path inside the demo folder, not {value[:80]!r}")
    return value


def _baseline_entry(b, where: str) -> dict:
    if not isinstance(b, dict):
        raise RunError(f"{where} must be an object")
    unknown = sorted(set(b) - _BASELINE_FIELDS)
    missing = sorted({"name", "init_from", "sha256", "acc1", "images"} - set(b))
    if unknown or missing:
        raise RunError(f"{where}: " + (f"unknown field {unknown[0]!r}" if unknown else f"{missing[0]!r} is missing"))
    for k in ("name", "init_from"):
        if not isinstance(b[k], str) or not b[k] or len(b[k]) > 500 or not b[k].isprintable():
            raise RunError(f"{where}.{k} must be a one-line string")
    if not (isinstance(b["sha256"], str) and len(b["sha256"]) == 64 and set(b["sha256"]) <= set("0123456789abcdef")):
        raise RunError(f"{where}.sha256 must be 64 lowercase hex digits")
    acc = b["acc1"]
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 100:
        raise RunError(f"{where}.acc1 must be a top-1 in percent (0..100)")
    if isinstance(b["images"], bool) or not isinstance(b["images"], int) or not 0 < b["images"] < 10**9:
        raise RunError(f"{where}.images must be a positive integer (the val images the points were measured on)")
    out = {**b, "acc1": float(acc)}
    if "rd" in b:
        out["rd"] = _inside(b["rd"], f"{where}.rd")
    return out


def read_demo_index(folder: str | os.PathLike) -> DemoIndex:
    """``folder/demo.json`` checked field by field (an empty index when there is none). Raises
    RunError naming the file and the field."""
    from .strict import JSONInvalid, parse_json
    folder = Path(folder)
    p = folder / DEMO_INDEX
    if not p.is_file():
        return DemoIndex(str(folder))
    try:
        if p.stat().st_size > 1 << 20:
            raise RunError(f"{p}: larger than a demo index (1 MiB)")
        doc = parse_json(p.read_bytes(), constants=False)
    except JSONInvalid as exc:
        raise RunError(f"{p}: not readable JSON ({exc.cause}: {exc.detail})") from None
    except OSError as exc:
        raise RunError(f"{p}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != DEMO_FORMAT:
        raise RunError(f"{p}: not a CTNet demo index (\"format\": \"{DEMO_FORMAT}\" expected)")
    if doc.get("version") != DEMO_VERSION or isinstance(doc.get("version"), bool):
        raise RunError(f"{p}: demo index version {doc.get('version')!r} (this ctnet reads {DEMO_VERSION})")
    unknown = sorted(set(doc) - {"format", "version", "default", "baselines"})
    if unknown:
        raise RunError(f"{p}: unknown field {unknown[0]!r}")
    default = _inside(doc["default"], f"{p}: default") if doc.get("default") is not None else None
    entries = doc.get("baselines", [])
    if not isinstance(entries, list) or len(entries) > 64:
        raise RunError(f"{p}: baselines must be a list (of at most 64)")
    baselines = tuple(_baseline_entry(b, f"{p}: baselines[{i}]") for i, b in enumerate(entries))
    seen = [b["init_from"] for b in baselines]
    if len(set(seen)) != len(seen):
        raise RunError(f"{p}: two baselines name the same init_from")
    return DemoIndex(str(folder), default, baselines)


def baseline(run: Run, notes: dict[str, float] | None = None, index: DemoIndex | None = None) -> Baseline | None:
    """The checkpoint ``run`` was fine-tuned from: the demo index's entry for its ``init_from``
    (top-1, SHA-256, its rd sweep), else that checkpoint's own metrics when the file is here,
    else ``notes`` (e.g. :func:`notes_baselines` of the demo's DEMO.md); None when unknown."""
    if index is not None:
        found = index.baseline_for(run)
        if found is not None:
            return found
    src = (run.config or {}).get("init_from")
    if isinstance(src, str) and src:
        p = Path(src)
        if not p.is_absolute():
            p = Path(run.path) / p
        if p.is_file():
            try:
                acc = (_checkpoint_meta(p).get("metrics") or {}).get("acc1")
            except RunError:
                acc = None
            if isinstance(acc, (int, float)):
                return Baseline(float(acc), f"{p.name} (--init-from)")
    if notes and run.name in notes:
        return Baseline(notes[run.name], "the demo's notes")
    return None


__all__ = ["Baseline", "DemoIndex", "Entry", "Run", "RunError", "accuracy_of", "all_entries", "baseline", "catalog_stamp",
           "discover", "frontier", "import_upload", "is_run", "notes_baselines", "pareto_front", "read_demo_index",
           "read_log", "read_run", "stamp", "zip_bundle"]
