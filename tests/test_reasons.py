"""Tests of hcp_lib.reasons, the one reasons engine (plan and explorers), on a small hand-made
history: each reason code fires, with its exact text and evidence, and does not fire where its
rule does not hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcp_lib import reasons

AS_OF = pd.Timestamp("2025-03-01")  # the interest window (30 days) starts on 2025-01-30
# health systems / peer groups: H1, H2 share HS1 and PG1; H3 is in PG1 only; H4 and H5 are alone
HCPS = pd.DataFrame(
    {
        "hcp_id": ["H1", "H2", "H3", "H4", "H5"],
        "health_system": ["HS1", "HS1", "HS2", "HS3", "HS4"],
        "peer_group": ["PG1", "PG1", "PG1", "PG2", "PG3"],
    }
)
CATALOGUE = pd.DataFrame(
    {
        "content_id": ["C1", "C2", "C3", "C4", "C5", "C6", "C7"],
        "series_id": pd.array(["S1", "S1", "S1", None, None, None, None], dtype="string"),
        "series_part": pd.array([1, 2, 3, None, None, None, None], dtype="Int64"),
    }
)
# topic shares: C1-C3 mostly topic 0 ("heart"), C4-C6 mostly topic 1 ("lungs"), C7 has none
SHARES = pd.DataFrame(
    {"topic_0": [0.9, 0.8, 0.7, 0.2, 0.1, 0.3], "topic_1": [0.1, 0.2, 0.3, 0.8, 0.9, 0.7]},
    index=["C1", "C2", "C3", "C4", "C5", "C6"],
)
LABELS = ["heart", "lungs"]
HISTORY = pd.DataFrame(
    [  # hcp, content, channel, day, engaged
        ("H1", "C1", "email", "2025-01-10", True),
        ("H1", "C4", "email", "2025-02-10", True),
        ("H1", "C5", "webinar", "2025-02-20", True),
        ("H1", "C3", "webinar", "2025-02-22", False),
        ("H1", "C7", "rep_visit", "2025-02-25", False),
        ("H2", "C1", "webinar", "2025-01-05", False),
        ("H2", "C5", "webinar", "2025-01-20", True),
        ("H2", "C6", "email", "2025-02-01", True),
        ("H2", "C1", "email", "2025-03-02", True),  # after the cut-off: never evidence
        ("H3", "C2", "email", "2025-01-01", False),
        ("H3", "C2", "email", "2025-01-02", False),
        ("H4", "C4", "webinar", "2025-02-15", True),
    ],
    columns=["hcp_id", "content_id", "channel", "exposed_at", "engaged"],
).assign(exposed_at=lambda t: pd.to_datetime(t["exposed_at"]))


def evidence(with_topics: bool = True) -> reasons.Evidence:
    topic = reasons.dominant_topics(SHARES, CATALOGUE["content_id"]) if with_topics else None
    return reasons.make_evidence(HISTORY, CATALOGUE, HCPS, AS_OF, 30, topic, LABELS if with_topics else None)


def table(rows, probability: bool = False, with_topics: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["hcp_id", "content_id", "channel", "p"][: len(rows[0])])
    frame.insert(0, "action_id", [f"A{i}" for i in range(len(frame))])
    return reasons.reason_table(frame, evidence(with_topics), probability="p" if probability else None)


def texts(hcp: str, content: str, channel: str, **kwargs) -> dict[str, str]:
    found = table([(hcp, content, channel)], **kwargs)
    return dict(zip(found["reason_code"], found["reason"]))


def test_dominant_topic_and_evidence_before_the_cut_off_only():
    assert list(reasons.dominant_topics(SHARES, CATALOGUE["content_id"])) == [0, 0, 0, 1, 1, 1, -1]
    found = evidence()
    assert found.history["exposed_at"].max() < AS_OF and len(found.history) == len(HISTORY) - 1
    assert list(found.topic_of(["C6", "C7", "unknown"])) == [1, -1, -1]


def test_series_continuation():
    found = table([("H1", "C2", "email")])
    row = found[found["reason_code"] == "series_continuation"].iloc[0]
    assert row["reason"] == "part 2 of series S1; engaged with part 1 on 2025-01-10"
    assert (row["evidence_count"], row["evidence_date"], row["evidence_ids"]) == (1, pd.Timestamp("2025-01-10"), "C1")
    assert "series_continuation" not in texts("H1", "C3", "email")  # H1 did not engage with part 2
    assert "series_continuation" not in texts("H1", "C1", "email")  # part 1 continues nothing
    assert "series_continuation" not in texts("H3", "C3", "email")  # part 2 shown, never engaged
    assert "series_continuation" not in texts("H2", "C2", "email")  # engaged with part 1 only after the cut-off


def test_topic_interest():
    found = table([("H1", "C6", "email")])
    row = found[found["reason_code"] == "topic_interest"].iloc[0]
    assert row["reason"] == "engaged with 2 items on topic 'lungs' in the last 30 days (last on 2025-02-20)"
    assert (row["evidence_count"], row["evidence_date"], row["evidence_ids"]) == (
        2,
        pd.Timestamp("2025-02-20"),
        "C4;C5",
    )
    assert (
        texts("H4", "C6", "webinar")["topic_interest"]
        == "engaged with 1 item on topic 'lungs' in the last 30 days (last on 2025-02-15)"
    )
    assert "topic_interest" not in texts("H1", "C2", "email")  # H1's "heart" engagement is older than 30 days
    assert "topic_interest" not in texts("H1", "C7", "email")  # C7 has no topic
    assert "topic_interest" not in texts("H1", "C6", "email", with_topics=False)  # no topic model


def test_peer_engagement_health_system_first_then_peer_group():
    found = table([("H1", "C6", "email")])
    row = found[found["reason_code"] == "peer_engagement"].iloc[0]
    assert row["reason"] == "1 peer in the same health system (HS1) engaged with this item"
    assert (row["evidence_count"], row["evidence_ids"]) == (1, "H2")
    assert (
        texts("H3", "C6", "webinar")["peer_engagement"] == "1 peer in the same peer group (PG1) engaged with this item"
    )
    found = table([("H3", "C5", "email")])
    row = found[found["reason_code"] == "peer_engagement"].iloc[0]
    assert row["reason"] == "2 peers in the same peer group (PG1) engaged with this item"
    assert (row["evidence_count"], row["evidence_date"], row["evidence_ids"]) == (
        2,
        pd.Timestamp("2025-02-20"),
        "H1;H2",
    )
    assert (found["reason_code"] == "peer_engagement").sum() == 1  # one peer reason per suggestion
    assert "peer_engagement" not in texts("H2", "C6", "email")  # one's own engagement is no peer's
    assert "peer_engagement" not in texts("H4", "C6", "webinar")  # nobody in HS3 or PG2 engaged
    assert "peer_engagement" not in texts("H3", "C2", "email")  # shown to peers, never engaged


def test_channel_preference():
    found = table([("H1", "C6", "email")])
    row = found[found["reason_code"] == "channel_preference"].iloc[0]
    assert row["reason"] == "prefers email: engaged on 2 of 2 touches, the best rate of the HCP's channels"
    assert (row["evidence_count"], row["evidence_date"], row["evidence_ids"]) == (
        2,
        pd.Timestamp("2025-02-10"),
        "email",
    )
    assert (
        texts("H2", "C2", "webinar")["channel_preference"]
        == "prefers webinar: engaged on 1 of 2 touches, the best rate of the HCP's channels"
    )
    assert "channel_preference" not in texts("H1", "C6", "webinar")  # webinar 1 of 2 is not H1's best
    assert "channel_preference" not in texts("H4", "C6", "webinar")  # a single touch is no preference
    assert "channel_preference" not in texts("H3", "C6", "email")  # never engaged: no best rate


def test_last_touch():
    found = table([("H1", "C6", "email")])
    row = found[found["reason_code"] == "last_touch"].iloc[0]
    assert row["reason"] == "last rep visit on 2025-02-25 not engaged; switching channel"
    assert (row["evidence_count"], row["evidence_date"], row["evidence_ids"]) == (1, pd.Timestamp("2025-02-25"), "C7")
    # H2's last touch before the cut-off (its touch of 2025-03-02 is later) was an engaged email
    assert texts("H2", "C2", "email")["last_touch"] == "engaged with the last email on 2025-02-01"
    assert "last_touch" not in texts("H2", "C2", "webinar")  # engaged elsewhere: no reason to switch
    assert "last_touch" not in texts("H1", "C6", "rep_visit")  # ignored on this very channel
    assert texts("H5", "C6", "email") == {}  # no history, no peer: nothing fires


def test_model_estimate_only_with_a_probability():
    assert texts("H5", "C6", "email", probability=False) == {}
    found = table([("H5", "C6", "email", 0.42), ("H1", "C6", "rep_visit", 0.071)], probability=True)
    estimates = found[found["reason_code"] == "model_estimate"]
    assert list(estimates["reason"]) == [
        "model estimates a 42% chance of engagement via email",
        "model estimates a 7% chance of engagement via rep visit",
    ]
    assert (estimates["evidence_count"] == 0).all() and estimates["evidence_date"].isna().all()


def test_rows_are_ordered_by_key_then_reason_code_and_keys_can_be_any_column():
    found = table([("H1", "C6", "email", 0.5), ("H1", "C2", "email", 0.4)], probability=True)
    assert list(found.columns) == ["action_id", *reasons.REASON_COLUMNS]
    assert list(found.loc[found["action_id"] == "A0", "reason_code"]) == [
        "topic_interest",
        "peer_engagement",
        "channel_preference",
        "last_touch",
        "model_estimate",
    ]
    assert list(found.loc[found["action_id"] == "A1", "reason_code"]) == [
        "series_continuation",
        "channel_preference",
        "last_touch",
        "model_estimate",
    ]
    rows = pd.DataFrame({"row": [7, 3], "hcp_id": ["H5", "H2"], "content_id": ["C6", "C2"], "channel": ["email"] * 2})
    keyed = reasons.reason_table(rows, evidence(), key="row")
    assert reasons.reason_texts(keyed, [7, 3], key="row") == [[], ["engaged with the last email on 2025-02-01"]]


def test_empty_suggestions_and_bad_input():
    empty = reasons.reason_table(
        pd.DataFrame({"action_id": [], "hcp_id": [], "content_id": [], "channel": []}), evidence()
    )
    assert empty.empty and list(empty.columns) == ["action_id", *reasons.REASON_COLUMNS]
    with pytest.raises(reasons.ReasonsError, match="suggestions: missing column 'channel'"):
        reasons.reason_table(pd.DataFrame({"action_id": ["A"], "hcp_id": ["H1"], "content_id": ["C1"]}), evidence())
    with pytest.raises(reasons.ReasonsError, match="must be unique"):
        reasons.reason_table(
            pd.DataFrame(
                {
                    "action_id": ["A", "A"],
                    "hcp_id": ["H1", "H2"],
                    "content_id": ["C1", "C1"],
                    "channel": ["email", "email"],
                }
            ),
            evidence(),
        )
    with pytest.raises(reasons.ReasonsError, match="history: missing column 'engaged'"):
        reasons.make_evidence(HISTORY.drop(columns="engaged"), CATALOGUE, HCPS, AS_OF, 30)
    with pytest.raises(reasons.ReasonsError, match="item_topic has 2 entries for 7 catalogue items"):
        reasons.make_evidence(HISTORY, CATALOGUE, HCPS, AS_OF, 30, np.array([0, 1]), LABELS)
