"""Search spaces: which config keys a study tunes, in which ranges, and which it pins (`tuning/search_spaces/`).

A space's `fixed` values, the command line's KEY=VALUE overrides and a trial's sampled values together make one
overrides layer of the track's config (`SearchSpace.overrides`), so a trial resolves exactly as the track's own
CLI would with those KEY=VALUE arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from optuna.trial import Trial

from competition.harness.config import load_yaml
from competition.rules.errors import ConfigError

SEARCH_SPACE_DIR = Path(__file__).with_name("search_spaces")


@dataclass(frozen=True)
class ParamSpec:
    """One tuned config key: `float`/`int` in [low, high] (optionally log-scaled or stepped) or `categorical`."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Trial) -> Any:
        """Ask the trial for a value of this parameter."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.name, list(self.choices))

    def example(self) -> Any:
        """A valid value, used to check the key against the track's config before any training."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low) if self.type == "int" else float(self.low)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this spec."""
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        spec: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            spec["log"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec


@dataclass(frozen=True)
class SearchSpace:
    """Tuned parameters plus `fixed` config values applied to every trial."""

    params: tuple[ParamSpec, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The resolved YAML form (what the study really searched)."""
        return {"params": {p.name: p.to_dict() for p in self.params}, "fixed": dict(self.fixed)}

    def without(self, names: set[str]) -> "SearchSpace":
        """The space with `names` pinned elsewhere (e.g. by a command-line override)."""
        return SearchSpace(tuple(p for p in self.params if p.name not in names), self.fixed, self.source)

    def overrides(self, command_line: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's overrides layer of the track config: `fixed` < command-line KEY=VALUE < sampled `params`."""
        return {**self.fixed, **command_line, **params}

    def example_params(self) -> dict[str, Any]:
        """A valid value of every tuned key, to check the keys against the track's config before any training."""
        return {p.name: p.example() for p in self.params}


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
    try:
        return float(value)  # YAML reads `1e-5` (no dot) as a string
    except ValueError:
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}") from None


def parse_param(name: str, spec: Any, source: str) -> ParamSpec:
    """Validate one `name: {type: ..., ...}` entry; errors name the file and the parameter."""
    where = f"{source}: parameter '{name}'"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'type', got {spec!r}")
    kind = spec.get("type")
    allowed = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}
    if kind not in allowed:
        raise ConfigError(f"{where}: 'type' must be one of {sorted(allowed)}, got {kind!r}")
    unknown = sorted(set(spec) - allowed[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} for type {kind}; allowed: {sorted(allowed[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' must be a non-empty list")
        return ParamSpec(name, "categorical", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: type {kind} needs 'low' and 'high'")
    low, high = _number(spec["low"], where, "low"), _number(spec["high"], where, "high")
    step = _number(spec["step"], where, "step") if spec.get("step") is not None else None
    log = bool(spec.get("log", False))
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0, got {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: 'log' and 'step' cannot be combined")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: type int needs integer low/high, got {low}, {high}")
    return ParamSpec(name, kind, low=low, high=high, log=log, step=step)


def _section(raw: Mapping[str, Any], source: str) -> tuple[dict[str, ParamSpec], dict[str, Any]]:
    params, fixed = raw.get("params") or {}, raw.get("fixed") or {}
    if not isinstance(params, Mapping) or not isinstance(fixed, Mapping):
        raise ConfigError(f"{source}: 'params' and 'fixed' must be mappings")
    return {name: parse_param(str(name), spec, source) for name, spec in params.items()}, dict(fixed)


def load_search_space(path: Path | str, demo: bool = False, section: str | None = None) -> SearchSpace:
    """Read a search-space YAML: `params`, `fixed`, and an optional `demo` section merged over them with --demo.

    The `demo` section may replace parameter specs and add fixed values (tiny epochs, data subsets).
    With `section`, the space is the mapping under that top-level key (one file holding a space per track).
    """
    raw = load_yaml(path)
    source = str(path)
    if section is not None:
        if not isinstance(raw.get(section), Mapping):
            raise ConfigError(f"{source}: no search space for '{section}'; sections: {sorted(raw)}")
        raw, source = raw[section], f"{source} [{section}]"
    unknown = sorted(set(raw) - {"params", "fixed", "demo"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {unknown}; allowed: ['demo', 'fixed', 'params']")
    params, fixed = _section(raw, source)
    if demo and raw.get("demo"):
        demo_params, demo_fixed = _section(raw["demo"], f"{source} (demo)")
        params.update(demo_params)
        fixed.update(demo_fixed)
    overlap = sorted(set(params) & set(fixed))
    if overlap:
        raise ConfigError(f"{source}: keys {overlap} are both tuned ('params') and fixed ('fixed')")
    if not params:
        raise ConfigError(f"{source}: no parameters to tune under 'params'")
    return SearchSpace(tuple(params.values()), fixed, source)
