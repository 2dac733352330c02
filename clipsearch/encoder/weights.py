"""Where a model's weights and preprocessing come from.

Every network or cache access for model weights happens here: pretrained tags and
`hf-hub:` ids resolve through the Hugging Face cache (so a host with the files cached,
or with HF_HUB_OFFLINE=1, never touches the network), local checkpoint files are used
as they are, and `none` means random init. When weights are neither cached nor
downloadable the error says which files to place where.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
from huggingface_hub import constants as hub_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError

from clipsearch.encoder.spec import PreprocessOverrides
from clipsearch.errors import ClipsearchError
from clipsearch.models import ModelSpec

log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"
SAFETENSORS_FILE = "open_clip_model.safetensors"
PYTORCH_FILE = "open_clip_pytorch_model.bin"
HF_HUB_PREFIX = "hf-hub:"
RANDOM_INIT = "none"
# A dead network must fail in seconds: huggingface_hub retries unreachable hosts with
# backoff for ~25 s per file, so reachability is probed once, briefly, before downloading.
CONNECT_TIMEOUT_S = 3.0
DOWNLOAD_TIMEOUT_S = 10.0


class WeightsUnavailableError(ClipsearchError, RuntimeError):
    """The requested weights are not on this host and could not be downloaded."""


class UnknownModelError(ClipsearchError, ValueError):
    """The model name or pretrained value does not name anything loadable."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Everything open_clip needs to build the model, with no network left to touch."""

    model_name: str
    checkpoint: Path | None
    preprocess: PreprocessOverrides
    description: str


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_weights(spec: ModelSpec, allow_download: bool = True) -> ResolvedWeights:
    """Turn a user's model spec into local files and preprocessing, or explain what is missing."""
    pretrained = spec.pretrained.strip()
    if pretrained.startswith(HF_HUB_PREFIX):
        return _resolve_hub_repo(pretrained[len(HF_HUB_PREFIX) :], spec, allow_download)
    _require_known_model(spec.model)
    if pretrained.lower() == RANDOM_INIT:
        return ResolvedWeights(
            model_name=spec.model,
            checkpoint=None,
            preprocess=_tag_preprocess(spec.model, spec.preprocess_tag),
            description=f"random init ({spec.model}, --pretrained none)",
        )
    if open_clip.get_pretrained_cfg(spec.model, pretrained):
        return _resolve_tag(spec.model, pretrained, allow_download)
    path = Path(pretrained).expanduser()
    if path.is_file():
        return _resolve_local_file(spec, path)
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.model)) or "none"
    raise UnknownModelError(
        f"--pretrained {pretrained!r} is neither a pretrained tag of {spec.model} nor an existing "
        f"file. Tags of {spec.model}: {tags}. Or pass hf-hub:ORG/REPO, a checkpoint path, or none."
    )


def tag_preprocess(model: str, tag: str) -> PreprocessOverrides:
    """The preprocessing OpenCLIP's pretrained config gives a tag (never hard-coded here)."""
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise UnknownModelError(f"{tag!r} is not a pretrained tag of {model}; its tags: {tags}")
    return PreprocessOverrides(
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg["interpolation"],
        resize_mode=cfg["resize_mode"],
    )


def _tag_preprocess(model: str, tag: str | None) -> PreprocessOverrides:
    return tag_preprocess(model, tag) if tag else PreprocessOverrides()


def _require_known_model(model: str) -> None:
    if model not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if model.lower()[:5] in m.lower()][:8]
        hint = f" Similar: {', '.join(close)}." if close else ""
        raise UnknownModelError(
            f"--model {model!r} is not an OpenCLIP architecture.{hint} "
            "`clipsearch models` lists the seed models."
        )


def _resolve_tag(model: str, tag: str, allow_download: bool) -> ResolvedWeights:
    cfg = open_clip.get_pretrained_cfg(model, tag)
    hub = str(cfg.get("hf_hub", ""))
    if not hub:
        raise WeightsUnavailableError(
            f"{model}/{tag} is only published at {cfg.get('url')}; download that file and pass "
            f"--pretrained PATH --preprocess-tag {tag}"
        )
    # OpenCLIP writes "org/repo/" for the repo's default file and "org/repo/file" otherwise.
    repo_id, filename = os.path.split(hub)
    filename = filename or PYTORCH_FILE
    repo_id = repo_id.rstrip("/")
    candidates = _with_safetensors_first(filename)
    checkpoint = _hub_file(repo_id, candidates, f"{model}/{tag}", tag, allow_download)
    return ResolvedWeights(
        model_name=model,
        checkpoint=checkpoint,
        preprocess=tag_preprocess(model, tag),
        description=f"{model}/{tag} from {checkpoint}",
    )


def _resolve_hub_repo(repo_id: str, spec: ModelSpec, allow_download: bool) -> ResolvedWeights:
    label = f"{HF_HUB_PREFIX}{repo_id}"
    config = _hub_file(repo_id, [CONFIG_FILE], label, None, allow_download)
    weights = _hub_file(repo_id, [SAFETENSORS_FILE, PYTORCH_FILE], label, None, allow_download)
    if config.parent != weights.parent:
        raise WeightsUnavailableError(
            f"{label}: {config.name} and {weights.name} are cached from different revisions "
            f"({config.parent} vs {weights.parent}); download both again"
        )
    preprocess = PreprocessOverrides()
    if spec.preprocess_tag:
        preprocess = tag_preprocess(spec.model, spec.preprocess_tag)
    # local-dir makes open_clip read the repo's own model and preprocess config from the snapshot.
    return ResolvedWeights(
        model_name=f"local-dir:{config.parent}",
        checkpoint=None,
        preprocess=preprocess,
        description=f"{label} from {weights}",
    )


def _resolve_local_file(spec: ModelSpec, path: Path) -> ResolvedWeights:
    if spec.preprocess_tag:
        preprocess = tag_preprocess(spec.model, spec.preprocess_tag)
    elif (sidecar := path.parent / CONFIG_FILE).is_file():
        preprocess = _preprocess_from_config_file(sidecar)
    else:
        preprocess = PreprocessOverrides()
        log.warning(
            "%s: no --preprocess-tag and no %s beside it, so %s's default preprocessing is used. "
            "If these weights come from a pretrained tag, pass --preprocess-tag TAG: the wrong "
            "mean/std silently degrades every embedding.",
            path,
            CONFIG_FILE,
            spec.model,
        )
    return ResolvedWeights(
        model_name=spec.model,
        checkpoint=path,
        preprocess=preprocess,
        description=f"{spec.model} from local checkpoint {path}",
    )


def _preprocess_from_config_file(path: Path) -> PreprocessOverrides:
    cfg = json.loads(path.read_text(encoding="utf-8")).get("preprocess_cfg", {})
    return PreprocessOverrides(
        mean=tuple(cfg["mean"]) if "mean" in cfg else None,
        std=tuple(cfg["std"]) if "std" in cfg else None,
        interpolation=cfg.get("interpolation"),
        resize_mode=cfg.get("resize_mode"),
    )


def _with_safetensors_first(filename: str) -> list[str]:
    if filename == PYTORCH_FILE:
        return [SAFETENSORS_FILE, PYTORCH_FILE]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _hub_file(
    repo_id: str,
    filenames: Sequence[str],
    label: str,
    tag: str | None,
    allow_download: bool,
) -> Path:
    """First of `filenames` in the cache, else downloaded; never a silent hang."""
    cache = hub_cache_dir()
    try:
        for name in filenames:
            cached = try_to_load_from_cache(repo_id, name, cache_dir=cache)
            if isinstance(cached, str):
                return Path(cached)
    except HFValidationError as err:
        raise UnknownModelError(f"{label}: {repo_id!r} is not a valid hub repo id ({err})") from err
    reason = "downloads are disabled"
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    elif allow_download and (unreachable := _hub_unreachable()):
        reason = unreachable
    elif allow_download:
        errors = []
        for name in filenames:
            try:
                path = hf_hub_download(
                    repo_id, name, cache_dir=cache, etag_timeout=DOWNLOAD_TIMEOUT_S
                )
                return Path(path)
            except Exception as err:  # any failure here means "not available": say why below
                errors.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0]}")
        reason = "download failed (" + "; ".join(errors) + ")"
    raise WeightsUnavailableError(_missing_weights_message(repo_id, filenames, label, tag, reason))


def _hub_unreachable() -> str | None:
    """None when the hub endpoint accepts a TCP connection, else why it does not."""
    endpoint = os.environ.get("HF_ENDPOINT") or hub_constants.ENDPOINT
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    name, _, port = host.partition(":")
    default_port = 80 if endpoint.startswith("http://") else 443
    try:
        with socket.create_connection((name, int(port or default_port)), CONNECT_TIMEOUT_S):
            return None
    except OSError as err:
        return f"the hub at {endpoint} cannot be reached ({err})"


def _missing_weights_message(
    repo_id: str, filenames: Sequence[str], label: str, tag: str | None, reason: str
) -> str:
    cache = hub_cache_dir()
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    files = " ".join(dict.fromkeys([filenames[0], CONFIG_FILE]))
    lines = [
        f"Weights for {label} are not in the Hugging Face cache ({cache}) and {reason}.",
        "Fix it in one of these ways:",
        f"  - on a machine with internet: `hf download {repo_id} {files}`, then copy its "
        f"{folder.name} folder into {cache} on this host (or set HF_HOME to a copied cache);",
    ]
    if tag:
        lines.append(
            f"  - or pass the checkpoint file directly: --pretrained /path/to/{filenames[0]} "
            f"--preprocess-tag {tag};"
        )
    lines.append("  - or, for tests and benchmarks only, --pretrained none (random weights).")
    return "\n".join(lines)
