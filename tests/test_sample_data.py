"""Tests for the bundled synthetic sample-data generator (competition/sample_data.py).

Run: .venv/bin/python -m pytest tests/test_sample_data.py
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pandas as pd
import pytest

from competition import sample_data as sd

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_DIR = REPO_ROOT / "data" / "sample"
OUTPUT_FILES = ("train.csv", "dev.csv", "test.csv", "test_refs.csv", "sample_submission.csv", "README.md")
MASKS = ("#PhoneNumber#", "#Address#", "#Email#", "#CardNumber#", "#CarNumber#",
         "#PassportNumber#", "#DateOfBirth#", "#SSN#")
SPEAKER_TAG = re.compile(r"#Person\d+#")
LINE_FORMAT = re.compile(r"#Person[1-3]#: \S.*")
SMALL_COUNTS = {"train": 30, "dev": 15, "test": 15}


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh generation with the default seed and counts."""
    out = tmp_path_factory.mktemp("sample_default")
    sd.write_sample_data(out)
    return out


@pytest.fixture(scope="module")
def tables(default_dir: Path) -> dict[str, pd.DataFrame]:
    """The generated CSV files, read back with pandas."""
    return {name: pd.read_csv(default_dir / name) for name in OUTPUT_FILES if name.endswith(".csv")}


def all_dialogues(tables: dict[str, pd.DataFrame]) -> list[str]:
    return [*tables["train.csv"].dialogue, *tables["dev.csv"].dialogue, *tables["test.csv"].dialogue]


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    sd.write_sample_data(first, seed=7, counts=SMALL_COUNTS)
    sd.write_sample_data(second, seed=7, counts=SMALL_COUNTS)
    for name in OUTPUT_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    sd.write_sample_data(tmp_path / "a", seed=1, counts=SMALL_COUNTS)
    sd.write_sample_data(tmp_path / "b", seed=2, counts=SMALL_COUNTS)
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "b" / "train.csv").read_bytes()


def test_writes_exactly_the_expected_files(default_dir: Path) -> None:
    assert sorted(p.name for p in default_dir.iterdir()) == sorted(OUTPUT_FILES)  # no temp files left


def test_committed_sample_matches_fresh_generation(default_dir: Path) -> None:
    """data/sample must be the generator's output, never hand-edited."""
    for name in OUTPUT_FILES:
        committed = COMMITTED_DIR / name
        assert committed.exists(), f"{committed} missing; run: python -m competition.sample_data --out data/sample"
        assert committed.read_bytes() == (default_dir / name).read_bytes(), (
            f"{committed} differs from a fresh generation; regenerate with "
            "python -m competition.sample_data --out data/sample --seed 0"
        )


def test_row_counts_columns_and_fnames(tables: dict[str, pd.DataFrame]) -> None:
    expected = {
        "train.csv": (["fname", "dialogue", "summary", "topic"], "train", 300),
        "dev.csv": (["fname", "dialogue", "summary", "topic"], "dev", 60),
        "test.csv": (["fname", "dialogue"], "test", 60),
        "test_refs.csv": (["fname", "summary1", "summary2", "summary3", "topic"], "test", 60),
    }
    for name, (columns, prefix, n_rows) in expected.items():
        df = tables[name]
        assert list(df.columns) == columns, name
        assert df["fname"].tolist() == [f"{prefix}_{i}" for i in range(n_rows)], name
        assert not df.isna().any().any(), name


def test_sample_submission_matches_competition_format(default_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    raw = (default_dir / "sample_submission.csv").read_text(encoding="utf-8")
    assert raw.splitlines()[0] == ",fname,summary"
    sub = pd.read_csv(default_dir / "sample_submission.csv", index_col=0)
    assert sub["fname"].tolist() == tables["test.csv"]["fname"].tolist()
    assert set(sub["summary"]) == {sd.SUBMISSION_PLACEHOLDER}
    assert sub.index.tolist() == list(range(len(sub)))


def test_files_are_utf8_without_bom_and_newlines_round_trip(default_dir: Path) -> None:
    for name in OUTPUT_FILES:
        data = (default_dir / name).read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf"), name
        data.decode("utf-8")
    dialogues = pd.read_csv(default_dir / "train.csv")["dialogue"]
    assert all("\n" in d for d in dialogues)  # multi-line dialogues survived quoting
    assert all(LINE_FORMAT.fullmatch(line) for d in dialogues for line in d.split("\n"))


def test_every_topic_in_every_split(tables: dict[str, pd.DataFrame]) -> None:
    topics = {spec.topic for spec in sd.TOPICS}
    assert len(topics) >= 12
    for name in ("train.csv", "dev.csv", "test_refs.csv"):
        assert set(tables[name]["topic"]) == topics, name


def test_splits_do_not_share_dialogues(tables: dict[str, pd.DataFrame]) -> None:
    dialogues = all_dialogues(tables)
    assert len(set(dialogues)) == len(dialogues)


def test_turn_counts_speakers_and_lengths(tables: dict[str, pd.DataFrame]) -> None:
    dialogues = all_dialogues(tables)
    lengths = [len(d) for d in dialogues]
    for dialogue in dialogues:
        lines = dialogue.split("\n")
        assert sd.MIN_TURNS <= len(lines) <= sd.MAX_TURNS
        assert lines[0].startswith("#Person1#: ") and "#Person2#: " in dialogue
    assert any("#Person3#: " in d for d in dialogues)
    assert sum(n > 350 for n in lengths) >= 0.1 * len(lengths)  # long tail for truncation code
    assert sum(n > 800 for n in lengths) >= 3


def test_every_mask_appears_several_times(tables: dict[str, pd.DataFrame]) -> None:
    text = "\n".join(all_dialogues(tables))
    for mask in MASKS:
        assert text.count(mask) >= 5, mask
    assert not re.search(r"#(?!Person\d#)(?![A-Z][A-Za-z]+#)[^#\s]*#", text), "malformed mask tag"


def test_summaries_only_mention_speakers_of_their_dialogue(tables: dict[str, pd.DataFrame]) -> None:
    test_dialogues = dict(zip(tables["test.csv"].fname, tables["test.csv"].dialogue, strict=True))
    pairs = [(d, s) for name in ("train.csv", "dev.csv") for d, s in zip(tables[name].dialogue, tables[name].summary)]
    for row in tables["test_refs.csv"].itertuples():
        pairs += [(test_dialogues[row.fname], s) for s in (row.summary1, row.summary2, row.summary3)]
    for dialogue, summary in pairs:
        assert set(SPEAKER_TAG.findall(summary)) <= set(SPEAKER_TAG.findall(dialogue)), summary
        assert summary.endswith("니다."), summary
        assert "{" not in summary and "}" not in summary, summary


def test_test_refs_are_three_distinct_wordings(tables: dict[str, pd.DataFrame]) -> None:
    for row in tables["test_refs.csv"].itertuples():
        assert len({row.summary1, row.summary2, row.summary3}) == 3, row.fname


def test_every_template_renders_completely() -> None:
    """Each template alone (all slots bound, no leftover braces, 4-14 turns)."""
    rng = random.Random(0)
    for spec in sd.TOPICS:
        assert len(spec.templates) >= 2, spec.topic
        for template in spec.templates:
            single = sd.TopicSpec(topic=spec.topic, slots=spec.slots, templates=(template,))
            for _ in range(20):
                example = sd.render_example(single, rng)
                text = example.dialogue + "".join(example.summaries)
                assert "{" not in text and "}" not in text, text
                assert sd.MIN_TURNS <= example.dialogue.count("\n") + 1 <= sd.MAX_TURNS


@pytest.mark.parametrize(
    ("word", "particle", "expected"),
    [
        ("#Person1#", "은", "#Person1#은"),
        ("#Person2#", "은", "#Person2#는"),
        ("#Person3#", "이", "#Person3#가"),
        ("#Person1#", "와", "#Person1#과"),
        ("지영", "를", "지영을"),
        ("Jimmy", "을", "Jimmy를"),
        ("2박 3일", "으로", "2박 3일로"),
        ("부산", "로", "부산으로"),
        ("제주도", "으로", "제주도로"),
        ("김치", "이에요", "김치예요"),
        ("식당", "에서", "식당에서"),
    ],
)
def test_attach_particle(word: str, particle: str, expected: str) -> None:
    assert sd.attach_particle(word, particle) == expected


def test_fill_raises_on_unknown_slot() -> None:
    with pytest.raises(KeyError):
        sd.fill("{missing:은} 온다.", {})


def test_cli_rejects_non_positive_counts(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as excinfo:
        sd.main(["--out", str(tmp_path), "--n-dev", "0"])
    assert excinfo.value.code == 2
    assert not any(tmp_path.iterdir())
