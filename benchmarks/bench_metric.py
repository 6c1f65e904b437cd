"""Benchmark: score 499 predictions x 3 references with mecab on one CPU core.

    .venv/bin/python benchmarks/bench_metric.py [--runs 5] [--target-s 2.0]

Data: the real dev set at ../shared/data/competition/dev.csv when present (prediction = first
utterance; references = the real summary plus two deterministic variants of it), otherwise the
bundled data/sample/dev.csv repeated to 499 rows. Each run starts cold (analyzer and token caches
cleared). Prints progress to stderr, then the median and one JSON line on stdout; exits 1 if the
median misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from competition.rules.data import read_gold  # noqa: E402
from competition.rules.metric import clear_caches, compute_rouge  # noqa: E402

SHARED_DEV = REPO.parent / "shared/data/competition/dev.csv"
SAMPLE_DEV = REPO / "data/sample/dev.csv"
N_SAMPLES = 499


def pin_to_one_core() -> str:
    """Restrict this process to a single CPU so the number means 'one core'."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"cpu {core}"
    return "not pinned (no sched_setaffinity)"


def reference_variants(summary: str) -> list[str]:
    """The real summary plus two deterministic paraphrase stand-ins (sentence order swapped, words dropped)."""
    sentences = [s for s in summary.split(". ") if s]
    reordered = ". ".join(reversed(sentences)) if len(sentences) > 1 else summary
    words = summary.split()
    shortened = " ".join(w for i, w in enumerate(words) if i % 4 != 3) or summary
    return [summary, reordered, shortened]


def load_benchmark_set() -> tuple[list[str], list[list[str]], str]:
    """499 (prediction, 3 references) pairs and a description of where they came from."""
    source = SHARED_DEV if SHARED_DEV.is_file() else SAMPLE_DEV
    if not source.is_file():
        sys.exit(f"error: neither {SHARED_DEV} nor {SAMPLE_DEV} exists; nothing to benchmark")
    gold = read_gold(source)
    rows = [gold.iloc[i % len(gold)] for i in range(N_SAMPLES)]
    predictions = [row["dialogue"].strip().split("\n")[0] for row in rows]
    references = [reference_variants(row["references"][0]) for row in rows]
    return predictions, references, f"{source} ({len(gold)} rows, used {N_SAMPLES})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--target-s", type=float, default=2.0)
    args = parser.parse_args()
    pinned = pin_to_one_core()
    predictions, references, source = load_benchmark_set()
    times, final = [], None
    for run in range(args.runs):
        clear_caches()  # cold: include analyzer start-up and every tokenization
        start = time.perf_counter()
        final = compute_rouge(predictions, references, analyzer="mecab").final
        times.append(time.perf_counter() - start)
        print(f"run {run + 1}/{args.runs}: {times[-1]:.3f} s", file=sys.stderr)
    median = statistics.median(times)
    print(f"median over {args.runs} runs: {median:.3f} s (target <= {args.target_s} s)")
    print(json.dumps({
        "benchmark": "metric_mecab_499x3", "data": source, "cpu": pinned, "runs": args.runs,
        "times_s": [round(t, 4) for t in times], "median_s": round(median, 4), "target_s": args.target_s,
        "within_target": median <= args.target_s, "final": final,
    }))
    return 0 if median <= args.target_s else 1


if __name__ == "__main__":
    sys.exit(main())
