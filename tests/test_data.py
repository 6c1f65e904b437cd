"""Bad-input handling of competition files. Run: `.venv/bin/python -m pytest tests/test_data.py`.

Every case checks the message (file, row, column, what was expected), exit code 2 from a CLI, and that the CLI left
no output behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from competition.rules.data import data_special_tokens, load_splits, read_gold, read_split, special_tokens
from competition.rules.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GOOD_DEV = 'fname,dialogue,summary,topic\ndev_0,"#Person1#: 안녕\n#Person2#: 네",#Person1#이 인사합니다.,인사\n'
GOOD_TEST = 'fname,dialogue\ntest_0,"#Person1#: 안녕\n#Person2#: 네"\n'


def write_split_dir(tmp_path: Path, dev: bytes | str | None = GOOD_DEV, test: bytes | str | None = GOOD_TEST) -> Path:
    """A data folder with dev.csv/test.csv from the given contents (None: file absent)."""
    data = tmp_path / "data"
    data.mkdir()
    for name, content in (("dev.csv", dev), ("test.csv", test)):
        if content is not None:
            (data / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return data


def run_trivial(data: Path, out: Path) -> subprocess.CompletedProcess:
    """A CLI that reads dev and test and writes outputs: the place bad input must stop cleanly."""
    return subprocess.run([sys.executable, "-m", "competition.trivial", "--data", str(data), "--out", str(out)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True)


BAD_DEV_CASES = {
    "missing file": (None, ["dev.csv", "file not found"]),
    "empty file": ("", ["dev.csv", "file is empty"]),
    "header only": ("fname,dialogue,summary,topic\n", ["dev.csv", "no rows"]),
    "missing column": ("fname,summary,topic\ndev_0,요약,주제\n", ["missing ['dialogue']"]),
    "extra column": ('fname,dialogue,summary,topic,score\ndev_0,"#Person1#: 안녕",요약,주제,1\n', ["unexpected ['score']"]),
    "duplicate fname": ('fname,dialogue,summary\ndev_0,"#Person1#: 안녕",요약\ndev_0,"#Person1#: 네",요약\n',
                        ["row 2", "column 'fname'", "duplicate fname 'dev_0'", "first seen at row 1"]),
    "empty dialogue": ('fname,dialogue,summary\ndev_0,"#Person1#: 안녕",요약\ndev_1,"  ",요약\n',
                       ["row 2", "column 'dialogue'", "empty dialogue", "dev_1"]),
    "empty summary": ('fname,dialogue,summary\ndev_0,"#Person1#: 안녕",\n', ["row 1", "column 'summary'"]),
    "cp949": (GOOD_DEV.encode("cp949"), ["dev.csv", "not valid UTF-8", "CP949", "iconv"]),
    "utf-8 bom": (b"\xef\xbb\xbf" + GOOD_DEV.encode("utf-8"), ["dev.csv", "byte-order mark"]),
    "unclosed quote": ('fname,dialogue,summary\ndev_0,"#Person1#: 안녕\n#Person2#: 네,요약\n', ["malformed CSV", "quotes"]),
    "gapped references": ("fname,dialogue,summary1,summary3\ndev_0,대화,a,b\n", ["summary1", "summary3", "expected"]),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(BAD_DEV_CASES))
def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    content, expected_fragments = BAD_DEV_CASES[case]
    data = write_split_dir(tmp_path, dev=content)
    out = tmp_path / "out"
    result = run_trivial(data, out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in expected_fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.integration
def test_bad_test_file_is_reported_by_name(tmp_path: Path) -> None:
    data = write_split_dir(tmp_path, test="fname,summary\ntest_0,요약\n")
    result = run_trivial(data, tmp_path / "out")
    assert result.returncode == 2
    assert "test.csv" in result.stderr and "missing ['dialogue']" in result.stderr


def test_quoted_newlines_stay_inside_one_row(tmp_path: Path) -> None:
    data = write_split_dir(tmp_path)
    frame = read_split(data / "dev.csv", "dev")
    assert len(frame) == 1
    assert frame.loc[0, "dialogue"] == "#Person1#: 안녕\n#Person2#: 네"
    assert frame.loc[0, "references"] == ["#Person1#이 인사합니다."]


def test_multi_reference_gold_file(tmp_path: Path) -> None:
    path = tmp_path / "gold.csv"
    path.write_text("fname,summary1,summary2,summary3,topic\nt_0,가,나,다,주제\n", encoding="utf-8")
    gold = read_gold(path)
    assert gold.loc[0, "references"] == ["가", "나", "다"]
    assert gold.loc[0, "topic"] == "주제"


def test_text_values_are_kept_verbatim(tmp_path: Path) -> None:
    """pandas would turn 'NA' or 'null' into NaN without dtype=str/keep_default_na=False."""
    path = tmp_path / "dev.csv"
    path.write_text('fname,dialogue,summary\nNA,"#Person1#: null",None\n', encoding="utf-8")
    frame = read_split(path, "dev")
    assert (frame.loc[0, "fname"], frame.loc[0, "dialogue"], frame.loc[0, "summary"]) == ("NA", "#Person1#: null", "None")


def test_special_token_inventory_orders_speakers_numerically() -> None:
    tokens = special_tokens(["#Person10#: 전화 #PhoneNumber#", "#Person2#: #Person1# 씨 #CustomMask#"])
    assert tokens[:3] == ["#Person1#", "#Person2#", "#Person10#"]
    assert "#PhoneNumber#" in tokens and "#CustomMask#" in tokens and "#Email#" in tokens  # known masks always in


def test_inventory_of_the_bundled_sample(sample_dir: Path) -> None:
    frames = [read_split(sample_dir / f"{s}.csv", s) for s in ("train", "dev", "test")]
    tokens = data_special_tokens(frames)
    assert "#Person1#" in tokens and "#Person2#" in tokens and "#PhoneNumber#" in tokens


@pytest.mark.integration
def test_real_competition_files_validate(real_data_dir: Path) -> None:
    dev = read_split(real_data_dir / "dev.csv", "dev")
    test = read_split(real_data_dir / "test.csv", "test")
    assert len(dev) == 499 and len(test) == 499
    assert "#Person1#" in data_special_tokens([dev, test])


def validate_data_cli(data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "competition.validate", "--data", str(data)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True)


@pytest.mark.integration
def test_data_folder_check_lists_files_and_tokens(sample_dir: Path) -> None:
    result = validate_data_cli(sample_dir)
    assert result.returncode == 0, result.stderr
    assert "dev.csv: " in result.stdout and "valid submission format" in result.stdout
    assert "special tokens: #Person1#" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("case", ["cp949", "duplicate fname"])
def test_data_folder_check_of_a_bad_file_is_exit_2_and_one_line(tmp_path: Path, case: str) -> None:
    content, expected_fragments = BAD_DEV_CASES[case]
    result = validate_data_cli(write_split_dir(tmp_path, dev=content))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert all(fragment in result.stderr for fragment in expected_fragments), result.stderr


def test_load_splits_names_every_missing_file_and_keeps_loaded_splits(tmp_path: Path) -> None:
    data = write_split_dir(tmp_path)
    with pytest.raises(DataError, match=r"file not found: train\.csv; expected train\.csv, dev\.csv"):
        load_splits(data)
    splits = load_splits(data, required=("dev",))
    assert list(splits.frames) == ["dev", "test"] and splits["dev"]["references"][0] == ["#Person1#이 인사합니다."]
    assert splits.paths["test"] == data / "test.csv" and "train" not in splits
    assert load_splits(splits, required=("dev", "test")) is splits
    with pytest.raises(DataError, match=r"file not found: train\.csv"):
        load_splits(splits)


def test_prediction_sidecar_writes_only_the_fields_set_and_its_extras() -> None:
    from competition.rules.predictions import FILL_INS, PredictionMeta

    meta = PredictionMeta("dev", "runs/r", "baseline", "kobart", "abc", "runs/r/best", fill_ins=2,
                          extra={"kfold_fold": 1, "cv_dev_score": None})
    assert meta.to_dict() == {"split": "dev", "run_dir": "runs/r", "track": "baseline", "preset": "kobart",
                              "config_hash": "abc", "checkpoint": "runs/r/best", FILL_INS: 2, "kfold_fold": 1,
                              "cv_dev_score": None}
    assert PredictionMeta("test", system="lead").to_dict() == {"split": "test", "system": "lead"}


def test_the_same_predictions_in_nfd_score_as_in_nfc(sample_dir: Path, tmp_path: Path, capsys) -> None:
    """Decomposed Hangul (as macOS tools write) is read as NFC: the score does not move."""
    import json
    import unicodedata

    from competition.score import main

    gold = read_split(sample_dir / "dev.csv", "dev")
    text = gold[["fname", "summary"]].assign(summary=gold["summary"].str[:-3]).to_csv(index=False)
    nfc, nfd = tmp_path / "nfc.csv", tmp_path / "nfd.csv"
    nfc.write_text(text, encoding="utf-8")
    nfd.write_text(unicodedata.normalize("NFD", text), encoding="utf-8")
    scores = {}
    for path in (nfc, nfd):
        assert main(["--pred", str(path), "--gold", str(sample_dir / "dev.csv"), "--json"]) == 0
        scores[path.name] = json.loads(capsys.readouterr().out)["final"]
    assert scores["nfd.csv"] == scores["nfc.csv"] > 0


def test_train_sharing_fnames_or_dialogues_with_dev_or_test_is_counted_in_a_warning(tmp_path: Path, capsys) -> None:
    data = write_split_dir(tmp_path, dev=GOOD_DEV + 'dev_1,"#Person1#: 또 봐요",#Person1#이 작별합니다.,인사\n')
    (data / "train.csv").write_text(
        GOOD_DEV.replace("dev_0", "train_0")  # the same dialogue as dev_0 (and test_0) under another fname
        + 'dev_1,"#Person1#: 다른 대화",#Person1#이 말합니다.,일상\ntrain_2,"#Person1#: 처음",요약,일상\n',
        encoding="utf-8")
    load_splits(data)
    stderr = capsys.readouterr().err
    assert (f"warning: {data / 'train.csv'}: 1 fnames [dev_1] and 1 identical dialogues (fnames in dev.csv: [dev_0]) "
            f"also in {data / 'dev.csv'}; dev scores of a model trained on them are in-sample") in stderr, stderr
    assert (f"warning: {data / 'train.csv'}: 0 fnames [] and 1 identical dialogues (fnames in test.csv: [test_0]) "
            f"also in {data / 'test.csv'}; a model trained on them has seen those dialogues") in stderr, stderr
    load_splits(data, overlap_with=("test",))
    assert "dev.csv; dev scores" not in capsys.readouterr().err


def test_a_dialogue_without_speaker_tags_is_named_in_a_warning(tmp_path: Path, capsys) -> None:
    data = write_split_dir(tmp_path, test=GOOD_TEST + 'test_1,"안녕하세요\n네 반가워요"\n')
    load_splits(data, required=("dev", "test"), optional=())
    assert (f"warning: {data / 'test.csv'}, row 2, column 'dialogue': 1 of 2 dialogues have no speaker tag "
            f"(#Person1#: ...; first: fname 'test_1')") in capsys.readouterr().err


def test_an_fname_with_a_trailing_space_in_test_is_blamed_on_test(tmp_path: Path, capsys) -> None:
    from competition.validate import main

    data = write_split_dir(tmp_path, test=GOOD_TEST.replace("test_0,", "test_0 ,"))
    (data / "sample_submission.csv").write_text(",fname,summary\n0,test_0,요약\n", encoding="utf-8")
    assert main(["--data", str(data)]) == 2
    assert capsys.readouterr().err == (f"error: {data / 'test.csv'}, row 1, column 'fname': fname 'test_0 ' has "
                                       f"leading or trailing spaces; expected the bare fname\n")
