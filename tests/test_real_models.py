"""Every preset with real files (tokenizer, chat template, config; `../shared/models.tar.xz`) through the real code.

Run: `.venv/bin/python -m pytest -q tests/test_real_models.py` (all `integration`: they read `../shared`).
Skips when the archive is absent. It is unpacked with `../shared/tools/models.sh` into the user's cache folder (a
temporary one when that is not writable), never beside `../shared`. Checks: broken folders are refused; the prompt
budget rule holds with each real template; training targets end with the template's end-of-turn token and generation
stops on it; the template date and thinking block are pinned; KoBART's layout and counts; and a scaled-down
random-weight checkpoint of each real family trains and predicts through `llm.run` / `baselines.run` on the CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT, REAL_DATA_DIR, SAMPLE_DIR
from helpers.data import sample_frames, sample_rows, write_data_dir
from helpers.prompts import assert_only_the_dialogue_is_cut, examples, plain_ids
from helpers.real_models import models_dir
from hypothesis import HealthCheck, given, settings

from competition.build_checkpoint import build_checkpoint
from competition.harness.presets import get_preset
from competition.modeling.loading import load_tokenizer
from competition.modeling.prompts import (
    DEFAULT_DATE_STRING,
    THINK_OPEN,
    PromptStyle,
    clean_generated,
    encode_continuation,
    encode_for_generation,
    encode_for_training,
    load_prompt_style,
    prepare_tokenizer,
    prompt_style_for,
    render_prompt_text,
    resolve_template,
    save_prompt_style,
    stop_token_ids,
    template_kwargs,
)
from competition.rules.data import data_special_tokens, read_split
from competition.rules.errors import ConfigError
from competition.rules.submission import validate_submission
from competition.truncation import main as truncation_main
from competition.truncation import truncation_report

pytestmark = pytest.mark.integration  # reads ../shared; the run-command tests also train

# LLM presets whose folder holds a real tokenizer: the turn end that closes a trained summary, and the assistant
# header the generation prompt ends with (thinking closed empty for the reasoning models).
END_OF_TURN = {
    "llama3.2-ko-3b": "<|eot_id|>", "llama3-ko-8b": "<|eot_id|>",
    "qwen2.5-7b": "<|im_end|>", "qwen2.5-14b": "<|im_end|>", "qwen3-4b": "<|im_end|>", "qwen3-14b": "<|im_end|>",
    "solar-10.7b": "</s>", "solar-10.7b-base": "</s>",
    "deepseek-r1-qwen-32b": "<｜end▁of▁sentence｜>",
}
LLAMA3_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
QWEN3_HEADER = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
ASSISTANT_HEADER = {
    "llama3.2-ko-3b": LLAMA3_HEADER, "llama3-ko-8b": LLAMA3_HEADER,
    "qwen2.5-7b": "<|im_start|>assistant\n", "qwen2.5-14b": "<|im_start|>assistant\n",
    "qwen3-4b": QWEN3_HEADER, "qwen3-14b": QWEN3_HEADER,
    "solar-10.7b": "### Assistant:\n", "solar-10.7b-base": "### 요약:\n",  # the base model: fallback template
    "deepseek-r1-qwen-32b": "<｜Assistant｜><think>\n\n</think>\n\n",
}
SEQ2SEQ_PRESETS = ("kobart", "kobart-base-v2")
NO_VOCABULARY = ("gemma2-2b", "pko-t5-large", "mbart-large-50", "polyglot-ko-1.3b")  # config, no usable tokenizer
# One scaled checkpoint per real family (and tokenizer format) for the run-command tests.
RUN_FAMILIES = ("llama3.2-ko-3b", "qwen2.5-7b", "qwen3-14b", "solar-10.7b", "deepseek-r1-qwen-32b")


def folder(preset_name: str) -> Path:
    return models_dir() / preset_name


@functools.lru_cache(maxsize=None)
def real_tokenizer(preset_name: str, data_tokens: bool = True):
    """The preset's real tokenizer prepared as the LLM track does (end marker; the data tags when asked)."""
    tokenizer = load_tokenizer(folder(preset_name))
    style = default_style(preset_name, tokenizer)
    prepare_tokenizer(tokenizer, style, data_special_tokens(sample_frames()) if data_tokens else [])
    return tokenizer


def default_style(preset_name: str, tokenizer, **overrides) -> PromptStyle:
    return resolve_template(prompt_style_for(get_preset(preset_name), **overrides), tokenizer)


# ---------------------------------------------------------------- loading

@pytest.mark.parametrize("preset_name", sorted(END_OF_TURN) + list(SEQ2SEQ_PRESETS))
def test_every_real_tokenizer_loads_at_full_size(preset_name):
    """SentencePiece (SOLAR), byte-level BPE (Llama 3, Qwen) and KoBART's BPE all load with their whole vocabulary."""
    import json

    tokenizer = load_tokenizer(folder(preset_name))
    vocab_size = json.loads((folder(preset_name) / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    assert 0.95 * vocab_size <= len(tokenizer) <= vocab_size
    assert tokenizer.pad_token_id is not None


@pytest.mark.parametrize("preset_name", NO_VOCABULARY)
def test_a_folder_without_vocabulary_is_refused_by_name(preset_name):
    with pytest.raises(ConfigError, match=f"{folder(preset_name)}: the tokenizer loaded with \\d+ tokens"):
        load_tokenizer(folder(preset_name))


def test_truncation_cli_runs_with_a_real_tokenizer_and_refuses_an_empty_one(tmp_path, capsys):
    args = ["--data", str(SAMPLE_DIR), "--maxlen", "512,1024", "--out", str(tmp_path), "--no-progress"]
    assert truncation_main(["--model", "qwen3-14b", "--tokenizer", str(folder("qwen3-14b")), *args]) == 0
    assert "max length 512:" in capsys.readouterr().out
    assert truncation_main(["--model", "gemma2-2b", "--tokenizer", str(folder("gemma2-2b")), *args]) == 2
    assert str(folder("gemma2-2b")) in capsys.readouterr().err


# ---------------------------------------------------------------- the prompt with each real template

@pytest.mark.parametrize("preset_name", sorted(END_OF_TURN))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=examples())
def test_nothing_but_the_dialogue_is_ever_cut_with_the_real_template(preset_name, example):
    dialogue, summary, max_target, max_length, cut = example
    tokenizer = real_tokenizer(preset_name)
    # real system prompts (Llama 3.2's dated one, Qwen2.5's default) are longer than the tiny ones: more room
    style = default_style(preset_name, tokenizer, max_length=max_length + 100, max_target_length=max_target, cut=cut)
    assert_only_the_dialogue_is_cut(tokenizer, style, dialogue, summary, ASSISTANT_HEADER[preset_name])


@pytest.mark.parametrize("data_tokens", [True, False], ids=["data-tokens", "plain"])
@pytest.mark.parametrize("preset_name", sorted(END_OF_TURN))
def test_pieces_equal_the_full_render_of_real_dialogues(preset_name, data_tokens):
    """Uncut prompts equal the tokenized full render, with and without the #PersonN# tags as tokens."""
    tokenizer = real_tokenizer(preset_name, data_tokens)
    style = default_style(preset_name, tokenizer, max_length=8192)
    data = REAL_DATA_DIR if (REAL_DATA_DIR / "dev.csv").is_file() else SAMPLE_DIR
    for dialogue in read_split(data / "dev.csv", "dev")["dialogue"][:60]:
        encoded = encode_for_generation(tokenizer, style, dialogue)
        assert encoded.dialogue_tokens_cut == 0
        assert encoded.input_ids == plain_ids(tokenizer, render_prompt_text(tokenizer, style, dialogue))


@pytest.mark.parametrize("preset_name", sorted(END_OF_TURN))
def test_training_target_ends_with_the_turn_end_that_generation_stops_on(preset_name):
    tokenizer = real_tokenizer(preset_name)
    style = default_style(preset_name, tokenizer)
    dialogue, summary = sample_frames()[1]["dialogue"][0], sample_frames()[1]["summary"][0]
    training = encode_for_training(tokenizer, style, dialogue, summary)
    prompt = encode_for_generation(tokenizer, style, dialogue).input_ids
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN[preset_name])
    assert training.input_ids[: len(prompt)] == prompt
    assert training.input_ids[len(prompt):] == encode_continuation(tokenizer, summary) + [end]
    assert end in stop_token_ids(tokenizer, style)
    assert tokenizer.decode(prompt).endswith(ASSISTANT_HEADER[preset_name])
    if style.template == "chat" and preset_name != "deepseek-r1-qwen-32b":
        # the template's own rendering of the trained conversation: same tokens (SOLAR's writes no turn end)
        content = style.user_template.format(instruction=style.instruction, dialogue=dialogue)
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": summary}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, **template_kwargs(style))
        if preset_name == "solar-10.7b":  # its template writes no <s>; the model card tokenizes with one
            assert not rendered.startswith("<s>") and prompt[0] == tokenizer.bos_token_id
            rendered = "<s>" + rendered
        ids = plain_ids(tokenizer, rendered)
        if END_OF_TURN[preset_name] in rendered:
            assert ids[: len(training.input_ids)] == training.input_ids
        else:
            assert ids + [end] == training.input_ids


def test_llama32_date_is_pinned_and_saved_with_the_prompt_style(tmp_path):
    """The template would write today's date; the style pins it, so training and prediction days agree."""
    tokenizer = real_tokenizer("llama3.2-ko-3b")
    style = default_style("llama3.2-ko-3b", tokenizer)
    text = render_prompt_text(tokenizer, style, "#Person1#: 안녕")
    assert f"Today Date: {DEFAULT_DATE_STRING}" in text
    today = date.today().strftime("%d %b %Y")
    unpinned = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                             add_generation_prompt=True)
    assert f"Today Date: {today}" in unpinned  # what an unpinned render would write
    other_day = dataclasses.replace(style, date_string="01 Jan 2030")
    assert "Today Date: 01 Jan 2030" in render_prompt_text(tokenizer, other_day, "#Person1#: 안녕")
    save_prompt_style(other_day, tmp_path)
    assert load_prompt_style(tmp_path).date_string == "01 Jan 2030"


def test_qwen3_training_and_generation_agree_on_the_empty_think_block():
    tokenizer = real_tokenizer("qwen3-14b")
    style = default_style("qwen3-14b", tokenizer)
    assert style.disable_thinking and style.strip_think
    prompt = tokenizer.decode(encode_for_generation(tokenizer, style, "#Person1#: 안녕").input_ids)
    assert prompt.endswith(QWEN3_HEADER)
    thinking = dataclasses.replace(style, disable_thinking=False)  # the hybrid template would let it reason
    assert tokenizer.decode(encode_for_generation(tokenizer, thinking, "#Person1#: 안녕").input_ids).endswith(
        "<|im_start|>assistant\n")


def test_deepseek_r1_reasoning_is_closed_in_the_prompt_and_stripped_from_output():
    """R1's generation prompt opens `<think>\\n`; it is closed empty, so the target holds the summary only."""
    tokenizer = real_tokenizer("deepseek-r1-qwen-32b")
    style = default_style("deepseek-r1-qwen-32b", tokenizer)
    raw = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    assert raw.endswith(THINK_OPEN + "\n")
    training = encode_for_training(tokenizer, style, "#Person1#: 안녕", "#Person1#이 인사한다.")
    target = tokenizer.decode(training.input_ids[training.prompt_length:])
    assert target == "#Person1#이 인사한다.<｜end▁of▁sentence｜>" and THINK_OPEN not in target
    assert clean_generated("생각 중\n</think>\n\n요약이다.", style) == "요약이다."
    assert clean_generated("<think>\n음\n</think>\n\n요약이다.", style) == "요약이다."


# ---------------------------------------------------------------- KoBART

@functools.lru_cache(maxsize=None)
def scaled_checkpoint(preset_name: str, root: str) -> Path:
    return build_checkpoint(folder(preset_name), Path(root) / preset_name, scale="tiny")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("scaled"))


@pytest.mark.parametrize("preset_name", SEQ2SEQ_PRESETS)
def test_kobart_data_tokens_layout_and_truncation_counts(preset_name, checkpoints):
    from baselines.model import add_data_tokens, configure_family, decode, encode_texts, load_pretrained

    tokenizer, model = load_pretrained(scaled_checkpoint(preset_name, checkpoints))
    assert len(tokenizer) == 30000
    tags = data_special_tokens(sample_frames())
    add_data_tokens(tokenizer, model, tags)
    for tag in tags:  # #PersonN# and the masks: one unsplittable token each, kept by decoding
        assert tokenizer.tokenize(tag) == [tag] and tag in tokenizer.tokenize(f"안녕{tag}: 네")
    ids = tokenizer("#Person1#: 안녕 #PhoneNumber#", add_special_tokens=False)["input_ids"]
    # KoBART's Metaspace marks a word start after every added token, so "#Person1#:" decodes as "#Person1# :"
    # (as in the official baseline; the morpheme metric scores both alike): the tags themselves survive decoding
    assert decode(tokenizer, [ids]) == ["#Person1# : 안녕 #PhoneNumber#"]
    layout = configure_family(tokenizer, model, "bart")
    bos, eos = tokenizer.convert_tokens_to_ids("<s>"), tokenizer.convert_tokens_to_ids("</s>")
    assert (layout.encoder_prefix, layout.label_prefix, layout.eos) == ((bos,), (bos,), eos)
    generation = model.generation_config
    assert generation.decoder_start_token_id == model.config.decoder_start_token_id == eos  # `</s>`, BART's start
    assert generation.forced_eos_token_id in (None, eos)  # the config's 2 is <usr>, never a summary's end
    assert generation.pad_token_id == tokenizer.pad_token_id
    # the truncation report counts what the encoder gets: <s> dialogue </s>
    dialogues = list(sample_frames()[1]["dialogue"])
    encoded, _ = encode_texts(tokenizer, dialogues, layout.encoder_prefix, layout.eos, 100_000)
    assert all(row[0] == bos and row[-1] == eos for row in encoded)
    report = truncation_report(tokenizer, get_preset(preset_name), SAMPLE_DIR, [512], add_data_tokens=False,
                               progress=False)
    dev = report.lengths["dev"].prompt
    assert dev == [len(row) for row in encoded]
    assert dev == [n + 2 for n in (len(x) for x in tokenizer(dialogues)["input_ids"])]  # the tokenizer adds none


# ---------------------------------------------------------------- the tracks' run commands, scaled checkpoints

def run_track(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def small_data(root: Path) -> Path:
    return write_data_dir(root, sample_rows("train", 4), sample_rows("dev", 2), sample_rows("test", 2))


@pytest.mark.parametrize("preset_name", RUN_FAMILIES)
def test_llm_run_trains_and_predicts_on_a_scaled_real_checkpoint(preset_name, checkpoints, tmp_path):
    checkpoint = scaled_checkpoint(preset_name, checkpoints)
    data = small_data(tmp_path / "data")
    done = run_track("llm.run", [
        "--model", preset_name, "--data", str(data), "--out", str(tmp_path / "runs"), "--demo",
        f"model_path={checkpoint}", "num_train_epochs=1", "per_device_train_batch_size=2", "batch_tokens=0",
        "gradient_accumulation_steps=1", "max_eval_samples=2", "max_new_tokens=6", "max_source_length=256",
        "max_target_length=32", "per_device_eval_batch_size=2", "lora_r=2", "lora_alpha=4",
        "submit_despite_fill_ins=true"], cwd=tmp_path)  # random weights may write nothing: the path is under test
    assert done.returncode == 0, done.stderr[-4000:]
    (run_dir,) = (tmp_path / "runs").glob(f"llm-{preset_name}-*")
    best = run_dir / "best"
    assert load_prompt_style(best).date_string == DEFAULT_DATE_STRING
    assert str(checkpoint) in (best / "llm_checkpoint.json").read_text(encoding="utf-8")  # prediction's base
    assert not list((tmp_path / "submissions").glob("*_*-*.csv"))  # a random-weight build never submits
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["random_weights"] is True
    assert validate_submission(run_dir / "preds_test.csv", data / "test.csv") == 2  # what it would have submitted


def test_baseline_run_trains_and_predicts_on_a_scaled_kobart(checkpoints, tmp_path):
    checkpoint = scaled_checkpoint("kobart", checkpoints)
    data = small_data(tmp_path / "data")
    done = run_track("baselines.run", [
        "--model", "kobart", "--data", str(data), "--out", str(tmp_path / "runs"), "--demo",
        f"model_path={checkpoint}", "num_train_epochs=1", "generation_max_length=12", "num_beams=1",
        "per_device_train_batch_size=2", "submit_despite_fill_ins=true"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    (run_dir,) = (tmp_path / "runs").glob("baseline-kobart-*")
    assert (run_dir / "truncation.md").is_file()
    assert not list((tmp_path / "submissions").glob("*_*-*.csv"))  # a random-weight build never submits
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["random_weights"] is True
    assert validate_submission(run_dir / "preds_test.csv", data / "test.csv") == 2  # what it would have submitted
