"""The shared recommender interface, the top-N helpers and the validation metrics."""

import numpy as np
import pandas as pd
import pytest

from hcp_lib import io, metrics
from hcp_lib.models.base import NotFittedError, UnknownIdError, exclusion_mask, recommend, top_n
from hcp_lib.models.baselines import GlobalPopularity
from hcp_lib.split import training_data
from tests.cf_fixtures import ITEMS, SPLIT, block_world, catalogue, hcps, interactions


@pytest.fixture
def train():
    return training_data(block_world(), hcps(), catalogue(), SPLIT.valid_start)


def test_scores_have_one_row_per_hcp_and_one_column_per_catalogue_item(train):
    model = GlobalPopularity().fit(train)
    assert model.content_ids_.tolist() == ITEMS
    assert model.score(["h03", "h00", "h03"]).shape == (3, 6)


def test_an_unknown_hcp_id_is_named(train):
    model = GlobalPopularity().fit(train)
    with pytest.raises(UnknownIdError, match=r"HCP id 'nobody' is unknown to the fitted model \(8 HCPs known\)"):
        model.score(["h00", "nobody"])


def test_scoring_before_fit_is_an_error():
    with pytest.raises(NotFittedError, match="call fit"):
        GlobalPopularity().score(["h00"])


def test_training_rows_with_an_unknown_content_id_are_named():
    rows = pd.concat([block_world(), interactions([("h00", "9999", "2024-01-03", True)])], ignore_index=True)
    with pytest.raises(UnknownIdError, match="content id '9999' is unknown"):
        GlobalPopularity().fit(training_data(rows, hcps(), catalogue(), SPLIT.valid_start))


def test_exclusion_mask_marks_seen_unapproved_and_unreleased_items(train):
    mask = exclusion_mask(["h00", "h04"], train.content_ids, train)
    # h00 (cardiology) engaged 1001, 1002, 1003; 1005 is approved for endocrinology only.
    assert mask[0].tolist() == [True, True, True, False, True, False]
    # h04 (endocrinology) engaged 1004, 1005; its non-engaged exposure of 1003 is not "seen".
    assert mask[1].tolist() == [False, False, False, True, True, False]
    released = exclusion_mask(["h04"], train.content_ids, train, released_by=SPLIT.test_start, catalogue=catalogue())
    assert released[0].tolist() == [False, False, False, True, True, True]


def test_top_n_skips_excluded_items_breaks_ties_by_catalogue_order_and_pads():
    scores = np.array([[0.5, 0.9, 0.9, 0.1], [1.0, 2.0, 3.0, 4.0]])
    exclude = np.array([[False, False, False, True], [True, True, True, False]])
    assert top_n(scores, 3, exclude).tolist() == [[1, 2, 0], [3, -1, -1]]
    assert top_n(scores, 6).tolist() == [[1, 2, 0, 3, -1, -1], [3, 2, 1, 0, -1, -1]]


def test_top_n_of_a_long_catalogue_is_the_head_of_the_full_stable_sort():
    """Short of a quarter of the catalogue top_n does not sort whole rows (models.base.stable_top):
    the same columns, in the same order, as the head of a full stable sort, with tied scores,
    excluded cells and rows with fewer eligible items than asked."""
    rng = np.random.default_rng(3)
    for trial in range(60):
        n_rows, n_cols, n = int(rng.integers(1, 30)), int(rng.integers(40, 400)), int(rng.integers(1, 10))
        scores = rng.integers(0, int(rng.integers(2, 60)), size=(n_rows, n_cols)).astype(float)  # many ties
        exclude = rng.random((n_rows, n_cols)) < rng.choice([0.0, 0.5, 0.99])
        full = np.argsort(-np.where(exclude, -np.inf, scores), axis=1, kind="stable")[:, :n]
        expected = np.where(np.take_along_axis(exclude, full, axis=1), -1, full)
        np.testing.assert_array_equal(top_n(scores, n, exclude), expected, err_msg=f"trial {trial}")


def test_recommend_never_lists_seen_or_unapproved_content(train):
    model = GlobalPopularity().fit(train)
    hcp_ids = train.hcp_ids.tolist()
    mask = exclusion_mask(hcp_ids, train.content_ids, train)
    table = recommend(model, hcp_ids, n=3, exclude=mask, batch_size=3)
    assert list(table.columns) == ["hcp_id", "rank", "content_id", "score"]
    seen = set(zip(train.engaged["hcp_id"], train.engaged["content_id"]))
    assert not seen & set(zip(table["hcp_id"], table["content_id"]))
    cardiology = table[table["hcp_id"] == "h00"]
    assert "1005" not in cardiology["content_id"].tolist()
    # h00 may get only 1004 and 1006 (never engaged): popularity ranks 1004 (4 engagements) first
    assert cardiology["content_id"].tolist() == ["1004", "1006"]
    assert cardiology["rank"].tolist() == [1, 2]


def test_hit_rate_and_ndcg_on_a_hand_computed_example():
    relevant = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]], dtype=bool)
    recommended = np.array([[1, 0], [0, 1], [2, 3]])
    hits = metrics.hit_at_k(recommended, relevant, 2)
    assert np.isnan(hits[1])  # HCP 1 has nothing relevant: undefined, left out of the mean
    assert metrics.mean_over_hcps(hits) == pytest.approx(1.0)
    # HCP 0: hit at rank 1 -> 1; HCP 2: hit at rank 2 -> (1/log2 3) / (1 + 1/log2 3)
    expected = (1.0 + (1 / np.log2(3)) / (1 + 1 / np.log2(3))) / 2
    assert metrics.mean_over_hcps(metrics.ndcg_at_k(recommended, relevant, 2)) == pytest.approx(expected)
    assert metrics.mean_over_hcps(metrics.hit_at_k(recommended[:, :1], relevant, 1)) == pytest.approx(0.5)
    assert np.isnan(metrics.mean_over_hcps(metrics.ndcg_at_k(recommended, np.zeros((3, 4), bool), 2)))


def test_top_k_ranks_scores_and_never_lists_minus_infinity():
    scores = np.array([[0.1, -np.inf, 0.5], [1.0, 1.0, 3.0]])
    assert metrics.top_k(scores, 4).tolist() == [[2, 0, -1, -1], [2, 0, 1, -1]]  # ties keep column order
    with pytest.raises(io.NonFiniteError, match="top_k was given 1 non-finite score"):
        metrics.top_k(np.array([[np.nan, 1.0]]), 1)


def test_metrics_ignore_padding_and_check_shapes():
    relevant = np.array([[True, False]])
    assert metrics.hit_at_k(np.array([[-1, -1]]), relevant, 2).tolist() == [0.0]
    with pytest.raises(ValueError, match="k=3 needs at least 3"):
        metrics.ndcg_at_k(np.array([[0, 1]]), relevant, 3)
    assert metrics.channel_accuracy(np.array(["email", "webinar"]), np.array(["email", "email"])) == 0.5


def test_relevance_matrix_drops_excluded_cells():
    window = interactions(
        [
            ("h00", "1001", "2024-03-02", True),
            ("h00", "1002", "2024-03-02", True),
            ("h01", "1002", "2024-03-02", False),
            ("zz", "1002", "2024-03-02", True),
        ]
    )
    exclude = np.zeros((2, 6), bool)
    exclude[0, 0] = True
    matrix = metrics.relevance_matrix(window, ["h00", "h01"], pd.Index(ITEMS), exclude)
    assert matrix.toarray().astype(int).tolist() == [[0, 1, 0, 0, 0, 0], [0] * 6]


# --- non-finite scores stop the model ---------------------------------------------------------------


def test_top_n_refuses_nan_and_inf_scores_naming_the_model_and_the_count():
    from hcp_lib.io import NonFiniteError

    scores = np.array([[0.5, np.nan, 0.9, 0.1], [1.0, np.inf, np.nan, 4.0]])
    with pytest.raises(
        NonFiniteError,
        match=r"^model 'hybrid' returned 3 non-finite scores \(2 NaN, 1 inf\) out of 8, "
        r"first at position \(0, 1\); it cannot be ranked — check its inputs "
        r"and training$",
    ):
        top_n(scores, 2, model="hybrid")
    with pytest.raises(ValueError, match=r"^top_n was given 3 non-finite scores"):
        top_n(scores, 2)
    # the model emitted it: a NaN in a cell the caller excludes is refused too
    exclude = np.array([[False, True, False, False], [False, False, False, False]])
    with pytest.raises(NonFiniteError, match="1 non-finite score"):
        top_n(np.array([[0.5, np.nan, 0.9, 0.1], [1.0, 2.0, 3.0, 4.0]]), 2, exclude)
    # excluded cells become -inf inside top_n only: finite scores with a mask still rank
    assert top_n(np.array([[0.5, 0.7, 0.9, 0.1]]), 2, exclude[:1]).tolist() == [[2, 0]]


def test_recommend_stops_a_model_that_returns_inf(train):
    from hcp_lib.io import NonFiniteError

    class Broken(GlobalPopularity):
        name = "broken_popularity"

        def _score(self, rows):
            scores = super()._score(rows)
            scores[:, 1] = np.inf
            return scores

    model = Broken().fit(train)
    hcp_ids = train.hcp_ids.tolist()
    with pytest.raises(
        NonFiniteError,
        match=rf"^model 'broken_popularity' returned 3 non-finite scores \(3 inf\) out "
        rf"of 18, first at HCP '{hcp_ids[0]}', position \(0, 1\); it cannot be "
        r"ranked",
    ):
        recommend(model, hcp_ids, n=3, batch_size=3)

    class NoName:
        """A duck-typed model without a name attribute: named by its class."""

        content_ids_ = model.content_ids_

        def score(self, hcp_ids):
            return np.full((len(hcp_ids), len(self.content_ids_)), np.nan)

    with pytest.raises(
        NonFiniteError,
        match=r"^model 'NoName' returned 12 non-finite scores \(12 NaN\) out of 12, "
        rf"first at HCP '{hcp_ids[0]}'",
    ):
        recommend(NoName(), hcp_ids[:2], n=3)
