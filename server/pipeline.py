"""The one request pipeline. Every call, whichever face it came through, is admitted here
(API key, scope, per-key quota), checked against its deadline, run by the service, and
counted and logged the same way. The faces only translate their wire format into typed
queries and results, and map `Status` to their own codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from clipsearch.server.admission.access import Access
from clipsearch.server.core.calls import CallContext, RequestError, Rpc, Status
from clipsearch.server.core.served import Served
from clipsearch.server.core.slots import CallSlots
from clipsearch.server.metrics import Metrics

log = logging.getLogger(__name__)
R = TypeVar("R")
INTERNAL_MESSAGE = "internal server error; the server log has the details"


class Face(StrEnum):
    GRPC = "grpc"
    HTTP = "http"


@dataclass(frozen=True)
class Caller:
    """What a face knows about a call: its credentials, how long it waits, whether it is
    still there."""

    authorization: str | None = None  # the `authorization` header or metadata value
    deadline: float | None = None  # time.monotonic() by which the caller stops waiting
    is_active: Callable[[], bool] | None = None  # None: the caller cannot go away


class Pipeline:
    """Registered before the models are loaded; answers UNAVAILABLE until `served` is set.
    Admitted calls share `slots`: beyond its limit they wait for a turn, within their
    deadline, whichever face they came through."""

    def __init__(self, access: Access, metrics: Metrics, slots: CallSlots) -> None:
        self.access = access
        self.metrics = metrics
        self.slots = slots
        self.served: Served | None = None

    def run(
        self,
        rpc: Rpc,
        face: Face,
        caller: Caller,
        work: Callable[[Served, CallContext], R],
    ) -> R:
        """`work(served, call)` for an admitted caller. Raises RequestError, and only that:
        an unexpected error becomes INTERNAL with a generic message (the log has the rest)."""
        started = time.monotonic()
        status = "OK"
        try:
            with self.access.admit(rpc, caller.authorization):
                served = self.served
                if served is None:
                    raise RequestError(Status.UNAVAILABLE, "the server is still loading its model")
                if caller.deadline is not None and caller.deadline <= started:
                    raise RequestError(Status.DEADLINE_EXCEEDED, "the deadline passed on arrival")
                with self.slots.hold(caller.deadline, caller.is_active):
                    return work(served, CallContext(caller.deadline, caller.is_active))
        except RequestError as err:
            status = err.status.name
            log.info(
                "%s -> %s: %s", rpc.value, status, err.message,
                extra={"event": "request_failed", "rpc": rpc.value, "face": face.value,
                       "code": status},
            )  # fmt: skip
            raise
        except Exception as err:  # a bug, not the caller's fault: say so without leaking details
            status = Status.INTERNAL.name
            log.exception(
                "%s failed", rpc.value,
                extra={"event": "request_crashed", "rpc": rpc.value, "face": face.value},
            )  # fmt: skip
            raise RequestError(Status.INTERNAL, INTERNAL_MESSAGE) from err
        finally:
            self.metrics.requests.labels(rpc.value, status, face.value).inc()
            self.metrics.latency.labels(rpc.value, face.value).observe(time.monotonic() - started)
