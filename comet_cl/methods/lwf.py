"""Learning without Forgetting (Li & Hoiem 2017) as van de Ven & Tolias 2019's code runs it:
"current" replay with soft targets (``train.py`` / ``encoder.train_a_batch`` at 9945f84).

From the second experience on, the model as it was at the end of the previous experience
(the teacher, in eval mode, forward in ``no_grad``) scores the current minibatch. Its scores
cover only the classes seen BEFORE this experience (his ``scores_[:, :classes so far]``; on a
domain-incremental stream that is every class). The loss is

    rnt * CE(current) + (1 - rnt) * T^2 * KD,   rnt = 1 / t  (t = 1-based experience index)

where KD is the cross-entropy between the teacher's softmax at temperature T and the model's
log-softmax at T over the units it trains on (the active classes under ``[train] logits =
"seen"``, else all), the teacher's distribution padded with zeros on the other units (his
``utils.loss_fn_kd``). His code runs the model a second time on the same inputs for the replay
term; here the minibatch's own output is reused (identical except for stochastic layers).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor

from comet_cl.methods.classes import classes_seen


def distillation_loss(student: Tensor, teacher: Tensor, teacher_columns: list[int],
                      student_columns: list[int] | None, temperature: float) -> Tensor:
    """T^2 * mean over the batch of -sum_c p_teacher(c) log p_student(c), both at temperature
    T; ``teacher`` holds the scores of ``teacher_columns`` (class ids), ``student`` all the
    model's outputs, of which ``student_columns`` (None: all) enter its softmax."""
    cols = list(range(student.shape[1])) if student_columns is None else list(student_columns)
    where = {c: i for i, c in enumerate(cols)}
    missing = [c for c in teacher_columns if c not in where]
    if missing:
        raise ValueError(f"distillation: teacher classes {missing} are not among the "
                         f"student's active classes")
    s = student.index_select(1, torch.as_tensor(cols, device=student.device))
    log_p = F.log_softmax(s / temperature, dim=1)
    target = torch.zeros_like(s)
    target[:, [where[c] for c in teacher_columns]] = F.softmax(teacher / temperature, dim=1)
    return -(target * log_p).sum(1).mean() * temperature ** 2


class LwF(SupervisedPlugin):
    """LwF with distillation temperature ``temperature`` (T = 2 in van de Ven & Tolias)."""

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"LwF temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.teacher: torch.nn.Module | None = None  # pickles without COMET's mask cache
        self._teacher_classes: list[int] = []
        self._rnt = 1.0

    def before_training_exp(self, strategy, **kwargs):
        self._rnt = 1.0 / (strategy.experience.current_experience + 1)
        self._teacher_classes = classes_seen(strategy.experience, include_current=False)

    def before_backward(self, strategy, **kwargs):
        if self.teacher is None or not self._teacher_classes:
            return
        ids = strategy.mbatch[2] if len(strategy.mbatch) == 4 else None
        with torch.no_grad():
            scores = self.teacher(strategy.mb_x, ids=ids)
            scores = scores[:, torch.as_tensor(self._teacher_classes, device=scores.device)]
        active = strategy.active_classes() if hasattr(strategy, "active_classes") else None
        kd = distillation_loss(strategy.mb_output, scores, self._teacher_classes, active,
                               self.temperature)
        ce = strategy.criterion()  # the term the template added: reweighted to rnt * CE
        strategy.loss += (self._rnt - 1.0) * ce + (1.0 - self._rnt) * kd

    def after_training_exp(self, strategy, **kwargs):
        self.teacher = copy.deepcopy(strategy.model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
