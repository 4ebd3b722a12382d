"""Suite specs (TOML; the packaged ones under ``comet_cl/suites/``): parsed, checked and
resolved in one place.

A mistake in a spec fails before anything trains, with one message that names the file, the
key (and its line), and the closest valid name. ``load_suite`` returns plain data with every
default filled in, which is what each run records as its config.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from comet_cl.streams import STREAMS


class ConfigError(ValueError):
    """A suite spec or strategy preset that cannot be used as written."""


# The suites that ship with the package (``comet-cl run quick``); a path to any TOML file works too.
SUITES_DIR = Path(__file__).resolve().parent / "suites"


def packaged_suites() -> dict[str, Path]:
    """Packaged suite name (file stem, also with '-' for '_') -> its spec file."""
    found = {}
    for path in sorted(SUITES_DIR.glob("*.toml")):
        found[path.stem] = path
        found.setdefault(path.stem.replace("_", "-"), path)
    return found


def suite_path(spec) -> Path:
    """A suite argument as a file: an existing path, else the packaged suite of that name."""
    path = Path(spec)
    if path.is_file():
        return path
    suites = packaged_suites()
    name = path.stem if path.suffix == ".toml" else path.name
    if str(spec) in suites or (name in suites and not path.exists()):
        return suites[str(spec)] if str(spec) in suites else suites[name]
    if path.exists():
        raise ConfigError(f"suite spec {path} is not a file")
    raise ConfigError(f"suite spec not found: {spec} (neither a file nor a packaged suite"
                      f"{closest(name, suites)}; packaged: "
                      f"{', '.join(sorted(p.stem for p in set(suites.values())))})")


def closest(name: str, options: Iterable[str]) -> str:
    """'; did you mean X?' for the closest valid name, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _line_of(path, key: str) -> str:
    """' (line N)' where ``key = `` first appears in the file, '' when unknown."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, TypeError):
        return ""
    pattern = re.compile(rf"(^|[\s{{,\[])\"?{re.escape(key)}\"?\s*=")
    for n, line in enumerate(lines, 1):
        if pattern.search(line.split("#", 1)[0]):
            return f" (line {n})"
    return ""


def _where(path, prefix: str, key: str) -> str:
    dotted = f"{prefix}.{key}" if prefix else key
    return f"{path}: '{dotted}'{_line_of(path, key)}"


def check_keys(table: dict, allowed: Iterable[str], path, prefix: str,
               required: Iterable[str] = ()) -> None:
    allowed = set(allowed)
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{_where(path, prefix, key)}: unknown key{closest(key, allowed)}"
                              f" (valid: {', '.join(sorted(allowed)) or 'none'})")
    for key in required:
        if key not in table:
            raise ConfigError(f"{path}: '{prefix + '.' if prefix else ''}{key}' is required")


# key -> (type name for messages, check)
_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "table": lambda v: isinstance(v, dict),
    "int list": lambda v: isinstance(v, list) and all(_TYPES["int"](x) for x in v),
    "number list": lambda v: isinstance(v, list) and all(_TYPES["number"](x) for x in v),
    "int list or 'random'": lambda v: v == "random" or _TYPES["int list"](v),
}

STREAM_KEYS = {
    "name": "str", "n_experiences": "int", "class_order": "int list or 'random'",
    "max_per_experience": "int", "max_test_per_experience": "int", "valid_fraction": "number",
    "first_identity": "bool", "model": "table",
}
MODEL_KEYS = {"arch": "str", "widths": "int list", "p_k": "number", "activation": "str",
              "mask_cache": "bool", "options": "table"}
TRAIN_KEYS = {"epochs": "int", "iterations": "int", "batch_size": "int", "optimizer": "str",
              "lr": "number", "momentum": "number", "betas": "number list",
              "weight_decay": "number", "logits": "str"}
EVAL_KEYS = {"beta": "int", "curve_subset": "int", "curve_stride": "int", "batch_size": "int",
             "split": "str"}
STRATEGY_KEYS = {"preset": "str", "name": "str", "model": "str", "params": "table",
                 "train": "table", "model_config": "table"}
SUITE_KEYS = {"name": "str", "description": "str", "seeds": "int list", "streams": "list",
              "strategies": "list", "model": "table", "train": "table", "eval": "table",
              "sweep": "table", "published": "table"}
SWEEP_KEYS = {"seeds": "int list", "valid_fraction": "number", "grid": "table"}
DEFAULT_SWEEP = {"seeds": [0], "valid_fraction": 0.1}
EVAL_SPLITS = ("test", "valid")

DEFAULT_TRAIN = {"epochs": 1, "batch_size": 128, "optimizer": "sgd", "lr": 0.01,
                 "momentum": 0.9, "weight_decay": 0.0}
DEFAULT_EVAL = {"beta": 10, "curve_subset": 1000, "curve_stride": 10, "batch_size": 1000}
# widths None: the architecture's own default (mlp [1000, 1000]; conv [32, 64, 128, 256]).
DEFAULT_MODEL = {"widths": None, "p_k": 0.5, "activation": "relu", "mask_cache": True,
                 "options": {}}


def check_table(table: dict, schema: dict[str, str], path, prefix: str,
                required: Iterable[str] = ()) -> dict:
    """Unknown keys and wrong types fail with the file, key, line and closest valid key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: '{prefix}' must be a table, got {type(table).__name__}")
    check_keys(table, schema, path, prefix, required)
    for key, value in table.items():
        kind = schema[key]
        if kind != "list" and not _TYPES[kind](value):
            raise ConfigError(f"{_where(path, prefix, key)}: expected {kind}, "
                              f"got {type(value).__name__} {value!r}")
    return table


def default_arch(stream: str) -> str:
    return "conv" if STREAMS[stream].dataset.startswith("cifar") else "mlp"


def _stream(entry, path, i: int, model: dict) -> dict:
    entry = {"name": entry} if isinstance(entry, str) else entry
    prefix = f"streams[{i}]"
    check_table(entry, STREAM_KEYS, path, prefix, required={"name"})
    if entry["name"] not in STREAMS:
        raise ConfigError(f"{_where(path, prefix, 'name')}: unknown stream '{entry['name']}'"
                          f"{closest(entry['name'], STREAMS)} (known: {', '.join(STREAMS)})")
    entry = dict(entry)
    own_model = check_table(entry.pop("model", {}), MODEL_KEYS, path, f"{prefix}.model")
    merged = {"arch": default_arch(entry["name"]), **model, **own_model}
    return {"stream": entry, "model": merged}


def _strategy(entry, path, i: int) -> dict:
    entry = {"preset": entry} if isinstance(entry, str) else entry
    prefix = f"strategies[{i}]"
    check_table(entry, STRATEGY_KEYS, path, prefix, required={"preset"})
    if "train" in entry:
        check_table(entry["train"], TRAIN_KEYS, path, f"{prefix}.train")
    if "model_config" in entry:
        check_table(entry["model_config"], MODEL_KEYS, path, f"{prefix}.model_config")
    return {"name": entry.get("name", entry["preset"]), **entry}


PUBLISHED_KEYS = {"source": "str", "metric": "str", "figures": "table"}


def _published(raw: dict, path, names: list[str]) -> dict:
    """The [published] table: the figures a protocol suite reproduces (percent), its source."""
    check_table(raw, PUBLISHED_KEYS, path, "published", required={"source", "figures"})
    check_table(raw["figures"], dict.fromkeys(names, "number"), path, "published.figures")
    return {"metric": "acc", **raw}


def _sweep(raw: dict, path, names: list[str]) -> dict:
    """The [sweep] table: tuning seeds, the validation share, and a grid per strategy
    (parameter -> non-empty list of values)."""
    sweep = {**DEFAULT_SWEEP, **check_table(raw, SWEEP_KEYS, path, "sweep")}
    if not 0.0 < sweep["valid_fraction"] < 1.0:
        raise ConfigError(f"{_where(path, 'sweep', 'valid_fraction')}: must be in (0, 1), got "
                          f"{sweep['valid_fraction']}")
    if not sweep["seeds"] or min(sweep["seeds"]) < 0:
        raise ConfigError(f"{_where(path, 'sweep', 'seeds')}: expected a non-empty list of "
                          f"non-negative seeds, got {sweep['seeds']}")
    grid = check_table(sweep.get("grid", {}), dict.fromkeys(names, "table"), path, "sweep.grid")
    for name, params in grid.items():
        for key, values in params.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{_where(path, f'sweep.grid.{name}', key)}: expected a "
                                  f"non-empty list of values, got {values!r}")
            schema = MODEL_KEYS.get(key) or TRAIN_KEYS.get(key)
            if schema is not None:
                for v in values:
                    if not _TYPES[schema](v):
                        raise ConfigError(f"{_where(path, f'sweep.grid.{name}', key)}: expected "
                                          f"{schema} values, got {type(v).__name__} {v!r}")
    return {**sweep, "grid": grid}


def parse_suite(raw: dict, path="<spec>") -> dict:
    """Check a suite spec (as parsed TOML) and fill in defaults."""
    check_table(raw, SUITE_KEYS, path, "", required={"name", "streams", "strategies"})
    model = {**DEFAULT_MODEL, **check_table(raw.get("model", {}), MODEL_KEYS, path, "model")}
    train = {**DEFAULT_TRAIN, **check_table(raw.get("train", {}), TRAIN_KEYS, path, "train")}
    evaluation = {**DEFAULT_EVAL, **check_table(raw.get("eval", {}), EVAL_KEYS, path, "eval")}
    for key in ("streams", "strategies"):
        if not isinstance(raw[key], list) or not raw[key]:
            raise ConfigError(f"{_where(path, '', key)}: expected a non-empty list")
    strategies = [_strategy(s, path, i) for i, s in enumerate(raw["strategies"])]
    names = [s["name"] for s in strategies]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two strategies share a name in {names}; give one a 'name'")
    if evaluation.get("split", "test") not in EVAL_SPLITS:
        raise ConfigError(f"{_where(path, 'eval', 'split')}: expected one of "
                          f"{', '.join(EVAL_SPLITS)}, got {evaluation['split']!r}")
    if train.get("iterations") is not None and "epochs" in raw.get("train", {}) \
            and train["epochs"] != 1:
        raise ConfigError(f"{_where(path, 'train', 'iterations')}: give either an iterations "
                          f"budget or epochs, not both")
    extra = {"sweep": _sweep(raw["sweep"], path, names)} if "sweep" in raw else {}
    if "published" in raw:
        extra["published"] = _published(raw["published"], path, names)
    return {
        "name": raw["name"],
        "description": raw.get("description", ""),
        "seeds": raw.get("seeds", [0]),
        "streams": [_stream(s, path, i, model) for i, s in enumerate(raw["streams"])],
        "strategies": strategies,
        "train": train,
        "eval": evaluation,
        "path": str(path),
        **extra,
    }


def load_suite(spec) -> dict:
    """Parse a suite given as a path or as the name of a packaged suite."""
    path = suite_path(spec)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"suite spec not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return parse_suite(raw, path)
