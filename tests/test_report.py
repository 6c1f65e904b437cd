"""Tests for competition.rules.report (dev ROUGE report: markdown, JSON, PNG plots).

Run: .venv/bin/python -m pytest tests/test_report.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from competition.rules.report import (
    LENGTH_PLOT,
    NOT_AVAILABLE,
    REPORT_JSON,
    REPORT_MARKDOWN,
    TOPIC_PLOT,
    WORST_COUNT,
    scores_by_length,
    write_rouge_report,
)

WORDS = ["사과", "바나나", "포도", "딸기", "수박", "참외", "자두", "복숭아"]


def make_samples(n: int = 25) -> dict:
    """Sample i shares i % 9 of its 8 reference words with the prediction, so scores differ in known order."""
    references, predictions = [], []
    for i in range(n):
        ref_words = [f"{w}{i}" for w in WORDS]
        shared = i % 9
        predictions.append(" ".join(ref_words[:shared] + [f"기타{i}_{k}" for k in range(8 - shared)]))
        references.append([" ".join(ref_words)])
    return {
        "fnames": [f"dev_{i}" for i in range(n)],
        "predictions": predictions,
        "references": references,
        "topics": ["쇼핑" if i % 2 else "여행" for i in range(n)],
        "dialogues": ["#Person1#: 안녕" + "하" * (10 * i) for i in range(n)],
    }


def test_report_files_exist_and_json_matches_result(tmp_path):
    samples = make_samples()
    result = write_rouge_report(tmp_path, analyzer="whitespace", **samples)
    for name in (REPORT_MARKDOWN, REPORT_JSON):
        assert (tmp_path / name).stat().st_size > 0
    for plot in (TOPIC_PLOT, LENGTH_PLOT):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")
    report = json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8"))
    assert report["scores"] == pytest.approx(result.as_dict())
    assert report["n_samples"] == 25
    assert not list(tmp_path.glob(".*.tmp")), "temp files left behind"


def test_worst_samples_are_the_lowest_scores_in_order(tmp_path):
    samples = make_samples()
    result = write_rouge_report(tmp_path, analyzer="whitespace", **samples)
    worst = json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8"))["worst"]
    assert len(worst) == WORST_COUNT
    finals = [w["final"] for w in worst]
    assert finals == sorted(finals)
    assert finals[0] == 0.0  # samples 0, 9, 18 share no word
    assert [w["fname"] for w in worst[:3]] == ["dev_0", "dev_9", "dev_18"]  # ties keep input order
    # Everything left out scores at least as high as the last one shown.
    shown = {w["fname"] for w in worst}
    left_out = [f for f, s in zip(samples["fnames"], result.sample_final) if f not in shown]
    assert min(result.sample_final[int(f.split("_")[1])] for f in left_out) >= finals[-1]
    assert worst[0]["prediction"] == samples["predictions"][0]
    assert worst[0]["references"] == samples["references"][0]
    markdown = (tmp_path / REPORT_MARKDOWN).read_text(encoding="utf-8")
    assert "| dev_0 | 0.00 |" in markdown


def test_topic_section_has_per_topic_means(tmp_path):
    samples = make_samples()
    result = write_rouge_report(tmp_path, analyzer="whitespace", **samples)
    by_topic = {g["name"]: g for g in json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8"))["by_topic"]}
    assert set(by_topic) == {"쇼핑", "여행"}
    odd = np.arange(25) % 2 == 1
    assert by_topic["쇼핑"]["count"] == 12
    assert by_topic["쇼핑"]["final"] == pytest.approx(result.sample_final[odd].mean())
    assert by_topic["여행"]["final"] == pytest.approx(result.sample_final[~odd].mean())
    assert "쇼핑" in (tmp_path / REPORT_MARKDOWN).read_text(encoding="utf-8")


def test_missing_topics_and_dialogues_say_not_available(tmp_path):
    samples = make_samples(5)
    (tmp_path / TOPIC_PLOT).write_bytes(b"stale")  # from an earlier report with topics
    write_rouge_report(tmp_path, samples["fnames"], samples["predictions"], samples["references"],
                       analyzer="whitespace")
    report = json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8"))
    assert report["by_topic"] == NOT_AVAILABLE and report["by_length"] == NOT_AVAILABLE
    markdown = (tmp_path / REPORT_MARKDOWN).read_text(encoding="utf-8")
    assert markdown.count(NOT_AVAILABLE) == 2
    assert not (tmp_path / TOPIC_PLOT).exists() and not (tmp_path / LENGTH_PLOT).exists()
    assert len(report["worst"]) == 5


def test_length_buckets_cover_every_sample_once(tmp_path):
    samples = make_samples()
    result = write_rouge_report(tmp_path, analyzer="whitespace", **samples)
    groups = scores_by_length(result, samples["dialogues"])
    assert sum(g.count for g in groups) == 25
    assert len(groups) == 5
    # Longer dialogues have larger i here; bucket names are ordered by length.
    assert groups[0].name.startswith(str(len(samples["dialogues"][0])))
    single = scores_by_length(result, ["같은 길이"] * 25)
    assert len(single) == 1 and single[0].count == 25


def test_markdown_table_cells_are_escaped(tmp_path):
    write_rouge_report(tmp_path, ["dev_0"], ["a | b\nc"], [["a b c"]], analyzer="whitespace")
    markdown = (tmp_path / REPORT_MARKDOWN).read_text(encoding="utf-8")
    assert "a \\| b<br>c" in markdown


def test_mismatched_lengths_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="topics has 1 items but fnames has 2"):
        write_rouge_report(tmp_path, ["a", "b"], ["x", "y"], [["x"], ["y"]], topics=["t"])


TOPICS_12_10_SMALL = ["호텔 방 예약"] * 12 + ["길 안내"] * 10 + ["음식 주문"] * 9 + [f"주제 {i}" for i in range(19)]


def test_topics_are_grouped_into_the_frequent_ones_and_other(tmp_path):
    """Real dev has 475 topics in 499 rows: topics under 10 rows join one `other` group instead of noise bars."""
    samples = make_samples(50)
    samples["topics"] = TOPICS_12_10_SMALL
    result = write_rouge_report(tmp_path, analyzer="whitespace", **samples)
    by_topic = json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8"))["by_topic"]
    assert [(g["name"], g["count"]) for g in by_topic] == [("호텔 방 예약", 12), ("길 안내", 10),
                                                            ("other (20 topics)", 28)]
    assert by_topic[2]["final"] == pytest.approx(result.sample_final[22:].mean())
    assert "| other (20 topics) | 28 |" in (tmp_path / REPORT_MARKDOWN).read_text(encoding="utf-8")


def test_singleton_topics_give_no_topic_plot_only_length_buckets(tmp_path):
    """Like the real dev set (the largest of 475 topics holds 5 rows): no topic plot, the length buckets stay."""
    samples = make_samples(60)
    samples["topics"] = ["호텔 방 예약"] * 5 + ["길 안내"] * 4 + [f"주제 {i}" for i in range(51)]
    (tmp_path / TOPIC_PLOT).write_bytes(b"stale")  # from an earlier report
    write_rouge_report(tmp_path, analyzer="whitespace", **samples)
    report = json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8"))
    assert isinstance(report["by_topic"], str) and "53 topics in 60 rows" in report["by_topic"]
    assert len(report["by_length"]) > 1 and (tmp_path / LENGTH_PLOT).read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / TOPIC_PLOT).exists()
    assert "no topic has 10 or more rows (53 topics in 60 rows)" in (tmp_path / REPORT_MARKDOWN).read_text()


def test_plots_draw_korean_with_the_shipped_font(tmp_path):
    import importlib.util
    import warnings

    import matplotlib.pyplot as plt

    from competition.rules.report import korean_font, korean_text

    if importlib.util.find_spec("koreanize_matplotlib") is None and korean_font() is None:
        pytest.skip("no Korean font and koreanize-matplotlib is not installed")
    assert korean_font() is not None
    with warnings.catch_warnings(record=True) as caught, korean_text():
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.set_title("호텔 방 예약")
        fig.savefig(tmp_path / "korean.png")
        plt.close(fig)
    assert not [w for w in caught if "missing from font" in str(w.message)]


def test_without_a_korean_font_the_topic_plot_falls_back_to_labels(tmp_path, monkeypatch):
    import competition.rules.report as report

    monkeypatch.setattr(report, "korean_font", lambda: None)
    samples = make_samples(50)
    samples["topics"] = TOPICS_12_10_SMALL
    write_rouge_report(tmp_path, analyzer="whitespace", **samples)
    markdown = (tmp_path / REPORT_MARKDOWN).read_text(encoding="utf-8")
    assert "| T1 | 호텔 방 예약 | 12 |" in markdown and "| other | other (20 topics) | 28 |" in markdown
    assert (tmp_path / TOPIC_PLOT).read_bytes().startswith(b"\x89PNG")
