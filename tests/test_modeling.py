"""Shared model-side helpers: padding, precision, tokenizer loading, the loss reduction.

Run: `.venv/bin/python -m pytest -q tests/test_modeling.py`.
"""

from __future__ import annotations

import pytest
import torch

from competition.harness.presets import get_preset
from competition.modeling.loading import half_precision, load_tokenizer, precision_dtype, resolve_precision
from competition.modeling.tiny import ensure_tiny_checkpoint
from competition.modeling.tokens import IGNORE_INDEX, pad_rows, padded_width, token_sum_loss
from competition.rules.errors import ConfigError


@pytest.mark.parametrize(("longest", "multiple", "width"), [(1, 8, 8), (8, 8, 8), (9, 8, 16), (5, 1, 5), (0, 8, 0)])
def test_padded_width_rounds_up(longest: int, multiple: int, width: int) -> None:
    assert padded_width(longest, multiple) == width


def test_pad_rows_right_and_left() -> None:
    rows = [[5, 6], [7, 8, 9], []]
    right, right_mask = pad_rows(rows, IGNORE_INDEX)
    assert right.tolist() == [[5, 6, IGNORE_INDEX], [7, 8, 9], [IGNORE_INDEX] * 3]
    assert right_mask.tolist() == [[1, 1, 0], [1, 1, 1], [0, 0, 0]]
    left, left_mask = pad_rows(rows, 0, "left", multiple=4)
    assert left.tolist() == [[0, 0, 5, 6], [0, 7, 8, 9], [0, 0, 0, 0]]
    assert left_mask.sum().item() == 5 and left.dtype == torch.long


@pytest.mark.parametrize(("requested", "saved", "cuda", "bf16", "expected"), [
    ("auto", None, False, False, "fp32"),
    ("auto", None, True, True, "bf16"),
    ("auto", None, True, False, "fp16"),
    ("auto", torch.float16, True, True, "fp16"),  # an fp16 checkpoint stays fp16
    ("fp16", None, True, True, "fp16"),  # an explicit request is kept
    ("bf16", None, False, False, "bf16"),
])
def test_resolve_precision(requested: str, saved, cuda: bool, bf16: bool, expected: str) -> None:
    assert resolve_precision(requested, saved, cuda=cuda, bf16_supported=bf16) == expected


def test_half_precision_and_dtypes() -> None:
    assert half_precision(cuda=False) == "bf16"  # a CPU export is bf16
    assert half_precision(cuda=True, bf16_supported=False) == "fp16"
    assert [precision_dtype(p) for p in ("bf16", "fp16", "fp32")] == [torch.bfloat16, torch.float16, torch.float32]


def test_load_tokenizer_gives_a_pad_token() -> None:
    """tiny-llama ships without a pad token, as Llama 3 does; tiny-bart keeps its own."""
    llama = load_tokenizer(ensure_tiny_checkpoint(get_preset("tiny-llama")))
    assert llama.pad_token_id is not None and llama.pad_token_id == llama.eos_token_id
    bart = load_tokenizer(ensure_tiny_checkpoint(get_preset("tiny-bart")))
    assert bart.pad_token == "<pad>"


def test_load_tokenizer_refuses_one_far_below_the_config_vocabulary(tmp_path) -> None:
    """A folder whose tokenizer is under half of config.json's vocab_size is refused, naming the folder."""
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(ensure_tiny_checkpoint(get_preset("tiny-llama")), folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert load_tokenizer(folder) is not None  # its own vocabulary size: accepted
    config["vocab_size"] = 3 * config["vocab_size"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{folder}: the tokenizer loaded with \\d+ tokens but config.json says"):
        load_tokenizer(folder)


def test_token_sum_loss_is_the_mean_over_targets_and_label_smoothing_as_transformers() -> None:
    from transformers.modeling_outputs import Seq2SeqLMOutput
    from transformers.trainer_pt_utils import LabelSmoother

    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    targets = torch.randint(0, 11, (3, 5))
    targets[0, 3:] = targets[2, 1:] = IGNORE_INDEX
    count = int((targets != IGNORE_INDEX).sum())
    mean = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(token_sum_loss(logits, targets), mean)
    torch.testing.assert_close(token_sum_loss(logits, targets, torch.tensor(4 * count)), mean / 4)  # a step's count
    smoothed = LabelSmoother(epsilon=0.1)(Seq2SeqLMOutput(logits=logits), targets)
    torch.testing.assert_close(token_sum_loss(logits, targets, label_smoothing=0.1), smoothed)
