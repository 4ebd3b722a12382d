"""The ``comet-cl`` command: run suites, report on their results, list what exists.

It answers at once: torch and Avalanche are imported only by the commands that train or
report (``--help``, ``list`` and argument errors need neither). A user's mistake or the
machine's state (a bad spec, missing data, an unwritable folder, a full disk) ends with one
line and exit 2, Ctrl-C with one line and exit 130; a traceback only with ``--debug``. A
reader that stops reading (``comet-cl list | head``) ends it quietly with exit 141, as a shell
tool killed by SIGPIPE does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from comet_cl.config import ConfigError
from comet_cl.loggers import LOGGERS


def _load_heavy(module: str):
    """Import ``module`` (torch, Avalanche, matplotlib below it) with Ctrl-C held back.

    A SIGINT that lands inside a C++ extension's start-up (torch registers its operators
    through pybind11 callbacks) cannot unwind: pybind11 calls std::terminate and the process
    dies with SIGABRT and a C++ message. So the interrupt waits until the import is over,
    then stops the command the usual way (one line, exit 130)."""
    pending = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: pending.append(True))
    except ValueError:  # not the main thread: signals cannot be handled here anyway
        return importlib.import_module(module)
    try:
        loaded = importlib.import_module(module)
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt
    return loaded


def _run(args) -> int:
    if args.strategies is not None:  # names may also come comma-joined: "naive,ewc"
        args.strategies = [n for arg in args.strategies for n in arg.split(",") if n]
    from comet_cl.config import first_seeds, load_suite
    suite = load_suite(args.spec)  # a spec's mistakes, at once: before torch and Avalanche load
    seeds = None if args.seeds is None else first_seeds(suite["seeds"], args.seeds)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: is a file, not a folder")
    runner = _load_heavy("comet_cl.runner")
    plan_suite, run_suite = runner.plan_suite, runner.run_suite
    if args.plan_only:
        for folder in plan_suite(args.spec, args.out, strategies=args.strategies,
                                 seeds=seeds, unfinished=True, sweep_only=args.sweep_only):
            print(folder)
        return 0
    runs = run_suite(args.spec, args.out, strategies=args.strategies,
                     seeds=seeds, data_root=args.data_root, device=args.device, workers=args.workers,
                     progress=not args.quiet, executor=args.executor, log=args.log or (),
                     executor_options={k: getattr(args, k) for k in _EXECUTOR_FLAGS},
                     sweep_only=args.sweep_only)
    _print_table(runs)
    if runs:
        from comet_cl.results import suite_folder
        folder = suite_folder(runs[0])  # OUT, or OUT/sweep for the tuning runs
        _print_sweep(folder.parent if args.sweep_only else folder, args.strategies)
    return 0


def _print_sweep(folder: Path, strategies: list[str] | None) -> None:
    """Each validation-sweep choice of the strategies run, and how far it is ahead of its
    runner-up: whether the sweep resolved it is part of the result."""
    from comet_cl import results as res
    from comet_cl import sweep
    path = folder / sweep.SWEEP_FILE
    if not path.is_file():
        return
    chosen = [(stream, name, entry) for stream, by_name in res.read_json(path)["streams"].items()
              for name, entry in by_name.items() if not strategies or name in strategies]
    if chosen:
        print(f"\nvalidation sweep ({path}): chosen point; its lead over the runner-up")
    for stream, name, entry in chosen:
        m = sweep.entry_margin(entry)
        runner = "" if m is None else f"vs {sweep.values_text(m['runner_up'])}: "
        at = f" (at {sweep.values_text(entry['at'])})" if entry.get("at") else ""
        print(f"{stream:<22}{name:<16}{sweep.values_text(entry['chosen'])}{at}; "
              f"{runner}{sweep.margin_text(m)}")


# run's cluster flags, by ExecutorOptions field (None: the spec's [executor] table decides)
_EXECUTOR_FLAGS = ("address", "cpus_per_run", "gpus_per_run", "max_retries", "partition", "time",
                   "array_parallelism")


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1 (a count of seeds or workers)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _print_table(runs: list[Path]) -> None:
    """ACC and forgetting per stream x strategy, mean over the seeds that finished."""
    import numpy as np

    from comet_cl.contract import read_run
    from comet_cl.results import suite_folder
    if not runs:
        return
    by_key = {}
    for run in map(read_run, runs):
        if run.finished:
            key = (run.config.stream_name, run.config.strategy_name)
            by_key.setdefault(key, []).append(run.summary.metrics)
    print(f"\n{'stream':<22}{'strategy':<16}{'seeds':>6}{'ACC':>8}{'forgetting':>12}")
    for (stream, strategy), ms in sorted(by_key.items()):
        acc = np.mean([m["acc"] for m in ms])
        fgt = np.mean([m.get("forgetting") if m.get("forgetting") is not None else np.nan for m in ms])
        print(f"{stream:<22}{strategy:<16}{len(ms):>6}{acc:>8.3f}{fgt:>12.3f}")
    print(f"\nresults: {suite_folder(runs[0])}")


def _run_one(args) -> int:
    """Exit 0 also when another process holds the run (a re-queued cluster task): the
    holder finishes it, and this task says so."""
    from comet_cl.results import CONFIG_FILE, RunLocked
    if not (args.run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{args.run_dir}: not a planned run folder (no {CONFIG_FILE}; "
                          f"'comet-cl run SPEC --plan-only' writes them)")
    execute_run = _load_heavy("comet_cl.runner").execute_run
    try:
        m = execute_run(args.run_dir, data_root=args.data_root, device=args.device,
                        log=args.log or ())["metrics"]
    except RunLocked as e:
        print(e)
        return 0
    print(f"{args.run_dir}: ACC {m['acc']:.4f}")
    return 0


def _check_writable(pdf: Path) -> None:
    """Fail before the (slow) report is built when its folder cannot take files."""
    import tempfile

    from comet_cl.results import write_error
    try:
        pdf.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=pdf.parent):
            pass
    except OSError as e:
        raise write_error(pdf, e) from None
    if pdf.is_dir():
        raise ConfigError(f"-o {pdf}: is a folder; give the PDF's file name")


def _report(args) -> int:
    from comet_cl.results import write_error
    out = Path(args.output)
    _check_writable(out)
    build_report = _load_heavy("comet_cl.report").build_report
    try:
        result = build_report([Path(d) for d in args.results], out)
    except OSError as e:
        raise write_error(Path(e.filename) if e.filename else out, e) from None
    print(f"report: {result.pdf}")
    print(f"tables: {', '.join(str(p) for p in result.csvs)}")
    if result.missing:
        print(f"{result.missing} missing or unfinished runs are listed in the report")
    return 0


def _status(args) -> int:
    """Reads the folders only (no torch): answers at once, beside running workers."""
    from comet_cl import progress
    folders = [progress.scan(out) for out in args.results]  # every folder read before printing
    print("\n\n".join(progress.render(f, show_finished=args.all) for f in folders))
    return 0


def _list(args) -> int:
    """Streams, presets and suites come from light metadata (no torch); ``--all`` adds the
    methods and model registries, which import torch and Avalanche (seconds)."""
    from comet_cl.catalog import STREAMS
    # read_toml, not read_preset: checking a preset's model_config asks the model registry
    # (torch); listing needs only the names and descriptions
    from comet_cl.config import available_presets, packaged_suites, read_toml
    print("streams:")
    for name, kind in STREAMS.items():
        print(f"  {name:<22}{kind.dataset}, {kind.scenario}, {kind.n_experiences} experiences")
    print("strategies (presets):")
    for name, path in available_presets().items():
        p = read_toml(path)
        print(f"  {name:<16}{p['method']:>7} on {p.get('model', 'dense'):<7} "
              f"{p.get('description', '')}")
    print("suites (comet-cl run NAME):")
    for spec in sorted({p.stem for p in packaged_suites().values()}):
        print(f"  {spec}")
    if args.all:
        from comet_cl.models import MODELS, VARIANTS
        from comet_cl.strategies import METHODS
        print(f"methods: {', '.join(METHODS)}")
        print(f"models: {', '.join(MODELS)} x variants {', '.join(VARIANTS)}")
    return 0


def _data(args) -> int:
    """Exit 1 when a dataset asked for (or, with no names, any dataset) is not found."""
    from comet_cl import data
    unknown = [n for n in args.names if n not in data.DATASETS]
    if unknown:
        raise ConfigError(f"unknown dataset '{unknown[0]}' (known: {', '.join(data.DATASETS)})")
    missing = 0
    for name in args.names or list(data.DATASETS):
        try:
            print(f"{name:<14}{data.find(name, args.data_root)}")
        except data.DataError as e:
            missing += 1
            print(f"{name:<14}NOT FOUND\n{e}\n")
    return 1 if missing else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="comet-cl", description=__doc__.split("\n\n")[0])
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error (for bug reports)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every strategy x stream x seed of a suite spec",
                         description="Run a suite. Finished runs are skipped and unfinished "
                         "ones resume from their last checkpoint, so the same command "
                         "continues an interrupted suite.")
    run.add_argument("spec", type=Path, help="suite spec: a TOML file, or the name of a packaged suite "
                     "(e.g. quick; 'comet-cl list' shows them)")
    run.add_argument("--strategies", nargs="+", metavar="NAME",
                     help="run only these strategies of the suite (default: all); "
                          "space- or comma-separated")
    run.add_argument("--seeds", type=_positive_int, metavar="N",
                     help="run the first N of the spec's seeds (beyond those it lists: the smallest "
                          "unused ones from 0) in the final runs; a [sweep]'s tuning runs keep "
                          "the seeds its table lists, so a choice never depends on N")
    run.add_argument("--data-root", metavar="DIR",
                     help="folder holding the datasets (torchvision layout); "
                          "default: COMET_CL_DATA, the user cache, then known places")
    run.add_argument("--out", type=Path, metavar="DIR",
                     help="results folder (default: results/<suite name>)")
    run.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                     help="where to train (default: auto = cuda when available, else cpu)")
    run.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                     help="runs in parallel, one process each (default 1)")
    run.add_argument("--executor", choices=("local", "ray", "slurm"), default="local",
                     help="where runs execute: this machine, a Ray cluster (pip install "
                          "'comet-cl[ray]') or Slurm via submitit ('comet-cl[slurm]'); results "
                          "go to --out, which every worker must reach (default local)")
    cluster = run.add_argument_group("cluster executors (defaults: the spec's [executor] table)")
    cluster.add_argument("--address", metavar="ADDR",
                         help="ray: the cluster's head (host:port or auto); default: start Ray here")
    cluster.add_argument("--cpus-per-run", type=int, metavar="N", help="CPU cores per run (1)")
    cluster.add_argument("--gpus-per-run", type=float, metavar="F",
                         help="GPU share per run; ray: 0.25 puts 4 runs on a GPU (0)")
    cluster.add_argument("--max-retries", type=int, metavar="N",
                         help="retries of a run whose worker died (ray) or re-queues of a "
                              "pre-empted / timed-out task (slurm) (3)")
    cluster.add_argument("--partition", metavar="P", help="slurm: partition")
    cluster.add_argument("--time", type=int, metavar="MIN", help="slurm: minutes per task (60)")
    cluster.add_argument("--array-parallelism", type=int, metavar="N",
                         help="slurm: array tasks running at once (64)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--plan-only", action="store_true",
                     help="write every run's folder and config, print the unfinished ones "
                          "and stop (then run each with 'comet-cl run-one', e.g. as a "
                          "cluster job array)")
    run.add_argument("--sweep-only", action="store_true",
                     help="run the validation sweep's tuning runs, write the choice to "
                          "OUT/sweep.json and stop before the final runs")
    run.add_argument("--log", nargs="+", metavar="NAME", choices=LOGGERS,
                     help="also log training loss and accuracy with Avalanche's loggers, into "
                          "each run's folder (tensorboard, csv) or to W&B (wandb extra)")
    run.set_defaults(fn=_run)

    one = sub.add_parser("run-one", help="run (or resume) one planned run folder; "
                         "for cluster job arrays")
    one.add_argument("run_dir", type=Path, help="a run folder holding config.json")
    one.add_argument("--data-root", metavar="DIR", help="folder holding the datasets")
    one.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                     help="where to train (default: auto)")
    one.add_argument("--log", nargs="+", metavar="NAME", choices=LOGGERS,
                     help="Avalanche loggers, as for 'run'")
    one.set_defaults(fn=_run_one)

    rep = sub.add_parser("report", help="make a PDF report (plus CSV tables) from results")
    rep.add_argument("results", nargs="+", help="results folders written by 'comet-cl run'")
    rep.add_argument("-o", "--output", default="report.pdf",
                     help="PDF to write; the CSV tables go beside it (default report.pdf)")
    rep.set_defaults(fn=_report)

    st = sub.add_parser("status", help="what a results folder's runs are doing and how much "
                        "training is left",
                        description="Each unfinished run of the results folders (final and "
                        "tuning runs): running (by which process, how far), stopped (resumes "
                        "from its checkpoint), or waiting; the wall time per phase measured "
                        "so far and the training left. Reads the folders only: safe beside "
                        "running workers.")
    st.add_argument("results", nargs="+", type=Path, help="results folders written by 'comet-cl run'")
    st.add_argument("--all", action="store_true", help="also list the finished runs, with their ACC")
    st.set_defaults(fn=_status)

    ls = sub.add_parser("list", help="list streams, strategy presets and suites")
    ls.add_argument("--all", action="store_true",
                    help="also the methods, model architectures and variants (slower: "
                         "imports torch and Avalanche)")
    ls.set_defaults(fn=_list)

    dat = sub.add_parser("data", help="show where each dataset is found, or how to get it")
    dat.add_argument("names", nargs="*", help="datasets (default: all)")
    dat.add_argument("--data-root", metavar="DIR", help="look here first")
    dat.set_defaults(fn=_data)
    return p


def _known_error(e: BaseException) -> str | None:
    """One line for a user's mistake or the machine's state; None for a bug. Error classes
    are looked up only in modules already imported (an error cannot come from any other),
    which keeps this free of torch."""
    known = [ConfigError]
    for module, name in (("comet_cl.data", "DataError"), ("comet_cl.results", "ResultsError"),
                         ("comet_cl.report", "ReportError")):
        if (mod := sys.modules.get(module)) is not None and hasattr(mod, name):
            known.append(getattr(mod, name))
    if isinstance(e, tuple(known)):
        return str(e).strip().replace("\n", "\n  ")
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}"
    return None


def _stdout_closed(e: BaseException) -> bool:
    """Whether ``e`` is standard output's reader having gone away (``comet-cl ... | head``),
    not a broken pipe elsewhere (a worker's socket), which stays an error. Python ignores
    SIGPIPE, so the write raises instead of ending the process; a pipe whose read end is
    closed polls as POLLERR."""
    if not isinstance(e, BrokenPipeError):
        return False
    try:
        import select
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return bool(poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll here, or stdout has no descriptor
        return e.filename is None


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's flush at exit does not raise
    the same error again ("Exception ignored ... BrokenPipeError"): Python's documented way
    (the signal module's note on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = parser().parse_args(argv)
        code = args.fn(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("\ncomet-cl: interrupted; finished runs are saved, the same command resumes "
              "the rest", file=sys.stderr)
        return 130
    except Exception as e:
        if _stdout_closed(e):
            _quiet_stdout()
            return 141
        if args is not None and args.debug:
            raise
        message = _known_error(e)
        if message is not None:
            print(f"comet-cl: error: {message}", file=sys.stderr)
            return 2
        from comet_cl.executors import RunsFailed
        if isinstance(e, RunsFailed):
            print(f"comet-cl: {e}", file=sys.stderr)
            return 1
        print(f"comet-cl: internal error: {type(e).__name__}: {e} (a bug: rerun with "
              f"--debug for the traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
