"""Mixed precision ([train] amp = true) on the CPU's bfloat16 kernels: the forward passes run
in bfloat16, the loss in float32, and a run's ACC stays within the stated tolerance."""

import pytest
import torch
from avalanche.core import SupervisedPlugin

from comet_cl.models import build_model
from comet_cl.precision import AMP_ACC_TOLERANCE, BFloat16Autocast, precision_plugins
from comet_cl.contract import iter_stored_runs
from comet_cl.runner import run_suite
from comet_cl.strategies import build_strategy, load_preset
from comet_cl.streams import make_stream
from conftest import small_suite

# Stable training (a moderate learning rate): where training is chaotic (class-incremental
# forgetting at a high rate), bfloat16 rounding moves ACC as much as another seed does.
SUITE = small_suite("amp", stream="permuted-mnist", n_experiences=3, per_experience=2000,
                    test_per_experience=300, seeds=[0], strategies=["comet", "naive"],
                    widths=[128, 128], train={"batch_size": 32, "lr": 0.01})


def test_autocast_plugin_runs_the_forward_in_bfloat16_and_the_loss_in_float32():
    bench = make_stream("split-mnist", n_experiences=2, max_per_experience=200,
                        max_test_per_experience=50)
    model = build_model("mlp", "comet", in_shape=(1, 28, 28), n_classes=10, widths=[32, 32],
                        router_seed=0)
    seen = {"hidden": set(), "loss": set()}
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda m, i, out: seen["hidden"].add(out.dtype))

    class Probe(SupervisedPlugin):  # runs after the autocast plugin's hooks
        def before_backward(self, strategy, **kwargs):
            seen["loss"].update({strategy.mb_output.dtype, strategy.loss.dtype})

    strategy = build_strategy(load_preset("comet"), model,
                              train={"batch_size": 50, "epochs": 1, "lr": 0.05},
                              eval_batch_size=50, device="cpu", seed=0,
                              plugins=[BFloat16Autocast(torch.device("cpu")), Probe()])
    strategy.train(bench.train_stream[0])
    strategy.eval(bench.test_stream[:1])
    assert seen["hidden"] == {torch.bfloat16} and seen["loss"] == {torch.float32}
    assert not torch.is_autocast_enabled("cpu")  # left as found
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_amp_is_off_unless_asked_for():
    assert precision_plugins({"lr": 0.1}, torch.device("cpu")) == []
    assert precision_plugins({"amp": False}, torch.device("cpu")) == []
    [plugin] = precision_plugins({"amp": True}, torch.device("cpu"))
    assert isinstance(plugin, BFloat16Autocast)


@pytest.mark.slow
def test_amp_run_stays_within_the_stated_acc_tolerance(tmp_path):
    spec = tmp_path / "amp.toml"
    spec.write_text(SUITE)
    amp = tmp_path / "amp-on.toml"
    amp.write_text(SUITE.replace("lr = 0.01", "lr = 0.01\namp = true"))
    run_suite(spec, tmp_path / "fp32")
    run_suite(amp, tmp_path / "bf16")
    acc = {}
    for name in ("fp32", "bf16"):
        for r in iter_stored_runs(tmp_path / name):
            assert r.config.train.get("amp", False) == (name == "bf16")
            acc[name, r.config.strategy_name, r.config.seed] = r.summary.metrics["acc"]
    gaps = [abs(acc["fp32", s, k] - acc["bf16", s, k]) for s in ("comet", "naive") for k in (0,)]
    assert max(gaps) <= AMP_ACC_TOLERANCE, gaps
    assert min(acc.values()) > 0.6  # both learned
