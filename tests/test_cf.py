"""Each baseline on a hand-made matrix whose right answer is known, tuning, and the error cases."""

import json

import numpy as np
import pandas as pd
import pytest

from hcp_lib.domain import CHANNELS
from hcp_lib.models import baselines
from hcp_lib.models.base import UnknownIdError, exclusion_mask, top_n
from hcp_lib.split import training_data
from hcp_lib.stages import cf
from tests.cf_fixtures import ITEMS, SPLIT, block_world, catalogue, hcps, interactions


def fit(model, rows, n_cardiology=4, n_endocrinology=4):
    return model.fit(training_data(rows, hcps(n_cardiology, n_endocrinology), catalogue(), SPLIT.valid_start))


def column(content_id: str) -> int:
    return ITEMS.index(content_id)


def co_engagement_world(n_per_block: int = 10) -> pd.DataFrame:
    """Block 1 (h00..) engages 1001, 1002, 1003; block 2 engages 1004, 1005, 1006; the last
    HCP of block 1 engaged only 1001 and 1002, so 1003 is the item it should get next."""
    rows = []
    for h in range(2 * n_per_block):
        items = ITEMS[:3] if h < n_per_block else ITEMS[3:]
        if h == n_per_block - 1:
            items = ITEMS[:2]
        rows += [(f"h{h:02d}", item, "2024-01-15", True) for item in items]
    return interactions(rows)


def rank_of_next(model) -> list[str]:
    """The query HCP's unseen items, best first."""
    query = "h09"
    scores = model.score([query])
    exclude = np.isin(np.array(ITEMS), ["1001", "1002"])[None, :]
    return [ITEMS[c] for c in top_n(scores, 4, exclude)[0]]


def test_global_popularity_orders_items_by_engagement_count():
    rows = interactions(
        [("h00", "1003", "2024-01-02", True)] * 3
        + [("h01", "1001", "2024-01-02", True)] * 2
        + [("h02", "1002", "2024-01-02", True), ("h02", "1004", "2024-01-02", False)]
    )
    scores = fit(baselines.GlobalPopularity(), rows).score(["h05"])[0]
    assert scores.tolist() == [2, 1, 3, 0, 0, 0]


def test_specialty_popularity_follows_the_specialty_and_shrinks_to_global():
    model = fit(baselines.SpecialtyPopularity(shrinkage=0.0), block_world())
    cardiology, endocrinology = model.score(["h00", "h04"])
    assert cardiology[column("1003")] > cardiology[column("1004")]
    assert endocrinology[column("1004")] > endocrinology[column("1001")]
    assert cardiology[column("1004")] == 0.0
    shrunk = fit(baselines.SpecialtyPopularity(shrinkage=1e6), block_world()).score(["h00"])[0]
    global_share = fit(baselines.GlobalPopularity(), block_world()).score(["h00"])[0] / 19
    np.testing.assert_allclose(shrunk, global_share, atol=1e-4)


def test_recency_popularity_trades_counts_for_recency_by_half_life():
    rows = interactions([("h00", "1001", "2024-01-02", True)] * 3 + [("h01", "1002", "2024-02-28", True)])
    short = fit(baselines.RecencyPopularity(half_life_days=3.0), rows).score(["h00"])[0]
    long = fit(baselines.RecencyPopularity(half_life_days=1000.0), rows).score(["h00"])[0]
    assert short[column("1002")] > short[column("1001")]
    assert long[column("1001")] > long[column("1002")]
    assert long[column("1002")] == pytest.approx(
        0.5 ** (2 / 1000)
    )  # 2024-02-28 is 2 days before the cut-off (leap year)


@pytest.mark.parametrize(
    "model", [baselines.ItemKNN(neighbours=5, shrinkage=1.0), baselines.EASE(l2=1.0)], ids=["itemknn", "ease"]
)
def test_neighbourhood_models_recommend_the_co_engaged_item(model):
    ranking = rank_of_next(fit(model, co_engagement_world(), 10, 10))
    assert ranking[0] == "1003"


def test_itemknn_similarity_is_cosine_with_shrinkage_and_keeps_k_neighbours():
    model = fit(baselines.ItemKNN(neighbours=1, shrinkage=2.0), co_engagement_world(), 10, 10)
    # 1001 and 1002 are engaged by the same 10 HCPs: 10 / (sqrt(10) sqrt(10) + 2)
    similar = model.similar_items("1001", n=3)
    assert similar["content_id"].tolist() == ["1002"]
    assert similar["similarity"].iloc[0] == pytest.approx(10 / 12)
    assert (model.similarity_.getnnz(axis=1) <= 1).all()


def test_ease_weights_have_zero_diagonal_and_match_the_closed_form():
    model = fit(baselines.EASE(l2=5.0), co_engagement_world(), 10, 10)
    binary = (model.binary_.toarray() > 0).astype(float)
    inverse = np.linalg.inv(binary.T @ binary + 5.0 * np.eye(6))
    expected = np.eye(6) - inverse / np.diag(inverse)
    np.testing.assert_allclose(model.weights_, expected, atol=1e-10)
    assert np.all(np.diag(model.weights_) == 0)


@pytest.mark.parametrize(
    "model",
    [
        baselines.ALS(factors=4, regularization=0.01, alpha=10.0, iterations=20, random_state=1),
        baselines.BPR(factors=4, learning_rate=0.05, iterations=300, random_state=1),
    ],
    ids=["als", "bpr"],
)
def test_factor_models_rank_the_co_engaged_item_above_unrelated_ones(model):
    ranking = rank_of_next(fit(model, co_engagement_world(), 10, 10))
    assert ranking[0] == "1003"


def test_factor_models_use_implicit_cpu_classes_and_are_deterministic():
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    rows = co_engagement_world()
    als = fit(baselines.ALS(factors=4, random_state=5), rows, 10, 10)
    bpr = fit(baselines.BPR(factors=4, iterations=20, random_state=5), rows, 10, 10)
    assert isinstance(als.model_, AlternatingLeastSquares) and isinstance(bpr.model_, BayesianPersonalizedRanking)
    hcp_ids = [f"h{h:02d}" for h in range(20)]
    np.testing.assert_array_equal(
        als.score(hcp_ids), fit(baselines.ALS(factors=4, random_state=5), rows, 10, 10).score(hcp_ids)
    )
    np.testing.assert_array_equal(
        bpr.score(hcp_ids), fit(baselines.BPR(factors=4, iterations=20, random_state=5), rows, 10, 10).score(hcp_ids)
    )
    assert als.similar_hcps("h00", n=3)["hcp_id"].str.match(r"h0\d").all()  # nearest HCPs are from the same block


def test_random_scores_are_reproducible_and_do_not_depend_on_the_batch():
    model = fit(baselines.RandomRecommender(seed=9), block_world())
    both = model.score(["h00", "h01"])
    np.testing.assert_array_equal(both[1], model.score(["h01"])[0])
    assert not np.array_equal(both[0], both[1])
    np.testing.assert_array_equal(both, fit(baselines.RandomRecommender(seed=9), block_world()).score(["h00", "h01"]))


def test_content_based_ranks_a_new_item_by_its_features():
    features = pd.DataFrame({"pmid": ITEMS, "topic_0": [1, 1, 0, 0, 0, 0.9], "topic_1": [0, 0, 1, 1, 1, 0.1]})
    model = fit(baselines.ContentBased(baselines.topic_features(features), specialty_weight=0.0), block_world())
    scores = model.score(["h00", "h04"])
    # 1006 has no history at all; its topics match the cardiologist's 1001/1002
    assert scores[0, column("1006")] > scores[0, column("1004")]
    assert scores[1, column("1004")] > scores[1, column("1006")]


def test_content_based_falls_back_to_the_specialty_profile_for_an_hcp_without_history():
    features = pd.DataFrame([[1, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], index=ITEMS)
    rows = block_world()
    model = fit(
        baselines.ContentBased(features, specialty_weight=0.5), rows[rows["hcp_id"] != "h03"]
    )  # h03: no history
    items = features.to_numpy() / np.linalg.norm(features.to_numpy(), axis=1, keepdims=True)
    engaged_by_cardiologists = 3 * items[0] + 3 * items[1] + 3 * items[2]
    np.testing.assert_allclose(
        model.hcp_profiles_[3], engaged_by_cardiologists / np.linalg.norm(engaged_by_cardiologists)
    )
    assert np.argmax(model.score(["h03"])[0]) == column("1001")


def test_content_based_names_an_item_without_features():
    features = pd.DataFrame({"topic_0": [1.0] * 5}, index=ITEMS[:5])
    with pytest.raises(UnknownIdError, match="no row for content id '1006'"):
        fit(baselines.ContentBased(features), block_world())


def test_channel_baselines_on_known_habits():
    rows = interactions(
        [
            ("h00", "1001", "2024-01-02", True, "webinar"),
            ("h00", "1002", "2024-01-03", True, "webinar"),
            ("h00", "1003", "2024-01-04", True, "email"),
            ("h01", "1001", "2024-01-02", False, "rep_visit"),
            ("h01", "1002", "2024-01-02", False, "rep_visit"),
            ("h01", "1003", "2024-01-02", True, "email"),
            ("h01", "1004", "2024-01-05", False, "email"),
            ("h04", "1004", "2024-01-02", True, "conference_event"),
        ]
    )
    frequent = fit(baselines.MostFrequentChannel(), rows)
    assert frequent.predict_channel(["h00", "h01"]).tolist() == ["webinar", "email"]
    # h02 has no engagement: webinar has cardiology's best rate (2/2; email 2/3)
    assert frequent.predict_channel(["h02"]).tolist() == ["webinar"]
    best = fit(baselines.SpecialtyBestChannel(shrinkage=0.0), rows)
    np.testing.assert_allclose(best.channel_scores(["h00"])[0], [2 / 3, 1.0, 0.0, 0.0, 0.0])
    assert best.predict_channel(["h05"]).tolist() == ["conference_event"]
    usual = fit(baselines.BusinessAsUsualChannel(), rows)
    np.testing.assert_allclose(usual.channel_scores(["h01"])[0], [0.5, 0, 0.5, 0, 0])
    assert usual.predict_channel(["h03"]).tolist() == ["email"]  # the cardiology share: 3 of 7 exposures
    assert usual.score_channels(["h01"]).shape == (1, 6, 5)
    with pytest.raises(TypeError, match="ranks channels only"):
        usual.score(["h01"])


def test_hyper_parameters_are_validated_in_fit():
    with pytest.raises(ValueError, match="half_life_days must be > 0, got 0"):
        fit(baselines.RecencyPopularity(half_life_days=0), block_world())
    with pytest.raises(ValueError, match="l2 must be > 0"):
        fit(baselines.EASE(l2=0), block_world())


def test_tune_picks_the_best_validation_point_and_records_the_table():
    rows = pd.concat([co_engagement_world(), interactions([("h09", "1003", "2024-03-05", True)])], ignore_index=True)
    train = training_data(rows, hcps(10, 10), catalogue(), SPLIT.valid_start)
    validation = rows[rows["exposed_at"] >= SPLIT.valid_start]
    frame = cf.evaluation_window(train, validation, catalogue(), released_by=SPLIT.test_start)
    assert frame.hcp_ids.tolist() == ["h09"]
    factories = {
        "itemknn": lambda **p: baselines.ItemKNN(**p),
        "random": lambda **p: baselines.RandomRecommender(seed=1, **p),
    }
    grids = {"itemknn": {"neighbours": [1, 5], "shrinkage": [0.0]}, "random": {}}
    chosen, table = cf.tune(factories, grids, train, frame, k=1)
    assert chosen["itemknn"] in ({"neighbours": 1, "shrinkage": 0.0}, {"neighbours": 5, "shrinkage": 0.0})
    assert table.loc[table["chosen"] & (table["model"] == "itemknn"), "ndcg@1"].item() == 1.0
    assert len(table) == 3 and table["chosen"].sum() == 2
    assert json.loads(table["params"].iloc[0]) == {"neighbours": 1, "shrinkage": 0.0}
    with pytest.raises(KeyError, match="no hyper-parameter grid for model 'ease'"):
        cf.tune({"ease": lambda **p: baselines.EASE(**p)}, grids, train, frame)


def test_tune_and_the_refits_count_every_fit_on_the_progress_bar():
    train = training_data(co_engagement_world(), hcps(10, 10), catalogue(), SPLIT.valid_start)
    validation = interactions([("h09", "1003", "2024-03-05", True), ("h09", "1002", "2024-03-05", False)])
    frame = cf.evaluation_window(train, validation, catalogue(), released_by=SPLIT.test_start)
    factories = {
        "itemknn": lambda **p: baselines.ItemKNN(**p),
        "popularity": lambda **p: baselines.GlobalPopularity(**p),
    }
    grids = {"itemknn": {"neighbours": [1, 5], "shrinkage": [0.0]}, "popularity": {}}
    bars = []

    def recording(iterable, desc, total=None):
        bars.append((desc, list(iterable)))
        return bars[-1][1]

    chosen, table = cf.tune(factories, grids, train, frame, k=1, progress=recording)
    assert bars == [
        (
            "baseline fits (grid points)",
            [
                ("itemknn", {"neighbours": 1, "shrinkage": 0.0}),
                ("itemknn", {"neighbours": 5, "shrinkage": 0.0}),
                ("popularity", {}),
            ],
        )
    ]
    # the bar changes nothing: the same choice and table (bar the seconds) as without it
    again, plain = cf.tune(factories, grids, train, frame, k=1)
    assert chosen == again
    timing = ["fit_seconds", "score_seconds"]
    pd.testing.assert_frame_equal(table.drop(columns=timing), plain.drop(columns=timing))
    models = cf.fit_chosen(factories, chosen, train, progress=recording)
    assert bars[-1] == ("baseline refits", ["itemknn", "popularity"]) and list(models) == ["itemknn", "popularity"]


def test_every_factory_builds_a_model_that_scores_the_block_world():
    features = baselines.area_features(catalogue())
    train = training_data(block_world(), hcps(), catalogue(), SPLIT.valid_start)
    for name, factory in baselines.content_factories(seed=0, item_features=features).items():
        assert name in cf.CONTENT_GRIDS, name
        scores = factory().fit(train).score(["h00", "h07"])
        assert scores.shape == (2, 6) and np.isfinite(scores).all(), name
    mask = exclusion_mask(["h00"], train.content_ids, train)
    assert mask.sum() == 4


@pytest.mark.slow
def test_notebook_04_writes_lists_without_seen_or_unapproved_items(tiny_run):
    from hcp_lib.config import RunDir
    from hcp_lib.io import read_json, read_parquet

    run = RunDir(tiny_run)
    split = cf.read_split(tiny_run)
    summary = read_json(run.metrics / "cf.json")
    assert summary["split"] == split.to_dict()
    assert set(summary["chosen_hyper_parameters"]) == set(cf.CONTENT_GRIDS) | set(cf.CHANNEL_GRIDS)
    world = cf.read_world(tiny_run)
    seen = world.interactions[world.interactions["engaged"] & (world.interactions["exposed_at"] < split.test_start)]
    seen_pairs = set(zip(seen["hcp_id"], seen["content_id"]))
    specialty = world.hcps.set_index("hcp_id")["specialty"]
    approved = world.catalogue.set_index("content_id")["approved_specialties"].str.split("; ")
    for name in cf.CONTENT_GRIDS:
        lists = read_parquet(run.cf / "test_top_n" / f"{name}.parquet")
        assert not seen_pairs & set(zip(lists["hcp_id"], lists["content_id"])), name
        assert all(specialty[h] in approved[c] for h, c in zip(lists["hcp_id"], lists["content_id"])), name
        assert (
            lists.groupby("hcp_id")["rank"].max().max()
            <= read_json(run.root / "manifest.json")["parameters"]["cf_top_n"]
        )
    factors = read_parquet(run.cf / "als_item_factors.parquet")
    assert set(factors["fit"]) == {"train", "train+validation"}


def test_tune_chooses_by_the_exposure_auc_of_the_logged_validation_exposures():
    """1003 was engaged with recently (three times), 1001 long ago (four times): a short half-life
    ranks 1003 first, a long one 1001. The validation window shows both to h03, who engages with
    1001 only, so the long half-life wins on the logged exposures."""
    train = training_data(block_world(), hcps(), catalogue(), SPLIT.valid_start)
    validation = interactions([("h03", "1001", "2024-03-05", True), ("h03", "1003", "2024-03-06", False)])
    frame = cf.evaluation_window(train, validation, catalogue(), released_by=SPLIT.test_start)
    assert len(frame.exposures) == 2
    factories = {
        "recency_popularity": lambda **p: baselines.RecencyPopularity(**p),
        "popularity": lambda **p: baselines.GlobalPopularity(**p),
    }
    grids = {"recency_popularity": {"half_life_days": [1.0, 1000.0]}, "popularity": {}}
    chosen, table = cf.tune(factories, grids, train, frame)
    assert chosen["recency_popularity"] == {"half_life_days": 1000.0}
    assert table["exposure_auc"].tolist() == [0.0, 1.0, 1.0]


def test_channel_rates_are_judged_by_the_log_loss_of_the_logged_exposures():
    train = training_data(block_world(), hcps(), catalogue(), SPLIT.valid_start)
    validation = interactions(
        [("h00", "1001", "2024-03-05", True, "email"), ("h04", "1004", "2024-03-05", False, "rep_visit")]
    )
    frame = cf.evaluation_window(train, validation, catalogue(), released_by=SPLIT.test_start)
    model = baselines.SpecialtyBestChannel(shrinkage=5.0).fit(train)
    scores = cf.evaluate_channel(model, frame)
    rates = model.channel_scores(np.array(["h00", "h04"], dtype=object))
    expected = -(np.log(rates[0, CHANNELS.index("email")]) + np.log(1 - rates[1, CHANNELS.index("rep_visit")])) / 2
    assert scores["exposure_log_loss"] == pytest.approx(expected)
    assert "exposure_log_loss" not in cf.evaluate_channel(baselines.MostFrequentChannel().fit(train), frame)
