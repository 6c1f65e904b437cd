"""Layered run configuration: dataclass defaults < preset < YAML file < command-line KEY=VALUE overrides.

Each track declares its settings as a dataclass; `resolve_config` builds it from the layers and rejects unknown
keys with the list of known ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

from competition.errors import ConfigError

ConfigT = TypeVar("ConfigT")
SCIENTIFIC_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn `["lr=1e-5", "bf16=true", "name=x"]` into typed values (YAML scalars: numbers, booleans, lists)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}': expected KEY=VALUE")
        overrides[key.strip()] = parse_value(value)
    return overrides


def parse_value(text: str) -> Any:
    """A YAML scalar, except that `1e-5` is a float (YAML 1.1 would keep it a string)."""
    if not text.strip():
        return ""
    value = yaml.safe_load(text)
    if isinstance(value, str) and SCIENTIFIC_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def load_yaml(path: Path | str) -> dict[str, Any]:
    """Read a YAML config file as a flat mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of KEY: VALUE")
    return loaded


def resolve_config(cls: type[ConfigT], *layers: Mapping[str, Any]) -> ConfigT:
    """Build `cls` from its defaults and the layers, later layers winning; unknown keys are an error."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    merged: dict[str, Any] = {}
    for layer in layers:
        unknown = sorted(set(layer) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown} for {cls.__name__}; known: {sorted(known)}")
        merged.update(layer)
    try:
        return cls(**merged)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{cls.__name__}: {err}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_hash(config: Any) -> str:
    """Short stable hash of a resolved config, used to name and trace runs and submissions."""
    payload = json.dumps(config_to_dict(config) if dataclasses.is_dataclass(config) else config, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def save_yaml(config: Any, path: Path | str) -> Path:
    """Write a config as YAML that `resolve_config` (via `load_yaml`) accepts back."""
    from competition.files import write_text_atomic

    data = config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    return write_text_atomic(path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
