"""Tests for LLM generation (`llm.generate`): batching order, stopping, resumable prediction files.

Run: .venv/bin/python -m pytest tests/test_llm_generate.py -q
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json

import pandas as pd
import pytest
import torch

from competition.modeling.prompts import encode_for_generation, left_pad_batch
from competition.rules.predictions import PredictionMeta, fill_empty, read_predictions_with_metadata
from llm.config import load_config
from llm.generate import (
    generate_summaries,
    generation_kwargs,
    length_sorted_batches,
    partial_path,
    predict_to_file,
    stop_token_ids,
)
from llm.model import load_checkpoint, load_for_training, save_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny Llama saved as a full checkpoint: deterministic greedy output, real loading path."""
    config = load_config("tiny-llama", overrides={"finetune": "full", "max_new_tokens": 6, "per_device_eval_batch_size": 3})
    model, tokenizer, style, info = load_for_training(config, [])
    folder = save_checkpoint(model, tokenizer, style, info, tmp_path_factory.mktemp("ckpt") / "best")
    return folder, config


def test_length_sorted_batches_cover_every_row_once_longest_first():
    lengths = [5, 50, 7, 49, 1, 30, 30]
    batches = length_sorted_batches(lengths, 3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert [len(b) for b in batches] == [3, 3, 1]


def test_a_token_budget_gives_long_prompts_smaller_batches():
    lengths = [5, 50, 7, 49, 1, 30, 30, 200]
    batches = length_sorted_batches(lengths, 3, max_tokens=100)
    assert [[lengths[i] for i in b] for b in batches] == [[200], [50, 49], [30, 30, 7], [5, 1]]
    assert length_sorted_batches(lengths, 3, max_tokens=0) == length_sorted_batches(lengths, 3)


def test_stops_on_eos_and_on_the_end_marker():
    config = load_config("tiny-neox", overrides={"quantization": "none"})
    model, tokenizer, style, _ = load_for_training(config, [])
    assert style.end_marker == "<|endofsummary|>"
    ids = stop_token_ids(model, tokenizer, style)
    assert tokenizer.convert_tokens_to_ids("<|endofsummary|>") in ids and tokenizer.eos_token_id in ids
    assert "stop_strings" not in generation_kwargs(config, model, tokenizer, style)  # one token: stops by id


def test_fill_empty_uses_the_first_utterance_and_counts():
    filled, empty = fill_empty(["요약", "  "], ["#Person1#: 가\n#Person2#: 나", "#Person1#: 첫 줄\n#Person2#: 둘"])
    assert filled == ["요약", "#Person1#: 첫 줄"] and empty == 1


class Killed(Exception):
    """Stands in for a killed prediction process."""


def test_interrupted_prediction_resumes_with_only_the_missing_fnames(tiny_checkpoint, sample_dir, tmp_path):
    folder, config = tiny_checkpoint
    model, tokenizer, style, _ = load_checkpoint(folder, config)
    test = pd.read_csv(sample_dir / "test.csv", dtype=str, keep_default_na=False).head(8)
    fnames, dialogues = list(test["fname"]), list(test["dialogue"])
    out = tmp_path / "preds_test.csv"
    first_batch: list[int] = []

    def kill_after_first_batch(indices, summaries):
        first_batch.extend(indices)
        raise Killed

    with pytest.raises(Killed):
        predict_to_file(model, tokenizer, style, fnames, dialogues, out, config, PredictionMeta("test"),
                        on_batch=kill_after_first_batch)
    assert not out.exists()  # no half-written CSV
    saved = [json.loads(line)["fname"] for line in partial_path(out).read_text(encoding="utf-8").splitlines()]
    assert sorted(saved) == sorted(fnames[i] for i in first_batch) and len(saved) == config.per_device_eval_batch_size

    regenerated: list[int] = []
    summaries = predict_to_file(model, tokenizer, style, fnames, dialogues, out, config, PredictionMeta("test"),
                                on_batch=lambda indices, _: regenerated.extend(indices))
    assert sorted(regenerated) == sorted(set(range(8)) - set(first_batch))
    frame, meta = read_predictions_with_metadata(out)
    assert list(frame["fname"]) == fnames and frame["fname"].is_unique
    assert meta["resumed_rows"] == len(first_batch) and meta["split"] == "test"
    assert not partial_path(out).exists()
    uninterrupted = predict_to_file(model, tokenizer, style, fnames, dialogues, tmp_path / "again.csv", config, PredictionMeta())
    assert summaries == uninterrupted  # greedy decoding: resuming changes nothing
    assert all(s.strip() for s in frame["summary"])


def _adapter_checkpoint(folder, quantization: str):
    """A tiny-llama LoRA checkpoint whose adapter changes the output (B factors drawn, not zero)."""
    config = load_config("tiny-llama", overrides={"finetune": "lora", "quantization": quantization,
                                                  "predict_with": "adapter", "max_new_tokens": 8,
                                                  "per_device_eval_batch_size": 3})
    torch.manual_seed(0)
    model, tokenizer, style, info = load_for_training(config, [])
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    return save_checkpoint(model, tokenizer, style, info, folder / "best"), config


def _last_logits(loaded, dialogues: list[str]) -> torch.Tensor:
    model, tokenizer, style, _ = loaded
    batch = left_pad_batch(tokenizer, [encode_for_generation(tokenizer, style, d).input_ids for d in dialogues])
    with torch.inference_mode():
        return model(**{k: v.to(model.device) for k, v in batch.items()}).logits[:, -1].float()


def _is_quantized(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "is_quantized", False) or getattr(base.config, "quantization_config", None) is not None


def _adapter_and_dequantized(folder, config):
    dequantized = load_config("tiny-llama", overrides={**{k: getattr(config, k) for k in (
        "finetune", "quantization", "max_new_tokens", "per_device_eval_batch_size")}, "predict_with": "dequantized"})
    return load_checkpoint(folder, config), load_checkpoint(folder, dequantized), dequantized


def test_predict_with_dequantized_keeps_the_adapter_unmerged_and_its_summaries(tmp_path, sample_dir):
    folder, config = _adapter_checkpoint(tmp_path, "none")  # a plain base: nothing to dequantize
    adapter, dequantized, dequantized_config = _adapter_and_dequantized(folder, config)
    assert all(any("lora_" in name for name, _ in loaded[0].named_parameters()) for loaded in (adapter, dequantized))
    dialogues = list(pd.read_csv(sample_dir / "dev.csv", dtype=str, keep_default_na=False)["dialogue"].head(4))
    torch.testing.assert_close(_last_logits(dequantized, dialogues), _last_logits(adapter, dialogues))
    texts = [generate_summaries(*loaded[:3], dialogues, cfg) for loaded, cfg in ((adapter, config),
                                                                                 (dequantized, dequantized_config))]
    assert texts[0] == texts[1] and any(texts[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="NF4 needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
def test_dequantized_nf4_base_gives_the_quantized_models_logits_without_quantized_kernels(tmp_path, sample_dir):
    """predict_with=dequantized on QLoRA: the NF4 weights as bf16 tensors plus the unmerged adapter, so the fast loop
    can capture its CUDA graph. Both paths multiply by the same bf16 values (bitsandbytes dequantizes too) in another
    order, so each is measured against the exact arithmetic: the same values in fp32. On an H200 the two paths agreed
    to cosines 0.994-0.9995 with each other (merging the adapter first: 0.997-0.9997), too loose a yardstick alone."""
    folder, config = _adapter_checkpoint(tmp_path, "nf4")
    adapter, unquantized, _ = _adapter_and_dequantized(folder, config)
    assert _is_quantized(adapter[0]) and not _is_quantized(unquantized[0])
    dialogues = list(pd.read_csv(sample_dir / "dev.csv", dtype=str, keep_default_na=False)["dialogue"].head(4))
    quantized, dequantized = _last_logits(adapter, dialogues), _last_logits(unquantized, dialogues)
    exact = _last_logits((copy.deepcopy(unquantized[0]).float(), *unquantized[1:]), dialogues)

    def error(logits: torch.Tensor) -> float:
        return float((logits - exact).norm() / exact.norm())

    assert error(quantized) < 0.1, error(quantized)  # the yardstick itself: NF4 + adapter is close to exact
    assert error(dequantized) <= 2 * error(quantized) + 1e-3, (error(dequantized), error(quantized))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="NF4 needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
def test_a_4bit_base_decodes_in_a_cuda_graph_with_generates_tokens(tmp_path, sample_dir, monkeypatch):
    """predict_with=adapter on QLoRA: the fast loop captures the NF4 step (bitsandbytes' kernels on the capturing
    stream) and replays it, token for token what `model.generate` picks (fp32 compute: no bf16 near-ties)."""
    import llm.decode

    folder, config = _adapter_checkpoint(tmp_path, "nf4")
    config = load_config("tiny-llama", overrides={**{k: getattr(config, k) for k in (
        "finetune", "quantization", "max_new_tokens", "per_device_eval_batch_size")}, "predict_with": "adapter",
        "precision": "fp32", "max_new_tokens": 24})
    model, tokenizer, style, _ = load_checkpoint(folder, config)
    assert _is_quantized(model)
    graphs = []
    capture = llm.decode._capture
    monkeypatch.setattr(llm.decode, "_capture", lambda *args: graphs.append(capture(*args)) or graphs[-1])
    dialogues = list(pd.read_csv(sample_dir / "dev.csv", dtype=str, keep_default_na=False)["dialogue"].head(6))
    fast = generate_summaries(model, tokenizer, style, dialogues, config)
    assert graphs and all(graph is not None for graph in graphs)  # captured, not fallen back to eager steps
    eager = generate_summaries(model, tokenizer, style, dialogues, dataclasses.replace(config, decoding="generate"))
    assert fast == eager and any(fast)
