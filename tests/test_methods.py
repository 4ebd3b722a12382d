"""comet_cl.methods against straightforward reference implementations of van de Ven &
Tolias 2019's code, on real MNIST slices: EWC's Fisher and penalty, SI's path integral and
penalty, LwF's distillation, the seen-classes logits, and checkpoint round trips."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from comet_cl.config import ConfigError
from comet_cl.loaders import tensor_batches
from comet_cl.methods import EWC, SI, LwF, classes_seen, distillation_loss, fisher_diagonal
from comet_cl.models import build_model
from comet_cl.strategies import Preset, build_strategy
from comet_cl.streams import make_stream

TRAIN = {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.0}


def split(cap=200, n=5):
    return make_stream("split-mnist", n_experiences=n, max_per_experience=cap,
                       max_test_per_experience=50)


def net(variant="dense", widths=(32, 32), seed=0, arch="mlp"):
    torch.manual_seed(seed)
    return build_model(arch, variant, in_shape=(1, 28, 28), n_classes=10, widths=list(widths))


def strategy_for(plugin, model, train=TRAIN, method="naive"):
    return build_strategy(Preset(name="t", method=method), model, train=train,
                          eval_batch_size=500, device="cpu", seed=0,
                          plugins=[plugin] if plugin else [])


def experience_tensors(exp):
    loader = tensor_batches(exp.dataset, 1, shuffle=False)
    return loader.normalize(loader.images), loader.targets, loader.ids


# ---- EWC ----------------------------------------------------------------------------------

def reference_fisher(model, x, y, ids, columns=None, empirical=False):
    """van de Ven's estimate_fisher: batch size 1, eval mode, squared gradients summed."""
    model.eval()
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        out = model(x[i:i + 1], ids=ids[i:i + 1])
        if columns is not None:
            out = out[:, columns]
        label = y[i:i + 1] if empirical else out.max(1)[1]
        if empirical and columns is not None:
            label = torch.tensor([columns.index(int(y[i]))])
        model.zero_grad()
        F.nll_loss(F.log_softmax(out, dim=1), label).backward()
        for n, p in model.named_parameters():
            total[n] += p.grad.detach() ** 2
    model.train()
    return {n: t / len(x) for n, t in total.items()}


@pytest.mark.parametrize("arch,variant,columns,empirical", [
    ("mlp", "dense", None, False), ("mlp", "dense", [0, 1, 2, 3], True),
    ("mlp", "comet", None, False), ("mlp", "comet", [0, 1, 2, 3], False),
    ("conv", "comet", [0, 1, 2, 3], False)])  # conv layers: the vmap path
def test_fisher_equals_a_batch_size_one_loop(arch, variant, columns, empirical):
    bench = split(cap=150 if arch == "mlp" else 40)
    x, y, ids = experience_tensors(bench.train_stream[1])  # classes 2 and 3
    model = net(variant, widths=(32, 32) if arch == "mlp" else (4, 8), arch=arch)
    model(x, ids=ids)  # fill COMET's mask cache, as training would have
    ours = fisher_diagonal(model, x, y, ids, columns=columns, empirical=empirical, batch_size=64)
    ref = reference_fisher(model, x, y, ids, columns, empirical)
    assert set(ours) == set(ref)
    for n in ref:
        assert torch.allclose(ours[n], ref[n], rtol=1e-4, atol=1e-9), n
    assert sum(f.sum() for f in ours.values()) > 0


def test_fisher_with_predicted_labels_differs_from_the_empirical_one():
    x, y, ids = experience_tensors(split(cap=100).train_stream[0])
    model = net()
    pred = fisher_diagonal(model, x, y, ids)
    emp = fisher_diagonal(model, x, y, ids, empirical=True)
    assert any(not torch.allclose(pred[n], emp[n]) for n in pred)


def fishers_at_three_points(model, x, y, ids):
    """Three (Fisher, weights) pairs from three different real weight states."""
    out = []
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        out.append((fisher_diagonal(model, x, y, ids),
                    {n: p.detach().clone() for n, p in model.named_parameters()}))
    return out


def test_separate_ewc_penalty_equals_one_term_per_experience():
    x, y, ids = experience_tensors(split(cap=60).train_stream[0])
    model = net()
    terms = fishers_at_three_points(model, x, y, ids)
    ewc = EWC(ewc_lambda=300.0, mode="separate")
    for fisher, theta in terms:
        ewc.consolidate(fisher, theta)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params = dict(model.named_parameters())
    ref = 300.0 / 2 * sum((f[n] * (params[n] - t[n]) ** 2).sum() for f, t in terms for n in f)
    ours = ewc.penalty(model)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4)
    g_ours = torch.autograd.grad(ours, list(params.values()))
    g_ref = torch.autograd.grad(ref, list(params.values()))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_online_ewc_decays_the_running_fisher_and_applies_gamma_in_the_penalty():
    x, y, ids = experience_tensors(split(cap=60).train_stream[0])
    model = net()
    (f1, _), (f2, _), (f3, t3) = fishers_at_three_points(model, x, y, ids)
    gamma = 0.7
    ewc = EWC(ewc_lambda=1000.0, mode="online", gamma=gamma)
    for f, t in [(f1, t3), (f2, t3), (f3, t3)]:
        ewc.consolidate(f, t)
    for n in f1:
        assert torch.allclose(ewc.fisher[n], f3[n] + gamma * f2[n] + gamma ** 2 * f1[n])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params = dict(model.named_parameters())
    # his ewc_loss: (1/2) * sum (gamma * F) (p - mean)^2, times ewc_lambda in train_a_batch
    ref = 1000.0 * 0.5 * sum((gamma * ewc.fisher[n] * (params[n] - t3[n]) ** 2).sum()
                             for n in f1)
    assert ewc.penalty(model).item() == pytest.approx(ref.item(), rel=1e-5)


def test_ewc_trains_with_its_penalty_and_rejects_bad_settings():
    bench = split(cap=100)
    ewc = EWC(ewc_lambda=1e4, fisher_samples=50)
    strategy = strategy_for(ewc, net())
    strategy.train(bench.train_stream[0])
    assert ewc.fisher is not None and ewc.penalty(strategy.model).item() == 0.0
    strategy.train(bench.train_stream[1])
    assert ewc.penalty(strategy.model).item() > 0
    with pytest.raises(ValueError, match="mode"):
        EWC(mode="offline")
    with pytest.raises(ValueError, match="gamma"):
        EWC(mode="online", gamma=1.5)
    with pytest.raises(ValueError, match="fisher_samples"):
        EWC(fisher_samples=0)


# ---- SI -----------------------------------------------------------------------------------

def test_si_path_integral_omega_and_penalty_match_a_hand_computation():
    bench = split(cap=96)
    model = net()
    ref_model = copy.deepcopy(model)
    si = SI(si_c=5.0, eps=0.1)
    strategy = strategy_for(si, model)
    theta0 = [p.detach().clone() for p in ref_model.parameters()]

    # Reference: his train.py loop by hand, same minibatches (unshuffled order is irrelevant:
    # both draw from the same seeded loader).
    loader = tensor_batches(bench.train_stream[0].dataset, 32, shuffle=True, seed=0)
    opt = torch.optim.SGD(ref_model.parameters(), lr=0.05)
    W = [torch.zeros_like(p) for p in ref_model.parameters()]
    old = [p.detach().clone() for p in ref_model.parameters()]
    for x, y, ids, _ in loader:
        opt.zero_grad()
        F.cross_entropy(ref_model(x, ids=ids), y).backward()
        opt.step()
        for w, o, p in zip(W, old, ref_model.parameters()):
            w.add_(-p.grad * (p.detach() - o))
            o.copy_(p.detach())
    omega = [w / ((p.detach() - a) ** 2 + 0.1) for w, p, a in zip(W, ref_model.parameters(),
                                                                    theta0)]

    strategy.train(bench.train_stream[0])
    for a, b in zip(model.parameters(), ref_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(si.omega, omega):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert sum(o.abs().sum() for o in si.omega) > 0  # no clipping wiped it out

    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    hand = 5.0 * sum((o * (p - a) ** 2).sum()
                     for o, p, a in zip(omega, model.parameters(), ref_model.parameters()))
    assert si.penalty(model).item() == pytest.approx(hand.item(), rel=1e-4)
    assert hand.item() > 0
    with pytest.raises(ValueError):
        SI(eps=0.0)


# ---- LwF ----------------------------------------------------------------------------------

def his_loss_fn_kd(scores, target_scores, T=2.0):
    """utils.loss_fn_kd at 9945f84, verbatim but for the device handling."""
    log_scores_norm = F.log_softmax(scores / T, dim=1)
    targets_norm = F.softmax(target_scores / T, dim=1)
    n = scores.size(1)
    if n > target_scores.size(1):
        zeros = torch.zeros(scores.size(0), n - target_scores.size(1))
        targets_norm = torch.cat([targets_norm.detach(), zeros], dim=1)
    return (-(targets_norm * log_scores_norm)).sum(dim=1).mean() * T ** 2


def test_distillation_equals_his_loss_fn_kd_over_seen_classes():
    torch.manual_seed(0)
    student, teacher = torch.randn(16, 10), torch.randn(16, 10)
    # class-IL, third experience: the teacher saw classes 0-3, the student trains on 0-5
    ours = distillation_loss(student, teacher[:, :4], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5], 2.0)
    assert ours.item() == pytest.approx(his_loss_fn_kd(student[:, :6], teacher[:, :4]).item(),
                                        rel=1e-6)
    # all logits trained: the student's softmax spans all 10 units
    ours = distillation_loss(student, teacher[:, :4], [0, 1, 2, 3], None, 2.0)
    assert ours.item() == pytest.approx(his_loss_fn_kd(student, teacher[:, :4]).item(), rel=1e-6)
    with pytest.raises(ValueError, match="not among"):
        distillation_loss(student, teacher[:, :4], [0, 1, 2, 3], [0, 1], 2.0)


def test_lwf_distils_only_the_classes_seen_before_and_weighs_by_one_over_t():
    bench = split(cap=64)
    lwf = LwF(temperature=2.0)
    model = net()
    strategy = strategy_for(lwf, model, train={**TRAIN, "logits": "seen"})
    strategy.train(bench.train_stream[0])
    strategy.train(bench.train_stream[1])
    teacher = copy.deepcopy(lwf.teacher)
    # One training step of the third experience (classes 4, 5; the teacher saw 0-3), by hand
    # through the plugin's hooks, the model in eval mode so the reference sees the same one.
    strategy.model.eval()
    exp = bench.train_stream[2]
    assert lwf.teacher is not None and classes_seen(exp, include_current=False) == [0, 1, 2, 3]
    strategy.experience = exp
    strategy._active = classes_seen(exp)
    strategy.is_training = True
    lwf.before_training_exp(strategy)
    x, y, ids = experience_tensors(exp)
    strategy.mbatch = [x[:32], y[:32], ids[:32], torch.zeros(32, dtype=torch.long)]
    strategy.mb_output = strategy.model(x[:32], ids=ids[:32])
    strategy.loss = strategy.criterion()
    lwf.before_backward(strategy)
    rnt = 1 / 3
    out6 = strategy.mb_output[:, :6]
    target = teacher(x[:32], ids=ids[:32])[:, :4].detach()
    ce = F.cross_entropy(out6, y[:32])  # classes 0-5 keep their positions here
    hand = rnt * ce + (1 - rnt) * his_loss_fn_kd(out6, target)
    assert strategy.loss.item() == pytest.approx(hand.item(), rel=1e-5)


# ---- seen logits --------------------------------------------------------------------------

@pytest.mark.parametrize("logits", ["seen", "all"])
def test_seen_logits_leave_unseen_classes_untouched_in_training(logits):
    bench = split(cap=128)
    model = net()
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    before = head.weight.detach().clone()
    strategy = strategy_for(None, model, train={**TRAIN, "logits": logits})
    strategy.train(bench.train_stream[0])  # classes 0 and 1
    changed = (head.weight.detach() - before).abs().sum(1) > 0
    if logits == "seen":
        assert changed[:2].all() and not changed[2:].any()
    else:
        assert changed.all()
    # Evaluation keeps every output: on classes 2, 3 the eval loss is the full softmax's.
    losses = []

    class Probe(SupervisedPlugin):
        def after_eval_forward(self, strategy, **kwargs):
            losses.append((strategy.criterion().item(),
                           F.cross_entropy(strategy.mb_output, strategy.mb_y).item()))

    strategy.plugins.append(Probe())
    strategy.eval(bench.test_stream[1:2])
    assert losses and all(a == pytest.approx(b) for a, b in losses)


def test_joint_training_with_seen_logits_trains_on_every_class():
    bench = split(cap=64)
    model = net()
    strategy = strategy_for(None, model, train={**TRAIN, "logits": "seen"}, method="joint")
    strategy.train(bench.train_stream)
    assert strategy._active == list(range(10))


def test_unknown_logits_option_is_refused():
    with pytest.raises(ConfigError, match="logits"):
        strategy_for(None, net(), train={**TRAIN, "logits": "some"})


# ---- checkpoints --------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: EWC(ewc_lambda=1e3),
                                  lambda: EWC(ewc_lambda=1e3, mode="online", gamma=0.9),
                                  lambda: SI(si_c=5.0), lambda: LwF()],
                         ids=["ewc", "ewc-online", "si", "lwf"])
@pytest.mark.parametrize("variant", ["dense", "comet"])
def test_methods_resume_bit_identically_from_a_pickled_plugin(make, variant):
    bench = split(cap=96)
    train = {**TRAIN, "logits": "seen"}
    model = net(variant, widths=(64, 64))
    plugin = make()
    strategy = strategy_for(plugin, model, train=train)
    strategy.train(bench.train_stream[0])
    buf = io.BytesIO()
    torch.save({"plugins": [plugin], "model": model.state_dict(),
                "clock": dict(strategy.clock.__dict__)}, buf)
    assert buf.tell() < 4 * sum(p.numel() for p in model.parameters()) * 4 + 200_000
    buf.seek(0)
    state = torch.load(buf, weights_only=False)

    resumed_model = net(variant, widths=(64, 64), seed=5)
    resumed_model.load_state_dict(state["model"])
    resumed = strategy_for(state["plugins"][0], resumed_model, train=train)
    resumed.clock.__dict__.update(state["clock"])
    for s in (strategy, resumed):
        s.train(bench.train_stream[1])
        s.train(bench.train_stream[2])
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("coef", [0.5, 3.0])
def test_quadratic_penalty_gradient_equals_autograd(coef):
    """EWC and SI add their penalty's gradient directly (methods/quadratic.py): it must be
    the gradient autograd gives for coef * sum w (p - a)^2; quadratic.value its value."""
    from comet_cl.methods import quadratic
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    params = list(model.parameters())
    weights = [torch.rand_like(p) for p in params]
    anchor = [p.detach() + 0.1 * torch.randn_like(p) for p in params]
    x, y = torch.randn(8, 20), torch.randint(0, 3, (8,))

    loss = torch.nn.functional.cross_entropy(model(x), y)
    penalty = coef * sum((w * (p - a) ** 2).sum() for p, w, a in zip(params, weights, anchor))
    (loss + penalty).backward()
    expected = [p.grad.clone() for p in params]

    model.zero_grad(set_to_none=True)
    params[-1].requires_grad_(False)  # a parameter without a grad gets the penalty's alone
    torch.nn.functional.cross_entropy(model(x), y).backward()
    params[-1].requires_grad_(True)
    quadratic.add_gradient(params, weights, anchor, coef)
    value = quadratic.value(params, weights, anchor)
    assert value.item() * coef == pytest.approx(penalty.item(), rel=1e-5)
    for p, g in zip(params[:-1], expected[:-1]):
        assert torch.allclose(p.grad, g, atol=1e-6)
    alone = 2 * coef * weights[-1] * (params[-1].detach() - anchor[-1])
    assert torch.allclose(params[-1].grad, alone, atol=1e-6)
