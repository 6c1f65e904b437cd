"""The shared SDPA-kernel setting (competition/attention.py): names, the flags each one sets, and no effect on CPU.

Run: .venv/bin/python -m pytest -q tests/test_attention.py
"""

from __future__ import annotations

import pytest
import torch

from competition.attention import SDPA_BACKENDS, configure_sdpa, sdpa_flags
from competition.errors import ConfigError


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
