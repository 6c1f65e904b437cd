"""What the LLM benchmarks share: the shipped preset, real prompt texts, the tokenizer and a random-weight model.

The model is Llama-3.2-3B-shaped (hidden 3072, 28 layers, 24 heads, 8 kv heads, ffn 8192, vocab 128256, tied
embeddings) with random weights, saved in bf16 so it loads through `from_pretrained` like a real checkpoint
(`--smoke`: a tiny model of the same family on CPU, with the bundled sample data).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

PRESET = "llama3.2-ko-3b"  # its shipped config (llm/configs/) is what both benchmarks time
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "competition"
LLAMA_3B_SHAPE = dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                      intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True,
                      max_position_embeddings=4096, rope_theta=500000.0)
TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, tie_word_embeddings=True, max_position_embeddings=2048)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options both LLM benchmarks take."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU, bundled sample data")
    parser.add_argument("--data-dir", type=Path, help="folder with dev.csv and test.csv (default: ../shared data)")
    parser.add_argument("--tokenizer", help=f"hub id or folder of the tokenizer (default: the {PRESET} one)")
    parser.add_argument("--out", help="also write the JSON here")


def require_gpu_unless_smoke(smoke: bool) -> None:
    if not smoke and not torch.cuda.is_available():
        sys.exit("error: the full benchmark needs a CUDA GPU (bitsandbytes NF4); use --smoke on CPU")


def load_texts(smoke: bool, data_dir: Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """(dialogues for training, summaries, test dialogues): ../shared data (or --data-dir), or the sample in smoke mode."""
    folder = PROJECT_ROOT / "data" / "sample" if smoke else (data_dir or SHARED_DATA)
    if not (folder / "dev.csv").is_file() or not (folder / "test.csv").is_file():
        sys.exit(f"error: {folder}/dev.csv and test.csv are needed for real prompt lengths; not found "
                 "(put the competition data in ../shared/data/competition or run with --smoke)")
    dev = pd.read_csv(folder / "dev.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(folder / "test.csv", dtype=str, keep_default_na=False)
    return list(dev["dialogue"]) + list(test["dialogue"]), list(dev["summary"]), list(test["dialogue"])


def load_tokenizer(smoke: bool, name: str | None):
    """The real preset tokenizer when the hub (or cache) has it, else the tiny tokenizer (noted in the output)."""
    from competition.harness.presets import get_preset
    from competition.modeling.loading import load_tokenizer as load
    from competition.modeling.loading import model_source

    if not smoke:
        try:
            return load(name or get_preset(PRESET).hub_id), name or get_preset(PRESET).hub_id
        except OSError as err:
            print(f"warning: real tokenizer unavailable ({err.__class__.__name__}); using tiny-llama's: "
                  "token counts differ from the real model's", file=sys.stderr)
    return load(model_source(get_preset("tiny-llama"))), "tiny-llama"


def prompt_style(tokenizer):
    """The preset's prompt style, with the tokenizer's chat template where it has one."""
    from competition.harness.presets import get_preset
    from competition.modeling.prompts import prompt_style_for, resolve_template

    return resolve_template(prompt_style_for(get_preset(PRESET)), tokenizer)


def build_model_folder(tokenizer, smoke: bool, folder: Path) -> tuple[Path, int]:
    """Save a random-weight Llama of the benchmark shape (bf16) so it loads through from_pretrained + NF4."""
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(TINY_SHAPE, vocab_size=len(tokenizer)) if smoke else LLAMA_3B_SHAPE
    config = LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    parameters = sum(w.numel() for w in model.parameters())  # tied embeddings counted once
    del model
    return folder, parameters


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def free_gpu_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def print_report(report: dict, out: str | None) -> None:
    """The report as one JSON object on stdout, and in `out` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
