"""What a call is to the service, whatever face it came through: which RPC, its deadline
and liveness, and how it fails (in gRPC's vocabulary, mapped to codes by each face)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum


class Rpc(StrEnum):
    """The service's methods; every face's routes map onto one of these."""

    SEARCH = "Search"
    BATCH_SEARCH = "BatchSearch"
    EMBED = "Embed"
    CLASSIFY = "Classify"
    GET_INDEX_INFO = "GetIndexInfo"
    RELOAD_INDEX = "ReloadIndex"


class Status(Enum):
    """Why a request failed, in gRPC's vocabulary; each face maps it to its own codes."""

    INVALID_ARGUMENT = "invalid_argument"
    TOO_LARGE = "too_large"  # gRPC: RESOURCE_EXHAUSTED; HTTP: 413, which clients do not retry
    NOT_FOUND = "not_found"
    FAILED_PRECONDITION = "failed_precondition"  # the request needs what the index lacks
    RESOURCE_EXHAUSTED = "resource_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    UNAVAILABLE = "unavailable"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    INTERNAL = "internal"  # a bug: the log has the details, the caller a generic message


class RequestError(Exception):
    """A request the server will not answer, with a message that says what to fix."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(Status.INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class CallContext:
    """What the transport tells the service about the caller."""

    deadline: float | None = None  # time.monotonic() by which the caller stops waiting
    is_active: Callable[[], bool] | None = None  # None: always active
