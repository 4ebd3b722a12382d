"""Strategies on real MNIST slices: Avalanche's own BWT agrees, presets all train, and the
regularisers actually regularise."""

import pytest
import torch
from avalanche.evaluation.metrics import bwt_metrics
from avalanche.training.plugins import EvaluationPlugin

from comet_cl import metrics
from comet_cl.models import build_model
from comet_cl.recorder import RunRecorder
from comet_cl.strategies import (Strategy, available_presets, build_strategy, load_preset,
                                 method_of, method_plugins)
from comet_cl.streams import make_stream

TRAIN = {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.0}


def stream(n=5, cap=300):
    return make_stream("split-mnist", n_experiences=n, max_per_experience=cap,
                       max_test_per_experience=cap)


def model(variant="dense"):
    torch.manual_seed(0)
    return build_model("mlp", variant, in_shape=(1, 28, 28), n_classes=10, widths=[32])


def recorder(bench):
    return RunRecorder(bench.test_stream, beta=2, curve_subset=50, curve_stride=5,
                       batch_size=500, seed=0)


def test_bwt_equals_avalanches_own_bwt_metric_on_a_real_run():
    bench = stream()
    evaluator = EvaluationPlugin(bwt_metrics(experience=True, stream=True), loggers=[])
    rec = recorder(bench)
    net = model()
    strategy = Strategy(model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.05),
                        criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32,
                        eval_mb_size=500, evaluator=evaluator, plugins=[rec])
    R = []
    for exp in bench.train_stream:
        strategy.train(exp)
        R.append(rec.evaluate(strategy))
    theirs = evaluator.get_last_metrics()["StreamBWT/eval_phase/test_stream"]
    assert metrics.bwt(R) == pytest.approx(theirs, abs=1e-12)
    assert metrics.bwt(R) < -0.5  # class-incremental fine-tuning forgets


@pytest.mark.parametrize("name", sorted(available_presets()))
def test_every_preset_trains_two_experiences_without_task_labels(name):
    preset = load_preset(name)
    bench = stream(cap=64)
    net = model(preset.model)
    rec = recorder(bench)
    strategy = build_strategy(preset, net, train=TRAIN, eval_batch_size=500, device="cpu",
                              seed=0, plugins=method_plugins(preset) + [rec])
    calls = []
    forward = net.forward
    net.forward = lambda x, ids=None: calls.append(ids) or forward(x, ids=ids)
    if method_of(preset).is_joint:
        strategy.train(bench.train_stream)
    else:
        for exp in bench.train_stream[:2]:
            strategy.train(exp)
    row = rec.evaluate(strategy)
    assert len(row) == 5 and all(0.0 <= a <= 1.0 for a in row)
    assert any(ids is not None for ids in calls)  # sample ids reach the model


def params_after(preset_name, bench):
    preset = load_preset(preset_name)
    net = model(preset.model)
    strategy = build_strategy(preset, net, train=TRAIN, eval_batch_size=500, device="cpu",
                              seed=0, plugins=method_plugins(preset))
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    return torch.cat([p.detach().flatten() for p in net.parameters()]), strategy


@pytest.mark.parametrize("name", ["ewc", "si", "lwf"])
def test_regularisers_change_training_relative_to_naive(name):
    bench = stream(cap=200)
    naive, _ = params_after("naive", bench)
    reg, _ = params_after(name, bench)
    # Same seed, same batches: any difference is the penalty's doing.
    assert (naive - reg).norm() / naive.norm() > 1e-4


def test_methods_declare_their_template_instead_of_being_compared_by_name():
    from comet_cl.strategies import METHODS, Method
    assert {n for n, m in METHODS.items() if m.is_joint} == {"joint"}
    assert all(m.records_curves != m.is_joint for m in METHODS.values())
    with pytest.raises(ValueError, match="unknown template"):
        Method(template="jiont")
