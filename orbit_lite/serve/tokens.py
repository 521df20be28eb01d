"""Collection ids and secret tokens: a token is shown once and stored only as its SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

_DUMMY = hashlib.sha256(b"no collection").hexdigest()


def new_id() -> str:
    """A collection's, video's or job's id: random, so ids say nothing about one another."""
    return secrets.token_hex(8)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # A token carries 256 random bits, so a plain hash cannot be reversed by guessing: no slow KDF is needed.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str | None, stored: str | None) -> bool:
    """Timing-safe: the comparison takes as long whether the collection exists (``stored``) or not."""
    given = token_hash(token or "")
    return hmac.compare_digest(given, stored or _DUMMY) and stored is not None and token is not None


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None
