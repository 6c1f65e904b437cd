"""Truncation report: how many prompts each max length would cut, and by how many tokens (both tracks).

- LLM presets: the prompt is measured exactly as `competition.modeling.prompts` builds it (scaffolding + instruction +
  dialogue + assistant header, plus the end marker/terminator reserved after the summary). A max length M is
  the prompt budget (the style's `max_length` is M + max_target_length), so a prompt is cut when it is longer
  than M. The tokens the configured cut mode really drops (whole turns) are reported beside the minimum.
- Seq2seq presets: the encoder input is the tokenized dialogue in the family's layout (KoBART: `<s> dialogue </s>`,
  `competition.modeling.tokens.seq2seq_layout`), as the track builds it, whatever the tokenizer adds itself.
Summaries (train/dev references) are compared with the preset's max_target_length.

`count_truncation(lengths, max_length)` is the plain count any track can reuse.

CLI: `python -m competition.truncation --model M --data D --maxlen 512,768,1024,2048 --out reports/truncation`
(any preset of either track) writes `<out>/<model>/truncation.{md,json}` and `lengths.png`. The tokenizer is the
preset's (tiny presets: built locally; others: the hub) or `--tokenizer PATH`. A rerun on the same data folder and
tokenizer replaces the report; one on another folder or tokenizer is refused (`--out` keeps both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from competition.harness.cli import exit_on_bad_input
from competition.harness.logs import setup_logging
from competition.harness.presets import Preset, get_preset
from competition.modeling.loading import load_tokenizer, model_source
from competition.modeling.prompts import (
    cut_dialogue_to_budget,
    encode_continuation,
    encode_continuations,
    prompt_style_for,
    resolve_template,
    scaffold_for,
    split_turns,
)
from competition.modeling.tokens import seq2seq_layout
from competition.rules.data import Splits, data_special_tokens, file_sha256, load_splits
from competition.rules.errors import ConfigError, DataError
from competition.rules.files import atomic_path, write_text_atomic

REPORT_JSON = "truncation.json"
REPORT_MARKDOWN = "truncation.md"
REPORT_PLOT = "lengths.png"
SPLITS = ("train", "dev", "test")
PERCENTILES = (50, 90, 99)


def count_truncation(token_lengths: Sequence[int], max_length: int) -> dict[str, Any]:
    """Rows longer than `max_length` and the tokens over it (mean/percentiles/max over the cut rows)."""
    lengths = np.asarray(token_lengths, dtype=np.int64)
    over = np.maximum(lengths - max_length, 0)
    cut = over[over > 0]
    stats: dict[str, Any] = {
        "max_length": int(max_length),
        "rows": int(lengths.size),
        "cut_rows": int(cut.size),
        "cut_fraction": float(cut.size / lengths.size) if lengths.size else 0.0,
        "tokens_cut_total": int(cut.sum()),
    }
    stats.update(distribution(cut, prefix="tokens_cut_"))
    return stats


def distribution(values: Sequence[int] | np.ndarray, prefix: str = "") -> dict[str, float]:
    """Mean, percentiles and max of integer values (zeros when empty)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return {f"{prefix}mean": 0.0, **{f"{prefix}p{q}": 0.0 for q in PERCENTILES}, f"{prefix}max": 0}
    return {f"{prefix}mean": float(values.mean()),
            **{f"{prefix}p{q}": float(np.percentile(values, q)) for q in PERCENTILES},
            f"{prefix}max": int(values.max())}


# ---------------------------------------------------------------- measuring lengths

@dataclass
class SplitLengths:
    """Token lengths of one split."""

    prompt: list[int]  # LLM: whole prompt + reserved suffix; seq2seq: encoder input
    summary: list[int]  # every reference summary (empty for test)
    turns: list[list[list[int]]] = dataclasses.field(default_factory=list)  # LLM: dialogue turn ids, for cut modes


def measure_split(tokenizer, preset: Preset, frame, style=None, progress: bool = True,
                  desc: str = "") -> SplitLengths:
    """Token lengths of the dialogues (as the track feeds them) and of the reference summaries."""
    from tqdm.auto import tqdm

    dialogues = list(frame["dialogue"])
    references = [r for refs in frame["references"] for r in refs] if "references" in frame.columns else []
    lengths = SplitLengths([], [])
    if preset.track == "llm":
        scaffold = scaffold_for(tokenizer, style)
        fixed = len(scaffold.head_ids) + len(scaffold.tail_ids) + len(scaffold.suffix_ids)
        for dialogue in tqdm(dialogues, desc=f"{desc} dialogues", unit="dlg", disable=not progress):
            turn_ids = encode_continuations(tokenizer, split_turns(dialogue))
            lengths.turns.append(turn_ids)
            lengths.prompt.append(fixed + sum(len(t) for t in turn_ids))
        lengths.summary = [len(encode_continuation(tokenizer, r)) for r in
                           tqdm(references, desc=f"{desc} summaries", unit="sum", disable=not progress or not references)]
    else:  # the family's layout (KoBART: <s> text </s>), as the track builds it, whatever the tokenizer adds
        layout = seq2seq_layout(tokenizer, preset.family)
        batch = 256
        for start in tqdm(range(0, len(dialogues), batch), desc=f"{desc} dialogues", unit="batch",
                          disable=not progress):
            content = tokenizer(dialogues[start:start + batch], add_special_tokens=False)["input_ids"]
            lengths.prompt.extend(layout.encoder_length(len(ids)) for ids in content)
        if references:
            content = tokenizer(references, add_special_tokens=False)["input_ids"]
            lengths.summary = [layout.label_length(len(ids)) for ids in content]
    return lengths


# ---------------------------------------------------------------- the report

@dataclass
class TruncationReport:
    """The report (the JSON content) and the lengths it was computed from (for the plot)."""

    report: dict[str, Any]
    lengths: dict[str, SplitLengths]


def truncation_report(tokenizer, preset: Preset, data: Splits | Path | str, max_lengths: Sequence[int],
                      add_data_tokens: bool = True, progress: bool = True,
                      tokenizer_source: str = "") -> TruncationReport:
    """Measure every split of `data` (loaded splits, or a data folder) and count truncation at each max length."""
    splits = load_splits(data, required=(), optional=SPLITS)
    frames = {split: frame for split, frame in splits.frames.items() if split in SPLITS}
    if not frames:
        raise DataError(f"{splits.data_dir}: no train.csv, dev.csv or test.csv found")
    if add_data_tokens:
        tokenizer.add_tokens(data_special_tokens(frames.values()))
    style = _llm_style(tokenizer, preset, max(max_lengths)) if preset.track == "llm" else None
    report: dict[str, Any] = {
        "model": preset.name, "track": preset.track, "tokenizer": tokenizer_source,
        "data_dir": str(splits.data_dir), "data_files": {s: file_sha256(splits.paths[s]) for s in frames},
        "data_tokens_added": add_data_tokens, "max_lengths": list(max_lengths),
        "max_target_length": preset.max_target_length,
        "cut_mode": style.cut if style else None,
        "length_meaning": ("prompt tokens: scaffolding + instruction + dialogue + assistant header + reserved "
                           "end marker/terminator" if style else "encoder tokens of the dialogue, special tokens included"),
        "splits": {},
    }
    measured = {split: measure_split(tokenizer, preset, frame, style, progress, split)
                for split, frame in frames.items()}
    measured["all"] = SplitLengths([n for m in measured.values() for n in m.prompt],
                                   [n for m in measured.values() for n in m.summary],
                                   [t for m in measured.values() for t in m.turns])
    for split, lengths in measured.items():
        report["splits"][split] = split_section(lengths, preset, style, tokenizer, max_lengths)
    return TruncationReport(report, measured)


def _llm_style(tokenizer, preset: Preset, max_length: int):
    return resolve_template(prompt_style_for(preset, max_length=max_length + preset.max_target_length), tokenizer)


def split_section(lengths: SplitLengths, preset: Preset, style, tokenizer, max_lengths: Sequence[int]) -> dict:
    """Length distributions, truncation per max length, summaries over the target length."""
    section: dict[str, Any] = {"rows": len(lengths.prompt), "prompt_length": distribution(lengths.prompt),
                               "by_max_length": {}}
    for max_length in max_lengths:
        counts = count_truncation(lengths.prompt, max_length)
        if style is not None and lengths.turns:
            counts["dropped_by_cut_mode"] = _dropped(lengths.turns, tokenizer, style, max_length)
        section["by_max_length"][str(max_length)] = counts
    if lengths.summary:
        over = count_truncation(lengths.summary, preset.max_target_length)
        section["summaries"] = {"count": len(lengths.summary), "length": distribution(lengths.summary),
                                "over_target": over["cut_rows"], "over_target_fraction": over["cut_fraction"],
                                "tokens_over_target_max": over["tokens_cut_max"]}
    return section


def _dropped(turns: list[list[list[int]]], tokenizer, style, max_length: int) -> dict[str, Any]:
    """Tokens the cut mode drops at this prompt budget (whole turns, so at least the overflow)."""
    sized = dataclasses.replace(style, max_length=max_length + style.max_target_length)
    scaffold = scaffold_for(tokenizer, sized)
    budget = scaffold.dialogue_budget(sized)
    if budget <= len(scaffold.cut_marker_ids):
        raise ConfigError(f"max length {max_length} leaves no room for the dialogue after the scaffolding "
                          f"({len(scaffold.head_ids) + len(scaffold.tail_ids) + len(scaffold.suffix_ids)} tokens)")
    dropped = [cut_dialogue_to_budget(t, budget, style.cut, scaffold.cut_marker_ids,
                                      scaffold.end_cut_marker_ids).tokens_cut for t in turns]
    cut = [d for d in dropped if d]
    return {"cut_rows": len(cut), **distribution(cut, prefix="tokens_dropped_")}


# ---------------------------------------------------------------- writing

def check_same_inputs(out_dir: Path, data_dir: Path | str, tokenizer: str) -> None:
    """Refuse to replace a report of another data folder or tokenizer (a rerun on the same ones refreshes it)."""
    existing = out_dir / REPORT_JSON
    if not existing.is_file():
        return
    try:
        old = json.loads(existing.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # not a report this command wrote whole: replace it
    for key, new in (("data_dir", str(data_dir)), ("tokenizer", tokenizer)):
        if Path(old.get(key) or "").resolve() != Path(new or "").resolve():
            raise DataError(f"{existing}: holds the report of {key} '{old.get(key)}', not '{new}'; expected the same "
                            f"{key} to replace it: pass --out DIR (make: OUT=DIR) to keep both, or delete {out_dir}")


def write_truncation_report(result: TruncationReport, out_dir: Path | str) -> Path:
    """truncation.json + truncation.md + lengths.png in `out_dir`, each written atomically."""
    out_dir = Path(out_dir)
    check_same_inputs(out_dir, result.report["data_dir"], result.report["tokenizer"])
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_lengths(out_dir / REPORT_PLOT, result.lengths, result.report)
    write_text_atomic(out_dir / REPORT_MARKDOWN, markdown(result.report))
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(result.report, ensure_ascii=False, indent=2))
    return out_dir


def markdown(report: dict) -> str:
    """The report as markdown tables, one per split."""
    lines = [f"# Truncation report: {report['model']} ({report['track']})", "",
             f"- tokenizer: `{report['tokenizer']}`; data: `{report['data_dir']}`; "
             f"speaker/mask tags added: {report['data_tokens_added']}",
             f"- length = {report['length_meaning']}",
             f"- summary target length: {report['max_target_length']} tokens"
             + (f"; cut mode: {report['cut_mode']}" if report["cut_mode"] else ""), ""]
    for split, section in report["splits"].items():
        dist = section["prompt_length"]
        lines += [f"## {split} ({section['rows']} rows)", "",
                  f"length mean {dist['mean']:.1f}, p50 {dist['p50']:.0f}, p90 {dist['p90']:.0f}, "
                  f"p99 {dist['p99']:.0f}, max {dist['max']}", "",
                  "| max length | prompts cut | % cut | tokens over: mean | p50 | p90 | max |"
                  + (" dropped by cut mode: mean | max |" if report["cut_mode"] else ""),
                  "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if report["cut_mode"] else "")]
        for max_length, c in section["by_max_length"].items():
            row = (f"| {max_length} | {c['cut_rows']} | {100 * c['cut_fraction']:.2f} | {c['tokens_cut_mean']:.1f} "
                   f"| {c['tokens_cut_p50']:.0f} | {c['tokens_cut_p90']:.0f} | {c['tokens_cut_max']} |")
            if "dropped_by_cut_mode" in c:
                d = c["dropped_by_cut_mode"]
                row += f" {d['tokens_dropped_mean']:.1f} | {d['tokens_dropped_max']} |"
            lines.append(row)
        if "summaries" in section:
            s = section["summaries"]
            lines += ["", f"summaries: {s['count']}, length mean {s['length']['mean']:.1f}, max {s['length']['max']}; "
                          f"over {report['max_target_length']} tokens: {s['over_target']} "
                          f"({100 * s['over_target_fraction']:.2f}%)"]
        lines.append("")
    return "\n".join(lines)


def plot_lengths(path: Path, measured: dict[str, SplitLengths], report: dict) -> None:
    """Histograms of prompt and summary lengths per split, with the max lengths marked (ASCII labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for split, lengths in measured.items():
        if split != "all" and lengths.prompt:
            left.hist(lengths.prompt, bins=60, histtype="step", label=f"{split} (n={len(lengths.prompt)})")
        if split != "all" and lengths.summary:
            right.hist(lengths.summary, bins=60, histtype="step", label=f"{split} (n={len(lengths.summary)})")
    for max_length in report["max_lengths"]:
        left.axvline(max_length, color="gray", linestyle="--", linewidth=1)
        left.text(max_length, left.get_ylim()[1] * 0.95, str(max_length), rotation=90, va="top", fontsize=8)
    right.axvline(report["max_target_length"], color="red", linestyle="--", linewidth=1, label="max target")
    left.set(title=f"{report['model']}: prompt / input length", xlabel="tokens", ylabel="rows")
    right.set(title="summary length", xlabel="tokens", ylabel="summaries")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)


def parse_max_lengths(text: str) -> list[int]:
    """`512,768,1024` -> [512, 768, 1024]; anything but positive integers is a ConfigError."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"--maxlen '{text}': expected comma-separated positive integers, e.g. 512,768,1024")
    return sorted(set(values))


def preset_tokenizer(preset: Preset, tokenizer_path: str | None):
    """(tokenizer, source) from --tokenizer, the tiny checkpoint, or the preset's hub id."""
    if tokenizer_path:
        if not Path(tokenizer_path).is_dir():
            raise ConfigError(f"--tokenizer {tokenizer_path}: not a folder with a saved tokenizer")
        source = tokenizer_path
    else:
        source = model_source(preset, way_out="--tokenizer PATH")
    try:
        return load_tokenizer(source), source
    except OSError as err:
        hint = " (gated: run `hf auth login` and accept the license)" if preset.gated else ""
        raise ConfigError(f"cannot load the tokenizer of '{preset.name}' from {source}{hint}: {err}. "
                          f"Offline? Pass --tokenizer PATH (make truncation: TOKENIZER=PATH) to a local tokenizer folder") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m competition.truncation",
                                     description="Truncation report: prompts cut per max length.")
    parser.add_argument("--model", required=True, help="preset name (either track)")
    parser.add_argument("--data", required=True, type=Path, help="folder with train.csv / dev.csv / test.csv")
    parser.add_argument("--maxlen", default="512,768,1024,2048", help="comma-separated max lengths")
    parser.add_argument("--out", default=Path("reports/truncation"), type=Path, help="reports folder")
    parser.add_argument("--tokenizer", help="local tokenizer folder to use instead of the preset's")
    parser.add_argument("--no-data-tokens", action="store_true",
                        help="do not add the #PersonN#/mask tags as tokens (the tracks add them by default)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    preset = get_preset(args.model)
    max_lengths = parse_max_lengths(args.maxlen)
    tokenizer, source = preset_tokenizer(preset, args.tokenizer)
    check_same_inputs(args.out / preset.name, args.data, source)  # before the measuring, which can take minutes
    result = truncation_report(tokenizer, preset, args.data, max_lengths, add_data_tokens=not args.no_data_tokens,
                               progress=not args.no_progress, tokenizer_source=source)
    out_dir = write_truncation_report(result, args.out / preset.name)
    for max_length, counts in result.report["splits"]["all"]["by_max_length"].items():
        print(f"max length {max_length}: {counts['cut_rows']}/{counts['rows']} prompts cut "
              f"({100 * counts['cut_fraction']:.2f}%), tokens over: mean {counts['tokens_cut_mean']:.1f}, "
              f"max {counts['tokens_cut_max']}")
    print(f"report: {out_dir / REPORT_MARKDOWN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
