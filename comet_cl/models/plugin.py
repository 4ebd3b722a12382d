"""Avalanche glue for what a model variant asks of training (declared on its ``Variant``):
the SMoE balance loss, COMET's masks computed ahead of an experience.

Its own module because importing Avalanche takes seconds: `comet_cl.models` loads it lazily.
"""

import comet_cl._avalanche  # noqa: F401, I001  (first: Avalanche without its QP-solver warning)
from avalanche.core import SupervisedPlugin


class SMoEAuxLossPlugin(SupervisedPlugin):
    """Adds `strategy.model.aux_loss` (already weighted) to the loss before backward."""

    def before_backward(self, strategy, **kwargs) -> None:
        aux = getattr(strategy.model, "aux_loss", None)
        if aux is not None:
            strategy.loss += aux


class MaskPrecomputePlugin(SupervisedPlugin):
    """Before an experience's first step, fills COMET's mask cache for all its samples in large
    no-grad batches (``Router.precompute``), so that no training step computes a mask.

    The experience's inputs and sample ids are the training loader's own tensors (any loader
    with ``images``, ``ids`` and ``normalize``, as ``comet_cl.loaders.TensorBatchLoader``);
    with another loader, or a model without a mask cache, it does nothing and the masks are
    computed per minibatch as before. Same masks either way, hence the same run.
    """

    def __init__(self, batch_size: int = 4096) -> None:
        super().__init__()
        self.batch_size = batch_size

    def before_training_exp(self, strategy, **kwargs) -> None:
        router = getattr(strategy.model, "router", None)
        loader = strategy.dataloader
        if router is None or router.cache is None or not all(
                hasattr(loader, a) for a in ("images", "ids", "normalize")):
            return
        router.precompute(loader.ids, lambda pos: loader.normalize(loader.images[pos]),
                          self.batch_size)
