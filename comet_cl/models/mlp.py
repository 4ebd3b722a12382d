"""MLP backbone: flattened input, gated Linear hidden layers, unmasked Linear output."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from comet_cl.models.gates import Gate
from comet_cl.models.net import GatedBlock
from comet_cl.models.registry import register_model


@register_model("mlp", widths=[1000, 1000])
def build_mlp(in_shape: tuple[int, ...], n_classes: int, widths: list[int],
              act: type[nn.Module], gate: Callable[[int, nn.Module], Gate]
              ) -> tuple[list[GatedBlock], nn.Linear]:
    """Blocks and head of an MLP; `gate(l, layer)` makes hidden layer l's gate."""
    blocks, fan_in = [], math.prod(in_shape)
    for l, n in enumerate(widths):
        layer = nn.Linear(fan_in, n)
        blocks.append(GatedBlock(layer, act(), gate(l, layer)))
        fan_in = n
    return blocks, nn.Linear(fan_in, n_classes)
