"""`clipsearch health`: ask a server's grpc.health.v1 whether it is SERVING (exit 0) or not.

For container health checks and scripts; Kubernetes can use its native gRPC probes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch.client import ClientTls


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "health",
        help="check whether a server is SERVING (exit 0) or not (exit 1)",
        description="Query the standard gRPC health service of a clipsearch server.",
    )
    parser.add_argument(
        "--server", default="localhost:50051", help="HOST:PORT (default: localhost:50051)"
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default: 3)")
    parser.add_argument("--tls-ca", type=Path, help="connect over TLS, trusting this PEM CA")
    parser.add_argument("--tls-cert", type=Path, help="client certificate for mutual TLS")
    parser.add_argument("--tls-key", type=Path, help="private key of --tls-cert")
    parser.set_defaults(run=run_health_command)


def run_health_command(args: argparse.Namespace) -> int:
    if args.tls_ca or args.tls_cert:
        credentials = ClientTls(args.tls_ca, args.tls_cert, args.tls_key).credentials()
        channel = grpc.secure_channel(args.server, credentials)
    else:
        channel = grpc.insecure_channel(args.server)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=args.timeout
            )
        except grpc.RpcError as err:
            print(f"{args.server}: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.server}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
