"""Training-time crop-and-flip augmentation (comet_cl.augment) on real CIFAR-10 images: each
output against a per-image reference built with torch's own pad and flip, training batches
(the replay batch included) augmented and evaluation batches untouched, the setting checked
in a suite."""

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from comet_cl.augment import CROP_PADDING, augment_plugins, crop_flip
from comet_cl import results as res
from comet_cl.config import ConfigError, parse_suite
from comet_cl.loaders import leaf_positions, tensor_batches
from comet_cl.methods.replay import ReplayPlugin
from comet_cl.models import build_model
from comet_cl.runner import execute_run, plan_suite
from comet_cl.streams import make_stream, pixel_scaling
from comet_cl.strategies import Strategy
from conftest import require_data

MEAN, STD = pixel_scaling("cifar10", "standardized")
BLACK = torch.tensor([-m / s for m, s in zip(MEAN, STD)])


@pytest.fixture(scope="module")
def cifar():
    require_data("cifar10")
    return make_stream("split-cifar10", n_experiences=5, max_per_experience=200,
                       max_test_per_experience=100)


def first_batch(experience, n=64):
    return next(iter(tensor_batches(experience.dataset, n, shuffle=False)))


def reference(x, fill, dy, dx, flip, p=CROP_PADDING):
    """One image cropped and flipped the plain way: pad each channel with its fill, slice, flip."""
    padded = torch.stack([F.pad(ch, (p, p, p, p), value=float(v)) for ch, v in zip(x, fill)])
    out = padded[:, dy:dy + x.shape[1], dx:dx + x.shape[2]]
    return out.flip(-1) if flip else out


def test_each_image_is_a_padded_crop_flipped_as_drawn(cifar):
    x = first_batch(cifar.train_stream[0])[0]
    out = crop_flip(x, BLACK, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, in crop_flip's order
    n = len(x)
    dy = torch.randint(0, 2 * CROP_PADDING + 1, (n, 1), generator=g).flatten()
    dx = torch.randint(0, 2 * CROP_PADDING + 1, (n, 1), generator=g).flatten()
    flip = (torch.rand(n, 1, generator=g) < 0.5).flatten()
    for i in range(n):
        assert torch.equal(out[i], reference(x[i], BLACK, int(dy[i]), int(dx[i]), bool(flip[i])))
    # the draws vary: offsets over the whole range, about half flipped, some unchanged images
    assert set(dy.tolist()) == set(range(2 * CROP_PADDING + 1))
    assert 16 < int(flip.sum()) < 48
    assert out.shape == x.shape and not torch.equal(out, x)


def test_the_pad_is_a_black_pixel_of_the_streams_normalisation(cifar):
    [plugin] = augment_plugins({"augment": "crop-flip"}, MEAN, STD)
    leaves, _, _ = leaf_positions(cifar.train_stream[0].dataset)
    expected = leaves[0].normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).flatten()
    assert torch.allclose(plugin.fill, expected)
    # crops that reach into the pad hold exactly that value there
    x = first_batch(cifar.train_stream[0])[0]
    out = crop_flip(x, plugin.fill, torch.Generator().manual_seed(0))
    corners = out[:, :, 0, 0]
    assert (corners == plugin.fill).all(1).sum() > 10


def test_no_setting_no_plugin_and_an_unknown_one_is_refused():
    assert augment_plugins({}, MEAN, STD) == []
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'.*crop-flip"):
        augment_plugins({"augment": "rotate"}, MEAN, STD)
    base = {"name": "s", "streams": ["split-mnist"], "strategies": ["naive"]}
    with pytest.raises(ConfigError, match="augment"):
        parse_suite({**base, "train": {"augment": "rotate"}})
    with pytest.raises(ConfigError, match="augment"):
        parse_suite({**base, "train": {"augment": True}})
    with pytest.raises(ValueError, match="image batches"):
        crop_flip(torch.zeros(4, 784), BLACK[:1], torch.Generator())


class Record(SupervisedPlugin):
    """Keeps the inputs of every training and evaluation forward pass."""

    def __init__(self):
        super().__init__()
        self.train_x, self.eval_x = [], []

    def before_forward(self, strategy, **kwargs):
        self.train_x.append(strategy.mb_x.clone())

    def before_eval_forward(self, strategy, **kwargs):
        self.eval_x.append(strategy.mb_x.clone())


def test_training_and_replay_batches_are_augmented_evaluation_is_not(cifar):
    train, test = cifar.train_stream[:2], cifar.test_stream[:1]
    torch.manual_seed(0)
    net = build_model("conv", "dense", in_shape=(3, 32, 32), n_classes=10, widths=[8, 8, 8, 8])
    replay = ReplayPlugin(mem_size=50)
    record = Record()
    [augment] = augment_plugins({"augment": "crop-flip"}, MEAN, STD)
    s = Strategy(model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
                 criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32, eval_mb_size=100,
                 plugins=[replay, augment, record], evaluator=EvaluationPlugin(loggers=[]))
    s.shuffle_seed = 0
    for exp in train:
        s.train(exp)
    s.eval(test)
    plain = {int(i): x for exp in train
             for xs, _, ids, _ in tensor_batches(exp.dataset, 500, shuffle=False)
             for i, x in zip(ids, xs)}
    buffered = replay.buffer.gather(torch.arange(len(replay.buffer)))
    # every recorded training input is some crop-flip of a real image, not the image itself
    second_task = record.train_x[-2]  # a full minibatch of the second task
    assert second_task.shape[0] == 64  # 32 new + 32 replayed, both augmented
    memory_rows = second_task[32:]
    assert not any(torch.equal(r, b) for r in memory_rows for b in buffered[0])
    # the buffer keeps the plain images (Mammoth's not_aug_inputs)
    assert all(torch.equal(x, plain[int(i)]) for x, i in zip(buffered[0], buffered[2]))
    # evaluation sees the test images as they are
    test_x = first_batch(test[0], 100)[0]
    assert torch.equal(record.eval_x[0], test_x)


def test_a_suite_sets_it_per_strategy_in_the_run_config(tmp_path):
    folders = plan_suite({"name": "s", "seeds": [0], "streams": ["split-cifar10"], "strategies": [
        "naive", {"preset": "naive", "name": "naive-aug", "train": {"augment": "crop-flip"}}]},
        tmp_path)
    trains = {f.parent.name: res.read_json(f / res.CONFIG_FILE)["train"] for f in folders}
    assert trains["naive-aug"]["augment"] == "crop-flip" and "augment" not in trains["naive"]


def test_a_run_with_the_setting_trains_on_augmented_batches(tmp_path):
    """The runner wires the setting in: same seed and data, different numbers."""
    require_data("mnist")
    spec = {"name": "aug", "seeds": [0],
            "streams": [{"name": "split-mnist", "n_experiences": 2, "max_per_experience": 1000,
                         "max_test_per_experience": 100}],
            "model": {"widths": [100]}, "train": {"batch_size": 32, "lr": 0.05, "epochs": 2},
            "eval": {"curve_subset": 50, "curve_stride": 4},
            "strategies": ["naive", {"preset": "naive", "name": "naive-aug",
                                     "train": {"augment": "crop-flip"}}]}
    plain, augmented = (execute_run(f) for f in plan_suite(spec, tmp_path))
    assert plain["R"] != augmented["R"], (plain["R"], augmented["R"])
    # it still learns the first task, more slowly (crops shift digits by up to 4 pixels)
    assert augmented["R"][0][0] > 0.6, (plain["R"], augmented["R"])
