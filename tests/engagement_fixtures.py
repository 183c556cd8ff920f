"""A small hand-made world for the engagement-model tests (features, tabular, hybrid).

40 HCPs of two specialties in four peer groups, 12 items with two topics. The true engagement
probability is known by construction: HCPs engage much more with items whose topic matches
their specialty, more on their favourite channel, less after several touches in a week, and
never twice with an item they engaged with. Items 10 and 11 are never exposed (cold items).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from hcp_lib.domain import CHANNELS
from hcp_lib.models.engagement import EngagementData
from hcp_lib.split import training_data

N_HCP, N_ITEM = 40, 12
START = pd.Timestamp("2024-01-01")
VALID_START = pd.Timestamp("2024-03-01")
CUTOFF = pd.Timestamp("2024-03-15")
END = pd.Timestamp("2024-04-01")
SPECIALTIES = ("cardiology", "endocrinology")


def hcp_id(i: int) -> str:
    return f"SYN{i:08d}"


def item_id(j: int) -> str:
    return f"{30000000 + j}"


def specialty_of(i: int) -> str:
    return SPECIALTIES[i % 2]


def topic_of(j: int) -> int:
    """Items 0, 2, 4, .. are cardiology topics (0), 1, 3, 5, .. endocrinology topics (1)."""
    return j % 2


def true_logit(i: int, j: int, channel: str, touches_last_week: int) -> float:
    match = 1.0 if topic_of(j) == SPECIALTIES.index(specialty_of(i)) else 0.0
    favourite = CHANNELS[i % 3]
    return -2.6 + 2.2 * match + 1.0 * (channel == favourite) - 0.5 * max(0, touches_last_week - 1)


def make_tables(seed: int = 0):
    """(hcps, patients, catalogue, doc_topics, interactions) of the world."""
    rng = np.random.default_rng(seed)
    hcps = pd.DataFrame(
        {
            "hcp_id": [hcp_id(i) for i in range(N_HCP)],
            "specialty": [specialty_of(i) for i in range(N_HCP)],
            "practice_setting": [("academic", "hospital", "group", "solo")[i % 4] for i in range(N_HCP)],
            "region": [("Northeast", "South")[i % 2] for i in range(N_HCP)],
            "prescribing_decile": rng.integers(1, 11, N_HCP),
            "digital_affinity": rng.random(N_HCP),
            "years_in_practice": rng.integers(1, 35, N_HCP),
            "age": rng.integers(30, 70, N_HCP),
            "peer_group": [f"PG{i % 4:03d}" for i in range(N_HCP)],
            "opted_out": False,
        }
    )
    patients = pd.DataFrame(
        {
            "hcp_id": [hcp_id(i) for i in range(N_HCP) for _ in range(3)],
            "primary_area": [
                ("cardiovascular" if specialty_of(i) == "cardiology" else "diabetes")
                for i in range(N_HCP)
                for _ in range(3)
            ],
            "conditions": [
                ("cardiovascular; diabetes" if specialty_of(i) == "cardiology" else "diabetes")
                for i in range(N_HCP)
                for _ in range(3)
            ],
        }
    )
    catalogue = pd.DataFrame(
        {
            "content_id": [item_id(j) for j in range(N_ITEM)],
            "therapeutic_area": ["cardiovascular" if topic_of(j) == 0 else "diabetes" for j in range(N_ITEM)],
            "release_date": [START - pd.Timedelta(days=30)] * (N_ITEM - 1) + [CUTOFF + pd.Timedelta(days=3)],
            "approved_specialties": ["cardiology; endocrinology"] * N_ITEM,
            "content_type": ["clinical_summary", "case_study", "guideline_update"] * (N_ITEM // 3),
            "has_abstract": True,
            "series_id": pd.array([None] * (N_ITEM - 2) + ["S1", "S1"], dtype="string"),
            "series_part": pd.array([None] * (N_ITEM - 2) + [1, 2], dtype="Int64"),
        }
    )
    topics = np.array([[0.9, 0.1] if topic_of(j) == 0 else [0.1, 0.9] for j in range(N_ITEM)])
    doc_topics = pd.DataFrame(topics, columns=["topic_0", "topic_1"])
    doc_topics.insert(0, "pmid", [item_id(j) for j in range(N_ITEM)])
    rows = []
    minutes = int((END - START) / pd.Timedelta(minutes=1))
    for i in range(N_HCP):
        times = np.sort(rng.integers(0, minutes, size=int(rng.integers(18, 30))))
        engaged_items, touched = set(), []
        for minute in times:
            j = int(rng.integers(0, N_ITEM - 2))
            channel = CHANNELS[int(rng.integers(0, len(CHANNELS)))]
            last_week = sum(1 for m in touched if minute - m < 7 * 1440)
            p = 0.0 if j in engaged_items else float(expit(true_logit(i, j, channel, last_week)))
            engaged = bool(rng.random() < p)
            if engaged:
                engaged_items.add(j)
            touched.append(minute)
            rows.append(
                (
                    hcp_id(i),
                    item_id(j),
                    channel,
                    START + pd.Timedelta(minutes=int(minute)),
                    0.5,
                    engaged,
                    float(engaged) * 0.5,
                )
            )
    interactions = pd.DataFrame(
        rows, columns=["hcp_id", "content_id", "channel", "exposed_at", "propensity", "engaged", "engagement_score"]
    )
    interactions = interactions.sort_values("exposed_at", kind="stable").reset_index(drop=True)
    interactions.insert(0, "exposure_id", np.arange(1, len(interactions) + 1, dtype=np.int64))
    return hcps, patients, catalogue, doc_topics, interactions


def engagement_data(tables) -> EngagementData:
    hcps, patients, catalogue, doc_topics, _ = tables
    return EngagementData(hcps, catalogue, patients, doc_topics)


def train_before(tables, cutoff=CUTOFF):
    hcps, _, catalogue, _, interactions = tables
    return training_data(interactions, hcps[["hcp_id", "specialty"]], catalogue, cutoff)


class TinyALS:
    """A deterministic stand-in for hcp_lib.models.baselines.ALS: item factors = the topic vector plus
    co-engagement counts with the first two items."""

    def __new__(cls):
        from hcp_lib.models.base import Recommender

        class _Tiny(Recommender):
            name = "tiny_als"

            def _fit(self, train):
                matrix = self.engaged_matrix(train).toarray()
                self.hcp_factors_ = matrix[:, :2] + 0.1
                self.item_factors_ = matrix.T @ matrix[:, :2] + 0.1

        return _Tiny()
