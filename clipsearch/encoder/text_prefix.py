"""Run OpenCLIP's text tower on only as many token positions as a batch needs.

The CLIP text transformer is causal and pools at one token (the end-of-text token), so
the outputs at that token never depend on the padding after it. Cutting a batch to its
longest real sequence gives the same vectors (within float rounding) for a fraction of
the work: search queries are a few tokens long, the context is 77.
"""

from __future__ import annotations

import open_clip
import torch


def supports_prefix(model: object) -> bool:
    """Whether `model` is a CLIP text tower where trimming is exact: causal, pooled at a token."""
    return (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "attn_mask", None) is not None
        and model.text_pool_type in ("argmax", "eos")
    )


def pooled_positions(model: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """The position each sequence is pooled at, as the model's own pooling chooses it."""
    if model.text_pool_type == "argmax":
        return tokens.argmax(dim=-1)
    eos: torch.Tensor = tokens == model.text_eos_id
    return eos.int().argmax(dim=-1)


def encode_text_prefix(model: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text(tokens)` computed on the first positions only (unnormalised)."""
    length = int(pooled_positions(model, tokens).max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    assert isinstance(x, torch.Tensor)
    rows = torch.arange(x.shape[0], device=x.device)
    x = x[rows, pooled_positions(model, tokens)]
    projection = model.text_projection
    if projection is None:
        return x
    projected: torch.Tensor = (
        projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    )
    return projected
