"""Bad files given to every CLI that reads competition files: data, score, validate, submit, ensemble.

Each case must end with exit code 2 and one `error:` line that names the file (and row where it applies), with no
traceback, and leave no output behind. CRLF files are read (a warning names what keeps a carriage return).
Run: `.venv/bin/python -m pytest -q tests/test_bad_inputs.py`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
N = 6
DATA_CLI = pytest.param("data", marks=pytest.mark.integration)  # the one CLI these tests run as a process
CLIS = (DATA_CLI, "score", "validate", "submit", "ensemble")


def _dev() -> pd.DataFrame:
    return pd.DataFrame({"fname": [f"dev_{i}" for i in range(N)],
                         "dialogue": [f"#Person1#: 사과 {i} 주세요.\n#Person2#: 네 {i}." for i in range(N)],
                         "summary": [f"#Person1#이 사과 {i}를 산다." for i in range(N)],
                         "topic": ["쇼핑"] * N})


def _preds(split: str, system: int) -> pd.DataFrame:
    return pd.DataFrame({"fname": [f"{split}_{i}" for i in range(N)],
                         "summary": [f"#Person1#이 사과 {i + system}를 산다." for i in range(N)]})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Good files: data/dev.csv, data/test.csv, three systems' dev predictions, test predictions."""
    data = tmp_path / "data"
    data.mkdir()
    _dev().to_csv(data / "dev.csv", index=False)
    pd.DataFrame({"fname": [f"test_{i}" for i in range(N)],
                  "dialogue": [f"#Person1#: 배 {i}.\n#Person2#: 네." for i in range(N)]}).to_csv(data / "test.csv", index=False)
    paths = {"data": data, "dev": data / "dev.csv", "test": data / "test.csv"}
    for system in range(3):
        paths[f"sys{system}"] = tmp_path / f"sys{system}_dev.csv"
        _preds("dev", system).to_csv(paths[f"sys{system}"], index=False)
    paths["preds_test"] = tmp_path / "preds_test.csv"
    _preds("test", 0).to_csv(paths["preds_test"], index=False)
    return paths


def xlsx_bytes() -> bytes:
    """A tiny real ZIP archive, as an .xlsx workbook is (starts with `PK`)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def _tsv(text: str) -> bytes:
    return text.replace(",", "\t").encode()


def _repeated_header(text: str) -> bytes:
    return (text + text.splitlines()[0] + "\n").encode()


def _header_only(text: str) -> bytes:
    return (text.splitlines()[0] + "\n").encode()


def _padded_fname(text: str) -> bytes:
    return re.sub(r"^(\w+_0),", r"\1 ,", text, count=1, flags=re.M).encode()


# case -> (make the bad file's bytes from the good text, or None for a folder; fragments of the error line)
BAD_FILES: dict[str, tuple[Callable[[str], bytes] | None, list[str]]] = {
    "tsv": (_tsv, ["tab-separated", "expected a comma-separated CSV"]),
    "xlsx renamed .csv": (lambda text: xlsx_bytes(), ["Excel .xlsx", "export it", "CSV UTF-8"]),
    "directory": (None, ["is a directory", "expected a CSV file"]),
    "repeated header": (_repeated_header, [f"row {N + 1}", "repeats the header"]),
    "empty (header only)": (_header_only, ["has a header but no rows"]),
    "fname with a trailing space": (_padded_fname, ["row 1, column 'fname'", "_0 ' has leading or trailing spaces"]),
}


def bad_target(cli: str, files: dict[str, Path]) -> Path:
    """The file each CLI is given the bad version of."""
    return {"data": files["dev"], "score": files["sys0"], "validate": files["preds_test"],
            "submit": files["preds_test"], "ensemble": files["sys0"]}[cli]


def run_cli(cli: str, files: dict[str, Path], out: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run one CLI on the files (in-process, except `data` whose `python -m` entry is what users run)."""
    if cli == "data":
        done = subprocess.run([sys.executable, "-m", "competition.validate", "--data", str(files["data"])],
                              cwd=PROJECT_ROOT, capture_output=True, text=True)
        return done.returncode, done.stderr
    if cli == "score":
        from competition.score import main
        code = main(["--pred", str(files["sys0"]), "--gold", str(files["dev"]), "--report", str(out)])
    elif cli == "validate":
        from competition.validate import main
        code = main([str(files["preds_test"]), "--test", str(files["test"])])
    elif cli == "submit":
        from competition.submit import main
        code = main(["--pred", str(files["preds_test"]), "--test", str(files["test"]), "--out-dir", str(out)])
    else:
        from ensemble.__main__ import main
        code = main(["--preds", str(files["sys0"]), str(files["sys1"]), str(files["sys2"]), "--gold",
                     str(files["dev"]), "--method", "mbr", "--out", str(out)])
    return code, capsys.readouterr().err


def assert_one_error_line(code: int, stderr: str, path: Path, fragments: list[str]) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert str(path) in errors[0], errors[0]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("cli", CLIS)
def test_bad_file_is_one_error_line_and_leaves_nothing(cli: str, case: str, files: dict[str, Path],
                                                       tmp_path: Path, capsys) -> None:
    make, fragments = BAD_FILES[case]
    target = bad_target(cli, files)
    good = target.read_text(encoding="utf-8")
    target.unlink()
    if make is None:
        target.mkdir()
    else:
        target.write_bytes(make(good))
    out = tmp_path / "out"
    code, stderr = run_cli(cli, files, out, capsys)
    assert_one_error_line(code, stderr, target, fragments)
    assert not out.exists()


@pytest.mark.parametrize("cli", CLIS)
def test_crlf_file_is_read_and_a_kept_carriage_return_is_named(cli: str, files: dict[str, Path], tmp_path: Path,
                                                              capsys) -> None:
    target = bad_target(cli, files)
    target.write_bytes(target.read_bytes().replace(b"\n", b"\r\n"))  # every line ending, also inside quotes
    code, stderr = run_cli(cli, files, tmp_path / "out", capsys)
    assert code == 0, stderr
    assert "error:" not in stderr
    if cli == "data":  # multi-line dialogues keep "\r" inside their quotes: said once, with file, row and column
        assert f"warning: {target}, row 1, column 'dialogue': {N} values keep '\\r'" in stderr, stderr


def test_crlf_row_endings_do_not_reach_the_values(files: dict[str, Path]) -> None:
    from competition.rules.data import read_predictions

    path = files["sys0"]
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    frame = read_predictions(path)
    assert not frame["summary"].str.contains("\r").any() and list(frame.columns) == ["fname", "summary"]


@pytest.mark.parametrize("cli", CLIS)
def test_unreadable_file_names_the_file_and_the_reason(cli: str, files: dict[str, Path], tmp_path: Path,
                                                       capsys, monkeypatch) -> None:
    """Permission denied, simulated in-process (the tests run as root, who can read anything)."""
    if cli == "data":
        pytest.skip("in-process only; the chmod test below covers the data CLI where it can")
    target = bad_target(cli, files)
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, stderr = run_cli(cli, files, tmp_path / "out", capsys)
    assert_one_error_line(code, stderr, target, ["Permission denied"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cli", CLIS)
def test_chmod_000_file_names_the_file_and_the_reason(cli: str, files: dict[str, Path], tmp_path: Path,
                                                      capsys) -> None:
    target = bad_target(cli, files)
    target.chmod(0)
    if os.access(target, os.R_OK):
        pytest.skip("this user (root) can read a chmod 000 file")
    code, stderr = run_cli(cli, files, tmp_path / "out", capsys)
    assert_one_error_line(code, stderr, target, ["Permission denied"])


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 1 MiB tmpfs filled to the last byte (skips where tmpfs cannot be mounted: not root, no capability)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(mount / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
    except OSError:
        pass
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.integration
@pytest.mark.parametrize("cli", ["score", "submit", "ensemble"])
def test_full_disk_is_one_error_line_and_leaves_nothing(cli: str, files: dict[str, Path], full_disk: Path,
                                                        capsys) -> None:
    out = full_disk / "out"
    code, stderr = run_cli(cli, files, out, capsys)
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert str(out) in errors[0] and "No space left on device" in errors[0], errors[0]
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_empty_summaries_are_scored_with_a_warning_naming_the_first_row(files: dict[str, Path], capsys) -> None:
    from competition.score import main

    frame = pd.read_csv(files["sys0"])
    frame.loc[[2, 4], "summary"] = ""
    frame.to_csv(files["sys0"], index=False)
    assert main(["--pred", str(files["sys0"]), "--gold", str(files["dev"])]) == 0
    stderr = capsys.readouterr().err
    assert f"warning: {files['sys0']}, row 3, column 'summary': 2 of {N} summaries are empty" in stderr, stderr


def test_a_very_long_text_is_named_in_a_warning(files: dict[str, Path], capsys) -> None:
    from competition.rules.data import read_split

    frame = _dev()
    frame.loc[1, "dialogue"] = "#Person1#: " + "가" * 100_000
    frame.to_csv(files["dev"], index=False)
    read_split(files["dev"], "dev")
    assert f"warning: {files['dev']}, row 2, column 'dialogue': 100011 characters" in capsys.readouterr().err


def _with_summaries(text: str, summaries: dict[int, str]) -> bytes:
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    for row, summary in summaries.items():
        frame.loc[row, "summary"] = summary
    return frame.to_csv(index=False).encode()


# case -> (make a predictions file's bytes from the good text; fragments of the one `error:` line of validate and
# submit, which refuse it as a submission; fragments of the `warning:` score and ensemble print reading it)
PLACEHOLDER_SUMMARIES: dict[str, tuple[Callable[[str], bytes], list[str], list[str]]] = {
    "NaN and None": (lambda text: _with_summaries(text, {1: "NaN", 3: "None"}),
                     ["2 summaries are placeholders or numbers", "rows 2 (fname 'test_1': 'NaN'), 4 (fname 'test_3'"],
                     ["2 of 6 summaries are placeholders or numbers", "2 (fname 'dev_1': 'NaN')"]),
    "null, N/A, nan": (lambda text: _with_summaries(text, {0: "null", 2: " N/A ", 5: "nan"}),
                       ["3 summaries are placeholders", "rows 1 (fname 'test_0': 'null')", "6 (fname 'test_5': 'nan')"],
                       ["3 of 6 summaries are placeholders"]),
    "a column of numbers": (lambda text: _with_summaries(text, {i: str(i * 7) for i in range(N)}),
                            ["6 summaries are placeholders or numbers, not text (every row: the wrong column?)"],
                            ["6 of 6 summaries are placeholders or numbers"]),
}


@pytest.mark.parametrize("case", sorted(PLACEHOLDER_SUMMARIES))
@pytest.mark.parametrize("cli", ["score", "validate", "submit", "ensemble"])
def test_placeholder_summaries_are_refused_in_a_submission_and_warned_in_predictions(
        cli: str, case: str, files: dict[str, Path], tmp_path: Path, capsys) -> None:
    make, error_fragments, warning_fragments = PLACEHOLDER_SUMMARIES[case]
    target = bad_target(cli, files)
    target.write_bytes(make(target.read_text(encoding="utf-8")))
    out = tmp_path / "out"
    code, stderr = run_cli(cli, files, out, capsys)
    if cli in ("validate", "submit"):
        assert_one_error_line(code, stderr, target, error_fragments)
        assert not out.exists()
        return
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith(f"warning: {target}") and "placeholder" in line]
    assert len(warnings) == 1, stderr
    for fragment in warning_fragments:
        assert fragment in warnings[0], (fragment, warnings[0])


def _nfd(text: str) -> bytes:
    return unicodedata.normalize("NFD", text).encode()


@pytest.mark.parametrize("cli", CLIS)
def test_decomposed_hangul_is_read_as_nfc_with_one_warning_naming_the_file(cli: str, files: dict[str, Path],
                                                                          tmp_path: Path, capsys) -> None:
    target = bad_target(cli, files)
    target.write_bytes(_nfd(target.read_text(encoding="utf-8")))
    out = tmp_path / "out"
    code, stderr = run_cli(cli, files, out, capsys)
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if "NFC" in line]
    assert warnings == [f"warning: {target}, row 1: {N} of {N} rows were not in Unicode NFC (decomposed Hangul, "
                        f"as macOS tools write); read as NFC"], stderr
    if cli == "submit":  # what is written is NFC
        written = [p for p in out.iterdir() if p.name != "ledger.csv"]
        assert len(written) == 1 and unicodedata.is_normalized("NFC", written[0].read_text(encoding="utf-8"))


def test_model_output_with_carriage_returns_is_named_by_its_file_without_dos2unix(files: dict[str, Path],
                                                                                  tmp_path: Path, capsys) -> None:
    """Summaries holding '\r' (model output): each warning names the predictions file or the written submission,
    never the submission's hidden temp copy, and gives no `dos2unix` advice."""
    target = files["preds_test"]
    target.write_bytes(_with_summaries(target.read_text(encoding="utf-8"), {2: "첫 줄\r\n둘째 줄"}))
    code, stderr = run_cli("submit", files, tmp_path / "out", capsys)
    assert code == 0, stderr
    written = next(p for p in (tmp_path / "out").iterdir() if p.name != "ledger.csv")
    warnings = [line for line in stderr.splitlines() if "\\r" in line]
    said = "row 3, column 'summary': 1 values keep '\\r': the summaries hold carriage returns; strip them before submitting"
    assert warnings == [f"warning: {target}, {said}", f"warning: {written}, {said}"], stderr


def test_a_file_read_twice_by_one_command_warns_once(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    """submit reads test.csv, then again to validate the submission: its long-dialogue warning prints once."""
    frame = pd.read_csv(files["test"], dtype=str)
    frame.loc[1, "dialogue"] = "#Person1#: " + "가" * 30_000
    frame.to_csv(files["test"], index=False)
    code, stderr = run_cli("submit", files, tmp_path / "out", capsys)
    assert code == 0, stderr
    assert len([line for line in stderr.splitlines() if "characters (over" in line]) == 1, stderr


# Settings with a closed set of values or a range, refused when the config resolves (before any run folder):
# (track CLI, override, fragments of the one error line; transformers' names where they apply)
BAD_SETTINGS = [
    ("baselines", "num_beams=-1", ["num_beams=-1", "expected int >= 1"]),
    ("baselines", "per_device_train_batch_size=0", ["per_device_train_batch_size=0", "expected int >= 1"]),
    ("baselines", "lr_scheduler_type=cosine_with_restart", ["'cosine_with_restart'", "'cosine_with_restarts'"]),
    ("baselines", "analyzer=kiwi", ["analyzer='kiwi'", "'mecab'"]),
    ("baselines", "warmup_ratio=1.5", ["warmup_ratio=1.5", "expected float >= 0 and <= 1"]),
    ("baselines", "torch_compile_mode=fast", ["torch_compile_mode='fast'", "'reduce-overhead'"]),
    ("llm", "num_beams=-1", ["num_beams=-1", "expected int >= 1"]),
    ("llm", "per_device_train_batch_size=0", ["per_device_train_batch_size=0", "expected int >= 1"]),
    ("llm", "lr_scheduler_type=cosine_with_restart", ["'cosine_with_restart'", "'cosine_with_restarts'"]),
    ("llm", "optim=adamw8bit", ["optim='adamw8bit'", "'auto'", "'adamw_8bit'", "'paged_adamw_8bit'"]),
    ("llm", "lora_dropout=2", ["lora_dropout=2", "expected float >= 0 and <= 1"]),
    ("llm", "max_new_tokens=0", ["max_new_tokens=0", "expected int >= 1"]),
]


@pytest.mark.parametrize("print_config", [False, True], ids=["run", "print-config"])
@pytest.mark.parametrize(("track", "override", "fragments"), BAD_SETTINGS, ids=lambda v: v if "=" in str(v) else None)
def test_a_setting_out_of_its_values_is_one_error_line_before_any_run(track: str, override: str, fragments: list[str],
                                                                     print_config: bool, tmp_path: Path,
                                                                     capsys) -> None:
    import importlib

    main = importlib.import_module(f"{track}.run").main
    model = "tiny-bart" if track == "baselines" else "tiny-llama"
    out = tmp_path / "runs"
    code = main(["--model", model, "--data", str(tmp_path / "data"), "--out", str(out), override,
                 *(["--print-config"] if print_config else [])])
    stderr = capsys.readouterr().err
    assert code == 2 and "Traceback" not in stderr, stderr
    (error,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: command line: "), error
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    assert not out.exists()


def test_torch_compile_mode_off_in_a_yaml_is_taken_as_off(tmp_path: Path) -> None:
    """YAML 1.1 reads an unquoted `off` as the boolean false."""
    from baselines.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("torch_compile_mode: off\n", encoding="utf-8")
    assert load_config("tiny-bart", path).torch_compile_mode == "off"


def test_the_closed_sets_are_transformers_names() -> None:
    from typing import get_args

    from transformers import SchedulerType
    from transformers.training_args import OptimizerNames

    from competition.harness.config import OptimizerName, SchedulerName

    assert set(get_args(SchedulerName)) == {s.value for s in SchedulerType}
    assert set(get_args(OptimizerName)) == {o.value for o in OptimizerNames}


# A full disk while a track saves a checkpoint, as each track's library reports it (neither is an OSError):
# case -> (track CLI package, tiny preset, Python that makes the library raise its own error at save time)
FULL_DISK_AT_SAVE = {
    "baseline safetensors": ("baselines", "tiny-bart", """
import transformers.modeling_utils
from safetensors import SafetensorError
def save(*args, **kwargs):
    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
transformers.modeling_utils.safe_save_file = save
"""),
    "llm torch.save": ("llm", "tiny-llama", """
import torch
real_save = torch.save
def save(obj, f, *args, **kwargs):
    if str(f).endswith("optimizer.pt"):  # the Trainer's optimizer state, after the LoRA weights
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8689664 vs 8689552")
    return real_save(obj, f, *args, **kwargs)
torch.save = save
"""),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(FULL_DISK_AT_SAVE))
def test_full_disk_during_a_checkpoint_save_is_one_error_line(case: str, tmp_path: Path) -> None:
    from helpers.data import sample_rows, write_data_dir

    from competition.harness.presets import get_preset
    from competition.modeling.tiny import ensure_tiny_checkpoint

    package, model, inject = FULL_DISK_AT_SAVE[case]
    ensure_tiny_checkpoint(get_preset(model))  # built here, so the injected failure meets the run's own saves
    data = write_data_dir(tmp_path / "data", sample_rows("train", 8), sample_rows("dev", 4), sample_rows("test", 3))
    script = f"import sys\n{inject}\nfrom {package}.run import main\nsys.exit(main(sys.argv[1:]))\n"
    done = subprocess.run([sys.executable, "-c", script, "--model", model, "--data", str(data), "--out",
                           str(tmp_path / "runs"), "--submissions", str(tmp_path / "s"), "--demo", "num_train_epochs=1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line[line.index("error:"):] for line in done.stderr.splitlines() if "error:" in line]  # after a bar
    assert len(errors) == 1, done.stderr[-3000:]
    (checkpoint,) = (tmp_path / "runs").glob("*/checkpoints/checkpoint-*")
    assert errors[0] == f"error: {checkpoint}: No space left on device", errors[0]
    assert not (checkpoint / "COMPLETE").exists()  # a resumed run skips the checkpoint cut short
    assert not (tmp_path / "s").exists()
