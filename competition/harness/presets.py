"""The model registry: every named preset of both tracks, as data.

`get_preset("kobart")` returns a `Preset`; an unknown name raises ConfigError listing the known ones.
Tiny presets (`tiny-*`) are built from config with a tokenizer trained on the bundled sample (see
`competition.modeling.tiny`), so the demo and the tests run without the model hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from competition.rules.errors import ConfigError

Track = Literal["baseline", "llm"]  # the encoder-decoder track is "baseline" everywhere

# Linear layers LoRA should wrap, per architecture family.
LLAMA_LIKE_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GPT_NEOX_LINEARS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


@dataclass(frozen=True)
class Preset:
    """One named model: where it comes from and how the tracks should treat it."""

    name: str
    track: Track
    family: str  # transformers model_type: bart, t5, mbart, llama, qwen2, qwen3, gpt_neox, gemma2
    hub_id: str | None = None  # None for tiny presets built locally
    chat_template: Literal["tokenizer", "fallback", "none"] = "none"  # where the chat template comes from
    lora_target_modules: tuple[str, ...] = ()
    max_source_length: int = 512  # encoder input (seq2seq) or whole prompt before the target (llm)
    max_target_length: int = 100
    generation: dict[str, Any] = field(default_factory=dict)
    end_marker: str | None = None  # extra stop string, for models that rarely emit EOS
    strip_think: bool = False  # model emits <think>...</think> that must be removed
    trust_remote_code: bool = False  # needed by the preset; still requires the user's opt-in
    gated: bool = False  # needs `hf auth login` and accepted terms on the hub
    tiny: bool = False
    notes: str = ""


SEQ2SEQ_GENERATION = {"num_beams": 4, "no_repeat_ngram_size": 2, "max_length": 100, "early_stopping": True}
LLM_GENERATION = {"num_beams": 1, "do_sample": False, "max_new_tokens": 128, "repetition_penalty": 1.0}


def _seq2seq(name: str, hub_id: str | None, family: str, **kwargs: Any) -> Preset:
    return Preset(name=name, track="baseline", family=family, hub_id=hub_id,
                  generation=dict(SEQ2SEQ_GENERATION), **kwargs)


def _llm(name: str, hub_id: str | None, family: str, **kwargs: Any) -> Preset:
    kwargs.setdefault("chat_template", "tokenizer")
    kwargs.setdefault("lora_target_modules", GPT_NEOX_LINEARS if family == "gpt_neox" else LLAMA_LIKE_LINEARS)
    kwargs.setdefault("max_source_length", 1024)
    kwargs.setdefault("max_target_length", 160)
    # a summary never needs more new tokens than the target budget it was trained with
    generation = dict(LLM_GENERATION, max_new_tokens=kwargs["max_target_length"])
    return Preset(name=name, track="llm", family=family, hub_id=hub_id, generation=generation, **kwargs)


PRESETS: tuple[Preset, ...] = (
    # --- encoder-decoder track ---
    _seq2seq("kobart", "digit82/kobart-summarization", "bart", notes="official baseline model"),
    _seq2seq("kobart-base-v2", "gogamza/kobart-base-v2", "bart"),
    _seq2seq("pko-t5-large", "paust/pko-t5-large", "t5", max_source_length=1024),
    _seq2seq("mbart-large-50", "facebook/mbart-large-50", "mbart", notes="set src/tgt lang ko_KR"),
    _seq2seq("tiny-bart", None, "bart", tiny=True, max_source_length=256, max_target_length=64,
             notes="built from config, tokenizer trained on data/sample"),
    # --- decoder-only LLM track ---
    _llm("llama3.2-ko-3b", "Bllossom/llama-3.2-Korean-Bllossom-3B", "llama", notes="default example"),
    _llm("llama3-ko-8b", "MLP-KTLim/llama-3-Korean-Bllossom-8B", "llama"),
    _llm("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "qwen2"),
    _llm("qwen2.5-14b", "Qwen/Qwen2.5-14B-Instruct", "qwen2"),
    _llm("qwen3-4b", "Qwen/Qwen3-4B-Instruct-2507", "qwen3"),
    _llm("qwen3-14b", "Qwen/Qwen3-14B", "qwen3", strip_think=True,
         notes="best single model reported in the competition; disable thinking in the template"),
    _llm("solar-10.7b", "upstage/SOLAR-10.7B-Instruct-v1.0", "llama"),
    _llm("solar-10.7b-base", "upstage/SOLAR-10.7B-v1.0", "llama", chat_template="fallback"),
    _llm("polyglot-ko-1.3b", "EleutherAI/polyglot-ko-1.3b", "gpt_neox", chat_template="fallback",
         end_marker="<|endofsummary|>",
         notes="rarely emits EOS after fine-tuning: trained with an explicit end marker and stopped on it"),
    _llm("gemma2-2b", "google/gemma-2-2b-it", "gemma2", gated=True,
         notes="gated: run `hf auth login` and accept the license on the hub first; "
               "its template has no system role (the instruction goes in the user turn)"),
    _llm("deepseek-r1-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "qwen2", strip_think=True,
         notes="emits <think>...</think>, stripped before scoring"),
    # tiny LLMs, one per architecture family, for the demo and tests
    _llm("tiny-llama", None, "llama", tiny=True, max_source_length=384, max_target_length=64),
    _llm("tiny-qwen2", None, "qwen2", tiny=True, max_source_length=384, max_target_length=64),
    _llm("tiny-qwen3", None, "qwen3", tiny=True, max_source_length=384, max_target_length=64),
    _llm("tiny-gemma2", None, "gemma2", tiny=True, max_source_length=384, max_target_length=64),
    _llm("tiny-neox", None, "gpt_neox", tiny=True, chat_template="fallback", end_marker="<|endofsummary|>",
         max_source_length=384, max_target_length=64),
)

_BY_NAME = {preset.name: preset for preset in PRESETS}


def preset_names(track: Track | None = None) -> list[str]:
    """Known preset names, optionally of one track."""
    return [p.name for p in PRESETS if track is None or p.track == track]


def get_preset(name: str, track: Track | None = None) -> Preset:
    """Look up a preset by name; unknown names (or the wrong track) raise ConfigError listing the known ones."""
    preset = _BY_NAME.get(name)
    if preset is None or (track is not None and preset.track != track):
        known = preset_names(track)
        raise ConfigError(f"unknown {track or ''} preset '{name}'. Known presets: {', '.join(known)}".replace("  ", " "))
    return preset


def main() -> int:
    """`python -m competition.harness.presets`: list every preset with its track, family and source."""
    for preset in PRESETS:
        source = preset.hub_id or "built locally (tiny)"
        flags = " ".join(f for f, on in (("gated", preset.gated), ("strips-<think>", preset.strip_think)) if on)
        print(f"{preset.name:22} {preset.track:8} {preset.family:9} {source} {flags}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
