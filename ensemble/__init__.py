"""Ensembling and post-processing of prediction files (`python -m ensemble`, see ensemble/__main__.py).

Modules: postprocess (rules + pipeline), systems (inputs), mbr (consensus), fusion (sentence-level fusion from the
MBR pick), routing (best / per-topic), weights (MBR weights), crossval (dev folds), config (settings), results (inputs
and result types), pipeline (the whole run), report, extractive (a simple candidate).
"""
