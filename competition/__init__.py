"""The shared core, in layers; each imports only the layers above it in this list, and none imports a track:

- `competition.rules`: the competition's files, metric, submissions and reports (no torch, no harness);
- `competition.harness`: configs, presets, the track contract, run folders, torchrun helpers, the CLI edge;
- `competition.modeling`: model code both tracks share (loading, tokens, attention, prompts, Trainer glue).

The modules at this level are commands (`python -m competition.validate`, `score`, `submit`, `trivial`,
`truncation`, `build_checkpoint`, `sample_data`).
"""
