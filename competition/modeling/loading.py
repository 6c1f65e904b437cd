"""Where a preset's model loads from, its tokenizer, and the precision to compute in.

torch and transformers are imported inside the functions, so data-only users of `competition` stay light.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from competition.harness.presets import Preset
from competition.modeling.tiny import ensure_tiny_checkpoint
from competition.rules.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MIN_VOCAB_SHARE = 0.5  # a tokenizer below this share of config.json vocab_size is broken
HUB_CHECK_TIMEOUT_S = 10.0  # one request; the libraries' own retries take about 50 s
PRECISION_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # precision -> torch dtype name


def model_source(preset: Preset, model_path: str | Path | None = None, way_out: str = "model_path=DIR") -> str:
    """Where a preset loads from: `model_path` (a local folder with the preset's files) when given, else the local
    folder of a tiny preset, else its hub id, once the hub answers (`check_hub`; `way_out` is what the error advises
    instead). The same `from_pretrained` code loads all three."""
    if model_path:
        folder = Path(model_path).expanduser()
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model_path {model_path}: not a folder with config.json (the preset's files: config, "
                              f"tokenizer and weights, e.g. from `python -m competition.build_checkpoint`)")
        return str(folder)
    if preset.tiny:
        return str(ensure_tiny_checkpoint(preset))
    if not preset.hub_id:
        raise ValueError(f"preset {preset.name} has no hub_id")
    check_hub(preset.hub_id, preset.name, way_out)
    return preset.hub_id


def check_hub(hub_id: str, preset_name: str, way_out: str = "model_path=DIR") -> None:
    """One request to the model hub before `hub_id` loads from it, so that an unreachable hub is one ConfigError
    naming the id and the way out, not the libraries' retries (about 50 s) ending in "couldn't connect". With
    HF_HUB_OFFLINE=1 nothing is asked: the cache answers."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return
    try:
        HfApi().model_info(hub_id, timeout=HUB_CHECK_TIMEOUT_S)
    except HfHubHTTPError:
        return  # the hub answered (gated, private, no such repo): the load itself says which
    except Exception as err:  # no network, DNS, proxy, timeout: the transport's own error types
        cached = isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
        advice = (f"its files are in your cache: set HF_HUB_OFFLINE=1 to use them, or pass {way_out}" if cached else
                  f"pass {way_out} (a local folder with the model's files), or set HF_HUB_OFFLINE=1 with a filled "
                  f"cache")
        raise ConfigError(f"cannot reach the Hugging Face hub for '{hub_id}' (preset {preset_name}; "
                          f"{type(err).__name__}): {advice}") from None


def ensure_pad_token(tokenizer) -> int:
    """Give a tokenizer without pad token (llama3, gpt-neox) one: its eos. Labels never depend on pad ids here."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError("tokenizer has neither a pad nor an eos token; add a pad token first")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.pad_token_id


def load_tokenizer(source: str | Path, trust_remote_code: bool = False):
    """The tokenizer of a hub id or local folder, with a pad token (eos for Llama 3 / GPT-NeoX, which have none).

    A tokenizer far smaller than the model's vocabulary is refused (ConfigError naming the source): transformers 5
    builds a near-empty tokenizer from a folder without vocabulary files instead of failing.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if not Path(source).is_dir():
            raise  # a hub id: the caller knows the preset (gated? offline?)
        raise ConfigError(f"{source}: no loadable tokenizer in that folder ({str(err).strip()[:300]})") from None
    check_tokenizer_size(tokenizer, source)
    ensure_pad_token(tokenizer)
    return tokenizer


def config_vocab_size(source: str | Path) -> int | None:
    """`vocab_size` of the model config beside a tokenizer (a folder's config.json or the hub's); None if none."""
    from transformers.utils import cached_file

    try:
        path = cached_file(str(source), "config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:  # hub unreachable or no such repo: the tokenizer loaded, so nothing to compare with
        return None
    if not path:
        return None
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    size = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    return int(size) if size else None


def check_tokenizer_size(tokenizer, source: str | Path) -> None:
    """Refuse a tokenizer with under MIN_VOCAB_SHARE of the config's vocabulary (a folder without vocab files)."""
    expected = config_vocab_size(source)
    if expected and len(tokenizer) < MIN_VOCAB_SHARE * expected:
        raise ConfigError(
            f"{source}: the tokenizer loaded with {len(tokenizer)} tokens but config.json says vocab_size "
            f"{expected}: no usable vocabulary file (tokenizer.json, tokenizer.model or vocab.json + merges.txt) "
            f"in that folder; add the model's tokenizer files or point to a complete folder")


def half_precision(cuda: bool | None = None, bf16_supported: bool | None = None) -> str:
    """The 16-bit precision of this machine: bf16, except fp16 on a GPU without bf16 (T4, V100)."""
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if not cuda:
        return "bf16"
    return "bf16" if (torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported) else "fp16"


def resolve_precision(requested: str = "auto", saved: "torch.dtype | None" = None, cuda: bool | None = None,
                      bf16_supported: bool | None = None) -> str:
    """`bf16`, `fp16` or `fp32`: an explicit request as it is; `auto` is fp32 without a GPU, else the GPU's half
    precision, except that a checkpoint saved in fp16 (`saved`) stays fp16.

    `cuda` and `bf16_supported` default to what this machine has (they are parameters for tests).
    """
    import torch

    if requested != "auto":
        return requested
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return "fp32"
    if saved == torch.float16:
        return "fp16"
    half = half_precision(True, bf16_supported)
    if half == "fp16" and saved == torch.bfloat16:
        log.warning("checkpoint is bf16 but this GPU has no bf16: computing in fp16 (watch for overflow / NaN loss)")
    return half


def precision_dtype(precision: str) -> "torch.dtype":
    """The torch dtype of `bf16`, `fp16` or `fp32`."""
    import torch

    return getattr(torch, PRECISION_DTYPES[precision])
