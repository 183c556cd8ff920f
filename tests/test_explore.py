"""Tests of hcp_lib.stages.explore on a small hand-made world (columns of the world contract) and, marked
slow, on notebook 08 of the tiny pipeline run."""

import nbformat
import numpy as np
import pandas as pd
import pytest

from hcp_lib import io, reasons
from hcp_lib.config import PARAMS, RunDir
from hcp_lib.split import TemporalSplit
from hcp_lib.stages import explore

CUTOFF = pd.Timestamp("2025-03-01")
SPLIT = TemporalSplit("2025-01-01", "2025-02-15", "2025-03-01", "2025-03-29")
# HCP ids (10 digits), peer groups: A and B share PG1 and health system HS1; C is alone; D never touched.
A, B, C, D = "SYN00000001", "SYN00000002", "SYN00000003", "SYN00000004"


def hand_made_tables():
    hcps = pd.DataFrame(
        {
            "hcp_id": [A, B, C, D],
            "first_name": ["Ada", "Ben", "Cleo", "Dan"],
            "last_name": ["Moss", "Ortiz", "Park", "Quinn"],
            "credential": ["MD", "DO", "MD", "MD"],
            "specialty": ["cardiology", "cardiology", "pediatrics", "endocrinology"],
            "taxonomy_code": ["207RC0000X", "207RC0000X", "208000000X", "207RE0101X"],
            "state": ["TX", "TX", "OH", "CA"],
            "city": ["Austin", "Austin", "Akron", "Davis"],
            "zip": ["73301", "73301", "44301", "95616"],
            "region": ["South", "South", "Midwest", "West"],
            "practice_setting": ["hospital", "group", "solo", "academic"],
            "years_in_practice": [10, 20, 5, 30],
            "age": [40, 50, 35, 60],
            "prescribing_decile": [5, 6, 2, 9],
            "digital_affinity": [0.5, 0.2, 0.9, 0.4],
            "peer_group": ["PG1", "PG1", "PG2", "PG3"],
            "health_system": ["HS1", "HS1", "HS2", "HS3"],
            "opted_out": [False, False, False, True],
        }
    )
    content = pd.DataFrame(
        {
            "content_id": ["11", "12", "13", "14", "15"],
            "pmid": ["11", "12", "13", "14", "15"],
            "title": ["Heart part one", "Heart part two", "Lipids review", "Asthma in children", "Vaccines update"],
            "therapeutic_area": ["cardiovascular", "cardiovascular", "cardiovascular", "respiratory", "vaccination"],
            "content_type": ["webinar_deck"] * 5,
            "release_date": pd.to_datetime(["2024-12-01"] * 5),
            "approved_specialties": ["cardiology"] * 3 + ["pediatrics"] * 2,
            "series_id": pd.array(["S1", "S1", None, None, None], dtype="string"),
            "series_part": pd.array([1, 2, None, None, None], dtype="Int64"),
        }
    )
    rows = [  # hcp, content, channel, day, engaged
        (A, "11", "email", "2025-01-10", True),
        (A, "13", "email", "2025-01-20", False),
        (A, "13", "rep_visit", "2025-02-01", True),
        (B, "13", "webinar", "2025-01-15", True),
        (B, "12", "email", "2025-01-16", True),
        (C, "14", "webinar", "2025-01-05", True),
        (C, "11", "email", "2025-01-06", False),
        (A, "12", "email", "2025-03-05", True),
        (C, "15", "webinar", "2025-03-10", False),
    ]
    interactions = pd.DataFrame(rows, columns=["hcp_id", "content_id", "channel", "exposed_at", "engaged"])
    interactions["exposed_at"] = pd.to_datetime(interactions["exposed_at"])
    recs = []
    for model, lists in {
        "m1": {
            A: [("12", "email"), ("14", "webinar"), ("15", "rep_visit")],
            C: [("12", "webinar"), ("11", "email"), ("13", "email")],
        },
        "m2": {A: [("15", "email"), ("12", "rep_visit")], C: [("13", "webinar")]},
    }.items():
        for hcp, items in lists.items():
            for rank, (content_id, channel) in enumerate(items, 1):
                recs.append((model, hcp, rank, content_id, channel, 1.0 / rank))
    recommendations = pd.DataFrame(recs, columns=["model", "hcp_id", "rank", "content_id", "channel", "score"])
    doc_topics = pd.DataFrame(
        {
            "pmid": ["11", "12", "13", "14", "15"],
            "topic_0": [0.9, 0.8, 0.7, 0.1, 0.05],
            "topic_1": [0.1, 0.2, 0.3, 0.9, 0.95],
        }
    )
    topics = pd.DataFrame({"topic": [0, 1], "label": ["heart / lipid", "child / vaccine"]})
    topic_terms = pd.DataFrame(
        {
            "topic": [0, 0, 1, 1],
            "rank": [1, 2, 1, 2],
            "term": ["heart", "lipid", "child", "vaccine"],
            "weight": [0.1, 0.05, 0.2, 0.1],
        }
    )
    plan_actions = pd.DataFrame(
        {
            "hcp_id": [A, A],
            "content_id": ["14", "12"],
            "channel": ["webinar", "email"],
            "suggested_date": ["2025-03-04", "2025-03-03"],
            "time_window": ["10:00-12:00", "08:00-10:00"],
            "priority_score": [0.4, 0.5],
            "reasons": ["model estimates a 40% chance of engagement via webinar", "prefers email | last touch"],
            "model": ["m1", "m1"],
        }
    )
    unplanned = pd.DataFrame(
        {
            "hcp_id": [C, D],
            "reason_code": ["capacity_exhausted", "opted_out"],
            "reason": ["capacity used up by higher-priority actions: channel capacity email in all (1)", "opted out"],
        }
    )
    week = pd.DataFrame(  # the plan candidates of m1: the best few per HCP and channel
        {
            "hcp_id": [A, A, A, C],
            "content_id": ["15", "12", "14", "11"],
            "channel": ["email", "email", "webinar", "email"],
            "probability": [0.3, 0.5, 0.4, 0.2],
        }
    )
    return dict(
        hcps=hcps,
        content=content,
        interactions=interactions,
        recommendations=recommendations,
        doc_topics=doc_topics,
        topics=topics,
        topic_terms=topic_terms,
        plan_actions=plan_actions,
        unplanned=unplanned,
        week_candidates={"m1": week},
    )


@pytest.fixture
def data():
    return explore.from_tables(**{**hand_made_tables(), "split": SPLIT}, default_model="m1")


# --- reasons come from the project's one reasons engine (hcp_lib.reasons) -------------------


def test_reasons_are_the_engines_sentences_in_reason_code_order(data):
    # A engaged with part 1 of S1 (11) on 2025-01-10 and with 13 (topic 0) on 2025-02-01, inside the
    # 30-day window; B (same health system) engaged with 12; A's emails: 1 engaged of 2, its best channel.
    # A's own engagement with 12 (test window) counts nowhere.
    assert explore.reasons(data, A, "12", "email") == [
        "part 2 of series S1; engaged with part 1 on 2025-01-10",
        "engaged with 1 item on topic 'heart / lipid' in the last 30 days (last on 2025-02-01)",
        "1 peer in the same health system (HS1) engaged with this item",
        "prefers email: engaged on 1 of 2 touches, the best rate of the HCP's channels",
    ]
    # C ignored part 1, nobody in its peer group or system engaged with 12; its last touch (an email) was ignored
    assert explore.reasons(data, C, "12", "webinar") == ["last email on 2025-01-06 not engaged; switching channel"]
    assert explore.reasons(data, A, "15", "rep_visit") == ["engaged with the last rep visit on 2025-02-01"]
    # no rule fires: an empty list, and D (never touched) is a cold start with nothing to say
    assert explore.reasons(data, C, "11", "email") == []
    assert explore.reasons(data, D, "12", "email") == []


def test_reasons_match_the_engine_called_directly_and_never_give_a_model_estimate(data):
    rows = explore.recommend(data, A, "m1", top_n=10)
    frame = rows[["hcp_id", "content_id", "channel"]].assign(key=np.arange(len(rows)))
    table = reasons.reason_table(frame, data.evidence(), key="key")
    assert list(rows["reasons"]) == reasons.reason_texts(table, frame["key"], key="key")
    assert "model_estimate" not in set(table["reason_code"])
    assert list(rows["reasons"]) == [
        explore.reasons(data, A, c, ch) for c, ch in zip(rows["content_id"], rows["channel"])
    ]


def test_reasons_without_topic_model_have_no_topic_reason():
    tables = hand_made_tables()
    data = explore.from_tables(
        **{k: v for k, v in tables.items() if k not in ("doc_topics", "topics", "topic_terms")}, split=SPLIT
    )
    assert explore.reasons(data, A, "12", "email") == [
        "part 2 of series S1; engaged with part 1 on 2025-01-10",
        "1 peer in the same health system (HS1) engaged with this item",
        "prefers email: engaged on 1 of 2 touches, the best rate of the HCP's channels",
    ]
    assert "no topic model" in explore.topic_view_html(data, 0)


def test_view_lists_the_reasons_and_static_views_call_the_engine_once(data, monkeypatch):
    view = explore.hcp_view_html(data, A, "m1")
    assert "<li>part 2 of series S1; engaged with part 1 on 2025-01-10</li>" in view
    assert "<li>prefers email: engaged on 1 of 2 touches, the best rate of the HCP&#x27;s channels</li>" in view
    fresh = explore.from_tables(**{**hand_made_tables(), "split": SPLIT}, default_model="m1")
    calls = []
    engine = reasons.reason_table
    monkeypatch.setattr(reasons, "reason_table", lambda *a, **k: calls.append(len(a[0])) or engine(*a, **k))
    bundle = explore.browser_bundle(fresh, "m1", hcp_ids=[A, C])
    assert calls == [6]  # both HCPs' three rows, in one call
    c_reasons = [bundle["sentences"][s] for rec in bundle["recs"][1] for s in rec[4]]
    assert bundle["hcps"][1][0] == C and any("switching channel" in s for s in c_reasons)


# --- recommendation lists and their filters -------------------------------------------------


def test_recommend_filters_channels_and_seen_content_and_reranks(data):
    full = explore.recommend(data, C, "m1", top_n=10)
    assert list(full["content_id"]) == ["12", "11", "13"]
    emails = explore.recommend(data, C, "m1", top_n=10, channels=["email"])
    assert list(emails["content_id"]) == ["11", "13"] and list(emails["shown_rank"]) == [1, 2]
    unseen = explore.recommend(data, C, "m1", top_n=10, exclude_seen=True)
    assert list(unseen["content_id"]) == ["12", "13"]  # C was shown 11 before the cut-off
    assert list(explore.recommend(data, C, "m1", top_n=1)["content_id"]) == ["12"]


def test_bad_input_is_a_message_in_the_view_not_a_traceback(data):
    assert "No HCP with id 'SYN99999999'" in explore.hcp_view_html(data, "SYN99999999", "m1")
    assert "No recommendations from model 'nope'" in explore.hcp_view_html(data, A, "nope")
    nothing = explore.hcp_view_html(data, A, "m2", channels=["conference_event"])
    assert "hcpx-message" in nothing and "passes the filters" in nothing
    assert "hcp-recommendations" not in nothing
    assert "No content item with id 'x'" in explore.content_view_html(data, "x")
    assert "No topic 7" in explore.topic_view_html(data, 7)
    with pytest.raises(explore.ExplorerError, match="Unknown channel 'fax'"):
        explore.recommend(data, A, "m1", channels=["fax"])


def test_empty_recommendation_table_is_reported(data):
    tables = hand_made_tables()
    tables["recommendations"] = tables["recommendations"].iloc[:0]
    empty = explore.from_tables(**tables, split=SPLIT)
    assert "recommendation table is empty" in explore.hcp_view_html(empty, A)
    assert explore.sample_hcps(empty, 5, 0) == []
    bundle = explore.browser_bundle(empty)
    assert len(bundle["hcps"]) == 4 and bundle["recs"] == [[], [], [], []] and bundle["meta"]["model"] is None
    live = explore.hcp_explorer(empty)
    assert "recommendation table is empty" in live.children[-1].value


def test_view_shows_profile_list_next_actions_and_timeline(data):
    view = explore.hcp_view_html(data, A, "m1")
    assert "Ada Moss, MD" in view and "data-hcp='SYN00000001'" in view
    assert "synthetic id SYN00000001" in view and "NPI" not in view
    assert view.index("Heart part two") < view.index("Asthma in children") < view.index("Vaccines update")
    # A engaged with 12 in the test window, and 12 is first in m1's list
    assert "1 touches, 1 engaged; 1 of the engaged items are in the list above." in view
    table = explore.timeline(data, A)
    assert table[["content_id", "channel", "engaged", "window"]].to_dict("list") == {
        "content_id": ["11", "13", "13", "12"],
        "channel": ["email", "email", "rep_visit", "email"],
        "engaged": [True, False, True, True],
        "window": ["before cut-off", "before cut-off", "before cut-off", "test"],
    }
    # the timeline: one dot per touch on a date axis (month ticks), the title on hover
    svg = view[view.index("<svg class='timeline'") :]
    assert svg.count("<circle") == 4 and svg.count("fill='#f58518'") == 3
    assert "2025-02-01 · Rep visit · engaged · Lipids review" in svg
    assert ">Feb 25</text>" in svg and ">Mar 25</text>" in svg and "test window" in svg  # the log starts 5 Jan
    assert "No touches in the test window." in explore.hcp_view_html(data, B, "m1")


def test_find_hcps_by_id_name_specialty_and_state(data):
    assert list(explore.find_hcps(data, "0000003")["hcp_id"]) == [C]
    assert list(explore.find_hcps(data, "ada moss")["hcp_id"]) == [A]
    assert list(explore.find_hcps(data, "Cardiovascular disease")["hcp_id"]) == [A, B]
    assert list(explore.find_hcps(data, "tx ortiz")["hcp_id"]) == [B]
    assert explore.find_hcps(data, "zz").empty
    assert explore.find_hcps(data, "", limit=2).attrs["n_matches"] == 4  # every match counted, two listed


def test_content_and_topic_summaries(data):
    summary = explore.content_summary(data, "13", "m1")
    assert (summary["exposures"], summary["engagements"], summary["hcps_engaged"]) == (3, 2, 2)
    by_channel = summary["by_channel"].set_index("channel")
    assert by_channel.loc["email", "rate"] == 0 and by_channel.loc["rep_visit", "rate"] == 1
    assert summary["recommended"].to_dict("list") == {"specialty": ["pediatrics"], "channel": ["email"], "hcps": [1]}
    topic = explore.topic_summary(data, 1, n_documents=2)
    assert list(topic["documents"]["content_id"]) == ["15", "14"] and topic["n_documents"] == 2
    assert list(topic["terms"]["term"]) == ["child", "vaccine"]


# --- widgets ------------------------------------------------------------------------------------


def _listing(view: str) -> str:
    """The ranked list of an HCP view (the view also names items in "this week" and the timeline)."""
    start = view.index("<table class='hcp-recommendations'") if "hcp-recommendations" in view else len(view)
    return view[start : view.index("</table>", start) if start < len(view) else start]


def test_live_hcp_explorer_recomputes_on_every_control(data):
    box = explore.hcp_explorer(data)
    assert "<h3>HCP explorer</h3>" in box.children[0].value
    search, matches = box.children[1].children
    shown = box.children[2]
    model, top_n = box.children[3].children
    channel_boxes = box.children[4].children[1:]
    exclude_seen, view = box.children[5], box.children[6]
    # the first HCP shown can be contacted; the opted-out one is listed last and says so
    opted_out = data.hcps.index[data.hcps["opted_out"]][0]
    assert matches.value != opted_out and matches.options[-1][1] == opted_out
    assert matches.options[-1][0].endswith("opted out")
    assert "4 of 4 matching HCPs listed (of 4 in the run)" in shown.value
    search.value = "park"
    assert "1 of 1 matching HCPs" in shown.value
    assert matches.value == C and "Cleo Park" in view.value and "Heart part two" in view.value
    top_n.value = 1
    assert "Heart part one" not in _listing(view.value)
    top_n.value = 3
    exclude_seen.value = True
    assert "Heart part one" not in _listing(view.value) and "Lipids review" in _listing(view.value)
    model.value = "m2"
    assert "Heart part two" not in _listing(view.value) and "Lipids review" in _listing(view.value)
    channel_boxes[1].value = False  # webinar off: m2's only item for C goes
    assert "passes the filters" in view.value
    search.value = "nobody-here"
    assert matches.value is None and "No HCP matches 'nobody-here'" in view.value


def test_live_content_and_topic_explorers(data):
    box = explore.content_explorer(data)
    search, items = box.children[1].children
    search.value = "asthma"
    assert items.value == "14" and "Asthma in children" in box.children[-1].value
    search.value = "no such title"
    assert "No content item matches" in box.children[-1].value
    topics = explore.topic_explorer(data)
    picker, view = topics.children[1:]
    picker.value = 1
    assert "child / vaccine" in view.value


def test_static_explorer_links_dropdown_index_to_stack_in_the_browser(data):
    import ipywidgets as w
    from ipywidgets.widgets.widget_link import Link

    box = explore.static_content_explorer(data, ["12", "14"], "m1")
    assert "<h3>Content explorer</h3>" in box.children[0].value
    picker, stack = box.children[1], box.children[2]
    assert isinstance(stack, w.Stack) and len(stack.children) == 2
    assert "Heart part two" in stack.children[0].value and "Asthma in children" in stack.children[1].value
    assert picker.options[0] == "Heart part two · 12"  # the full title, never cut
    links = [
        m
        for m in w.Widget.widgets.values()
        if isinstance(m, Link) and m.source == (picker, "index") and m.target == (stack, "selected_index")
    ]
    # jslink runs in the browser only (no kernel round trip): tests/test_browser.py drives it
    assert links, "the Dropdown's index must be jslink-ed to the Stack's selected_index"


# --- this week: the channel story and the week's plan --------------------------------------


def test_week_options_are_the_best_deliverable_action_per_channel(data):
    week = explore.week_options(data, A, "m1")
    assert week[["channel", "content_id", "probability"]].to_dict("list") == {
        "channel": ["email", "webinar"],
        "content_id": ["12", "14"],
        "probability": [0.5, 0.4],
    }
    assert explore.week_options(data, B, "m1").empty  # no candidate
    assert explore.week_options(data, A, "m2").empty  # no candidates of m2


def test_planned_actions_and_why_an_hcp_got_none(data):
    actions = explore.planned_actions(data, A)
    assert list(actions["suggested_date"]) == ["2025-03-03", "2025-03-04"]  # by date
    assert actions["reasons"].iloc[0] == ["prefers email", "last touch"]
    assert explore.unplanned_reason(data, A) is None
    assert "capacity is used up" in explore.unplanned_reason(data, C)
    assert explore.unplanned_reason(data, D) == "opted out of promotional contact"
    assert explore.plan_model(data) == "m1"


def test_channel_story_tells_best_week_and_plan(data):
    story = explore.channel_story(data, A, "m1")
    assert story == [
        "Best with no constraint (m1): \u201cHeart part two\u201d by email, 1 (score, not a probability).",
        "Best this week, among the actions that can be delivered: \u201cHeart part two\u201d by email, "
        "0.5 (score, not a probability).",
        "The week's plan (m1): \u201cHeart part two\u201d by email on Mon 03 Mar, 08:00-10:00; "
        "\u201cAsthma in children\u201d by webinar on Tue 04 Mar, 10:00-12:00.",
    ]
    assert explore.channel_story(data, C, "m1")[-1].startswith("The week's plan gives this HCP nothing: every action")
    listed = explore.recommend(data, C, "m1")
    assert listed["week_channel"].isna().tolist() == [True, False, True] and listed["week_channel"].iloc[1] == "email"
    assert listed["week_probability"].iloc[1] == 0.2
    assert "<td class='off'>not an option</td>" in _listing(explore.hcp_view_html(data, C, "m1"))
    assert "week_channel" not in explore.recommend(data, C, "m2")  # m2 has no plan candidates
    view = explore.hcp_view_html(data, A, "m1")
    assert view.index("This week") < view.index("class='week-options'") < view.index("class='plan-actions'")
    assert view.index("class='plan-actions'") < view.index("class='hcp-recommendations'")
    no_plan = explore.from_tables(
        **{**hand_made_tables(), "split": SPLIT, "plan_actions": None, "unplanned": None, "week_candidates": None}
    )
    assert explore.channel_story(no_plan, A, "m1")[-1] == "This run has no week's plan (notebook 07 has not run)."
    assert "week-options" not in explore.hcp_view_html(no_plan, A, "m1")


def test_scores_are_probabilities_only_for_engagement_models():
    assert explore.score_text("hybrid", 0.853) == "85%"
    assert explore.score_text("tabular", 0.004) == "0%"
    assert explore.score_text("popularity", 42.0) == "42 (score, not a probability)"
    assert explore.is_probability_model("oracle") and not explore.is_probability_model("ease")


def test_channel_summary_and_list_concentration(data):
    summary = explore.channel_summary(data, "m1")
    assert summary["best"].to_dict() == {"email": 0.5, "webinar": 0.5}  # A's first is email, C's webinar
    assert summary["week"].to_dict() == {"email": 1.0}  # A's best this week is email 12, C's email 11
    assert summary["plan"].to_dict() == {"email": 1, "webinar": 1}
    assert (summary["hcps"], summary["planned_hcps"]) == (2, 1)
    lists = explore.list_concentration(data, "m1", k=2)
    assert (lists["hcps"], lists["distinct"], lists["coverage"]) == (2, 3, pytest.approx(3 / 5))
    assert list(lists["top"]["content_id"][:1]) == ["12"] and lists["top"]["share"].iloc[0] == 1.0


def _decoded(page: str) -> dict:
    import base64
    import gzip
    import json
    import re

    payload = re.search(r"<script type='application/octet-stream' class='payload'>([^<]+)</script>", page)
    return json.loads(gzip.decompress(base64.b64decode(payload.group(1))))


def test_static_browser_embeds_every_hcp_compressed(data):
    page = explore.static_hcp_browser(data, "m1", top_n=2)
    assert "<h3>HCP explorer</h3>" in page and explore.BROWSER_JS in page
    assert "class='q'" in page and "class='f-spec'" in page and "class='f-state'" in page
    bundle = _decoded(page)
    assert bundle == json_round_trip(explore.browser_bundle(data, "m1", top_n=2))
    # contactable HCPs first, then by last name; the opted-out D last
    assert [h[0] for h in bundle["hcps"]] == [A, B, C, D] and bundle["hcps"][3][12] == 1
    item = {row[0]: i for i, row in enumerate(bundle["items"])}
    a_recs = bundle["recs"][0]
    assert [r[0] for r in a_recs] == [item["12"], item["14"]]  # top 2 of m1 for A
    assert a_recs[0][1] == 0 and a_recs[0][3] is None  # email; no true probability in this table
    assert [r[5] for r in a_recs] == [[0, 0.5], [1, 0.4]]  # both are options of the plan this week
    assert [r[5] for r in bundle["recs"][2]] == [None, [0, 0.2]]  # C: only item 11, by email
    assert bundle["week"][0] == [[0, item["12"], 0.5], [1, item["14"], 0.4]]
    assert [a[0] for a in bundle["plan"][0]] == ["2025-03-03", "2025-03-04"]
    assert bundle["story"][0] == explore.channel_story(data, A, "m1")
    # touches: day after the log's first day, item, channel, engaged
    assert bundle["meta"]["start"] == "2025-01-05" and bundle["touches"][2][0] == [0.0, item["14"], 1, 1]
    assert len(bundle["touches"][0]) == 4 and bundle["touches"][3] == []
    sample = explore.browser_bundle(data, "m1", hcp_ids=[C])
    assert [h[0] for h in sample["hcps"]] == [C] and sample["meta"]["n_run"] == 4


def json_round_trip(value):
    import json

    return json.loads(json.dumps(value))


def test_sample_is_seeded_and_prefers_hcps_active_in_the_test_window(data):
    assert explore.sample_hcps(data, 1, 0, "m1") == [A]  # A engaged in the test window, C did not
    assert sorted(explore.sample_hcps(data, 5, 3, "m1")) == [A, C]
    assert explore.sample_hcps(data, 2, 1, "m1") == explore.sample_hcps(data, 2, 1, "m1")
    assert explore.most_recommended(data, 1, "m1") == ["12"]
    assert explore.resolve_model(data, "auto") == "m1"
    with pytest.raises(explore.ExplorerError, match="models in this run: m1, m2"):
        explore.resolve_model(data, "hybrid")


# --- loading from a run folder --------------------------------------------------------------


def write_run(root):
    run = RunDir(root)
    tables = hand_made_tables()
    io.write_parquet(tables["hcps"], run.world / "hcp_master.parquet")
    io.write_parquet(tables["content"], run.world / "campaigns_with_content.parquet")
    io.write_parquet(tables["interactions"], run.world / "hcp_interaction_data.parquet")
    io.write_json(SPLIT.to_dict(), run.cf / "split.json")
    io.write_parquet(tables["doc_topics"], run.topics / "doc_topics.parquet")
    io.write_parquet(tables["recommendations"], run.evaluation / "recommendations.parquet")
    io.write_json({"best_baseline": "m2"}, run.evaluation / "metrics.json")
    return run


def test_load_reads_a_run_folder_and_names_missing_files(tmp_path):
    run = write_run(tmp_path)
    data = explore.load(tmp_path)
    assert data.models == ["m2", "m1"] and data.cutoff == CUTOFF
    assert data.topics.loc[1, "label"] == "topic 1"  # labels default when topics.parquet is absent
    (run.evaluation / "recommendations.parquet").unlink()
    with pytest.raises(explore.ExplorerError, match=r"recommendations.parquet: not found; run notebook 06_evaluation"):
        explore.load(tmp_path)


def test_missing_column_is_named(tmp_path):
    tables = hand_made_tables()
    tables["recommendations"] = tables["recommendations"].drop(columns="channel")
    with pytest.raises(explore.ExplorerError, match="recommendations: missing column 'channel'"):
        explore.from_tables(**tables, split=SPLIT)
    tables = hand_made_tables()
    tables["recommendations"].loc[0, "channel"] = "fax"
    with pytest.raises(explore.ExplorerError, match="column 'channel' has value 'fax'"):
        explore.from_tables(**tables, split=SPLIT)


@pytest.mark.slow
def test_notebook_08_holds_every_hcp_and_the_linked_widget_state(tiny_run):
    nb = nbformat.read(tiny_run / "08_explorer.ipynb", as_version=4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = [m["model_name"] for m in state.values()]
    assert models.count("StackModel") == 2 and models.count("LinkModel") == 2  # content and topic explorers
    data = explore.load(tiny_run)
    stacks = [m for m in state.values() if m["model_name"] == "StackModel"]
    n_views = sorted(len(m["state"]["children"]) for m in stacks)
    assert len(data.doc_topics.columns) in n_views
    assert PARAMS["explorer_hcps"].default_for("tiny") == 0
    pages = [
        o["data"]["text/html"]
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if "hcp-browser" in o.get("data", {}).get("text/html", "")
    ]
    assert len(pages) == 1, "one HCP explorer in the page"
    bundle = _decoded(pages[0])
    assert sorted(h[0] for h in bundle["hcps"]) == sorted(data.hcps["hcp_id"])  # every HCP of the run
    model = explore.resolve_model(data, "auto")
    assert bundle["meta"]["model"] == model and bundle["meta"]["plan_model"] == explore.plan_model(data)
    plan = io.read_parquet(RunDir(tiny_run).plan / "plan.parquet")
    assert sum(len(p) for p in bundle["plan"]) == len(plan)
    assert np.all([("Traceback" not in o.get("text", "")) for cell in nb.cells for o in cell.get("outputs", [])])
