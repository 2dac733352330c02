"""A sequence of items kept as one pickled buffer instead of millions of Python objects.

Forked decode workers only read items; reading a Python object still writes its
reference count, which copies the memory page it lives on into every worker. Kept as
two numpy arrays, the pending list is shared by all workers without being copied, and it
travels to Ray workers as zero-copy arrays.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar, overload

import numpy as np

T = TypeVar("T")


class PackedList(Sequence[T], Generic[T]):
    def __init__(self) -> None:
        self._parts: list[bytes] | None = []
        self._data = np.empty(0, dtype=np.uint8)
        self._offsets = np.zeros(1, dtype=np.int64)

    def append(self, item: T) -> None:
        if self._parts is None:
            raise RuntimeError("a PackedList is read-only once read")
        self._parts.append(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))

    def freeze(self) -> None:
        """Join the parts into the shared buffer; call before forking workers."""
        if self._parts is not None:
            sizes = np.fromiter(
                (len(p) for p in self._parts), dtype=np.int64, count=len(self._parts)
            )
            self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            self._data = np.frombuffer(b"".join(self._parts), dtype=np.uint8)
            self._parts = None

    def __len__(self) -> int:
        return len(self._parts) if self._parts is not None else len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        self.freeze()
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start, end = self._offsets[index], self._offsets[index + 1]
        item: T = pickle.loads(self._data[start:end].tobytes())
        return item

    def __iter__(self) -> Iterator[T]:
        for index in range(len(self)):
            yield self[index]

    def __getstate__(self) -> dict[str, object]:
        self.freeze()
        return {"data": self._data, "offsets": self._offsets}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._parts = None
        self._data = state["data"]  # type: ignore[assignment]
        self._offsets = state["offsets"]  # type: ignore[assignment]
