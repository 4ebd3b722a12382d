"""DER++ (Buzzega et al. 2020, "Dark Experience for General Continual Learning"): replay
that also matches the network's stored logits.

Loss on each step: CE on the current minibatch + ``alpha`` * MSE(logits on memory samples,
their stored logits) + ``beta`` * CE(memory samples, their labels). The buffer is
:class:`comet_cl.methods.replay.TensorBuffer` (reservoir sampling by default, as the paper's),
with the logits as a per-slot extra.

Departures from the paper, for cost and for the tensor path (both as Avalanche's ``DER``):
one memory batch per step serves both terms (the paper draws two, which costs a third
forward/backward); and logits are stored when a sample enters the buffer at the end of its
experience, computed by the model at that point in eval mode (the paper stores the training
forward's outputs as the sample streams by). Avalanche's ``DER`` strategy is not used because
it is a whole strategy (it would bypass comet-cl's tensor template and sample ids) with a
class-balanced buffer and its own per-sample loaders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from comet_cl.diagnostics import eval_mode
from comet_cl.methods.classes import restrict_to
from comet_cl.methods.replay import ReplayPlugin, join_batches

LOGITS = "logits"


class DERPlugin(ReplayPlugin):
    """DER++ with ``alpha`` (logit matching) and ``beta`` (label replay); ``beta = 0`` is DER."""

    def __init__(self, mem_size: int = 500, alpha: float = 0.1, beta: float = 0.5,
                 batch_size_mem: int | None = None, policy: str = "reservoir"):
        super().__init__(mem_size=mem_size, batch_size_mem=batch_size_mem, policy=policy)
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"DER++ {name} must be a number >= 0, got {value!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self._memory = None  # (n_current, memory targets, stored logits) during a step

    def __getstate__(self):
        return {**super().__getstate__(), "_memory": None}

    def before_training_iteration(self, strategy, **kwargs):
        self._memory = None
        memory = self.memory_batch(strategy, extras=(LOGITS,))
        if memory is None:
            return
        x, y, ids, logits = memory
        self._memory = (len(strategy.mb_y), y, logits)
        strategy.mbatch = join_batches(strategy.mbatch, (x, y, ids))

    def after_forward(self, strategy, **kwargs):
        # One forward over current + memory; the strategy's criterion then sees the current
        # part only, and the memory part goes to the two DER++ terms.
        if self._memory is None:
            return
        n = self._memory[0]
        self._memory = (*self._memory, strategy.mb_output[n:])
        strategy.mb_output = strategy.mb_output[:n]
        strategy.mbatch = [t[:n] for t in strategy.mbatch]

    def before_backward(self, strategy, **kwargs):
        if self._memory is None:
            return
        _, y, stored, out = self._memory
        # The label term trains the same output units as the strategy's own criterion (all,
        # or the classes seen so far under [train] logits = "seen"); the logit term matches
        # every stored logit, as the paper does.
        seen_out, seen_y = restrict_to(out, y, strategy.active_classes())
        strategy.loss = strategy.loss + self.alpha * F.mse_loss(out, stored) \
            + self.beta * F.cross_entropy(seen_out, seen_y)
        self._memory = None

    def after_training_exp(self, strategy, **kwargs):
        new = self.buffer.add(strategy.experience.dataset, self._fill)
        if len(new):
            self.buffer.set_extra(LOGITS, new, self._logits(strategy, new))

    @torch.no_grad()
    def _logits(self, strategy, slots: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        out = []
        with eval_mode(strategy.model):
            for part in slots.split(batch):
                x, _, ids = self.buffer.gather(part, strategy.device)
                out.append(strategy.model(x, ids=ids).float().cpu())
        return torch.cat(out)
