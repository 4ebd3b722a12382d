"""Validation sweeps: choose hyperparameters the way the papers did, never on the test sets.

A suite's ``[sweep]`` table gives, per strategy, a grid over its preset parameters
(``ewc_lambda``, ``si_c``, ``alpha``, ...), model settings (``p_k``, ``widths``, ...) or
training settings (``lr``, ...). Each grid point is a *tuning run*: the same stream with
``valid_fraction`` of every experience's training data held out, trained on the rest and
evaluated on the held-out part. The tuning runs are ordinary resumable run folders, in
``OUT/sweep/`` (a suite folder of its own). When every tuning run of a (stream, strategy) has
finished, :func:`choose` picks one point by :data:`RULE`, writes the whole sweep (grid, score of
each point, choice) to ``OUT/sweep.json``, and the suite's final runs train on the full
training data with the chosen values and are evaluated on the test sets.

``follow = { smaller = "comet" }`` in the ``[sweep]`` table runs a strategy at another's chosen
point instead of a grid of its own: the COMET paper's controls (a smaller dense net, dropout,
top-k) are defined by COMET's p_k and width, so they must be held against COMET at the point
COMET was tuned to (matched active units), not at a default that COMET's sweep moved away from.

A follower with a grid of its own is tuned *at* its leader's chosen point, in a second stage:
``follow = { comet-ewc = "comet" }`` with ``[sweep.grid.comet-ewc] ewc_lambda = [...]`` runs
EWC's lambda grid on the COMET model at the p_k and widths COMET's sweep chose (tuning runs
named ``comet-ewc@p_k=0.9,widths=800-800,ewc_lambda=100``), once those are known. Why: a
combination tuned at the suite's default p_k is held against a COMET that is not the one
the study reports (measured on split CIFAR-10: COMET + ER at p_k 0.9 is 6-10 points above
p_k 0.5), and a regulariser's best strength depends on the model it regularises.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from comet_cl import results as res
from comet_cl.catalog import stream_label
from comet_cl.config import (MODEL_KEYS, TRAIN_KEYS, ConfigError, dump_toml, load_suite,
                             preset_file, read_preset, suite_path)
from comet_cl.contract import iter_stored_runs
from comet_cl.metrics import acc as final_acc

SWEEP_FILE = "sweep.json"
RULE = ("the grid point with the highest final average accuracy (ACC) on the validation "
        "splits, averaged over the sweep's seeds; a tie goes to the point listed first")


def target(param: str) -> str:
    """Which part of a strategy a grid parameter sets: 'model_config', 'train' or 'params'."""
    if param in MODEL_KEYS:
        return "model_config"
    if param in TRAIN_KEYS:
        return "train"
    return "params"


def points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in the order written (first key slowest)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _fmt(v) -> str:
    if isinstance(v, list):
        return "-".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return format(v, "g")
    return str(v)


def label(strategy: str, point: dict) -> str:
    """The tuning run's strategy name, e.g. ``ewc@ewc_lambda=100``."""
    return f"{strategy}@" + values_text(point, sep=",")


def with_values(entry: dict, point: dict) -> dict:
    """A suite strategy entry with ``point``'s values merged into its params / model / train."""
    out = {**entry}
    for key, value in point.items():
        part = target(key)
        out[part] = {**out.get(part, {}), key: value}
    return out


def tuning_suite(suite: dict, at: dict | None = None) -> dict | None:
    """The suite of tuning runs, every grid point of every strategy (None when the suite has
    no sweep or nothing to tune). Always whole, so the sweep folder's suite.json lists every
    tuning run whichever strategies one command ran (:func:`tuning_names` picks those).
    ``at`` (:func:`second_stage`): the second stage's points, known once leaders have chosen."""
    sweep = suite.get("sweep")
    if not sweep:
        return None
    entries = [{**with_values(strat, point), "name": label(strat["name"], point)}
               for strat, point in _grid_points(suite, at)]
    if not entries:
        return None
    streams = [{**e, "stream": {**e["stream"], "valid_fraction": sweep["valid_fraction"]}}
               for e in suite["streams"]]
    return {**suite, "name": suite["name"] + res.TUNING_SUFFIX, "seeds": list(sweep["seeds"]),
            "streams": streams, "strategies": entries, "sweep": None,
            "eval": {**suite["eval"], "split": "valid"}}


def with_followed(suite: dict, strategies: list[str] | None) -> list[str] | None:
    """``strategies`` and the strategies whose choice they follow (``[sweep] follow``), and
    so on up the chain (a control may follow a tuned follower, which follows its leader): what
    must be tuned before they can run. None (every strategy) stays None."""
    if not strategies:
        return strategies
    follow = (suite.get("sweep") or {}).get("follow", {})
    needed = list(dict.fromkeys(strategies))
    for name in needed:  # grows while it is walked: the chain's leaders are appended
        if name in follow and follow[name] not in needed:
            needed.append(follow[name])
    return needed


def tuning_names(suite: dict, strategies: list[str] | None = None) -> list[str] | None:
    """The first stage's tuning runs (strategy names in :func:`tuning_suite`) of ``strategies``
    and of the strategies they follow: all of them for None, possibly none for a selection of
    strategies without a grid (the second stage's: :func:`second_stage_runs`)."""
    if not strategies:
        return None
    needed = with_followed(suite, strategies)
    return [label(strat["name"], point) for strat, point in _grid_points(suite)
            if strat["name"] in needed]


def tuned_followers(suite: dict) -> dict[str, str]:
    """Followers with a grid of their own (tuned in the second stage), each to its leader."""
    sweep = suite.get("sweep") or {}
    return {f: lead for f, lead in sweep.get("follow", {}).items() if sweep["grid"].get(f)}


def _grid_points(suite: dict, at: dict | None = None) -> list[tuple[dict, dict]]:
    """(strategy entry, grid point) for every tuning run of the suite's sweep, in suite and
    grid order: the one walk both :func:`tuning_suite` and :func:`tuning_names` take. The
    first stage, and with ``at`` ({(stream, follower): leader's point}) the second: a tuned
    follower's grid at each distinct point its leader chose."""
    grids = (suite.get("sweep") or {}).get("grid", {})
    staged = tuned_followers(suite)
    out = []
    for strat in suite["strategies"]:
        name = strat["name"]
        if not grids.get(name):
            continue
        if name not in staged:
            out += [(strat, point) for point in points(grids[name])]
            continue
        leads = [p for (_, f), p in (at or {}).items() if f == name]
        for lead in [p for i, p in enumerate(leads) if p not in leads[:i]]:
            out += [(strat, {**lead, **point}) for point in points(grids[name])]
    return out


def second_stage(suite: dict, out: Path) -> dict[tuple[str, str], dict]:
    """The point each tuned follower is tuned at on each stream, {(stream, follower):
    leader's chosen point}, for the leaders whose tuning runs in ``out/sweep`` have all
    finished (an empty dict before any has, or when no follower has a grid)."""
    staged = tuned_followers(suite)
    if not staged:
        return {}
    table, _, _ = _scores(suite, Path(out), None, first_stage_only=True)
    return {(stream, f): choices[lead]["chosen"] for stream, choices in table.items()
            for f, lead in staged.items() if lead in choices}


def margin(points: list[dict], best: int) -> dict | None:
    """How far the chosen point ``points[best]`` is ahead of the runner-up (the next best
    mean; on a tie the point listed first), paired by sweep seed: the mean difference in
    validation ACC, the half-width of its 95% t-interval (None for one seed) and whether that
    interval clears zero (``separable``; None when one seed cannot say). Why: a one-seed sweep
    whose grid differs by less than the seed-to-seed spread picks noise (measured on split
    MNIST Domain-IL: six lambdas over ten orders of magnitude within 3.7 points), and a reader
    of the choice should see whether it was resolved. None for a one-point grid."""
    from comet_cl.reproduction import mean_ci
    others = sorted((i for i in range(len(points)) if i != best),
                    key=lambda i: (-points[i]["mean"], i))
    if not others:
        return None
    runner = points[others[0]]
    diffs = [a - b for a, b in zip(points[best]["valid_acc"], runner["valid_acc"])]
    difference, half = mean_ci(diffs)
    return {"runner_up": runner["values"], "difference": difference, "half": half,
            "separable": None if half is None else bool(difference - half > 0)}


def entry_margin(entry: dict) -> dict | None:
    """The :func:`margin` of one (stream, strategy) entry of sweep.json, recomputed from its
    points (so a file written before margins were stored gets one too)."""
    best = [p["values"] for p in entry["points"]].index(entry["chosen"])
    return margin(entry["points"], best)


def values_text(values: dict, sep: str = ", ") -> str:
    """A grid point as text: 'ewc_lambda=1e+06, gamma=0.7', a list as 'widths=400-400'. The
    one text of a point: the CLI, the tuned presets' source, the report's sweep page and (with
    ``sep=","``) the tuning runs' names (:func:`label`) all use it."""
    return sep.join(f"{k}={_fmt(v)}" for k, v in values.items())


def margin_text(m: dict | None) -> str:
    """A :func:`margin` in words: '+1.2 \u00b1 0.8 pp: separable', '+0.3 pp (one seed: not
    tested)'. The runner-up is named by whoever shows the margin."""
    if m is None:
        return "the only grid point"
    if m["half"] is None:
        return f"{m['difference'] * 100:+.1f} pp (one seed: not tested)"
    verdict = "separable" if m["separable"] else "not separable"
    return f"{m['difference'] * 100:+.1f} \u00b1 {m['half'] * 100:.1f} pp: {verdict}"


def full_point(entry: dict) -> dict:
    """The values a sweep.json entry puts in its strategy's runs: its chosen point and, for a
    follower tuned at its leader's choice, the leader's point (``at``) it was tuned at."""
    return {**entry.get("at", {}), **entry["chosen"]}


def second_stage_runs(suite: dict, at: dict[tuple[str, str], dict]) -> set[tuple[str, str]]:
    """The second stage's tuning runs as (stream, tuning run name): each tuned follower's grid
    at its leader's point on that stream (``at``, from :func:`second_stage`)."""
    grids = suite["sweep"]["grid"]
    return {(stream, label(f, {**lead, **point})) for (stream, f), lead in at.items()
            for point in points(grids[f])}


def choose(suite: dict, out: Path, strategies: list[str] | None = None) -> dict:
    """Pick each (stream, strategy)'s grid point from the finished tuning runs in
    ``out/sweep``; write ``out/sweep.json`` and return the overrides for :func:`runner.plan`:
    ``{(stream, strategy): point}``. Raises ConfigError while tuning runs of ``strategies``
    (default: every swept strategy) are unfinished. sweep.json holds every swept strategy
    whose tuning runs have all finished, named or not, so a run of some strategies never
    drops another's finished sweep from it."""
    out = Path(out)
    table, overrides, missing = _scores(suite, out, strategies)
    sweep = suite["sweep"]
    if missing:
        raise ConfigError(f"{missing} tuning runs in {out / res.TUNING_DIR} have not finished: the "
                          f"sweep cannot choose yet (run the suite again to finish them)")
    follow, staged = sweep.get("follow", {}), tuned_followers(suite)
    for follower, leader in follow.items():  # a control runs at its model's chosen point
        if follower in staged:
            continue  # tuned at it: its override holds the leader's point and its own
        for stream, choices in table.items():
            if leader in choices and (not strategies or follower in strategies):
                overrides[(stream, follower)] = full_point(choices[leader])
    res.atomic_write_json(out / SWEEP_FILE, {
        "rule": RULE, "seeds": list(sweep["seeds"]), "valid_fraction": sweep["valid_fraction"],
        "streams": table, **({"follow": dict(follow)} if follow else {})})
    return overrides


def _scores(suite: dict, out: Path, strategies: list[str] | None,
            first_stage_only: bool = False) -> tuple[dict, dict, int]:
    """The sweep as far as its finished tuning runs in ``out/sweep`` go: (the sweep.json
    table {stream: {strategy: entry}}, the overrides of ``strategies`` {(stream, strategy):
    point}, how many tuning runs of the needed strategies are missing). Leaders are scored
    before the followers tuned at their choice; ``first_stage_only`` stops there."""
    acc: dict[tuple[str, str, int], float] = {}
    for run in iter_stored_runs(out / res.TUNING_DIR):
        if run.finished:  # ACC from the stored matrix R (the summary's metrics are a check)
            key = (run.config.stream_name, run.config.strategy_name, run.config.seed)
            acc[key] = final_acc(run.summary.R)
    sweep, table, overrides, missing = suite["sweep"], {}, {}, 0
    needed = with_followed(suite, strategies)
    staged = tuned_followers(suite)
    ordered = [s for s in suite["strategies"] if s["name"] not in staged]
    if not first_stage_only:
        ordered += [s for s in suite["strategies"] if s["name"] in staged]
    for strat in ordered:
        grid = sweep["grid"].get(strat["name"])
        if not grid:
            continue
        wanted = not needed or strat["name"] in needed
        for entry in suite["streams"]:
            stream = stream_label(entry["stream"])
            at = {}
            if strat["name"] in staged:  # tuned at its leader's choice, once there is one
                leader = table.get(stream, {}).get(staged[strat["name"]])
                if leader is None:
                    missing += wanted * len(points(grid)) * len(sweep["seeds"])
                    continue
                at = leader["chosen"]
            scored = []
            for point in points(grid):
                name = label(strat["name"], {**at, **point})
                vals = [acc.get((stream, name, s)) for s in sweep["seeds"]]
                missing += wanted * sum(v is None for v in vals)
                scored.append({"values": point, "valid_acc": vals,
                               "mean": None if None in vals else float(np.mean(vals))})
            if any(p["mean"] is None for p in scored):
                continue
            best = max(range(len(scored)), key=lambda i: (scored[i]["mean"], -i))
            chosen = table.setdefault(stream, {})[strat["name"]] = {
                "grid": grid, "points": scored, "chosen": scored[best]["values"],
                "margin": margin(scored, best), **({"at": at} if at else {})}
            if not strategies or strat["name"] in strategies:
                overrides[(stream, strat["name"])] = full_point(chosen)
    return table, overrides, missing


# ---- tuned presets -------------------------------------------------------------------------

def tuned_name(suite: str, stream: str | None, strategy: str) -> str:
    """A tuned preset's name: ``<suite>-<strategy>``, or ``<suite>-<stream>-<strategy>``."""
    return "-".join([suite] + ([stream] if stream else []) + [strategy])


def tuned_for(preset: str) -> str | None:
    """The packaged suite whose sweep a preset name says it was tuned by (see
    :func:`tuned_name`), or None: a base preset. A tuned copy costs what its base costs,
    so the speed benchmark leaves it out."""
    from comet_cl.config import packaged_suites
    return next((suite for suite in packaged_suites() if preset.startswith(f"{suite}-")), None)


def _replaced_text(suite: dict, stream: str, entry: dict, chosen: dict,
                   presets_dir: Path | None) -> str:
    """What a tuned preset changed in its base: each chosen key with the value its runs had
    before the sweep (resolved as the runner resolves a run's settings), so that the base
    source's own words about that value (say "c = 5, not tuned") read as the value replaced,
    not the one in use."""
    from comet_cl.runner import strategy_settings  # the runner imports this module
    stream_entry = next(s for s in suite["streams"] if stream_label(s["stream"]) == stream)
    before = strategy_settings(suite, stream_entry, entry, presets_dir)
    parts = []
    for key in chosen:
        value = before[target(key)].get(key)
        parts.append(f"{key} {_fmt(value)}" if value is not None else f"{key} unset")
    return "the sweep replaced its " + ", ".join(parts)


def tuned_presets(suite: dict, out: Path, presets_dir: Path | None = None) -> dict[str, str]:
    """One preset file's text per tuned (stream, strategy) of a finished sweep in ``out``:
    the strategy's preset with the chosen values written in, named ``<suite>-<strategy>``
    (``<suite>-<stream>-<strategy>`` when the suite has several streams), its ``source``
    naming the suite, the grid, each point's validation score and the rule. So the values a
    protocol's sweep chose can be used elsewhere by name, and say where they came from."""
    chosen = res.read_json(Path(out) / SWEEP_FILE)
    entries = {s["name"]: s for s in suite["strategies"]}
    several = len(chosen["streams"]) > 1
    texts = {}
    for stream, strategies in chosen["streams"].items():
        for name, result in strategies.items():
            full = full_point(result)
            entry = with_values(entries[name], full)
            base = read_preset(preset_file(entry["preset"], presets_dir))
            preset = {"method": base["method"], "model": entry.get("model", base.get("model", "dense"))}
            for table in ("params", "train", "model_config"):
                preset[table] = {**base.get(table, {}), **entry.get(table, {})}
            scores = "; ".join(f"{values_text(p['values'])}: {p['mean']:.4f}"
                               for p in result["points"])
            values = ", ".join(f"{k} = {_fmt(v)}" for k, v in full.items())
            m = entry_margin(result)
            ahead = "The only grid point" if m is None else (
                f"Ahead of the runner-up ({values_text(m['runner_up'])}) in validation ACC by "
                f"{margin_text(m)}" + ("" if m["half"] is None else " (paired by seed; 95% CI)"))
            preset["description"] = (f"{name} as tuned for suite {suite['name']} "
                                     f"(stream {stream}): {values}.")
            replaced = _replaced_text(suite, stream, entries[name], full, presets_dir)
            at_text = (f"Its grid ran at the point {suite['sweep']['follow'][name]}'s sweep chose "
                       f"({values_text(result['at'])}), which it keeps. ") if result.get("at") else ""
            preset["source"] = (
                f"Chosen by the validation sweep of suite '{suite['name']}' on stream {stream} "
                f"({chosen['valid_fraction']:g} of each experience's training data held out, "
                f"seeds {chosen['seeds']}); rule: {chosen['rule']}. Validation ACC per point: "
                f"{scores}. {ahead}. {at_text}Everything else as the '{entry['preset']}' preset "
                f"({replaced}), whose source reads: {base.get('source', '')}")
            file_name = tuned_name(suite["name"], stream if several else None, name)
            ordered = {k: preset[k] for k in ("description", "method", "model", "source")}
            ordered.update({t: preset[t] for t in ("params", "train", "model_config") if preset[t]})
            texts[file_name] = dump_toml(ordered)
    return texts


def main(argv: list[str] | None = None) -> int:
    """``python -m comet_cl.sweep SUITE OUT --presets DIR``: write the tuned presets."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m comet_cl.sweep", description=main.__doc__)
    parser.add_argument("suite", help="the suite (a packaged name or a file)")
    parser.add_argument("out", type=Path, help="its results folder, holding sweep.json")
    parser.add_argument("--presets", type=Path, required=True, help="folder to write them to")
    args = parser.parse_args(argv)
    if not (args.out / SWEEP_FILE).exists():
        parser.error(f"{args.out / SWEEP_FILE} not found: the sweep has not finished")
    try:  # everything is read and checked before a file is written
        suite = load_suite(suite_path(args.suite))
        ran = res.read_suite_file(args.out / res.TUNING_DIR).get("name")
        if ran != (tuning_suite(suite) or {}).get("name"):
            parser.error(f"{args.out} holds the tuning runs '{ran}', not those of suite "
                         f"'{suite['name']}'")
        texts = tuned_presets(suite, args.out)
        args.presets.mkdir(parents=True, exist_ok=True)
    except (ConfigError, res.ResultsError, OSError) as e:
        parser.error(str(e))
    for name, text in texts.items():
        (args.presets / f"{name}.toml").write_text(text)
        print(args.presets / f"{name}.toml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
