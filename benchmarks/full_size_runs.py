"""Full-size runs on one GPU (issue 13, item 7): each preset at its real size, with random weights, through the
track's own run command end to end, timed by the run itself.

    python benchmarks/full_size_runs.py --models MODELS --presets llama3.2-ko-3b --work /tmp/full --out full.json
    python benchmarks/full_size_runs.py --models MODELS --presets qwen3-14b --work /tmp/full --out qwen.json \\
        --train-rows 512 --set max_new_tokens=100
    python benchmarks/full_size_runs.py --smoke --models MODELS --presets llama3.2-ko-3b,kobart --work /tmp/smoke
    python benchmarks/full_size_runs.py --models MODELS --presets llama3.2-ko-3b --work /tmp/full \\
        --memory-cap 23.5,46,78        # each preset at each cap: what a 24, 48 and 80 GB card would see

MODELS is the folder of real preset files (config + tokenizer, no weights) that `../shared/tools/models.sh` prints.
For each preset:
1. build a random-weight checkpoint of the real config with `competition.build_checkpoint` (`--scale full`, on the
   GPU: a 14B model in about a minute, mostly saving), or reuse the one an earlier call kept (`--keep-checkpoints`);
2. write the stand-in data folder once (WORK/data): train.csv made of the dev and test dialogues (test dialogues get
   the dev summaries, cycled, as benchmarks/bench_llm_train.py does; `--train-rows` rows, cycled), dev.csv and test.csv
   copied as they are: real lengths through the real tokenizer;
3. run the track's CLI as a subprocess (`python -m llm.run` / `python -m baselines.run`: what `make llm` and
   `make baseline` run) with `model_path=<checkpoint>` and bounded training (one epoch of `--train-rows` rows, a
   small dev subset at the evaluation), then dev prediction of every dev dialogue, test prediction of all test
   dialogues; its output goes to WORK/<preset>/run.log. A run of random weights never submits (it says so in
   its run.json): the run's preds_test.csv is validated as a submission instead and its rows reported (the
   fill-in share is reported too);
4. collect what the run recorded in its run.json: seconds per stage, real training tokens/s, peak GPU memory.
With `--memory-cap N[,N...]` (GiB) steps 3-4 run once per cap, each while `benchmarks/hold_gpu_memory.py` holds all
but N GiB of the GPU (the checkpoint is built before, uncapped: a 14B build alone needs about 28 GiB), and a second
table gives per preset and cap: fits (or the stage that failed), the fitted settings run.json records, real
tokens/s, prediction seconds, peak memory, optimizer steps, tokens per step and out-of-memory fallbacks.
Random weights rarely stop early, so every summary runs to max_new_tokens: the prediction seconds are an upper
bound of a trained model's. This process holds a CUDA context (about 0.5 GiB) while the run's process trains.

Overrides: `--set KEY=VALUE` for every preset, `--set PRESET:KEY=VALUE` for one (after this script's defaults).
Prints one JSON object and a markdown table (preset x stage seconds, real tokens/s, peak GiB) and writes them to
--out (and its .md). The checkpoints and data stay inside --work: random weights, never to submit or commit.
`--smoke` does the same on the CPU with `--scale tiny` builds, a few dev/test rows and short generation (a test
runs it). Needs a CUDA GPU otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
from competition.harness.cli import exit_on_bad_input  # noqa: E402  (the project root is on the path now)
from competition.harness.presets import get_preset  # noqa: E402
from competition.rules.errors import ConfigError, DataError  # noqa: E402

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "competition"
DEFAULT_PRESETS = "kobart,llama3.2-ko-3b,qwen3-14b"
RUN_MODULES = {"baseline": "baselines.run", "llm": "llm.run"}  # what `make baseline` / `make llm` run
# Bounded training (KEY=VALUE of the track's config), before --set; execution settings stay the run's to fit.
TRACK_OVERRIDES: dict[str, dict[str, Any]] = {
    "llm": {"num_train_epochs": 1, "max_eval_samples": 32},
    "baseline": {"num_train_epochs": 1, "max_eval_samples": 50},
}
# --smoke: a CPU minute per preset (tiny builds, short prompts and summaries).
SMOKE_OVERRIDES: dict[str, dict[str, Any]] = {
    "llm": {"quantization": "none", "gradient_checkpointing": False, "optim": "adamw_torch", "batch_tokens": 0,
            "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_eval_samples": 2,
            "max_new_tokens": 6, "max_source_length": 256, "max_target_length": 32, "per_device_eval_batch_size": 4,
            "lora_r": 2, "lora_alpha": 4},
    "baseline": {"per_device_train_batch_size": 2, "max_eval_samples": 2, "generation_max_length": 12,
                 "num_beams": 1, "per_device_eval_batch_size": 4},
}
SMOKE_ROWS = {"train": 8, "dev": 4, "test": 4}
FITTED_KEYS = ("gpu", "fitted")  # what run.json records of the card and the settings fitted to it, when present
STAGES = ("train", "export_merged", "load_for_prediction", "predict_dev", "predict_test", "report_and_submit")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="folder of real preset files (models.sh prints it)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="competition data with dev.csv and test.csv")
    parser.add_argument("--presets", default=DEFAULT_PRESETS, help="comma-separated preset names")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder: checkpoints, data, runs, logs")
    parser.add_argument("--out", type=Path, help="also write the JSON here (and the table to its .md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[PRESET:]KEY=VALUE",
                        help="a track config override, for every preset or for PRESET only (repeatable)")
    parser.add_argument("--train-rows", type=int, default=998, help="stand-in train rows (dev+test dialogues, "
                        "cycled) and max_train_samples: bounds the training steps")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep the random checkpoints for a rerun "
                        "(default: deleted after each preset's run; a 14B one is 30 GB)")
    parser.add_argument("--smoke", action="store_true", help="CPU, --scale tiny checkpoints, a few rows")
    parser.add_argument("--memory-cap", default="", metavar="GIB[,GIB...]", help="run each preset once per cap, "
                        "with all but GIB GiB of the GPU held by another process (ignored with --smoke)")
    args = parser.parse_args(argv)
    args.memory_caps = parse_caps(args.memory_cap, parser.error)
    if args.train_rows < 1:
        parser.error(f"--train-rows {args.train_rows}; expected a positive number")
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"--set {item!r}; expected KEY=VALUE or PRESET:KEY=VALUE")
    return args


def parse_caps(text: str, error) -> list[float | None]:
    """`23.5,46` -> [23.5, 46.0]; empty -> [None] (one uncapped pass)."""
    caps: list[float | None] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            caps.append(float(item))
        except ValueError:
            error(f"--memory-cap {text!r}; expected GiB numbers separated by commas, e.g. 23.5,46,78")
        if caps[-1] <= 0:
            error(f"--memory-cap {item}; expected a positive number of GiB")
    return caps or [None]


# ---------------------------------------------------------------- inputs

def write_stand_in_data(data_dir: Path, out: Path, train_rows: int, smoke: bool) -> Path:
    """train.csv of dev + test dialogues (dev summaries cycled onto the test ones), dev.csv and test.csv copied."""
    from competition.rules.data import read_split
    from competition.rules.files import atomic_path

    paths = {split: data_dir / f"{split}.csv" for split in ("dev", "test")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"{', '.join(missing)} not found; --data needs the competition's dev.csv and test.csv")
    dev, test = read_split(paths["dev"], "dev"), read_split(paths["test"], "test")  # validated: clear errors
    dialogues = list(dev["dialogue"]) + list(test["dialogue"])
    summaries = list(dev["summary"])
    topics = list(dev["topic"]) if "topic" in dev else [""] * len(dev)
    count = SMOKE_ROWS["train"] if smoke else train_rows
    train = pd.DataFrame({"fname": [f"train_{i}" for i in range(count)],
                          "dialogue": [dialogues[i % len(dialogues)] for i in range(count)],
                          "summary": [summaries[i % len(summaries)] for i in range(count)],
                          "topic": [topics[i % len(topics)] for i in range(count)]})
    with atomic_path(out / "train.csv") as temp:
        train.to_csv(temp, index=False)
    for split, path in paths.items():
        with atomic_path(out / f"{split}.csv") as temp:
            if smoke:  # a few real rows, so a CPU run predicts in seconds
                pd.read_csv(path, dtype=str, keep_default_na=False).head(SMOKE_ROWS[split]).to_csv(temp, index=False)
            else:
                shutil.copyfile(path, temp)
    return out


def checkpoint_for(preset: str, models: Path, work: Path, smoke: bool) -> tuple[Path, float | None]:
    """The preset's random checkpoint (built, or reused when an earlier call kept it) and its build seconds."""
    from competition.build_checkpoint import BUILD_INFO, build_checkpoint

    scale = "tiny" if smoke else "full"
    out = work / "checkpoints" / f"{preset}-{scale}"
    if (out / BUILD_INFO).is_file():
        print(f"{preset}: reusing {out}", file=sys.stderr)
        return out, None
    device = "cpu" if smoke else "cuda"
    start = time.perf_counter()
    build_checkpoint(models / preset, out, scale=scale, device=device)
    _empty_cuda_cache()  # the build's cached blocks would stay reserved by this process during the runs
    return out, round(time.perf_counter() - start, 1)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def overrides_for(preset: str, track: str, checkpoint: Path, args: argparse.Namespace) -> list[str]:
    """KEY=VALUE arguments of the track CLI: model_path, bounded training, --smoke sizes, then --set."""
    values: dict[str, Any] = {"model_path": checkpoint, **TRACK_OVERRIDES[track],
                              "max_train_samples": SMOKE_ROWS["train"] if args.smoke else args.train_rows}
    if args.smoke:
        values.update(SMOKE_OVERRIDES[track])
    for item in args.overrides:
        head, _, value = item.partition("=")
        target, _, key = head.rpartition(":")  # no colon: every preset
        if target in ("", preset):
            values[key] = value
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in values.items()]


# ---------------------------------------------------------------- running

def run_cli(module: str, args: list[str], log_path: Path, smoke: bool) -> tuple[int, float]:
    """`python -m module args` in the log's folder, output appended to the log; (exit code, seconds)."""
    # The project first, then what the caller had (an offline GPU machine's wheels live on PYTHONPATH)
    python_path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1"}
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even on a GPU machine
    start = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ python -m {module} {' '.join(args)}\n")
        log.flush()
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=log_path.parent, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    return done.returncode, round(time.perf_counter() - start, 1)


def log_tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def run_preset(preset_name: str, args: argparse.Namespace, data: Path) -> list[dict[str, Any]]:
    """Build the checkpoint (uncapped), then run the preset once per memory cap; one result per cap."""
    checkpoint, build_seconds = checkpoint_for(preset_name, args.models, args.work, args.smoke)
    results = []
    for cap in args.memory_caps:
        results.append(run_capped(preset_name, cap, checkpoint, args, data))
        results[-1]["build_seconds"] = build_seconds if len(results) == 1 else None
        print(json.dumps(results[-1], ensure_ascii=False), file=sys.stderr, flush=True)  # survives a crash
    if not args.keep_checkpoints:
        shutil.rmtree(checkpoint, ignore_errors=True)
    return results


def run_capped(preset_name: str, cap: float | None, checkpoint: Path, args: argparse.Namespace,
               data: Path) -> dict[str, Any]:
    """One run of the preset with all but `cap` GiB of the GPU held (None: uncapped); its figures, and its test
    predictions validated as the submission they would be (random weights never submit)."""
    track = get_preset(preset_name).track
    folder = args.work / preset_name / (f"cap-{cap:g}" if cap is not None else "")
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "run.log"
    runs, submissions = folder / "runs", folder / "submissions"
    before = set(runs.glob("*")) if runs.is_dir() else set()
    common = ["--data", str(data), "--out", str(runs), "--submissions", str(submissions)]
    result: dict[str, Any] = {"preset": preset_name, "track": track, "checkpoint": str(checkpoint),
                              "memory_cap_gib": cap, "log": str(log_path)}
    with memory_capped(cap, args.smoke) as held:
        result["memory"] = held
        code, seconds = run_cli(RUN_MODULES[track], ["--model", preset_name, *common,
                                                     *overrides_for(preset_name, track, checkpoint, args)],
                                log_path, args.smoke)
    result["command_seconds"] = seconds
    new_runs = sorted(set(runs.glob("*")) - before) if runs.is_dir() else []
    if code != 0 or not new_runs:
        print(f"{preset_name}: the run failed (exit {code}); last lines of {log_path}:\n{log_tail(log_path)}",
              file=sys.stderr)
        figures = recorded_figures(new_runs[-1]) if new_runs else {}  # the stages measured before the failure
        return {**result, **figures, "error": f"exit {code}", "failed_stage": failed_stage(new_runs),
                "error_line": error_line(log_path), "log_tail": log_tail(log_path, 15)}
    run_dir = new_runs[-1]
    result.update(recorded_figures(run_dir), run_dir=str(run_dir))
    # random weights never submit: the test predictions are validated as the submission they would be
    result["submission_rows"] = validated_rows(result.get("submission") or str(run_dir / "preds_test.csv"),
                                               data / "test.csv")
    return result


@contextmanager
def memory_capped(cap: float | None, smoke: bool) -> Iterator[dict[str, Any] | None]:
    """All but `cap` GiB of GPU 0 held by a `hold_gpu_memory.py` process inside the block; yields what it reports
    (held_gib, free_gib, total_gib). No cap, or --smoke (the CPU): nothing held, None (the cap is noted, not run)."""
    if cap is None or smoke:
        yield None if cap is None else {"ignored": "the CPU (--smoke)"}
        return
    holder = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "benchmarks" / "hold_gpu_memory.py"),
                               "--free-gib", str(cap)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        if not line:
            raise ConfigError(f"hold_gpu_memory.py --free-gib {cap} ended: {holder.stderr.read().strip()[-500:]}")
        held = json.loads(line)
        print(f"memory cap {cap:g} GiB: holding {held['held_gib']} GiB, {held['free_gib']} GiB free", file=sys.stderr)
        yield held
    finally:
        holder.stdin.close()  # the holder exits and its memory goes back
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


def failed_stage(new_runs: list[Path]) -> str:
    """The first stage of a failed run without its output: train, predict_dev, predict_test or report_and_submit."""
    if not new_runs:
        return "start"
    run_dir = new_runs[-1]
    for stage, output in (("train", "train_result.json"), ("predict_dev", "preds_dev.csv"),
                          ("predict_test", "preds_test.csv")):
        if not (run_dir / output).is_file():
            return stage
    return "report_and_submit"


def error_line(log_path: Path) -> str | None:
    """The last `error: ...` line (the CLI's one-line failure) or Python exception line of a run's log."""
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines() if log_path.is_file() else []
    for line in reversed(lines):
        if line.startswith("error:") or line.split(":")[0].endswith(("Error", "Exception")):
            return line[:300]
    return None


def recorded_figures(run_dir: Path) -> dict[str, Any]:
    """`run_figures` of the run's run.json, or {} when the run wrote none."""
    path = run_dir / "run.json"
    return run_figures(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}


def run_figures(info: dict[str, Any]) -> dict[str, Any]:
    """What a run recorded of itself in run.json (the first pass, before any resume)."""
    train = info.get("train") or {}
    steps = info.get("global_step", train.get("global_step"))
    tokens = (info.get("training_speed") or {}).get("train_tokens")
    return {"stage_seconds": info.get("stage_seconds", {}), "training_speed": info.get("training_speed", {}),
            "peak_gpu_memory_gib": info.get("peak_gpu_memory_gib"), "global_step": steps,
            "tokens_per_step": round(tokens / steps, 1) if tokens and steps else None,
            "fitted": {key: info[key] for key in FITTED_KEYS if key in info},
            "oom_fallbacks": info.get("oom_fallbacks", []),
            "dev_score": info.get("dev_score"), "fill_ins": info.get("fill_ins", {}),
            "submission_blocked": info.get("submission_blocked"), "submission": info.get("submission"),
            "random_weights": info.get("random_weights", False)}


def validated_rows(submission: str | None, test_csv: Path) -> int | None:
    """Rows of the submission (or of test predictions validated as one) as the validator counts them (it raises on
    a bad file), or None without one."""
    from competition.rules.submission import validate_submission

    return validate_submission(submission, test_csv) if submission else None


# ---------------------------------------------------------------- report

def markdown_table(results: list[dict[str, Any]]) -> str:
    """Preset x stage seconds, real training tokens/s, peak GPU memory, fill-ins and the submission."""
    stages = [s for s in STAGES if any(s in r.get("stage_seconds", {}) for r in results)]
    header = ["preset", "build s", *[f"{s} s" for s in stages], "command s", "steps", "real tokens/s",
              "peak GiB (alloc/reserved)", "fill-ins dev/test", "validated test rows"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if "error" in r and "stage_seconds" not in r:
            lines.append(f"| {_label(r)} | {_cell(r.get('build_seconds'))} | " + f"failed: {r['error']} |")
            continue
        peak = r.get("peak_gpu_memory_gib")
        fills = r.get("fill_ins", {})
        row = [_label(r), _cell(r.get("build_seconds")),
               *[_cell(r["stage_seconds"].get(s)) for s in stages], _cell(r.get("command_seconds")),
               _cell(r.get("global_step")), _cell(r.get("training_speed", {}).get("real_tokens_per_s")),
               f"{peak['allocated']:.1f} / {peak['reserved']:.1f}" if peak else "-",
               " / ".join(f"{fills[s]['share']:.0%}" if s in fills else "-" for s in ("dev", "test")),
               f"failed: {r['error']}" if r.get("error") else _cell(r.get("submission_rows"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def cap_table(results: list[dict[str, Any]]) -> str:
    """Per preset and memory cap: fits (or the failing stage), fitted settings, speed, prediction seconds, peak
    memory, optimizer steps, tokens per step and out-of-memory fallbacks."""
    header = ["preset", "cap GiB (free seen)", "fits", "fitted settings", "real tokens/s", "predict dev s",
              "predict test s", "peak GiB (alloc/reserved)", "steps", "tokens/step", "OOM fallbacks"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cap, held = r.get("memory_cap_gib"), r.get("memory") or {}
        seen = f" ({held['free_gib']})" if "free_gib" in held else " (ignored: CPU)" if "ignored" in held else ""
        fits = "finished" if "error" not in r else f"failed in {r.get('failed_stage', '?')}: {r.get('error_line') or r['error']}"
        peak, stages = r.get("peak_gpu_memory_gib"), r.get("stage_seconds", {})
        fitted = json.dumps(r["fitted"], ensure_ascii=False).replace("|", "/") if r.get("fitted") else "-"
        row = [r["preset"], ("-" if cap is None else f"{cap:g}") + seen, fits.replace("|", "/"), fitted,
               _cell((r.get("training_speed") or {}).get("real_tokens_per_s")), _cell(stages.get("predict_dev")),
               _cell(stages.get("predict_test")), f"{peak['allocated']:.1f} / {peak['reserved']:.1f}" if peak else "-",
               _cell(r.get("global_step")), _cell(r.get("tokens_per_step")),
               ", ".join(f"{f['stage']} x{f.get('split')}" for f in r.get("oom_fallbacks", [])) or "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _label(result: dict[str, Any]) -> str:
    """The preset, with its memory cap when it ran under one."""
    cap = result.get("memory_cap_gib")
    return result["preset"] if cap is None else f"{result['preset']} @ {cap:g} GiB"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def device_name(smoke: bool) -> str:
    import torch

    if smoke:
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError("full-size runs need a CUDA GPU (4-bit QLoRA, bf16); use --smoke on the CPU")
    return torch.cuda.get_device_name(0)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    presets = [name for name in args.presets.split(",") if name]
    for name in presets:
        get_preset(name)  # an unknown name fails here, listing the known ones
        if not (args.models / name / "config.json").is_file():
            raise ConfigError(f"{args.models / name}: no config.json; --models is the folder models.sh prints")
    report: dict[str, Any] = {"device": device_name(args.smoke), "smoke": args.smoke, "train_rows": args.train_rows,
                              "data": str(args.data), "overrides": args.overrides, "presets": []}
    report["memory_caps_gib"] = args.memory_caps
    data = write_stand_in_data(args.data, args.work / "data", args.train_rows, args.smoke)
    for name in presets:
        report["presets"].extend(run_preset(name, args, data))
    report["table"] = markdown_table(report["presets"]) + "\n" + cap_table(report["presets"])
    print(json.dumps(report, ensure_ascii=False, indent=2))
    print(report["table"])
    if args.out:
        from competition.rules.files import write_text_atomic

        write_text_atomic(args.out, json.dumps(report, ensure_ascii=False, indent=2))
        write_text_atomic(args.out.with_suffix(".md"), report["table"])
    return 1 if any("error" in r for r in report["presets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
