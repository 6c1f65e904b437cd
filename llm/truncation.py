"""`python -m llm.truncation --model M --data D --maxlen 512,768,1024,2048 --out reports/truncation`

How many prompts each max length would cut, over train/dev/test in D, for any preset of either track
(logic: competition.truncation). Writes `<out>/<model>/truncation.{md,json}` and `lengths.png`.
The tokenizer is the preset's (tiny presets: built locally; others: the hub) or `--tokenizer PATH`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition.cli import ConfigError, exit_on_bad_input
from competition import modeling
from competition.presets import Preset, get_preset
from competition.truncation import REPORT_MARKDOWN, truncation_report, write_truncation_report


def parse_max_lengths(text: str) -> list[int]:
    """`512,768,1024` -> [512, 768, 1024]; anything but positive integers is a ConfigError."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"--maxlen '{text}': expected comma-separated positive integers, e.g. 512,768,1024")
    return sorted(set(values))


def load_tokenizer(preset: Preset, tokenizer_path: str | None):
    """(tokenizer, source) from --tokenizer, the tiny checkpoint, or the preset's hub id."""
    from competition.tiny import ensure_tiny_checkpoint

    if tokenizer_path:
        if not Path(tokenizer_path).is_dir():
            raise ConfigError(f"--tokenizer {tokenizer_path}: not a folder with a saved tokenizer")
        source = tokenizer_path
    else:
        source = str(ensure_tiny_checkpoint(preset)) if preset.tiny else preset.hub_id
    try:
        return modeling.load_tokenizer(source), source
    except OSError as err:
        hint = " (gated: run `hf auth login` and accept the license)" if preset.gated else ""
        raise ConfigError(f"cannot load the tokenizer of '{preset.name}' from {source}{hint}: {err}. "
                          f"Offline? Pass --tokenizer PATH to a local tokenizer folder") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Truncation report: prompts cut per max length.")
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
    preset = get_preset(args.model)
    max_lengths = parse_max_lengths(args.maxlen)
    tokenizer, source = load_tokenizer(preset, args.tokenizer)
    result = truncation_report(tokenizer, preset, args.data, max_lengths, add_data_tokens=not args.no_data_tokens,
                               progress=not args.no_progress, tokenizer_source=source)
    name = preset.name + (f"-{Path(args.tokenizer).name}" if args.tokenizer else "")
    out_dir = write_truncation_report(result, args.out / name)
    for max_length, counts in result.report["splits"]["all"]["by_max_length"].items():
        print(f"max length {max_length}: {counts['cut_rows']}/{counts['rows']} prompts cut "
              f"({100 * counts['cut_fraction']:.2f}%), tokens over: mean {counts['tokens_cut_mean']:.1f}, "
              f"max {counts['tokens_cut_max']}")
    print(f"report: {out_dir / REPORT_MARKDOWN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
