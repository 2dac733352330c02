"""The rules a request must follow, in one place for every face. Each face names the
fields in its own vocabulary (`queries[1].text`, `input[3]`); the rules and the limits
are the same, and so is every message after the field name."""

from __future__ import annotations

import math

import numpy as np

from clipsearch.server.core.calls import invalid
from clipsearch.server.core.config import Limits

DEFAULT_TOP_K = 10
DEFAULT_TEMPLATE = "a photo of a {}."


def text(value: str, field: str, limits: Limits) -> str:
    if not value.strip():
        raise invalid(f"{field} is empty: describe the images you want, e.g. 'a red bicycle'")
    if len(value) > limits.max_text_chars:
        raise invalid(
            f"{field} has {len(value)} characters, at most {limits.max_text_chars} are accepted "
            "(the model reads only the first ~75 tokens anyway)"
        )
    return value


def image(data: bytes, field: str) -> bytes:
    if not data:
        raise invalid(f"{field} is empty: send the encoded image bytes")
    return data


def embed_inputs(count: int, limits: Limits) -> None:
    """Checked before any input is read or fetched."""
    if count == 0:
        raise invalid("no inputs: send at least one text or image")
    if count > limits.max_embed_inputs:
        raise invalid(f"{count} inputs, at most {limits.max_embed_inputs} per call: split them")


def batch_size(count: int, field: str, limits: Limits) -> None:
    if count == 0:
        raise invalid(f"{field} is empty: send at least one query")
    if count > limits.max_batch_queries:
        raise invalid(
            f"{field} has {count} entries, at most {limits.max_batch_queries} per call: split it"
        )


def top_k(value: int, field: str, limits: Limits) -> int:
    """0 means the default."""
    value = value or DEFAULT_TOP_K
    if not 0 < value <= limits.max_top_k:
        raise invalid(f"{field} is {value}: use 1 to {limits.max_top_k} (0 means 10)")
    return value


def effort(value: int, field: str, limits: Limits) -> int | None:
    """0 means the index's measured default (None)."""
    if value < 0 or value > limits.max_effort:
        raise invalid(f"{field} is {value}: use 0 (the default) to {limits.max_effort}")
    return value or None


def min_score(value: float, field: str) -> float:
    if not -1.0 <= value <= 1.0:
        raise invalid(f"{field} is {value:g}: scores are cosine similarities, from -1 to 1")
    return value


def unit_vector(values: object, dim: int, field: str) -> np.ndarray:
    """A query vector as float32 of unit length; refuses wrong sizes, NaN, inf and zero."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.shape != (dim,):
        raise invalid(f"{field} has {vector.size} values; this index has dimension {dim}")
    if not np.isfinite(vector).all():
        raise invalid(f"{field} contains NaN or infinite values")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise invalid(f"{field} has zero length: it has no direction to search in")
    return vector / norm


def labels(values: tuple[str, ...], field: str, limits: Limits) -> tuple[str, ...]:
    checked = tuple(text(label, f"{field}[{i}]", limits) for i, label in enumerate(values))
    if len(checked) < 2:
        raise invalid(f"{field} has {len(checked)} entries: give at least two to choose between")
    if len(checked) > limits.max_labels:
        raise invalid(f"{field} has {len(checked)} entries, at most {limits.max_labels}")
    if len(set(checked)) != len(checked):
        raise invalid(f"{field} has duplicates: give each label once")
    return checked


def templates(values: tuple[str, ...], field: str, limits: Limits) -> tuple[str, ...]:
    checked = values or (DEFAULT_TEMPLATE,)
    if len(checked) > limits.max_templates:
        raise invalid(f"{field} has {len(checked)} entries, at most {limits.max_templates}")
    for i, template in enumerate(checked):
        if template.count("{}") != 1:
            raise invalid(f"{field}[{i}] must contain '{{}}' exactly once, where the label goes")
    return checked
