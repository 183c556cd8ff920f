"""The hybrid LSTM on small hand-made data: shapes, masking, cold starts, determinism,
save/load and the error cases."""

import numpy as np
import pandas as pd
import pytest

from hcp_lib import hybrid
from hcp_lib.domain import CHANNELS
from hcp_lib.recommender import Recommender, UnknownIdError
from hcp_lib.split import training_data

N_HCP, N_ITEM, N_TOPIC = 24, 10, 3
START = pd.Timestamp("2024-01-01")
CUTOFF = pd.Timestamp("2024-03-01")
VALID_START = pd.Timestamp("2024-02-15")
SETTINGS = hybrid.HybridSettings(max_seq_len=6, embedding_dim=4, sequence_units=8, hidden_units=8, n_negatives=4,
                                 epochs=2, batch_size=64, patience=1, seed=7)


def _hcp_id(i: int) -> str:
    return f"{1000000000 + i}"


def make_world(seed: int = 0):
    """HCPs of two specialties; each prefers the items whose topic matches its specialty and
    one channel; items 8 and 9 are never exposed (cold items)."""
    rng = np.random.default_rng(seed)
    hcps = pd.DataFrame({
        "hcp_id": [_hcp_id(i) for i in range(N_HCP)],
        "specialty": ["cardiology" if i % 2 else "endocrinology" for i in range(N_HCP)],
        "practice_setting": [("academic", "hospital", "group")[i % 3] for i in range(N_HCP)],
        "region": [("Northeast", "South")[i % 2] for i in range(N_HCP)],
        "prescribing_decile": rng.integers(1, 11, N_HCP),
        "digital_affinity": rng.random(N_HCP),
        "years_in_practice": rng.integers(1, 35, N_HCP),
        "age": rng.integers(30, 70, N_HCP),
    })
    content_ids = [f"{30000000 + j}" for j in range(N_ITEM)]
    topics = rng.dirichlet(np.ones(N_TOPIC) * 0.3, N_ITEM)
    doc_topics = pd.DataFrame(topics, columns=[f"topic_{t}" for t in range(N_TOPIC)])
    doc_topics.insert(0, "pmid", content_ids)
    catalogue = pd.DataFrame({
        "content_id": content_ids,
        "therapeutic_area": ["cardiovascular", "diabetes"] * (N_ITEM // 2),
        "release_date": [START] * N_ITEM,
        "approved_specialties": ["cardiology; endocrinology"] * N_ITEM,
    })
    rows = []
    # HCP 0 has a short history (padding), the last HCP none (cold start), the others 8..19 events
    counts = rng.integers(8, 20, N_HCP)
    counts[0], counts[-1] = 3, 0
    for i in range(N_HCP):
        for _ in range(counts[i]):
            item = int(rng.integers(0, N_ITEM - 2))
            channel = CHANNELS[int(rng.integers(0, len(CHANNELS)))]
            p = 0.2 + 0.6 * ((item % 2) == (i % 2)) * (0.5 + 0.5 * (channel == CHANNELS[i % 3]))
            engaged = bool(rng.random() < p)
            minutes = int(rng.integers(0, 80 * 24 * 60))
            rows.append((_hcp_id(i), content_ids[item], channel, START + pd.Timedelta(minutes=minutes), 0.5, engaged,
                         float(engaged) * rng.random()))
    interactions = pd.DataFrame(rows, columns=["hcp_id", "content_id", "channel", "exposed_at", "propensity", "engaged",
                                               "engagement_score"])
    return hcps, catalogue, doc_topics, interactions


class TinyCF(Recommender):
    """Deterministic stand-in for hcp_lib.cf.ALS: item factors = co-engagement counts with the
    first two items, HCP factors = the HCP's engagement counts of them."""

    name = "tiny_cf"

    def _fit(self, train):
        matrix = self.engaged_matrix(train).toarray()
        self.hcp_factors_ = matrix[:, :2] + 0.1
        self.item_factors_ = matrix.T @ matrix[:, :2] + 0.1


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def train(world):
    hcps, catalogue, _, interactions = world
    return training_data(interactions, hcps[["hcp_id", "specialty"]], catalogue, CUTOFF)


def fit_model(world, train, settings=SETTINGS, cf=True):
    hcps, _, doc_topics, _ = world
    model = hybrid.HybridRecommender(hcps, doc_topics, TinyCF() if cf else None, settings=settings,
                                     validation_start=VALID_START)
    return model.fit(train)


@pytest.fixture(scope="module")
def fitted(world, train):
    return fit_model(world, train)


def test_scores_have_the_interface_shapes_and_are_finite(fitted):
    hcp_ids = [_hcp_id(i) for i in (0, 3, 5)]
    scores = fitted.score(hcp_ids)
    channels = fitted.score_channels(hcp_ids)
    assert scores.shape == (3, N_ITEM) and np.isfinite(scores).all()
    assert channels.shape == (3, N_ITEM, len(CHANNELS))
    assert ((channels > 0) & (channels < 1)).all()
    preferences = fitted.channel_preferences(hcp_ids)
    np.testing.assert_allclose(preferences.sum(axis=2), 1.0, rtol=1e-5)
    assert list(fitted.history_.columns[:2]) == ["epoch", "engagement_loss"] or "loss" in fitted.history_.columns
    assert {"loss", "val_loss"} <= set(fitted.history_.columns)


def test_batched_channel_scores_equal_the_per_item_loop(fitted):
    hcp_id, content_id = _hcp_id(4), fitted.content_ids_[3]
    batched = fitted.score_channels([hcp_id])[0, 3]
    looped = [fitted.score_pair_loop(hcp_id, content_id, c) for c in CHANNELS]
    np.testing.assert_allclose(batched, looped, rtol=1e-4, atol=1e-6)


def test_chunked_pair_scoring_matches_one_chunk(fitted):
    hcp_ids = [_hcp_id(i) for i in range(5)]
    whole = fitted.score_channels(hcp_ids)
    fitted.pair_chunk = N_ITEM  # one HCP per predict call
    try:
        np.testing.assert_array_equal(fitted.score_channels(hcp_ids), whole)
    finally:
        fitted.pair_chunk = 1_000_000


def test_padded_steps_do_not_change_the_hcp_vector(fitted):
    rows = np.array([0, 1])
    inputs = fitted._hcp_inputs(rows)
    padded = inputs["history_channel"] == 0
    assert padded.any(), "the fixture needs an HCP with fewer events than max_seq_len"
    scrambled = {k: v.copy() for k, v in inputs.items()}
    scrambled["history_content"][padded] = 5
    scrambled["history_numeric"][padded] = 9.0
    before = fitted._scorers.hcp.predict(inputs, verbose=0)[0]
    after = fitted._scorers.hcp.predict(scrambled, verbose=0)[0]
    np.testing.assert_array_equal(before, after)


def test_history_longer_than_max_keeps_the_most_recent_events(fitted):
    row = int(np.argmax(fitted.events_.end - fitted.events_.start))
    ev = fitted.events_
    assert ev.end[row] - ev.start[row] > SETTINGS.max_seq_len
    window = fitted._hcp_inputs(np.array([row]))
    np.testing.assert_array_equal(window["history_content"][0], ev.content[ev.end[row] - SETTINGS.max_seq_len:ev.end[row]])
    assert (window["history_channel"][0] > 0).all()


def test_training_history_is_strictly_before_the_exposure(fitted):
    ev = fitted.events_
    rows = np.arange(len(ev.content))
    x, _, _ = fitted.example_inputs(rows, np.full((len(rows), SETTINGS.n_negatives), hybrid.FIRST_ITEM))
    ages = x["history_numeric"][..., hybrid.EVENT_FEATURES.index("log_age_days")]
    real = x["history_channel"] > 0
    assert (ages[real] > 0).all(), "an event at or after the exposure's instant leaked into its history"
    first = ev.start[ev.hcp_row[rows]] == rows
    assert not real[first].any(), "an HCP's first exposure must have an empty history"


def test_hcp_without_history_gets_a_static_fallback(fitted):
    cold = _hcp_id(N_HCP - 1)
    row = fitted.hcp_ids_.get_loc(cold)
    assert fitted.events_.end[row] == fitted.events_.start[row]
    scores = fitted.score([cold])
    assert np.isfinite(scores).all() and scores.std() > 0


def test_cold_item_scores_finitely_from_its_topics(fitted, world):
    _, _, doc_topics, _ = world
    new = pd.DataFrame({"pmid": ["39999999"], **{f"topic_{t}": [1.0 if t == 0 else 0.0] for t in range(N_TOPIC)}})
    scores = fitted.score_items([_hcp_id(0), _hcp_id(1)], list(fitted.content_ids_[:3]) + ["39999999"], new)
    assert scores.shape == (2, 4) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:, :3], fitted.score([_hcp_id(0), _hcp_id(1)])[:, :3], rtol=1e-5)
    other = new.assign(topic_0=0.0, topic_1=1.0)
    moved = fitted.score_items([_hcp_id(0)], ["39999999"], other)
    assert moved[0, 0] != scores[0, 3], "a new item's score must depend on its topic vector"
    # items 8 and 9 are never exposed: zero id embedding, represented by their topics
    embeddings = np.asarray(fitted.model_.get_layer("item_id_embedding").embeddings)
    assert (embeddings[hybrid.FIRST_ITEM + 8:hybrid.FIRST_ITEM + 10] == 0).all()
    assert np.abs(embeddings[hybrid.FIRST_ITEM:hybrid.FIRST_ITEM + 8]).sum() > 0


def test_new_item_without_topics_is_refused(fitted):
    with pytest.raises(UnknownIdError, match="content id '39999999' is not in the training catalogue"):
        fitted.score_items([_hcp_id(0)], ["39999999"])


def test_unknown_hcp_is_refused_naming_it(fitted):
    with pytest.raises(UnknownIdError, match="HCP id '9999999999' is unknown"):
        fitted.score(["9999999999"])
    with pytest.raises(UnknownIdError, match="HCP id '9999999999' is unknown"):
        fitted.score_channels(["9999999999"])


def test_same_seed_same_scores_other_seed_other_scores(world, train, fitted):
    again = fit_model(world, train)
    hcp_ids = [_hcp_id(i) for i in range(6)]
    np.testing.assert_array_equal(again.score(hcp_ids), fitted.score(hcp_ids))
    np.testing.assert_array_equal(again.score_channels(hcp_ids), fitted.score_channels(hcp_ids))
    other = fit_model(world, train, hybrid.HybridSettings(**{**SETTINGS.__dict__, "seed": 8}))
    assert not np.array_equal(other.score(hcp_ids), fitted.score(hcp_ids))


def test_save_and_load_reproduce_the_scores(world, train, fitted, tmp_path):
    hcps, _, doc_topics, _ = world
    fitted.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"model.keras", "preprocessing.json",
                                                                  "hcp_cf_factors.parquet"}
    loaded = hybrid.load(tmp_path / "model", train, hcps)
    hcp_ids = list(fitted.hcp_ids_)
    np.testing.assert_array_equal(loaded.score(hcp_ids), fitted.score(hcp_ids))
    np.testing.assert_array_equal(loaded.score_channels(hcp_ids), fitted.score_channels(hcp_ids))
    new = doc_topics.iloc[:1].assign(pmid="39999999")
    np.testing.assert_array_equal(loaded.score_items(hcp_ids[:2], ["39999999"], new),
                                  fitted.score_items(hcp_ids[:2], ["39999999"], new))


def test_load_refuses_a_changed_catalogue(world, fitted, tmp_path):
    hcps, catalogue, _, interactions = world
    fitted.save(tmp_path / "model")
    grown = pd.concat([catalogue, catalogue.iloc[:1].assign(content_id="39999999")], ignore_index=True)
    changed = training_data(interactions, hcps[["hcp_id", "specialty"]], grown, CUTOFF)
    with pytest.raises(hybrid.CatalogueChangedError, match=r"catalogue changed since training: 1 added \(e.g. '39999999'\)"):
        hybrid.load(tmp_path / "model", changed, hcps)
    later = training_data(interactions, hcps[["hcp_id", "specialty"]], catalogue, CUTOFF + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="trained with cut-off 2024-03-01"):
        hybrid.load(tmp_path / "model", later, hcps)


def test_ablation_without_sequence_and_without_cf_fit_and_score(world, train):
    settings = hybrid.HybridSettings(**{**SETTINGS.__dict__, "use_sequence": False, "use_cf": False, "epochs": 1})
    model = fit_model(world, train, settings, cf=False)
    assert model.score([_hcp_id(0)]).shape == (1, N_ITEM)
    assert model.score_channels([_hcp_id(0)]).shape == (1, N_ITEM, len(CHANNELS))
    seq_only = hybrid.HybridSettings(**{**SETTINGS.__dict__, "use_static": False, "use_topics": False, "epochs": 1,
                                        "sequence_encoder": "gru"})
    model = fit_model(world, train, seq_only)
    assert np.isfinite(model.score([_hcp_id(0)])).all()


@pytest.mark.parametrize("change, message", [
    ({"max_seq_len": 0}, "max_seq_len must be an integer >= 1, got 0"),
    ({"sequence_encoder": "transformer"}, "sequence_encoder must be one of lstm, gru, got 'transformer'"),
    ({"use_sequence": False, "use_static": False}, "use_sequence and use_static cannot both be false"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"sequence_pooling": "max"}, "sequence_pooling must be one of last, attention, got 'max'"),
])
def test_bad_settings_are_refused_naming_the_setting(world, train, change, message):
    settings = hybrid.HybridSettings(**{**SETTINGS.__dict__, **change})
    with pytest.raises(ValueError, match=message):
        fit_model(world, train, settings)


def test_missing_inputs_are_refused_naming_them(world, train):
    hcps, _, doc_topics, _ = world
    with pytest.raises(KeyError, match="hcp_features lacks column 'region'"):
        hybrid.HybridRecommender(hcps.drop(columns="region"), doc_topics, TinyCF(), SETTINGS).fit(train)
    with pytest.raises(UnknownIdError, match="the doc-topic table has no row for content id '30000009'"):
        hybrid.HybridRecommender(hcps, doc_topics.iloc[:-1], TinyCF(), SETTINGS).fit(train)
    with pytest.raises(UnknownIdError, match=f"hcp_features has no row for HCP id '{_hcp_id(0)}'"):
        hybrid.HybridRecommender(hcps.iloc[1:], doc_topics, TinyCF(), SETTINGS).fit(train)
    with pytest.raises(ValueError, match="use_cf is true but no cf_model was given"):
        hybrid.HybridRecommender(hcps, doc_topics, None, SETTINGS).fit(train)
    with pytest.raises(ValueError, match="validation_start 2024-03-02 00:00:00 must be before the cut-off"):
        hybrid.HybridRecommender(hcps, doc_topics, TinyCF(), SETTINGS, validation_start=CUTOFF + pd.Timedelta(days=1)).fit(train)


def test_scoring_before_fit_is_refused(world):
    hcps, _, doc_topics, _ = world
    from hcp_lib.recommender import NotFittedError

    with pytest.raises(NotFittedError, match="call fit"):
        hybrid.HybridRecommender(hcps, doc_topics, TinyCF(), SETTINGS).score([_hcp_id(0)])


def test_item_context_counts_only_exposures_strictly_before_the_instant():
    interactions = pd.DataFrame({
        "hcp_id": ["a", "b", "a", "b"], "content_id": ["x", "x", "x", "y"], "channel": ["email"] * 4,
        "exposed_at": pd.to_datetime(["2024-01-01", "2024-01-20", "2024-01-25", "2024-01-25"]),
        "engaged": [True, False, True, True], "engagement_score": [1.0, 0.0, 1.0, 1.0]})
    reference = pd.Timestamp("2024-01-01")
    events = hybrid.build_events(interactions, pd.Index(["a", "b"], dtype=object), pd.Index(["x", "y", "z"], dtype=object),
                                 reference)
    release = np.array([np.nan, np.nan, 0.0, 10.0, np.nan])  # x released on day 0, y on day 10, z unknown
    activity = hybrid.ItemActivity.from_events(events, release)
    x, y, z = hybrid.FIRST_ITEM, hybrid.FIRST_ITEM + 1, hybrid.FIRST_ITEM + 2
    context = activity.context(np.array([x, x, y, z]), np.array([24.0, 24.0001, 24.0, 24.0]))
    names = hybrid.ITEM_CONTEXT_FEATURES
    counts = np.expm1(context[:, [names.index("log_exposures_7d"), names.index("log_exposures_28d"),
                                  names.index("log_engaged_28d")]])
    # day 24 (Jan 25, 00:00): x had exposures on days 0 and 19 (one engaged); the day-24 ones are not yet before it
    np.testing.assert_allclose(counts[0], [1, 2, 1], atol=1e-5)
    np.testing.assert_allclose(counts[1], [2, 3, 2], atol=1e-5)
    np.testing.assert_allclose(counts[2], [0, 0, 0], atol=1e-5)
    since_last = np.expm1(context[:2, names.index("log_days_since_last_exposure")])
    np.testing.assert_allclose(since_last, [5, 0.0001], rtol=1e-3)
    assert np.expm1(context[0, names.index("log_exposures_1d")]) == 0
    assert context[2, names.index("ever_exposed")] == 0 and context[2, names.index("released")] == 1
    np.testing.assert_allclose(np.expm1(context[2, names.index("log_days_since_release")]), 14, rtol=1e-5)
    assert context[3, names.index("released")] == 0 and context[3, names.index("log_days_since_release")] == 0


@pytest.mark.slow
def test_notebook_05_saves_a_model_that_reloads_and_lists_with_channels(tiny_run):
    from hcp_lib import hybrid_eval
    from hcp_lib.config import RunDir
    from hcp_lib.io import read_json, read_parquet

    run = RunDir(tiny_run)
    summary = read_json(run.metrics / "hybrid.json")
    assert summary["split"] == read_json(run.cf / "split.json")
    assert {r["model"] for r in summary["ndcg@10"]} >= {"hybrid", "oracle", "recency_popularity"}
    assert [r["model"] for r in summary["ablations"]] == list(hybrid_eval.ABLATIONS)
    chosen = [r["model"] for r in summary["ablations"] if r["chosen"]]
    assert chosen == [summary["chosen_variant"]] and summary["selection_window"] == "validation"
    best = max(r["ndcg@10"] for r in summary["ablations"])
    assert next(r for r in summary["ablations"] if r["chosen"])["ndcg@10"] == best
    assert 0 < summary["share_of_oracle_ndcg"] and np.isfinite(summary["relative_lift_over_best_baseline"])
    inputs = hybrid_eval.read_inputs(tiny_run)
    model = hybrid.load(run.hybrid / "model", inputs.stage.train_valid, inputs.hcp_master)
    lists = read_parquet(run.hybrid / "test_top_n" / "hybrid_lstm.parquet")
    probs = read_parquet(run.hybrid / "test_exposure_probs" / "hybrid_lstm.parquet")
    assert probs["engagement_prob"].between(0, 1).all() and probs["exposure_id"].is_unique
    first = lists[lists["hcp_id"] == lists["hcp_id"].iloc[0]].sort_values("rank")
    scores = model.score([first["hcp_id"].iloc[0]])[0]
    np.testing.assert_allclose(first["score"], scores[model.content_ids_.get_indexer(first["content_id"])], rtol=1e-6)
    assert set(lists["channel"]) <= set(CHANNELS)


def test_batched_content_scores_equal_the_training_model_logits(fitted):
    rows = np.array([2, 5])
    x = fitted._hcp_inputs(rows)
    candidates = np.tile(np.arange(1 + SETTINGS.n_negatives) + hybrid.FIRST_ITEM, (len(rows), 1)).astype(np.int32)
    at = fitted._cutoff_day()
    x.update(exposed_content=candidates[:, 0], exposed_channel=np.zeros(len(rows), np.int32), content_candidates=candidates,
             exposed_context=fitted.activity_.context(candidates[:, 0], at),
             candidate_context=fitted.activity_.context(candidates, at))
    logits = np.asarray(fitted.model_(x, training=False)["next_content"])
    scores = fitted.score(fitted.hcp_ids_[rows])
    np.testing.assert_allclose(scores[:, :1 + SETTINGS.n_negatives], logits, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def attention_fitted(world, train):
    return fit_model(world, train, hybrid.HybridSettings(**{**SETTINGS.__dict__, "sequence_pooling": "attention"}))


def test_attention_pooling_ignores_padded_steps_and_scores_cold_hcps(attention_fitted):
    model = attention_fitted
    assert model.model_.get_layer("attention_weights") is not None
    rows = np.arange(len(model.hcp_ids_))
    x = model._hcp_inputs(rows)
    padded = x["history_channel"] == 0
    assert padded.any() and (~padded).any()
    changed = {k: v.copy() for k, v in x.items()}
    changed["history_content"][padded] = hybrid.FIRST_ITEM + 1
    changed["history_numeric"][padded] = 0.7
    before, after = model._scorers.hcp.predict(x, verbose=0)[0], model._scorers.hcp.predict(changed, verbose=0)[0]
    np.testing.assert_array_equal(before, after)
    cold = model.score([_hcp_id(N_HCP - 1)])
    assert padded[-1].all() and np.isfinite(cold).all()


def test_attention_pooling_weights_sum_to_one_over_real_steps(attention_fitted):
    import keras

    model = attention_fitted
    m = model.model_
    probe = keras.Model([m.get_layer(n).output for n in ("history_content", "history_channel", "history_numeric")],
                        m.get_layer("attention_weights").output)
    x = model._hcp_inputs(np.arange(len(model.hcp_ids_) - 1))  # the last HCP has no history
    weights = probe.predict([x["history_content"], x["history_channel"], x["history_numeric"]], verbose=0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert (weights[x["history_channel"] == 0] == 0).all()


def test_attention_model_saves_and_reloads_the_same_scores(world, train, attention_fitted, tmp_path):
    hcps, _, doc_topics, _ = world
    attention_fitted.save(tmp_path / "model")
    reloaded = hybrid.load(tmp_path / "model", train, hcps, doc_topics)
    assert reloaded.settings.sequence_pooling == "attention"
    np.testing.assert_array_equal(reloaded.score(attention_fitted.hcp_ids_), attention_fitted.score(attention_fitted.hcp_ids_))


def test_selection_table_chooses_the_best_validation_mean_first_on_ties():
    from hcp_lib import hybrid_eval

    per_hcp = {"hybrid": np.array([0.25, 0.75, np.nan]), "no_cf": np.array([1.0, 0.0]), "attention": np.array([0.5, 0.5])}
    table = hybrid_eval.selection_table(per_hcp, n_resamples=50)
    assert list(table.index) == ["hybrid", "no_cf", "attention"]
    assert table["ndcg@10"].tolist() == [0.5, 0.5, 0.5]
    assert table["chosen"].tolist() == [True, False, False]
    table = hybrid_eval.selection_table({"a": np.array([0.1]), "b": np.array([0.5, 0.3]), "c": np.array([np.nan])})
    assert table["chosen"].tolist() == [False, True, False]
    assert table.loc["b", "ci_low"] >= 0.3 and table.loc["b", "ci_high"] <= 0.5 and np.isnan(table.loc["c", "ndcg@10"])
    with pytest.raises(ValueError, match="at least one variant"):
        hybrid_eval.selection_table({})


def test_selection_fits_stop_early_on_the_window_before_validation():
    from hcp_lib import hybrid_eval
    from hcp_lib.split import TemporalSplit

    split = TemporalSplit(pd.Timestamp("2025-01-06"), pd.Timestamp("2025-11-10"), pd.Timestamp("2025-12-08"),
                          pd.Timestamp("2026-01-05"))
    assert hybrid_eval.selection_validation_start(split) == pd.Timestamp("2025-10-13")
    assert set(hybrid_eval.SELECTION_CANDIDATES) <= set(hybrid_eval.ABLATIONS)
