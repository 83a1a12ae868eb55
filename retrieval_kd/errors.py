"""Errors a user can act on.

Every failure the user can fix (bad input file, unknown name, missing model) raises
:class:`RkdError` with a one-line message naming the bad value, where it came from and the valid
choices. The CLI prints that line and exits with status 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class RkdError(Exception):
    """A user-facing error: the message is the whole story."""


class DataError(RkdError):
    """Bad input data: the message names the file and line."""


class ConfigError(RkdError):
    """Bad configuration: the message names the file and field."""
