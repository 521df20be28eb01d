"""The service's refusals: a user mistake with the HTTP status it answers with."""

from __future__ import annotations

from orbit_lite.errors import OrbitLiteError


class ServiceError(OrbitLiteError):
    """A request the service refuses: ``status`` is the 4xx answer, the message its one-line ``error``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def not_found(what: str) -> ServiceError:
    return ServiceError(404, f"no {what} here")


# One answer for a wrong token and for a collection that does not exist: a caller learns nothing about which.
NO_ACCESS = "no such collection, or the token does not open it: check the collection id and its token"
