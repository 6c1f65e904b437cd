"""Optuna tuning of either track: `python -m tuning.tune` (training config) and `python -m tuning.generation`
(generation settings of a trained run). Search spaces live in tuning/search_spaces/.

Read top-down: tune.py and generation.py (the two studies: objective and CLI), search_space.py (what a study
samples), study.py (settings, storage, pruner, budget), trials.py (one trial: run folder, pruning, failures,
weights kept), outputs.py (what a study folder holds).
"""
