"""Sparse Mixture of Experts gate (Shazeer et al. 2017, noisy top-k gating): the SMoE baseline.

Layout decision: expert e owns its own contiguous slice of the layer's N units (sizes N/E, +-1),
so the layer stays ONE dense Linear/conv of width N whose output slices are scaled by the gate
weights: same width and parameter count as dense (plus the 2 * fan_in * E gate weights), and
unchosen experts get exactly zero output and gradient. Computing every expert densely is the
price of that simplicity; this baseline is about accuracy, not speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comet_cl.models.gates import Gate
from comet_cl.routing import unit_scores

_NOISE_FLOOR = 1e-2  # Shazeer's noise_epsilon: keeps the noise std, and so the load estimate, > 0


def cv_squared(v: Tensor) -> Tensor:
    """Squared coefficient of variation; 0 for a single expert (nothing to balance)."""
    if v.numel() < 2:
        return v.new_zeros(())
    return v.var() / (v.mean() ** 2 + 1e-10)


class SMoEGate(Gate):
    """Noisy top-k gate on the layer's INPUT (backbone activations, channel means for conv).

    top_k = 1 decision: G = p / stop_grad(p), p = softmax over ALL logits at the chosen expert.
    Its value is exactly the spec's softmax(KeepTopK(H, 1)) = 1, but unlike that constant it
    passes the task gradient (of log p) to the gate; a public implementation of this baseline
    routes by argmax and its gate only ever learns from the balance loss. Switch-Transformer
    scaling (G = p) was tried and rejected: in a plain stack (no residual) it shrinks every
    layer's output by ~1/E, which compounds over layers and trained worse on MNIST and CIFAR.
    For top_k >= 2 the spec's softmax(KeepTopK(H, k)) is used as is. Gate weights start at zero
    as in Shazeer's code, so the noise alone spreads the inputs at first; the noise draws from
    the global RNG and is skipped when every expert is chosen anyway (top_k = E, e.g. E = 1 at
    p_k > 0.5). With E = 1 the layer is the dense layer and the balance loss is 0.
    """

    def __init__(self, in_features: int, n_units: int, n_experts: int, top_k: int = 1,
                 aux_weight: float = 1e-2) -> None:
        super().__init__()
        self.w_gate = nn.Parameter(torch.zeros(in_features, n_experts))
        self.w_noise = nn.Parameter(torch.zeros(in_features, n_experts))
        self.n_experts, self.top_k, self.aux_weight = n_experts, min(top_k, n_experts), aux_weight
        expert_of_unit = torch.arange(n_units) * n_experts // n_units  # contiguous slices
        # one-hot [E, N]: G @ it spreads each expert's weight over its units. A matmul, because
        # the backward of an index gather G[:, expert_of_unit] is a slow serial scatter-add
        self.register_buffer("units_of_expert", F.one_hot(expert_of_unit, n_experts).T.float(),
                             persistent=False)

    def weights(self, logits: Tensor) -> Tensor:
        """G(x) [B, E]: nonzero for the top_k experts only."""
        top = logits.topk(self.top_k, dim=-1)
        if self.top_k == 1:
            p = logits.softmax(-1).gather(-1, top.indices)
            kept = p / p.detach()
        else:
            kept = top.values.softmax(-1)
        return torch.zeros_like(logits).scatter(-1, top.indices, kept)

    def load(self, clean: Tensor, noisy: Tensor, noise_std: Tensor) -> Tensor:
        """Shazeer's smooth load: sum over the batch of P(expert in top_k | fresh noise)."""
        top = noisy.topk(self.top_k + 1, dim=-1).values
        threshold_in, threshold_out = top[:, self.top_k:], top[:, self.top_k - 1:self.top_k]
        p_in = torch.special.ndtr((clean - threshold_in) / noise_std)
        p_out = torch.special.ndtr((clean - threshold_out) / noise_std)
        return torch.where(noisy > threshold_in, p_in, p_out).sum(0)

    def scale(self, *, x: Tensor, **_) -> Tensor:
        x = unit_scores(x)
        clean = x @ self.w_gate
        noisy = self.training and self.top_k < self.n_experts
        if noisy:
            noise_std = F.softplus(x @ self.w_noise) + _NOISE_FLOOR
            logits = clean + torch.randn_like(clean) * noise_std
        else:
            logits = clean
        g = self.weights(logits)
        load = self.load(clean, logits, noise_std) if noisy else (g > 0).sum(0).to(g.dtype)
        self.aux_loss = self.aux_weight * (cv_squared(g.sum(0)) + cv_squared(load))
        return g @ self.units_of_expert
