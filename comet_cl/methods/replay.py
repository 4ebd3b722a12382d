"""Experience replay on the tensor path: one buffer of positions into the stream, and each
memory batch is one gather.

Avalanche's ReplayPlugin draws its memory batches through Avalanche's per-sample loader (3.8x
naive here, for work that should cost 2x). :class:`TensorBuffer` keeps, per slot, *where* a
sample lives (its experience's ``TensorImages`` and the position in it), its target and its
stream-wide sample id, plus any per-slot extras a method needs (DER++'s logits). A run-time
uint8 copy of the buffered images (500 MNIST digits: 0.4 MB) serves every memory batch with
one indexing op; pickling drops that copy and keeps the positions, and ``TensorImages`` pickle
as recipes, so a checkpointed buffer is a few kilobytes. The same buffer serves replay, DER++
(``comet_cl.methods.der``) and A-GEM (``comet_cl.methods.agem``).

Selection. Every sample offered to the buffer draws a uniform random priority and the buffer
keeps the highest ones, as Avalanche's ``ReservoirSamplingBuffer`` does:

- ``policy = "reservoir"`` (default): the ``size`` highest priorities among every sample seen
  so far, i.e. a uniform random subset of the stream: reservoir sampling, the buffer of ER and
  DER++ in Buzzega et al. 2020 (and their A-GEM). Classes and experiences are balanced in
  expectation, not exactly.
- ``policy = "experience"``: Avalanche's ``ExperienceBalancedBuffer`` (what ``ReplayPlugin``
  used): ``size`` split evenly over the experiences seen so far (remainder to the earliest),
  each keeping its highest priorities, so a shrinking share keeps a subset of what it had.

Protocol choices, and where they depart from Buzzega et al.: the buffer is updated once at the
end of each experience, every training sample offered once (their buffer is updated after
every step, so it also replays the current task, and with several epochs offers each sample
once per epoch); memory batches so come from past experiences only, as in Avalanche's
``ReplayPlugin``. Each training step is joined by a memory batch of ``batch_size_mem``
samples (default: the training batch size, as in Avalanche; Buzzega et al.'s
``minibatch_size``) drawn without replacement, and the loss is the usual criterion over the
concatenation, as in both.

Seeding: the priorities and the memory batches of experience ``e`` come from generators seeded
by (run seed, ``e``), so a run resumed from a checkpoint draws exactly what an uninterrupted
one draws; no generator state has to travel in the checkpoint.
"""

from __future__ import annotations

import hashlib

import torch
from avalanche.core import SupervisedPlugin

from comet_cl.loaders import leaf_positions
from comet_cl.streams import TensorImages

POLICIES = ("reservoir", "experience")


def experience_generator(strategy, purpose: str) -> torch.Generator:
    """A generator fixed by the run seed, the current training experience and ``purpose``
    (different purposes and the loader's shuffles draw independent streams)."""
    seed = getattr(strategy, "shuffle_seed", 0)
    key = f"{purpose}:{seed}:{strategy.clock.train_exp_counter}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def group_lengths(size: int, groups: int) -> list[int]:
    """``size`` split evenly over ``groups``, the remainder to the first ones (Avalanche's rule)."""
    lengths = [size // groups] * groups
    for i in range(size - sum(lengths)):
        lengths[i] += 1
    return lengths


class TensorBuffer:
    """A replay memory of at most ``size`` samples of a comet-cl tensor stream.

    Per slot: ``leaf`` (index into ``leaves``), ``pos`` (position in that leaf), ``group``
    (the experience it came from, counting :meth:`add` calls), ``priority``, ``targets``,
    ``ids``, and each tensor in ``extras`` (rows kept in step with the slots).
    """

    def __init__(self, size: int, policy: str = "reservoir"):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"replay buffer size must be a positive integer, got {size!r}")
        if policy not in POLICIES:
            raise ValueError(f"unknown buffer policy '{policy}' (known: {', '.join(POLICIES)})")
        self.size, self.policy = size, policy
        self.leaves: list[TensorImages] = []
        long = torch.empty(0, dtype=torch.long)
        self.leaf, self.pos, self.group, self.targets, self.ids = (long.clone() for _ in range(5))
        self.priority = torch.empty(0)
        self.extras: dict[str, torch.Tensor] = {}
        self.n_groups = 0
        self._cache: dict | None = None

    def __len__(self) -> int:
        return len(self.pos)

    def __getstate__(self):
        return {**self.__dict__, "_cache": None}  # pixels stay out of checkpoints

    # ---- filling -----------------------------------------------------------------------
    def add(self, dataset, generator: torch.Generator) -> torch.Tensor:
        """Offer every sample of ``dataset`` (one experience, a dataset built on
        ``TensorImages``); return the slots that now hold samples of it. Their extras are
        zero until the caller fills them."""
        resolved = leaf_positions(dataset)
        if resolved is None:
            raise ValueError("the replay buffer stores positions into comet-cl tensor streams; "
                             "this experience's dataset is not built on TensorImages "
                             "(comet_cl.streams.make_stream builds such streams)")
        leaves, leaf_of, local = resolved
        known = {id(leaf): i for i, leaf in enumerate(self.leaves)}
        for leaf in leaves:
            if id(leaf) not in known:
                known[id(leaf)] = len(self.leaves)
                self.leaves.append(leaf)
        n_new = len(local)
        leaf, targets, ids = (torch.empty(n_new, dtype=torch.long) for _ in range(3))
        for i, source in enumerate(leaves):
            where = (leaf_of == i).nonzero().flatten()
            leaf[where] = known[id(source)]
            targets[where] = source.targets[local[where]]
            ids[where] = source.ids[local[where]]
        new = {"leaf": leaf, "pos": local, "targets": targets, "ids": ids,
               "group": torch.full((n_new,), self.n_groups, dtype=torch.long),
               "priority": torch.rand(n_new, generator=generator)}
        self.n_groups += 1

        fields = {name: torch.cat([getattr(self, name), new[name]]) for name in new}
        keep = self._select(fields["priority"], fields["group"])
        for name, values in fields.items():
            setattr(self, name, values[keep])
        for name, values in self.extras.items():
            padded = torch.cat([values, values.new_zeros((n_new, *values.shape[1:]))])
            self.extras[name] = padded[keep]
        self._drop_unused_leaves()
        self._cache = None
        return (self.group == self.n_groups - 1).nonzero().flatten()

    def _select(self, priority: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Indices of the candidates to keep, highest priority first within each group."""
        if self.policy == "reservoir":
            return priority.argsort(descending=True, stable=True)[: self.size]
        kept = []
        for g, length in enumerate(group_lengths(self.size, self.n_groups)):
            members = (group == g).nonzero().flatten()
            kept.append(members[priority[members].argsort(descending=True, stable=True)[:length]])
        return torch.cat(kept)

    def _drop_unused_leaves(self) -> None:
        used = sorted(set(self.leaf.tolist()))
        remap = torch.full((len(self.leaves),), -1, dtype=torch.long)
        remap[used] = torch.arange(len(used))
        self.leaves = [self.leaves[i] for i in used]
        self.leaf = remap[self.leaf]

    # ---- reading -----------------------------------------------------------------------
    def _tensors(self, device) -> dict:
        """uint8 images, targets, ids and extras of every slot, on ``device`` (built once per
        buffer update)."""
        device = torch.device(device)
        if self._cache is None or self._cache["device"] != device:
            first = self.leaves[0].raw(self.pos[:1])
            images = torch.empty((len(self), *first.shape[1:]), dtype=first.dtype)
            for i, leaf in enumerate(self.leaves):
                slots = (self.leaf == i).nonzero().flatten()
                images[slots] = leaf.raw(self.pos[slots])
            self._cache = {"device": device, "images": images.to(device),
                           "targets": self.targets.to(device), "ids": self.ids.to(device),
                           **{k: v.to(device) for k, v in self.extras.items()}}
        return self._cache

    def gather(self, slots: torch.Tensor, device="cpu", extras: tuple[str, ...] = ()):
        """(x normalised, targets, ids, *extras) of ``slots``, on ``device``: one gather each."""
        t = self._tensors(device)
        slots = slots.to(t["images"].device)
        x = self.leaves[0].normalize(t["images"][slots])
        return (x, t["targets"][slots], t["ids"][slots], *(t[k][slots] for k in extras))

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``min(n, len(self))`` distinct random slots."""
        return torch.randperm(len(self), generator=generator)[:n]

    def set_extra(self, name: str, slots: torch.Tensor, values: torch.Tensor) -> None:
        """Store per-slot ``values`` (e.g. logits) for ``slots``."""
        if name not in self.extras:
            self.extras[name] = torch.zeros((len(self), *values.shape[1:]), dtype=values.dtype)
        self.extras[name][slots] = values.detach().to("cpu", self.extras[name].dtype)
        self._cache = None


def join_batches(mbatch: list, memory: tuple) -> list:
    """The strategy's minibatch ``[x, y, (ids,) task]`` with a memory batch appended."""
    x, y, ids = memory
    parts = [x, y, ids] if len(mbatch) == 4 else [x, y]
    parts.append(torch.zeros_like(y))  # task label: 0 everywhere in comet-cl
    return [torch.cat([a, b]) for a, b in zip(mbatch, parts)]


class ReplayPlugin(SupervisedPlugin):
    """Experience replay (ER): every training minibatch is joined by a minibatch of the same
    size (or ``batch_size_mem``) from a buffer of ``mem_size`` past samples, and the loss is
    the criterion over both. ``policy``: "reservoir" (Buzzega et al. 2020's ER) or
    "experience" (Avalanche's experience-balanced buffer); see the module docstring."""

    def __init__(self, mem_size: int = 500, batch_size_mem: int | None = None,
                 policy: str = "reservoir"):
        super().__init__()
        if batch_size_mem is not None and (not isinstance(batch_size_mem, int) or batch_size_mem < 1):
            raise ValueError(f"batch_size_mem must be a positive integer, got {batch_size_mem!r}")
        self.buffer = TensorBuffer(mem_size, policy)
        self.batch_size_mem = batch_size_mem
        self._draws: torch.Generator | None = None
        self._fill: torch.Generator | None = None

    def __getstate__(self):
        return {**self.__dict__, "_draws": None, "_fill": None}  # re-seeded every experience

    def memory_batch_size(self, strategy) -> int:
        return self.batch_size_mem or strategy.train_mb_size

    def memory_batch(self, strategy, extras: tuple[str, ...] = ()) -> tuple | None:
        """This step's draw from the buffer on the strategy's device: (x, y, ids, *extras),
        or None while the buffer is empty. ER, DER++ and A-GEM all draw this way."""
        if not len(self.buffer):
            return None
        slots = self.buffer.draw(self.memory_batch_size(strategy), self._draws)
        return self.buffer.gather(slots, strategy.device, extras=extras)

    def before_training_exp(self, strategy, **kwargs):
        self._draws = experience_generator(strategy, "replay-draws")
        self._fill = experience_generator(strategy, "replay-fill")

    def before_training_iteration(self, strategy, **kwargs):
        memory = self.memory_batch(strategy)
        if memory is not None:
            strategy.mbatch = join_batches(strategy.mbatch, memory)

    def after_training_exp(self, strategy, **kwargs):
        self.buffer.add(strategy.experience.dataset, self._fill)
