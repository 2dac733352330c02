"""Admission of one call: its API key, the scope its RPC needs, and the key's limits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from clipsearch.server.admission.keys import KeyRing, Scope, bearer_secret
from clipsearch.server.admission.quota import Limit, QuotaExceededError, Quotas
from clipsearch.server.core.calls import RequestError, Rpc, Status

# The scope each RPC needs. Every RPC is listed: a new one without a scope is a bug a test
# catches, not a silent default.
RPC_SCOPES: Mapping[Rpc, Scope] = {
    Rpc.SEARCH: Scope.SEARCH,
    Rpc.BATCH_SEARCH: Scope.SEARCH,
    Rpc.EMBED: Scope.SEARCH,
    Rpc.CLASSIFY: Scope.SEARCH,
    Rpc.GET_INDEX_INFO: Scope.SEARCH,
    Rpc.RELOAD_INDEX: Scope.ADMIN,
}
ANONYMOUS = "anonymous"  # the one caller of a server without keys (loopback only by default)


class Access:
    def __init__(self, keys: KeyRing, default_limit: Limit, quotas: Quotas | None = None) -> None:
        self.keys = keys
        self.default_limit = default_limit
        self.quotas = quotas or Quotas()

    @contextmanager
    def admit(self, rpc: Rpc, authorization: str | None) -> Iterator[str]:
        """Runs the block as the calling key (its name is yielded), or raises RequestError.
        `authorization` is the caller's `authorization` header or metadata value."""
        name, limit = self._identify(rpc, authorization)
        try:
            with self.quotas.hold(name, limit):
                yield name
        except QuotaExceededError as err:  # raised on entry only: the block never raises it
            raise RequestError(Status.RESOURCE_EXHAUSTED, str(err)) from err

    def _identify(self, rpc: Rpc, authorization: str | None) -> tuple[str, Limit]:
        if not len(self.keys):
            return ANONYMOUS, self.default_limit
        secret = bearer_secret(authorization)
        if secret is None:
            raise RequestError(
                Status.UNAUTHENTICATED,
                "this server needs an API key: send metadata 'authorization: Bearer <key>'",
            )
        key = self.keys.identify(secret)
        if key is None:
            raise RequestError(Status.UNAUTHENTICATED, "the API key is not valid")
        needed = RPC_SCOPES[rpc]
        if needed not in key.scopes:
            raise RequestError(
                Status.PERMISSION_DENIED,
                f"key {key.name!r} lacks the {needed.value!r} scope that {rpc.value} needs",
            )
        limit = Limit(
            key.rate_per_s if key.rate_per_s is not None else self.default_limit.rate_per_s,
            key.max_concurrent
            if key.max_concurrent is not None
            else self.default_limit.max_concurrent,
        )
        return key.name, limit
