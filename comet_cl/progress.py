"""What a results folder's runs are doing, and how much training is left: ``comet-cl status``.

A published protocol here is tens of hours of CPU (van de Ven's permuted MNIST with COMET's
study: some 50), run by several processes over days, resumed from checkpoints. Whoever runs
it needs to see which runs are finished, which are being run (by whom, how far), which were
stopped and will resume, which wait, and how long the rest takes. This module reads only the
folder, as the runner leaves it (``comet_cl/results.py``): config.json, events.jsonl,
summary.json and run.lock. It imports no torch, so it answers at once, and it takes no lock,
so it is safe beside running workers.

The time left is measured, not guessed: the wall time between a run's logged phases (an
experience, or joint's one phase), times the phases it has left. A run with no phase logged
yet takes the median of the runs that cost the same (same stream, method, model and training
budget: what a phase's time depends on, not the strategy's name); with none, it has no
estimate and is counted as such. With several runs being run, it also gives the wall time
when the processes at work go on taking the runs left (:func:`side_by_side`).
"""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from comet_cl import results as res
from comet_cl.contract import RunConfig, RunSummary, expected_runs

STATES = ("finished", "running", "stopped", "waiting")


@dataclass(frozen=True)
class RunProgress:
    """One run folder's state. ``done`` of ``phases`` training phases are finished;
    ``seconds_per_phase`` is this run's measured wall time per phase (None before its first);
    ``holder`` names the process running it; ``acc`` is a finished run's final ACC (on the
    validation split for a tuning run). ``restarts``: a stopped run whose logged phases have
    no checkpoint to resume from (a folder copied or cloned without it): it starts over, so
    ``done`` is 0."""

    folder: Path
    config: RunConfig
    tuning: bool
    state: str
    done: int
    phases: int
    seconds_per_phase: float | None
    holder: str | None
    acc: float | None
    restarts: bool = False

    @property
    def cost_key(self) -> tuple:
        """What a phase's wall time depends on: the stream, the method, the model and the
        training budget (not the strategy's name, nor a regulariser's strength)."""
        c = self.config
        return (c.stream_name, c.method, c.variant, c.model.get("arch"),
                str(c.model.get("widths")), c.train.get("iterations"), c.train.get("epochs"),
                c.train.get("batch_size"))


def _time(event: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(event["time"])
    except (KeyError, TypeError, ValueError):
        return None


def _phase_seconds(events: list[dict]) -> list[float]:
    """Wall seconds of each logged phase: from the event before it (started, resumed or the
    previous phase) to its own. A phase resumed at its start is timed from the resume; one
    resumed from a mid-phase checkpoint (``from_step``) ran only in part and is not timed."""
    gaps, since = [], None
    for e in events:
        t = _time(e)
        if e.get("event") == "experience" and since is not None and t is not None:
            gaps.append((t - since).total_seconds())
        if e.get("event") in ("started", "resumed", "experience"):
            since = None if e.get("from_step") else t
    return gaps


def read_progress(folder: Path, tuning: bool = False) -> RunProgress:
    """The state of one run folder (a folder holding config.json)."""
    folder = Path(folder)
    config = RunConfig.read(folder / res.CONFIG_FILE)
    events = res.read_events(folder)
    summary_path = folder / res.SUMMARY_FILE
    summary = RunSummary.read(summary_path) if summary_path.is_file() else None
    holder, acc, restarts = None, None, False
    if summary is not None:
        state, phases, done = "finished", len(summary.R), len(summary.R)
        acc = summary.metrics.get("acc")
    else:
        # a run started before the runner logged its phase count: one phase per experience
        announced = [e["phases"] for e in events if isinstance(e.get("phases"), int)]
        phases = announced[-1] if announced else int(config.stream.get("n_experiences", 0))
        done = len(res.logged_experiences(events))
        holder = res.lock_holder(folder)
        state = "running" if holder else ("stopped" if events else "waiting")
        if state == "stopped" and done and not (folder / res.CHECKPOINT_FILE).exists():
            restarts, done = True, 0
    gaps = _phase_seconds(events)
    return RunProgress(folder=folder, config=config, tuning=tuning, state=state, done=done,
                       phases=phases, seconds_per_phase=statistics.mean(gaps) if gaps else None,
                       holder=holder, acc=acc, restarts=restarts)


@dataclass(frozen=True)
class FolderStatus:
    """One results folder as ``comet-cl status`` shows it: its suite's name, every run folder
    (:func:`read_progress`) and the final runs its suite asks for that have no folder yet
    (those whose sweep has not chosen, or that no 'comet-cl run' has reached)."""

    out: Path
    suite: str
    runs: list[RunProgress]
    not_planned: list[tuple[str, str, int]]
    sweep_choosing: bool = False  # the first sweep runs: no final run can be planned yet

    @property
    def resume_command(self) -> str:
        """The command that goes on with the folder: the suite by name where it is packaged,
        else a placeholder for the suite file that made it (suite.json records the spec, not
        its path)."""
        from comet_cl.config import packaged_suites
        spec = self.suite if self.suite in packaged_suites() else "SUITE.toml"
        return f"comet-cl run {spec} --out {res.shown(self.out)}"


def scan(out: Path) -> FolderStatus:
    """Read results folder ``out``: suite.json once, then its final runs and its tuning runs.
    While a suite's first sweep runs, only OUT/sweep has a suite.json (the runner writes
    OUT's when it plans the final runs, from the sweep's choice): then the tuning runs are
    shown, and the final runs are not counted yet."""
    out = Path(out)
    tuning = out / res.TUNING_DIR
    sweep_choosing = not (out / res.SUITE_FILE).is_file() and (tuning / res.SUITE_FILE).is_file()
    if sweep_choosing:
        meta = res.read_suite_file(tuning)
        name, expected = meta.get("name", "").removesuffix(res.TUNING_SUFFIX), []
    else:
        meta = res.read_suite_file(out)  # a folder that is no results folder is named as such
        name = meta.get("name", "")
        expected = expected_runs(meta.get("spec", {}), out / res.SUITE_FILE)
    runs = [read_progress(f) for f in res.run_folders(out)]
    runs += [read_progress(f, tuning=True) for f in res.run_folders(tuning)]
    planned = {(r.config.stream_name, r.config.strategy_name, r.config.seed)
               for r in runs if not r.tuning}
    return FolderStatus(out, name, runs, [k for k in expected if k not in planned],
                        sweep_choosing)


def seconds_per_phase(run: RunProgress, runs: list[RunProgress]) -> tuple[float | None, bool]:
    """(wall seconds per phase, whether borrowed): the run's own measurement, else the median
    of the runs of the same cost that have one, else None."""
    if run.seconds_per_phase is not None:
        return run.seconds_per_phase, False
    alike = [r.seconds_per_phase for r in runs
             if r.cost_key == run.cost_key and r.seconds_per_phase is not None]
    return (statistics.median(alike), True) if alike else (None, False)


def seconds_left(run: RunProgress, runs: list[RunProgress]) -> float | None:
    """Wall seconds of training the run has left (None when nothing measured says)."""
    return _left(run, seconds_per_phase(run, runs)[0])


def _left(run: RunProgress, per_phase: float | None) -> float | None:
    return None if per_phase is None else (run.phases - run.done) * per_phase


def side_by_side(running: list[float], rest: list[float], workers: int) -> float:
    """Wall seconds until the runs left are done when ``workers`` processes share them, as
    `comet-cl run`'s workers (or several `comet-cl run` commands) do: each process takes the
    next run as soon as its own ends. ``running``: the seconds left of the runs being run now,
    one per process; ``rest``: the others', in the order they would be taken. Their measured
    phase times already include the slowdown of running side by side."""
    free = list(running) + [0.0] * max(0, workers - len(running))
    heapq.heapify(free)
    for seconds in rest:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free, default=0.0)


def _duration(seconds: float) -> str:
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render(folder: FolderStatus, show_finished: bool = False) -> str:
    """The status report ``comet-cl status`` prints for one results folder (:func:`scan`)."""
    out, runs, not_planned = folder.out, folder.runs, folder.not_planned
    lines = [f"{res.shown(out)}"]
    for tuning, what in ((False, "final runs"), (True, "tuning runs")):
        group = [r for r in runs if r.tuning == tuning]
        counts = [f"{sum(r.state == s for r in group)} {s}" for s in STATES]
        if not tuning and not_planned:
            counts.append(f"{len(not_planned)} not planned yet")
        if not tuning and folder.sweep_choosing:
            lines.append(f"  {what + ':':<13} none yet: planned once the sweep has chosen")
        elif group or not tuning:
            lines.append(f"  {what + ':':<13} {', '.join(counts)}")
    shown = [r for r in runs if show_finished or r.state != "finished"]
    total, borrowed, unknown = 0.0, False, 0
    timing = {r.folder: seconds_per_phase(r, runs) for r in runs}
    left_of = {r.folder: _left(r, timing[r.folder][0]) for r in runs if r.state != "finished"}
    if shown:
        lines += ["", f"  {'state':<9}{'done':>7}{'min/phase':>11}{'left':>10}  run"]
    for r in shown:
        per, guessed = timing[r.folder]
        left = left_of.get(r.folder)
        if r.state != "finished":
            borrowed |= guessed
            unknown += left is None
            total += left or 0.0
        per_text = "-" if per is None else f"{per / 60:.1f}{'*' if guessed else ''}"
        left_text = ("" if r.state == "finished" else "-" if left is None else _duration(left))
        extra = (f"  {r.holder}" if r.holder else
                 "  no checkpoint: starts over" if r.restarts else
                 f"  ACC {100 * r.acc:.2f}{' (validation)' if r.tuning else ''}"
                 if r.acc is not None else "")
        lines.append(f"  {r.state:<9}{f'{r.done}/{r.phases}':>7}{per_text:>11}"
                     f"{left_text:>10}  {r.folder.relative_to(out)}{extra}")
    unfinished = [r for r in runs if r.state != "finished"]
    if unfinished:
        lines.append("")
        star = (" (* timed from runs of the same stream, method, model and budget)"
                if borrowed else "")
        no_estimate = (f"{unknown} without an estimate (no run of their cost has finished a "
                       f"phase)")
        lines.append(f"  left: {no_estimate}" if unknown == len(unfinished) else
                     f"  left: about {_duration(total)} of training, one run at a time, for "
                     f"the {len(unfinished) - unknown} planned unfinished runs{star}"
                     + (f"; {no_estimate}" if unknown else ""))
        running = [r for r in unfinished if r.state == "running"]
        if len(running) > 1:  # the wall time, when the processes now at work go on
            wall = side_by_side([left_of[r.folder] or 0.0 for r in running],
                                [left_of[r.folder] or 0.0 for r in unfinished
                                 if r.state != "running"], len(running))
            lines.append(f"  with {len(running)} runs side by side as now, each process taking "
                         f"the next run when its own ends: about {_duration(wall)}")
        if any(r.state == "stopped" for r in unfinished):
            over = sum(r.restarts for r in unfinished)
            lines.append("  stopped runs resume from their last checkpoint"
                         + (f"; {over} without one (a folder copied or cloned without its "
                            f"checkpoints) start over" if over else ""))
    if unfinished or not_planned:
        lines.append(f"  go on with: {folder.resume_command}")
    if not_planned:
        strategies = ", ".join(dict.fromkeys(strategy for _, strategy, _ in not_planned))
        lines.append(f"  not planned yet (no run folder, not in the time left): {strategies}; "
                     f"a final run is planned once its sweep has chosen, by the 'comet-cl run' "
                     f"that reaches it")
    return "\n".join(lines)
