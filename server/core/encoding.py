"""One loaded model at the server's disposal: texts and images encoded in batches shared
by every request and every index of that model; Embed and Classify."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
import torch

from clipsearch.encoder import ClipEncoder, ImageDecodeError
from clipsearch.server.core.batcher import Batched, Batcher, BatchObserver
from clipsearch.server.core.calls import CallContext, RequestError, Status
from clipsearch.server.core.config import BatchingConfig, Limits
from clipsearch.server.core.waiting import submit, wait
from clipsearch.types import ClassifyQuery, Embeddings, EmbedQuery, LabelScore


class Encoding:
    def __init__(
        self,
        encoder: ClipEncoder,
        limits: Limits,
        batching: BatchingConfig,
        fetch_image: Callable[[str], bytes],
        observe_batch: Callable[[str], BatchObserver] | None = None,
    ) -> None:
        """`fetch_image` reads an image URL under the server's rules (or raises
        RequestError); the core does no network I/O of its own."""
        self.encoder = encoder
        self.limits = limits
        self.fetch_image = fetch_image
        text = observe_batch("text") if observe_batch else None
        image = observe_batch("image") if observe_batch else None
        self.text_batcher = Batcher("text", self._encode_texts_now, batching, text)
        self.image_batcher = Batcher("image", self._encode_pixels, batching, image)

    def close(self) -> None:
        self.text_batcher.close()
        self.image_batcher.close()

    def embed(self, query: EmbedQuery, call: CallContext) -> Embeddings:
        """Texts, then images, then image URLs (fetched here, after the request was checked)."""
        texts = self.encode_texts(list(query.texts), call)
        named = [(f"images[{n}]", data) for n, data in enumerate(query.images)]
        named += [(url, self.fetch_image(url)) for url in query.image_urls]
        return Embeddings(self.stack(texts), self.stack(self.encode_images(named, call)))

    def classify(self, query: ClassifyQuery, call: CallContext) -> list[LabelScore]:
        image = self.encode_images([("image", query.image)], call)[0]
        prompts = [t.replace("{}", label) for label in query.labels for t in query.templates]
        prompt_vectors = self.stack(self.encode_texts(prompts, call))
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

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for `texts` (start and end markers included)."""
        if not texts:
            return 0
        return int((self.encoder.tokenize(texts) != 0).sum())

    def text_futures(
        self, texts: list[str], call: CallContext
    ) -> list[Future[Batched[np.ndarray]]]:
        return submit(self.text_batcher, texts, call) if texts else []

    def image_futures(
        self, images: list[tuple[str, bytes]], call: CallContext
    ) -> list[Future[Batched[np.ndarray]]]:
        """Named encoded images queued for the model; a bad one fails the request first."""
        pixels = self._pixels(images)
        return submit(self.image_batcher, pixels, call) if pixels else []

    def encode_texts(self, texts: list[str], call: CallContext) -> list[np.ndarray]:
        return [b.value for b in wait(self.text_futures(texts, call), call)]

    def encode_images(self, images: list[tuple[str, bytes]], call: CallContext) -> list[np.ndarray]:
        return [b.value for b in wait(self.image_futures(images, call), call)]

    def stack(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        if not vectors:
            return np.empty((0, self.encoder.dim), dtype=np.float32)
        return np.stack(vectors)

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
