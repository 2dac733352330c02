"""Matrices of vectors in files, read in row order a chunk at a time.

A `.npy` file is read a chunk at a time (never whole); a Parquet column of lists of floats is
read batch by batch. Either way a chunk is float32 with a mask of the rows that have a
vector (Parquet cells may be null).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipsearch.indexer.imports.base import ImportSourceError


@dataclass(frozen=True)
class VectorChunk:
    start: int  # the file row of the chunk's first row
    vectors: np.ndarray  # (rows, dim) float32; zeros where there is no vector
    present: np.ndarray  # (rows,) bool: the row has a vector


class VectorFile(Protocol):
    @property
    def path(self) -> Path: ...

    @property
    def label(self) -> str: ...

    @property
    def rows(self) -> int: ...

    @property
    def dim(self) -> int | None:
        """Known from the file's header or type; None when only reading tells."""

    def chunks(self, size: int) -> Iterator[VectorChunk]: ...


@dataclass(frozen=True)
class NpyVectors:
    path: Path
    label: str

    def _array(self) -> np.ndarray:
        try:
            array: np.ndarray = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ImportSourceError(f"{self.label}: not a .npy array ({err})") from err
        if array.ndim != 2 or array.dtype.kind != "f":
            raise ImportSourceError(
                f"{self.label}: a {array.ndim}-d array of {array.dtype}, not a matrix of "
                "floats (one vector a row)"
            )
        return array

    @property
    def rows(self) -> int:
        return int(self._array().shape[0])

    @property
    def dim(self) -> int:
        return int(self._array().shape[1])

    def chunks(self, size: int) -> Iterator[VectorChunk]:
        array = self._array()
        rows, dim = array.shape
        offset = None  # where row 0 starts in the file, when rows lie one after another
        if isinstance(array, np.memmap) and array.flags.c_contiguous:
            offset = int(array.offset)
        with open(self.path, "rb") as handle:
            for start in range(0, rows, size):
                count = min(size, rows - start)
                if offset is not None:  # read, not mapped: the job's memory stays one chunk
                    handle.seek(offset + start * dim * array.dtype.itemsize)
                    raw = np.fromfile(handle, dtype=array.dtype, count=count * dim)
                    block = raw.reshape(count, dim).astype(np.float32)
                else:  # Fortran order: a row's values are apart, the map gathers them
                    block = np.asarray(array[start : start + count], dtype=np.float32)
                yield VectorChunk(start, block, np.ones(count, dtype=bool))


@dataclass(frozen=True)
class ParquetVectors:
    """A column of list<float>, large_list<float> or fixed_size_list<float>."""

    path: Path
    label: str
    column: str

    @property
    def rows(self) -> int:
        return int(pq.ParquetFile(self.path).metadata.num_rows)

    @property
    def dim(self) -> int | None:
        kind = pq.ParquetFile(self.path).schema_arrow.field(self.column).type
        return int(kind.list_size) if pa.types.is_fixed_size_list(kind) else None

    def chunks(self, size: int) -> Iterator[VectorChunk]:
        dim = self.dim
        start = 0
        for table in exact_batches(self.path, [self.column], size):
            column = table.column(self.column).combine_chunks()
            present = np.asarray(column.is_valid(), dtype=bool)
            dim = self._check_lengths(column, present, start, dim)
            out = np.zeros((len(column), dim or 0), dtype=np.float32)
            if present.any():
                values = column.filter(pa.array(present)).flatten()
                out[present] = np.asarray(values, dtype=np.float32).reshape(-1, dim or 0)
            yield VectorChunk(start, out, present)
            start += len(column)

    def _check_lengths(
        self, column: pa.Array, present: np.ndarray, start: int, dim: int | None
    ) -> int | None:
        """Every vector of a list column must have the same length (the first one's)."""
        if pa.types.is_fixed_size_list(column.type) or not present.any():
            return dim
        lengths = np.asarray(pc.list_value_length(column).fill_null(-1), dtype=np.int64)
        dim = dim if dim is not None else int(lengths[present][0])
        bad = np.flatnonzero(present & (lengths != dim))
        if len(bad):
            row = start + int(bad[0])
            raise ImportSourceError(
                f"{self.label} row {row}: {self.column} holds {lengths[bad[0]]} values, "
                f"the rows before it {dim}",
                hint="every vector of a column must have the same dimension",
            )
        return dim


def exact_batches(path: Path, columns: list[str], size: int) -> Iterator[pa.Table]:
    """The columns in tables of exactly `size` rows (the last may be shorter): Parquet
    batches end at row-group boundaries, and rows of two files must line up."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=size, columns=columns):
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)
