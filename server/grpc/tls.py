"""TLS credentials for the gRPC server from PEM files, with optional client certificates."""

from __future__ import annotations

from pathlib import Path

import grpc

from clipsearch.errors import ClipsearchError
from clipsearch.server.config import TlsConfig


class TlsFileError(ClipsearchError):
    """A certificate or key file that cannot be read."""


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    client_ca = _read(tls.client_ca, "client CA") if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(tls.key, "private key"), _read(tls.cert, "certificate"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TlsFileError(f"cannot read the TLS {what} {path}: {err.strerror}") from err
    if b"-----BEGIN" not in data:
        raise TlsFileError(f"the TLS {what} {path} is not a PEM file")
    return data
