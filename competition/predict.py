"""Predict with a finished run, without retraining: summaries for a new CSV, or for one pasted dialogue.

    python -m competition.predict --run RUN --input FILE.csv [--out OUT.csv] [KEY=VALUE ...]
    python -m competition.predict --run RUN --dialogue - < dialogue.txt     # `#Person1#: ...` lines; prints the summary

The run's own track (`run.json`), config (`config.yaml`) and checkpoint (the one its predictions name, else `best/`)
are used; KEY=VALUE may change generation settings only (the track's `generation_keys`), and the sidecar records
them. Empty summaries become the dialogue's first utterance, counted in the sidecar, as in the run's own predictions.
The CSV goes to OUT (default `RUN/predict/<input stem>.csv`) with a `.meta.json` sidecar; an existing OUT is refused,
never overwritten. A K-fold folder predicts through `python -m kfold.predict`, which shares this CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, TextIO

import pandas as pd

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import CONFIG_FILE, Layer, parse_overrides, yaml_layer
from competition.harness.logs import setup_logging
from competition.harness.memory import prefer_expandable_segments
from competition.harness.runs import BEST_DIR, RUN_INFO_FILE, load_run_info, prediction_meta
from competition.harness.tracks import Track, get_track
from competition.rules.data import read_csv_checked, read_split, reference_columns
from competition.rules.errors import ConfigError, DataError, warn
from competition.rules.predictions import PredictionMeta, fill_empty, metadata_path, write_predictions

PREDICT_DIR = "predict"  # default outputs: RUN/predict/<input stem>.csv
KFOLD_MARKER = "folds.csv"  # a K-fold folder (kfold.pipeline.FOLDS_FILE)


class Predictor(Protocol):
    """What the CLI drives: a finished run (or K-fold folder) that summarises dialogues and describes itself."""

    def predict(self, dialogues: Sequence[str], topics: Sequence[str] | None = None) -> tuple[list[str], int]:
        """Summaries in input order, empty ones filled in, and how many were filled in."""

    def metadata(self, source: str, fill_ins: int) -> PredictionMeta:
        """The sidecar of predictions made from `source`."""


@dataclass
class RunPredictor:
    """One finished track run: its track, its config with the generation overrides, the checkpoint it predicted with."""

    run_dir: Path
    track: Track
    config: Any
    checkpoint: Path
    overrides: dict[str, Any] = field(default_factory=dict)

    def predict(self, dialogues: Sequence[str], topics: Sequence[str] | None = None) -> tuple[list[str], int]:
        summaries = self.track.predict(self.checkpoint, list(dialogues), self.config)
        return fill_empty(summaries, dialogues)

    def metadata(self, source: str, fill_ins: int) -> PredictionMeta:
        return prediction_meta(self.config, self.track.name, self.run_dir, self.checkpoint, None, source=source,
                               fill_ins=fill_ins, extra={"generation_overrides": self.overrides})


def check_generation_overrides(track: Track, overrides: Mapping[str, Any], run_dir: Path) -> None:
    """Only generation settings may change on a finished run; anything else would not be the run that trained."""
    refused = sorted(set(overrides) - track.generation_keys)
    if refused:
        raise ConfigError(f"{run_dir}: {refused} not generation settings of the {track.name} track (the run is "
                          f"already trained; retrain to change them); allowed: {sorted(track.generation_keys)}")


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint the run predicted with (named by its test or dev predictions' sidecar), else `best/`."""
    name = BEST_DIR
    for split in ("test", "dev"):
        sidecar = metadata_path(run_dir / f"preds_{split}.csv")
        if sidecar.is_file():
            name = Path(str(json.loads(sidecar.read_text(encoding="utf-8")).get("checkpoint") or BEST_DIR)).name
            break
    checkpoint = run_dir / name
    if not checkpoint.is_dir():
        raise DataError(f"{run_dir}: no {name}/ checkpoint (training unfinished, or its weights were removed)")
    return checkpoint


def open_run(run_dir: Path | str, overrides: Mapping[str, Any] | None = None) -> RunPredictor:
    """A finished track run, ready to predict; DataError/ConfigError say what is missing or not allowed."""
    run_dir = Path(run_dir)
    if (run_dir / KFOLD_MARKER).is_file():
        raise ConfigError(f"{run_dir}: a K-fold folder; predict with `python -m kfold.predict --run {run_dir}` "
                          f"(make predict picks it)")
    for name in (RUN_INFO_FILE, CONFIG_FILE):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir}: no {name}; expected a run folder written by `make baseline`/`make llm`")
    track_name = load_run_info(run_dir).get("track")
    if not track_name:
        raise DataError(f"{run_dir / RUN_INFO_FILE}: no 'track'; expected a run folder written by a track")
    track = get_track(str(track_name))
    overrides = dict(overrides or {})
    check_generation_overrides(track, overrides, run_dir)
    layers = [yaml_layer(run_dir / CONFIG_FILE)] + ([Layer("command line", overrides)] if overrides else [])
    return RunPredictor(run_dir, track, track.settings.resolve(layers), run_checkpoint(run_dir), overrides)


def read_input(path: Path | str) -> pd.DataFrame:
    """A CSV with `fname,dialogue` (and optionally topic and references, e.g. dev.csv), validated like the splits."""
    kind = "dev" if reference_columns(read_csv_checked(path).columns) else "test"
    return read_split(path, kind)


def read_dialogue(stream: TextIO, name: str = "standard input") -> str:
    """One dialogue as in the data: `#Person1#: ...` lines (CRLF line ends and blank edges removed)."""
    text = stream.read().replace("\r\n", "\n").strip()
    if not text:
        raise DataError(f"{name}: no dialogue; expected lines such as `#Person1#: 안녕하세요.`")
    return text


def default_out(run_dir: Path, input_path: Path) -> Path:
    """`RUN/predict/<input stem>.csv`."""
    return run_dir / PREDICT_DIR / f"{input_path.stem}.csv"


def predict_file(predictor: Predictor, run_dir: Path, input_path: Path, out: Path | None = None) -> Path:
    """Predict every row of `input_path` into `out` (refused when it exists) with its sidecar; returns `out`."""
    out = out or default_out(run_dir, input_path)
    if out.exists() or metadata_path(out).exists():
        raise DataError(f"{out}: already exists; predictions are never overwritten (give --out NEW.csv, or OUT=, "
                        f"or remove it)")
    frame = read_input(input_path)
    topics = list(frame["topic"]) if "topic" in frame.columns else None
    summaries, filled = predictor.predict(list(frame["dialogue"]), topics)
    if filled:
        warn(f"{input_path}: {filled} of {len(frame)} empty summaries replaced by the dialogue's first utterance")
    write_predictions(out, list(frame["fname"]), summaries, predictor.metadata(str(input_path), filled),
                      overwrite=False)
    return out


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (or a K-fold folder)")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", type=Path, help="CSV with fname,dialogue[,topic]")
    given.add_argument("--dialogue", type=argparse.FileType("r", encoding="utf-8"), metavar="FILE",
                       help="one dialogue (`-`: standard input); its summary is printed")
    parser.add_argument("--out", type=Path, help="predictions CSV (default: RUN/predict/<input stem>.csv)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="generation settings, e.g. num_beams=6")
    return parser


def cli(argv: list[str] | None, prog: str, open_predictor: Callable[[Path, dict[str, Any]], Predictor]) -> int:
    """The predict CLI over `open_predictor(run_dir, overrides)` (a track run here, a K-fold folder in kfold)."""
    args = build_parser(prog).parse_args(argv)
    setup_logging()
    prefer_expandable_segments()
    predictor = open_predictor(args.run, parse_overrides(args.overrides))
    if args.dialogue is not None:
        dialogue = read_dialogue(args.dialogue, "standard input" if args.dialogue is sys.stdin else args.dialogue.name)
        summaries, _ = predictor.predict([dialogue])
        print(summaries[0])
        return 0
    out = predict_file(predictor, args.run, args.input, args.out)
    print(f"predictions: {out}")
    return 0


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    return cli(argv, "python -m competition.predict", open_run)


if __name__ == "__main__":
    sys.exit(main())
