"""COMET's router, mask cache and mask diagnostics, on a real MNIST slice."""

from __future__ import annotations

import copy
import functools
import io

import pytest
import torch
import torch.nn.functional as F

from comet_cl.data import load
from comet_cl.diagnostics import dead_units, mask_overlap, task_overlap_matrix
from comet_cl.models import build_model
from comet_cl.routing import Router, kwta, n_kept
from comet_cl.streams import NORMALIZATION

MNIST = dict(in_shape=(1, 28, 28), n_classes=10)


@functools.cache
def mnist(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """First n normalised MNIST training images [n, 1, 28, 28] and labels."""
    x, y = load("mnist")[:2]
    (mean,), (std,) = NORMALIZATION["mnist"]
    return ((x[:n].float() / 255 - mean) / std).unsqueeze(1), y[:n]


def comet(p_k: float = 0.5, widths=(64, 64), **kw) -> torch.nn.Module:
    return build_model("mlp", "comet", **MNIST, widths=list(widths), p_k=p_k, **kw)


def test_kwta_keeps_exactly_k_even_with_ties(device):
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [3.0, 2.0, 2.0, 2.0, 2.0]], device=device)
    mask = kwta(scores, 2)
    assert mask.dtype == torch.bool and mask.sum(-1).tolist() == [2, 2]
    assert not mask[0, 4] and mask[1, 0]  # winners are among the largest


@pytest.mark.parametrize("p_k", [0.1, 0.5, 0.9])
def test_exactly_k_units_per_sample_and_layer(device, p_k):
    x = mnist()[0][:128].to(device)
    mlp = build_model("mlp", "comet", **MNIST, widths=[1000, 1000], p_k=p_k).to(device)
    conv = build_model("conv", "comet", **MNIST, p_k=p_k).to(device)  # channels, then FC
    for model, widths in ((mlp, [1000, 1000]), (conv, [32, 64, 128, 256])):
        masks = model.masks(x)
        assert [m.shape for m in masks] == [(128, n) for n in widths]
        for m, n in zip(masks, widths):
            assert (m.sum(-1) == n_kept(n, p_k)).all()


def test_router_is_fixed_buffers_from_its_own_generator():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    router = Router([(100, 784), (50, 100)], p_k=0.5, seed=7)
    assert torch.equal(torch.rand(4), expected)  # global RNG untouched
    model = comet()
    assert not any(n.startswith("router") for n, _ in model.named_parameters())
    weights = [b for n, b in model.named_buffers() if n.startswith("router")]
    assert len(weights) == 2 and not any(w.requires_grad for w in weights)
    for v, fan_in in zip((l.weight for l in router.layers), (784, 100)):
        bound = fan_in ** -0.5
        assert v.abs().max() <= bound and v.abs().max() > 0.95 * bound  # uniform ±1/sqrt(fan_in)
    assert torch.equal(Router([(100, 784)], 0.5, seed=7).layers[0].weight, router.layers[0].weight)


def test_router_restored_by_load_state_dict():
    x = mnist()[0][:64]
    model, other = comet(router_seed=1), comet(router_seed=2)
    assert any(not torch.equal(a, b) for a, b in zip(model.masks(x), other.masks(x)))
    other.load_state_dict(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.masks(x), other.masks(x)))


def test_masks_unchanged_by_training_and_mode():
    x, y = mnist()
    model = comet()
    before = model.masks(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for xb, yb in zip(x.split(64), y.split(64)):
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    for train in (True, False):
        model.train(train)
        assert all(torch.equal(a, b) for a, b in zip(before, model.masks(x)))


def test_single_sample_step_only_updates_active_units():
    x, y = mnist()
    x, y = x[:1], y[:1]
    torch.manual_seed(0)
    model = comet(p_k=0.3)
    masks = model.masks(x)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pre = []  # pre-activations: an active ReLU unit at <= 0 gets no gradient either
    hooks = [b.layer.register_forward_hook(lambda m, i, o: pre.append(o.detach()))
             for b in model.blocks]
    F.cross_entropy(model(x), y).backward()
    for h in hooks:
        h.remove()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    for l, (mask, p) in enumerate(zip(masks, pre)):
        changed_rows = (model.blocks[l].layer.weight != before[f"blocks.{l}.layer.weight"]).any(1)
        changed_bias = model.blocks[l].layer.bias != before[f"blocks.{l}.layer.bias"]
        learning = mask[0] & (p[0] > 0)
        assert torch.equal(changed_rows, learning) and torch.equal(changed_bias, learning)
        assert learning.sum() > 0.5 * mask.sum()
        out = model.blocks[l + 1].layer if l + 1 < len(masks) else model.head
        name = f"blocks.{l + 1}.layer.weight" if l + 1 < len(masks) else "head.weight"
        assert not (out.weight != before[name])[:, ~mask[0]].any()  # outgoing weights too


def test_overlap_similar_inputs_far_above_unrelated_near_chance():
    x = mnist()[0][:256]
    g = torch.Generator().manual_seed(0)
    noisy = x + 0.1 * torch.randn(x.shape, generator=g)
    unrelated = x.flatten(1)[:, torch.randperm(784, generator=g)].view_as(x)  # pixels shuffled
    for p_k in (0.1, 0.5):
        model = comet(p_k, widths=(1000, 1000))
        near = mask_overlap(model.masks(x), model.masks(noisy))
        far = mask_overlap(model.masks(x), model.masks(unrelated))
        assert min(near) > 0.75 and all(n - f > 0.3 for n, f in zip(near, far))
        assert abs(far[0] - p_k) < 0.03  # chance level at the first layer
    assert mask_overlap(model.masks(x), model.masks(x)) == [1.0, 1.0]


def test_mask_cache_matches_router_and_hits(device):
    x = mnist()[0][:96].to(device)
    ids = torch.arange(1000, 1096, device=device)
    cached, plain = comet(mask_cache=True).to(device), comet().to(device)
    plain.load_state_dict(cached.state_dict())
    assert set(cached.state_dict()) == set(plain.state_dict())  # cache not in state_dict
    for rows in (slice(0, 32), slice(16, 96), slice(0, 96)):  # partly, then fully cached
        for a, b in zip(cached.masks(x[rows], ids[rows]), plain.masks(x[rows])):
            assert torch.equal(a, b)
    cache = cached.router.cache
    assert (cache.misses, cache.hits) == (96, 16 + 96)
    dup = torch.tensor([5, 7, 5, 9], device=device)  # repeated new ids in one batch
    assert torch.equal(cached(x[[0, 1, 0, 2]], dup + 2000), plain(x[[0, 1, 0, 2]]))
    assert (cache.misses, cache.used) == (96 + 4, 96 + 3)
    assert cache.slot_of_id.device.type == torch.device(device).type
    cached.load_state_dict(comet(router_seed=5).state_dict())  # new router: cache dropped
    assert cache.used == 0
    buffer = io.BytesIO()
    torch.save(cached, buffer)  # whole-model checkpoints still pickle
    buffer.seek(0)
    assert torch.load(buffer, weights_only=False).router.cache.used == 0
    assert all(torch.equal(a, b) for a, b in zip(cached.masks(x, ids),
                                                 comet(router_seed=5).masks(x)))
    # a full cache is not copied along (LwF deep-copies the model; checkpoints pickle it)
    assert cache.used == 96
    copied = copy.deepcopy(cached)
    assert copied.router.cache.used == 0 and len(copied.router.cache.stores()[0]) == 0
    assert torch.equal(copied(x, ids), cached(x, ids))


def test_task_overlap_matrix_equals_pairwise_mean_and_dead_units():
    x, y = mnist()
    model = comet(0.2, widths=(32, 32))
    sets = [x[y == 1], x[y == 2], x[y == 3]]
    matrix = task_overlap_matrix(model, sets, batch_size=40)
    masks = [model.masks(s) for s in sets]
    k = [n_kept(32, 0.2)] * 2
    for l in range(2):
        for i in range(3):
            for j in range(3):
                a, b = masks[i][l].float(), masks[j][l].float()
                brute = (a @ b.T).mean() / k[l]  # every pair (a from i, b from j)
                assert matrix[l, i, j].item() == pytest.approx(brute.item(), abs=1e-6)
    everyone = model.masks(x)
    assert dead_units(model, x, batch_size=100) == [int((~m.any(0)).sum()) for m in everyone]
    dense = build_model("mlp", "dense", **MNIST, widths=[32, 32])
    assert dead_units(dense, x) == [0, 0]
    assert torch.allclose(task_overlap_matrix(dense, sets), torch.ones(2, 3, 3))


def test_k_round_and_floor_rules():
    """round (this project) and floor (the paper's code) differ only off whole numbers;
    floating point must not push a whole p_k * N below itself under floor."""
    assert [n_kept(25, 0.1), n_kept(25, 0.1, "floor")] == [3, 2]
    assert [n_kept(10, 0.3, "floor"), n_kept(1000, 0.5, "floor"), n_kept(3, 0.1, "floor")] == [3, 500, 1]
    assert n_kept(5, 0.5) == 3 and n_kept(5, 0.5, "floor") == 2
    with pytest.raises(ValueError, match="k_rule must be one of"):
        n_kept(10, 0.5, "ceil")
    r = Router([(25, 4), (25, 25)], 0.1, seed=0, k_rule="floor")
    assert r.ks == [2, 2] and all(m.sum(-1).eq(2).all() for m in r.compute(torch.randn(7, 4)))
