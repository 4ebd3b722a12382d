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

    top_k = 1 decision (Switch-Transformer style): G = softmax over ALL logits, zeroed outside
    the top one and not renormalised. softmax(KeepTopK(H, 1)) is the constant 1, which would give
    the gate no gradient from the task loss (a public implementation of this baseline has that
    bug: its gate only ever learns from the balance loss). For top_k >= 2 the spec's
    softmax(KeepTopK(H, k)) is used as is. Gate weights start at zero as in Shazeer's code,
    so the noise alone spreads the inputs at first; the noise draws from the global RNG and is
    skipped when every expert is chosen anyway (top_k = E, e.g. E = 1 at p_k > 0.5).
    """

    def __init__(self, in_features: int, n_units: int, n_experts: int, top_k: int = 1,
                 aux_weight: float = 1e-2) -> None:
        super().__init__()
        self.w_gate = nn.Parameter(torch.zeros(in_features, n_experts))
        self.w_noise = nn.Parameter(torch.zeros(in_features, n_experts))
        self.n_experts, self.top_k, self.aux_weight = n_experts, min(top_k, n_experts), aux_weight
        sizes = [len(s) for s in torch.arange(n_units).tensor_split(n_experts)]
        self.register_buffer("expert_of_unit",
                             torch.arange(n_experts).repeat_interleave(torch.tensor(sizes)),
                             persistent=False)

    def weights(self, logits: Tensor) -> Tensor:
        """G(x) [B, E]: nonzero for the top_k experts only."""
        top = logits.topk(self.top_k, dim=-1)
        if self.top_k == 1:
            kept = logits.softmax(-1).gather(-1, top.indices)
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
        return g[:, self.expert_of_unit]
