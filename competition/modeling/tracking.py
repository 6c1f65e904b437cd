"""Following a run in TensorBoard, Weights & Biases or MLflow (`report_to`, the Trainer's names), the same way in
both tracks, K-fold folds and tuning trials:

    args = TrainingArguments(..., **tracking_arguments(config.report_to, run_dir))  # run name = the run folder's
    with tracked_training(trainer, config, run_dir):  # the tool's run opened with the resolved config
        trainer.train()                               # the Trainer logs loss, learning rate, eval/score, eval/rouge*
    log_run_summary(config, run_dir, run_summary(...), step)  # fill-in share, stage seconds, real tokens/s

TensorBoard writes under `<run>/tensorboard/`; W&B and MLflow runs keep their id in `<run>/tracking.json`, so the
end-of-run summary and a resumed run join the same run. Only rank 0 talks to the tool.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from competition.harness.distributed import is_main_process
from competition.rules.errors import ConfigError
from competition.rules.files import write_text_atomic

TENSORBOARD_DIR = "tensorboard"  # TensorBoard event files of a run: `tensorboard --logdir runs`
TRACKING_FILE = "tracking.json"  # the W&B / MLflow run id of a run folder
TRIALS_DIR = "trials"  # a tuning study's trial folders: `<study>/trials/trial-NNNN`
DEV_SCORE_KEY = "score"  # dev competition score at each evaluation; the Trainer logs `eval_score` (eval/score)
# what each setting needs installed, and how to get it
INSTALL_HINTS = {"tensorboard": "pip install tensorboard",
                 "wandb": "pip install wandb, then `wandb login` (or WANDB_MODE=offline to log without an account)",
                 "mlflow": "pip install mlflow; MLFLOW_TRACKING_URI names the store (e.g. sqlite:///mlflow.db)"}


def require_reporter(report_to: str) -> None:
    """ConfigError naming what to install when `report_to`'s package is missing (`none` needs nothing)."""
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        raise ConfigError(f"report_to={report_to} needs the {report_to} package: {INSTALL_HINTS[report_to]}")


def run_name(run_dir: Path | str) -> str:
    """The name a tool shows for a run: the run folder's, `<study>-trial-NNNN` for a tuning trial."""
    run_dir = Path(run_dir)
    if run_dir.parent.name == TRIALS_DIR:
        return f"{run_dir.parent.parent.name}-{run_dir.name}"
    return run_dir.name


def tracking_arguments(report_to: str, run_dir: Path | str) -> dict[str, Any]:
    """TrainingArguments' `report_to` and `run_name` (the run folder's); a missing package raises ConfigError."""
    require_reporter(report_to)
    return {"report_to": report_to, "run_name": run_name(run_dir)}


def rouge_metrics(result: Any, prefix: str = "") -> dict[str, float]:
    """A RougeResult as logged metrics, x100: `<prefix>score` (the competition score) and its ROUGE-1/2/L."""
    return {f"{prefix}{DEV_SCORE_KEY}": float(result.final), f"{prefix}rouge1": float(result.rouge1) * 100,
            f"{prefix}rouge2": float(result.rouge2) * 100, f"{prefix}rougeL": float(result.rougeL) * 100}


def flat_config(config: Any) -> dict[str, Any]:
    """The resolved config as one level of scalars (lists and None as text), as the tools' params want them."""
    data = asdict(config) if is_dataclass(config) else dict(config)
    return {key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value, ensure_ascii=False)
            for key, value in data.items()}


def run_summary(results: Mapping[str, Any], speed: Mapping[str, Any], stage_seconds: Mapping[str, float]
                ) -> dict[str, float]:
    """The end-of-run figures: full-dev score, fill-in share per split, real tokens/s, seconds per stage."""
    summary: dict[str, float] = {}
    if results.get("dev_score") is not None:
        summary["dev_score"] = float(results["dev_score"])
    for split, counts in (results.get("fill_ins") or {}).items():
        summary[f"fill_in_share_{split}"] = float(counts["share"])
    for key in ("real_tokens_per_s", "train_step_seconds"):
        if speed.get(key) is not None:
            summary[key] = float(speed[key])
    summary.update({f"stage_seconds/{stage}": float(seconds) for stage, seconds in stage_seconds.items()})
    summary["stage_seconds/total"] = float(sum(stage_seconds.values()))
    return summary


@contextmanager
def tracked_training(trainer, config: Any, run_dir: Path | str) -> Iterator[None]:
    """Around `trainer.train()`: TensorBoard pointed at `<run>/tensorboard/`, and the tool's run opened (named after
    the run folder, with the resolved config) before the Trainer's own callback would open an unnamed one, then
    closed, so each K-fold fold and tuning trial is a run of its own."""
    run_dir = Path(run_dir)
    report_to = config.report_to
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "TensorBoardCallback":
            callback.logging_dir = str(run_dir / TENSORBOARD_DIR)
    if report_to == "none" or not is_main_process():
        yield
        return
    _open_run(report_to, run_dir, config)
    try:
        yield
    finally:
        _close_run(report_to)


def log_run_summary(config: Any, run_dir: Path | str, summary: Mapping[str, float], step: int) -> None:
    """Rank 0: the end-of-run figures into the run's tool, under `final/` at training step `step`."""
    report_to = config.report_to
    if report_to == "none" or not is_main_process():
        return
    values = {f"final/{key}": value for key, value in summary.items() if math.isfinite(value)}
    run_dir = Path(run_dir)
    if report_to == "tensorboard":
        with _tensorboard_writer(run_dir) as writer:
            for key, value in values.items():
                writer.add_scalar(key, value, step)
        return
    _open_run(report_to, run_dir, config)
    try:
        if report_to == "wandb":
            import wandb

            wandb.log({**values, "train/global_step": step})
            wandb.run.summary.update(values)
        else:
            import mlflow

            mlflow.log_metrics({key.replace("/", "."): value for key, value in values.items()}, step=step)
    finally:
        _close_run(report_to)


@contextmanager
def _tensorboard_writer(run_dir: Path) -> Iterator[Any]:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))
    try:
        yield writer
    finally:
        writer.close()


def _stored_ids(run_dir: Path) -> dict[str, str]:
    path = run_dir / TRACKING_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _store_id(run_dir: Path, report_to: str, run_id: str) -> None:
    ids = _stored_ids(run_dir)
    if ids.get(report_to) != run_id:
        write_text_atomic(run_dir / TRACKING_FILE, json.dumps({**ids, report_to: run_id}, indent=2))


def _open_run(report_to: str, run_dir: Path, config: Any) -> None:
    """Open (or rejoin, by the id in tracking.json) the tool's run of `run_dir`, logging the resolved config
    (W&B, MLflow: as `config.<key>`, apart from the TrainingArguments the Trainer logs there under the same names)."""
    params, name, known = flat_config(config), run_name(run_dir), _stored_ids(run_dir).get(report_to)
    if report_to == "tensorboard":
        with _tensorboard_writer(run_dir) as writer:
            writer.add_text("config", "\n".join(f"    {key}: {value}" for key, value in params.items()))
            _add_hparams(writer, params)
    elif report_to == "wandb":
        import wandb

        run = wandb.init(project=os.getenv("WANDB_PROJECT", "competition"), name=name, id=known, resume="allow",
                         config={f"config.{key}": value for key, value in params.items()}, dir=str(run_dir))
        _store_id(run_dir, report_to, run.id)
    elif report_to == "mlflow":
        import mlflow

        if mlflow.active_run() is not None:  # a run left open by an earlier fold or trial in this process
            mlflow.end_run()
        run = mlflow.start_run(run_id=known) if known else mlflow.start_run(run_name=name)
        if not known:
            mlflow.log_params({f"config.{key}": str(value)[:500] for key, value in params.items()})
        _store_id(run_dir, report_to, run.info.run_id)


def _close_run(report_to: str) -> None:
    if report_to == "wandb":
        import wandb

        wandb.finish()
    elif report_to == "mlflow":
        import mlflow

        mlflow.end_run()


def _add_hparams(writer, params: Mapping[str, Any]) -> None:
    """The config in TensorBoard's HParams tab, beside the dev score columns (written into the run's own folder)."""
    from torch.utils.tensorboard.summary import hparams

    metrics = {f"eval/{DEV_SCORE_KEY}": float("nan"), "final/dev_score": float("nan")}
    for summary in hparams(dict(params), metrics):
        writer.file_writer.add_summary(summary)
