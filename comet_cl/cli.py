"""The ``comet-cl`` command: run suites, report on their results, list what exists."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comet_cl.config import ConfigError



def _run(args) -> int:
    from comet_cl.runner import plan_suite, run_suite
    if args.plan_only:
        for folder in plan_suite(args.spec, args.out, strategies=args.strategies,
                                 seeds=_seeds(args.seeds), unfinished=True):
            print(folder)
        return 0
    runs = run_suite(args.spec, args.out, strategies=args.strategies,
                     seeds=_seeds(args.seeds), data_root=args.data_root, device=args.device, workers=args.workers,
                     progress=not args.quiet)
    _print_table(runs)
    return 0


def _seeds(n: int | None) -> list[int] | None:
    return list(range(n)) if n else None


def _print_table(runs: list[Path]) -> None:
    """ACC and forgetting per stream x strategy, mean over the seeds that finished."""
    import numpy as np

    from comet_cl.results import iter_runs
    if not runs:
        return
    wanted, by_key = set(runs), {}
    for record in iter_runs(runs[0].parents[3]):
        if record.path in wanted and record.finished:
            key = (record.config["stream"]["name"], record.config["strategy"]["name"])
            by_key.setdefault(key, []).append(record.summary["metrics"])
    print(f"\n{'stream':<22}{'strategy':<16}{'seeds':>6}{'ACC':>8}{'forgetting':>12}")
    for (stream, strategy), ms in sorted(by_key.items()):
        acc = np.mean([m["acc"] for m in ms])
        fgt = np.mean([m["forgetting"] if m["forgetting"] is not None else np.nan for m in ms])
        print(f"{stream:<22}{strategy:<16}{len(ms):>6}{acc:>8.3f}{fgt:>12.3f}")
    print(f"\nresults: {runs[0].parents[3]}")


def _run_one(args) -> int:
    from comet_cl.runner import execute_run
    m = execute_run(args.run_dir, data_root=args.data_root, device=args.device)["metrics"]
    print(f"{args.run_dir}: ACC {m['acc']:.4f}")
    return 0


def _report(args) -> int:
    from comet_cl.report import build_report
    result = build_report([Path(d) for d in args.results], Path(args.output))
    print(f"report: {result.pdf}")
    print(f"tables: {', '.join(str(p) for p in result.csvs)}")
    if result.missing:
        print(f"{result.missing} missing or unfinished runs are listed in the report")
    return 0


def _list(args) -> int:
    from comet_cl.models import MODELS, VARIANTS
    from comet_cl.strategies import METHODS, available_presets, load_preset
    from comet_cl.streams import STREAMS
    print("streams:")
    for name, kind in STREAMS.items():
        print(f"  {name:<22}{kind.dataset}, {kind.scenario}, {kind.n_experiences} experiences")
    print(f"methods: {', '.join(METHODS)}")
    print(f"models: {', '.join(MODELS)} x variants {', '.join(VARIANTS)}")
    print("strategies (presets):")
    for name, path in available_presets().items():
        p = load_preset(name)
        print(f"  {name:<16}{p.method:>7} on {p.model:<7} {p.description}")
    from comet_cl.config import SUITES_DIR
    print("suites (comet-cl run NAME):")
    for spec in sorted(SUITES_DIR.glob("*.toml")):
        print(f"  {spec.stem}")
    return 0


def _data(args) -> int:
    from comet_cl import data
    for name in args.names or list(data.DATASETS):
        try:
            print(f"{name:<14}{data.find(name, args.data_root)}")
        except data.DataError as e:
            print(f"{name:<14}NOT FOUND\n{e}\n")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="comet-cl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every strategy x stream x seed of a suite spec",
                         description="Run a suite. Finished runs are skipped and unfinished "
                         "ones resume from their last checkpoint, so the same command "
                         "continues an interrupted suite.")
    run.add_argument("spec", type=Path, help="suite spec: a TOML file, or the name of a packaged suite "
                     "(e.g. quick; 'comet-cl list' shows them)")
    run.add_argument("--strategies", nargs="+", metavar="NAME",
                     help="run only these strategies of the suite (default: all)")
    run.add_argument("--seeds", type=int, metavar="N",
                     help="run seeds 0..N-1 instead of the spec's seeds")
    run.add_argument("--data-root", metavar="DIR",
                     help="folder holding the datasets (torchvision layout); "
                          "default: COMET_CL_DATA, the user cache, then known places")
    run.add_argument("--out", type=Path, metavar="DIR",
                     help="results folder (default: results/<suite name>)")
    run.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                     help="where to train (default: auto = cuda when available, else cpu)")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="runs in parallel, one process each (default 1)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--plan-only", action="store_true",
                     help="write every run's folder and config, print the unfinished ones "
                          "and stop (then run each with 'comet-cl run-one', e.g. as a "
                          "cluster job array)")
    run.set_defaults(fn=_run)

    one = sub.add_parser("run-one", help="run (or resume) one planned run folder; "
                         "for cluster job arrays")
    one.add_argument("run_dir", type=Path, help="a run folder holding config.json")
    one.add_argument("--data-root", metavar="DIR", help="folder holding the datasets")
    one.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                     help="where to train (default: auto)")
    one.set_defaults(fn=_run_one)

    rep = sub.add_parser("report", help="make a PDF report (plus CSV tables) from results")
    rep.add_argument("results", nargs="+", help="results folders written by 'comet-cl run'")
    rep.add_argument("-o", "--output", default="report.pdf",
                     help="PDF to write; the CSV tables go beside it (default report.pdf)")
    rep.set_defaults(fn=_report)

    ls = sub.add_parser("list", help="list streams, methods, models, strategy presets, suites")
    ls.set_defaults(fn=_list)

    dat = sub.add_parser("data", help="show where each dataset is found, or how to get it")
    dat.add_argument("names", nargs="*", help="datasets (default: all)")
    dat.add_argument("--data-root", metavar="DIR", help="look here first")
    dat.set_defaults(fn=_data)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are saved; run the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as e:
        from comet_cl.data import DataError
        from comet_cl.results import ResultsError
        known = (ConfigError, DataError, ResultsError)
        try:
            from comet_cl.report import ReportError
            known += (ReportError,)
        except ImportError:
            pass
        if isinstance(e, known):
            print(f"comet-cl: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
