"""The Avalanche plugin that records what the metrics in ``comet_cl.metrics`` need.

During a run it keeps: each evaluation's accuracy per test experience (the runner turns them
into R0 and the rows of R), the learning curve of every experience (accuracy on a fixed,
seeded subset of its test set after b = 0..beta minibatches, then every ``curve_stride``),
and the training wall time of every experience, measured without the curve probes.
"""

from __future__ import annotations

import time

import torch
import comet_cl._avalanche  # noqa: F401, I001  (first: Avalanche without its QP-solver warning)
from avalanche.core import SupervisedPlugin

from comet_cl.diagnostics import eval_mode
from comet_cl.loaders import tensor_batches


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader) -> float:
    """Top-1 accuracy of ``model`` in eval mode over a tensor loader; restores the mode."""
    correct = total = 0
    with eval_mode(model):
        for x, y, ids, _ in loader:
            correct += (model(x, ids=ids).argmax(1) == y).sum().item()
            total += len(y)
    return correct / total


class RunRecorder(SupervisedPlugin):
    def __init__(self, test_stream, *, beta: int, curve_subset: int, curve_stride: int,
                 batch_size: int, seed: int, record_curves: bool = True):
        super().__init__()
        self.test_stream = test_stream
        self.beta, self.curve_stride = beta, curve_stride
        self.curve_subset, self.batch_size, self.seed = curve_subset, batch_size, seed
        self.record_curves = record_curves
        self.curves: list[list[tuple[int, float]]] = []
        self.train_time: list[float] = []
        self._accs: dict[int, list[int]] = {}
        self._resume: dict | None = None  # the phase in progress at a mid-phase checkpoint

    # ---- evaluation: accuracy per test experience --------------------------------------
    def before_eval(self, strategy, **kwargs):
        self._accs = {}

    def after_eval_iteration(self, strategy, **kwargs):
        counts = self._accs.setdefault(strategy.experience.current_experience, [0, 0])
        counts[0] += (strategy.mb_output.argmax(1) == strategy.mb_y).sum().item()
        counts[1] += len(strategy.mb_y)

    def evaluate(self, strategy) -> list[float]:
        """Accuracy on every test experience, in order (one row of R)."""
        strategy.eval(self.test_stream)
        return [self._accs[j][0] / self._accs[j][1] for j in range(len(self.test_stream))]

    # ---- training: learning curves and wall time ---------------------------------------
    def probe_loader(self, k: int, device):
        """The fixed, seeded subset of experience k's test set that the curves evaluate."""
        data = self.test_stream[k].dataset
        g = torch.Generator().manual_seed(self.seed * 7919 + k)
        keep = torch.randperm(len(data), generator=g)[: self.curve_subset].sort().values
        return tensor_batches(data.subset(keep.tolist()), self.batch_size, shuffle=False,
                              device=device)

    def _probe(self, strategy) -> None:
        start = time.perf_counter()
        self.curves[-1].append((self._step, accuracy(strategy.model, self._loader)))
        self._probe_time += time.perf_counter() - start

    def before_training_exp(self, strategy, **kwargs):
        self._start, self._probe_time, self._step = time.perf_counter(), 0.0, 0
        if self.record_curves:
            self._loader = self.probe_loader(strategy.experience.current_experience,
                                             strategy.device)
        if self._resume is not None:  # the phase goes on: its curve and clock continue
            self._step = self._resume["step"]
            self._start -= self._resume["train_seconds"]
            self._resume = None
        elif self.record_curves:
            self.curves.append([])
            self._probe(strategy)

    def after_training_iteration(self, strategy, **kwargs):
        self._step += 1
        if self.record_curves and (self._step <= self.beta or
                                   self._step % self.curve_stride == 0):
            self._probe(strategy)

    @property
    def phase_step(self) -> int:
        """Minibatches trained so far in the phase in progress (a resumed one's included)."""
        return self._step

    def after_training_exp(self, strategy, **kwargs):
        self.train_time.append(time.perf_counter() - self._start - self._probe_time)
        self._loader = None

    def state_dict(self, *, mid_phase: bool = False) -> dict:
        """What a checkpoint keeps; ``mid_phase``: also the phase in progress (its minibatch
        count and training seconds so far; its curve is the last of ``curves``)."""
        state = {"curves": [list(c) for c in self.curves], "train_time": list(self.train_time)}
        if mid_phase:
            state["phase"] = {"step": self.phase_step, "train_seconds":
                              time.perf_counter() - self._start - self._probe_time}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.curves = [list(map(tuple, c)) for c in state["curves"]]
        self.train_time = list(state["train_time"])
        self._resume = state.get("phase")
