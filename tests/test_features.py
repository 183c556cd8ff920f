"""The engagement models' shared inputs: point-in-time correctness, no label leak, errors."""

import numpy as np
import pandas as pd
import pytest

from hcp_lib.domain import CHANNELS
from hcp_lib.models import features as F
from hcp_lib.models.engagement import EngagementModel, exposure_queries
from tests.engagement_fixtures import (
    CUTOFF,
    N_ITEM,
    START,
    TinyALS,
    engagement_data,
    hcp_id,
    item_id,
    make_tables,
    train_before,
)


@pytest.fixture(scope="module")
def tables():
    return make_tables()


@pytest.fixture(scope="module")
def space(tables):
    hcps, patients, catalogue, doc_topics, _ = tables
    return F.FeatureSpace.from_tables(hcps, catalogue, START, patients, doc_topics)


def _log(rows):
    """Interactions from (hcp index, item index, channel, day offset, minute, engaged) tuples."""
    return pd.DataFrame(
        {
            "hcp_id": [hcp_id(h) for h, *_ in rows],
            "content_id": [item_id(c) for _, c, *_ in rows],
            "channel": [k for _, _, k, *_ in rows],
            "exposed_at": [START + pd.Timedelta(days=d, minutes=m) for *_, d, m, _ in rows],
            "engaged": [e for *_, e in rows],
        }
    )


def test_counts_read_only_exposures_strictly_before_the_instant(space):
    log = _log(
        [
            (0, 1, "email", 1, 0, True),
            (0, 2, "rep_visit", 5, 0, False),
            (0, 3, "email", 9, 0, True),
            (1, 1, "email", 2, 0, True),
        ]
    )
    history = F.History(log, space)
    t = space.minutes([START + pd.Timedelta(days=9)])  # the third exposure's instant: not yet history
    row = history.hcp_history(np.array([0]), t)[0]
    names = dict(zip(F.HCP_HISTORY, row))
    assert names["log_touches_7d"] == pytest.approx(np.log1p(1))  # day 5 only (day 1 is 8 days back)
    assert names["log_touches_14d"] == pytest.approx(np.log1p(2))
    assert names["exposure_depth"] == pytest.approx(2 / 12)
    assert names["engaged_depth"] == pytest.approx(1 / 4)
    assert names["engaged_rate"] == pytest.approx((1 + F.PRIOR_RATE * F.PRIOR_N) / (2 + F.PRIOR_N))
    assert names["log_days_since_touch"] == pytest.approx(np.log1p(4.0))
    channel = history.channel_history(np.array([0]), t)[0]
    email = dict(zip(F.CHANNEL_HISTORY, channel[CHANNELS.index("email")]))
    assert email["channel_recency"] == pytest.approx(np.exp(-8 / 7))
    unseen = dict(zip(F.CHANNEL_HISTORY, channel[CHANNELS.index("webinar")]))
    assert unseen["channel_exposure_depth"] == 0 and unseen["channel_recency"] < 1e-20


def test_later_exposures_cannot_change_the_inputs(space, tables):
    *_, interactions = tables
    queries = exposure_queries(space, interactions.iloc[:200])
    before = F.query_inputs(
        space, F.History(interactions.iloc[:200], space), queries.h, queries.c, queries.k, queries.t, 5
    )
    every = F.query_inputs(space, F.History(interactions, space), queries.h, queries.c, queries.k, queries.t, 5)
    for key in before:
        np.testing.assert_array_equal(before[key], every[key], err_msg=key)


def test_pair_flags_and_series_follow_up(space):
    log = _log([(0, 1, "email", 1, 0, False), (0, 2, "email", 2, 0, True), (0, 10, "email", 3, 0, True)])
    history = F.History(log, space)
    t = np.full(4, space.minutes([START + pd.Timedelta(days=10)])[0])
    flags = history.pair_flags(np.zeros(4, int), np.array([1, 2, 11, 5]), t)
    assert flags.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]


def test_decayed_memory_halves_every_half_life(space):
    log = _log([(0, 0, "email", 0, 0, True)])
    history = F.History(log, space)
    t = space.minutes([START + pd.Timedelta(days=14)])
    memory = history.memory(np.array([0]), t, "engaged", "topics", half_life=7.0)
    np.testing.assert_allclose(memory[0], 0.25 * space.topics[0], rtol=1e-9)
    np.testing.assert_allclose(history.memory(np.array([0]), t, "engaged", "topics")[0], space.topics[0], rtol=1e-9)
    # HCP 4 is in HCP 0's peer group (PG000): the peer memory sees HCP 0's engagement
    peers = history.memory(np.array([4, 1]), np.repeat(t, 2), "engaged", "topics", peers=True)
    np.testing.assert_allclose(peers[0], space.topics[0])
    assert (peers[1] == 0).all()


def test_snapshot_blocks_equal_the_per_query_inputs(space, tables):
    *_, interactions = tables
    history = F.History(interactions, space, CUTOFF)
    rows = np.array([0, 3, 7])
    snap = F.snapshot(space, history, rows, CUTOFF, sequence_length=4)
    h = np.repeat(rows, N_ITEM)
    c = np.tile(np.arange(N_ITEM), len(rows))
    queries = F.query_inputs(space, history, h, c, np.zeros_like(h), np.full(len(h), snap.minute), 4)
    np.testing.assert_allclose(snap.pair().reshape(-1, len(F.PAIR_FEATURES)), queries["pair"], rtol=1e-6)
    for key in ("hcp_history", "channel_history", "memory", "sequence_item", "sequence_numeric"):
        np.testing.assert_allclose(np.repeat(snap.hcp[key], N_ITEM, axis=0), queries[key], rtol=1e-6, err_msg=key)


def test_sequence_is_the_most_recent_exposures_oldest_first_and_padded(space):
    log = _log([(0, j, "email", j, 0, j % 2 == 0) for j in range(6)])
    history = F.History(log, space)
    t = space.minutes([START + pd.Timedelta(days=10)])
    seq = history.sequence(np.array([0, 1]), np.repeat(t, 2), 4)
    assert seq["sequence_item"][0].tolist() == [3, 4, 5, 6]  # items 2..5, +1
    assert seq["sequence_item"][1].tolist() == [0, 0, 0, 0] and (seq["sequence_numeric"][1] == 0).all()
    assert seq["sequence_numeric"][0, :, 0].tolist() == [1, 0, 1, 0]
    assert seq["sequence_numeric"][0, -1, 1] == pytest.approx(np.log1p(5.0))


def test_a_training_example_never_sees_its_own_outcome_through_cf(tables):
    """Flipping an example's outcome must not change its CF input: the factors it reads were
    fitted without its HCP's fold."""
    data = engagement_data(tables)
    *_, interactions = tables
    model = EngagementModel(data, TinyALS())
    train = train_before(tables)
    model.cutoff_, model.reference_ = CUTOFF, START
    model.hcp_ids_ = pd.Index(train.hcps["hcp_id"].astype(object))
    space = model._feature_space(train)
    # an engagement with item 0, which the stand-in's factors are built from, so the full fit sees it
    first_item = train.interactions["engaged"] & (train.interactions["content_id"] == item_id(0))
    engaged = train.interactions.index[first_item][0]
    flipped = train.interactions.copy()
    flipped.loc[engaged, "engaged"] = False
    other = model._feature_space(type(train)(flipped, train.hcps, train.catalogue, train.cutoff))
    h = space.hcp_ids.get_loc(str(train.interactions.loc[engaged, "hcp_id"]))
    fold = space.hcp_fold[h]
    np.testing.assert_array_equal(space.cf_items_oof[fold], other.cf_items_oof[fold])
    assert not np.array_equal(space.cf_items, other.cf_items), "the full-fit factors do see the outcome"


def test_depth_saturates_below_one():
    assert F.depth(np.array([0, 10, 1e6]), 10).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-4)
    assert (F.depth(np.arange(100), 3) < 1).all()


def test_bad_tables_are_refused_naming_the_column_and_value(tables):
    hcps, patients, catalogue, doc_topics, interactions = tables
    with pytest.raises(F.FeatureError, match="HCP table lacks column 'peer_group'"):
        F.FeatureSpace.from_tables(hcps.drop(columns="peer_group"), catalogue, START)
    with pytest.raises(F.FeatureError, match="column 'age' is missing or not finite for HCP 'SYN00000003'"):
        F.FeatureSpace.from_tables(
            hcps.assign(age=np.where(np.arange(len(hcps)) == 3, np.nan, hcps["age"])), catalogue, START
        )
    with pytest.raises(F.FeatureError, match="'therapeutic_area' has value 'astrology'"):
        F.FeatureSpace.from_tables(hcps, catalogue.assign(therapeutic_area="astrology"), START)
    with pytest.raises(F.FeatureError, match="no row for content id '30000011'"):
        F.FeatureSpace.from_tables(hcps, catalogue, START, doc_topics=doc_topics.iloc[:-1])
    space = F.FeatureSpace.from_tables(hcps, catalogue, START)
    with pytest.raises(F.FeatureError, match="'channel' has value 'fax'"):
        F.History(interactions.assign(channel="fax"), space)
    with pytest.raises(F.FeatureError, match="'hcp_id' has value 'SYN99999999', not in the HCP master"):
        F.History(interactions.assign(hcp_id="SYN99999999"), space)
