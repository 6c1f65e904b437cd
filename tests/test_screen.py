"""Screening base models (`llm.screen`, `make screen`): few-shot prompts within the budget, example choice, the
ranked table, and the whole command on two tiny families. Run: `.venv/bin/python -m pytest -q tests/test_screen.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from helpers import PROJECT_ROOT
from helpers.data import sample_frames, sample_rows, write_data_dir

from competition.harness.presets import get_preset
from competition.modeling.prompts import (
    encode_continuations,
    encode_few_shot_prompt,
    encode_for_generation,
    few_shot_scaffold,
    prepare_tokenizer,
    prompt_style_for,
    render_prompt_text,
    resolve_template,
    scaffold_for,
    split_turns,
)
from competition.modeling.tiny import ensure_tiny_checkpoint
from competition.rules.data import data_special_tokens
from competition.rules.errors import ConfigError
from llm import screen

FAMILIES = ("tiny-llama", "tiny-qwen3", "tiny-neox")  # Llama 3 and ChatML chat templates, and the fallback one


@functools.lru_cache(maxsize=None)
def tokenizer_and_style(preset_name: str, prepared: bool = True):
    """A tiny preset's tokenizer (with the data tags as whole tokens when `prepared`) and its prompt style."""
    from transformers import AutoTokenizer

    preset = get_preset(preset_name)
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_tiny_checkpoint(preset)))
    style = resolve_template(prompt_style_for(preset), tokenizer)
    if prepared:
        prepare_tokenizer(tokenizer, style, data_special_tokens(sample_frames()))
    return tokenizer, style


def train_examples(n: int) -> list[tuple[str, str]]:
    train = sample_frames()[0]
    return [(train["dialogue"][i], train["summary"][i]) for i in range(n)]


def flat(turns) -> list[int]:
    return [i for turn in turns for i in turn]


@pytest.mark.parametrize("preset", FAMILIES)
def test_no_examples_is_the_track_prompt(preset: str) -> None:
    tokenizer, style = tokenizer_and_style(preset, prepared=False)
    for dialogue in sample_frames()[1]["dialogue"][:5]:
        prompt = encode_few_shot_prompt(tokenizer, style, dialogue, [])
        assert prompt.input_ids == encode_for_generation(tokenizer, style, dialogue).input_ids
        assert (prompt.examples_used, prompt.examples_dropped, prompt.example_tokens_cut) == (0, 0, 0)


@pytest.mark.parametrize("preset", FAMILIES)
def test_examples_are_earlier_turns_of_the_rendered_template(preset: str) -> None:
    """With room for everything, the pieces give exactly the tokens of the template rendered with the examples:
    chat templates show each example as a user turn and the assistant's answer, the fallback template repeated."""
    tokenizer, style = tokenizer_and_style(preset)
    style = dataclasses.replace(style, max_length=4000)
    examples = train_examples(2)
    dialogue = sample_frames()[1]["dialogue"][0]
    prompt = encode_few_shot_prompt(tokenizer, style, dialogue, examples)
    text = render_prompt_text(tokenizer, style, dialogue, examples)
    assert prompt.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert (prompt.examples_used, prompt.examples_dropped, prompt.dialogue_tokens_cut) == (2, 0, 0)
    assert text.count(style.instruction) == 3 and text.index(examples[1][1]) < text.index(dialogue)
    if style.template == "chat":
        terminator = tokenizer.decode(scaffold_for(tokenizer, style).terminator_ids)
        assert examples[0][1] + terminator in text  # the summary is the assistant's whole turn
    else:
        assert text.endswith(style.fallback_template.format(instruction=style.instruction, dialogue=dialogue))


@pytest.mark.parametrize("preset", FAMILIES)
def test_examples_are_cut_before_the_dialogue_and_every_cut_is_counted(preset: str) -> None:
    """Shrinking budgets: all examples whole, then whole examples dropped from the last, then the one left shortened,
    and only with none left is the dialogue cut; the instruction and the assistant header always stay whole."""
    tokenizer, style = tokenizer_and_style(preset)
    examples = train_examples(3)
    dialogue = sample_frames()[1]["dialogue"][1]
    dialogue_ids = flat(encode_continuations(tokenizer, split_turns(dialogue)))
    lengths = [len(flat(encode_continuations(tokenizer, split_turns(d)))) + len(encode_continuations(tokenizer, [s])[0])
               for d, s in examples]
    reserved = style.max_target_length + len(scaffold_for(tokenizer, style).suffix_ids)

    def encode(prompt_budget: int):
        fitted = dataclasses.replace(style, max_length=prompt_budget + reserved)
        return fitted, encode_few_shot_prompt(tokenizer, fitted, dialogue, examples)

    def needed(k: int) -> int:  # prompt tokens of the first k examples, whole, and the dialogue
        return few_shot_scaffold(tokenizer, style, k).fixed_length + sum(lengths[:k]) + len(dialogue_ids)

    cases = [(needed(3), (3, 0, False, False)), (needed(3) - 1, (2, 1, False, False)),
             (needed(2) - 1, (1, 2, False, False)), (needed(1) - 5, (1, 2, True, False)),
             (needed(0) - 3, (0, 3, False, True))]
    for prompt_budget, (used, dropped, shortened, dialogue_cut) in cases:
        fitted, prompt = encode(prompt_budget)
        pieces = few_shot_scaffold(tokenizer, fitted, prompt.examples_used)
        assert len(prompt.input_ids) <= prompt_budget
        assert prompt.input_ids[:len(pieces.head_ids)] == list(pieces.head_ids)  # instruction whole
        assert prompt.input_ids[-len(pieces.tail_ids):] == list(pieces.tail_ids)  # assistant header whole
        assert (prompt.examples_used, prompt.examples_dropped) == (used, dropped), prompt_budget
        assert (prompt.example_tokens_cut > 0) == shortened, prompt_budget
        assert (prompt.dialogue_tokens_cut > 0) == dialogue_cut, prompt_budget
        if not dialogue_cut:  # the whole dialogue sits right before the assistant header
            end = len(prompt.input_ids) - len(pieces.tail_ids)
            assert prompt.input_ids[end - len(dialogue_ids):end] == dialogue_ids
        if shortened:  # its dialogue was cut, its summary stays whole
            summary_ids = encode_continuations(tokenizer, [examples[0][1]])[0]
            assert any(prompt.input_ids[i:i + len(summary_ids)] == summary_ids for i in range(len(prompt.input_ids)))


def test_examples_come_from_the_same_topic_then_the_closest_dialogues() -> None:
    train = ["#Person1#: 택배가 아직 안 왔어요.", "#Person1#: 호텔 체크인은 몇 시인가요?", "#Person1#: 택배 배송 조회를 하고 싶어요.",
             "#Person1#: 오늘 날씨가 좋네요.", "#Person1#: 택배가 아직 안 왔어요."]
    topics = ["택배", "호텔", "택배", "날씨", "택배"]
    query = "#Person1#: 택배가 아직 안 왔어요."
    # same topic first (rows 0, 2, 4, but never the dialogue itself), then the closest of the rest
    chosen = screen.rank_examples([query], train, 3, ["택배"], topics)[0]
    assert chosen[0] == 2 and sorted(chosen[1:]) == [1, 3]
    # without a topic (test rows): the closest by morphemes, ties in train order
    hotel = "#Person2#: 호텔 체크인은 오후 세 시예요."
    assert screen.rank_examples([hotel], train, 1)[0] == [1]
    assert screen.rank_examples([hotel], train, 2) == screen.rank_examples([hotel], train, 2)
    assert screen.rank_examples([hotel], train, 0) == [[]]


def test_the_table_ranks_best_score_first() -> None:
    rows = [{"preset": "b", "shots": 1, "score": 30.0}, {"preset": "a", "shots": 0, "score": 41.5},
            {"preset": "a", "shots": 1, "score": 30.0}]
    table = screen.ranked(rows)
    assert [(r["rank"], r["preset"], r["shots"]) for r in table] == [(1, "a", 0), (2, "a", 1), (3, "b", 1)]


def test_model_path_names_one_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="--model-dir"):
        screen.screen_configs(["tiny-llama", "tiny-qwen3"], {"model_path": str(tmp_path)}, None)
    with pytest.raises(ConfigError, match="tiny-qwen3"):
        screen.screen_configs(["tiny-qwen3"], {}, tmp_path)
    folder = tmp_path / "tiny-llama"
    shutil.copytree(ensure_tiny_checkpoint(get_preset("tiny-llama")), folder)
    (config,) = screen.screen_configs(["tiny-llama"], {"max_new_tokens": 8}, tmp_path)
    assert (config.model_path, config.max_new_tokens) == (str(folder), 8)
    assert screen.main(["--models", "tiny-llama", "--shots", "0,x", "--data", str(tmp_path)]) == 2
    assert "--shots '0,x'" in capsys.readouterr().err


@pytest.mark.integration
def test_screen_tiny_presets_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    """Two families, 0 and 1 shot, dev and test: the ranked table, its plot, predictions the ensembler reads; a
    rerun skips finished folders, an interrupted one continues its predictions, other settings are refused."""
    import llm.generate
    import llm.model
    from ensemble.__main__ import main as ensemble_main

    data = write_data_dir(tmp_path / "data", sample_rows("train", 300), sample_rows("dev", 6), sample_rows("test", 4))
    out = tmp_path / "screen"
    dry_run = subprocess.run(["make", "-n", "screen", "MODELS=tiny-llama,tiny-qwen3", "SHOTS=0,1", f"DATA={data}",
                              f"RUNS={tmp_path}", "ARGS=--test max_new_tokens=8", "PY=python"],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    (command,) = [line for line in dry_run.replace("\\\n", " ").splitlines() if " -m llm.screen " in line]
    argv = shlex.split(command)[3:]  # what `make screen` runs, after `python -m llm.screen`
    assert argv == ["--models", "tiny-llama,tiny-qwen3", "--shots", "0,1", "--data", str(data), "--out", str(out),
                    "--test", "max_new_tokens=8"]
    generated_prompt_lengths: list[int] = []  # what the model was given: the few-shot prompts, not the track's own
    new_tokens = llm.generate._new_tokens

    def spy(model, inputs, *args, **kwargs):
        generated_prompt_lengths.extend(inputs["attention_mask"].sum(dim=1).tolist())
        return new_tokens(model, inputs, *args, **kwargs)

    monkeypatch.setattr(llm.generate, "_new_tokens", spy)
    assert screen.main(argv) == 0
    table = json.loads((out / "screen.json").read_text(encoding="utf-8"))["rows"]
    longest = {r["shots"]: max(r["prompt_tokens_max"], r["test_prompt_tokens_max"]) for r in table
               if r["preset"] == "tiny-qwen3"}
    assert max(generated_prompt_lengths) >= longest[1] > longest[0]
    assert [r["rank"] for r in table] == [1, 2, 3, 4]
    assert [r["score"] for r in table] == sorted((r["score"] for r in table), reverse=True)
    by_job = {(r["preset"], r["shots"]): r for r in table}
    assert set(by_job) == {(p, k) for p in ("tiny-llama", "tiny-qwen3") for k in (0, 1)}
    for preset in ("tiny-llama", "tiny-qwen3"):  # the example changes the prompt, within the budget
        zero, one = by_job[(preset, 0)], by_job[(preset, 1)]
        assert one["prompt_tokens_mean"] > zero["prompt_tokens_mean"] and one["examples_mean"] > 0
        assert one["prompt_tokens_max"] <= 384 and zero["examples_dropped"] == 0
        assert one["rows"] == 6 and one["seconds_dev"] >= 0
    markdown = (out / "screen.md").read_text(encoding="utf-8")
    assert markdown.count("| tiny-") == 4 and (out / "screen.png").stat().st_size > 0
    print(markdown)  # the table, for whoever runs the test with -s

    assert ensemble_main(["--runs", str(out), "--gold", str(data / "dev.csv"), "--out", str(tmp_path / "ens")]) == 0
    report = json.loads((tmp_path / "ens/report/ensemble_report.json").read_text(encoding="utf-8"))
    folders = {f"{p}-{k}shot" for p in ("tiny-llama", "tiny-qwen3") for k in (0, 1)}
    identical = " ".join(note for note in report["notes"] if note.startswith("identical"))  # random tiny models agree
    assert set(report["systems"]) <= folders and {f for f in folders if f in identical} | set(report["systems"]) == folders

    # a rerun loads no model: every folder is finished
    monkeypatch.setattr(llm.model, "load_base_for_prediction", lambda config: pytest.fail("loaded a model"))
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/preds_*.csv")}
    assert screen.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/preds_*.csv")} == before
    assert capsys.readouterr().out.count("finished earlier, skipped") == 4
    monkeypatch.undo()

    # an interrupted folder continues from its saved batches
    job = out / "tiny-qwen3-1shot"
    earlier = (job / "preds_dev.csv").read_text(encoding="utf-8")
    frame = pd.read_csv(job / "preds_dev.csv", dtype=str, keep_default_na=False)
    with open(job / "preds_dev.partial.jsonl", "w", encoding="utf-8") as handle:
        for fname, summary in zip(frame["fname"][:3], frame["summary"][:3]):
            handle.write(json.dumps({"fname": fname, "summary": summary}, ensure_ascii=False) + "\n")
    (job / "preds_dev.csv").unlink()
    (job / "screen_result.json").unlink()
    assert screen.main(argv) == 0
    assert (job / "preds_dev.csv").read_text(encoding="utf-8") == earlier
    assert json.loads((job / "preds_dev.meta.json").read_text(encoding="utf-8"))["resumed_rows"] == 3

    # other settings into the same folders are refused
    assert screen.main([*argv[:-1], "max_new_tokens=9"]) == 2
    assert "screened earlier with other settings (max_new_tokens)" in capsys.readouterr().err


@pytest.mark.integration  # reads ../shared
@pytest.mark.parametrize("preset_name", ["llama3.2-ko-3b", "qwen2.5-7b", "qwen3-14b", "solar-10.7b", "solar-10.7b-base",
                                         "deepseek-r1-qwen-32b"])
def test_few_shot_pieces_equal_the_full_render_with_real_templates(preset_name: str) -> None:
    from helpers.real_models import models_dir

    from competition.modeling.loading import load_tokenizer

    tokenizer = load_tokenizer(models_dir() / preset_name)  # as screening loads it: no tokens added
    style = resolve_template(prompt_style_for(get_preset(preset_name), max_length=8192), tokenizer)
    examples = train_examples(2)
    for dialogue in sample_frames()[1]["dialogue"][:10]:
        prompt = encode_few_shot_prompt(tokenizer, style, dialogue, examples)
        text = render_prompt_text(tokenizer, style, dialogue, examples)
        assert prompt.examples_used == 2
        assert prompt.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]
