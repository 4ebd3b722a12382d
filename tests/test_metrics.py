"""The metric definitions of design/metrics.md, on hand-made matrices with known answers."""

import math

import pytest

from comet_cl import metrics

# 3 experiences. Row i: accuracies after training on 0..i.
R = [
    [0.9, 0.1, 0.2],
    [0.6, 0.8, 0.3],
    [0.5, 0.7, 0.95],
]
R0 = [0.1, 0.15, 0.25]


def test_acc_is_the_mean_of_the_last_row():
    assert metrics.acc(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_bwt_compares_final_with_just_learned():
    # j=0: 0.5-0.9 = -0.4 ; j=1: 0.7-0.8 = -0.1
    assert metrics.bwt(R) == pytest.approx(-0.25)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_diagonal():
    # Experience 0 peaks at R[1][0] = 0.95 after it was learned at 0.6: the max definition
    # (RWalk) sees 0.95 - 0.5, Avalanche's diagonal definition would see 0.6 - 0.5.
    r = [[0.6, 0.0, 0.0], [0.95, 0.8, 0.0], [0.5, 0.7, 0.9]]
    assert metrics.forgetting(r) == pytest.approx(((0.95 - 0.5) + (0.8 - 0.7)) / 2)
    assert metrics.bwt(r) == pytest.approx(((0.5 - 0.6) + (0.7 - 0.8)) / 2)


def test_improvement_gives_negative_forgetting_and_positive_bwt():
    r = [[0.5, 0.0], [0.7, 0.9]]  # accuracy on experience 0 improved after experience 1
    assert metrics.forgetting(r) == pytest.approx(-0.2)  # max over l in 0..T-2 excludes T-1
    assert metrics.bwt(r) == pytest.approx(0.2)


def test_fwt_against_the_same_models_init():
    # j=1: R[0][1]-R0[1] = 0.1-0.15 ; j=2: R[1][2]-R0[2] = 0.3-0.25
    assert metrics.fwt(R, R0) == pytest.approx((-0.05 + 0.05) / 2)


def test_intransigence_against_joint():
    assert metrics.intransigence(R, [0.95, 0.9, 0.97]) == pytest.approx(
        ((0.95 - 0.9) + (0.9 - 0.8) + (0.97 - 0.95)) / 3)


def test_lca_averages_the_first_beta_minibatches():
    c1 = [(b, b / 10) for b in range(11)] + [(20, 1.0)]
    c2 = [(b, 0.5) for b in range(11)]
    # Z_b = (b/10 + 0.5) / 2, mean over b=0..10 of b/10 is 0.5
    assert metrics.lca([c1, c2], beta=10) == pytest.approx((0.5 + 0.5) / 2)
    assert metrics.lca([c1], beta=2) == pytest.approx((0 + 0.1 + 0.2) / 3)


def test_lca_needs_every_point_up_to_beta():
    with pytest.raises(ValueError, match="minibatch 3"):
        metrics.lca([[(0, 0.1), (1, 0.2), (2, 0.3)]], beta=3)


def test_steps_to_threshold_first_point_reaching_the_fraction():
    r = [[0.8, 0.0], [0.5, 1.0]]
    c0 = [(0, 0.1), (1, 0.5), (2, 0.75), (3, 0.8)]  # 0.9*0.8 = 0.72 first at 2
    c1 = [(0, 0.0), (5, 0.95)]  # 0.9 first at 5
    assert metrics.steps_to_threshold([c0, c1], r) == pytest.approx(3.5)
    never = [(0, 0.0), (10, 0.5)]  # never reaches 0.9: counts its last step, a lower bound
    assert metrics.steps_to_threshold([c0, never], r) == pytest.approx(6.0)


def test_steps_to_accuracy_one_level_for_every_run():
    fast_low = [(0, 0.1), (10, 0.4), (20, 0.44)]  # reaches 0.4 at 10, ends at 0.44
    slow_high = [(0, 0.1), (10, 0.3), (20, 0.5), (30, 0.9)]  # reaches 0.4 at 20
    assert metrics.steps_to_accuracy([fast_low], 0.4) == 10
    assert metrics.steps_to_accuracy([slow_high], 0.4) == 20
    # a threshold at 90% of its own final: 0.9 x 0.44 is reached at 10, 0.9 x 0.9 at 30
    assert metrics.steps_to_threshold([fast_low], [[0.44]]) == 10
    assert metrics.steps_to_threshold([slow_high], [[0.9]]) == 30
    assert metrics.steps_to_accuracy([fast_low, slow_high], 0.4) == pytest.approx(15)
    assert metrics.steps_to_accuracy([fast_low], 0.6) == 20  # never: its last step, a lower bound
    with pytest.raises(ValueError, match="at least one"):
        metrics.steps_to_accuracy([], 0.4)


def test_single_experience_has_no_transfer():
    s = metrics.summarize([[0.9]], [0.1])
    assert s["acc"] == pytest.approx(0.9)
    assert all(math.isnan(s[k]) for k in ("bwt", "forgetting", "fwt"))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="T x T"):
        metrics.bwt([[0.1, 0.2]])
    with pytest.raises(ValueError, match="R0 must have 3"):
        metrics.fwt(R, [0.1])


def test_every_headline_metric_has_a_stated_definition():
    assert set(metrics.summarize(R, R0, [[(b, 0.5) for b in range(11)]] * 3)) <= set(metrics.METRICS)
