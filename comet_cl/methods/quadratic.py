"""The quadratic penalty EWC and SI share, sum_i w_i (theta_i - a_i)^2, applied to the
gradients directly instead of through autograd.

Why: added to the loss, the penalty costs a forward pass over every parameter (subtract,
square, weight, sum) and autograd's backward through it, about ten passes over the weights per
step; on a 2 x 1000 MLP at one thread that made a training step 39% slower. Its gradient is
known in closed form, 2 w (theta - a), so :func:`add_gradient` adds it to ``p.grad`` after the
task loss's backward in two fused passes (``d = theta - a``; ``grad += 2 coef w d``): seven
reads and writes of a weight-sized tensor where the autograd route takes about twenty.

The penalty's VALUE is not computed in the training step: nothing in a run reads it (the
recorder logs accuracies, not losses), and it cost four more passes, a third of the penalty's
per-step work. :func:`value` gives it where wanted (the plugins' ``penalty()``, tests). The
update is the same math; float rounding differs from autograd's in the last bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


@torch.no_grad()
def add_gradient(params: Sequence[Tensor], weights: Sequence[Tensor], anchor: Sequence[Tensor],
                 coef: float) -> None:
    """``p.grad += coef * 2 w (p - a)`` for every parameter (a missing grad becomes that term):
    the gradient of ``coef * sum w (p - a)^2``."""
    params = list(params)
    diffs = torch._foreach_sub(params, list(anchor))
    if all(p.grad is not None for p in params):
        torch._foreach_addcmul_([p.grad for p in params], list(weights), diffs, value=2 * coef)
        return
    for p, w, d in zip(params, weights, diffs):
        if p.grad is None:
            p.grad = d.mul_(w).mul_(2 * coef)
        else:
            p.grad.addcmul_(w, d, value=2 * coef)


def value(params: Sequence[Tensor], weights: Sequence[Tensor], anchor: Sequence[Tensor]) -> Tensor:
    """``sum w (p - a)^2`` over every parameter (a 0-d tensor, differentiable in ``params``)."""
    diffs = torch._foreach_sub(list(params), list(anchor))
    return sum(torch.dot(w.flatten(), (d * d).flatten()) for w, d in zip(weights, diffs))
