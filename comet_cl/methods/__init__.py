"""Continual-learning methods that follow van de Ven & Tolias 2019 ("Three scenarios for
continual learning", arXiv 1904.07734) to the letter of its code (GMvandeVen/continual-learning
at 9945f84), one module per method, each an Avalanche ``SupervisedPlugin``.

Avalanche's stock plugins define EWC, SI and LwF differently (minibatch-mean Fisher with true
labels and no 1/2, importance clipped at 1e-3, CE + alpha * KD), so their hyperparameters are
not on the paper's scale and its numbers cannot be reproduced with them. These plugins are
used with :class:`comet_cl.strategies.Strategy`, whose ``active_classes()`` says which output
units training uses (the ``[train] logits`` option) and whose model takes ``ids``.

The rehearsal methods, replay (ER), DER++ (Buzzega et al. 2020) and A-GEM (Chaudhry et al.
2019), share one buffer of positions into the stream's tensors (``replay.TensorBuffer``):
each memory batch is one gather, and a checkpointed buffer is a few kilobytes.
"""

from comet_cl.methods.agem import AGEMPlugin
from comet_cl.methods.classes import classes_seen, renumber, restrict_to
from comet_cl.methods.der import DERPlugin
from comet_cl.methods.ewc import EWC, fisher_diagonal
from comet_cl.methods.lwf import LwF, distillation_loss
from comet_cl.methods.replay import ReplayPlugin, TensorBuffer
from comet_cl.methods.si import SI

__all__ = ["EWC", "SI", "LwF", "ReplayPlugin", "DERPlugin", "AGEMPlugin", "TensorBuffer",
           "fisher_diagonal", "distillation_loss", "classes_seen", "restrict_to", "renumber"]
