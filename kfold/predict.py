"""Predict with a finished K-fold folder: every fold's best checkpoint summarises the rows, and the folds are combined
as the folder's ensemble combined them (its method, fitted parameters and post-processing rules, read from
`ensemble/preds_test.meta.json` and `ensemble/config.yaml`).

    python -m kfold.predict --run runs/kfold/<track>-<preset>-k<K> --input FILE.csv [--out OUT.csv] [KEY=VALUE ...]
    python -m kfold.predict --run KFOLD_DIR --dialogue - < dialogue.txt

The same CLI as `python -m competition.predict` (KEY=VALUE: generation settings of the folds' track only).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import CONFIG_FILE, config_hash, resolve_config, yaml_layer
from competition.harness.runs import RUN_INFO_FILE
from competition.predict import RunPredictor, cli, open_run
from competition.rules.data import where
from competition.rules.errors import DataError
from competition.rules.predictions import PredictionMeta, read_predictions_with_metadata
from kfold.pipeline import ENSEMBLE_DIR, FOLDS_FILE


@dataclass
class KFoldPredictor:
    """The K fold runs (in the ensemble's system order) and the fitted ensemble that combines them."""

    kfold_dir: Path
    folds: list[RunPredictor]
    ensemble_config: Any
    method: str
    params: dict[str, Any]
    fill_ins_per_fold: dict[str, int] = field(default_factory=dict)  # of the latest predict

    def predict(self, dialogues: Sequence[str], topics: Sequence[str] | None = None) -> tuple[list[str], int]:
        from ensemble.pipeline import apply_fitted

        per_fold = [fold.predict(dialogues, topics) for fold in self.folds]  # each fold's empty ones filled in
        summaries = apply_fitted(self.ensemble_config, self.method, self.params, [s for s, _ in per_fold],
                                 dialogues, topics)
        self.fill_ins_per_fold = {fold.run_dir.name: filled for fold, (_, filled) in zip(self.folds, per_fold)}
        return summaries, sum(self.fill_ins_per_fold.values())

    def metadata(self, source: str, fill_ins: int) -> PredictionMeta:
        first = self.folds[0]
        return PredictionMeta(None, str(self.kfold_dir), first.track.name, first.config.preset,
                              config_hash(first.config), source=source, fill_ins=fill_ins,
                              extra={"method": self.method, "params": self.params,
                                     "rules": list(self.ensemble_config.rules),
                                     "folds": [str(f.run_dir) for f in self.folds],
                                     "checkpoints": [str(f.checkpoint) for f in self.folds],
                                     "fill_ins_per_fold": self.fill_ins_per_fold,
                                     "generation_overrides": first.overrides})


def open_kfold(kfold_dir: Path | str, overrides: dict[str, Any] | None = None) -> KFoldPredictor:
    """A finished K-fold folder: its fold runs and its fitted ensemble; DataError says what is missing."""
    from ensemble.pipeline import EnsembleConfig

    kfold_dir = Path(kfold_dir)
    if not (kfold_dir / FOLDS_FILE).is_file():  # an ordinary run: the track's own predict
        return open_run(kfold_dir, overrides)  # type: ignore[return-value]
    ensemble_dir = kfold_dir / ENSEMBLE_DIR
    sidecar = ensemble_dir / "preds_test.meta.json"
    if not (kfold_dir / RUN_INFO_FILE).is_file() or not sidecar.is_file():
        raise DataError(f"{kfold_dir}: unfinished K-fold folder (no {RUN_INFO_FILE} or {sidecar.name} in "
                        f"{ENSEMBLE_DIR}/); rerun its `make kfold` command to finish it")
    _, fitted = read_predictions_with_metadata(ensemble_dir / "preds_test.csv")
    systems = fitted.get("systems") or []
    folds = [open_run(kfold_dir / name, overrides) for name in systems]
    if not folds:
        raise DataError(f"{where(sidecar)}: no 'systems'; expected the fold runs the ensemble combined")
    config = resolve_config(EnsembleConfig, yaml_layer(ensemble_dir / CONFIG_FILE))
    return KFoldPredictor(kfold_dir, folds, config, str(fitted["method"]), dict(fitted.get("params") or {}))


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    return cli(argv, "python -m kfold.predict", open_kfold)


if __name__ == "__main__":
    sys.exit(main())
