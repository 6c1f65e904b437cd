"""Model-side pieces both tracks share: tokenizer loading, the precision choice and batch padding.

torch and transformers are imported inside the functions, so data-only users of `competition` stay light.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from competition.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Side = Literal["left", "right"]
PRECISION_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # precision -> torch dtype name


# ---------------------------------------------------------------- tokenizer

def ensure_pad_token(tokenizer) -> int:
    """Give a tokenizer without pad token (llama3, gpt-neox) one: its eos. Labels never depend on pad ids here."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError("tokenizer has neither a pad nor an eos token; add a pad token first")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.pad_token_id


def load_tokenizer(source: str | Path, trust_remote_code: bool = False):
    """The tokenizer of a hub id or local folder, with a pad token (eos for Llama 3 / GPT-NeoX, which have none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer)
    return tokenizer


# ---------------------------------------------------------------- precision

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


# ---------------------------------------------------------------- padding

def padded_width(longest: int, multiple: int = 1) -> int:
    """The width a padded batch gets: its longest row rounded up to `multiple`."""
    return -(-longest // multiple) * multiple


def pad_rows(rows: Sequence[Sequence[int]], value: int, side: Side = "right",
             multiple: int = 1) -> "tuple[torch.Tensor, torch.Tensor]":
    """[B, W] long tensors of `rows` padded with `value` on `side` to the longest row (rounded up to `multiple`),
    and the attention mask (1 on real tokens)."""
    import torch

    width = padded_width(max((len(row) for row in rows), default=0), multiple)
    padded = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        if not row:  # a slice [width - 0:] would be the whole row
            continue
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        padded[index, span] = torch.tensor(list(row), dtype=torch.long)
        mask[index, span] = 1
    return padded, mask
