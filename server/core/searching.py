"""One query's search, from its vector to its hits: what to fetch (depth, filter, plan),
searching batches of queries that share settings, and shaping what comes back (the
item itself left out, min_score, near-duplicates collapsed, the page cut out).

A search compares its query with the images or with the captions (Target). Caption hits
are mapped to their items as soon as they are found, so everything after the search
works on items either way: a caption hit is its item, scored by its caption.

Unless a query sets its own effort, it is searched with the settings the build measured
for its kind (text, or image: image, image-URL, item and vector queries) on its target:
text embeddings sit apart from the images (the modality gap) and need their own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipsearch.index.fields import FieldSchema
from clipsearch.index.manifest import MeasuredDefaults
from clipsearch.index.version import CaptionIndex, IndexVersion, RowSet, SearchResult, VectorIndex
from clipsearch.server.core.calls import RequestError, Status
from clipsearch.server.core.filter_plan import FilteredPlan, plan_filtered
from clipsearch.server.core.filtering import FilterMasks
from clipsearch.server.core.pages import PageToken
from clipsearch.types import Hit, ItemQuery, QueryKind, SearchQuery, Target, query_kind

# With collapsing, fetch this many candidates per hit wanted, and more if it was not enough.
COLLAPSE_OVERFETCH = 4


@dataclass(frozen=True)
class Effort:
    """The search settings of one query."""

    nprobe: int  # lists visited; 0: an exhaustive index
    candidates: int  # re-ranked exactly; 0: no re-ranking


@dataclass(frozen=True, eq=False)
class Planned:
    """A query's search, decided before its vector exists."""

    query: SearchQuery
    version: IndexVersion
    offset: int  # hits already returned on earlier pages
    fingerprint: str  # binds the next page's token to this search
    # Rows of the searched index (image rows, or caption rows) a filter lets through;
    # None: every live row.
    allowed: RowSet | None = None
    plan: FilteredPlan | None = None

    @property
    def index(self) -> VectorIndex:
        return target_index(self.version, self.query.options.target)

    @property
    def effort(self) -> Effort:
        """The query's own settings, else those measured for its kind on its target."""
        opts = self.query.options
        defaults = measured_defaults(self.version, opts.target, query_kind(self.query.query))
        return Effort(
            opts.nprobe or defaults.default_nprobe,
            opts.candidates or defaults.rerank_candidates,
        )

    @property
    def wanted(self) -> int:
        """Hits to find, through this page, plus one to tell whether more exist."""
        return self.offset + self.query.options.top_k + 1

    def fetch(self, factor: int = 1) -> int:
        """Neighbours to ask the index for."""
        extra = 1 if isinstance(self.query.query, ItemQuery) else 0  # the item itself
        overfetch = COLLAPSE_OVERFETCH if self.query.options.collapse else 1
        return self.wanted * overfetch * factor + extra


def planned(
    query: SearchQuery, version: IndexVersion, offset: int, fingerprint: str, filters: FilterMasks
) -> Planned:
    """A query's search on `version`: what its target index is, and with a filter, the
    rows it lets through (cached per version and filter) and how to search them."""
    opts = query.options
    index = target_index(version, opts.target)  # refuses captions the version lacks
    if opts.filter is None:
        return Planned(query, version, offset, fingerprint)
    allowed = filters.rows(
        version.name, opts.filter, version.fields, FieldSchema.of(version.manifest),
        opts.target.value,
        # Filters test items; a caption passes with its item.
        index.allowed if isinstance(index, CaptionIndex) else RowSet.of,
    )  # fmt: skip
    effort = Planned(query, version, offset, fingerprint).effort
    plan = plan_filtered(len(allowed), index.count, index.nlist,
                         effort.nprobe, effort.candidates or None)  # fmt: skip
    return Planned(query, version, offset, fingerprint, allowed, plan)


def measured_defaults(version: IndexVersion, target: Target, kind: QueryKind) -> MeasuredDefaults:
    """The build's default settings for a kind of query on the target's index."""
    captions = version.manifest.captions
    if target is Target.CAPTIONS and captions is not None:
        return captions.defaults(kind)
    return version.manifest.defaults(kind)


@dataclass(frozen=True, eq=False)
class SearchItem:
    """One query in a search batch."""

    planned: Planned
    vector: np.ndarray
    k: int


@dataclass(frozen=True, eq=False)
class Neighbours:
    scores: np.ndarray  # best first, within [-1, 1]
    rows: np.ndarray  # -1 where there are fewer


def target_index(version: IndexVersion, target: Target) -> VectorIndex:
    """What a search compares its query with; captions a version lacks are refused."""
    if target is Target.IMAGES:
        return version.images
    if version.captions is None:
        raise RequestError(
            Status.FAILED_PRECONDITION,
            f"index version {version.name} has no captions indexed: embed with "
            "`clipsearch embed --embed-captions` (items need captions) and build again to "
            "search captions",
        )
    return version.captions


def search_batch(items: list[SearchItem]) -> list[Neighbours]:
    """Searches items that share a version, settings and filter together, a group a call."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for n, item in enumerate(items):
        p = item.planned
        settings = (p.query.options.target, p.plan, p.effort)
        groups.setdefault((id(p.version), id(p.allowed), *settings), []).append(n)
    out: list[Neighbours | None] = [None] * len(items)
    for members in groups.values():
        found = search(
            items[members[0]].planned,
            np.stack([items[n].vector for n in members]),
            max(items[n].k for n in members),
        )
        for row, n in enumerate(members):
            k_n = items[n].k
            out[n] = Neighbours(found.scores[row, :k_n], found.rows[row, :k_n])
    return [n for n in out if n is not None]


def search(planned: Planned, queries: np.ndarray, k: int) -> SearchResult:
    """Search the planned way; a filtered index search that found fewer rows than the
    filter lets through visits more lists, then scans exactly, so a filter never costs a
    hit. Rows come back as item rows, whatever the target."""
    index, allowed, plan = planned.index, planned.allowed, planned.plan
    if allowed is None or plan is None:
        effort = planned.effort
        found = index.search(queries, k, effort.nprobe or None, effort.candidates or None)
    elif plan.exact:
        found = index.search_rows(queries, k, allowed)
    else:
        found = _filtered_search(index, queries, k, plan, allowed)
    rows = index.items_of(found.rows) if isinstance(index, CaptionIndex) else found.rows
    # Cosine similarities of unit vectors; float16 storage can push one past 1.
    return SearchResult(np.clip(found.scores, -1.0, 1.0), rows)


# A filtered index search that comes back short (the lists it visited held fewer
# matching rows than wanted: a filter whose rows cluster away from the query) visits this
# many times more lists, up to all of them, before scanning the matching rows exactly:
# the scan of many rows costs far more than a few more lists.
RETRY_NPROBE_FACTOR = 8


def _filtered_search(
    index: VectorIndex, queries: np.ndarray, k: int, plan: FilteredPlan, allowed: RowSet
) -> SearchResult:
    wanted = min(k, len(allowed))
    nprobe = plan.nprobe or index.default_nprobe
    found = index.search(queries, k, nprobe, plan.candidates, allowed)
    short = (found.rows >= 0).sum(axis=1) < wanted
    while short.any() and nprobe < index.nlist:
        nprobe = min(index.nlist, nprobe * RETRY_NPROBE_FACTOR)
        deeper = index.search(queries[short], k, nprobe, plan.candidates, allowed)
        found.scores[short], found.rows[short] = deeper.scores, deeper.rows
        short = (found.rows >= 0).sum(axis=1) < wanted
    if short.any():
        exact = index.search_rows(queries[short], k, allowed)
        found.scores[short], found.rows[short] = exact.scores, exact.rows
    return found


@dataclass(frozen=True)
class Shaped:
    hits: list[Hit]
    next_page_token: str


def shape(
    planned: Planned, query_vector: np.ndarray, found: Neighbours, exhausted: bool
) -> Shaped | None:
    """The page of hits, or None when collapsing left too few and more candidates exist
    (`exhausted` says whether the index had no more to give): fetch deeper and shape again."""
    opts = planned.query.options
    version = planned.version
    exclude = planned.query.query.item_id if isinstance(planned.query.query, ItemQuery) else None
    keep = found.rows >= 0
    if exclude is not None:
        keep &= version.item_ids(found.rows) != exclude
    if opts.min_score is not None:
        keep &= found.scores >= opts.min_score
    rows, scores = found.rows[keep], found.scores[keep]
    folded: list[list[int]] = [[] for _ in rows]
    if opts.collapse is not None:
        rows, scores, folded = _collapse(version, rows, scores, opts.collapse.threshold)
        # Deeper candidates score lower: past the min_score cut they cannot help.
        cut = opts.min_score is not None and bool((found.scores < opts.min_score).any())
        if len(rows) < planned.wanted and not (exhausted or cut):
            return None
    end = planned.offset + opts.top_k
    with_ids = opts.collapse is not None and opts.collapse.with_ids
    hits = [
        _hit(version, int(rows[i]), float(scores[i]), folded[i], opts.with_metadata, with_ids)
        for i in range(planned.offset, min(end, len(rows)))
    ]
    more = len(rows) > end
    token = PageToken(version.name, end, planned.fingerprint).encode() if more else ""
    return Shaped(hits, token)


def _collapse(
    version: IndexVersion, rows: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Greedy, best first: a hit at or above `threshold` cosine similarity to a hit kept
    before it is folded into that one (the most similar, when several are). Compared by
    their images whatever the target: near-duplicates are the same picture (and the
    default threshold was measured on images), so caption hits fold the same way."""
    vectors = np.asarray(version.vectors[rows], dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    kept: list[int] = []
    folded: list[list[int]] = []
    for i in range(len(rows)):
        if kept:
            similarity = vectors[kept] @ vectors[i]
            best = int(np.argmax(similarity))
            if similarity[best] >= threshold:
                folded[best].append(int(rows[i]))
                continue
        kept.append(i)
        folded.append([])
    return rows[kept], scores[kept], folded


def _hit(
    version: IndexVersion,
    row: int,
    score: float,
    folded: list[int],
    with_metadata: bool,
    with_ids: bool,
) -> Hit:
    item_id = int(version.ids[row])
    duplicate_ids = tuple(int(i) for i in version.ids[folded]) if with_ids and folded else ()
    if not with_metadata:
        return Hit(id=item_id, score=score, duplicates=len(folded), duplicate_ids=duplicate_ids)
    record = version.records.get(row)
    return Hit(
        id=item_id,
        score=score,
        uri=record.uri,
        caption=record.caption or "",
        metadata_json=record.metadata or "",
        duplicates=len(folded),
        duplicate_ids=duplicate_ids,
    )
