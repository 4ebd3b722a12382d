"""Continual-learning streams as Avalanche benchmarks, built straight from in-memory tensors.

Every experience's dataset is a :class:`TensorImages`: a view (an index tensor, and for
permuted MNIST a pixel permutation) onto the dataset's one uint8 tensor, so building a stream
copies nothing and a batch is one gather (see ``comet_cl.loaders``). Items are
``(x, y, sample_id)``; Avalanche appends the task label, which is 0 everywhere: no experience
carries a task identity the model could use, in training or at test time.

``sample_id`` is unique per input for the whole stream (the same image under two permutations
is two inputs), which is what COMET's mask cache and the Bernoulli baseline key on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import comet_cl._avalanche  # noqa: F401, I001  (first: Avalanche without its QP-solver warning)
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_classification_dataset,
)
from torch.utils.data import Dataset

from comet_cl import data
# The registry itself is light metadata (no torch): it lives in comet_cl.catalog.
from comet_cl.catalog import PIXELS, STREAMS, StreamKind, stream_kind  # noqa: F401  (re-exported)

# Per-channel mean and std of each training set (the usual published figures).
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def pixel_scaling(dataset: str, pixels: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel that ``TensorImages.normalize`` applies to x / 255."""
    mean, std = NORMALIZATION[dataset]
    if pixels == "unit":
        return (0.0,) * len(mean), (1.0,) * len(std)
    return mean, std


@dataclass(frozen=True)
class StreamSpec:
    """Everything that fixes a stream. The same spec always gives the same stream.

    class_order: None keeps the natural order (0 1 | 2 3 | ...), "random" shuffles it with the
    seed, "vandeven" shuffles it as van de Ven & Tolias' code does for the same seed
    (catalog.CLASS_ORDERS), a list gives it explicitly. max_per_experience /
    max_test_per_experience cap the samples of each experience (a seeded subset) for quick runs. valid_fraction carves a
    validation split from each experience's training data (Avalanche's ``valid_stream``).
    pixels: "standardized" (per-channel mean 0, std 1: this project's default) or "unit"
    (x / 255 in [0, 1], what van de Ven & Tolias feed their MLPs). pad: zero pixels added on
    every side before any permutation (van de Ven pads MNIST to 32 x 32 for permuted MNIST).
    label: what the runs are filed under when a suite holds two entries of one stream
    (``catalog.stream_label``); it changes nothing in the data.
    """

    name: str
    seed: int = 0
    n_experiences: int | None = None
    class_order: tuple[int, ...] | str | None = None
    max_per_experience: int | None = None
    max_test_per_experience: int | None = None
    valid_fraction: float = 0.0
    first_identity: bool = True
    pixels: str = "standardized"
    pad: int = 0
    label: str | None = None
    data_root: str | None = None

    def __post_init__(self):
        if self.pixels not in PIXELS:
            raise ValueError(f"pixels must be one of {', '.join(PIXELS)}, got {self.pixels!r}")
        if why := self.kind.class_order_error(self.class_order):
            raise ValueError(f"class_order {why}")
        if not isinstance(self.pad, int) or self.pad < 0:
            raise ValueError(f"pad must be a non-negative int, got {self.pad!r}")

    def resolved(self) -> dict:
        """The spec as plain data, defaults filled in (what a run records in its config).
        ``pixels``, ``pad`` and ``label`` came later; at their defaults they are left out, so
        run folders written before them keep the same config and stay resumable."""
        d = asdict(self)
        d["n_experiences"] = self.experiences
        d.pop("data_root")
        for key, default in (("pixels", "standardized"), ("pad", 0), ("label", None)):
            if d[key] == default:
                d.pop(key)
        if isinstance(self.class_order, tuple):
            d["class_order"] = list(self.class_order)
        return d

    @property
    def kind(self) -> StreamKind:
        return stream_kind(self.name)

    @property
    def experiences(self) -> int:
        return self.n_experiences or self.kind.n_experiences


class TensorImages(Dataset):
    """A view onto one uint8 image tensor: ``index`` picks the samples, ``perm`` (optional)
    permutes the flattened pixels, and items come out normalised as ``(x, y, sample_id)``.

    ``gather`` returns a whole batch with one indexing op: the reason this class exists.
    """

    def __init__(self, images, targets, index, id_offset, mean, std, perm=None, key=None):
        self.images = images
        self.index = index
        self.targets = targets[index]  # Avalanche reads .targets to build the class dataset
        self.ids = index + id_offset
        self.perm = perm
        shape = (1, -1) + (1,) * (images.dim() - 2)
        self.mean = torch.tensor(mean).view(shape)
        self.std = torch.tensor(std).view(shape)
        self.key = key  # (StreamSpec, split, experience): how to rebuild it when unpickled

    def __len__(self) -> int:
        return len(self.index)

    def raw(self, positions: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """uint8 images at ``positions`` (permuted if this is a permuted experience), gathered
        on ``device`` (default: where the dataset lives) from the dataset's copy there."""
        rows = self.index[positions]
        if device is None:
            x = self.images[rows]
        else:  # only the row numbers cross to the device, not the pixels
            x = on_device(self.images, device)[rows.to(device)]
        if self.perm is not None:
            x = x.flatten(1)[:, self.perm.to(x.device)].view_as(x)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W] or [B, C, H, W] -> float32 [B, C, H, W], standardised per channel."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if self.mean.device != x.device:  # once per device, not a host copy per batch
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float().div_(255) - self.mean) / self.std

    def gather(self, positions: torch.Tensor):
        return self.normalize(self.raw(positions)), self.targets[positions], self.ids[positions]

    def __getitem__(self, i: int):
        x, y, sid = self.gather(torch.tensor([i]))
        return x[0], y[0], sid[0]

    def __reduce__(self):
        """Pickle as the recipe, not the pixels: a replay buffer in a checkpoint stays small."""
        if self.key is None:
            return super().__reduce__()
        return experience_images, self.key


# (id of a dataset's tensor, device) -> (that tensor, its copy on the device). comet_cl.data
# memoises each dataset, so this holds one copy per dataset and device: a run's data crosses
# to the GPU once, not once per experience and evaluation. Keeping the tensor itself in the
# entry keeps its id from being reused by another tensor.
_DEVICE_COPIES: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def on_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``: itself when it is already there, else one cached copy."""
    device = torch.device(device)
    if t.device == device:
        return t
    key = (id(t), str(device))
    if key not in _DEVICE_COPIES:
        _DEVICE_COPIES[key] = (t, t.to(device))
    return _DEVICE_COPIES[key][1]


def experience_images(spec: StreamSpec, split: str, experience: int) -> TensorImages:
    """One experience's images ("train", "valid" or "test") without Avalanche's wrapping: what
    unpickling rebuilds, and what a diagnostic that drives a model by hand reads
    (``benchmarks/diagnostics/fisher_scale.py``)."""
    return _experience_data(spec)[split][experience]


def _permutations(spec: StreamSpec, n_pixels: int) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(spec.seed)
    perms = [torch.randperm(n_pixels, generator=g) for _ in range(spec.experiences)]
    if spec.first_identity:
        perms[0] = None
    return perms


def _class_order(spec: StreamSpec) -> list[int]:
    n = spec.kind.n_classes
    if spec.class_order is None:
        return list(range(n))
    if spec.class_order == "random":
        g = torch.Generator().manual_seed(spec.seed)
        return torch.randperm(n, generator=g).tolist()
    if spec.class_order == "vandeven":  # their p maps class -> slot; the order lists slot -> class
        p = np.random.RandomState(spec.seed).permutation(n)
        return np.argsort(p).tolist()
    return [int(c) for c in spec.class_order]  # checked in StreamSpec.__post_init__


def _split_classes(spec: StreamSpec) -> list[list[int]]:
    order, t = _class_order(spec), spec.experiences
    if len(order) % t:
        raise ValueError(
            f"{spec.name}: {len(order)} classes do not split evenly into {t} experiences"
        )
    per = len(order) // t
    return [order[i * per : (i + 1) * per] for i in range(t)]


@lru_cache(maxsize=4)
def _padded(images: torch.Tensor, pad: int) -> torch.Tensor:
    """uint8 images with ``pad`` zero pixels on every side (one copy per dataset and pad)."""
    return torch.nn.functional.pad(images, (pad, pad, pad, pad))


def _cap(index: torch.Tensor, cap: int | None, g: torch.Generator) -> torch.Tensor:
    """A seeded subset of at most ``cap`` samples, kept in dataset order."""
    if cap is None or len(index) <= cap:
        return index
    return index[torch.randperm(len(index), generator=g)[:cap]].sort().values


def _position_in_group(y: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """Each label replaced by its class's position within its experience's class group."""
    out = torch.full_like(y, -1)
    for group in groups:
        for pos, c in enumerate(group.tolist()):
            out[y == c] = pos
    return out


@lru_cache(maxsize=8)
def _experience_data(spec: StreamSpec) -> dict[str, list[TensorImages]]:
    """The train / valid / test TensorImages of every experience (memoised per spec)."""
    kind = spec.kind
    x_tr, y_tr, x_te, y_te = data.load(kind.dataset, root=spec.data_root)
    if spec.pad:
        x_tr, x_te = (_padded(x, spec.pad) for x in (x_tr, x_te))
    mean, std = pixel_scaling(kind.dataset, spec.pixels)
    n_total = len(x_tr) + len(x_te)
    g = torch.Generator().manual_seed(spec.seed + 1)  # subsets; the +1 keeps it apart from perms
    t = spec.experiences
    if kind.scenario == "permuted":
        perms = _permutations(spec, x_tr[0].numel())
        tr_idx = [torch.arange(len(x_tr))] * t
        te_idx = [torch.arange(len(x_te))] * t
    else:
        perms = [None] * t
        groups = [torch.tensor(c) for c in _split_classes(spec)]
        tr_idx = [torch.isin(y_tr, c).nonzero().flatten() for c in groups]
        te_idx = [torch.isin(y_te, c).nonzero().flatten() for c in groups]
        if kind.relabel_within_experience:
            y_tr, y_te = _position_in_group(y_tr, groups), _position_in_group(y_te, groups)

    out: dict[str, list[TensorImages]] = {"train": [], "valid": [], "test": []}
    for e in range(t):
        # Permuted experiences are new inputs: each gets its own block of sample ids.
        base = e * n_total if kind.scenario == "permuted" else 0
        train = _cap(tr_idx[e], spec.max_per_experience, g)
        n_valid = round(spec.valid_fraction * len(train))
        shuffled = train[torch.randperm(len(train), generator=g)]
        valid, train = shuffled[:n_valid].sort().values, shuffled[n_valid:].sort().values
        test = _cap(te_idx[e], spec.max_test_per_experience, g)
        for split, images, targets, idx, offset in (
            ("train", x_tr, y_tr, train, base),
            ("valid", x_tr, y_tr, valid, base),
            ("test", x_te, y_te, test, base + len(x_tr)),
        ):
            out[split].append(
                TensorImages(images, targets, idx, offset, mean, std, perms[e], (spec, split, e))
            )
    return out


def make_stream(spec: StreamSpec | str, **options):
    """An Avalanche benchmark (``train_stream``, ``test_stream``, ``valid_stream`` when
    ``valid_fraction > 0``) for ``spec``, or for a stream name plus StreamSpec options."""
    if isinstance(spec, str):
        spec = StreamSpec(spec, **options)
    if not 0.0 <= spec.valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {spec.valid_fraction}")
    parts = _experience_data(spec)

    def wrap(items):
        return [_make_taskaware_classification_dataset(d, task_labels=0) for d in items]

    streams = {"train": wrap(parts["train"]), "test": wrap(parts["test"])}
    if spec.valid_fraction > 0:
        streams["valid"] = wrap(parts["valid"])
    bench = benchmark_from_datasets(**streams)
    bench.spec = spec
    return bench


def input_shape(spec: StreamSpec) -> tuple[int, ...]:
    """The shape of one normalised input of the stream, as the models receive it."""
    first = _experience_data(spec)["test"][0]
    return tuple(first.gather(torch.tensor([0]))[0].shape[1:])
