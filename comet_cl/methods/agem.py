"""A-GEM (Chaudhry et al. 2019, "Efficient Lifelong Learning with A-GEM").

Before each step, the gradient of the loss on a memory batch is the reference g_ref; after the
backward pass on the current minibatch, a gradient g with g . g_ref < 0 (it would increase
the memory loss, to first order) is projected to g - (g . g_ref / g_ref . g_ref) g_ref, whose
dot with g_ref is 0. Only the current minibatch is trained on.

The memory is :class:`comet_cl.methods.replay.TensorBuffer`: reservoir sampling over the
stream by default, as Buzzega et al. 2020 ran A-GEM beside ER and DER++ (the paper's own
memory is a fixed number of samples per task: ``policy = "experience"`` with ``mem_size``
= that number times the number of tasks gives its balance). ``sample_size`` is the reference
batch (default: the training batch size, as in Buzzega et al.; Chaudhry et al. used 256).
Avalanche's ``AGEMPlugin`` does the same arithmetic but draws its reference batches through
per-sample loaders, so this one reads them from the buffer's tensors instead.
"""

from __future__ import annotations

import torch

from comet_cl.methods.classes import restrict_to
from comet_cl.methods.replay import ReplayPlugin


def _flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in params])


class AGEMPlugin(ReplayPlugin):
    """A-GEM on a buffer of ``mem_size`` past samples, reference batches of ``sample_size``.
    Buffer filling, seeding and checkpointing are replay's (:class:`ReplayPlugin`)."""

    def __init__(self, mem_size: int = 500, sample_size: int | None = None,
                 policy: str = "reservoir"):
        super().__init__(mem_size=mem_size, batch_size_mem=sample_size, policy=policy)
        self.reference: torch.Tensor | None = None  # g_ref of the current step

    def __getstate__(self):
        return {**super().__getstate__(), "reference": None}

    def before_training_iteration(self, strategy, **kwargs):
        self.reference = None
        memory = self.memory_batch(strategy)
        if memory is None:
            return
        x, y, ids = memory
        params = [p for p in strategy.model.parameters() if p.requires_grad]
        strategy.optimizer.zero_grad()
        # The same loss as the step's: over the output units training uses now.
        out, y = restrict_to(strategy.model(x, ids=ids), y, strategy.active_classes())
        loss = strategy._criterion(out, y)
        loss.backward()
        self.reference = _flat_grad(params)
        strategy.optimizer.zero_grad()  # the step's own gradient starts from zero

    @torch.no_grad()
    def after_backward(self, strategy, **kwargs):
        if self.reference is None:
            return
        params = [p for p in strategy.model.parameters() if p.requires_grad]
        g, ref = _flat_grad(params), self.reference
        dot = g @ ref
        if dot < 0:
            g -= (dot / (ref @ ref)) * ref
            offset = 0
            for p in params:
                n = p.numel()
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad.copy_(g[offset:offset + n].view_as(p))
                offset += n
