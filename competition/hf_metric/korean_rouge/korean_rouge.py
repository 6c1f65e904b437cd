"""Korean ROUGE for `evaluate`: a thin wrapper over `competition.rules.metric.compute_rouge`.

Load it from this local folder (works offline): `evaluate.load("/abs/path/competition/hf_metric/korean_rouge")`.
`compute(predictions=[str], references=[[str, ...]] or [str], analyzer="mecab")` returns
rouge1, rouge2, rougeL (F1, 0-1) and final (0-100): the leaderboard formula, mean over references.
"""

import datasets
import evaluate

from competition.rules.metric import DEFAULT_ANALYZER, compute_rouge

_DESCRIPTION = (
    "ROUGE-1/2/L F1 on Korean morphemes (python-mecab-ko by default), averaged over each prediction's "
    "references and then over samples; final = mean of the three x 100. Unlike evaluate's `rouge`, "
    "Hangul is not deleted by tokenization."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted summaries (str).
    references: list of reference lists (list[str]) or of single references (str).
    analyzer: one of mecab (default), okt, komoran, whitespace, baseline.
Returns:
    dict with rouge1, rouge2, rougeL (0-1) and final (0-100).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KoreanRouge(evaluate.Metric):
    """Competition ROUGE; one implementation lives in competition.rules.metric."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"),
                     "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, analyzer: str = DEFAULT_ANALYZER) -> dict:
        reference_lists = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
        return compute_rouge(list(predictions), reference_lists, analyzer=analyzer).as_dict()
