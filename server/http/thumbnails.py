"""Thumbnails of indexed images, addressed by item id: only files the index points to can
be read (there is no path in the request to traverse with)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from io import BytesIO
from pathlib import Path

from clipsearch.encoder import ImageDecodeError, read_image
from clipsearch.index.version import IndexVersion
from clipsearch.server.core.calls import RequestError, Status


class Thumbnails:
    def __init__(self, size: int = 256, cached: int = 1024) -> None:
        self.size = size
        self.cached = cached
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: IndexVersion | None, item_id: int) -> bytes:
        if version is None:
            raise RequestError(Status.UNAVAILABLE, "no index is loaded yet")
        key = (version.name, item_id)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        jpeg = self._make(version, item_id)
        with self._lock:
            self._cache[key] = jpeg
            while len(self._cache) > self.cached:
                self._cache.popitem(last=False)
        return jpeg

    def _make(self, version: IndexVersion, item_id: int) -> bytes:
        row = version.row_of(item_id)
        if row is None:
            raise RequestError(Status.NOT_FOUND, f"item {item_id} is not in the index")
        uri = version.records.get(row).uri
        path = Path(uri)
        if not path.is_absolute() or not path.is_file():
            raise RequestError(
                Status.NOT_FOUND, f"item {item_id} has no local image file to show ({uri!r})"
            )
        try:
            image = read_image(path)
        except ImageDecodeError as err:
            raise RequestError(Status.NOT_FOUND, f"item {item_id}: {err}") from err
        image.thumbnail((self.size, self.size))
        buffer = BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=85)
        return buffer.getvalue()
