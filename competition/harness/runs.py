"""Run folders and their provenance: seed, resolved config, git revision, data hashes, library versions; and what
a run measures of itself (stage seconds, peak GPU memory, real training tokens/s), recorded in `run.json`.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from competition.harness.config import CONFIG_FILE, config_hash, config_to_dict, save_yaml
from competition.rules.data import Splits, file_sha256
from competition.rules.errors import warn
from competition.rules.files import write_text_atomic
from competition.rules.predictions import PredictionMeta, fill_in_block, fill_in_counts, fill_in_note
from competition.rules.submission import write_submission

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUN_INFO_FILE = "run.json"
BEST_DIR = "best"  # a run folder's best checkpoint, in both tracks
TRAIN_RESULT_FILE = "train_result.json"
RANDOM_CHECKPOINT_FILE = "random_checkpoint.json"  # written by competition.build_checkpoint: random weights
RUN_SETUP_FILES = frozenset({CONFIG_FILE, RUN_INFO_FILE})  # what open_run writes: nothing yet to keep
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


def random_weights_build(config: Any) -> dict[str, Any] | None:
    """The `random_checkpoint.json` of the config's `model_path` (a `make checkpoint` build: random weights, never
    to submit), or None for a real model."""
    model_path = getattr(config, "model_path", None)
    marker = Path(model_path).expanduser() / RANDOM_CHECKPOINT_FILE if model_path else None
    if marker is None or not marker.is_file():
        return None
    try:
        return {"random_weights": True, **json.loads(marker.read_text(encoding="utf-8"))}
    except (OSError, json.JSONDecodeError):
        return {"random_weights": True}


def random_weights_note(config: Any) -> str | None:
    """Why a run of a random-weight build never submits (for the run's report and stderr), or None."""
    if random_weights_build(config) is None:
        return None
    return (f"model_path {config.model_path} holds random weights ({RANDOM_CHECKPOINT_FILE}: a `make checkpoint` "
            f"build for timing and memory, not quality): this run is never submitted nor ensembled")


def open_run(out_dir: Path | str, track: str, config: Any, data_files: Iterable[Path | str],
             run_dir: Path | str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """The run folder, started: `run_dir` when resuming, else a new `<out_dir>/<track>-<preset>-<stamp>`, with its
    `config.yaml` and `run.json` (rank 0 writes them, with `extra`; a resumed run keeps its own). Every rank gets the
    same folder."""
    from competition.harness.distributed import broadcast_from_main, is_main_process

    run_dir = Path(run_dir) if run_dir is not None else broadcast_from_main(
        lambda: new_run_dir(out_dir, track, config.preset))
    if is_main_process():
        random = random_weights_build(config)
        marks = {"random_weights": True, "random_checkpoint": random} if random else {}
        start_run(run_dir, config, data_files, track, {**(extra or {}), **marks})
    return run_dir


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; `resume` is the command that continues it (None when its folder was removed)."""

    def __init__(self, resume: str | None) -> None:
        super().__init__(resume)
        self.resume = resume


def holds_only_setup(run_dir: Path | str) -> bool:
    """True when the run folder holds nothing but its config.yaml and run.json (and empty folders), and run.json
    records no out-of-memory fallbacks (where a run ran out of memory is worth keeping)."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_INFO_FILE).is_file() and "oom_fallbacks" in load_run_info(run_dir):
        return False
    return all(path.is_dir() or path.name in RUN_SETUP_FILES for path in run_dir.rglob("*"))


@contextmanager
def guard_run(run_dir: Path | str, track: str, resumed: bool) -> Iterator[None]:
    """The body of a run after `open_run`: a new run that fails before it wrote anything but its config.yaml and
    run.json (bad value, unreachable hub, unreadable file) leaves no folder behind; Ctrl-C becomes `RunInterrupted`
    naming `make <track> RESUME=<run_dir>` when the folder stays. A resumed run's folder is never removed."""
    from competition.harness.distributed import is_main_process

    run_dir = Path(run_dir)
    try:
        yield
    except BaseException as err:
        if not resumed and is_main_process() and run_dir.is_dir() and holds_only_setup(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            log.info("%s: removed (the run stopped before it had anything to keep)", run_dir)
        if isinstance(err, KeyboardInterrupt) and not isinstance(err, RunInterrupted):
            raise RunInterrupted(f"make {track} RESUME={run_dir}" if run_dir.is_dir() else None) from None
        raise


def submission_blocked(fill_ins: Mapping[str, Mapping[str, Any]], config: Any) -> str | None:
    """The submission gate: why a run must not submit (fill-ins over `config.max_fill_in_share`, unless
    `config.submit_despite_fill_ins`), or None."""
    return fill_in_block(fill_ins, config.max_fill_in_share, config.submit_despite_fill_ins)


def submit_once(run_dir: Path | str, fnames: Sequence[str], summaries: Sequence[str], test_path: Path | str,
                submissions_dir: Path | str, dev_score: float | None, config_hash: str, label: str | None = None,
                source_runs: Sequence[str] | None = None) -> Path:
    """The run's submission: written once; a finished run that is resumed gets back the one it already wrote.

    `label` (default: the run folder's name) names the file; `source_runs` (default: the run folder) go to the ledger.
    """
    run_dir = Path(run_dir)
    earlier = load_run_info(run_dir).get("submission") if (run_dir / RUN_INFO_FILE).is_file() else None
    if earlier:
        print(f"{run_dir}: already submitted as {earlier}; not submitting again")
        return Path(earlier)
    return write_submission(fnames, summaries, test_path, label=label or run_dir.name, out_dir=submissions_dir,
                            source_runs=list(source_runs or [str(run_dir)]), dev_score=dev_score,
                            config_hash=config_hash)


def report_and_submit(run_dir: Path, splits: Splits, predictions: dict[str, Sequence[str]],
                      submissions_dir: Path | str, config: Any, title: str,
                      analyzer: str | None = None) -> dict[str, Any]:
    """Both tracks' end of a run, once the `preds_<split>.csv` files are written: the fill-in note (printed), the
    dev ROUGE report under `run_dir/report` and, with test predictions that pass the submission gate, the run's
    one submission. Returns dev_score, fill_ins, submission_blocked and submission for run.json."""
    from competition.rules.report import write_rouge_report

    fill_ins = fill_in_counts({split: run_dir / f"preds_{split}.csv" for split in predictions})
    print(fill_in_note(fill_ins))
    dev = splits["dev"]
    random = random_weights_note(config)
    report = write_rouge_report(run_dir / "report", list(dev["fname"]), list(predictions["dev"]),
                                list(dev["references"]), topics=list(dev["topic"]) if "topic" in dev else None,
                                dialogues=list(dev["dialogue"]), title=title,
                                notes=[fill_in_note(fill_ins), *([random] if random else [])],
                                **({"analyzer": analyzer} if analyzer else {}))
    blocked = submission_blocked(fill_ins, config)
    if random:  # never submitted, whatever submit_despite_fill_ins says
        warn(f"{random}; NOT SUBMITTING")
        blocked = random
    submission = None
    if "test" in predictions and blocked is None:
        submission = submit_once(run_dir, list(splits["test"]["fname"]), predictions["test"], splits.paths["test"],
                                 submissions_dir, report.final, config_hash(config))
    return {"dev_score": report.final, "fill_ins": fill_ins, "submission_blocked": blocked,
            "submission": str(submission) if submission else None, **({"random_weights": True} if random else {})}


def prediction_meta(config: Any, track: str, run_dir: Path | str, checkpoint: Path | str, split: str,
                    **more: Any) -> PredictionMeta:
    """The sidecar of a track run's predictions: its preset, track, config hash, checkpoint and run folder (and
    `random_weights: true` for a random-weight build, which the ensembler skips)."""
    if random_weights_build(config) is not None:
        more["extra"] = {**more.get("extra", {}), "random_weights": True}
    return PredictionMeta(split, str(run_dir), track, config.preset, config_hash(config), str(checkpoint), **more)


def update_run_info(run_dir: Path | str, results: dict[str, Any]) -> Path:
    """Add results to a run's `run.json` as they come (figures recorded before a later stage fails stay)."""
    info = {**load_run_info(run_dir), **results}
    return write_text_atomic(Path(run_dir) / RUN_INFO_FILE, json.dumps(info, ensure_ascii=False, indent=2))


def finish_run(run_dir: Path | str, results: dict[str, Any]) -> Path:
    """Add a finished run's results (dev score, submission, ...) to its `run.json`."""
    return update_run_info(run_dir, {**results, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


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
    speed: dict[str, float | None] = field(default_factory=dict)  # training_speed_callback's figures

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


# ---------------------------------------------------------------- what a run measures of itself

def peak_gpu_memory_gib() -> dict[str, float] | None:
    """This process's peak CUDA memory in GiB: `allocated` by tensors, `reserved` by PyTorch's caching allocator
    (closer to what nvidia-smi shows); None without CUDA. Pages of bitsandbytes' paged optimizers live in unified
    memory and are not included."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return {"allocated": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "reserved": round(torch.cuda.max_memory_reserved() / 2**30, 3)}


class StageClock:
    """Wall seconds of a run's stages, in the order they ran, for `run.json`:

        clock = StageClock()
        with clock.stage("train"):
            ...
        finish_run(run_dir, {..., **clock.record()})   # stage_seconds, peak_gpu_memory_gib
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage `name` (added up when a stage runs twice)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)

    def record(self) -> dict[str, Any]:
        """`stage_seconds` and `peak_gpu_memory_gib` (None on the CPU) of the run so far."""
        return {"stage_seconds": dict(self.seconds), "peak_gpu_memory_gib": peak_gpu_memory_gib()}
