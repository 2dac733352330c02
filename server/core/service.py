"""What the server does, independent of gRPC: encode queries in batches, search, classify.

Every model and index call goes through a Batcher, so concurrent requests share batches.
Each request takes the served index version once and uses it to the end, which is what
lets a hot reload swap versions under load without failing anyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import numpy as np
import torch

from clipsearch.encoder import ClipEncoder, EncoderInfo, ImageDecodeError
from clipsearch.index.manifest import IndexManifest
from clipsearch.index.version import IndexVersion
from clipsearch.server.core.batcher import (
    Batched,
    Batcher,
    BatchObserver,
    CallerGoneError,
    QueueFullError,
)
from clipsearch.server.core.calls import CallContext, RequestError, Status
from clipsearch.server.core.config import BatchingConfig, Limits
from clipsearch.server.core.futures import completed, flat_map
from clipsearch.server.core.index_holder import IndexHolder, ReloadFailedError
from clipsearch.types import (
    ClassifyQuery,
    Embeddings,
    EmbedQuery,
    Hit,
    ImageQuery,
    ImageUrlQuery,
    IndexInfo,
    ItemQuery,
    LabelScore,
    Query,
    Reloaded,
    SearchQuery,
    SearchResult,
    TextQuery,
    Timing,
    VectorQuery,
)

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True, eq=False)
class _SearchItem:
    version: IndexVersion
    vector: np.ndarray
    k: int
    nprobe: int | None
    candidates: int | None


@dataclass(frozen=True, eq=False)
class _Neighbours:
    scores: np.ndarray
    rows: np.ndarray


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
        encoder: ClipEncoder,
        holder: IndexHolder,
        limits: Limits,
        batching: BatchingConfig,
        fetch_image: Callable[[str], bytes],
        observe_batch: Callable[[str], BatchObserver] | None = None,
    ) -> None:
        """`fetch_image` reads an image URL under the server's rules (or raises
        RequestError); the core does no network I/O of its own."""
        self.encoder = encoder
        self.holder = holder
        self.limits = limits
        self.fetch_image = fetch_image

        def observer(stage: str) -> BatchObserver | None:
            return observe_batch(stage) if observe_batch else None

        self.text_batcher = Batcher("text", self._encode_texts_now, batching, observer("text"))
        self.image_batcher = Batcher("image", self._encode_pixels, batching, observer("image"))
        self.search_batcher = Batcher("search", _search_batch, batching, observer("search"))

    def close(self) -> None:
        self.text_batcher.close()
        self.image_batcher.close()
        self.search_batcher.close()

    # --- RPCs -----------------------------------------------------------------------------

    def search(self, queries: Sequence[SearchQuery], call: CallContext) -> list[SearchResult]:
        started = time.monotonic()
        version = self._version()
        vectors = self._vector_futures([q.query for q in queries], version, call)
        searched = [
            flat_map(vector, partial(self._search_one, version, query, call))
            for query, vector in zip(queries, vectors, strict=True)
        ]
        done = self._wait(searched, call)
        total_ms = (time.monotonic() - started) * 1000
        results = []
        for query, (vector, neighbours) in zip(queries, done, strict=True):
            timing = Timing(
                total_ms=total_ms,
                queue_ms=vector.queue_s * 1000,
                encode_ms=vector.encode_s * 1000,
                search_ms=(neighbours.queue_s + neighbours.run_s) * 1000,
            )
            hits = _hits(version, query, neighbours.value)
            results.append(SearchResult(hits, version.name, timing))
        return results

    def _search_one(
        self, version: IndexVersion, query: SearchQuery, call: CallContext, vector: _Encoded
    ) -> Future[tuple[_Encoded, Batched[_Neighbours]]]:
        """Queue a query's search as soon as its vector exists (in the encoder's thread)."""
        extra = 1 if isinstance(query.query, ItemQuery) else 0  # the item itself
        opts = query.options
        item = _SearchItem(version, vector.vector, opts.top_k + extra, opts.nprobe, opts.candidates)
        found = self._submit(self.search_batcher, [item], call)[0]
        return flat_map(found, lambda neighbours: completed((vector, neighbours)))

    def embed(self, query: EmbedQuery, call: CallContext) -> Embeddings:
        """Texts, then images, then image URLs (fetched here, after the request was checked)."""
        texts = self._encode_texts(list(query.texts), call)
        named = [(f"images[{n}]", data) for n, data in enumerate(query.images)]
        named += [(url, self.fetch_image(url)) for url in query.image_urls]
        return Embeddings(self._stack(texts), self._stack(self._encode_images(named, call)))

    def classify(self, query: ClassifyQuery, call: CallContext) -> list[LabelScore]:
        image = self._encode_images([("image", query.image)], call)[0]
        prompts = [t.replace("{}", label) for label in query.labels for t in query.templates]
        prompt_vectors = self._stack(self._encode_texts(prompts, call))
        per_label = prompt_vectors.reshape(len(query.labels), len(query.templates), -1).mean(1)
        per_label /= np.linalg.norm(per_label, axis=1, keepdims=True)
        similarity = per_label @ image
        logits = self.encoder.logit_scale * similarity
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        order = np.argsort(-probabilities, kind="stable")
        return [
            LabelScore(query.labels[i], float(probabilities[i]), float(similarity[i]))
            for i in order
        ]

    def info(self) -> IndexInfo:
        enc = self.encoder.info
        refused = self.holder.refused
        version = self.holder.current
        reason = refused.reason if refused else ""
        if self.holder.fallback and version is not None:
            reason += f" (serving {version.name}, the newest good version, instead)"
        base = IndexInfo(
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

    def _vector_futures(
        self, queries: Sequence[Query], version: IndexVersion, call: CallContext
    ) -> list[Future[_Encoded]]:
        """One vector per query: texts and images queued for the encoder, the rest looked up."""
        out: dict[int, Future[_Encoded]] = {}
        texts = [(i, q.text) for i, q in enumerate(queries) if isinstance(q, TextQuery)]
        images = [
            (i, q.data if isinstance(q, ImageQuery) else self.fetch_image(q.url))
            for i, q in enumerate(queries)
            if isinstance(q, ImageQuery | ImageUrlQuery)
        ]
        for i, query in enumerate(queries):
            if isinstance(query, VectorQuery):
                out[i] = completed(_Encoded(query.vector))
            elif isinstance(query, ItemQuery):
                out[i] = completed(_Encoded(_item_vector(version, query.item_id)))
        named = [("image" if len(queries) == 1 else f"queries[{i}].image", d) for i, d in images]
        pixels = self._pixels(named)
        pending = self._text_futures([t for _, t in texts], call)
        pending += self._submit(self.image_batcher, pixels, call) if pixels else []
        for (i, _), future in zip([*texts, *images], pending, strict=True):
            out[i] = flat_map(future, lambda b: completed(_Encoded(b.value, b.queue_s, b.run_s)))
        return [out[i] for i in range(len(queries))]

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for `texts` (start and end markers included)."""
        if not texts:
            return 0
        return int((self.encoder.tokenize(texts) != 0).sum())

    def _text_futures(
        self, texts: list[str], call: CallContext
    ) -> list[Future[Batched[np.ndarray]]]:
        return self._submit(self.text_batcher, texts, call) if texts else []

    def _encode_texts(self, texts: list[str], call: CallContext) -> list[np.ndarray]:
        return [b.value for b in self._wait(self._text_futures(texts, call), call)]

    def _encode_images(
        self, images: list[tuple[str, bytes]], call: CallContext
    ) -> list[np.ndarray]:
        pixels = self._pixels(images)
        if not pixels:
            return []
        return [b.value for b in self._wait(self._submit(self.image_batcher, pixels, call), call)]

    def _pixels(self, images: list[tuple[str, bytes]]) -> list[torch.Tensor]:
        """Named encoded images to model inputs; a bad one fails the request, naming its field."""
        pixels = []
        for name, data in images:
            try:
                pixels.append(
                    self.encoder.preprocess_input(data, name, self.limits.max_image_pixels)
                )
            except ImageDecodeError as err:
                raise RequestError(Status.INVALID_ARGUMENT, str(err)) from err
        return pixels

    def _encode_texts_now(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.encoder.encode_tokens(self.encoder.tokenize(texts)))

    def _encode_pixels(self, pixels: list[torch.Tensor]) -> list[np.ndarray]:
        return list(self.encoder.encode_pixels(torch.stack(pixels)))

    def _stack(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        if not vectors:
            return np.empty((0, self.encoder.dim), dtype=np.float32)
        return np.stack(vectors)

    # --- waiting --------------------------------------------------------------------------

    @staticmethod
    def _submit(
        batcher: Batcher[T, U], items: list[T], call: CallContext
    ) -> list[Future[Batched[U]]]:
        try:
            return batcher.submit(items, call.deadline, call.is_active)
        except QueueFullError as err:
            raise RequestError(Status.RESOURCE_EXHAUSTED, str(err)) from err

    @staticmethod
    def _wait(futures: list[Future[T]], call: CallContext) -> list[T]:
        results = []
        try:
            for future in futures:
                timeout = (
                    None if call.deadline is None else max(0.0, call.deadline - time.monotonic())
                )
                results.append(future.result(timeout))
        except (FutureTimeout, CallerGoneError) as err:
            for future in futures:
                future.cancel()
            if call.is_active is not None and not call.is_active():
                raise RequestError(Status.CANCELLED, "the call was cancelled") from err
            raise RequestError(
                Status.DEADLINE_EXCEEDED, "the deadline passed before the query was answered"
            ) from err
        return results


def _item_vector(version: IndexVersion, item_id: int) -> np.ndarray:
    row = version.row_of(item_id)
    if row is None:
        raise RequestError(
            Status.NOT_FOUND, f"item_id {item_id} is not in index version {version.name}"
        )
    vector = np.asarray(version.vectors[row], dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _search_batch(items: list[_SearchItem]) -> list[_Neighbours]:
    """Searches items that share a version and settings together, each group in one call."""
    groups: dict[tuple[int, int | None, int | None], list[int]] = {}
    for n, item in enumerate(items):
        groups.setdefault((id(item.version), item.nprobe, item.candidates), []).append(n)
    out: list[_Neighbours | None] = [None] * len(items)
    for members in groups.values():
        first = items[members[0]]
        k = max(items[n].k for n in members)
        queries = np.stack([items[n].vector for n in members])
        found = first.version.search(queries, k, first.nprobe, first.candidates)
        for row, n in enumerate(members):
            k_n = items[n].k
            # Cosine similarities of unit vectors; float16 storage can push one past 1.
            scores = np.clip(found.scores[row, :k_n], -1.0, 1.0)
            out[n] = _Neighbours(scores, found.rows[row, :k_n])
    return [n for n in out if n is not None]


def _hits(version: IndexVersion, query: SearchQuery, found: _Neighbours) -> list[Hit]:
    rows = found.rows
    ids = version.item_ids(rows)
    exclude = query.query.item_id if isinstance(query.query, ItemQuery) else None
    hits = []
    for row, item_id, score in zip(rows.tolist(), ids.tolist(), found.scores.tolist(), strict=True):
        if row < 0 or item_id == exclude:
            continue
        if query.options.with_metadata:
            record = version.records.get(row)
            hits.append(
                Hit(
                    id=item_id,
                    score=score,
                    uri=record.uri,
                    caption=record.caption or "",
                    metadata_json=record.metadata or "",
                )
            )
        else:
            hits.append(Hit(id=item_id, score=score))
    return hits[: query.options.top_k]
