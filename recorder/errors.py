"""The root of the project's exceptions.

Every exception the recorder raises on purpose derives from :class:`RecorderError` (most also
from the built-in class that describes them, e.g. ``ValueError`` for bad input), so a caller
can catch everything the recorder reports with one ``except``:

    >>> import recorder
    >>> from recorder.roots import ArchiveRootError
    >>> issubclass(ArchiveRootError, recorder.RecorderError)
    True
    >>> try:
    ...     recorder.Archive("/nonexistent/archive")
    ... except recorder.RecorderError as exc:
    ...     print(type(exc).__name__)
    ArchiveRootError
"""

from __future__ import annotations

__all__ = ["RecorderError"]


class RecorderError(Exception):
    """Base class of every exception the recorder raises on purpose (typed, with a message of
    our own; never a library's message text to be parsed)."""
