"""Batched summary generation: length-sorted, left-padded batches, greedy or beam search, stopping on EOS or the
preset's end marker (cleaning and <think> stripping: competition.modeling.prompts); resumable prediction files.

`predict(checkpoint_dir, dialogues, config)` is the track-contract entry point. `predict_to_file` writes a
predictions CSV and appends each finished batch to `<name>.partial.jsonl`, so an interrupted run regenerates only
the missing fnames.

Under torchrun (several processes) the length-sorted batches are dealt out to the ranks round by round and
gathered back, so every rank returns all summaries in input order; only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from competition.harness.distributed import broadcast_from_main, distributed_map, is_main_process, world_size
from competition.modeling.oom import SplitOnOom, split_rows
from competition.rules.predictions import PredictionMeta, fill_empty, write_predictions
from llm.config import LLMConfig

log = logging.getLogger(__name__)

BatchCallback = Callable[[list[int], list[str]], None]
# what to change when one dialogue alone does not fit while generating
GENERATION_OOM_HINT = "set predict_with=adapter (the k-bit base), a smaller max_source_length or max_new_tokens"


def stop_token_ids(model, tokenizer, style) -> list[int]:
    """Ids that end a summary: the prompt style's (eos, turn terminator, one-token end marker) and the model's EOS."""
    from competition.modeling.prompts import stop_token_ids as style_stop_ids

    ids = list(style_stop_ids(tokenizer, style))
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.extend(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    return list(dict.fromkeys(ids))


def generation_kwargs(config: LLMConfig, model, tokenizer, style) -> dict[str, Any]:
    """Arguments of `model.generate` from the config: decoding, length and stopping."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens, "num_beams": config.num_beams, "do_sample": False,
        "eos_token_id": stop_token_ids(model, tokenizer, style), "pad_token_id": tokenizer.pad_token_id,
        "use_cache": True,
    }
    if config.min_new_tokens:
        kwargs["min_new_tokens"] = config.min_new_tokens
    if config.num_beams > 1:
        kwargs["early_stopping"] = True
    if config.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = config.repetition_penalty
    if config.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = config.no_repeat_ngram_size
    if config.cache_implementation:
        kwargs["cache_implementation"] = config.cache_implementation
    marker = style.end_marker
    if marker and marker not in tokenizer.get_vocab():  # several tokens: match the decoded text instead
        kwargs.update(stop_strings=[marker], tokenizer=tokenizer)
    return kwargs


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = 0) -> list[list[int]]:
    """Row indices in batches of similar length, longest first (an out-of-memory shows up at once). With
    `max_tokens`, a batch also ends before its rows x its longest length would pass it (one row always fits)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        fits = current and len(current) < batch_size
        if fits and (not max_tokens or (len(current) + 1) * lengths[current[0]] <= max_tokens):
            current.append(index)
        else:
            batches.append([index])
    return batches


@torch.inference_mode()
def generate_summaries(model, tokenizer, style, dialogues: Sequence[str], config: LLMConfig,
                       on_batch: BatchCallback | None = None,
                       desc: str = "generate", prompt_ids: Sequence[Sequence[int]] | None = None) -> list[str]:
    """Summaries of `dialogues`, in input order; `on_batch(indices, summaries)` sees each finished batch.
    `prompt_ids`: the prompts already encoded (few-shot screening), else each dialogue's `encode_for_generation`.

    Under several processes each round deals one batch to each rank (`distributed_map`) and gathers the results, so
    every rank gets every summary and `on_batch` sees every batch on every rank; one process runs batch after batch.
    """
    from competition.modeling.prompts import clean_generated, encode_for_generation, left_pad_batch

    prompts = ([list(p) for p in prompt_ids] if prompt_ids is not None
               else [encode_for_generation(tokenizer, style, d).input_ids for d in dialogues])
    kwargs = generation_kwargs(config, model, tokenizer, style)
    device = next(model.parameters()).device
    fast = config.decoding == "fast" and _fast_greedy_fits(model, kwargs)

    splitter = SplitOnOom("generation", GENERATION_OOM_HINT)  # an OOM splits the batch; later batches stay split

    def run_batches(my_batches: list[list[int]]) -> list[list[str]]:
        texts_per_batch = []
        for indices in my_batches:
            batch = left_pad_batch(tokenizer, [prompts[i] for i in indices])
            inputs = {k: torch.as_tensor(v).to(device) for k, v in batch.items()}

            def attempt(parts: int, retry: bool) -> list[str]:  # row pieces keep the batch's padding: same tokens
                texts = []
                for piece in split_rows(inputs, parts):
                    new_tokens = _new_tokens(model, piece, kwargs, fast, config.compile_decode,
                                             config.decode_attention)
                    texts.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
                return texts

            texts = splitter.run(attempt, len(indices), batch=desc)
            texts_per_batch.append([clean_generated(t, style) for t in texts])
        return texts_per_batch

    batches = length_sorted_batches([len(p) for p in prompts], config.per_device_eval_batch_size,
                                    config.generation_batch_tokens)
    ranks = world_size()
    was_training = model.training
    model.eval()
    summaries: list[str] = [""] * len(prompts)
    try:
        with tqdm(total=len(prompts), desc=desc, unit="dlg", disable=not is_main_process()) as bar:
            for start in range(0, len(batches), ranks):
                round_batches = batches[start:start + ranks]  # neighbours in length order: balanced ranks
                for indices, done in zip(round_batches, distributed_map(run_batches, round_batches)):
                    for i, text in zip(indices, done):
                        summaries[i] = text
                    if on_batch is not None:
                        on_batch(indices, done)
                    bar.update(len(indices))
    finally:
        model.train(was_training)
    return summaries


def _fast_greedy_fits(model, kwargs: dict[str, Any]) -> bool:
    """Whether llm.decode's loop gives generate's greedy tokens here (the reason is logged when it does not)."""
    from llm.decode import fast_greedy_unsupported

    reason = fast_greedy_unsupported(model, kwargs["num_beams"], kwargs.get("repetition_penalty", 1.0),
                                     kwargs.get("no_repeat_ngram_size", 0), kwargs.get("stop_strings"))
    if reason:
        log.info("decoding with model.generate: %s", reason)
    return reason is None


def _new_tokens(model, inputs: dict[str, torch.Tensor], kwargs: dict[str, Any], fast: bool,
                compile_step: bool = False, decode_attention: str = "auto") -> torch.Tensor:
    """[B, n] generated token ids of a left-padded batch (pad after each row's stop)."""
    if fast:
        from llm.decode import fast_greedy_generate

        stops = kwargs["eos_token_id"]
        pad = kwargs["pad_token_id"] if kwargs["pad_token_id"] is not None else stops[0]
        return fast_greedy_generate(model, inputs["input_ids"], inputs["attention_mask"], kwargs["max_new_tokens"],
                                    stops, pad, kwargs.get("min_new_tokens", 0), compile_step=compile_step,
                                    decode_attention=decode_attention)
    output = model.generate(**inputs, **kwargs)
    return output[:, inputs["input_ids"].shape[1]:]


def predict(checkpoint_dir: Path | str, dialogues: list[str], config: LLMConfig) -> list[str]:
    """Track contract: summaries of `dialogues` from a saved checkpoint, in input order (never drops a row); empty
    ones stay empty, so the caller can fill them in and count them (`fill_empty`)."""
    from llm.model import load_checkpoint

    model, tokenizer, style, _ = load_checkpoint(checkpoint_dir, config)
    return generate_summaries(model, tokenizer, style, dialogues, config)


def partial_path(out_path: Path | str) -> Path:
    """`run/preds_test.csv` -> `run/preds_test.partial.jsonl` (finished batches of an unfinished run)."""
    return Path(out_path).with_suffix(".partial.jsonl")


def read_partial(path: Path, wanted: set[str]) -> dict[str, str]:
    """Summaries already generated for `wanted` fnames; a torn last line (killed mid-write) is ignored."""
    done: dict[str, str] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("fname") in wanted:
            done[row["fname"]] = row["summary"]
    return done


def predict_to_file(model, tokenizer, style, fnames: Sequence[str], dialogues: Sequence[str], out_path: Path | str,
                    config: LLMConfig, metadata: PredictionMeta, on_batch: BatchCallback | None = None,
                    prompt_ids: Sequence[Sequence[int]] | None = None) -> list[str]:
    """Generate the missing summaries, appending each batch to the partial sidecar, then write the CSV atomically.

    Returns the summaries in `fnames` order. `on_batch` (tests, progress hooks) runs after each batch is saved.
    `prompt_ids`: each row's prompt already encoded (see `generate_summaries`).
    Under several processes rank 0 reads and writes the files; every rank generates its share of the missing
    fnames and returns the same summaries.
    """
    out_path = Path(out_path)
    sidecar = partial_path(out_path)
    finished, done = broadcast_from_main(
        lambda: (_finished_predictions(out_path, fnames), read_partial(sidecar, set(fnames))))
    if finished is not None:
        return finished
    missing = [i for i, f in enumerate(fnames) if f not in done]
    if done:
        log.info("%s: resuming, %d of %d rows already generated", out_path.name, len(done), len(fnames))
    writer = _main_process_appender(sidecar)
    with writer as handle:
        def save_batch(indices: list[int], summaries: list[str]) -> None:
            for i, summary in zip(indices, summaries):
                fname = fnames[missing[i]]
                done[fname] = summary
                if handle is not None:
                    handle.write(json.dumps({"fname": fname, "summary": summary}, ensure_ascii=False) + "\n")
            if handle is not None:
                handle.flush()
            if on_batch is not None:
                on_batch([missing[i] for i in indices], summaries)

        generate_summaries(model, tokenizer, style, [dialogues[i] for i in missing], config,
                           on_batch=save_batch, desc=out_path.stem,
                           prompt_ids=None if prompt_ids is None else [prompt_ids[i] for i in missing])
    summaries, empty = fill_empty([done[f] for f in fnames], dialogues)
    if is_main_process():
        resumed = {"resumed_rows": len(fnames) - len(missing)}
        write_predictions(out_path, fnames, summaries, replace(metadata, fill_ins=empty,
                                                               extra={**metadata.extra, **resumed}))
        sidecar.unlink(missing_ok=True)
    return summaries


def _main_process_appender(path: Path):
    """The sidecar opened for appending on rank 0; a context yielding None on the other ranks (they write nothing)."""
    from contextlib import nullcontext

    if not is_main_process():
        return nullcontext(None)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8")


def _finished_predictions(out_path: Path, fnames: Sequence[str]) -> list[str] | None:
    """Summaries of an already written predictions file covering exactly `fnames` (a resumed run), else None."""
    if not out_path.is_file():
        return None
    from competition.rules.data import read_predictions

    frame = read_predictions(out_path)
    return list(frame["summary"]) if list(frame["fname"]) == list(fnames) else None
