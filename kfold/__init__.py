"""K-fold training over a track (`python -m kfold`, `make kfold`): K fold runs, out-of-fold predictions, the fold
ensemble and a submission. `kfold.folds` holds the pure fold splitting, `kfold.pipeline` the run.
"""
