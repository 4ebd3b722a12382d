"""Training time of every packaged strategy, as a ratio to `naive` measured in the same run.

Issue 9's judge. One stream (default: permuted MNIST, 4 experiences of 15,000 images, MLP
784-1000-1000-10, batch 128, SGD with momentum, 1 epoch) and every preset the package ships
(`joint` excepted: it trains once on everything, there is no per-experience time; so are the
presets a suite's sweep wrote, `<suite>-<strategy>`, which cost what their base preset costs),
each built exactly as `comet_cl.runner.execute_run` builds a run (the planned run config,
`_build`, the method's plugins, the recorder and the variant's own plugins, `build_strategy`).
The presets are read at start-up, so a preset added or changed is measured as it is now.

Interleaved: all strategies live in one process, and experience i is trained by every strategy
in turn before any trains experience i + 1, so drift on a shared machine hits them alike. The
wall time of `strategy.train(experience)` is the measure (curves are off, so there are no probes
to subtract). A ratio is taken against naive's time on the same experience in the same round,
and the table gives the median ratio over experiences after the first (the first has no past to
protect, so EWC / SI / LwF / replay do less there) and over repeats.

`comet (cached)` trains each experience a second time right after its first, and reports that
second pass: every mask is then in the cache (what a 2nd+ epoch pays). Its ratio is to naive's
first pass of the same experience.

    PYTHONPATH=. .venv/bin/python benchmarks/perf/bench_methods.py \
        [--experiences 4] [--samples 15000] [--repeats 2] [--threads 2] [--only comet,naive]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from comet_cl import results as res
from comet_cl.models import VARIANTS
from comet_cl.recorder import RunRecorder
from comet_cl.runner import _build, plan_suite
from comet_cl.strategies import Preset, available_presets, build_strategy, method_plugins
from comet_cl.sweep import tuned_for

CACHED = "comet (cached)"
# Issue 9's targets, ratio to naive. A combination's target is the product of its parts'.
TARGETS = {"naive": 1.0, "lwf": 1.4, "si": 1.2, "ewc": 1.3, "ewc-online": 1.3, "replay": 2.2,
           "smoe": 1.5, "comet": 1.35, CACHED: 1.1}
PARTS = {"comet-ewc": ("comet", "ewc"), "comet-replay": ("comet", "replay")}


def target(name: str) -> float | None:
    if name in TARGETS:
        return TARGETS[name]
    if name in PARTS:
        return TARGETS[PARTS[name][0]] * TARGETS[PARTS[name][1]]
    return None


def suite_spec(strategies: list[str], args) -> dict:
    return {"name": "bench-methods", "seeds": [0], "strategies": strategies,
            "streams": [{"name": "permuted-mnist", "n_experiences": args.experiences,
                         "max_per_experience": args.samples, "max_test_per_experience": 1000}],
            "model": {"arch": "mlp", "widths": [1000, 1000], "p_k": 0.5},
            "train": {"epochs": args.epochs, "batch_size": 128, "optimizer": "sgd", "lr": 0.01,
                      "momentum": 0.9, **({"fused": True} if args.fused else {})},
            "eval": {"beta": 10, "curve_subset": 1000, "curve_stride": 10, "batch_size": 1000}}


def build_run(folder: Path, data_root):
    """(train stream, strategy) of a planned run, as execute_run builds them (no curves)."""
    cfg = res.read_json(folder / res.CONFIG_FILE)
    device = torch.device("cpu")
    bench, model = _build(cfg, data_root, device)
    preset = Preset(**cfg["strategy"])
    ev = cfg["eval"]
    recorder = RunRecorder(bench.test_stream, beta=ev["beta"], curve_subset=ev["curve_subset"],
                           curve_stride=ev["curve_stride"], batch_size=ev["batch_size"],
                           seed=cfg["seed"], record_curves=False)
    plugins = method_plugins(preset) + [recorder] + VARIANTS[cfg["model"]["variant"]].plugins()
    strategy = build_strategy(preset, model, train=cfg["train"], eval_batch_size=ev["batch_size"],
                              device=device, seed=cfg["seed"], plugins=plugins)
    return bench.train_stream, strategy


def timed_train(strategy, experience) -> float:
    start = time.perf_counter()
    strategy.train(experience)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiences", type=int, default=4)
    parser.add_argument("--samples", type=int, default=15000, help="training images per experience")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the whole stream")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs per experience (the issue's table: 1; EWC's once-per-"
                             "experience Fisher pass weighs 1/epochs of it)")
    parser.add_argument("--only", default="", help="comma-separated presets (naive is always in)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--fused", action="store_true",
                        help="every strategy with [train] fused = true (one-kernel optimizer step)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in available_presets() if n != "joint"]
    if args.only:
        names = [n for n in names if n == "naive" or n in args.only.split(",")]
    else:  # a suite's tuned copy of a preset costs what the preset costs
        names = [n for n in names if tuned_for(n) is None]
    names = ["naive"] + [n for n in names if n != "naive"]
    rows = names + ([CACHED] if "comet" in names else [])
    times: dict[str, list[float]] = {n: [] for n in rows}
    ratios: dict[str, list[float]] = {n: [] for n in rows}
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folders = plan_suite(suite_spec(names, args), Path(tmp) / "suite")
        by_name = {res.read_json(f / res.CONFIG_FILE)["strategy"]["name"]: f for f in folders}
        for _ in range(args.repeats):
            runs = {n: build_run(by_name[n], args.data_root) for n in names}
            if "comet" in names:
                runs[CACHED] = build_run(by_name["comet"], args.data_root)
            for i in range(args.experiences):
                got = {}
                for name, (stream, strategy) in runs.items():
                    got[name] = timed_train(strategy, stream[i])
                    if name == CACHED:  # the second pass: every mask is cached
                        got[name] = timed_train(strategy, stream[i])
                if i == 0 and args.experiences > 1:
                    continue
                for name, t in got.items():
                    times[name].append(t)
                    ratios[name].append(t / got["naive"])
    load_after = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, permuted MNIST "
          f"{args.experiences} x {args.samples} images, MLP 784-1000-1000-10, batch 128, "
          f"{args.epochs} epoch(s), {args.repeats} repeats{', fused SGD' if args.fused else ''}; "
          f"{time.perf_counter() - started:.0f} s; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'strategy':<16}{'s / exp':>9}{'x naive':>9}{'target':>9}{'':>6}")
    for name in rows:
        ratio = statistics.median(ratios[name])
        tgt = target(name)
        verdict = "" if tgt is None else ("ok" if ratio <= tgt else "MISS")
        tgt_text = "" if tgt is None else f"<={tgt:.2f}"
        print(f"{name:<16}{statistics.median(times[name]):>9.2f}{ratio:>9.2f}{tgt_text:>9}"
              f"{verdict:>6}")


if __name__ == "__main__":
    main()
