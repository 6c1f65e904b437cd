"""LLM track GPU benchmark: QLoRA training throughput (packed vs padded) and batched generation time.

    python benchmarks/bench_llm.py                    # full: needs a CUDA GPU and ../shared/data/competition
    python benchmarks/bench_llm.py --static-cache     # generation with the static KV cache (+ --compile)
    python benchmarks/bench_llm.py --smoke            # tiny sizes on CPU (run by the tests so it cannot rot)

Training: a Llama-3.2-3B-shaped model (hidden 3072, 28 layers, 24 heads, 8 kv heads, ffn 8192, vocab 128256,
tied embeddings) with random weights, loaded in NF4 with double quantization, LoRA r16 on all linear layers,
paged AdamW 8-bit, bf16, gradient checkpointing; prompts of real lengths built from the ../shared dialogues
(12,500 by default, cycling dev+test dialogues with dev summaries), through the track's own prompt builder and
collators. Throughput counts real tokens only (no padding). Generation: the same model shape unquantized in bf16
(what a merged adapter is), 499 prompts from ../shared test.csv, exactly 80 new tokens each, a batch-size sweep.
Prints one JSON object with the figures and the targets.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "competition"
TARGETS = {"train_real_tokens_per_s_min": 10_000, "generate_499_s_max": 10.0, "generate_physical_lower_bound_s": 3.6,
           "generate_hf_eager_batch64_measured_s": 21.0}
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
    from competition.presets import get_preset
    from llm.model import load_tokenizer as load, model_source

    if not smoke:
        try:
            return load(name or get_preset("llama3.2-ko-3b").hub_id), name or get_preset("llama3.2-ko-3b").hub_id
        except OSError as err:
            print(f"warning: real tokenizer unavailable ({err.__class__.__name__}); using tiny-llama's: "
                  "token counts differ from the real model's", file=sys.stderr)
    return load(model_source(get_preset("tiny-llama"))), "tiny-llama"


def build_model_folder(tokenizer, smoke: bool, folder: Path) -> Path:
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
    del model
    return folder


def bench_training(folder: Path, tokenizer, style, dialogues, summaries, args) -> dict:
    """Real-token throughput of QLoRA training for packed and padded batches."""
    from transformers import Trainer, TrainerCallback

    from competition.presets import get_preset
    from competition.prompts import encode_for_training
    from llm.config import load_config
    from llm.model import attach_lora, effective_quantization, load_base_model
    from llm.train import make_collator, training_arguments

    examples = []
    for i in range(args.train_prompts):
        encoded = encode_for_training(tokenizer, style, dialogues[i % len(dialogues)], summaries[i % len(summaries)])
        examples.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    lengths = [len(e["input_ids"]) for e in examples]
    results = {"prompts": len(examples), "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths)}
    for batching in ("packed", "padded"):
        config = load_config("llama3.2-ko-3b", overrides={
            "batching": batching, "batch_size": args.train_batch, "grad_accum": 1, "quantization": "nf4",
            "gradient_checkpointing": args.gradient_checkpointing and not args.smoke, "optim": "auto", "logging_steps": 1000})
        quantization = effective_quantization(config)
        model = load_base_model(folder, config, quantization, dtype=torch.bfloat16 if torch.cuda.is_available()
                                else torch.float32)
        model.config.use_cache = False
        model = attach_lora(model, tokenizer, config, get_preset("llama3.2-ko-3b"), quantization, [])
        counted: list[int] = []
        collate = make_collator(config, tokenizer)

        def counting(features, collate=collate):
            counted.append(sum(len(f["input_ids"]) for f in features))
            return collate(features)

        marks: dict[str, float] = {}

        class Clock(TrainerCallback):
            def on_step_end(self, a, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                if state.global_step == args.warmup_steps:
                    marks["start"] = time.perf_counter()
                marks["end"] = time.perf_counter()

        train_args = training_arguments(config, Path(tempfile.mkdtemp()), use_bf16=torch.cuda.is_available(),
                                        use_fp16=False)
        train_args.max_steps = args.warmup_steps + args.train_steps
        train_args.eval_strategy = train_args.save_strategy = "no"
        train_args.load_best_model_at_end = False
        train_args.disable_tqdm = True
        trainer = Trainer(model=model, args=train_args, train_dataset=examples, data_collator=counting,
                          processing_class=tokenizer, callbacks=[Clock()])
        trainer.train()
        timed_tokens = sum(counted[args.warmup_steps:args.warmup_steps + args.train_steps])
        seconds = marks["end"] - marks["start"]
        results[batching] = {"real_tokens_per_s": timed_tokens / seconds, "seconds": seconds,
                             "steps": args.train_steps, "sequences_per_step": args.train_batch,
                             "quantization": quantization, "gradient_checkpointing": config.gradient_checkpointing,
                             "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30
                             if torch.cuda.is_available() else None}
        print(json.dumps({f"training_{batching}": results[batching]}), flush=True)  # partial results survive a crash
        del trainer, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return results


@torch.inference_mode()
def bench_generation(folder: Path, tokenizer, style, test_dialogues, args) -> dict:
    """Seconds to generate exactly `new_tokens` for every test prompt, per batch size (bf16, merged-like)."""
    from transformers import AutoModelForCausalLM

    from competition.prompts import encode_for_generation, left_pad_batch
    from llm.generate import length_sorted_batches

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if device == "cuda" else torch.float32,
                                                 attn_implementation="sdpa", use_safetensors=True).to(device).eval()
    if args.compile:
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    prompts = [encode_for_generation(tokenizer, style, d).input_ids for d in test_dialogues]
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id, use_cache=True)
    if args.static_cache:
        kwargs["cache_implementation"] = "static"
    results = {"prompts": len(prompts), "new_tokens": args.new_tokens, "static_cache": args.static_cache,
               "compile": args.compile, "mean_prompt_tokens": sum(map(len, prompts)) / len(prompts)}
    for batch_size in args.batch_sizes:
        batches = length_sorted_batches([len(p) for p in prompts], batch_size)
        warm = left_pad_batch(tokenizer, [prompts[i] for i in batches[-1]])  # compile/cudnn warm-up
        model.generate(**{k: v.to(device) for k, v in warm.items()}, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        generated = 0
        for indices in batches:
            batch = left_pad_batch(tokenizer, [prompts[i] for i in indices])
            out = model.generate(**{k: v.to(device) for k, v in batch.items()}, **kwargs)
            generated += (out.shape[1] - batch["input_ids"].shape[1]) * len(indices)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results[f"batch_{batch_size}"] = {"seconds": seconds, "new_tokens_per_s": generated / seconds}
        print(json.dumps({f"generation_batch_{batch_size}": results[f"batch_{batch_size}"]}), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU, bundled sample data")
    parser.add_argument("--data-dir", type=Path, help="folder with dev.csv and test.csv (default: ../shared data)")
    parser.add_argument("--train-prompts", type=int, default=12_500)
    parser.add_argument("--train-batch", type=int, default=16, help="sequences per optimizer step")
    parser.add_argument("--train-steps", type=int, default=40, help="timed optimizer steps per batching mode")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-sizes", default="64,128,256", help="generation batch sizes to sweep")
    parser.add_argument("--new-tokens", type=int, default=80, help="forced new tokens per summary")
    parser.add_argument("--static-cache", action="store_true", help="generate with cache_implementation=static")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward (with --static-cache)")
    parser.add_argument("--tokenizer", help="hub id or folder of the tokenizer (default: the llama3.2-ko-3b one)")
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false",
                        help="keep activations (faster; fits a 3B NF4 model at these batch sizes on 80 GB)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_prompts, args.train_batch, args.train_steps, args.warmup_steps = 32, 4, 2, 1
        args.new_tokens, args.batch_sizes = 4, "4,8"
    elif not torch.cuda.is_available():
        sys.exit("error: the full benchmark needs a CUDA GPU (bitsandbytes NF4); use --smoke on CPU")
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
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
        folder = build_model_folder(tokenizer, args.smoke, Path(scratch) / "model")
        if not args.skip_train:
            report["training"] = bench_training(folder, tokenizer, style, dialogues, summaries, args)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if not args.skip_generate:
            report["generation"] = bench_generation(folder, tokenizer, style, test_dialogues, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
