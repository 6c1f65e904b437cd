"""What a study leaves in its folder: study.json, search_space.yaml, trials.csv + trials.md, history.png,
importance.png, best_config.yaml (the best trial's resolved config) and summary.md + summary.json."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from competition.harness.runs import git_revision, library_versions
from competition.rules.data import file_sha256, split_paths
from competition.rules.files import atomic_path, write_text_atomic
from tuning.search_space import SearchSpace
from tuning.study import TuneSettings, best_trial, finished_trials, safe_url, worker_id

RELIABLE_IMPORTANCE_TRIALS = 10  # fANOVA on fewer completed trials ranks parameters mostly by chance


def write_study_info(settings: TuneSettings, space: SearchSpace, seed: int) -> None:
    """study.json and the resolved search_space.yaml: what this worker searched, with which seeds and data."""
    data_files = split_paths(settings.data_dir)
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "study": settings.name,
        "track": settings.track,
        "preset": settings.preset,
        "storage": safe_url(settings.storage_url),
        "n_trials": settings.n_trials,
        "seed": settings.seed,
        "sampler": {"name": "TPESampler", "seed": seed},
        "pruner": {"name": settings.pruner, "startup_trials": settings.pruner_startup_trials},
        "demo": settings.demo,
        "config_path": str(settings.config_path) if settings.config_path else None,
        "overrides": settings.overrides,
        "search_space": space.source,
        "data": {str(p): file_sha256(p) for p in data_files.values()},
        "git_revision": git_revision(),
        "versions": library_versions(),
        "worker": worker_id(),
    }
    write_text_atomic(settings.study_dir / "study.json", json.dumps(info, ensure_ascii=False, indent=2))
    header = f"# resolved search space of study '{settings.name}' (from {space.source}, demo={settings.demo})\n"
    write_text_atomic(settings.study_dir / "search_space.yaml",
                      header + yaml.safe_dump(space.to_dict(), allow_unicode=True, sort_keys=False))


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, score, params, run dir, evaluations, failure reason, worker, duration."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        ended = t.datetime_complete and t.datetime_start
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if ended else None
        last_step = t.last_step
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "score": t.value if t.state == TrialState.COMPLETE else None,
            "last_intermediate": t.intermediate_values.get(last_step) if last_step is not None else None,
            **{f"param_{k}": v for k, v in t.params.items()},
            "evaluations": t.user_attrs.get("evaluations", len(t.intermediate_values)),
            "pruned_at_step": t.user_attrs.get("pruned_at_step"),
            "failure_kind": t.user_attrs.get("failure_kind") or ("stale" if t.state == TrialState.FAIL else None),
            "failure_reason": t.user_attrs.get("failure_reason") or t.system_attrs.get("fail_reason"),
            "run_dir": t.user_attrs.get("run_dir"),
            "worker": t.user_attrs.get("worker"),
            "duration_s": round(duration, 1) if duration is not None else None,
        })
    return rows


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_trials_table(study: optuna.Study, study_dir: Path) -> list[dict[str, Any]]:
    """trials.csv and trials.md."""
    import pandas as pd

    rows = trial_rows(study)
    with atomic_path(study_dir / "trials.csv") as temp:
        pd.DataFrame(rows).to_csv(temp, index=False)
    write_text_atomic(study_dir / "trials.md", f"# Trials of study '{study.study_name}'\n\n" + _markdown_table(rows))
    return rows


def plot_history(study: optuna.Study, path: Path) -> Path | None:
    """Dev score per trial (completed dots, pruned/failed at their last report) and the best-so-far line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.last_step is not None]
    if not done and not pruned:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if done:
        ax.scatter([t.number for t in done], [t.value for t in done], label="complete", color="tab:blue")
        best, line = -math.inf, []
        for t in done:
            best = max(best, t.value)
            line.append(best)
        ax.step([t.number for t in done], line, where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter([t.number for t in pruned], [t.intermediate_values[t.last_step] for t in pruned], marker="x",
                   color="gray", label="pruned (last report)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("dev score (ROUGE mean x100)")
    ax.set_title(f"Optimization history: {study.study_name}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_importance(study: optuna.Study, path: Path) -> tuple[Path | None, str]:
    """Parameter importance (fANOVA) bar chart; returns (path or None, a note: why it was skipped, or the caveat
    that few trials make it unreliable)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return None, f"parameter importance needs at least 2 completed trials, have {len(complete)}"
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as err:
        return None, f"parameter importance unavailable: {err}"
    if not importances:
        return None, "parameter importance unavailable: no parameter varied across completed trials"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caveat = (f"{len(complete)} completed trials: importance is unreliable below ~{RELIABLE_IMPORTANCE_TRIALS}"
              if len(complete) < RELIABLE_IMPORTANCE_TRIALS else "")
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5 + (0.3 if caveat else 0)))
    ax.barh(names, [importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance (fANOVA, normalized)")
    ax.set_title(f"Parameter importance: {study.study_name}" + (f"\n{caveat}" if caveat else ""),
                 color="tab:red" if caveat else "black")
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=110)
    plt.close(fig)
    return path, caveat


def train_command(settings: TuneSettings, config_path: Path) -> str:
    """The command that trains a config file (what the best config is for)."""
    return f"make {settings.track} MODEL={settings.preset} DATA={settings.data_dir} CONFIG={config_path}"


def write_best_config(best: FrozenTrial, settings: TuneSettings, path: Path, usage: str) -> Path:
    """The best trial's resolved track config as YAML, with the command that uses it."""
    header = (f"# best trial {best.number} of study '{settings.name}': dev score {best.value:.4f}\n"
              f"# run dir: {best.user_attrs.get('run_dir')}\n"
              f"# use it: {usage}\n")
    config = best.user_attrs["config"]
    return write_text_atomic(path, header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False))


def write_study_outputs(study: optuna.Study, settings: TuneSettings, usage: str | None = None) -> dict[str, Any]:
    """Trials table, plots, best config and summary (md + json); safe to call with zero finished trials.

    `usage` is the command line shown for the best config (default: train it with the track's make target).
    """
    study_dir = settings.study_dir
    usage = usage or train_command(settings, study_dir / "best_config.yaml")
    rows = write_trials_table(study, study_dir)
    history = plot_history(study, study_dir / "history.png")
    importance, importance_note = plot_importance(study, study_dir / "importance.png")
    best = best_trial(study)
    best_config = write_best_config(best, settings, study_dir / "best_config.yaml", usage) if best else None
    states = {s.name: sum(r["state"] == s.name for r in rows) for s in TrialState}
    summary = {
        "study": settings.name,
        "storage": safe_url(settings.storage_url),
        "n_trials_requested": settings.n_trials,
        "n_trials_counted": finished_trials(study),
        "states": {k: v for k, v in states.items() if v},
        "best": None if best is None else {"number": best.number, "score": best.value, "params": best.params,
                                           "run_dir": best.user_attrs.get("run_dir")},
        "best_config": str(best_config) if best_config else None,
        "usage": usage,
        "plots": {"history": str(history) if history else None, "importance": str(importance) if importance else None},
        "importance_note": importance_note,
    }
    write_text_atomic(study_dir / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2))
    write_text_atomic(study_dir / "summary.md", summary_markdown(summary, settings))
    return summary


def summary_markdown(summary: dict[str, Any], settings: TuneSettings) -> str:
    """Human-readable study summary."""
    lines = [f"# Tuning study '{summary['study']}'", "",
             f"- track: {settings.track}, preset: {settings.preset}, data: {settings.data_dir}",
             f"- storage: {summary['storage']}",
             f"- trials: {summary['n_trials_counted']} of {summary['n_trials_requested']} counted; states: "
             + ", ".join(f"{k} {v}" for k, v in summary["states"].items())]
    best = summary["best"]
    if best:
        lines += ["", f"## Best: trial {best['number']}, dev score {best['score']:.4f}", "",
                  *[f"- {k}: {v}" for k, v in best["params"].items()], "",
                  f"Best config: `{summary['best_config']}`; use it: `{summary['usage']}`"]
    else:
        lines += ["", "No completed trial yet."]
    lines += ["", "Trials: `trials.csv` / `trials.md`.", ""]
    if summary["plots"]["history"]:
        lines.append("![history](history.png)")
    if summary["importance_note"]:
        lines.append(f"Parameter importance: {summary['importance_note']}.")
    if summary["plots"]["importance"]:
        lines.append("![importance](importance.png)")
    return "\n".join(lines) + "\n"
