"""Strategies by name: a preset (TOML; the packaged ones under ``comet_cl/presets/``) names a
method and a model variant.

A strategy is a *method* (how training is protected against forgetting: Avalanche's own
plugins for EWC, SI, LwF and replay, or joint training) applied to a *model variant* (dense,
COMET, SMoE, ...). So ``comet`` is ``naive`` on a COMET model and ``comet-ewc`` is ``ewc`` on a
COMET model: adding a strategy is dropping a TOML file, adding a method is one entry in
``METHODS``.

Every strategy runs on :class:`Strategy` (or :class:`JointStrategy`), Avalanche's
``SupervisedTemplate`` with two changes: minibatches come straight from tensors
(``comet_cl.loaders``), and the model is called as ``model(x, ids=sample_ids)`` so COMET can
reuse cached masks and the Bernoulli baseline can key its masks. Test-time evaluation never
passes a task label to the model.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import comet_cl._avalanche  # noqa: F401, I001  (first: Avalanche without its QP-solver warning)
from avalanche.training.plugins import (
    EvaluationPlugin,
    EWCPlugin,
    LwFPlugin,
    ReplayPlugin,
    SupervisedPlugin,
    SynapticIntelligencePlugin,
)
from avalanche.training.supervised import JointTraining
from avalanche.training.templates import SupervisedTemplate

from comet_cl.config import (  # noqa: F401  (preset files are found and read by config)
    PRESETS_DIR,
    ConfigError,
    available_presets,
    check_keys,
    closest,
    preset_dirs,
    preset_file,
    read_preset,
)
from comet_cl.loaders import tensor_batches

# The suite records its own metrics (comet_cl.recorder): Avalanche's evaluator runs without
# loggers on purpose.
warnings.filterwarnings("ignore", "No loggers specified", UserWarning, "avalanche")



def _copy_flat(tensors, target) -> None:
    for name, t in tensors:
        if t is not None:
            target[name].data = t.detach().flatten().to("cpu", copy=True)


# Avalanche 0.6's SI snapshots weights and gradients with `.detach().cpu().flatten()`: on a
# CPU that is a view of the live parameter, so the "old" weights, the "new" ones and the
# anchor all move with training, the path integral is 0 and the penalty is exactly 0 (SI
# trained identically to naive here). Its helpers are called by class name, so the fix has
# to replace them on the class; copying makes them right on every device.
SynapticIntelligencePlugin.extract_weights = staticmethod(
    lambda model, target, excluded: _copy_flat(
        SynapticIntelligencePlugin.allowed_parameters(model, excluded), target))
SynapticIntelligencePlugin.extract_grad = staticmethod(
    lambda model, target, excluded: _copy_flat(
        [(n, p.grad) for n, p in SynapticIntelligencePlugin.allowed_parameters(model, excluded)],
        target))

class _Replay(ReplayPlugin):
    """Avalanche's ReplayPlugin, updating its buffer through the buffer's current API
    (``post_adapt``): the deprecated ``update`` it calls re-arms its own warning every time."""

    def after_training_exp(self, strategy, **kwargs):
        self.storage_policy.post_adapt(strategy, strategy.experience)


def _replay(mem_size: int = 500) -> ReplayPlugin:
    """Experience replay: an experience-balanced buffer of ``mem_size`` samples, each
    minibatch joined by one of the same size drawn from the buffer."""
    return _Replay(mem_size=mem_size)


@dataclass(frozen=True)
class Method:
    """What a method declares about itself, so that no other module compares method names.

    ``factory`` builds the method's plugin from the preset's ``[params]`` (its keyword
    arguments are the only accepted params); None for methods that train without one.
    ``template`` is the training loop: ``"supervised"`` trains the experiences one after
    another, ``"joint"`` trains once on the whole stream (the offline upper bound).
    """

    factory: Callable[..., SupervisedPlugin] | None = None
    template: str = "supervised"

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown template '{self.template}' (known: {', '.join(TEMPLATES)})")

    @property
    def is_joint(self) -> bool:
        """Trains once on all experiences: one phase, one row of R, only ACC is defined."""
        return self.template == "joint"

    @property
    def records_curves(self) -> bool:
        """Learning curves need an experience-by-experience stream."""
        return not self.is_joint

    def params(self) -> set[str]:
        return set(inspect.signature(self.factory).parameters) if self.factory else set()

    def plugins(self, params: dict) -> list[SupervisedPlugin]:
        return [self.factory(**params)] if self.factory else []


TEMPLATES = ("supervised", "joint")

# method name -> what it trains with. Adding a method is one entry here.
METHODS: dict[str, Method] = {
    "naive": Method(),
    "joint": Method(template="joint"),
    "ewc": Method(EWCPlugin),
    "si": Method(SynapticIntelligencePlugin),
    "lwf": Method(LwFPlugin),
    "replay": Method(_replay),
}


def method_of(preset: "Preset") -> Method:
    """The registry entry of ``preset``'s method (validated when the preset was loaded)."""
    return METHODS[preset.method]


@dataclass(frozen=True)
class Preset:
    """A strategy's name, its method, the model variant it trains and its hyperparameters."""

    name: str
    method: str
    model: str = "dense"
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)  # overrides of the suite's [train] table
    description: str = ""
    source: str = ""  # where the hyperparameters come from

    def resolved(self) -> dict:
        return {"name": self.name, "method": self.method, "model": self.model,
                "params": dict(self.params), "train": dict(self.train)}


def load_preset(name: str, extra: Path | None = None) -> Preset:
    path = preset_file(name, extra)
    preset = Preset(name=name, **read_preset(path))
    validate_preset(preset, path)
    return preset


def validate_preset(preset: Preset, where) -> None:
    """Unknown methods and hyperparameters fail here, before any training starts."""
    if preset.method not in METHODS:
        raise ConfigError(f"{where}: unknown method '{preset.method}'"
                          f"{closest(preset.method, METHODS)} (known: {', '.join(METHODS)})")
    check_keys(preset.params, METHODS[preset.method].params(), where, "params")


def method_plugins(preset: Preset) -> list[SupervisedPlugin]:
    return method_of(preset).plugins(preset.params)


class TensorLoaderMixin:
    """Fast tensor minibatches and sample ids for any Avalanche supervised template."""

    shuffle_seed: int = 0
    pending_optimizer_state: dict | None = None
    train_iterations: int | None = None  # minibatch updates per experience (None: epochs)

    def iterations_now(self) -> int | None:
        """The minibatch budget of the training phase about to start."""
        return self.train_iterations

    def make_train_dataloader(self, shuffle=True, **kwargs):
        # One shuffle stream per experience, fixed by the run seed: a resumed run draws the
        # same minibatches as an uninterrupted one.
        seed = self.shuffle_seed * 1_000_003 + self.clock.train_exp_counter
        loader = tensor_batches(self.adapted_dataset, self.train_mb_size, shuffle=shuffle,
                                seed=seed, device=self.device, n_batches=self.iterations_now())
        if loader is None:
            return super().make_train_dataloader(shuffle=shuffle, **kwargs)
        self.dataloader = loader

    def make_eval_dataloader(self, **kwargs):
        loader = tensor_batches(self.adapted_dataset, self.eval_mb_size, shuffle=False,
                                device=self.device)
        if loader is None:
            return super().make_eval_dataloader(**kwargs)
        self.dataloader = loader

    def forward(self):
        ids = self.mbatch[2] if len(self.mbatch) == 4 else None
        return self.model(self.mb_x, ids=ids)

    def check_model_and_optimizer(self, **kwargs):
        # Avalanche resets the optimizer the first time a strategy object trains; a resumed
        # run puts back the optimizer state (momentum, ...) saved at the experience boundary.
        super().check_model_and_optimizer(**kwargs)
        if self.pending_optimizer_state is not None:
            self.optimizer.load_state_dict(self.pending_optimizer_state)
            self.pending_optimizer_state = None


class Strategy(TensorLoaderMixin, SupervisedTemplate):
    """Avalanche's SupervisedTemplate on tensor minibatches."""


class JointStrategy(TensorLoaderMixin, JointTraining):
    """Avalanche's JointTraining (all experiences at once: the upper bound) on tensor minibatches.

    With an iterations budget it makes ``iterations x experiences`` updates on the union: the
    same number of updates as the sequential runs it bounds."""

    def iterations_now(self) -> int | None:
        n = self.train_iterations
        return None if n is None else n * len(self._experiences)


OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def make_optimizer(model: torch.nn.Module, train: dict) -> torch.optim.Optimizer:
    kind = train.get("optimizer", "sgd")
    if kind not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{kind}'{closest(kind, OPTIMIZERS)}")
    kwargs = {"lr": train["lr"], "weight_decay": train.get("weight_decay", 0.0)}
    if kind == "sgd":
        kwargs["momentum"] = train.get("momentum", 0.0)
    elif train.get("betas") is not None:
        kwargs["betas"] = tuple(train["betas"])
    return OPTIMIZERS[kind](model.parameters(), **kwargs)


def build_strategy(preset: Preset, model: torch.nn.Module, *, train: dict, eval_batch_size: int,
                   device, seed: int, plugins: list[SupervisedPlugin], evaluator=None):
    """The Avalanche strategy for ``preset`` on ``model``. ``plugins`` are the method's own
    (from :func:`method_plugins`, or restored from a checkpoint) plus the run's recorders;
    ``evaluator``: Avalanche's, with loggers (``comet_cl.loggers``), else a silent one."""
    template = JointStrategy if method_of(preset).is_joint else Strategy
    strategy = template(
        model=model,
        optimizer=make_optimizer(model, train),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=train["batch_size"],
        # an iterations budget is one pass over a loader of exactly that many minibatches
        train_epochs=1 if train.get("iterations") else train["epochs"],
        eval_mb_size=eval_batch_size,
        device=device,
        plugins=plugins,
        evaluator=evaluator or EvaluationPlugin(loggers=[]),
    )
    strategy.shuffle_seed = seed
    strategy.train_iterations = train.get("iterations")
    return strategy
