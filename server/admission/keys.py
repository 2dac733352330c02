"""API keys: who may call, with which scopes and limits. Keys are never logged, only names.

A key file (or the CLIPSEARCH_API_KEYS environment variable) holds one key per line:

    # name      secret                     scopes         limits (optional)
    web-app     9f2c...e1                  search         rate=50 concurrent=8
    ops         4b7a...0d                  search,admin

Clients send `authorization: Bearer <secret>`. Secrets are kept as SHA-256 digests and
compared in constant time against every key, so timing reveals neither which key nor
how much of one matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from clipsearch.errors import ClipsearchError

ENV_VAR = "CLIPSEARCH_API_KEYS"
MIN_SECRET_LENGTH = 16


class Scope(StrEnum):
    SEARCH = "search"  # Search, BatchSearch, Embed, Classify, GetIndexInfo
    ADMIN = "admin"  # ReloadIndex


class KeyFileError(ClipsearchError):
    """A key file or variable that cannot be used; says which line and why."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    scopes: frozenset[Scope]
    rate_per_s: float | None = None  # None: the server's default
    max_concurrent: int | None = None


class KeyRing:
    def __init__(self, keys: Sequence[ApiKey]) -> None:
        names = [key.name for key in keys]
        if len(set(names)) != len(names):
            raise KeyFileError("two API keys share a name: names must be unique")
        if len({key.digest for key in keys}) != len(keys):
            raise KeyFileError("two API keys share a secret: secrets must be unique")
        self.keys = tuple(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def identify(self, secret: str) -> ApiKey | None:
        """The key with this secret, comparing against every key in constant time."""
        digest = hashlib.sha256(secret.encode()).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def parse_keys(text: str, source: str) -> list[ApiKey]:
    keys = []
    for number, raw in enumerate(text.replace(";", "\n").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            keys.append(_parse_line(line, f"{source}, entry {number}"))
    return keys


def _parse_line(line: str, where: str) -> ApiKey:
    fields = line.split()
    if len(fields) < 3:
        raise KeyFileError(f"{where}: expected 'NAME SECRET SCOPES [rate=N] [concurrent=N]'")
    name, secret, scopes_text, *limits = fields
    if len(secret) < MIN_SECRET_LENGTH:
        raise KeyFileError(
            f"{where} ({name}): the secret is too short; use at least {MIN_SECRET_LENGTH} "
            "random characters (e.g. `openssl rand -hex 24`)"
        )
    try:
        scopes = frozenset(Scope(s) for s in scopes_text.split(","))
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise KeyFileError(
            f"{where} ({name}): unknown scope in {scopes_text!r}; use {known}"
        ) from None
    settings = dict(item.partition("=")[::2] for item in limits)
    unknown = set(settings) - {"rate", "concurrent"}
    if unknown:
        raise KeyFileError(f"{where} ({name}): unknown limit {sorted(unknown)[0]!r}")
    try:
        rate = float(settings["rate"]) if "rate" in settings else None
        concurrent = int(settings["concurrent"]) if "concurrent" in settings else None
    except ValueError as err:
        raise KeyFileError(f"{where} ({name}): limits must be numbers: {err}") from err
    if (rate is not None and rate <= 0) or (concurrent is not None and concurrent <= 0):
        raise KeyFileError(f"{where} ({name}): limits must be positive")
    digest = hashlib.sha256(secret.encode()).digest()
    return ApiKey(name, digest, scopes, rate, concurrent)


def load_keys(path: Path | None, environ: Mapping[str, str]) -> KeyRing:
    """Keys from `path` and from the CLIPSEARCH_API_KEYS variable (both may be used)."""
    keys = []
    if path is not None:
        try:
            text = path.read_text()
        except OSError as err:
            raise KeyFileError(f"cannot read the API key file {path}: {err.strerror}") from err
        keys += parse_keys(text, str(path))
    if environ.get(ENV_VAR):
        keys += parse_keys(environ[ENV_VAR], ENV_VAR)
    return KeyRing(keys)


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an `authorization: Bearer ...` value, if it is one."""
    if not authorization:
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return None
