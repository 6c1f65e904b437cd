"""Submission writer, validator CLI and ledger. Run: `.venv/bin/python -m pytest tests/test_submission.py`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from competition.rules.errors import DataError
from competition.rules.files import temp_dir_beside, write_text_atomic
from competition.rules.submission import read_ledger, submission_csv_text, validate_submission, write_submission

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def make_test_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "test.csv"
    pd.DataFrame({"fname": [f"test_{i}" for i in range(n)], "dialogue": ["#Person1#: 안녕"] * n}).to_csv(path, index=False)
    return path


def validate_cli(submission: Path, test: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "competition.validate", str(submission), "--test", str(test)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True)


@pytest.mark.integration
def test_writer_matches_the_real_sample_format(real_data_dir: Path) -> None:
    sample = (real_data_dir / "sample_submission.csv").read_text(encoding="utf-8")
    frame = pd.read_csv(real_data_dir / "sample_submission.csv")
    assert submission_csv_text(frame["fname"], frame["summary"]) == sample


def test_bundled_sample_submission_is_valid(sample_dir: Path) -> None:
    assert validate_submission(sample_dir / "sample_submission.csv", sample_dir / "test.csv") == 60


@pytest.mark.integration
def test_write_is_unique_validated_and_ledgered(tmp_path: Path) -> None:
    test = make_test_file(tmp_path)
    fnames = [f"test_{i}" for i in range(3)]
    first = write_submission(fnames, ["요약 하나.", "요약 둘.", "요약 셋."], test, label="a b", out_dir=tmp_path / "subs",
                             source_runs=["runs/x"], dev_score=47.5, config_hash="abc")
    second = write_submission(fnames, ["다른 요약."] * 3, test, label="a b", out_dir=tmp_path / "subs")
    assert first != second and first.read_text(encoding="utf-8") != second.read_text(encoding="utf-8")
    assert first.read_text(encoding="utf-8").startswith(",fname,summary\n0,test_0,요약 하나.\n")
    ledger = read_ledger(tmp_path / "subs")
    assert list(ledger["name"]) == [first.name, second.name]
    assert ledger.loc[0, "dev_score"] == "47.5000" and ledger.loc[0, "source_runs"] == "runs/x"
    assert validate_cli(first, test).returncode == 0


def test_invalid_submission_is_never_written(tmp_path: Path) -> None:
    test = make_test_file(tmp_path)
    with pytest.raises(DataError, match="row 2, column 'summary'.*empty summary"):
        write_submission(["test_0", "test_1", "test_2"], ["요약.", " ", "요약."], test, out_dir=tmp_path / "subs")
    assert not (tmp_path / "subs").exists()  # not even an empty folder


def test_errors_name_the_submission_not_its_hidden_temp_file(tmp_path: Path) -> None:
    test = make_test_file(tmp_path)
    (tmp_path / "subs").mkdir()
    with pytest.raises(DataError) as raised:
        write_submission(["test_0", "test_1", "test_2"], ["요약.", "</s>", "요약."], test, out_dir=tmp_path / "subs")
    message = str(raised.value)
    assert message.startswith(f"submission {tmp_path / 'subs'}/") and ".tmp" not in message, message
    assert list((tmp_path / "subs").iterdir()) == []


def write_sub(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "sub.csv"
    path.write_bytes(text.encode(encoding))
    return path


GOOD = ",fname,summary\n0,test_0,가.\n1,test_1,나.\n2,test_2,다.\n"
VALIDATOR_CASES = {
    "row count": (",fname,summary\n0,test_0,가.\n1,test_1,나.\n", "2 rows; expected 3"),
    "order": (",fname,summary\n0,test_1,가.\n1,test_0,나.\n2,test_2,다.\n", "row 1, column 'fname': 'test_1'; expected 'test_0'"),
    "unknown fname": (",fname,summary\n0,test_0,가.\n1,test_9,나.\n2,test_2,다.\n", "row 2, column 'fname': 'test_9'"),
    "empty summary": (",fname,summary\n0,test_0,가.\n1,test_1,\n2,test_2,다.\n", "row 2, column 'summary': empty summary"),
    "leftover token": (",fname,summary\n0,test_0,가.</s>\n1,test_1,나.\n2,test_2,다.<pad>\n", "row 1, column 'summary': leftover model tokens ['</s>']"),
    "extra column": ("fname,summary,score\ntest_0,가.,1\ntest_1,나.,1\ntest_2,다.,1\n", "unexpected ['score']"),
    "plain layout, wrong order": ("fname,summary\ntest_1,가.\ntest_0,나.\ntest_2,다.\n",
                                  "row 1, column 'fname': 'test_1'; expected 'test_0'"),
    "duplicate fname": (",fname,summary\n0,test_0,가.\n1,test_0,나.\n2,test_2,다.\n", "duplicate fname 'test_0'"),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(VALIDATOR_CASES))
def test_validator_cli_rejects(tmp_path: Path, case: str) -> None:
    text, message = VALIDATOR_CASES[case]
    result = validate_cli(write_sub(tmp_path, text), make_test_file(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


@pytest.mark.integration
def test_validator_accepts_the_leaderboards_plain_layout(tmp_path: Path) -> None:
    """Submissions the leaderboard scored are plain `fname,summary` CSVs without the sample's index column."""
    test = make_test_file(tmp_path)
    result = validate_cli(write_sub(tmp_path, "fname,summary\ntest_0,가.\ntest_1,나.\ntest_2,다.\n"), test)
    assert result.returncode == 0, result.stderr
    assert "valid submission (3 rows)" in result.stdout


@pytest.mark.integration
def test_validator_cli_rejects_encodings(tmp_path: Path) -> None:
    test = make_test_file(tmp_path)
    assert "not valid UTF-8" in validate_cli(write_sub(tmp_path, GOOD, "cp949"), test).stderr
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    result = validate_cli(bom, test)
    assert result.returncode == 2 and "byte-order mark" in result.stderr
    assert validate_cli(write_sub(tmp_path, GOOD), test).returncode == 0


@pytest.mark.integration
def test_submit_cli_aligns_to_test_order_and_rejects_missing_fnames(tmp_path: Path) -> None:
    test = make_test_file(tmp_path)
    preds = tmp_path / "preds.csv"
    preds.write_text("fname,summary\ntest_2,다.\ntest_0,가.\ntest_1,나.\n", encoding="utf-8")
    out = tmp_path / "subs"
    command = [sys.executable, "-m", "competition.submit", "--pred", str(preds), "--test", str(test), "--out-dir", str(out)]
    assert subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True).returncode == 0
    written = [p for p in out.glob("*.csv") if p.name != "ledger.csv"]
    assert len(written) == 1 and pd.read_csv(written[0])["fname"].tolist() == ["test_0", "test_1", "test_2"]
    preds.write_text("fname,summary\ntest_2,다.\ntest_0,가.\n", encoding="utf-8")
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "1 missing [test_1]" in result.stderr
    assert sorted(p.name for p in out.glob("*.csv")) == sorted([written[0].name, "ledger.csv"])  # nothing new



@pytest.fixture
def restore_umask():
    """Give the test a free hand with the process umask and restore it afterwards."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.parametrize("mask, mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_get_the_umask_permissions(tmp_path: Path, restore_umask, mask: int, mode: int,
                                                 folder_mode: int) -> None:
    os.umask(mask)
    plain = write_text_atomic(tmp_path / "plain.txt", "텍스트\n")
    submission = write_submission([f"test_{i}" for i in range(3)], ["요약."] * 3, make_test_file(tmp_path),
                                  label="perm", out_dir=tmp_path / "subs")
    for path in (plain, submission, tmp_path / "subs" / "ledger.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert not list(tmp_path.rglob(".*.tmp"))
    folder = temp_dir_beside(tmp_path / "checkpoint")  # checkpoints are built in one, then renamed
    assert stat.S_IMODE(folder.stat().st_mode) == folder_mode


def _append_rows(out_dir: str, worker: int, count: int) -> None:
    from competition.rules.submission import LedgerEntry, append_ledger

    for i in range(count):
        append_ledger(out_dir, LedgerEntry(f"w{worker}-{i}.csv"))


def test_concurrent_ledger_appends_keep_every_row(tmp_path: Path) -> None:
    """4 processes appending at once: without the lock, rows were lost (4 x 100 appends kept 127)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_rows, args=(str(tmp_path), w, 40)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(worker.exitcode == 0 for worker in workers)
    assert sorted(read_ledger(tmp_path)["name"]) == sorted(f"w{w}-{i}.csv" for w in range(4) for i in range(40))


def test_a_submission_whose_ledger_row_fails_is_removed(tmp_path: Path) -> None:
    """The ledger cannot be written (here: a folder stands in its place): the new submission is removed again."""
    test = make_test_file(tmp_path)
    subs = tmp_path / "subs"
    (subs / "ledger.csv").mkdir(parents=True)
    with pytest.raises(OSError):
        write_submission(["test_0", "test_1", "test_2"], ["가.", "나.", "다."], test, out_dir=subs)
    assert [p.name for p in subs.iterdir()] == ["ledger.csv"]


def test_a_missing_or_extra_row_is_named_by_its_fname(tmp_path: Path, sample_dir: Path) -> None:
    test = pd.read_csv(sample_dir / "test.csv")
    short = tmp_path / "short.csv"
    pd.DataFrame({"fname": test["fname"].drop(index=[3]), "summary": "요약"}).to_csv(short)
    with pytest.raises(DataError, match=rf"59 rows; expected 60 \(one per test dialogue\): 1 missing \[{test['fname'][3]}\], "
                                        r"0 extra \[\]"):
        validate_submission(short, sample_dir / "test.csv")
    long = tmp_path / "long.csv"
    pd.DataFrame({"fname": [*test["fname"], "test_extra"], "summary": "요약"}).to_csv(long)
    with pytest.raises(DataError, match=r"61 rows; expected 60 \(one per test dialogue\): 0 missing \[\], 1 extra \[test_extra\]"):
        validate_submission(long, sample_dir / "test.csv")
