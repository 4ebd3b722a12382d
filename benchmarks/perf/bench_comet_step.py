"""Time one SGD training step (batch 128, MLP 784-1000-1000-10, real MNIST) of dense vs COMET
(p_k 0.1 / 0.5 / 0.9, with and without the mask cache) and the SMoE MLP.

All configs live in one process and are timed interleaved (each repeat runs every config once,
in turn), so drift of a shared machine hits them alike: the table gives the median ms/step and
the median over repeats of the ratio to dense within the repeat. With the
cache, ids are warm (every batch seen once before), as in a 2nd+ epoch or at evaluation.
"+precompute" is what a run's first epoch pays: at the start of every pass over the batches the
cache is emptied and refilled for all of them by `Router.precompute` (as `MaskPrecomputePlugin`
does before an experience), so the steps carry that cost amortised over one pass.
Targets: COMET <= 1.35x dense without the cache (and in a first epoch), <= 1.1x with it.

    .venv/bin/python benchmarks/perf/bench_comet_step.py [--repeats 9] [--steps 20] [--threads 2]

On a machine shared with other jobs, 2-thread timings swing 10x (a descheduled OpenMP thread
stalls each op at its barrier): run it on a quiet machine, or compare with --threads 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from comet_cl.data import load
from comet_cl.models import build_model
from comet_cl.streams import NORMALIZATION

TARGETS = {False: 1.35, True: 1.10}


def mnist_batches(n_batches: int, batch_size: int) -> list[tuple[torch.Tensor, ...]]:
    """(x normalised [B, 1, 28, 28], y, ids) for the first n_batches * batch_size train images."""
    x, y = load("mnist")[:2]
    (mean,), (std,) = NORMALIZATION["mnist"]
    n = n_batches * batch_size
    x = ((x[:n].float() / 255 - mean) / std).unsqueeze(1)
    ids = torch.arange(n)
    return list(zip(x.split(batch_size), y[:n].split(batch_size), ids.split(batch_size)))


def configs() -> dict[str, dict]:
    out = {"dense": dict(variant="dense")}
    for p_k in (0.1, 0.5, 0.9):
        out[f"comet p_k={p_k}"] = dict(variant="comet", p_k=p_k)
        out[f"comet p_k={p_k} +cache"] = dict(variant="comet", p_k=p_k, mask_cache=True)
        out[f"comet p_k={p_k} +precompute"] = dict(variant="comet", p_k=p_k, mask_cache=True,
                                                   precompute=True)
    for p_k in (0.1, 0.5):
        out[f"smoe p_k={p_k}"] = dict(variant="smoe", p_k=p_k)
    return out


def make_step(options: dict, batches: list) -> callable:
    """A closure running one SGD step on the next batch (cycling), with its cache warmed."""
    options = dict(options)
    precompute = options.pop("precompute", False)
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=(1, 28, 28), n_classes=10, widths=[1000, 1000], **options)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    state = {"i": 0}
    all_x = torch.cat([b[0] for b in batches])
    all_ids = torch.cat([b[2] for b in batches])

    def step() -> None:
        if precompute and state["i"] % len(batches) == 0:
            model.router.cache.clear()
            model.router.precompute(all_ids, lambda pos: all_x[pos])
        x, y, ids = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = F.cross_entropy(model(x, ids), y)
        if model.aux_loss is not None:
            loss = loss + model.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(len(batches)):  # warm-up: one pass fills the cache, allocator, kernels
        step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20, help="steps per timing")
    parser.add_argument("--batches", type=int, default=20, help="distinct batches (ids) cycled; +precompute refills at each pass, so --steps = --batches times it once per timing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = mnist_batches(args.batches, 128)
    steps = {name: make_step(opt, batches) for name, opt in configs().items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128, "
          f"784-1000-1000-10, {args.repeats} repeats x {args.steps} steps")
    print(f"{'model':<22}{'ms/step':>9}{'x dense':>9}{'target':>8}")
    for name, ts in times.items():
        # ratio per repeat (timed back to back), then the median: robust to a busy machine
        ratio = statistics.median(t / d for t, d in zip(ts, times["dense"]))
        target = f"<={TARGETS[name.endswith('+cache')]:.2f}" if name.startswith("comet") else ""
        print(f"{name:<22}{statistics.median(ts):>9.2f}{ratio:>9.2f}{target:>8}")

if __name__ == "__main__":
    main()
