"""The decoder-only (LLM) track as a `competition.harness.tracks.Track`."""

from competition.harness.tracks import Track
from llm.config import GENERATION_KEYS, SETTINGS
from llm.config import TRACK as NAME
from llm.generate import predict
from llm.pipeline import run
from llm.train import train

TRACK = Track(NAME, SETTINGS, train, predict, run, GENERATION_KEYS)
