"""The committed generated code matches protos/, and the API follows protobuf style."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from clipsearch.v1 import search_pb2

ROOT = Path(__file__).resolve().parents[1]


def _generator():  # protos/ is not a package: load its script by path
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    fresh = _generator().generate(tmp_path)
    assert fresh, "nothing generated"
    for path in fresh:
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run `make protos`"
        drifted = f"{committed} drifted from protos/: run `make protos`"
        assert committed.read_bytes() == path.read_bytes(), drifted
    committed_files = {p.relative_to(ROOT) for p in (ROOT / "clipsearch" / "v1").glob("*.py*")}
    assert committed_files == {p.relative_to(tmp_path) for p in fresh}


def test_names_follow_protobuf_style() -> None:
    file = search_pb2.DESCRIPTOR
    assert file.package == "clipsearch.v1"
    assert file.name == "clipsearch/v1/search.proto"
    service = file.services_by_name["SearchService"]
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
    for message in file.message_types_by_name.values():
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", message.name)
        for field in message.fields:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", field.name), f"{message.name}.{field.name}"


@pytest.mark.parametrize("field", ["text", "image", "embedding", "item_id"])
def test_search_query_is_a_oneof(field: str) -> None:
    oneof = search_pb2.SearchRequest.DESCRIPTOR.oneofs_by_name["query"]
    assert field in {f.name for f in oneof.fields}
