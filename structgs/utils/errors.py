"""structgs's errors about what a user gave it (files, options, environment).

The CLI prints a ``StructGSError`` as one line naming the file or option and exits with 2;
any other exception is a bug and keeps its traceback. Each class is also the matching builtin
(``InputError`` is a ``ValueError``, ...), so library callers can catch either.
"""

from __future__ import annotations


class StructGSError(Exception):
    """Base class: bad input, a missing file or dependency, nothing found for a prompt."""


class InputError(StructGSError, ValueError):
    """An option, a file's content or a configuration value is invalid."""


class MissingFileError(StructGSError, FileNotFoundError):
    """A file or directory the user named (or a run needs) does not exist."""


class MissingDependencyError(StructGSError, ImportError):
    """An optional dependency needed for what was asked is not installed."""


class NothingFoundError(StructGSError, LookupError):
    """A prompt (text, click) found nothing in the images."""
