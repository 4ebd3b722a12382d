"""Gates: what makes one hidden layer sparse. A gate maps a layer's context to a per-unit
scale [B, N] (units = features for Linear, channels for conv) or None (every unit passes).

One job each; the backbone (`net.GatedBlock`) multiplies its activations by the scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from comet_cl.routing import kwta, unit_scores

_MIX1, _MIX2, _GOLDEN = -4658895280553007687, -7723592293110705685, -7046029254386353131


def hash64(x: Tensor) -> Tensor:
    """splitmix64 finaliser on int64 (wrapping arithmetic, logical shifts), vectorised."""
    def shr(v: Tensor, s: int) -> Tensor:  # logical shift: torch's >> is arithmetic
        return (v >> s) & ((1 << (64 - s)) - 1)

    x = x + _GOLDEN
    x = (x ^ shr(x, 30)) * _MIX1
    x = (x ^ shr(x, 27)) * _MIX2
    return x ^ shr(x, 31)


class Gate(nn.Module):
    """Base gate: passes every unit (the dense variant). `aux_loss` is for trained gates."""

    aux_loss: Tensor | None = None

    def scale(self, *, x: Tensor, pre: Tensor, mask: Tensor | None,
              ids: Tensor | None) -> Tensor | None:
        """[B, N] multiplier of the activations, or None for all ones. x: the layer's input,
        pre: its pre-activation, mask: the router's mask (COMET), ids: the sample ids."""
        return None


class RouterGate(Gate):
    """COMET: the unit mask comes from the fixed router, computed from the raw input."""

    def scale(self, *, mask, **_) -> Tensor:
        return mask


class DropoutGate(Gate):
    """Dropout at rate 1 - p_k over units (channels for conv, like Dropout2d), training only,
    inverted scaling 1/p_k so nothing changes at test."""

    def __init__(self, p_k: float) -> None:
        super().__init__()
        self.p_k = p_k

    def scale(self, *, pre, **_) -> Tensor | None:
        if not self.training or self.p_k == 1.0:
            return None
        keep = torch.empty(pre.shape[:2], dtype=pre.dtype, device=pre.device).bernoulli_(self.p_k)
        return keep / self.p_k


class TopKGate(Gate):
    """k-WTA on the backbone's own pre-activations (a routing trained through the backbone)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def scale(self, *, pre, **_) -> Tensor:
        return kwta(unit_scores(pre.detach()), self.k)


class BernoulliGate(Gate):
    """A fixed random mask per training example, none at test.

    The mask is a hash of (seed, layer, sample id, unit): deterministic, the same on any
    device, vectorised, and nothing to store. Each unit is kept with probability p_k,
    independently; kept units are scaled by 1/p_k in training (as in dropout) so that the
    unmasked test-time network sees activations of the same expected size.
    """

    def __init__(self, p_k: float, n_units: int, seed: int, layer: int) -> None:
        super().__init__()
        self.p_k, self.key = p_k, int(hash64(hash64(torch.tensor(seed)) + layer))
        self.register_buffer("units", torch.arange(n_units), persistent=False)

    def keep(self, ids: Tensor) -> Tensor:
        """Bool [B, N]: unit u of sample `id` is kept iff (top 24 bits of its hash) / 2^24 < p_k."""
        h = hash64(hash64(ids.to(self.units.device) ^ self.key)[:, None] + self.units)
        return ((h >> 40) & 0xFFFFFF) < self.p_k * (1 << 24)

    def scale(self, *, ids, **_) -> Tensor | None:
        if not self.training or self.p_k == 1.0:
            return None
        if ids is None:
            raise ValueError("the bernoulli variant needs sample ids in training: forward(x, ids)")
        return self.keep(ids) / self.p_k

