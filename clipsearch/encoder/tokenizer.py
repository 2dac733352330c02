"""Text to token ids: open_clip's CLIP BPE, with the merges run by Hugging Face
`tokenizers` (Rust).

open_clip's `SimpleTokenizer` runs ftfy and its BPE merges in Python, holding the GIL for
the whole batch, so under load the server's request threads queue behind it.
`FastClipTokenizer` gives the same ids: the merges run in Rust with the GIL released,
built at load time from the vocabulary and merges open_clip itself parsed from its shipped
`bpe_simple_vocab_16e6.txt.gz`; the text is cleaned and split into words by open_clip's
own functions and compiled pattern (so Unicode tables and case rules are its own), ftfy
skipped only where it provably changes nothing. Models with another tokenizer (Hugging
Face configs, SigLIP) keep open_clip's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import open_clip
import torch
from open_clip.tokenizer import (
    SimpleTokenizer,
    canonicalize_text,
    get_clean_fn,
    whitespace_clean,
)
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors


class Tokenize(Protocol):
    """What the encoder needs of a tokenizer: open_clip's and ours alike."""

    context_length: int

    def __call__(self, texts: Sequence[str]) -> torch.Tensor: ...


# open_clip's cleaning of text that ftfy and HTML unescaping leave as it is (printable
# ASCII without '&'): all that is left of its basic_clean is the strip.
def _lower(text: str) -> str:
    return str(whitespace_clean(text)).lower()


def _canonical(text: str) -> str:
    return str(canonicalize_text(text.strip()))


_PLAIN_CLEAN: dict[str, Callable[[str], str]] = {
    "lower": _lower,
    "whitespace": whitespace_clean,
    "canonicalize": _canonical,
}


def _is_plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and "&" not in text


class FastClipTokenizer:
    """Callable like open_clip's tokenizers: texts to a (N, context_length) id tensor."""

    def __init__(self, reference: SimpleTokenizer, clean: str) -> None:
        self.context_length = int(reference.context_length)
        self._clean = reference.clean_fn
        self._plain_clean = _PLAIN_CLEAN[clean]
        self._words = reference.pat  # the split, with its special-token names as words
        ranked = sorted(reference.bpe_ranks.items(), key=lambda kv: kv[1])
        bpe = models.BPE(
            vocab=dict(reference.encoder),
            merges=[pair for pair, _ in ranked],
            end_of_word_suffix="</w>",
        )
        tokenizer = Tokenizer(bpe)
        # Each word to open_clip's byte alphabet; the words themselves come split.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        specials = [reference.decoder[i] for i in reference.all_special_ids]
        # A word that is a special token's name is that token, as in open_clip's BPE cache.
        tokenizer.add_special_tokens([AddedToken(s, normalized=False) for s in specials])
        start, end = (
            reference.decoder[reference.sot_token_id],
            reference.decoder[reference.eot_token_id],
        )
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{start} $A {end}",
            special_tokens=[(start, reference.sot_token_id), (end, reference.eot_token_id)],
        )
        # Cut to the context with the end token kept, padded with id 0: open_clip's rows.
        tokenizer.enable_truncation(self.context_length)
        tokenizer.enable_padding(
            length=self.context_length, pad_id=0, pad_token=reference.decoder[0]
        )
        self._tokenizer = tokenizer

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        cleaned = [self._plain_clean(t) if _is_plain(t) else self._clean(t) for t in texts]
        words = [self._words.findall(text, concurrent=True) for text in cleaned]
        encoded = self._tokenizer.encode_batch_fast(words, is_pretokenized=True)
        ids = np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), -1)
        return torch.from_numpy(ids)


def get_tokenizer(model_name: str) -> Tokenize:
    """open_clip's tokenizer for `model_name`, as a FastClipTokenizer where it is a plain
    CLIP BPE tokenizer (every OpenAI and LAION CLIP), else unchanged."""
    reference = open_clip.get_tokenizer(model_name)
    if type(reference) is not SimpleTokenizer or reference.reduction_fn is not None:
        return reference  # type: ignore[no-any-return]
    if len(reference.all_special_ids) != 2:  # extra special tokens: split by open_clip
        return reference  # type: ignore[no-any-return]
    for mode in _PLAIN_CLEAN:
        if reference.clean_fn is get_clean_fn(mode):
            return FastClipTokenizer(reference, mode)
    return reference  # type: ignore[no-any-return]
