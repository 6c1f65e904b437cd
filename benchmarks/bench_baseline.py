"""GPU benchmark of the encoder-decoder track: one training epoch and 499 beam-search summaries at KoBART size.

    python benchmarks/bench_baseline.py                 # full size, needs a CUDA GPU and ../shared data
    python benchmarks/bench_baseline.py --smoke         # tiny sizes on CPU with data/sample (keeps it from rotting)

Model: BART with KoBART's shape (vocab 30000, 6+6 layers, d_model 768) and random weights, so no hub access
is needed. Data: 12,500 dialogues of real lengths, made by repeating the dev+test dialogues of
../shared/data/competition (token lengths from the KoBART tokenizer when the hub is reachable, else from the
tiny sample tokenizer, which splits Korean more finely, i.e. a pessimistic length). Training uses the track's
settings (bf16, batch 50, length-grouped batches); generation uses 4 beams, no_repeat_ngram_size 2, and a
forced summary length (min_new_tokens = max_new_tokens) so random weights cannot stop early.
Targets (H100): epoch <= 60 s, 499 summaries <= 10 s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from baselines.config import load_config  # noqa: E402
from baselines.model import generation_kwargs  # noqa: E402
from baselines.predict import batches_by_length  # noqa: E402
from baselines.train import Seq2SeqRows, precision_flags  # noqa: E402

REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data" / "competition"
TARGETS = {"epoch_seconds": 60.0, "generation_seconds": 10.0}
FULL = {"vocab": 30000, "d_model": 768, "layers": 6, "heads": 16, "ffn": 3072, "rows": 12500, "gen_rows": 499,
        "summary_tokens": 60}
SMOKE = {"vocab": 1000, "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "rows": 48, "gen_rows": 8,
         "summary_tokens": 6}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU with data/sample")
    parser.add_argument("--data-dir", type=Path, help="folder with dev.csv and test.csv (default: ../shared data)")
    parser.add_argument("--tokenizer", default="digit82/kobart-summarization",
                        help="tokenizer measuring dialogue lengths (falls back to the tiny sample tokenizer)")
    parser.add_argument("--batch", type=int, help="training batch (default: the kobart config's 50)")
    parser.add_argument("--eval-batch", type=int, help="generation batch (default: the kobart config's)")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    parser.add_argument("--save-lengths", type=Path, help="write the measured token lengths (numbers only) here")
    parser.add_argument("--lengths", type=Path, help="use token lengths saved by --save-lengths (no data needed)")
    return parser.parse_args(argv)


def load_dialogue_frames(data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """Dev+test dialogues, dev summaries and test dialogues; exits 2 with a clear message when absent."""
    from competition.data import read_split

    if not ((data_dir / "dev.csv").is_file() and (data_dir / "test.csv").is_file()):
        print(f"error: {data_dir}: dev.csv and test.csv not found; this benchmark repeats the real dev+test "
              f"dialogues (put the competition data there, pass --data-dir, or use --smoke)", file=sys.stderr)
        raise SystemExit(2)
    dev, test = read_split(data_dir / "dev.csv", "dev"), read_split(data_dir / "test.csv", "test")
    return list(dev["dialogue"]) + list(test["dialogue"]), list(dev["summary"]), list(test["dialogue"])


def length_tokenizer(name: str):
    """The KoBART tokenizer when reachable, else the tiny sample tokenizer; returns (tokenizer, source)."""
    from competition.modeling import load_tokenizer

    try:
        return load_tokenizer(name), name
    except Exception:  # hub unreachable or offline: fall back, and say so in the result
        from competition.presets import get_preset
        from competition.tiny import ensure_tiny_checkpoint

        path = ensure_tiny_checkpoint(get_preset("tiny-bart"))
        return load_tokenizer(path), "tiny-bart sample tokenizer (fallback)"


def token_lengths(tokenizer, texts: list[str], cap: int) -> list[int]:
    """Token count per text (with <s> </s>), capped at the model's budget."""
    return [min(len(ids) + 2, cap) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def random_rows(lengths: list[int], label_lengths: list[int], vocab: int, seed: int = 0) -> Seq2SeqRows:
    """Rows of random token ids with the given encoder and label lengths (ids 4.. avoid specials)."""
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(4, vocab, n).tolist() for n in lengths]
    labels = [rng.integers(4, vocab, n).tolist() for n in label_lengths]
    return Seq2SeqRows(inputs, labels)


def build_model(size: dict, max_positions: int):
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=size["vocab"], d_model=size["d_model"], encoder_layers=size["layers"],
                        decoder_layers=size["layers"], encoder_attention_heads=size["heads"],
                        decoder_attention_heads=size["heads"], encoder_ffn_dim=size["ffn"], decoder_ffn_dim=size["ffn"],
                        max_position_embeddings=max_positions, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=2, forced_eos_token_id=None)
    return BartForConditionalGeneration(config)


def time_training_epoch(model, rows: Seq2SeqRows, config, work_dir: Path) -> float:
    """Wall seconds of one epoch with the track's Trainer settings (no evaluation, no saving)."""
    from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, Seq2SeqTrainer, Seq2SeqTrainingArguments

    pad_only = PreTrainedTokenizerFast(tokenizer_object=_pad_tokenizer(), pad_token="<pad>", bos_token="<s>",
                                       eos_token="</s>", unk_token="<unk>")
    args = Seq2SeqTrainingArguments(
        output_dir=str(work_dir), num_train_epochs=1, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size, warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay, lr_scheduler_type=config.lr_scheduler_type,
        **precision_flags(config.precision), eval_strategy="no", save_strategy="no", logging_strategy="no",
        train_sampling_strategy="group_by_length", report_to="none",
        dataloader_num_workers=2 if torch.cuda.is_available() else 0,
        use_cpu=not torch.cuda.is_available(), seed=config.seed)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=rows, processing_class=pad_only,
                             data_collator=DataCollatorForSeq2Seq(pad_only, model=model, label_pad_token_id=-100))
    _sync()
    start = time.perf_counter()
    trainer.train()
    _sync()
    return time.perf_counter() - start


def _pad_tokenizer():
    """A stand-in tokenizer whose only job is padding (pad id 1, as KoBART's <pad>)."""
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}, unk_token="<unk>"))


@torch.inference_mode()
def time_generation(model, inputs: list[list[int]], config, summary_tokens: int) -> float:
    """Wall seconds to summarise `inputs` with beam search in length-sorted batches, forced to a fixed length."""
    model.eval()
    if torch.cuda.is_available():
        flags = precision_flags(config.precision)
        model = model.to(torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32)
    budget = {"min_new_tokens": summary_tokens, "max_new_tokens": summary_tokens}
    batches = batches_by_length([len(i) for i in inputs], [budget] * len(inputs), config.per_device_eval_batch_size)
    device = model.device
    _sync()
    start = time.perf_counter()
    for batch in batches:
        width = max(len(inputs[i]) for i in batch)
        ids = torch.full((len(batch), width), 1, dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : len(inputs[index])] = torch.tensor(inputs[index])
        ids = ids.to(device)
        model.generate(input_ids=ids, attention_mask=(ids != 1).long(), **generation_kwargs(config), **budget)
    _sync()
    return time.perf_counter() - start


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = SMOKE if args.smoke else FULL
    if not args.smoke and not torch.cuda.is_available():
        print("error: no CUDA GPU; the full benchmark needs one (use --smoke to check the script on CPU)",
              file=sys.stderr)
        return 2
    data_dir = args.data_dir or (PROJECT_ROOT / "data" / "sample" if args.smoke else REAL_DATA_DIR)
    overrides = {k: v for k, v in (("per_device_train_batch_size", args.batch), ("eval_batch_size", args.eval_batch))
                 if v is not None}
    config = load_config("kobart", PROJECT_ROOT / "baselines" / "configs" / "kobart.yaml", overrides)
    if args.smoke:
        config.per_device_train_batch_size, config.per_device_eval_batch_size, config.num_beams = 8, 4, 2

    cap_in, cap_out = config.max_source_length, config.max_target_length
    if args.lengths:  # e.g. measured on a machine that has the data, for a GPU machine that has not
        saved = json.loads(args.lengths.read_text(encoding="utf-8"))
        dialogue_lengths, summary_lengths, test_lengths = saved["dialogue"], saved["summary"], saved["test"]
        tokenizer_source = saved["tokenizer"]
    else:
        dialogues, summaries, test_dialogues = load_dialogue_frames(data_dir)
        tokenizer, tokenizer_source = length_tokenizer(args.tokenizer)
        dialogue_lengths = token_lengths(tokenizer, dialogues, cap_in)
        summary_lengths = token_lengths(tokenizer, summaries, cap_out)
        test_lengths = token_lengths(tokenizer, test_dialogues, cap_in)
    if args.save_lengths:
        args.save_lengths.write_text(json.dumps({"dialogue": dialogue_lengths, "summary": summary_lengths,
                                                 "test": test_lengths, "tokenizer": tokenizer_source}))
    rows = size["rows"]
    train_lengths = [dialogue_lengths[i % len(dialogue_lengths)] for i in range(rows)]
    label_lengths = [summary_lengths[i % len(summary_lengths)] for i in range(rows)]
    if args.smoke:  # keep CPU work tiny
        train_lengths, label_lengths = [min(n, 64) for n in train_lengths], [min(n, 16) for n in label_lengths]
    train_rows = random_rows(train_lengths, label_lengths, size["vocab"])
    gen_lengths = test_lengths[: size["gen_rows"]]
    if args.smoke:
        gen_lengths = [min(n, 64) for n in gen_lengths]
    gen_inputs = random_rows(gen_lengths, [1] * len(gen_lengths), size["vocab"], seed=1).rows

    torch.manual_seed(0)
    model = build_model(size, max_positions=max(cap_in, 1024) + 2)
    with tempfile.TemporaryDirectory() as work_dir:
        epoch_seconds = time_training_epoch(model, train_rows, config, Path(work_dir))
    generation_seconds = time_generation(model, [r["input_ids"] for r in gen_inputs], config, size["summary_tokens"])

    result = {
        "mode": "smoke" if args.smoke else "full",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "precision": {k: v for k, v in precision_flags(config.precision).items() if v} or "fp32",
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "tokenizer_for_lengths": tokenizer_source,
        "train_rows": rows, "train_batch": config.per_device_train_batch_size,
        "encoder_tokens_mean": round(float(np.mean(train_lengths)), 1),
        "label_tokens_mean": round(float(np.mean(label_lengths)), 1),
        "epoch_seconds": round(epoch_seconds, 2),
        "generated_summaries": len(gen_inputs), "num_beams": config.num_beams, "summary_tokens": size["summary_tokens"],
        "generation_batch": config.per_device_eval_batch_size,
        "generation_seconds": round(generation_seconds, 2),
        "targets_h100": TARGETS,
        "meets_targets": None if args.smoke else {k: result_value <= TARGETS[k] for k, result_value in
                                                  (("epoch_seconds", epoch_seconds),
                                                   ("generation_seconds", generation_seconds))},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from competition.files import write_text_atomic

        write_text_atomic(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
