"""Model-side pieces both tracks share: tokenizer loading, the seq2seq token layout, the precision choice, batch
padding and the training loss's reduction.

torch and transformers are imported inside the functions, so data-only users of `competition` stay light.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from competition.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Side = Literal["left", "right"]
MIN_VOCAB_SHARE = 0.5  # a tokenizer below this share of config.json vocab_size is broken
IGNORE_INDEX = -100  # label of tokens without loss (an LLM prompt, padding)
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


# ---------------------------------------------------------------- seq2seq token layout

SEQ2SEQ_FAMILIES = ("bart", "t5", "mbart")


@dataclass(frozen=True)
class TokenLayout:
    """Special-token ids around seq2seq encoder inputs and labels, and the decoder's start token.

    What the pretrained checkpoints saw, built explicitly instead of trusting each tokenizer's post-processor
    (KoBART's tokenizer adds no <s>/</s> at all, tiny-bart's does):
        bart:  encoder `<s> dialogue </s>`,  labels `<s> summary </s>`,  decoder start `</s>`
        t5:    encoder `dialogue </s>`,      labels `summary </s>`,      decoder start `<pad>`
        mbart: encoder `ko_KR dialogue </s>`, labels `ko_KR summary </s>`, decoder start `</s>`, forced BOS ko_KR
    """

    encoder_prefix: tuple[int, ...]
    label_prefix: tuple[int, ...]
    eos: int
    decoder_start: int

    def encoder_length(self, content_tokens: int) -> int:
        """Encoder tokens of a dialogue of `content_tokens` tokens, specials included (what the budget counts)."""
        return len(self.encoder_prefix) + content_tokens + 1

    def label_length(self, content_tokens: int) -> int:
        """Label tokens of a summary of `content_tokens` tokens, specials included."""
        return len(self.label_prefix) + content_tokens + 1


def seq2seq_layout(tokenizer, family: str, mbart_lang: str = "ko_KR") -> TokenLayout:
    """The token layout of a seq2seq family (bart, t5, mbart) with this tokenizer's ids."""
    if family not in SEQ2SEQ_FAMILIES:
        raise ValueError(f"family '{family}': expected one of {SEQ2SEQ_FAMILIES}")
    eos = tokenizer.eos_token_id
    if family == "bart":
        return TokenLayout((tokenizer.bos_token_id,), (tokenizer.bos_token_id,), eos, eos)
    if family == "t5":
        return TokenLayout((), (), eos, tokenizer.pad_token_id)
    lang = tokenizer.convert_tokens_to_ids(mbart_lang)
    if lang is None or lang == tokenizer.unk_token_id:
        raise ValueError(f"mBART language code '{mbart_lang}' is not in the tokenizer")
    return TokenLayout((lang,), (lang,), eos, eos)


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


# ---------------------------------------------------------------- loss

def token_sum_loss(logits: "torch.Tensor", targets: "torch.Tensor",
                   num_items_in_batch: "torch.Tensor | int | None" = None,
                   label_smoothing: float = 0.0) -> "torch.Tensor":
    """Cross-entropy summed over the target tokens (not IGNORE_INDEX), divided by the Trainer's count of them.

    The Trainer counts the targets of the whole optimizer step, over accumulation steps and DDP ranks, so every
    target token weighs the same however the step is split (transformers' causal-LM reduction). Without a count,
    the mean over this batch's targets.
    """
    import torch.nn.functional as F

    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).to(logits.device),
                           ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing)
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return loss / (count.to(loss.device) if hasattr(count, "to") else count)
