"""The memory model against measured peaks, and the settings it fits to a card (CPU only, no torch needed).

Run: `python -m pytest -q tests/test_memory.py`.
"""

from __future__ import annotations

import json
import os

import pytest

import baselines.config
import llm.config
from competition.harness import memory
from competition.harness.memory import (
    Gpu,
    llm_generation_gib,
    llm_training_gib,
    seq2seq_generation_gib,
    seq2seq_training_gib,
)
from competition.harness.presets import PRESETS, TINY_FFN, TINY_HEADS, TINY_HIDDEN, TINY_LAYERS, get_preset
from competition.rules.errors import ConfigError

LLAMA_3B = get_preset("llama3.2-ko-3b").arch
QWEN3_14B = get_preset("qwen3-14b").arch
KOBART = get_preset("kobart").arch
KOBART_POOLS = memory.seq2seq_activation_gib(KOBART, 50, 512, 100) * 1.05  # reduce-overhead's CUDA-graph pools


def _qwen3_14b_run_peak() -> float:
    """The shipped qwen3-14b run: checkpointed 16,384-token training, then dequantized prediction of 128 rows (its
    prefill in one forward per length group, before prefill chunks)."""
    return max(llm_training_gib(QWEN3_14B, 16384), llm_generation_gib(QWEN3_14B, 128, 1024, 160, weights="none",
                                                                     prefill_tokens=128 * 1024))


# (what, measured GiB allocated, estimate, relative tolerance); docs/performance.md and the H100 runs
CALIBRATION = [
    ("3B, 16,384 tokens, no checkpointing, liger", 64.0, lambda: llm_training_gib(LLAMA_3B, 16384,
                                                                                   checkpointing=False), 0.05),
    ("3B, 16,384, checkpointing, liger", 13.4, lambda: llm_training_gib(LLAMA_3B, 16384), 0.10),
    ("3B, 16,384, checkpointing, unfused", 14.2, lambda: llm_training_gib(LLAMA_3B, 16384, fused=False), 0.10),
    ("3B, 16,384, no checkpointing, lora_dropout=0", 42.0,
     lambda: llm_training_gib(LLAMA_3B, 16384, checkpointing=False, lora_dropout=False), 0.05),
    ("3B, 16,384, no checkpointing, unfused", 85.0,
     lambda: llm_training_gib(LLAMA_3B, 16384, checkpointing=False, fused=False), 0.05),
    ("3B, 12,288, no checkpointing, unfused", 65.0,
     lambda: llm_training_gib(LLAMA_3B, 12288, checkpointing=False, fused=False), 0.05),
    ("3B, 24,576, no checkpointing, liger", 94.5, lambda: llm_training_gib(LLAMA_3B, 24576, checkpointing=False),
     0.05),
    ("qwen3-14b shipped run (H100, whole card)", 64.0, _qwen3_14b_run_peak, 0.10),
    ("qwen3-14b at 23.5 GiB: NF4 + adapter, 128 rows / 16,384 tokens, prefill unchunked", 18.7,
     lambda: llm_generation_gib(QWEN3_14B, 128, 1024, 160, batch_tokens=16384, prefill_tokens=16384), 0.05),
    ("kobart training, 50 rows of 512/100 tokens", 10.3, lambda: seq2seq_training_gib(KOBART, 50, 512, 100), 0.10),
]


@pytest.mark.parametrize("what,measured,estimate,tolerance", CALIBRATION, ids=[row[0] for row in CALIBRATION])
def test_the_memory_model_reproduces_measured_peaks(what, measured, estimate, tolerance):
    assert estimate() == pytest.approx(measured, rel=tolerance), what


def test_kobart_beam_search_512_does_not_fit_23_5_gib_but_128_does():
    """The shipped batch of 512 ran out of memory beside the CUDA-graph pools at 23.5 GiB free; 128 ran."""
    usable = Gpu("H100 capped", 79.0, 23.5).usable_gib
    assert seq2seq_generation_gib(KOBART, 512, 4, 512, 100, KOBART_POOLS) > usable
    assert seq2seq_generation_gib(KOBART, 128, 4, 512, 100, KOBART_POOLS) <= usable


def test_declared_architectures_count_the_known_parameters():
    expected = {"llama3.2-ko-3b": 3.21e9, "qwen3-14b": 14.77e9, "solar-10.7b": 10.7e9, "kobart": 0.124e9,
                "mbart-large-50": 0.611e9, "deepseek-r1-qwen-32b": 32.8e9}
    for name, parameters in expected.items():
        assert get_preset(name).arch.parameters == pytest.approx(parameters, rel=0.03), name


def test_tiny_architectures_match_the_tiny_recipe():
    from competition.modeling import tiny

    assert (TINY_HIDDEN, TINY_LAYERS, TINY_HEADS, TINY_FFN) == (tiny.HIDDEN, tiny.LAYERS, tiny.HEADS, tiny.FFN)


def test_a_model_folders_config_json_wins_over_the_registry(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 3, "hidden_size": 64, "vocab_size": 99,
                                                      "intermediate_size": 128, "num_attention_heads": 4}))
    arch = memory.architecture("llama3.2-ko-3b", str(tmp_path))
    assert (arch.layers, arch.hidden, arch.vocab, arch.kv_heads) == (3, 64, 99, 4)
    assert memory.architecture("llama3.2-ko-3b", None) == LLAMA_3B or memory.cached_config(
        get_preset("llama3.2-ko-3b").hub_id)


def test_the_hub_caches_config_json_wins_when_there_is_no_model_path(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 5, "hidden_size": 96,
                                                      "intermediate_size": 128, "num_attention_heads": 4}))
    monkeypatch.setattr(memory, "cached_config", lambda hub_id: tmp_path / "config.json")
    assert memory.architecture("qwen3-14b").layers == 5
    assert memory.architecture("qwen3-14b").vocab == QWEN3_14B.vocab  # what the file leaves out: the registry's


def _fit(settings, preset: str, free_gib: float, overrides=None, yaml_path=None):
    layers = settings.layers(preset, yaml_path, overrides)
    return settings.fitted(layers, Gpu("test card", free_gib, free_gib))


def _step(config) -> int:
    size = config.batch_tokens if getattr(config, "batch_tokens", 0) > 0 else config.per_device_train_batch_size
    return size * config.gradient_accumulation_steps


@pytest.mark.parametrize("preset", [p.name for p in PRESETS if not p.tiny and p.name != "deepseek-r1-qwen-32b"])
def test_fitting_keeps_the_optimizer_step_across_cards(preset):
    settings = llm.config.SETTINGS if get_preset(preset).track == "llm" else baselines.config.SETTINGS
    unfitted = settings.resolve(settings.layers(preset))
    for free in (24, 48, 80):
        layers, fit = _fit(settings, preset, free)
        config = settings.resolve(layers)
        assert _step(config) == _step(unfitted), (preset, free)
        assert config.learning_rate == unfitted.learning_rate and config.num_beams == unfitted.num_beams
        assert config.max_source_length == unfitted.max_source_length
        assert not fit.warnings
        assert fit.estimates["training"] <= free / memory.HEADROOM


def test_the_3b_fits_24_gib_by_checkpointing_48_by_smaller_micro_batches_and_80_gib_as_shipped():
    layers, fit = _fit(llm.config.SETTINGS, "llama3.2-ko-3b", 23.5)
    config = llm.config.SETTINGS.resolve(layers)
    assert (config.batch_tokens, config.gradient_accumulation_steps, config.gradient_checkpointing) == (16384, 1, True)
    assert fit.changes == {"gradient_checkpointing": [False, True]}
    assert layers[-1].source == "gpu: test card, 23.5 GiB free"
    layers, fit = _fit(llm.config.SETTINGS, "llama3.2-ko-3b", 46)
    config = llm.config.SETTINGS.resolve(layers)
    assert (config.batch_tokens, config.gradient_accumulation_steps, config.gradient_checkpointing) == (8192, 2, False)
    _, fit = _fit(llm.config.SETTINGS, "llama3.2-ko-3b", 80)
    assert fit.changes == {}


def test_without_liger_the_3b_gets_checkpointing_on_48_gib():
    """transformers' own modules keep more activations: 8,192-token micro-batches no longer fit without checkpointing."""
    layers = llm.config.SETTINGS.layers("llama3.2-ko-3b")
    fitted, _ = llm.config.SETTINGS.fitted(layers, Gpu("no liger", 46, 46, fused_kernels=False))
    assert llm.config.SETTINGS.resolve(fitted).gradient_checkpointing
    fitted, _ = llm.config.SETTINGS.fitted(layers, Gpu("liger", 46, 46))
    assert not llm.config.SETTINGS.resolve(fitted).gradient_checkpointing


def test_qwen3_14b_predicts_through_the_adapter_on_24_gib():
    layers, _ = _fit(llm.config.SETTINGS, "qwen3-14b", 24)
    config = llm.config.SETTINGS.resolve(layers)
    assert config.predict_with == "adapter" and config.gradient_checkpointing
    layers, _ = _fit(llm.config.SETTINGS, "qwen3-14b", 78)
    assert llm.config.SETTINGS.resolve(layers).predict_with == "dequantized"


def test_kobart_lowers_its_beam_search_batch_on_24_gib():
    layers, fit = _fit(baselines.config.SETTINGS, "kobart", 23.5)
    assert baselines.config.SETTINGS.resolve(layers).per_device_eval_batch_size < 512
    assert "per_device_train_batch_size" not in fit.changes  # training fits as shipped


def test_explicit_values_win_and_warn_when_they_will_not_fit():
    overrides = {"batch_tokens": 16384, "gradient_checkpointing": False}
    layers, fit = _fit(llm.config.SETTINGS, "llama3.2-ko-3b", 24, overrides)
    config = llm.config.SETTINGS.resolve(layers)
    assert (config.batch_tokens, config.gradient_checkpointing, config.gradient_accumulation_steps) == (16384, False, 1)
    assert fit.warnings and "exceeds" in fit.warnings[0] and "24.0 GiB free" in fit.warnings[0]
    assert "[command line]" in llm.config.SETTINGS.describe(layers).split("batch_tokens:")[1].splitlines()[0]


def test_a_users_own_yaml_counts_as_explicit_and_the_shipped_one_does_not(tmp_path):
    shipped = llm.config.SETTINGS.shipped_yaml("llama3.2-ko-3b")
    own = tmp_path / "mine.yaml"
    own.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    layers, fit = _fit(llm.config.SETTINGS, "llama3.2-ko-3b", 24, yaml_path=own)
    assert llm.config.SETTINGS.resolve(layers).batch_tokens == 16384 and fit.warnings
    layers, fit = _fit(llm.config.SETTINGS, "llama3.2-ko-3b", 24, yaml_path=shipped)
    assert llm.config.SETTINGS.resolve(layers).gradient_checkpointing and not fit.warnings


def test_a_card_too_small_for_the_preset_is_refused_naming_the_smallest_card():
    with pytest.raises(ConfigError, match=r"qwen3-14b.*8\.0 GiB free.*at least \d+ GiB free"):
        _fit(llm.config.SETTINGS, "qwen3-14b", 8)


def test_no_gpu_fits_nothing():
    layers = llm.config.SETTINGS.layers("llama3.2-ko-3b")
    assert llm.config.SETTINGS.fitted(layers, None) == (layers, None)


@pytest.mark.parametrize("preset", [p.name for p in PRESETS])
def test_print_config_for_a_24_gib_card_works_for_every_preset_on_the_cpu(preset, capsys):
    from baselines.run import main as baseline_main
    from llm.run import main as llm_main

    main = llm_main if get_preset(preset).track == "llm" else baseline_main
    code = main(["--model", preset, "--print-config", "--gpu-memory", "24", "--gpu-name", "RTX 3090"])
    out, err = capsys.readouterr()
    if preset == "deepseek-r1-qwen-32b":  # 4-bit 32B weights alone are about 17 GiB
        assert code == 2 and "needs a card with at least" in err
        return
    assert code == 0, err
    assert out.startswith("# gpu: RTX 3090, 24.0 GiB free")
    fitted = out.split("fitted: ", 1)[1].splitlines()[0]
    if fitted != "nothing":
        assert "[gpu: RTX 3090, 24.0 GiB free]" in out


def test_print_config_refuses_qwen3_14b_on_8_gib(capsys):
    from llm.run import main

    assert main(["--model", "qwen3-14b", "--print-config", "--gpu-memory", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: preset 'qwen3-14b' does not fit a GPU with 8.0 GiB free") and "at least" in err


def test_the_fit_is_recorded_in_run_json(tmp_path):
    from competition.harness.runs import load_run_info, open_run

    layers, fit = _fit(llm.config.SETTINGS, "llama3.2-ko-3b", 23.5)
    config = llm.config.SETTINGS.resolve(layers)
    run_dir = open_run(tmp_path, "llm", config, [], extra=fit.record())
    info = load_run_info(run_dir)
    assert info["gpu"] == {"name": "test card", "total_gib": 23.5, "free_gib": 23.5, "bf16": True,
                           "fused_kernels": True}
    assert info["fitted"]["gradient_checkpointing"] == [False, True]
    assert info["config"]["gradient_checkpointing"] is True


def _readme_fits() -> dict[str, tuple[int, int]]:
    """The README presets table's `smallest card, as shipped` (free GiB) of each preset."""
    import re

    from helpers import PROJECT_ROOT

    fits = {}
    for line in (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != 4 or not re.match(r"\d", cells[3]):
            continue
        pairs = re.findall(r"(\d+), (\d+)", cells[3].split("measured")[0].split("; trained")[0].split("; gated")[0])
        names = re.findall(r"`([^`]+)`", cells[0])
        for name, pair in zip(names, pairs * len(names) if len(pairs) == 1 else pairs):
            fits[name] = (int(pair[0]), int(pair[1]))
    return fits


def test_the_readme_presets_table_says_what_the_memory_model_says():
    fits = _readme_fits()
    assert set(fits) == {p.name for p in PRESETS if not p.tiny}
    for preset, (smallest, shipped) in fits.items():
        settings = llm.config.SETTINGS if get_preset(preset).track == "llm" else baselines.config.SETTINGS
        assert not _fit(settings, preset, smallest)[1].warnings, preset
        try:
            assert _fit(settings, preset, smallest - 1)[1].warnings, preset  # fits, with a warning, or ...
        except ConfigError:
            pass  # ... is refused
        assert _fit(settings, preset, shipped)[1].changes == {}, preset
        assert _fit(settings, preset, shipped - 1)[1].changes, preset


def test_the_card_to_fit_is_the_asked_one_none_on_resume_and_none_without_a_gpu(tmp_path, capsys):
    import argparse

    from competition.harness.tracks import card_to_fit
    from llm.run import main

    def args(**kwargs):
        return argparse.Namespace(**{"resume": None, "gpu_memory": None, "gpu_name": None, **kwargs})

    assert card_to_fit(args(gpu_memory=24.0)) == Gpu("a GPU", 24.0, 24.0)
    assert card_to_fit(args(gpu_memory=24.0, resume=tmp_path)) is None  # a resumed run keeps its fitted config
    if not memory.detect_gpu():
        assert card_to_fit(args()) is None  # the CPU: nothing fitted, today's settings
    assert main(["--model", "qwen3-14b", "--print-config", "--gpu-memory", "0"]) == 2
    assert "error: --gpu-memory 0.0: expected the card's free memory in GiB" in capsys.readouterr().err


def test_without_a_gpu_print_config_is_unchanged(capsys):
    from llm.run import main

    if memory.detect_gpu():
        pytest.skip("this machine has a GPU")
    assert main(["--model", "llama3.2-ko-3b", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "gpu:" not in out and "batch_tokens: 16384" in out


def test_generation_sizes_halve_the_token_budget_before_the_rows():
    assert memory.generation_sizes(8, 0, 100) == [(8, 0), (8, 400), (8, 200), (8, 100), (4, 100), (2, 100), (1, 100)]
    assert memory.generation_sizes(5, 1000, 300) == [(5, 1000), (5, 500), (3, 500), (2, 500), (1, 300)]


def test_a_small_card_gets_a_token_budget_first_then_fewer_rows():
    config = llm.config.SETTINGS.resolve(llm.config.SETTINGS.fitted(llm.config.SETTINGS.layers("qwen3-14b"),
                                                                    Gpu("small", 20, 20))[0])
    assert config.per_device_eval_batch_size == 128 and 0 < config.generation_batch_tokens < 128 * 1024
    values = {**llm.config.SETTINGS.resolve(llm.config.SETTINGS.layers("qwen3-14b")).__dict__,
              "per_device_eval_batch_size": 100, "max_new_tokens": 512}
    fit = memory.fit_llm(values, set(), Gpu("small", 17, 17))
    assert 1 <= fit.values["per_device_eval_batch_size"] < 100 and not fit.warnings
    assert fit.values["predict_with"] == "adapter"


def test_expandable_segments_unless_the_user_set_the_allocator(monkeypatch):
    for name in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"):
        monkeypatch.delenv(name, raising=False)
    memory.prefer_expandable_segments()
    assert os.environ["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.delenv("PYTORCH_ALLOC_CONF")
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    memory.prefer_expandable_segments()
    assert "PYTORCH_ALLOC_CONF" not in os.environ
