"""Page tokens: where the next page of a search starts, on which index version, for which
query. A token is not secret (it says nothing the caller does not know); it binds the
page to its version, so pages never mix two versions, and to its query, so a token
cannot continue another search by mistake."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, replace

from clipsearch.server.core.calls import invalid
from clipsearch.types import ImageQuery, SearchQuery, VectorQuery

# How deep pages may go: offset + top_k. Deeper pages cost as much as one search that
# deep; past this, narrow the query (a filter, min_score) instead.
MAX_DEPTH = 5_000


@dataclass(frozen=True)
class PageToken:
    version: str
    offset: int  # hits already returned
    query: str  # the fingerprint of the search it continues

    def encode(self) -> str:
        data = json.dumps({"v": self.version, "o": self.offset, "q": self.query}).encode()
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    @staticmethod
    def decode(token: str, field: str = "page_token") -> PageToken:
        try:
            raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            parsed = PageToken(str(raw["v"]), int(raw["o"]), str(raw["q"]))
        except (binascii.Error, ValueError, KeyError, TypeError) as err:
            raise invalid(f"{field} is not a token this server issued") from err
        if parsed.offset <= 0:
            raise invalid(f"{field} is not a token this server issued")
        return parsed


def fingerprint(query: SearchQuery) -> str:
    """The search a token belongs to: the query and its options, the page aside."""
    q = query.query
    if isinstance(q, VectorQuery):
        what = "vector:" + hashlib.sha256(q.vector.tobytes()).hexdigest()
    elif isinstance(q, ImageQuery):
        what = "image:" + hashlib.sha256(q.data).hexdigest()
    else:
        what = repr(q)
    options = replace(query.options, page_token="", top_k=0)  # pages may differ in size
    return hashlib.sha256(f"{what}|{options!r}".encode()).hexdigest()[:24]
