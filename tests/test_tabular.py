"""The tabular challenger on the hand-made world: it learns the planted signal, its
probabilities have the interface's shape, and bad settings are refused."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from hcp_lib.domain import CHANNELS
from hcp_lib.models import tabular
from tests.engagement_fixtures import (
    CUTOFF,
    END,
    N_ITEM,
    VALID_START,
    TinyALS,
    engagement_data,
    hcp_id,
    make_tables,
    specialty_of,
    topic_of,
    train_before,
)

SETTINGS = tabular.TabularSettings(max_iter=60, max_leaf_nodes=7, min_samples_leaf=10, learning_rate=0.1)


@pytest.fixture(scope="module")
def tables():
    return make_tables()


@pytest.fixture(scope="module")
def fitted(tables):
    return tabular.TabularEngagement(engagement_data(tables), TinyALS(), SETTINGS).fit(train_before(tables))


def test_validation_start_records_the_log_loss_and_rounds(tables):
    model = tabular.TabularEngagement(engagement_data(tables), TinyALS(), SETTINGS, validation_start=VALID_START)
    model.fit(train_before(tables))
    assert 0 < model.validation_loss_ < 0.7
    assert 1 <= model.n_iter_ <= SETTINGS.max_iter
    assert model.n_valid_examples_ > 0 and model.n_train_examples_ > model.n_valid_examples_


def test_probabilities_have_the_interface_shape_and_follow_the_planted_taste(fitted):
    hcps = [hcp_id(i) for i in range(8)]
    probability = fitted.score_channels(hcps)
    assert probability.shape == (8, N_ITEM, len(CHANNELS))
    assert ((probability > 0) & (probability < 1)).all()
    np.testing.assert_allclose(fitted.score(hcps), probability.max(axis=2), rtol=1e-6)
    # taste: matching items (topic = specialty) beat the others on average
    match = np.array(
        [
            [topic_of(j) == ("cardiology", "endocrinology").index(specialty_of(i)) for j in range(N_ITEM)]
            for i in range(8)
        ]
    )
    warm = np.arange(N_ITEM) < N_ITEM - 2
    best = probability.max(axis=2)
    assert best[match & warm].mean() > best[~match & warm].mean() + 0.05


def test_excluded_cells_are_skipped_and_hold_zero(fitted):
    hcps = [hcp_id(i) for i in range(3)]
    exclude = np.zeros((3, N_ITEM), bool)
    exclude[:, :4] = True
    partial = fitted.score_channels(hcps, exclude)
    whole = fitted.score_channels(hcps)
    assert (partial[:, :4] == 0).all()
    np.testing.assert_allclose(partial[:, 4:], whole[:, 4:], rtol=1e-6)
    with pytest.raises(ValueError, match="exclude has shape"):
        fitted.score_channels(hcps, exclude[:, :3])


def test_exposure_probabilities_rank_later_exposures(fitted, tables):
    *_, interactions = tables
    later = interactions[(interactions["exposed_at"] >= CUTOFF) & (interactions["exposed_at"] < END)]
    probability = fitted.exposure_probabilities(later, interactions)
    assert probability.shape == (len(later),) and ((probability > 0) & (probability < 1)).all()
    assert roc_auc_score(later["engaged"], probability) > 0.65


def test_flat_rows_name_every_column(fitted):
    names = tabular.feature_names(fitted.space_)
    queries = pd.DataFrame(
        {
            "hcp_id": [hcp_id(0)],
            "content_id": [fitted.content_ids_[0]],
            "channel": ["email"],
            "exposed_at": [CUTOFF],
            "engaged": [False],
        }
    )
    from hcp_lib.models.engagement import exposure_queries

    row = tabular.flat_rows(fitted.inputs(exposure_queries(fitted.space_, queries)))
    assert row.shape == (1, len(names)) and len(set(names)) == len(names)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"learning_rate": 0.0}, "learning_rate must be in"),
        ({"max_leaf_nodes": 1}, "max_leaf_nodes must be an integer >= 2"),
        ({"l2_regularization": -1.0}, "l2_regularization must be >= 0"),
    ],
)
def test_bad_settings_are_refused(tables, change, message):
    settings = tabular.TabularSettings(**{**SETTINGS.__dict__, **change})
    with pytest.raises(ValueError, match=message):
        tabular.TabularEngagement(engagement_data(tables), None, settings).fit(train_before(tables))


# --- scoring every cell: compiled trees, threads, the scikit-learn fallback -------------------------


@pytest.fixture()
def scorer_pair(tables):
    """Two copies of one fit, blocks of two HCPs: one scoring with compiled trees on two threads,
    one with scikit-learn on one thread."""
    data, train = engagement_data(tables), train_before(tables)
    compiled = tabular.TabularEngagement(data, TinyALS(), SETTINGS, hcp_chunk=2, n_threads=2).fit(train)
    reference = tabular.TabularEngagement(data, TinyALS(), SETTINGS, hcp_chunk=2, n_threads=1, compile_trees=False).fit(
        train
    )
    return compiled, reference


def test_compiled_trees_on_threads_give_scikit_learn_probabilities(scorer_pair):
    compiled, reference = scorer_pair
    hcps = [hcp_id(i) for i in range(8)]
    exclude = np.zeros((8, N_ITEM), bool)
    exclude[::3, 1::2] = True
    exclude[:2] = True  # the first block has no cell: the trees compile on the next one
    expected = reference.score_channels(hcps, exclude)
    assert reference.scoring_engine_ == "scikit-learn"
    got = compiled.score_channels(hcps, exclude)
    assert compiled.scoring_engine_ == "compiled trees (tl2cgen)"
    # float32 cells: the sum of the same leaf values in another order
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert (got[exclude] == 0).all() and (got[~exclude] > 0).all()


def test_a_pickled_copy_loads_the_compiled_library_and_the_folder_goes_with_the_original(scorer_pair):
    import pickle

    compiled, _ = scorer_pair
    compiled.score_channels([hcp_id(0)])  # compiles
    trees = compiled.compiled_
    assert trees.path.is_file()
    rows = np.zeros((50, compiled.classifier_.n_features_in_), np.float32)
    rows[:, len(tabular.CATEGORICAL) :] = np.random.default_rng(0).uniform(0, 5, (50, rows.shape[1] - 6))
    copy = pickle.loads(pickle.dumps(trees))  # what a worker process receives
    assert copy.path == trees.path and copy._cleanup is None
    np.testing.assert_allclose(copy.predict(rows), trees.predict(rows), rtol=0, atol=0)
    np.testing.assert_allclose(trees.predict(rows), compiled.classifier_.predict_proba(rows)[:, 1], atol=1e-9)
    trees._cleanup()
    assert not trees.path.parent.exists()


def test_without_a_c_compiler_scikit_learn_scores_and_a_warning_says_so(scorer_pair, monkeypatch):
    compiled, reference = scorer_pair
    monkeypatch.setattr(tabular, "_c_toolchain", lambda: None)
    hcps = [hcp_id(i) for i in range(4)]
    with pytest.warns(UserWarning, match="no C compiler .* scored by scikit-learn"):
        got = compiled.score_channels(hcps)
    assert compiled.scoring_engine_ == "scikit-learn" and compiled.compile_failed_
    np.testing.assert_allclose(got, reference.score_channels(hcps), atol=1e-6)


def test_compiled_trees_that_disagree_with_scikit_learn_are_not_used(scorer_pair, monkeypatch):
    compiled, reference = scorer_pair
    monkeypatch.setattr(tabular, "COMPILED_TOLERANCE", -1.0)  # no difference is accepted
    hcps = [hcp_id(i) for i in range(4)]
    with pytest.warns(UserWarning, match=r"could not be compiled \(RuntimeError: the compiled trees differ"):
        got = compiled.score_channels(hcps)
    assert compiled.scoring_engine_ == "scikit-learn"
    np.testing.assert_allclose(got, reference.score_channels(hcps), atol=1e-6)


def test_scoring_threads_follow_the_openmp_budget(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert tabular.scoring_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert tabular.scoring_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert tabular.scoring_threads() >= 1


def test_compiled_trees_read_float64_and_unseen_categories_as_scikit_learn_does():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 4))
    x[:, 0] = rng.choice([0.0, 2.0, 3.0], 4000)  # categories 1 and 4 never seen in fit
    y = (x[:, 1] + (x[:, 0] == 2) + rng.normal(size=4000) > 0.5).astype(int)
    classifier = HistGradientBoostingClassifier(max_iter=30, categorical_features=[True, False, False, False])
    classifier.fit(x, y)
    rows = rng.normal(size=(500, 4))
    rows[:, 0] = rng.choice([0.0, 1.0, 2.0, 3.0, 4.0, np.nan], 500)
    rows[:5, 1] = classifier._bin_mapper.bin_thresholds_[1][:5]  # values on a threshold: float64 matters
    compiled = tabular.CompiledTrees.build(classifier, rows[:100])
    assert compiled is not None and [c for c, _ in compiled.seen] == [0]
    np.testing.assert_allclose(compiled.predict(rows), classifier.predict_proba(rows)[:, 1], rtol=0, atol=1e-12)
    # the quantized trees (COMPILE_PARAMS) place every threshold, and the floats either side of
    # it, on the same side of each split as scikit-learn
    thresholds = classifier._bin_mapper.bin_thresholds_[1]
    edges = np.concatenate([thresholds, np.nextafter(thresholds, -np.inf), np.nextafter(thresholds, np.inf)])
    on_edges = np.tile(rows[:1], (len(edges), 1))
    on_edges[:, 1] = edges
    np.testing.assert_allclose(compiled.predict(on_edges), classifier.predict_proba(on_edges)[:, 1], rtol=0, atol=1e-12)
    compiled._cleanup()
