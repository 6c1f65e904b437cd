"""The encoder-decoder track as a `competition.harness.tracks.Track`."""

from baselines.config import GENERATION_KEYS, SETTINGS
from baselines.config import TRACK as NAME
from baselines.pipeline import run
from baselines.predict import predict
from baselines.train import train
from competition.harness.tracks import Track

TRACK = Track(NAME, SETTINGS, train, predict, run, GENERATION_KEYS)
