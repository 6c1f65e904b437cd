"""Merged-adapter export: base + LoRA folded into one 16-bit safetensors model, for fast inference.

`python -m llm.merge --checkpoint RUN/best --out RUN/merged` (the pipeline does this with predict_with=merged).
The base is loaded unquantized in 16-bit (merging into 4-bit weights would lose the adapter's precision).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

import torch

from competition.harness.cli import exit_on_bad_input
from competition.harness.logs import setup_logging
from competition.modeling.loading import half_precision, precision_dtype
from competition.rules.files import temp_dir_beside
from llm.config import LLMConfig, load_config
from llm.model import CheckpointInfo, load_checkpoint, save_checkpoint


def export_merged(checkpoint_dir: Path | str, out_dir: Path | str, config: LLMConfig) -> Path:
    """Write the merged model of an adapter checkpoint to `out_dir` (complete or absent); return `out_dir`.

    Full and already merged checkpoints are returned as they are. An existing `out_dir` is reused.
    """
    out_dir = Path(out_dir)
    if (out_dir / "llm_checkpoint.json").is_file():
        return out_dir
    info = CheckpointInfo.load(checkpoint_dir)
    if info.kind != "adapter":
        return Path(checkpoint_dir)
    model, tokenizer, style, info = load_checkpoint(checkpoint_dir, config, for_merge=True)
    merged = model.merge_and_unload()
    dtype = next(p.dtype for p in merged.parameters() if p.is_floating_point())
    if dtype == torch.float32:  # CPU trains in fp32; the export is 16-bit either way
        merged = merged.to(precision_dtype(half_precision()))
    building = temp_dir_beside(out_dir)
    try:
        save_checkpoint(merged, tokenizer, style, dataclasses.replace(info, kind="merged", quantization="none"),
                        building)
        building.rename(out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return out_dir


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="adapter checkpoint folder (a run's best/)")
    parser.add_argument("--out", required=True, help="folder for the merged model (must not exist)")
    args = parser.parse_args(argv)
    setup_logging()
    info = CheckpointInfo.load(args.checkpoint)
    print(export_merged(args.checkpoint, args.out, load_config(info.preset)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
