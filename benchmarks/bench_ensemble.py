"""Benchmark: MBR selection over 5 systems x 499 dialogues on CPU (target <= 10 s, median of runs).

    .venv/bin/python benchmarks/bench_ensemble.py [--runs 5] [--target-s 10.0]

Data: the real dev set at ../shared/data/competition/dev.csv when present, otherwise the bundled
data/sample/dev.csv repeated to 499 rows. Five synthetic systems per dialogue: the reference summary
with words dropped / sentences reordered / an utterance appended, the first utterance, and the
central utterance (ensemble.extractive), so candidates overlap like real model outputs do. Each run
is cold (analyzer and similarity caches cleared) and times the whole MBR step: the pairwise
similarity tensor plus the choice. Prints the median and one JSON line; exits 1 if it misses the target.
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

from competition.data import read_gold  # noqa: E402
from competition.metric import clear_caches  # noqa: E402
from ensemble.extractive import central_utterance, utterances  # noqa: E402
from ensemble.mbr import mbr_choices, select, similarity_tensor  # noqa: E402

SHARED_DEV = REPO.parent / "shared/data/competition/dev.csv"
SAMPLE_DEV = REPO / "data/sample/dev.csv"
N_DIALOGUES = 499


def synthetic_candidates(dialogue: str, summary: str) -> list[str]:
    """Five deterministic candidates: three perturbed summaries and two extractive ones."""
    words = summary.split()
    lines = utterances(dialogue)
    sentences = [s for s in summary.split(". ") if s]
    return [
        " ".join(w for i, w in enumerate(words) if i % 5 != 4) or summary,
        ". ".join(reversed(sentences)) if len(sentences) > 1 else summary + " " + lines[-1],
        summary + " " + lines[0],
        lines[0],
        central_utterance(dialogue),
    ]


def load_candidates() -> tuple[list[list[str]], str]:
    source = SHARED_DEV if SHARED_DEV.is_file() else SAMPLE_DEV
    if not source.is_file():
        sys.exit(f"error: neither {SHARED_DEV} nor {SAMPLE_DEV} exists; nothing to benchmark")
    gold = read_gold(source)
    rows = [gold.iloc[i % len(gold)] for i in range(N_DIALOGUES)]
    candidates = [synthetic_candidates(r["dialogue"], r["references"][0]) for r in rows]
    return candidates, f"{source} ({len(gold)} rows, used {N_DIALOGUES})"


def time_mbr(candidates: list[list[str]]) -> float:
    """Seconds for one cold MBR pass (similarities + choice)."""
    clear_caches()
    start = time.perf_counter()
    chosen = select(candidates, mbr_choices(similarity_tensor(candidates)))
    elapsed = time.perf_counter() - start
    assert len(chosen) == len(candidates)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--target-s", type=float, default=10.0)
    args = parser.parse_args()
    candidates, source = load_candidates()
    print(f"data: {source}; {len(candidates[0])} systems; cpus: {os.cpu_count()}", file=sys.stderr)
    times = []
    for run in range(args.runs):
        times.append(time_mbr(candidates))
        print(f"run {run + 1}/{args.runs}: {times[-1]:.2f} s", file=sys.stderr)
    median = statistics.median(times)
    print(f"MBR 5 systems x {N_DIALOGUES} dialogues: median {median:.2f} s over {args.runs} cold runs "
          f"(target <= {args.target_s} s)")
    print(json.dumps({"benchmark": "ensemble_mbr", "systems": 5, "dialogues": N_DIALOGUES, "runs": args.runs,
                      "median_s": round(median, 3), "times_s": [round(t, 3) for t in times],
                      "target_s": args.target_s, "data": source}))
    return 0 if median <= args.target_s else 1


if __name__ == "__main__":
    sys.exit(main())
