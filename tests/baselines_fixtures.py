"""Tiny competition-format data folders for the baselines tests, cut from the bundled sample."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


def sample_rows(split: str, n: int) -> pd.DataFrame:
    """First n rows of a bundled sample split."""
    return pd.read_csv(SAMPLE_DIR / f"{split}.csv", dtype=str, keep_default_na=False).head(n)


def write_data_dir(root: Path, train: pd.DataFrame, dev: pd.DataFrame, test: pd.DataFrame | None = None,
                   train_repeats: int = 1) -> Path:
    """Write train/dev(/test).csv; `train_repeats` repeats the train rows (renamed) to lengthen an epoch."""
    root.mkdir(parents=True, exist_ok=True)
    repeated = pd.concat([train] * train_repeats, ignore_index=True)
    repeated["fname"] = [f"train_{i}" for i in range(len(repeated))]
    repeated.to_csv(root / "train.csv", index=False)
    dev.to_csv(root / "dev.csv", index=False)
    if test is not None:
        test.to_csv(root / "test.csv", index=False)
    return root
