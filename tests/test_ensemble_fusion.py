"""Tests for ensemble.fusion (sentence-level fusion from the MBR pick) and the `fusion` method in the pipeline.

Run: .venv/bin/python -m pytest tests/test_ensemble_fusion.py -q   (add -s to see the real-system figures)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.rules.errors import ConfigError
from competition.rules.metric import compute_rouge, get_tokenizer
from competition.rules.predictions import write_predictions
from ensemble.__main__ import main
from ensemble.fusion import Fusion, _RowScorer, clauses, exact_objective, fuse, fuse_row, sentences
from ensemble.mbr import mbr_choices, select, similarity_tensor
from ensemble.pipeline import EnsembleConfig, load_inputs, resolve_method, run_ensemble
from ensemble.postprocess import apply_pipeline

PREDICTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "predictions"
REAL_SYSTEMS = ("kobart_b", "kobart_c", "kot5_a")

# Four slots; candidate k writes slot k its own way and the other three like everyone else.
CONSENSUS = ["#Person1#은 내일 사과를 산다.", "#Person2#는 포도를 좋아한다.", "두 사람은 시장에 간다.",
             "비가 오면 우산을 챙긴다."]
DEVIANT = ["고양이가 창문 밖을 본다.", "기차가 역에 늦게 도착했다.", "회의는 월요일로 미뤄졌다.",
           "컴퓨터 화면이 갑자기 꺼졌다."]


def _candidate(deviant_slot: int) -> str:
    return " ".join(DEVIANT[s] if s == deviant_slot else CONSENSUS[s] for s in range(len(CONSENSUS)))


def test_takes_the_consensus_sentence_from_each_candidate() -> None:
    candidates = [_candidate(k) for k in range(4)]
    pick = select([candidates], mbr_choices(similarity_tensor([candidates])))[0]
    fused = fuse([candidates])[0]
    assert pick in candidates and " ".join(CONSENSUS) not in candidates
    assert fused == " ".join(CONSENSUS)  # no candidate has it; every sentence of it is some slot's consensus
    assert exact_objective(fused, candidates) > exact_objective(pick, candidates)


def test_small_numpy_batches_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import ensemble.fusion

    candidates = [_candidate(k) for k in range(4)]
    monkeypatch.setattr(ensemble.fusion, "_MAX_BATCH_CELLS", 1)  # one hypothesis per batch
    assert fuse([candidates])[0] == " ".join(CONSENSUS)


def test_consensus_clause_replaces_a_deviant_one() -> None:
    """Clauses are units too: one comma-separated half of a sentence is swapped, the other half kept."""
    shared, odd = "#Person1#은 저녁을 먹고,", "#Person1#은 영화를 보고,"
    tail = "#Person2#는 숙제를 한다."
    candidates = [f"{odd} {tail}", f"{shared} #Person2#는 빨래를 한다.", f"{shared} {tail}".replace("숙제", "청소"),
                  f"{shared} {tail}"]
    assert fuse_row(candidates, 0) == f"{shared} {tail}"


def _single_moves(units: list[str], pool: list[str]) -> list[str]:
    """Every summary one replace / delete / append away from ``units``."""
    moves = [" ".join(units[:i] + [p] + units[i + 1:]) for i in range(len(units)) for p in pool]
    moves += [" ".join(units[:i] + units[i + 1:]) for i in range(len(units)) if len(units) > 1]
    return moves + [" ".join(units + [p]) for p in pool]


def test_returns_the_mbr_pick_when_no_move_helps() -> None:
    candidates = ["사과 포도 딸기 수박 참외 자두", "사과 포도 딸기 수박", "딸기 수박 참외 자두", "고양이 강아지 토끼 거북"]
    start = int(mbr_choices(similarity_tensor([candidates]))[0])
    pool = [u for c in candidates for s in sentences(c) for u in [s] + clauses(s)]
    base = exact_objective(candidates[start], candidates)
    assert all(exact_objective(m, candidates) <= base for m in _single_moves([candidates[start]], pool))
    assert fuse_row(candidates, start) == candidates[start]
    same = ["같은 요약이다. 정말 같다.", "같은 요약이다. 정말 같다.", "같은 요약이다. 정말 같다."]
    assert fuse([same]) == [same[0]]


def test_edge_cases() -> None:
    assert fuse([]) == []
    assert fuse([["하나뿐인 요약이다."]]) == ["하나뿐인 요약이다."]
    assert fuse([["", "", ""]]) == [""]
    fused = fuse([["", "사과를 산다. 포도를 산다.", "사과를 산다."]])[0]
    assert fused.strip()  # an empty candidate is never the start and contributes nothing
    assert sentences("Sherry는 Mr. White에게 간다. 그리고 웃는다.") == ["Sherry는 Mr. White에게 간다.", "그리고 웃는다."]
    with pytest.raises(ValueError, match="morpheme analyzer"):
        Fusion(analyzer="baseline")


@pytest.mark.parametrize("analyzer", ["whitespace", "mecab"])
def test_fast_objective_equals_the_metric(analyzer: str) -> None:
    """The search's objective on concatenated unit tokens equals `similarity` on the joined text."""
    rng = np.random.default_rng(0)
    candidates = [_candidate(k) for k in range(4)] + ["#Person1#은 사과를, #Person2#는 포도를 산다.", ""]
    tokenize = get_tokenizer(analyzer).tokenize
    scorer = _RowScorer([tokenize(c) for c in candidates])
    units = list(dict.fromkeys(u for c in candidates for s in sentences(c) for u in [s] + clauses(s)))
    for _ in range(20):
        chosen = [units[i] for i in rng.integers(0, len(units), size=int(rng.integers(1, 6)))]
        text = " ".join(chosen)
        sequence = [t for u in chosen for t in scorer.encode(tokenize(u))]
        if analyzer == "mecab":
            assert tuple(t for u in chosen for t in tokenize(u)) == tokenize(text)  # additive here
        lcs = scorer.lcs_lengths(scorer.lcs_state(scorer.full, sequence))[None]
        assert scorer.objectives([sequence], lcs)[0] == pytest.approx(exact_objective(text, candidates, analyzer),
                                                                     abs=1e-12)


def test_default_method() -> None:
    config = EnsembleConfig()
    assert resolve_method(config, 3, has_dev_scores=False) == "fusion"
    assert resolve_method(config, 3, has_dev_scores=True) == "auto"
    assert resolve_method(EnsembleConfig(analyzer="baseline"), 3, has_dev_scores=False) == "mbr"
    with pytest.raises(ConfigError, match="morpheme analyzer"):
        resolve_method(EnsembleConfig(method="fusion", analyzer="baseline"), 3, has_dev_scores=False)
    with pytest.raises(ConfigError):
        resolve_method(config, 2, has_dev_scores=False)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """dev.csv, test.csv (fnames deliberately unsorted) and three systems' runs whose slots disagree."""
    n_dev, n_test = 8, 7
    dev = pd.DataFrame({"fname": [f"dev_{i}" for i in range(n_dev)],
                        "dialogue": [f"#Person1#: 안녕 {i}.\n#Person2#: 네." for i in range(n_dev)],
                        "summary": [" ".join(CONSENSUS)] * n_dev})
    test = pd.DataFrame({"fname": [f"test_{i}" for i in (5, 0, 3, 6, 1, 4, 2)],
                         "dialogue": [f"#Person1#: 안녕 {i}.\n#Person2#: 네." for i in range(n_test)]})
    (tmp_path / "data").mkdir()
    dev.to_csv(tmp_path / "data/dev.csv", index=False)
    test.to_csv(tmp_path / "data/test.csv", index=False)
    for system in range(3):
        run = tmp_path / "runs" / f"sys{system}"
        for split, frame in (("dev", dev), ("test", test)):
            summaries = [_candidate((system + i) % 4) for i in range(len(frame))]
            write_predictions(run / f"preds_{split}.csv", frame["fname"][::-1], summaries[::-1],
                              {"split": split, "run_dir": str(run)})
    return tmp_path


def test_cli_fusion_keeps_every_fname_in_order(data: Path) -> None:
    out = data / "out"
    assert main(["--runs", str(data / "runs"), "--test", str(data / "data/test.csv"), "--out", str(out)]) == 0
    preds = pd.read_csv(out / "preds_test.csv")
    assert preds["fname"].tolist() == pd.read_csv(data / "data/test.csv")["fname"].tolist()
    assert preds["summary"].str.len().gt(0).all()
    assert json.loads((out / "preds_test.meta.json").read_text())["method"] == "fusion"  # default, no --gold


def test_cli_auto_scores_fusion_honestly(data: Path) -> None:
    out = data / "auto"
    assert main(["--runs", str(data / "runs"), "--gold", str(data / "data/dev.csv"), "--out", str(out),
                 "folds=3"]) == 0
    report = json.loads((out / "report/ensemble_report.json").read_text())
    fusion = next(m for m in report["methods"] if m["method"] == "fusion")
    mbr = next(m for m in report["methods"] if m["method"] == "mbr")
    assert fusion["cross_validated"] == pytest.approx(fusion["in_sample"])  # nothing fitted on dev
    assert fusion["cross_validated"] > mbr["cross_validated"]  # every fused row is the reference itself
    assert report["method"] == "fusion"
    dev = pd.read_csv(out / "preds_dev.csv")
    gold = pd.read_csv(data / "data/dev.csv")
    assert dev["fname"].tolist() == gold["fname"].tolist()
    rescored = compute_rouge(dev["summary"].tolist(), [[s] for s in gold["summary"]]).final
    assert report["dev_score"] == pytest.approx(rescored)  # the reported score is the written output's


@pytest.mark.integration
def test_real_systems_fusion_is_valid(real_data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    paths = [PREDICTIONS / f"{name}_dev.csv" for name in REAL_SYSTEMS]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"real system predictions not present in {PREDICTIONS}")
    inputs = load_inputs(paths, None, real_data_dir / "dev.csv", None)
    result = run_ensemble(EnsembleConfig(method="fusion"), inputs, progress=False)
    scores = {m.method: m.cross_validated for m in result.method_scores}
    fused, order = result.summaries["dev"], result.order["dev"]
    assert order == list(inputs.gold["fname"]) and len(fused) == len(order) and all(s.strip() for s in fused)
    references = list(inputs.gold["references"])
    assert result.dev_score == pytest.approx(compute_rouge(fused, references).final)
    dialogues = list(inputs.gold["dialogue"])
    processed = [apply_pipeline(s.summaries["dev"], dialogues, result.config.rules) for s in inputs.systems]
    candidates = [list(row) for row in zip(*processed)]
    picks = select(candidates, result.choices["dev"])
    assert sum(f != p for f, p in zip(fused, picks)) > 0
    for f, p, row in zip(fused, picks, candidates):  # an edit is kept only when the real metric says it helps
        assert f == p or exact_objective(f, row) > exact_objective(p, row)
    with capsys.disabled():
        print(f"\nreal 3 systems, dev: fusion {scores['fusion']:.2f}, plain MBR {scores['mbr']:.2f}; {result.notes}")
