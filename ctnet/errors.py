"""The root of every error ctnet raises on purpose.

An exception derived from :class:`CtnetError` means "the input, the flags or the environment
are wrong, and the message says how": the CLI prints it as one line and exits with status 2.
Anything else reaching the CLI is a bug (exit status 1).

Each subclass also derives from the builtin its callers caught before the root existed
(``ValueError`` for bad files and settings, ``RuntimeError`` for a training that cannot go
on), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class CtnetError(Exception):
    """An error the user can act on; the message is one line naming the problem."""


class ConfigError(CtnetError, ValueError):
    """A flag, setting or model description out of range or of the wrong type."""


__all__ = ["ConfigError", "CtnetError"]
