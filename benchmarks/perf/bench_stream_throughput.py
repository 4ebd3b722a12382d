"""Training throughput of one permuted-MNIST experience, three ways, in one process.

The same dense MLP (784-1000-1000-10), batch 128, SGD, one epoch of one permuted-MNIST
experience (60,000 real images), trained by:
  raw      a plain PyTorch loop over in-memory tensors (the ceiling),
  stock    Avalanche's PermutedMNIST benchmark + Naive (per-sample loading, PIL transforms),
  comet-cl comet-cl's permuted-mnist stream + Naive on comet-cl's strategy template.
Prints samples/s for each and the ratios to raw (target: comet-cl >= 0.9x raw).

    .venv/bin/python benchmarks/perf/bench_stream_throughput.py [--repeats 2] [--samples N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from comet_cl import data
from comet_cl.models import build_model
from comet_cl.strategies import Strategy
from comet_cl.streams import make_stream

BATCH, LR = 128, 0.01


def new_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", "dense", in_shape=(1, 28, 28), n_classes=10, widths=[1000, 1000])


def raw_loop(x: torch.Tensor, y: torch.Tensor) -> float:
    model = new_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    order = torch.randperm(len(y))
    for i in range(0, len(y), BATCH):
        idx = order[i : i + BATCH]
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    return len(y) / (time.perf_counter() - start)


def write_idx(folder: Path, n: int) -> None:
    """Uncompressed IDX files from comet-cl's reader: torchvision's MNIST reads only these."""
    x_tr, y_tr, x_te, y_te = data.load("mnist")
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, x, y in (("train", x_tr[:n], y_tr[:n]), ("t10k", x_te, y_te)):
        header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in x.shape)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + x.numpy().tobytes())
        label_header = (2049).to_bytes(4, "big") + len(y).to_bytes(4, "big")
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            label_header + y.to(torch.uint8).numpy().tobytes())


def train_naive(strategy_cls, experience) -> float:
    from avalanche.training.plugins import EvaluationPlugin
    model = new_model()
    strategy = strategy_cls(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=LR),
                            criterion=torch.nn.CrossEntropyLoss(), train_mb_size=BATCH,
                            train_epochs=1, device="cpu", evaluator=EvaluationPlugin(loggers=[]))
    start = time.perf_counter()
    strategy.train(experience)
    return len(experience.dataset) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--samples", type=int, default=60000, help="training images (max 60000)")
    args = p.parse_args()
    torch.set_num_threads(2)
    from avalanche.benchmarks.classic import PermutedMNIST
    from avalanche.training.supervised import Naive

    ours = make_stream("permuted-mnist", n_experiences=1, max_per_experience=args.samples)
    exp = ours.train_stream[0]
    x, y, _ = exp.dataset._flat_data._datasets[0].gather(torch.arange(len(exp.dataset)))
    with tempfile.TemporaryDirectory() as tmp:
        write_idx(Path(tmp), args.samples)
        stock = PermutedMNIST(n_experiences=1, seed=0, dataset_root=tmp)
        results = {"raw": [], "stock": [], "comet-cl": []}
        for _ in range(args.repeats):  # interleaved, so drift hits all three alike
            results["raw"].append(raw_loop(x, y))
            results["stock"].append(train_naive(Naive, stock.train_stream[0]))
            results["comet-cl"].append(train_naive(Strategy, exp))
    best = {k: max(v) for k, v in results.items()}
    print(f"one epoch, {args.samples} permuted-MNIST images, batch {BATCH}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    for name, v in results.items():
        runs = ", ".join(f"{s:,.0f}" for s in v)
        print(f"{name:>9}: {best[name]:>8,.0f} samples/s  ({best[name] / best['raw']:.2f}x raw)"
              f"   runs: {runs}  median {statistics.median(v):,.0f}")


if __name__ == "__main__":
    main()
