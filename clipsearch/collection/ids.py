"""Stable item ids: the same uri gets the same int64 id in every run and on every engine."""

from __future__ import annotations

import hashlib

_ID_MASK = (1 << 63) - 1  # non-negative int64: FAISS and Arrow both take it as is


def item_id(uri: str) -> int:
    """A 63-bit hash of the uri. Collisions are detected when a listing is planned."""
    digest = hashlib.blake2b(uri.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _ID_MASK


def content_hash(data: bytes) -> str:
    """Hex digest of an image's bytes, stored so duplicates and changes can be found."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()
