"""Screening LLM presets before training one: dev summaries of each base model (no adapter), zero- and few-shot,
scored with the competition metric and ranked.

    python -m llm.screen --models llama3.2-ko-3b,qwen3-4b --shots 0,1,3 --data data --out runs/screen [--test]
        [--model-dir ROOT] [KEY=VALUE ...]          # make screen MODELS=... SHOTS=... ARGS="..."

Each preset's config resolves as `make llm` resolves it (preset < llm/configs/<preset>.yaml < KEY=VALUE, applied to
every preset); its prompt, template, cut, decoding and cleaning are the track's (`llm.generate.predict_to_file`).
`model_path=DIR` names one preset's local files, so it takes one preset; `--model-dir ROOT` loads each preset from
`ROOT/<preset>/`. Few-shot examples come from train, best first: the same topic, then the dialogues closest by the
metric's own morphemes; they fit inside the prompt budget before the dialogue is ever cut
(`competition.modeling.prompts.encode_few_shot_prompt`), and every cut is counted.

Outputs in OUT: `screen.md`, `screen.json` and `screen.png` (every finished preset and shot count screened on this
dev file, best first), and one folder per preset and shot count, `<preset>-<k>shot/`, with `preds_dev.csv` (and
`preds_test.csv` with `--test`) and their sidecars, which the ensembler reads like any run's. A rerun skips finished
folders and continues unfinished predictions; other settings into a folder are refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import SAFE_ON_RESUME, config_hash, config_to_dict, parse_overrides, save_yaml
from competition.harness.logs import setup_logging
from competition.harness.memory import detect_gpu, prefer_expandable_segments
from competition.rules.data import Splits, file_sha256, load_splits
from competition.rules.errors import ConfigError, DataError, warn
from competition.rules.files import atomic_path, write_text_atomic
from competition.rules.metric import DEFAULT_ANALYZER, compute_rouge, get_tokenizer
from competition.rules.predictions import PredictionMeta, fill_in_counts
from llm.config import SETTINGS, TRACK, LLMConfig

log = logging.getLogger(__name__)

RESULT_FILE = "screen_result.json"  # a finished folder's row of the table
SETTINGS_FILE = "screen_settings.json"  # what a folder screens; a rerun with other settings is refused
TABLE_MARKDOWN, TABLE_JSON, TABLE_PLOT = "screen.md", "screen.json", "screen.png"
SYSTEM = "screen"  # the sidecar's `system`: base-model predictions, no training


# ---------------------------------------------------------------- few-shot examples

def rank_examples(queries: Sequence[str], train: Sequence[str], k: int, query_topics: Sequence[str] | None = None,
                  train_topics: Sequence[str] | None = None, analyzer: str = DEFAULT_ANALYZER) -> list[list[int]]:
    """For each query dialogue, the `k` train rows to show it, best first: same topic first (where topics are
    given), then the highest morpheme Dice overlap (the metric's tokens, each counted once), then train order.
    Deterministic; a train dialogue equal to the query is never chosen."""
    if k <= 0:
        return [[] for _ in queries]
    tokenize = get_tokenizer(analyzer).tokenize
    vocabulary: dict[str, int] = {}
    train_sets = [{vocabulary.setdefault(t, len(vocabulary)) for t in tokenize(text)} for text in train]
    postings: list[list[int]] = [[] for _ in vocabulary]
    for row, tokens in enumerate(train_sets):
        for token in tokens:
            postings[token].append(row)
    train_sizes = np.array([len(s) for s in train_sets], dtype=float)
    train_topic_array = np.asarray(train_topics if train_topics is not None else [None] * len(train), dtype=object)
    order_in_train = np.arange(len(train))
    chosen = []
    for index, query in enumerate(queries):
        tokens = {vocabulary[t] for t in tokenize(query) if t in vocabulary}
        hits = [postings[t] for t in tokens]
        overlap = np.bincount(np.concatenate(hits).astype(int), minlength=len(train)) if hits else np.zeros(len(train))
        size = len(set(tokenize(query)))
        dice = 2.0 * overlap / np.maximum(train_sizes + size, 1.0)
        topic = query_topics[index] if query_topics is not None else None
        same_topic = (train_topic_array == topic) if topic else np.zeros(len(train), dtype=bool)
        ranked = np.lexsort((order_in_train, -dice, ~same_topic))
        picks: list[int] = []
        for i in ranked:  # best first, until k
            if len(picks) == k:
                break
            if train[i] != query:
                picks.append(int(i))
        chosen.append(picks)
    return chosen


def choose_examples(splits: Splits, k: int, with_test: bool) -> dict[str, list[list[int]]]:
    """The `k` best train rows for every dev (and test) dialogue (`rank_examples`; topics where a split has them)."""
    train = splits["train"]
    topics = list(train["topic"]) if "topic" in train else None
    return {split: rank_examples(list(splits[split]["dialogue"]), list(train["dialogue"]), k,
                                 list(splits[split]["topic"]) if "topic" in splits[split] else None, topics)
            for split in (("dev", "test") if with_test else ("dev",))}


# ---------------------------------------------------------------- one preset, one shot count

@dataclasses.dataclass(frozen=True)
class Job:
    """One preset screened with one number of examples, in its own folder."""

    config: LLMConfig
    shots: int
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name


def folder_name(preset: str, shots: int) -> str:
    return f"{preset}-{shots}shot"


def job_settings(job: Job, splits: Splits, with_test: bool) -> dict[str, Any]:
    """What a folder's predictions depend on: the config (speed-only keys aside), shots and data files."""
    config = {k: v for k, v in config_to_dict(job.config).items() if k not in SAFE_ON_RESUME}
    data = {split: file_sha256(splits.paths[split]) for split in ("train", "dev", "test")
            if split in splits.paths and (split != "test" or with_test)}
    return {"preset": job.config.preset, "shots": job.shots, "config": config, "data": data}


def check_or_start(job: Job, settings: dict[str, Any]) -> None:
    """Start a folder (its config.yaml and settings), or check that an earlier one screened the same thing."""
    path = job.folder / SETTINGS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        differ = sorted(k for k in set(saved["config"]) | set(settings["config"])
                        if saved["config"].get(k) != settings["config"].get(k))
        differ += [f"data {s}" for s in saved["data"] if s in settings["data"] and saved["data"][s] != settings["data"][s]]
        differ += ["shots"] if saved["shots"] != settings["shots"] else []
        if differ:
            raise ConfigError(f"{job.folder}: screened earlier with other settings ({', '.join(differ)}); "
                              f"use another --out or remove that folder")
        if set(settings["data"]) - set(saved["data"]):  # --test added later: record its file
            write_text_atomic(path, json.dumps(settings, ensure_ascii=False, indent=2))
        return
    job.folder.mkdir(parents=True, exist_ok=True)
    save_yaml(job.config, job.folder / "config.yaml")
    write_text_atomic(path, json.dumps(settings, ensure_ascii=False, indent=2))


def finished_result(job: Job, with_test: bool) -> dict[str, Any] | None:
    """The saved row of a folder that has every split asked for, else None."""
    path = job.folder / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    return result if (not with_test or result.get("test_done")) else None


def encode_prompts(tokenizer, style, dialogues: Sequence[str], examples: list[list[tuple[str, str]]]):
    """Each dialogue's prompt ids and the cut counts over the split."""
    from competition.modeling.prompts import encode_few_shot_prompt

    prompts = [encode_few_shot_prompt(tokenizer, style, d, e) for d, e in zip(dialogues, examples)]
    lengths = [len(p.input_ids) for p in prompts]
    counts = {
        "prompt_tokens_mean": round(float(np.mean(lengths)), 1) if lengths else 0.0,
        "prompt_tokens_max": max(lengths, default=0),
        "examples_mean": round(float(np.mean([p.examples_used for p in prompts])), 2) if prompts else 0.0,
        "examples_dropped": sum(p.examples_dropped for p in prompts),
        "examples_shortened": sum(1 for p in prompts if p.example_tokens_cut),
        "example_tokens_cut": sum(p.example_tokens_cut for p in prompts),
        "dialogues_cut": sum(1 for p in prompts if p.dialogue_tokens_cut),
        "dialogue_tokens_cut": sum(p.dialogue_tokens_cut for p in prompts),
    }
    return [p.input_ids for p in prompts], counts


def screen_job(job: Job, model, tokenizer, style, source: str, splits: Splits,
               examples: dict[str, list[list[int]]], with_test: bool, load_seconds: float) -> dict[str, Any]:
    """Predict dev (and test) for one job with the track's generation, score dev, save the folder's row."""
    from llm.generate import predict_to_file

    train = splits["train"]
    earlier = json.loads((job.folder / RESULT_FILE).read_text(encoding="utf-8")) \
        if (job.folder / RESULT_FILE).is_file() else {}
    row: dict[str, Any] = {"preset": job.config.preset, "shots": job.shots, "folder": job.name}
    for split in ("dev", "test") if with_test else ("dev",):
        frame = splits[split]
        shown = [[(train["dialogue"][i], train["summary"][i]) for i in picks[:job.shots]] for picks in examples[split]]
        prompt_ids, counts = encode_prompts(tokenizer, style, list(frame["dialogue"]), shown)
        out = job.folder / f"preds_{split}.csv"
        already = out.is_file()
        meta = PredictionMeta(split, str(job.folder), TRACK, job.config.preset, config_hash(job.config),
                              checkpoint=source, system=SYSTEM, extra={"shots": job.shots})
        start = time.perf_counter()
        summaries = predict_to_file(model, tokenizer, style, list(frame["fname"]), list(frame["dialogue"]), out,
                                    job.config, meta, prompt_ids=prompt_ids)
        seconds = earlier.get(f"seconds_{split}") if already and earlier else round(time.perf_counter() - start, 2)
        row.update({f"{split}_{k}" if split == "test" else k: v for k, v in counts.items()})
        row[f"seconds_{split}"] = seconds
        if split == "dev":
            result = compute_rouge(summaries, list(frame["references"]))
            fills = fill_in_counts({"dev": out})["dev"]
            row.update(score=round(result.final, 4), rouge1=round(result.rouge1, 4), rouge2=round(result.rouge2, 4),
                       rougeL=round(result.rougeL, 4), fill_ins=fills["filled"], rows=fills["rows"])
    row.update(test_done=with_test, load_seconds=earlier.get("load_seconds", load_seconds) if earlier else load_seconds,
               dev_sha256=file_sha256(splits.paths["dev"]), quantization=_quantization(model))
    write_text_atomic(job.folder / RESULT_FILE, json.dumps(row, ensure_ascii=False, indent=2))
    return row


def _quantization(model) -> str:
    quantization = getattr(getattr(model, "config", None), "quantization_config", None)
    if quantization is None:
        return "none"
    as_dict = quantization if isinstance(quantization, dict) else quantization.to_dict()
    return "nf4" if as_dict.get("load_in_4bit") else "int8" if as_dict.get("load_in_8bit") else "none"


# ---------------------------------------------------------------- the table

def ranked(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows best dev score first (ties: fewer shots, then preset name), numbered by rank."""
    order = sorted(rows, key=lambda r: (-r["score"], r["shots"], r["preset"]))
    return [{"rank": i + 1, **row} for i, row in enumerate(order)]


def table_markdown(rows: Sequence[dict[str, Any]], dev_path: Path) -> str:
    lines = [f"# Screening: base models on {dev_path}, no training", "",
             "Score: the competition metric on dev (mean ROUGE-1/2/L F1 x 100, morphemes). Examples: mean in the "
             "prompt; cut = whole examples dropped + examples shortened to fit the prompt budget. Dialogues cut: dev "
             "rows whose dialogue was cut (only once no example is left). Seconds: dev generation.", "",
             "| rank | preset | shots | score | R1 | R2 | RL | fill-ins | prompt tokens mean | max | examples "
             "| examples cut | dialogues cut | seconds |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['rank']} | {r['preset']} | {r['shots']} | {r['score']:.2f} | {100 * r['rouge1']:.2f} "
                     f"| {100 * r['rouge2']:.2f} | {100 * r['rougeL']:.2f} | {r['fill_ins']} of {r['rows']} "
                     f"| {r['prompt_tokens_mean']:.1f} | {r['prompt_tokens_max']} | {r['examples_mean']:.2f} "
                     f"| {r['examples_dropped'] + r['examples_shortened']} | {r['dialogues_cut']} "
                     f"| {r['seconds_dev']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Horizontal bars of the dev score per preset and shot count, best on top."""
    from competition.rules.report import korean_text, plt

    with korean_text():
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
        labels = [f"{r['preset']} · {r['shots']}-shot" for r in rows][::-1]
        scores = [r["score"] for r in rows][::-1]
        bars = ax.barh(labels, scores, color="tab:blue")
        fills = [f"{r['fill_ins']}/{r['rows']}" for r in rows][::-1]
        ax.bar_label(bars, labels=[f"{s:.2f} (fill-ins {f})" for s, f in zip(scores, fills)], padding=3, fontsize=8)
        ax.set(xlabel="dev score (ROUGE-1/2/L F1 mean x 100)", title="Screening: base models, no training")
        ax.set_xlim(0, max(scores, default=1) * 1.35 + 1)  # room for the labels
        fig.tight_layout()
        with atomic_path(path) as temp:
            fig.savefig(temp, format="png", dpi=100)
        plt.close(fig)


def write_table(out_dir: Path, dev_path: Path) -> list[dict[str, Any]]:
    """screen.md, screen.json and screen.png from every finished folder in `out_dir` screened on this dev file."""
    dev_sha = file_sha256(dev_path)
    rows = []
    for path in sorted(out_dir.glob(f"*/{RESULT_FILE}")):
        row = json.loads(path.read_text(encoding="utf-8"))
        if row.get("dev_sha256") == dev_sha:
            rows.append(row)
        else:
            print(f"note: {path.parent} left out of the table (screened on another dev file)")
    table = ranked(rows)
    write_text_atomic(out_dir / TABLE_JSON, json.dumps({"dev": str(dev_path), "rows": table}, ensure_ascii=False,
                                                       indent=2))
    write_text_atomic(out_dir / TABLE_MARKDOWN, table_markdown(table, dev_path))
    plot_table(out_dir / TABLE_PLOT, table)
    return table


# ---------------------------------------------------------------- all of it

def screen_configs(models: Sequence[str], overrides: dict[str, Any], model_dir: Path | None) -> list[LLMConfig]:
    """Each preset's config as `make llm` resolves and fits it to this machine's GPU; `model_path` only with one
    preset, `--model-dir` for many."""
    if "model_path" in overrides and len(models) > 1:
        raise ConfigError(f"model_path names one preset's files but {len(models)} presets are screened; "
                          f"screen one preset, or give --model-dir ROOT with ROOT/<preset>/ folders")
    if model_dir is not None and "model_path" in overrides:
        raise ConfigError("give either model_path=DIR or --model-dir ROOT, not both")
    configs = []
    for preset in models:
        layer = dict(overrides)
        if model_dir is not None:
            folder = Path(model_dir) / preset
            if not (folder / "config.json").is_file():
                raise ConfigError(f"--model-dir {model_dir}: no {folder}/config.json; expected one folder per "
                                  f"screened preset (config, tokenizer and weights)")
            layer["model_path"] = str(folder)
        layers, fit = SETTINGS.fitted(SETTINGS.layers(preset, None, layer), detect_gpu())  # as `make llm` fits
        for message in fit.warnings if fit else ():
            warn(message)
        configs.append(SETTINGS.resolve(layers))
    return configs


def screen(models: Sequence[str], shots: Sequence[int], data_dir: Path | str, out_dir: Path | str,
           overrides: dict[str, Any] | None = None, with_test: bool = False,
           model_dir: Path | None = None) -> list[dict[str, Any]]:
    """Screen every preset with every shot count; return the ranked table (all finished folders in `out_dir`)."""
    from competition.harness.runs import seed_everything

    splits = load_splits(data_dir, required=("train", "dev", "test") if with_test else ("train", "dev"))
    out_dir = Path(out_dir)
    configs = screen_configs(models, overrides or {}, model_dir)
    examples: dict[str, list[list[int]]] = {}  # chosen once, when the first job needs them (tokenizes train)
    for config in configs:
        jobs = [Job(config, k, out_dir / folder_name(config.preset, k)) for k in shots]
        todo = []
        for job in jobs:
            check_or_start(job, job_settings(job, splits, with_test))
            if finished_result(job, with_test) is None:
                todo.append(job)
            else:
                print(f"{job.name}: finished earlier, skipped")
        if not todo:
            continue
        if config.add_data_tokens:
            warn(f"{config.preset}: add_data_tokens is ignored in screening (a base model has no trained rows for "
                 f"new tokens)")
        seed_everything(config.seed)
        start = time.perf_counter()
        from llm.model import load_base_for_prediction

        model, tokenizer, style, source = load_base_for_prediction(config)
        if not examples:
            examples.update(choose_examples(splits, max(shots), with_test))
        load_seconds = round(time.perf_counter() - start, 2)
        for job in todo:
            row = screen_job(job, model, tokenizer, style, source, splits, examples, with_test, load_seconds)
            print(f"{job.name}: dev score {row['score']:.2f}, fill-ins {row['fill_ins']} of {row['rows']}, "
                  f"{row['seconds_dev']:.1f} s")
        del model
        _free_memory()
    return write_table(out_dir, splits.paths["dev"])


def _free_memory() -> None:
    """Let the next preset have the card (the model's tensors go once nothing holds them)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def parse_list(text: str, what: str, as_int: bool = False) -> list:
    """`a,b` -> ['a', 'b'] (`0,1,3` -> [0, 1, 3] with `as_int`); empty items or repeats are a ConfigError."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or len(set(items)) != len(items):
        raise ConfigError(f"{what} '{text}': expected a comma-separated list without repeats")
    if not as_int:
        return items
    if not all(item.isdigit() for item in items):
        raise ConfigError(f"{what} '{text}': expected whole numbers of examples >= 0, e.g. 0,1,3")
    return [int(item) for item in items]


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm.screen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="LLM presets, comma-separated")
    parser.add_argument("--shots", default="0", help="numbers of few-shot examples, comma-separated (default 0)")
    parser.add_argument("--data", default="data", help="folder with train.csv, dev.csv (and test.csv)")
    parser.add_argument("--out", default="runs/screen", help="folder of the table and the per-preset folders")
    parser.add_argument("--test", action="store_true", help="predict test too (the ensembler then reads the folders)")
    parser.add_argument("--model-dir", type=Path, help="ROOT with one local folder per preset: ROOT/<preset>/")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="LLM config overrides for every preset")
    args = parser.parse_intermixed_args(argv)
    setup_logging()
    prefer_expandable_segments()
    table = screen(parse_list(args.models, "--models"), parse_list(args.shots, "--shots", as_int=True), args.data,
                   args.out, parse_overrides(args.overrides), args.test, args.model_dir)
    if not table:
        raise DataError(f"{args.out}: nothing screened")
    best = table[0]
    print(f"best: {best['preset']} {best['shots']}-shot, dev score {best['score']:.2f} | table {Path(args.out)}/"
          f"{TABLE_MARKDOWN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
