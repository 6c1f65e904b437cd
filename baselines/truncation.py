"""Encoder truncation report: how many dialogues exceed encoder_max_len with this tokenizer, and by how much.

`truncation_stats` is pure (token counts in, numbers out) so a general report over presets can reuse it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from competition.files import write_text_atomic

REPORT_JSON = "truncation.json"
REPORT_MARKDOWN = "truncation.md"


def truncation_stats(token_counts: Sequence[int], budget: int) -> dict[str, float | int]:
    """Counts and overflow sizes of texts longer than `budget` tokens (the budget for the text itself)."""
    counts = np.asarray(token_counts, dtype=np.int64)
    over = counts[counts > budget] - budget
    n = len(counts)
    return {
        "rows": n,
        "budget_tokens": budget,
        "truncated_rows": int(len(over)),
        "truncated_percent": round(100.0 * len(over) / n, 2) if n else 0.0,
        "tokens_p50": int(np.percentile(counts, 50)) if n else 0,
        "tokens_p95": int(np.percentile(counts, 95)) if n else 0,
        "tokens_max": int(counts.max()) if n else 0,
        "overflow_mean": round(float(over.mean()), 1) if len(over) else 0.0,
        "overflow_max": int(over.max()) if len(over) else 0,
        "tokens_cut_percent": round(100.0 * float(over.sum()) / float(counts.sum()), 2) if counts.sum() else 0.0,
    }


def write_truncation_report(out_dir: Path | str, counts_by_split: Mapping[str, Sequence[int]], budget: int,
                            title: str) -> dict[str, dict]:
    """Write truncation.json and truncation.md (one row per split) into `out_dir`; return the stats."""
    stats = {split: truncation_stats(counts, budget) for split, counts in counts_by_split.items()}
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / REPORT_JSON, json.dumps({"title": title, "splits": stats}, indent=2) + "\n")
    columns = ["rows", "truncated_rows", "truncated_percent", "tokens_p50", "tokens_p95", "tokens_max",
               "overflow_mean", "overflow_max", "tokens_cut_percent"]
    lines = [f"# {title}", "", f"Dialogue budget: {budget} tokens (encoder_max_len minus the special tokens).", "",
             "| split | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {split} | " + " | ".join(str(s[c]) for c in columns) + " |" for split, s in stats.items()]
    write_text_atomic(out_dir / REPORT_MARKDOWN, "\n".join(lines) + "\n")
    return stats
