"""Tests of hcp_lib.narrative: each paragraph of the book, word for word, from small hand-made inputs."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hcp_lib import narrative

# --- 01 ingestion --------------------------------------------------------------------------

QUALITY = {
    "rows_in": 1234,
    "duplicate_pmids_removed": 5,
    "correction_notices_removed": 2,
    "empty_records_removed": 1,
    "rows_out": 1226,
    "empty_abstracts_kept": 12,
}


def test_ingestion_quality_from_the_snapshot():
    assert narrative.ingestion_quality(QUALITY, corpus="all", live=False) == (
        "The articles were read from the shipped snapshot (corpus 'all'). Of 1,234 records, 5 repeated a PMID "
        "already seen, 2 were correction notices and 1 had neither title nor abstract; **1,226 articles** remain, "
        "of which 12 (1.0%) have a title but no abstract."
    )


def test_ingestion_quality_live_names_no_corpus():
    text = narrative.ingestion_quality(QUALITY, corpus="v01", live=True)
    assert text.startswith("The articles were fetched live from NCBI E-utilities. Of 1,234 records")
    assert "v01" not in text


def test_areas_and_years():
    area_year = pd.DataFrame({2020: [3, 1, 10], 2021: [2, 0, 5]}, index=["diabetes", "thyroid", "oncology"])
    years = pd.Series([2020.0, 2021.0, np.nan, 2019.0])
    assert narrative.areas_and_years(area_year, years) == (
        "The largest area is oncology (15 articles), the smallest thyroid (1). Publication years range from "
        "2019.0 to 2021.0; 1 articles (25%) have no year in their source file."
    )


def test_areas_and_years_without_any_year():
    area_year = pd.DataFrame({"unknown": [2, 4]}, index=["diabetes", "oncology"])
    text = narrative.areas_and_years(area_year, pd.Series([np.nan, np.nan], dtype=float))
    assert "Publication years range not recorded; 2 articles (100%) have no year" in text


def test_abstract_length():
    words = pd.Series([100, 200, 300, 50])
    sources = pd.Series(["v01", "v01", "v2", "v2"])
    assert narrative.abstract_length(words, sources) == (
        "The median abstract has 150 words (v01: 150, v2: 175); the shortest has 50 and the longest 300 words."
    )


# --- 02 synthesis --------------------------------------------------------------------------


def test_world_summary():
    world = SimpleNamespace(
        hcps=pd.DataFrame(index=range(1500)),
        interactions=pd.DataFrame(index=range(12345)),
        content=pd.DataFrame({"release_date": pd.to_datetime(["2025-01-01", "2025-12-01", "2025-12-08"])}),
        horizon_start=pd.Timestamp("2025-01-06"),
        horizon_end=pd.Timestamp("2026-01-05"),
        validation_start=pd.Timestamp("2025-11-10"),
        test_start=pd.Timestamp("2025-12-08"),
    )
    assert narrative.world_summary(world, scale="tiny", generation_seconds=3.14159) == (
        "The `tiny` world has 1,500 HCPs and 12,345 exposures over 364 days from 2025-01-06, built in 3.1 s. "
        "The suggested validation period starts 2025-11-10 and the test period 2025-12-08; 1 items are released "
        "only in the test period, so they have no history."
    )


def test_channel_engagement():
    effects = pd.DataFrame(
        {
            "channel": ["email", "rep_visit", "webinar"],
            "exposures": [20000.0, 500.0, 900.0],
            "engagement_rate": [0.0512, 0.3456, 0.1],
        }
    )
    interactions = pd.DataFrame(
        {"channel": ["email", "email", "email", "email", "webinar"], "opened": [True, False, False, True, True]}
    )
    assert narrative.channel_engagement(effects, interactions) == (
        "Email, the bulk of the touches (20,000), engages 5.1% of the time (an email open rate of 50.0%), while "
        "the scarce rep visits engage 34.6%. Specialties differ because the BAU policy shows each specialty a "
        "different share of content central to its practice."
    )


def test_fatigue_effect():
    fatigue = pd.DataFrame(
        {
            "touches_14d": [0, 1, 2, 3, 4, 5, 6],
            "engagement_rate": [0.1] * 7,
            "mean_true_prob": [0.10, 0.12, 0.11, 0.09, 0.08, 0.06, 0.04],
        }
    )
    assert narrative.fatigue_effect(fatigue, fatigue_free_touches=2) == (
        "Up to 2 earlier touches the mean true probability is 11.0%; with 5 or more it falls to 5.0%. Heavily "
        "touched HCPs are mostly high-decile ones, whom the BAU policy targets more."
    )


def test_series_followup():
    series = pd.DataFrame({"previous_part_engaged": [False, True], "engagement_rate": [0.05, 0.4321]})
    assert narrative.series_followup(series) == (
        "Parts shown after an engagement with the previous part engage 43.2% of the time, against 5.0% otherwise."
    )


def test_series_followup_without_an_engaged_previous_part_reads_nan():
    series = pd.DataFrame({"previous_part_engaged": [False], "engagement_rate": [0.05]})
    assert narrative.series_followup(series) == (
        "Parts shown after an engagement with the previous part engage nan% of the time, against 5.0% otherwise."
    )


def test_email_by_age():
    by_age = pd.DataFrame({"email": [0.091, 0.07, 0.052], "rep_visit": [0.3, 0.3, 0.3]}, index=["<40", "40-59", "60+"])
    assert narrative.email_by_age(by_age) == (
        "The mean true probability of engaging with an email is 9.1% for HCPs under 40 and 5.2% for those 60 and over."
    )


def test_repeat_exposures():
    seen = pd.DataFrame(
        {
            "seen_before": [0, 1, 2],
            "exposures": [15000.0, 300.0, 12.0],
            "label": ["new to the HCP", "shown before", "engaged before"],
            "mean_true_prob": [0.125, 0.079, 0.101],
        }
    )
    assert narrative.repeat_exposures(seen) == (
        "Repeats are new to the HCP: 15,000 exposures, shown before: 300 exposures, engaged before: 12 exposures; "
        "the BAU policy rarely repeats an item, so most exposures are of new content."
    )
    # where the bars seem to contradict the planted penalty, the sentence says why
    higher = seen.assign(mean_true_prob=[0.125, 0.079, 0.156])
    assert narrative.repeat_exposures(higher).endswith(
        "The bars do not show the penalty for content engaged with before (15.6% against 12.5% for new content): "
        "those exposures go to HCPs who engage more than most, which outweighs the penalty across HCPs; the "
        "penalty holds for each HCP."
    )


def test_learnability():
    ranking = {
        "n_hcps": 2500,
        "exposed_ndcg@10_truth": 0.75,
        "exposed_ndcg@10_popularity": 0.55,
        "exposed_ndcg@10_random": 0.5,
        "auc_truth": 0.714,
        "auc_popularity": 0.587,
    }
    assert narrative.learnability(ranking) == (
        "Over 2,500 HCPs with a test engagement, the truth gains 0.250 NDCG@10 over a random order and popularity "
        "0.050; the truth's AUC is 0.71 against 0.59. This gap is what the models of later chapters can learn."
    )


def test_oracle_reproduction():
    assert narrative.oracle_reproduction(20000, 2.2e-16) == (
        "Over 20,000 logged exposures the largest difference between the reloaded oracle and the logged "
        "probability is 2.2e-16."
    )


# --- 04 collaborative filtering ------------------------------------------------------------


def test_split_windows():
    windows = pd.DataFrame(
        {
            "start": ["2025-01-06", "2025-11-10", "2025-12-08"],
            "engaged": [12345, 800, 900],
            "HCPs evaluated": [0, 1234, 1500],
        },
        index=["train", "validation", "test"],
    )
    assert narrative.split_windows(windows) == (
        "Training covers 2025-01-06 to 2025-11-10 (12,345 engagements); 1,234 HCPs are evaluated on validation "
        "and 1,500 on test."
    )


def test_item_features():
    assert narrative.item_features("the topic shares of chapter 3", n_items=1500, n_features=12) == (
        "The content-based model uses the topic shares of chapter 3: 12 features for 1,500 items."
    )


def _validation_table(ndcg_itemknn: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exposure_auc": [0.7123, 0.65, 0.6, 0.5012, np.nan, np.nan],
            "ndcg@10": [0.2, ndcg_itemknn, 0.1, 0.05, np.nan, np.nan],
            "channel_accuracy": [np.nan] * 4 + [0.612, 0.4],
        },
        index=["als", "itemknn", "popularity", "random", "channel_popularity", "channel_random"],
    )


def test_validation_comparison_when_the_replay_diagnostic_picks_another_model():
    assert narrative.validation_comparison(_validation_table(0.3456)) == (
        "**als** ranks the logged validation exposures best (exposure AUC 0.712, against 0.501 for random scores) "
        "and is the best baseline of the evaluation chapter; the weakest non-random model is popularity (0.600). "
        "The replay diagnostic would have picked itemknn (NDCG@10 0.346): it rewards recommending what the "
        "logging policy was about to show. Among channel baselines, channel_popularity agrees most often with the "
        "channel of an engaged exposure (0.612) — a diagnostic that rewards following the logging policy; "
        "chapter 6 judges channels by policy and plan value."
    )


def test_validation_comparison_when_the_replay_diagnostic_agrees():
    text = narrative.validation_comparison(_validation_table(0.15))
    assert "replay diagnostic" not in text
    assert "popularity (0.600). Among channel baselines, channel_popularity" in text


def test_query_item_and_its_neighbours():
    titles = pd.DataFrame({"therapeutic_area": ["diabetes"], "title": ["GLP-1 in practice"]}, index=["C001"])
    assert narrative.query_item("C001", titles.loc["C001"]) == "Query item C001 (diabetes): *GLP-1 in practice*"
    neighbours = pd.DataFrame(
        {"content_id": ["C2", "C3", "C4"], "therapeutic_area": ["diabetes", "oncology", "diabetes"]}
    )
    assert narrative.item_neighbours(neighbours, "diabetes") == (
        "2 of the 3 nearest items share the query's therapeutic area."
    )


def test_query_hcp_and_its_neighbours():
    assert narrative.query_hcp("SYN00000001", "cardiology") == "Query HCP SYN00000001 (cardiology)."
    similar = pd.DataFrame({"hcp_id": ["SYN1", "SYN2"], "specialty": ["pediatrics", "pediatrics"]})
    assert narrative.hcp_neighbours(similar, "cardiology") == "0 of the 2 nearest HCPs share the query HCP's specialty."


@pytest.mark.parametrize(
    "silhouette, reading", [(0.31, "0.31 (clearly separated groups)"), (0.25, "0.25 (overlapping groups)")]
)
def test_factor_space(silhouette, reading):
    assert narrative.factor_space(np.array([0.3, 0.12, 0.1]), silhouette) == (
        f"The first two components hold 42% of the factor variance. The silhouette of specialties in the full "
        f"factor space is {reading}: specialty shapes taste, but it is not all the factors encode."
    )


# --- 05 engagement models ------------------------------------------------------------------


def test_tabular_challenger():
    best = pd.Series({"learning_rate": 0.05, "max_leaf_nodes": 31.0, "validation_log_loss": 0.301234, "n_iter": 180.0})
    assert narrative.tabular_challenger(best) == (
        "The challenger keeps learning rate 0.05 and 31 leaves per tree: validation log-loss 0.3012 after 180 "
        "rounds. It is refitted before the test window with those rounds, alongside the chosen hybrid (below)."
    )


TAIL_05 = (
    "The curves plot what Keras minimises, the cross-entropy plus the weight penalty; the choice reads the "
    "cross-entropy alone. Validation loss rising while training loss falls is the model learning the "
    "training period by heart, which early stopping cuts off."
)


def test_encoder_choice_between_two_encoders():
    selection = pd.DataFrame(
        {"validation_log_loss": [0.29876, 0.30012], "epochs": [7, 5], "chosen": [True, False]}, index=["lstm", "gru"]
    )
    assert narrative.encoder_choice(selection, "lstm", 0.30111) == (
        "The **LSTM** encoder is kept: validation log-loss 0.2988 at epoch 7, against 0.3001 for the other "
        "encoder; the tabular challenger reached 0.3011. " + TAIL_05
    )


def test_encoder_choice_with_a_single_encoder():
    selection = pd.DataFrame({"validation_log_loss": [0.29876], "epochs": [7.0]}, index=["gru"])
    assert narrative.encoder_choice(selection, "gru", 0.30111) == (
        "The **GRU** encoder is kept: validation log-loss 0.2988 at epoch 7; the tabular challenger reached "
        "0.3011. " + TAIL_05
    )


def test_hybrid_fit_with_ablations():
    assert narrative.hybrid_fit(6, 234567, 41.4, 12345, {"no_sequence": 30.2, "no_text": 29.5}) == (
        "The hybrid trained 6 epochs on 234,567 exposures in 41 s and has 12,345 weights. The 2 ablations took 60 s."
    )
    assert narrative.hybrid_fit(6, 234567, 41.4, 12345, {"no_sequence": 30.2}, challenger_seconds=5.6).endswith(
        "The 1 ablations took 30 s. The tabular challenger's refit took 6 s."
    )
    assert narrative.hybrid_fit(
        6, 234567, 41.4, 12345, {}, challenger_seconds=5.6, challenger_engine="compiled trees (tl2cgen)"
    ).endswith("The tabular challenger's refit took 6 s. Its cells were scored by compiled trees (tl2cgen).")


def test_hybrid_fit_without_ablations():
    assert narrative.hybrid_fit(6, 234567, 41.4, 12345, {}) == (
        "The hybrid trained 6 epochs on 234,567 exposures in 41 s and has 12,345 weights. "
        "The ablations were not fitted in this run (hybrid_ablations=false)."
    )


def test_reloaded_hybrid():
    lists = pd.DataFrame(
        {"rank": [1, 1, 1, 1, 2], "channel": ["rep_visit", "rep_visit", "rep_visit", "email", "email"]}
    )
    assert narrative.reloaded_hybrid(3.2e-7, lists) == (
        "The reloaded hybrid reproduces the fitted one's probabilities (largest difference 3.2e-07). Its first "
        "recommendation goes through rep visit (75%), email (25%): with no capacity limits, the channel with the "
        "highest engagement probability is usually a rep visit; the week's plan (chapter 7) spreads the actions "
        "over the channels the field force can deliver."
    )


# --- 06 evaluation -------------------------------------------------------------------------

REPORT = {
    "models_found": ["hybrid", "tabular", "popularity", "oracle"],
    "population": {"n_hcps": 1500, "n_test_exposures": 4321, "n_content": 800, "n_new_items": 25},
    "policy": {
        "business_as_usual": {
            "policy_fraction_of_oracle": {"value": 0.2345},
            "plan_fraction_of_oracle": {"value": 0.3456},
        }
    },
    "metrics": {
        "oracle": {"ndcg@10": {"value": 0.1234}},
        "hybrid": {"ndcg@10": {"value": 0.2}},
        "popularity": {"ndcg@10": {"value": 0.25}},
        "v0.1_classifier": {"policy_fraction_of_oracle": {"value": 0.41}},
    },
    "v01": {"random_split_auc": 0.8123, "temporal_auc": 0.6012},
}


def test_evaluation_population():
    assert narrative.evaluation_population(REPORT) == (
        "4 models are evaluated on 1,500 HCPs, 4,321 logged test exposures and 800 items (25 released in the test "
        "window)."
    )


def test_value_ranges_leaves_ablations_and_references_out():
    content = pd.DataFrame(
        {
            "family": ["hybrid", "baseline", "ablation", "reference", "baseline"],
            "policy_fraction_of_oracle": [0.8, 0.5, 0.95, 0.05, 0.6],
            "plan_fraction_of_oracle": [0.7, 0.55, 0.9, 0.1, np.nan],
        },
        index=["hybrid", "popularity", "hybrid_no_text", "random", "itemknn"],
    )
    assert narrative.value_ranges(content, REPORT) == (
        "Across the models (ablations aside), policy value ranges from 0.500 (popularity) to 0.800 (hybrid), and "
        "plan value from 0.550 (popularity) to 0.700 (hybrid). Business as usual reaches 0.234 of the oracle's "
        "policy value and 0.346 of its plan value: it sends items because a campaign is running, not because the "
        "HCP would engage."
    )


def test_value_ranges_says_why_business_as_usual_is_below_random():
    content = pd.DataFrame(
        {"family": ["hybrid"], "policy_fraction_of_oracle": [0.8], "plan_fraction_of_oracle": [0.7]}, index=["hybrid"]
    )
    report = {**REPORT, "policy": {**REPORT["policy"], "random": {"policy_fraction_of_oracle": {"value": 0.3}}}}
    assert narrative.value_ranges(content, report).endswith(
        "It is even below uniform_random, a random (item, channel) pair (0.300): a random pair goes through any "
        "of the five "
        "channels, and the field channels engage far more than e-mail, while business as usual's first touch is "
        "mostly a campaign e-mail."
    )
    above = {**REPORT, "policy": {**REPORT["policy"], "random": {"policy_fraction_of_oracle": {"value": 0.2}}}}
    assert "random" not in narrative.value_ranges(content, above)


def test_observed_ndcg():
    assert narrative.observed_ndcg(REPORT, ["oracle", "hybrid", "popularity"]) == (
        "On observed engagements the oracle scores 0.123, below popularity (0.250): predicting what the logging "
        "policy will push is not the same as knowing what each HCP would engage with."
    )


def test_v01_classifier():
    assert narrative.v01_classifier(REPORT) == (
        "The random-split AUC is 0.812; on the temporal test window it is 0.601. As a recommender it reaches 0.410 "
        "of the oracle's policy value: it ranks content the same way for every HCP of a specialty."
    )


# --- 08 explorer ---------------------------------------------------------------------------


def test_explorer_run():
    data = SimpleNamespace(
        hcps=pd.DataFrame(index=range(150)),
        content=pd.DataFrame(index=range(60)),
        models=["hybrid", "als", "popularity"],
        depth=20,
        cutoff=pd.Timestamp("2025-12-08"),
        test_end=pd.Timestamp("2026-01-05"),
    )
    assert narrative.explorer_run(data, "hybrid") == (
        "The run holds 150 HCPs, 60 content items and recommendations of 3 models (top 20 per HCP), made at the "
        "test cut-off 2025-12-08. The explorers below show **hybrid**; the test window runs to 2026-01-05."
    )


def test_static_views():
    assert narrative.static_views(3500, 3500, 1234.56) == (
        "The explorer holds every one of the run's 3,500 HCPs; with its script and compressed data it adds "
        "1,235 kB to this page, and it works with no kernel and no network."
    )
    assert narrative.static_views(5000, 38000, 2000).startswith(
        "The explorer holds 5,000 of the run's 38,000 HCPs, drawn with the run's seed (parameter `explorer_hcps`);"
    )


def test_channel_story_sums_up_best_week_and_plan():
    summary = {
        "best": pd.Series({"rep_visit": 0.92, "in_person_meeting": 0.08}),
        "week": pd.Series({"email": 0.003, "rep_visit": 0.997}),
        "plan": pd.Series({"email": 1282, "webinar": 196, "rep_visit": 64}),
        "hcps": 3396,
        "planned_hcps": 1425,
    }
    assert narrative.channel_story("hybrid", summary) == (
        "**One channel story.** With no constraint, hybrid's best action is by rep visit 92%, in-person meeting 8% "
        "of 3,396 HCPs; among the actions that can be delivered this week, by rep visit >99%, email <1%. The week's "
        "plan has 1,542 actions for 1,425 HCPs (email 1,282, webinar 196, rep visit 64): rep visits and meetings "
        "are limited by the field force's capacity in each territory and by each campaign's weekly capacity "
        "(chapter 7), so most HCPs get an email or an event instead. Each HCP's view shows all three: the best "
        "with no constraint, the best this week, and what the plan does."
    )
    no_plan = narrative.channel_story(
        "hybrid", {**summary, "week": pd.Series(dtype=float), "plan": pd.Series(dtype=int)}
    )
    assert no_plan.endswith("in-person meeting 8% of 3,396 HCPs. This run has no week's plan (chapter 7).")


def _concentration(hcps, distinct, coverage, shares):
    return {"hcps": hcps, "distinct": distinct, "coverage": coverage, "top": pd.DataFrame({"share": shares})}


def test_list_diversity_compares_with_the_truth():
    mine = _concentration(3396, 180, 0.177, [0.70, 0.65, 0.41])
    text = narrative.list_diversity("hybrid", mine, _concentration(3396, 318, 0.31, [0.59, 0.5]), 1018, 10)
    assert text == (
        "**How diverse are the lists?** hybrid's top-10 lists for 3,396 HCPs use 180 of the 1,018 catalogue items "
        "(18%); its most common item is in 70% of the lists and its 3 most common items are each in 41% to 70% of "
        "them. The oracle's lists (the items each HCP is truly most likely to engage with) use 318 items, and its "
        "most common item is in 59% of them, so hybrid's lists are more alike than the truth calls for: part of "
        "the sameness is the model's, not the HCPs'."
    )
    alike = narrative.list_diversity("tabular", mine, _concentration(3396, 200, 0.2, [0.68]), 1018, 10)
    assert alike.endswith(
        "most common item is in 68% of them: the sameness is mostly the HCPs', a few items engage most of them."
    )
    assert "oracle" not in narrative.list_diversity("tabular", mine, None, 1018, 10)


# --- 07 next best action -------------------------------------------------------------------


def test_plan_model():
    assert narrative.plan_model("hybrid", "the lowest validation log-loss") == (
        "This plan uses **hybrid**: the lowest validation log-loss."
    )


def test_candidates_and_capacity():
    candidates = SimpleNamespace(n_eligible=123456, table=pd.DataFrame({"hcp_id": ["a", "a", "b"] * 400}))
    families = [SimpleNamespace(capacity=np.ones(1000)), SimpleNamespace(capacity=np.ones(234))]
    capacities = pd.DataFrame({"capacity": [1000.0, 250.5]})
    assert narrative.candidates_and_capacity(candidates, 3, families, capacities) == (
        "Of 123,456 eligible (HCP, item, channel) triples, pruning to 3 per HCP and channel leaves 1,200 candidates "
        "for 2 HCPs; the program has 1,234 constraints before the non-binding ones are dropped. The week allows "
        "1,250 touches in all."
    )


SOLVER_TAIL = (
    "Greedy is close because most constraints are per HCP; it loses where one HCP's best action takes a "
    "scarce seat that another HCP needed more."
)


def test_solver_comparison():
    milp = SimpleNamespace(status="optimal", seconds=1.234, gap=1.5e-5, objective=105.0)
    greedy = SimpleNamespace(status="feasible", seconds=0.01, gap=None, objective=100.0)
    assert narrative.solver_comparison(milp, greedy) == (
        "The program ends with status *optimal* after 1.23 s (relative gap 1.50e-05); by the model's own "
        "probabilities it expects 105.00 engagements against 100.00 for greedy (+5.00%). " + SOLVER_TAIL
    )


def test_solver_comparison_without_a_gap_reads_nan():
    milp = SimpleNamespace(status="time_limit", seconds=60.0, gap=None, objective=99.0)
    greedy = SimpleNamespace(status="feasible", seconds=0.01, gap=None, objective=100.0)
    text = narrative.solver_comparison(milp, greedy)
    assert "(relative gap nan)" in text and "(-1.00%)" in text


def test_plan_actions_lists_every_channel_in_order():
    actions = pd.DataFrame({"hcp_id": ["a", "a", "b", "c"], "channel": ["email", "rep_visit", "email", "webinar"]})
    assert narrative.plan_actions(actions) == (
        "The plan holds 4 actions for 3 HCPs (1.33 per HCP reached); email 50%, webinar 25%, rep visit 25%, "
        "in person meeting 0%, conference event 0%."
    )
    assert narrative.plan_actions(actions, channels=["webinar"]).endswith("reached); webinar 25%.")


def test_action_reasons():
    reasons = pd.DataFrame(
        {
            "action_id": [1, 1, 2, 3, 3],
            "reason_code": ["model_estimate", "peer_engaged", "model_estimate", "model_estimate", "series_followup"],
        }
    )
    counts = pd.Series({"model_estimate": 3, "peer_engaged": 1200, "series_followup": 1})
    assert narrative.action_reasons(reasons, counts, n_actions=3) == (
        "2 of 3 actions (67%) carry at least one reason from the HCP's history besides the model's estimate; the "
        "most frequent is *peer engaged* (1,200 actions)."
    )


def test_action_reasons_of_an_empty_plan_does_not_divide_by_zero():
    reasons = pd.DataFrame({"action_id": pd.Series([], dtype=int), "reason_code": pd.Series([], dtype=str)})
    counts = pd.Series({"model_estimate": 0, "peer_engaged": 0})
    assert narrative.action_reasons(reasons, counts, n_actions=0).startswith("0 of 0 actions (0%) carry")


def test_unplanned_hcps():
    why = pd.DataFrame({"hcps": [1234, 5], "example": ["", ""]}, index=["capacity", "opted_out"])
    assert narrative.unplanned_hcps(1239, why) == (
        "1,239 HCPs get no action this week: 1,234 for *capacity*; 5 for *opted out*. At business-as-usual "
        "capacity most HCPs cannot be touched every week, so capacity is the usual reason."
    )


def test_unplanned_hcps_when_everyone_is_planned():
    empty = pd.DataFrame({"hcps": pd.Series([], dtype=int)})
    assert narrative.unplanned_hcps(0, empty) == "Every HCP gets at least one action this week."


def test_plan_value():
    value = pd.DataFrame(
        {"expected engagements": [80.0, 200.0, 40.0], "share of oracle plan": [0.4, 1.0, 0.2]},
        index=["hybrid", "oracle plan", "business as usual"],
    )
    assert narrative.plan_value(value, "hybrid", n_actions=1500) == (
        "The plan made from hybrid holds 1,500 touches and expects 80 engagements this week: 40% of the 200 an "
        "oracle could plan under the same rules, and 2.0 times the 40 of business as usual (same capacities). "
        "Between the two, 120 expected engagements are lost to what the model does not know about each HCP."
    )


def test_written_files(tmp_path):
    written = {"parquet": tmp_path / "plan" / "plan.parquet", "csv": str(tmp_path / "plan" / "plan.csv")}
    assert narrative.written_files(written.values(), tmp_path) == "Written: `plan/plan.parquet`, `plan/plan.csv`."


# --- the module ----------------------------------------------------------------------------


def test_the_module_imports_only_formatting_libraries():
    tree = ast.parse(Path(narrative.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {
        ("." * node.level) + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"__future__", "collections.abc", "pathlib", "typing", "numpy", "pandas", ".domain"}


def test_every_paragraph_function_is_documented_and_returns_text():
    functions = [
        f
        for name, f in vars(narrative).items()
        if callable(f) and not isinstance(f, type) and getattr(f, "__module__", "") == narrative.__name__
    ]
    assert len(functions) >= 30
    for function in functions:
        returns = "dict[str, str]" if function.__name__ == "key_results" else "str"  # substitutions, each text
        assert function.__doc__ and function.__annotations__.get("return") == returns, function.__name__


def test_key_results_format_the_report_for_the_introduction():
    entry = {"value": 0.72, "ci_low": 0.587, "ci_high": 0.878, "n": 83}
    report = {
        "selection": {"chosen": "tabular", "validation_log_loss": {"tabular": 0.2865, "hybrid": 0.3062, "v0.1": None}},
        "metrics": {
            "tabular": {
                "plan_value": {"value": 54.96, "ci_low": 44.4, "ci_high": 65.8, "n": 193},
                "plan_fraction_of_oracle": entry,
            }
        },
        "policy": {
            "business_as_usual": {
                "plan_value": {"value": 14.73, "ci_low": None, "ci_high": None, "n": 193},
                "policy_fraction_of_oracle": {"value": 0.161, "ci_low": 0.131, "ci_high": 0.193},
            },
            "oracle": {"plan_value": {"value": 76.19}},
        },
        "population": {"n_hcps": 3396, "n_test_exposures": 7542},
    }
    values = narrative.key_results(report)
    assert values["kr_model"] == "tabular" and values["kr_model_loss"] == "0.2865"
    assert values["kr_others_loss"] == "hybrid 0.3062"  # a candidate without a loss is left out
    assert values["kr_plan_value"] == "55 [44, 66]" and values["kr_plan_share"] == "0.720 [0.587, 0.878]"
    assert values["kr_bau_plan_value"] == "15"  # no interval: the value alone
    assert values["kr_plan_vs_bau"] == "3.7" and values["kr_oracle_plan_value"] == "76"
    assert values["kr_policy_share"] == "n/a"  # the chosen model has no policy value in this report
    assert values["kr_n_hcps"] == "3,396" and values["kr_n_exposures"] == "7,542"


# --- 03 topic modeling ---------------------------------------------------------------------


def test_topic_corpus_and_vocabulary():
    assert narrative.topic_corpus(1234, 5) == "The topic model reads 1,234 articles, 5 of them with a title only."
    text = narrative.vocabulary("blank en + lookups", 812, ["type_2_diabetes", "heart_failure"], np.array([10, 0, 30]))
    assert text == (
        "With the spaCy pipeline *blank en + lookups*, the vocabulary holds 812 terms, 2 of them phrases; "
        "the median article keeps 10 terms and 1 articles keep none. The most frequent phrases: "
        "type_2_diabetes, heart_failure."
    )


def test_topic_count_says_whether_the_sweep_or_the_parameter_chose():
    sweep = pd.DataFrame({"n_topics": [6, 8, 10], "c_v": [0.41, 0.47, 0.44], "c_npmi": [0.01, 0.05, 0.03]})
    assert narrative.topic_count(8, 8, forced=False, sweep=sweep) == (
        "8 topics, chosen by the sweep. The sweep's best, 8 topics, has mean c_v 0.470 and NPMI 0.050; across the "
        "sweep c_v ranges from 0.410 to 0.470."
    )
    assert narrative.topic_count(10, 8, forced=True, sweep=sweep).startswith(
        "10 topics, forced by the parameter n_topics (the sweep's best was 8)."
    )


def test_topic_coherence_range_and_audiences():
    table = pd.DataFrame(
        {
            "topic": [1, 2],
            "label": ["insulin, glucose", "tumour, survival"],
            "c_v": [0.52, 0.38],
            "top_area": ["diabetes", "oncology"],
            "top_specialty": ["endocrinology", "hematology_oncology"],
        }
    )
    assert narrative.topic_coherence_range(table) == (
        "Per-topic c_v runs from 0.380 (topic 2: tumour, survival) to 0.520 (topic 1: insulin, glucose)."
    )
    assert narrative.topic_audiences(table) == (
        "topic 1 (insulin, glucose) is mostly diabetes, closest to endocrinology; topic 2 (tumour, survival) is "
        "mostly oncology, closest to hematology_oncology."
    )


def test_topic_quality_with_and_without_the_v01_refit():
    full = {"n_documents": 900, "c_v": 0.512, "c_npmi": 0.061, "nmi_query_label": 0.41, "nmi_therapeutic_area": 0.38}
    text = narrative.topic_quality({"full": full}, 0.392)
    assert text.startswith(
        "On all 900 articles the chosen model has mean c_v 0.512, NPMI 0.061; NMI with the query "
        "label 0.410 (with the therapeutic area 0.380)."
    )
    assert "Refitted" not in text and "The NMI aim of 0.6 is not met" in text
    refit = narrative.topic_quality(
        {"full": {**full, "nmi_query_label": 0.7}, "v01_refit": {"n_documents": 509, "c_v": 0.56}}, 0.392
    )
    assert (
        "Refitted on v0.1's 509 articles, the recipe reaches c_v 0.560 against v0.1's 0.392 (meets the 0.55 aim)."
        in refit
    )
    assert "The NMI aim of 0.6 is met" in refit
