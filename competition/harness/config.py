"""Layered, typed run configuration: dataclass defaults < preset < (demo) < YAML file < KEY=VALUE overrides.

Each track declares every setting once, as a dataclass field made with `setting(default, hint)`. `resolve_config`
merges the layers in order; every value of every layer is coerced to its field's declared type (pydantic's lax
mode: YAML's string `'1e-5'` becomes the float 1e-5, `"3"` the int 3), and a value that cannot be coerced, an
unknown key or a renamed key fails at once with a `ConfigError` naming the layer (the file), the key, the value
and what was expected. `resolve_layers` also says which layer set each key (`--print-config` shows it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import annotated_types
import pydantic
import yaml

from competition.harness.presets import PRESETS
from competition.rules.errors import ConfigError
from competition.rules.files import write_text_atomic

ConfigT = TypeVar("ConfigT")
SCIENTIFIC_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")
DEFAULTS = "defaults"
CONFIG_FILE = "config.yaml"  # a run folder's resolved config; `--resume` reloads it
# CUDA attention kernel of both tracks (competition/modeling/attention.py); a setting type, so its check is the config's
SdpaBackend = typing.Literal["auto", "torch", "cudnn", "flash", "efficient", "math"]
# Where both tracks' Trainer logs a run (competition/modeling/tracking.py); the Trainer's names
ReportTo = typing.Literal["none", "tensorboard", "wandb", "mlflow"]
REPORT_TO_HINT = ("follow the run in: none | tensorboard (<run>/tensorboard/, offline) | wandb (pip install wandb; "
                  "wandb login or WANDB_MODE=offline) | mlflow (pip install mlflow; MLFLOW_TRACKING_URI)")
# Keys that change where a run is followed, not what it computes: a config's hash (K-fold reruns, submissions)
# leaves them out, so following a run in another tool keeps it the same run.
UNHASHED = frozenset({"report_to"})


# Closed sets and ranges as setting types: `coerce_value` checks them as each layer resolves and names the allowed
# values. The names are transformers' own (SchedulerType, OptimizerNames; tests/test_config.py keeps them in step).
SchedulerName = typing.Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy"]
OptimizerName = typing.Literal[
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit",
    "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit",
    "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise",
    "stable_adamw"]
PositiveInt = typing.Annotated[int, annotated_types.Ge(1)]
NonNegativeInt = typing.Annotated[int, annotated_types.Ge(0)]
PositiveFloat = typing.Annotated[float, annotated_types.Gt(0)]
NonNegativeFloat = typing.Annotated[float, annotated_types.Ge(0)]
Share = typing.Annotated[float, annotated_types.Ge(0), annotated_types.Le(1)]  # a fraction, 0 to 1
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
# Keys a resumed run may change: they decide how fast or how verbosely it runs, not what it learns or writes.
SAFE_ON_RESUME = frozenset({"per_device_eval_batch_size", "logging_steps", "gradient_checkpointing",
                            "save_total_limit", "keep_checkpoints", "max_fill_in_share", "submit_despite_fill_ins",
                            "report_to"})


@dataclass(frozen=True)
class Layer:
    """One source of settings: where it came from (a file, `command line`, `preset kobart`) and its values."""

    source: str
    values: Mapping[str, Any]
    explicit: bool = False  # set by the user (--config, KEY=VALUE): GPU fitting never changes these keys


def setting(default: Any, hint: str) -> Any:
    """A config field with its one-line hint (shown by `--print-config` and in the shipped YAMLs)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"hint": hint})
    return field(default=default, metadata={"hint": hint})


def parse_value(text: str) -> Any:
    """A YAML scalar, except that `1e-5` is a float (YAML 1.1 would keep it a string)."""
    if not text.strip():
        return ""
    value = yaml.safe_load(text)
    if isinstance(value, str) and SCIENTIFIC_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn `["lr=1e-5", "bf16=true", "name=x"]` into typed values (YAML scalars: numbers, booleans, lists)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}': expected KEY=VALUE")
        overrides[key.strip()] = parse_value(value)
    return overrides


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path | str) -> dict[str, Any]:
    """Read a YAML config file as a flat mapping; a key given twice is refused."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except _DuplicateKey as dup:
        raise ConfigError(f"{path}, line {dup.line}: key '{dup.key}' is given twice; expected each key once "
                          f"(delete one)") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of KEY: VALUE")
    return loaded


def yaml_layer(path: Path | str) -> Layer:
    """A YAML file as a layer named after the file (relative to the working folder when inside it)."""
    path = Path(path)
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = path
    return Layer(str(shown), load_yaml(path))


@functools.lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, Any]:
    """Each field's declared type, resolved from its annotation."""
    return typing.get_type_hints(cls, include_extras=True)  # constraints (Annotated) kept


@functools.lru_cache(maxsize=None)
def _adapter(annotation: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(annotation)


def type_label(annotation: Any) -> str:
    """`float`, `int | None`, `int >= 1`, `one of ['a', 'b']`: the expected type as a user reads it."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *constraints = typing.get_args(annotation)
        bounds = [f"{op} {getattr(c, name)}" for c in constraints for name, op in _BOUNDS
                  if getattr(c, name, None) is not None]
        return f"{type_label(base)} {' and '.join(bounds)}".strip()
    if typing.get_origin(annotation) is typing.Literal:
        return f"one of {list(typing.get_args(annotation))}"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def coerce_value(cls: type, key: str, value: Any, source: str) -> Any:
    """`value` as the declared type of `cls.key`; ConfigError naming the source, key, value and type otherwise."""
    annotation = field_types(cls)[key]
    if isinstance(value, str) and SCIENTIFIC_NUMBER.fullmatch(value.strip()):
        value = value.strip()  # YAML 1.1 keeps `1e-5` a string; pydantic reads it as a float
    if isinstance(value, str) and typing.get_origin(annotation) is list:
        value = [parse_value(item) for item in value.split(",") if item.strip()]  # `rules=a,b` on a command line
    try:
        return _adapter(annotation).validate_python(value)
    except pydantic.ValidationError:
        raise ConfigError(f"{source}: {key}={value!r}: expected {type_label(annotation)}") from None


def _as_layer(layer: Layer | Mapping[str, Any], index: int) -> Layer:
    return layer if isinstance(layer, Layer) else Layer(f"layer {index}", layer)


def resolve_layers(cls: type, layers: Sequence[Layer | Mapping[str, Any]],
                   renamed: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged, coerced values of the layers (later ones win) and the source that set each key."""
    known = {f.name for f in dataclasses.fields(cls)}
    renamed = renamed or {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for index, raw in enumerate(layers):
        layer = _as_layer(raw, index)
        for old in sorted(set(layer.values) & set(renamed)):
            raise ConfigError(f"{layer.source}: '{old}' is now called '{renamed[old]}'; rename the key")
        unknown = sorted(set(layer.values) - known)
        if unknown:
            raise ConfigError(f"{layer.source}: unknown config keys {unknown} for {cls.__name__}; "
                              f"known: {sorted(known)}")
        for key, value in layer.values.items():
            values[key] = coerce_value(cls, key, value, layer.source)
            sources[key] = layer.source
    return values, sources


def resolve_config(cls: type[ConfigT], *layers: Layer | Mapping[str, Any],
                   renamed: Mapping[str, str] | None = None) -> ConfigT:
    """Build `cls` from its defaults and the layers, later layers winning; bad keys or values -> ConfigError."""
    values, _ = resolve_layers(cls, layers, renamed)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{cls.__name__}: {err}") from None


def config_hints(cls: type) -> dict[str, str]:
    """The one-line hint of every setting of a config class."""
    return {f.name: f.metadata.get("hint", "") for f in dataclasses.fields(cls)}


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump({"v": value}, allow_unicode=True, default_flow_style=True).strip()[4:-1]


def describe_config(config: Any, sources: Mapping[str, str]) -> str:
    """The resolved config as YAML: every key with its value, its hint and the layer that set it."""
    hints = config_hints(type(config))
    lines = [f"# {type(config).__name__}: value  # hint [set by]"]
    for key, value in dataclasses.asdict(config).items():
        lines.append(f"{key + ': ' + _yaml_value(value):<44}  # {hints[key]} [{sources.get(key, DEFAULTS)}]")
    return "\n".join(lines) + "\n"


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_hash(config: Any) -> str:
    """Short stable hash of a resolved config, used to name and trace runs and submissions (UNHASHED keys left out)."""
    values = config_to_dict(config) if dataclasses.is_dataclass(config) else config
    payload = json.dumps({key: value for key, value in values.items() if key not in UNHASHED}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def save_yaml(config: Any, path: Path | str) -> Path:
    """Write a config as YAML that `resolve_config` (via `load_yaml`) accepts back."""
    data = config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    return write_text_atomic(path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def _saved_config(run_dir: Path | str) -> Path:
    saved = Path(run_dir) / CONFIG_FILE
    if not saved.is_file():
        raise ConfigError(f"{run_dir}: no {CONFIG_FILE}; expected a run folder written by this track")
    return saved


def _differs(cls: type, key: str, value: Any, saved: Any) -> bool:
    if key not in field_types(cls):
        return True  # unknown: let resolve report it
    return coerce_value(cls, key, value, "command line") != coerce_value(cls, key, saved, "saved config")


def _check_same_track(run_dir: Path | str, saved: Layer, track: str) -> None:
    """Refuse to resume another track's run, saying which track it is (not listing its keys as unknown)."""
    tracks = {preset.name: preset.track for preset in PRESETS}
    other = tracks.get(str(saved.values.get("preset")))
    if other is not None and other != track:
        raise ConfigError(f"{run_dir}: a {other} run (preset '{saved.values['preset']}'), not a {track} run; resume "
                          f"it with `make {other} RESUME={run_dir}`")


@dataclass(frozen=True)
class TrackSettings:
    """How one track builds its config: the dataclass, its shipped YAMLs, the preset and demo layers."""

    track: str  # the preset registry's track name
    config_class: type
    configs_dir: Path  # `<package>/configs/<preset>.yaml`, read when no --config is given
    preset_layer: Callable[[str], dict[str, Any]]  # preset name -> what it implies (ConfigError if unknown)
    demo_layer: Mapping[str, Any]
    renamed: Mapping[str, str] = field(default_factory=dict)  # old key -> new key
    fit: Callable[..., Any] | None = None  # (values, explicit keys, Gpu) -> competition.harness.memory.Fit

    def shipped_yaml(self, preset: str) -> Path | None:
        """The preset's own YAML in the track's configs folder, when it ships one."""
        path = self.configs_dir / f"{preset}.yaml"
        return path if path.is_file() else None

    def layers(self, preset_name: str, yaml_path: Path | str | None = None,
               overrides: Mapping[str, Any] | None = None, demo: bool = False) -> list[Layer]:
        """preset < demo < YAML (`yaml_path`, else the shipped one) < overrides, each named by its source."""
        layers = [Layer(f"preset {preset_name}", self.preset_layer(preset_name))]
        if demo:
            layers.append(Layer("--demo", self.demo_layer))
        shipped = self.shipped_yaml(preset_name)
        path = yaml_path if yaml_path is not None else shipped
        if path is not None:
            layer = yaml_layer(path)
            user_file = shipped is None or Path(path).resolve() != shipped.resolve()
            layers.append(Layer(layer.source, layer.values, explicit=user_file))
        if overrides:
            layers.append(Layer("command line", dict(overrides), explicit=True))
        for layer in layers[1:]:
            chosen = layer.values.get("preset", preset_name)
            if chosen != preset_name:
                raise ConfigError(f"{layer.source}: preset '{chosen}' but --model is '{preset_name}'")
        return layers

    def resume_layers(self, run_dir: Path | str, overrides: Mapping[str, Any] | None = None) -> list[Layer]:
        """A resumed run: its saved config, plus overrides that cannot change what it trains or writes."""
        saved = yaml_layer(_saved_config(run_dir))
        _check_same_track(run_dir, saved, self.track)
        changed = {key: value for key, value in (overrides or {}).items()
                   if key not in saved.values or _differs(self.config_class, key, value, saved.values[key])}
        unsafe = sorted(set(changed) - SAFE_ON_RESUME)
        if unsafe:
            raise ConfigError(f"resuming {run_dir}: {unsafe} would change the run ({saved.source} says otherwise); "
                              f"only {sorted(SAFE_ON_RESUME)} may change on resume: start a new run instead")
        return [saved, Layer("command line", changed)] if changed else [saved]

    def resolve(self, layers: Sequence[Layer]) -> Any:
        """The config from these layers."""
        return resolve_config(self.config_class, *layers, renamed=self.renamed)

    def describe(self, layers: Sequence[Layer]) -> str:
        """`--print-config`: the resolved config with every key's hint and the layer that set it."""
        _, sources = resolve_layers(self.config_class, layers, self.renamed)
        return describe_config(self.resolve(layers), sources)

    def fitted(self, layers: Sequence[Layer], gpu: Any) -> tuple[list[Layer], Any]:
        """The layers plus a `gpu: ...` layer of execution settings fitted to `gpu` (a `memory.Gpu`), placed above
        defaults, preset and shipped YAML but below the user's own values; and the `Fit` (None: nothing to fit)."""
        if self.fit is None or gpu is None:
            return list(layers), None
        explicit = {key for layer in layers if layer.explicit for key in layer.values}
        fit = self.fit(dataclasses.asdict(self.resolve(layers)), explicit, gpu)
        if not fit.values:
            return list(layers), fit
        first_user = next((i for i, layer in enumerate(layers) if layer.explicit), len(layers))
        return [*layers[:first_user], Layer(gpu.label, fit.values), *layers[first_user:]], fit


def add_track_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    """The options every track CLI takes, with the same meaning in both."""
    parser.add_argument("--model", default=default_model, help="preset name (python -m competition.harness.presets)")
    parser.add_argument("--data", default="data", help="folder with train.csv, dev.csv (and test.csv)")
    parser.add_argument("--out", default="runs", help="runs go to OUT/<track>-<preset>-<stamp>/")
    parser.add_argument("--config", help="YAML file (default: the track's configs/<model>.yaml when it exists)")
    parser.add_argument("--demo", action="store_true", help="small CPU settings (below the YAML)")
    parser.add_argument("--resume", type=Path, help="an earlier run folder: continue it with its saved config")
    parser.add_argument("--submissions", type=Path, default=None,
                        help="folder for submissions and their ledger (default: $SUBMISSIONS, else submissions/)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (value, hint, the layer that set it) and exit")
    parser.add_argument("--gpu-memory", type=float, metavar="GIB",
                        help="fit the settings to a card with this much free memory (GiB) instead of this machine's "
                             "GPU; with --print-config: what such a card would get, on any machine")
    parser.add_argument("--gpu-name", default=None, help="the card's name shown with --gpu-memory")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. learning_rate=3e-5")


def layers_from_args(settings: TrackSettings, args: argparse.Namespace) -> list[Layer]:
    """The config layers a track CLI's arguments ask for (a resumed run: its saved config)."""
    overrides = parse_overrides(args.overrides)
    if args.resume is not None:
        return settings.resume_layers(args.resume, overrides)
    return settings.layers(args.model, args.config, overrides, args.demo)
