"""Random-weight checkpoints from a folder of config + tokenizer (the real files, no weights), for offline runs.

    python -m competition.build_checkpoint --from MODELS/qwen3-14b --out checkpoints/qwen3-14b-tiny --scale tiny
    python -m competition.build_checkpoint --from MODELS/qwen3-14b --out checkpoints/qwen3-14b --scale full --device cuda

- `full`: the config as it is (every layer, the real hidden size), weights in the config's dtype (bf16): the real
  memory and speed of the model on a GPU, not its quality.
- `tiny`: the same architecture class scaled down (2 layers, hidden size 64) in fp32, for CPU tests.
Both keep the REAL tokenizer, chat template, special-token ids and vocabulary size, and the generation config when
the folder has one. The tracks load the result with `model_path=OUT` (`make checkpoint FROM=... OUT=...`).
`--device cuda` initialises the weights on the GPU: a 14B model in seconds instead of minutes on the CPU (the
saved files are the same kind; the GPU's memory is freed when the build returns).
Weights are random (seeded): never a model to submit. The folder is built beside OUT and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from competition.harness.cli import exit_on_bad_input
from competition.harness.logs import setup_logging
from competition.harness.runs import RANDOM_CHECKPOINT_FILE
from competition.modeling.loading import load_tokenizer
from competition.rules.errors import ConfigError
from competition.rules.files import temp_dir_beside

Scale = Literal["tiny", "full"]
BUILD_INFO = RANDOM_CHECKPOINT_FILE  # the runs read it: a run of such a build never submits
TINY_HIDDEN, TINY_LAYERS, TINY_HEADS, TINY_KV_HEADS, TINY_FFN = 64, 2, 4, 2, 128

# Config attribute names of each size, per architecture family (only those a config has are changed).
TINY_SIZES: dict[str, int] = {
    "hidden_size": TINY_HIDDEN, "d_model": TINY_HIDDEN,
    "intermediate_size": TINY_FFN, "encoder_ffn_dim": TINY_FFN, "decoder_ffn_dim": TINY_FFN, "d_ff": TINY_FFN,
    "num_hidden_layers": TINY_LAYERS, "encoder_layers": TINY_LAYERS, "decoder_layers": TINY_LAYERS,
    "num_layers": TINY_LAYERS, "num_decoder_layers": TINY_LAYERS, "max_window_layers": TINY_LAYERS,
    "num_attention_heads": TINY_HEADS, "encoder_attention_heads": TINY_HEADS, "decoder_attention_heads": TINY_HEADS,
    "num_heads": TINY_HEADS, "num_key_value_heads": TINY_KV_HEADS,
    "head_dim": TINY_HIDDEN // TINY_HEADS, "d_kv": TINY_HIDDEN // TINY_HEADS,
}


def read_model_config(folder: Path):
    """The transformers config of a folder's config.json (ConfigError when there is none)."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: no config.json; expected a folder with the model's config and tokenizer")
    return AutoConfig.from_pretrained(str(folder))


def scaled_config(config, scale: Scale):
    """`config` itself (full) or a copy of the same class with the tiny sizes (per-layer lists cut to 2 layers)."""
    if scale == "full":
        return config
    values: dict[str, Any] = config.to_dict()
    values.update({name: size for name, size in TINY_SIZES.items() if name in values})
    if isinstance(values.get("layer_types"), list):  # qwen3, gemma2: one entry per layer
        values["layer_types"] = values["layer_types"][:TINY_LAYERS]
    values["dtype"] = "float32"
    return type(config).from_dict(values)


def random_model(config, seed: int, device: str = "cpu"):
    """A randomly initialised model of the config's class (seq2seq or causal LM), built on `device`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    dtype = getattr(config, "dtype", None) or torch.float32
    with torch.device(device):
        return auto.from_config(config, dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype)


def build_checkpoint(source: Path | str, out: Path | str, scale: Scale = "tiny", seed: int = 0,
                     device: str = "cpu") -> Path:
    """Write a loadable random-weight checkpoint (safetensors + the real tokenizer) of `source` into `out`; the
    weights are initialised on `device` (`cuda` for full-size builds)."""
    from transformers import AutoTokenizer

    source, out = Path(source), Path(out)
    if out.exists():
        raise ConfigError(f"--out {out}: already exists; choose a new folder (a checkpoint is never overwritten)")
    config = scaled_config(read_model_config(source), scale)
    load_tokenizer(source)  # refuses a folder without a usable vocabulary
    tokenizer = AutoTokenizer.from_pretrained(str(source))  # saved as it is (no pad token added)
    model = random_model(config, seed, device)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    building = temp_dir_beside(out)
    if (source / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(source))
    model.save_pretrained(building, safe_serialization=True)
    tokenizer.save_pretrained(building)
    info = {"source": str(source), "scale": scale, "seed": seed, "random_weights": True,
            "parameters": sum(p.numel() for p in model.parameters())}
    (building / BUILD_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    building.rename(out)
    del model  # a GPU build gives its memory back before the caller trains
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m competition.build_checkpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", required=True, type=Path, help="folder with config.json + tokenizer")
    parser.add_argument("--out", required=True, type=Path, help="new checkpoint folder (must not exist)")
    parser.add_argument("--scale", choices=("tiny", "full"), default="tiny",
                        help="tiny: 2 layers, hidden 64, fp32 (CPU tests) | full: the real size (GPU runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--device", default="cpu", help="where the weights are initialised: cpu | cuda (faster)")
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    out = build_checkpoint(args.source, args.out, args.scale, args.seed, args.device)
    print(f"random-weight {args.scale} checkpoint of {args.source}: {out} (load it with model_path={out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
