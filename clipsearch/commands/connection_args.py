"""The flags every command that talks to a running server shares: where, how long, TLS."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.client import ClientTls


def add_connection_arguments(parser: argparse.ArgumentParser, timeout_s: float) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server", default="localhost:50051", help="HOST:PORT (default: localhost:50051)"
    )
    group.add_argument(
        "--timeout", type=float, default=timeout_s, help=f"seconds (default: {timeout_s:g})"
    )
    group.add_argument("--tls-ca", type=Path, help="connect over TLS, trusting this PEM CA")
    group.add_argument("--tls-cert", type=Path, help="client certificate for mutual TLS")
    group.add_argument("--tls-key", type=Path, help="private key of --tls-cert")


def tls_from_args(args: argparse.Namespace) -> ClientTls | None:
    if args.tls_ca or args.tls_cert:
        return ClientTls(args.tls_ca, args.tls_cert, args.tls_key)
    return None
