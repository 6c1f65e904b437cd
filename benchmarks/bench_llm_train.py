"""LLM track training benchmark: real tokens per second of QLoRA training at the shipped config.

    python benchmarks/bench_llm_train.py                # needs a CUDA GPU and ../shared/data/competition
    python benchmarks/bench_llm_train.py --train-runs grouped:16384tok,grouped:32768tok:ckpt
    python benchmarks/bench_llm_train.py --smoke        # tiny sizes on CPU (run by the tests so it cannot rot)

The model of bench_llm_setup.py, loaded in NF4 with double quantization through the track's own loading, LoRA,
collators, loss, fused kernels and Trainer (llama3.2-ko-3b's shipped config); prompts of real lengths built from the
../shared dialogues (12,500 by default, cycling dev+test dialogues with dev summaries). By default two runs: the
shipped batching without and with gradient checkpointing. Throughput counts real tokens only (no padding); a run
that runs out of memory is reported as such.
Bound (benchmarks/hardware.py): LoRA training costs about 4 x parameters FLOP per real token (forward and the input
gradients of a frozen base; 6 x with gradient checkpointing, which runs the forward twice), so at most
BF16_FLOPS / (4 P) tokens/s; each run is printed with its ratio to it. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm_setup import (  # noqa: E402
    PRESET,
    add_common_arguments,
    build_model_folder,
    device_name,
    free_gpu_memory,
    load_texts,
    load_tokenizer,
    print_report,
    prompt_style,
    require_gpu_unless_smoke,
)
from hardware import BF16_FLOPS  # noqa: E402

TARGETS = {"train_real_tokens_per_s_shipped_min": 25_000}
SMOKE_TRAIN_RUNS = "packed:4,grouped:4,padded:4,padded:800tok"


def training_bound(parameters: int, checkpointing: bool) -> float:
    """Real tokens/s a frozen-base LoRA step cannot beat at BF16_FLOPS (see the module docstring)."""
    return BF16_FLOPS / ((6 if checkpointing else 4) * parameters)


@dataclass(frozen=True)
class TrainRun:
    """One training measurement: `batching:size[:ckpt]`, size N sequences or Ntok (a token budget, batch_tokens);
    ckpt = gradient checkpointing. E.g. `grouped:16`, `padded:24000tok` or `grouped:16384tok:ckpt`. Every other
    setting is the shipped config's."""

    batching: str
    size: int
    tokens: bool
    checkpointing: bool

    @classmethod
    def parse(cls, spec: str) -> "TrainRun":
        parts = spec.split(":")
        size = parts[1].removesuffix("tok") if len(parts) > 1 else ""
        if (len(parts) < 2 or parts[0] not in ("packed", "grouped", "padded") or not size.isdigit()
                or not set(parts[2:]) <= {"ckpt"}):
            raise SystemExit(f"error: --train-runs item {spec!r}; expected batching:N[tok][:ckpt], batching one "
                             "of packed, grouped, padded")
        return cls(parts[0], int(size), parts[1].endswith("tok"), "ckpt" in parts[2:])

    @classmethod
    def shipped(cls, checkpointing: bool) -> "TrainRun":
        """The shipped config's batching and budget."""
        from llm.config import load_config

        config = load_config(PRESET)
        if config.batch_tokens:
            return cls(config.batching, config.batch_tokens, True, checkpointing)
        return cls(config.batching, config.per_device_train_batch_size, False, checkpointing)

    @property
    def spec(self) -> str:
        return f"{self.batching}:{self.size}{'tok' if self.tokens else ''}{':ckpt' if self.checkpointing else ''}"

    @property
    def name(self) -> str:
        return "_".join([self.batching, f"{self.size}{'tok' if self.tokens else 'seq'}",
                         *(["ckpt"] if self.checkpointing else [])])

    def overrides(self) -> dict:
        size = {"batch_tokens": self.size} if self.tokens else {"per_device_train_batch_size": self.size, "batch_tokens": 0}
        return {"batching": self.batching, **size, "gradient_checkpointing": self.checkpointing}


def training_examples(tokenizer, style, dialogues, summaries, count: int) -> list[dict[str, list[int]]]:
    from competition.modeling.prompts import encode_for_training

    examples = []
    for i in range(count):
        encoded = encode_for_training(tokenizer, style, dialogues[i % len(dialogues)], summaries[i % len(summaries)])
        examples.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    return examples


def bench_training(folder: Path, tokenizer, examples, runs: list[TrainRun], args) -> dict:
    """Real-token throughput of QLoRA training (the track's own loading, LoRA, collators and Trainer) per run.

    With `args.process_warmup` the first run is trained once more before any, untimed in the figures (reported as
    `process_warmup`): a process's first run measured 10-30% slower than the same run later."""
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
        free_gpu_memory()
    return results


def _train_once(folder: Path, tokenizer, examples, run: TrainRun, args, profile: int) -> dict:
    """One run through the track's own loading (NF4), LoRA, collator, loss and fused-kernel setting."""
    from competition.harness.presets import get_preset
    from competition.modeling.loading import precision_dtype, resolve_precision
    from llm.config import load_config
    from llm.kernels import fused_loss, liger_kernel_config
    from llm.model import attach_lora, effective_quantization, load_base_model
    from llm.train import loss_function, make_collator

    config = load_config(PRESET, overrides={
        **run.overrides(), "gradient_accumulation_steps": 1, "quantization": "nf4", "optim": "auto", "logging_steps": 1000})
    quantization = effective_quantization(config)
    model = load_base_model(folder, config, quantization, dtype=precision_dtype(resolve_precision()))
    model.config.use_cache = False
    model = attach_lora(model, tokenizer, config, get_preset(PRESET), quantization, [])
    kernels = liger_kernel_config(config.fused_kernels, model)
    result = timed_training(model, tokenizer, examples, config, make_collator(config, tokenizer, fused_loss(kernels)),
                            loss_function(kernels), args, profile, liger=kernels)
    return {**result, "quantization": quantization, "gradient_checkpointing": config.gradient_checkpointing,
            "fused_kernels": sorted(k for k, on in (kernels or {}).items() if on)}


def timed_training(model, tokenizer, examples, config, collate, compute_loss, args, profile: int = 0,
                   liger: dict | None = None) -> dict:
    """Train `args.warmup_steps` untimed then `args.train_steps` timed optimizer steps with the track's Trainer
    arguments and batches; real (non-padding) tokens per second, padding share and peak memory. CUDA is
    synchronised only where the clock starts and stops, so steps overlap host and GPU work as in a real run."""
    from transformers import Trainer, TrainerCallback

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
            "sequences_per_step_mean": statistics.mean(step_rows[timed]),
            "padding_share": 1 - sum(step_real[timed]) / sum(step_tokens[timed]),
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--train-prompts", type=int, default=12_500)
    parser.add_argument("--train-runs", default=",".join(TrainRun.shipped(ckpt).spec for ckpt in (False, True)),
                        help="comma-separated batching:N[tok][:ckpt], one run each (N rows, or a budget of N "
                        "tokens; ckpt = gradient checkpointing); default: the shipped batching without and with ckpt")
    parser.add_argument("--train-steps", type=int, default=30, help="timed optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (the longest batch "
                        "comes first with grouped batches, so the peak memory is seen)")
    parser.add_argument("--no-process-warmup", dest="process_warmup", action="store_false",
                        help="time the first run as the process's first (default: train it once untimed first)")
    parser.add_argument("--profile-steps", type=int, default=0, help="profile this many steps of the first run "
                        "(table on stderr and next to --out)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_prompts, args.train_steps, args.warmup_steps = 32, 2, 1
        args.train_runs, args.process_warmup = SMOKE_TRAIN_RUNS, False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_gpu_unless_smoke(args.smoke)
    runs = [TrainRun.parse(spec) for spec in args.train_runs.split(",") if spec]
    dialogues, summaries, _ = load_texts(args.smoke, args.data_dir)
    tokenizer, tokenizer_name = load_tokenizer(args.smoke, args.tokenizer)
    report = {"device": device_name(), "smoke": args.smoke, "tokenizer": tokenizer_name, "targets": TARGETS}
    with tempfile.TemporaryDirectory() as scratch:
        folder, parameters = build_model_folder(tokenizer, args.smoke, Path(scratch) / "model")
        report["parameters"] = parameters
        report["bounds"] = {"train_real_tokens_per_s": training_bound(parameters, False),
                            "train_real_tokens_per_s_checkpointing": training_bound(parameters, True)}
        examples = training_examples(tokenizer, prompt_style(tokenizer), dialogues, summaries, args.train_prompts)
        report["training"] = bench_training(folder, tokenizer, examples, runs, args)
    for row in report["training"].values():
        if isinstance(row, dict) and "real_tokens_per_s" in row:
            row["bound_over_measured"] = training_bound(parameters, row["gradient_checkpointing"]) / row["real_tokens_per_s"]
    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
