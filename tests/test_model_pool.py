"""Engagement models fitted and scored side by side in worker processes (:class:`hcp_lib.stages.engagement.ModelPool`)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hcp_lib import io
from hcp_lib.models import hybrid, tabular
from hcp_lib.models.base import exclusion_mask
from hcp_lib.stages import engagement as es


@pytest.fixture(scope="module")
def inputs(tiny_run):
    params = io.read_json(tiny_run / "manifest.json")["parameters"]
    return es.read_inputs(tiny_run, params)


def test_fits_in_two_workers_come_back_as_fitted_models_and_agree(inputs):
    params = inputs.params
    settings = replace(hybrid.HybridSettings.from_parameters(params), sequence_encoder="lstm", epochs=2)
    jobs = {
        "refit_a": es.ModelJob(settings),
        "refit_b": es.ModelJob(settings),
        "validated": es.ModelJob(replace(settings, use_cf=False), validate=True),
        "trees": es.ModelJob(tabular.TabularSettings(max_iter=20, seed=7)),
    }
    stage = inputs.stage
    trees = tabular.TabularEngagement(
        inputs.data, es.cf_factory(inputs, 7)(), tabular.TabularSettings(max_iter=20, seed=7)
    ).fit(stage.train_valid)
    hcp_ids = stage.train_valid.hcp_ids.astype(str).to_numpy(dtype=object)
    exclude = exclusion_mask(hcp_ids, trees.content_ids_, stage.train_valid, released_by=stage.split.test_end)
    with es.ModelPool(inputs, workers=2) as pool:
        fits = es.fit_models(inputs, jobs, seed=7, pool=pool)
        spread = pool.score_channels(trees, hcp_ids, exclude)
        folder = pool.folder
    # the tree ensemble scored by two workers, a block of HCPs each, gives what it gives here
    np.testing.assert_allclose(spread, trees.score_channels(hcp_ids, exclude), rtol=0, atol=1e-7)
    assert spread.shape == (len(hcp_ids), len(trees.content_ids_), 5) and (spread[exclude] == 0).all()
    assert not folder.exists(), "the pool's temporary folder outlives it"
    assert list(fits) == list(jobs)
    a, b, validated = fits["refit_a"], fits["refit_b"], fits["validated"]
    # a refit trains exactly its epochs and has no validation log-loss; the validated fit has one
    assert a.validation_loss is None and a.best_epoch == 2 and len(a.training_history) == 2
    assert validated.validation_loss is not None and 0 < validated.validation_loss < 1
    assert validated.n_train_examples < a.n_train_examples
    # the challenger comes back in memory, with its rounds as best_epoch and no training curves
    trees_fit = fits["trees"]
    assert isinstance(trees_fit.model, tabular.TabularEngagement) and trees_fit.model.n_iter_ == 20
    assert trees_fit.best_epoch == 20 and trees_fit.training_history is None and trees_fit.validation_loss is None
    # the hybrids come back loaded, with the worker's fit summary
    model = a.model
    assert model.fit_seconds_ == a.fit_seconds and model.n_train_examples_ == a.n_train_examples
    hcp_ids = hcp_ids[:20]
    p_a, p_b = a.model.score_channels(hcp_ids), b.model.score_channels(hcp_ids)
    assert p_a.shape == (20, len(model.content_ids_), 5) and np.isfinite(p_a).all()
    # the same job in two workers (one TensorFlow thread each) gives the same model
    np.testing.assert_allclose(p_a, p_b, rtol=0, atol=1e-6)
    assert np.abs(validated.model.score_channels(hcp_ids) - p_a).max() > 1e-4  # another model, other scores


def test_summaries_only_and_errors(inputs):
    settings = replace(hybrid.HybridSettings.from_parameters(inputs.params), sequence_encoder="gru", epochs=1)
    fits = es.fit_models(inputs, {"here": es.ModelJob(settings, validate=True)}, seed=7, keep_models=False)
    assert fits["here"].model is None and fits["here"].validation_loss > 0
    with pytest.raises(ValueError, match="workers must be >= 1"):
        es.ModelPool(inputs, workers=0)
    with pytest.raises(ValueError, match="needs inputs from read_inputs"):
        es.ModelPool(replace(inputs, run_dir=None), workers=1)


def test_outputs_computed_in_the_workers_match_those_computed_here(inputs):
    settings = replace(hybrid.HybridSettings.from_parameters(inputs.params), sequence_encoder="lstm", epochs=1)
    jobs = {"tabular": es.ModelJob(tabular.TabularSettings(max_iter=15, seed=7)), "hybrid": es.ModelJob(settings)}
    with es.ModelPool(inputs, workers=2) as pool:
        fits = es.fit_models(inputs, jobs, seed=7, pool=pool, keep_models=("hybrid",), outputs_n=5)
        with pytest.raises(ValueError, match="outputs_n needs jobs fitted before the test window"):
            es.fit_models(inputs, {"v": es.ModelJob(settings, validate=True)}, seed=7, pool=pool, outputs_n=5)
        # notebook 05's way: the challenger refitted first, its cells scored in the workers behind the hybrids
        challenger = es.submit_fits(inputs, {"tabular": jobs["tabular"]}, seed=7, pool=pool)
        hybrids = es.submit_fits(inputs, {"hybrid": jobs["hybrid"]}, seed=7, pool=pool, outputs_n=5)
        spread = es.refits_with_outputs(inputs, challenger, hybrids, 5, pool=pool)
    assert list(spread) == ["tabular", "hybrid"] and spread["tabular"].model is not None
    pd.testing.assert_frame_equal(spread["tabular"].outputs.lists, fits["tabular"].outputs.lists)
    np.testing.assert_allclose(
        spread["hybrid"].outputs.exposure_probs["engagement_prob"],
        fits["hybrid"].outputs.exposure_probs["engagement_prob"],
        atol=1e-6,
    )
    # only the kept model comes back; both come with their outputs
    assert fits["tabular"].model is None and fits["hybrid"].model is not None
    for fit in fits.values():
        lists = fit.outputs.lists
        assert lists.groupby("hcp_id")["rank"].max().max() == 5 and lists["score"].between(0, 1).all()
        assert len(fit.outputs.exposure_probs) == len(inputs.test_rows)
        assert len(fit.outputs.candidates.table) > 0 and fit.outputs.seconds["score_seconds"] > 0
    # the hybrid's outputs, computed in its worker, are those of the model that came back
    here = es.model_outputs(fits["hybrid"].model, inputs, 5, name="hybrid")
    np.testing.assert_allclose(
        fits["hybrid"].outputs.exposure_probs["engagement_prob"], here.exposure_probs["engagement_prob"], atol=1e-5
    )
    # fitted here, one after the other, the challenger's outputs are the same (its trees are exact)
    alone = es.fit_models(inputs, {"tabular": jobs["tabular"]}, seed=7, keep_models=False, outputs_n=5)["tabular"]
    pd.testing.assert_frame_equal(alone.outputs.lists, fits["tabular"].outputs.lists, check_exact=False, atol=1e-7)
    # and without a pool the same refits run in this process, on its two lanes
    here = es.refits_with_outputs(
        inputs,
        es.submit_fits(inputs, {"tabular": jobs["tabular"]}, seed=7),
        es.submit_fits(inputs, {"hybrid": replace(jobs["hybrid"])}, seed=7, outputs_n=5),
        5,
    )
    assert list(here) == ["tabular", "hybrid"] and here["hybrid"].outputs is not None
    pd.testing.assert_frame_equal(here["tabular"].outputs.lists, alone.outputs.lists, check_exact=False, atol=1e-7)


def test_without_a_pool_each_kind_of_model_fits_on_its_own_thread(inputs, monkeypatch):
    import threading

    settings = replace(hybrid.HybridSettings.from_parameters(inputs.params), sequence_encoder="lstm", epochs=1)
    trees = tabular.TabularSettings(max_iter=10, seed=7)
    jobs = {
        "hybrid": es.ModelJob(settings, validate=True),
        "trees_a": es.ModelJob(trees, validate=True),
        "trees_b": es.ModelJob(replace(trees, max_leaf_nodes=7), validate=True),
    }
    threads = {}
    fit_one = es._fit_one

    def recording(inputs_, job, seed):
        threads.setdefault(threading.current_thread().name.split("_")[0], []).append(job)
        return fit_one(inputs_, job, seed)

    monkeypatch.setattr(es, "_fit_one", recording)
    fits = es.submit_fits(inputs, jobs, seed=7, keep_models=False).result()
    assert list(fits) == list(jobs)
    # the challenger's two fits one after the other on its lane, the hybrid on the other
    assert threads == {"tabular-fits": [jobs["trees_a"], jobs["trees_b"]], "hybrid-fits": [jobs["hybrid"]]}
    # a fit on a lane is the fit run alone: the same boosting and validation log-loss
    alone = fit_one(inputs, jobs["trees_b"], 7)
    assert fits["trees_b"].best_epoch == alone.n_iter_
    assert fits["trees_b"].validation_loss == pytest.approx(alone.validation_loss_, rel=1e-9)
    assert fits["hybrid"].validation_loss > 0 and fits["hybrid"].model is None
