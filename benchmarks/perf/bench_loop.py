"""The training loop against the machine's limit: samples/s of comet-cl's loop as a fraction of
a pure compute step on the same model (issue 9, item 3; target >= 0.9).

Same model (MLP 784-1000-1000-10, dense), batch 128, SGD with momentum, in one process:
  pure      forward, backward and update on ONE fixed, already normalised batch: no data
            handling at all (the ceiling of this model on this machine),
  raw       a plain PyTorch loop over the experience's uint8 tensors: shuffle, gather,
            normalise, step (what any hand-written loop pays),
  comet-cl  `naive` built as a run builds it (bench_methods.build_run): Avalanche's template,
            comet-cl's tensor loader, the recorder (curves off), `strategy.train(experience)`.
Timed interleaved (each repeat runs all three in turn); the table gives median samples/s and
the median over repeats of each ratio to `pure` within the repeat.

    PYTHONPATH=. .venv/bin/python benchmarks/perf/bench_loop.py [--samples 15000] [--repeats 3]
        [--threads 2] [--profile]

--profile prints where comet-cl's loop spends its time beyond the pure step (cProfile of one
experience, top functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_methods import build_run  # noqa: E402  (the run's own construction)

from comet_cl import results as res  # noqa: E402
from comet_cl.runner import plan_suite  # noqa: E402

BATCH = 128


def suite(samples: int) -> dict:
    return {"name": "bench-loop", "seeds": [0], "strategies": ["naive"],
            "streams": [{"name": "permuted-mnist", "n_experiences": 2,
                         "max_per_experience": samples, "max_test_per_experience": 1000}],
            "model": {"arch": "mlp", "widths": [1000, 1000], "p_k": 0.5},
            "train": {"epochs": 1, "batch_size": BATCH, "optimizer": "sgd", "lr": 0.01,
                      "momentum": 0.9}}


def optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def pure(model, x, y, steps: int) -> float:
    """Seconds per sample of `steps` steps on one fixed batch."""
    opt = optimizer(model)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / (steps * len(y))


def raw(model, loader) -> float:
    """Seconds per sample of one shuffled pass over the loader's uint8 tensors."""
    opt = optimizer(model)
    images, targets, n = loader.images, loader.targets, len(loader.targets)
    start = time.perf_counter()
    order = torch.randperm(n)
    for b in range(0, n, BATCH):
        idx = order[b:b + BATCH]
        opt.zero_grad()
        F.cross_entropy(model(loader.normalize(images[idx])), targets[idx]).backward()
        opt.step()
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=15000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        (folder,) = plan_suite(suite(args.samples), Path(tmp) / "suite")
        assert res.read_json(folder / res.CONFIG_FILE)["strategy"]["name"] == "naive"
        stream, strategy = build_run(folder, args.data_root)
        strategy.train(stream[0])  # warm-up; also leaves strategy.dataloader-free state
        from comet_cl.loaders import tensor_batches
        loader = tensor_batches(stream[1].dataset, BATCH, shuffle=True)
        x, y = loader.normalize(loader.images[:BATCH]), loader.targets[:BATCH]
        steps = -(-args.samples // BATCH)
        per_sample = {"pure": [], "raw": [], "comet-cl": []}
        for _ in range(args.repeats):
            per_sample["pure"].append(pure(strategy.model, x, y, steps))
            per_sample["raw"].append(raw(strategy.model, loader))
            start = time.perf_counter()
            strategy.train(stream[1])
            per_sample["comet-cl"].append((time.perf_counter() - start) / len(loader.targets))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            strategy.train(stream[1])
            profiler.disable()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MLP 784-1000-1000-10, "
          f"batch {BATCH}, {args.samples} samples, {args.repeats} repeats; load average "
          f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'loop':<10}{'samples/s':>11}{'x pure':>8}")
    for name, ts in per_sample.items():
        ratio = statistics.median(p / t for p, t in zip(per_sample["pure"], ts))
        print(f"{name:<10}{1 / statistics.median(ts):>11.0f}{ratio:>8.2f}")
    print("target: comet-cl >= 0.90 x pure")
    if args.profile:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
