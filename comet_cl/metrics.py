"""Continual-learning metrics, defined once (see design/metrics.md).

Every function here is pure: it takes the accuracy matrix ``R`` (``R[i][j]`` = accuracy on
experience ``j``'s test set after training on experiences ``0..i``), the same model's accuracy
before training ``R0``, or the learning curves, and returns a float. Accuracies are fractions
in [0, 1]. ``METRICS`` lists the headline metrics with the definition each one uses, so the
report can say which definition a column follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]]
Curve = Sequence[tuple[int, float]]  # (minibatches trained on the experience, accuracy)

BETA = 10  # LCA horizon, Chaudhry et al. 2019
THRESHOLD = 0.9  # steps to threshold: fraction of R[k][k] to reach


def _square(R: Matrix) -> np.ndarray:
    r = np.asarray(R, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"R must be a non-empty T x T matrix, got shape {r.shape}")
    return r


def acc(R: Matrix) -> float:
    """Final average accuracy: mean over j of R[T-1][j] (GEM)."""
    return float(np.asarray(R, dtype=float)[-1].mean())


def bwt(R: Matrix) -> float:
    """Backward transfer: mean over j < T-1 of R[T-1][j] - R[j][j] (GEM). NaN when T = 1."""
    r = _square(R)
    t = r.shape[0]
    if t < 2:
        return float("nan")
    return float(np.mean([r[-1, j] - r[j, j] for j in range(t - 1)]))


def forgetting(R: Matrix) -> float:
    """Mean over j < T-1 of max_{l in j..T-2} R[l][j] - R[T-1][j] (RWalk, max definition)."""
    r = _square(R)
    t = r.shape[0]
    if t < 2:
        return float("nan")
    return float(np.mean([r[j : t - 1, j].max() - r[-1, j] for j in range(t - 1)]))


def fwt(R: Matrix, R0: Sequence[float]) -> float:
    """Forward transfer: mean over j >= 1 of R[j-1][j] - R0[j], R0 the same model untrained (GEM)."""
    r = _square(R)
    r0 = np.asarray(R0, dtype=float)
    t = r.shape[0]
    if r0.shape != (t,):
        raise ValueError(f"R0 must have {t} entries, got {r0.shape}")
    if t < 2:
        return float("nan")
    return float(np.mean([r[j - 1, j] - r0[j] for j in range(1, t)]))


def intransigence(R: Matrix, R_joint: Sequence[float]) -> float:
    """Mean over j of R_joint[j] - R[j][j], R_joint from joint training on all data (RWalk)."""
    r = _square(R)
    rj = np.asarray(R_joint, dtype=float)
    if rj.shape != (r.shape[0],):
        raise ValueError(f"R_joint must have {r.shape[0]} entries, got {rj.shape}")
    return float(np.mean(rj - np.diag(r)))


def _curve_at(curve: Curve, b: int) -> float:
    for step, a in curve:
        if step == b:
            return float(a)
    raise ValueError(f"learning curve has no point at minibatch {b}")


def lca(curves: Sequence[Curve], beta: int = BETA) -> float:
    """Learning curve area (A-GEM): mean over b = 0..beta of Z_b, Z_b = mean over k of a(k, b)."""
    if not curves:
        return float("nan")
    z = [np.mean([_curve_at(c, b) for c in curves]) for b in range(beta + 1)]
    return float(np.mean(z))


def _first_step_at(curve: Curve, target: float) -> int:
    """The first recorded minibatch count whose accuracy reaches ``target``; the curve's last
    step when it never does (a lower bound: a mean is never optimistic by omission)."""
    hit = [s for s, a in curve if a >= target]
    return min(hit) if hit else max(s for s, _ in curve)


def steps_to_threshold(
    curves: Sequence[Curve], R: Matrix, fraction: float = THRESHOLD
) -> float:
    """Mean over experiences k of the first recorded minibatch count at which the accuracy on
    k reaches ``fraction * R[k][k]``. An experience whose curve never gets there counts as its
    last recorded step (a lower bound), so the mean is never silently optimistic by omission."""
    r = _square(R)
    if len(curves) != r.shape[0]:
        raise ValueError(f"need one curve per experience ({r.shape[0]}), got {len(curves)}")
    return float(np.mean([_first_step_at(c, fraction * r[k, k]) for k, c in enumerate(curves)]))


def steps_to_accuracy(curves: Sequence[Curve], level: float) -> float:
    """Mean over experiences of the first recorded minibatch count at which the accuracy
    reaches the fixed ``level`` (a fraction), the last recorded step where it never does.

    Unlike :func:`steps_to_threshold`, whose target is each run's own final accuracy, one
    level serves every model: a model that ends lower does not get an easier target, which
    is what a comparison of learning speed across models needs."""
    if not curves:
        raise ValueError("need at least one learning curve")
    return float(np.mean([_first_step_at(c, level) for c in curves]))


def summarize(
    R: Matrix,
    R0: Sequence[float] | None = None,
    curves: Sequence[Curve] | None = None,
    beta: int = BETA,
) -> dict[str, float]:
    """All headline metrics one run's records allow (NaN where a record is missing; LCA_beta is
    NaN when an experience had fewer than beta minibatches, for which it is undefined)."""
    nan = float("nan")
    long_enough = bool(curves) and all(max(s for s, _ in c) >= beta for c in curves)
    return {
        "acc": acc(R),
        "bwt": bwt(R),
        "forgetting": forgetting(R),
        "fwt": fwt(R, R0) if R0 is not None else nan,
        "lca": lca(curves, beta) if long_enough else nan,
        "steps_to_threshold": steps_to_threshold(curves, R) if curves else nan,
    }


METRICS = {
    "acc": "ACC: mean_j R[T-1][j] (Lopez-Paz & Ranzato 2017)",
    "bwt": "BWT: mean_{j<T-1} R[T-1][j] - R[j][j] (GEM)",
    "forgetting": "Forgetting: mean_{j<T-1} max_{l in j..T-2} R[l][j] - R[T-1][j] (Chaudhry et al. 2018)",
    "fwt": "FWT: mean_{j>=1} R[j-1][j] - R0[j], R0 = same model at init (GEM)",
    "lca": f"LCA_{BETA}: mean_b mean_k a(k, b), b = 0..{BETA} minibatches (Chaudhry et al. 2019)",
    "steps_to_threshold": f"Steps to {THRESHOLD:.0%} of R[k][k]: first evaluated minibatch, mean over k",
    "intransigence": "Intransigence: mean_j R_joint[j] - R[j][j] (Chaudhry et al. 2018)",
}
