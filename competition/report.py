"""Dev-set ROUGE report: markdown + JSON + PNG plots, written atomically.

The tracks call `write_rouge_report` right after predicting on dev; `competition.score --report DIR`
calls it too. Sections: headline scores, score per topic, score by dialogue length, worst samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from competition.files import atomic_path, no_partial_outputs, write_text_atomic  # noqa: E402
from competition.metric import DEFAULT_ANALYZER, RougeResult, compute_rouge  # noqa: E402

REPORT_MARKDOWN = "rouge_report.md"
REPORT_JSON = "rouge_report.json"
TOPIC_PLOT = "rouge_by_topic.png"
LENGTH_PLOT = "rouge_by_length.png"
NOT_AVAILABLE = "not available"
WORST_COUNT = 20
PLOTTED_TOPICS = 20  # dev has ~475 topics for 499 dialogues; plot the most frequent ones
LENGTH_BUCKETS = 5  # quantile buckets of dialogue character length


@dataclass(frozen=True)
class GroupScore:
    """Mean scores of one group of samples (a topic or a length bucket)."""

    name: str
    count: int
    rouge1: float
    rouge2: float
    rougeL: float
    final: float


def _group_score(name: str, result: RougeResult, members: np.ndarray) -> GroupScore:
    means = result.per_sample[members].mean(axis=0)
    return GroupScore(name, int(members.sum()), *(float(m) for m in means), float(means.mean() * 100))


def scores_by_topic(result: RougeResult, topics: Sequence[str]) -> list[GroupScore]:
    """Per-topic means, most frequent topic first (ties: lower score first, then name)."""
    topic_array = np.asarray(topics, dtype=object)
    groups = [_group_score(str(t), result, topic_array == t) for t in dict.fromkeys(topics)]
    return sorted(groups, key=lambda g: (-g.count, g.final, g.name))


def length_bucket_edges(lengths: np.ndarray, buckets: int = LENGTH_BUCKETS) -> np.ndarray:
    """Quantile edges of dialogue lengths (duplicates removed, so small sets give fewer buckets)."""
    return np.unique(np.quantile(lengths, np.linspace(0.0, 1.0, buckets + 1)).round().astype(int))


def scores_by_length(result: RougeResult, dialogues: Sequence[str]) -> list[GroupScore]:
    """Means per dialogue-length bucket (characters), shortest bucket first."""
    lengths = np.array([len(d) for d in dialogues])
    edges = length_bucket_edges(lengths)
    if len(edges) == 1:
        return [_group_score(f"{edges[0]} chars", result, np.ones(len(lengths), dtype=bool))]
    # Bucket i holds lengths in (edges[i], edges[i+1]]; the first bucket also holds the minimum.
    bucket = np.clip(np.searchsorted(edges, lengths, side="left") - 1, 0, len(edges) - 2)
    groups = []
    for i in range(len(edges) - 1):
        members = bucket == i
        if members.any():
            groups.append(_group_score(f"{edges[i]}-{edges[i + 1]} chars", result, members))
    return groups


def worst_samples(result: RougeResult, fnames: Sequence[str], predictions: Sequence[str],
                  references: Sequence[Sequence[str]], count: int = WORST_COUNT) -> list[dict[str, Any]]:
    """The `count` lowest-scoring samples, worst first (ties keep input order)."""
    order = np.argsort(result.sample_final, kind="stable")[:count]
    return [
        {"fname": fnames[i], "final": float(result.sample_final[i]),
         "rouge1": float(result.per_sample[i, 0]), "rouge2": float(result.per_sample[i, 1]),
         "rougeL": float(result.per_sample[i, 2]),
         "prediction": predictions[i], "references": list(references[i])}
        for i in order
    ]


def _bar_plot(path: Path, groups: list[GroupScore], labels: list[str], title: str, xlabel: str) -> None:
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(groups) + 2), 4.0))
    ax.bar(labels, [g.final for g in groups], color="tab:blue")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final = mean(R1, R2, RL) x 100")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)


def _cell(text: str) -> str:
    """Make text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _group_table(groups: list[GroupScore], labels: list[str] | None = None) -> list[str]:
    head = ["| " + ("label | " if labels else "") + "group | n | final | rouge1 | rouge2 | rougeL |",
            "|" + ("---|" if labels else "") + "---|---:|---:|---:|---:|---:|"]
    rows = [
        "| " + (f"{labels[i]} | " if labels and i < len(labels) else ("- | " if labels else ""))
        + f"{_cell(g.name)} | {g.count} | {g.final:.2f} | {g.rouge1:.4f} | {g.rouge2:.4f} | {g.rougeL:.4f} |"
        for i, g in enumerate(groups)
    ]
    return head + rows


def _markdown(result: RougeResult, topics: list[GroupScore] | None, lengths: list[GroupScore] | None,
              worst: list[dict[str, Any]], title: str, notes: Sequence[str] = ()) -> str:
    lines = [f"# {title}", "", f"analyzer: `{result.analyzer}`, samples: {len(result.per_sample)}", "",
             "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result.as_dict().items()]
    lines += ([""] + [f"- {note}" for note in notes]) if notes else []
    lines += ["", "## Score per topic", ""]
    if topics is None:
        lines.append(f"Topic: {NOT_AVAILABLE} (no topic column).")
    else:
        labels = [f"T{i + 1}" for i in range(min(PLOTTED_TOPICS, len(topics)))]
        lines += [f"{len(topics)} topics; plot `{TOPIC_PLOT}` shows labels T1..T{len(labels)}.", ""]
        lines += _group_table(topics, labels)
    lines += ["", "## Score by dialogue length", ""]
    if lengths is None:
        lines.append(f"Dialogue length: {NOT_AVAILABLE} (no dialogue column).")
    else:
        lines += [f"Quantile buckets of dialogue length in characters; plot `{LENGTH_PLOT}`.", ""]
        lines += _group_table(lengths)
    lines += ["", f"## {len(worst)} worst samples", "", "| fname | final | prediction | references |",
              "|---|---:|---|---|"]
    lines += [f"| {_cell(w['fname'])} | {w['final']:.2f} | {_cell(w['prediction'])} | "
              + "<br>---<br>".join(_cell(r) for r in w["references"]) + " |" for w in worst]
    return "\n".join(lines) + "\n"


def _check_lengths(fnames: Sequence[str], **columns: Sequence[Any] | None) -> None:
    for name, values in columns.items():
        if values is not None and len(values) != len(fnames):
            raise ValueError(f"{name} has {len(values)} items but fnames has {len(fnames)}")


def write_rouge_report(
    out_dir: Path | str,
    fnames: Sequence[str],
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    topics: Sequence[str] | None = None,
    dialogues: Sequence[str] | None = None,
    analyzer: str = DEFAULT_ANALYZER,
    title: str = "ROUGE report",
    notes: Sequence[str] = (),
) -> RougeResult:
    """Score predictions and write rouge_report.md/.json and PNG plots into `out_dir`.

    Topic and length sections read "not available" when `topics` / `dialogues` are None. `notes` (e.g. the
    run's fill-in count) are listed under the headline scores.
    Returns the RougeResult so callers can log the headline numbers.
    """
    _check_lengths(fnames, predictions=predictions, references=references, topics=topics, dialogues=dialogues)
    result = compute_rouge(predictions, references, analyzer=analyzer, progress=True)
    with no_partial_outputs(out_dir):  # a full disk leaves no half report
        _write_report_files(Path(out_dir), result, fnames, predictions, references, topics, dialogues, analyzer,
                            title, list(notes))
    return result


def _write_report_files(out_dir: Path, result: RougeResult, fnames: Sequence[str], predictions: Sequence[str],
                        references: Sequence[Sequence[str]], topics: Sequence[str] | None,
                        dialogues: Sequence[str] | None, analyzer: str, title: str, notes: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    topic_groups = scores_by_topic(result, topics) if topics is not None else None
    length_groups = scores_by_length(result, dialogues) if dialogues is not None else None
    worst = worst_samples(result, fnames, predictions, references)

    if topic_groups is not None:
        shown = topic_groups[:PLOTTED_TOPICS]
        _bar_plot(out_dir / TOPIC_PLOT, shown, [f"T{i + 1}" for i in range(len(shown))],
                  f"Score per topic ({len(shown)} most frequent of {len(topic_groups)})", "topic label (see report)")
    if length_groups is not None:
        _bar_plot(out_dir / LENGTH_PLOT, length_groups, [g.name.replace(" chars", "") for g in length_groups],
                  "Score by dialogue length", "dialogue length bucket (characters)")
    for plot, groups in ((TOPIC_PLOT, topic_groups), (LENGTH_PLOT, length_groups)):
        if groups is None:
            (out_dir / plot).unlink(missing_ok=True)  # never leave a stale plot from an earlier report
    payload = {
        "title": title,
        "analyzer": analyzer,
        "n_samples": len(fnames),
        "scores": result.as_dict(),
        "notes": notes,
        "by_topic": [g.__dict__ for g in topic_groups] if topic_groups is not None else NOT_AVAILABLE,
        "by_length": [g.__dict__ for g in length_groups] if length_groups is not None else NOT_AVAILABLE,
        "worst": worst,
    }
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    write_text_atomic(out_dir / REPORT_MARKDOWN, _markdown(result, topic_groups, length_groups, worst, title, notes))
