"""The shared SDPA-kernel setting (competition/modeling/attention.py): names, the flags each one sets, and no effect on CPU.

Run: .venv/bin/python -m pytest -q tests/test_attention.py
"""

from __future__ import annotations

import pytest
import torch

from competition.modeling.attention import SDPA_BACKENDS, configure_sdpa, sdpa_flags
from competition.rules.errors import ConfigError


@pytest.fixture
def restore_flags():
    """Put PyTorch's process-wide SDPA flags back after the test."""
    before = sdpa_flags()
    yield
    cuda = torch.backends.cuda
    cuda.enable_cudnn_sdp(before["cudnn"])
    cuda.enable_flash_sdp(before["flash"])
    cuda.enable_mem_efficient_sdp(before["efficient"])
    cuda.enable_math_sdp(before["math"])


def test_unknown_backend_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="sdpa_backend='cudnn_v9'.*auto"):
        configure_sdpa("cudnn_v9")


@pytest.mark.parametrize("backend", SDPA_BACKENDS)
def test_without_cuda_no_flag_changes(backend: str, monkeypatch, restore_flags) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = sdpa_flags()
    assert configure_sdpa(backend) == before == sdpa_flags()


@pytest.mark.parametrize("backend, enabled", [
    ("auto", {"flash", "efficient", "math"}),
    ("torch", {"cudnn", "flash", "efficient", "math"}),
    ("cudnn", {"cudnn", "math"}),
    ("flash", {"flash", "math"}),
    ("efficient", {"efficient", "math"}),
    ("math", {"math"}),
])
def test_on_cuda_each_backend_enables_its_kernels(backend: str, enabled: set[str], monkeypatch,
                                                  restore_flags) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    flags = configure_sdpa(backend)
    assert {name for name, on in flags.items() if on} == enabled and flags == sdpa_flags()


def test_both_tracks_default_to_auto_and_reject_a_bad_value_at_setup() -> None:
    from baselines.config import load_config as baseline_config
    from llm.config import load_config as llm_config

    assert baseline_config("tiny-bart").sdpa_backend == "auto"
    assert llm_config("tiny-llama").sdpa_backend == "auto"
    with pytest.raises(ConfigError):
        configure_sdpa(baseline_config("tiny-bart", overrides={"sdpa_backend": "fastest"}).sdpa_backend)


def test_cpu_training_batches_get_no_extra_padding(monkeypatch) -> None:
    from baselines.train import GPU_PAD_TO_MULTIPLE_OF, pad_to_multiple_of

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pad_to_multiple_of() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pad_to_multiple_of() == GPU_PAD_TO_MULTIPLE_OF


def _tiny_models(device: str):
    from transformers import BartConfig, BartForConditionalGeneration, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        attn_implementation="sdpa"))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, attn_implementation="sdpa"))
    return {"bart": bart.to(device).eval(), "llama": llama.to(device).eval()}


def _host_reads_during(work) -> tuple[object, int]:
    """(work(), how many tensors were read back to the host on the way: `bool(t)` and `t.item()`, each a GPU sync)."""
    reads = []
    to_bool, item = torch.Tensor.__bool__, torch.Tensor.item

    def counted_bool(tensor):
        reads.append(1)
        return to_bool(tensor)

    def counted_item(tensor):
        reads.append(1)
        return item(tensor)

    torch.Tensor.__bool__, torch.Tensor.item = counted_bool, counted_item
    try:
        return work(), len(reads)
    finally:
        torch.Tensor.__bool__, torch.Tensor.item = to_bool, item


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padded", [True, False])
def test_sync_free_masks_give_the_same_forward_without_reading_the_mask(device: str, padded: bool) -> None:
    from competition.modeling.attention import SYNC_FREE_SDPA, use_sync_free_masks

    ids = torch.randint(4, 100, (3, 10), device=device)
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 7:], mask[2, 4:] = 0, 0
    labels = torch.randint(4, 100, (3, 5), device=device)
    for name, model in _tiny_models(device).items():
        inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels if name == "bart" else ids}
        before, reads_before = _host_reads_during(lambda: model(**inputs).logits)
        assert use_sync_free_masks(model, cuda_only=False) and model.config._attn_implementation == SYNC_FREE_SDPA
        after, reads_after = _host_reads_during(lambda: model(**inputs).logits)
        assert reads_before > 0 and reads_after == 0, (name, reads_before, reads_after)
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


def test_sync_free_beam_search_writes_the_same_tokens() -> None:
    from competition.modeling.attention import use_sync_free_masks

    bart = _tiny_models("cpu")["bart"]
    ids = torch.randint(4, 100, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    settings = {"num_beams": 3, "min_new_tokens": 6, "max_new_tokens": 6, "no_repeat_ngram_size": 2}
    before = bart.generate(input_ids=ids, attention_mask=mask, **settings)
    use_sync_free_masks(bart, cuda_only=False)
    assert torch.equal(bart.generate(input_ids=ids, attention_mask=mask, **settings), before)


def test_sync_free_masks_stay_off_on_the_cpu_and_when_disabled() -> None:
    from competition.modeling.attention import use_sync_free_masks

    model = _tiny_models("cpu")["llama"]
    assert not use_sync_free_masks(model, enabled=True) or torch.cuda.is_available()
    assert not use_sync_free_masks(model, enabled=False, cuda_only=False)
    assert model.config._attn_implementation == "sdpa" or torch.cuda.is_available()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("length", [1, 3])
def test_grouped_keys_attend_as_keys_copied_per_query_row(length: int, device: str) -> None:
    """grouped_kv_sdpa_forward with one key row per group of 4 query rows equals SDPA over the keys (and masks)
    copied to every query row; rows of a group have their own queries, groups their own padding."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from competition.modeling.attention import grouped_kv_sdpa_forward

    rows, group, heads, keys, head_dim = 2, 4, 3, 7, 8
    module = torch.nn.Module()
    module.is_causal = False
    query = torch.randn(rows * group, heads, length, head_dim, device=device)
    key, value = (torch.randn(rows, heads, keys, head_dim, device=device) for _ in range(2))
    mask = torch.ones(rows, 1, length, keys, dtype=torch.bool, device=device)
    mask[1, ..., 5:] = False
    mask[0, :, -1, 2] = False  # a query position with its own mask row
    copied = {"key": key.repeat_interleave(group, 0), "value": value.repeat_interleave(group, 0),
              "attention_mask": mask.repeat_interleave(group, 0)}
    expected, _ = sdpa_attention_forward(module, query, **copied)
    grouped, _ = grouped_kv_sdpa_forward(module, query, key, value, copied["attention_mask"])
    assert grouped.shape == expected.shape == (rows * group, length, heads, head_dim)
    torch.testing.assert_close(grouped, expected, rtol=1e-4, atol=1e-5)  # GPU kernels may tile 4 queries otherwise
