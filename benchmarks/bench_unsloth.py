"""Unsloth's QLoRA training throughput on bench_llm_train's model and batches, for the side-by-side row (GPU only).

    python benchmarks/bench_unsloth.py --data-dir .gpu/data --tokenizer MODELS/llama3.2-ko-3b --train-runs grouped:16384tok:ckpt

Unsloth patches transformers when it is imported, so it runs in its own process, before anything else imports
transformers. Same random-weight Llama-3.2-3B shape, prompts, token-budget batches, Trainer arguments and timing as
`bench_llm_train.py`; the model comes from `FastLanguageModel` (NF4, LoRA r16 on the same seven projections, dropout 0 as
its fast path needs) and computes its own loss over the full-length labels. When unsloth cannot be imported or run
here, the JSON says what stopped it and the exit status is 0 (a missing optional competitor is a result).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from pathlib import Path


def _import_unsloth():
    """(FastLanguageModel, None) or (None, what stopped the import)."""
    try:
        from unsloth import FastLanguageModel  # must come before transformers

        return FastLanguageModel, None
    except Exception as err:  # ImportError, or unsloth's own checks (GPU, versions)
        return None, f"{type(err).__name__}: {err}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="folder with dev.csv and test.csv (default: ../shared data)")
    parser.add_argument("--tokenizer", help="tokenizer folder or hub id (default: the llama3.2-ko-3b one)")
    parser.add_argument("--train-runs", default="grouped:16384tok,grouped:16384tok:ckpt",
                        help="bench_llm_train's batching:N[tok][:ckpt] items")
    parser.add_argument("--train-prompts", type=int, default=12_500)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    fast_model, stopped = _import_unsloth()
    report: dict = {"unsloth": None}
    if fast_model is not None:
        import unsloth

        report["unsloth"] = getattr(unsloth, "__version__", "unknown")
        try:
            report["training"] = _bench(fast_model, args)
        except Exception:
            stopped = traceback.format_exc(limit=8)
    if stopped:
        report["stopped_by"] = stopped
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


def unsloth_collator(pad_token_id: int):
    """bench_llm_train's padded batches with full-length labels (the model computes its own loss), taking token-budget
    buckets as the Trainer hands them over."""
    from llm.train import BucketCollator, PaddedCollator

    return BucketCollator(PaddedCollator(pad_token_id))


def _bench(fast_model, args) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_llm_setup import PRESET, build_model_folder, load_texts, load_tokenizer, prompt_style
    from bench_llm_train import TrainRun, timed_training, training_examples

    from competition.harness.presets import get_preset
    from llm.config import load_config

    dialogues, summaries, _ = load_texts(False, args.data_dir)
    tokenizer, _ = load_tokenizer(False, args.tokenizer)
    preset = get_preset(PRESET)
    examples = training_examples(tokenizer, prompt_style(tokenizer), dialogues, summaries, args.train_prompts)
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder, _ = build_model_folder(tokenizer, False, Path(scratch) / "model")
        for spec in args.train_runs.split(","):
            run = TrainRun.parse(spec)
            config = load_config(PRESET, overrides={
                **run.overrides(), "gradient_accumulation_steps": 1, "optim": "auto", "logging_steps": 1000,
                "lora_dropout": 0.0})
            model, _ = fast_model.from_pretrained(str(folder), max_seq_length=4096, dtype=torch.bfloat16,
                                                  load_in_4bit=True, local_files_only=True)
            model = fast_model.get_peft_model(
                model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                target_modules=list(preset.lora_target_modules), random_state=config.seed,
                use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False)
            try:
                results[run.name] = timed_training(model, tokenizer, examples, config,
                                                   unsloth_collator(tokenizer.pad_token_id), None, args)
            except torch.OutOfMemoryError:
                results[run.name] = {"error": "CUDA out of memory"}
            print(json.dumps({f"unsloth_{run.name}": results[run.name]}), flush=True)
            del model
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return results


if __name__ == "__main__":
    sys.exit(main())
