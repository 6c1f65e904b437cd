"""LLM track generation benchmark: seconds to write all 499 test summaries at the shipped generation settings.

    python benchmarks/bench_llm_generate.py                  # needs a CUDA GPU and ../shared/data/competition
    python benchmarks/bench_llm_generate.py --batch-sizes 64,128,256 --batch-tokens 0,49152
    python benchmarks/bench_llm_generate.py --smoke          # tiny sizes on CPU (run by the tests so it cannot rot)

The model of bench_llm_setup.py unquantized in bf16 (what a merged adapter is), 499 prompts from ../shared test.csv,
exactly 80 new tokens each, through the track's `generate_summaries` (tokenizing, decoding and cleaning included):
- the fast greedy loop (llm/decode.py) per batch size and token budget (default: the shipped ones), median of
  --repeats runs;
- the same loop with its step compiled (compile_decode=true), cold then warm;
- its peers from transformers: `model.generate`, and `model.generate` with the static cache and compiled forward
  (cold then warm), each with the share of summaries the fast loop agrees on.
Bound (benchmarks/hardware.py): at least the prefill's 2 P FLOP per prompt token plus, per decode step, one read of
the bf16 weights and of every row's KV cache so far; each row is printed with its ratio to it. Prints one JSON object
with the figures, the bounds and the verdict against the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm_setup import (  # noqa: E402
    PRESET,
    add_common_arguments,
    build_model_folder,
    device_name,
    load_texts,
    load_tokenizer,
    print_report,
    prompt_style,
    require_gpu_unless_smoke,
)
from hardware import BF16_FLOPS, HBM_BYTES_PER_S  # noqa: E402

TARGETS = {"generate_499_s_max": 4.0, "generate_faster_than": "generate_static_compiled"}


def generation_bound(model_config, parameters: int, prompt_lengths: list[int], batch_size: int,
                     new_tokens: int, batch_tokens: int = 0) -> float:
    """Seconds that length-sorted batches of `batch_size` (and `batch_tokens`) cannot beat: prefill FLOPs, then per
    decode step the weights and the KV cache read once from memory."""
    from llm.generate import length_sorted_batches

    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // model_config.num_attention_heads
    kv_bytes_per_token = 2 * model_config.num_hidden_layers * model_config.num_key_value_heads * head_dim * 2
    seconds = 2 * parameters * sum(prompt_lengths) / BF16_FLOPS
    for batch in length_sorted_batches(prompt_lengths, batch_size, batch_tokens):
        width = max(prompt_lengths[i] for i in batch)
        for step in range(1, new_tokens):
            seconds += (2 * parameters + len(batch) * (width + step) * kv_bytes_per_token) / HBM_BYTES_PER_S
    return seconds


def batch_key(batch_size: int, batch_tokens: int = 0) -> str:
    """`batch_128`, or `batch_128_budget_32768` with a generation token budget: rows and bounds share it."""
    return f"batch_{batch_size}" + (f"_budget_{batch_tokens}" if batch_tokens else "")


def fast_row_name(batch_size: int, batch_tokens: int, variant: str = "") -> str:
    """`fast_batch_128`, `fast_compiled_batch_128_budget_49152`, ..."""
    return "fast_" + (f"{variant}_" if variant else "") + batch_key(batch_size, batch_tokens)


def bench_generation(folder: Path, tokenizer, style, test_dialogues, args) -> dict:
    """Seconds for the track's `generate_summaries` to write every test summary with exactly `new_tokens` tokens
    (bf16, merged-like): the fast loop per batch size and budget (median of `repeats`), compiled, and its peers."""
    from transformers import AutoModelForCausalLM

    from llm.config import load_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if device == "cuda" else torch.float32,
                                                 attn_implementation="sdpa", use_safetensors=True).to(device).eval()

    def config_for(batch_size: int, decoding: str, **extra):
        return load_config(PRESET, overrides={
            "max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "per_device_eval_batch_size": batch_size,
            "decoding": decoding, **extra})

    _timed_summaries(model, tokenizer, style, test_dialogues[:8], config_for(8, "fast"))  # CUDA/cuBLAS warm-up
    results: dict = {"prompts": len(test_dialogues), "new_tokens": args.new_tokens, "repeats": args.repeats}
    fast_texts: dict[int, list[str]] = {}
    for batch_size in args.batch_sizes:
        for batch_tokens in args.batch_tokens:
            config = config_for(batch_size, "fast", generation_batch_tokens=batch_tokens)
            runs = [_timed_summaries(model, tokenizer, style, test_dialogues, config) for _ in range(args.repeats)]
            row = {"seconds_median": statistics.median(r[0] for r in runs), "seconds_each": [r[0] for r in runs]}
            if fast_texts.get(batch_size) is None:
                fast_texts[batch_size] = runs[-1][1]
            else:
                row.update(_agreement(runs[-1][1], fast_texts, batch_size))
            results[fast_row_name(batch_size, batch_tokens)] = row
            print(json.dumps({f"generation_{fast_row_name(batch_size, batch_tokens)}": row}), flush=True)
    if args.compare_generate_batch:
        size = args.compare_generate_batch
        seconds, texts = _timed_summaries(model, tokenizer, style, test_dialogues, config_for(size, "generate"))
        results[f"generate_batch_{size}"] = {"seconds": seconds, **_agreement(texts, fast_texts, size)}
        print(json.dumps({f"generation_generate_batch_{size}": results[f"generate_batch_{size}"]}), flush=True)
    for batch_size in args.compiled_batch_sizes:  # the first pays the compile, the others reuse it
        results.update(_compiled_fast(model, tokenizer, style, test_dialogues, config_for(
            batch_size, "fast", compile_decode=True, generation_batch_tokens=args.batch_tokens[0]), fast_texts, args))
    if args.compare_static_batch:
        # batches of rows only (no token budget): the static cache compiles once per batch shape
        static = config_for(args.compare_static_batch, "generate", cache_implementation="static",
                            generation_batch_tokens=0)
        results.update(_static_generate(model, tokenizer, style, test_dialogues, static, fast_texts))
    return results


def generation_bounds(folder: Path, parameters: int, tokenizer, style, dialogues, args) -> dict[str, float]:
    """The bound of every (batch size, budget) timed, named like its rows."""
    from transformers import AutoConfig

    from competition.modeling.prompts import encode_for_generation

    lengths = [len(encode_for_generation(tokenizer, style, d).input_ids) for d in dialogues]
    config = AutoConfig.from_pretrained(folder)
    sizes = {(size, tokens) for size in args.batch_sizes for tokens in args.batch_tokens}
    sizes |= {(size, args.batch_tokens[0]) for size in args.compiled_batch_sizes}
    return {f"generate_seconds_{batch_key(size, tokens)}": generation_bound(config, parameters, lengths, size,
                                                                         args.new_tokens, tokens)
            for size, tokens in sorted(sizes)}


def _agreement(texts: list[str], fast_texts: dict[int, list[str]], batch_size: int) -> dict[str, float]:
    """How far `texts` agree with the fast loop's summaries at this batch size (else at the first one timed): the
    share of equal summaries, and the mean share of each summary's characters before the first difference (random
    bf16 weights leave near-ties that other kernels' rounding flips, so whole summaries rarely match)."""
    reference = fast_texts.get(batch_size) or next(iter(fast_texts.values()))
    prefix = [1.0 if a == b else len(os.path.commonprefix([a, b])) / max(len(a), len(b))
              for a, b in zip(texts, reference)]
    return {"same_summary_as_fast": sum(a == b for a, b in zip(texts, reference)) / len(texts),
            "shared_prefix_as_fast": statistics.fmean(prefix)}


def _compiled_fast(model, tokenizer, style, dialogues, config, fast_texts, args) -> dict:
    """The fast loop with its step compiled (compile_decode=true): the first pass pays the compile, then the
    median of `repeats` warm passes."""
    runs = [_timed_summaries(model, tokenizer, style, dialogues, config) for _ in range(1 + args.repeats)]
    warm = statistics.median(r[0] for r in runs[1:])
    row = {"cold_seconds": runs[0][0], "seconds_median": warm, "seconds_each": [r[0] for r in runs[1:]],
           "compile_seconds": runs[0][0] - warm,
           **_agreement(runs[-1][1], fast_texts, config.per_device_eval_batch_size)}
    name = fast_row_name(config.per_device_eval_batch_size, config.generation_batch_tokens, "compiled")
    print(json.dumps({f"generation_{name}": row}), flush=True)
    return {name: row}


def _static_generate(model, tokenizer, style, dialogues, config, fast_texts) -> dict:
    """`model.generate` with transformers' static cache (and the forward compile it turns on), twice: the first pass
    pays the compile (one per new batch shape), the second shows the warm speed; compile = cold - warm."""
    runs = [_timed_summaries(model, tokenizer, style, dialogues, config) for _ in range(2)]
    row = {"cold_seconds": runs[0][0], "warm_seconds": runs[1][0], "compile_seconds": runs[0][0] - runs[1][0],
           **_agreement(runs[1][1], fast_texts, config.per_device_eval_batch_size)}
    name = f"generate_static_compiled_batch_{config.per_device_eval_batch_size}"
    print(json.dumps({f"generation_{name}": row}), flush=True)
    return {name: row}


def _timed_summaries(model, tokenizer, style, dialogues, config) -> tuple[float, list[str]]:
    from llm.generate import generate_summaries

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    texts = generate_summaries(model, tokenizer, style, dialogues, config, desc=f"{config.decoding}")
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, texts


def generation_verdict(rows: dict) -> dict:
    """The fastest fast-loop row (warm median) against the generation targets: <= 4 s, and faster than the static-cache
    compiled `generate` of the same run (None where that row was not run)."""
    fast = {name: row["seconds_median"] for name, row in rows.items()
            if name.startswith("fast") and isinstance(row, dict) and row.get("seconds_median")}
    if not fast:
        return {}
    fastest = min(fast, key=fast.get)
    static = [row["warm_seconds"] for name, row in rows.items() if name.startswith("generate_static_compiled")]
    return {"fastest": fastest, "fastest_seconds": fast[fastest],
            "meets_targets": {"generate_499_s_max": fast[fastest] <= TARGETS["generate_499_s_max"],
                              "generate_faster_than": fast[fastest] < min(static) if static else None}}


def add_bound_ratios(rows: dict, bounds: dict[str, float]) -> None:
    """Each row's seconds over the bound of its batch size and budget (fast_batch_128 / generate_seconds_batch_128)."""
    for name, row in rows.items():
        key = re.search(r"batch_\d+(_budget_\d+)?$", name)
        bound = bounds.get(f"generate_seconds_{key.group(0)}") if key else None
        seconds = (row.get("seconds_median") or row.get("warm_seconds") or row.get("seconds")) if isinstance(row, dict) else None
        if bound and seconds:
            row["measured_over_bound"] = seconds / bound


def _integers(text: str) -> list[int]:
    return [int(value) for value in str(text).split(",") if value != ""]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; batch sizes and budgets default to the shipped config's."""
    from llm.config import load_config

    shipped = load_config(PRESET)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch-sizes", type=_integers, default=[shipped.per_device_eval_batch_size],
                        help="fast-loop batch sizes, comma-separated (default: the shipped one)")
    parser.add_argument("--batch-tokens", type=_integers, default=[shipped.generation_batch_tokens],
                        help="generation_batch_tokens values timed with each batch size (0 = rows only; default: the "
                        "shipped one); the compiled rows use the first")
    parser.add_argument("--compiled-batch-sizes", type=_integers, default=[shipped.per_device_eval_batch_size],
                        help="also time the fast loop with compile_decode=true at these batch sizes (cold, then "
                        "warm; default: the shipped one); 0 = skip")
    parser.add_argument("--compare-generate-batch", type=int, default=shipped.per_device_eval_batch_size,
                        help="also time decoding=generate (model.generate) at this batch size; 0 = skip")
    parser.add_argument("--compare-static-batch", type=int, default=shipped.per_device_eval_batch_size,
                        help="also time model.generate with cache_implementation=static (compiled forward) at this "
                        "batch size, cold and warm; 0 = skip")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per fast-loop row (median)")
    parser.add_argument("--new-tokens", type=int, default=80, help="forced new tokens per summary")
    args = parser.parse_args(argv)
    if args.smoke:
        args.new_tokens, args.batch_sizes, args.repeats, args.compare_generate_batch = 4, [4, 8], 1, 8
        args.batch_tokens, args.compiled_batch_sizes, args.compare_static_batch = [0, 400], [8], 0
    args.compiled_batch_sizes = [size for size in args.compiled_batch_sizes if size]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_gpu_unless_smoke(args.smoke)
    _, _, test_dialogues = load_texts(args.smoke, args.data_dir)
    if args.smoke:
        test_dialogues = test_dialogues[:12]
    tokenizer, tokenizer_name = load_tokenizer(args.smoke, args.tokenizer)
    style = prompt_style(tokenizer)
    report = {"device": device_name(), "smoke": args.smoke, "tokenizer": tokenizer_name, "targets": TARGETS}
    with tempfile.TemporaryDirectory() as scratch:
        folder, parameters = build_model_folder(tokenizer, args.smoke, Path(scratch) / "model")
        report["parameters"] = parameters
        report["generation"] = bench_generation(folder, tokenizer, style, test_dialogues, args)
        report["bounds"] = generation_bounds(folder, parameters, tokenizer, style, test_dialogues, args)
    add_bound_ratios(report["generation"], report["bounds"])
    report["generation_verdict"] = generation_verdict(report["generation"])
    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
