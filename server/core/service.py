"""One served index, independent of the faces: queries encoded by its model's Encoding,
searched in batches, shaped; its info and reload.

Every model and index call goes through a Batcher, so concurrent requests share batches.
Each request takes the served index version once and uses it to the end, which is what
lets a hot reload swap versions under load without failing anyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import numpy as np

from clipsearch.encoder import ClipEncoder, EncoderInfo
from clipsearch.index.manifest import IndexManifest, MeasuredDefaults
from clipsearch.index.version import IndexVersion
from clipsearch.server.core.batcher import Batched, Batcher, BatchObserver
from clipsearch.server.core.calls import CallContext, RequestError, Status, invalid
from clipsearch.server.core.config import BatchingConfig, Limits
from clipsearch.server.core.encoding import Encoding
from clipsearch.server.core.filtering import FilterMasks
from clipsearch.server.core.futures import completed, flat_map
from clipsearch.server.core.index_holder import IndexHolder, ReloadFailedError
from clipsearch.server.core.pages import MAX_DEPTH, PageToken, fingerprint
from clipsearch.server.core.searching import (
    COLLAPSE_OVERFETCH,
    Neighbours,
    Planned,
    SearchItem,
    Shaped,
    planned,
    search,
    search_batch,
    shape,
)
from clipsearch.server.core.waiting import submit, wait
from clipsearch.types import (
    ImageQuery,
    ImageUrlQuery,
    IndexInfo,
    ItemQuery,
    QueryKind,
    Reloaded,
    SearchDefaults,
    SearchQuery,
    SearchResult,
    TextQuery,
    Timing,
    VectorQuery,
)

T = TypeVar("T")
U = TypeVar("U")


@dataclass
class _Encoded:
    """A query's vector and what producing it cost."""

    vector: np.ndarray
    queue_s: float = 0.0
    encode_s: float = 0.0


def compatibility(info: EncoderInfo) -> Callable[[IndexManifest], str | None]:
    """Why an index cannot be served with this encoder (None when it can)."""

    def check(manifest: IndexManifest) -> str | None:
        why = manifest.space.mismatch(info.space)
        if why is None:
            return None
        return (
            f"its embeddings and this server's model differ ({why}, the index first); serve "
            "it with the model it was built with, or rebuild it"
        )

    return check


class SearchService:
    def __init__(
        self,
        name: str,
        encoding: Encoding,
        holder: IndexHolder,
        batching: BatchingConfig,
        observe_batch: Callable[[str], BatchObserver] | None = None,
    ) -> None:
        self.name = name
        self.encoding = encoding
        self.holder = holder
        observe = observe_batch("search") if observe_batch else None
        self.search_batcher = Batcher("search", search_batch, batching, observe)
        self.filters = FilterMasks()

    @property
    def encoder(self) -> ClipEncoder:
        return self.encoding.encoder

    @property
    def limits(self) -> Limits:
        return self.encoding.limits

    def close(self) -> None:
        self.search_batcher.close()

    # --- RPCs -----------------------------------------------------------------------------

    def search(self, queries: Sequence[SearchQuery], call: CallContext) -> list[SearchResult]:
        started = time.monotonic()
        current = self._version()
        planned = [self._plan(query, current) for query in queries]
        vectors = self._vector_futures(planned, call)
        searched = [
            flat_map(vector, partial(self._search_one, plan, call))
            for plan, vector in zip(planned, vectors, strict=True)
        ]
        done = wait(searched, call)
        total_ms = (time.monotonic() - started) * 1000
        results = []
        for plan, (vector, neighbours) in zip(planned, done, strict=True):
            timing = Timing(
                total_ms=total_ms,
                queue_ms=vector.queue_s * 1000,
                encode_ms=vector.encode_s * 1000,
                search_ms=(neighbours.queue_s + neighbours.run_s) * 1000,
            )
            shaped = _shape(plan, vector.vector, neighbours.value)
            results.append(SearchResult(shaped.hits, plan.version.name, timing,
                                        shaped.next_page_token))  # fmt: skip
        return results

    def _plan(self, query: SearchQuery, current: IndexVersion) -> Planned:
        """The version, depth, filter rows and plan of a query, before it is encoded: a
        bad filter or page token fails the request before any model work."""
        opts = query.options
        version, offset, query_print = current, 0, fingerprint(query)
        if opts.page_token:
            token = PageToken.decode(opts.page_token)
            if token.query != query_print:
                raise invalid(
                    "page_token belongs to another search: send it with the query and "
                    "options of the request that returned it"
                )
            version = self._version_named(token.version)
            offset = token.offset
        if offset + opts.top_k > MAX_DEPTH:
            raise invalid(
                f"pages go {MAX_DEPTH:,} hits deep at most; narrow the search (a filter, "
                "min_score) to see what lies beyond"
            )
        return planned(query, version, offset, query_print, self.filters)

    def _search_one(
        self, planned: Planned, call: CallContext, vector: _Encoded
    ) -> Future[tuple[_Encoded, Batched[Neighbours]]]:
        """Queue a query's search as soon as its vector exists (in the encoder's thread)."""
        item = SearchItem(planned, vector.vector, planned.fetch())
        found = submit(self.search_batcher, [item], call)[0]
        return flat_map(found, lambda neighbours: completed((vector, neighbours)))

    def info(self) -> IndexInfo:
        enc = self.encoder.info
        refused = self.holder.refused
        version = self.holder.current
        reason = refused.reason if refused else ""
        if self.holder.fallback and version is not None:
            reason += f" (serving {version.name}, the newest good version, instead)"
        base = IndexInfo(
            index=self.name,
            model=enc.model,
            pretrained=enc.pretrained,
            dim=enc.dim,
            device=enc.device,
            refused_version=refused.version if refused else "",
            refused_reason=reason,
        )
        if version is None:
            return base
        m = version.manifest
        reached = m.reached
        return replace(
            base,
            count=m.count,
            index_version=m.version,
            factory=m.factory,
            default_nprobe=m.default_nprobe,
            default_candidates=m.rerank_candidates,
            target_recall=m.target_recall,
            recall_at_10=reached.recall_at_10 if reached else 0.0,
            recall_at_1=reached.recall_at_1 if reached else 0.0,
            text=_defaults_info(m.defaults(QueryKind.TEXT)),
            fields=tuple(m.fields),
            captions=version.captions is not None,
        )

    def reload(self) -> Reloaded:
        try:
            outcome = self.holder.reload()
        except ReloadFailedError as err:
            raise RequestError(Status.UNAVAILABLE, str(err)) from err
        refused = outcome.refused
        return Reloaded(
            index_version=outcome.version or "",
            changed=outcome.changed,
            refused_version=refused.version if refused else "",
            refused_reason=refused.reason if refused else "",
        )

    # --- encoding -------------------------------------------------------------------------

    def _version(self) -> IndexVersion:
        version = self.holder.current
        if version is None:
            raise RequestError(
                Status.UNAVAILABLE,
                f"no index is loaded yet: waiting for a version in {self.holder.index_dir} "
                "(build one with `clipsearch build`)",
            )
        return version

    def _version_named(self, name: str) -> IndexVersion:
        version = self.holder.version_named(name)
        if version is None:
            raise RequestError(
                Status.FAILED_PRECONDITION,
                f"page_token is for index version {name}, which is no longer served: start "
                "the search again without page_token",
            )
        return version

    def _vector_futures(
        self, planned: Sequence[Planned], call: CallContext
    ) -> list[Future[_Encoded]]:
        """One vector per query: texts and images queued for the encoder, the rest looked up."""
        queries = [p.query.query for p in planned]
        out: dict[int, Future[_Encoded]] = {}
        texts = [(i, q.text) for i, q in enumerate(queries) if isinstance(q, TextQuery)]
        images = [
            (i, q.data if isinstance(q, ImageQuery) else self.encoding.fetch_image(q.url))
            for i, q in enumerate(queries)
            if isinstance(q, ImageQuery | ImageUrlQuery)
        ]
        for i, query in enumerate(queries):
            if isinstance(query, VectorQuery):
                out[i] = completed(_Encoded(query.vector))
            elif isinstance(query, ItemQuery):
                out[i] = completed(_Encoded(_item_vector(planned[i].version, query.item_id)))
        named = [("image" if len(queries) == 1 else f"queries[{i}].image", d) for i, d in images]
        pending = self.encoding.text_futures([t for _, t in texts], call)
        pending += self.encoding.image_futures(named, call)
        for (i, _), future in zip([*texts, *images], pending, strict=True):
            out[i] = flat_map(future, lambda b: completed(_Encoded(b.value, b.queue_s, b.run_s)))
        return [out[i] for i in range(len(queries))]


def _defaults_info(defaults: MeasuredDefaults) -> SearchDefaults:
    reached = defaults.reached
    return SearchDefaults(
        nprobe=defaults.default_nprobe,
        candidates=defaults.rerank_candidates,
        recall_at_10=reached.recall_at_10 if reached else 0.0,
        recall_at_1=reached.recall_at_1 if reached else 0.0,
        source=defaults.source,
        own_image_at_10=reached.own_image_at_10 if reached else None,
        own_image_at_10_exact=defaults.own_image_at_10_exact,
    )


def _item_vector(version: IndexVersion, item_id: int) -> np.ndarray:
    row = version.row_of(item_id)
    if row is None:
        raise RequestError(
            Status.NOT_FOUND, f"item_id {item_id} is not in index version {version.name}"
        )
    vector = np.asarray(version.vectors[row], dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _shape(planned: Planned, vector: np.ndarray, found: Neighbours) -> Shaped:
    """Shape the hits, searching deeper (in this thread) while collapsing near-duplicates
    leaves too few and the index has more."""
    factor = 1
    while True:
        exhausted = int((found.rows >= 0).sum()) < planned.fetch(factor)
        shaped = shape(planned, vector, found, exhausted)
        if shaped is not None:
            return shaped
        factor *= COLLAPSE_OVERFETCH
        deeper = search(planned, vector[None, :], planned.fetch(factor))
        found = Neighbours(deeper.scores[0], deeper.rows[0])
