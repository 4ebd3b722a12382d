"""Synaptic Intelligence (Zenke et al. 2017) as van de Ven & Tolias 2019's code computes it
(``train.py`` and ``continual_learner.py`` at 9945f84).

- After every optimizer step: ``W += -grad * (theta_new - theta_old)``, with ``grad`` the
  gradient of the TOTAL loss that step used (penalty included), as his code reads ``p.grad``.
- At the end of an experience: ``omega += W / (delta^2 + eps)`` with ``delta`` the change of
  the weights over the experience; no clipping (Avalanche's SI clips omega at 1e-3, which puts
  its strength on another scale); the anchor becomes the current weights.
- Penalty: ``si_c * sum omega (theta - theta_anchor)^2`` (no 1/2), its gradient added to the
  task loss's (``methods/quadratic.py``: same math as adding it to the loss, cheaper).

The per-step update is three fused elementwise ops over preallocated per-parameter buffers
(``torch._foreach_*``). Only omega and the anchor persist between experiences (W restarts at
zero every experience), so a checkpoint holds two copies of the weights.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor

from comet_cl.methods import quadratic


class SI(SupervisedPlugin):
    """SI with strength ``si_c`` and damping ``eps`` (paper values: module docstring)."""

    def __init__(self, si_c: float = 5.0, eps: float = 0.1):
        super().__init__()
        if si_c < 0 or eps <= 0:
            raise ValueError(f"SI: need si_c >= 0 and eps > 0 (got {si_c}, {eps})")
        self.si_c, self.eps = float(si_c), float(eps)
        self.names: list[str] | None = None
        self.anchor: list[Tensor] | None = None  # weights at the end of the last experience
        self.omega: list[Tensor] | None = None   # accumulated importance
        self._w: list[Tensor] = []    # this experience's path integral
        self._old: list[Tensor] = []  # weights before the current step

    def _params(self, model) -> list[Tensor]:
        named = dict(model.named_parameters())
        return [named[n] for n in self.names]

    def before_training_exp(self, strategy, **kwargs):
        if self.names is None:
            self.names = [n for n, p in strategy.model.named_parameters() if p.requires_grad]
        params = [p.detach() for p in self._params(strategy.model)]
        if self.anchor is None:  # his SI_prev_task: the weights before the first experience
            self.anchor = [p.clone() for p in params]
        self._w = [torch.zeros_like(p) for p in params]
        self._old = [p.clone() for p in params]

    def penalty(self, model) -> Tensor:
        """si_c * sum omega (theta - anchor)^2: the definition, for reading and tests;
        training adds its gradient directly (after_backward)."""
        if self.omega is None:
            return torch.zeros(())
        return self.si_c * quadratic.value(self._params(model), self.omega, self.anchor)

    def after_backward(self, strategy, **kwargs):
        """The penalty's gradient, added after the task loss's backward (methods/quadratic.py),
        so after_update's ``p.grad`` is the total loss's gradient, as his code reads it.
        ``strategy.loss`` stays the task loss: the penalty's value is not computed per step
        (quadratic.py)."""
        if self.omega is not None and self.si_c > 0:
            quadratic.add_gradient(self._params(strategy.model), self.omega, self.anchor,
                                   self.si_c)

    @torch.no_grad()
    def after_update(self, strategy, **kwargs):
        params = self._params(strategy.model)
        have = [i for i, p in enumerate(params) if p.grad is not None]
        if len(have) == len(params):
            # in place, no allocation: old - new = -delta exactly, so W += grad * (old - new)
            torch._foreach_sub_(self._old, [p.detach() for p in params])
            torch._foreach_addcmul_(self._w, [p.grad for p in params], self._old)
        else:
            for i in have:
                self._w[i].addcmul_(params[i].grad, params[i] - self._old[i], value=-1.0)
        torch._foreach_copy_(self._old, [p.detach() for p in params])

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs):
        params = [p.detach() for p in self._params(strategy.model)]
        if self.omega is None:
            self.omega = [torch.zeros_like(p) for p in params]
        for o, w, p, a in zip(self.omega, self._w, params, self.anchor):
            o.add_(w / ((p - a) ** 2 + self.eps))
        self.anchor = [p.clone() for p in params]
        self._w, self._old = [], []

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_w"], state["_old"] = [], []  # rebuilt at the start of every experience
        return state
