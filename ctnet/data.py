"""ImageNette: folders of WordNet IDs, label remapping, cached uint8 tensors, device-side
augmentation, and the official archive download."""
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
    """WNID → label: sorted folder index for a 10-class head, ImageNet index for 1000."""
    if num_classes == 10:
        return {wnid: i for i, wnid in enumerate(IMAGENETTE_CLASSES)}
    if num_classes == 1000:
        return {wnid: idx for wnid, (_, idx) in IMAGENETTE_CLASSES.items()}
    raise DatasetError(f"ImageNette needs a 10-class head or a 1000-class ImageNet head, not {num_classes}")


def class_names(labels: dict[str, int]) -> dict[int, str]:
    return {label: IMAGENETTE_CLASSES[wnid][0] for wnid, label in labels.items()}


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """``root/split`` when it exists, else ``root`` itself if it holds class folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    if (root / split).is_dir():
        return root / split
    if any(p.is_dir() and p.name.startswith("n") for p in root.iterdir()):
        return root
    raise DatasetError(f"{root} has no '{split}' folder and no class folders (expected <root>/{split}/<WNID>/*.jpg)")


def list_images(folder: Path, labels: dict[str, int]) -> tuple[list[Path], torch.Tensor]:
    """Image paths and labels of an ImageFolder of WNID folders; unknown folders are errors."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not class_dirs:
        raise DatasetError(f"{folder} has no class folders")
    unknown = [p.name for p in class_dirs if p.name not in labels]
    if unknown:
        raise DatasetError(f"{folder}: unknown class folder(s) {', '.join(unknown[:5])}: "
                           f"ImageNette folders are the WordNet IDs {', '.join(labels)}")
    paths, targets = [], []
    for d in class_dirs:
        files = sorted(p for p in d.iterdir() if p.suffix in IMAGE_SUFFIXES)
        for p in files:
            if not p.is_file():  # a FIFO or device would block or never end when opened: never opened
                raise DatasetError(f"{p}: not a regular file")
        paths += files
        targets += [labels[d.name]] * len(files)
    if not paths:
        raise DatasetError(f"{folder} contains no images")
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


def load_split(root, split: str, *, num_classes: int, size: int, limit: int | None = None,
               cache: bool = False, device: str | torch.device = "cpu", progress=None) -> Split:
    labels = label_map(num_classes)
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
        for s in ("train", "val"):
            list_images(tops[0] / s, label_map(10))  # validates class folders and images
        target = dest / tops[0].name
        if target.exists():
            shutil.rmtree(target)
        os.replace(tops[0], target)
    return target
