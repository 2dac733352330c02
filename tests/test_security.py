"""API keys, scopes, per-key limits, loopback-only without keys, TLS and mutual TLS."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch.client import ClientTls, RpcError, SearchClient, TextQuery
from clipsearch.server.admission.keys import (
    KeyFileError,
    KeyRing,
    Scope,
    bearer_secret,
    load_keys,
    parse_keys,
)
from clipsearch.server.admission.quota import Limit, QuotaExceededError, Quotas
from clipsearch.server.app import RunningServer, ServerStartError
from clipsearch.server.config import SecurityConfig, TlsConfig
from tests.certs import make_certs
from tests.served import ServedCollection

SEARCH_SECRET = "search-secret-0123456789abcdef"
ADMIN_SECRET = "admin-secret-0123456789abcdef"
SLOW_SECRET = "slow-secret-0123456789abcdef00"
KEYS = f"""
# name     secret            scopes
searcher   {SEARCH_SECRET}   search
operator   {ADMIN_SECRET}    search,admin
throttled  {SLOW_SECRET}     search      rate=1
"""


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("lonely", "expected 'NAME SECRET SCOPES"),
        ("short abc search", "too short"),
        (f"x {SEARCH_SECRET} search,root", "unknown scope"),
        (f"x {SEARCH_SECRET} search speed=3", "unknown limit 'speed'"),
        (f"x {SEARCH_SECRET} search rate=fast", "must be numbers"),
        (f"x {SEARCH_SECRET} search concurrent=0", "must be positive"),
    ],
)
def test_bad_key_lines_are_refused_without_echoing_the_secret(line: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=message) as caught:
        parse_keys(line, "keys.txt")
    assert SEARCH_SECRET not in str(caught.value)


def test_keys_are_found_by_secret_and_names_and_secrets_are_unique() -> None:
    ring = KeyRing(parse_keys(KEYS, "keys"))
    found = ring.identify(ADMIN_SECRET)
    assert found is not None and found.name == "operator"
    assert found.scopes == {Scope.SEARCH, Scope.ADMIN}
    assert ring.identify("nope") is None and ring.identify(ADMIN_SECRET[:-1]) is None
    with pytest.raises(KeyFileError, match="share a secret"):
        KeyRing(parse_keys(f"a {SEARCH_SECRET} search; b {SEARCH_SECRET} search", "env"))
    with pytest.raises(KeyFileError, match="share a name"):
        KeyRing(parse_keys(f"a {SEARCH_SECRET} search; a {ADMIN_SECRET} search", "env"))


def test_keys_come_from_a_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(f"filekey {SEARCH_SECRET} search\n")
    ring = load_keys(tmp_path / "keys", {"CLIPSEARCH_API_KEYS": f"envkey {ADMIN_SECRET} admin"})
    assert sorted(k.name for k in ring.keys) == ["envkey", "filekey"]
    with pytest.raises(KeyFileError, match="cannot read"):
        load_keys(tmp_path / "missing", {})


@pytest.mark.parametrize(
    ("authorization", "secret"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_secret(authorization: str | None, secret: str | None) -> None:
    assert bearer_secret(authorization) == secret


def test_rate_and_concurrency_limits() -> None:
    now = [0.0]
    quotas = Quotas(clock=lambda: now[0])
    limit = Limit(rate_per_s=2, max_concurrent=None)
    for _ in range(2):  # the burst
        with quotas.hold("k", limit):
            pass
    with pytest.raises(QuotaExceededError, match="rate limit of 2"), quotas.hold("k", limit):
        pass
    now[0] += 0.5  # one token back
    with quotas.hold("k", limit):
        pass
    one_at_a_time = Limit(max_concurrent=1)
    with quotas.hold("j", one_at_a_time):
        with (
            pytest.raises(QuotaExceededError, match="1 requests in flight"),
            quotas.hold("j", one_at_a_time),
        ):
            pass
        with quotas.hold("other", one_at_a_time):  # limits are per key
            pass
    with quotas.hold("j", one_at_a_time):  # released after the block
        pass


@pytest.fixture
def secured(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> RunningServer:
    keys = KeyRing(parse_keys(KEYS, "test keys"))
    return start_server(served_collection.index, security=SecurityConfig(keys=keys))


def test_calls_need_a_valid_key_with_the_right_scope(
    secured: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    target = f"127.0.0.1:{secured.port}"
    caplog.set_level(logging.DEBUG)
    cases = [(None, grpc.StatusCode.UNAUTHENTICATED), ("x" * 30, grpc.StatusCode.UNAUTHENTICATED)]
    for key, code in cases:
        with SearchClient(target, api_key=key) as client, pytest.raises(RpcError) as caught:
            client.search(TextQuery("cat"))
        assert caught.value.code == code
    with SearchClient(target, api_key=SEARCH_SECRET) as client:
        assert client.search(TextQuery("cat")).hits
        with pytest.raises(RpcError) as denied:
            client.reload()
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "'admin' scope" in denied.value.details
    with SearchClient(target, api_key=ADMIN_SECRET) as client:
        assert not client.reload().changed
    with grpc.insecure_channel(target) as channel:  # probes need no key
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    logged = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert SEARCH_SECRET not in logged and ADMIN_SECRET not in logged and "x" * 30 not in logged


def test_a_key_over_its_rate_gets_resource_exhausted(secured: RunningServer) -> None:
    with SearchClient(f"127.0.0.1:{secured.port}", api_key=SLOW_SECRET) as client:
        client.search(TextQuery("first"))
        with pytest.raises(RpcError) as caught:
            client.search(TextQuery("too soon"))
        assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit" in caught.value.details


def test_without_keys_the_server_stays_on_loopback(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    with pytest.raises(ServerStartError, match="without API keys"):
        start_server(served_collection.index, host="0.0.0.0")
    open_server = start_server(
        served_collection.index,
        host="0.0.0.0",
        security=SecurityConfig(allow_unauthenticated=True),
    )
    with SearchClient(f"127.0.0.1:{open_server.port}") as client:
        assert client.search(TextQuery("cat")).hits


def test_tls_and_mutual_tls(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    certs = make_certs(tmp_path)
    tls = start_server(
        served_collection.index,
        security=SecurityConfig(tls=TlsConfig(certs.server_cert, certs.server_key)),
    )
    target = f"localhost:{tls.port}"
    with SearchClient(target, tls=ClientTls(certs.ca)) as client:
        assert client.search(TextQuery("cat")).hits
    with SearchClient(target, timeout_s=3) as plaintext, pytest.raises(RpcError):
        plaintext.search(TextQuery("cat"))

    mutual = start_server(
        served_collection.index,
        security=SecurityConfig(
            tls=TlsConfig(certs.server_cert, certs.server_key, client_ca=certs.ca)
        ),
    )
    target = f"localhost:{mutual.port}"
    anonymous = SearchClient(target, timeout_s=3, tls=ClientTls(certs.ca))
    with anonymous, pytest.raises(RpcError) as refused:
        anonymous.search(TextQuery("cat"))
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    identified = ClientTls(certs.ca, certs.client_cert, certs.client_key)
    with SearchClient(target, tls=identified) as client:
        assert client.search(TextQuery("cat")).hits
