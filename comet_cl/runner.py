"""Runs: one run is stream x strategy x seed; a suite is every such run of a spec.

A run lives in its own folder (layout in ``comet_cl.results``). ``plan`` writes each run's
resolved ``config.json``; ``execute_run`` needs nothing but that folder, so any executor can
run it: the local process pool here, or one job per folder on a cluster
(``comet-cl run-one RUN_DIR``). The run checkpoints after every experience (and inside a
long phase where that keeps the numbers, see ``_checkpoints_mid_phase``) and writes
``summary.json`` atomically at the end; running it again skips a finished run and resumes an
unfinished one from its last checkpoint, with the same numbers an uninterrupted run gives.

One seed fixes everything: the stream (permutations, class order, subsets), the model's
initialisation, COMET's router, and every minibatch order.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import random
import signal
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import comet_cl._avalanche  # noqa: F401, I001  (first: Avalanche without its QP-solver warning)
from avalanche.core import SupervisedPlugin

import comet_cl
from comet_cl import loggers, metrics
from comet_cl import results as res
from comet_cl import sweep
from comet_cl.augment import augment_plugins
from comet_cl.catalog import stream_label
from comet_cl.config import ConfigError, closest, load_suite, parse_suite, suite_path
from comet_cl.contract import Overlap, RunSummary
from comet_cl.diagnostics import chance_overlap, task_overlap_matrix
from comet_cl.models import VARIANTS, build_model
from comet_cl.precision import precision_plugins
from comet_cl.recorder import RunRecorder
from comet_cl.strategies import (
    Preset,
    build_strategy,
    load_preset,
    method_of,
    method_plugins,
    phase_updates,
    validate_preset,
)
from comet_cl.streams import StreamSpec, input_shape, make_stream, pixel_scaling

RESULTS_ROOT = Path("results")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available here")
    return torch.device(device)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def suite_hash(suite: dict) -> str:
    """What makes two suites' results comparable: everything but which strategies and seeds
    they ran (adding a strategy or a seed to a suite keeps its finished runs valid)."""
    keep = {k: suite[k] for k in ("name", "streams", "train", "eval")}
    return _hash({**keep, "version": comet_cl.__version__})


# ---- planning ----------------------------------------------------------------------------

def _run_config(suite: dict, entry: dict, preset: Preset, seed: int, s_hash: str) -> dict:
    stream = StreamSpec(seed=seed, **entry["stream"]).resolved()
    model = {**_model_settings(entry["model"], preset, entry["strategy"]), "variant": preset.model}
    train = _train_settings(suite["train"], preset, entry["strategy"])
    return {"suite": suite["name"], "suite_hash": s_hash, "version": comet_cl.__version__,
            "seed": seed, "stream": stream, "model": model,
            "strategy": {**preset.resolved(), "name": entry["strategy"]["name"]},
            "train": train, "eval": suite["eval"]}


def _preset(entry: dict, presets_dir: Path | None) -> Preset:
    base = load_preset(entry["preset"], presets_dir)
    preset = Preset(name=entry["name"], method=base.method,
                    model=entry.get("model", base.model),
                    params={**base.params, **entry.get("params", {})},
                    train={**base.train, **entry.get("train", {})},
                    model_config=base.model_config,
                    description=base.description, source=base.source)
    where = f"{entry.get('path') or 'suite'}: strategy '{entry['name']}'"
    validate_preset(preset, where)  # the suite's own params, merged into the preset's
    if preset.model not in VARIANTS:
        raise ConfigError(f"{where}: unknown model variant "
                          f"'{preset.model}'"
                          f"{closest(preset.model, VARIANTS)} (known: {', '.join(VARIANTS)})")
    return preset


def _train_settings(suite_train: dict, preset: Preset, strategy: dict) -> dict:
    """A run's train table: the suite's [train], then the preset's, then the strategy entry's."""
    return {**suite_train, **preset.train, **strategy.get("train", {})}


def strategy_settings(suite: dict, stream_entry: dict, strategy: dict,
                      presets_dir: Path | None = None) -> dict[str, dict]:
    """The params, train and model tables a run of ``strategy`` on ``stream_entry`` gets, by
    the same layering as its config (so a tuned preset can name the values it replaced)."""
    preset = _preset({**strategy, "path": suite.get("path")}, presets_dir)
    return {"params": dict(preset.params),
            "train": _train_settings(suite["train"], preset, strategy),
            "model_config": _model_settings(stream_entry["model"], preset, strategy)}


def _model_settings(stream_model: dict, preset: Preset, strategy: dict) -> dict:
    """A run's model table: the stream's [model], then the preset's model_config, then the
    strategy entry's own model_config; their variant ``options`` tables merge key by key."""
    layers = (stream_model, preset.model_config, strategy.get("model_config", {}))
    merged = {k: v for layer in layers for k, v in layer.items()}
    options = {k: v for layer in layers for k, v in layer.get("options", {}).items()}
    if any("options" in layer for layer in layers):
        merged["options"] = options
    return merged


def _check_model_options(suite: dict, preset: Preset, strategy: dict) -> None:
    """The model options a run gets must be ones the strategy's model variant takes."""
    accepted = VARIANTS[preset.model].options
    for entry in suite["streams"]:
        settings = _model_settings(entry["model"], preset, strategy)
        unknown = sorted(set(settings.get("options", {})) - accepted)
        if unknown:
            raise ConfigError(f"{suite.get('path', 'suite')}: 'model.options' {unknown} are not "
                              f"options of model variant '{preset.model}' (strategy "
                              f"'{preset.name}'; it takes: {sorted(accepted) or 'none'})")


def plan(suite: dict, out: Path, *, strategies: list[str] | None = None,
         seeds: list[int] | None = None, presets_dir: Path | None = None,
         chosen_values: dict | None = None,
         pairs: set[tuple[str, str]] | None = None) -> list[Path]:
    """Write suite.json and each run's config.json (unless already there and identical);
    return the run folders. Every preset is resolved and checked before anything is
    written, so a bad spec leaves no folder behind. A folder holding results of a different
    config is refused. ``chosen_values``: {(stream, strategy): {param: value}} picked by a
    validation sweep (comet_cl.sweep). ``pairs``: only these (stream, strategy) pairs (a
    sweep's second stage runs a follower's grid only on the streams its leader's point is
    from)."""
    out = Path(out)
    chosen = suite["strategies"]
    if strategies:
        known = {s["name"] for s in chosen}
        for name in strategies:
            if name not in known:
                raise ConfigError(f"--strategies: '{name}' is not in suite '{suite['name']}'"
                                  f"{closest(name, known)} (it has: {', '.join(sorted(known))})")
        chosen = [s for s in chosen if s["name"] in strategies]
    seeds = suite["seeds"] if seeds is None else seeds
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of non-negative ints, got {seeds}")
    s_hash = suite_hash(suite)
    planned = []  # every config is built (and so checked) before anything is written
    for base in chosen:
        for entry in suite["streams"]:
            if pairs is not None and (stream_label(entry["stream"]), base["name"]) not in pairs:
                continue
            point = (chosen_values or {}).get((stream_label(entry["stream"]), base["name"]), {})
            strat = sweep.with_values(base, point)
            preset = _preset({**strat, "path": suite.get("path")}, presets_dir)
            _check_model_options(suite, preset, strat)
            for seed in seeds:
                cfg = _run_config(suite, {**entry, "strategy": strat}, preset, seed, s_hash)
                planned.append((res.run_dir(out, stream_label(entry["stream"]), strat["name"], seed),
                                cfg))
    _claim_suite_folder(out, suite, s_hash, seeds)
    for folder, cfg in planned:
        _write_config(folder, cfg)
    return [folder for folder, _ in planned]


def _claim_suite_folder(out: Path, suite: dict, s_hash: str, seeds: list[int]) -> None:
    """Write suite.json; its seeds are every seed planned in this folder so far (the report
    counts missing runs from them)."""
    path = out / res.SUITE_FILE
    old = res.read_json(path) if path.exists() else {}
    if old and old.get("suite_hash") != s_hash:
        raise ConfigError(
            f"{out} holds results of suite '{old.get('name')}' with another config "
            f"(hash {old.get('suite_hash')}, now {s_hash}): they would not be comparable. "
            f"Use another --out, or remove {out} to start over.")
    planned = sorted(set(old.get("spec", {}).get("seeds", [])) | set(seeds))
    res.atomic_write_json(path, {"name": suite["name"], "suite_hash": s_hash,
                                 "version": comet_cl.__version__,
                                 "spec": {**suite, "seeds": planned,
                                          **({"path": res.shown(suite["path"])}
                                             if suite.get("path") else {})},
                                 "created": old.get("created", _now())})


def _write_config(folder: Path, cfg: dict) -> None:
    path = folder / res.CONFIG_FILE
    if path.exists():
        old = res.read_json(path)
        if old != cfg:
            diff = sorted(k for k in cfg if old.get(k) != cfg[k])
            raise ConfigError(f"{folder} was written by a different config (differs in: "
                              f"{', '.join(diff)}); use another --out or remove that folder")
        return
    res.atomic_write_json(path, cfg)


# ---- one run ------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(comet_cl.__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    """The CPU's model and the vector instruction set torch dispatches to. Two CPUs with
    different sets round differently, and a run drifts apart from the same run elsewhere
    (sixteenth session: one split CIFAR-10 tuning run gave 21.70 and, on an AVX-512 machine,
    22.22 validation ACC): the summary says which machine made a figure."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or 'unknown CPU'}, {torch.backends.cpu.get_cpu_capability()}"


def _environment(device: torch.device) -> dict:
    import avalanche
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cpus)",
            "device": f"{device} {name or ''}".strip(), "git_commit": _git_commit(),
            "versions": {"comet_cl": comet_cl.__version__, "torch": torch.__version__,
                         "avalanche": avalanche.__version__, "numpy": np.__version__,
                         "python": platform.python_version()}}


def _build(cfg: dict, data_root, device: torch.device):
    """The stream's spec, the stream and the model of a run, from its config alone
    (deterministic in the seed)."""
    seed = cfg["seed"]
    _seed_everything(seed)
    spec = StreamSpec(data_root=data_root, **{**cfg["stream"], "class_order": _order(cfg)})
    bench = make_stream(spec)
    m = cfg["model"]
    model = build_model(m["arch"], m["variant"], in_shape=input_shape(spec),
                        n_classes=spec.kind.n_outputs(spec.experiences), widths=m["widths"], p_k=m["p_k"],
                        activation=m["activation"], router_seed=seed,
                        mask_cache=m["mask_cache"], **m.get("options", {}))
    return spec, bench, model.to(device)


def _order(cfg: dict):
    order = cfg["stream"]["class_order"]
    return tuple(order) if isinstance(order, list) else order


def _overlap(cfg: dict, model, bench, recorder: RunRecorder, device) -> Overlap | None:
    """Routed variants (COMET) only: the task x task mask-overlap matrix per layer, on the
    curve subsets, and the overlap of unrelated inputs (the measured chance level) per layer."""
    if not VARIANTS[cfg["model"]["variant"]].routed:
        return None
    xs, ids = [], []
    for k in range(len(bench.test_stream)):
        loader = recorder.probe_loader(k, device)
        xs.append(loader.normalize(loader.images))
        ids.append(loader.ids)
    matrices = task_overlap_matrix(model, xs, ids)
    return Overlap(tuple(f"hidden{i + 1}" for i in range(len(matrices))), model.p_k,
                   matrices.tolist(), tuple(chance_overlap(model, torch.cat(xs))))


def execute_run(folder: Path, *, data_root=None, device: str = "auto",
                on_start=None, on_step=None, log=()) -> dict:
    """Run (or resume, or skip) the run in ``folder``; return its summary.
    ``on_start(total_minibatches)`` and ``on_step(1)`` feed a progress display; ``log``:
    Avalanche loggers to watch training with (``comet_cl.loggers``; no effect on results).

    Every executor gets, from here: one process per folder at a time (the run's lock, see
    ``results.RunLock``): a run another live process holds raises :class:`results.RunLocked`,
    which an executor reports as skipped and goes on (the holder finishes the run); and a
    clean folder after any kill: temp files of interrupted writes removed, no duplicate or
    missing event rows, no checkpoint beside a finished summary.
    """
    folder = Path(folder)
    summary_path = folder / res.SUMMARY_FILE
    if summary_path.exists() and not _leftovers(folder):
        return res.read_json(summary_path)
    with res.RunLock(folder):
        res.remove_stale_temp(folder)
        res.repair_events(folder)
        if summary_path.exists():  # finished, but killed before it tidied up
            summary = res.read_json(summary_path)
            _finish(folder, summary)
            return summary
        return _execute(folder, data_root=data_root, device=device, on_start=on_start,
                        on_step=on_step, log=log)


def _leftovers(folder: Path) -> bool:
    return (folder / res.CHECKPOINT_FILE).exists() or any(folder.glob(res.TEMP_GLOB))


def _finish(folder: Path, summary: dict) -> None:
    """After summary.json is written: the 'finished' event (once), and no checkpoint."""
    if not any(e.get("event") == "finished" for e in res.read_events(folder)):
        res.append_event(folder, {"event": "finished", "time": _now(),
                                  "acc": summary["metrics"]["acc"]})
    (folder / res.CHECKPOINT_FILE).unlink(missing_ok=True)  # the summary holds all results


def _log_missing_experiences(folder: Path, R: list, train_time: list) -> None:
    """A checkpoint is saved before its 'experience' event: a kill between the two leaves
    the row missing; a resumed run writes it from the checkpoint, so each row is there once."""
    logged = res.logged_experiences(res.read_events(folder))
    for i, row in enumerate(R):
        if i not in logged:
            res.append_event(folder, {"event": "experience", "time": _now(), "experience": i,
                                      "accuracy": row, "train_seconds": train_time[i],
                                      "recovered": True})


def _execute(folder: Path, *, data_root, device: str, on_start, on_step, log=()) -> dict:
    """The run itself, under its lock (see execute_run)."""
    cfg = res.read_json(folder / res.CONFIG_FILE)
    dev = pick_device(device)
    spec, bench, model = _build(cfg, data_root, dev)
    preset = Preset(**cfg["strategy"])
    method = method_of(preset)
    joint = method.is_joint
    ev = cfg["eval"]
    recorder = RunRecorder(_eval_stream(bench, ev), beta=ev["beta"], curve_subset=ev["curve_subset"],
                           curve_stride=ev["curve_stride"], batch_size=ev["batch_size"],
                           seed=cfg["seed"], record_curves=method.records_curves)
    plugins = method_plugins(preset)
    state = _load_checkpoint(folder)
    if state is not None:
        plugins = state["plugins"]
        model.load_state_dict(state["model"])
        recorder.load_state_dict(state["recorder"])
    run_plugins = VARIANTS[cfg["model"]["variant"]].plugins()
    run_plugins += augment_plugins(cfg["train"], *pixel_scaling(spec.kind.dataset, spec.pixels))
    run_plugins += precision_plugins(cfg["train"], dev)
    extra = [recorder] + run_plugins
    if on_step is not None:
        extra.append(_StepCallback(on_step))
    phase_step = 0 if state is None else state.get("phase_step", 0)
    if _checkpoints_mid_phase(cfg["train"], plugins + run_plugins):
        # the phase in training is the one after the len(R) finished ones (joint: its only one)
        extra.append(_PhaseCheckpoint(lambda strategy: _save_checkpoint(
            folder, strategy, plugins, recorder, R0, R, len(R), phase_step=recorder.phase_step)))
    strategy = build_strategy(preset, model, train=cfg["train"], eval_batch_size=ev["batch_size"],
                              device=dev, seed=cfg["seed"], plugins=plugins + extra,
                              evaluator=loggers.evaluator(log, folder))
    # training phases: one per experience, joint's one over all; the 'started' / 'resumed'
    # events record their number, so a reader of the log (comet-cl status) need not know
    # which methods train jointly
    phases = [bench.train_stream] if joint else list(bench.train_stream)
    if state is None:
        lost = res.restart_events(folder)
        R0, R, done = recorder.evaluate(strategy), [], 0
        res.append_event(folder, {"event": "started", "time": _now(), "device": str(dev),
                                  "phases": len(phases),
                                  **({"restarted": f"no checkpoint: the {lost} phases logged "
                                                   f"before are trained again"} if lost else {})})
    else:
        R0, R, done = state["R0"], state["R"], state["done"]
        strategy.clock.__dict__.update(state["clock"])
        strategy.pending_optimizer_state = state["optimizer"]
        strategy.skip_batches = phase_step
        _set_rng_state(state["rng"])
        _log_missing_experiences(folder, R, recorder.train_time)
        res.append_event(folder, {"event": "resumed", "time": _now(), "from_experience": done,
                                  "phases": len(phases),
                                  **({"from_step": phase_step} if phase_step else {})})

    if on_start is not None:
        on_start(_planned_steps(cfg["train"], bench.train_stream, done) - phase_step)
    for i in range(done, len(phases)):
        strategy.train(phases[i])
        R.append(recorder.evaluate(strategy))
        _save_checkpoint(folder, strategy, plugins, recorder, R0, R, i + 1)
        res.append_event(folder, {"event": "experience", "time": _now(), "experience": i,
                                  "accuracy": R[-1], "train_seconds": recorder.train_time[-1]})

    record = _summary(cfg, model, bench, recorder, R0, R, joint, dev)
    record.write(folder / res.SUMMARY_FILE)
    summary = record.to_dict()
    _finish(folder, summary)
    return summary


def _eval_stream(bench, ev: dict):
    """Where a run is evaluated: the test sets, or (a tuning run of a sweep) the validation
    splits carved from the training data, so that a choice never sees the test sets."""
    if ev.get("split", "test") == "test":
        return bench.test_stream
    if not hasattr(bench, "valid_stream"):
        raise ConfigError("eval split 'valid' needs a stream with valid_fraction > 0")
    return bench.valid_stream


def _planned_steps(train: dict, train_stream, done: int) -> int:
    """Minibatch updates still to make (the progress bar's total): an iterations budget, or
    epochs x minibatches per experience."""
    left = list(train_stream[done:])
    if train.get("iterations"):
        return phase_updates(train["iterations"], len(left))
    batch = train["batch_size"]
    return train["epochs"] * sum(-(-len(e.dataset) // batch) for e in left)


def _summary(cfg, model, bench, recorder, R0, R, joint, dev) -> RunSummary:
    beta = cfg["eval"]["beta"]
    if joint:  # one row, after training on everything: only ACC is defined
        m = {**dict.fromkeys(metrics.summarize([[0.0]]), float("nan")), "acc": metrics.acc(R)}
    else:
        m = metrics.summarize(R, R0, recorder.curves, beta)
    return RunSummary(joint=joint, R=R, R0=R0, curves=[[list(p) for p in c] for c in recorder.curves],
                      wall_time=recorder.train_time,
                      n_params=sum(p.numel() for p in model.parameters()),
                      overlap=_overlap(cfg, model, bench, recorder, dev), metrics=m,
                      finished_at=_now(), **_environment(dev))


def _save_checkpoint(folder, strategy, plugins, recorder, R0, R, done, phase_step=0) -> None:
    """Everything a resumed run needs to go on with the same numbers: after ``done`` phases,
    and ``phase_step`` minibatches into the next one (a mid-phase checkpoint)."""
    buf = io.BytesIO()
    torch.save({"done": done, "phase_step": phase_step, "model": strategy.model.state_dict(),
                "optimizer": strategy.optimizer.state_dict(), "plugins": plugins,
                "clock": dict(strategy.clock.__dict__),
                "recorder": recorder.state_dict(mid_phase=phase_step > 0),
                "R0": R0, "R": R, "rng": _rng_state()}, buf)
    res.atomic_write_bytes(folder / res.CHECKPOINT_FILE, buf.getvalue())


MID_PHASE_SECONDS = 600.0  # a long phase is checkpointed this often (at a minibatch's end)


def _checkpoints_mid_phase(train: dict, plugins: list) -> bool:
    """Whether a run can be checkpointed inside a training phase and resumed with the same
    numbers: only when no plugin keeps state of its own across a phase's minibatches (a
    method's or a model variant's; SI's path integral, a replay buffer's draws) and a phase
    is one pass of its loader (an iterations budget, or one epoch). That covers the long
    single phases that need it: joint training, 50,000 updates on permuted MNIST."""
    return not plugins and (bool(train.get("iterations")) or train.get("epochs") == 1)


class _PhaseCheckpoint(SupervisedPlugin):
    """Calls ``save(strategy)`` at the end of a minibatch once ``MID_PHASE_SECONDS`` have
    passed since the phase (or the last save) began. It must come after the run's recorder,
    whose ``phase_step`` the save records."""

    def __init__(self, save):
        super().__init__()
        self.save, self.last = save, time.monotonic()

    def before_training_exp(self, strategy, **kwargs):
        self.last = time.monotonic()

    def after_training_iteration(self, strategy, **kwargs):
        if time.monotonic() - self.last >= MID_PHASE_SECONDS:
            self.save(strategy)
            self.last = time.monotonic()


def _load_checkpoint(folder: Path) -> dict | None:
    path = folder / res.CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception as e:  # a checkpoint is only written atomically; this is real damage
        raise res.ResultsError(f"cannot read checkpoint {path}: {e}; remove it to restart "
                               f"this run from the beginning") from e


class _StepCallback(SupervisedPlugin):
    """Calls ``fn(1)`` after every training minibatch (the progress bar)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def after_training_iteration(self, strategy, **kwargs):
        self.fn(1)


# ---- suites -------------------------------------------------------------------------------

class LocalExecutor:
    """Executes planned run folders on this machine: in this process when ``workers`` is 1
    (with a live bar per run), else in a pool of ``workers`` spawned processes.

    The executor interface is ``run(folders, data_root=, device=, progress=)``; each folder
    is self-contained, so a cluster executor only has to run ``comet-cl run-one FOLDER`` for
    every folder (a job array) and can share this one's contract.
    """

    def __init__(self, workers: int = 1, log=()):
        self.workers = max(1, workers)
        self.log = loggers.check(log)

    def run(self, folders: list[Path], *, data_root, device: str, progress: "_Progress") -> None:
        if self.workers == 1:
            for folder in folders:
                try:
                    with progress.run(folder) as bar:
                        summary = execute_run(folder, data_root=data_root, device=device,
                                              on_start=bar.reset, on_step=bar.update,
                                              log=self.log)
                except res.RunLocked as e:
                    progress.skipped(e)
                    continue
                progress.finished(folder, summary["metrics"])
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        term = _exit_on_sigterm()
        try:
            # Workers are born ignoring SIGINT: on Ctrl-C only this process speaks, and
            # stops them (below); each run resumes from its last checkpoint next time.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                futures = {pool.submit(_worker, f, data_root, device, threads, self.log): f
                           for f in folders}
            finally:
                signal.signal(signal.SIGINT, previous)
            for fut in as_completed(futures):
                try:
                    progress.finished(futures[fut], fut.result())
                except res.RunLocked as e:
                    progress.skipped(e)
        except BaseException:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            if term is not None:
                signal.signal(signal.SIGTERM, term)
        pool.shutdown()


def _exit_on_sigterm():
    """Make SIGTERM (``kill``, a scheduler's stop) raise SystemExit in this process, so the
    pool's clean-up above stops the workers too. Python's default SIGTERM action ends the
    process on the spot, which left the workers running on as orphans (measured: two runs kept
    training after their ``comet-cl run`` was killed). Returns the previous handler, or None
    off the main thread, where handlers cannot be set (the default stays)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    return signal.signal(signal.SIGTERM, stop)


def _worker(folder: Path, data_root, device: str, threads: int, log=()) -> dict:
    torch.set_num_threads(threads)
    return execute_run(folder, data_root=data_root, device=device, log=log)["metrics"]


def _load(spec, out, presets_dir) -> tuple[dict, Path, Path | None]:
    """The parsed suite, its results folder (default results/<name>) and its presets folder
    (a user's own: a strategies/ folder beside the spec's folder)."""
    if isinstance(spec, dict):
        suite = parse_suite(spec, spec.get("name", "<spec>"))
    else:
        path = suite_path(spec)
        suite = load_suite(path)
        presets_dir = presets_dir or path.resolve().parent.parent / "strategies"
    return suite, Path(out) if out is not None else RESULTS_ROOT / suite["name"], presets_dir


def _unfinished(runs: list[Path]) -> list[Path]:
    return [r for r in runs if not (r / res.SUMMARY_FILE).exists()]


def _plan_tuning(suite: dict, out: Path, strategies, presets_dir, sweep_only: bool
                 ) -> list[Path] | None:
    """The tuning runs of ``strategies`` planned into ``out/sweep`` (None: nothing to tune;
    with ``sweep_only`` that is an error, raised before anything is written): the first
    stage's and the second stage's for the leaders chosen so far (followers tuned at their
    leader's choice, comet_cl.sweep), so a caller plans again after running them."""
    at = sweep.second_stage(suite, out)  # every point a leader has chosen so far
    tuning = sweep.tuning_suite(suite, at)  # whole: out/sweep/suite.json lists every run
    every = [s["name"] for s in suite["strategies"]]
    names = sweep.tuning_names(suite, strategies or every)  # the first stage's
    if tuning is None or names == []:
        if sweep_only:
            which = f"for {', '.join(strategies)}" if strategies else "in it"
            raise ConfigError(f"--sweep-only: suite '{suite['name']}' has no [sweep] grid "
                              f"{which}: nothing to tune")
        return None
    needed = sweep.with_followed(suite, strategies)
    pairs = {(stream_label(e["stream"]), n) for e in suite["streams"] for n in names}
    pairs |= sweep.second_stage_runs(suite, {k: v for k, v in at.items()
                                             if not needed or k[1] in needed})
    return plan(tuning, out / res.TUNING_DIR, strategies=sorted({n for _, n in pairs}),
                presets_dir=presets_dir, pairs=pairs)


def plan_suite(spec, out: Path | None = None, *, strategies=None, seeds=None,
               presets_dir: Path | None = None, unfinished: bool = False,
               sweep_only: bool = False) -> list[Path]:
    """Load (or take) a suite spec and plan its runs into ``out`` (default results/<name>);
    presets are looked up beside the spec's folder first. ``unfinished``: only the runs
    still to do. A suite with a validation sweep plans its tuning runs (in ``out/sweep``)
    first: while any is unfinished, those are what this returns, since the final runs'
    values are not chosen yet. ``sweep_only``: the tuning runs, never the final runs."""
    suite, out, presets_dir = _load(spec, out, presets_dir)
    truns = _plan_tuning(suite, out, strategies, presets_dir, sweep_only)
    chosen = None
    if truns is not None:
        if _unfinished(truns) or sweep_only:
            return _unfinished(truns) if unfinished else truns
        chosen = sweep.choose(suite, out, strategies)
    runs = plan(suite, out, strategies=strategies, seeds=seeds, presets_dir=presets_dir,
                chosen_values=chosen)
    return _unfinished(runs) if unfinished else runs


def run_suite(spec, out: Path | None = None, *, strategies=None, seeds=None, data_root=None,
              device: str = "auto", workers: int = 1, progress: bool = False,
              presets_dir: Path | None = None, executor=None,
              executor_options: dict | None = None, log=(),
              sweep_only: bool = False) -> list[Path]:
    """Plan and execute every run of a suite; finished runs are skipped, unfinished resumed.
    ``log``: Avalanche loggers for the local executor (tensorboard, csv, wandb).
    A validation sweep runs first (its tuning runs, then the choice, see comet_cl.sweep).
    Returns every final run folder of the suite (finished ones included); with
    ``sweep_only``, stops after the choice (written to sweep.json) and returns the tuning
    runs: the sweep can be read before the final runs' compute is spent.

    ``executor``: an executor object, or the name of one (``local``, ``ray``, ``slurm``;
    see ``comet_cl.executors``) configured from the spec's ``[executor]`` table overridden
    by ``executor_options`` (``ExecutorOptions`` fields; None values are ignored)."""
    suite, out, presets_dir = _load(spec, out, presets_dir)
    if executor is None or isinstance(executor, str):
        from comet_cl.executors import ExecutorOptions, make_executor
        options = ExecutorOptions(kind=executor or "local", workers=workers).merged(
            suite.get("executor"), **(executor_options or {}))
        executor = LocalExecutor(options.workers, log) if options.kind == "local" \
            else make_executor(options)
    if isinstance(executor, LocalExecutor):
        pick_device(device)  # fail now, not in a worker (cluster workers check their own)
    truns = _plan_tuning(suite, out, strategies, presets_dir, sweep_only)
    chosen = None
    if truns is not None:
        _execute_stage(executor, truns, data_root, device, progress, "sweep")
        staged = _plan_tuning(suite, out, strategies, presets_dir, sweep_only)
        if len(staged) > len(truns):  # the first stage's choices let the second run
            truns = staged
            _execute_stage(executor, truns, data_root, device, progress, "sweep")
        chosen = sweep.choose(suite, out, strategies)
        if sweep_only:
            return truns
    runs = plan(suite, out, strategies=strategies, seeds=seeds, presets_dir=presets_dir,
                chosen_values=chosen)
    _execute_stage(executor, runs, data_root, device, progress, "suite")
    return runs


def _execute_stage(executor, runs: list[Path], data_root, device: str, progress: bool,
                   stage: str) -> None:
    """Run a stage's unfinished runs (the sweep's tuning runs, or the suite's final runs)."""
    todo = _unfinished(runs)
    bars = _Progress(len(runs), len(runs) - len(todo), enabled=progress, desc=stage)
    try:
        executor.run(todo, data_root=data_root, device=device, progress=bars)
    finally:
        bars.close()


def _label(folder: Path) -> str:
    cfg = res.read_json(folder / res.CONFIG_FILE)
    return f"{cfg['stream']['name']} / {cfg['strategy']['name']} / seed {cfg['seed']}"


class _Progress:
    """A bar over the suite's runs (with ETA) and, in-process, one over the current run's
    minibatches; a line per finished run."""

    def __init__(self, total: int, done: int, enabled: bool, desc: str = "suite"):
        from tqdm import tqdm
        self.tqdm, self.enabled = tqdm, enabled
        self.suite = tqdm(total=total, initial=done, desc=desc, unit="run", position=0,
                          disable=not enabled, dynamic_ncols=True)

    def run(self, folder: Path):
        return self.tqdm(desc=_label(folder), unit="step", position=1, leave=False,
                         disable=not self.enabled, dynamic_ncols=True)

    def finished(self, folder: Path, m: dict) -> None:
        self.suite.update(1)
        if self.enabled:
            self.suite.write(f"done  {_label(folder):<45} ACC {m['acc']:.3f}")

    def skipped(self, locked: res.RunLocked) -> None:
        """A run another process holds: said, not counted as done here."""
        self.suite.write(f"skip  {_label(locked.folder):<45} locked by {locked.holder}")

    def failed(self, folder: Path, why: str) -> None:
        if self.enabled:
            self.suite.write(f"FAIL  {_label(folder):<45} {why}")

    def close(self) -> None:
        self.suite.close()
