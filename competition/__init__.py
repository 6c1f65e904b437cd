"""The shared core, in layers; each imports only itself and the layers listed before it, and none imports a track
(`tests/test_imports.py` keeps it so):

- `competition.rules`: the competition's files, metric, submissions and reports (no torch, no harness);
- `competition.harness`: configs, presets, the memory model, the track contract, run folders, torchrun helpers, the
  CLI edge;
- `competition.modeling`: model code both tracks share (loading, tokens, attention, prompts, out-of-memory
  recovery, experiment tracking, Trainer glue).

The modules at this level are commands (`python -m competition.validate`, `score`, `submit`, `predict`, `trivial`,
`truncation`, `build_checkpoint`, `sample_data`).
"""
