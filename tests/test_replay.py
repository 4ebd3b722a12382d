"""Replay, DER++ and A-GEM on real MNIST slices: the buffer's size, balance and contents, memory
from the past only, the DER++ loss and A-GEM projection against reference computations, small
checkpoints, and resumed runs that draw the same memory batches."""

import io

import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from comet_cl import results as res
from comet_cl.loaders import tensor_batches
from comet_cl.methods.agem import AGEMPlugin
from comet_cl.methods.der import DERPlugin
from comet_cl.methods.replay import ReplayPlugin, TensorBuffer
from comet_cl.models import build_model
from comet_cl.recorder import accuracy
from comet_cl.runner import execute_run, plan_suite
from comet_cl.strategies import Strategy
from comet_cl.streams import make_stream


def split_mnist(cap=400, n=5):
    """The first ``n`` experiences of split MNIST (classes 0 1 | 2 3 | ...)."""
    bench = make_stream("split-mnist", n_experiences=5, max_per_experience=cap,
                        max_test_per_experience=200)
    return bench.train_stream[:n], bench.test_stream[:n]


def strategy(plugins, seed=0, device="cpu", variant="dense"):
    torch.manual_seed(seed)
    net = build_model("mlp", variant, in_shape=(1, 28, 28), n_classes=10, widths=[64])
    s = Strategy(model=net.to(device), optimizer=torch.optim.SGD(net.parameters(), lr=0.05),
                 criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32, eval_mb_size=500,
                 plugins=plugins, evaluator=EvaluationPlugin(loggers=[]), device=device)
    s.shuffle_seed = seed
    return s


def experience_tensors(exp):
    """(normalised images, targets, ids) of an experience, in its own order."""
    loader = tensor_batches(exp.dataset, 10_000, shuffle=False)
    return loader.normalize(loader.images), loader.targets, loader.ids


class Spy(SupervisedPlugin):
    """Calls ``fn(strategy)`` at one callback and keeps what it returns."""

    def __init__(self, callback, fn):
        super().__init__()
        self.seen = []
        setattr(self, callback, lambda strategy, **kw: self.seen.append(fn(strategy)))


# ---- the buffer ---------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["reservoir", "experience"])
def test_buffer_keeps_its_size_balance_and_the_real_samples(policy):
    train, test = split_mnist(cap=400)
    buf, g = TensorBuffer(100, policy), torch.Generator().manual_seed(0)
    for t, exp in enumerate(train, start=1):
        buf.add(exp.dataset, g)
        assert len(buf) == 100 and len(set(buf.ids.tolist())) == 100
        counts = torch.bincount(buf.group, minlength=t).tolist()
        if policy == "experience":  # Avalanche's split: even, remainder to the earliest
            assert counts == [100 // t + (i < 100 % t) for i in range(t)]
        else:  # a uniform subset of 400 t equally sized experiences: ~100 / t each
            assert all(abs(c - 100 / t) <= 15 for c in counts), counts
        for e in range(t):  # each slot's label is one of its experience's classes
            assert set(buf.targets[buf.group == e].tolist()) <= {2 * e, 2 * e + 1}
    # What the buffer serves is exactly the stream's image, label and id of each slot.
    x, y, ids = buf.gather(torch.arange(len(buf)))
    for e, exp in enumerate(train):
        ex, ey, eids = experience_tensors(exp)
        where = {i: k for k, i in enumerate(eids.tolist())}
        mine = (buf.group == e).nonzero().flatten()
        rows = torch.tensor([where[i] for i in ids[mine].tolist()])
        assert torch.equal(x[mine], ex[rows]) and torch.equal(y[mine], ey[rows])


def test_experience_balanced_buffer_shrinks_each_share_to_a_subset_of_itself():
    train, test = split_mnist(cap=300, n=5)
    buf, g = TensorBuffer(120, "experience"), torch.Generator().manual_seed(1)
    before = {}
    for exp in train:
        buf.add(exp.dataset, g)
        now = {e: set(buf.ids[buf.group == e].tolist()) for e in range(buf.n_groups)}
        for e, ids in before.items():
            assert now[e] < ids  # strictly smaller, and nothing new from an old experience
        before = now


def test_bad_buffer_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="positive integer, got 0"):
        TensorBuffer(0)
    with pytest.raises(ValueError, match="unknown buffer policy 'fifo'.*reservoir, experience"):
        ReplayPlugin(policy="fifo")
    with pytest.raises(ValueError, match="batch_size_mem must be a positive integer"):
        ReplayPlugin(batch_size_mem=-1)
    with pytest.raises(ValueError, match="unknown buffer update 'batch'.*experience, step"):
        ReplayPlugin(update="batch")
    with pytest.raises(ValueError, match="update = 'step' needs policy = 'reservoir'"):
        ReplayPlugin(update="step", policy="experience")
    with pytest.raises(ValueError, match="alpha must be a number >= 0"):
        DERPlugin(alpha=-0.1)
    plain = AvalancheDataset([torch.utils.data.TensorDataset(torch.zeros(4, 1, 28, 28),
                                                             torch.zeros(4, dtype=torch.long))])
    with pytest.raises(ValueError, match="not built on TensorImages"):
        TensorBuffer(10).add(plain, torch.Generator())


# ---- replay ---------------------------------------------------------------------------------

def test_memory_batches_come_from_past_experiences_only():
    train, test = split_mnist(cap=400, n=3)
    current = Spy("before_training_iteration", lambda s: (s.clock.train_exp_counter, len(s.mb_y)))
    joined = Spy("before_training_iteration", lambda s: (s.mb_y.clone(), s.mbatch[2].clone()))
    replay = ReplayPlugin(mem_size=150)
    s = strategy([current, replay, joined])
    exp_ids = [set(experience_tensors(exp)[2].tolist()) for exp in train]
    for exp in train:
        s.train(exp)
    past_experiences_seen = set()
    for (k, n), (y, ids) in zip(current.seen, joined.seen):
        assert set(ids[:n].tolist()) <= exp_ids[k]
        memory_y, memory_ids = y[n:], ids[n:].tolist()
        assert len(memory_ids) == (0 if k == 0 else 32)  # a batch as large as the training one
        assert len(set(memory_ids)) == len(memory_ids)  # drawn without replacement
        assert all(c < 2 * k for c in memory_y.tolist())  # only classes already trained on
        for past in range(k):
            if set(memory_ids) & exp_ids[past]:
                past_experiences_seen.add((k, past))
        assert set(memory_ids) <= set().union(*exp_ids[:k])
    assert past_experiences_seen == {(1, 0), (2, 0), (2, 1)}


def test_step_update_replays_the_current_task_from_what_earlier_steps_offered():
    """Buzzega et al.'s ER: the buffer takes each step's own samples after the step, so memory
    batches hold the current task from its second step on, and only samples already trained on."""
    train, test = split_mnist(cap=400, n=2)
    real = Spy("before_training_iteration", lambda s: s.mbatch[2].clone())
    joined = Spy("before_training_iteration", lambda s: (s.clock.train_exp_counter, s.mbatch[2].clone()))
    replay = ReplayPlugin(mem_size=100, update="step")
    s = strategy([real, replay, joined])
    offered, current_task_replayed = [], 0
    exp_ids = [set(experience_tensors(exp)[2].tolist()) for exp in train]
    for exp in train:
        s.train(exp)
    for own, (k, ids) in zip(real.seen, joined.seen):
        n = len(own)
        assert torch.equal(ids[:n], own)
        memory = ids[n:].tolist()
        assert len(memory) == min(32, len(offered))  # empty only before the first step
        assert len(set(memory)) == len(memory) and set(memory) <= set(offered)
        current_task_replayed += bool(set(memory) & exp_ids[k])
        offered.extend(own.tolist())
    # every step but each experience's first (the buffer has not taken any of its steps yet)
    assert current_task_replayed == len(joined.seen) - len(train)
    # The buffer is a uniform subset of everything offered: both tasks, about half each.
    assert len(replay.buffer) == 100 and set(replay.buffer.ids.tolist()) <= set(offered)
    assert replay.buffer.group.unique().tolist() == [0, 1]
    assert abs(int((replay.buffer.group == 0).sum()) - 50) <= 15
    x, y, ids = replay.buffer.gather(torch.arange(100))
    ex, ey, eids = (torch.cat(t) for t in zip(*(experience_tensors(exp) for exp in train)))
    rows = torch.tensor([eids.tolist().index(i) for i in ids.tolist()])
    assert torch.equal(x, ex[rows]) and torch.equal(y, ey[rows])


def test_replay_changes_training_and_keeps_old_classes_that_naive_forgets():
    train, test = split_mnist(cap=500, n=3)
    naive, replay = strategy([]), strategy([ReplayPlugin(mem_size=200)])
    for exp in train:
        naive.train(exp)
        replay.train(exp)
    flat = [torch.cat([p.detach().flatten() for p in s.model.parameters()]) for s in (naive, replay)]
    assert (flat[0] - flat[1]).norm() / flat[0].norm() > 1e-2
    first = tensor_batches(test[0].dataset, 500, shuffle=False)
    assert accuracy(naive.model, first) < 0.05  # class-incremental fine-tuning forgets 0 / 1
    assert accuracy(replay.model, first) > 0.5


def test_checkpoint_holds_positions_not_pixels_and_restores_the_same_memory():
    train, _ = split_mnist(cap=2000, n=3)
    der = DERPlugin(mem_size=500)
    s = strategy([der])
    for exp in train:
        s.train(exp)
    buf = io.BytesIO()
    torch.save(der, buf)  # as the runner's checkpoint does
    assert buf.tell() < 100_000  # 500 buffered MNIST digits alone are 392 kB
    buf.seek(0)
    restored = torch.load(buf, weights_only=False)
    slots = torch.arange(500)
    a = der.buffer.gather(slots, extras=("logits",))
    b = restored.buffer.gather(slots, extras=("logits",))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_a_checkpoint_from_before_the_update_setting_resumes_as_an_experience_update():
    """Checkpoints pickle the plugin: one written before ``update`` existed lacks the
    attribute, and must resume as the experience-end update it was, not fail mid-suite."""
    train, _ = split_mnist(n=2)
    replay = ReplayPlugin(mem_size=50)
    strategy([replay]).train(train[0])
    old = {k: v for k, v in replay.__getstate__().items()
           if k not in ("update", "_stream", "_step_ids")}
    restored = ReplayPlugin.__new__(ReplayPlugin)
    restored.__setstate__(old)
    assert restored.update == "experience"
    s = strategy([restored])
    s.train(train[1])
    assert len(restored.buffer) == 50
    assert set(restored.buffer.group.tolist()) == {0, 1}


# ---- DER++ ----------------------------------------------------------------------------------

def test_derpp_stores_the_models_logits_and_keeps_them_for_later_experiences():
    train, test = split_mnist(cap=400, n=3)
    der = DERPlugin(mem_size=100)
    s = strategy([der])
    s.train(train[0])
    x, _, ids, stored = der.buffer.gather(torch.arange(100), extras=("logits",))
    s.model.eval()
    with torch.no_grad():
        assert torch.allclose(stored, s.model(x, ids=ids), atol=1e-6)
    s.model.train()
    after_first = dict(zip(ids.tolist(), stored))
    s.train(train[1])
    _, _, ids, stored = der.buffer.gather(torch.arange(100), extras=("logits",))
    kept = [k for k, i in enumerate(ids.tolist()) if i in after_first]
    assert 0 < len(kept) < 100
    # The old samples keep the old model's logits: that is what DER++ replays.
    assert all(torch.equal(stored[k], after_first[ids[k].item()]) for k in kept)


@pytest.mark.parametrize("logits", ["all", "seen"])
def test_derpp_loss_is_ce_plus_alpha_mse_plus_beta_ce_on_the_memory(logits):
    train, _ = split_mnist(cap=300, n=2)  # classes 0 1, then 2 3
    alpha, beta = 0.3, 0.7
    der = DERPlugin(mem_size=100, alpha=alpha, beta=beta)
    n_current = Spy("before_training_iteration", lambda s: len(s.mb_y))
    joined = Spy("before_training_iteration", lambda s: [t.clone() for t in s.mbatch])

    def reference(s):
        x, y, ids, _ = joined.seen[-1]
        n = n_current.seen[-1]
        out = s.model(x, ids=ids)  # the parameters are those of this step's forward
        # "seen": cross-entropies over the units of the classes trained so far only.
        ce_out = out[:, :2 * (s.clock.train_exp_counter + 1)] if logits == "seen" else out
        if n == len(y):
            return s.loss.item(), F.cross_entropy(ce_out, y).item()
        slot = {i: k for k, i in enumerate(der.buffer.ids.tolist())}
        z = der.buffer.extras["logits"][[slot[i] for i in ids[n:].tolist()]]
        expected = (F.cross_entropy(ce_out[:n], y[:n]) + alpha * F.mse_loss(out[n:], z)
                    + beta * F.cross_entropy(ce_out[n:], y[n:]))
        return s.loss.item(), expected.item()

    losses = Spy("before_backward", reference)
    s = strategy([n_current, der, joined, losses])
    s.logits = logits
    for exp in train:
        s.train(exp)
    with_memory = [len(y) - n for n, (_, y, _, _) in zip(n_current.seen, joined.seen)]
    assert with_memory.count(0) == with_memory.count(32) == 10  # 300 samples: 10 steps each
    for got, expected in losses.seen:
        assert got == pytest.approx(expected, rel=1e-5)


# ---- A-GEM ----------------------------------------------------------------------------------

def flat_grad(s):
    return torch.cat([p.grad.flatten().clone() for p in s.model.parameters()])


def test_agem_projected_gradient_never_points_against_the_memory_gradient():
    train, test = split_mnist(cap=400, n=3)
    agem = AGEMPlugin(mem_size=150)
    raw = Spy("after_backward", flat_grad)  # before A-GEM's own after_backward
    final = Spy("after_backward", lambda s: (flat_grad(s), agem.reference, len(s.mb_y)))
    s = strategy([raw, agem, final])
    for exp in train:
        s.train(exp)
    projected = 0
    for g, (h, ref, n) in zip(raw.seen, final.seen):
        assert n <= 32  # only the current minibatch is trained on
        if ref is None:  # first experience: no memory, plain SGD
            assert torch.equal(g, h)
            continue
        assert h @ ref >= -1e-5 * g.norm() * ref.norm()  # >= 0 up to float32 round-off
        if g @ ref >= 0:
            assert torch.equal(g, h)
        else:
            projected += 1
            assert torch.allclose(h, g - (g @ ref) / (ref @ ref) * ref, atol=1e-6)
            assert abs(h @ ref) <= 1e-5 * g.norm() * ref.norm()
    assert projected > 0
    first_steps = -(-len(train[0].dataset) // 32)
    assert [ref is None for _, ref, _ in final.seen].count(True) == first_steps


@pytest.mark.parametrize("make", [ReplayPlugin, DERPlugin, AGEMPlugin])
def test_each_method_trains_a_comet_model_on_every_device(make, device):
    train, test = split_mnist(cap=300, n=2)
    plugin = make(mem_size=100)
    seen_ids = Spy("before_forward", lambda s: s.mbatch[2].device.type)
    s = strategy([plugin, seen_ids], device=device, variant="comet")
    for exp in train:
        s.train(exp)
    assert set(seen_ids.seen) == {torch.device(device).type}  # memory joined on the device
    last = tensor_batches(test[1].dataset, 500, shuffle=False, device=device)
    assert accuracy(s.model, last) > 0.5  # it learned on the device (chance: 0.1)


# ---- resume -----------------------------------------------------------------------------------

class Killed(Exception):
    pass


SUITE = {"name": "resume-replay", "seeds": [2],
         "streams": [{"name": "split-mnist", "n_experiences": 2, "max_per_experience": 500,
                      "max_test_per_experience": 200}],
         "model": {"widths": [64]}, "train": {"batch_size": 32, "lr": 0.05},
         "eval": {"curve_subset": 100, "curve_stride": 4}}


@pytest.mark.parametrize("preset", [
    "replay", "derpp", "agem", {"preset": "replay", "name": "er-step", "params": {"update": "step"}},
    {"preset": "replay", "name": "er-augmented", "train": {"augment": "crop-flip"}}])
def test_run_interrupted_between_experiences_resumes_to_identical_numbers(preset, tmp_path):
    spec = {**SUITE, "strategies": [preset]}
    [killed] = plan_suite(spec, tmp_path / "killed")
    [clean] = plan_suite(spec, tmp_path / "clean")

    def die_in_second_experience(_):
        if (killed / res.CHECKPOINT_FILE).exists():
            raise Killed  # the first experience is checkpointed: stop before the second one

    with pytest.raises(Killed):
        execute_run(killed, on_step=die_in_second_experience)
    assert not (killed / res.SUMMARY_FILE).exists()
    resumed = execute_run(killed)
    uninterrupted = execute_run(clean)
    keys = ("R", "R0", "curves", "metrics")
    assert {k: resumed[k] for k in keys} == {k: uninterrupted[k] for k in keys}
    events = (killed / "events.jsonl").read_text()
    assert '"resumed"' in events and '"from_experience": 1' in events
