"""LLM track GPU benchmark: QLoRA training throughput per batching mode, and the time to generate every summary.

    python benchmarks/bench_llm.py                    # full: needs a CUDA GPU and ../shared/data/competition
    python benchmarks/bench_llm.py --train-runs grouped:16,grouped:32:ckpt --skip-generate
    python benchmarks/bench_llm.py --smoke            # tiny sizes on CPU (run by the tests so it cannot rot)

Training: a Llama-3.2-3B-shaped model (hidden 3072, 28 layers, 24 heads, 8 kv heads, ffn 8192, vocab 128256,
tied embeddings) with random weights, loaded in NF4 with double quantization, LoRA r16 on all linear layers,
paged AdamW 8-bit, bf16; prompts of real lengths built from the ../shared dialogues (12,500 by default, cycling
dev+test dialogues with dev summaries), through the track's own prompt builder, collators and Trainer. Each
`--train-runs` item is one run (batching, sequences per step, gradient checkpointing or not); throughput counts
real tokens only (no padding); a run that runs out of memory is reported as such.

Generation: the same model shape unquantized in bf16 (what a merged adapter is), 499 prompts from ../shared
test.csv, exactly 80 new tokens each, through the track's `generate_summaries` (tokenizing, decoding and
cleaning included): the fast greedy loop (llm/decode.py) per batch size, median of --repeats runs, and
`model.generate` at one batch size for comparison, with the share of identical summaries.
Bounds (one H200, benchmarks/hardware.py): LoRA training costs about 4 x parameters FLOP per real token (forward
and the input gradients of a frozen base; 6 x with gradient checkpointing, which runs the forward twice), so at most
BF16_FLOPS / (4 P) tokens/s; generation is at least the prefill's 2 P FLOP per prompt token plus, per decode step,
one read of the bf16 weights and of every row's KV cache so far. Each figure is printed with its ratio to its bound.
Prints one JSON object with the figures, the bounds and the targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from unittest.mock import patch

import pandas as pd
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
from hardware import BF16_FLOPS, HBM_BYTES_PER_S  # noqa: E402

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "competition"
TARGETS = {"train_real_tokens_per_s_shipped_min": 25_000, "train_real_tokens_per_s_fastest_min": 30_000,
           "generate_499_s_max": 4.0, "generate_faster_than": "generate_static_compiled"}
DEFAULT_TRAIN_RUNS = ("grouped:16384tok:ckpt,grouped:16384tok:ckpt:liger,grouped:12288tok,grouped:16384tok:liger,"
                      "grouped:24576tok:liger,grouped:32768tok:liger,grouped:24576tok:liger:nodrop")
SHIPPED_GENERATION_BATCH_TOKENS = 49152  # llm/configs/llama3.2-ko-3b.yaml (a test keeps them equal)
H200_COMPILED_ROW = (256, 98304)  # the fastest compiled fast loop measured on one H200 (3.72 s; 192/65536: 3.98 s)
RUN_FLAGS = ("ckpt", "fp32norms", "liger", "nodrop", "synced")
LLAMA_3B_SHAPE = dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                      intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True,
                      max_position_embeddings=4096, rope_theta=500000.0)
TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, tie_word_embeddings=True, max_position_embeddings=2048)


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
    from competition.modeling import load_tokenizer as load
    from competition.presets import get_preset
    from competition.tiny import model_source

    if not smoke:
        try:
            return load(name or get_preset("llama3.2-ko-3b").hub_id), name or get_preset("llama3.2-ko-3b").hub_id
        except OSError as err:
            print(f"warning: real tokenizer unavailable ({err.__class__.__name__}); using tiny-llama's: "
                  "token counts differ from the real model's", file=sys.stderr)
    return load(model_source(get_preset("tiny-llama"))), "tiny-llama"


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


def training_bound(parameters: int, checkpointing: bool) -> float:
    """Real tokens/s a frozen-base LoRA step cannot beat at BF16_FLOPS (see the module docstring)."""
    return BF16_FLOPS / ((6 if checkpointing else 4) * parameters)


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


@dataclass(frozen=True)
class TrainRun:
    """One training measurement: `batching:size[:flag...]`, size N sequences or Ntok (a token budget,
    batch_tokens); flags: ckpt (gradient checkpointing), fp32norms (kbit_fp32_norms=true), liger
    (fused_kernels=liger; else off), nodrop (lora_dropout=0), synced (transformers' host syncs: padding masks checked
    each forward, the Trainer's NaN/inf loss filter, blocking batch copies; the track avoids them). E.g. `grouped:16`,
    `padded:24000tok` or `grouped:24576tok:liger`."""

    batching: str
    size: int
    tokens: bool
    flags: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> "TrainRun":
        parts = spec.split(":")
        size = parts[1].removesuffix("tok") if len(parts) > 1 else ""
        if (len(parts) < 2 or parts[0] not in ("packed", "grouped", "padded") or not size.isdigit()
                or not set(parts[2:]) <= set(RUN_FLAGS)):
            raise SystemExit(f"error: --train-runs item {spec!r}; expected batching:N[tok][:flag...], batching one "
                             f"of packed, grouped, padded, flags among {', '.join(RUN_FLAGS)}")
        return cls(parts[0], int(size), parts[1].endswith("tok"), tuple(parts[2:]))

    @property
    def name(self) -> str:
        return "_".join([self.batching, f"{self.size}{'tok' if self.tokens else 'seq'}", *self.flags])

    def overrides(self) -> dict:
        size = {"batch_tokens": self.size} if self.tokens else {"per_device_train_batch_size": self.size, "batch_tokens": 0}
        return {"batching": self.batching, **size, "gradient_checkpointing": "ckpt" in self.flags,
                "kbit_fp32_norms": "fp32norms" in self.flags,
                "fused_kernels": "liger" if "liger" in self.flags else "off",
                "sdpa_sync_free_masks": "synced" not in self.flags,
                **({"lora_dropout": 0.0} if "nodrop" in self.flags else {})}


def training_examples(tokenizer, style, dialogues, summaries, count: int) -> list[dict[str, list[int]]]:
    from competition.prompts import encode_for_training

    examples = []
    for i in range(count):
        encoded = encode_for_training(tokenizer, style, dialogues[i % len(dialogues)], summaries[i % len(summaries)])
        examples.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    return examples


def bench_training(folder: Path, tokenizer, examples, runs: list[TrainRun], args) -> dict:
    """Real-token throughput of QLoRA training (the track's own loading, LoRA, collators and Trainer) per run.

    With `args.process_warmup` the first run is trained once more before any, untimed in the figures (reported as
    `process_warmup`): a process's first run measured 10-30% slower than the same run later (H200)."""
    from llm.kernels import liger_patches_undone

    lengths = [len(e["input_ids"]) for e in examples]
    results: dict = {"prompts": len(examples), "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths)}
    schedule = ([("process_warmup", runs[0])] if args.process_warmup and runs else []) + [(r.name, r) for r in runs]
    for index, (name, run) in enumerate(schedule):
        try:
            with liger_patches_undone():  # the next run starts from transformers' own modules
                results[name] = _train_once(folder, tokenizer, examples, run, args,
                                            profile=args.profile_steps if index == 0 else 0)
        except torch.OutOfMemoryError:
            results[name] = {"error": "CUDA out of memory"}
        if name == "process_warmup":
            results[name]["run"] = run.name
        print(json.dumps({f"training_{name}": results[name]}), flush=True)  # partial results survive a crash
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return results


def _train_once(folder: Path, tokenizer, examples, run: TrainRun, args, profile: int) -> dict:
    """One run through the track's own loading (NF4), LoRA, collator, loss and fused-kernel setting."""
    from competition.modeling import precision_dtype, resolve_precision
    from competition.presets import get_preset
    from llm.config import load_config
    from llm.kernels import fused_loss, liger_kernel_config
    from llm.model import attach_lora, effective_quantization, load_base_model
    from llm.train import loss_function, make_collator

    config = load_config("llama3.2-ko-3b", overrides={
        **run.overrides(), "gradient_accumulation_steps": 1, "quantization": "nf4", "optim": "auto", "logging_steps": 1000})
    quantization = effective_quantization(config)
    model = load_base_model(folder, config, quantization, dtype=precision_dtype(resolve_precision()))
    model.config.use_cache = False
    model = attach_lora(model, tokenizer, config, get_preset("llama3.2-ko-3b"), quantization, [])
    kernels = liger_kernel_config(config.fused_kernels, model)
    result = timed_training(model, tokenizer, examples, config, make_collator(config, tokenizer, fused_loss(kernels)),
                            loss_function(kernels), args, profile, liger=kernels, step_syncs="synced" in run.flags)
    return {**result, "quantization": quantization, "gradient_checkpointing": config.gradient_checkpointing,
            "kbit_fp32_norms": config.kbit_fp32_norms, "lora_dropout": config.lora_dropout,
            "fused_kernels": sorted(k for k, on in (kernels or {}).items() if on)}


def timed_training(model, tokenizer, examples, config, collate, compute_loss, args, profile: int = 0,
                   liger: dict | None = None, step_syncs: bool = False) -> dict:
    """Train `args.warmup_steps` untimed then `args.train_steps` timed optimizer steps with the track's Trainer
    arguments and batches; real (non-padding) tokens per second, padding share and peak memory. CUDA is
    synchronised only where the clock starts and stops, so steps overlap host and GPU work as in a real run."""
    from transformers import Trainer, TrainerCallback

    from competition.runs import STEP_SYNC_ARGUMENTS
    from llm.train import real_tokens, training_arguments, training_dataset

    step_real: list[int] = []
    step_tokens: list[int] = []  # with padding
    step_rows: list[int] = []

    def counting(features):
        batch = collate(features)
        step_real.append(sum(real_tokens(f) for f in features))
        step_tokens.append(batch["input_ids"].numel())
        step_rows.append(sum(len(f.get("bucket", [f])) for f in features))
        return batch

    marks: dict[str, float] = {}
    profiler = _start_profiler(profile)

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if state.global_step in (args.warmup_steps, args.warmup_steps + args.train_steps):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                marks["start" if state.global_step == args.warmup_steps else "end"] = time.perf_counter()
            if profiler is not None and state.global_step <= args.warmup_steps + profile:
                profiler.step()

    train_args = training_arguments(config, Path(tempfile.mkdtemp()), use_bf16=torch.cuda.is_available(),
                                    use_fp16=False, liger=liger)
    train_args.max_steps = args.warmup_steps + args.train_steps
    train_args.eval_strategy = train_args.save_strategy = "no"
    train_args.load_best_model_at_end = False
    train_args.disable_tqdm = True
    if step_syncs:
        train_args = dataclasses.replace(train_args, **STEP_SYNC_ARGUMENTS)
    trainer = Trainer(model=model, args=train_args, train_dataset=training_dataset(examples, config),
                      data_collator=counting, compute_loss_func=compute_loss, processing_class=tokenizer,
                      callbacks=[Clock()])
    try:
        trainer.train()
    finally:
        if profiler is not None:
            profiler.stop()
    if profiler is not None:
        _save_profile(profiler, args)
    timed = slice(args.warmup_steps, args.warmup_steps + args.train_steps)
    seconds = marks["end"] - marks["start"]
    return {"real_tokens_per_s": sum(step_real[timed]) / seconds, "seconds": seconds, "steps": args.train_steps,
            "sequences_per_step_mean": statistics.mean(step_rows[timed]), "padding_share": 1 - sum(step_real[timed]) / sum(step_tokens[timed]),
            "largest_step_tokens": max(step_tokens),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def _start_profiler(steps: int):
    """A torch profiler over `steps` timed training steps (the first run only), or None."""
    if steps <= 0 or not torch.cuda.is_available():
        return None
    from torch.profiler import ProfilerActivity, profile, schedule

    profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                       schedule=schedule(wait=0, warmup=1, active=steps, repeat=1))
    profiler.start()
    return profiler


def _save_profile(profiler, args) -> None:
    table = profiler.key_averages().table(sort_by="cuda_time_total", row_limit=30)
    print(table, file=sys.stderr)
    if args.out:
        Path(args.out).with_suffix(".profile.txt").write_text(table, encoding="utf-8")


def bench_generation(folder: Path, tokenizer, style, test_dialogues, args) -> dict:
    """Seconds for the track's `generate_summaries` to write every test summary with exactly `new_tokens` tokens
    (bf16, merged-like), per batch size (median of `repeats`), and the same for `model.generate` at one batch size,
    with how many summaries the two agree on."""
    from transformers import AutoModelForCausalLM

    from competition.attention import sdpa_backend_scope
    from llm.config import load_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if device == "cuda" else torch.float32,
                                                 attn_implementation="sdpa", use_safetensors=True).to(device).eval()

    def config_for(batch_size: int, decoding: str, **extra):
        return load_config("llama3.2-ko-3b", overrides={
            "max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "per_device_eval_batch_size": batch_size,
            "decoding": decoding, **extra})

    _timed_summaries(model, tokenizer, style, test_dialogues[:8], config_for(8, "fast"))  # CUDA/cuBLAS warm-up
    results: dict = {"prompts": len(test_dialogues), "new_tokens": args.new_tokens, "repeats": args.repeats}
    fast_texts: dict[int, list[str]] = {}
    for backend, attention, grouping, batch_size, batch_tokens in itertools.product(
            args.fast_backends, args.decode_attentions, args.prefill_groups, args.batch_sizes, args.batch_tokens):
        config = config_for(batch_size, "fast", generation_batch_tokens=batch_tokens, decode_attention=attention)
        with sdpa_backend_scope(backend), prefill_grouping(grouping == "on"):
            runs = [_timed_summaries(model, tokenizer, style, test_dialogues, config) for _ in range(args.repeats)]
        variant = "_".join(v for v in (backend, attention, "ungrouped" if grouping == "off" else "auto")
                           if v != "auto") or "auto"
        name = fast_row_name(batch_size, batch_tokens, variant)
        row = {"seconds_median": statistics.median(r[0] for r in runs), "seconds_each": [r[0] for r in runs]}
        if fast_texts.get(batch_size) is None:
            fast_texts[batch_size] = runs[-1][1]
        else:
            row.update(_agreement(runs[-1][1], fast_texts, batch_size))
        results[name] = row
        print(json.dumps({f"generation_{name}": row}), flush=True)
    if args.compare_generate_batch:
        size = args.compare_generate_batch
        seconds, texts = _timed_summaries(model, tokenizer, style, test_dialogues, config_for(size, "generate"))
        results[f"generate_batch_{size}"] = {"seconds": seconds,
                                             **_agreement(texts, fast_texts, size)}
        print(json.dumps({f"generation_generate_batch_{size}": results[f"generate_batch_{size}"]}), flush=True)
    for batch_size, batch_tokens in args.compiled_rows:  # the first pays the compile, the others reuse it
        with sdpa_backend_scope(args.compiled_backend):
            results.update(_compiled_fast(model, tokenizer, style, test_dialogues, config_for(
                batch_size, "fast", compile_decode=True, generation_batch_tokens=batch_tokens), fast_texts, args))
    if args.compare_static_batch:
        # batches of rows only (no token budget): the static cache compiles once per batch shape
        static = config_for(args.compare_static_batch, "generate", cache_implementation="static",
                            generation_batch_tokens=0)
        results.update(_static_generate(model, tokenizer, style, test_dialogues, static, fast_texts))
    if args.decode_breakdown:
        results["breakdown"] = _decode_breakdown(model, tokenizer, style, test_dialogues, args)
        print(json.dumps({"generation_breakdown": results["breakdown"]}), flush=True)
    if args.decode_backends and device == "cuda":
        results["decode_backends"] = _decode_backends(model, tokenizer, style, test_dialogues, args)
        print(json.dumps({"generation_decode_backends": results["decode_backends"]}), flush=True)
    if args.decode_profile and device == "cuda":
        _decode_profile(model, tokenizer, style, test_dialogues, args)
    if args.liger_generate and device == "cuda":
        results.update(_liger_generate(model, tokenizer, style, test_dialogues, config_for, fast_texts, args))
    if args.check_fp32 and device == "cuda":
        del model
        gc.collect()
        torch.cuda.empty_cache()
        results["fp32_check"] = _fp32_agreement(folder, tokenizer, style, test_dialogues[:args.check_fp32], config_for)
        print(json.dumps({"generation_fp32_check": results["fp32_check"]}), flush=True)
    return results


@contextmanager
def prefill_grouping(on: bool) -> Iterator[None]:
    """The fast loop's prefill in groups of similar length (`on`, the track's), or each batch at once."""
    import llm.decode

    with patch.object(llm.decode, "PREFILL_GROUP_MIN_ROWS", llm.decode.PREFILL_GROUP_MIN_ROWS if on else sys.maxsize):
        yield


def _generation_bounds(folder: Path, parameters: int, tokenizer, style, dialogues, args) -> dict[str, float]:
    from transformers import AutoConfig

    from competition.prompts import encode_for_generation

    lengths = [len(encode_for_generation(tokenizer, style, d).input_ids) for d in dialogues]
    config = AutoConfig.from_pretrained(folder)
    sizes = {(size, tokens) for size in args.batch_sizes for tokens in args.batch_tokens}
    sizes |= set(args.compiled_rows)
    return {f"generate_seconds_{batch_key(size, tokens)}": generation_bound(config, parameters, lengths, size,
                                                                         args.new_tokens, tokens)
            for size, tokens in sorted(sizes)}


def batch_key(batch_size: int, batch_tokens: int = 0) -> str:
    """`batch_128`, or `batch_128_budget_32768` with a generation token budget: rows and bounds share it."""
    return f"batch_{batch_size}" + (f"_budget_{batch_tokens}" if batch_tokens else "")


def fast_row_name(batch_size: int, batch_tokens: int, variant: str = "auto") -> str:
    """`fast_batch_128`, `fast_compiled_batch_128_budget_32768`, `fast_cudnn_batch_256`, ..."""
    return "fast_" + ("" if variant == "auto" else f"{variant}_") + batch_key(batch_size, batch_tokens)


def _decode_breakdown(model, tokenizer, style, dialogues, args) -> dict:
    """Where the fast loop's time goes at one batch size (and the first --batch-tokens budget): prompt encoding
    (CPU), prefill and one step (1 new token), and whole batches with and without the CUDA graph."""
    from competition.prompts import encode_for_generation, left_pad_batch
    from llm.decode import fast_greedy_generate
    from llm.generate import length_sorted_batches, stop_token_ids

    start = time.perf_counter()
    prompts = [encode_for_generation(tokenizer, style, d).input_ids for d in dialogues]
    result: dict = {"encode_s": time.perf_counter() - start, "batch_size": args.decode_breakdown}
    stops = stop_token_ids(model, tokenizer, style)
    batches = [left_pad_batch(tokenizer, [prompts[i] for i in indices])
               for indices in length_sorted_batches([len(p) for p in prompts], args.decode_breakdown,
                                                    args.batch_tokens[0])]
    for label, new_tokens, graph in (("prefill_s", 1, True), ("graph_s", args.new_tokens, True),
                                     ("eager_s", args.new_tokens, False)):
        per_batch = []
        for batch in batches:
            torch.cuda.synchronize()
            start = time.perf_counter()
            fast_greedy_generate(model, batch["input_ids"].cuda(), batch["attention_mask"].cuda(), new_tokens, stops,
                                 stops[0], min_new_tokens=new_tokens, cuda_graph=graph)
            torch.cuda.synchronize()
            per_batch.append(round(time.perf_counter() - start, 3))
        result[label] = per_batch
    result["prompt_widths"] = [int(b["input_ids"].shape[1]) for b in batches]
    return result


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
    variant = "compiled" + ("" if args.compiled_backend == "auto" else f"_{args.compiled_backend}")
    name = fast_row_name(config.per_device_eval_batch_size, config.generation_batch_tokens, variant)
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


def _longest_batch(tokenizer, style, dialogues, batch_size: int) -> dict[str, torch.Tensor]:
    from competition.prompts import encode_for_generation, left_pad_batch
    from llm.generate import length_sorted_batches

    prompts = [encode_for_generation(tokenizer, style, d).input_ids for d in dialogues]
    indices = length_sorted_batches([len(p) for p in prompts], batch_size)[0]
    return {k: torch.as_tensor(v).cuda() for k, v in left_pad_batch(tokenizer, [prompts[i] for i in indices]).items()}


def _decode_backends(model, tokenizer, style, dialogues, args) -> dict:
    """Seconds for the fast loop (CUDA graph) on the longest batch per SDPA backend (median of 3): the graph replays
    the kernels, so cuDNN's per-shape host cost is paid once at capture."""
    from competition.attention import sdpa_backend_scope
    from llm.decode import fast_greedy_generate
    from llm.generate import stop_token_ids

    batch = _longest_batch(tokenizer, style, dialogues, args.decode_breakdown or 128)
    stops = stop_token_ids(model, tokenizer, style)
    result: dict = {"batch": list(batch["input_ids"].shape)}
    for backend in args.decode_backends.split(","):
        seconds = []
        with sdpa_backend_scope(backend):
            for _ in range(4):
                torch.cuda.synchronize()
                start = time.perf_counter()
                fast_greedy_generate(model, batch["input_ids"], batch["attention_mask"], args.new_tokens, stops,
                                     stops[0], min_new_tokens=args.new_tokens)
                torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
        result[backend] = statistics.median(seconds[1:])
    return result


def _decode_profile(model, tokenizer, style, dialogues, args) -> None:
    """Kernel tables of the eager fast loop on the longest batch: the prefill alone (1 new token), then prefill + 16
    decode steps, so the decode's share is the difference (stderr, and beside --out)."""
    from torch.profiler import ProfilerActivity, profile

    from llm.decode import fast_greedy_generate
    from llm.generate import stop_token_ids

    batch = _longest_batch(tokenizer, style, dialogues, args.decode_breakdown or 128)
    stops = stop_token_ids(model, tokenizer, style)
    tables = []
    for new_tokens in (1, 17):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
            fast_greedy_generate(model, batch["input_ids"], batch["attention_mask"], new_tokens, stops, stops[0],
                                 min_new_tokens=new_tokens, cuda_graph=False)
            torch.cuda.synchronize()
        tables.append(f"{new_tokens} new tokens, batch {list(batch['input_ids'].shape)}:\n"
                      + profiler.key_averages().table(sort_by="cuda_time_total", row_limit=30))
    text = "\n".join(tables)
    print(text, file=sys.stderr)
    if args.out:
        Path(args.out).with_suffix(".decode-profile.txt").write_text(text, encoding="utf-8")


def _liger_generate(model, tokenizer, style, dialogues, config_for, fast_texts, args) -> dict:
    """The fast loop with liger's RMSNorm, RoPE and SwiGLU kernels on the model (fewer kernels per token)."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    from llm.kernels import liger_patches_undone

    size = args.compare_generate_batch or args.batch_sizes[0]
    with liger_patches_undone():
        _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True,
                                        fused_linear_cross_entropy=False, cross_entropy=False)
        runs = [_timed_summaries(model, tokenizer, style, dialogues, config_for(size, "fast"))
                for _ in range(args.repeats)]
    row = {"seconds_median": statistics.median(r[0] for r in runs), "seconds_each": [r[0] for r in runs],
           **_agreement(runs[-1][1], fast_texts, size)}
    print(json.dumps({f"generation_fast_liger_batch_{size}": row}), flush=True)
    return {f"fast_liger_batch_{size}": row}


def _fp32_agreement(folder: Path, tokenizer, style, dialogues, config_for) -> dict:
    """Share of identical summaries from the fast loop (CUDA graph) and `model.generate` with fp32 weights, where
    kernel rounding cannot flip a greedy choice the way it does between bf16 paths on random weights."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa",
                                                 use_safetensors=True).to("cuda").eval()
    texts = {decoding: _timed_summaries(model, tokenizer, style, dialogues, config_for(len(dialogues), decoding))[1]
             for decoding in ("fast", "generate")}
    same = sum(a == b for a, b in zip(texts["fast"], texts["generate"]))
    return {"prompts": len(dialogues), "same_summary": same / len(dialogues)}


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


def compiled_rows(parser: argparse.ArgumentParser, batches: str, budgets: str) -> list[tuple[int, int]]:
    """(batch size, token budget) of each compiled fast-loop row; a single budget serves every batch size."""
    sizes = [int(b) for b in batches.split(",") if int(b)]
    tokens = [int(t) for t in budgets.split(",")]
    if len(tokens) == 1:
        tokens *= len(sizes)
    if sizes and len(tokens) != len(sizes):
        parser.error(f"--compiled-batch-tokens {budgets}: one value, or one per --compiled-decode-batch ({batches})")
    return list(zip(sizes, tokens))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU, bundled sample data")
    parser.add_argument("--data-dir", type=Path, help="folder with dev.csv and test.csv (default: ../shared data)")
    parser.add_argument("--train-prompts", type=int, default=12_500)
    parser.add_argument("--train-runs", default=DEFAULT_TRAIN_RUNS,
                        help="comma-separated batching:N[tok][:ckpt][:fp32norms], one run each (N rows, or a budget "
                        "of N tokens; ckpt = gradient checkpointing; fp32norms = kbit_fp32_norms=true)")
    parser.add_argument("--train-steps", type=int, default=30, help="timed optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (the longest batch "
                        "comes first with grouped batches, so the peak memory is seen)")
    parser.add_argument("--no-process-warmup", dest="process_warmup", action="store_false",
                        help="time the first run as the process's first (default: train it once untimed first)")
    parser.add_argument("--profile-steps", type=int, default=0, help="profile this many steps of the first run "
                        "(table on stderr and next to --out)")
    parser.add_argument("--batch-sizes", default="64,128,256", help="generation batch sizes to sweep")
    parser.add_argument("--batch-tokens", default=str(SHIPPED_GENERATION_BATCH_TOKENS),
                        help="generation_batch_tokens values to sweep with each batch size (0 = rows only; default: "
                        "llama3.2-ko-3b.yaml's)")
    parser.add_argument("--decode-attentions", default="auto", help="decode_attention values for the fast-loop rows, "
                        "e.g. auto,packed")
    parser.add_argument("--prefill-groups", default="on", help="fast-loop rows with the prefill in groups of similar "
                        "length (on, the track's), each batch at once (off), or both: on,off")
    parser.add_argument("--fast-backends", default="auto", help="SDPA backends for the fast-loop rows, e.g. auto,cudnn")
    parser.add_argument("--compiled-batch-tokens", default=f"{SHIPPED_GENERATION_BATCH_TOKENS},{H200_COMPILED_ROW[1]}",
                        help="generation_batch_tokens of the compiled fast-loop rows, comma-separated, paired with "
                             "--compiled-decode-batch (one value serves every row)")
    parser.add_argument("--compiled-backend", default="auto", help="SDPA backend of the compiled fast-loop row")
    parser.add_argument("--repeats", type=int, default=3, help="timed generation runs per batch size (median)")
    parser.add_argument("--compare-generate-batch", type=int, default=128,
                        help="also time decoding=generate (model.generate) at this batch size; 0 = skip")
    parser.add_argument("--new-tokens", type=int, default=80, help="forced new tokens per summary")
    parser.add_argument("--decode-breakdown", type=int, default=0, help="time prefill, graph and eager decoding "
                        "per batch at this batch size (GPU only); 0 = skip")
    parser.add_argument("--compiled-decode-batch", default=f"128,{H200_COMPILED_ROW[0]}", help="also time the fast "
                        "loop with compile_decode=true at these batch sizes, comma-separated (cold, then warm; "
                        "default: the shipped batch and budget, then H200_COMPILED_ROW); 0 = skip")
    parser.add_argument("--compare-static-batch", type=int, default=128, help="also time model.generate with "
                        "cache_implementation=static (compiled forward) at this batch size, cold and warm; 0 = skip")
    parser.add_argument("--decode-backends", default="", help="GPU: time the fast loop on the longest batch per "
                        "SDPA backend, e.g. auto,efficient,math,cudnn")
    parser.add_argument("--decode-profile", action="store_true", help="GPU: kernel table of the eager decode loop")
    parser.add_argument("--liger-generate", action="store_true", help="GPU: also time the fast loop with liger's "
                        "RMSNorm/RoPE/SwiGLU kernels applied to the model (liger-kernel installed)")
    parser.add_argument("--check-fp32", type=int, default=64, help="also compare fast and generate summaries of "
                        "this many prompts with fp32 weights (GPU only); 0 = skip")
    parser.add_argument("--tokenizer", help="hub id or folder of the tokenizer (default: the llama3.2-ko-3b one)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_prompts, args.train_steps, args.warmup_steps = 32, 2, 1
        args.train_runs = "packed:4,grouped:4,padded:4,padded:800tok"
        args.process_warmup = False
        args.new_tokens, args.batch_sizes, args.repeats, args.compare_generate_batch = 4, "4,8", 1, 8
        args.batch_tokens = "0,400"
        args.prefill_groups = "on,off"
        args.compare_static_batch, args.compiled_decode_batch, args.compiled_batch_tokens = 0, "8", "0"
    elif not torch.cuda.is_available():
        sys.exit("error: the full benchmark needs a CUDA GPU (bitsandbytes NF4); use --smoke on CPU")
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.batch_tokens = [int(t) for t in str(args.batch_tokens).split(",")]
    args.fast_backends = args.fast_backends.split(",")
    args.prefill_groups = args.prefill_groups.split(",")
    args.compiled_rows = compiled_rows(parser, str(args.compiled_decode_batch), str(args.compiled_batch_tokens))
    if not set(args.prefill_groups) <= {"on", "off"}:
        parser.error(f"--prefill-groups {','.join(args.prefill_groups)}: expected on, off or on,off")
    args.decode_attentions = args.decode_attentions.split(",")
    runs = [TrainRun.parse(spec) for spec in args.train_runs.split(",") if spec]
    dialogues, summaries, test_dialogues = load_texts(args.smoke, args.data_dir)
    if args.smoke:
        test_dialogues = test_dialogues[:12]
    tokenizer, tokenizer_name = load_tokenizer(args.smoke, args.tokenizer)
    from competition.presets import get_preset
    from competition.prompts import prompt_style_for, resolve_template

    style = resolve_template(prompt_style_for(get_preset("llama3.2-ko-3b")), tokenizer)
    report = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "smoke": args.smoke, "tokenizer": tokenizer_name, "targets": TARGETS}
    with tempfile.TemporaryDirectory() as scratch:
        folder, parameters = build_model_folder(tokenizer, args.smoke, Path(scratch) / "model")
        report["parameters"] = parameters
        report["bounds"] = {"train_real_tokens_per_s": training_bound(parameters, False),
                            "train_real_tokens_per_s_checkpointing": training_bound(parameters, True)}
        if not args.skip_train:
            examples = training_examples(tokenizer, style, dialogues, summaries, args.train_prompts)
            report["training"] = bench_training(folder, tokenizer, examples, runs, args)
            for name, row in report["training"].items():
                if isinstance(row, dict) and "real_tokens_per_s" in row:
                    row["bound_over_measured"] = training_bound(parameters, row["gradient_checkpointing"]) / row["real_tokens_per_s"]
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if not args.skip_generate:
            report["generation"] = bench_generation(folder, tokenizer, style, test_dialogues, args)
            report["bounds"].update(_generation_bounds(folder, parameters, tokenizer, style, test_dialogues, args))
            for name, row in report["generation"].items():  # e.g. fast_batch_128 against generate_seconds_batch_128
                key = re.search(r"batch_\d+(_budget_\d+)?$", name)
                bound = report["bounds"].get(f"generate_seconds_{key.group(0)}") if key else None
                seconds = (row.get("seconds_median") or row.get("warm_seconds") or row.get("seconds")) if isinstance(row, dict) else None
                if bound and seconds:
                    row["measured_over_bound"] = seconds / bound
            report["generation_verdict"] = generation_verdict(report["generation"])
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
