"""The fast paths give the same numbers as the plain ones: the threshold k-WTA against topk +
scatter (ties included), masks precomputed for a whole experience against masks computed per
minibatch, and whole runs with the precomputed masks against runs without a cache."""

from __future__ import annotations

import functools

import pytest
import torch

from comet_cl.data import load
from comet_cl.models import VARIANTS, MaskPrecomputePlugin, SMoEAuxLossPlugin, build_model
from comet_cl.contract import iter_stored_runs
from comet_cl.routing import kwta
from comet_cl.runner import run_suite
from comet_cl.strategies import Preset, build_strategy
from comet_cl.streams import NORMALIZATION, make_stream

MNIST = dict(in_shape=(1, 28, 28), n_classes=10)


@functools.cache
def mnist(n: int = 1200) -> torch.Tensor:
    x = load("mnist")[0][:n]
    (mean,), (std,) = NORMALIZATION["mnist"]
    return ((x.float() / 255 - mean) / std).unsqueeze(1)


def topk_scatter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The definition: the k largest by topk, as a bool mask."""
    idx = scores.topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True)


@pytest.mark.parametrize("k", [1, 50, 100, 199])
def test_threshold_kwta_equals_topk_on_router_scores(device, k):
    model = build_model("mlp", "comet", **MNIST, widths=[200, 200])
    scores = model.router.layers[0](mnist()[:256]).to(device)
    assert torch.equal(kwta(scores, k), topk_scatter(scores, k))
    assert kwta(scores, 200).all() and kwta(scores, 500).all()


def test_threshold_kwta_ties_fall_back_to_topk(device):
    scores = mnist()[:64].flatten(1)[:, :300].clone().to(device)  # real rows, some tie-free
    scores[1] = 0.0  # an all-equal row: every unit ties
    scores[2, :10] = scores[2].max() + 1  # ten equal winners for k = 5
    scores[3] = torch.arange(300.0, device=device)
    scores[3, 290:] = 7.0  # the threshold value shared by winners and losers
    for k in (1, 5, 20, 150):
        mask = kwta(scores, k)
        assert (mask.sum(-1) == k).all()
        assert torch.equal(mask, topk_scatter(scores, k))


def test_precomputed_masks_equal_the_per_minibatch_masks():
    x = mnist()
    ids = torch.arange(5000, 5000 + len(x))
    model = build_model("mlp", "comet", **MNIST, widths=[300, 300], mask_cache=True)
    reference = build_model("mlp", "comet", **MNIST, widths=[300, 300])  # no cache
    reference.load_state_dict(model.state_dict())
    router = model.router
    router(x[:100], ids[:100])  # some ids cached already, by a minibatch
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    computed = router.precompute(ids[order], lambda pos: x[order][pos], batch_size=512)
    assert computed == len(x) - 100 and router.cache.used == len(x)
    assert router.precompute(ids, lambda pos: x[pos]) == 0  # nothing left to do
    for threads in (1, 2):
        torch.set_num_threads(threads)
        misses = router.cache.misses
        for rows in (slice(0, 128), slice(128, 256), slice(1000, 1200), slice(7, 8)):
            for a, b in zip(router(x[rows], ids[rows]), reference.router(x[rows])):
                assert torch.equal(a, b)
        assert router.cache.misses == misses  # every lookup a hit
    with pytest.raises(ValueError, match="cache=True"):
        reference.router.precompute(ids, lambda pos: x[pos])


def test_precompute_plugin_leaves_training_unchanged_and_misses_nothing():
    """One experience trained with the precomputed cache, and without a cache: same weights."""
    stream = make_stream("split-mnist", n_experiences=2, max_per_experience=600,
                         max_test_per_experience=100, seed=0)
    trained = []
    for cache in (True, False):
        torch.manual_seed(0)
        model = build_model("mlp", "comet", **MNIST, widths=[64, 64], mask_cache=cache)
        plugins = VARIANTS["comet"].plugins()
        assert [type(p) for p in plugins] == [MaskPrecomputePlugin]
        strategy = build_strategy(Preset("comet", "naive", "comet"), model,
                                  train={"batch_size": 32, "epochs": 1, "lr": 0.05},
                                  eval_batch_size=100, device="cpu", seed=0, plugins=plugins)
        strategy.train(stream.train_stream[0])
        if cache:
            n = len(stream.train_stream[0].dataset)
            assert (model.router.cache.misses, model.router.cache.hits) == (0, n)
        trained.append(model.state_dict())
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


def test_variants_declare_their_plugins_and_routing():
    assert [type(p) for p in VARIANTS["smoe"].plugins()] == [SMoEAuxLossPlugin]
    for name, variant in VARIANTS.items():
        model = build_model("mlp", name, **MNIST, widths=[16, 16])
        assert variant.routed == (model.router is not None)
        if name not in ("smoe", "comet"):
            assert variant.plugins() == []


TINY = {"name": "tiny-cache", "seeds": [0],
        "streams": [{"name": "permuted-mnist", "n_experiences": 2, "max_per_experience": 800,
                     "max_test_per_experience": 200}],
        "strategies": ["comet", "comet-ewc"],
        "model": {"arch": "mlp", "widths": [64, 64]},
        "train": {"batch_size": 32, "lr": 0.05},
        "eval": {"curve_subset": 100, "curve_stride": 5}}


@pytest.mark.slow
def test_runs_with_precomputed_masks_equal_runs_without_a_cache(tmp_path):
    found = []
    for cache in (True, False):
        spec = {**TINY, "model": {**TINY["model"], "mask_cache": cache}}
        run_suite(spec, tmp_path / f"cache-{cache}")
        found.append({r.config.strategy_name: r.summary.to_dict() for r in iter_stored_runs(tmp_path / f"cache-{cache}")})
    assert set(found[0]) == {"comet", "comet-ewc"}
    for name, summary in found[0].items():
        for key in ("R", "R0", "curves", "metrics", "overlap"):
            assert summary[key] == found[1][name][key], (name, key)
