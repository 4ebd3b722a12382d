"""Strategies by name: a preset (TOML; the packaged ones under ``comet_cl/presets/``) names a
method and a model variant.

A strategy is a *method* (how training is protected against forgetting: comet_cl.methods'
EWC, SI and LwF, which follow van de Ven & Tolias 2019's code, replay, DER++ and A-GEM on the
tensor path, or joint training) applied to a *model variant* (dense,
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
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
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
from comet_cl.methods import (EWC, SI, AGEMPlugin, DERPlugin, LwF, ReplayPlugin, classes_seen,
                              restrict_to)

# The suite records its own metrics (comet_cl.recorder): Avalanche's evaluator runs without
# loggers on purpose.
warnings.filterwarnings("ignore", "No loggers specified", UserWarning, "avalanche")


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
    "ewc": Method(EWC),
    "si": Method(SI),
    "lwf": Method(LwF),
    "replay": Method(ReplayPlugin),
    "derpp": Method(DERPlugin),
    "agem": Method(AGEMPlugin),
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
    # overrides of the suite's [model] table (a strategy entry's own model_config wins); they
    # reach a run's "model" config, so resolved() leaves them out
    model_config: dict = field(default_factory=dict)
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
    # Each method checks its own values when its plugin is made (ranges live with the method
    # that knows them); making one here, cheap and thrown away, refuses a bad value at planning
    # instead of inside a run.
    try:
        METHODS[preset.method].plugins(preset.params)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: params {preset.params}: {e}") from None


def method_plugins(preset: Preset) -> list[SupervisedPlugin]:
    return method_of(preset).plugins(preset.params)


LOGITS = ("all", "seen")


def phase_updates(iterations: int | None, n_experiences: int) -> int | None:
    """Minibatch updates of a training phase over ``n_experiences`` under an iterations budget
    (None: an epochs budget): ``iterations`` per experience, so a joint phase over all of them
    makes as many updates as the sequential runs it bounds."""
    return None if iterations is None else iterations * n_experiences


class TensorLoaderMixin:
    """Fast tensor minibatches and sample ids for any Avalanche supervised template, and the
    ``[train] logits`` option.

    ``logits = "seen"`` trains on the output units of the classes seen so far only (current
    experience included), as van de Ven & Tolias 2019's code does in class-incremental
    streams: the training cross-entropy is a softmax over those units, and the methods
    (EWC's Fisher, LwF's distillation) ask :meth:`active_classes` for the same units. It
    applies to every method, naive included, so comparisons stay fair. Evaluation always
    uses all outputs: at test time the model does not know which classes it was trained on.
    ``"all"`` (the default) trains on every output.
    """

    shuffle_seed: int = 0
    pending_optimizer_state: dict | None = None
    train_iterations: int | None = None  # minibatch updates per experience (None: epochs)
    skip_batches: int = 0  # minibatches of the next phase already trained on (a resumed run)
    logits: str = "all"
    _active: list[int] | None = None

    def iterations_now(self) -> int | None:
        """The minibatch budget of the training phase about to start."""
        return phase_updates(self.train_iterations, 1)

    def _before_training_exp(self, **kwargs):
        # From the stream, not from memory: a resumed run gets the same classes.
        self._active = self._classes_now() if self.logits == "seen" else None
        super()._before_training_exp(**kwargs)

    def _classes_now(self) -> list[int]:
        return classes_seen(self.experience)

    def active_classes(self) -> list[int] | None:
        """The classes whose outputs training uses now; None: all outputs."""
        return self._active if self.is_training else None

    def criterion(self):
        out, y = restrict_to(self.mb_output, self.mb_y, self.active_classes())
        return self._criterion(out, y)

    def make_train_dataloader(self, shuffle=True, **kwargs):
        # One shuffle stream per experience, fixed by the run seed: a resumed run draws the
        # same minibatches as an uninterrupted one.
        seed = self.shuffle_seed * 1_000_003 + self.clock.train_exp_counter
        loader = tensor_batches(self.adapted_dataset, self.train_mb_size, shuffle=shuffle,
                                seed=seed, device=self.device, n_batches=self.iterations_now(),
                                skip=self.skip_batches)
        if loader is None:
            if self.skip_batches:  # never planned: mid-phase checkpoints need tensor loaders
                raise RuntimeError("cannot resume mid-phase on Avalanche's own loader")
            return super().make_train_dataloader(shuffle=shuffle, **kwargs)
        self.skip_batches = 0
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
        return phase_updates(self.train_iterations, len(self._experiences))

    def _classes_now(self) -> list[int]:
        # Joint training steps through its first experience only, on all of them at once.
        return sorted(set().union(*(classes_seen(e) for e in self._experiences)))


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
    if train.get("fused"):
        kwargs["fused"] = True
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
    strategy.logits = train.get("logits", "all")
    if strategy.logits not in LOGITS:
        raise ConfigError(f"[train] logits = '{strategy.logits}': expected one of "
                          f"{', '.join(LOGITS)}")
    return strategy
