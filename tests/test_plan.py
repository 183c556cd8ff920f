"""Tests of hcp_lib.stages.plan: every constraint on generated plans, the solver against brute force,
reasons checked against the history, and bad input."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest

from hcp_lib import config, io, reasons
from hcp_lib.domain import CHANNELS, HCP_ID_PATTERN
from hcp_lib.io import DataValidationError
from hcp_lib.stages import plan
from hcp_lib.world.entities import is_valid_npi

START = pd.Timestamp("2025-03-03")  # a Monday


def _world(n_hcps: int = 12, n_items: int = 8, seed: int = 0):
    """A small hand-made world: two states, one opted-out HCP, one HCP whose specialty has no
    approved item, a two-part series, campaigns on every channel and a history before START."""
    rng = np.random.default_rng(seed)
    specialties = ["cardiology", "endocrinology"] * (n_hcps // 2)
    specialties[-1] = "pediatrics"  # nothing is approved for pediatrics
    hcps = pd.DataFrame(
        {
            "hcp_id": [f"SYN{i:08d}" for i in range(n_hcps)],
            "specialty": specialties,
            "state": ["TX" if i % 2 else "CA" for i in range(n_hcps)],
            "region": ["South" if i % 2 else "West" for i in range(n_hcps)],
            "opted_out": [i == 0 for i in range(n_hcps)],
            "opted_out_at": [START - pd.Timedelta(days=10) if i == 0 else pd.NaT for i in range(n_hcps)],
            "peer_group": [f"PG{i % 3}" for i in range(n_hcps)],
            "health_system": [f"HS{i % 2}" for i in range(n_hcps)],
        }
    )
    items = [f"{100 + j}" for j in range(n_items)]
    catalogue = pd.DataFrame(
        {
            "content_id": items,
            "title": [f"Item {j}" for j in range(n_items)],
            "release_date": [START - pd.Timedelta(days=60)] * (n_items - 1) + [START + pd.Timedelta(days=30)],
            "approved_specialties": ["cardiology; endocrinology" if j % 3 else "cardiology" for j in range(n_items)],
            "series_id": pd.array(["S1", "S1"] + [None] * (n_items - 2), dtype="string"),
            "series_part": pd.array([1, 2] + [None] * (n_items - 2), dtype="Int64"),
        }
    )
    campaigns = []
    for _j, item in enumerate(items):
        for channel in CHANNELS:
            start = START - pd.Timedelta(days=3) if channel == "webinar" else START - pd.Timedelta(days=20)
            campaigns.append(
                {
                    "campaign_id": f"CMP-{item}-{channel}",
                    "content_id": item,
                    "channel": channel,
                    "start_date": start,
                    "end_date": START + pd.Timedelta(days=40),
                    "capacity_per_week": 2 if channel != "email" else 50,
                }
            )
    campaigns = pd.DataFrame(campaigns)
    rows = []
    for _i, hcp in enumerate(hcps["hcp_id"]):
        for _k in range(6):
            rows.append(
                {
                    "hcp_id": hcp,
                    "content_id": items[int(rng.integers(0, n_items - 1))],
                    "channel": CHANNELS[int(rng.integers(0, len(CHANNELS)))],
                    "exposed_at": START - pd.Timedelta(days=int(rng.integers(1, 50)), hours=int(rng.integers(0, 20))),
                    "engaged": bool(rng.random() < 0.5),
                }
            )
    # HCP 1 engaged with part 1 of the series: part 2 is a continuation for it
    rows.append(
        {
            "hcp_id": hcps["hcp_id"][1],
            "content_id": "100",
            "channel": "email",
            "exposed_at": START - pd.Timedelta(days=70),
            "engaged": True,
        }
    )
    # a row after the plan start must never reach the plan
    rows.append(
        {
            "hcp_id": hcps["hcp_id"][2],
            "content_id": "103",
            "channel": "email",
            "exposed_at": START + pd.Timedelta(days=1),
            "engaged": True,
        }
    )
    interactions = pd.DataFrame(rows)
    doc_topics = pd.DataFrame({"pmid": items, "topic_0": [0.9 if j % 2 else 0.1 for j in range(n_items)]})
    doc_topics["topic_1"] = 1 - doc_topics["topic_0"]
    return hcps, catalogue, campaigns, interactions, doc_topics


def _context(settings: plan.PlanSettings, **kwargs):
    hcps, catalogue, campaigns, interactions, doc_topics = _world(**kwargs)
    return plan.make_context(
        hcps,
        catalogue,
        campaigns,
        interactions,
        START,
        settings,
        doc_topics=doc_topics,
        topic_labels=["heart / failure", "insulin / glucose"],
    )


def _scorer(context: plan.PlanContext, seed: int = 1):
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(0.01, 0.6, (len(context.hcps), len(context.catalogue), len(CHANNELS)))
    return plan.matrix_scorer(matrix, context.hcp_ids)


SETTINGS = plan.PlanSettings(
    period_days=7,
    max_actions_per_hcp=2,
    repeat_window_days=28,
    candidates_per_channel=3,
    capacity_scale=1.0,
    territory_capacity={"rep_visit": 1, "in_person_meeting": 1},
    time_limit_s=10,
)


@pytest.fixture(scope="module")
def built():
    context = _context(SETTINGS)
    result = plan.build_plan(context, _scorer(context), context.content_ids, SETTINGS, "random-test-model")
    return context, result


def test_plan_respects_every_constraint(built):
    context, result = built
    actions = result.actions
    assert len(actions) > 0
    assert list(actions.columns) == list(plan.PLAN_COLUMNS)
    # per-HCP limit and per-HCP channel caps, one channel per item
    assert actions.groupby("hcp_id").size().max() <= SETTINGS.max_actions_per_hcp
    assert actions.groupby(["hcp_id", "channel"]).size().max() <= 1
    assert not actions.duplicated(["hcp_id", "content_id"]).any()
    # capacities per channel and territory, and per campaign
    used = (
        actions.assign(
            territory=np.where(actions["channel"].isin(plan.FIELD_CHANNELS), actions["territory"], plan.ALL_TERRITORIES)
        )
        .groupby(["channel", "territory"])
        .size()
    )
    capacity = result.capacities.set_index(["channel", "territory"])["capacity"]
    assert (used <= capacity.reindex(used.index, fill_value=0)).all()
    assert (capacity.xs("rep_visit") == 1).all()
    slots = result.candidates.slots.set_index("campaign_id")["capacity"]
    per_campaign = actions.groupby("campaign_id").size()
    assert (per_campaign <= slots.reindex(per_campaign.index)).all()
    # approval for the HCP's specialty, released items only
    approved = context.catalogue.set_index("content_id")["approved_specialties"].reindex(actions["content_id"])
    assert all(s in a.split("; ") for s, a in zip(actions["specialty"], approved))
    assert "107" not in set(actions["content_id"])  # released after the period
    # opt-outs
    opted = set(context.hcps.loc[context.hcps["opted_out"], "hcp_id"])
    assert opted and not opted & set(actions["hcp_id"])
    # no repeat of what was received in the window or engaged with before
    history = context.history
    recent = history[history["exposed_at"] >= START - pd.Timedelta(days=SETTINGS.repeat_window_days)]
    blocked = set(zip(recent["hcp_id"], recent["content_id"])) | set(
        zip(history.loc[history["engaged"], "hcp_id"], history.loc[history["engaged"], "content_id"])
    )
    assert not blocked & set(zip(actions["hcp_id"], actions["content_id"]))
    # every HCP of the master is either planned or said why not
    assert set(actions["hcp_id"]) | set(result.unplanned["hcp_id"]) == set(context.hcps["hcp_id"])
    assert not set(actions["hcp_id"]) & set(result.unplanned["hcp_id"])


def test_plan_dates_and_expiry_lie_in_the_period(built):
    context, result = built
    actions = result.actions
    day = pd.to_datetime(actions["suggested_date"])
    assert ((day >= context.plan_start) & (day < context.plan_end)).all()
    assert (actions["expires_at"] <= context.plan_end).all()
    webinars = actions[actions["channel"] == "webinar"]
    # webinar campaigns start on a Friday (START - 3 days): sessions are weekly on Fridays
    assert (pd.to_datetime(webinars["suggested_date"]).dt.dayofweek == 4).all()


def test_history_after_plan_start_is_never_read():
    context = _context(SETTINGS)
    assert (context.history["exposed_at"] < START).all()


def test_unplanned_reasons_name_the_cause(built):
    context, result = built
    why = result.unplanned.set_index("hcp_id")
    assert why.loc[context.hcps["hcp_id"][0], "reason_code"] == "opted_out"
    assert "opted out" in why.loc[context.hcps["hcp_id"][0], "reason"]
    pediatric = context.hcps.loc[context.hcps["specialty"] == "pediatrics", "hcp_id"].iloc[0]
    assert why.loc[pediatric, "reason_code"] == "no_approved_content"
    assert "pediatrics" in why.loc[pediatric, "reason"]
    assert set(why["reason_code"]) <= set(plan.UNPLANNED_CODES)


def _families(groups: list[np.ndarray], capacities: list[np.ndarray]) -> list[plan.ConstraintFamily]:
    return [
        plan.ConstraintFamily(f"f{k}", g, c, np.array([f"g{i}" for i in range(len(c))]))
        for k, (g, c) in enumerate(zip(groups, capacities))
    ]


@pytest.mark.parametrize("seed", range(5))
def test_milp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 10
    probability = rng.uniform(0, 1, n)
    groups = [rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 2, n)]
    capacities = [rng.integers(0, 3, 4), rng.integers(1, 3, 3), rng.integers(1, 4, 2)]
    families = _families(groups, capacities)
    best = 0.0
    for chosen in itertools.product([False, True], repeat=n):
        chosen = np.array(chosen)
        if all((np.bincount(g[chosen], minlength=len(c)) <= c).all() for g, c in zip(groups, capacities)):
            best = max(best, probability[chosen].sum())
    result = plan.solve_milp(probability, families, time_limit_s=10, mip_rel_gap=0)
    assert result.status == "optimal"
    assert result.objective == pytest.approx(best, abs=1e-9)
    plan.check_assignment(families, result.chosen)
    greedy = plan.solve_greedy(probability, families)
    plan.check_assignment(families, greedy.chosen)
    assert greedy.objective <= best + 1e-12
    assert plan.lp_bound(probability, families) >= best - 1e-9  # the relaxation bounds every plan


def test_greedy_loses_where_a_scarce_seat_matters():
    # HCP A: rep visit 0.50 or email 0.45; HCP B: rep visit 0.49 or email 0.01; one rep seat, one action each
    probability = np.array([0.50, 0.45, 0.49, 0.01])
    hcp = np.array([0, 0, 1, 1])
    rep_seat = np.array([0, 1, 0, 1])  # group 0 = the rep seat (capacity 1), group 1 = email (plenty)
    families = _families([hcp, rep_seat], [np.array([1, 1]), np.array([1, 10])])
    assert plan.solve_greedy(probability, families).objective == pytest.approx(0.51)
    milp = plan.solve_milp(probability, families)
    assert milp.objective == pytest.approx(0.94)
    assert milp.chosen.tolist() == [False, True, True, False]
    over = plan.solve_milp(probability, families, max_candidates=3)
    assert over.solver == "greedy" and over.objective == pytest.approx(0.51)
    # greedy stands in with a proven gap: the linear relaxation's optimum is 0.94 here
    assert over.bound == pytest.approx(0.94) and over.gap == pytest.approx((0.94 - 0.51) / 0.94)
    assert over.status == (
        "greedy: 4 candidates exceed plan_milp_max_candidates=3; within 45.74% of the optimum "
        "(linear-relaxation bound 0.94)"
    )
    assert plan.lp_bound(np.zeros(0), []) == 0.0
    quick = plan.solve_milp(probability, families, max_candidates=3, prove_gap=False)
    assert quick.bound is None and quick.status == "greedy: 4 candidates exceed plan_milp_max_candidates=3"
    assert plan.solve_milp(probability, families, max_candidates=4).objective == pytest.approx(0.94)
    with pytest.raises(plan.PlanError, match="milp_max_candidates"):
        plan.PlanSettings(milp_max_candidates=0).validate()


def test_reasons_refer_to_the_hcps_history(built):
    context, result = built
    reasons = result.reasons.merge(result.actions[["action_id", "hcp_id", "content_id", "channel"]], on="action_id")
    assert set(reasons["reason_code"]) <= set(plan.REASON_CODES)
    assert (reasons.groupby("action_id")["reason_code"].apply(lambda c: "model_estimate" in set(c))).all()
    history = context.history
    engaged = history[history["engaged"]]
    topic = dict(zip(context.content_ids, context.item_topic))
    people = context.hcps.set_index("hcp_id")
    checked = set()
    for row in reasons.itertuples():
        if row.reason_code == "topic_interest":
            since = START - pd.Timedelta(days=SETTINGS.interest_window_days)
            mine = engaged[(engaged["hcp_id"] == row.hcp_id) & (engaged["exposed_at"] >= since)]
            expected = {c for c in mine["content_id"] if topic[c] == topic[row.content_id]}
            assert set(row.evidence_ids.split(";")) == expected
            assert row.evidence_count == len(expected)
            assert context.topic_labels[topic[row.content_id]] in row.reason
        elif row.reason_code == "peer_engagement":
            peers = set(row.evidence_ids.split(";"))
            assert row.hcp_id not in peers
            did = set(engaged.loc[engaged["content_id"] == row.content_id, "hcp_id"])
            assert peers <= did
            assert (
                len({people.loc[p, "health_system"] for p in peers} | {people.loc[row.hcp_id, "health_system"]}) == 1
                or len({people.loc[p, "peer_group"] for p in peers} | {people.loc[row.hcp_id, "peer_group"]}) == 1
            )
        elif row.reason_code == "series_continuation":
            assert row.content_id == "101" and row.evidence_ids == "100"
            assert ((engaged["hcp_id"] == row.hcp_id) & (engaged["content_id"] == "100")).any()
        elif row.reason_code == "last_touch":
            last = history[history["hcp_id"] == row.hcp_id].iloc[-1]
            assert row.evidence_ids == last["content_id"] and row.evidence_date == last["exposed_at"]
            assert (last["channel"] == row.channel) == bool(last["engaged"])
        elif row.reason_code == "channel_preference":
            mine = history[(history["hcp_id"] == row.hcp_id)].groupby("channel")["engaged"].agg(["sum", "size"])
            mine = mine[mine["size"] >= 2]
            rate = mine["sum"] / mine["size"]
            assert rate[row.channel] == rate.max() and f"{int(mine.loc[row.channel, 'sum'])} of" in row.reason
        checked.add(row.reason_code)
    assert {"last_touch", "model_estimate"} <= checked


def test_plan_reasons_come_from_the_one_reasons_engine(built):
    context, result = built
    direct = reasons.reason_table(
        result.actions, plan.evidence(context, SETTINGS), key="action_id", probability="priority_score"
    )
    pd.testing.assert_frame_equal(result.reasons, direct)
    joined = direct.groupby("action_id")["reason"].agg(" | ".join)
    assert list(result.actions["reasons"]) == list(joined.reindex(result.actions["action_id"]))
    assert plan.REASON_CODES is reasons.REASON_CODES


def test_settings_defaults_are_the_parameters_defaults():
    defaults = {name: config.default(name) for name in config.PARAMS if name.startswith("plan_")}
    assert plan.PlanSettings() == plan.settings_from_parameters(defaults)
    assert plan.PlanSettings().hcp_caps == {c: config.default(f"plan_hcp_cap_{c}") for c in CHANNELS}


def test_series_continuation_reason_for_the_hcp_who_did_part_one():
    context = _context(SETTINGS)
    hcp = context.hcps["hcp_id"][1]
    candidates = plan.candidate_actions(context, _scorer(context), context.content_ids, SETTINGS)
    table = candidates.table
    row = table[(table["hcp_id"] == hcp) & (table["content_id"] == "101")].head(1).copy()
    assert len(row) == 1
    row["action_id"], row["priority_score"] = "A1", row["probability"]
    reasons = plan.reason_table(row, context, SETTINGS)
    series = reasons[reasons["reason_code"] == "series_continuation"]
    assert len(series) == 1 and "part 2 of series S1" in series["reason"].iloc[0]


def test_zero_capacities_still_build_a_plan_and_say_why():
    settings = plan.PlanSettings(capacity_scale=0.0, territory_capacity={"rep_visit": 0, "in_person_meeting": 0})
    context = _context(settings)
    result = plan.build_plan(context, _scorer(context), context.content_ids, settings, "m")
    assert result.actions.empty
    assert list(result.actions.columns) == list(plan.PLAN_COLUMNS)
    assert set(result.unplanned["hcp_id"]) == set(context.hcps["hcp_id"])
    exhausted = result.unplanned[result.unplanned["reason_code"] == "capacity_exhausted"]
    assert len(exhausted) > 0 and exhausted["reason"].str.contains("(0 available)", regex=False).all()


def test_no_channel_allowed_and_nothing_left_to_send():
    settings = plan.PlanSettings(hcp_caps={c: 0 for c in CHANNELS})
    context = _context(settings)
    result = plan.build_plan(context, _scorer(context), context.content_ids, settings, "m", solver="greedy")
    assert result.actions.empty
    codes = result.unplanned.set_index("hcp_id")["reason_code"]
    assert codes.iloc[0] == "opted_out" and (codes.iloc[1:] == "no_channel_allowed").all()
    # every approved item received within the window: the HCP is told so
    hcps, catalogue, campaigns, interactions, doc_topics = _world()
    hcp = hcps["hcp_id"][3]
    flood = pd.DataFrame(
        {
            "hcp_id": hcp,
            "content_id": catalogue["content_id"],
            "channel": "email",
            "exposed_at": START - pd.Timedelta(days=2),
            "engaged": False,
        }
    )
    context = plan.make_context(hcps, catalogue, campaigns, pd.concat([interactions, flood]), START, SETTINGS)
    result = plan.build_plan(context, _scorer(context), context.content_ids, SETTINGS, "m")
    assert result.unplanned.set_index("hcp_id").loc[hcp, "reason_code"] == "all_received"


def test_no_campaign_running_means_no_candidate():
    hcps, catalogue, campaigns, interactions, _ = _world()
    campaigns = campaigns.assign(end_date=START - pd.Timedelta(days=1))
    context = plan.make_context(hcps, catalogue, campaigns, interactions, START, SETTINGS)
    result = plan.build_plan(context, _scorer(context), context.content_ids, SETTINGS, "m")
    assert result.actions.empty
    assert "no_active_campaign" in set(result.unplanned["reason_code"])


def test_bad_input_is_named():
    hcps, catalogue, campaigns, interactions, _ = _world()
    with pytest.raises(plan.PlanError, match="'health_system'"):
        plan.make_context(hcps.drop(columns="health_system"), catalogue, campaigns, interactions, START, SETTINGS)
    with pytest.raises(plan.PlanError, match="'candidates_per_channel'"):
        plan.PlanSettings(candidates_per_channel=0).validate()
    with pytest.raises(plan.PlanError, match="unknown channel 'fax'"):
        plan.PlanSettings(hcp_caps={"fax": 1}).validate()
    context = _context(SETTINGS)
    bad = np.full((len(context.hcps), len(context.catalogue), len(CHANNELS)), 1.5)
    with pytest.raises(plan.PlanError, match="must lie in \\[0, 1\\]"):
        plan.candidate_actions(context, plan.matrix_scorer(bad, context.hcp_ids), context.content_ids, SETTINGS)
    with pytest.raises(plan.PlanError, match="catalogue order"):
        plan.candidate_actions(context, _scorer(context), list(context.content_ids)[::-1], SETTINGS)
    with pytest.raises(plan.PlanError, match="solver 'lp'"):
        plan.build_plan(context, _scorer(context), context.content_ids, SETTINGS, "m", solver="lp")


def test_capacities_follow_business_as_usual_volume():
    settings = plan.PlanSettings(capacity_lookback_weeks=4, capacity_scale=1.0)
    context = _context(settings)
    table = plan.capacity_table(context, settings)
    recent = context.history[context.history["exposed_at"] >= START - pd.Timedelta(weeks=4)]
    for channel in CHANNELS:
        expected = round(int((recent["channel"] == channel).sum()) / 4)
        assert table.loc[table["channel"] == channel, "capacity"].sum() == expected
    assert set(table.loc[table["channel"] == "rep_visit", "territory"]) == {"CA", "TX"}


def test_policy_comparison_and_export(built, tmp_path):
    context, result = built
    truth = np.full((len(context.hcps), len(context.catalogue), len(CHANNELS)), 0.25)
    top1 = plan.unconstrained_top1(result.candidates)
    value = plan.policy_comparison(
        {"plan": result.actions, "top1": top1}, truth, context.hcp_ids, context.content_ids, reference="plan"
    )
    assert value.loc["plan", "expected_engagements"] == pytest.approx(0.25 * len(result.actions))
    assert value.loc["top1", "touches"] == top1["hcp_id"].nunique() == len(top1)
    assert value.loc["plan", "share_of_plan"] == pytest.approx(1.0)
    written = plan.write_plan(result, tmp_path, {"n_actions": len(result.actions)})
    csv = pd.read_csv(written["csv"], dtype=str)
    assert list(csv.columns) == list(plan.PLAN_COLUMNS) and len(csv) == len(result.actions)
    assert pd.read_parquet(written["plan"])["action_id"].tolist() == result.actions["action_id"].tolist()


def test_export_marks_every_hcp_as_synthetic(built, tmp_path):
    _, result = built
    written = plan.write_plan(result, tmp_path, {"n_actions": len(result.actions)})
    csv = pd.read_csv(written["csv"], dtype=str)
    assert list(csv.columns[2:4]) == ["hcp_id", "synthetic_hcp"]
    assert len(csv) > 0 and csv["synthetic_hcp"].eq("True").all()
    assert csv["hcp_id"].str.match(HCP_ID_PATTERN).all() and not any(is_valid_npi(h) for h in csv["hcp_id"])
    stored = pd.read_parquet(written["plan"])
    assert stored["synthetic_hcp"].dtype == bool and stored["synthetic_hcp"].all()
    # the schema refuses a real-looking NPI and an unmarked row
    with pytest.raises(DataValidationError, match="hcp_id"):
        io.validate(result.actions.assign(hcp_id="1234567893"), plan.PLAN_SCHEMA, "plan")
    with pytest.raises(DataValidationError, match="synthetic_hcp"):
        io.validate(result.actions.assign(synthetic_hcp=False), plan.PLAN_SCHEMA, "plan")


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_per_channel_is_the_head_of_a_stable_descending_sort(k):
    """The candidates' top-k selection (argmax passes) keeps what a stable descending sort of each
    (HCP, channel)'s items keeps, ties to the lower item, excluded (-inf) cells dropped."""
    rng = np.random.default_rng(k)
    values = np.round(rng.uniform(0, 1, (6, 5, len(CHANNELS))), 1)  # many ties
    masked = np.where(rng.uniform(size=values.shape) < 0.6, values, -np.inf)
    top, value = plan._top_per_channel(masked, k)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k, :]
    expected = np.take_along_axis(masked, order, axis=1)
    kept = np.isfinite(expected)
    np.testing.assert_array_equal(value[:, : order.shape[1]][kept], expected[kept])
    np.testing.assert_array_equal(top[:, : order.shape[1]][kept], order[kept])
    assert np.isfinite(value).sum() == kept.sum()


def test_saved_candidates_read_back_under_the_same_rules_only(tmp_path):
    context = _context(SETTINGS)
    candidates = plan.candidate_actions(context, _scorer(context), context.content_ids, SETTINGS)
    path = plan.write_candidates(candidates, tmp_path / "m.parquet", SETTINGS, START)
    back = plan.read_candidates(path, context, SETTINGS)
    pd.testing.assert_frame_equal(
        back.table.reset_index(drop=True), candidates.table.reset_index(drop=True), check_dtype=False
    )
    pd.testing.assert_frame_equal(back.unplanned, candidates.unplanned)
    # the solver's time budget does not change the candidates; a rule does
    plan.read_candidates(path, context, plan.PlanSettings(**{**SETTINGS.__dict__, "time_limit_s": 5.0}))
    other = plan.PlanSettings(**{**SETTINGS.__dict__, "repeat_window_days": 7})
    with pytest.raises(plan.PlanError, match="plan setting repeat_window_days=28, this plan uses 7"):
        plan.read_candidates(path, plan.make_context(*_world()[:4], START, other), other)
    later = plan.make_context(*_world()[:4], START + pd.Timedelta(days=7), SETTINGS)
    with pytest.raises(plan.PlanError, match="candidates made for a plan starting 2025-03-03"):
        plan.read_candidates(path, later, SETTINGS)
    # a row that is not an eligible action (the opted-out HCP) is refused
    table = pd.read_parquet(path)
    table.loc[0, "hcp_id"] = context.hcp_ids[0]
    table.to_parquet(path)
    with pytest.raises(plan.PlanError, match="is not an eligible action"):
        plan.read_candidates(path, context, SETTINGS)


def test_usable_drops_zero_probability_candidates():
    context = _context(SETTINGS)
    candidates = plan.candidate_actions(context, _scorer(context), context.content_ids, SETTINGS)
    table = candidates.table.copy()
    table.loc[table.index[:5], "probability"] = 0.0
    kept = plan.usable(plan.Candidates(table, candidates.unplanned, candidates.slots, candidates.n_eligible))
    assert len(kept.table) == len(table) - 5 and (kept.table["probability"] > 0).all()


def test_chosen_model_needs_the_evaluation_and_names_what_exists(tmp_path):
    from hcp_lib import io

    with pytest.raises(plan.PlanError, match="run notebook 06 first"):
        plan.chosen_model(tmp_path)
    io.write_json(
        {"selection": {"chosen": "hybrid", "validation_log_loss": {"hybrid": 0.27, "tabular": 0.28}}},
        tmp_path / "evaluation" / "metrics.json",
    )
    with pytest.raises(plan.PlanError, match="no plan candidates for model 'hybrid'"):
        plan.chosen_model(tmp_path)
    io.write_parquet(
        pd.DataFrame({"hcp_id": ["1"], "content_id": ["2"], "channel": ["email"], "probability": [0.1]}),
        plan.candidates_path(tmp_path, "hybrid"),
    )
    model, why = plan.chosen_model(tmp_path)
    assert model == "hybrid" and "0.2700" in why and "tabular 0.2800" in why
    with pytest.raises(plan.PlanError, match="no plan candidates for model 'bogus' in .*; available: hybrid"):
        plan.chosen_model(tmp_path, "bogus")


# --- non-finite probabilities ---------------------------------------------------------------------


def test_solvers_refuse_an_infinite_or_nan_candidate():
    probability = np.array([0.50, 0.45, np.inf, 0.01])
    families = _families([np.array([0, 0, 1, 1])], [np.array([1, 1])])
    for solve in (plan.solve_greedy, plan.solve_milp):
        with pytest.raises(
            plan.NonFiniteProbabilityError,
            match=rf"^{solve.__name__} was given 1 non-finite candidate probability \(1 inf\) out of 4, "
            r"first at position 2; a plan cannot be built from them — check the model that "
            r"produced them$",
        ):
            solve(probability, families)
    with pytest.raises(plan.PlanError, match=r"2 non-finite candidate probabilities \(1 NaN, 1 -inf\)"):
        plan.solve_greedy(np.array([np.nan, 0.2, -np.inf]), _families([np.arange(3)], [np.ones(3, int)]))
    assert issubclass(plan.NonFiniteProbabilityError, io.NonFiniteError)


def test_candidate_actions_refuse_nan_probabilities_of_eligible_actions_only():
    context = _context(SETTINGS)
    matrix = np.random.default_rng(1).uniform(0.01, 0.6, (len(context.hcps), len(context.catalogue), len(CHANNELS)))
    matrix[0] = np.nan  # HCP 0 opted out: none of its actions is eligible, so its values are never read
    plan.candidate_actions(context, plan.matrix_scorer(matrix, context.hcp_ids), context.content_ids, SETTINGS)
    matrix[1] = np.nan
    with pytest.raises(
        plan.NonFiniteProbabilityError,
        match=rf"^model 'hybrid' returned \d+ non-finite probabilities \(\d+ NaN\) out of "
        rf"[\d,]+ eligible actions of a batch of {len(context.hcps)} HCPs, first at HCP '{context.hcp_ids[1]}'",
    ):
        plan.candidate_actions(
            context, plan.matrix_scorer(matrix, context.hcp_ids), context.content_ids, SETTINGS, model="hybrid"
        )


def test_saved_candidates_with_an_infinite_probability_name_the_file(tmp_path):
    context = _context(SETTINGS)
    candidates = plan.candidate_actions(context, _scorer(context), context.content_ids, SETTINGS)
    path = plan.write_candidates(candidates, tmp_path / "hybrid.parquet", SETTINGS, START)
    table = pd.read_parquet(path)
    table.loc[3, "probability"] = np.inf
    table.to_parquet(path)
    with pytest.raises(
        plan.NonFiniteProbabilityError,
        match=rf"^{re.escape(str(path))} holds 1 non-finite probability \(1 inf\) out of "
        rf"{len(table)} in column 'probability', first at position 3",
    ):
        plan.read_candidates(path, context, SETTINGS)


def test_plan_value_figure_compares_the_chosen_plan_with_business_as_usual_at_its_own_scale():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hcp_lib import plots

    value = pd.DataFrame(
        {
            "expected engagements": [76.0, 55.0, 44.0, 15.0],
            "share of oracle plan": [1.0, 0.72, 0.58, 0.19],
            "low": [1.0, 0.59, 0.47, 0.14],
            "high": [1.0, 0.88, 0.71, 0.26],
        },
        index=pd.Index(["oracle plan", "tabular", "hybrid", "business as usual"], name="plan from"),
    )
    fig = plots.plan_value_figure(value, "tabular", title="the week")
    try:
        top, bottom = fig.axes
        # top: the chosen plan and business as usual only, in expected engagements; the oracle is a line
        assert [t.get_text() for t in top.get_yticklabels()] == [
            "business as usual",
            "tabular\n(3.7× business as usual)",
        ]
        assert [p.get_width() for p in top.patches] == [15.0, 55.0]
        assert [t.get_text() for t in top.texts if t.get_text() in ("15", "55")] == ["15", "55"]
        assert [line.get_xdata()[0] for line in top.lines] == [76.0]
        assert top.get_xlim()[1] > 76.0
        assert "expected engagements" in top.get_xlabel() and "(count)" in top.get_xlabel()
        # bottom: every plan but the oracle (100% by definition, the dashed line), each labelled
        assert [t.get_text() for t in bottom.get_yticklabels()] == ["business as usual", "hybrid", "tabular"]
        bars = [p for p in bottom.patches if p.get_width() > 0]
        assert [round(p.get_width(), 2) for p in bars] == [0.19, 0.58, 0.72]
        assert {"19%", "58%", "72%"} <= {t.get_text() for t in bottom.texts}
        assert "share of the oracle plan" in bottom.get_xlabel() and "%" in bottom.get_xlabel()
        assert bottom.get_ylabel() == "plan made from"
        # models keep their colour; business as usual is hatched, not a model's colour; the chosen name is bold
        colours = plots.model_colours(["tabular", "hybrid"])
        assert bars[1].get_facecolor() == pytest.approx(colours["hybrid"])
        assert bars[2].get_facecolor() == pytest.approx(colours["tabular"])
        assert bars[0].get_hatch() and bars[0].get_facecolor() not in colours.values()
        bold = [t.get_text() for ax in (top, bottom) for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
        assert bold == ["tabular\n(3.7× business as usual)", "tabular"]
        assert fig._suptitle.get_text() == "the week"
        assert fig.get_size_inches()[0] <= 9
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="'ease'"):
        plots.plan_value_figure(value, "ease")
    with pytest.raises(ValueError, match="'business as usual'"):
        plots.plan_value_figure(value.drop(index="business as usual"), "tabular")


def test_eligible_actions_are_computed_once_per_rules_and_read_only_where_eligible():
    """Every model's candidates reuse one computation of the eligible actions per context, rules
    and batch size; each batch keeps the columns with an eligible action only, and the candidates
    are those of a fresh context under the same rules, whatever the batch size."""
    context = _context(SETTINGS)
    scorer = _scorer(context)
    first = plan.candidate_actions(context, scorer, context.content_ids, SETTINGS)
    assert len(context.eligible_cache) == 1
    (batches,) = context.eligible_cache.values()
    n_eligible = 0
    for rows, cols, live, status in batches:
        assert live.shape == (len(rows), len(cols), len(CHANNELS))
        assert np.all(np.diff(cols) > 0) and (not len(cols) or live.any(axis=(0, 2)).all())
        assert set(status[live.any(axis=(1, 2))]) <= {""}
        n_eligible += int(live.sum())
    assert n_eligible == first.n_eligible > 0
    again = plan.candidate_actions(context, _scorer(context, seed=2), context.content_ids, SETTINGS)
    assert len(context.eligible_cache) == 1 and again.n_eligible == first.n_eligible
    # the cached batches give what a fresh context gives, with any batch size
    for batch_size in (1, 3):
        fresh = _context(SETTINGS)
        other = plan.candidate_actions(fresh, _scorer(fresh), fresh.content_ids, SETTINGS, batch_size=batch_size)
        pd.testing.assert_frame_equal(other.table, first.table)
        pd.testing.assert_frame_equal(other.unplanned, first.unplanned)
    # other rules: another entry, other eligible actions
    stricter = plan.PlanSettings(**{**SETTINGS.__dict__, "hcp_caps": {**SETTINGS.hcp_caps, "email": 0}})
    fewer = plan.candidate_actions(context, scorer, context.content_ids, stricter)
    assert len(context.eligible_cache) == 2
    assert fewer.n_eligible < first.n_eligible and "email" not in set(fewer.table["channel"])
