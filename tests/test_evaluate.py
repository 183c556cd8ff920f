"""Tests of hcp_lib.stages.evaluate (bad input, the metrics.json schema), plus notebook 06 at tiny
scale (slow). The metric functions are tested in tests/test_metrics.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hcp_lib import io
from hcp_lib.domain import CHANNELS
from hcp_lib.stages import evaluate as ev

# --- the evaluation on a hand-made setting ---------------------------------------------------


def small_setting() -> ev.EvaluationSetting:
    hcp_ids = np.array(["SYN00000001", "SYN00000002"], dtype=object)
    content_ids = pd.Index(["a", "b", "c"], dtype=object)
    oracle = np.zeros((2, 3, len(CHANNELS)))
    oracle[0, 1, 2] = 0.6
    oracle[1, 2, 0] = 0.4
    exclude = np.array([[False, False, False], [True, False, False]])
    test_rows = pd.DataFrame(
        {
            "exposure_id": [1, 2],
            "hcp_id": hcp_ids,
            "content_id": ["b", "c"],
            "channel": ["rep_visit", "email"],
            "engaged": [True, False],
            "true_engagement_prob": [0.6, 0.4],
            "row": [0, 1],
            "col": [1, 2],
        }
    )
    catalogue = pd.DataFrame({"content_id": content_ids, "title": ["A", "B", "C"], "therapeutic_area": ["x"] * 3})

    class Split:
        def to_dict(self):
            return {"test_start": "2025-12-08T00:00:00"}

    relevant = sp.csr_matrix(np.array([[False, True, False], [False, False, False]]))
    return ev.EvaluationSetting(
        Split(),
        hcp_ids,
        content_ids,
        np.array(["cardiology"] * 2, dtype=object),
        oracle,
        exclude,
        relevant,
        test_rows,
        np.array([0, 4]),
        np.zeros(3),
        np.eye(3),
        np.array([False, False, True]),
        catalogue,
    )


def test_scores_with_nan_name_the_model():
    setting = small_setting()
    scores = np.array([[0.1, np.nan, 0.2], [0.3, 0.2, 0.1]])
    with pytest.raises(
        ev.NonFiniteOutputError,
        match=r"model 'hybrid_lstm' returned 1 non-finite score \(1 NaN\) out of 6 in its score matrix, "
        rf"first at HCP '{setting.hcp_ids[0]}', position \(0, 1\); it cannot be evaluated",
    ):
        ev.from_scores("hybrid_lstm", setting.hcp_ids, setting.content_ids, scores, setting)
    with pytest.raises(
        ev.EvaluationError, match=r"model 'm' returned 30 non-finite channel scores \(30 inf\) out of 30"
    ):
        ev.from_scores(
            "m",
            setting.hcp_ids,
            setting.content_ids,
            np.zeros((2, 3)),
            setting,
            channel_scores=np.full((2, 3, 5), np.inf),
        )
    # one error, catchable as the evaluation's and as every non-finite error of the project
    assert issubclass(ev.NonFiniteOutputError, ev.EvaluationError)
    assert issubclass(ev.NonFiniteOutputError, io.NonFiniteError)


def test_saved_outputs_with_non_finite_values_name_the_model_and_file():
    setting = small_setting()
    first, second = setting.hcp_ids
    lists = pd.DataFrame(
        {
            "hcp_id": [first] * 3 + [second] * 2,
            "rank": [1, 2, 3, 1, 2],
            "content_id": ["b", "a", "c", "c", "b"],
            "score": [np.inf, 0.5, 0.1, 0.8, 0.2],
        }
    )
    with pytest.raises(
        ev.NonFiniteOutputError,
        match=r"model 'hybrid' returned 1 non-finite score \(1 inf\) out of 5 "
        r"in column 'score' of hybrid/test_top_n/hybrid\.parquet",
    ):
        ev.from_lists("hybrid", lists, setting, "hybrid", "hybrid/test_top_n/hybrid.parquet")
    probs = pd.DataFrame({"exposure_id": [1, 2], "engagement_prob": [0.3, np.nan]})
    with pytest.raises(
        ev.NonFiniteOutputError,
        match=r"model 'hybrid' returned 1 non-finite exposure probability "
        r"\(1 NaN\) out of 2 in column 'engagement_prob'",
    ):
        ev.from_lists("hybrid", lists.assign(score=[0.9, 0.5, 0.1, 0.8, 0.2]), setting, "hybrid", "f", probs)
    channels = pd.DataFrame({"hcp_id": setting.hcp_ids, **{c: [0.1, 0.2] for c in CHANNELS}})
    channels.loc[1, "email"] = np.nan
    with pytest.raises(
        ev.NonFiniteOutputError,
        match=r"model 'specialty_best_channel' returned 1 non-finite channel "
        r"score \(1 NaN\) out of 10 in cf/test_channels/x\.parquet, "
        rf"first at HCP '{second}'",
    ):
        ev.channel_output("specialty_best_channel", channels, setting, "cf/test_channels/x.parquet")


def test_channel_scores_shared_by_groups_of_hcps_read_as_the_hcps_own():
    """``channel_rows`` (one row of channel scores per group of HCPs, as the v0.1 classifier's per
    specialty) gives the output of the expanded (n_hcp, n_content, n_channel) tensor, float32 or not;
    the plan's scorer reads the same rows."""
    setting = small_setting()
    rng = np.random.default_rng(0)
    shared = rng.uniform(0.05, 0.95, (1, 3, len(CHANNELS)))
    group = np.array([0, 0])
    args = ("v0.1_classifier", setting.hcp_ids, setting.content_ids, shared.max(axis=2)[group], setting)
    grouped = ev.from_scores(*args, channel_scores=shared, channel_scores_are_probabilities=True, channel_rows=group)
    expanded = ev.from_scores(*args, channel_scores=shared[group], channel_scores_are_probabilities=True)
    single = ev.from_scores(
        *args, channel_scores=shared[group].astype(np.float32), channel_scores_are_probabilities=True
    )
    for other in (expanded, single):
        for attribute in ("top", "top_scores", "list_top", "new_top", "top_channel", "engaged_channel"):
            np.testing.assert_array_equal(getattr(grouped, attribute), getattr(other, attribute))
    np.testing.assert_array_equal(grouped.exposure_prob, expanded.exposure_prob)
    assert single.exposure_prob.dtype == np.float64
    with pytest.raises(ev.EvaluationError, match="channel_rows must give each HCP a row"):
        ev.from_scores(*args, channel_scores=shared, channel_rows=np.array([0, 1]))
    with pytest.raises(ev.NonFiniteOutputError, match=r"returned 1 non-finite channel score \(1 NaN\) out of 15"):
        ev.from_scores(
            *args, channel_scores=np.where(np.arange(15).reshape(shared.shape) == 4, np.nan, shared), channel_rows=group
        )


def test_mismatched_id_order_names_the_model():
    setting = small_setting()
    with pytest.raises(ev.EvaluationError, match=r"model 'als': its HCP ids are in another order .*'SYN00000002'"):
        ev.from_scores("als", setting.hcp_ids[::-1], setting.content_ids, np.zeros((2, 3)), setting)
    with pytest.raises(ev.EvaluationError, match="model 'als': its content ids"):
        ev.from_scores("als", setting.hcp_ids, ["a", "b"], np.zeros((2, 2)), setting)


def test_lists_are_checked():
    setting = small_setting()
    good = pd.DataFrame(
        {
            "hcp_id": ["SYN00000001"] * 3 + ["SYN00000002"] * 2,
            "rank": [1, 2, 3, 1, 2],
            "content_id": ["b", "a", "c", "c", "b"],
            "score": [0.9, 0.5, 0.1, 0.8, 0.2],
            "channel": ["rep_visit", "email", "email", "email", "email"],
        }
    )
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


def test_models_and_policies_are_kept_apart_by_kind_not_by_name(monkeypatch):
    """A model is reported under ``metrics`` and a reference policy under ``policy`` whatever
    their names: a model called like a policy (or ``policy:...``) stays a model."""
    monkeypatch.setattr(ev, "plan_summary", lambda setting, outcomes: {})  # the hand-made setting has no plan
    setting = small_setting()
    lists = pd.DataFrame(
        {
            "hcp_id": ["SYN00000001"] * 3 + ["SYN00000002"] * 2,
            "rank": [1, 2, 3, 1, 2],
            "content_id": ["b", "a", "c", "c", "b"],
            "score": [0.9, 0.5, 0.1, 0.8, 0.2],
            "channel": ["rep_visit", "email", "email", "email", "email"],
        }
    )
    names = ("popularity", "random", "policy:popularity")
    outputs = {name: ev.from_lists(name, lists, setting, "baseline", "f") for name in names}
    report = ev.evaluate(setting, outputs, n_bootstrap=50, plans=False).report
    assert list(report["metrics"]) == list(names)
    assert set(report["policy"]) == set(ev.reference_policies(setting))
    for name in names:  # the list's first (content, channel) reaches 0.6 and 0.4: the oracle's
        assert report["metrics"][name]["policy_value"]["value"] == pytest.approx(0.5)
    assert report["policy"]["random"]["policy_value"]["value"] == pytest.approx(np.mean([0.6 / 15, 0.4 / 10]))
    assert {c["model"] for c in report["comparisons"]} <= set(names)


def test_missing_model_is_named(tmp_path):
    (tmp_path / "cf" / "test_channels").mkdir(parents=True)
    with pytest.raises(ev.EvaluationError, match="model 'hybrid_lstm' is missing from the run"):
        ev.load_models(tmp_path, small_setting(), expected=["hybrid_lstm"])


def test_comparison_pairs_and_selection():
    outputs = {
        n: ev.ModelOutput(n, f, "s", None)
        for n, f in (
            ("hybrid", "hybrid"),
            ("tabular", "tabular"),
            ("v0.1_classifier", "v0.1"),
            ("popularity", "baseline"),
            ("hybrid_no_cf", "ablation"),
            ("oracle", "oracle"),
        )
    }
    pairs = ev.comparison_pairs(outputs, "popularity")
    assert pairs == [
        ("hybrid", "v0.1_classifier"),
        ("hybrid", "tabular"),
        ("hybrid", "popularity"),
        ("tabular", "v0.1_classifier"),
        ("tabular", "popularity"),
        ("hybrid_no_cf", "hybrid"),
    ]
    models = {n: {"family": o.family} for n, o in outputs.items()}
    chosen = ev.selection(
        models, {"hybrid": 0.28, "tabular": 0.27, "v0.1_classifier": 0.30, "hybrid_no_cf": 0.2, "popularity": None}
    )
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
    np.testing.assert_allclose(score[1, 1], rates[0])  # first of its list: weight 1
    np.testing.assert_allclose(score[1, 0], rates[0] * 0.75)  # second: 1 - 1/4
    assert (score[1, 2] == 0).all() and (score[2] == 0).all()  # unlisted item, unknown HCP
    np.testing.assert_allclose(score[0, 2], rates[1])


def _plan_setting() -> ev.EvaluationSetting:
    """An evaluation setting over the plan tests' hand-made world (tests/test_plan.py): the HCPs
    who did not opt out, a random oracle and the plan's context (what the plans read)."""
    from tests.test_plan import SETTINGS, _context

    context = _context(SETTINGS)
    hcp_ids = context.hcp_ids.to_numpy()[~context.hcps["opted_out"].to_numpy(bool)].astype(object)
    oracle = np.random.default_rng(5).uniform(0.01, 0.6, (len(hcp_ids), len(context.content_ids), len(CHANNELS)))
    fields = dict.fromkeys(f.name for f in dataclasses.fields(ev.EvaluationSetting))  # the others are not read
    fields.update(
        hcp_ids=hcp_ids,
        content_ids=pd.Index(context.content_ids),
        oracle=oracle,
        plan_context=context,
        plan_settings=SETTINGS,
    )
    return ev.EvaluationSetting(**fields)


def test_plans_solved_side_by_side_in_worker_processes_are_the_plans_solved_in_turn(monkeypatch):
    from hcp_lib.stages import plan

    setting = _plan_setting()
    rng = np.random.default_rng(7)
    candidates = {
        name: plan.candidate_actions(
            setting.plan_context,
            ev.setting_scorer(setting, rng.uniform(0.01, 0.6, setting.oracle.shape)),
            setting.content_ids,
            setting.plan_settings,
            model=name,
        )
        for name in ("a", "b", "c")
    }
    expected = {name: ev.plan_terms(setting, c) for name, c in candidates.items()}
    monkeypatch.setattr(ev, "PARALLEL_MIN_CANDIDATES", 1)  # these small plans go to the workers too
    with ev.PlanSolver(setting, processes=2) as solver:
        for name, c in candidates.items():
            solver.submit(name, c)
        got = {name: solver.outcome(name) for name in reversed(candidates)}
    for name in candidates:
        assert got[name].assignment.status == expected[name].assignment.status == "optimal"
        np.testing.assert_array_equal(got[name].assignment.chosen, expected[name].assignment.chosen)
        np.testing.assert_array_equal(got[name].value, expected[name].value)
        pd.testing.assert_frame_equal(got[name].actions, expected[name].actions)
    assert expected["a"].value.sum() > 0


def test_plan_table_orders_the_plans_and_keeps_the_references():
    entry = lambda v, lo, hi: {"value": v, "ci_low": lo, "ci_high": hi, "n": 3}  # noqa: E731
    report = {
        "models": {"a": {"family": "hybrid"}, "b": {"family": "baseline"}, "oracle": {"family": "oracle"}},
        "metrics": {
            "a": {"plan_value": entry(80, 70, 90), "plan_fraction_of_oracle": entry(0.8, 0.7, 0.9)},
            "b": {"plan_value": entry(50, 40, 60), "plan_fraction_of_oracle": entry(0.5, 0.4, 0.6)},
            "oracle": {"plan_value": entry(100, 90, 110), "plan_fraction_of_oracle": entry(1, 1, 1)},
        },
        "policy": {
            "business_as_usual": {"plan_value": entry(20, 15, 25), "plan_fraction_of_oracle": entry(0.2, 0.15, 0.25)},
            "oracle": {"plan_value": entry(100, 90, 110), "plan_fraction_of_oracle": entry(1, 1, 1)},
        },
    }
    table = ev.plan_table(report)
    assert table.index.tolist() == ["oracle plan", "a", "b", "business as usual"]
    assert table.loc["a", "expected engagements"] == 80 and table.loc["b", "low"] == 0.4


def _report() -> dict:
    """A metrics.json document of the documented layout, one channel model and the reference policies."""
    entry = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 5}
    report = {key: kind() for key, kind in ev.TOP_LEVEL_TYPES.items()}
    report.update(
        schema_version=2,
        hybrid_found=False,
        best_baseline="popularity",
        verdict="v",
        models={"m": {"family": "channel_baseline", "source": "s", "channel_from": "m"}},
        models_found=["m"],
        metrics={"m": {metric: dict(entry) for metric in ev.CHANNEL_METRICS}},
        policy={p: {"policy_value": dict(entry)} for p in ("oracle", "random", "business_as_usual")},
    )
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
    "a string value": (
        lambda r: r["metrics"]["m"]["auc"].update(value="abc"),
        r"^run/metrics\.json: metrics\['m'\]\['auc'\]\['value'\] is 'abc'; expected a number "
        r"\(or null where undefined\)$",
    ),
    "n=None": (
        lambda r: r["metrics"]["m"]["auc"].update(n=None),
        r"^run/metrics\.json: metrics\['m'\]\['auc'\]\['n'\] is None; expected an integer count$",
    ),
    "a fractional n": (
        lambda r: r["policy"]["random"]["policy_value"].update(n=2.5),
        r"policy\['random'\]\['policy_value'\]\['n'\] is 2\.5; expected an integer count",
    ),
    "metrics as a list": (
        lambda r: r.update(metrics=[{"m": {}}]),
        r"^run/metrics\.json: metrics is a list \(1 entries\); expected an object of model -> "
        r"\{metric: \{value, ci_low, ci_high, n\}\}$",
    ),
    "a model's metrics as a list": (
        lambda r: r["metrics"].update(m=[]),
        r"metrics\['m'\] is a list \(0 entries\); expected an object of metric -> entry",
    ),
    "an entry as a number": (
        lambda r: r["metrics"]["m"].update(auc=0.7),
        r"metrics\['m'\]\['auc'\] is 0\.7; expected an object \{value, ci_low, ci_high, n\}",
    ),
    "an entry without n": (lambda r: r["metrics"]["m"]["auc"].pop("n"), r"metrics\['m'\]\['auc'\] lacks 'n'"),
    "a NaN value": (
        lambda r: r["metrics"]["m"]["auc"].update(ci_high=float("nan")),
        r"^run/metrics\.json holds 1 non-finite metric value \(1 NaN\) out of \d+, first at "
        r"metrics\['m'\]\['auc'\]\['ci_high'\]; a metric is a finite number, or null where undefined$",
    ),
    "an infinite value": (
        lambda r: r["policy"]["oracle"]["policy_value"].update(value=float("inf")),
        r"1 non-finite metric value \(1 inf\).*policy\['oracle'\]\['policy_value'\]\['value'\]",
    ),
    "a bad @k": (
        lambda r: r["metrics"]["m"].update({"ndcg@ten": {"value": 0.1, "ci_low": None, "ci_high": None, "n": 1}}),
        r"metrics\['m'\] has metric key 'ndcg@ten'; expected '<metric>' or '<metric>@<k>'",
    ),
    "a string schema_version": (lambda r: r.update(schema_version="2"), r"schema_version is '2'; expected an integer"),
    "models_found as a string": (lambda r: r.update(models_found="m"), r"models_found is 'm'; expected a list"),
    "hybrid_found as a string": (
        lambda r: r.update(hybrid_found="no"),
        r"hybrid_found is 'no'; expected true or false",
    ),
    "a model described by a string": (
        lambda r: r["models"].update(m="baseline"),
        r"models\['m'\] is 'baseline'; expected an object \{family, source, channel_from\}",
    ),
    "a comparison as a list": (
        lambda r: r.update(comparisons=[[1]]),
        r"comparisons\[0\] is a list \(1 entries\); "
        r"expected an object",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_REPORTS))
def test_validate_metrics_names_file_key_and_expected_type(case):
    change, message = BROKEN_REPORTS[case]
    with pytest.raises(io.DataValidationError, match=message):
        ev.validate_metrics(_broken(change), "run/metrics.json")


def test_validate_metrics_refuses_a_document_that_is_not_an_object_and_wraps_flattening_errors(monkeypatch):
    with pytest.raises(
        io.DataValidationError,
        match=r"^m\.json: the document is a list \(0 entries\); expected an "
        r"object with keys schema_version, run",
    ):
        ev.validate_metrics([], "m.json")

    def broken_flatten(report):
        raise AttributeError("'list' object has no attribute 'items'")

    monkeypatch.setattr(ev, "flatten_metrics", broken_flatten)
    with pytest.raises(
        io.DataValidationError,
        match=r"^m\.json: 'metrics' and 'policy' cannot be flattened into the "
        r"metrics table \(AttributeError: 'list' object",
    ):
        ev.validate_metrics(_report(), "m.json")


def test_flat_schema_rejects_bad_values():
    table = pd.DataFrame(
        {
            "model": ["m"],
            "metric": ["ndcg"],
            "k": pd.array([10], "Int64"),
            "value": [1.4],
            "ci_low": [0.1],
            "ci_high": [0.3],
            "n": np.array([3], np.int64),
        }
    )
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
        assert (
            0 < plan_entry["value"] <= 1 + 1e-6 and plan_entry["ci_low"] <= plan_entry["value"] <= plan_entry["ci_high"]
        )
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

    report = {
        "models": {
            "hybrid": {"family": "hybrid"},
            "hybrid_no_static": {"family": "ablation"},
            "hybrid_no_cf": {"family": "ablation"},
        },
        "comparisons": [
            comparison("hybrid_no_static", "policy_fraction_of_oracle", -0.02, -0.03, -0.01),
            comparison("hybrid_no_static", "plan_fraction_of_oracle", 0.01, 0.005, 0.02),
            comparison("hybrid_no_cf", "policy_fraction_of_oracle", 0.0, -0.01, 0.01),
            comparison("hybrid_no_cf", "plan_fraction_of_oracle", 0.0, -0.01, 0.01),
        ],
    }
    static, cf = ev.ablation_summary(report)
    assert static.startswith(
        "Without the HCP's static profile: policy value -0.020 [-0.030, -0.010], plan value +0.010"
    )
    assert static.endswith("it carries policy value; it costs plan value.")
    assert cf.startswith("Without the CF similarity") and cf.endswith("it adds nothing measurable here.")


def test_v01_rows_weighted_fit_equals_the_fit_on_every_row():
    """The v0.1 classifier fits one weighted row per (item, specialty, channel) and outcome:
    the same objective as every exposure as a row, so the same coefficients (to the solver's
    tolerance), and each exposure reads its pattern's probability."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n = 4000
    item = rng.integers(0, 12, n)
    specialty = rng.choice(np.array(["cardiology", "oncology", "neurology"]), n)
    channel = rng.choice(np.array(CHANNELS), n)
    item_features = sp.csr_matrix(rng.random((12, 6)))
    onehot = lambda s, c: sp.csr_matrix(  # noqa: E731
        np.column_stack(
            [s[:, None] == np.array(["cardiology", "oncology", "neurology"]), c[:, None] == np.array(CHANNELS)]
        )
    )
    every_row = sp.hstack([item_features[item], onehot(specialty, channel)]).tocsr()
    logit = every_row @ rng.normal(size=every_row.shape[1]) - 3
    target = rng.random(n) < 1 / (1 + np.exp(-logit))
    mask = rng.random(n) < 0.7

    rows = ev.V01Rows(item, specialty, channel)
    assert len(rows.item) == len(np.unique(np.column_stack([item, specialty, channel]), axis=0)) < n
    patterns = sp.hstack([item_features[rows.item], onehot(rows.specialty, rows.channel)]).tocsr()
    # each exposure's pattern has its features
    assert np.array_equal(patterns[rows.index].toarray(), every_row.toarray())
    x, y, weight = rows.weighted(patterns, target, mask)
    assert weight.sum() == mask.sum() and (weight > 0).all()
    assert y.sum() == len(np.unique(rows.index[mask & target]))

    def classifier():
        return LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)

    grouped = classifier().fit(x, y, sample_weight=weight)
    per_row = classifier().fit(every_row[mask], target[mask])
    np.testing.assert_allclose(grouped.coef_, per_row.coef_, atol=1e-6)
    np.testing.assert_allclose(grouped.intercept_, per_row.intercept_, atol=1e-6)
    np.testing.assert_allclose(
        grouped.predict_proba(patterns)[:, 1][rows.index], per_row.predict_proba(every_row)[:, 1], atol=1e-7
    )
