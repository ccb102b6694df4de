"""The allowed values and bounds shared by training, the codec, the strict readers and the
commands: one table, the floor of the library (it imports nothing from ctnet).

A value written here is written nowhere else: the export grid's bit depths, the dither bound
and the largest integer a stored JSON document may hold feed the layers, the codec's
settings, the checkpoint / manifest / rate–distortion readers and the CLI's ``choices``.
"""
from __future__ import annotations

BIT_DEPTHS = tuple(range(4, 13))  # bits of the export grid: what a bundle stores and export-aware training simulates
PIXEL_BIT_DEPTHS = (0, *BIT_DEPTHS)  # training's --pixel-bit-depth: 0 = no export simulation
MAX_DITHER = 4.0  # subtractive dither amplitude limit, in pixel steps
MAX_INT = 1 << 53  # every integer a stored JSON document holds (byte counts, epochs, steps) is exact as a double
IMAGE_SIZE_RANGE = (16, 1024)  # input side in pixels: checkpoints' and bundle manifests' image_size and TrainConfig's
MAX_NUM_CLASSES = 100_000  # classes of a head and of a dataset
MAX_CLASS_NAME_CHARS = 255  # a class is a folder name: what a file system allows
MAX_WORKERS = 64  # data-loader worker processes (--workers): each is a fork of the whole process
MAX_BATCH_SIZE = 1 << 16


__all__ = ["BIT_DEPTHS", "IMAGE_SIZE_RANGE", "MAX_BATCH_SIZE", "MAX_CLASS_NAME_CHARS", "MAX_DITHER", "MAX_INT",
           "MAX_NUM_CLASSES", "MAX_WORKERS", "PIXEL_BIT_DEPTHS"]
