"""GPU benchmark of the encoder-decoder track: training epochs and 499 beam-search summaries at KoBART size.

    python benchmarks/bench_baseline.py                 # full size, needs a CUDA GPU and ../shared data
    python benchmarks/bench_baseline.py --smoke         # tiny sizes on CPU with data/sample (keeps it from rotting)
    python benchmarks/bench_baseline.py sdpa_backend=torch per_device_train_batch_size=32   # config overrides

Model: BART with KoBART's shape (vocab 30000, 6+6 layers, d_model 768) and random weights, so no hub access
is needed. Data: 12,500 dialogues of real lengths, made by repeating the dev+test dialogues of
../shared/data/competition. Token lengths come from the real KoBART tokenizer: `--tokenizer`, else `kobart` in
../shared/models.tar.xz (unpacked by ../shared/tools/models.sh), else the hub id when the hub answers one quick
check (never with HF_HUB_OFFLINE=1), else the tiny sample tokenizer (said so in the result). `--save-lengths` /
`--lengths` carry the measured lengths to a GPU machine that has no data. Training uses the track's settings
(kobart.yaml, then any KEY=VALUE overrides of the track's config: bf16, batch 50, length-grouped batches,
`sdpa_backend`, `torch_compile_mode`: 3 epochs then, the last one reported, the earlier ones' extra counted once in
the recipe); generation uses the track's length-sorted batches, 4 beams, no_repeat_ngram_size 2, and a forced summary
length (min_new_tokens = max_new_tokens) so random weights cannot stop early.
Prints one JSON object: the GPU, each figure, its ratio to the compute bound (6 x parameters x tokens at
790 TFLOP/s bf16, an H200's measured matrix rate), a checksum of the generated ids (to check that a generation
option keeps the output) and the official recipe's time (20 epochs + dev generation each epoch) estimated from them.
Targets (H200): epoch <= 8 s, 499 summaries <= 2 s, recipe <= 240 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from hardware import BF16_FLOPS  # noqa: E402  (benchmarks/, on sys.path when run as a script)

from baselines.config import load_config  # noqa: E402
from baselines.model import generation_kwargs, share_cross_attention_across_beams  # noqa: E402
from baselines.predict import batches_by_length  # noqa: E402
from baselines.train import (  # noqa: E402
    Seq2SeqRows,
    compile_arguments,
    compile_scope,
    loader_arguments,
    pad_to_multiple_of,
    precision_flags,
    seq2seq_loss,
    training_arguments,
)
from competition.harness.config import parse_overrides  # noqa: E402
from competition.modeling.attention import configure_sdpa, use_sync_free_masks  # noqa: E402
from competition.modeling.tokens import IGNORE_INDEX  # noqa: E402

SHARED = PROJECT_ROOT.parent / "shared"
REAL_DATA_DIR = SHARED / "data" / "competition"
HUB_TOKENIZER = "digit82/kobart-summarization"
TARGETS = {"epoch_seconds": 8.0, "generation_seconds": 2.0, "recipe_seconds": 240.0}
RECIPE_EPOCHS = 20  # the official recipe: 20 epochs, dev generation after each
FULL = {"vocab": 30000, "d_model": 768, "layers": 6, "heads": 16, "ffn": 3072, "rows": 12500, "gen_rows": 499,
        "summary_tokens": 60}
SMOKE = {"vocab": 1000, "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "rows": 48, "gen_rows": 8,
         "summary_tokens": 6}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU with data/sample")
    parser.add_argument("--data-dir", type=Path, help="folder with dev.csv and test.csv (default: ../shared data)")
    parser.add_argument("--tokenizer", help="tokenizer folder or hub id measuring dialogue lengths "
                                            "(default: ../shared's kobart, else the hub's, else the tiny sample one)")
    parser.add_argument("--eval-batch", type=int, help="generation batch (default: the kobart config's)")
    parser.add_argument("--rows", type=int, help="training rows (default 12,500); e.g. fewer under --profile")
    parser.add_argument("--gen-rows", type=int, help="dialogues summarised (default 499)")
    parser.add_argument("--epochs", type=int, help="training epochs; each one is timed, the last one reported "
                        "(default 1, or 3 when the config compiles: the first epoch compiles, the second still "
                        "records CUDA graphs of new shapes)")
    parser.add_argument("--repeats", type=int, default=1, help="generation runs; the median is reported (default 1)")
    parser.add_argument("--skip-train", action="store_true", help="time generation only")
    parser.add_argument("--skip-generate", action="store_true", help="time training only")
    parser.add_argument("--profile", type=Path,
                        help="write torch.profiler kernel tables (CPU+CUDA) into this folder: training's last epoch "
                             "(its time is then the profiler's) and each generation run (beam search under the "
                             "profiler took over 100 s on an H200: add --skip-generate, or use few --gen-rows)")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    parser.add_argument("--save-lengths", type=Path, help="write the measured token lengths (numbers only) here")
    parser.add_argument("--lengths", type=Path, help="use token lengths saved by --save-lengths (no data needed)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of the track's config over kobart.yaml, e.g. sdpa_backend=torch "
                             "torch_compile_mode=none per_device_train_batch_size=32 (python -m baselines.run "
                             "--print-config lists them)")
    return parser.parse_args(argv)


def load_dialogue_frames(data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """Dev+test dialogues, dev summaries and test dialogues; exits 2 with a clear message when absent."""
    from competition.rules.data import read_split

    if not ((data_dir / "dev.csv").is_file() and (data_dir / "test.csv").is_file()):
        print(f"error: {data_dir}: dev.csv and test.csv not found; this benchmark repeats the real dev+test "
              f"dialogues (put the competition data there, pass --data-dir, or use --smoke)", file=sys.stderr)
        raise SystemExit(2)
    dev, test = read_split(data_dir / "dev.csv", "dev"), read_split(data_dir / "test.csv", "test")
    return list(dev["dialogue"]) + list(test["dialogue"]), list(dev["summary"]), list(test["dialogue"])


def shared_kobart_folder() -> Path | None:
    """`kobart` unpacked from ../shared/models.tar.xz by ../shared/tools/models.sh, or None without it."""
    script = SHARED / "tools" / "models.sh"
    if not script.is_file():
        return None
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300)
    folder = Path(done.stdout.strip().splitlines()[-1]) / "kobart" if done.returncode == 0 and done.stdout else None
    return folder if folder is not None and (folder / "tokenizer.json").is_file() else None


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick check (no retries): False under HF_HUB_OFFLINE=1 or when huggingface.co does not answer."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def length_tokenizer(name: str | None):
    """(tokenizer, source): `name`, else the shared kobart folder, else the hub's KoBART, else tiny-bart's."""
    from competition.modeling.loading import load_tokenizer

    candidates = [name] if name else []
    if not name and (folder := shared_kobart_folder()) is not None:
        candidates.append(str(folder))
    if not name and hub_reachable():
        candidates.append(HUB_TOKENIZER)
    for candidate in candidates:
        if not Path(candidate).exists() and not hub_reachable():
            print(f"note: {candidate} is no folder and the hub is unreachable; skipped", file=sys.stderr)
            continue
        tokenizer = load_tokenizer(candidate)
        if len(tokenizer) < 1000:  # transformers builds a near-empty tokenizer from a folder without vocabulary
            raise SystemExit(f"error: {candidate}: tokenizer of {len(tokenizer)} tokens; expected KoBART's 30,000")
        return tokenizer, candidate
    from competition.harness.presets import get_preset
    from competition.modeling.tiny import ensure_tiny_checkpoint

    path = ensure_tiny_checkpoint(get_preset("tiny-bart"))
    return load_tokenizer(path), "tiny-bart sample tokenizer (fallback: no KoBART tokenizer found)"


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
                        decoder_start_token_id=2, forced_eos_token_id=None, attn_implementation="sdpa")
    return BartForConditionalGeneration(config)


def epoch_timer():
    """A TrainerCallback that records the wall seconds of each epoch (GPU synchronised) in `.seconds`."""
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_epoch_begin(self, args, state, control, **kwargs):
            _sync()
            self.start = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            _sync()
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def time_training(model, rows: Seq2SeqRows, config, work_dir: Path, args: argparse.Namespace) -> list[float]:
    """Wall seconds of each epoch with the track's own TrainingArguments, without evaluation or saving."""
    from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, Seq2SeqTrainer

    pad_only = PreTrainedTokenizerFast(tokenizer_object=_pad_tokenizer(), pad_token="<pad>", bos_token="<s>",
                                       eos_token="</s>", unk_token="<unk>")
    training_args = dataclasses.replace(
        training_arguments(config, work_dir), num_train_epochs=args.epochs, eval_strategy="no", save_strategy="no",
        logging_strategy="no", load_best_model_at_end=False)
    collator = DataCollatorForSeq2Seq(pad_only, model=model, label_pad_token_id=IGNORE_INDEX,
                                      pad_to_multiple_of=pad_to_multiple_of())
    timer = epoch_timer()
    profiler = [last_epoch_profiler(args.profile, args.epochs)] if args.profile else []
    with compile_scope(config):
        trainer = Seq2SeqTrainer(model=model, args=training_args, train_dataset=rows, processing_class=pad_only,
                                 data_collator=collator, compute_loss_func=seq2seq_loss(config.label_smoothing_factor),
                                 callbacks=[timer, *profiler])
    print(f"compile: {trainer.accelerator.state.dynamo_plugin}", file=sys.stderr)
    trainer.train()
    return timer.seconds


def _pad_tokenizer():
    """A stand-in tokenizer whose only job is padding (pad id 1, as KoBART's <pad>)."""
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}, unk_token="<unk>"))


def inference_model(model, config):
    """The model in eval mode, in the track's inference dtype on a GPU (as baselines.predict loads it)."""
    model.eval()
    if torch.cuda.is_available():
        flags = precision_flags(config.precision)
        model = model.to(torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32)
    return model


@torch.inference_mode()
def time_generation(model, inputs: list[list[int]], config, summary_tokens: int) -> tuple[float, str]:
    """(wall seconds, sha256 of the generated ids in input order) of beam search forced to a fixed length."""
    budget = {"min_new_tokens": summary_tokens, "max_new_tokens": summary_tokens}
    batches = batches_by_length([len(i) for i in inputs], [budget] * len(inputs), config.per_device_eval_batch_size)
    outputs: list[list[int]] = [[] for _ in inputs]
    _sync()
    start = time.perf_counter()
    for batch in batches:
        width = max(len(inputs[i]) for i in batch)
        ids = torch.full((len(batch), width), 1, dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : len(inputs[index])] = torch.tensor(inputs[index])
        ids = ids.to(model.device)
        generated = model.generate(input_ids=ids, attention_mask=(ids != 1).long(), **generation_kwargs(config),
                                   **budget)
        for index, sequence in zip(batch, generated.tolist()):
            outputs[index] = [t for t in sequence if t != 1]
    _sync()
    seconds = time.perf_counter() - start
    return seconds, hashlib.sha256(json.dumps(outputs).encode()).hexdigest()[:16]


def profiled(folder: Path | None, name: str, work):
    """Run `work()`; under --profile, inside torch.profiler, writing the top kernels and ops to `folder/name.txt`."""
    if folder is None:
        return work()
    prof = kernel_profiler()
    start = time.perf_counter()
    with prof:
        result = work()
    write_profile_table(prof, time.perf_counter() - start, folder, name)
    return result


def kernel_profiler():
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else []))


def last_epoch_profiler(folder: Path, epochs: int):
    """A TrainerCallback that profiles the last of `epochs` epochs only (the first ones compile and record graphs)
    and writes its table to `folder/train.txt`."""
    from transformers import TrainerCallback

    class LastEpochProfiler(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            if round(state.epoch or 0) == epochs - 1:
                _sync()
                self.prof, self.start = kernel_profiler(), time.perf_counter()
                self.prof.start()

        def on_epoch_end(self, args, state, control, **kwargs):
            if hasattr(self, "prof"):
                _sync()
                self.prof.stop()
                write_profile_table(self.prof, time.perf_counter() - self.start, folder, "train")
                del self.prof

    return LastEpochProfiler()


def write_profile_table(prof, wall: float, folder: Path, name: str) -> None:
    """The top kernels and ops of a finished torch.profiler run, and how busy the GPU was, in `folder/name.txt`."""
    events = prof.key_averages()
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    # each kernel once (ops list theirs too); not the GPU-side ranges of annotations such as "## Call CompiledFxGraph"
    kernels = [e for e in prof.events() if e.device_type != torch.autograd.DeviceType.CPU and not e.is_user_annotation]
    kernel_seconds = sum(e.self_device_time_total for e in kernels) / 1e6
    folder.mkdir(parents=True, exist_ok=True)
    text = (f"{name}: wall {wall:.1f} s under the profiler; {len(kernels)} GPU kernels/copies ran "
            f"{kernel_seconds:.2f} s (GPU busy {kernel_seconds / wall:.0%} of the wall)\n"
            f"top by self CUDA time:\n{events.table(sort_by=sort, row_limit=40, max_name_column_width=70)}\n"
            f"top by CPU total:\n{events.table(sort_by='cpu_time_total', row_limit=25, max_name_column_width=70)}\n")
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")


def compile_summary() -> dict | None:
    """Where torch.compile's time went in this process: dynamo's timed phases (calls, seconds) and graph counts."""
    from torch._dynamo.utils import compilation_time_metrics, counters

    if not compilation_time_metrics:
        return None
    phases = {name: [len(times), round(sum(times), 1)] for name, times in compilation_time_metrics.items()}
    return {"phases_calls_seconds": dict(sorted(phases.items(), key=lambda item: -item[1][1])[:12]),
            "stats": dict(counters["stats"])}


def recipe_seconds(epochs: list[float], generation_seconds: float) -> float:
    """The official recipe's time from measured parts: the earlier epochs' extra over the last one (compiling,
    recording CUDA graphs of new shapes) once, plus 20 x (the last epoch + one dev generation)."""
    steady = epochs[-1]
    return sum(max(0.0, e - steady) for e in epochs[:-1]) + RECIPE_EPOCHS * (steady + generation_seconds)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measured_lengths(args: argparse.Namespace, data_dir: Path, cap_in: int, cap_out: int) -> dict:
    """Dialogue, summary and test-dialogue token lengths, from --lengths or measured with the length tokenizer."""
    if args.lengths:  # e.g. measured on a machine that has the data, for a GPU machine that has not
        return json.loads(args.lengths.read_text(encoding="utf-8"))
    dialogues, summaries, test_dialogues = load_dialogue_frames(data_dir)
    tokenizer, source = length_tokenizer(args.tokenizer)
    return {"dialogue": token_lengths(tokenizer, dialogues, cap_in),
            "summary": token_lengths(tokenizer, summaries, cap_out),
            "test": token_lengths(tokenizer, test_dialogues, cap_in), "tokenizer": source}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = SMOKE if args.smoke else FULL
    if not args.smoke and not torch.cuda.is_available():
        print("error: no CUDA GPU; the full benchmark needs one (use --smoke to check the script on CPU)",
              file=sys.stderr)
        return 2
    data_dir = args.data_dir or (PROJECT_ROOT / "data" / "sample" if args.smoke else REAL_DATA_DIR)
    overrides = parse_overrides(args.overrides)
    if args.eval_batch is not None:
        overrides["per_device_eval_batch_size"] = args.eval_batch
    config = load_config("kobart", PROJECT_ROOT / "baselines" / "configs" / "kobart.yaml", overrides)
    if args.smoke:
        config.per_device_train_batch_size, config.per_device_eval_batch_size, config.num_beams = 8, 4, 2
    sdpa = configure_sdpa(config.sdpa_backend)
    if args.epochs is None:
        args.epochs = 3 if compile_arguments(config.torch_compile_mode)["torch_compile"] else 1

    lengths = measured_lengths(args, data_dir, config.max_source_length, config.max_target_length)
    if args.save_lengths:
        args.save_lengths.write_text(json.dumps(lengths))
    rows = args.rows or size["rows"]
    train_lengths = [lengths["dialogue"][i % len(lengths["dialogue"])] for i in range(rows)]
    label_lengths = [lengths["summary"][i % len(lengths["summary"])] for i in range(rows)]
    if args.smoke:  # keep CPU work tiny
        train_lengths, label_lengths = [min(n, 64) for n in train_lengths], [min(n, 16) for n in label_lengths]
    train_rows = random_rows(train_lengths, label_lengths, size["vocab"])
    gen_lengths = lengths["test"][: args.gen_rows or size["gen_rows"]]
    if args.smoke:
        gen_lengths = [min(n, 64) for n in gen_lengths]
    gen_inputs = [r["input_ids"] for r in random_rows(gen_lengths, [1] * len(gen_lengths), size["vocab"], seed=1).rows]

    torch.manual_seed(0)
    model = build_model(size, max_positions=max(config.max_source_length, 1024) + 2)
    sync_free_masks = use_sync_free_masks(model, config.sdpa_sync_free_masks)
    parameters = sum(p.numel() for p in model.parameters())
    epochs: list[float] = []
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as work_dir:
            epochs = time_training(model, train_rows, config, Path(work_dir), args)
    generation_seconds, generated_sha, generation_runs = None, None, []
    if not args.skip_generate:
        model = inference_model(model, config).to("cuda" if torch.cuda.is_available() else "cpu")
        share_cross_attention_across_beams(model)  # as baselines.model.load_pretrained sets it up
        runs = [profiled(args.profile, "generate", lambda: time_generation(
            model, gen_inputs, config, size["summary_tokens"])) for _ in range(args.repeats)]
        generation_runs = [seconds for seconds, _ in runs]
        generation_seconds, generated_sha = float(np.median(generation_runs)), runs[0][1]
        if len({sha for _, sha in runs}) > 1:
            generated_sha = "differs between runs: " + ", ".join(sha for _, sha in runs)

    train_tokens = sum(train_lengths) + sum(label_lengths)
    epoch_bound = 6 * parameters * train_tokens / BF16_FLOPS
    # forward only: encoder once, then every beam's decoder step
    decoded_tokens = config.num_beams * size["summary_tokens"] * len(gen_lengths)
    gen_bound = 2 * parameters * (sum(gen_lengths) + decoded_tokens) / BF16_FLOPS
    steady_epoch = epochs[-1] if epochs else None
    recipe = recipe_seconds(epochs, generation_seconds) if epochs and generation_seconds is not None else None
    figures = {"epoch_seconds": steady_epoch, "generation_seconds": generation_seconds, "recipe_seconds": recipe}
    result = {
        "mode": "smoke" if args.smoke else "full",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "precision": {k: v for k, v in precision_flags(config.precision).items() if v} or "fp32",
        "sdpa_backend": config.sdpa_backend, "sdpa_kernels_enabled": [k for k, on in sdpa.items() if on],
        "overrides": overrides,
        "options": {"pad_to_multiple_of": pad_to_multiple_of(),
                    "torch_compile_mode": config.torch_compile_mode,
                    "torch_compile_regional": config.torch_compile_regional,
                    "loader_workers": loader_arguments(config.dataloader_num_workers)["dataloader_num_workers"],
                    "sync_free_masks": sync_free_masks},
        "parameters_millions": round(parameters / 1e6, 1),
        "tokenizer_for_lengths": lengths["tokenizer"],
        "train_rows": rows, "train_batch": config.per_device_train_batch_size,
        "encoder_tokens_mean": round(float(np.mean(train_lengths)), 1),
        "label_tokens_mean": round(float(np.mean(label_lengths)), 1),
        "train_tokens": train_tokens,
        "epoch_seconds_each": [round(e, 2) for e in epochs],
        "epoch_seconds": None if steady_epoch is None else round(steady_epoch, 2),
        "epoch_bound_seconds": round(epoch_bound, 2),
        "epoch_over_bound": None if steady_epoch is None else round(steady_epoch / epoch_bound, 1),
        "generated_summaries": len(gen_inputs), "num_beams": config.num_beams, "summary_tokens": size["summary_tokens"],
        "generation_batch": config.per_device_eval_batch_size,
        "generation_seconds": None if generation_seconds is None else round(generation_seconds, 2),
        "generation_seconds_each": [round(g, 2) for g in generation_runs],
        "generation_bound_seconds": round(gen_bound, 3),
        "generation_over_bound": None if generation_seconds is None else round(generation_seconds / gen_bound, 1),
        "generated_ids_sha256": generated_sha,
        "recipe_seconds_estimate": None if recipe is None else round(recipe, 1),
        "compile": compile_summary(),
        "targets_h200": TARGETS,
        "meets_targets": None if args.smoke else {k: v <= TARGETS[k] for k, v in figures.items() if v is not None},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from competition.rules.files import write_text_atomic

        write_text_atomic(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
