"""Rows of the bundled sample and tiny competition-format data folders cut from it."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from competition.rules.data import read_split
from helpers import SAMPLE_DIR


def sample_rows(split: str, n: int) -> pd.DataFrame:
    """First n rows of a bundled sample split."""
    return pd.read_csv(SAMPLE_DIR / f"{split}.csv", dtype=str, keep_default_na=False).head(n)


@functools.lru_cache(maxsize=None)
def sample_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bundled train and dev splits, read as the tracks read them."""
    return tuple(read_split(SAMPLE_DIR / f"{split}.csv", split) for split in ("train", "dev"))


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
