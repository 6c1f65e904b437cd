"""K-fold splitting of the training rows: pure functions over fnames and topics, no files, no models.

Rows are shuffled with a seeded generator, then ordered by topic (stable), and dealt to folds in turn: every
topic is spread over the folds as evenly as it can be, and fold sizes differ by at most one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np
import pandas as pd

from competition.rules.errors import ConfigError, DataError


def assign_folds(n_rows: int, k: int, seed: int, topics: Sequence[str] | None = None) -> list[int]:
    """The evaluation fold (0..k-1) of each row; stratified by `topics` when given.

    Same (n_rows, k, seed, topics) -> same assignment. Each row is in exactly one evaluation fold.
    """
    if k < 2:
        raise ConfigError(f"k={k}; K-fold needs at least 2 folds")
    if n_rows < k:
        raise ConfigError(f"k={k} folds but only {n_rows} training rows; expected at least one row per fold")
    if topics is not None and len(topics) != n_rows:
        raise ValueError(f"{len(topics)} topics for {n_rows} rows")
    shuffled = np.random.default_rng(seed).permutation(n_rows)
    if topics is not None:
        keys = np.asarray([str(t) for t in topics], dtype=object)[shuffled]
        shuffled = shuffled[np.argsort(keys, kind="stable")]  # grouped by topic, shuffled within each topic
    folds = np.empty(n_rows, dtype=int)
    folds[shuffled] = np.arange(n_rows) % k
    return folds.tolist()


def stratification_topics(frame: pd.DataFrame) -> list[str] | None:
    """The `topic` column when every row has one, else None (no stratification)."""
    if "topic" not in frame.columns or (frame["topic"].astype(str).str.strip() == "").any():
        return None
    return list(frame["topic"].astype(str))


def pool_rows(train: pd.DataFrame, dev: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows to fold: train, or train then dev (`include_dev`); both need the same columns and unique fnames."""
    if dev is None:
        return train.reset_index(drop=True)
    if list(train.columns) != list(dev.columns):
        raise DataError(f"include_dev: train columns {list(train.columns)} differ from dev columns "
                        f"{list(dev.columns)}; expected the same columns to fold them together")
    shared = sorted(set(train["fname"]) & set(dev["fname"]))
    if shared:
        raise DataError(f"include_dev: {len(shared)} fnames are in both train and dev, e.g. {shared[:3]}")
    return pd.concat([train, dev], ignore_index=True)


def fold_split(frame: pd.DataFrame, folds: Sequence[int], fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, evaluation rows) of one fold: the evaluation rows are those assigned to `fold`."""
    held_out = np.asarray(folds) == fold
    return frame[~held_out].reset_index(drop=True), frame[held_out].reset_index(drop=True)


def assignment_hash(fnames: Sequence[str], folds: Sequence[int]) -> str:
    """Short hash of which fname is in which fold (recorded in run.json; a resumed run must match it)."""
    payload = json.dumps([[str(f), int(k)] for f, k in zip(fnames, folds)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
