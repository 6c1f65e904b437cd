"""Batched beam-search prediction from a saved checkpoint (`run/best`), in input order, never dropping a row.

Dialogues are sorted by length so each batch pads little, and written back in their original order.
With `max_new_tokens_by_length`, each dialogue-length bucket gets its own summary budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from baselines.config import BaselineConfig
from baselines.model import configure_family, decode, encode_texts, generation_kwargs, load_pretrained
from baselines.train import TRACK_INFO
from competition.modeling.attention import configure_attention
from competition.modeling.loading import precision_dtype, resolve_precision
from competition.modeling.oom import SplitOnOom, split_rows

GENERATION_OOM_HINT = "set a smaller num_beams, max_source_length or generation_max_length"  # one dialogue did not fit


def summary_budget(dialogue_tokens: int, config: BaselineConfig) -> dict[str, int]:
    """Length limit for one dialogue: its bucket's max_new_tokens, or the config's generation_max_length."""
    budget = None
    for min_tokens, max_new_tokens in sorted(config.max_new_tokens_by_length):
        if dialogue_tokens >= min_tokens:
            budget = max_new_tokens
    return {"max_new_tokens": budget} if budget is not None else {"max_length": config.generation_max_length}


def batches_by_length(lengths: Sequence[int], budgets: Sequence[dict[str, int]], batch_size: int) -> list[list[int]]:
    """Row indices grouped into batches of one budget each, longest dialogues first."""
    order = sorted(range(len(lengths)), key=lambda i: (sorted(budgets[i].items()), -lengths[i]))
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and budgets[batches[-1][0]] == budgets[index]:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def load_for_inference(checkpoint_dir: Path | str, config: BaselineConfig):
    """Tokenizer, model (eval mode, on GPU when present, bf16/fp16 where supported) and token layout."""
    checkpoint_dir = Path(checkpoint_dir)
    info_path = checkpoint_dir / TRACK_INFO
    if not info_path.is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: no {TRACK_INFO}; expected a `best/` folder written by baselines.train")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    tokenizer, model = load_pretrained(checkpoint_dir, allow_bin_weights=False)
    configure_attention(model, config)
    layout = configure_family(tokenizer, model, info["family"], info.get("mbart_lang", config.mbart_lang))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        model = model.to(precision_dtype(resolve_precision(config.precision)))
    return tokenizer, model.to(device).eval(), layout


@torch.inference_mode()
def predict(checkpoint_dir: Path | str, dialogues: Sequence[str], config: BaselineConfig,
            desc: str = "predict") -> list[str]:
    """Summaries for `dialogues`, in the same order, by beam search with the config's generation settings."""
    tokenizer, model, layout = load_for_inference(checkpoint_dir, config)
    inputs, lengths = encode_texts(tokenizer, dialogues, layout.encoder_prefix, layout.eos, config.max_source_length)
    budgets = [summary_budget(n, config) for n in lengths]
    summaries: list[str | None] = [None] * len(dialogues)
    batches = batches_by_length([len(ids) for ids in inputs], budgets, config.per_device_eval_batch_size)
    splitter = SplitOnOom("generation", GENERATION_OOM_HINT)  # an OOM splits the batch; later batches stay split
    with tqdm(total=len(dialogues), desc=desc, unit="dialogue") as progress:
        for batch in batches:
            padded = tokenizer.pad({"input_ids": [inputs[i] for i in batch]}, return_tensors="pt").to(model.device)

            def attempt(parts: int, retry: bool) -> list[str]:  # row pieces keep the batch's padding
                return [text for piece in split_rows(dict(padded), parts)
                        for text in decode(tokenizer, model.generate(**piece, **generation_kwargs(config),
                                                                     **budgets[batch[0]]))]

            for index, text in zip(batch, splitter.run(attempt, len(batch), batch=desc)):
                summaries[index] = text
            progress.update(len(batch))
    missing = [i for i, s in enumerate(summaries) if s is None]
    if missing:  # cannot happen unless batching is broken; never silently drop a row
        raise RuntimeError(f"no summary for rows {missing[:5]}")
    return summaries  # type: ignore[return-value]
