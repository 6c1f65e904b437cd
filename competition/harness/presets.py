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
class Architecture:
    """The shape of a preset's model, as its `config.json` declares it (what the memory model needs).

    Seq2seq models: `layers` is the decoder's, `encoder_layers` the encoder's; `intermediate` the FFN width.
    """

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False
    head_dim: int | None = None  # None: hidden // heads
    encoder_layers: int = 0
    gated_mlp: bool = True  # gate + up + down (llama-like, T5 v1.1); False: one up and one down (BART, GPT-NeoX)

    @property
    def kv_dim(self) -> int:
        """Width of the K (or V) projection: kv_heads x head_dim."""
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @property
    def attention_dim(self) -> int:
        """Width of the query projection: heads x head_dim."""
        return self.heads * (self.head_dim or self.hidden // self.heads)

    def layer_parameters(self, cross_attention: bool = False) -> int:
        """Weights of one transformer layer (biases and norms left out)."""
        attention = self.hidden * (2 * self.attention_dim + 2 * self.kv_dim)
        mlp = self.hidden * self.intermediate * (3 if self.gated_mlp else 2)
        return attention * (2 if cross_attention else 1) + mlp

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings plus the output head when it is not tied to them."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def parameters(self) -> int:
        """All weights, about (decoder-only: layers; seq2seq: encoder + decoder with cross-attention)."""
        return (self.encoder_layers * self.layer_parameters() + self.layers
                * self.layer_parameters(cross_attention=self.encoder_layers > 0) + self.embedding_parameters)


# Tiny presets: the shapes `competition.modeling.tiny` builds (vocabulary about 3,000 tokens); a test keeps them equal.
TINY_HIDDEN, TINY_LAYERS, TINY_HEADS, TINY_FFN, TINY_VOCAB = 128, 2, 4, 256, 3000


def tiny_architecture(family: str) -> Architecture:
    """The architecture of a tiny preset of this family."""
    kv_heads = TINY_HEADS // 2 if family in ("qwen2", "qwen3", "llama", "gemma2") else TINY_HEADS
    return Architecture(TINY_LAYERS, TINY_HIDDEN, TINY_FFN, TINY_HEADS, kv_heads, TINY_VOCAB, tied_embeddings=True,
                        encoder_layers=TINY_LAYERS if family == "bart" else 0,
                        gated_mlp=family not in ("bart", "gpt_neox"))


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
    architecture: Architecture | None = None  # public config.json facts; tiny presets: `tiny_architecture`

    @property
    def arch(self) -> Architecture:
        """The model's shape: declared, or built from the tiny recipe."""
        if self.architecture is not None:
            return self.architecture
        if self.tiny:
            return tiny_architecture(self.family)
        raise ConfigError(f"preset '{self.name}' declares no architecture")


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


A = Architecture  # the registry below: layers, hidden, intermediate, heads, kv_heads, vocab, tied
PRESETS: tuple[Preset, ...] = (
    # --- encoder-decoder track ---
    _seq2seq("kobart", "digit82/kobart-summarization", "bart", notes="official baseline model",
             architecture=A(6, 768, 3072, 16, 16, 30000, True, encoder_layers=6, gated_mlp=False)),
    _seq2seq("kobart-base-v2", "gogamza/kobart-base-v2", "bart",
             architecture=A(6, 768, 3072, 16, 16, 30000, True, encoder_layers=6, gated_mlp=False)),
    _seq2seq("pko-t5-large", "paust/pko-t5-large", "t5", max_source_length=1024,
             architecture=A(24, 1024, 2816, 16, 16, 50358, False, head_dim=64, encoder_layers=24)),
    _seq2seq("mbart-large-50", "facebook/mbart-large-50", "mbart", notes="set src/tgt lang ko_KR",
             architecture=A(12, 1024, 4096, 16, 16, 250054, True, encoder_layers=12, gated_mlp=False)),
    _seq2seq("tiny-bart", None, "bart", tiny=True, max_source_length=256, max_target_length=64,
             notes="built from config, tokenizer trained on data/sample"),
    # --- decoder-only LLM track ---
    _llm("llama3.2-ko-3b", "Bllossom/llama-3.2-Korean-Bllossom-3B", "llama",
         architecture=A(28, 3072, 8192, 24, 8, 128256, True, head_dim=128), notes="default example"),
    _llm("llama3-ko-8b", "MLP-KTLim/llama-3-Korean-Bllossom-8B", "llama",
         architecture=A(32, 4096, 14336, 32, 8, 128256)),
    _llm("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "qwen2", architecture=A(28, 3584, 18944, 28, 4, 152064)),
    _llm("qwen2.5-14b", "Qwen/Qwen2.5-14B-Instruct", "qwen2", architecture=A(48, 5120, 13824, 40, 8, 152064)),
    _llm("qwen3-4b", "Qwen/Qwen3-4B-Instruct-2507", "qwen3",
         architecture=A(36, 2560, 9728, 32, 8, 151936, True, head_dim=128)),
    _llm("qwen3-14b", "Qwen/Qwen3-14B", "qwen3",
         architecture=A(40, 5120, 17408, 40, 8, 151936, head_dim=128), strip_think=True,
         notes="best single model reported in the competition; disable thinking in the template"),
    _llm("solar-10.7b", "upstage/SOLAR-10.7B-Instruct-v1.0", "llama",
         architecture=A(48, 4096, 14336, 32, 8, 32000)),
    _llm("solar-10.7b-base", "upstage/SOLAR-10.7B-v1.0", "llama",
         architecture=A(48, 4096, 14336, 32, 8, 32000), chat_template="fallback"),
    _llm("polyglot-ko-1.3b", "EleutherAI/polyglot-ko-1.3b", "gpt_neox",
         architecture=A(24, 2048, 8192, 16, 16, 30080, gated_mlp=False), chat_template="fallback",
         end_marker="<|endofsummary|>",
         notes="rarely emits EOS after fine-tuning: trained with an explicit end marker and stopped on it"),
    _llm("gemma2-2b", "google/gemma-2-2b-it", "gemma2",
         architecture=A(26, 2304, 9216, 8, 4, 256000, True, head_dim=256), gated=True,
         notes="gated: run `hf auth login` and accept the license on the hub first; "
               "its template has no system role (the instruction goes in the user turn)"),
    _llm("deepseek-r1-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "qwen2",
         architecture=A(64, 5120, 27648, 40, 8, 152064), strip_think=True,
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
