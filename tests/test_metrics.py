"""Tests of hcp_lib.metrics: hand-computed cases, agreement with scikit-learn, refusal of
non-finite and out-of-range input, and the bootstrap over HCPs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import brier_score_loss, log_loss, ndcg_score

from hcp_lib import io, metrics

# Two HCPs, five items. HCP 0 engaged with items 1 and 3; HCP 1 with item 4; a third HCP with
# nothing is undefined (NaN) for every observed-relevance metric.
RELEVANT = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=bool))
LISTS = np.array([[1, 0, 3, 2], [0, 2, 4, -1], [0, 1, 2, 3]])


def test_hit_precision_recall_by_hand():
    assert metrics.hit_at_k(LISTS, RELEVANT, 1)[:2].tolist() == [1.0, 0.0]
    assert metrics.precision_at_k(LISTS, RELEVANT, 3)[:2].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert metrics.recall_at_k(LISTS, RELEVANT, 2)[:2].tolist() == pytest.approx([1 / 2, 0.0])
    assert np.isnan(metrics.hit_at_k(LISTS, RELEVANT, 4)[2])


def test_ndcg_by_hand_and_its_mean_over_defined_hcps():
    # HCP 0: hits at ranks 1 and 3 -> (1 + 1/log2(4)) / (1 + 1/log2(3)); HCP 1: hit at rank 3 -> 0.5 / 1
    expected = [(1 + 0.5) / (1 + 1 / np.log2(3)), 0.5]
    assert metrics.ndcg_at_k(LISTS, RELEVANT, 3)[:2] == pytest.approx(expected)
    for k in (1, 2, 3, 4):
        values = metrics.ndcg_at_k(LISTS, RELEVANT, k)
        assert np.isnan(values[2])  # the HCP with nothing relevant is left out of the mean
        assert metrics.mean_over_hcps(values) == pytest.approx(np.mean(values[:2]))


def test_mrr_and_map_by_hand():
    assert metrics.reciprocal_rank_at_k(LISTS, RELEVANT, 4)[:2].tolist() == pytest.approx([1.0, 1 / 3])
    assert metrics.reciprocal_rank_at_k(LISTS, RELEVANT, 2)[1] == 0.0
    # HCP 0: precision@1 = 1 and precision@3 = 2/3 at its hits, / min(4, 2) relevant
    assert metrics.average_precision_at_k(LISTS, RELEVANT, 4)[:2].tolist() == pytest.approx(
        [(1 + 2 / 3) / 2, (1 / 3) / 1]
    )


def test_graded_ndcg_matches_sklearn():
    rng = np.random.default_rng(0)
    gains = rng.random((6, 12))
    scores = rng.random((6, 12))
    top = np.argsort(-scores, axis=1)[:, :5]
    ours = metrics.graded_ndcg_at_k(top, gains, 5)
    theirs = [ndcg_score(gains[i : i + 1], scores[i : i + 1], k=5) for i in range(6)]
    assert ours == pytest.approx(theirs)
    assert metrics.graded_ndcg_at_k(np.argsort(-gains, axis=1)[:, :5], gains, 5) == pytest.approx(np.ones(6))


def test_graded_ndcg_ideal_uses_only_eligible_items():
    gains = np.array([[0.9, 0.5, 0.1]])
    eligible = np.array([[False, True, True]])
    assert metrics.graded_ndcg_at_k(np.array([[1]]), gains, 1, eligible)[0] == pytest.approx(1.0)
    assert metrics.graded_ndcg_at_k(np.array([[2]]), gains, 1, eligible)[0] == pytest.approx(0.1 / 0.5)


def test_ideal_gains_are_the_sorted_best_eligible_gains_and_a_shared_ideal_changes_nothing():
    rng = np.random.default_rng(3)
    gains = rng.uniform(0, 1, (7, 30))
    gains[2] = 0.0  # an HCP with nothing to gain: NaN
    eligible = rng.random((7, 30)) < 0.6
    ideal = metrics.ideal_gains(gains, 20, eligible)
    np.testing.assert_array_equal(ideal, -np.sort(-np.where(eligible, gains, 0.0), axis=1)[:, :20])
    assert metrics.ideal_gains(gains, 50).shape == (7, 30)  # never more than the catalogue
    top = np.argsort(-rng.random((7, 30)), axis=1)[:, :20]
    for k in (1, 5, 10, 20):  # one ideal, computed for the largest k, serves every k: the same values
        np.testing.assert_array_equal(
            metrics.graded_ndcg_at_k(top, gains, k, ideal=ideal), metrics.graded_ndcg_at_k(top, gains, k, eligible)
        )
    with pytest.raises(ValueError, match=r"ideal has shape \(7, 5\); graded NDCG@10 needs \(7, >= 10\)"):
        metrics.graded_ndcg_at_k(top, gains, 10, ideal=ideal[:, :5])
    with pytest.raises(ValueError, match="k must be >= 1"):
        metrics.ideal_gains(gains, 0)


def test_coverage_novelty_diversity_by_hand():
    assert metrics.catalogue_coverage_at_k(LISTS, 5, 2) == pytest.approx(3 / 5)  # items 0, 1, 2
    popularity = np.array([3.0, 1.0, 0.0, 0.0, 0.0])
    novelty = metrics.novelty_at_k(np.array([[0, 1], [2, -1]]), popularity, 3, 2)
    assert novelty.tolist() == pytest.approx([(-np.log2(4 / 4) - np.log2(2 / 4)) / 2, -np.log2(1 / 4)])
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    diversity = metrics.intra_list_diversity_at_k(np.array([[0, 1, 2], [0, -1, -1]]), vectors, 3)
    expected = (1 + (1 - 1 / np.sqrt(2)) * 2) / 3  # pairs (0,1): 1, (0,2) and (1,2): 1 - cos 45°
    assert diversity[0] == pytest.approx(expected)
    assert np.isnan(diversity[1])


def test_list_share_counts_each_item_once_per_list():
    # top-2 lists: [1, 0], [0, 2], [0, 1]; item 0 in all three, 1 in two, 2 in one, 3 and 4 in none
    share = metrics.list_share_at_k(LISTS, 5, 2)
    assert share.tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0])
    assert share.sum() == pytest.approx(2.0)  # the mean list length
    repeated = metrics.list_share_at_k(np.array([[3, 3], [-1, -1]]), 4, 2)
    assert repeated.tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0])  # the empty list does not count
    assert np.isnan(metrics.list_share_at_k(np.full((2, 2), -1), 3, 2)).all()
    with pytest.raises(ValueError, match="item position 4 is not below n_content=4"):
        metrics.list_share_at_k(np.array([[4, 0]]), 4, 2)


def test_channel_metrics_match_sklearn_and_per_hcp_terms():
    y = np.array([1, 0, 0, 1, 0])
    p = np.array([0.8, 0.1, 0.4, 0.3, 0.0])
    assert metrics.log_loss_value(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    assert metrics.log_loss_terms(y, p).mean() == pytest.approx(metrics.log_loss_value(y, p))
    assert metrics.brier_value(y, p) == pytest.approx(brier_score_loss(y, p))
    predicted = np.array(["email", "email", "webinar", "rep_visit"], dtype=object)
    actual = np.array(["email", "webinar", "webinar", "webinar"], dtype=object)
    # email: P=1/2, R=1 -> 2/3; webinar: P=1, R=1/3 -> 1/2; rep_visit is not observed, so not scored
    assert metrics.channel_macro_f1(predicted, actual, ["email", "webinar"]) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_expected_calibration_error_by_hand():
    # two equal-count bins: [0.1, 0.2] observed 1 of 2 -> |0.15 - 0.5|; [0.7, 0.9] observed 2 of 2 -> |0.8 - 1|
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.9])
    assert metrics.expected_calibration_error(y, p, n_bins=2) == pytest.approx((2 * 0.35 + 2 * 0.2) / 4)
    assert metrics.expected_calibration_error(y, y.astype(float), n_bins=2) == 0.0
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    assert metrics.expected_calibration_error(rng.random(20000) < p, p) < 0.02  # calibrated by construction
    assert np.isnan(metrics.expected_calibration_error(np.array([]), np.array([])))
    with pytest.raises(
        io.NonFiniteError,
        match=r"expected_calibration_error was given 1 non-finite probability "
        r"\(1 NaN\) out of 1, first at position 0",
    ):
        metrics.expected_calibration_error(np.array([1]), np.array([np.nan]))


def test_exposure_auc_matches_sklearn_and_refuses_bad_input():
    from sklearn.metrics import roc_auc_score

    y = np.array([1, 0, 0, 1, 0, 1])
    s = np.array([0.9, 0.2, 0.4, 0.4, 0.1, 0.8])
    assert metrics.exposure_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(metrics.exposure_auc(np.ones(3, bool), np.arange(3.0)))
    with pytest.raises(
        io.NonFiniteError,
        match=r"exposure_auc was given 1 non-finite score \(1 NaN\) out of 6, "
        r"first at position 5",
    ):
        metrics.exposure_auc(y, np.r_[s[:-1], np.nan])


# each metric helper with one NaN (or inf) input: (helper, call, message start)
_Y = np.array([1, 0, 1, 0])
_P = np.array([0.9, 0.2, 0.7, 0.4])
_NAN_P = np.array([0.9, np.nan, 0.7, 0.4])
_NAN_LISTS = np.array([[1.0, np.nan, 3.0, 2.0], [0, 2, 4, -1], [0, 1, 2, 3]])
NON_FINITE_CASES = {
    "hit_at_k": (
        lambda: metrics.hit_at_k(_NAN_LISTS, RELEVANT, 2),
        r"hits_at_k was given 1 non-finite recommended item position \(1 NaN\) out of 12, "
        r"first at position \(0, 1\)",
    ),
    "ndcg_at_k": (lambda: metrics.ndcg_at_k(_NAN_LISTS, RELEVANT, 2), r"hits_at_k was given 1 non-finite"),
    "mean_over_hcps": (
        lambda: metrics.mean_over_hcps(np.array([0.5, np.inf])),
        r"mean_over_hcps was given 1 non-finite per-HCP value \(1 inf\)",
    ),
    "brier_terms": (lambda: metrics.brier_terms(_Y, _NAN_P), r"brier_terms was given 1 non-finite probability"),
    "graded_ndcg_at_k": (
        lambda: metrics.graded_ndcg_at_k(LISTS, np.array([[0.1, np.inf, 0, 0, 0]] * 3), 2),
        r"graded_ndcg_at_k was given 3 non-finite gains \(3 inf\) out of 15",
    ),
    "ideal_gains": (
        lambda: metrics.ideal_gains(np.array([[0.1, np.nan, 0.2]]), 2),
        r"ideal_gains was given 1 non-finite gain \(1 NaN\) out of 3",
    ),
    "catalogue_coverage_at_k": (
        lambda: metrics.catalogue_coverage_at_k(_NAN_LISTS, 5, 2),
        r"catalogue_coverage_at_k was given 1 non-finite recommended item position",
    ),
    "list_share_at_k": (
        lambda: metrics.list_share_at_k(_NAN_LISTS, 5, 2),
        r"list_share_at_k was given 1 non-finite recommended item position",
    ),
    "novelty_at_k": (
        lambda: metrics.novelty_at_k(LISTS, np.array([3.0, np.nan, 0, 0, 0]), 3, 2),
        r"novelty_at_k was given 1 non-finite item popularity \(1 NaN\) out of 5",
    ),
    "intra_list_diversity_at_k": (
        lambda: metrics.intra_list_diversity_at_k(LISTS, np.array([[1.0, np.nan]] * 5), 2),
        r"intra_list_diversity_at_k was given 5 non-finite item vector values \(5 NaN\)",
    ),
    "log_loss_value": (
        lambda: metrics.log_loss_value(_Y, _NAN_P),
        r"log_loss_value was given 1 non-finite probability \(1 NaN\) out of 4, first at position 1",
    ),
    "brier_value": (lambda: metrics.brier_value(_Y, _NAN_P), r"brier_value was given 1 non-finite probability"),
    "log_loss_terms": (
        lambda: metrics.log_loss_terms(_Y, _NAN_P),
        r"log_loss_terms was given 1 non-finite probability",
    ),
    "expected_calibration_error": (
        lambda: metrics.expected_calibration_error(_Y, np.r_[_P[:3], np.inf]),
        r"expected_calibration_error was given 1 non-finite probability \(1 inf\)",
    ),
    "reliability_curve": (lambda: metrics.reliability_curve(_Y, _NAN_P), r"reliability_curve was given 1 non-finite"),
    "exposure_auc": (
        lambda: metrics.exposure_auc(_Y, np.r_[_P[:3], -np.inf]),
        r"exposure_auc was given 1 non-finite score \(1 -inf\)",
    ),
    "bootstrap_ratio": (
        lambda: metrics.bootstrap_ratio(np.array([[1.0, np.nan]]), np.ones((1, 2)), np.ones((3, 2))),
        r"bootstrap_ratio was given 1 non-finite numerator \(1 NaN\) out of 2",
    ),
    "mean_terms": (
        lambda: metrics.mean_terms(np.array([0.5, np.nan, np.inf])),
        r"mean_terms was given 1 non-finite per-HCP value \(1 inf\) out of 3, first at position 2",
    ),
}


@pytest.mark.parametrize("helper", list(NON_FINITE_CASES))
def test_metric_helpers_refuse_non_finite_input(helper):
    call, message = NON_FINITE_CASES[helper]
    with pytest.raises(io.NonFiniteError, match=message) as caught:
        call()
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working


@pytest.mark.parametrize(
    "helper",
    [
        metrics.log_loss_value,
        metrics.brier_value,
        metrics.brier_terms,
        metrics.log_loss_terms,
        metrics.expected_calibration_error,
        metrics.reliability_curve,
    ],
)
def test_probability_metrics_refuse_values_outside_0_1(helper):
    with pytest.raises(
        ValueError,
        match=rf"{helper.__name__}: 1 of 4 probabilities lie outside \[0, 1\] "
        r"\(first 1\.5 at position 2\)",
    ):
        helper(_Y, np.array([0.9, 0.2, 1.5, 0.4]))
    with pytest.raises(ValueError, match=rf"{helper.__name__}: engaged has shape \(4,\) but probability has \(3,\)"):
        helper(_Y, _P[:3])


def test_undefined_metric_values_stay_nan():
    # legitimate "undefined": no relevant item, no exposure, NaN per-HCP values in a mean
    assert np.isnan(metrics.ndcg_at_k(LISTS, np.zeros((3, 5), bool), 2)).all()
    assert np.isnan(metrics.mean_over_hcps(metrics.ndcg_at_k(LISTS, np.zeros((3, 5), bool), 2)))
    assert np.isnan(metrics.expected_calibration_error(np.array([]), np.array([])))
    num, den = metrics.mean_terms(np.array([0.5, np.nan]))
    assert num.tolist() == [0.5, 0.0] and den.tolist() == [1.0, 0.0]
    # float item positions that are whole numbers are accepted (-1 = no item)
    assert np.array_equal(
        metrics.hit_at_k(LISTS.astype(float), RELEVANT, 2), metrics.hit_at_k(LISTS, RELEVANT, 2), equal_nan=True
    )
    with pytest.raises(ValueError, match=r"hits_at_k: recommended holds item position 1\.5"):
        metrics.hit_at_k(np.array([[1.5, 0], [0, 1], [1, 2]]), RELEVANT, 2)


def test_reliability_curve_bins_and_counts():
    curve = metrics.reliability_curve(np.array([0, 1, 1, 0]), np.array([0.05, 0.08, 0.95, 1.0]), n_bins=10)
    assert curve["bin"].tolist() == [0, 9]
    assert curve["count"].tolist() == [2, 2]
    assert curve["observed_rate"].tolist() == [0.5, 0.5]
    assert curve["mean_predicted"].tolist() == pytest.approx([0.065, 0.975])


def test_bootstrap_weights_and_ratio():
    weights = metrics.resample_weights(50, 300, seed=1)
    assert weights.shape == (300, 50) and (weights.sum(axis=1) == 50).all()
    assert (metrics.resample_weights(50, 300, seed=1) == weights).all()
    values = np.random.default_rng(2).normal(size=50)
    values[[3, 7]] = np.nan
    point, low, high, resampled = metrics.bootstrap_ratio(*metrics.mean_terms(values), weights)
    assert point[0] == pytest.approx(np.nanmean(values))
    assert low[0] < point[0] < high[0]
    # the interval of a mean shrinks like 1/sqrt(n): roughly 2 * 1.96 * sd / sqrt(n)
    assert high[0] - low[0] == pytest.approx(2 * 1.96 * np.nanstd(values) / np.sqrt(48), rel=0.3)
    constant = metrics.bootstrap_ratio(np.full((1, 50), 2.0), np.full((1, 50), 4.0), weights)
    assert constant[1][0] == constant[2][0] == 0.5
