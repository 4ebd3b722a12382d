"""The stream registry as plain metadata: what each stream name means, with no torch import.

It lives apart from ``comet_cl.streams`` (which builds the Avalanche benchmarks and so imports
torch and Avalanche, seconds of start-up) so that checking a spec and ``comet-cl list``
answer at once. ``comet_cl.streams`` re-exports everything here.

A stream declares what depends on it: its default model architecture and how many
experiences it can be cut into. Other modules ask the entry, never compare stream names.
"""

from __future__ import annotations

from dataclasses import dataclass

# Permuted streams can have any number of experiences; past this the stream is a typo (and
# its evaluation matrix, T x T passes over the test set, would take days).
MAX_PERMUTED_EXPERIENCES = 100


@dataclass(frozen=True)
class StreamKind:
    """What a stream name means: which dataset, how it is cut, how many experiences, and the
    model architecture a suite gets when it names none.

    ``scenario`` is how the data is cut ("permuted": every experience is all classes under a
    new pixel permutation; "split": every experience is a group of classes).
    ``relabel_within_experience``: a split stream whose label is the class's position within
    its experience's group ("first or second digit of the pair"): van de Ven & Tolias'
    domain-incremental split MNIST, one shared 2-way head, no task identity. Otherwise the
    label is the class itself (class-incremental: one head over every class).
    """

    dataset: str
    scenario: str  # "permuted" or "split"
    n_experiences: int
    n_classes: int  # classes in the dataset
    default_arch: str = "mlp"
    relabel_within_experience: bool = False

    @property
    def incremental(self) -> str:
        """The continual-learning scenario (van de Ven & Tolias 2019): "domain" or "class"."""
        return "domain" if self.scenario == "permuted" or self.relabel_within_experience else "class"

    def n_outputs(self, n_experiences: int) -> int:
        """Width of the model's output layer."""
        if self.relabel_within_experience:
            return self.n_classes // n_experiences
        return self.n_classes

    @property
    def splits_classes(self) -> bool:
        """Experiences are disjoint groups of classes (so their number must divide them)."""
        return self.scenario != "permuted"

    def experiences_error(self, n: int) -> str | None:
        """Why this stream cannot have ``n`` experiences, or None when it can."""
        if n < 1:
            return f"must be at least 1, got {n}"
        if self.splits_classes:
            if self.n_classes % n:
                ok = [d for d in range(1, self.n_classes + 1) if self.n_classes % d == 0]
                return (f"{self.n_classes} classes do not split evenly into {n} experiences "
                        f"(possible: {', '.join(map(str, ok))})")
        elif n > MAX_PERMUTED_EXPERIENCES:
            return f"at most {MAX_PERMUTED_EXPERIENCES} for a permuted stream, got {n}"
        return None

    def class_order_error(self, order) -> str | None:
        """Why ``order`` is not a class order of this stream (a name of CLASS_ORDERS, a
        permutation of the class ids, or None for the natural order), or None when it is."""
        if order is None or (isinstance(order, str) and order in CLASS_ORDERS):
            return None
        if isinstance(order, str) or sorted(order) != list(range(self.n_classes)):
            return (f"must be one of {', '.join(repr(o) for o in CLASS_ORDERS)} or a "
                    f"permutation of 0..{self.n_classes - 1}, got {order!r}")
        return None


# How pixels reach the model: "standardized" (per-channel mean 0, std 1, this project's
# default) or "unit" (x / 255, as van de Ven & Tolias feed their MLPs). comet_cl.streams applies it.
PIXELS = ("standardized", "unit")
# Named class orders of a split stream (besides an explicit permutation): "random" draws one
# from the run seed with torch; "vandeven" draws it as van de Ven & Tolias' data.py does
# (np.random.seed(seed); p = np.random.permutation(n); experience t = the classes c with
# p[c] in {2t, 2t+1}), so a run with seed s gets the pairs (and Domain-IL labels) of their seed s.
CLASS_ORDERS = ("random", "vandeven")

STREAMS: dict[str, StreamKind] = {
    "permuted-mnist": StreamKind("mnist", "permuted", 10, 10),
    "split-mnist": StreamKind("mnist", "split", 5, 10),
    "split-mnist-domain": StreamKind("mnist", "split", 5, 10, relabel_within_experience=True),
    "split-fashion-mnist": StreamKind("fashion-mnist", "split", 5, 10),
    "split-cifar10": StreamKind("cifar10", "split", 5, 10, default_arch="conv"),
    "split-cifar100": StreamKind("cifar100", "split", 10, 100, default_arch="conv"),
}


def stream_label(stream) -> str:
    """What a stream entry's runs are filed and shown under (``runs/<label>/...``, the
    report's and the sweep's tables): its ``label`` where the suite gives one, else its
    stream's name. Every reader asks here, so a label set in a suite reaches them all."""
    return stream.get("label") or stream["name"]


def stream_kind(name: str) -> StreamKind:
    if name not in STREAMS:
        import difflib
        close = difflib.get_close_matches(name, STREAMS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown stream '{name}'{hint} (known: {', '.join(STREAMS)})")
    return STREAMS[name]


# What each model variant and architecture is, as the report labels it: (short label, what
# it is). The COMET paper's own design and controls, or this project's extension. Light text
# here (the report imports no torch); tests/test_declared_behaviour.py keeps one entry per
# comet_cl.models registry name.
VARIANT_DESIGN = {
    "dense": ("paper control", "every unit on (p_k = 1)"),
    "comet": ("paper (COMET)", "fixed random router, k-WTA masks per input (Shaier et al. 2025)"),
    "smaller": ("paper control", "dense with round(p_k N) units per layer"),
    "dropout": ("paper control", "dropout at rate 1 - p_k in training"),
    "topk": ("paper control", "k-WTA on the backbone's own pre-activations"),
    "bernoulli": ("extension", "a fixed random mask per training example, scaled by 1/p_k, "
                               "none at test (this project's)"),
    "smoe": ("added baseline", "Shazeer et al. 2017 noisy top-k trained gate at matched "
                               "active units (this project's)"),
}
ARCH_DESIGN = {
    "mlp": ("paper", "fully connected layers, units masked, as in the paper"),
    "conv": ("extension", "conv layers; COMET masks channels, picked by the router's spatial "
                          "mean (this project's)"),
}
