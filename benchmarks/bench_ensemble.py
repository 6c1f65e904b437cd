"""Benchmark on one CPU core: MBR over 5 systems x 499 dialogues (target <= 10 s) and sentence-level fusion over
7 systems x 499 dialogues (target <= 20 s), medians of cold runs. `make bench-ensemble` pins it to core 0.

    .venv/bin/python benchmarks/bench_ensemble.py [--runs 5] [--target-s 10.0] [--fusion-runs 3]
        [--fusion-target-s 20.0]

Data: the real dev set at ../shared/data/competition/dev.csv when present, otherwise the bundled
data/sample/dev.csv repeated to 499 rows.
MBR: five synthetic systems per dialogue: the reference summary with words dropped / sentences reordered / an
utterance appended, the first utterance, and the central utterance (ensemble.extractive), so candidates overlap
like real model outputs do. Times the pairwise similarity tensor plus the choice.
Fusion: the real systems' dev predictions in ../shared/data/predictions/*_dev.csv (post-processed by the default
rules) plus deterministic perturbations of them (a sentence dropped, sentences reversed) up to 7 candidates; without
them, the five synthetic systems plus two perturbations. Times `ensemble.fusion.fuse` (similarities, MBR pick,
fusion) and, with real references, prints the dev score of plain MBR and of fusion over those 7 candidates.
Each run is cold (analyzer and similarity caches cleared). Prints the medians and one JSON line per benchmark;
exits 1 if a median misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

import pandas as pd  # noqa: E402

from competition.rules.data import read_gold  # noqa: E402
from competition.rules.metric import clear_caches, sample_scores  # noqa: E402
from ensemble.extractive import central_utterance, utterances  # noqa: E402
from ensemble.fusion import fuse, sentences  # noqa: E402
from ensemble.mbr import mbr_choices, select, similarity_tensor  # noqa: E402
from ensemble.postprocess import DEFAULT_RULES, apply_pipeline  # noqa: E402

SHARED_DEV = REPO.parent / "shared/data/competition/dev.csv"
SHARED_PREDICTIONS = REPO.parent / "shared/data/predictions"
SAMPLE_DEV = REPO / "data/sample/dev.csv"
N_DIALOGUES = 499
FUSION_SYSTEMS = 7


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


def load_rows() -> tuple[pd.DataFrame, str]:
    """The dev rows (repeated to N_DIALOGUES) and a description of where they came from."""
    source = SHARED_DEV if SHARED_DEV.is_file() else SAMPLE_DEV
    if not source.is_file():
        sys.exit(f"error: neither {SHARED_DEV} nor {SAMPLE_DEV} exists; nothing to benchmark")
    gold = read_gold(source)
    rows = gold.iloc[[i % len(gold) for i in range(N_DIALOGUES)]].reset_index(drop=True)
    return rows, f"{source} ({len(gold)} rows, used {N_DIALOGUES})"


def load_candidates(rows: pd.DataFrame) -> list[list[str]]:
    return [synthetic_candidates(r["dialogue"], r["references"][0]) for _, r in rows.iterrows()]


def perturbations(system: list[str], k: int) -> list[str]:
    """A deterministic variant of a system: its last sentence dropped (even k) or its sentences reversed (odd)."""
    def variant(text: str) -> str:
        parts = sentences(text)
        if len(parts) < 2:
            return text
        return " ".join(parts[:-1] if k % 2 == 0 else parts[::-1])
    return [variant(t) for t in system]


def fusion_candidates(rows: pd.DataFrame) -> tuple[list[list[str]], str]:
    """7 candidates per row: the real systems' post-processed dev predictions plus perturbations of them (or the
    synthetic systems when the real predictions are absent or do not cover the rows)."""
    files = sorted(SHARED_PREDICTIONS.glob("*_dev.csv")) if SHARED_DEV.is_file() else []
    systems: list[list[str]] = []
    for path in files[:FUSION_SYSTEMS]:
        frame = pd.read_csv(path, keep_default_na=False)
        predicted = dict(zip(frame["fname"], frame["summary"]))
        if not set(rows["fname"]) <= set(predicted):
            systems = []
            break
        systems.append(apply_pipeline([predicted[f] for f in rows["fname"]], list(rows["dialogue"]), DEFAULT_RULES))
    if systems:
        source = f"{len(systems)} real systems ({', '.join(p.stem for p in files[:len(systems)])})"
    else:
        systems = [list(column) for column in zip(*load_candidates(rows))]
        source = f"{len(systems)} synthetic systems (no real predictions in {SHARED_PREDICTIONS})"
    n_real = len(systems)
    for k in range(FUSION_SYSTEMS - n_real):
        systems.append(perturbations(systems[k % n_real], k))
    if FUSION_SYSTEMS > n_real:
        source += (f" + {FUSION_SYSTEMS - n_real} deterministic perturbations of them "
                   f"(last sentence dropped / sentences reversed)")
    return [list(row) for row in zip(*systems[:FUSION_SYSTEMS])], source


def time_mbr(candidates: list[list[str]]) -> float:
    """Seconds for one cold MBR pass (similarities + choice)."""
    clear_caches()
    start = time.perf_counter()
    chosen = select(candidates, mbr_choices(similarity_tensor(candidates)))
    elapsed = time.perf_counter() - start
    assert len(chosen) == len(candidates)
    return elapsed


def time_fusion(candidates: list[list[str]]) -> tuple[float, list[str]]:
    """Seconds for one cold fusion pass (similarities, MBR pick, fusion) and the fused summaries."""
    clear_caches()
    start = time.perf_counter()
    fused = fuse(candidates)
    elapsed = time.perf_counter() - start
    assert len(fused) == len(candidates)
    return elapsed, fused


def _median_of(label: str, runs: int, timed: Callable[[], float]) -> tuple[float, list[float]]:
    times = []
    for run in range(runs):
        times.append(timed())
        print(f"{label} run {run + 1}/{runs}: {times[-1]:.2f} s", file=sys.stderr)
    return statistics.median(times), times


def bench_mbr(rows: pd.DataFrame, source: str, runs: int, target_s: float) -> bool:
    candidates = load_candidates(rows)
    median, times = _median_of("mbr", runs, lambda: time_mbr(candidates))
    print(f"MBR 5 systems x {N_DIALOGUES} dialogues: median {median:.2f} s over {runs} cold runs "
          f"(target <= {target_s} s)")
    print(json.dumps({"benchmark": "ensemble_mbr", "systems": 5, "dialogues": N_DIALOGUES, "runs": runs,
                      "median_s": round(median, 3), "times_s": [round(t, 3) for t in times],
                      "target_s": target_s, "data": source}))
    return median <= target_s


def bench_fusion(rows: pd.DataFrame, source: str, runs: int, target_s: float) -> bool:
    candidates, systems = fusion_candidates(rows)
    print(f"fusion candidates: {systems}", file=sys.stderr)
    fused: list[str] = []

    def timed() -> float:
        nonlocal fused
        elapsed, fused = time_fusion(candidates)
        return elapsed

    median, times = _median_of("fusion", runs, timed)
    print(f"fusion {FUSION_SYSTEMS} systems x {N_DIALOGUES} dialogues: median {median:.2f} s over {runs} cold runs "
          f"(target <= {target_s} s); candidates: {systems}")
    scores = {}
    if SHARED_DEV.is_file():  # the rows are the real dev set: score both outputs against its references
        references = list(rows["references"])
        mbr = select(candidates, mbr_choices(similarity_tensor(candidates)))
        scores = {"mbr": float(sample_scores(mbr, references).mean()),
                  "fusion": float(sample_scores(fused, references).mean())}
        print(f"dev score over these {FUSION_SYSTEMS} candidates: plain MBR {scores['mbr']:.2f}, "
              f"fusion {scores['fusion']:.2f}")
    print(json.dumps({"benchmark": "ensemble_fusion", "systems": FUSION_SYSTEMS, "dialogues": N_DIALOGUES,
                      "runs": runs, "median_s": round(median, 3), "times_s": [round(t, 3) for t in times],
                      "target_s": target_s, "data": source, "candidates": systems,
                      "dev_scores": {k: round(v, 4) for k, v in scores.items()}}))
    return median <= target_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold MBR runs")
    parser.add_argument("--target-s", type=float, default=10.0, help="MBR target (median seconds)")
    parser.add_argument("--fusion-runs", type=int, default=3, help="cold fusion runs")
    parser.add_argument("--fusion-target-s", type=float, default=20.0, help="fusion target (median seconds)")
    args = parser.parse_args()
    rows, source = load_rows()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"data: {source}; cpus: {os.cpu_count()} (usable by this process: {cores})", file=sys.stderr)
    mbr_ok = bench_mbr(rows, source, args.runs, args.target_s)
    fusion_ok = bench_fusion(rows, source, args.fusion_runs, args.fusion_target_s)
    return 0 if mbr_ok and fusion_ok else 1


if __name__ == "__main__":
    sys.exit(main())
