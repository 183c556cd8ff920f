"""Tests of hcp_lib.evaluate_metrics (hand-computed cases, sklearn) and hcp_lib.evaluate
(bad input, the metrics.json schema), plus notebook 06 at tiny scale (slow)."""

from __future__ import annotations

import json
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import brier_score_loss, log_loss, ndcg_score

from hcp_lib import evaluate as ev
from hcp_lib import evaluate_metrics as em
from hcp_lib import io, metrics
from hcp_lib.domain import CHANNELS

# Two HCPs, five items. HCP 0 engaged with items 1 and 3; HCP 1 with item 4; a third HCP with
# nothing is undefined (NaN) for every observed-relevance metric.
RELEVANT = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=bool))
LISTS = np.array([[1, 0, 3, 2], [0, 2, 4, -1], [0, 1, 2, 3]])


def test_hit_precision_recall_by_hand():
    assert em.hit_at_k(LISTS, RELEVANT, 1)[:2].tolist() == [1.0, 0.0]
    assert em.precision_at_k(LISTS, RELEVANT, 3)[:2].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert em.recall_at_k(LISTS, RELEVANT, 2)[:2].tolist() == pytest.approx([1 / 2, 0.0])
    assert np.isnan(em.hit_at_k(LISTS, RELEVANT, 4)[2])


def test_ndcg_by_hand_and_same_mean_as_cf_metrics():
    # HCP 0: hits at ranks 1 and 3 -> (1 + 1/log2(4)) / (1 + 1/log2(3)); HCP 1: hit at rank 3 -> 0.5 / 1
    expected = [(1 + 0.5) / (1 + 1 / np.log2(3)), 0.5]
    assert em.ndcg_at_k(LISTS, RELEVANT, 3)[:2] == pytest.approx(expected)
    for k in (1, 2, 3, 4):
        assert np.nanmean(em.ndcg_at_k(LISTS, RELEVANT, k)) == pytest.approx(metrics.ndcg_at_k(LISTS, RELEVANT, k))
        assert np.nanmean(em.hit_at_k(LISTS, RELEVANT, k)) == pytest.approx(metrics.hit_rate_at_k(LISTS, RELEVANT, k))


def test_mrr_and_map_by_hand():
    assert em.reciprocal_rank_at_k(LISTS, RELEVANT, 4)[:2].tolist() == pytest.approx([1.0, 1 / 3])
    assert em.reciprocal_rank_at_k(LISTS, RELEVANT, 2)[1] == 0.0
    # HCP 0: precision@1 = 1 and precision@3 = 2/3 at its hits, / min(4, 2) relevant
    assert em.average_precision_at_k(LISTS, RELEVANT, 4)[:2].tolist() == pytest.approx([(1 + 2 / 3) / 2, (1 / 3) / 1])


def test_graded_ndcg_matches_sklearn():
    rng = np.random.default_rng(0)
    gains = rng.random((6, 12))
    scores = rng.random((6, 12))
    top = np.argsort(-scores, axis=1)[:, :5]
    ours = em.graded_ndcg_at_k(top, gains, 5)
    theirs = [ndcg_score(gains[i:i + 1], scores[i:i + 1], k=5) for i in range(6)]
    assert ours == pytest.approx(theirs)
    assert em.graded_ndcg_at_k(np.argsort(-gains, axis=1)[:, :5], gains, 5) == pytest.approx(np.ones(6))


def test_graded_ndcg_ideal_uses_only_eligible_items():
    gains = np.array([[0.9, 0.5, 0.1]])
    eligible = np.array([[False, True, True]])
    assert em.graded_ndcg_at_k(np.array([[1]]), gains, 1, eligible)[0] == pytest.approx(1.0)
    assert em.graded_ndcg_at_k(np.array([[2]]), gains, 1, eligible)[0] == pytest.approx(0.1 / 0.5)


def test_coverage_novelty_diversity_by_hand():
    assert em.catalogue_coverage_at_k(LISTS, 5, 2) == pytest.approx(3 / 5)  # items 0, 1, 2
    popularity = np.array([3.0, 1.0, 0.0, 0.0, 0.0])
    novelty = em.novelty_at_k(np.array([[0, 1], [2, -1]]), popularity, 3, 2)
    assert novelty.tolist() == pytest.approx([(-np.log2(4 / 4) - np.log2(2 / 4)) / 2, -np.log2(1 / 4)])
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    diversity = em.intra_list_diversity_at_k(np.array([[0, 1, 2], [0, -1, -1]]), vectors, 3)
    expected = (1 + (1 - 1 / np.sqrt(2)) * 2) / 3  # pairs (0,1): 1, (0,2) and (1,2): 1 - cos 45°
    assert diversity[0] == pytest.approx(expected)
    assert np.isnan(diversity[1])


def test_channel_metrics_match_sklearn_and_per_hcp_terms():
    y = np.array([1, 0, 0, 1, 0])
    p = np.array([0.8, 0.1, 0.4, 0.3, 0.0])
    assert em.log_loss_value(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    assert em.log_loss_terms(y, p).mean() == pytest.approx(em.log_loss_value(y, p))
    assert em.brier_value(y, p) == pytest.approx(brier_score_loss(y, p))
    predicted = np.array(["email", "email", "webinar", "rep_visit"], dtype=object)
    actual = np.array(["email", "webinar", "webinar", "webinar"], dtype=object)
    # email: P=1/2, R=1 -> 2/3; webinar: P=1, R=1/3 -> 1/2; rep_visit is not observed, so not scored
    assert em.channel_macro_f1(predicted, actual, ["email", "webinar"]) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_expected_calibration_error_by_hand():
    # two equal-count bins: [0.1, 0.2] observed 1 of 2 -> |0.15 - 0.5|; [0.7, 0.9] observed 2 of 2 -> |0.8 - 1|
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.9])
    assert em.expected_calibration_error(y, p, n_bins=2) == pytest.approx((2 * 0.35 + 2 * 0.2) / 4)
    assert em.expected_calibration_error(y, y.astype(float), n_bins=2) == 0.0
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    assert em.expected_calibration_error(rng.random(20000) < p, p) < 0.02  # calibrated by construction
    assert np.isnan(em.expected_calibration_error(np.array([]), np.array([])))
    with pytest.raises(io.NonFiniteError, match=r"expected_calibration_error was given 1 non-finite probability "
                                                r"\(1 NaN\) out of 1, first at position 0"):
        em.expected_calibration_error(np.array([1]), np.array([np.nan]))


def test_exposure_auc_matches_sklearn_and_refuses_bad_input():
    from sklearn.metrics import roc_auc_score

    y = np.array([1, 0, 0, 1, 0, 1])
    s = np.array([0.9, 0.2, 0.4, 0.4, 0.1, 0.8])
    assert metrics.exposure_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(metrics.exposure_auc(np.ones(3, bool), np.arange(3.0)))
    with pytest.raises(io.NonFiniteError, match=r"exposure_auc was given 1 non-finite score \(1 NaN\) out of 6, "
                                                r"first at position 5"):
        metrics.exposure_auc(y, np.r_[s[:-1], np.nan])


# each metric helper with one NaN (or inf) input: (helper, call, message start)
_Y = np.array([1, 0, 1, 0])
_P = np.array([0.9, 0.2, 0.7, 0.4])
_NAN_P = np.array([0.9, np.nan, 0.7, 0.4])
_NAN_LISTS = np.array([[1.0, np.nan, 3.0, 2.0], [0, 2, 4, -1], [0, 1, 2, 3]])
NON_FINITE_CASES = {
    "hit_rate_at_k": (lambda: metrics.hit_rate_at_k(_NAN_LISTS, RELEVANT, 2),
                      r"hits_at_k was given 1 non-finite recommended item position \(1 NaN\) out of 12, "
                      r"first at position \(0, 1\)"),
    "ndcg_at_k": (lambda: metrics.ndcg_at_k(_NAN_LISTS, RELEVANT, 2), r"hits_at_k was given 1 non-finite"),
    "per-HCP ndcg_at_k": (lambda: em.ndcg_at_k(_NAN_LISTS, RELEVANT, 2), r"hits_at_k was given 1 non-finite"),
    "graded_ndcg_at_k": (lambda: em.graded_ndcg_at_k(LISTS, np.array([[0.1, np.inf, 0, 0, 0]] * 3), 2),
                         r"graded_ndcg_at_k was given 3 non-finite gains \(3 inf\) out of 15"),
    "catalogue_coverage_at_k": (lambda: em.catalogue_coverage_at_k(_NAN_LISTS, 5, 2),
                                r"catalogue_coverage_at_k was given 1 non-finite recommended item position"),
    "novelty_at_k": (lambda: em.novelty_at_k(LISTS, np.array([3.0, np.nan, 0, 0, 0]), 3, 2),
                     r"novelty_at_k was given 1 non-finite item popularity \(1 NaN\) out of 5"),
    "intra_list_diversity_at_k": (lambda: em.intra_list_diversity_at_k(LISTS, np.array([[1.0, np.nan]] * 5), 2),
                                  r"intra_list_diversity_at_k was given 5 non-finite item vector values \(5 NaN\)"),
    "log_loss_value": (lambda: em.log_loss_value(_Y, _NAN_P),
                       r"log_loss_value was given 1 non-finite probability \(1 NaN\) out of 4, first at position 1"),
    "brier_value": (lambda: em.brier_value(_Y, _NAN_P), r"brier_value was given 1 non-finite probability"),
    "log_loss_terms": (lambda: em.log_loss_terms(_Y, _NAN_P), r"log_loss_terms was given 1 non-finite probability"),
    "expected_calibration_error": (lambda: em.expected_calibration_error(_Y, np.r_[_P[:3], np.inf]),
                                   r"expected_calibration_error was given 1 non-finite probability \(1 inf\)"),
    "reliability_curve": (lambda: em.reliability_curve(_Y, _NAN_P), r"reliability_curve was given 1 non-finite"),
    "exposure_auc": (lambda: metrics.exposure_auc(_Y, np.r_[_P[:3], -np.inf]),
                     r"exposure_auc was given 1 non-finite score \(1 -inf\)"),
    "bootstrap_ratio": (lambda: em.bootstrap_ratio(np.array([[1.0, np.nan]]), np.ones((1, 2)), np.ones((3, 2))),
                        r"bootstrap_ratio was given 1 non-finite numerator \(1 NaN\) out of 2"),
    "mean_terms": (lambda: em.mean_terms(np.array([0.5, np.nan, np.inf])),
                   r"mean_terms was given 1 non-finite per-HCP value \(1 inf\) out of 3, first at position 2"),
}


@pytest.mark.parametrize("helper", list(NON_FINITE_CASES))
def test_metric_helpers_refuse_non_finite_input(helper):
    call, message = NON_FINITE_CASES[helper]
    with pytest.raises(io.NonFiniteError, match=message) as caught:
        call()
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working


@pytest.mark.parametrize("helper", [em.log_loss_value, em.brier_value, em.log_loss_terms, em.expected_calibration_error,
                                    em.reliability_curve])
def test_probability_metrics_refuse_values_outside_0_1(helper):
    with pytest.raises(ValueError, match=rf"{helper.__name__}: 1 of 4 probabilities lie outside \[0, 1\] "
                                         r"\(first 1\.5 at position 2\)"):
        helper(_Y, np.array([0.9, 0.2, 1.5, 0.4]))
    with pytest.raises(ValueError, match=rf"{helper.__name__}: engaged has shape \(4,\) but probability has \(3,\)"):
        helper(_Y, _P[:3])


def test_undefined_metric_values_stay_nan():
    # legitimate "undefined": no relevant item, no exposure, NaN per-HCP values in a mean
    assert np.isnan(metrics.ndcg_at_k(LISTS, np.zeros((3, 5), bool), 2))
    assert np.isnan(em.expected_calibration_error(np.array([]), np.array([])))
    num, den = em.mean_terms(np.array([0.5, np.nan]))
    assert num.tolist() == [0.5, 0.0] and den.tolist() == [1.0, 0.0]
    # float item positions that are whole numbers are accepted (-1 = no item)
    assert metrics.hit_rate_at_k(LISTS.astype(float), RELEVANT, 2) == metrics.hit_rate_at_k(LISTS, RELEVANT, 2)
    with pytest.raises(ValueError, match=r"hits_at_k: recommended holds item position 1\.5"):
        metrics.hit_rate_at_k(np.array([[1.5, 0], [0, 1], [1, 2]]), RELEVANT, 2)


def test_reliability_curve_bins_and_counts():
    curve = em.reliability_curve(np.array([0, 1, 1, 0]), np.array([0.05, 0.08, 0.95, 1.0]), n_bins=10)
    assert curve["bin"].tolist() == [0, 9]
    assert curve["count"].tolist() == [2, 2]
    assert curve["observed_rate"].tolist() == [0.5, 0.5]
    assert curve["mean_predicted"].tolist() == pytest.approx([0.065, 0.975])


def test_bootstrap_weights_and_ratio():
    weights = em.resample_weights(50, 300, seed=1)
    assert weights.shape == (300, 50) and (weights.sum(axis=1) == 50).all()
    assert (em.resample_weights(50, 300, seed=1) == weights).all()
    values = np.random.default_rng(2).normal(size=50)
    values[[3, 7]] = np.nan
    point, low, high, resampled = em.bootstrap_ratio(*em.mean_terms(values), weights)
    assert point[0] == pytest.approx(np.nanmean(values))
    assert low[0] < point[0] < high[0]
    # the interval of a mean shrinks like 1/sqrt(n): roughly 2 * 1.96 * sd / sqrt(n)
    assert high[0] - low[0] == pytest.approx(2 * 1.96 * np.nanstd(values) / np.sqrt(48), rel=0.3)
    constant = em.bootstrap_ratio(np.full((1, 50), 2.0), np.full((1, 50), 4.0), weights)
    assert constant[1][0] == constant[2][0] == 0.5


# --- the evaluation on a hand-made setting ---------------------------------------------------


def small_setting() -> ev.EvaluationSetting:
    hcp_ids = np.array(["SYN00000001", "SYN00000002"], dtype=object)
    content_ids = pd.Index(["a", "b", "c"], dtype=object)
    oracle = np.zeros((2, 3, len(CHANNELS)))
    oracle[0, 1, 2] = 0.6
    oracle[1, 2, 0] = 0.4
    exclude = np.array([[False, False, False], [True, False, False]])
    test_rows = pd.DataFrame({"exposure_id": [1, 2], "hcp_id": hcp_ids, "content_id": ["b", "c"],
                              "channel": ["rep_visit", "email"], "engaged": [True, False],
                              "true_engagement_prob": [0.6, 0.4], "row": [0, 1], "col": [1, 2]})
    catalogue = pd.DataFrame({"content_id": content_ids, "title": ["A", "B", "C"], "therapeutic_area": ["x"] * 3})

    class Split:
        def to_dict(self):
            return {"test_start": "2025-12-08T00:00:00"}

    relevant = sp.csr_matrix(np.array([[False, True, False], [False, False, False]]))
    return ev.EvaluationSetting(Split(), hcp_ids, content_ids, np.array(["cardiology"] * 2, dtype=object), oracle,
                                exclude, relevant, test_rows, np.array([0, 4]), np.zeros(3), np.eye(3),
                                np.array([False, False, True]), catalogue)


def test_scores_with_nan_name_the_model():
    setting = small_setting()
    scores = np.array([[0.1, np.nan, 0.2], [0.3, 0.2, 0.1]])
    with pytest.raises(ev.NonFiniteOutputError,
                       match=r"model 'hybrid_lstm' returned 1 non-finite score \(1 NaN\) out of 6 in its score matrix, "
                             rf"first at HCP '{setting.hcp_ids[0]}', position \(0, 1\); it cannot be evaluated"):
        ev.from_scores("hybrid_lstm", setting.hcp_ids, setting.content_ids, scores, setting)
    with pytest.raises(ev.EvaluationError,
                       match=r"model 'm' returned 30 non-finite channel scores \(30 inf\) out of 30"):
        ev.from_scores("m", setting.hcp_ids, setting.content_ids, np.zeros((2, 3)), setting,
                       channel_scores=np.full((2, 3, 5), np.inf))
    # one error, catchable as the evaluation's and as every non-finite error of the project
    assert issubclass(ev.NonFiniteOutputError, ev.EvaluationError)
    assert issubclass(ev.NonFiniteOutputError, io.NonFiniteError)


def test_saved_outputs_with_non_finite_values_name_the_model_and_file():
    setting = small_setting()
    first, second = setting.hcp_ids
    lists = pd.DataFrame({"hcp_id": [first] * 3 + [second] * 2, "rank": [1, 2, 3, 1, 2],
                          "content_id": ["b", "a", "c", "c", "b"], "score": [np.inf, 0.5, 0.1, 0.8, 0.2]})
    with pytest.raises(ev.NonFiniteOutputError, match=r"model 'hybrid' returned 1 non-finite score \(1 inf\) out of 5 "
                                                      r"in column 'score' of hybrid/test_top_n/hybrid\.parquet"):
        ev.from_lists("hybrid", lists, setting, "hybrid", "hybrid/test_top_n/hybrid.parquet")
    probs = pd.DataFrame({"exposure_id": [1, 2], "engagement_prob": [0.3, np.nan]})
    with pytest.raises(ev.NonFiniteOutputError, match=r"model 'hybrid' returned 1 non-finite exposure probability "
                                                      r"\(1 NaN\) out of 2 in column 'engagement_prob'"):
        ev.from_lists("hybrid", lists.assign(score=[0.9, 0.5, 0.1, 0.8, 0.2]), setting, "hybrid", "f", probs)
    channels = pd.DataFrame({"hcp_id": setting.hcp_ids, **{c: [0.1, 0.2] for c in CHANNELS}})
    channels.loc[1, "email"] = np.nan
    with pytest.raises(ev.NonFiniteOutputError, match=r"model 'specialty_best_channel' returned 1 non-finite channel "
                                                      r"score \(1 NaN\) out of 10 in cf/test_channels/x\.parquet, "
                                                      rf"first at HCP '{second}'"):
        ev.channel_output("specialty_best_channel", channels, setting, "cf/test_channels/x.parquet")


def test_mismatched_id_order_names_the_model():
    setting = small_setting()
    with pytest.raises(ev.EvaluationError, match=r"model 'als': its HCP ids are in another order .*'SYN00000002'"):
        ev.from_scores("als", setting.hcp_ids[::-1], setting.content_ids, np.zeros((2, 3)), setting)
    with pytest.raises(ev.EvaluationError, match="model 'als': its content ids"):
        ev.from_scores("als", setting.hcp_ids, ["a", "b"], np.zeros((2, 2)), setting)


def test_lists_are_checked():
    setting = small_setting()
    good = pd.DataFrame({"hcp_id": ["SYN00000001"] * 3 + ["SYN00000002"] * 2, "rank": [1, 2, 3, 1, 2],
                         "content_id": ["b", "a", "c", "c", "b"], "score": [0.9, 0.5, 0.1, 0.8, 0.2],
                         "channel": ["rep_visit", "email", "email", "email", "email"]})
    output = ev.from_lists("hybrid_lstm", good, setting, "hybrid", "hybrid/test_top_n/hybrid_lstm.parquet")
    assert output.top[0, :3].tolist() == [1, 0, 2] and output.top[1, :3].tolist() == [2, 1, -1]
    assert ev.policy_terms(setting, output.top[:, 0], output.top_channel[:, 0]).tolist() == [0.6, 0.4]
    with pytest.raises(ev.EvaluationError, match="'SYN00000002' is recommended content 'a', which is not a candidate"):
        ev.from_lists("m", good.assign(content_id=["b", "a", "c", "a", "b"]), setting, "hybrid", "f")
    with pytest.raises(ev.EvaluationError, match="not in descending score order"):
        ev.from_lists("m", good.assign(score=[0.1, 0.5, 0.9, 0.8, 0.2]), setting, "hybrid", "f")
    with pytest.raises(ev.EvaluationError, match="has 2 listed items but 3 candidates"):
        ev.from_lists("m", good.drop(index=2), setting, "hybrid", "f")
    with pytest.raises(ev.EvaluationError, match="column 'channel' has value 'fax'"):
        ev.from_lists("m", good.assign(channel="fax"), setting, "hybrid", "f")
    with pytest.raises(ev.EvaluationError, match="missing column 'score'"):
        ev.from_lists("m", good.drop(columns="score"), setting, "hybrid", "f")


def test_reference_policies_by_hand():
    setting = small_setting()
    policies = ev.reference_policies(setting)
    assert policies["oracle"].tolist() == [0.6, 0.4]
    assert policies["random"].tolist() == pytest.approx([0.6 / 15, 0.4 / 10])
    assert policies["business_as_usual"].tolist() == [0.6, 0.4]


def test_missing_model_is_named(tmp_path):
    (tmp_path / "cf" / "test_channels").mkdir(parents=True)
    with pytest.raises(ev.EvaluationError, match="model 'hybrid_lstm' is missing from the run"):
        ev.load_models(tmp_path, small_setting(), expected=["hybrid_lstm"])


def test_comparison_pairs_and_selection():
    outputs = {n: ev.ModelOutput(n, f, "s", None) for n, f in (("hybrid", "hybrid"), ("tabular", "tabular"),
                                                                ("v0.1_classifier", "v0.1"), ("popularity", "baseline"),
                                                                ("hybrid_no_cf", "ablation"), ("oracle", "oracle"))}
    pairs = ev.comparison_pairs(outputs, "popularity")
    assert pairs == [("hybrid", "v0.1_classifier"), ("hybrid", "tabular"), ("hybrid", "popularity"),
                     ("tabular", "v0.1_classifier"), ("tabular", "popularity"), ("hybrid_no_cf", "hybrid")]
    models = {n: {"family": o.family} for n, o in outputs.items()}
    chosen = ev.selection(models, {"hybrid": 0.28, "tabular": 0.27, "v0.1_classifier": 0.30, "hybrid_no_cf": 0.2,
                                   "popularity": None})
    assert chosen["chosen"] == "tabular"  # the ablation is not a candidate, however low its loss
    assert list(chosen["validation_log_loss"]) == ["tabular", "hybrid", "v0.1_classifier"]


def test_list_scorer_gives_rates_times_a_rank_weight():
    setting = small_setting()

    class Context:
        hcp_ids = pd.Index(["SYN00000001", "SYN00000002", "SYN00000009"])

    setting.plan_context = Context()
    list_top = np.array([[1, 0, -1, -1], [2, -1, -1, -1]])
    rates = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    score = ev.list_scorer(setting, list_top, rates)(["SYN00000002", "SYN00000001", "SYN00000009"])
    assert score.shape == (3, 3, 5)
    np.testing.assert_allclose(score[1, 1], rates[0])            # first of its list: weight 1
    np.testing.assert_allclose(score[1, 0], rates[0] * 0.75)     # second: 1 - 1/4
    assert (score[1, 2] == 0).all() and (score[2] == 0).all()    # unlisted item, unknown HCP
    np.testing.assert_allclose(score[0, 2], rates[1])


def test_plan_table_orders_the_plans_and_keeps_the_references():
    entry = lambda v, lo, hi: {"value": v, "ci_low": lo, "ci_high": hi, "n": 3}  # noqa: E731
    report = {"models": {"a": {"family": "hybrid"}, "b": {"family": "baseline"}, "oracle": {"family": "oracle"}},
              "metrics": {"a": {"plan_value": entry(80, 70, 90), "plan_fraction_of_oracle": entry(0.8, 0.7, 0.9)},
                          "b": {"plan_value": entry(50, 40, 60), "plan_fraction_of_oracle": entry(0.5, 0.4, 0.6)},
                          "oracle": {"plan_value": entry(100, 90, 110), "plan_fraction_of_oracle": entry(1, 1, 1)}},
              "policy": {"business_as_usual": {"plan_value": entry(20, 15, 25),
                                               "plan_fraction_of_oracle": entry(0.2, 0.15, 0.25)},
                         "oracle": {"plan_value": entry(100, 90, 110), "plan_fraction_of_oracle": entry(1, 1, 1)}}}
    table = ev.plan_table(report)
    assert table.index.tolist() == ["oracle plan", "a", "b", "business as usual"]
    assert table.loc["a", "expected engagements"] == 80 and table.loc["b", "low"] == 0.4


def _report() -> dict:
    """A metrics.json document of the documented layout, one channel model and the reference policies."""
    entry = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 5}
    report = {key: kind() for key, kind in ev.TOP_LEVEL_TYPES.items()}
    report.update(schema_version=2, hybrid_found=False, best_baseline="popularity", verdict="v",
                  models={"m": {"family": "channel_baseline", "source": "s", "channel_from": "m"}}, models_found=["m"],
                  metrics={"m": {metric: dict(entry) for metric in ev.CHANNEL_METRICS}},
                  policy={p: {"policy_value": dict(entry)} for p in ("oracle", "random", "business_as_usual")})
    return report


def test_schema_rejects_broken_documents():
    assert len(ev.validate_metrics(_report())) == len(ev.CHANNEL_METRICS) + 3
    report = _report()
    report["models"]["m"]["family"] = "baseline"
    with pytest.raises(io.DataValidationError, match="model 'm' lacks metric 'hit_rate@1'"):
        ev.validate_metrics(report)
    del report["verdict"]
    with pytest.raises(io.DataValidationError, match="missing key 'verdict'"):
        ev.validate_metrics(report)


def _broken(change) -> dict:
    report = _report()
    change(report)
    return report


BROKEN_REPORTS = {
    "a string value": (lambda r: r["metrics"]["m"]["auc"].update(value="abc"),
                       r"^run/metrics\.json: metrics\['m'\]\['auc'\]\['value'\] is 'abc'; expected a number "
                       r"\(or null where undefined\)$"),
    "n=None": (lambda r: r["metrics"]["m"]["auc"].update(n=None),
               r"^run/metrics\.json: metrics\['m'\]\['auc'\]\['n'\] is None; expected an integer count$"),
    "a fractional n": (lambda r: r["policy"]["random"]["policy_value"].update(n=2.5),
                       r"policy\['random'\]\['policy_value'\]\['n'\] is 2\.5; expected an integer count"),
    "metrics as a list": (lambda r: r.update(metrics=[{"m": {}}]),
                          r"^run/metrics\.json: metrics is a list \(1 entries\); expected an object of model -> "
                          r"\{metric: \{value, ci_low, ci_high, n\}\}$"),
    "a model's metrics as a list": (lambda r: r["metrics"].update(m=[]),
                                    r"metrics\['m'\] is a list \(0 entries\); expected an object of metric -> entry"),
    "an entry as a number": (lambda r: r["metrics"]["m"].update(auc=0.7),
                             r"metrics\['m'\]\['auc'\] is 0\.7; expected an object \{value, ci_low, ci_high, n\}"),
    "an entry without n": (lambda r: r["metrics"]["m"]["auc"].pop("n"), r"metrics\['m'\]\['auc'\] lacks 'n'"),
    "a NaN value": (lambda r: r["metrics"]["m"]["auc"].update(ci_high=float("nan")),
                    r"^run/metrics\.json holds 1 non-finite metric value \(1 NaN\) out of \d+, first at "
                    r"metrics\['m'\]\['auc'\]\['ci_high'\]; a metric is a finite number, or null where undefined$"),
    "an infinite value": (lambda r: r["policy"]["oracle"]["policy_value"].update(value=float("inf")),
                          r"1 non-finite metric value \(1 inf\).*policy\['oracle'\]\['policy_value'\]\['value'\]"),
    "a bad @k": (lambda r: r["metrics"]["m"].update({"ndcg@ten": {"value": 0.1, "ci_low": None, "ci_high": None,
                                                                  "n": 1}}),
                 r"metrics\['m'\] has metric key 'ndcg@ten'; expected '<metric>' or '<metric>@<k>'"),
    "a string schema_version": (lambda r: r.update(schema_version="2"), r"schema_version is '2'; expected an integer"),
    "models_found as a string": (lambda r: r.update(models_found="m"), r"models_found is 'm'; expected a list"),
    "hybrid_found as a string": (lambda r: r.update(hybrid_found="no"), r"hybrid_found is 'no'; expected true or false"),
    "a model described by a string": (lambda r: r["models"].update(m="baseline"),
                                      r"models\['m'\] is 'baseline'; expected an object \{family, source, channel_from\}"),
    "a comparison as a list": (lambda r: r.update(comparisons=[[1]]), r"comparisons\[0\] is a list \(1 entries\); "
                                                                     r"expected an object"),
}


@pytest.mark.parametrize("case", list(BROKEN_REPORTS))
def test_validate_metrics_names_file_key_and_expected_type(case):
    change, message = BROKEN_REPORTS[case]
    with pytest.raises(io.DataValidationError, match=message):
        ev.validate_metrics(_broken(change), "run/metrics.json")


def test_validate_metrics_refuses_a_document_that_is_not_an_object_and_wraps_flattening_errors(monkeypatch):
    with pytest.raises(io.DataValidationError, match=r"^m\.json: the document is a list \(0 entries\); expected an "
                                                     r"object with keys schema_version, run"):
        ev.validate_metrics([], "m.json")

    def broken_flatten(report):
        raise AttributeError("'list' object has no attribute 'items'")

    monkeypatch.setattr(ev, "flatten_metrics", broken_flatten)
    with pytest.raises(io.DataValidationError, match=r"^m\.json: 'metrics' and 'policy' cannot be flattened into the "
                                                     r"metrics table \(AttributeError: 'list' object"):
        ev.validate_metrics(_report(), "m.json")


def test_flat_schema_rejects_bad_values():
    table = pd.DataFrame({"model": ["m"], "metric": ["ndcg"], "k": pd.array([10], "Int64"), "value": [1.4],
                          "ci_low": [0.1], "ci_high": [0.3], "n": np.array([3], np.int64)})
    with pytest.raises(io.DataValidationError, match="unit_metric_in_0_1|interval_contains_value"):
        io.validate(table, ev.FLAT_SCHEMA, "metrics.json")


# --- notebook 06 at tiny scale --------------------------------------------------------------


@pytest.mark.slow
def test_notebook_06_writes_valid_metrics(tiny_run):
    run = tiny_run
    report = json.loads((run / "evaluation" / "metrics.json").read_text())
    flat = ev.validate_metrics(report)
    assert {"oracle", "v0.1_classifier", "popularity", "hybrid", "tabular"} <= set(report["models_found"])
    assert report["metrics"]["oracle"]["policy_fraction_of_oracle"]["value"] == pytest.approx(1.0)
    assert report["metrics"]["oracle"]["plan_fraction_of_oracle"]["value"] == pytest.approx(1.0)
    assert report["verdict"]
    for model in ("hybrid", "tabular", "v0.1_classifier", "popularity"):
        plan_entry = report["metrics"][model]["plan_fraction_of_oracle"]
        assert 0 < plan_entry["value"] <= 1 + 1e-6 and plan_entry["ci_low"] <= plan_entry["value"] <= plan_entry["ci_high"]
    for model in ("hybrid", "tabular", "v0.1_classifier"):
        assert 0 <= report["metrics"][model]["ece"]["value"] < 0.5
        assert 0.5 < report["metrics"][model]["auc"]["value"] <= 1
    bau = report["policy"]["business_as_usual"]["plan_fraction_of_oracle"]["value"]
    assert 0 < bau < 1
    pairs = {(c["model"], c["baseline"], c["metric"]) for c in report["comparisons"]}
    for baseline in ("v0.1_classifier", "tabular", report["best_baseline"]):
        assert ("hybrid", baseline, "policy_fraction_of_oracle") in pairs
    assert ("hybrid_no_sequence", "hybrid", "plan_fraction_of_oracle") in pairs
    for c in report["comparisons"]:
        # share_better counts resamples where the first model is better: lower log-loss, higher
        # anything else; an interval clear of zero puts (almost) every resample on one side
        better_side = c["ci_high"] < 0 if c["metric"] in ev.LOWER_IS_BETTER else c["ci_low"] > 0
        worse_side = c["ci_low"] > 0 if c["metric"] in ev.LOWER_IS_BETTER else c["ci_high"] < 0
        if better_side:
            assert c["share_better"] >= 0.95, c
        if worse_side:
            assert c["share_better"] <= 0.05, c
    assert report["selection"]["chosen"] in ("hybrid", "tabular", "v0.1_classifier")
    assert set(report["plan"]["solver"]) >= {"oracle", "hybrid", "tabular"}
    assert report["best_baseline"] != "random"
    assert (flat["metric"] == "ndcg").sum() >= 4
    recommendations = pd.read_parquet(run / "evaluation" / "recommendations.parquet")
    io.validate(recommendations, ev.RECOMMENDATION_SCHEMA, "recommendations.parquet")
    assert recommendations.groupby(["model", "hcp_id"])["rank"].max().max() <= ev.RECOMMENDATION_DEPTH


def test_ablation_summary_reads_the_paired_intervals():
    def comparison(model, metric, d, lo, hi):
        return {"model": model, "baseline": "hybrid", "metric": metric, "difference": d, "ci_low": lo, "ci_high": hi}

    report = {"models": {"hybrid": {"family": "hybrid"}, "hybrid_no_static": {"family": "ablation"},
                         "hybrid_no_cf": {"family": "ablation"}},
              "comparisons": [comparison("hybrid_no_static", "policy_fraction_of_oracle", -0.02, -0.03, -0.01),
                              comparison("hybrid_no_static", "plan_fraction_of_oracle", 0.01, 0.005, 0.02),
                              comparison("hybrid_no_cf", "policy_fraction_of_oracle", 0.0, -0.01, 0.01),
                              comparison("hybrid_no_cf", "plan_fraction_of_oracle", 0.0, -0.01, 0.01)]}
    static, cf = ev.ablation_summary(report)
    assert static.startswith("Without the HCP's static profile: policy value -0.020 [-0.030, -0.010], plan value +0.010")
    assert static.endswith("it carries policy value; it costs plan value.")
    assert cf.startswith("Without the CF similarity") and cf.endswith("it adds nothing measurable here.")
