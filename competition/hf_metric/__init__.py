"""The competition metric as a local `evaluate` module (no hub access needed).

    import evaluate
    from competition.hf_metric import KOREAN_ROUGE_PATH
    rouge = evaluate.load(str(KOREAN_ROUGE_PATH))
    rouge.compute(predictions=[...], references=[[...], ...], analyzer="mecab")

The module script imports `competition`, so the repository must be importable (installed, or on PYTHONPATH).
"""

from __future__ import annotations

from pathlib import Path

KOREAN_ROUGE_PATH = Path(__file__).resolve().parent / "korean_rouge"

