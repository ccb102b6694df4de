"""Every error ctnet raises on purpose, under one root; the floor of the library (it imports
nothing from ctnet).

An exception derived from :class:`CtnetError` means "the input, the flags or the environment
are wrong, and the message says how": the CLI prints it as one line and exits with status 2.
Anything else reaching the CLI is a bug (exit status 1).

Each subclass also derives from the builtin its callers caught before the root existed
(``ValueError`` for bad files and settings, ``RuntimeError`` for a training that cannot go
on), so ``except ValueError`` keeps working. The modules that raise them re-export them
(``ctnet.checkpoint.CheckpointError`` is this module's class).
"""
from __future__ import annotations


class CtnetError(Exception):
    """An error the user can act on; the message is one line naming the problem."""


class ConfigError(CtnetError, ValueError):
    """A flag, setting or model description out of range or of the wrong type."""


class CheckpointError(CtnetError, ValueError):
    """A file that cannot be used (or written) as a checkpoint; the message names the problem."""


class DatasetError(CtnetError, ValueError):
    """The dataset folder is missing or laid out wrongly, or an image in it cannot be used;
    the message names the problem (and the file)."""


class DeviceError(CtnetError, RuntimeError):
    """The device asked for is not there (a RuntimeError, as callers caught before)."""


class TrainingError(CtnetError, RuntimeError):
    """Training cannot go on; the message says why (nothing good was overwritten)."""


class BundleError(CtnetError, ValueError):
    """A bundle that cannot be written or read as described; the message names the problem."""


class VideoError(CtnetError, ValueError):
    """A stream that cannot be made or read as described; the message names the problem."""


class PlaneError(CtnetError, ValueError):
    """Plane data that cannot be coded or decoded as described; the message names it."""


class PlainExportError(CtnetError, ValueError):
    """The model cannot be written as a plain torchvision / ONNX model; the message says why."""


class RunError(CtnetError, ValueError):
    """A folder or upload that cannot be browsed as described; the message names the problem."""


class RDError(CtnetError, ValueError):
    """A sweep that cannot run as asked; the message names the problem."""


class UnverifiedWarning(UserWarning):
    """An input that was read but cannot be fully checked (a format-v1 bundle, a CTNet
    checkpoint without a digest): the message says what cannot be vouched for. The CLI prints
    it as one line (``ctnet <command>: warning: …``) before the command's output."""


class AllocationError(CtnetError, ValueError):
    """A sensitivity profile or per-layer grid request that cannot be used; the message says why."""


__all__ = ["AllocationError", "BundleError", "CheckpointError", "ConfigError", "CtnetError", "DatasetError",
           "DeviceError", "PlainExportError", "PlaneError", "RDError", "RunError", "TrainingError", "UnverifiedWarning",
           "VideoError"]
