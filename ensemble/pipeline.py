"""The ensembling pipeline: load systems, post-process, score on dev, cross-validate methods, choose, write.

`python -m ensemble` (see `ensemble/__main__.py`) is a thin CLI over `load_inputs`, `run_ensemble` and
`write_outputs`. Order of work:
  1. every system's candidates go through the post-processing rules (each rule also measured on dev);
  2. pairwise candidate similarities per split (the MBR utility);
  3. with dev references: each system's dev score, and each method's in-sample and cross-validated dev score;
  4. the chosen method is fitted on all dev rows and applied to every split (`fusion` writes new text; the other
     methods pick one candidate per row).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from competition.harness.config import CONFIG_FILE, config_hash, config_to_dict
from competition.harness.runs import RUN_INFO_FILE, write_run_files
from competition.rules.data import read_gold, read_split, where
from competition.rules.errors import ConfigError, DataError
from competition.rules.files import clear_temp_dirs_beside, no_partial_outputs, replace_dir, temp_dir_beside
from competition.rules.metric import DEFAULT_ANALYZER, MORPHEME_ANALYZERS, sample_scores
from competition.rules.predictions import PredictionMeta, metadata_path, write_predictions
from ensemble.config import METHODS, EnsembleConfig
from ensemble.crossval import CrossValidation, cross_validate, make_folds
from ensemble.fusion import Fusion
from ensemble.mbr import similarity_tensor
from ensemble.methods import Method, SplitData, composes, output_scores, output_summaries
from ensemble.postprocess import RULES, apply_pipeline
from ensemble.report import write_ensemble_report
from ensemble.results import EnsembleResult, Inputs, MethodScore, RuleEffect
from ensemble.routing import BestOnDev, TopicRouting
from ensemble.systems import (
    SPLITS,
    UNKNOWN_SPLIT,
    PredictionFile,
    System,
    build_systems,
    discover_prediction_files,
    drop_duplicate_systems,
    read_prediction_files,
)
from ensemble.weights import Mbr, WeightedMbr

SINGLE = "single"  # one input system: nothing to choose
OUTPUT_NAMES = ("preds_*.csv", "preds_*.meta.json", RUN_INFO_FILE, CONFIG_FILE, "report")  # what a folder --out holds


def build_methods(config: EnsembleConfig) -> dict[str, Method]:
    """The methods, configured (fusion needs a morpheme analyzer: not with `baseline`)."""
    fusion = {"fusion": Fusion(config.analyzer, config.fusion_passes)} if config.analyzer in MORPHEME_ANALYZERS else {}
    return {
        **fusion,
        "mbr": Mbr(),
        "weighted-mbr": WeightedMbr(tuple(config.weight_levels), config.max_grid, config.optuna_trials, config.seed),
        "best": BestOnDev(),
        "topic": TopicRouting(config.min_topic_count),
    }


def load_inputs(preds: Sequence[Path | str], runs_dir: Path | str | None, gold_path: Path | str | None,
                test_path: Path | str | None, exclude: Sequence[Path | str] = ()) -> Inputs:
    """Read every input; gold and test files fix the fname order of their split (and catch lost rows)."""
    paths = [Path(p) for p in preds]
    if runs_dir is not None:
        paths += discover_prediction_files(runs_dir, exclude)
    paths = list(dict.fromkeys(p.resolve() for p in paths))
    if not paths:
        raise ConfigError(f"no prediction files: give --preds A.csv ... or a --runs folder with preds_dev.csv + "
                          f"preds_test.csv pairs (searched {runs_dir})")
    gold = read_gold(gold_path) if gold_path else None
    test = read_split(test_path, "test") if test_path else None
    known = {split: frame for split, frame in (("dev", gold), ("test", test)) if frame is not None}
    files = read_prediction_files(paths, {s: set(f["fname"]) for s, f in known.items()})
    if gold is not None:
        check_unmatched_against_gold(files, gold, gold_path)
    order, systems = build_systems(files, {s: list(f["fname"]) for s, f in known.items()})
    systems, notes = drop_duplicate_systems(systems)
    data_files = paths + [Path(p) for p in (gold_path, test_path) if p]
    return Inputs(order, systems, gold, test, data_files, notes)


def check_unmatched_against_gold(files: Sequence[PredictionFile], gold: pd.DataFrame, gold_path: Path | str) -> None:
    """A file whose split is unknown because its fnames differ from --gold's is an error naming the difference."""
    unmatched = [f for f in files if f.split == UNKNOWN_SPLIT]
    if not unmatched:
        return
    first = unmatched[0]
    predicted, expected = set(first.frame["fname"]), list(gold["fname"])
    missing = [f for f in expected if f not in predicted]
    extra = sorted(predicted - set(expected))
    raise DataError(f"{where(first.path, column='fname')}: fnames differ from --gold {gold_path}: {len(missing)} "
                    f"missing {missing[:5]}, {len(extra)} extra {extra[:5]} ({len(unmatched)} such file(s)); "
                    f"expected the gold file's fnames (or name test predictions *_test.csv)")


def _dialogues(inputs: Inputs, split: str) -> list[str] | None:
    frame = inputs.gold if split == "dev" else inputs.test if split == "test" else None
    return list(frame["dialogue"]) if frame is not None and "dialogue" in frame.columns else None


def _topics(inputs: Inputs, split: str) -> np.ndarray | None:
    frame = inputs.gold if split == "dev" else inputs.test if split == "test" else None
    return np.asarray(frame["topic"], dtype=object) if frame is not None and "topic" in frame.columns else None


def measure_rules(summaries: Sequence[Sequence[str]], dialogues: Sequence[str] | None,
                  references: Sequence[Sequence[str]], enabled: Sequence[str],
                  analyzer: str = DEFAULT_ANALYZER) -> list[RuleEffect]:
    """Mean dev score over systems of the configured pipeline with and without each rule.

    Enabled rules are removed one at a time; each disabled rule is added at its default position, so the report
    also says whether turning it on would help. ``summaries[k]`` are system k's raw dev summaries.
    """
    def mean_score(rules: Sequence[str]) -> float:
        return float(np.mean([sample_scores(apply_pipeline(s, dialogues, rules), references, analyzer).mean()
                              for s in summaries]))

    full = mean_score(enabled)
    effects = []
    for rule in RULES:
        if rule in enabled:
            effects.append(RuleEffect(rule, True, full, mean_score([r for r in enabled if r != rule])))
        else:
            position = [r for r in RULES if r in enabled or r == rule]
            effects.append(RuleEffect(rule, False, mean_score(position), full))
    return effects


def resolve_method(config: EnsembleConfig, n_systems: int, has_dev_scores: bool) -> str:
    """The method to run: the configured one; for `default`, the best cross-validated method when dev scores
    exist (`auto`), else fusion (>= 3 systems; MBR under the `baseline` analyzer)."""
    if n_systems == 1:
        return SINGLE
    method = config.method
    morphemes = config.analyzer in MORPHEME_ANALYZERS
    if method == "default":
        method = "auto" if has_dev_scores else (("fusion" if morphemes else "mbr") if n_systems >= 3 else "best")
    if method == "fusion" and not morphemes:
        raise ConfigError(f"method 'fusion' needs a morpheme analyzer ({', '.join(MORPHEME_ANALYZERS)}), "
                          f"got analyzer={config.analyzer}")
    if method in ("auto", "best", "topic", "weighted-mbr") and not has_dev_scores:
        raise ConfigError(f"method '{method}' needs dev predictions and --gold DEV.csv with references"
                          + (" (with 2 systems MBR cannot break the tie; add a system or --gold)"
                             if config.method == "default" else ""))
    return method


def _score_methods(methods: dict[str, Method], dev: SplitData, config: EnsembleConfig) -> list[MethodScore]:
    folds = make_folds(dev.n_rows, config.folds, config.seed)
    all_rows = np.arange(dev.n_rows)
    scores = []
    for name, method in methods.items():
        params = method.fit(dev, all_rows)
        in_sample = float(output_scores(method, dev, all_rows, params, method.choose(dev, all_rows, params)).mean())
        cv: CrossValidation = cross_validate(method, dev, folds)
        fold_log = [{"train_rows": len(f.train_rows), "heldout_rows": f.heldout_rows.tolist(),
                     "heldout_score": f.heldout_score, "params": f.params} for f in cv.folds]
        scores.append(MethodScore(name, in_sample, cv.score, params, fold_log))
    return scores


def run_ensemble(config: EnsembleConfig, inputs: Inputs, progress: bool = True) -> EnsembleResult:
    """Post-process, score, choose a method and apply it to every split."""
    systems = inputs.systems
    splits = list(inputs.order)
    processed = {s: [apply_pipeline(sys_.summaries[s], _dialogues(inputs, s), config.rules) for sys_ in systems]
                 for s in splits}
    candidates = {s: [list(row) for row in zip(*processed[s])] for s in splits}
    data = {s: SplitData(similarity_tensor(candidates[s], config.analyzer, progress), _topics(inputs, s),
                         candidates=candidates[s], analyzer=config.analyzer) for s in splits}
    result = EnsembleResult(config, SINGLE, {}, inputs.order, {}, {}, [s.name for s in systems],
                            [_source(s) for s in systems], notes=list(inputs.notes))
    has_scores = inputs.gold is not None and "dev" in splits
    if has_scores:
        references = list(inputs.gold["references"])
        raw = [sample_scores(s.summaries["dev"], references, config.analyzer) for s in systems]
        scores = np.stack([sample_scores(p, references, config.analyzer) for p in processed["dev"]], axis=1)
        data["dev"] = dataclasses.replace(data["dev"], scores=scores, references=references)
        result.dev_sample_scores, result.dev_topics = scores, (list(inputs.gold["topic"])
                                                              if "topic" in inputs.gold.columns else None)
        result.system_scores = {s.name: {"raw": float(r.mean()), "postprocessed": float(scores[:, k].mean())}
                                for k, (s, r) in enumerate(zip(systems, raw))}
        result.rule_effects = measure_rules([s.summaries["dev"] for s in systems], _dialogues(inputs, "dev"),
                                            references, config.rules, config.analyzer)
    method = resolve_method(config, len(systems), has_scores)
    methods = build_methods(config)
    if has_scores and len(systems) > 1:
        result.method_scores = _score_methods(methods, data["dev"], config)
    if method == "auto":
        best = max(result.method_scores, key=lambda m: (m.cross_validated, -METHODS.index(m.method)))
        method = best.method
        result.notes.append(f"auto: chose '{method}' (best cross-validated dev score {best.cross_validated:.2f})")
    if method == "topic" and any(data[s].topics is None for s in splits if s != "dev"):
        result.notes.append("topic routing: test rows have no topic column, so they all use the best overall system")
    result.method = method
    if method != SINGLE:
        fitted = next((m.params for m in result.method_scores if m.method == method), None)
        result.params = fitted if fitted is not None else methods[method].fit(data.get("dev"), np.arange(0))
    for split in splits:
        _apply(result, methods.get(method), data[split], split)
    return result


def apply_fitted(config: EnsembleConfig, method: str, params: dict, summaries_by_system: Sequence[Sequence[str]],
                 dialogues: Sequence[str], topics: Sequence[str] | None = None) -> list[str]:
    """An ensemble that was fitted already (its method, params and rules, as its sidecar records them) applied to
    new rows, as `run_ensemble` applies it to test: each system's summaries post-processed, then combined."""
    processed = [apply_pipeline(list(s), list(dialogues), config.rules) for s in summaries_by_system]
    candidates = [list(row) for row in zip(*processed)]
    data = SplitData(similarity_tensor(candidates, config.analyzer, False),
                     np.asarray(topics, dtype=object) if topics is not None else None,
                     candidates=candidates, analyzer=config.analyzer)
    rows = np.arange(data.n_rows)
    if method == SINGLE:
        return [row[0] for row in candidates]
    chosen_method = build_methods(config)[method]
    return output_summaries(chosen_method, data, rows, params, chosen_method.choose(data, rows, params))


def _apply(result: EnsembleResult, method: Method | None, data: SplitData, split: str) -> None:
    """One summary per row of a split into ``result``; ``method`` None: the single system's candidates."""
    rows = np.arange(data.n_rows)
    if method is None:
        choices, summaries = np.zeros(len(rows), dtype=int), [row[0] for row in data.candidates]
    else:
        choices = method.choose(data, rows, result.params)
        summaries = output_summaries(method, data, rows, result.params, choices)
    result.choices[split], result.summaries[split] = choices, summaries
    if data.scores is not None:  # dev with references
        result.dev_output_scores = (data.scores[rows, choices] if method is None
                                    else output_scores(method, data, rows, result.params, choices))
    if method is not None and composes(method):
        edited = sum(s != row[k] for s, row, k in zip(summaries, data.candidates, choices))
        result.notes.append(f"{method.name}: {split}: {edited} of {len(rows)} rows edited from their MBR pick")


def _source(system: System) -> str:
    """Where a system came from: its run folder when the metadata names one, else its first file."""
    for metadata in system.metadata.values():
        if metadata.get("run_dir"):
            return str(metadata["run_dir"])
    return str(next(iter(system.files.values())))


def output_metadata(result: EnsembleResult, split: str, out: Path) -> PredictionMeta:
    """The sidecar of an ensembled predictions file (read by `competition.submit`)."""
    return PredictionMeta(split, str(out), track="ensemble", config_hash=config_hash(result.config), system="ensemble",
                          extra={"method": result.method, "params": result.params, "rules": list(result.config.rules),
                                 "systems": result.systems, "source_runs": result.source_runs,
                                 "dev_score": result.dev_score, "cv_dev_score": result.cv_score,
                                 "config": config_to_dict(result.config)})


def write_outputs(result: EnsembleResult, inputs: Inputs, out: Path | str) -> list[Path]:
    """Write predictions (+ sidecars), run.json, config.yaml and the report; returns the prediction files.

    ``out`` ending in .csv: that one file for the single split, the report in ``<stem>_report/`` beside it.
    Otherwise ``out`` is a folder receiving preds_<split>.csv and report/: everything is built in a hidden folder
    beside it and then swapped in whole, so an interrupted run leaves the previous complete folder (never a mix).
    """
    out = Path(out)
    if out.suffix.lower() != ".csv":
        return _write_folder(result, inputs, out)
    if len(result.order) != 1:
        raise ConfigError(f"--out {out}: a .csv holds one split but the inputs have {list(result.order)}; "
                          f"give a folder instead")
    split = next(iter(result.order))
    report_dir = out.with_name(f"{out.stem}_report")
    new_files = [p for p in (out, metadata_path(out)) if not p.exists()]
    with no_partial_outputs(report_dir):  # a failed write leaves nothing behind
        try:
            return _write_files(result, inputs, out, {split: out}, report_dir, None)
        except BaseException:
            for path in new_files:
                path.unlink(missing_ok=True)
            raise


def _write_folder(result: EnsembleResult, inputs: Inputs, out: Path) -> list[Path]:
    clear_temp_dirs_beside(out)
    check_replaceable(out)
    building = temp_dir_beside(out)
    try:
        written = _write_files(result, inputs, out, {s: building / f"preds_{s}.csv" for s in result.order},
                               building / "report", building)
        replace_dir(building, out)
    except BaseException as err:
        shutil.rmtree(building, ignore_errors=True)
        if isinstance(err, OSError) and err.errno is not None and str(building) in str(err.filename or building):
            raise OSError(err.errno, err.strerror, str(out)) from err  # name --out, not the hidden folder
        raise
    return [out / path.name for path in written]


def check_replaceable(out: Path) -> None:
    """``out`` is replaced whole: refuse a folder holding anything an ensemble does not write (ConfigError)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder; give a folder or OUT.csv")
    foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")
                     and not any(fnmatch.fnmatch(p.name, pattern) for pattern in OUTPUT_NAMES))
    if foreign:
        raise ConfigError(f"--out {out}: holds {', '.join(foreign[:5])}, which an ensemble does not write; the folder "
                          f"is replaced whole, so give a new folder or an earlier ensemble output")


def _write_files(result: EnsembleResult, inputs: Inputs, out: Path, targets: dict[str, Path], report_dir: Path,
                 run_folder: Path | None) -> list[Path]:
    """Predictions and sidecars (which name ``out``), then config.yaml and run.json into ``run_folder``, then the
    report."""
    next(iter(targets.values())).parent.mkdir(parents=True, exist_ok=True)
    written = [write_predictions(path, result.order[s], result.summaries[s], output_metadata(result, s, out))
               for s, path in targets.items()]
    if run_folder is not None:
        write_run_files(run_folder, result.config, inputs.data_files,
                        extra={"method": result.method, "dev_score": result.dev_score, "cv_dev_score": result.cv_score})
    write_ensemble_report(report_dir, result, inputs)
    return written


__all__ = ["EnsembleConfig", "Inputs", "EnsembleResult", "load_inputs", "run_ensemble", "write_outputs", "apply_fitted",
           "measure_rules", "METHODS", "SPLITS"]
