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

When the buffer is updated (``update``):

- ``"experience"`` (default, Avalanche's ``ReplayPlugin``): once, at the end of each
  experience, every training sample offered once; memory batches come from past experiences
  only.
- ``"step"`` (Buzzega et al. 2020's ER, their ``models/er.py``): after every training step,
  the step's own samples (not the memory batch) are offered, so the buffer also holds, and
  replays, the current task, and with several epochs each sample is offered once per epoch
  (and can hold two slots, as their reservoir can). Reservoir policy only: a per-step offer
  has no experience share to balance.

Each training step is joined by a memory batch of ``batch_size_mem`` samples (default: the
training batch size, as in Avalanche; Buzzega et al.'s ``minibatch_size``) drawn without
replacement, and the loss is the usual criterion over the concatenation, as in both.

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
UPDATES = ("experience", "step")


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
    @staticmethod
    def candidates(dataset) -> dict:
        """Where each sample of ``dataset`` (one experience, built on ``TensorImages``) lives,
        with its target and id: what :meth:`offer` takes. Made once per experience."""
        resolved = leaf_positions(dataset)
        if resolved is None:
            raise ValueError("the replay buffer stores positions into comet-cl tensor streams; "
                             "this experience's dataset is not built on TensorImages "
                             "(comet_cl.streams.make_stream builds such streams)")
        leaves, leaf_of, local = resolved
        targets, ids = (torch.empty(len(local), dtype=torch.long) for _ in range(2))
        for i, source in enumerate(leaves):
            where = (leaf_of == i).nonzero().flatten()
            targets[where] = source.targets[local[where]]
            ids[where] = source.ids[local[where]]
        return {"leaves": leaves, "leaf": leaf_of, "pos": local, "targets": targets, "ids": ids}

    def add(self, dataset, generator: torch.Generator) -> torch.Tensor:
        """Offer every sample of ``dataset`` (one experience, a dataset built on
        ``TensorImages``) as a new group; return the slots that now hold samples of it. Their
        extras are zero until the caller fills them."""
        return self.offer(self.candidates(dataset), generator)

    def offer(self, candidates: dict, generator: torch.Generator,
              rows: torch.Tensor | None = None, group: int | None = None) -> torch.Tensor:
        """Offer ``candidates`` (from :meth:`candidates`; only ``rows`` of them if given) as
        members of ``group`` (default: a new group, one per call); return the slots that now
        hold members of that group."""
        rows = torch.arange(len(candidates["pos"])) if rows is None else rows
        if group is None:
            group = self.n_groups
        self.n_groups = max(self.n_groups, group + 1)
        known = {id(leaf): i for i, leaf in enumerate(self.leaves)}
        index = []
        for leaf in candidates["leaves"]:
            if id(leaf) not in known:
                known[id(leaf)] = len(self.leaves)
                self.leaves.append(leaf)
            index.append(known[id(leaf)])
        n_new = len(rows)
        new = {"leaf": torch.as_tensor(index, dtype=torch.long)[candidates["leaf"][rows]],
               **{name: candidates[name][rows] for name in ("pos", "targets", "ids")},
               "group": torch.full((n_new,), group, dtype=torch.long),
               "priority": torch.rand(n_new, generator=generator)}

        fields = {name: torch.cat([getattr(self, name), new[name]]) for name in new}
        keep = self._select(fields["priority"], fields["group"])
        for name, values in fields.items():
            setattr(self, name, values[keep])
        for name, values in self.extras.items():
            padded = torch.cat([values, values.new_zeros((n_new, *values.shape[1:]))])
            self.extras[name] = padded[keep]
        if self._cache is not None:  # a step update: gather the new rows' pixels only
            self._cache = self._updated_cache(new, keep)
        self._drop_unused_leaves()
        return (self.group == group).nonzero().flatten()

    def _updated_cache(self, new: dict, keep: torch.Tensor) -> dict:
        """The run-time copy after an offer: the cached pixels of the old slots and the new
        rows' own, in the order of the slots kept (a per-step offer then costs a gather of 32
        images, not of the whole buffer)."""
        device = self._cache["device"]
        images = torch.cat([self._cache["images"], _images(self.leaves, new["leaf"], new["pos"]).to(device)])
        # index_select: a uint8 row gather 10x faster than images[keep] on the CPU
        return self._device_copy(device, images.index_select(0, keep.to(device)))

    def _device_copy(self, device: torch.device, images: torch.Tensor) -> dict:
        """The run-time copy: ``images`` (one row per slot, on ``device``) with the slots'
        targets, ids and extras moved beside them."""
        return {"device": device, "images": images,
                "targets": self.targets.to(device), "ids": self.ids.to(device),
                **{k: v.to(device) for k, v in self.extras.items()}}

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
            self._cache = self._device_copy(device, _images(self.leaves, self.leaf, self.pos).to(device))
        return self._cache

    def gather(self, slots: torch.Tensor, device="cpu", extras: tuple[str, ...] = ()):
        """(x normalised, targets, ids, *extras) of ``slots``, on ``device``: one gather each."""
        t = self._tensors(device)
        slots = slots.to(t["images"].device)
        x = self.leaves[0].normalize(t["images"].index_select(0, slots))
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


def _images(leaves: list[TensorImages], leaf: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The uint8 images at positions ``pos`` of ``leaves[leaf]``, one row each, on the CPU."""
    first = leaves[0].raw(pos[:0])  # shape and dtype
    images = torch.empty((len(pos), *first.shape[1:]), dtype=first.dtype)
    for i, source in enumerate(leaves):
        rows = (leaf == i).nonzero().flatten()
        if len(rows):
            images[rows] = source.raw(pos[rows])
    return images


def join_batches(mbatch: list, memory: tuple) -> list:
    """The strategy's minibatch ``[x, y, (ids,) task]`` with a memory batch appended."""
    x, y, ids = memory
    parts = [x, y, ids] if len(mbatch) == 4 else [x, y]
    parts.append(torch.zeros_like(y))  # task label: 0 everywhere in comet-cl
    return [torch.cat([a, b]) for a, b in zip(mbatch, parts)]


class ReplayPlugin(SupervisedPlugin):
    """Experience replay (ER): every training minibatch is joined by a minibatch of the same
    size (or ``batch_size_mem``) from a buffer of ``mem_size`` samples, and the loss is the
    criterion over both. ``policy``: "reservoir" (Buzzega et al. 2020's ER) or "experience"
    (Avalanche's experience-balanced buffer); ``update``: "experience" (the buffer takes each
    experience at its end, Avalanche's) or "step" (it takes each step's samples, Buzzega et
    al.'s). See the module docstring."""

    def __init__(self, mem_size: int = 500, batch_size_mem: int | None = None,
                 policy: str = "reservoir", update: str = "experience"):
        super().__init__()
        if batch_size_mem is not None and (not isinstance(batch_size_mem, int) or batch_size_mem < 1):
            raise ValueError(f"batch_size_mem must be a positive integer, got {batch_size_mem!r}")
        if update not in UPDATES:
            raise ValueError(f"unknown buffer update '{update}' (known: {', '.join(UPDATES)})")
        if update == "step" and policy != "reservoir":
            raise ValueError(f"update = 'step' needs policy = 'reservoir', got '{policy}': "
                             "a buffer filled step by step has no experience shares to balance")
        self.buffer = TensorBuffer(mem_size, policy)
        self.batch_size_mem = batch_size_mem
        self.update = update
        self._draws: torch.Generator | None = None
        self._fill: torch.Generator | None = None
        self._stream: dict | None = None  # step update: the experience's candidates, by id
        self._step_ids: torch.Tensor | None = None  # step update: this step's own sample ids

    def __getstate__(self):  # re-made every experience
        return {**self.__dict__, "_draws": None, "_fill": None, "_stream": None, "_step_ids": None}

    def __setstate__(self, state):
        """A checkpoint pickled before ``update`` existed was an experience-update run: it
        resumes as one instead of failing on the missing attribute."""
        self.__dict__.update({"update": "experience", "_stream": None, "_step_ids": None, **state})

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
        if self.update == "step":
            candidates = self.buffer.candidates(strategy.experience.dataset)
            ids, order = candidates["ids"].sort()
            self._stream = {"candidates": candidates, "ids": ids, "rows": order}

    def before_training_iteration(self, strategy, **kwargs):
        if self.update == "step":
            self._step_ids = strategy.mbatch[2].detach().cpu()
        memory = self.memory_batch(strategy)
        if memory is not None:
            strategy.mbatch = join_batches(strategy.mbatch, memory)

    def after_training_iteration(self, strategy, **kwargs):
        if self.update != "step":
            return
        stream = self._stream
        rows = stream["rows"][torch.searchsorted(stream["ids"], self._step_ids)]
        self.buffer.offer(stream["candidates"], self._fill, rows=rows,
                          group=strategy.clock.train_exp_counter)

    def after_training_exp(self, strategy, **kwargs):
        if self.update == "experience":
            self.buffer.add(strategy.experience.dataset, self._fill)
