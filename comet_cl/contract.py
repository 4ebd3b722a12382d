"""The run contract: what a run folder's ``config.json`` and ``summary.json`` hold, typed.

The runner writes these files and the report and the CLI read them; both sides go through the
frozen dataclasses here, never through raw keys, so a field has one name in one place.
``comet_cl.results`` owns where the files are; this module owns what is in them.

Summaries carry ``schema_version`` so that a results folder outlives the code that wrote it:

- **1**: written before versioning (no ``schema_version`` key). ``overlap`` has no measured
  chance level, and ``metrics`` holds whichever metrics that comet-cl stored.
- **2**: adds ``schema_version`` and, for routed models, ``overlap.chance``: the overlap of
  masks of unrelated inputs (each input's pixels shuffled on its own), per layer.

Readers accept every version up to ``SCHEMA_VERSION`` and recompute what an older file lacks
(the report recomputes every metric from ``R``, ``R0`` and the curves anyway); a newer version
is refused with a message saying so. Stored metrics are a mapping, not fields, so adding a
metric never makes an older summary unreadable.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comet_cl import results as res
from comet_cl.catalog import stream_label

SCHEMA_VERSION = 2


class ContractError(res.ResultsError):
    """A config or summary that does not follow the contract; the message names the file."""


def _nan_to_none(x):
    """NaN -> None, so the JSON is strict (``json`` would write the non-standard NaN)."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


@dataclass(frozen=True)
class RunConfig:
    """A run's resolved config (``config.json``): everything ``execute_run`` needs.

    The sub-sections stay mappings because their keys are owned by the modules that consume
    them (streams, models, strategies); the fields every reader needs are properties here."""

    suite: str
    suite_hash: str
    version: str
    seed: int
    stream: Mapping[str, Any]
    model: Mapping[str, Any]
    strategy: Mapping[str, Any]
    train: Mapping[str, Any]
    eval: Mapping[str, Any]

    @property
    def stream_name(self) -> str:
        return stream_label(self.stream)

    @property
    def strategy_name(self) -> str:
        return self.strategy["name"]

    @property
    def method(self) -> str:
        return self.strategy["method"]

    @property
    def variant(self) -> str:
        return self.model["variant"]

    @property
    def beta(self) -> int:
        return int(self.eval["beta"])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: Path | str = "config") -> RunConfig:
        try:
            return cls(suite=str(d["suite"]), suite_hash=str(d["suite_hash"]),
                       version=str(d["version"]), seed=int(d["seed"]),
                       stream=dict(d["stream"]), model=dict(d["model"]),
                       strategy=dict(d["strategy"]), train=dict(d["train"]), eval=dict(d["eval"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ContractError(f"{source}: not a run config ({type(e).__name__}: {e})") from e

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy({"suite": self.suite, "suite_hash": self.suite_hash,
                              "version": self.version, "seed": self.seed, "stream": self.stream,
                              "model": self.model, "strategy": self.strategy,
                              "train": self.train, "eval": self.eval})

    @classmethod
    def read(cls, path: Path) -> RunConfig:
        return cls.from_dict(res.read_json(path), path)


@dataclass(frozen=True)
class Overlap:
    """Task-by-task mask overlap of a routed model, per masked layer (``[L][T][T]``), and the
    overlap of unrelated inputs per layer (``chance``; None in schema-1 summaries)."""

    layers: tuple[str, ...]
    p_k: float
    matrices: list
    chance: tuple[float, ...] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Overlap:
        chance = d.get("chance")
        return cls(tuple(d["layers"]), float(d["p_k"]), d["matrices"],
                   None if chance is None else tuple(float(c) for c in chance))

    def to_dict(self) -> dict[str, Any]:
        out = {"layers": list(self.layers), "p_k": self.p_k, "matrices": self.matrices}
        if self.chance is not None:
            out["chance"] = list(self.chance)
        return out


@dataclass(frozen=True)
class RunSummary:
    """A finished run's records (``summary.json``): raw matrices first, derived numbers after.

    ``metrics`` holds the metrics computed when the run finished (None for NaN); readers
    recompute them from ``R``, ``R0`` and ``curves``, so it is a check, not the source."""

    joint: bool
    R: list
    R0: list
    curves: list
    wall_time: list
    n_params: int
    metrics: Mapping[str, float | None]
    overlap: Overlap | None = None
    finished_at: str | None = None
    machine: str | None = None
    device: str | None = None
    git_commit: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    status: str = "finished"
    schema_version: int = SCHEMA_VERSION

    @property
    def n_experiences(self) -> int:
        return len(self.R[-1])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: Path | str = "summary") -> RunSummary:
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or version < 1:
            raise ContractError(f"{source}: schema_version {version!r} is not a positive integer")
        if version > SCHEMA_VERSION:
            raise ContractError(f"{source}: summary schema {version} was written by a newer "
                                f"comet-cl (this one reads up to {SCHEMA_VERSION}); upgrade comet-cl")
        try:
            return cls(joint=bool(d["joint"]), R=d["R"], R0=d["R0"], curves=d["curves"],
                       wall_time=d["wall_time"], n_params=int(d["n_params"]),
                       metrics=dict(d["metrics"]),
                       overlap=Overlap.from_dict(d["overlap"]) if d.get("overlap") else None,
                       finished_at=d.get("finished_at"), machine=d.get("machine"),
                       device=d.get("device"), git_commit=d.get("git_commit"),
                       versions=dict(d.get("versions") or {}), status=d.get("status", "finished"),
                       schema_version=version)
        except (KeyError, TypeError, ValueError) as e:
            raise ContractError(f"{source}: malformed summary ({type(e).__name__}: {e})") from e

    def to_dict(self) -> dict[str, Any]:
        """The summary.json object; a schema-1 summary is written back without the version key,
        exactly as it was read."""
        d = {"status": self.status, "joint": self.joint, "R": self.R, "R0": self.R0,
             "curves": self.curves, "wall_time": self.wall_time, "n_params": self.n_params,
             "overlap": None if self.overlap is None else self.overlap.to_dict(),
             "metrics": dict(self.metrics), "finished_at": self.finished_at,
             "machine": self.machine, "device": self.device, "git_commit": self.git_commit,
             "versions": dict(self.versions)}
        if self.schema_version >= 2:
            d["schema_version"] = self.schema_version
        return _nan_to_none(copy.deepcopy(d))

    @classmethod
    def from_json(cls, text: str, source: Path | str = "summary") -> RunSummary:
        try:
            return cls.from_dict(json.loads(text), source)
        except ValueError as e:
            if isinstance(e, ContractError):
                raise
            raise ContractError(f"{source}: not JSON ({e})") from e

    def to_json(self) -> str:
        """Exactly what the runner writes (``results.atomic_write_json``'s format)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        return cls.from_dict(res.read_json(path), path)

    def write(self, path: Path) -> None:
        res.atomic_write_bytes(path, self.to_json().encode())


@dataclass(frozen=True)
class StoredRun:
    """One run folder as found on disk, typed: its config, and its summary once finished."""

    path: Path
    config: RunConfig
    summary: RunSummary | None

    @property
    def finished(self) -> bool:
        return self.summary is not None


def read_run(folder: Path) -> StoredRun:
    """The run in ``folder`` (``ContractError`` naming the file when one is malformed)."""
    folder = Path(folder)
    summary_path = folder / res.SUMMARY_FILE
    summary = RunSummary.read(summary_path) if summary_path.exists() else None
    return StoredRun(folder, RunConfig.read(folder / res.CONFIG_FILE), summary)


def expected_runs(spec: Mapping[str, Any],
                  source: Path | str = "suite") -> list[tuple[str, str, int]]:
    """(stream label, strategy, seed) of every final run a resolved suite spec (the ``spec``
    of a results folder's suite.json) asks for, in spec order: what the report counts
    missing runs from, and ``comet-cl status`` runs not yet planned. ``ContractError``
    naming ``source`` for a spec that does not list them."""
    def name(item) -> str:  # a spec entry: a name, a table with one, or a stream entry
        if isinstance(item, str):
            return item
        return item["name"] if "name" in item else stream_label(item["stream"])
    try:
        seeds = spec["seeds"]
        seeds = range(seeds) if isinstance(seeds, int) else seeds
        return [(a, b, int(c)) for a, b, c in itertools.product(
            [name(s) for s in spec["streams"]], [name(s) for s in spec["strategies"]], seeds)]
    except (KeyError, TypeError, ValueError) as e:
        raise ContractError(f"{source}: its spec does not list seeds, streams and strategies "
                            f"({type(e).__name__}: {e})") from e


def iter_stored_runs(out: Path) -> Iterator[StoredRun]:
    """Every run folder of the results folder ``out``, finished or not, in a stable order."""
    for folder in res.run_folders(out):
        yield read_run(folder)


def read_suites(folders) -> list[tuple[str, dict, list[StoredRun]]]:
    """``(suite name, suite spec, runs)`` of each results folder: what the study's and the
    reproduction's tables take (the report passes its own, already loaded)."""
    out = []
    for folder in map(Path, folders):
        suite = res.read_suite_file(folder)
        out.append((suite["name"], suite["spec"], list(iter_stored_runs(folder))))
    return out


def tables_main(argv: list[str] | None, prog: str, description: str,
                render: Callable[[list[tuple[str, dict, list[StoredRun]]]], str]) -> int:
    """The command line of a table over results folders (the study's, the reproduction's):
    folders in, Markdown on stdout. A folder that is not a suite's results, or a malformed
    file in one, is one line on stderr and exit status 2, not a traceback."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("results", nargs="+", type=Path,
                        help="results folders of suites (each holds suite.json)")
    args = parser.parse_args(argv)
    try:
        text = render(read_suites(args.results))
    except res.ResultsError as e:
        parser.error(str(e))
    print(text, end="")
    return 0
