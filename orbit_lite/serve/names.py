"""Object names as people write them (unicode and spaces), but never a path: names never become file names in the
store (objects live under their database ids), and these checks refuse what could mislead anyone who reads them."""

from __future__ import annotations

import unicodedata

from orbit_lite.serve.errors import ServiceError

MAX_NAME = 100


def check_object_name(name: str) -> str:
    """``name`` without surrounding spaces, or a 400 naming what is wrong with it."""
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise ServiceError(400, "an object needs a name: give one, e.g. 'keys'")
    if len(name) > MAX_NAME:
        raise ServiceError(400, f"object name of {len(name)} characters; the most is {MAX_NAME}")
    if "/" in name or "\\" in name:
        raise ServiceError(400, f"object name {name!r} holds a slash; choose a name without '/' or '\\'")
    if name in (".", "..") or ".." in name:
        raise ServiceError(400, f"object name {name!r} holds '..'; choose another name")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise ServiceError(400, "object name holds a control character (or NUL); use letters, digits and spaces")
    return name
