"""Suite specs (TOML; the packaged ones under ``comet_cl/suites/``): parsed, checked and
resolved in one place.

A mistake in a spec fails before anything trains, with one message that names the file, the
key (and its line), and the closest valid name. ``load_suite`` returns plain data with every
default filled in, which is what each run records as its config.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comet_cl.catalog import CLASS_ORDERS, PIXELS, STREAMS, stream_label


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


# ---- the schema: key -> Rule(type, range check) ------------------------------------------
#
# Adding a key is one line in one of the tables below. A check returns what is wrong with a
# value of the right type ("must be > 0") or None; checks that need a registry import it when
# they run, so importing this module stays free of torch and Avalanche.

def _finite(v) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v),
    "str": lambda v: isinstance(v, str),
    "str or str list": lambda v: isinstance(v, str) or (
        isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)),
    "bool": lambda v: isinstance(v, bool),
    "table": lambda v: isinstance(v, dict),
    "table or str": lambda v: isinstance(v, (dict, str)),
    "list": lambda v: isinstance(v, list),
    "int list": lambda v: isinstance(v, list) and all(_TYPES["int"](x) for x in v),
    "number list": lambda v: isinstance(v, list) and all(_TYPES["number"](x) for x in v),
    "int list or class-order name": lambda v: v in CLASS_ORDERS or _TYPES["int list"](v),
}
_TYPE_WORDS = {"number": "a finite number", "str or str list": "a name or a non-empty list of names",
               "table or str": "a table or a name",
               "int list or class-order name": "a permutation of the class ids or one of "
                                               + ", ".join(repr(o) for o in CLASS_ORDERS)}


@dataclass(frozen=True)
class Rule:
    """A key's type (a name in ``_TYPES``) and an optional check of its value."""

    kind: str
    check: Callable[[Any], str | None] | None = None


def at_least(lo) -> Callable[[Any], str | None]:
    return lambda v: None if v >= lo else f"must be >= {lo}, got {v}"


def positive(v) -> str | None:
    return None if v > 0 else f"must be > 0, got {v}"


_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,@-]*")


def folder_name(v) -> str | None:
    """A suite's or strategy's name or a stream's label: each names a folder (``results/<suite>``,
    ``runs/<stream>/<strategy>/seed-<k>``) and a key of the report's tables, so no path
    separator, no leading dot, no space (``a/b`` or ``..`` would file runs where no reader
    looks for them)."""
    return None if _FOLDER_NAME.fullmatch(v) else (
        f"must be a folder name (letters, digits and . _ + = , @ -, starting with a letter "
        f"or digit), got {v!r}")


def in_range(lo, hi, *, lo_open=False, hi_open=False) -> Callable[[Any], str | None]:
    """lo <= v <= hi, with either end open."""
    def check(v):
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok else (f"must be in {'(' if lo_open else '['}{lo}, {hi}"
                                f"{')' if hi_open else ']'}, got {v}")
    return check


def one_of(names: Callable[[], Iterable[str]], what: str) -> Callable[[Any], str | None]:
    """A name from a registry; ``names`` is called only when a spec is checked."""
    def check(v):
        known = list(names())
        return None if v in known else (f"unknown {what} '{v}'{closest(v, known)} "
                                         f"(known: {', '.join(known)})")
    return check


def each(check: Callable[[Any], str | None], *, non_empty: bool = True):
    """Every item of a list passes ``check`` (and the list is not empty)."""
    def check_all(v):
        if non_empty and not v:
            return "must not be empty"
        for x in v:
            if (why := check(x)) is not None:
                return why
        return None
    return check_all


def _archs():
    from comet_cl.models import MODELS
    return MODELS


def _activations():
    from comet_cl.models import ACTIVATIONS
    return ACTIVATIONS


def _optimizers():
    from comet_cl.strategies import OPTIMIZERS
    return OPTIMIZERS


def _augments():
    from comet_cl.augment import AUGMENTS
    return AUGMENTS


STREAM_KEYS = {
    "name": Rule("str"),
    # what the stream's runs are filed and shown under (default: its name): two entries of
    # one stream (say split MNIST in two class orders) need different labels
    "label": Rule("str", folder_name),
    "n_experiences": Rule("int"),  # range depends on the stream: see _stream
    "class_order": Rule("int list or class-order name"),
    "max_per_experience": Rule("int", positive),
    "max_test_per_experience": Rule("int", positive),
    "valid_fraction": Rule("number", in_range(0, 1, hi_open=True)),
    "first_identity": Rule("bool"),
    "pixels": Rule("str", one_of(lambda: PIXELS, "pixels")),
    "pad": Rule("int", at_least(0)),
    "model": Rule("table"),
}
MODEL_KEYS = {
    "arch": Rule("str", one_of(_archs, "arch")),
    "widths": Rule("int list", each(positive)),
    "p_k": Rule("number", in_range(0, 1, lo_open=True)),
    "activation": Rule("str", one_of(_activations, "activation")),
    "mask_cache": Rule("bool"),
    "options": Rule("table"),  # checked against the model variant when planning
}
TRAIN_KEYS = {
    "epochs": Rule("int", positive),
    # minibatch updates per experience, the budget as the literature states it (instead of epochs)
    "iterations": Rule("int", positive),
    # "seen": training loss over the logits of the classes seen so far (van de Ven & Tolias'
    # class-incremental "active classes"); "all": every output
    "logits": Rule("str", one_of(lambda: ("all", "seen"), "logits setting")),
    "betas": Rule("number list", lambda v: None if len(v) == 2 and all(0 <= b < 1 for b in v)
                  else f"must be two numbers in [0, 1), got {v}"),
    "batch_size": Rule("int", positive),
    "optimizer": Rule("str", one_of(_optimizers, "optimizer")),
    "lr": Rule("number", positive),
    "momentum": Rule("number", in_range(0, 1, hi_open=True)),
    "weight_decay": Rule("number", at_least(0)),
    # bfloat16 autocast in forward passes (comet_cl.precision); off unless set
    "amp": Rule("bool"),
    # the optimizer's fused kernel (torch's fused=True): the same update in one kernel over
    # all parameters, 2.2-2.6x faster than the default per-tensor-list step on a CPU (Adam,
    # 2 x 400 and 2 x 1000 MLPs); the float rounding differs in the last bits, so a suite
    # opts in and its runs stay comparable with each other. Off unless set.
    "fused": Rule("bool"),
    # training-minibatch augmentation (comet_cl.augment): "crop-flip" is the CIFAR protocols'
    # random crop (padding 4) and horizontal flip, replay's memory batch included; off unless set
    "augment": Rule("str", one_of(_augments, "augmentation")),
}
EVAL_KEYS = {
    "beta": Rule("int", positive),
    "curve_subset": Rule("int", positive),
    "curve_stride": Rule("int", positive),
    "batch_size": Rule("int", positive),
    # where runs are evaluated: the test sets, or the validation splits (a sweep's tuning runs)
    "split": Rule("str", one_of(lambda: EVAL_SPLITS, "eval split")),
}
EVAL_SPLITS = ("test", "valid")
STRATEGY_KEYS = {"preset": Rule("str"), "name": Rule("str", folder_name), "model": Rule("str"),
                 "params": Rule("table"), "train": Rule("table"),
                 "model_config": Rule("table")}
SUITE_KEYS = {
    "name": Rule("str", folder_name),  # results/<name> by default, and tuned presets' names
    "description": Rule("str"),
    "seeds": Rule("int list", each(at_least(0))),
    "streams": Rule("list", each(lambda v: None)),
    "strategies": Rule("list", each(lambda v: None)),
    "model": Rule("table"), "train": Rule("table"), "eval": Rule("table"),
    "sweep": Rule("table"), "published": Rule("table"), "executor": Rule("table"),
    "study": Rule("table"),
}
SWEEP_KEYS = {
    "seeds": Rule("int list", each(at_least(0))),
    "valid_fraction": Rule("number", in_range(0, 1, lo_open=True, hi_open=True)),
    "grid": Rule("table"),
    "follow": Rule("table"),
}
DEFAULT_SWEEP = {"seeds": [0], "valid_fraction": 0.1}
PUBLISHED_KEYS = {"source": Rule("str"), "metric": Rule("str"), "figures": Rule("table"),
                  "explained": Rule("table")}
def _metric_names():
    """The metrics every run's summary stores (intransigence needs the joint runs: report only)."""
    from comet_cl.metrics import summarize
    return list(summarize([[0.0]]))


STUDY_KEYS = {"contrasts": Rule("table"), "goals": Rule("list"),
              "metrics": Rule("list", each(one_of(_metric_names, "metric"))),
              "speed_level": Rule("number", in_range(0, 1, lo_open=True, hi_open=True))}
GOAL_KEYS = {"name": Rule("str"), "strategy": Rule("str"), "above": Rule("number"),
             "above_strategy": Rule("str")}
PRESET_KEYS = {"method": Rule("str"), "model": Rule("str"), "params": Rule("table"),
               "train": Rule("table"), "model_config": Rule("table"),
               "description": Rule("str"), "source": Rule("str")}
# Per-run resources for cluster executors (comet_cl.executors.ExecutorOptions); the command
# line overrides each. Not part of a run's config: where a run executes does not change it.
EXECUTOR_KEYS = {
    "cpus_per_run": Rule("int", positive), "gpus_per_run": Rule("number", at_least(0)),
    "max_retries": Rule("int", at_least(0)), "partition": Rule("str"),
    "time": Rule("int", positive), "array_parallelism": Rule("int", positive),
}

DEFAULT_TRAIN = {"epochs": 1, "batch_size": 128, "optimizer": "sgd", "lr": 0.01,
                 "momentum": 0.9, "weight_decay": 0.0}
DEFAULT_EVAL = {"beta": 10, "curve_subset": 1000, "curve_stride": 10, "batch_size": 1000}
# widths None: the architecture's own default (mlp [1000, 1000]; conv [32, 64, 128, 256]).
DEFAULT_MODEL = {"widths": None, "p_k": 0.5, "activation": "relu", "mask_cache": True,
                 "options": {}}


def check_table(table: dict, schema: dict[str, Rule], path, prefix: str,
                required: Iterable[str] = ()) -> dict:
    """Unknown keys, wrong types and out-of-range values fail with one line naming the file,
    the key, its line and what is wrong (or the closest valid key)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: '{prefix}' must be a table, got {type(table).__name__}")
    check_keys(table, schema, path, prefix, required)
    for key, value in table.items():
        rule = schema[key]
        if not _TYPES[rule.kind](value):
            raise ConfigError(f"{_where(path, prefix, key)}: expected "
                              f"{_TYPE_WORDS.get(rule.kind, rule.kind)}, "
                              f"got {type(value).__name__} {value!r}")
        if rule.check is not None and (why := rule.check(value)) is not None:
            raise ConfigError(f"{_where(path, prefix, key)}: {why}")
    _check_finite(table, path, prefix)
    return table


def _check_finite(value, path, prefix: str, key: str = "") -> None:
    """NaN and infinity nowhere, also inside free-form tables (a method's params)."""
    if isinstance(value, float) and not _finite(value):
        raise ConfigError(f"{_where(path, prefix, key)}: expected a finite number, got {value}")
    if isinstance(value, dict):
        inner = f"{prefix}.{key}" if prefix and key else prefix or key
        for k, v in value.items():
            _check_finite(v, path, inner, k)
    elif isinstance(value, list):
        for v in value:
            _check_finite(v, path, prefix, key)


def default_arch(stream: str) -> str:
    """The architecture a stream gets when the suite names none (declared on the stream)."""
    return STREAMS[stream].default_arch


def _entry(entry, path, prefix: str, key: str) -> dict:
    """A list item given as a name or as a table; anything else is refused here."""
    if isinstance(entry, str):
        return {key: entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{_where(path, '', prefix.split('[')[0])}: item {prefix} must be a "
                          f"name or a table, got {type(entry).__name__} {entry!r}")
    return entry


def _stream(entry, path, i: int, model: dict) -> dict:
    prefix = f"streams[{i}]"
    entry = _entry(entry, path, prefix, "name")
    check_table(entry, STREAM_KEYS, path, prefix, required={"name"})
    if entry["name"] not in STREAMS:
        raise ConfigError(f"{_where(path, prefix, 'name')}: unknown stream '{entry['name']}'"
                          f"{closest(entry['name'], STREAMS)} (known: {', '.join(STREAMS)})")
    kind = STREAMS[entry["name"]]
    if "n_experiences" in entry and (why := kind.experiences_error(entry["n_experiences"])):
        raise ConfigError(f"{_where(path, prefix, 'n_experiences')}: {why}")
    if why := kind.class_order_error(entry.get("class_order", "random")):
        raise ConfigError(f"{_where(path, prefix, 'class_order')}: {why}")
    entry = dict(entry)
    own_model = check_table(entry.pop("model", {}), MODEL_KEYS, path, f"{prefix}.model")
    merged = {"arch": default_arch(entry["name"]), **model, **own_model}
    return {"stream": entry, "model": merged}


def _strategy(entry, path, i: int) -> dict:
    prefix = f"strategies[{i}]"
    entry = _entry(entry, path, prefix, "preset")
    check_table(entry, STRATEGY_KEYS, path, prefix, required={"preset"})
    if "train" in entry:
        check_table(entry["train"], TRAIN_KEYS, path, f"{prefix}.train")
    if "model_config" in entry:
        check_table(entry["model_config"], MODEL_KEYS, path, f"{prefix}.model_config")
    return {"name": entry.get("name", entry["preset"]), **entry}


def _published(raw: dict, path, names: list[str]) -> dict:
    """The [published] table: the figures a protocol suite reproduces (percent), its source,
    and ``explained``: for a figure ours misses, the measured explanation (one line naming
    where the measurement is), printed beside the reproduction table's verdict."""
    check_table(raw, PUBLISHED_KEYS, path, "published", required={"source", "figures"})
    check_table(raw["figures"], dict.fromkeys(names, Rule("number")), path, "published.figures")
    check_table(raw.get("explained", {}), dict.fromkeys(raw["figures"], Rule("str")), path,
                "published.explained")
    return {"metric": "acc", **raw}


def split_reference(ref: str) -> tuple[str | None, str]:
    """A [study] contrast's reference as (suite, strategy): ``"suite:strategy"`` names another
    suite's strategy, a plain name one of the same suite (suite None)."""
    suite, sep, strategy = ref.rpartition(":")
    return (suite if sep else None), strategy


def _study(raw: dict, path, names: list[str]) -> dict:
    """The [study] table (comet_cl.study): which strategy each one is contrasted with (paired
    by seed), the goals to test and the metrics to show; every name must be a strategy."""
    study = check_table(raw, STUDY_KEYS, path, "study")
    # a reference is a strategy of this suite, or "suite:strategy" of another (comet_cl.study)
    here = one_of(lambda: names, "strategy")

    def reference(v: str) -> str | None:
        suite, strategy = split_reference(v)
        if suite is None:
            return here(v)
        return None if suite and strategy else (f"'{v}' must read 'suite:strategy' (another "
                                                f"suite's strategy) or name a strategy")

    def references(v: str | list[str]) -> str | None:  # one reference, or several
        return next(filter(None, map(reference, [v] if isinstance(v, str) else v)), None)
    known = dict.fromkeys(names, Rule("str or str list", references))
    check_table(study.get("contrasts", {}), known, path, "study.contrasts")
    for i, goal in enumerate(study.get("goals", [])):
        prefix = f"study.goals[{i}]"
        check_table(goal, GOAL_KEYS, path, prefix, required={"name", "strategy"})
        for key in ("strategy", "above_strategy"):
            if key in goal and goal[key] not in names:
                raise ConfigError(f"{_where(path, prefix, key)}: unknown strategy "
                                  f"'{goal[key]}'{closest(goal[key], names)}")
        if ("above" in goal) == ("above_strategy" in goal):
            raise ConfigError(f"{path}: '{prefix}' needs one bar: 'above' (a figure in percent) "
                              f"or 'above_strategy' (a strategy of the suite, paired by seed)")
    return {"metrics": ["acc"], **study}


def _shared_grids(grid: dict, path) -> dict:
    """``[sweep.grid] dense-ewc = "ewc"``: a strategy given a name instead of a table is tuned
    on that strategy's grid, the same values. The suites hold every method with one
    regulariser to one grid (a reviewer's rule: the same grid and budget for each); written
    once, the rule is kept by the spec instead of by copying lists that could drift apart.
    The name must be a strategy with a table of its own (one step, no chains)."""
    out = {}
    for name, value in grid.items():
        if isinstance(value, dict):
            out[name] = value
            continue
        owner = grid.get(value)
        if not isinstance(owner, dict):
            known = [n for n, v in grid.items() if isinstance(v, dict)]
            what = (f"'{value}' has no grid of its own (it shares the grid of '{owner}')"
                    if isinstance(owner, str) else f"no strategy '{value}' has a grid")
            raise ConfigError(f"{_where(path, 'sweep.grid', name)}: {what}; a shared grid names "
                              f"a strategy with a table of its own ("
                              f"{', '.join(known) or 'none here'}){closest(value, known)}")
        out[name] = {key: list(values) if isinstance(values, list) else values
                     for key, values in owner.items()}
    return out


def _sweep(raw: dict, path, names: list[str]) -> dict:
    """The [sweep] table: tuning seeds, the validation share, and a grid per strategy
    (parameter -> non-empty list of values, each checked like the key it sets), or the name
    of another strategy whose grid it shares (:func:`_shared_grids`)."""
    sweep = {**DEFAULT_SWEEP, **check_table(raw, SWEEP_KEYS, path, "sweep")}
    if not sweep["seeds"]:
        raise ConfigError(f"{_where(path, 'sweep', 'seeds')}: must not be empty")
    grid = _shared_grids(check_table(sweep.get("grid", {}),
                                     dict.fromkeys(names, Rule("table or str")), path,
                                     "sweep.grid"), path)
    for name, params in grid.items():
        prefix = f"sweep.grid.{name}"
        for key, values in params.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{_where(path, prefix, key)}: expected a non-empty list of "
                                  f"values, got {values!r}")
            rule = MODEL_KEYS.get(key) or TRAIN_KEYS.get(key)
            if rule is not None:
                for v in values:
                    check_table({key: v}, {key: rule}, path, prefix)
    swept = [n for n in names if grid.get(n)]
    follow = check_table(sweep.get("follow", {}),
                         dict.fromkeys(names, Rule("str", one_of(lambda: swept, "swept strategy"))),
                         path, "sweep.follow")
    for name, leader in follow.items():
        if name == leader:
            raise ConfigError(f"{_where(path, 'sweep.follow', name)}: '{name}' cannot follow "
                              f"its own choice")
        if not grid.get(name):
            continue
        # a follower with a grid of its own is tuned at its leader's chosen point (a second
        # stage of the sweep): the leader must be chosen by a grid alone, on other keys
        if leader in follow:
            raise ConfigError(f"{_where(path, 'sweep.follow', name)}: '{name}' has a grid of its "
                              f"own and follows '{leader}', which follows '{follow[leader]}': "
                              f"a tuned follower's leader must be tuned by its grid alone")
        shared = sorted(set(grid[name]) & set(grid[leader]))
        if shared:
            raise ConfigError(f"{_where(path, 'sweep.follow', name)}: '{name}' takes "
                              f"{', '.join(shared)} from '{leader}'s choice, so its own grid "
                              f"cannot set {'it' if len(shared) == 1 else 'them'} too")
    return {**sweep, "grid": grid, "follow": dict(follow)}


def parse_suite(raw: dict, path="<spec>") -> dict:
    """Check a suite spec (as parsed TOML), every value's type and range, and fill in
    defaults. Everything a spec can get wrong fails here, before any folder is written."""
    check_table(raw, SUITE_KEYS, path, "", required={"name", "streams", "strategies"})
    model = {**DEFAULT_MODEL, **check_table(raw.get("model", {}), MODEL_KEYS, path, "model")}
    train = {**DEFAULT_TRAIN, **check_table(raw.get("train", {}), TRAIN_KEYS, path, "train")}
    evaluation = {**DEFAULT_EVAL, **check_table(raw.get("eval", {}), EVAL_KEYS, path, "eval")}
    executor = dict(check_table(raw.get("executor", {}), EXECUTOR_KEYS, path, "executor"))
    strategies = [_strategy(s, path, i) for i, s in enumerate(raw["strategies"])]
    names = [s["name"] for s in strategies]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two strategies share a name in {names}; give one a 'name'")
    if "iterations" in raw.get("train", {}) and raw["train"].get("epochs", 1) != 1:
        raise ConfigError(f"{_where(path, 'train', 'iterations')}: give either an iterations "
                          f"budget or epochs, not both")
    streams = [_stream(s, path, i, model) for i, s in enumerate(raw["streams"])]
    labels = [stream_label(s["stream"]) for s in streams]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: two streams share a name in {labels} (their runs would "
                          f"share folders); give one a 'label'")
    extra = {"sweep": _sweep(raw["sweep"], path, names)} if "sweep" in raw else {}
    if "published" in raw:
        extra["published"] = _published(raw["published"], path, names)
    if "study" in raw:
        extra["study"] = _study(raw["study"], path, names)
    return {
        "name": raw["name"],
        "description": raw.get("description", ""),
        "seeds": raw.get("seeds", [0]),
        "streams": streams,
        "strategies": strategies,
        "train": train,
        "eval": evaluation,
        "executor": executor,
        "path": str(path),
        **extra,
    }


def read_toml(path: Path) -> dict:
    """A spec or preset file as parsed TOML, or a one-line ConfigError saying why not
    (missing, unreadable, a folder, binary or not UTF-8, not TOML)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (TOML must be UTF-8; byte "
                          f"0x{raw[e.start]:02x} at offset {e.start})") from None
    if "\0" in text:
        raise ConfigError(f"{path}: not a text file (it holds NUL bytes)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load_suite(spec) -> dict:
    """Parse a suite given as a path or as the name of a packaged suite."""
    path = suite_path(spec)
    return parse_suite(read_toml(path), path)


def first_seeds(spec_seeds: list[int], n: int) -> list[int]:
    """The seeds ``--seeds n`` runs: the first n of the spec's list, in its order, then (when n
    asks for more than it lists) the smallest non-negative ints it does not hold. A spec that
    lists 0..k-1 gets 0..n-1; one that lists van de Ven's 1..20 gets 1..n, not a seed 0 that
    it never declared."""
    if n < 1:
        raise ConfigError(f"--seeds: must be at least 1, got {n}")
    seeds = list(dict.fromkeys(spec_seeds))[:n]
    extra = (s for s in itertools.count() if s not in seeds)
    return seeds + [next(extra) for _ in range(n - len(seeds))]


# ---- writing TOML -------------------------------------------------------------------------

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):  # JSON's string escapes are TOML basic-string escapes
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dump_toml(table: dict) -> str:
    """``table`` as TOML text that :func:`read_toml` reads back: plain keys first, then one
    ``[section]`` per dict value (deeper dicts inline). Suites and presets need no more."""
    plain = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    sections = [f"\n[{k}]\n" + "\n".join(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
                for k, v in table.items() if isinstance(v, dict)]
    return "\n".join(plain) + "\n" + "\n".join(sections) + ("\n" if sections else "")


# ---- strategy presets ---------------------------------------------------------------------

# The presets that ship with the package; a suite's own folder can add or shadow presets.
PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_dirs(extra: Path | None = None) -> list[Path]:
    dirs = [extra, PRESETS_DIR] if extra is not None else [PRESETS_DIR]
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


def available_presets(extra: Path | None = None) -> dict[str, Path]:
    """Preset name -> file; an earlier folder wins (a suite's own presets shadow the repo's)."""
    found: dict[str, Path] = {}
    for d in reversed(preset_dirs(extra)):
        found.update({p.stem: p for p in sorted(d.glob("*.toml"))})
    return found


def preset_file(name: str, extra: Path | None = None) -> Path:
    files = available_presets(extra)
    if name not in files:
        raise ConfigError(f"unknown strategy '{name}'{closest(name, files)}; presets are "
                          f"the .toml files in {', '.join(map(str, preset_dirs(extra)))}")
    return files[name]


def read_preset(path: Path) -> dict:
    """A preset file's table, its keys, types and [train] values checked (the method and
    its [params] are checked against the methods table by ``comet_cl.strategies``)."""
    raw = read_toml(path)
    check_table(raw, PRESET_KEYS, path, "", required={"method"})
    check_table(raw.get("train", {}), TRAIN_KEYS, path, "train")
    check_table(raw.get("model_config", {}), MODEL_KEYS, path, "model_config")
    return raw
