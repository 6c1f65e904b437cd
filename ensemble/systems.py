"""Finding, reading and aligning the systems to ensemble.

A *system* is one model's predictions for one or both splits (dev, test). Files are grouped into systems by their
`.meta.json` sidecar (`run_dir`, `split`), else by the names `preds_dev.csv`/`preds_test.csv` in one folder, else by
a `dev`/`test` part in the file name (`sysA_dev.csv`), else by matching the fnames of the gold or test file. Every
split's files must carry exactly the same fnames (`DataError` otherwise), so no row can be lost or invented.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from competition.rules.data import align_predictions
from competition.rules.errors import DataError
from competition.rules.predictions import metadata_path, read_predictions_with_metadata

SPLITS = ("dev", "test")
UNKNOWN_SPLIT = "preds"  # a lone split that is neither dev nor test (no gold, no test file matched)
_SPLIT_IN_NAME = re.compile(r"(?:^|[_.\-])(dev|test)(?:$|[_.\-])")


@dataclass
class PredictionFile:
    """One predictions CSV with what we know about it."""

    path: Path
    frame: pd.DataFrame
    metadata: dict[str, Any]
    split: str
    system: str


@dataclass
class System:
    """One system's summaries per split, aligned to the split's fname order."""

    name: str
    files: dict[str, Path] = field(default_factory=dict)
    summaries: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


def discover_prediction_files(runs_dir: Path | str, exclude: Sequence[Path | str] = ()) -> list[Path]:
    """Every `preds_dev.csv` + `preds_test.csv` pair under `runs_dir` (recursive), skipping `exclude` folders.

    Folders with only one of the two files (an unfinished run), earlier ensemble outputs (sidecar track
    "ensemble") and runs of random weights (sidecar `random_weights`) are skipped with a note on stdout.
    """
    runs_dir = Path(runs_dir)
    excluded = [Path(p).resolve() for p in exclude]
    found: list[Path] = []
    for dev in sorted(runs_dir.rglob("preds_dev.csv")):
        folder = dev.parent.resolve()
        if any(folder == e or e in folder.parents for e in excluded):
            continue
        if any(part.startswith(".") for part in dev.relative_to(runs_dir).parts[:-1]):
            continue  # a hidden folder: an output still being built, or one set aside while replaced
        test = dev.with_name("preds_test.csv")
        if _is_ensemble_output(dev):
            print(f"note: skipping {dev.parent} (an ensemble output)")
        elif _sidecar(dev).get("random_weights"):
            print(f"note: skipping {dev.parent} (a run of random weights: model_path is a `make checkpoint` build)")
        elif test.is_file():
            found += [dev, test]
        else:
            print(f"note: skipping {dev.parent} (preds_dev.csv without preds_test.csv)")
    return found


def _is_ensemble_output(path: Path) -> bool:
    """True when the sidecar says an earlier ensemble wrote the file (never ensemble an ensemble by accident)."""
    return _sidecar(path).get("track") == "ensemble"


def _sidecar(path: Path) -> dict[str, Any]:
    """The file's `.meta.json` sidecar, or {} when it has none (or an unreadable one: reading the file says so)."""
    sidecar = metadata_path(path)
    try:
        loaded = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _split_from_name(path: Path) -> str | None:
    match = _SPLIT_IN_NAME.search(path.stem.lower())
    return match.group(1) if match else None


def _system_name(path: Path, metadata: dict[str, Any], split: str) -> str:
    if metadata.get("run_dir"):
        return Path(str(metadata["run_dir"])).name
    if path.stem in (f"preds_{s}" for s in SPLITS):
        return path.parent.name or path.stem
    stem = _SPLIT_IN_NAME.sub(lambda m: "" if m.group(0)[0].isalnum() else m.group(0)[0], path.stem.lower(), count=1)
    return stem.strip("_.-") or path.stem


def _infer_split(path: Path, frame: pd.DataFrame, metadata: dict[str, Any],
                 known_fnames: dict[str, set[str]]) -> str:
    split = metadata.get("split") or _split_from_name(path)
    if split:
        if split not in SPLITS:
            raise DataError(f"{path}.meta.json: split '{split}'; expected one of {list(SPLITS)}")
        return str(split)
    fnames = set(frame["fname"])
    for candidate, reference in known_fnames.items():
        if fnames == reference:
            return candidate
    return UNKNOWN_SPLIT


def read_prediction_files(paths: Sequence[Path | str], known_fnames: dict[str, set[str]]) -> list[PredictionFile]:
    """Read predictions with their sidecars and decide each file's split and system name.

    ``known_fnames`` maps "dev"/"test" to the gold/test fnames (when known) for files that say nothing themselves.
    """
    files = []
    for raw in paths:
        path = Path(raw)
        frame, metadata = read_predictions_with_metadata(path)
        split = _infer_split(path, frame, metadata, known_fnames)
        files.append(PredictionFile(path, frame, metadata, split, _system_name(path, metadata, split)))
    return files


def build_systems(files: Sequence[PredictionFile],
                  reference_order: dict[str, Sequence[str]]) -> tuple[dict[str, list[str]], list[System]]:
    """Group files into systems aligned to one fname order per split.

    The order of a split is ``reference_order[split]`` (gold or test file) when given, else the first file's.
    Errors (DataError): two files of one system for one split, a system missing a split that others have,
    or fnames that differ from the split's order (naming the file, the counts and examples).
    """
    splits = sorted({f.split for f in files}, key=lambda s: (s not in SPLITS, s))
    if len(splits) > 1 and UNKNOWN_SPLIT in splits:
        unknown = next(f.path for f in files if f.split == UNKNOWN_SPLIT)
        raise DataError(f"{unknown}: cannot tell whether it is dev or test predictions; name it *_dev.csv/*_test.csv "
                        f"or give it a .meta.json with \"split\"")
    order: dict[str, list[str]] = {}
    for split in splits:
        first = next(f for f in files if f.split == split)
        order[split] = list(reference_order.get(split) or first.frame["fname"])
    systems: dict[str, System] = {}
    for f in files:
        system = systems.setdefault(f.system, System(f.system))
        if f.split in system.files:
            raise DataError(f"{f.path}: second {f.split} predictions file for system '{f.system}' "
                            f"(first: {system.files[f.split]}); give each system one file per split")
        system.files[f.split] = f.path
        system.summaries[f.split] = _aligned(f, order[f.split])
        system.metadata[f.split] = f.metadata
    for system in systems.values():
        missing = [s for s in splits if s not in system.files]
        if missing:
            present = next(iter(system.files.values()))
            raise DataError(f"{present}: system '{system.name}' has no {'/'.join(missing)} predictions but other "
                            f"inputs do; give every system the same splits")
    return order, sorted(systems.values(), key=lambda s: s.name)


def _aligned(file: PredictionFile, fnames: Sequence[str]) -> list[str]:
    # test_ensemble_cli pins the quoted list format ("missing ['test_8']"), the scorer's tests the plain one.
    return align_predictions(file.frame, fnames, file.path, reference=f"the other {file.split} inputs",
                             show_names=lambda names: str(names[:5]))


def drop_duplicate_systems(systems: Sequence[System]) -> tuple[list[System], list[str]]:
    """Count identical systems once: the same summary for every fname in every split (a byte copy or a reordered
    one) would otherwise add votes to MBR and fusion. The first by name stays. Returns the kept systems and notes
    naming the identical files (also for files identical in one split only, which are kept)."""
    kept: dict[tuple[tuple[str, ...], ...], System] = {}
    copies: dict[str, list[System]] = {}
    for system in systems:
        first = kept.setdefault(tuple(tuple(system.summaries[s]) for s in sorted(system.summaries)), system)
        copies.setdefault(first.name, [first])
        if first is not system:
            copies[first.name].append(system)
    notes = [f"identical predictions, counted once as system '{group[0].name}': "
             + "; ".join(" = ".join(str(s.files[split]) for s in group) for split in group[0].files)
             for group in copies.values() if len(group) > 1]
    unique = list(kept.values())
    for split in sorted({s for system in unique for s in system.summaries}):
        same: dict[tuple[str, ...], list[System]] = {}
        for system in unique:
            same.setdefault(tuple(system.summaries[split]), []).append(system)
        notes += [f"identical {split} predictions (other splits differ, all kept): "
                  + " = ".join(str(s.files[split]) for s in group) for group in same.values() if len(group) > 1]
    return unique, notes
