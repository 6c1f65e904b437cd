"""Unsloth's QLoRA training throughput on bench_llm's model and batches, for the side-by-side row (GPU only).

    python benchmarks/bench_unsloth.py --data-dir .gpu/data --tokenizer MODELS/llama3.2-ko-3b --train-runs grouped:16384tok:ckpt

Unsloth patches transformers when it is imported, so it runs in its own process, before anything else imports
transformers. Same random-weight Llama-3.2-3B shape, prompts, token-budget batches, Trainer arguments and timing as
`bench_llm.py`; the model comes from `FastLanguageModel` (NF4, LoRA r16 on the same seven projections, dropout 0 as
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
                        help="bench_llm's batching:N[tok][:ckpt] items (other flags do not apply)")
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
    """bench_llm's padded batches with full-length labels (the model computes its own loss), taking token-budget
    buckets as the Trainer hands them over."""
    from llm.train import BucketCollator, PaddedCollator

    return BucketCollator(PaddedCollator(pad_token_id))


def _bench(fast_model, args) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_llm

    from competition.presets import get_preset
    from competition.prompts import prompt_style_for, resolve_template
    from llm.config import load_config

    dialogues, summaries, _ = bench_llm.load_texts(False, args.data_dir)
    tokenizer, _ = bench_llm.load_tokenizer(False, args.tokenizer)
    preset = get_preset("llama3.2-ko-3b")
    style = resolve_template(prompt_style_for(preset), tokenizer)
    examples = bench_llm.training_examples(tokenizer, style, dialogues, summaries, args.train_prompts)
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder, _ = bench_llm.build_model_folder(tokenizer, False, Path(scratch) / "model")
        for spec in args.train_runs.split(","):
            run = bench_llm.TrainRun.parse(spec)
            config = load_config("llama3.2-ko-3b", overrides={
                **run.overrides(), "gradient_accumulation_steps": 1, "optim": "auto", "logging_steps": 1000,
                "lora_dropout": 0.0})
            model, _ = fast_model.from_pretrained(str(folder), max_seq_length=4096, dtype=torch.bfloat16,
                                                  load_in_4bit=True, local_files_only=True)
            model = fast_model.get_peft_model(
                model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                target_modules=list(preset.lora_target_modules), random_state=config.seed,
                use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False)
            try:
                results[run.name] = bench_llm.timed_training(model, tokenizer, examples, config,
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
