"""Checkpoints cut short are never resumed from. Run: `.venv/bin/python -m pytest -q tests/test_checkpoints.py`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from baselines.train import last_checkpoint
from competition.modeling.checkpoints import COMPLETE_MARKER, last_complete_checkpoint, mark_complete_callback


def make_checkpoint(root: Path, step: int, complete: bool) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 16)  # a partial save: weights, no optimizer or state
    if complete:
        (folder / COMPLETE_MARKER).write_text("done\n")
    return folder


def test_newest_incomplete_checkpoint_is_skipped_with_a_warning(tmp_path: Path, capsys) -> None:
    make_checkpoint(tmp_path, 2, complete=True)
    make_checkpoint(tmp_path, 10, complete=True)
    partial = make_checkpoint(tmp_path, 12, complete=False)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # 10 > 2 numerically, not by name
    assert f"warning: {partial}: incomplete checkpoint" in capsys.readouterr().err
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # the baseline track resumes the same way


def test_no_complete_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 4, complete=False)
    assert last_complete_checkpoint(tmp_path) is None
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_the_callback_marks_the_saved_folder_on_the_main_process_only(tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path, 6, complete=False)
    callback = mark_complete_callback()
    args = SimpleNamespace(output_dir=str(tmp_path))
    callback.on_save(args, SimpleNamespace(global_step=6, is_world_process_zero=False), None)
    assert not (folder / COMPLETE_MARKER).exists()
    callback.on_save(args, SimpleNamespace(global_step=6, is_world_process_zero=True), None)
    assert (folder / COMPLETE_MARKER).is_file()
