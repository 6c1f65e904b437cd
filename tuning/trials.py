"""One trial: its run folder, its config record, pruning on dev scores, failures it survives, weights it keeps."""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import optuna
from optuna.trial import FrozenTrial, Trial

from competition.harness.runs import BEST_DIR
from tuning.study import best_trial

ResultT = TypeVar("ResultT")
REASON_MAX_CHARS = 500


def trial_run_dir(study_dir: Path, number: int) -> Path:
    """`<study dir>/trials/trial-NNNN` (trial numbers are unique in a study, so no two trials share a folder)."""
    return study_dir / "trials" / f"trial-{number:04d}"


def config_as_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a track config (dataclass or mapping)."""
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(data, default=str))


class TrialFailed(RuntimeError):
    """A trial failed in a way the study records and continues past (out of memory, NaN loss)."""


def failure_kind(err: BaseException) -> str | None:
    """`oom` or `nan_loss` for failures worth continuing past; None for anything else."""
    text = f"{type(err).__name__}: {err}".lower()
    oom_type = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    if (oom_type is not None and isinstance(err, oom_type)) or "out of memory" in text:
        return "oom"
    if isinstance(err, FloatingPointError) or any(word in text for word in ("nan loss", "loss is nan", "non-finite")):
        return "nan_loss"
    return None


def free_accelerator_memory() -> None:
    """Release cached GPU memory after a failed trial so the next one starts clean."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class PruningReporter:
    """The `on_evaluate` callback: report each dev score to Optuna and stop the trial when the pruner says so."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.calls = 0
        self.track_steps: list[int] = []

    def __call__(self, step: int, dev_score: float) -> None:
        # Optuna's step is the evaluation's ordinal (0, 1, ...), not the track's epoch or global step, so trials
        # with different batch sizes still compare at the same point; the track's step is kept in user attrs.
        ordinal = self.calls
        self.calls += 1
        score = float(dev_score)
        if not math.isfinite(score):
            raise FloatingPointError(f"non-finite dev score {dev_score} at step {step} (NaN loss?)")
        self.trial.report(score, ordinal)
        self.trial.set_user_attr("evaluations", self.calls)
        self.track_steps.append(int(step))
        self.trial.set_user_attr("track_steps", self.track_steps)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_step", ordinal)
            raise optuna.TrialPruned(f"pruned at evaluation {ordinal} (track step {step}) with dev score {score:.4f}")


def record_failure(trial: Trial, kind: str, err: BaseException) -> str:
    """Store why a trial failed in its user attributes; return the reason."""
    reason = f"{type(err).__name__}: {err}".strip()[:REASON_MAX_CHARS]
    trial.set_user_attr("failure_kind", kind)
    trial.set_user_attr("failure_reason", reason)
    return reason


def run_guarded(trial: Trial, work: Callable[[], ResultT]) -> ResultT:
    """Run a trial's work; record why it failed. OOM/NaN become TrialFailed (the study goes on), other errors
    and Ctrl-C propagate (the study stops), pruning passes through."""
    try:
        return work()
    except optuna.TrialPruned:
        raise
    except KeyboardInterrupt as err:
        record_failure(trial, "interrupted", err)
        raise
    except Exception as err:
        kind = failure_kind(err)
        reason = record_failure(trial, kind or "error", err)
        free_accelerator_memory()
        if kind is None:
            raise
        raise TrialFailed(reason) from err


def remove_checkpoints(run_dir: Path) -> None:
    """Delete a trial's model weights (best/ and checkpoint-*), keeping its config, run.json, predictions, report."""
    if not run_dir.is_dir():
        return
    for child in run_dir.iterdir():
        if child.is_dir() and (child.name in (BEST_DIR, "merged") or child.name.startswith("checkpoint")):
            shutil.rmtree(child, ignore_errors=True)


class CheckpointJanitor:
    """After each trial, keep model weights only for this worker's best trial so far (saves disk on long studies)."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        self.kept: int | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        best = best_trial(study)
        if best is not None and best.number == trial.number:
            if self.kept is not None:
                remove_checkpoints(trial_run_dir(self.study_dir, self.kept))
            self.kept = trial.number
        else:
            remove_checkpoints(trial_run_dir(self.study_dir, trial.number))
