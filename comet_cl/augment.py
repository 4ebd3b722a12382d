"""Training-time augmentation of minibatches: ``[train] augment = "crop-flip"``.

Why it exists: Buzzega et al. 2020 (and most split-CIFAR protocols) train every method with
``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip``; their replay buffers get the same
transform on every draw, which keeps a small buffer from being memorised. comet-cl's tensor
streams serve fixed tensors, so without this setting a CIFAR protocol runs with no
augmentation at all, and the size of that departure could not be measured.

What it does, as Mammoth does it: each *training* minibatch, after replay has joined its
memory batch (``before_forward``, which comes after every ``before_training_iteration``), is
cropped at a random offset from a copy padded with ``padding`` black pixels (black: the
pixel value 0 in the stream's normalisation) and flipped left-right with probability 1/2,
independently per image. Evaluation passes never see it. A replay buffer stores the plain
sample, as Mammoth's stores ``not_aug_inputs``. Forward passes that a method makes on its own
(A-GEM's reference gradient, LwF's and EWC's extra passes) are not augmented.

The draws come from a generator fixed by the run seed and the experience, so a run resumed
at an experience boundary draws the same crops (the runner checkpoints a run with this
setting only there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from avalanche.core import SupervisedPlugin

from comet_cl.methods.replay import experience_generator

AUGMENTS = ("crop-flip",)
CROP_PADDING = 4  # torchvision RandomCrop(32, padding=4), Buzzega et al.'s CIFAR transform


def crop_flip(x: torch.Tensor, fill: torch.Tensor, generator: torch.Generator,
              padding: int = CROP_PADDING) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) cropped back to H x W at a random offset from a copy
    padded with ``padding`` pixels of ``fill`` (one value per channel), then flipped
    left-right with probability 1/2. Offsets and flips are drawn from ``generator`` (CPU)."""
    if x.dim() != 4:
        raise ValueError(f"crop-flip augmentation needs image batches (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    n, c, h, w = x.shape
    padded = fill.to(x.device, x.dtype).view(1, c, 1, 1).repeat(n, 1, h + 2 * padding,
                                                                 w + 2 * padding)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    flip = torch.rand(n, 1, generator=generator) < 0.5
    rows = dy + torch.arange(h)
    cols = dx + torch.arange(w)
    cols = torch.where(flip, cols.flip(1), cols)
    # one gather: for image i, rows[i] x cols[i] of every channel
    flat_rows = rows.to(x.device)[:, None, :, None] * (w + 2 * padding)
    index = (flat_rows + cols.to(x.device)[:, None, None, :]).expand(n, c, h, w)
    return padded.flatten(2).gather(2, index.reshape(n, c, h * w)).view(n, c, h, w)


class CropFlip(SupervisedPlugin):
    """Augments every training minibatch with :func:`crop_flip` just before its forward pass."""

    def __init__(self, fill: Sequence[float], padding: int = CROP_PADDING):
        super().__init__()
        self.fill = torch.tensor(fill, dtype=torch.float32)
        self.padding = padding
        self._draws: torch.Generator | None = None

    def __getstate__(self):  # re-made every experience
        return {**self.__dict__, "_draws": None}

    def before_training_exp(self, strategy, **kwargs):
        self._draws = experience_generator(strategy, "augment")

    def before_forward(self, strategy, **kwargs):
        x = crop_flip(strategy.mbatch[0], self.fill, self._draws, self.padding)
        strategy.mbatch = [x, *strategy.mbatch[1:]]


def augment_plugins(train: dict, mean: Sequence[float], std: Sequence[float]) -> list[SupervisedPlugin]:
    """The plugins ``train['augment']`` asks for, for a stream normalised with per-channel
    ``mean`` and ``std`` (the pad is a black pixel in that normalisation); none when unset."""
    kind = train.get("augment")
    if kind is None:
        return []
    if kind not in AUGMENTS:
        raise ValueError(f"unknown augmentation '{kind}' (known: {', '.join(AUGMENTS)})")
    return [CropFlip([-m / s for m, s in zip(mean, std)])]
