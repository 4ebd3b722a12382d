"""Where does Avalanche's EWC on its stock permuted MNIST differ from EWC on comet-cl's path?

Issue 8 measured, 3 seeds, 3 experiences of 10,000 images, lambda 1000 (Avalanche's scale):
comet-cl's old `ewc` preset (Avalanche's EWCPlugin inside comet-cl's Strategy and tensor
stream) 0.835 against 0.874 for Avalanche's stock `EWC` on its stock `PermutedMNIST`, while
naive agreed within 0.1 point. This script takes the two paths apart one piece at a time, on
the same seeds and the same MLP, SGD and budget:

  A  Avalanche stock: PermutedMNIST (its permutations, its Normalize) + avalanche.training.EWC
  B  comet-cl's stream (every experience permuted, as Avalanche's) + avalanche.training.EWC
  C  comet-cl's stream + comet-cl's Strategy (tensor loader, sample ids) + Avalanche's EWCPlugin
  N  the same three paths with no EWC (naive), to see what the stream alone does

Run: ``python benchmarks/diagnostics/avalanche_ewc_crosscheck.py --data-root ../shared/data``
(about 15 CPU-minutes at 1 thread). Prints one row per (path, seed) and the means.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import comet_cl._avalanche  # noqa: F401, I001
from avalanche.benchmarks.classic import PermutedMNIST
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.training import EWC, Naive
from avalanche.training.plugins import EWCPlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin

from comet_cl.models import build_model
from comet_cl.strategies import Preset, build_strategy
from comet_cl.streams import make_stream

EXPERIENCES, PER_EXPERIENCE, LAMBDA = 3, 10_000, 1000.0
TRAIN = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 128, "epochs": 1}


def silent():
    return EvaluationPlugin(loggers=[])


def mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", "dense", in_shape=(1, 28, 28), n_classes=10, widths=[1000, 1000])


def accuracy(model, test_stream) -> float:
    """Mean accuracy over the test experiences, computed the same way for every path."""
    model.eval()
    accs = []
    with torch.no_grad():
        for exp in test_stream:
            loader = torch.utils.data.DataLoader(exp.dataset, batch_size=1000)
            correct = total = 0
            for batch in loader:
                x, y = batch[0], batch[1]
                correct += (model(x).argmax(1) == y).sum().item()
                total += len(y)
            accs.append(correct / total)
    return float(np.mean(accs))


def stock_benchmark(seed: int, root: Path):
    """Avalanche's PermutedMNIST, each experience cut to PER_EXPERIENCE training images."""
    bench = PermutedMNIST(EXPERIENCES, seed=seed, dataset_root=root)
    g = torch.Generator().manual_seed(seed)
    train = [e.dataset.subset(torch.randperm(len(e.dataset), generator=g)[:PER_EXPERIENCE].tolist())
             for e in bench.train_stream]
    return benchmark_from_datasets(train=train, test=[e.dataset for e in bench.test_stream])


def ours_benchmark(seed: int, root: str):
    return make_stream("permuted-mnist", n_experiences=EXPERIENCES, seed=seed,
                       max_per_experience=PER_EXPERIENCE, first_identity=False, data_root=root)


def avalanche_template(model, ewc: bool):
    opt = torch.optim.SGD(model.parameters(), lr=TRAIN["lr"], momentum=TRAIN["momentum"])
    common = dict(model=model, optimizer=opt, criterion=torch.nn.CrossEntropyLoss(),
                  train_mb_size=TRAIN["batch_size"], train_epochs=TRAIN["epochs"],
                  eval_mb_size=1000, evaluator=silent)
    return EWC(ewc_lambda=LAMBDA, mode="separate", **common) if ewc else Naive(**common)


def ours_template(model, ewc: bool, seed: int):
    preset = Preset(name="x", method="naive")
    plugins = [EWCPlugin(ewc_lambda=LAMBDA, mode="separate")] if ewc else []
    return build_strategy(preset, model, train=TRAIN, eval_batch_size=1000, device="cpu",
                          seed=seed, plugins=plugins, evaluator=silent)


def run(path: str, ewc: bool, seed: int, roots) -> float:
    torch.manual_seed(seed)
    bench = stock_benchmark(seed, roots[0]) if path == "A" else ours_benchmark(seed, roots[1])
    model = mlp(seed)
    strategy = ours_template(model, ewc, seed) if path == "C" else avalanche_template(model, ewc)
    for exp in bench.train_stream:
        strategy.train(exp)
    return accuracy(model, bench.test_stream)


def uncompressed_mnist(data_root: Path) -> Path:
    """torchvision reads only the uncompressed IDX files: decompress them into a temp root."""
    tmp = Path(tempfile.mkdtemp(prefix="mnist-raw-"))
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (data_root / "MNIST" / "raw").glob("*.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    roots = (uncompressed_mnist(args.data_root), str(args.data_root))
    results: dict[tuple[str, bool], list[float]] = {}
    print("| path | method | seed | ACC | seconds |\n| --- | --- | ---: | ---: | ---: |")
    for seed in args.seeds:
        for ewc in (True, False):
            for path in "ABC":
                start = time.perf_counter()
                acc = run(path, ewc, seed, roots)
                results.setdefault((path, ewc), []).append(acc)
                print(f"| {path} | {'ewc' if ewc else 'naive'} | {seed} | {acc:.4f} | "
                      f"{time.perf_counter() - start:.0f} |", flush=True)
    print("\n| path | method | mean ACC | seeds |\n| --- | --- | ---: | ---: |")
    for (path, ewc), accs in sorted(results.items()):
        print(f"| {path} | {'ewc' if ewc else 'naive'} | {np.mean(accs):.4f} | {len(accs)} |")
    shutil.rmtree(roots[0], ignore_errors=True)


if __name__ == "__main__":
    main()
