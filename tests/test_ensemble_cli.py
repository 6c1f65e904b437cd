"""Tests for the `python -m ensemble` CLI on tiny in-memory systems (folder and .csv outputs, errors exit 2).

Run: .venv/bin/python -m pytest tests/test_ensemble_cli.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from competition.rules.predictions import write_predictions
from ensemble.__main__ import main
from ensemble.extractive import central_utterance

N_DEV, N_TEST = 12, 9
ITEMS = ["사과", "포도", "딸기", "수박", "참외", "자두", "복숭아", "바나나"]


def _summary(i: int, system: int) -> str:
    words = [f"{ITEMS[(i + k) % len(ITEMS)]}" for k in range(4)]
    if system == 2:  # the weakest system drops half the words
        words = words[:2]
    if system == 1 and i % 3 == 0:
        words = ["고양이", "강아지"]
    return f"#Person1#은 {' '.join(words)}를 산다."


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """dev.csv (with topics) and test.csv in tmp_path/data, three systems' runs in tmp_path/runs."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    dev = pd.DataFrame({"fname": [f"dev_{i}" for i in range(N_DEV)],
                        "dialogue": [f"#Person1#: 안녕 {i}.\n#Person2#: 네 {i}." for i in range(N_DEV)],
                        "summary": [_summary(i, 0) for i in range(N_DEV)],
                        "topic": ["쇼핑" if i % 2 else "여행" for i in range(N_DEV)]})
    dev.to_csv(data_dir / "dev.csv", index=False)
    test = pd.DataFrame({"fname": [f"test_{i}" for i in range(N_TEST)],
                         "dialogue": [f"#Person1#: 안녕 {i}.\n#Person2#: 네." for i in range(N_TEST)]})
    test.to_csv(data_dir / "test.csv", index=False)
    for system in range(3):
        run = tmp_path / "runs" / f"sys{system}"
        for split, frame in (("dev", dev), ("test", test)):
            summaries = [_summary(i, system) + (" 그리고" if system == 2 else "") for i in range(len(frame))]
            write_predictions(run / f"preds_{split}.csv", frame["fname"], summaries,
                              {"split": split, "run_dir": str(run), "preset": "toy"})
    return tmp_path


def test_runs_folder_ensemble_keeps_every_test_fname(data: Path, capsys: pytest.CaptureFixture) -> None:
    out = data / "runs" / "ensemble"
    assert main(["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"), "--out", str(out)]) == 0
    test = pd.read_csv(data / "data/test.csv")
    preds = pd.read_csv(out / "preds_test.csv")
    assert preds["fname"].tolist() == test["fname"].tolist()
    assert preds["summary"].str.len().gt(0).all()
    meta = json.loads((out / "preds_test.meta.json").read_text())
    assert len(meta["source_runs"]) == 3 and meta["split"] == "test"
    report = json.loads((out / "report/ensemble_report.json").read_text())
    assert set(report["systems"]) == {"sys0", "sys1", "sys2"}
    # with --gold the default is the method with the best cross-validated dev score
    assert meta["method"] == report["method"]
    chosen = next(m for m in report["methods"] if m["method"] == report["method"])
    assert chosen["cross_validated"] == max(m["cross_validated"] for m in report["methods"])
    assert {m["method"] for m in report["methods"]} == {"fusion", "mbr", "weighted-mbr", "best", "topic"}
    cut = next(r for r in report["rules"] if r["rule"] == "cut_unfinished_sentence")
    assert cut["delta"] > 0  # sys2's trailing " 그리고" is cut, which raises its score
    assert (out / "report/ensemble_scores.png").stat().st_size > 0
    assert (out / "report/dev_rouge/rouge_report.md").is_file()
    assert report["by_topic"] == []  # 6 dev rows a topic: too few for per-topic scores
    assert "no dev topic has 10 or more rows" in (out / "report/ensemble_report.md").read_text()
    # A second run must not pick up its own or another earlier ensemble output as a fourth system.
    assert main(["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"), "--out", str(out)]) == 0
    assert main(["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"),
                 "--out", str(data / "runs/other/ens")]) == 0
    assert main(["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("3 systems") == 4


def test_auto_picks_the_best_cross_validated_method(data: Path) -> None:
    out = data / "auto"
    assert main(["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"), "--out", str(out),
                 "--method", "auto", "folds=3"]) == 0
    report = json.loads((out / "report/ensemble_report.json").read_text())
    best = max(m["cross_validated"] for m in report["methods"])
    chosen = next(m for m in report["methods"] if m["method"] == report["method"])
    assert chosen["cross_validated"] == best
    for method in report["methods"]:  # fold bookkeeping: every dev row held out exactly once
        held = sorted(r for f in method["folds"] for r in f["heldout_rows"])
        assert held == list(range(N_DEV)) and len(method["folds"]) == 3


def test_plain_csvs_single_split_to_csv(data: Path, tmp_path: Path) -> None:
    paths = []
    for system in range(3):
        frame = pd.read_csv(data / f"runs/sys{system}/preds_dev.csv")
        path = tmp_path / f"plain/sys{system}_dev.csv"
        path.parent.mkdir(exist_ok=True)
        frame.to_csv(path, index=False)  # no metadata sidecar
        paths.append(str(path))
    out = tmp_path / "ens.csv"
    assert main(["--preds", *paths, "--out", str(out), "--disable-rule", "cut_unfinished_sentence"]) == 0
    result = pd.read_csv(out)
    assert list(result.columns) == ["fname", "summary"] and len(result) == N_DEV
    # Two splits cannot go into one .csv.
    both = [str(data / "runs/sys0/preds_dev.csv"), str(data / "runs/sys0/preds_test.csv")]
    assert main(["--preds", *both, "--out", str(tmp_path / "x.csv")]) == 2


def test_differing_fnames_exit_2(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken"
    frame = pd.read_csv(data / "runs/sys1/preds_test.csv").iloc[:-1]  # loses one test fname
    write_predictions(broken / "preds_test.csv", frame["fname"], frame["summary"], {"split": "test"})
    dev = pd.read_csv(data / "runs/sys1/preds_dev.csv")
    write_predictions(broken / "preds_dev.csv", dev["fname"], dev["summary"], {"split": "dev"})
    code = main(["--preds", str(data / "runs/sys0/preds_dev.csv"), str(data / "runs/sys0/preds_test.csv"),
                 str(broken / "preds_dev.csv"), str(broken / "preds_test.csv"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "preds_test.csv" in err and "missing ['test_8']" in err
    assert not (tmp_path / "o" / "preds_test.csv").exists()
    # Against the test file: a system with a fname the test file lacks is an error too.
    assert main(["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"),
                 "--test", str(data / "data/dev.csv"), "--out", str(tmp_path / "p")]) == 2


@pytest.mark.parametrize("method", [[], ["--method", "mbr"]], ids=["default", "mbr"])
def test_gold_with_other_fnames_exits_2_naming_them(data: Path, tmp_path: Path, capsys, method: list[str]) -> None:
    """Plain CSVs (no split in their name or sidecar) whose fnames differ from --gold: not silently unscored."""
    paths = []
    for system in (0, 1):
        frame = pd.read_csv(data / f"runs/sys{system}/preds_dev.csv").iloc[:-1]  # loses dev_11
        paths.append(tmp_path / f"system{system}.csv")
        frame.to_csv(paths[-1], index=False)
    code = main(["--preds", *map(str, paths), "--gold", str(data / "data/dev.csv"), *method,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "fnames differ from --gold" in err and "1 missing ['dev_11']" in err and "system0.csv" in err, err
    assert "needs" not in err and not (tmp_path / "o").exists()


def test_bad_config_exits_2(data: Path) -> None:
    args = ["--runs", str(data / "runs"), "--out", str(data / "o")]
    assert main(args + ["rules=strip_special_tokens,nope"]) == 2
    assert main(args + ["--method", "best"]) == 2  # best-on-dev needs --gold


def test_central_utterance() -> None:
    # The third line repeats the other two; it is the most similar to the rest of the dialogue.
    dialogue = "#Person1#: 사과 포도.\n#Person2#: 딸기 수박.\n#Person1#: 사과 포도 딸기 수박."
    assert central_utterance(dialogue) == "#Person1#: 사과 포도 딸기 수박."
    assert central_utterance("#Person1#: 혼자.") == "#Person1#: 혼자."


def test_scores_plot_shows_the_spread_and_keeps_its_legend_off_the_bars(tmp_path, monkeypatch) -> None:
    """Real systems score 42-46.7: an axis from 0 hid the differences, and the legend sat on the bars."""
    from types import SimpleNamespace

    import ensemble.report as report

    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig))
    result = SimpleNamespace(systems=["a", "b", "c"],
                             system_scores={n: {"postprocessed": v} for n, v in zip("abc", (44.6, 42.4, 46.7))},
                             method_scores=[SimpleNamespace(method="mbr", in_sample=45.2, cross_validated=45.1)])
    report._scores_plot(result, tmp_path / "scores.png")
    (fig,) = figures
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 40 <= low <= 42.4 and 46.7 < high <= 50
    fig.canvas.draw()
    legend, axes_box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes_box.x1 or legend.y0 >= axes_box.y1  # beside or above the plot area, not on it


@pytest.mark.parametrize("method", ["mbr", "fusion"])
def test_identical_systems_count_once_and_are_named(data: Path, method: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A byte copy and a row-reordered copy of one system must not give it extra votes."""
    systems = [str(data / f"runs/sys{k}/preds_{split}.csv") for k in range(3) for split in ("dev", "test")]
    copies = []
    for split in ("dev", "test"):
        frame = pd.read_csv(data / f"runs/sys1/preds_{split}.csv")
        for name, copy in (("bytecopy", None), ("reordered", frame.iloc[::-1])):
            path = data / f"copies/{name}_{split}.csv"
            path.parent.mkdir(exist_ok=True)
            if copy is None:
                path.write_bytes((data / f"runs/sys1/preds_{split}.csv").read_bytes())
            else:
                copy.to_csv(path, index=False)
            copies.append(str(path))
    common = ["--gold", str(data / "data/dev.csv"), "--method", method]
    assert main(["--preds", *systems, "--out", str(data / "once"), *common]) == 0
    capsys.readouterr()
    assert main(["--preds", *systems, *copies, "--out", str(data / "thrice"), *common]) == 0
    printed = capsys.readouterr().out
    for split in ("dev", "test"):
        once, thrice = (pd.read_csv(data / f"{out}/preds_{split}.csv") for out in ("once", "thrice"))
        assert thrice["summary"].tolist() == once["summary"].tolist()
    note = next(line for line in printed.splitlines() if "identical predictions" in line)
    assert all(name in note for name in ("sys1/preds_dev.csv", "bytecopy_dev.csv", "reordered_test.csv"))
    assert "3 systems" in printed
    assert note.split("note: ")[1] in (data / "thrice/report/ensemble_report.md").read_text()


def test_files_identical_in_one_split_only_are_named_and_kept() -> None:
    from ensemble.systems import System, drop_duplicate_systems

    def system(name: str, test: list[str]) -> System:
        return System(name, {s: Path(f"{name}_{s}.csv") for s in ("dev", "test")}, {"dev": ["a", "b"], "test": test})

    kept, notes = drop_duplicate_systems([system("x", ["c"]), system("y", ["d"])])
    assert [s.name for s in kept] == ["x", "y"]
    assert notes == ["identical dev predictions (other splits differ, all kept): x_dev.csv = y_dev.csv"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_write_keeps_the_previous_folder_and_a_rerun_replaces_it_whole(data: Path, monkeypatch) -> None:
    import ensemble.report

    out = data / "ens"
    args = ["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"), "--out", str(out)]
    assert main([*args, "--method", "mbr"]) == 0
    before = _snapshot(out)
    assert {"preds_dev.csv", "run.json", "config.yaml", "report/ensemble_report.md"} <= set(before)

    def broken_plot(result, path):  # fails halfway through the report, after predictions and run.json
        raise OSError("simulated failure while writing the report")

    monkeypatch.setattr(ensemble.report, "_rules_plot", broken_plot)
    assert main([*args, "--method", "best"]) == 2
    assert _snapshot(out) == before
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(".")) == []  # no temp folder left
    monkeypatch.undo()
    (out / "report/stale_plot.png").write_bytes(b"from an older version")
    assert main([*args, "--method", "best"]) == 0
    assert json.loads((out / "run.json").read_text())["method"] == "best"
    assert not (out / "report/stale_plot.png").exists()
    assert json.loads((out / "preds_test.meta.json").read_text())["run_dir"] == str(out)
    assert ".building" not in (out / "run.json").read_text() + (out / "report/ensemble_report.md").read_text()


def test_a_folder_out_with_other_files_is_refused(data: Path, capsys: pytest.CaptureFixture) -> None:
    # the folder holding the data and the runs: replacing it whole would delete them
    preds = [str(data / f"runs/sys{k}/preds_{s}.csv") for k in range(3) for s in ("dev", "test")]
    assert main(["--preds", *preds, "--out", str(data)]) == 2
    assert "holds data, runs" in capsys.readouterr().err and (data / "runs/sys0/preds_dev.csv").is_file()


def test_a_kill_between_the_two_renames_is_repaired_by_the_next_run(tmp_path: Path) -> None:
    from competition.rules.files import clear_temp_dirs_beside, replace_dir, temp_dir_beside

    target = tmp_path / "ens"
    target.mkdir()
    (target / "old.txt").write_text("old")
    aside = tmp_path / ".ens.0123456789ab.old"
    target.rename(aside)  # killed here: the old folder aside, the new one still building
    (temp_dir_beside(target) / "new.txt").write_text("half")
    clear_temp_dirs_beside(target)
    assert [p.name for p in tmp_path.iterdir()] == ["ens"] and (target / "old.txt").read_text() == "old"
    building = temp_dir_beside(target)
    (building / "new.txt").write_text("new")
    replace_dir(building, target)
    assert [p.name for p in tmp_path.iterdir()] == ["ens"] and [p.name for p in target.iterdir()] == ["new.txt"]


def test_scores_plot_labels_carry_the_system_names(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    import ensemble.report as report

    assert report.system_labels(["baseline-kobart-20261205-120301", "llm-qwen3-14b-20261205-130301"]) == (
        ["baseline-kobart", "llm-qwen3-14b"], "")  # the run stamps go when the names stay distinct
    assert report.system_labels(["baseline-kobart-20261205-120301", "baseline-kobart-20261205-130301"]) == (
        ["120301", "130301"], "baseline-kobart-20261205-")
    long = report.system_labels(["a" * 30 + "1" + "b" * 30, "a" * 30 + "2" + "b" * 30])[0]
    assert long == ["S1 aaaaaaaa…bbbbbbbbb", "S2 aaaaaaaa…bbbbbbbbb"]  # cut alike: their position tells them apart
    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig))
    names = ["kobart_b", "kobart_c", "kot5_a"]
    result = SimpleNamespace(systems=names, system_scores={n: {"postprocessed": 44.0} for n in names},
                             method_scores=[SimpleNamespace(method="mbr", in_sample=45.2, cross_validated=45.1)])
    report._scores_plot(result, tmp_path / "scores.png")
    ticks = [t.get_text() for t in figures[0].axes[0].get_xticklabels()]
    assert ticks == ["kobart_b", "kobart_c", "kot5_a", "mbr"]
