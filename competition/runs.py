"""Run folders and their provenance: seed, resolved config, git revision, data hashes, library versions."""

from __future__ import annotations

import json
import platform
import random
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from competition.config import CONFIG_FILE, config_hash, config_to_dict, save_yaml
from competition.data import file_sha256
from competition.files import write_text_atomic
from competition.submission import write_submission

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_INFO_FILE = "run.json"
TRAIN_RESULT_FILE = "train_result.json"
TRACKED_LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "optuna", "python-mecab-ko")


def new_run_dir(root: Path | str, track: str, preset: str) -> Path:
    """Create `root/<track>-<preset>-<YYYYmmdd-HHMMSS>` (suffixed if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{track}-{preset}-{stamp}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def git_revision() -> str:
    """Current commit, with `-dirty` when the tree has uncommitted changes; `unknown` outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that change results."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (when installed)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def save_run_info(run_dir: Path | str, config: Any, seed: int | None, data_files: Iterable[Path | str],
                  extra: dict[str, Any] | None = None) -> Path:
    """Write `run.json`: everything needed to trace and reproduce the run."""
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_revision": git_revision(),
        "seed": seed,
        "config_hash": config_hash(config),
        "config": config_to_dict(config),
        "data": {str(p): file_sha256(p) for p in data_files if Path(p).is_file()},
        "versions": library_versions(),
        **(extra or {}),
    }
    return write_text_atomic(Path(run_dir) / RUN_INFO_FILE, json.dumps(info, ensure_ascii=False, indent=2))


def load_run_info(run_dir: Path | str) -> dict[str, Any]:
    """Read a run's `run.json`."""
    return json.loads((Path(run_dir) / RUN_INFO_FILE).read_text(encoding="utf-8"))


def write_run_files(run_dir: Path | str, config: Any, data_files: Iterable[Path | str],
                    extra: dict[str, Any] | None = None) -> None:
    """A run folder's `config.yaml` (the resolved config) and `run.json` (provenance plus `extra`)."""
    save_yaml(config, Path(run_dir) / CONFIG_FILE)
    save_run_info(run_dir, config, getattr(config, "seed", None), data_files, extra)


def start_run(run_dir: Path | str, config: Any, data_files: Iterable[Path | str], track: str,
              extra: dict[str, Any] | None = None) -> None:
    """A new run's `config.yaml` and `run.json`; a resumed run (or a tuning trial's folder) keeps the ones it has."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / RUN_INFO_FILE).is_file():
        write_run_files(run_dir, config, data_files, {"track": track, **(extra or {})})


def submit_once(run_dir: Path | str, fnames: Sequence[str], summaries: Sequence[str], test_path: Path | str,
                submissions_dir: Path | str, dev_score: float | None, config_hash: str) -> Path:
    """The run's submission: written once; a finished run that is resumed gets back the one it already wrote."""
    run_dir = Path(run_dir)
    earlier = load_run_info(run_dir).get("submission") if (run_dir / RUN_INFO_FILE).is_file() else None
    if earlier:
        print(f"{run_dir}: already submitted as {earlier}; not submitting again")
        return Path(earlier)
    return write_submission(fnames, summaries, test_path, label=run_dir.name, out_dir=submissions_dir,
                            source_runs=[str(run_dir)], dev_score=dev_score, config_hash=config_hash)


def finish_run(run_dir: Path | str, results: dict[str, Any]) -> Path:
    """Add a finished run's results (dev score, submission, ...) to its `run.json`."""
    info = {**load_run_info(run_dir), **results, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return write_text_atomic(Path(run_dir) / RUN_INFO_FILE, json.dumps(info, ensure_ascii=False, indent=2))


@dataclass
class TrainResult:
    """What a track's training leaves: the best checkpoint folder and its dev score, plus the evaluation history.

    The score is the dev competition score (or -eval_loss when the LLM track selects by loss).
    """

    best_checkpoint: Path
    best_dev_score: float
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per dev evaluation
    global_step: int = 0
    resumed_from: str | None = None  # the checkpoint an interrupted run continued from
    cuts: dict[str, int] = field(default_factory=dict)  # rows whose dialogue or target was cut to fit

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the checkpoint as a string)."""
        return {**asdict(self), "best_checkpoint": str(self.best_checkpoint)}

    def save(self, run_dir: Path | str) -> Path:
        """Write `train_result.json` into the run folder."""
        return write_text_atomic(Path(run_dir) / TRAIN_RESULT_FILE, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, run_dir: Path | str) -> "TrainResult | None":
        """The saved result of a run whose training finished, or None."""
        path = Path(run_dir) / TRAIN_RESULT_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{**data, "best_checkpoint": Path(data["best_checkpoint"])})
