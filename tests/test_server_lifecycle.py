"""The server's life: hot reload under load, refusing bad versions, draining on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from clipsearch.client import ImageQuery, RpcError, SearchClient, TextQuery
from clipsearch.index.manifest import current_version
from clipsearch.indexer import BuildConfig, run_build
from clipsearch.server.app import RunningServer
from clipsearch.types import HealthStatus
from tests.served import ServedCollection


def _hammer(
    target: str, stop: threading.Event, images: list[bytes], seen: Counter[str], errors: list[str]
) -> None:
    with SearchClient(target, timeout_s=30) as client:
        n = 0
        while not stop.is_set():
            query = TextQuery(f"query {n}") if n % 2 else ImageQuery(images[n % len(images)])
            try:
                seen[client.search(query, top_k=5).index_version] += 1
            except RpcError as err:
                errors.append(str(err))
            n += 1


@pytest.mark.slow
def test_hot_reload_under_concurrent_load_fails_no_request(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    index = served_collection.copy_index(tmp_path / "index")
    server = start_server(index, reload_interval_s=0.05)
    images = [p.read_bytes() for p in sorted(served_collection.images.rglob("*.jpg"))[:8]]
    stop, seen, errors = threading.Event(), Counter[str](), list[str]()
    target = f"127.0.0.1:{server.port}"
    clients = [
        threading.Thread(target=_hammer, args=(target, stop, images, seen, errors))
        for _ in range(4)
    ]
    for thread in clients:
        thread.start()
    published = []
    try:
        for _ in range(2):  # two swaps while the clients keep searching
            time.sleep(0.5)
            result = run_build(BuildConfig(served_collection.shards, index, eval_queries=20))
            published.append(result.manifest.version)
            deadline = time.monotonic() + 10
            while seen[published[-1]] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert errors == []
    assert all(seen[version] > 0 for version in published), seen
    assert len(seen) == 3 and sum(seen.values()) > 50


def _truncate_index_file(version: Path) -> None:
    data = (version / "index.faiss").read_bytes()
    (version / "index.faiss").write_bytes(data[: len(data) // 2])


def _flip_a_bit_of_the_vectors(version: Path) -> None:
    data = bytearray((version / "vectors.npy").read_bytes())
    data[-100] ^= 1
    (version / "vectors.npy").write_bytes(bytes(data))


def _other_model(version: Path) -> None:
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["model"] = "ViT-L-14"
    (version / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate_index_file, "index.faiss does not match its checksum"),
        (_flip_a_bit_of_the_vectors, "vectors.npy does not match its checksum"),
        (_other_model, "ViT-L-14"),
    ],
    ids=["truncated index file", "bit-flipped vectors", "another model"],
)
def test_a_bad_new_version_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    damage: Callable[[Path], None],
    reason: str,
) -> None:
    index = served_collection.copy_index(tmp_path / "index")
    server = start_server(index, reload_interval_s=60)
    served = current_version(index)
    assert served is not None
    bad = index / "versions" / "v999999"
    subprocess.run(["cp", "-r", str(served), str(bad)], check=True)
    damage(bad)
    (index / "CURRENT").write_text("v999999\n")
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        outcome = client.reload()
        assert not outcome.changed and outcome.refused_version == "v999999"
        assert reason in outcome.refused_reason
        info = client.index_info()
        assert info.index_version == served.name
        assert (info.refused_version, info.refused_reason) == ("v999999", outcome.refused_reason)
        assert client.search(TextQuery("still serving")).index_version == served.name
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read()
    assert b'clipsearch_index_refused_total{index="index"} 1.0' in metrics


def _metric(server: RunningServer, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read()
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_reload_error_is_survived_counted_and_health_stays_truthful(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    index = served_collection.copy_index(tmp_path / "index")
    server = start_server(index, reload_interval_s=0.05)
    served = current_version(index)
    assert served is not None
    pointer = index / "CURRENT"
    pointer.unlink()
    pointer.mkdir()  # reading CURRENT now fails with an OSError, at every check
    _wait_for(lambda: _metric(server, 'clipsearch_index_reload_errors_total{index="index"}') >= 3)
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        assert client.health() is HealthStatus.SERVING  # the old version still answers
        assert client.search(TextQuery("still here")).index_version == served.name
        with pytest.raises(RpcError) as refused:
            client.reload()
        assert refused.value.code is grpc.StatusCode.UNAVAILABLE
        assert "cannot read" in refused.value.details and "CURRENT" in refused.value.details
        # The watcher is alive: a new version published afterwards is picked up.
        pointer.rmdir()
        result = run_build(BuildConfig(served_collection.shards, index, eval_queries=20))
        _wait_for(lambda: client.index_info().index_version == result.manifest.version)
        assert client.health() is HealthStatus.SERVING


def test_a_start_with_a_damaged_current_serves_the_newest_good_version(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    index = served_collection.copy_index(tmp_path / "index")
    good = current_version(index)
    assert good is not None
    bad = index / "versions" / "v000002"
    subprocess.run(["cp", "-r", str(good), str(bad)], check=True)
    _flip_a_bit_of_the_vectors(bad)
    (index / "CURRENT").write_text("v000002\n")
    server = start_server(index, reload_interval_s=0.05)
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        assert client.health() is HealthStatus.SERVING
        assert client.search(TextQuery("a cat")).index_version == good.name
        info = client.index_info()
        assert (info.index_version, info.refused_version) == (good.name, "v000002")
        assert "does not match its checksum" in info.refused_reason
        assert f"serving {good.name}, the newest good version, instead" in info.refused_reason
        assert _metric(server, 'clipsearch_index_fallback{index="index"}') == 1.0
        # A good version published later ends the fallback.
        result = run_build(BuildConfig(served_collection.shards, index, eval_queries=20))
        _wait_for(lambda: client.index_info().index_version == result.manifest.version)
        assert client.index_info().refused_version == ""
    assert _metric(server, 'clipsearch_index_fallback{index="index"}') == 0.0


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_and_exits_zero(
    tmp_path: Path, served_collection: ServedCollection
) -> None:
    index = served_collection.copy_index(tmp_path / "index")
    process = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.cli.main", "serve", "--index", str(index), "--port", "0",
         "--metrics-port", "-1", "--grace", "30", "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving on" in line, process.stderr.read() if process.stderr else ""
        target = line.rsplit(" ", 1)[-1].strip()
        images = [p.read_bytes() for p in sorted(served_collection.images.rglob("*.jpg"))] * 10
        outcomes: list[tuple[tuple[int, ...], float]] = []
        failures: list[RpcError] = []

        def slow_call() -> None:  # 250 images: about a second of work each
            with SearchClient(target, timeout_s=60) as client:
                try:
                    outcomes.append((client.embed(images=images).images.shape, time.monotonic()))
                except RpcError as err:
                    failures.append(err)

        calls = [threading.Thread(target=slow_call) for _ in range(3)]
        for call in calls:
            call.start()
        time.sleep(0.5)  # the calls are being served
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for call in calls:
            call.join()
        assert failures == []
        assert [shape for shape, _ in outcomes] == [(len(images), 64)] * 3
        assert max(done for _, done in outcomes) > sent, "all done before SIGTERM: tests nothing"
        assert process.wait(timeout=60) == 0
        with SearchClient(target, timeout_s=2) as late, pytest.raises(RpcError) as refused:
            late.index_info()
        assert refused.value.code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        events = [
            json.loads(x).get("event")
            for x in (process.stderr.read() or "").splitlines()
            if x.startswith("{")
        ]  # type: ignore[union-attr]
        assert "draining" in events and "stopped" in events
    finally:
        process.kill()
        process.wait()
