"""The embedding space a model names, worked out without loading its weights.

Imported vectors were made elsewhere; the user names the model that made them. The
collection must record exactly what `load_encoder` would report for that model (its
dim and preprocessing), or the server, which compares the two, refuses the index. That
comes from OpenCLIP's model config (embed_dim, image size) and the pretrained tag's
config (mean, std, interpolation, resize), both plain data: no weights, no network.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import open_clip
from open_clip.transform import PreprocessCfg

from clipsearch.encoder import register_model_configs, resolve_weights, tag_preprocess
from clipsearch.encoder.spec import PreprocessOverrides
from clipsearch.encoder.weights import CONFIG_FILE, HF_HUB_PREFIX, UnknownModelError
from clipsearch.models import SEED_MODELS, EmbeddingSpace, ModelSpec, PreprocessConfig

_LOCAL_DIR = "local-dir:"


def model_space(spec: ModelSpec) -> EmbeddingSpace:
    """What `load_encoder(spec).info.space` would be. Pretrained tags need nothing on this
    host; `none` and checkpoint files need nothing but the file; hf-hub ids need the repo in
    the Hugging Face cache (the server will need its weights anyway)."""
    register_model_configs()
    from_hub = spec.pretrained.startswith(HF_HUB_PREFIX)
    if not from_hub and open_clip.get_pretrained_cfg(spec.model, spec.pretrained):
        model_name, overrides = spec.model, tag_preprocess(spec.model, spec.pretrained)
    else:  # none, a checkpoint file or a hub repo: weights.py knows where each one's config is
        resolved = resolve_weights(spec, allow_download=False)
        model_name, overrides = resolved.model_name, resolved.preprocess
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise UnknownModelError(f"--model {spec.model!r} is not an OpenCLIP architecture")
    preprocess = _preprocess(config, _repo_preprocess(model_name), overrides)
    if from_hub:  # as load_encoder records a hub model: the repo is the model
        return EmbeddingSpace(spec.pretrained, "", int(config["embed_dim"]), preprocess)
    return EmbeddingSpace(spec.model, spec.pretrained, int(config["embed_dim"]), preprocess)


def activation_warning(spec: ModelSpec) -> str | None:
    """Weights trained with QuickGELU named on an architecture without it: OpenAI's CLIP
    (clip-retrieval's default `ViT-B/32`; `open_clip:ViT-B-32/openai` with open_clip 2)
    computed its vectors with QuickGELU, and the server would encode queries without."""
    tag = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
    config = open_clip.get_model_config(spec.model) or {}
    if not tag.get("quick_gelu") or config.get("quick_gelu"):
        return None
    fixed = f"{spec.model}-quickgelu"
    instead = f"--model {fixed}" if fixed in open_clip.list_models() else "a -quickgelu model"
    return (
        f"{spec.model}/{spec.pretrained} was trained with QuickGELU activations, which "
        f"{spec.model} lacks: vectors made by OpenAI's CLIP (clip-retrieval's default "
        f"ViT-B/32, or open_clip before 3.0) need {instead}, or the queries the server "
        "encodes will not match them"
    )


def models_of_dim(dim: int, limit: int = 6) -> list[str]:
    """Architectures whose embeddings have `dim` dimensions, for a hint: the seed models
    first, then plain ViTs, then the rest."""
    register_model_configs()
    seeds = [s.model for s in SEED_MODELS]
    found = []
    for name in open_clip.list_models():
        config = open_clip.get_model_config(name)
        if config is not None and config.get("embed_dim") == dim:
            found.append(name)
    found.sort(key=lambda n: (n not in seeds, not n.startswith("ViT-"), n))
    return found[:limit]


def _preprocess(
    config: dict[str, object], repo: dict[str, object], overrides: PreprocessOverrides
) -> PreprocessConfig:
    """OpenCLIP's order: its defaults, then a hub repo's preprocess_cfg, the image size of
    the architecture, and last the overrides clipsearch passes when it builds the model."""
    merged: dict[str, object] = asdict(PreprocessCfg())
    merged.update({k: v for k, v in repo.items() if k in merged})
    vision = config.get("vision_cfg")
    if isinstance(vision, dict) and "image_size" in vision:
        merged["size"] = vision["image_size"]
    merged.update({k: v for k, v in asdict(overrides).items() if v is not None})
    size = merged["size"]
    sides = [size, size] if isinstance(size, int) else list(size)  # type: ignore[call-overload]
    return PreprocessConfig(
        size=(int(sides[0]), int(sides[1])),
        mean=tuple(float(v) for v in merged["mean"]),  # type: ignore[attr-defined]
        std=tuple(float(v) for v in merged["std"]),  # type: ignore[attr-defined]
        interpolation=str(merged["interpolation"]),
        resize_mode=str(merged["resize_mode"]),
        fill_color=int(merged["fill_color"]),  # type: ignore[call-overload]
    )


def _repo_preprocess(model_name: str) -> dict[str, object]:
    """A hub repo's own preprocess_cfg (its open_clip_config.json); empty for the others."""
    if not model_name.startswith(_LOCAL_DIR):
        return {}
    path = Path(model_name[len(_LOCAL_DIR) :]) / CONFIG_FILE
    raw = json.loads(path.read_text(encoding="utf-8")).get("preprocess_cfg", {})
    return dict(raw) if isinstance(raw, dict) else {}
