"""The backbone every variant shares: gated hidden blocks, then an output layer never masked."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from comet_cl.models.gates import Gate
from comet_cl.routing import Router, unit_view


class GatedBlock(nn.Module):
    """x_l = pool(gate * f(W_l x_{l-1} + b_l)): one masked hidden layer (Linear or conv)."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, act: nn.Module, gate: Gate,
                 pool: int = 1) -> None:
        super().__init__()
        self.layer, self.act, self.gate, self.pool = layer, act, gate, pool
        self.n_units = layer.weight.shape[0]

    def forward(self, x: Tensor, mask: Tensor | None,
                ids: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Returns the block's output and the gate's per-unit scale (None: all units pass)."""
        if isinstance(self.layer, nn.Linear):
            x = x.flatten(1)
        pre = self.layer(x)
        s = self.gate.scale(x=x, pre=pre, mask=mask, ids=ids)
        h = self.act(pre)
        if s is not None:  # as float: one cast beats bool x float in both forward and backward
            h = h * unit_view(s, h).to(h.dtype)
        return (nn.functional.max_pool2d(h, self.pool) if self.pool > 1 else h), s


class GatedNet(nn.Module):
    """Gated blocks + unmasked output layer; `router` (COMET only) supplies the masks.

    forward(x, ids=None): x [B, C, H, W], ids int64 [B] (same id = same input) -> logits.
    """

    def __init__(self, blocks: list[GatedBlock], head: nn.Linear, p_k: float,
                 router: Router | None = None) -> None:
        super().__init__()
        self.blocks, self.head, self.p_k, self.router = nn.ModuleList(blocks), head, p_k, router

    def trunk(self, x: Tensor, ids: Tensor | None) -> tuple[Tensor, list[Tensor | None]]:
        masks = self.router(x, ids) if self.router is not None else [None] * len(self.blocks)
        scales = []
        for block, mask in zip(self.blocks, masks):
            x, s = block(x, mask, ids)
            scales.append(s)
        return x, scales

    def forward(self, x: Tensor, ids: Tensor | None = None) -> Tensor:
        return self.head(self.trunk(x, ids)[0].flatten(1))

    @torch.no_grad()
    def masks(self, x: Tensor, ids: Tensor | None = None) -> list[Tensor]:
        """Bool [B, N_l] per masked layer: the units that pass. COMET: the router's masks
        (mode-independent); other variants: the units their gate passes in the current mode,
        from a no-grad run of the backbone (so an SMoE's aux_loss then refers to this call)."""
        if self.router is not None:
            return self.router(x, ids)
        _, scales = self.trunk(x, ids)
        return [torch.ones(len(x), b.n_units, dtype=torch.bool, device=x.device) if s is None
                else s != 0 for b, s in zip(self.blocks, scales)]

    @property
    def aux_loss(self) -> Tensor | None:
        """Sum of the gates' auxiliary losses of the last forward (SMoE), else None."""
        losses = [b.gate.aux_loss for b in self.blocks if b.gate.aux_loss is not None]
        return sum(losses) if losses else None
