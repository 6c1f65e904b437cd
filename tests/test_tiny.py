"""Tiny checkpoints load through the ordinary from_pretrained path; bad checkpoint folders are refused.

Run: `.venv/bin/python -m pytest tests/test_tiny.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers

from competition.build_checkpoint import build_checkpoint
from competition.harness.presets import PRESETS, get_preset
from competition.modeling.loading import model_source
from competition.modeling.tiny import ensure_tiny_checkpoint
from competition.rules.errors import ConfigError

TINY = [p.name for p in PRESETS if p.tiny]
DIALOGUE = "#Person1#: 안녕하세요, 오늘 기분이 어떠세요?\n#Person2#: 요즘 숨쉬기가 힘들어요."


@pytest.mark.parametrize("name", TINY)
def test_tiny_checkpoint_round_trips_korean_and_tags(name: str, tmp_path: Path) -> None:
    preset = get_preset(name)
    path = ensure_tiny_checkpoint(preset)
    assert ensure_tiny_checkpoint(preset) == path  # cached
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    tokenizer.add_tokens(["#Person1#", "#Person2#"])
    ids = tokenizer(DIALOGUE)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == DIALOGUE
    assert tokenizer.convert_tokens_to_ids("#Person1#") in ids
    auto = transformers.AutoModelForSeq2SeqLM if preset.track == "baseline" else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(path)
    assert model.config.model_type == preset.family
    assert (tokenizer.chat_template is not None) == (preset.chat_template == "tokenizer")


def test_model_path_and_builder_refuse_bad_folders(tmp_path):
    """model_path must hold a config; the checkpoint builder never overwrites."""
    with pytest.raises(ConfigError, match="model_path .*: not a folder with config.json"):
        model_source(get_preset("qwen3-14b"), tmp_path)
    assert model_source(get_preset("qwen3-14b")) == get_preset("qwen3-14b").hub_id
    with pytest.raises(ConfigError, match="no config.json"):
        build_checkpoint(tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="already exists"):
        build_checkpoint(tmp_path, tmp_path)
