"""Tests for LLM generation (`llm.generate`): batching order, stopping, resumable prediction files.

Run: .venv/bin/python -m pytest tests/test_llm_generate.py -q
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from competition.predictions import fill_empty, read_predictions_with_metadata
from llm.config import load_config
from llm.generate import generation_kwargs, length_sorted_batches, partial_path, predict_to_file, stop_token_ids
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
        predict_to_file(model, tokenizer, style, fnames, dialogues, out, config, {"split": "test"},
                        on_batch=kill_after_first_batch)
    assert not out.exists()  # no half-written CSV
    saved = [json.loads(line)["fname"] for line in partial_path(out).read_text(encoding="utf-8").splitlines()]
    assert sorted(saved) == sorted(fnames[i] for i in first_batch) and len(saved) == config.per_device_eval_batch_size

    regenerated: list[int] = []
    summaries = predict_to_file(model, tokenizer, style, fnames, dialogues, out, config, {"split": "test"},
                                on_batch=lambda indices, _: regenerated.extend(indices))
    assert sorted(regenerated) == sorted(set(range(8)) - set(first_batch))
    frame, meta = read_predictions_with_metadata(out)
    assert list(frame["fname"]) == fnames and frame["fname"].is_unique
    assert meta["resumed_rows"] == len(first_batch) and meta["split"] == "test"
    assert not partial_path(out).exists()
    uninterrupted = predict_to_file(model, tokenizer, style, fnames, dialogues, tmp_path / "again.csv", config, {})
    assert summaries == uninterrupted  # greedy decoding: resuming changes nothing
    assert all(s.strip() for s in frame["summary"])
