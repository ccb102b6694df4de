"""Image-folder datasets — ``DATA/train/<class>/`` and ``DATA/val/<class>/`` with any class
names, ImageNette's WordNet IDs among them — their label maps, cached uint8 tensors,
device-side augmentation, and the official ImageNette download."""
from __future__ import annotations

import math
import os
import shutil
import tarfile
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError
from .limits import MAX_CLASS_NAME_CHARS, MAX_NUM_CLASSES

# WordNet ID → (name, ImageNet-1k index), in folder (sorted) order
IMAGENETTE_CLASSES = {
    "n01440764": ("tench", 0),
    "n02102040": ("English springer", 217),
    "n02979186": ("cassette player", 482),
    "n03000684": ("chain saw", 491),
    "n03028079": ("church", 497),
    "n03394916": ("French horn", 566),
    "n03417042": ("garbage truck", 569),
    "n03425413": ("gas pump", 571),
    "n03445777": ("golf ball", 574),
    "n03888257": ("parachute", 701),
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".JPEG", ".JPG"}
MAX_RESIZED_PIXELS = 64  # an image resized to a shorter side of S may have at most 64·S² pixels (aspect 64:1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENETTE_URLS = {
    "160": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
    "320": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
    "full": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
}



def label_map(num_classes: int) -> dict[str, int]:
    """ImageNette's label map: WNID → sorted folder index for a 10-class head, ImageNet index
    for 1000 (what a model without a stored label map was trained with)."""
    if num_classes == 10:
        return {wnid: i for i, wnid in enumerate(IMAGENETTE_CLASSES)}
    if num_classes == 1000:
        return {wnid: idx for wnid, (_, idx) in IMAGENETTE_CLASSES.items()}
    raise DatasetError(f"ImageNette needs a 10-class head or a 1000-class ImageNet head, not {num_classes}")


def class_name_problem(name) -> str | None:
    """Why ``name`` cannot be a class (a folder name of 1–255 characters, no control
    characters, no '/'), or None."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_CLASS_NAME_CHARS:
        return f"a class name must have 1 to {MAX_CLASS_NAME_CHARS} characters"
    if any(ord(c) < 32 or c in "/\x7f" for c in name):
        return "a class name must not hold control characters or '/'"
    return None


def label_map_problem(labels, num_classes: int) -> str | None:
    """What is wrong with a label map (class folder name → head index) for a head of
    ``num_classes``, or None: it must be a non-empty object of distinct indices below
    ``num_classes``, keyed by names of 1–255 characters without control characters. The
    checkpoint reader and the bundle manifest both ask this."""
    if not isinstance(labels, dict) or not labels:
        return "must be a JSON object (class name → index) with at least one class"
    if len(labels) > num_classes:
        return f"has {len(labels)} classes for a head of {num_classes}"
    for name, idx in labels.items():
        if class_name_problem(name):
            return f"has a class name that is not a folder name: {_quoted(name)}"
        if not (isinstance(idx, int) and not isinstance(idx, bool)) or not 0 <= idx < num_classes:
            return f"maps {_quoted(name)} to {_quoted(idx)}, not an index below {num_classes}"
    if len(set(labels.values())) != len(labels):
        return "maps two classes to the same index"
    return None


def _quoted(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def folder_label_map(classes: list[str], num_classes: int | None = None) -> dict[str, int]:
    """Class folder → label for a head of ``num_classes`` outputs (default: one per class):
    the sorted folder index, except ImageNette's WordNet IDs under a 1000-class (ImageNet)
    head, which take their ImageNet indices."""
    if num_classes == 1000 and set(classes) <= IMAGENETTE_CLASSES.keys():
        return {c: IMAGENETTE_CLASSES[c][1] for c in sorted(classes)}
    if num_classes is not None and len(classes) > num_classes:
        raise DatasetError(f"the dataset has {len(classes)} classes, more than the model's {num_classes}-class head")
    return {c: i for i, c in enumerate(sorted(classes))}


def class_names(labels: dict[str, int]) -> dict[int, str]:
    """Label → what to show: an ImageNette WordNet ID's name ("tench"), else the folder name."""
    return {label: IMAGENETTE_CLASSES[c][0] if c in IMAGENETTE_CLASSES else c for c, label in labels.items()}


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """``root/split``; for ``val`` also ``root`` itself when it has no ``train/`` and holds
    class folders (a val split given on its own, as ``ctnet eval --data`` allows)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    if (root / split).is_dir():
        return root / split
    if split == "val" and not (root / "train").exists() and any(_is_class_dir(p) for p in root.iterdir()):
        return root
    raise DatasetError(f"{root} has no '{split}' folder (a dataset is {root}/train/<class>/<images> and "
                       f"{root}/val/<class>/<images>)")


def _is_class_dir(p: Path) -> bool:
    return p.is_dir() and not p.name.startswith(".")


def class_folders(folder: Path) -> list[str]:
    """The sorted class folder names of one split (hidden folders are not classes)."""
    names = []
    for p in folder.iterdir():
        if _is_class_dir(p):
            problem = class_name_problem(p.name)
            if problem:
                raise DatasetError(f"{folder}: class folder {p.name[:60]!r}: {problem}")
            names.append(p.name)
            if len(names) > MAX_NUM_CLASSES:
                raise DatasetError(f"{folder} has more than {MAX_NUM_CLASSES:,} class folders, more classes "
                                   f"than ctnet takes")
    if not names:
        raise DatasetError(f"{folder} has no class folders (expected {folder}/<class>/<images>)")
    return sorted(names)


def dataset_classes(root: str | os.PathLike) -> list[str]:
    """The classes of a dataset: the class folders of ``root/train`` and ``root/val``, which
    must be the same; each is checked to hold images when its split is listed."""
    root = Path(root)
    train = class_folders(split_dir(root, "train"))
    if not (root / "val").is_dir():
        raise DatasetError(f"{root} has no val split: a dataset needs {root}/val/<class>/<images> beside train/")
    val = class_folders(root / "val")
    for only, here, there in ((sorted(set(train) - set(val)), "train", "val"),
                              (sorted(set(val) - set(train)), "val", "train")):
        if only:
            more = f" (and {len(only) - 1} more)" if len(only) > 1 else ""
            raise DatasetError(f"{root}: class {only[0]!r}{more} is in {here}/ but not in {there}/; both splits "
                               f"need the same class folders")
    return train


def dataset_label_map(root: str | os.PathLike, num_classes: int | None = None) -> dict[str, int]:
    """The label map a model trained on ``root`` without a stored one uses: from the classes
    of both splits (a val folder given on its own: its class folders)."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        return folder_label_map(dataset_classes(root), num_classes)
    return folder_label_map(class_folders(split_dir(root, "val")), num_classes)


def list_images(folder: Path, labels: dict[str, int]) -> tuple[list[Path], torch.Tensor]:
    """Image paths and labels of one split's class folders; a folder that is not one of the
    model's classes, or that holds no image, is an error."""
    class_dirs = [folder / name for name in class_folders(folder)]
    unknown = [p.name for p in class_dirs if p.name not in labels]
    if unknown:
        known = ", ".join(list(labels)[:10]) + (" …" if len(labels) > 10 else "")
        raise DatasetError(f"{folder}: class folder(s) {', '.join(unknown[:5])} not among the model's "
                           f"{len(labels)} classes ({known})")
    paths, targets = [], []
    for d in class_dirs:
        files = sorted(p for p in d.iterdir() if p.suffix in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{d}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for p in files:
            if not p.is_file():  # a FIFO or device would block or never end when opened: never opened
                raise DatasetError(f"{p}: not a regular file")
        paths += files
        targets += [labels[d.name]] * len(files)
    return paths, torch.tensor(targets, dtype=torch.int64)


def balanced_subset(labels: torch.Tensor, n: int | None) -> torch.Tensor:
    """Indices of ``n`` samples taken round-robin over classes (all when ``n`` is None)."""
    if n is None or n >= len(labels):
        return torch.arange(len(labels))
    if n < 1:
        raise ValueError(f"subset size must be ≥ 1, got {n}")
    per_class = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
    rank = torch.cat([torch.arange(len(ix)) for ix in per_class])
    order = torch.cat(per_class)[torch.argsort(rank, stable=True)]
    return order[:n].sort().values


def load_image(path: Path, size: int) -> torch.Tensor:
    """Decode, resize the shorter side to ``size`` and centre-crop: uint8 (3, size, size).
    A file that is not an image, is damaged, or is larger than PIL's decompression-bomb
    limit (``Image.MAX_IMAGE_PIXELS`` × 2; a 30000×30000 image is refused before it is
    decoded) is a DatasetError naming it."""
    try:
        with Image.open(path) as src:
            w, h = src.size
            s = size / min(w, h)
            tw, th = max(size, round(w * s)), max(size, round(h * s))
            if tw * th > MAX_RESIZED_PIXELS * size * size:  # a 60000x1 strip would become 7.7 M x 128 px
                raise DatasetError(f"{path}: a {w}x{h} image is too elongated (its shorter side resized to {size} px "
                                   f"would make it {tw}x{th})")
            im = src.convert("RGB")
            im = im.resize((tw, th), Image.Resampling.BILINEAR)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            im = im.crop((left, top, left + size, top + size))
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except DatasetError:
        raise
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: image too large to decode safely ({_first_line(exc)})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: cannot read image ({_first_line(exc)})") from exc
    except MemoryError:
        raise DatasetError(f"{path}: image too large to decode in memory") from None
    except Exception as exc:  # PIL raises many kinds (SyntaxError, ValueError, struct.error) on damaged files
        raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {_first_line(exc)})") from exc
    return data.reshape(size, size, 3).permute(2, 0, 1).contiguous()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def decode_images(paths: list[Path], size: int, workers: int | None = None, progress=None) -> torch.Tensor:
    """All images as one uint8 tensor (N, 3, size, size); PIL decodes in parallel threads."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    workers = workers or min(32, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        for i, img in enumerate(pool.map(lambda p: load_image(p, size), paths)):
            out[i] = img
            if progress is not None:
                progress(i + 1, len(paths))
    return out


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device → float, ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator | None = None,
            scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Random resized crop + horizontal flip of a normalised batch, on its own device, as one
    affine resampling (``grid_sample``), so a GPU epoch does not wait for the CPU."""
    n, device = images.shape[0], images.device
    rand = lambda: torch.rand(n, generator=generator, device=generator.device if generator else "cpu").to(device)
    area = scale[0] + (scale[1] - scale[0]) * rand()
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * rand()
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (1 - w) * (2 * rand() - 1)
    cy = (1 - h) * (2 * rand() - 1)
    flip = torch.where(rand() < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)


@dataclass
class Split:
    """One split's images: decoded once (``images`` set) or read from disk per epoch."""

    paths: list[Path]
    labels: torch.Tensor
    size: int
    images: torch.Tensor | None = None

    def __len__(self):
        return len(self.labels)


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, split: Split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return load_image(self.split.paths[i], self.split.size), self.split.labels[i]


def load_split(root, split: str, *, size: int, labels: dict[str, int] | None = None, num_classes: int | None = None,
               limit: int | None = None, cache: bool = False, device: str | torch.device = "cpu",
               progress=None) -> Split:
    """One split's images and labels: ``labels`` is the model's label map (class folder →
    index); without one, the map the dataset implies for a head of ``num_classes``."""
    if labels is None:
        labels = dataset_label_map(root, num_classes)
    paths, targets = list_images(split_dir(root, split), labels)
    keep = balanced_subset(targets, limit)
    paths, targets = [paths[i] for i in keep], targets[keep]
    data = Split(paths, targets, size)
    if cache:
        data.images = decode_images(paths, size, progress=progress).to(device)
        data.labels = targets.to(device)
    return data


def batches(split: Split, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
            rank: int = 0, world: int = 1, workers: int = 4, device="cpu", drop_last: bool = False):
    """Yield (uint8 images, labels) on ``device``; each rank gets its own shard."""
    n = len(split)
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    order = order[rank::world]
    if split.images is not None:
        order = order.to(split.images.device)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            yield split.images[idx].to(device, non_blocking=True), split.labels[idx].to(device, non_blocking=True)
        return
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(_FileDataset(split), order.tolist()),
                                         batch_size=batch_size, shuffle=False, num_workers=workers,
                                         drop_last=drop_last, pin_memory=str(device).startswith("cuda"))
    it = iter(loader)
    while True:
        try:
            images, labels = next(it)
        except StopIteration:
            return
        except DatasetError as exc:
            # a worker's error comes back with its whole traceback as the message
            raise DatasetError(worker_message(exc)) from None
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def worker_message(exc: BaseException) -> str:
    """The original one-line message of an exception re-raised from a DataLoader worker
    (whose message is "Caught X in DataLoader worker process N.\nOriginal Traceback ...")."""
    text = str(exc)
    if not text.startswith("Caught "):
        return text
    name = type(exc).__name__
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
            if line.startswith(prefix):
                return line[len(prefix):]
    return text.strip().splitlines()[0]


def download_imagenette(variant: str, dest: str | os.PathLike, *, url: str | None = None, progress=None) -> Path:
    """Fetch and unpack the official ImageNette archive into ``dest``. Unpacks into a
    temporary folder first and moves the result into place, so an interrupted download
    leaves nothing half-written."""
    if variant not in IMAGENETTE_URLS:
        raise ValueError(f"variant must be one of {sorted(IMAGENETTE_URLS)}, got {variant!r}")
    url = url or IMAGENETTE_URLS[variant]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive.tgz"

        def hook(blocks, block_size, total):
            if progress is not None:
                progress(min(blocks * block_size, total) if total > 0 else blocks * block_size, total)

        try:
            urllib.request.urlretrieve(url, archive, reporthook=hook)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"could not download {url}: {exc}") from exc
        unpacked = Path(tmp) / "unpacked"
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")  # refuses absolute paths, '..', devices
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(f"{url}: not a valid ImageNette archive ({exc})") from exc
        tops = [p for p in unpacked.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "train").is_dir() or not (tops[0] / "val").is_dir():
            raise DatasetError(f"{url}: archive does not hold one folder with train/ and val/")
        classes = dataset_classes(tops[0])  # validates the class folders …
        for s in ("train", "val"):
            list_images(tops[0] / s, folder_label_map(classes))  # … and that each holds images
        target = dest / tops[0].name
        if target.exists():
            shutil.rmtree(target)
        os.replace(tops[0], target)
    return target
