"""Optuna tuning of either track: `python -m tuning.tune` (training config) and `python -m tuning.generation`
(generation settings of a trained run). Search spaces live in tuning/search_spaces/.
"""
