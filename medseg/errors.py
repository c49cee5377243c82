"""Errors that medseg reports to users as one line.

Every problem with a user's input (an unreadable file, a geometry mismatch, a bad config value) is raised
as a :class:`MedsegError` whose message names the file or argument and the problem. The CLI prints the
message on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["ConfigError", "DataError", "MedsegError"]


class MedsegError(Exception):
    """Base class for problems with the user's input, reported as one line."""

    def __init__(self, message: str, *, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DataError(MedsegError, ValueError):
    """An input file or data set is unreadable, inconsistent or implausible."""


class ConfigError(MedsegError, ValueError):
    """A pipeline file, CLI flag or argument has an unknown key or an invalid value."""
