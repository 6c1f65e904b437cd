"""The run harness: layered typed configs, the preset registry, the track contract, run folders and their
provenance, torchrun helpers, logging and the CLI edge. Imports the rules, never a track."""
