"""Encoder-decoder track (KoBART and other seq2seq presets): config, training, prediction, pipeline.

Python API (the track contract):
    config = load_config("kobart", yaml_path=None, overrides={"learning_rate": 3e-5})
    result = train(config, data_dir, run_dir, on_evaluate=None)      # -> TrainResult
    summaries = predict(result.best_checkpoint, dialogues, config)    # -> list[str], input order
    run_dir = run(config, data_dir, out_dir)                          # the whole pipeline
CLI: `python -m baselines.run --model kobart --data data --out runs [--config C] [KEY=VALUE ...]`.

`run` here is the pipeline function; the CLI module is `baselines.run`. Importing that module (instead of
running it with -m) rebinds the package attribute, so library callers should prefer
`from baselines.pipeline import run`.
"""

from baselines.config import BaselineConfig, load_config
from baselines.pipeline import run
from baselines.predict import predict
from baselines.train import TrainResult, train

__all__ = ["BaselineConfig", "TrainResult", "load_config", "predict", "run", "train"]
