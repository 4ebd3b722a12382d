"""How large are EWC's Fisher and SI's importance for a COMET model, against a dense net?

Issue 13's permuted-MNIST second stage found COMET + EWC's validation optimum at lambda 1e4,
ten times above the dense EWC's (1e3). The EWC penalty is lambda * F * (theta - theta*)^2, so
a smaller Fisher F asks for a larger lambda. This script measures F after one task of the
protocol, read from the suite ``vandeven-permuted-mnist`` (its stream, its sweep's held-out
fraction, its optimiser, batch size and updates per task: van de Ven & Tolias' 32 x 32 [0, 1]
pixels, the first task permuted, Adam lr 1e-4, batch 128, 5,000 updates), for the dense
2 x 2000 MLP and for COMET p_k 0.1 at 2 x 2000 (the study's chosen point), both from the same
initial seed, with comet-cl's own ``fisher_diagonal`` (per-sample, predicted labels, eval
mode: what the ``ewc`` preset uses) on 2,000 of the task's training images. It prints the
validation accuracy (on the held-out fraction, as the sweep's) and, per parameter, the
Fisher's mean, sum and the fraction of entries above zero.

SI's importance (twenty-fifth session) comes from the same training pass: comet-cl's own
``SI`` plugin with the ``si`` preset's damping (eps 0.1) follows every update, as it does in a
run, and its omega after the task is printed beside the Fisher. COMET + SI's validation
optimum lies at c 1, ten times *below* the dense SI's (c 10, at 2 x 1000), the other way from
EWC's lambda; the omega sums say whether its importance is larger, or only placed elsewhere.

Run: ``python benchmarks/diagnostics/fisher_scale.py`` (``--updates N``, ``--fisher-samples N``,
``--data-root DIR``; about 13 minutes of one core at 5,000 updates, longer beside other runs).
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from comet_cl.config import load_suite
from comet_cl.methods.ewc import fisher_diagonal
from comet_cl.methods.si import SI
from comet_cl.models import build_model
from comet_cl.strategies import load_preset, make_optimizer
from comet_cl.streams import StreamSpec, experience_images, input_shape

SUITE = "vandeven-permuted-mnist"

# (variant, p_k for the factory, label): the dense net ignores its p_k
MODELS = (("dense", 0.5, "dense"), ("comet", 0.1, "comet p_k 0.1"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=None, help="default: the suite's per task")
    ap.add_argument("--fisher-samples", type=int, default=2000)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    suite = load_suite(SUITE)
    (entry,) = suite["streams"]
    train_cfg = suite["train"]
    updates = args.updates or train_cfg["iterations"]
    spec = StreamSpec(**{**entry["stream"], "n_experiences": 1, "data_root": args.data_root,
                         "valid_fraction": suite["sweep"]["valid_fraction"]}, seed=0)
    train, valid = experience_images(spec, "train", 0), experience_images(spec, "valid", 0)
    for variant, p_k, label in MODELS:
        torch.manual_seed(0)
        model = build_model("mlp", variant, in_shape=input_shape(spec), n_classes=10,
                            widths=[2000, 2000], p_k=p_k)
        # unfused: the one-kernel step the suite asks for differs in the last bits only, and
        # reports/diagnostics/fisher-scale.txt was made with the ordinary step
        opt = make_optimizer(model, {**train_cfg, "fused": False})
        si = SI(si_c=0.0, eps=load_preset("si").params["eps"])  # c 0: importance only
        run = SimpleNamespace(model=model)  # the one attribute SI's hooks read
        si.before_training_exp(run)
        g = torch.Generator().manual_seed(0)
        start = time.time()
        model.train()
        for _ in range(updates):
            x, y, _ = train.gather(torch.randint(len(train), (train_cfg["batch_size"],),
                                                 generator=g))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            si.after_update(run)
        si.after_training_exp(run)
        omega = dict(zip(si.names, si.omega))
        model.eval()
        xv, yv, _ = valid.gather(torch.arange(len(valid)))
        with torch.no_grad():
            acc = (model(xv).argmax(1) == yv).float().mean().item()
        xs, ys, _ = train.gather(torch.arange(args.fisher_samples))
        fisher = fisher_diagonal(model, xs, ys, None)
        total = sum(v.sum().item() for v in fisher.values())
        print(f"{label}: {updates} updates {time.time() - start:.0f}s, "
              f"valid acc {100 * acc:.2f}, Fisher sum {total:.4g}", flush=True)
        print(f"  SI omega sum {sum(o.sum().item() for o in omega.values()):.4g}", flush=True)
        for name, v in fisher.items():  # trained parameters only: the router's are buffers
            print(f"  {name:24s} mean {v.mean().item():.3e}  sum {v.sum().item():.3e}  "
                  f"nonzero {(v > 0).float().mean().item():.3f}  "
                  f"omega sum {omega[name].sum().item():.3e}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the suite's runs were measured: one thread each
    main()
