"""Token-level pieces both tracks share: the seq2seq token layout, batch padding and the training loss's reduction.

torch is imported inside the functions, so data-only users of `competition` stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

if TYPE_CHECKING:
    import torch

Side = Literal["left", "right"]
IGNORE_INDEX = -100  # label of tokens without loss (an LLM prompt, padding)


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
