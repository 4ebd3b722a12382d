"""Models of the suite: `build_model(arch, variant, ...)` over the registries MODELS x VARIANTS.

Every model is a `GatedNet`: the same backbone for all variants, which differ only in the gate
of each hidden layer (and COMET's router, and the smaller variant's widths).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from comet_cl.models import conv, mlp  # noqa: F401  (registers the archs)
from comet_cl.models.gates import BernoulliGate, DropoutGate, Gate, RouterGate, TopKGate
from comet_cl.models.net import GatedBlock, GatedNet
from comet_cl.models.registry import MODELS, lookup
from comet_cl.models.smoe import SMoEGate
from comet_cl.routing import Router, n_kept

__all__ = ["MODELS", "VARIANTS", "ACTIVATIONS", "Variant", "GatedNet", "GatedBlock",
           "build_model", "SMoEAuxLossPlugin", "MaskPrecomputePlugin"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,  # the COMET paper's code uses it (the comet-paper preset)
}


def _n_units(layer: nn.Module) -> int:
    return layer.weight.shape[0]


def _dense(l: int, layer: nn.Module, p_k: float, seed: int) -> Gate:
    return Gate()


def _comet(l: int, layer: nn.Module, p_k: float, seed: int, *, k_rule: str = "round") -> Gate:
    """The mask comes from the router (built in build_model); k_rule sets its k per layer:
    "round" (this project's) or "floor" (the paper's code), see routing.n_kept."""
    return RouterGate()


def _dropout(l: int, layer: nn.Module, p_k: float, seed: int) -> Gate:
    return DropoutGate(p_k)


def _topk(l: int, layer: nn.Module, p_k: float, seed: int) -> Gate:
    return TopKGate(n_kept(_n_units(layer), p_k))


def _bernoulli(l: int, layer: nn.Module, p_k: float, seed: int) -> Gate:
    return BernoulliGate(p_k, _n_units(layer), seed, l)


def _smoe(l: int, layer: nn.Module, p_k: float, seed: int, *, top_k: int = 1,
          aux_weight: float = 1e-2) -> Gate:
    """E = max(1, floor(1/p_k)) experts over the layer's units; the gate sees the layer input."""
    n_experts = max(1, int(1 / p_k + 1e-9))  # + 1e-9: 1 / (1/3) must give 3, not 2
    return SMoEGate(layer.weight.shape[1], _n_units(layer), n_experts, top_k, aux_weight)


def _no_plugins() -> list:
    return []


def _smoe_plugins() -> list:
    from comet_cl.models.plugin import SMoEAuxLossPlugin
    return [SMoEAuxLossPlugin()]


def _comet_plugins() -> list:
    from comet_cl.models.plugin import MaskPrecomputePlugin
    return [MaskPrecomputePlugin()]


@dataclass(frozen=True)
class Variant:
    """What a model variant is and what it asks of a run, declared once here so the runner and
    the report never test variant names.

    gate(l, layer, p_k, seed, **options) makes layer l's gate; routed: COMET's router gives the
    masks (a run then records the task x task mask overlap, the report draws it); shrink:
    hidden widths become round(p_k * N); plugins() makes the extra Avalanche training plugins
    the variant needs (SMoE: its balance loss; COMET: its masks computed for a whole
    experience before its first step), fresh for each run, imported lazily because Avalanche
    takes seconds to import.
    """

    gate: Callable[..., Gate]
    routed: bool = False
    shrink: bool = False
    plugins: Callable[[], list] = _no_plugins

    @property
    def options(self) -> set[str]:
        """The variant-specific keyword arguments build_model accepts."""
        params = inspect.signature(self.gate).parameters.values()
        return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


VARIANTS: dict[str, Variant] = {
    "dense": Variant(_dense),
    "comet": Variant(_comet, routed=True, plugins=_comet_plugins),
    "smaller": Variant(_dense, shrink=True),
    "dropout": Variant(_dropout),
    "topk": Variant(_topk),
    "bernoulli": Variant(_bernoulli),
    "smoe": Variant(_smoe, plugins=_smoe_plugins),
}


def build_model(arch: str, variant: str, *, in_shape: tuple[int, ...], n_classes: int,
                widths: list[int] | None = None, p_k: float = 0.5, activation: str = "relu",
                router_seed: int = 0, mask_cache: bool = False, **variant_kwargs) -> GatedNet:
    """Build `arch` ('mlp', 'conv') in `variant` (see VARIANTS).

    The backbone is initialised from the global torch RNG only; COMET's router (and the
    bernoulli masks) from `router_seed` only. `model.p_k` is the configured p_k (dense ignores
    it). mask_cache: COMET caches masks by sample id (ignored by variants without a router).
    variant_kwargs: smoe takes top_k (default 1) and aux_weight (default 1e-2).
    """
    build = lookup(MODELS, arch, "arch")
    spec = lookup(VARIANTS, variant, "variant")
    act = lookup(ACTIVATIONS, activation, "activation")
    n_kept(1, p_k)  # validates p_k
    unknown = sorted(set(variant_kwargs) - spec.options)
    if unknown:
        raise TypeError(f"build_model() got unexpected keyword argument(s) {unknown} for "
                        f"variant {variant!r} (it takes: {sorted(spec.options) or 'none'})")
    widths = list(build.default_widths if widths is None else widths)
    if min(widths, default=0) < 1:
        raise ValueError(f"widths must be a non-empty list of positive ints, got {widths}")
    if spec.shrink:
        widths = [n_kept(n, p_k) for n in widths]
    gate = partial(spec.gate, p_k=p_k, seed=router_seed, **variant_kwargs)
    blocks, head = build(tuple(in_shape), n_classes, widths, act, gate)
    router = None
    if spec.routed:
        router = Router([b.layer.weight.shape for b in blocks], p_k, router_seed,
                        pools=[b.pool for b in blocks], cache=mask_cache,
                        k_rule=variant_kwargs.get("k_rule", "round"))
    return GatedNet(blocks, head, p_k, router)


def __getattr__(name: str):
    """Lazy plugins: importing Avalanche takes seconds, most users never need them."""
    if name in ("SMoEAuxLossPlugin", "MaskPrecomputePlugin"):
        from comet_cl.models import plugin
        return getattr(plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
