"""The indexes a server serves, by name; requests name one (or none, when there is one).
Indexes of the same model share one Encoding: one model in memory, one set of batches."""

from __future__ import annotations

from collections.abc import Mapping

from clipsearch.server.core.calls import RequestError, Status, invalid
from clipsearch.server.core.encoding import Encoding
from clipsearch.server.core.service import SearchService


class Served:
    def __init__(self, indexes: Mapping[str, SearchService]) -> None:
        if not indexes:
            raise ValueError("a server serves at least one index")
        self.indexes = dict(indexes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.indexes)

    def index(self, name: str, field: str = "index") -> SearchService:
        """The named index; with no name, the only one."""
        if not name:
            if len(self.indexes) == 1:
                return next(iter(self.indexes.values()))
            raise invalid(f"{field} is empty: this server serves {self._listing()}; name one")
        service = self.indexes.get(name)
        if service is None:
            raise RequestError(
                Status.NOT_FOUND,
                f"{field} {name!r} is not served here; it serves {self._listing()}",
            )
        return service

    def encoding(self, name: str, field: str = "index") -> Encoding:
        """The model of the named index; with no name, the model every index shares."""
        if name or len(self.encodings) == 1:
            return self.index(name, field).encoding if name else self.encodings[0]
        raise invalid(
            f"{field} is empty: the served indexes use different models; name one of "
            f"{self._listing()}"
        )

    @property
    def encodings(self) -> list[Encoding]:
        unique: dict[int, Encoding] = {}
        for service in self.indexes.values():
            unique.setdefault(id(service.encoding), service.encoding)
        return list(unique.values())

    def close(self) -> None:
        for service in self.indexes.values():
            service.close()
        for encoding in self.encodings:
            encoding.close()

    def _listing(self) -> str:
        return ", ".join(self.indexes)
