"""Avalanche glue for models with an auxiliary loss (the SMoE balance loss).

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
