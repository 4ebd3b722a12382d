"""Which classes a stream has shown so far, and training over those classes' logits only.

van de Ven's code trains class-incremental streams on the "active classes" only: the output
units of the classes seen so far (current experience included); the cross-entropy is a softmax
over those units, and EWC's Fisher and LwF's distillation use the same units. The classes are
read from the stream itself (the experiences up to this one), not remembered by a plugin, so
a run resumed from a checkpoint gets the same answer as an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def classes_seen(experience, *, include_current: bool = True) -> list[int]:
    """Sorted classes of the training experiences before ``experience`` (and of it, unless
    ``include_current`` is False)."""
    stop = experience.current_experience + (1 if include_current else 0)
    seen: set[int] = set()
    for exp in experience.origin_stream[:stop]:
        seen.update(int(c) for c in exp.dataset.targets.uniques)
    return sorted(seen)


def renumber(targets: Tensor, columns: list[int]) -> Tensor:
    """``targets`` as positions among ``columns``; a target outside them is an error."""
    cols = torch.as_tensor(columns, device=targets.device)
    size = int(max(int(cols.max()), int(targets.max()) if len(targets) else 0)) + 1
    position = torch.full((size,), -1, dtype=torch.long, device=targets.device)
    position[cols] = torch.arange(len(cols), device=targets.device)
    y = position[targets]
    if (y < 0).any():
        raise ValueError(f"targets {sorted(set(targets[y < 0].tolist()))} are not among the "
                         f"active classes {columns}")
    return y


def restrict_to(logits: Tensor, targets: Tensor | None, columns: list[int] | None):
    """``logits`` cut to ``columns`` and ``targets`` renumbered to positions among them
    (None columns: everything unchanged). A target outside the columns is an error."""
    if columns is None:
        return logits, targets
    out = logits.index_select(1, torch.as_tensor(columns, device=logits.device))
    return out, None if targets is None else renumber(targets, columns)
