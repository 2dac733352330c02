"""`clipsearch health`: ask a server's grpc.health.v1 whether it is SERVING (exit 0) or not.

For container health checks and scripts; Kubernetes can use its native gRPC probes.
"""

from __future__ import annotations

import argparse

from clipsearch.cli.args import add_connection_arguments, client_tls
from clipsearch.client import SearchClient
from clipsearch.types import HealthStatus


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Query the standard gRPC health service of a clipsearch server."
    add_connection_arguments(parser, timeout_s=3.0)
    parser.set_defaults(run=run_health_command)


def run_health_command(args: argparse.Namespace) -> int:
    with SearchClient(args.server, args.timeout, tls=client_tls(args)) as client:
        status = client.health()
    print(f"{args.server}: {status}")
    return 0 if status is HealthStatus.SERVING else 1
