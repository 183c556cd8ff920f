"""Tests of the synthetic world (hcp_lib.world.synth and its helpers) at the tiny scale."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcp_lib import config, domain, io
from hcp_lib.stages import pubmed, synthesis
from hcp_lib.world import simulate, synth
from hcp_lib.world.entities import is_valid_npi, make_hcp_ids


@pytest.fixture(scope="module")
def articles() -> pd.DataFrame:
    cleaned, _ = pubmed.clean_articles(pubmed.load_snapshot())
    return cleaned


def _tiny_params(**overrides) -> dict:
    values = config.resolve_parameters(scale="tiny")
    return {**{name: values[name] for name in synth.PARAM_NAMES}, **overrides}


def _run_dir(tmp: Path, articles: pd.DataFrame) -> Path:
    io.write_parquet(articles, pubmed.articles_path(tmp), pubmed.ARTICLE_SCHEMA)
    return tmp


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, articles) -> Path:
    run_dir = _run_dir(tmp_path_factory.mktemp("tiny"), articles)
    synthesis.build_world(run_dir, seed=7, **_tiny_params(export_csv=True))
    return run_dir


@pytest.fixture(scope="module")
def world(tiny_run) -> synth.World:
    return synth.load_world(tiny_run)


def test_tables_follow_the_contract_and_schemas(world, tiny_run):
    contract = {
        "hcps": "hcp_id first_name last_name credential specialty taxonomy_code state city zip region practice_setting "
        "years_in_practice age prescribing_decile digital_affinity peer_group health_system opted_out",
        "patients": "patient_id hcp_id age sex conditions primary_area",
        "content": "content_id pmid title therapeutic_area content_type release_date approved_specialties series_id "
        "series_part",
        "campaigns": "campaign_id content_id channel target_segment start_date end_date capacity_per_week cost_per_touch",
        "interactions": "exposure_id hcp_id content_id campaign_id channel exposed_at propensity opened clicked "
        "dwell_seconds converted engagement_score engaged true_engagement_prob",
    }
    for name, columns in contract.items():
        table = getattr(world, name)
        assert set(columns.split()) <= set(table.columns), name
        io.validate(table, synth.SCHEMAS[name], name)
    assert len(world.hcps) == 200
    assert set(world.content["content_id"]) == set(pubmed.read_articles(tiny_run)["pmid"])
    assert set(world.interactions["channel"]) == set(domain.CHANNELS)
    assert (world.interactions["exposed_at"] == world.interactions["exposed_at"].dt.floor("min")).all()
    assert world.horizon_end - world.horizon_start == pd.Timedelta(days=world.params["parameters"]["horizon_days"])
    assert world.test_start - world.validation_start == pd.Timedelta(weeks=4)
    assert (world.content["release_date"] >= world.test_start).any()  # some items only in the test period
    assert (tiny_run / "world" / "csv" / "hcp_interaction_data.csv").exists()


def test_npi_check():
    assert is_valid_npi("1234567893") and not is_valid_npi("1234567890")  # CMS's published example NPI
    assert not is_valid_npi("123456789") and not is_valid_npi("SYN12345678") and not is_valid_npi("12345678930")


def test_generated_hcp_ids_are_synthetic_and_never_npis():
    ids = pd.Series(make_hcp_ids(np.random.default_rng(3), 50_000))
    assert ids.is_unique and len(ids) == 50_000
    assert ids.str.match(domain.HCP_ID_PATTERN).all()
    assert (
        ids.str.startswith(domain.HCP_ID_PREFIX).all()
        and ids.str.len().eq(len(domain.HCP_ID_PREFIX) + domain.HCP_ID_DIGITS).all()
    )
    assert not ids.str.fullmatch(r"\d{10}").any()
    assert not any(is_valid_npi(i) for i in ids)
    digits = ids.str.replace(r"\D", "", regex=True)  # even a CRM that drops the letters gets no NPI
    assert not digits.str.len().eq(10).any() and not any(is_valid_npi(d) for d in digits)
    # same seed, same ids
    assert (make_hcp_ids(np.random.default_rng(3), 50_000) == ids.to_numpy()).all()


def test_world_hcp_ids_are_synthetic(world):
    ids = world.hcps["hcp_id"].astype(str)
    assert ids.is_unique and ids.str.match(domain.HCP_ID_PATTERN).all()
    assert not any(is_valid_npi(i) for i in ids)
    for name in ("patients", "interactions"):
        assert getattr(world, name)["hcp_id"].astype(str).str.match(domain.HCP_ID_PATTERN).all(), name


def test_no_exposure_of_unapproved_content_or_opted_out_hcps(world):
    inter = world.interactions.merge(world.hcps[["hcp_id", "specialty", "opted_out_at"]], on="hcp_id")
    inter = inter.merge(world.content[["content_id", "approved_specialties"]], on="content_id")
    approved = [s in a.split("; ") for s, a in zip(inter["specialty"], inter["approved_specialties"])]
    assert all(approved)
    assert not (inter["exposed_at"] >= inter["opted_out_at"]).any()
    per_day = inter.groupby(["hcp_id", inter["exposed_at"].dt.date]).size()
    assert per_day.max() == 1
    assert inter["propensity"].between(0, 1, inclusive="right").all()


def test_responses_are_consistent_with_the_label(world):
    inter = world.interactions
    assert inter.loc[inter["engaged"], "opened"].all()
    assert not inter.loc[inter["converted"], "engaged"].eq(False).any()
    assert (inter.loc[~inter["opened"], "dwell_seconds"] == 0).all()
    email = inter.loc[inter["channel"] == "email"]
    assert (email["clicked"] == email["engaged"]).all()
    assert 0.03 < email["engaged"].mean() < 0.2


def test_oracle_reproduces_logged_probabilities(world):
    inter = world.interactions
    recomputed = synth.true_engagement_prob(
        world, inter["hcp_id"], inter["content_id"], inter["channel"], inter["exposed_at"]
    )
    np.testing.assert_allclose(recomputed, inter["true_engagement_prob"], rtol=0, atol=1e-9)


def test_matrix_matches_row_queries(world):
    hcp_ids = world.hcps["hcp_id"].iloc[:7].to_numpy()
    content_ids = world.content["content_id"].iloc[::50].to_numpy()
    matrix = synth.true_engagement_matrix(world, hcp_ids, world.test_start, content_ids, max_cells=50)
    assert matrix.shape == (7, len(content_ids), len(domain.CHANNELS)) and matrix.dtype == np.float32
    h, c, k = np.meshgrid(np.arange(7), np.arange(len(content_ids)), np.arange(len(domain.CHANNELS)), indexing="ij")
    rows = synth.true_engagement_prob(
        world, hcp_ids[h.ravel()], content_ids[c.ravel()], np.array(domain.CHANNELS)[k.ravel()], world.test_start
    )
    np.testing.assert_allclose(matrix.ravel(), rows, atol=1e-6)
    full = synth.true_engagement_matrix(world, hcp_ids[:2], world.test_start)
    assert full.shape == (2, len(world.content), len(domain.CHANNELS))


def test_history_lowers_the_probability_of_a_repeat(world):
    """An item the HCP engaged with is worth less afterwards (consumed penalty), other things equal."""
    row = world.interactions.loc[world.interactions["engaged"]].iloc[0]
    before = synth.true_engagement_prob(
        world, [row["hcp_id"]], [row["content_id"]], [row["channel"]], row["exposed_at"]
    )
    after = synth.true_engagement_prob(
        world, [row["hcp_id"]], [row["content_id"]], [row["channel"]], row["exposed_at"] + pd.Timedelta(minutes=1)
    )
    assert after[0] < before[0]


def test_unknown_ids_are_named(world):
    with pytest.raises(KeyError, match="unknown channel 'fax'"):
        synth.true_engagement_prob(
            world, world.hcps["hcp_id"].iloc[:1], world.content["content_id"].iloc[:1], ["fax"], world.test_start
        )


def test_same_seed_gives_byte_identical_files(tmp_path, articles, tiny_run):
    run_dir = _run_dir(tmp_path, articles)
    synthesis.build_world(run_dir, seed=7, **_tiny_params(export_csv=True))
    files = sorted(p.name for p in (tiny_run / "world").glob("*.*"))
    assert len(files) == len(synth.TABLE_FILES) + len(synth.TRUTH_FILES)
    for name in files:
        assert (run_dir / "world" / name).read_bytes() == (tiny_run / "world" / name).read_bytes(), name


def test_planted_signal_is_learnable(articles):
    """On the temporal hold-out the truth ranks the test exposures far better than popularity."""
    few_articles = articles.groupby("therapeutic_area", sort=False).head(15)
    world = synth.generate_world(few_articles, _tiny_params(n_hcps=1000), seed=3)
    result = synth.ranking_check(world)
    print(
        f"NDCG@10 truth {result['exposed_ndcg@10_truth']:.3f}, popularity {result['exposed_ndcg@10_popularity']:.3f}, "
        f"random {result['exposed_ndcg@10_random']:.3f}; AUC truth {result['auc_truth']:.3f}, "
        f"popularity {result['auc_popularity']:.3f}"
    )
    truth, popularity, random = (result[f"exposed_ndcg@10_{n}"] for n in ("truth", "popularity", "random"))
    assert truth > popularity + 0.05
    assert truth - random > 2 * (popularity - random)
    assert result["auc_truth"] > result["auc_popularity"] + 0.1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_hcps": -5}, r"parameter 'n_hcps': got -5; expected an integer in \[10, 2000000\]"),
        ({"base_rate_email": 1.5}, r"parameter 'base_rate_email': got 1.5; expected a number in \[0, 1\]"),
        ({"opt_out_rate": -0.1}, r"parameter 'opt_out_rate'"),
        ({"world_start": "next monday"}, r"parameter 'world_start'"),
        ({"horizon_days": 60}, r"parameter 'horizon_days': got 60; .* at least 84"),
        ({"n_hcp": 10}, r"unknown synthesis parameter 'n_hcp'"),
    ],
)
def test_bad_parameters_fail_before_writing(tmp_path, articles, override, message):
    run_dir = _run_dir(tmp_path, articles)
    with pytest.raises(config.ParameterError, match=message):
        synthesis.build_world(run_dir, seed=1, **_tiny_params(**override))
    assert not (run_dir / "world").exists()


def test_empty_article_table_fails_before_writing(tmp_path, articles):
    run_dir = _run_dir(tmp_path, articles.iloc[:0])
    with pytest.raises(io.DataValidationError, match="pubmed.parquet: the article table is empty"):
        synthesis.build_world(run_dir, seed=1, **_tiny_params())
    assert not (run_dir / "world").exists()


def test_specialty_without_approved_content_fails_before_writing(tmp_path, articles):
    run_dir = _run_dir(tmp_path, articles.loc[articles["therapeutic_area"] == "oncology"])
    with pytest.raises(io.DataValidationError, match="specialty 'cardiology' has no approved content"):
        synthesis.build_world(run_dir, seed=1, **_tiny_params())
    assert not (run_dir / "world").exists()


def test_logged_propensities_are_the_simulators_own_probabilities(articles, monkeypatch):
    """The logged BAU ``propensity`` of a day-0 exposure is the probability the simulator used to draw it.

    On the first simulated day there is no history (no follow-ups, no fatigue state), so the
    probability of each (HCP, content, channel) action is fixed by the world; only the rng
    draws differ. We replay day 0 ``R`` times with independent rngs and check the logged
    propensities against the observed frequencies. The world is tiny (200 HCPs, 15 articles
    per area) and uses the maximum BAU touch rate: this concentrates the day-0 probability
    on few actions (so the runs see most of it and the check has power against a propensity
    off by ~10%, per channel against a factor like the capacity thinning left out) and makes
    the ``min(rate * weekday_share, 1)`` clip bind; the capacity thinning binds on every
    channel but e-mail anyway. So every factor of the logged product is exercised.
    """
    simulate_exposures = simulate.simulate_exposures
    signature = inspect.signature(simulate_exposures)
    captured = {}

    def spy(rng, *args, **kwargs):  # records the inputs (and the rng state) the world really used
        captured["state"] = copy.deepcopy(rng.bit_generator.state)
        captured["bit_generator"] = type(rng.bit_generator)
        captured["arguments"] = signature.bind(rng, *args, **kwargs).arguments
        return simulate_exposures(rng, *args, **kwargs)

    monkeypatch.setattr(simulate, "simulate_exposures", spy)
    few_articles = articles.groupby("therapeutic_area", sort=False).head(15)
    world = synth.generate_world(
        few_articles, _tiny_params(touches_per_hcp_week=5.0, horizon_days=56, world_holdout_weeks=1), seed=11
    )
    monkeypatch.undo()
    keys = ["hcp_idx", "content_idx", "channel_idx"]
    arguments = captured["arguments"]
    day0_share = simulate.WEEKDAY_SHARE[arguments["start_weekday"]]
    assert (simulate.touch_rates(arguments["deciles"], 5.0) * day0_share > 1).any()  # the clip binds

    def day0(rng: np.random.Generator) -> pd.DataFrame:
        arguments = {**captured["arguments"], "rng": rng, "horizon_days": 1}
        return simulate_exposures(**arguments)

    # 1. The 1-day replay with the world's own rng state gives exactly the world's saved day-0 log
    #    (day 0 draws the same numbers whatever the horizon), so the runs below simulate the day
    #    the world saved, and the world saved the propensities the simulator logged.
    replay_rng = np.random.Generator(captured["bit_generator"]())
    replay_rng.bit_generator.state = captured["state"]
    replay = day0(replay_rng)
    saved = world.interactions.loc[world.interactions["exposed_at"] < world.horizon_start + pd.Timedelta(days=1)]
    replay_ids = pd.DataFrame(
        {
            "hcp_id": world.hcps["hcp_id"].astype(str).to_numpy()[replay["hcp_idx"]],
            "content_id": world.content["content_id"].astype(str).to_numpy()[replay["content_idx"]],
            "channel": np.array(domain.CHANNELS)[replay["channel_idx"]],
            "exposed_at": world.horizon_start + pd.to_timedelta(replay["minute"].to_numpy(np.int64), unit="min"),
            "replayed": replay["propensity"].to_numpy(float),
        }
    )
    saved = saved.astype({"hcp_id": str, "content_id": str, "channel": str})
    matched = saved.merge(
        replay_ids,
        on=["hcp_id", "content_id", "channel", "exposed_at"],
        how="outer",
        validate="one_to_one",
        indicator=True,
    )
    assert len(saved) > 0 and (matched["_merge"] == "both").all()
    np.testing.assert_allclose(matched["propensity"], matched["replayed"], rtol=0, atol=1e-12)

    # 2. R independent replays of day 0.
    R = 1000
    runs = [day0(np.random.default_rng(s)).assign(run=i) for i, s in enumerate(np.random.SeedSequence(2024).spawn(R))]
    log = pd.concat(runs, ignore_index=True)
    assert (log["minute"] < 1440).all() and len(log) > 0
    per_action = log.groupby(keys)["propensity"].agg(["min", "max", "size"])
    # the same action on day 0 is always logged with the same propensity
    assert (per_action["max"] - per_action["min"]).max() <= 1e-12
    assert per_action["min"].gt(0).all() and per_action["max"].le(1).all()
    # each HCP is touched at most once a day, so its actions are mutually exclusive outcomes
    assert not log.duplicated(["run", "hcp_idx"]).any()

    # 3. Frequencies: actions seen in the first half of the runs, counted in the second half
    #    (selecting on the same runs that are counted would bias the counts upwards).
    first, second = log["run"] < R // 2, log["run"] >= R // 2
    R2 = R - R // 2
    p = log.loc[first].groupby(keys)["propensity"].first()
    count = log.loc[second].groupby(keys).size().reindex(p.index, fill_value=0)
    expected = R2 * p
    # Exact variance of the summed count: HCPs are independent on day 0, and an HCP's selected
    # actions are exclusive, so its count over R2 runs is Binomial(R2, q_h = sum of their p).
    q = p.groupby(level="hcp_idx").sum()
    assert q.le(1 + 1e-12).all()  # an HCP's action probabilities cannot sum above 1
    z = (count.sum() - expected.sum()) / np.sqrt((R2 * q * (1 - q)).sum())
    assert abs(z) < 4, (
        f"observed {count.sum()} exposures of the selected actions, expected {expected.sum():.1f}; z = {z:.2f}"
    )
    # per channel, exact variance as above (binomial per HCP and channel); each channel must have
    # enough selected mass for the check to mean something
    hcp_channel = p.groupby(level=["hcp_idx", "channel_idx"]).sum()
    channels = pd.DataFrame(
        {
            "observed": count.groupby(level="channel_idx").sum(),
            "expected": expected.groupby(level="channel_idx").sum(),
            "variance": (R2 * hcp_channel * (1 - hcp_channel)).groupby(level="channel_idx").sum(),
        }
    )
    channels["z"] = (channels["observed"] - channels["expected"]) / np.sqrt(channels["variance"])
    assert len(channels) == len(domain.CHANNELS) and channels["expected"].min() > 50, channels.to_string()
    assert channels["z"].abs().max() < 5, channels.to_string()
    # per propensity decile: observed vs expected within 5 binomial standard errors
    # (sum of R2 p (1 - p) over the bin's actions; ignoring the negative correlation of
    # one HCP's exclusive actions only overstates the variance, so the bound is conservative)
    decile = pd.qcut(p.rank(method="first"), 10, labels=False)
    bins = pd.DataFrame({"observed": count, "expected": expected, "variance": expected * (1 - p), "decile": decile})
    bins = bins.groupby("decile").sum()
    bins["z"] = (bins["observed"] - bins["expected"]) / np.sqrt(bins["variance"])
    assert bins["expected"].min() > 100  # each bin has enough mass for the normal approximation
    assert bins["z"].abs().max() < 5, bins.to_string()

    # 4. Total mass: the mean number of exposures per run is the sum of p over *all* actions with
    #    p > 0; the log shows only the observed ones. Their mass cannot exceed the total, and the
    #    unseen mass is estimated by Good-Turing (actions seen exactly once / R, whose bias
    #    sum p^2 (1-p)^(R-1) is negligible here). Tolerance: 5 standard errors of the mean count
    #    per run plus 5 of the Good-Turing term (~sqrt(N1) / R).
    per_run = log.groupby("run").size().reindex(range(R), fill_value=0)
    observed_mass = per_action["min"].sum()
    n_once = int((per_action["size"] == 1).sum())
    tolerance = 5 * (per_run.std() / np.sqrt(R) + np.sqrt(n_once) / R)
    assert observed_mass <= per_run.mean() + tolerance
    assert abs(observed_mass + n_once / R - per_run.mean()) < tolerance, (
        f"mean exposures per run {per_run.mean():.2f}; logged mass of the observed actions {observed_mass:.2f} "
        f"+ Good-Turing unseen mass {n_once / R:.2f}; tolerance {tolerance:.2f}"
    )
