"""COMET's fixed random router (design/comet.md):

    z_0 = x,   c_l = V_l z_{l-1},   m_l = kWTA_{k_l}(c_l),   z_l = m_l * c_l

The router looks only at the raw input and is never trained, so an input keeps its mask for
ever; that is what makes the masks cacheable by sample id (`MaskCache`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


K_RULES = ("round", "floor")


def n_kept(n: int, p_k: float, rule: str = "round") -> int:
    """k = round(p_k * n), half up (p_k * n often lands on .5), and at least one unit.
    rule="floor": k = floor(p_k * n), as the COMET paper's code computes it (also >= 1).
    The two differ only where p_k * n is not a whole number (e.g. p_k 0.1 of 25 units)."""
    if not 0.0 < p_k <= 1.0:
        raise ValueError(f"p_k must be in (0, 1], got {p_k}")
    if rule not in K_RULES:
        raise ValueError(f"k_rule must be one of {', '.join(K_RULES)}, got {rule!r}")
    # + 1e-9: 0.3 * 10 is 2.9999999999999996 in floating point, and must floor to 3
    return max(1, math.floor(p_k * n + (0.5 if rule == "round" else 1e-9)))


def unit_scores(t: Tensor) -> Tensor:
    """[B, N] per-unit score: a conv map's channels are its units, scored by their spatial mean."""
    return t.flatten(2).mean(-1) if t.dim() > 2 else t


def unit_view(s: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-unit [B, N] tensor to broadcast over `like` ([B, N] or [B, N, H, W])."""
    return s.view(*s.shape, *(1,) * (like.dim() - 2))


def kwta(scores: Tensor, k: int) -> Tensor:
    """Bool mask of the k largest scores along the last dim: exactly k, ties broken by topk.

    The k-th largest value is a threshold, and `scores >= threshold` is the mask: that keeps
    exactly k unless a value ties the threshold, so rows that would keep more (a tie; only
    degenerate inputs such as an all-zero image give one) take topk + scatter instead, which
    is what every row took before. The result is the same as topk + scatter for every row,
    and the threshold saves the scatter (about 20% of the mask's cost on a CPU).
    The mask is a fresh tensor on purpose: autograd keeps it for the backward of `h * mask`.
    """
    if k >= scores.shape[-1]:
        return torch.ones_like(scores, dtype=torch.bool)
    top = scores.topk(k, dim=-1, sorted=False).values
    mask = scores >= top.amin(-1, keepdim=True)
    # every row keeps >= k, so the total is B * k exactly when no row has a tie
    if mask.sum() != mask[..., 0].numel() * k:
        ties = mask.sum(-1) != k
        mask[ties] = _kwta_topk(scores[ties], k)
    return mask


def _kwta_topk(scores: Tensor, k: int) -> Tensor:
    """k-WTA by topk + scatter: exactly k winners per row, ties broken by topk's order."""
    idx = scores.topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True)


class RandomLayer(nn.Module):
    """One fixed router layer shaped like a backbone layer: Linear for [N, fan_in], stride-1
    'same'-padded conv (as the backbone's) for [C_out, C_in, kh, kw]; then the backbone's pool."""

    def __init__(self, shape: Sequence[int], pool: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))  # the backbone's default-init range
        weight = torch.empty(tuple(shape)).uniform_(-bound, bound, generator=generator)
        self.register_buffer("weight", weight)
        self.pool = pool

    def forward(self, z: Tensor) -> Tensor:
        if self.weight.dim() == 2:
            return F.linear(z.flatten(1), self.weight)
        return F.conv2d(z, self.weight, padding=self.weight.shape[-1] // 2)

    def carry(self, c: Tensor, mask: Tensor) -> Tensor:
        """z_l = pool(m_l * c_l): the router's own input to the next layer."""
        z = c * unit_view(mask, c).to(c.dtype)
        return F.max_pool2d(z, self.pool) if self.pool > 1 else z


class MaskCache(nn.Module):
    """Masks by sample id in a growable slot table, so ids seen before skip the router.

    `slot_of_id[id]` is the row of that id's masks in the per-layer bool stores (-1: not
    computed yet). The buffers are non-persistent: they follow `.to(device)` but stay out of
    state_dict, since they are derivable. Only valid while `same id = same input` holds (no
    random augmentation); `hits` / `misses` count looked-up samples.
    """

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("slot_of_id", torch.empty(0, dtype=torch.long), persistent=False)
        for l, n in enumerate(widths):
            self.register_buffer(f"store{l}", torch.empty(0, n, dtype=torch.bool), persistent=False)
        self.n_layers, self.used, self.hits, self.misses = len(widths), 0, 0, 0

    def stores(self) -> list[Tensor]:
        return [getattr(self, f"store{l}") for l in range(self.n_layers)]

    def __getstate__(self) -> dict:
        """Copies and pickles start empty: the masks are derivable and can take GBs (LwF
        keeps a copy of the model, and a run's checkpoint pickles that copy)."""
        state = self.__dict__.copy()
        state["_buffers"] = {name: b[:0] for name, b in self._buffers.items()}
        state.update(used=0, hits=0, misses=0)
        return state

    def clear(self) -> None:
        self.slot_of_id.fill_(-1)
        self.used = self.hits = self.misses = 0

    def _cover(self, n_ids: int) -> None:
        """Make ids < n_ids addressable; doubling keeps growth amortised O(1) per id."""
        have = len(self.slot_of_id)
        if n_ids > have:
            grown = self.slot_of_id.new_full((max(n_ids, 2 * have),), -1)
            grown[:have] = self.slot_of_id
            self.slot_of_id = grown

    def _reserve(self, n_slots: int) -> None:
        """Make room for n_slots masks per layer, doubling likewise."""
        for l, store in enumerate(self.stores()):
            if n_slots > len(store):
                grown = store.new_zeros(max(n_slots, 2 * len(store)), store.shape[1])
                grown[: len(store)] = store
                setattr(self, f"store{l}", grown)

    def missing(self, ids: Tensor) -> Tensor:
        """Positions in `ids` of the ids with no masks yet (each id once)."""
        ids = ids.to(self.slot_of_id.device)
        self._cover(self._check(ids) + 1)
        pos = (self.slot_of_id[ids] < 0).nonzero().flatten()
        first = torch.full_like(self.slot_of_id, -1)
        first.scatter_(0, ids[pos].flip(0), pos.flip(0))  # some position of each missing id
        return first[first >= 0].sort().values

    def insert(self, ids: Tensor, masks: Sequence[Tensor]) -> None:
        """Store the masks of `ids` (distinct ids, none cached yet): one [len(ids), N_l] per layer."""
        ids = ids.to(self.slot_of_id.device)
        self._cover(self._check(ids) + 1)
        self._reserve(self.used + len(ids))
        new_slots = torch.arange(self.used, self.used + len(ids), device=ids.device)
        self.used += len(ids)
        self.slot_of_id[ids] = new_slots
        for store, mask in zip(self.stores(), masks):
            store[new_slots] = mask

    @staticmethod
    def _check(ids: Tensor) -> int:
        """The largest id (-1 for none); negative ids fail."""
        lo, hi = torch.stack(torch.aminmax(ids)).tolist() if ids.numel() else (0, -1)
        if lo < 0:
            raise ValueError("sample ids must be non-negative")
        return hi

    def forward(self, ids: Tensor, compute: Callable[[Tensor], list[Tensor]]) -> list[Tensor]:
        """Masks for `ids`; `compute(rows)` gives the masks of the batch rows selected by the
        bool index `rows` and is called once, for the ids not cached yet."""
        ids = ids.to(self.slot_of_id.device)
        self._cover(self._check(ids) + 1)
        slots = self.slot_of_id[ids]
        missing = slots < 0
        n_missing = int(missing.sum())
        if n_missing:
            new_ids, inverse = ids[missing].unique(return_inverse=True)
            # one row per new id (a batch may hold an id twice: same id = same input)
            first = inverse.new_empty(len(new_ids)).scatter_(
                0, inverse, torch.arange(len(inverse), device=inverse.device))
            self.insert(new_ids, [mask[first] for mask in compute(missing)])
            slots = self.slot_of_id[ids]
        self.hits += len(ids) - n_missing
        self.misses += n_missing
        return [store[slots] for store in self.stores()]


class Router(nn.Module):
    """Fixed random network mirroring the backbone's masked layers; gives their masks.

    shapes[l] is the weight shape of masked layer l ([N, fan_in] or [C_out, C_in, kh, kw]),
    pools[l] the backbone's max-pool kernel after it (1: none). V_l are buffers drawn from a
    private generator seeded by `seed`, so the global RNG (backbone init) is left untouched.
    """

    def __init__(self, shapes: Sequence[Sequence[int]], p_k: float, seed: int = 0,
                 pools: Sequence[int] | None = None, cache: bool = False,
                 k_rule: str = "round") -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        pools = pools or [1] * len(shapes)
        self.layers = nn.ModuleList(RandomLayer(s, p, generator) for s, p in zip(shapes, pools))
        self.p_k = p_k
        self.ks = [n_kept(s[0], p_k, k_rule) for s in shapes]
        self.cache = MaskCache([s[0] for s in shapes]) if cache else None
        if self.cache is not None:
            self.register_load_state_dict_post_hook(Router._drop_cache)

    @staticmethod
    def _drop_cache(module: Router, _incompatible_keys) -> None:
        """Loaded V_l invalidate the cached masks (a named function: models stay picklable)."""
        module.cache.clear()

    @torch.no_grad()
    def compute(self, x: Tensor) -> list[Tensor]:
        """Masks of a batch, no cache: one bool [B, N_l] per masked layer."""
        z, masks = x, []
        for l, (layer, k) in enumerate(zip(self.layers, self.ks)):
            c = layer(z)
            masks.append(kwta(unit_scores(c), k))
            if l + 1 < len(self.layers):
                z = layer.carry(c, masks[-1])
        return masks

    @torch.no_grad()
    def precompute(self, ids: Tensor, inputs: Callable[[Tensor], Tensor],
                   batch_size: int = 4096) -> int:
        """Fill the cache for every id in `ids` not cached yet, `batch_size` inputs at a time;
        `inputs(positions)` gives the inputs of ids[positions]. Returns how many were computed.

        Why: computed per training minibatch, the masks of a first epoch cost a small-batch
        router pass plus the cache's bookkeeping at every step (2.1x a dense step in a run);
        large batches run the router's products near the machine's peak. The masks are the
        same either way: a row's product and k-WTA do not depend on the rest of its batch
        (tests/test_perf_paths.py checks it).
        """
        if self.cache is None:
            raise ValueError("precompute needs a router built with cache=True")
        todo = self.cache.missing(ids)
        for chunk in todo.split(batch_size):
            self.cache.insert(ids[chunk], self.compute(inputs(chunk)))
        return len(todo)

    def forward(self, x: Tensor, ids: Tensor | None = None) -> list[Tensor]:
        if self.cache is None or ids is None:
            return self.compute(x)
        return self.cache(ids, lambda rows: self.compute(x[rows.to(x.device)]))
