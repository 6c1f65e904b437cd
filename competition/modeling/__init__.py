"""Model code both tracks share: where a preset loads from, tokenizers and precision, token layouts, padding and
the loss, attention kernels, prompts, tiny models, checkpoints and the Trainer glue. Imports the rules and the
harness, never a track."""
