"""Elastic Weight Consolidation (Kirkpatrick et al. 2017) and online EWC (Schwarz et al.
2018), as van de Ven & Tolias 2019's code defines them (``continual_learner.py`` at 9945f84).

After each experience the diagonal Fisher information is estimated as the MEAN over the
experience's training samples of the PER-SAMPLE squared gradient of the log-likelihood, in
eval mode, with the label the model predicts (his ``emp_FI=False``; ``empirical_fisher=True``
uses the true labels), over the active output units (the ``[train] logits`` option). His
full pass divides the sum by N-1 (the last loop index); here it is the mean (divide by N): a
relative difference of 1/N. ``fisher_samples`` takes a random subset, like his ``fisher_n``
(his loader shuffles; ours is seeded by the run seed and the experience, so resumes agree).

Penalty: ``(ewc_lambda / 2) * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2``, so
``ewc_lambda`` is on the paper's scale; its gradient is added to the task loss's after the
backward (``methods/quadratic.py``: the same math as adding it to the loss, fewer passes).

- ``mode="separate"``: one term per past experience. The terms are kept summed, as
  ``F (theta - m)^2 + c`` with ``F = sum_t F_t``, ``m = sum_t F_t theta*_t / F`` and the
  constant ``c``: the same value and gradient, at the cost of one term however many
  experiences have passed (and a small checkpoint).
- ``mode="online"``: one running term, ``F <- F_new + gamma * F``, anchor = the latest
  weights, and, as his ``ewc_loss`` does in online mode, the penalty uses ``gamma * F``: the
  running Fisher is decayed once more when it is applied. That extra ``gamma`` is in his code
  (not in Schwarz et al.'s equations) and so it is here; with gamma = 1 it makes no difference.

Linear layers get the per-sample squared gradients summed exactly from one batched backward
(``(g^2)^T (a^2)``, see :func:`fisher_diagonal`): the cost of about one training epoch.
Other parameters (convolutions, gates) get per-sample gradients from ``torch.func``
(``functional_call`` + ``vmap`` + ``grad``) on batches of the experience's tensors; materialising
them for a 2 x 1000 MLP cost 12x a training pass here, hence the identity. The id-keyed mask cache is not traceable inside ``vmap``,
so COMET's masks are fetched for the batch outside it (``model.router(x, ids)``, cached) and
handed to the vmapped call; everything else is called without ids, which in eval mode only
key caches. Each batch's outputs are checked against an ordinary ``model(x, ids=ids)``
forward, so a model whose eval outputs depend on ids otherwise fails loudly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor
from torch.func import functional_call, grad, vmap

from comet_cl.loaders import tensor_batches
from comet_cl.methods import quadratic
from comet_cl.methods.classes import renumber, restrict_to

MODES = ("separate", "online")


def fisher_diagonal(model: torch.nn.Module, images: Tensor, targets: Tensor, ids: Tensor | None,
                    *, columns: list[int] | None = None, empirical: bool = False,
                    batch_size: int = 256) -> dict[str, Tensor]:
    """Mean over samples of the per-sample squared gradient of log p(label | x), per
    parameter (name -> tensor of its shape). ``images`` are model inputs (normalised);
    ``columns`` restricts the outputs to those classes; ``empirical`` uses ``targets`` as the
    labels, else the predicted class. Runs in eval mode; restores the model's mode.

    Linear layers (applied once per input) get it exactly without per-sample gradients: the
    gradient of sample i's loss is ``g_i a_i^T`` (``a_i`` the layer's input, ``g_i`` the
    gradient at its output), so the sum over samples of its square is ``(g^2)^T (a^2)``, one
    product per layer from one ordinary batched backward of the summed losses (samples do not
    interact in eval mode). Every other parameter gets ``torch.func`` per-sample gradients."""
    if len(images) == 0:
        raise ValueError("fisher_diagonal: no samples")
    linear = {m: (n + "." if n else "") for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear)}
    by_linear = {f"{prefix}{k}": (m, k) for m, prefix in linear.items()
                 for k in ("weight", "bias") if getattr(m, k) is not None}
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p, requires_grad=False) for n, p in params.items()}
    others = [n for n in params if n not in by_linear]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            y = targets[start:start + batch_size]
            batch_ids = None if ids is None else ids[start:start + batch_size]
            if empirical and columns is not None:
                y = renumber(y, columns)
            _linear_fisher(model, linear, by_linear, x, y, batch_ids, columns, empirical, fisher)
            if others:
                _vmap_fisher(model, others, params, x, y, batch_ids, columns, empirical, fisher)
    finally:
        model.train(was_training)
    return {n: f / len(images) for n, f in fisher.items()}


def _nll(out: Tensor, y: Tensor, columns, empirical: bool) -> Tensor:
    """Per-sample -log p(label | x) over the active columns; label = y or the prediction."""
    out, _ = restrict_to(out, None, columns)
    label = y if empirical else out.detach().argmax(1)
    return -F.log_softmax(out, dim=1).gather(1, label.view(-1, 1)).squeeze(1)


def _linear_fisher(model, linear, by_linear, x, y, ids, columns, empirical, fisher) -> None:
    seen: dict = {}

    def keep(module, inputs, output):
        if module in seen:
            raise RuntimeError(f"fisher_diagonal: {type(module).__name__} ran twice in one "
                               f"forward; per-sample gradients would need vmap for it")
        seen[module] = (inputs[0].detach(), output)

    hooks = [m.register_forward_hook(keep) for m in linear]
    try:
        loss = _nll(model(x, ids=ids), y, columns, empirical).sum()
    finally:
        for h in hooks:
            h.remove()
    used = [m for m in linear if m in seen and seen[m][1].requires_grad]
    grads = torch.autograd.grad(loss, [seen[m][1] for m in used], allow_unused=True)
    with torch.no_grad():
        for m, g in zip(used, grads):
            if g is None:
                continue
            a = seen[m][0]
            if a.dim() != 2:
                raise RuntimeError("fisher_diagonal: a Linear layer saw inputs of shape "
                                   f"{tuple(a.shape)}; one vector per sample is needed")
            g2 = g * g
            prefix = linear[m]
            if m.weight.requires_grad:
                fisher[prefix + "weight"] += g2.t() @ (a * a)
            if m.bias is not None and m.bias.requires_grad:
                fisher[prefix + "bias"] += g2.sum(0)


def _vmap_fisher(model, names, params, x, y, ids, columns, empirical, fisher) -> None:
    """Per-sample gradients of the parameters ``names`` with torch.func."""
    router = getattr(model, "router", None)
    fixed = {n: p.detach() for n, p in params.items() if n not in names}
    wrt = {n: params[n].detach() for n in names}

    def nll(wrt, x, y, masks):
        with _masks_given(router, masks):
            out = functional_call(model, {**fixed, **wrt}, (x[None],))
        return _nll(out, y[None], columns, empirical)[0], out[0]

    with torch.no_grad():
        masks = router(x, ids) if router is not None else []
        ref = model(x, ids=ids)
    grads, out = vmap(grad(nll, has_aux=True), in_dims=(None, 0, 0, 0))(wrt, x, y, masks)
    if not torch.allclose(out, ref, rtol=1e-4, atol=1e-5):
        raise RuntimeError("fisher_diagonal: the model's outputs with sample ids differ from "
                           "its outputs without them; per-sample gradients would be those of "
                           "a different function")
    for n in names:
        fisher[n] += grads[n].pow(2).sum(0)


@contextmanager
def _masks_given(router, masks):
    """COMET's router, for the duration, returns ``masks`` (one sample's, computed outside
    vmap through the id-keyed cache) instead of recomputing them: its top-k scatter has no
    vmap batching rule, and the cache lookup is data-dependent."""
    if router is None:
        yield
        return
    router.forward = lambda x, ids=None: [m[None] for m in masks]
    try:
        yield
    finally:
        del router.forward


class EWC(SupervisedPlugin):
    """EWC / online EWC as in van de Ven & Tolias 2019 (module docstring for the details).

    ``ewc_lambda``: strength, paper scale (penalty has the 1/2). ``mode``: ``"separate"`` or
    ``"online"``. ``gamma``: online EWC's decay (ignored in separate mode). ``fisher_samples``:
    None = the whole experience, else a random subset of that size. ``empirical_fisher``: true
    labels instead of predicted ones. ``fisher_batch_size``: samples per Fisher batch (a vmap call
    holds that many copies of the non-Linear parameters' gradients)."""

    def __init__(self, ewc_lambda: float = 500.0, mode: str = "separate", gamma: float = 1.0,
                 fisher_samples: int | None = None, empirical_fisher: bool = False,
                 fisher_batch_size: int = 256):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"EWC mode '{mode}': expected one of {', '.join(MODES)}")
        if ewc_lambda < 0 or not 0 < gamma <= 1:
            raise ValueError(f"EWC: need ewc_lambda >= 0 and 0 < gamma <= 1 "
                             f"(got {ewc_lambda}, {gamma})")
        if fisher_samples is not None and fisher_samples < 1:
            raise ValueError(f"EWC fisher_samples must be None or >= 1, got {fisher_samples}")
        self.ewc_lambda, self.mode, self.gamma = float(ewc_lambda), mode, float(gamma)
        self.fisher_samples, self.empirical_fisher = fisher_samples, empirical_fisher
        self.fisher_batch_size = fisher_batch_size
        self.fisher: dict[str, Tensor] | None = None  # sum of the terms' Fisher diagonals
        self.anchor: dict[str, Tensor] | None = None  # their Fisher-weighted mean anchor
        self.constant = 0.0  # the summed terms' value at theta = anchor (separate mode)

    # -- the penalty ----------------------------------------------------------------------
    def penalty(self, model: torch.nn.Module) -> Tensor:
        """(lambda/2) * sum F (theta - theta*)^2 (+ the separate terms' constant); online mode
        applies gamma to F once more, as his ewc_loss does. The definition, for reading and
        tests: training adds its gradient directly (after_backward)."""
        if self.fisher is None:
            return torch.zeros(())
        params, fisher, anchor, scale = self._terms(model)
        total = quadratic.value(params, fisher, anchor)
        return (self.ewc_lambda / 2) * (scale * total + self.constant)

    def _terms(self, model: torch.nn.Module) -> tuple[list, list, list, float]:
        """The penalty's parameters, Fisher diagonals and anchors, in one order, and the
        factor online mode puts on F once more."""
        params = dict(model.named_parameters())
        names = list(self.fisher)
        return ([params[n] for n in names], [self.fisher[n] for n in names],
                [self.anchor[n] for n in names], self.gamma if self.mode == "online" else 1.0)

    def after_backward(self, strategy, **kwargs):
        """The penalty's gradient, added after the task loss's backward (methods/quadratic.py);
        ``strategy.loss`` stays the task loss (the penalty's value is not computed per step)."""
        if self.fisher is not None and self.ewc_lambda > 0:
            params, fisher, anchor, scale = self._terms(strategy.model)
            quadratic.add_gradient(params, fisher, anchor, self.ewc_lambda / 2 * scale)

    # -- consolidation --------------------------------------------------------------------
    def after_training_exp(self, strategy, **kwargs):
        loader = tensor_batches(strategy.experience.dataset, 1, shuffle=False,
                                device=strategy.device)
        if loader is None:
            raise TypeError("EWC needs an experience made of comet_cl tensor datasets "
                            "(comet_cl.streams); got one tensor_batches cannot resolve")
        images, targets, ids = loader.images, loader.targets, loader.ids
        if self.fisher_samples is not None and self.fisher_samples < len(targets):
            g = torch.Generator().manual_seed(strategy.shuffle_seed * 1_000_003
                                              + strategy.experience.current_experience + 7)
            pick = torch.randperm(len(targets), generator=g)[:self.fisher_samples]
            pick = pick.to(images.device)
            images, targets, ids = images[pick], targets[pick], ids[pick]
        active = strategy.active_classes() if hasattr(strategy, "active_classes") else None
        new = fisher_diagonal(strategy.model, loader.normalize(images), targets, ids,
                              columns=active, empirical=self.empirical_fisher,
                              batch_size=self.fisher_batch_size)
        self.consolidate(new, dict(strategy.model.named_parameters()))

    @torch.no_grad()
    def consolidate(self, new_fisher: dict[str, Tensor], params: dict[str, Tensor]) -> None:
        """Add one experience's Fisher ``new_fisher`` with anchor ``params``."""
        theta = {n: params[n].detach().clone() for n in new_fisher}
        if self.fisher is None:
            self.fisher, self.anchor, self.constant = dict(new_fisher), theta, 0.0
            return
        if self.mode == "online":
            self.fisher = {n: new_fisher[n] + self.gamma * self.fisher[n] for n in new_fisher}
            self.anchor = theta
            return
        constant = self.constant
        for n in new_fisher:
            f_old, m_old, f_new, t = self.fisher[n], self.anchor[n], new_fisher[n], theta[n]
            f = f_old + f_new
            m = torch.where(f > 0, (f_old * m_old + f_new * t) / f.clamp_min(torch.finfo(f.dtype).tiny), t)
            constant += float((f_old.double() * m_old.double() ** 2
                               + f_new.double() * t.double() ** 2
                               - f.double() * m.double() ** 2).sum())
            self.fisher[n], self.anchor[n] = f, m
        self.constant = constant
