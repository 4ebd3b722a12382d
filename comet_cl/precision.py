"""Mixed precision: ``[train] amp = true`` runs the model's forward passes under bfloat16
autocast, in training and in evaluation.

bfloat16 keeps float32's exponent range, so the loss needs no GradScaler (float16 would, and
Avalanche's template has no hook to skip an optimizer step on overflow). Weights, optimizer
state and the loss stay float32: autocast computes matrix products in bfloat16 and the logits
are cast back to float32 before the loss. On a tensor-core GPU that is where a step's time
goes; on a CPU, torch's bfloat16 kernels run the same code path (it is how the tests check
it), mostly without a speed-up. Results differ from float32 within the tolerance the tests
state (ACC within AMP_ACC_TOLERANCE); float32 is the default and what the reference results use.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from comet_cl.config import ConfigError

# The largest ACC difference (absolute) between amp and float32 runs that the tests accept.
AMP_ACC_TOLERANCE = 0.02


class BFloat16Autocast(SupervisedPlugin):
    """Enters bfloat16 autocast just before each forward pass and leaves it just after."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device_type = device.type
        self._context = None

    def _enter(self) -> None:
        self._context = torch.autocast(self.device_type, dtype=torch.bfloat16)
        self._context.__enter__()

    def _exit(self, strategy) -> None:
        self._context.__exit__(None, None, None)
        self._context = None
        strategy.mb_output = strategy.mb_output.float()  # the loss in float32

    def before_forward(self, strategy, **kwargs):
        self._enter()

    def after_forward(self, strategy, **kwargs):
        self._exit(strategy)

    def before_eval_forward(self, strategy, **kwargs):
        self._enter()

    def after_eval_forward(self, strategy, **kwargs):
        self._exit(strategy)


def precision_plugins(train: dict, device: torch.device) -> list[SupervisedPlugin]:
    """The plugins ``train['amp']`` asks for on ``device`` (none for float32)."""
    if not train.get("amp", False):
        return []
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"[train] amp = true needs bfloat16, which {device} "
                          f"({torch.cuda.get_device_name(device)}) lacks; set amp = false")
    if device.type not in ("cuda", "cpu"):
        raise ConfigError(f"[train] amp = true: no bfloat16 autocast on {device}")
    return [BFloat16Autocast(device)]
