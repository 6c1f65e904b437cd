"""The ensemble report: ensemble_report.md + .json + PNG plots, and the standard dev ROUGE report of the result.

Sections: single systems (raw and post-processed dev score), methods (in-sample and cross-validated dev score),
post-processing rules (score with/without each rule, harmful ones flagged), per-topic breakdown (the most frequent
topics with enough rows: each system and the chosen method), how often each system was chosen per split.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from competition.rules.files import atomic_path, write_text_atomic  # noqa: E402
from competition.rules.report import MIN_TOPIC_ROWS, korean_text, write_rouge_report  # noqa: E402
from ensemble.results import EnsembleResult, Inputs  # noqa: E402

REPORT_MARKDOWN = "ensemble_report.md"
REPORT_JSON = "ensemble_report.json"
SCORES_PLOT = "ensemble_scores.png"
RULES_PLOT = "postprocess_rules.png"
DEV_REPORT_DIR = "dev_rouge"
TOPICS_SHOWN = 15
LABEL_CHARS = 18  # a system's name on the plot's axis is cut to this many characters
_RUN_STAMP = re.compile(r"-\d{8}-\d{6}(?:-\d+)?$")  # the `-YYYYmmdd-HHMMSS[-n]` of a run folder's name


def topic_breakdown(result: EnsembleResult, limit: int = TOPICS_SHOWN) -> list[dict[str, Any]]:
    """Per-topic mean dev score of each system and of the final choice, most frequent topics first; only topics with
    MIN_TOPIC_ROWS rows (fewer give noise: real dev has at most 5 rows a topic)."""
    if result.dev_topics is None or result.dev_sample_scores is None or result.dev_output_scores is None:
        return []
    topics = np.asarray(result.dev_topics, dtype=object)
    final = result.dev_output_scores
    rows = []
    for topic in dict.fromkeys(result.dev_topics):
        members = topics == topic
        rows.append({"topic": str(topic), "n": int(members.sum()),
                     "systems": {name: float(result.dev_sample_scores[members, k].mean())
                                 for k, name in enumerate(result.systems)},
                     "ensemble": float(final[members].mean())})
    rows.sort(key=lambda r: (-r["n"], r["topic"]))
    return [r for r in rows if r["n"] >= MIN_TOPIC_ROWS][:limit]


def choice_counts(result: EnsembleResult) -> dict[str, dict[str, int]]:
    """split -> system -> how many rows took that system's candidate (fusion: started from it)."""
    return {split: {name: int((choices == k).sum()) for k, name in enumerate(result.systems)}
            for split, choices in result.choices.items()}


def _payload(result: EnsembleResult) -> dict[str, Any]:
    return {
        "method": result.method, "params": result.params, "dev_score": result.dev_score,
        "cv_dev_score": result.cv_score, "systems": result.system_scores, "source_runs": result.source_runs,
        "methods": [m.__dict__ for m in result.method_scores],
        "rules": [{"rule": e.rule, "enabled": e.enabled, "score_with": e.score_with,
                   "score_without": e.score_without, "delta": e.delta, "harmful": e.harmful}
                  for e in result.rule_effects],
        "by_topic": topic_breakdown(result), "choice_counts": choice_counts(result), "notes": result.notes,
        "config": result.config.__dict__,
    }


def _markdown(result: EnsembleResult) -> str:
    lines = ["# Ensemble report", "", f"method: **{result.method}**", ""]
    if result.dev_score is not None:
        cv = f", cross-validated {result.cv_score:.2f}" if result.cv_score is not None else ""
        lines += [f"dev score of the output: **{result.dev_score:.2f}**{cv}", ""]
    lines += [f"- {note}" for note in result.notes] + ([""] if result.notes else [])
    if result.system_scores:
        lines += ["## Single systems (dev)", "", "| system | raw | post-processed |", "|---|---:|---:|"]
        lines += [f"| {name} | {s['raw']:.2f} | {s['postprocessed']:.2f} |" for name, s in result.system_scores.items()]
        lines += [""]
    else:
        lines += ["No dev references (--gold): no scores.", ""]
    if result.method_scores:
        lines += ["## Methods (dev)", "", "In-sample: fitted and scored on all dev rows. Cross-validated: each fold "
                  "scored with parameters fitted on the other folds (the honest number).", "",
                  "| method | in-sample | cross-validated | parameters (all dev) |", "|---|---:|---:|---|"]
        lines += [f"| {m.method}{' (chosen)' if m.method == result.method else ''} | {m.in_sample:.2f} | "
                  f"{m.cross_validated:.2f} | `{json.dumps(_short(m.params), ensure_ascii=False)}` |"
                  for m in result.method_scores]
        lines += [""]
    if result.rule_effects:
        lines += ["## Post-processing rules (mean dev score over systems)", "",
                  "| rule | enabled | with | without | delta | flag |", "|---|---|---:|---:|---:|---|"]
        lines += [f"| {e.rule} | {'yes' if e.enabled else 'no'} | {e.score_with:.3f} | {e.score_without:.3f} | "
                  f"{e.delta:+.3f} | {'LOWERS SCORE' if e.harmful else ''} |" for e in result.rule_effects]
        lines += ["", "A rule flagged LOWERS SCORE costs dev score where it stands: turn it off with "
                  "`--disable-rule NAME` (or `rules=...`). Disabled rules show the effect of turning them on.", ""]
    topics = topic_breakdown(result)
    if topics:
        names = result.systems
        lines += [f"## Per topic (dev, {len(topics)} most frequent with {MIN_TOPIC_ROWS}+ rows)", "",
                  "| topic | n | " + " | ".join(names) + " | ensemble |", "|---|---:|" + "---:|" * (len(names) + 1)]
        lines += [f"| {t['topic']} | {t['n']} | " + " | ".join(f"{t['systems'][n]:.2f}" for n in names)
                  + f" | {t['ensemble']:.2f} |" for t in topics]
        lines += [""]
    elif result.dev_topics is not None:
        lines += [f"Per topic: no dev topic has {MIN_TOPIC_ROWS} or more rows ({len(set(result.dev_topics))} topics); "
                  "per-topic scores would be noise.", ""]
    started = " (fusion: the MBR pick each row started from)" if result.method == "fusion" else ""
    lines += [f"## Rows taken from each system{started}", "", "| split | " + " | ".join(result.systems) + " |",
              "|---|" + "---:|" * len(result.systems)]
    lines += [f"| {split} | " + " | ".join(str(c[n]) for n in result.systems) + " |"
              for split, c in choice_counts(result).items()]
    lines += ["", f"Plots: `{SCORES_PLOT}`, `{RULES_PLOT}`; dev ROUGE report of the output: `{DEV_REPORT_DIR}/`."]
    return "\n".join(lines) + "\n"


def _short(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for a table cell: a topic route table is summarised by its size."""
    return {k: (f"{len(v)} topics" if k == "routes" else v) for k, v in params.items()}


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)


def score_axis_limits(values: Sequence[float]) -> tuple[float, float]:
    """A y range around the scores (not from 0): a 42-46.7 spread stays visible, with room for value labels."""
    finite = [v for v in values if np.isfinite(v)]
    low, high = min(finite), max(finite)
    pad = max(0.5, 0.15 * (high - low))
    return float(np.floor(low - pad)), float(np.ceil(high + 2 * pad))


def system_labels(names: Sequence[str], width: int = LABEL_CHARS) -> tuple[list[str], str]:
    """Short axis labels for system names, and the prefix they all shared (dropped from the labels).

    A run folder's time stamp goes when the names stay distinct without it; a long name keeps its start and end
    around "…"; labels that would still clash get their position (S1..)."""
    names = list(names)
    plain = [_RUN_STAMP.sub("", n) for n in names]
    names = plain if len(set(plain)) == len(plain) else names
    shared = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = shared[:max(shared.rfind(c) for c in "-_. ") + 1]
    rest = [n[len(prefix):] or n for n in names]
    head = (width - 1) // 2
    short = [r if len(r) <= width else r[:head] + "…" + r[-(width - 1 - head):] for r in rest]
    if len(set(short)) < len(short):
        short = [f"S{k + 1} {label}" for k, label in enumerate(short)]
    return short, prefix


def _scores_plot(result: EnsembleResult, path: Path) -> None:
    names, prefix = system_labels(result.systems)
    labels = names + [m.method for m in result.method_scores]
    values = [s["postprocessed"] for s in result.system_scores.values()] + [m.in_sample for m in result.method_scores]
    cv = [np.nan] * len(result.systems) + [m.cross_validated for m in result.method_scores]
    with korean_text():
        _draw_scores(labels, values, cv, prefix, path)


def _draw_scores(labels: list[str], values: list[float], cv: list[float], prefix: str, path: Path) -> None:
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(labels) + 3), 4.5))
    for offset, heights, name in ((-0.2, values, "dev (in-sample)"), (0.2, cv, "dev (cross-validated)")):
        bars = ax.bar(x + offset, heights, 0.4, label=name)
        ax.bar_label(bars, labels=["" if not np.isfinite(h) else f"{h:.1f}" for h in heights], fontsize=7,
                     padding=1)
    ax.set_ylim(*score_axis_limits(values + cv))
    ax.set_xticks(x, labels, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_ylabel("final = mean(R1, R2, RL) x 100\n(axis does not start at 0)")
    ax.set_title("Systems and methods" + (f" (system names without '{prefix}')" if prefix else ""))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)  # beside, not on, the bars
    _save(fig, path)


def _rules_plot(result: EnsembleResult, path: Path) -> None:
    effects = result.rule_effects
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    ax.barh([e.rule for e in effects], [e.delta for e in effects],
            color=["tab:red" if e.harmful else "tab:green" for e in effects])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("dev score with rule - without (mean over systems)")
    ax.set_title("Post-processing rules")
    _save(fig, path)


def write_ensemble_report(out_dir: Path | str, result: EnsembleResult, inputs: Inputs) -> Path:
    """Write the report files into ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if result.system_scores:
        _scores_plot(result, out_dir / SCORES_PLOT)
        _rules_plot(result, out_dir / RULES_PLOT)
    if inputs.gold is not None and "dev" in result.summaries:
        gold = inputs.gold
        write_rouge_report(out_dir / DEV_REPORT_DIR, result.order["dev"], result.summaries["dev"],
                           list(gold["references"]), list(gold["topic"]) if "topic" in gold.columns else None,
                           list(gold["dialogue"]) if "dialogue" in gold.columns else None,
                           analyzer=result.config.analyzer, title=f"Ensemble ({result.method}) dev ROUGE report")
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(_payload(result), ensure_ascii=False, indent=2,
                                                        default=_json_default) + "\n")
    return write_text_atomic(out_dir / REPORT_MARKDOWN, _markdown(result))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
