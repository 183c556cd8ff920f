"""Hand-made world tables (contract columns) for the split, recommender and CF tests.

Six content items, two specialties, interactions in January–March 2024. Each test builds
the engagements it needs with :func:`interactions`, so the right answer is known by
construction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hcp_lib.split import TemporalSplit

SPLIT = TemporalSplit(
    pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-15"), pd.Timestamp("2024-04-01")
)
ITEMS = ["1001", "1002", "1003", "1004", "1005", "1006"]


def catalogue() -> pd.DataFrame:
    """Items 1001..1006; 1006 is released inside the test window; 1005 is approved for
    endocrinology only, the others for both specialties."""
    return pd.DataFrame(
        {
            "content_id": pd.array(ITEMS, dtype="string"),
            "therapeutic_area": [
                "cardiovascular",
                "cardiovascular",
                "diabetes",
                "diabetes",
                "thyroid",
                "cardiovascular",
            ],
            "release_date": pd.to_datetime(["2023-12-01"] * 5 + ["2024-03-20"]),
            "approved_specialties": ["cardiology; endocrinology"] * 4 + ["endocrinology", "cardiology; endocrinology"],
        }
    )


def hcps(n_cardiology: int = 4, n_endocrinology: int = 4) -> pd.DataFrame:
    """HCPs h00.. (cardiology first, then endocrinology)."""
    specialty = ["cardiology"] * n_cardiology + ["endocrinology"] * n_endocrinology
    return pd.DataFrame(
        {"hcp_id": pd.array([f"h{i:02d}" for i in range(len(specialty))], dtype="string"), "specialty": specialty}
    )


def interactions(rows: list[tuple]) -> pd.DataFrame:
    """Interaction rows from ``(hcp_id, content_id, date, engaged[, channel])`` tuples,
    with every other contract column filled in."""
    records = [(r[0], r[1], pd.Timestamp(r[2]), bool(r[3]), r[4] if len(r) > 4 else "email") for r in rows]
    frame = pd.DataFrame(records, columns=["hcp_id", "content_id", "exposed_at", "engaged", "channel"])
    n = len(frame)
    frame["hcp_id"] = frame["hcp_id"].astype("string")
    frame["content_id"] = frame["content_id"].astype("string")
    frame["channel"] = frame["channel"].astype("string")
    frame["exposure_id"] = np.arange(n, dtype=np.int64)
    frame["campaign_id"] = pd.array([f"c{i}" for i in range(n)], dtype="string")
    frame["propensity"] = 0.5
    frame["opened"] = frame["engaged"]
    frame["clicked"] = frame["engaged"]
    frame["dwell_seconds"] = np.where(frame["engaged"], 30.0, 0.0)
    frame["converted"] = False
    frame["engagement_score"] = np.where(frame["engaged"], 0.8, 0.0)
    frame["true_engagement_prob"] = 0.3
    return frame


def block_world(train_day: str = "2024-01-10") -> pd.DataFrame:
    """Two taste blocks in the train window: cardiologists h00..h03 engage 1001+1002 (and
    h00..h02 also 1003), endocrinologists h04..h07 engage 1004+1005; non-engaged
    exposures of 1003 to the endocrinologists. Items 1006 has no history."""
    rows = []
    for h in range(4):
        rows += [(f"h{h:02d}", "1001", train_day, True, "email"), (f"h{h:02d}", "1002", train_day, True, "webinar")]
    for h in range(3):
        rows.append((f"h{h:02d}", "1003", "2024-02-01", True, "email"))
    for h in range(4, 8):
        rows += [
            (f"h{h:02d}", "1004", train_day, True, "rep_visit"),
            (f"h{h:02d}", "1005", train_day, True, "rep_visit"),
            (f"h{h:02d}", "1003", train_day, False, "email"),
        ]
    return interactions(rows)
