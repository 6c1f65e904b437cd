"""Truncation report: counts agree with a direct count through the prompt builder; CLI outputs and errors.

Run: `.venv/bin/python -m pytest -q tests/test_truncation.py`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from helpers import SAMPLE_DIR

from competition.harness.presets import get_preset, preset_names
from competition.modeling.prompts import encode_continuation, encode_for_generation, prompt_style_for, scaffold_for
from competition.modeling.tiny import ensure_tiny_checkpoint
from competition.rules.data import data_special_tokens, read_split
from competition.truncation import (
    REPORT_JSON,
    REPORT_MARKDOWN,
    REPORT_PLOT,
    count_truncation,
    main,
    truncation_report,
    write_truncation_report,
)

MAX_LENGTHS = (128, 256)


def test_count_truncation_by_hand():
    counts = count_truncation([10, 20, 30, 40], 25)
    assert counts["rows"] == 4 and counts["cut_rows"] == 2 and counts["cut_fraction"] == 0.5
    assert counts["tokens_cut_total"] == 20 and counts["tokens_cut_mean"] == 10.0
    assert counts["tokens_cut_max"] == 15 and counts["tokens_cut_p50"] == 10.0
    assert count_truncation([5, 25], 25)["cut_rows"] == 0


def fresh_tokenizer(preset_name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ensure_tiny_checkpoint(get_preset(preset_name))))


@pytest.fixture(scope="module")
def llm_report():
    """The report of tiny-llama on the bundled sample, with a short target so some summaries exceed it."""
    preset = dataclasses.replace(get_preset("tiny-llama"), max_target_length=20)
    return preset, truncation_report(fresh_tokenizer("tiny-llama"), preset, SAMPLE_DIR, MAX_LENGTHS, progress=False)


def test_llm_counts_match_the_prompt_builder(llm_report):
    """Every number for dev equals what encode_for_generation / encode_continuation report row by row."""
    preset, result = llm_report
    tokenizer = fresh_tokenizer("tiny-llama")
    dev = read_split(SAMPLE_DIR / "dev.csv", "dev")
    frames = [read_split(SAMPLE_DIR / f"{s}.csv", s) for s in ("train", "dev", "test")]
    tokenizer.add_tokens(data_special_tokens(frames))
    section = result.report["splits"]["dev"]
    assert section["rows"] == len(dev)
    for max_length in MAX_LENGTHS:
        style = prompt_style_for(preset, max_length=max_length + preset.max_target_length)
        cuts = [encode_for_generation(tokenizer, style, d).dialogue_tokens_cut for d in dev["dialogue"]]
        counts = section["by_max_length"][str(max_length)]
        assert counts["cut_rows"] == sum(c > 0 for c in cuts) > 0
        dropped = counts["dropped_by_cut_mode"]
        assert dropped["cut_rows"] == counts["cut_rows"]
        assert dropped["tokens_dropped_max"] == max(cuts)
        assert dropped["tokens_dropped_mean"] == pytest.approx(sum(cuts) / sum(c > 0 for c in cuts))
        assert dropped["tokens_dropped_mean"] >= counts["tokens_cut_mean"]  # whole turns: at least the overflow
    uncut = prompt_style_for(preset, max_length=10_000)
    suffix = len(scaffold_for(tokenizer, uncut).suffix_ids)
    longest = max(len(encode_for_generation(tokenizer, uncut, d).input_ids) for d in dev["dialogue"])
    assert section["prompt_length"]["max"] == longest + suffix
    summary_lengths = [len(encode_continuation(tokenizer, s)) for s in dev["summary"]]
    assert section["summaries"]["count"] == len(dev)
    assert section["summaries"]["over_target"] == sum(n > 20 for n in summary_lengths) > 0
    total = sum(result.report["splits"][s]["rows"] for s in ("train", "dev", "test"))
    assert result.report["splits"]["all"]["rows"] == total
    assert "summaries" not in result.report["splits"]["test"]


def test_report_files_are_written(llm_report, tmp_path):
    _, result = llm_report
    out = write_truncation_report(result, tmp_path / "report")
    assert sorted(p.name for p in out.iterdir()) == sorted([REPORT_JSON, REPORT_MARKDOWN, REPORT_PLOT])
    assert json.loads((out / REPORT_JSON).read_text(encoding="utf-8")) == result.report
    text = (out / REPORT_MARKDOWN).read_text(encoding="utf-8")
    dev_128 = result.report["splits"]["dev"]["by_max_length"]["128"]
    assert f"| 128 | {dev_128['cut_rows']} | {100 * dev_128['cut_fraction']:.2f} |" in text
    assert (out / REPORT_PLOT).read_bytes()[:4] == b"\x89PNG"


def test_seq2seq_lengths_are_encoder_tokens():
    tokenizer = fresh_tokenizer("tiny-bart")
    result = truncation_report(tokenizer, get_preset("tiny-bart"), SAMPLE_DIR, [128], progress=False)
    dev = read_split(SAMPLE_DIR / "dev.csv", "dev")
    lengths = [len(ids) for ids in tokenizer(list(dev["dialogue"]))["input_ids"]]
    counts = result.report["splits"]["dev"]["by_max_length"]["128"]
    assert counts["cut_rows"] == sum(n > 128 for n in lengths)
    assert counts["tokens_cut_total"] == sum(max(0, n - 128) for n in lengths)
    assert "dropped_by_cut_mode" not in counts


def test_cli_writes_the_report(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE_DIR / "dev.csv", data / "dev.csv")
    code = main(["--model", "tiny-neox", "--data", str(data), "--maxlen", "256,128", "--out", str(tmp_path / "out"),
                 "--no-progress"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "tiny-neox" / REPORT_JSON).read_text(encoding="utf-8"))
    assert report["max_lengths"] == [128, 256] and list(report["splits"]) == ["dev", "all"]
    assert "max length 128:" in capsys.readouterr().out


def test_cli_unknown_model_lists_every_preset(tmp_path, capsys):
    assert main(["--model", "no-such-model", "--data", str(SAMPLE_DIR), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no-such-model" in error and all(name in error for name in preset_names())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--maxlen", "512,abc"], "--maxlen '512,abc': expected comma-separated positive integers"),
    (["--tokenizer", "/nonexistent/tok"], "--tokenizer /nonexistent/tok: not a folder"),
    (["--data", "/nonexistent/data"], "/nonexistent/data: no train.csv, dev.csv or test.csv"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, argv, message):
    base = {"--model": "tiny-llama", "--data": str(SAMPLE_DIR), "--out": str(tmp_path / "out")}
    base.update(dict(zip(argv[::2], argv[1::2])))
    assert main([x for pair in base.items() for x in pair] + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_local_tokenizer_writes_to_the_models_folder_and_other_data_is_not_overwritten(tmp_path, capsys):
    tokenizer = str(ensure_tiny_checkpoint(get_preset("tiny-neox")))
    first, second = tmp_path / "data", tmp_path / "other"
    for folder, rows in ((first, 8), (second, 5)):
        folder.mkdir()
        read_split(SAMPLE_DIR / "dev.csv", "dev").head(rows).drop(columns="references").to_csv(folder / "dev.csv",
                                                                                               index=False)
    argv = ["--model", "tiny-neox", "--tokenizer", tokenizer, "--maxlen", "128", "--out", str(tmp_path / "out"),
            "--no-progress"]
    assert main([*argv, "--data", str(first)]) == 0
    report = tmp_path / "out" / "tiny-neox" / REPORT_JSON
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tiny-neox"]
    assert main([*argv, "--data", str(first)]) == 0  # the same data again: the report is refreshed
    capsys.readouterr()
    assert main([*argv, "--data", str(second)]) == 2
    assert capsys.readouterr().err == (f"error: {report}: holds the report of data_dir '{first}', not '{second}'; "
                                       f"expected the same data_dir to replace it: pass --out DIR (make: OUT=DIR) to "
                                       f"keep both, or delete {report.parent}\n")
    assert json.loads(report.read_text(encoding="utf-8"))["splits"]["dev"]["rows"] == 8


@pytest.mark.integration
def test_make_truncation_passes_a_local_tokenizer_and_the_default_max_lengths(tmp_path):
    from test_readme_commands import make_dry_run

    (line,) = [line for line in make_dry_run(["truncation", "MODEL=tiny-neox", "TOKENIZER=/models/tok"])
               if "-m competition.truncation" in line]
    assert line.split()[1:] == ["-m", "competition.truncation", "--model", "tiny-neox", "--data", "data", "--maxlen",
                                "512,768,1024,2048", "--out", "reports/truncation", "--tokenizer", "/models/tok"]
