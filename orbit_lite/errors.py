"""The one exception type for user mistakes.

Library code raises :class:`OrbitLiteError` with a message that names the file or value at fault and the fix; the CLI
turns it into a one-line error and a non-zero exit status, never a traceback.
"""

from __future__ import annotations


class OrbitLiteError(Exception):
    """A user-facing problem: bad path, bad value, unreadable data."""


class CorruptMediaError(OrbitLiteError):
    """A frame or video file that exists but cannot be decoded."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"cannot decode {path}: {reason}")
        self.path = path
        self.reason = reason
