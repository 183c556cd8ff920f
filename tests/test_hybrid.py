"""The hybrid LSTM engagement model on the hand-made world: shapes, the additive scoring
against the training graph, masking, cold items, determinism, save/load and the error cases;
then notebook 05's outputs at tiny scale."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from hcp_lib import config, domain
from hcp_lib.domain import CHANNELS
from hcp_lib.models import hybrid
from hcp_lib.models.base import UnknownIdError
from tests.engagement_fixtures import (
    CUTOFF,
    END,
    N_HCP,
    N_ITEM,
    VALID_START,
    TinyALS,
    engagement_data,
    hcp_id,
    make_tables,
    train_before,
)

SETTINGS = hybrid.HybridSettings(
    sequence_length=6,
    embedding_dim=4,
    sequence_units=4,
    hidden_units=4,
    epochs=4,
    batch_size=64,
    learning_rate=0.01,
    patience=1,
    seed=7,
)


@pytest.fixture(scope="module")
def tables():
    return make_tables()


@pytest.fixture(scope="module")
def train(tables):
    return train_before(tables)


def fit(tables, train, settings=SETTINGS, validation_start=None, cf=True):
    return hybrid.HybridRecommender(
        engagement_data(tables), TinyALS() if cf else None, settings, validation_start=validation_start
    ).fit(train)


@pytest.fixture(scope="module")
def fitted(tables, train):
    return fit(tables, train, validation_start=VALID_START)


def test_fit_stops_on_the_validation_log_loss(fitted):
    assert 1 <= fitted.best_epoch_ <= SETTINGS.epochs
    assert 0 < fitted.validation_loss_ < 1.0
    assert {"loss", "val_loss"} <= set(fitted.training_history_.columns)


def test_probabilities_have_the_interface_shape(fitted):
    hcps = [hcp_id(i) for i in (0, 3, 5)]
    probability = fitted.score_channels(hcps)
    assert probability.shape == (3, N_ITEM, len(CHANNELS))
    assert ((probability > 0) & (probability < 1)).all()
    np.testing.assert_allclose(fitted.score(hcps), probability.max(axis=2), rtol=1e-6)


def test_broadcast_scoring_equals_the_training_graph(fitted):
    """The towers' broadcast sum must give what the training model gives for the same queries
    (float32 sums in another order: equal to a tolerance, not bit for bit)."""
    hcps = np.array([0, 7, N_HCP - 1])
    h = np.repeat(hcps, N_ITEM * len(CHANNELS))
    c = np.tile(np.repeat(np.arange(N_ITEM), len(CHANNELS)), len(hcps))
    k = np.tile(np.arange(len(CHANNELS)), len(hcps) * N_ITEM)
    t = np.full(len(h), fitted.space_.minutes([CUTOFF])[0])
    from hcp_lib.models.engagement import Queries

    direct = fitted._predict(fitted.inputs(Queries(h, c, k, t))).reshape(len(hcps), N_ITEM, len(CHANNELS))
    broadcast = fitted.score_channels([hcp_id(i) for i in hcps])
    np.testing.assert_allclose(broadcast, direct, rtol=1e-4, atol=1e-6)


def test_padded_steps_do_not_change_the_hcp_tower(fitted):
    from hcp_lib.models import features as F

    snap = F.snapshot(fitted.space_, fitted.history_, np.array([0, 1, 2]), CUTOFF, SETTINGS.sequence_length)
    inputs = hybrid._subset(snap.hcp, hybrid.HCP_INPUTS)
    padded = inputs["sequence_channel"] == 0
    inputs["sequence_channel"][0, 0] = 0  # make sure the first HCP has a padded step
    inputs["sequence_numeric"][0, 0] = 0.0
    padded = inputs["sequence_channel"] == 0
    scrambled = {k: v.copy() for k, v in inputs.items()}
    scrambled["sequence_item"][padded] = 5
    hcp_tower = fitted.towers()[0]
    before = hcp_tower.predict(inputs, verbose=0)
    after = hcp_tower.predict(scrambled, verbose=0)
    for b, a in zip(before, after):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


def test_cold_items_keep_a_zero_embedding_and_are_placed_by_their_topics(fitted):
    item_tower = fitted.towers()[1]
    embeddings = np.asarray(item_tower.get_layer("item_embedding").embeddings)
    assert (embeddings[N_ITEM - 2 :] == 0).all(), "items never exposed must keep a zero embedding"
    assert np.abs(embeddings[: N_ITEM - 2]).sum() > 0
    probability = fitted.score_channels([hcp_id(0)])[0]
    assert np.isfinite(probability[N_ITEM - 2 :]).all()


def test_the_hybrid_learns_the_planted_signal(tables, train):
    model = fit(tables, train, hybrid.HybridSettings(**{**SETTINGS.__dict__, "epochs": 12}))
    *_, interactions = tables
    later = interactions[(interactions["exposed_at"] >= CUTOFF) & (interactions["exposed_at"] < END)]
    probability = model.exposure_probabilities(later, interactions)
    assert roc_auc_score(later["engaged"], probability) > 0.65


def test_same_seed_same_probabilities_other_seed_other_ones(tables, train, fitted):
    again = fit(tables, train, validation_start=VALID_START)
    hcps = [hcp_id(i) for i in range(4)]
    np.testing.assert_allclose(again.score_channels(hcps), fitted.score_channels(hcps), rtol=1e-5, atol=1e-7)
    other = fit(tables, train, hybrid.HybridSettings(**{**SETTINGS.__dict__, "seed": 8}), VALID_START)
    assert np.abs(other.score_channels(hcps) - fitted.score_channels(hcps)).max() > 1e-4


def test_save_and_load_reproduce_the_probabilities(fitted, tables, train, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = hybrid.load(tmp_path / "model", train, engagement_data(tables))
    hcps = [hcp_id(i) for i in range(N_HCP)]
    np.testing.assert_allclose(loaded.score_channels(hcps), fitted.score_channels(hcps), rtol=1e-6, atol=1e-7)
    assert loaded.best_epoch_ == fitted.best_epoch_


def test_load_refuses_another_catalogue_or_cut_off(fitted, tables, train, tmp_path):
    fitted.save(tmp_path / "model")
    hcps, _, catalogue, _, interactions = tables
    from hcp_lib.split import training_data

    extra = pd.concat([catalogue, catalogue.iloc[:1].assign(content_id="39999999")], ignore_index=True)
    changed = training_data(interactions, hcps[["hcp_id", "specialty"]], extra, CUTOFF)
    with pytest.raises(hybrid.CatalogueChangedError, match=r"1 added \(e.g. '39999999'\)"):
        hybrid.load(tmp_path / "model", changed, engagement_data(tables))
    later = training_data(interactions, hcps[["hcp_id", "specialty"]], catalogue, CUTOFF + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="trained with cut-off"):
        hybrid.load(tmp_path / "model", later, engagement_data(tables))


def test_ablations_fit_and_score(tables, train):
    for name, (changes, _) in hybrid.ABLATIONS.items():
        settings = hybrid.HybridSettings(**{**SETTINGS.__dict__, **changes, "epochs": 1})
        model = fit(tables, train, settings)
        probability = model.score_channels([hcp_id(1)])
        assert np.isfinite(probability).all() and probability.shape == (1, N_ITEM, len(CHANNELS)), name
    no_topics = fit(tables, train, hybrid.HybridSettings(**{**SETTINGS.__dict__, "use_topics": False, "epochs": 1}))
    assert (no_topics.space_.topics == 0).all()


def test_errors_name_the_problem(tables, train):
    data = engagement_data(tables)
    with pytest.raises(ValueError, match="use_cf is true but no cf_model was given"):
        hybrid.HybridRecommender(data, None, SETTINGS).fit(train)
    with pytest.raises(ValueError, match="validation_start .* must be before the cut-off"):
        hybrid.HybridRecommender(data, TinyALS(), SETTINGS, validation_start=CUTOFF + pd.Timedelta(days=1)).fit(train)
    with pytest.raises(ValueError, match="sequence_encoder must be one of lstm, gru"):
        hybrid.HybridRecommender(data, TinyALS(), hybrid.HybridSettings(sequence_encoder="rnn")).fit(train)
    with pytest.raises(UnknownIdError, match="HCP id 'SYN99999999' is unknown"):
        hybrid.HybridRecommender(data, TinyALS(), SETTINGS).fit(train).score_channels(["SYN99999999"])


def test_settings_defaults_are_the_notebook_parameters_defaults():
    params = config.resolve_parameters("small")
    assert hybrid.HybridSettings.from_parameters(params) == hybrid.HybridSettings(seed=params["seed"])
    tiny = hybrid.HybridSettings.from_parameters(config.resolve_parameters("tiny"))
    assert tiny.sequence_length == config.PARAMS["max_seq_len"].default_for("tiny")
    assert tiny.sequence_encoder == "lstm"


@pytest.mark.slow
def test_notebook_05_writes_every_model_and_a_model_that_reloads(tiny_run):
    from hcp_lib import io
    from hcp_lib.config import RunDir
    from hcp_lib.stages import engagement as es
    from hcp_lib.stages import plan

    run = RunDir(tiny_run)
    registry = es.read_registry(tiny_run)
    assert registry[domain.HYBRID_NAME]["family"] == "hybrid" and registry[domain.TABULAR_NAME]["family"] == "tabular"
    assert {domain.ablation_name(a) for a in hybrid.ABLATIONS} <= set(registry)
    assert registry[domain.HYBRID_NAME]["validation_log_loss"] > 0
    params = io.read_json(run.manifest)["parameters"]
    inputs = es.read_inputs(tiny_run, params)
    for name in registry:
        lists = io.read_parquet(run.hybrid / "test_top_n" / f"{name}.parquet")
        assert set(lists["channel"]) <= set(CHANNELS) and lists["rank"].min() == 1
        assert lists.groupby("hcp_id")["score"].apply(lambda s: (np.diff(s.to_numpy()) <= 1e-12).all()).all()
        probs = io.read_parquet(run.hybrid / "test_exposure_probs" / f"{name}.parquet")
        assert set(probs["exposure_id"]) == set(inputs.test_rows["exposure_id"])
        assert probs["engagement_prob"].between(0, 1).all()
        candidates = plan.read_candidates(
            run.hybrid / "plan_candidates" / f"{name}.parquet", inputs.plan_context, inputs.plan_settings
        )
        assert len(candidates.table) > 0
    model = hybrid.load(run.hybrid / "model", inputs.stage.train_valid, inputs.data)
    saved = io.read_parquet(run.hybrid / "test_top_n" / "hybrid.parquet")
    first = saved[saved["rank"] == 1].head(20)
    probability = model.score_channels(first["hcp_id"].to_numpy())
    cols = model.content_ids_.get_indexer(first["content_id"])
    np.testing.assert_allclose(probability[np.arange(len(first)), cols].max(axis=1), first["score"], rtol=1e-5)


def test_learning_rate_falls_on_plateaus_and_the_refit_replays_it(tables, train):
    """With learning_rate_factor < 1 the rate of an epoch is the previous one's, multiplied by the
    factor when the previous epoch did not lower the best validation loss; the refit's settings
    (engagement.refit_settings) replay those rates epoch by epoch."""
    from dataclasses import replace

    from hcp_lib.stages import engagement as es

    settings = replace(SETTINGS, epochs=8, patience=8, learning_rate=0.05, learning_rate_factor=0.5, min_delta=0.0)
    validated = fit(tables, train, settings, validation_start=VALID_START)
    curve = validated.training_history_
    rates, losses = curve["learning_rate"].to_numpy(), curve["val_loss"].to_numpy()
    assert rates[0] == pytest.approx(0.05)
    improved, _ = _improvements(losses, 0.0)
    for e in range(1, len(curve)):
        assert rates[e] == pytest.approx(rates[e - 1] * (1.0 if improved[e - 1] else 0.5), rel=1e-6), e
    assert rates[-1] < rates[0]  # eight epochs at 0.05 on this small world reach a plateau
    assert validated.best_epoch_ == int(np.argmin(losses)) + 1  # min_delta 0: the lowest loss

    selection = pd.DataFrame({"epochs": [validated.best_epoch_]}, index=["lstm"])
    refit = es.refit_settings(settings, hybrid.VARIANTS, "lstm", selection, curve.assign(variant="lstm"))
    assert refit.epochs == validated.best_epoch_
    np.testing.assert_allclose(refit.learning_rate_schedule, rates[: validated.best_epoch_])
    refitted = fit(tables, train, refit)
    np.testing.assert_allclose(refitted.training_history_["learning_rate"], rates[: validated.best_epoch_], rtol=1e-6)
    # a constant rate needs no schedule; curves without the rates are refused
    constant = es.refit_settings(replace(settings, learning_rate_factor=1.0), hybrid.VARIANTS, "lstm", selection, curve)
    assert constant.learning_rate_schedule == ()
    with pytest.raises(ValueError, match="learning rates for its"):
        es.refit_settings(settings, hybrid.VARIANTS, "lstm", selection, curve.assign(variant="gru"))


def _improvements(losses: np.ndarray, min_delta: float) -> tuple[np.ndarray, int]:
    """Whether each epoch lowered the best loss so far by at least ``min_delta`` (the best moving
    only on such epochs), and the last such epoch (from 1): the rule of early stopping and of the
    plateaus, written out."""
    improved, best, last = np.zeros(len(losses), bool), np.inf, 0
    for e, loss in enumerate(losses):
        if loss < best - min_delta:
            improved[e], best, last = True, loss, e + 1
    return improved, last


def test_min_delta_ends_training_on_small_gains_and_keeps_the_last_real_one(tables, train):
    """With min_delta, an epoch that lowers the best validation loss by less than it counts as a
    plateau: the rate falls, patience runs out, and the weights kept (and the epoch the refit
    trains for) are those of the last epoch that gained at least min_delta."""
    from dataclasses import replace

    base = replace(SETTINGS, epochs=10, patience=1, learning_rate=0.05, learning_rate_factor=0.5)
    exact = fit(tables, train, replace(base, min_delta=0.0), validation_start=VALID_START)
    losses = exact.training_history_["val_loss"].to_numpy()
    gains = -np.diff(np.minimum.accumulate(losses))
    # a tolerance between the smallest and the largest gain, so that it changes the run
    min_delta = float(np.sqrt(gains[gains > 0].min() * gains.max())) if (gains > 0).sum() >= 2 else 0.5 * gains.max()
    tolerant = fit(tables, train, replace(base, min_delta=min_delta), validation_start=VALID_START)
    curve = tolerant.training_history_
    losses = curve["val_loss"].to_numpy()
    improved, last = _improvements(losses, min_delta)
    assert tolerant.best_epoch_ == last
    rates = curve["learning_rate"].to_numpy()
    for e in range(1, len(curve)):
        assert rates[e] == pytest.approx(rates[e - 1] * (1.0 if improved[e - 1] else 0.5), rel=1e-6), e
    # it stopped once patience (1) epochs in a row gained less than min_delta, or ran out of epochs
    assert len(curve) == base.epochs or (len(curve) - last == base.patience and not improved[-1])
    assert min_delta > 0
    # what the tolerance can cost: the kept epoch's loss is at most min_delta above the lowest
    assert losses[last - 1] <= losses.min() + min_delta + 1e-12


def test_learning_rate_settings_are_validated():
    with pytest.raises(ValueError, match=r"learning_rate_factor must be in \(0, 1\]"):
        hybrid.HybridSettings(learning_rate_factor=0.0).validate()
    with pytest.raises(ValueError, match="learning_rate_schedule must hold rates > 0"):
        hybrid.HybridSettings(learning_rate_schedule=(0.01, -1.0)).validate()
    with pytest.raises(ValueError, match="min_delta must be >= 0, got -0.1"):
        hybrid.HybridSettings(min_delta=-0.1).validate()
