"""Encoder-decoder track (KoBART and other seq2seq presets): config, training, prediction, pipeline.

The track contract (`competition.harness.tracks`): `baselines.track.TRACK` (or `get_track("baseline")`) with
`config(...)`, `train(config, splits, run_dir, on_evaluate=None)`, `predict(checkpoint, dialogues, config)` and
`run(config, data_dir, out_dir)`. CLI: `python -m baselines.run --model kobart --data data --out runs [KEY=VALUE ...]`.
"""
