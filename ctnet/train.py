"""Training: plain baselines and CTNet under the rate proxy, with per-epoch size estimates,
Pareto checkpoints, resume and DistributedDataParallel."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import checkpoint as ckpt_io
from .data import (augment, batches, class_folders, dataset_classes, folder_label_map, load_split, normalize,
                   split_dir)
from .errors import ConfigError, CtnetError, DatasetError, TrainingError
from .evaluate import check_amp, device_label, evaluate, resolve_device
from .export import estimate_bytes, nonzero_coefficients
from .fileio import atomic_write_text
from .layers import configure_export_training
from .limits import IMAGE_SIZE_RANGE, MAX_BATCH_SIZE, MAX_DITHER, MAX_NUM_CLASSES, MAX_WORKERS, PIXEL_BIT_DEPTHS
from .models import (ARCHITECTURES, MAX_DCT_BLOCK_SIZE, ConversionError, ModelSpec, PretrainedWeightsError, fp32_bytes,
                     head, plain_model, refusal, replace_with_dct_convs)
from .quant import shared_export_grids
from .rate import RATE_GRIDS, rate_weight_at, regularisers

LOG_NAME = "train_log.jsonl"
LOGGED_BITS = (8, 10, 12)  # each epoch logs the size estimate at these grids (SPEC §3) and at the export grid
OPTIMIZERS = ("adamw", "sgd")
CHECKPOINT_DIR = "checkpoints"
MIN_PARETO_RATIO = 5
MAX_SEED = 1 << 32  # seeds are mixed with epoch and rank (seed · 1,000,003 + …) and must stay within torch's 64 bits


REPLACE_COMPLETE = ".ctnet-replace-complete"  # in a --force staging folder: training finished



@dataclass
class TrainConfig:
    data: str
    output_dir: str = "runs/ctnet"
    arch: str = "resnet18"
    plain: bool = False
    plain_1x1: bool = False
    num_classes: int | None = None
    epochs: int = 256
    pretrained: bool = False
    init_from: str | None = None
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.01
    batch_size: int = 256
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    lambda_rate: float = 1e-5
    qstep: float = 0.1
    rate_grid: str = "qstep"
    lambda_alpha: float = 1.0
    steepness: float = 10.0
    train_noise: bool = True
    dct_dropout: float = 0.05
    dct_block_size: int = 16
    pixel_bit_depth: int = 0
    export_dither: float = 0.0  # pixel steps: simulate the grid of `ctnet encode --dither A` (a fresh offset each step)
    rate_warmup_epochs: float = 5.0
    group_rate: float = 0.0  # proxy bits per non-empty frequency-plane row/column (0 = off; ~420 fits v2 bytes)
    distill_from: str | None = None
    distill_temperature: float = 4.0
    distill_weight: float = 0.5
    cache_dataset: bool = False
    resume: str | None = None
    evaluate_only: bool = False
    image_size: int = 128
    device: str = "auto"
    amp: bool = False
    limit_train: int | None = None
    limit_val: int | None = None
    seed: int = 0
    workers: int = min(4, os.cpu_count() or 1)
    checkpoint_every: int = 1
    force: bool = False  # replace a run already in output_dir (atomically, when the new one is complete)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A config stored in a checkpoint's ``train_config``, strictly: known fields only,
        each of its declared type (integers bounded), else a TrainingError naming it."""
        if not isinstance(d, dict):
            raise TrainingError("the checkpoint's train_config is not an object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in d if k not in fields)
        if unknown:
            raise TrainingError(f"the checkpoint's train_config has unknown field(s) {', '.join(unknown)[:200]}")
        for name, value in d.items():
            kind = str(fields[name].type).replace(" ", "")
            optional = kind.endswith("|None")
            base = kind.removesuffix("|None")
            if value is None and optional:
                continue
            ok = {"bool": isinstance(value, bool),
                  "int": isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 1 << 31,
                  "float": isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and abs(value) <= 1e12,
                  "str": isinstance(value, str) and len(value) <= 4096}.get(base, True)
            if not ok:
                raise TrainingError(f"the checkpoint's train_config.{name} must be {kind.replace('|', ' or ')}, "
                                    f"not {str(value)[:40]!r}")
        return cls(**d)

    def validate(self) -> None:
        def check(ok, msg):
            if not ok:
                raise ConfigError(msg)
        for f in dataclasses.fields(self):  # inf/nan pass every comparison below: refused first
            value = getattr(self, f.name)
            if str(f.type).startswith("float"):
                check(isinstance(value, (int, float)) and math.isfinite(value),
                      f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        check(self.arch in ARCHITECTURES, f"--arch: {refusal(self.arch)}")
        check(1 <= self.epochs <= 1_000_000, f"--epochs must be in 1..1000000, got {self.epochs}")
        check(self.optimizer in OPTIMIZERS, f"--optimizer must be {' or '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        check(0 < self.lr <= 10, f"--lr must be in (0, 10], got {self.lr}")
        check(0 <= self.weight_decay < 1, f"--weight-decay must be in [0, 1), got {self.weight_decay}")
        check(1 <= self.batch_size <= MAX_BATCH_SIZE, f"--batch-size must be in 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        check(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        check(0 <= self.workers <= MAX_WORKERS, f"--workers must be in 0..{MAX_WORKERS}, got {self.workers}")
        check(0 <= self.seed < MAX_SEED, f"--seed must be in 0..{MAX_SEED - 1}, got {self.seed}")
        check(0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        check(self.warmup_epochs >= 0, f"--warmup-epochs must be ≥ 0, got {self.warmup_epochs}")
        check(self.lambda_rate >= 0, f"--lambda-rate must be ≥ 0, got {self.lambda_rate}")
        check(self.qstep > 0, f"--qstep must be > 0, got {self.qstep}")
        check(self.rate_grid in RATE_GRIDS, f"--rate-grid must be one of {RATE_GRIDS}, got {self.rate_grid!r}")
        check(self.lambda_alpha >= 0, f"--lambda-alpha must be ≥ 0, got {self.lambda_alpha}")
        check(self.steepness > 0, f"--steepness must be > 0, got {self.steepness}")
        check(0 <= self.dct_dropout < 1, f"--dct-dropout must be in [0, 1), got {self.dct_dropout}")
        check(self.dct_block_size == 0 or 2 <= self.dct_block_size <= MAX_DCT_BLOCK_SIZE,
              f"--dct-block-size must be 0 (full) or in [2, {MAX_DCT_BLOCK_SIZE}], got {self.dct_block_size}")
        check(self.pixel_bit_depth in PIXEL_BIT_DEPTHS, f"--pixel-bit-depth must be 0 (off) or "
              f"{PIXEL_BIT_DEPTHS[1]}..{PIXEL_BIT_DEPTHS[-1]}, got {self.pixel_bit_depth}")
        check(0 <= self.export_dither <= MAX_DITHER,
              f"--export-dither must be in [0, {MAX_DITHER:g}] pixel steps, got {self.export_dither}")
        check(not self.export_dither or (self.pixel_bit_depth and self.rate_grid == "export"),
              "--export-dither simulates the dithered export grid: it needs --pixel-bit-depth N and --rate-grid export")
        check(0 <= self.group_rate <= 1e6, f"--group-rate must be in [0, 1e6], got {self.group_rate}")
        check(0 < self.distill_temperature <= 100, f"--distill-temperature must be in (0, 100], got {self.distill_temperature}")
        check(0 <= self.distill_weight <= 1, f"--distill-weight must be in [0, 1], got {self.distill_weight}")
        check(self.rate_warmup_epochs >= 0, f"--rate-warmup-epochs must be ≥ 0, got {self.rate_warmup_epochs}")
        lo, hi = IMAGE_SIZE_RANGE
        check(lo <= self.image_size <= hi, f"--image-size must be in [{lo}, {hi}], got {self.image_size}")
        check(self.limit_train is None or self.limit_train >= 1, "--limit-train must be ≥ 1")
        check(self.limit_val is None or self.limit_val >= 1, "--limit-val must be ≥ 1")
        check(self.checkpoint_every >= 1, "--checkpoint-every must be ≥ 1")
        check(self.num_classes is None or 1 <= self.num_classes <= MAX_NUM_CLASSES,
              f"--num-classes must be in [1, {MAX_NUM_CLASSES}], got {self.num_classes}")
        check(not (self.pretrained and self.init_from), "--pretrained and --init-from are exclusive")
        check(not (self.plain and self.pixel_bit_depth), "--pixel-bit-depth needs a CTNet model (drop --plain)")
        check(not (self.force and self.resume), "--force starts a new run and --resume continues one: pass one")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- distributed helpers --------------------------------------------------------------

def _dist_setup(device_name: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# --- model construction ------------------------------------------------------------------

def _load_source(path: str) -> tuple[nn.Module, ModelSpec, dict]:
    """(model, spec, metadata) of a checkpoint file or a bundle directory (decoded)."""
    from .sources import is_bundle, load_any
    if is_bundle(path):  # a bundle directory: decoded, a file: read as a checkpoint
        loaded = load_any(path)
        return loaded.model, loaded.spec, loaded.meta
    source = ckpt_io.read_checkpoint(path)
    return ckpt_io.model_from_checkpoint(source), source.spec, source.meta


def _teacher(config: TrainConfig, spec: ModelSpec, labels: dict[str, int]) -> nn.Module:
    """The --distill-from model, frozen, once it is shown to speak the student's labels."""
    assert config.distill_from is not None
    try:
        teacher, tspec, tmeta = _load_source(config.distill_from)
    except CtnetError as exc:
        raise TrainingError(f"--distill-from: {exc}") from exc  # exc names the file
    if tspec.num_classes != spec.num_classes:
        raise TrainingError(f"--distill-from {config.distill_from} has {tspec.num_classes} classes, "
                            f"the model being trained {spec.num_classes}")
    taught = tmeta.get("label_map")
    if taught is not None and any(taught.get(c) != i for c, i in labels.items()):
        raise TrainingError(f"--distill-from {config.distill_from} was trained with another label map")
    size = tmeta.get("image_size")
    if size is not None and size != config.image_size:
        raise TrainingError(f"--distill-from {config.distill_from} was trained at {size} px, --image-size is "
                            f"{config.image_size}")
    return teacher.eval().requires_grad_(False)


def _build(config: TrainConfig, classes: int | None = None) -> tuple[nn.Module, ModelSpec, dict | None]:
    """The starting model, its description and the label map it carries (None: it has
    none): init-from > pretrained > random init with a head of ``--num-classes``, else
    ``classes`` (the dataset's), else 10."""
    labels = None
    if config.init_from:
        model, spec, meta = _load_source(config.init_from)
        labels = meta.get("label_map")
        if spec.arch != config.arch:
            raise TrainingError(f"--init-from {config.init_from} is a {spec.arch}, but --arch is {config.arch}")
        if config.num_classes not in (None, spec.num_classes):
            raise TrainingError(f"--init-from has {spec.num_classes} classes, --num-classes says {config.num_classes}")
        if spec.ctnet and config.plain:
            raise TrainingError("--plain cannot start from a CTNet checkpoint")
        if spec.ctnet and spec.dct_block_size != config.dct_block_size:
            raise TrainingError(f"--init-from was trained with DCT block size {spec.dct_block_size}, "
                                f"--dct-block-size is {config.dct_block_size}")
    elif config.pretrained:
        try:
            model = plain_model(config.arch, num_classes=config.num_classes or 1000, pretrained=True)
        except PretrainedWeightsError as exc:  # torchvision's weights are not in its cache: say what to do
            raise TrainingError(str(exc)) from exc
    else:
        model = plain_model(config.arch, num_classes=config.num_classes or classes or 10)
    num_classes = head(model, config.arch).out_features
    if not config.plain and not any(hasattr(m, "weight_dct") for m in model.modules()):
        try:
            replace_with_dct_convs(model, block_size=config.dct_block_size, plain_1x1=config.plain_1x1, verify=True)
        except ConversionError as exc:  # the starting weights (e.g. --init-from's) do not convert faithfully
            raise TrainingError(f"{config.init_from or config.arch}: {exc}") from exc
    spec = ModelSpec(config.arch, num_classes, not config.plain, config.dct_block_size, config.plain_1x1)
    return model, spec, labels


def _labels(config: TrainConfig, classes: list[str], num_classes: int, carried: dict | None) -> dict[str, int]:
    """The run's label map: the starting model's own when it names every class of the data
    (its head keeps its meaning), else the dataset's for this head."""
    if carried and set(classes) <= carried.keys():
        return {c: carried[c] for c in sorted(classes)}
    try:
        return folder_label_map(classes, num_classes)
    except DatasetError as exc:
        raise TrainingError(f"{config.data}: {exc}") from None


def _param_groups(model: nn.Module, weight_decay: float):
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- checkpoints ---------------------------------------------------------------------------

class ParetoTracker:
    """Which epoch holds each role: ``best`` (top-1), ``smallest`` (estimated bytes) and
    ``best_{N}x``, the most accurate epoch whose ratio is at least N (N ≥ 5)."""

    def __init__(self, state: dict | None = None):
        self.roles: dict[str, dict] = dict(state or {})

    def update(self, row: dict) -> list[str]:
        won = []
        candidates = {"best": ("acc1", True), "smallest": ("est_bytes_export", False)}
        for role, (key, higher) in candidates.items():
            cur = self.roles.get(role)
            if cur is None or (row[key] > cur[key] if higher else row[key] < cur[key]):
                won.append(role)
        for n in range(MIN_PARETO_RATIO, int(row["ratio"]) + 1):
            cur = self.roles.get(f"best_{n}x")
            if cur is None or row["acc1"] > cur["acc1"]:
                won.append(f"best_{n}x")
        for role in won:
            self.roles[role] = {"epoch": row["epoch"], "acc1": row["acc1"], "est_bytes_export": row["est_bytes_export"]}
        return won


def _link_roles(source: Path, roles: list[str], folder: Path) -> None:
    """Point every role file at one written checkpoint (hard links: one copy on disk)."""
    for role in roles:
        target = folder / f"{role}.safetensors"
        tmp = folder / f".{role}.link.tmp"
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)


# --- the loop --------------------------------------------------------------------------------

def _metrics_row(model: nn.Module, config: TrainConfig, epoch: int, acc: dict, loss: float, rate: float,
                 lr: float, seconds: float) -> dict:
    export_bits = str(config.pixel_bit_depth or 8)
    sizes = {str(b): estimate_bytes(model, b) for b in sorted({*LOGGED_BITS, int(export_bits)})}
    fp32 = fp32_bytes(model)
    return {"epoch": epoch, "acc1": round(acc["acc1"], 4), "acc5": round(acc["acc5"], 4), "loss": loss,
            "rate": rate, "est_bytes": sizes, "est_bytes_export": sizes[export_bits], "export_bits": int(export_bits),
            "fp32_bytes": fp32, "ratio": fp32 / sizes[export_bits],
            "nonzero": nonzero_coefficients(model, config.qstep), "lr": lr, "seconds": round(seconds, 3)}


def _read_log(path: Path, up_to_epoch: int) -> list[dict]:
    """The log rows of the epochs a resumed run keeps; a damaged line is a TrainingError naming it."""
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise TrainingError(f"{path}: line {i} is not a JSON record ({str(exc)[:80]}); repair or remove "
                                f"that line to resume") from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int) or isinstance(row["epoch"], bool):
            raise TrainingError(f"{path}: line {i} is not an epoch record; repair or remove that line to resume")
        rows.append(row)
    return [r for r in rows if r["epoch"] <= up_to_epoch]


# --- the output directory: never lose a run ---------------------------------------------------

def holds_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a training run's work: a log with an epoch in it, or a
    checkpoint (a run that failed before its first epoch left nothing to lose)."""
    path = Path(path)
    log = path / LOG_NAME
    if log.is_file() and log.stat().st_size > 0:
        return True
    folder = path / CHECKPOINT_DIR
    return folder.is_dir() and any(p.suffix == ".safetensors" for p in folder.iterdir())


def _replace_paths(target: Path) -> tuple[Path, Path]:
    """(staging folder of a --force run, where the replaced run waits during the swap)."""
    target = target.resolve()  # "." has no name; its siblings are named after the folder itself
    return target.parent / f".{target.name}.new", target.parent / f".{target.name}.old"


def recover_replace(target: str | os.PathLike, log=print) -> None:
    """Finish a --force replace of ``target`` that a kill interrupted after the new run was
    complete (the new run takes the place), and remove what a finished swap left. A run
    whose training was interrupted is never put in place."""
    target = Path(target)
    new, old = _replace_paths(target)
    if new.is_dir() and (new / REPLACE_COMPLETE).exists():
        if target.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(new, target)
        log(f"finished replacing {target} with the completed --force run (the swap had been interrupted)")
    if (target / REPLACE_COMPLETE).exists():
        (target / REPLACE_COMPLETE).unlink()
    if old.is_dir():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:  # the old run was moved aside but nothing complete replaced it: put it back
            os.replace(old, target)
            log(f"restored {target} (a --force replace had been interrupted)")


def _finish_replace(staging: Path, target: Path, log) -> None:
    (staging / REPLACE_COMPLETE).touch()
    recover_replace(target, log=lambda *_: None)
    log(f"replaced the run in {target}")


def _prepare_output(config: TrainConfig, *, is_main: bool, log) -> Path | None:
    """Refuse to train over a run unless resuming it or asked to replace it (--force). With
    --force the new run trains in a staging folder (``.NAME.new``) beside the old one, which
    stays readable at its path until the new one is complete. Returns the staging folder,
    or None to train in ``output_dir`` itself."""
    target = Path(config.output_dir)
    new, _ = _replace_paths(target)
    if is_main:
        recover_replace(target, log=log)
    if config.resume or not holds_run(target):
        if is_main and new.is_dir():
            log(f"note: {new} holds an interrupted --force run (incomplete); the next --force run removes it")
        return None
    if not config.force:
        found = " and ".join(n for n in (LOG_NAME, CHECKPOINT_DIR + "/") if (target / n.rstrip("/")).exists())
        last = target / CHECKPOINT_DIR / "last.safetensors"
        resume = f"pass --resume {last} to continue it, " if last.is_file() else \
            f"it has no {CHECKPOINT_DIR}/last.safetensors to resume from; pass "
        raise TrainingError(f"{target} already holds a run ({found}); {resume}--force to replace it "
                            f"(the old run stays until the new one is complete), or another --output-dir")
    if is_main:
        if new.exists():
            shutil.rmtree(new)
            log(f"removed {new}, an interrupted --force run")
        new.mkdir(parents=True)
        log(f"--force: training in {new}; it replaces {target} when complete")
    return new


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the logits softened by ``temperature``, scaled by T² so its
    gradient keeps the size of the cross-entropy's (Hinton et al., 2015)."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(logits.float() / t, dim=1), F.log_softmax(teacher_logits.float() / t, dim=1),
                    log_target=True, reduction="batchmean") * (t * t)


def step_loss(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, config: TrainConfig, lam: float, *,
              regularise: bool, forward: nn.Module | None = None,
              teacher: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One training step's loss and (when ``regularise``) its rate (detached): the forward pass (bf16
    autocast with ``config.amp``), cross-entropy (mixed with the distillation term when a
    ``teacher`` is given) and ``λ·(Σ R_layer + α·Σ c² [+ group·Σ G])``, the rate and L2 in
    one fused pass per tensor. Inside ``shared_export_grids`` the export-aware forward and the
    rate on the export grid compute each tensor's tile statistics once. No host sync."""
    with shared_export_grids():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.amp):
            logits = (forward or model)(x)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(x)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)
        if teacher is not None:
            w = config.distill_weight
            loss = (1 - w) * loss + w * distill_loss(logits, teacher_logits, config.distill_temperature)
        if not regularise:
            return loss, None
        penalty, rate = regularisers(model, alpha=config.lambda_alpha, qstep=config.qstep, steepness=config.steepness,
                                     grid=config.rate_grid, bits=config.pixel_bit_depth or 8, group=config.group_rate,
                                     dither=config.export_dither)
    return loss + lam * penalty, rate


class _LossDisplay:
    """The progress bar's loss without stalling the GPU: on CUDA the value is copied to pinned
    memory asynchronously and shown once that copy has landed (a display or so late); no
    float() of a device tensor inside the epoch."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.buf = torch.zeros((), pin_memory=True) if self.cuda else None
        self.event: torch.cuda.Event | None = None

    def update(self, loss: torch.Tensor, bar) -> None:
        if getattr(bar, "disable", False):
            return
        if not self.cuda:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            return
        assert self.buf is not None  # pinned whenever self.cuda
        if self.event is not None:
            if not self.event.query():
                return  # the last copy is still queued behind the step's kernels
            bar.set_postfix(loss=f"{float(self.buf):.3f}")
        self.buf.copy_(loss.detach(), non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()


def _check_resume(config: TrainConfig, ckpt, target: Path) -> None:
    """What --resume reads besides the model: the run's log and the stored random-number state."""
    _read_log(target / LOG_NAME, ckpt.meta["resume_state"]["epoch"])
    rng = ckpt.extra.get("torch_rng")
    if rng is not None and (rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape):
        raise TrainingError(f"{config.resume}: its stored random-number state is not a CPU generator state "
                            f"({rng.dtype}, {list(rng.shape)}); the checkpoint is damaged")


def fit(config: TrainConfig, *, log=print) -> dict | None:
    """Train (or, with ``evaluate_only``, evaluate) as configured. Returns the last log row
    (or the evaluation result); None where there is none (a rank other than 0, or a resumed
    run with no epoch left to train and no log)."""
    resume_ckpt = None
    if config.force and config.resume:
        config.validate()  # names the conflict before the checkpoint is read
    if config.resume:
        resume_ckpt = ckpt_io.read_checkpoint(config.resume)
        if any(k not in resume_ckpt.meta for k in ("train_config", "optimizer", "resume_state")):
            raise TrainingError(f"{config.resume} is not a 'last' training checkpoint (no optimizer state)")
        saved = TrainConfig.from_dict(dict(resume_ckpt.meta["train_config"], data=config.data))
        # the math comes from the checkpoint; where the data is and how to run may change
        overrides = {key: getattr(config, key) for key in ("data", "output_dir", "device", "workers", "cache_dataset",
                                                           "epochs", "evaluate_only", "force")}
        config = dataclasses.replace(saved, **overrides, resume=config.resume)
    config.validate()
    if config.amp:
        check_amp(resolve_device(config.device))  # before anything is written
    target = Path(config.output_dir)
    if resume_ckpt is not None:
        _check_resume(config, resume_ckpt, target)  # before the model is built or any data read
    rank, world, device = _dist_setup(config.device)
    torch.manual_seed(config.seed + rank)
    is_main = rank == 0
    # the layout is checked before any model is built (evaluating needs only the val split)
    classes = class_folders(split_dir(config.data, "val")) if config.evaluate_only else dataset_classes(config.data)
    if resume_ckpt is not None:
        model = ckpt_io.model_from_checkpoint(resume_ckpt)
        spec, carried = resume_ckpt.spec, resume_ckpt.meta.get("label_map")
    else:
        model, spec, carried = _build(config, len(classes))
    labels = _labels(config, classes, spec.num_classes, carried)
    teacher = _teacher(config, spec, labels).to(device).to(memory_format=torch.channels_last) \
        if config.distill_from else None
    # every input is read and checked before the output folder is touched
    staging = None if config.evaluate_only else _prepare_output(config, is_main=is_main, log=log)
    out = staging or target  # a --force run trains beside the run it replaces, then swaps
    if spec.ctnet:
        configure_export_training(model, noise_q=config.qstep if config.train_noise else 0.0,
                                  dct_dropout=config.dct_dropout, pixel_bit_depth=config.pixel_bit_depth,
                                  export_dither=config.export_dither)
    model.to(device).to(memory_format=torch.channels_last)  # faster on CUDA and on the CPU (oneDNN) alike
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    progress = None
    val = load_split(config.data, "val", labels=labels, size=config.image_size,
                     limit=config.limit_val, cache=config.cache_dataset, device=device)
    if config.evaluate_only:
        result = evaluate(model, val, device=device, workers=config.workers, rank=rank, world=world)
        return {**result, "checkpoint": config.resume or config.init_from, "arch": spec.arch}
    train = load_split(config.data, "train", labels=labels, size=config.image_size,
                       limit=config.limit_train, cache=config.cache_dataset, device=device, progress=progress)

    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _optimizer(model, config)
    per_rank_batch = max(1, config.batch_size // world)
    steps_per_epoch = max(1, len(train) // world // per_rank_batch)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(config.warmup_epochs * steps_per_epoch)

    start_epoch, tracker, history, last_step = 1, ParetoTracker(), [], -1
    if resume_ckpt is not None:
        try:
            optimizer_state = ckpt_io.optimizer_state(resume_ckpt)
            assert optimizer_state is not None  # its metadata has 'optimizer' (checked above)
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise TrainingError(f"{config.resume}: its optimizer state does not fit the model "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
        state = resume_ckpt.meta["resume_state"]
        start_epoch = state["epoch"] + 1
        last_step = state["scheduler_step"] - 1  # the scheduler steps once on construction
        tracker = ParetoTracker(state["pareto"])
        history = _read_log(out / LOG_NAME, state["epoch"])
        if "torch_rng" in resume_ckpt.extra:
            try:
                torch.set_rng_state(resume_ckpt.extra["torch_rng"])
            except (RuntimeError, TypeError) as exc:
                raise TrainingError(f"{config.resume}: its stored random-number state is not a CPU generator state "
                                    f"({str(exc).splitlines()[0][:120]}); the checkpoint is damaged") from None
        if is_main:
            log(f"resumed from {config.resume} at epoch {state['epoch']}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup_steps),
                                                  last_epoch=last_step)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CHECKPOINT_DIR).mkdir(exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))

    base_meta = {"model": spec.to_dict(), "label_map": labels, "image_size": config.image_size,
                 "pixel_bit_depth": config.pixel_bit_depth, "train_config": config.to_dict()}
    gen = torch.Generator(device=device)
    row = history[-1] if history else None
    for epoch in range(start_epoch, config.epochs + 1):
        t0 = time.time()
        model.train()
        gen.manual_seed(config.seed * 1_000_003 + epoch * 101 + rank)
        loss_sum = torch.zeros((), device=device)
        rate_sum = torch.zeros((), device=device)
        bar = tqdm(batches(train, per_rank_batch, shuffle=True, seed=config.seed, epoch=epoch, rank=rank,
                           world=world, workers=config.workers, device=device,
                           drop_last=len(train) // world >= per_rank_batch),
                   total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", disable=None if is_main else True,
                   leave=False, mininterval=1.0)
        shown = _LossDisplay(device)
        for step, (images, targets) in enumerate(bar):
            x = augment(normalize(images), gen).contiguous(memory_format=torch.channels_last)
            lam = rate_weight_at(epoch - 1 + step / steps_per_epoch, config.lambda_rate, config.rate_warmup_epochs)
            loss_total, rate = step_loss(model, x, targets, config, lam, regularise=spec.ctnet and config.lambda_rate > 0,
                                         forward=ddp_model, teacher=teacher)
            if rate is not None:
                rate_sum += rate.detach()
            optimizer.zero_grad(set_to_none=True)
            loss_total.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss_total.detach()
            if is_main and step % 20 == 0:
                shown.update(loss_total, bar)
        bar.close()
        mean_loss = float(loss_sum) / steps_per_epoch
        if not math.isfinite(mean_loss):
            last = out / CHECKPOINT_DIR / "last.safetensors"
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            raise TrainingError(f"loss became {mean_loss} in epoch {epoch}; stopped ({kept}); lower --lr or "
                                f"--lambda-rate")
        # bf16 like the step (2.5x faster on the CPU): it picks the Pareto checkpoints; decoded top-1 is measured in fp32
        acc = evaluate(model, val, device=device, workers=config.workers, rank=rank, world=world, amp=config.amp)
        if is_main:
            row = _metrics_row(model, config, epoch, acc, mean_loss, float(rate_sum) / steps_per_epoch,
                               cast(float, scheduler.get_last_lr()[0]), time.time() - t0)  # lr: a float
            history.append(row)
            atomic_write_text(out / LOG_NAME, "".join(json.dumps(r) + "\n" for r in history))
            roles = tracker.update(row)
            folder = out / CHECKPOINT_DIR
            meta = {**base_meta, "epoch": epoch, "metrics": row}
            if roles:
                tmp = folder / ".epoch.tmp.safetensors"
                ckpt_io.save_checkpoint(tmp, model, meta)
                _link_roles(tmp, roles, folder)
                tmp.unlink()
            if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
                resume_state = {"epoch": epoch, "scheduler_step": scheduler.last_epoch, "pareto": tracker.roles}
                ckpt_io.save_checkpoint(folder / "last.safetensors", model, {**meta, "resume_state": resume_state},
                                        optimizer=optimizer, extra={"torch_rng": torch.get_rng_state()})
            log(f"epoch {epoch}: top-1 {row['acc1']:.2f} top-5 {row['acc5']:.2f} loss {mean_loss:.4f} "
                f"est {row['est_bytes_export'] / 1e6:.3f} MB ({row['ratio']:.1f}x) nonzero {row['nonzero']} "
                f"{row['seconds']:.1f}s on {device_label(device)}")
        _barrier(world)
    if is_main and out != target:
        _finish_replace(out, target, log)
    if world > 1:
        dist.destroy_process_group()
    return row
