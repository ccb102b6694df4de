"""Top-1/top-5 of any model on a dataset split (ImageNette or any image folder), on any device."""
from __future__ import annotations

import torch
from torch import nn

from .data import Split, batches, normalize
from .errors import ConfigError, DeviceError
from .limits import MAX_BATCH_SIZE, MAX_WORKERS



def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; an explicit ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {name!r}") from exc
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_amp(device: torch.device) -> None:
    """bf16 autocast pays only where the hardware computes in bf16; on an older CPU it is
    emulated, slower than fp32, so ``--amp`` there is refused rather than quietly slow."""
    if device.type == "cpu" and not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        raise ConfigError("--amp: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so bf16 would be "
                          "slower than float32; drop --amp")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--amp: this GPU has no bfloat16; drop --amp")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


EVAL_BATCH_PIXELS = 256 * 128 * 128  # the default batch: 256 images at 128 px, fewer of larger ones


def eval_batch_size(image_size: int) -> int:
    """The default evaluation batch: 256 images at 128 px and as many pixels at other sizes
    (4 at 1024 px), so memory does not grow with the image size a checkpoint or bundle states."""
    return max(1, min(256, EVAL_BATCH_PIXELS // (image_size * image_size)))


def check_loader(batch_size: int, workers: int) -> None:
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"batch size must be in 1..{MAX_BATCH_SIZE}, got {batch_size!r}")
    if not isinstance(workers, int) or not 0 <= workers <= MAX_WORKERS:
        raise ConfigError(f"data loader workers must be in 0..{MAX_WORKERS}, got {workers!r}")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, *, device: torch.device | str = "cpu", batch_size: int | None = None,
             amp: bool = False, progress=None, rank: int = 0, world: int = 1, workers: int = 4,
             confusion: bool = False, hits: bool = False) -> dict:
    """{"acc1", "acc5" (percent), "images", "device"[, "confusion"][, "hits"]}.

    ``batch_size`` None: :func:`eval_batch_size` of the split's image size.
    ``hits``: per image in the split's order, whether its top-1 is right (for paired
    comparisons of two models on the same images; one process only).
    ``confusion`` is targets × predictions over the labels present in the split, plus a last
    column for predictions outside them (a 1000-class head can predict any ImageNet class).
    Under DDP each rank evaluates its shard and the counts are summed.
    """
    batch_size = eval_batch_size(split.size) if batch_size is None else batch_size
    check_loader(batch_size, workers)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    classes = split.labels.unique().cpu()
    index = {int(c): i for i, c in enumerate(classes)}
    cm = torch.zeros(len(classes), len(classes) + 1, dtype=torch.int64)
    correct1 = correct5 = seen = 0
    per_image: list[bool] = []
    for images, labels in batches(split, batch_size, shuffle=False, rank=rank, world=world,
                                  workers=workers, device=device):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(normalize(images).contiguous(memory_format=torch.channels_last))
        top5 = logits.float().topk(min(5, logits.shape[1]), dim=1).indices
        hit = top5 == labels[:, None]
        correct1 += int(hit[:, 0].sum())
        correct5 += int(hit.any(1).sum())
        seen += len(labels)
        if hits:
            per_image.extend(bool(h) for h in hit[:, 0].cpu())
        if confusion:
            pred = top5[:, 0].cpu()
            rows = torch.tensor([index[int(t)] for t in labels.cpu()])
            cols = torch.tensor([index.get(int(p), len(classes)) for p in pred])
            cm.index_put_((rows, cols), torch.ones_like(rows), accumulate=True)
        if progress is not None:
            progress(seen, len(split))
    if world > 1:
        counts = torch.tensor([correct1, correct5, seen], device=device)
        torch.distributed.all_reduce(counts)
        correct1, correct5, seen = (int(v) for v in counts)
    model.train(was_training)
    result = {"acc1": 100.0 * correct1 / max(seen, 1), "acc5": 100.0 * correct5 / max(seen, 1),
              "images": seen, "device": device_label(device)}
    if confusion:
        result["confusion"] = cm.tolist()
        result["classes"] = [int(c) for c in classes]
    if hits and world == 1:
        result["hits"] = per_image
    return result
