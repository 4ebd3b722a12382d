"""Mask diagnostics (design/comet.md): overlap between inputs and between tasks, dead units.

Masks are taken in eval mode (test-time routing; the model's mode is restored afterwards) and
batch-wise, so whole test sets fit in memory. Overlap of masks a, b at a layer is
|a AND b| / k_l, with k_l the mean number of active units per mask (exactly k_l for COMET and
topk; the expected count for variants whose count varies); chance level is p_k.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with the model in eval mode, then put back the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _mask_batches(model: nn.Module, x: Tensor, ids: Tensor | None,
                  batch_size: int) -> Iterator[list[Tensor]]:
    """model.masks over x in batches, on the model's device, in eval mode."""
    device = next(model.parameters()).device
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device)
            ib = None if ids is None else ids[start:start + batch_size].to(device)
            yield model.masks(xb, ib)


def mask_overlap(masks_a: Sequence[Tensor], masks_b: Sequence[Tensor]) -> list[float]:
    """Per layer, the mean over PAIRED samples (row i of a with row i of b) of |a AND b| / k_l."""
    out = []
    for a, b in zip(masks_a, masks_b, strict=True):
        k = (a.sum() + b.sum()).item() / (a.shape[0] + b.shape[0])
        out.append((a & b).sum(-1).double().mean().item() / k)
    return out


def _usage(model: nn.Module, x: Tensor, ids: Tensor | None, batch_size: int) -> list[Tensor]:
    """Per layer, the fraction of the inputs x that use each unit: float64 [N_l]."""
    sums = None
    for masks in _mask_batches(model, x, ids, batch_size):
        batch = [m.sum(0, dtype=torch.float64) for m in masks]
        sums = batch if sums is None else [s + b for s, b in zip(sums, batch)]
    return [s / len(x) for s in sums]


def task_overlap_matrix(model: nn.Module, xs: Sequence[Tensor],
                        ids: Sequence[Tensor] | None = None,
                        batch_size: int = 1024) -> Tensor:
    """[L, T, T]: mean overlap over ALL pairs (a from set i, b from set j), self-pairs included.

    mean_{a,b} |a AND b| / k = (1/k) mean_{a,b} sum_u a_u b_u = (1/k) sum_u mu_i[u] mu_j[u],
    with mu_i[u] the fraction of set i that uses unit u (a mean of independent a and b
    factorises). So the matrix is M M^T / k with M = [mu_1; ...; mu_T]: one pass over each
    set, no pairs enumerated. k = mean active units per mask over all sets.
    """
    usage = [_usage(model, x, None if ids is None else ids[t], batch_size)
             for t, x in enumerate(xs)]
    n = torch.tensor([float(len(x)) for x in xs], dtype=torch.float64)
    out = []
    for layer in zip(*usage):
        m = torch.stack(layer).cpu()  # [T, N]
        k = (m.sum(1) * n).sum() / n.sum()
        out.append(m @ m.T / k)
    return torch.stack(out).float()


def dead_units(model: nn.Module, x: Tensor, ids: Tensor | None = None,
               batch_size: int = 1024) -> list[int]:
    """Per layer, the number of units active for no input of x."""
    return [int((u == 0).sum()) for u in _usage(model, x, ids, batch_size)]


def chance_overlap(model: nn.Module, x: Tensor, *, seed: int = 0,
                   batch_size: int = 1024) -> list[float]:
    """Per layer, the mean mask overlap of UNRELATED inputs: each input of x with its values
    (pixels, and channels) shuffled by its own random permutation, so inputs keep their
    intensity statistics but share no structure. This, not p_k, is the level a task-overlap
    matrix must be read against: the router's deeper layers see non-negative inputs, so even
    unrelated inputs share more than a p_k fraction of their units there.

    Mean over all pairs (self-pairs included, as in ``task_overlap_matrix``): sum_u mu[u]^2 / k
    with mu the usage of each unit over the shuffled set."""
    g = torch.Generator().manual_seed(seed)
    flat = x.reshape(len(x), -1)
    order = torch.argsort(torch.rand(flat.shape, generator=g), dim=1).to(flat.device)
    shuffled = torch.gather(flat, 1, order).reshape(x.shape)
    usage = _usage(model, shuffled, None, batch_size)
    return [float((u * u).sum() / u.sum()) for u in usage]
