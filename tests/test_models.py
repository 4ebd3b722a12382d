"""Model factory, variants and the SMoE baseline, trained a few steps on real MNIST / CIFAR-10."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from comet_cl.data import load
from comet_cl.models import MODELS, VARIANTS, SMoEAuxLossPlugin, build_model
from comet_cl.models.gates import hash64
from comet_cl.models.smoe import SMoEGate
from comet_cl.streams import NORMALIZATION
from conftest import require_data

SHAPES = {"mlp": (1, 28, 28), "conv": (3, 32, 32)}
DATA = {"mlp": "mnist", "conv": "cifar10"}
SMALL = {"mlp": [64, 64], "conv": [16, 32, 64]}


@functools.cache
def real(name: str, n: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First n normalised training images of a dataset [n, C, H, W], labels, sample ids
    (the test skips, saying why, where the command would not find the dataset)."""
    require_data(name)
    x, y = load(name)[:2]
    x = x[:n].float().div(255).view(n, -1, *x.shape[-2:])
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORMALIZATION[name])
    return (x - mean) / std, y[:n], torch.arange(n)


def build(arch: str, variant: str, **kw) -> torch.nn.Module:
    kw.setdefault("widths", SMALL[arch])
    return build_model(arch, variant, in_shape=SHAPES[arch], n_classes=10, **kw)


def test_bad_names_suggest_the_closest():
    with pytest.raises(ValueError, match="'mlp'"):
        build_model("mpl", "dense", in_shape=(1, 28, 28), n_classes=10)
    with pytest.raises(ValueError, match="'comet'"):
        build("mlp", "comte")
    with pytest.raises(ValueError, match="'relu'"):
        build("conv", "dense", activation="rleu")
    with pytest.raises(TypeError, match="top_k"):
        build("mlp", "comet", top_k=2)
    with pytest.raises(TypeError, match="bogus"):
        build("mlp", "smoe", top_k=2, bogus=1)
    with pytest.raises(ValueError, match="p_k"):
        build("mlp", "comet", p_k=0.0)
    with pytest.raises(ValueError, match="widths"):
        build("conv", "dense", widths=[])
    assert set(MODELS) == {"mlp", "conv"}
    assert set(VARIANTS) == {"dense", "comet", "smaller", "dropout", "topk", "bernoulli", "smoe"}


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_spec_shapes_and_p_k_one_comet_is_dense(device, arch):
    x = torch.randn(16, *SHAPES[arch], generator=torch.Generator().manual_seed(0)).to(device)
    models = {}
    for variant in ("dense", "comet"):
        torch.manual_seed(0)  # the backbone draws from the global RNG only
        models[variant] = build(arch, variant, widths=None, p_k=1.0).to(device).eval()
    dense, comet = models["dense"], models["comet"]
    assert all(torch.equal(a, b) for a, b in zip(dense.parameters(), comet.parameters()))
    assert dense(x).shape == (16, 10)
    assert torch.equal(dense(x), comet(x))
    widths = [1000, 1000] if arch == "mlp" else [32, 64, 128, 256]
    assert [m.shape[1] for m in comet.masks(x)] == widths
    assert comet.p_k == 1.0 and comet.router is not None and dense.router is None


def test_smaller_variant_shrinks_widths():
    model = build("mlp", "smaller", widths=[1000, 300], p_k=0.1)
    assert [b.n_units for b in model.blocks] == [100, 30]


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_learns_on_real_data(arch, variant):
    """30 Adam steps on 256 real images lower the training loss (measured in train mode, the
    loss each variant optimises, with the same dropout / gate noise before and after)."""
    x, y, ids = real(DATA[arch])
    torch.manual_seed(0)
    model = build(arch, variant, p_k=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def train_loss() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return F.cross_entropy(model(x, ids), y).item()

    before = train_loss()
    for step in range(30):
        rows = slice(64 * (step % 4), 64 * (step % 4 + 1))
        loss = F.cross_entropy(model(x[rows], ids[rows]), y[rows])
        if model.aux_loss is not None:
            loss = loss + model.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert train_loss() < 0.98 * before


def test_topk_and_dropout_gates():
    x, _, ids = real("mnist")
    topk = build("mlp", "topk", p_k=0.25)
    assert all((m.sum(-1) == 16).all() for m in topk.masks(x))
    dropout = build("mlp", "dropout", p_k=0.25)
    kept = dropout.train().masks(x)[0].float().mean().item()
    assert abs(kept - 0.25) < 0.03
    assert all(m.all() for m in dropout.eval().masks(x))  # none at test
    torch.manual_seed(0)
    dense = build("mlp", "dense")
    dropout.load_state_dict(dense.state_dict())
    assert torch.equal(dropout.eval()(x), dense.eval()(x))


def test_bernoulli_masks_are_a_fixed_hash_of_the_id(device):
    x, _, ids = real("mnist")
    x, ids = x.to(device), ids.to(device)
    model = build("mlp", "bernoulli", p_k=0.3, widths=[256, 256], router_seed=4).to(device)
    masks = model.masks(x, ids)
    assert abs(torch.cat(masks).float().mean().item() - 0.3) < 0.01
    again = model.masks(x.flip(0), ids.flip(0))
    assert all(torch.equal(a, b.flip(0)) for a, b in zip(masks, again))  # per id, not per row
    assert not torch.equal(masks[0], masks[1])  # per layer
    other = build("mlp", "bernoulli", p_k=0.3, widths=[256, 256], router_seed=5).to(device)
    assert not torch.equal(masks[0], other.masks(x, ids)[0])  # per seed
    cpu = build("mlp", "bernoulli", p_k=0.3, widths=[256, 256], router_seed=4)
    assert torch.equal(masks[0].cpu(), cpu.masks(x.cpu(), ids.cpu())[0])  # any device
    with pytest.raises(ValueError, match="ids"):
        model(x)
    assert all(m.all() for m in model.eval().masks(x))  # none at test


def test_hash64_is_splitmix64():
    def splitmix64(v: int) -> int:
        m = (1 << 64) - 1
        z = (v + 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        z ^= z >> 31
        return z - (1 << 64) if z >> 63 else z

    values = [0, 1, 12345, -1, 2**62, -(2**63)]
    assert hash64(torch.tensor(values)).tolist() == [splitmix64(v & ((1 << 64) - 1))
                                                      for v in values]


def test_smoe_gate_learns_balance_loss_and_param_count():
    x, y, ids = real("mnist")
    for p_k, experts in ((0.1, 10), (0.5, 2), (1 / 3, 3), (0.9, 1)):
        dense = sum(p.numel() for p in build("mlp", "dense", widths=[1000, 1000]).parameters())
        smoe = build("mlp", "smoe", widths=[1000, 1000], p_k=p_k)
        assert smoe.blocks[0].gate.n_experts == experts
        assert abs(sum(p.numel() for p in smoe.parameters()) / dense - 1) < 0.03
    for top_k in (1, 2):
        torch.manual_seed(0)
        model = build("mlp", "smoe", p_k=0.25, top_k=top_k)
        gates = [b.gate for b in model.blocks]
        before = [g.w_gate.detach().clone() for g in gates]
        loss = F.cross_entropy(model(x, ids), y)
        aux = model.aux_loss
        assert aux.dim() == 0 and aux.item() > 0 and aux.requires_grad
        torch.optim.SGD(model.parameters(), lr=0.1).zero_grad()
        loss.backward()  # the task loss alone must reach the gate
        assert all(g.w_gate.grad.abs().sum() > 0 for g in gates)
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        assert all(not torch.equal(g.w_gate, b) for g, b in zip(gates, before))
        active = model.eval().masks(x)[0].float().mean().item()
        assert active == pytest.approx(top_k * 0.25)


def test_smoe_load_estimate_is_smooth_and_weights_sum_right():
    gate = SMoEGate(in_features=8, n_units=12, n_experts=4, top_k=2)
    with torch.no_grad():
        gate.w_gate.normal_()
    x = torch.randn(32, 8)
    scale = gate.train().scale(x=x)
    assert scale.shape == (32, 12) and ((scale > 0).sum(-1) == 6).all()  # 2 experts x 3 units
    g = scale[:, ::3]
    assert torch.allclose(g.sum(-1), torch.ones(32))  # top_k >= 2: renormalised over kept
    gate.aux_loss.backward()
    assert gate.w_noise.grad.abs().sum() > 0  # the smooth load estimate trains the noise


def test_aux_loss_plugin_adds_the_balance_loss():
    model = build("mlp", "smoe", p_k=0.5)
    model(*real("mnist")[::2])
    strategy = SimpleNamespace(model=model, loss=torch.tensor(1.0))
    SMoEAuxLossPlugin().before_backward(strategy)
    assert strategy.loss.item() == pytest.approx(1.0 + model.aux_loss.item())
    plain = SimpleNamespace(model=build("mlp", "dense"), loss=torch.tensor(1.0))
    SMoEAuxLossPlugin().before_backward(plain)
    assert plain.loss.item() == 1.0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_run_on_device_after_to(device, variant):
    x, ids = torch.randn(8, *SHAPES["conv"], generator=torch.Generator().manual_seed(0)), torch.arange(8)
    model = build("conv", variant, mask_cache=True).to(device)
    out = model(x.to(device), ids.to(device))
    assert out.shape == (8, 10) and out.device.type == torch.device(device).type
