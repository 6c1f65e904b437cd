"""Tiny checkpoints for the demo and the tests: small models built from config, with a tokenizer trained on
the bundled sample, saved as ordinary local checkpoints.

The tracks load them with the same `from_pretrained` code they use for hub models, so the real loading path is
the one under test. Each family gets the chat template and special tokens of its real counterpart.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd

from competition.harness.presets import Preset
from competition.modeling.checkpoints import disk_full_as_os_error
from competition.rules.files import temp_dir_beside

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
DEFAULT_CACHE_DIR = PROJECT_ROOT / ".cache" / "tiny"
TINY_FORMAT_VERSION = "3"  # bump when the tokenizer or model recipe below changes
VOCAB_SIZE = 3000

# Special tokens of every family, reserved once in the shared tokenizer.
RESERVED_TOKENS = (
    "<pad>", "<unk>", "<s>", "</s>", "<mask>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
    "<|endofsummary|>",
)

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# Per family: special-token roles and chat template, as the real models ship them
# (llama3 and gpt-neox have no pad token: the tracks must cope, as with the real ones).
FAMILY_TOKENS: dict[str, dict[str, str | None]] = {
    "bart": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
             "mask_token": "<mask>", "chat_template": None},
    "llama": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": None,
              "unk_token": "<unk>", "chat_template": LLAMA3_TEMPLATE},
    "qwen2": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "unk_token": "<unk>", "chat_template": CHATML_TEMPLATE},
    "qwen3": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "unk_token": "<unk>", "chat_template": CHATML_TEMPLATE},
    "gemma2": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
               "chat_template": GEMMA_TEMPLATE},
    "gpt_neox": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": None,
                 "unk_token": "<unk>", "chat_template": None},
}

BYTE_LEVEL_FAMILIES = ("qwen2", "qwen3")
HIDDEN, LAYERS, HEADS, FFN = 128, 2, 4, 256


def sample_texts(sample_dir: Path) -> list[str]:
    """Dialogues and summaries of the bundled sample: the tokenizer's training corpus."""
    texts: list[str] = []
    for name in ("train.csv", "dev.csv", "test.csv"):
        frame = pd.read_csv(sample_dir / name, dtype=str, keep_default_na=False)
        for column in ("dialogue", "summary"):
            if column in frame.columns:
                texts.extend(frame[column])
    return texts


def train_base_tokenizer(texts: list[str], byte_level: bool = False):
    """A BPE tokenizer with every family's specials: Metaspace (SentencePiece-like) or byte-level (GPT-like).

    Qwen's transformers tokenizer class rebuilds a byte-level pipeline around the saved vocabulary, so the
    qwen families need a byte-level vocabulary, as the real Qwen models have.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    tokenizer.normalizer = normalizers.NFC()
    if byte_level:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(RESERVED_TOKENS), min_frequency=2,
                                  initial_alphabet=alphabet)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def family_tokenizer(base, family: str):
    """Wrap the trained tokenizer as a transformers tokenizer with the family's special tokens and template."""
    from transformers import PreTrainedTokenizerFast

    roles = dict(FAMILY_TOKENS[family])
    chat_template = roles.pop("chat_template")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=base, **{k: v for k, v in roles.items() if v is not None})
    if family == "bart":  # BART-style: <s> ... </s> around every sequence
        from tokenizers import processors

        base = tokenizer.backend_tokenizer
        base.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> $B </s>",
            special_tokens=[("<s>", base.token_to_id("<s>")), ("</s>", base.token_to_id("</s>"))],
        )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def tiny_model_config(family: str, tokenizer):
    """A small config of the family's real architecture class."""
    import transformers

    vocab = len(tokenizer)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    if family == "bart":
        return transformers.BartConfig(
            vocab_size=vocab, d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
            encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN, decoder_ffn_dim=FFN,
            max_position_embeddings=1024, decoder_start_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=tokenizer.eos_token_id, dropout=0.0, **ids)
    common = dict(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, max_position_embeddings=2048, tie_word_embeddings=True, **ids)
    if family == "gpt_neox":
        return transformers.GPTNeoXConfig(**common, use_parallel_residual=True)
    classes = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
               "qwen3": transformers.Qwen3Config, "gemma2": transformers.Gemma2Config}
    extra = {"head_dim": HIDDEN // HEADS, "num_key_value_heads": HEADS // 2}
    return classes[family](**common, **extra)


def _cache_key(sample_dir: Path, preset: Preset) -> str:
    digest = hashlib.sha256(f"{TINY_FORMAT_VERSION}:{preset.name}:{preset.family}".encode())
    for name in ("train.csv", "dev.csv", "test.csv"):
        digest.update((sample_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def ensure_tiny_checkpoint(preset: Preset, sample_dir: Path | str = DEFAULT_SAMPLE_DIR,
                           cache_dir: Path | str = DEFAULT_CACHE_DIR, seed: int = 0) -> Path:
    """Build (once) and return the local checkpoint folder of a tiny preset."""
    import torch
    import transformers

    sample_dir, cache_dir = Path(sample_dir), Path(cache_dir)
    target = cache_dir / f"{preset.name}-{_cache_key(sample_dir, preset)}"
    if (target / "config.json").is_file():
        return target
    torch.manual_seed(seed)
    byte_level = preset.family in BYTE_LEVEL_FAMILIES
    tokenizer = family_tokenizer(train_base_tokenizer(sample_texts(sample_dir), byte_level), preset.family)
    config = tiny_model_config(preset.family, tokenizer)
    auto = transformers.AutoModelForSeq2SeqLM if preset.track == "baseline" else transformers.AutoModelForCausalLM
    model = auto.from_config(config)
    building = temp_dir_beside(target)  # renamed into place when complete
    with disk_full_as_os_error(building):
        model.save_pretrained(building)
        tokenizer.save_pretrained(building)
    (building / "tiny.json").write_text(json.dumps({"preset": preset.name, "seed": seed}), encoding="utf-8")
    try:
        building.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(building, ignore_errors=True)
    return target
