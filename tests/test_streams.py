"""Streams on real MNIST / CIFAR-10 slices: splits, permutations, seeds, no task identity."""

import pickle

import pytest
import torch

from comet_cl.loaders import tensor_batches
from comet_cl.streams import STREAMS, StreamSpec, make_stream, stream_kind
from conftest import require_data

CAP = 300  # samples per experience: small and fast


def classes(exp) -> set[int]:
    return set(torch.as_tensor(list(exp.dataset.targets)).tolist())


def first_batch(exp, n=CAP):
    return next(iter(tensor_batches(exp.dataset, n, shuffle=False)))


def stream(name: str, **options):
    """make_stream, skipping with the reason where the command would not find the data."""
    require_data(STREAMS[name].dataset, options.get("data_root"))
    return make_stream(name, **options)


@pytest.mark.parametrize("name", ["split-mnist", "split-cifar10", "split-fashion-mnist"])
def test_split_streams_have_disjoint_class_pairs_covering_every_class(name):
    bench = stream(name, max_per_experience=CAP, max_test_per_experience=CAP)
    seen = [classes(e) for e in bench.train_stream]
    assert len(seen) == 5 and all(len(c) == 2 for c in seen)
    assert set().union(*seen) == set(range(10))
    assert sum(len(c) for c in seen) == 10  # pairwise disjoint
    assert [classes(e) for e in bench.test_stream] == seen
    assert all(len(e.dataset) == CAP for e in bench.train_stream)


def test_split_cifar100_has_ten_experiences_of_ten_classes(tmp_path, monkeypatch):
    """No registry ships CIFAR-100 here: the files are written in its layout from small
    random images, with fine labels i % 100 made up so that every class is present."""
    monkeypatch.setenv("COMET_CL_CACHE", str(tmp_path / "cache"))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8, generator=g)
    xt = torch.randint(0, 256, (500, 3, 32, 32), dtype=torch.uint8, generator=g)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, images in (("train", x[:1000]), ("test", xt[:500])):
        labels = [i % 100 for i in range(len(images))]
        (folder / split).write_bytes(pickle.dumps({
            "data": images.reshape(len(images), -1).numpy(), "fine_labels": labels,
            "coarse_labels": [c // 5 for c in labels]}))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [str(i) for i in range(100)]}))
    bench = stream("split-cifar100", data_root=str(tmp_path))
    seen = [classes(e) for e in bench.train_stream]
    assert len(seen) == 10 and seen[3] == set(range(30, 40))
    assert set().union(*seen) == set(range(100)) and all(len(e.dataset) == 100
                                                           for e in bench.train_stream)
    assert first_batch(bench.test_stream[9])[0].shape == (50, 3, 32, 32)


def test_class_order_natural_random_and_explicit():
    natural = stream("split-mnist", max_per_experience=50)
    assert classes(natural.train_stream[0]) == {0, 1}
    explicit = stream("split-mnist", class_order=(9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                      max_per_experience=50)
    assert classes(explicit.train_stream[0]) == {9, 8}
    r1 = stream("split-mnist", class_order="random", seed=3, max_per_experience=50)
    r2 = stream("split-mnist", class_order="random", seed=3, max_per_experience=50)
    assert [classes(e) for e in r1.train_stream] == [classes(e) for e in r2.train_stream]
    with pytest.raises(ValueError, match="permutation of 0..9"):
        stream("split-mnist", class_order=(0, 0, 1, 2, 3, 4, 5, 6, 7, 8))


def test_permutations_distinct_fixed_by_seed_first_identity():
    def pixels(seed, first_identity=True):
        b = stream("permuted-mnist", n_experiences=3, seed=seed, max_per_experience=CAP,
                   first_identity=first_identity)
        return [first_batch(e)[0] for e in b.train_stream], b
    a, bench = pixels(0)
    again, _ = pixels(0)
    other, _ = pixels(1)
    assert all(torch.equal(x, y) for x, y in zip(a, again))
    assert not torch.equal(a[1], other[1])
    assert not torch.equal(a[1], a[2]) and not torch.equal(a[0], a[1])
    # experience 0 is the identity: same pixels as the unpermuted images
    d = bench.train_stream[0].dataset._flat_data._datasets[0]
    assert d.perm is None
    # a permutation only moves pixels: per-image sorted values are unchanged
    d1 = bench.train_stream[1].dataset._flat_data._datasets[0]
    original = d1.images[d1.index[:20]].flatten(1)
    permuted = d1.raw(torch.arange(20)).flatten(1)
    assert not torch.equal(permuted, original)
    assert torch.equal(permuted.sort(1).values, original.sort(1).values)
    assert torch.equal(permuted, original[:, d1.perm])
    no_identity, _ = pixels(0, first_identity=False)
    assert not torch.equal(no_identity[0], a[0])
    # labels are MNIST's own in every experience (domain-incremental)
    assert all(classes(e) == set(range(10)) for e in bench.train_stream)


def test_unit_pixels_are_the_image_over_255_and_padding_adds_a_zero_border():
    """van de Ven & Tolias feed [0, 1] pixels and pad MNIST to 32 x 32 before permuting."""
    std = stream("split-mnist", max_per_experience=CAP)
    unit = stream("split-mnist", max_per_experience=CAP, pixels="unit")
    x_std, y_std, ids_std = first_batch(std.train_stream[0])[:3]
    x_unit, y_unit, ids_unit = first_batch(unit.train_stream[0])[:3]
    assert torch.equal(ids_std, ids_unit) and torch.equal(y_std, y_unit)
    raw = unit.train_stream[0].dataset._flat_data._datasets[0].raw(torch.arange(CAP))
    assert torch.equal(x_unit[:, 0], raw.float() / 255)
    assert x_unit.min() == 0 and x_unit.max() == 1
    assert abs(x_std.mean().item()) < 0.2  # standardised: about mean 0 (one class pair only)
    padded = stream("permuted-mnist", n_experiences=2, max_per_experience=CAP, pad=2,
                    pixels="unit", first_identity=False)
    x_pad = first_batch(padded.train_stream[0])[0]
    assert x_pad.shape == (CAP, 1, 32, 32)
    # the permutation runs over all 1,024 pixels: the 240 border zeros move inside the image
    d = padded.train_stream[0].dataset._flat_data._datasets[0]
    assert d.perm is not None and d.perm.numel() == 32 * 32
    unpermuted = d.images[d.index[:CAP]].flatten(1).float() / 255
    assert torch.equal(unpermuted.sort(1).values, x_pad.flatten(1).sort(1).values)
    assert (unpermuted.view(CAP, 32, 32)[:, :2] == 0).all()
    assert not (x_pad.view(CAP, 32, 32)[:, :2] == 0).all()


def test_pixels_and_pad_are_recorded_only_when_not_the_default():
    """Run folders written before these options existed keep an identical config."""
    assert "pixels" not in StreamSpec("split-mnist").resolved()
    assert "pad" not in StreamSpec("split-mnist").resolved()
    spec = StreamSpec("permuted-mnist", pixels="unit", pad=2)
    assert spec.resolved()["pixels"] == "unit" and spec.resolved()["pad"] == 2
    with pytest.raises(ValueError, match="pixels must be one of"):
        StreamSpec("split-mnist", pixels="raw")
    with pytest.raises(ValueError, match="pad must be a non-negative int"):
        StreamSpec("split-mnist", pad=-1)


def test_same_seed_identical_streams_other_seed_other_subsets():
    def ids(seed):
        b = stream("split-mnist", seed=seed, max_per_experience=CAP)
        return [first_batch(e)[2] for e in b.train_stream]
    assert all(torch.equal(x, y) for x, y in zip(ids(0), ids(0)))
    assert not all(torch.equal(x, y) for x, y in zip(ids(0), ids(5)))


def test_no_task_identity_is_exposed():
    bench = stream("permuted-mnist", n_experiences=3, max_per_experience=CAP)
    for part in (bench.train_stream, bench.test_stream):
        for e in part:
            assert set(e.dataset.targets_task_labels.uniques) == {0}
            assert e.dataset[0][-1] == 0
            assert torch.all(first_batch(e)[3] == 0)


def test_sample_ids_are_unique_across_the_stream():
    bench = stream("permuted-mnist", n_experiences=3, max_per_experience=CAP,
                   max_test_per_experience=CAP)
    every = torch.cat([first_batch(e)[2] for s in (bench.train_stream, bench.test_stream)
                       for e in s])
    assert len(every) == 6 * CAP and len(every.unique()) == len(every)


def test_tensor_loader_matches_avalanche_per_sample_path():
    bench = stream("split-cifar10", max_per_experience=CAP)
    data = bench.train_stream[1].dataset
    mixed = data.concat(bench.train_stream[2].dataset).subset(list(range(CAP - 20, CAP + 20)))
    x, y, ids, t = first_batch(type("E", (), {"dataset": mixed}), 40)
    for j in range(0, 40, 7):
        xs, ys, sid, ts = mixed[j]
        assert torch.equal(x[j], xs) and y[j] == ys and ids[j] == sid and t[j] == ts
    assert x.shape == (40, 3, 32, 32) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.3  # standardised with CIFAR-10's channel statistics


def test_validation_split_is_carved_from_training_data():
    bench = stream("split-mnist", max_per_experience=CAP, valid_fraction=0.2)
    for tr, va in zip(bench.train_stream, bench.valid_stream):
        assert len(va.dataset) == round(0.2 * CAP) and len(tr.dataset) == CAP - len(va.dataset)
        assert not set(first_batch(tr)[2].tolist()) & set(first_batch(va)[2].tolist())
        assert classes(tr) == classes(va)


def test_unknown_stream_suggests_the_closest_name():
    with pytest.raises(ValueError, match="did you mean 'split-mnist'"):
        stream_kind("split-mnst")


def test_every_stream_name_has_a_dataset_and_a_default_length():
    assert STREAMS["split-cifar100"].n_experiences == 10
    assert StreamSpec("permuted-mnist").experiences == 10


def test_loader_on_a_device_gathers_from_one_cached_copy_of_the_dataset(device):
    """Permuted MNIST on ``device``: batches equal the CPU ones, and every experience's loader
    gathers from the same single copy of the dataset there."""
    from comet_cl.streams import on_device
    bench = make_stream("permuted-mnist", n_experiences=3, max_per_experience=CAP)
    for exp in bench.train_stream:
        here = tensor_batches(exp.dataset, 64, shuffle=True, seed=5)
        there = tensor_batches(exp.dataset, 64, shuffle=True, seed=5, device=device)
        assert there.images.device.type == device
        for a, b in zip(here, there):
            assert all(torch.equal(u, v.cpu()) for u, v in zip(a, b))
    leaves = {id(exp.dataset._flat_data._datasets[0].images) for exp in bench.train_stream}
    assert len(leaves) == 1  # every experience is a view onto one tensor ...
    images = bench.train_stream[0].dataset._flat_data._datasets[0].images
    copy = on_device(images, "meta")  # ... copied once per device ("meta": no data, any host)
    assert copy is on_device(images, "meta") and copy is not images
    assert copy.shape == images.shape and copy.device.type == "meta"
    assert on_device(images, "cpu") is images
