"""Small conv net (CIFAR-sized): gated 3x3 conv blocks with 2x2 max-pool, one gated FC hidden
layer, unmasked output. Gates act on channels. No batch norm: its running statistics would be
shared across tasks and need their own continual-learning treatment."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from comet_cl.models.gates import Gate
from comet_cl.models.net import GatedBlock
from comet_cl.models.registry import register_model


@register_model("conv", widths=[32, 64, 128, 256])
def build_conv(in_shape: tuple[int, ...], n_classes: int, widths: list[int],
               act: type[nn.Module], gate: Callable[[int, nn.Module], Gate]
               ) -> tuple[list[GatedBlock], nn.Linear]:
    """widths = conv channels of each block, then the FC hidden width (all masked layers)."""
    (c, h, w), blocks = in_shape, []
    for l, n in enumerate(widths[:-1]):
        if min(h, w) < 2:
            raise ValueError(f"input {in_shape} too small for {len(widths) - 1} pooled conv blocks")
        layer = nn.Conv2d(c, n, kernel_size=3, padding=1)
        blocks.append(GatedBlock(layer, act(), gate(l, layer), pool=2))
        c, h, w = n, h // 2, w // 2
    layer = nn.Linear(c * h * w, widths[-1])
    blocks.append(GatedBlock(layer, act(), gate(len(widths) - 1, layer)))
    return blocks, nn.Linear(widths[-1], n_classes)
