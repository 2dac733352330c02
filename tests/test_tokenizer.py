"""The fast tokenizer gives exactly open_clip's ids: on a corpus of varied texts, for every
model clipsearch serves, for each of open_clip's cleaning modes, and after pickling."""

# ruff: noqa: RUF001  # the corpus holds look-alike letters on purpose

from __future__ import annotations

import functools
import json
import pickle
import random
from pathlib import Path

import open_clip
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from open_clip.tokenizer import SimpleTokenizer, basic_clean

from clipsearch.encoder import ClipEncoder, register_model_configs
from clipsearch.encoder.tokenizer import FastClipTokenizer, get_tokenizer
from tests.conftest import TINY

PROMPTS = Path(__file__).parents[1] / "indexer" / "build" / "prompts.txt"
SERVED_MODELS = ("ViT-L-14", "ViT-g-14", TINY)

UNICODE = (
    "café crème brûlée", "naïve Zoë à l'école", "e\u0301te\u0301 (combining accents)",
    "猫がソファで寝ている", "一只在雪地里的狗", "고양이 사진", "قطة على الأريكة",
    "बिल्ली की तस्वीर", "แมวบนโซฟา", "кошка на диване", "ΣΊΣΥΦΟΣ και γάτες",
    "İstanbul'da ışık", "STRASSE straße Maße", "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "ﬁsh ﬂower ligatures",
    "“curly” ‘quotes’ — dashes…", "cafÃ© mojibake Ã©tÃ©", "\u200bzero\u200bwidth", "a\u00a0b",
    "line\u2028separator", "tab\there", "new\nline", "crlf\r\nend", "bell\x07nul\x00",
    "\x1b[31mred terminal\x1b[0m", "soft\u00adhyphen", "ypogegrammeni \u0345 alone",
    "Ⅻ ½ ² ٣ ௰ numbers", "🚀🐱‍👤 emoji", "👨‍👩‍👧‍👦 family", "🇫🇷🇯🇵 flags", "👍🏽 skin",
    "\U0001f600\U0001f9ec\U0001fae0 newer emoji", "\ufffd replacement", "\U00010348 gothic",
)  # fmt: skip
HTML = (
    "fish &amp; chips", "&lt;b&gt;bold&lt;/b&gt;", "it&#39;s &quot;quoted&quot;",
    "caf&eacute; &nbsp; space", "&#x1F600; smile", "&amp;amp;lt; twice escaped",
    "&amp;amp;amp;amp; four times", "<b>raw tags</b> & ampersand", "AT&T and R&D",
)  # fmt: skip
ASCII = (
    "It's I'M they'RE we've YOU'LL she'd I'm", "don't WON'T can't", "1234567890",
    "3.14 1,000,000 -42 +7e10", "!!!???...", "@#$%^*()_+-=[]{}|;:,./<>?`~", "'quoted'",
    "<start_of_text> literal", "x<<end_of_text>y", "<START_OF_TEXT>", "a<end_of_text>b",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "supercalifragilisticexpialidocious", "x" * 300,
    "camelCaseWords and snake_case_words", "http://example.com/a?b=c", "a.b.c", "",
    " ", "   \t\n  ", "MiXeD CaSe TeXt", "UPPER CASE TEXT",
)  # fmt: skip
SEPARATORS = (" ", "", "  ", "\n", ", ", "-", "\t", " & ", "'s ")


def _names() -> list[str]:
    lines = PROMPTS.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _recase(text: str, rng: random.Random) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return text.title()
    if choice == 2:
        return "".join(c.upper() if rng.random() < 0.3 else c for c in text)
    return text


def corpus(size: int = 4000, seed: int = 0) -> list[str]:
    """Captions from the build's prompt set, then mixtures of them with unicode, HTML,
    punctuation and long texts (past the 77-token context), seeded."""
    rng = random.Random(seed)
    names = _names()
    texts = [f"a photo of a {name}." for name in names]
    texts += list(UNICODE + HTML + ASCII)
    pools = (names, UNICODE, HTML, ASCII, names)
    while len(texts) < size:
        parts = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.1:  # long: dozens of words past the context
            parts += rng.choices(names, k=rng.randint(40, 120))
        text = rng.choice(SEPARATORS).join(_recase(p, rng) for p in parts)
        texts.append(f" {text} " if rng.random() < 0.1 else text)
    return texts


def _mismatches(ours: torch.Tensor, theirs: torch.Tensor, texts: list[str]) -> list[str]:
    return [repr(t) for t, a, b in zip(texts, ours, theirs, strict=True) if not torch.equal(a, b)]


def assert_same_ids(fast: FastClipTokenizer, reference: SimpleTokenizer, texts: list[str]) -> None:
    for start in range(0, len(texts), 512):
        batch = texts[start : start + 512]
        ours, theirs = fast(batch), reference(batch)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert not _mismatches(ours, theirs, batch)


def test_the_corpus_is_varied() -> None:
    texts = corpus()
    reference = open_clip.get_tokenizer("ViT-L-14")
    lengths = [len(reference.encode(basic_clean(t))) for t in texts]
    assert len(set(texts)) > 3500
    assert sum(n > 75 for n in lengths) > 100  # truncated, the end token kept
    assert sum(n == 0 for n in lengths) >= 3  # empty, whitespace, cleaned away
    assert sum(not t.isascii() for t in texts) > 1000


@pytest.mark.parametrize("model", SERVED_MODELS)
def test_served_models_get_the_fast_tokenizer_with_open_clips_ids(model: str) -> None:
    register_model_configs()
    fast = get_tokenizer(model)
    assert isinstance(fast, FastClipTokenizer)
    reference = open_clip.get_tokenizer(model)
    assert fast.context_length == reference.context_length == 77
    assert_same_ids(fast, reference, corpus())


def test_special_token_names_and_truncation_match() -> None:
    fast, reference = get_tokenizer("ViT-L-14"), open_clip.get_tokenizer("ViT-L-14")
    texts = ["<start_of_text> a cat", "a <end_of_text>", "word " * 200, ""]
    ids = fast(texts)
    assert torch.equal(ids, reference(texts))
    assert ids[0, 1] == reference.sot_token_id  # the name is the token, as open_clip has it
    assert ids[2, -1] == reference.eot_token_id and ids[2].count_nonzero() == 77
    assert ids[3, :3].tolist() == [reference.sot_token_id, reference.eot_token_id, 0]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gets_open_clips_ids(text: str) -> None:
    fast, reference = _vit_l()
    assert torch.equal(fast([text]), reference([text]))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200))
def test_printable_ascii_skips_only_what_changes_nothing(text: str) -> None:
    """The shortcut's premise: ftfy and HTML unescaping leave such text as it is."""
    if "&" not in text:
        assert basic_clean(text) == text.strip()
    fast, reference = _vit_l()
    assert torch.equal(fast([text]), reference([text]))


@functools.cache
def _vit_l() -> tuple[FastClipTokenizer, SimpleTokenizer]:
    fast = get_tokenizer("ViT-L-14")
    assert isinstance(fast, FastClipTokenizer)
    return fast, open_clip.get_tokenizer("ViT-L-14")


def _config(tmp_path: Path, name: str, **text_cfg: object) -> str:
    """A model config like the tiny one with these text settings, known to open_clip."""
    register_model_configs()
    config = json.loads(json.dumps(open_clip.get_model_config(TINY)))
    config["text_cfg"].update(text_cfg)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return name


@pytest.mark.parametrize("clean", ["whitespace", "canonicalize"])
def test_other_cleaning_modes_and_context_lengths_match(tmp_path: Path, clean: str) -> None:
    name = _config(
        tmp_path, f"clipsearch-test-{clean}", context_length=24, tokenizer_kwargs={"clean": clean}
    )
    fast = get_tokenizer(name)
    assert isinstance(fast, FastClipTokenizer) and fast.context_length == 24
    assert_same_ids(fast, open_clip.get_tokenizer(name), corpus(1500, seed=1))


def test_a_tokenizer_with_more_special_tokens_stays_open_clips(tmp_path: Path) -> None:
    kwargs = {"additional_special_tokens": ["<mask>"]}
    name = _config(tmp_path, "clipsearch-test-mask", tokenizer_kwargs=kwargs)
    tokenizer = get_tokenizer(name)
    assert type(tokenizer) is SimpleTokenizer


def test_pickled_tokenizer_gives_the_same_ids() -> None:
    """Embedding workers (forked processes, Ray) receive the tokenizer pickled."""
    fast, reference = _vit_l()
    texts = corpus(500, seed=2)
    assert torch.equal(pickle.loads(pickle.dumps(fast))(texts), reference(texts))


def test_the_encoder_tokenizes_with_it(tiny_encoder: ClipEncoder) -> None:
    assert isinstance(tiny_encoder.tokenizer, FastClipTokenizer)
    texts = corpus(300, seed=3)
    assert torch.equal(tiny_encoder.tokenize(texts), open_clip.get_tokenizer(TINY)(texts))
