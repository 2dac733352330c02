"""The HTTP face against a real running server: the official `openai` client for
/v1/embeddings and /v1/models, plain JSON for search and classify, thumbnails, errors."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import openai
import pytest
from PIL import Image

from clipsearch.encoder import ClipEncoder
from clipsearch.server.admission.keys import KeyRing, parse_keys
from clipsearch.server.app import RunningServer
from clipsearch.server.config import SecurityConfig
from tests.conftest import TINY
from tests.served import ServedCollection

PARITY = 1e-4
KEY = "http-test-key-0123456789abcdef"


@pytest.fixture
def http_server(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> RunningServer:
    return start_server(served_collection.index, http_port=0)


def base_url(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def post(
    server: RunningServer, path: str, body: object, key: str | None = None
) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(
        base_url(server) + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {key}"} if key else {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def test_openai_client_embeds_texts_and_images_like_the_encoder(
    http_server: RunningServer, tiny_encoder: ClipEncoder, served_collection: ServedCollection
) -> None:
    client = openai.OpenAI(base_url=base_url(http_server) + "/v1", api_key="unused")
    image = served_collection.images / "chelsea.jpg"
    texts = ["a cat on a sofa", "textile with a defect"]
    inputs = [texts[0], data_url(image), texts[1]]
    # Unasked, the client requests base64 and decodes it itself; asked, it returns it raw.
    for encoding in (openai.omit, "float", "base64"):
        reply = client.embeddings.create(model=TINY, input=inputs, encoding_format=encoding)
        vectors = np.array(
            [
                np.frombuffer(base64.b64decode(d.embedding), "<f4")
                if isinstance(d.embedding, str)
                else d.embedding
                for d in reply.data
            ],
            dtype=np.float32,
        )
        assert isinstance(reply.data[0].embedding, str) == (encoding == "base64")
        assert [d.index for d in reply.data] == [0, 1, 2]
        np.testing.assert_allclose(vectors[[0, 2]], tiny_encoder.encode_texts(texts), atol=PARITY)
        np.testing.assert_allclose(
            vectors[1], tiny_encoder.encode_images([image.read_bytes()])[0], atol=PARITY
        )
        assert reply.model == TINY and reply.usage.prompt_tokens > 4
    single = client.embeddings.create(model=TINY, input="one string")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 64


def test_models_and_openai_errors(http_server: RunningServer) -> None:
    client = openai.OpenAI(base_url=base_url(http_server) + "/v1", api_key="unused")
    assert TINY in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError, match="input"):
        client.embeddings.create(model=TINY, input=[])
    with pytest.raises(openai.BadRequestError, match="not an image"):
        client.embeddings.create(model=TINY, input="data:image/png;base64,aGVsbG8=")
    with pytest.raises(openai.BadRequestError, match="disabled"):
        client.embeddings.create(model=TINY, input="http://example.com/cat.jpg")


def test_api_keys_apply_to_http_too(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    keys = KeyRing(parse_keys(f"web {KEY} search", "test"))
    server = start_server(served_collection.index, http_port=0,
                          security=SecurityConfig(keys=keys))  # fmt: skip
    anonymous = openai.OpenAI(base_url=base_url(server) + "/v1", api_key="wrong-key")
    with pytest.raises(openai.AuthenticationError):
        anonymous.embeddings.create(model=TINY, input="x")
    client = openai.OpenAI(base_url=base_url(server) + "/v1", api_key=KEY)
    assert client.embeddings.create(model=TINY, input="x").data
    status, body = post(server, "/v1/search", {"text": "cat"})
    assert status == 401 and body["error"]["type"] == "authentication_error"


def test_json_search_and_classify_mirror_the_grpc_api(
    http_server: RunningServer, served_collection: ServedCollection
) -> None:
    image = served_collection.images / "coffee.jpg"
    encoded = base64.b64encode(image.read_bytes()).decode()
    status, found = post(http_server, "/v1/search", {"image": encoded, "top_k": 3})
    assert status == 200 and len(found["hits"]) == 3
    assert found["hits"][0]["uri"] == str(image) and found["index_version"]
    status, like = post(http_server, "/v1/search", {"item_id": found["hits"][0]["id"]})
    assert status == 200 and found["hits"][0]["id"] not in {h["id"] for h in like["hits"]}
    status, text = post(http_server, "/v1/search", {"text": "a cup", "topK": 2})
    assert status == 200 and len(text["hits"]) == 2
    status, scores = post(http_server, "/v1/classify",
                          {"image": encoded, "labels": ["cup", "cat", "rocket"]})  # fmt: skip
    assert status == 200
    assert sum(s["probability"] for s in scores["scores"]) == pytest.approx(1.0, abs=1e-5)
    for body, message in [({}, "set exactly one"), ({"text": "a", "top_k": -1}, "does not match"),
                          ({"txt": "a"}, "does not match"), ([1], "JSON object")]:  # fmt: skip
        status, error = post(http_server, "/v1/search", body)
        assert status == 400 and message in error["error"]["message"]
    status, error = post(http_server, "/v1/search", {"item_id": "12345"})
    assert status == 404


def test_thumbnails_only_of_indexed_images(
    http_server: RunningServer, served_collection: ServedCollection
) -> None:
    _, found = post(http_server, "/v1/search", {"text": "anything", "top_k": 1})
    item = found["hits"][0]["id"]
    with urllib.request.urlopen(f"{base_url(http_server)}/v1/thumbnails/{item}") as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        thumb = Image.open(BytesIO(response.read()))
        assert max(thumb.size) <= 256
    for path in ["12345", "..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "abc"]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base_url(http_server)}/v1/thumbnails/{path}")
        assert refused.value.code in (400, 404)


def test_the_search_page_is_served(http_server: RunningServer) -> None:
    with urllib.request.urlopen(base_url(http_server) + "/") as response:
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert "/v1/search" in page and 'type="file"' in page


def test_a_hit_has_one_json_shape_on_every_face(
    http_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """HTTP /v1/search, `clipsearch query --json` and the client's to_dict agree, and they
    are protobuf's JSON mapping of the gRPC response with every field present."""
    from google.protobuf import json_format

    from clipsearch.cli.main import main
    from clipsearch.client import SearchClient, TextQuery
    from clipsearch.v1 import search_pb2 as pb

    status, over_http = post(http_server, "/v1/search", {"text": "a red carpet", "top_k": 3})
    assert status == 200
    target = f"127.0.0.1:{http_server.port}"
    assert (
        main(["query", "--server", target, "--text", "a red carpet", "--top-k", "3", "--json"]) == 0
    )
    from_cli = json.loads(capsys.readouterr().out)
    with SearchClient(target) as client:
        from_client = client.search(TextQuery("a red carpet"), top_k=3).to_dict()
        # No deadline, as grpcurl and bare stubs call: answered like any other call.
        raw = client._stub.Search(pb.SearchRequest(text="a red carpet", top_k=3))
    proto_json = json_format.MessageToDict(
        raw, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    shapes = [over_http, from_cli, from_client, proto_json]
    assert all(set(shape) == set(proto_json) for shape in shapes)
    assert {"hits", "index_version", "timing", "next_page_token"} <= set(proto_json)
    for hits in zip(*(shape["hits"] for shape in shapes), strict=True):
        assert all(set(hit) == set(proto_json["hits"][0]) for hit in hits)
        assert len({hit["id"] for hit in hits}) == 1 and isinstance(hits[0]["id"], str)
        assert len({hit["uri"] for hit in hits}) == 1
        assert max(h["score"] for h in hits) - min(h["score"] for h in hits) < 1e-5
        assert -1.0 <= hits[0]["score"] <= 1.0
