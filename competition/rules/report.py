"""Dev-set ROUGE report: markdown + JSON + PNG plots, written atomically.

The tracks call `write_rouge_report` right after predicting on dev; `competition.score --report DIR`
calls it too. Sections: headline scores, score per topic (topics with enough rows and one "other" group; none when
no topic has enough, as on the real dev set), score by dialogue length, worst samples. Plots draw Korean labels with a Korean font when one is present (`korean_font`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from competition.rules.files import atomic_path, no_partial_outputs, write_text_atomic  # noqa: E402
from competition.rules.metric import DEFAULT_ANALYZER, RougeResult, compute_rouge  # noqa: E402

REPORT_MARKDOWN = "rouge_report.md"
REPORT_JSON = "rouge_report.json"
TOPIC_PLOT = "rouge_by_topic.png"
LENGTH_PLOT = "rouge_by_length.png"
NOT_AVAILABLE = "not available"
WORST_COUNT = 20
PLOTTED_TOPICS = 15  # dev has 475 topics for 499 dialogues: the most frequent ones are shown, the rest as "other"
MIN_TOPIC_ROWS = 10  # a topic with fewer rows joins "other": its mean is noise (real dev: at most 5 rows a topic)
OTHER_TOPICS = "other"
LABEL_CHARS = 12  # topic names on the plot's axis are cut to this many characters
# Families that draw Hangul, as Debian (fonts-nanum, fonts-noto-cjk), Windows and macOS install them.
KOREAN_FONT_FAMILIES = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum",
                        "Malgun Gothic", "AppleGothic")
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


def grouped_topic_scores(result: RougeResult, topics: Sequence[str]) -> list[GroupScore]:
    """The most frequent topics (at least MIN_TOPIC_ROWS rows each, at most PLOTTED_TOPICS), then one group `other`
    holding every remaining row (absent when nothing remains); empty when no topic has MIN_TOPIC_ROWS rows."""
    shown = [g for g in scores_by_topic(result, topics) if g.count >= MIN_TOPIC_ROWS][:PLOTTED_TOPICS]
    if not shown:
        return []
    names = {g.name for g in shown}
    rest = np.array([str(t) not in names for t in topics])
    if not rest.any():
        return shown
    other_topics = len({str(t) for t, r in zip(topics, rest) if r})
    return shown + [_group_score(f"{OTHER_TOPICS} ({other_topics} topics)", result, rest)]


@functools.lru_cache(maxsize=1)
def korean_font() -> str | None:
    """A font family that draws Hangul: an installed one (e.g. Debian's fonts-nanum), else the NanumGothic shipped
    by the koreanize-matplotlib package (registered from its folder, without importing it); None when neither is."""
    from matplotlib import font_manager

    def installed() -> set[str]:
        return {font.name for font in font_manager.fontManager.ttflist}

    family = next((f for f in KOREAN_FONT_FAMILIES if f in installed()), None)
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if family is None and spec is not None and spec.origin:
        for ttf in sorted((Path(spec.origin).parent / "fonts").glob("*.ttf")):
            font_manager.fontManager.addfont(str(ttf))
        family = next((f for f in KOREAN_FONT_FAMILIES if f in installed()), None)
    return family


def korean_text() -> contextlib.AbstractContextManager:
    """Matplotlib settings under which plots draw Korean (a no-op without a Korean font)."""
    family = korean_font()
    if family is None:
        return contextlib.nullcontext()
    return plt.rc_context({"font.family": [family, "DejaVu Sans"], "axes.unicode_minus": False})


def topic_labels(groups: Sequence[GroupScore]) -> list[str]:
    """Axis labels of the topic plot: the (cut) topic names with a Korean font, else T1..Tn and `other`."""
    def is_other(group: GroupScore) -> bool:
        return group.name.startswith(f"{OTHER_TOPICS} (")

    if korean_font() is not None:
        return [g.name if len(g.name) <= LABEL_CHARS or is_other(g) else g.name[:LABEL_CHARS - 1] + "…"
                for g in groups]
    return [OTHER_TOPICS if is_other(g) else f"T{i + 1}" for i, g in enumerate(groups)]


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
    with korean_text():
        fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(groups) + 2), 4.5))
        bars = ax.bar(labels, [g.final for g in groups], color="tab:blue")
        ax.bar_label(bars, labels=[f"n={g.count}" for g in groups], fontsize=8, padding=2)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("final = mean(R1, R2, RL) x 100")
        ax.margins(y=0.12)  # room for the n= labels
        ax.tick_params(axis="x", rotation=45)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
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


def sparse_topics_note(topics: Sequence[str]) -> str:
    """Why the topic section is empty: no topic holds MIN_TOPIC_ROWS rows."""
    return (f"no topic has {MIN_TOPIC_ROWS} or more rows ({len(set(map(str, topics)))} topics in {len(topics)} rows), "
            f"so per-topic scores would be noise; see the score by dialogue length")


def _markdown(result: RougeResult, topics: list[GroupScore] | str | None, lengths: list[GroupScore] | None,
              worst: list[dict[str, Any]], title: str, notes: Sequence[str] = ()) -> str:
    lines = [f"# {title}", "", f"analyzer: `{result.analyzer}`, samples: {len(result.per_sample)}", "",
             "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result.as_dict().items()]
    lines += ([""] + [f"- {note}" for note in notes]) if notes else []
    lines += ["", "## Score per topic", ""]
    if topics is None:
        lines.append(f"Topic: {NOT_AVAILABLE} (no topic column).")
    elif isinstance(topics, str):
        lines.append(f"Topic: {topics}.")
    else:
        lines += [f"Topics with at least {MIN_TOPIC_ROWS} rows (at most {PLOTTED_TOPICS}, most frequent first), the "
                  f"other rows as one group; plot `{TOPIC_PLOT}` (its labels in the first column).", ""]
        lines += _group_table(topics, topic_labels(topics))
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
    topic_groups = grouped_topic_scores(result, topics) if topics is not None else None
    length_groups = scores_by_length(result, dialogues) if dialogues is not None else None
    worst = worst_samples(result, fnames, predictions, references)
    topic_section = None if topics is None else sparse_topics_note(topics)  # used when no topic group is shown

    if topic_groups:
        frequent = len([g for g in topic_groups if not g.name.startswith(f"{OTHER_TOPICS} (")])
        _bar_plot(out_dir / TOPIC_PLOT, topic_groups, topic_labels(topic_groups),
                  f"Score per topic: the {frequent} of {len(set(map(str, topics)))} topics with {MIN_TOPIC_ROWS}+ rows, "
                  f"the rest as other", "topic" if korean_font() else "topic (labels: see the report's table)")
    if length_groups is not None:
        _bar_plot(out_dir / LENGTH_PLOT, length_groups, [g.name.replace(" chars", "") for g in length_groups],
                  "Score by dialogue length", "dialogue length bucket (characters)")
    for plot, groups in ((TOPIC_PLOT, topic_groups), (LENGTH_PLOT, length_groups)):
        if not groups:
            (out_dir / plot).unlink(missing_ok=True)  # never leave a stale plot from an earlier report
    payload = {
        "title": title,
        "analyzer": analyzer,
        "n_samples": len(fnames),
        "scores": result.as_dict(),
        "notes": notes,
        "by_topic": ([g.__dict__ for g in topic_groups] if topic_groups
                     else NOT_AVAILABLE if topics is None else topic_section),
        "by_length": [g.__dict__ for g in length_groups] if length_groups is not None else NOT_AVAILABLE,
        "worst": worst,
    }
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    write_text_atomic(out_dir / REPORT_MARKDOWN, _markdown(result, topic_groups or topic_section, length_groups, worst,
                                                           title, notes))
