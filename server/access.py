"""Admission of one call: its API key, the scope its RPC needs, and the key's limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from server.auth import KeyRing, Scope, bearer_secret
from server.queries import RequestError, Status
from server.quota import Limit, QuotaExceededError, Quotas

RPC_SCOPES = {"ReloadIndex": Scope.ADMIN}  # every other RPC needs Scope.SEARCH
ANONYMOUS = "anonymous"  # the one caller of a server without keys (loopback only by default)


class Access:
    def __init__(self, keys: KeyRing, default_limit: Limit, quotas: Quotas | None = None) -> None:
        self.keys = keys
        self.default_limit = default_limit
        self.quotas = quotas or Quotas()

    @contextmanager
    def admit(self, rpc: str, metadata: Sequence[tuple[str, str | bytes]]) -> Iterator[str]:
        """Runs the block as the calling key (its name is yielded), or raises RequestError."""
        name, limit = self._identify(rpc, metadata)
        try:
            with self.quotas.hold(name, limit):
                yield name
        except QuotaExceededError as err:  # raised on entry only: the block never raises it
            raise RequestError(Status.RESOURCE_EXHAUSTED, str(err)) from err

    def _identify(self, rpc: str, metadata: Sequence[tuple[str, str | bytes]]) -> tuple[str, Limit]:
        if not len(self.keys):
            return ANONYMOUS, self.default_limit
        secret = bearer_secret(metadata)
        if secret is None:
            raise RequestError(
                Status.UNAUTHENTICATED,
                "this server needs an API key: send metadata 'authorization: Bearer <key>'",
            )
        key = self.keys.identify(secret)
        if key is None:
            raise RequestError(Status.UNAUTHENTICATED, "the API key is not valid")
        needed = RPC_SCOPES.get(rpc, Scope.SEARCH)
        if needed not in key.scopes:
            raise RequestError(
                Status.PERMISSION_DENIED,
                f"key {key.name!r} lacks the {needed.value!r} scope that {rpc} needs",
            )
        limit = Limit(
            key.rate_per_s if key.rate_per_s is not None else self.default_limit.rate_per_s,
            key.max_concurrent
            if key.max_concurrent is not None
            else self.default_limit.max_concurrent,
        )
        return key.name, limit
