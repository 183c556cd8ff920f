"""Off-policy estimators: unbiased where the maths says so, refused inputs, the chapter's outputs."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from hcp_lib.stages import ope

CHANNELS3 = ["email", "webinar", "rep_visit"]
H, C, DAYS, TOUCH = 300, 12, 28, 0.3


def bandit(seed: int, logging=None, rewards=None):
    """A logged window of a contextual bandit whose truth is known: each HCP-day, the logging
    policy touches with probability TOUCH and then draws (content, channel) from ``logging``."""
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(0)
    rewards = world.uniform(0.02, 0.5, size=(H, C, 3)) if rewards is None else rewards
    logging = world.dirichlet(np.ones(C * 3), size=H).reshape(H, C, 3) if logging is None else logging
    rows = []
    flat = logging.reshape(H, -1)
    for day in range(DAYS):
        for h in np.flatnonzero(rng.random(H) < TOUCH):
            a = rng.choice(C * 3, p=flat[h])
            c, k = divmod(int(a), 3)
            rows.append(
                (
                    f"h{h:03d}",
                    f"c{c:02d}",
                    CHANNELS3[k],
                    pd.Timestamp("2025-03-03") + pd.Timedelta(days=day),
                    TOUCH * logging[h, c, k],
                    bool(rng.random() < rewards[h, c, k]),
                )
            )
    return pd.DataFrame(rows, columns=ope.LOG_COLUMNS), rewards, logging


def best_policy(rewards, model_bias: float = 1.0) -> pd.DataFrame:
    best = rewards.reshape(H, -1).argmax(axis=1)
    return pd.DataFrame(
        {
            "hcp_id": [f"h{h:03d}" for h in range(H)],
            "content_id": [f"c{b // 3:02d}" for b in best],
            "channel": [CHANNELS3[b % 3] for b in best],
            "true_probability": rewards.reshape(H, -1).max(1),
            "model_probability": np.minimum(rewards.reshape(H, -1).max(1) * model_bias, 1.0),
        }
    )


def uniform_policy(rewards) -> pd.DataFrame:
    h, c, k = np.meshgrid(np.arange(H), np.arange(C), np.arange(3), indexing="ij")
    return pd.DataFrame(
        {
            "hcp_id": [f"h{i:03d}" for i in h.ravel()],
            "content_id": [f"c{i:02d}" for i in c.ravel()],
            "channel": np.asarray(CHANNELS3)[k.ravel()],
            "weight": 1.0 / (C * 3),
            "true_probability": rewards[h, c, k].ravel(),
        }
    )


def test_ips_and_snips_are_unbiased_over_replications_with_full_support():
    values = {"ips": [], "snips": []}
    for seed in range(12):
        logs, rewards, _ = bandit(seed)
        table = ope.estimate_policy_values(
            logs,
            {"best": best_policy(rewards), "uniform": uniform_policy(rewards)},
            n_days=DAYS,
            n_bootstrap=50,
            seed=seed,
        )
        for estimator in values:
            values[estimator].append(
                table.set_index(["policy", "estimator"]).loc[[("best", estimator), ("uniform", estimator)], "value"]
            )
    truth = table.drop_duplicates("policy").set_index("policy")["truth"]
    for estimator, draws in values.items():
        mean = pd.concat(draws, axis=1).mean(axis=1).droplevel("estimator")
        spread = pd.concat(draws, axis=1).std(axis=1).droplevel("estimator") / np.sqrt(len(draws))
        # the mean of 12 independent windows lies within 4 standard errors of the truth
        assert (abs(mean - truth[mean.index]) < 4 * spread + 0.01).all(), (estimator, mean, truth)


def test_ips_of_the_logging_policy_itself_is_the_observed_rate():
    logs, rewards, logging = bandit(1)
    h, c, k = np.meshgrid(np.arange(H), np.arange(C), np.arange(3), indexing="ij")
    replay = pd.DataFrame(
        {
            "hcp_id": [f"h{i:03d}" for i in h.ravel()],
            "content_id": [f"c{i:02d}" for i in c.ravel()],
            "channel": np.asarray(CHANNELS3)[k.ravel()],
            "weight": logging.ravel(),
        }
    )
    table = ope.estimate_policy_values(logs, {"logging": replay}, n_days=DAYS, n_bootstrap=50)
    ips = table.set_index("estimator").loc["ips", "value"]
    # sum_i pi(a_i) r_i / p_i with pi = the logging's own choice given a touch: the engagements per HCP-day / TOUCH
    assert ips == pytest.approx(logs["engaged"].sum() / (H * DAYS) / TOUCH, rel=1e-9)


def test_direct_method_doubly_robust_and_reward_model():
    logs, rewards, _ = bandit(3)
    hcps = pd.DataFrame({"hcp_id": [f"h{h:03d}" for h in range(H)], "segment": [str(h % 3) for h in range(H)]})
    reward = ope.RewardModel(n_folds=3, seed=0, max_iter=50).fit(logs, history=bandit(99)[0], hcp_attributes=hcps)
    table = ope.estimate_policy_values(
        logs,
        {"best": best_policy(rewards, 1.2), "uniform": uniform_policy(rewards)},
        n_days=DAYS,
        reward=reward,
        n_bootstrap=100,
    ).set_index(["policy", "estimator"])
    assert table.loc[("best", "dm_model"), "value"] == pytest.approx(
        1.2 * table.loc[("best", "dm_model"), "truth"], rel=0.02
    )
    assert table.loc[("best", "dm_model"), "ess"] == H
    assert ("uniform", "dm_model") not in table.index, "a policy without model probabilities has no dm_model"
    # the reward model's value of the uniform policy is close to the truth (it is an average of many pairs)
    assert table.loc[("uniform", "dm_reward"), "relative_error"] == pytest.approx(0, abs=0.15)
    assert table.loc[("uniform", "dr"), "relative_error"] == pytest.approx(0, abs=0.15)
    predicted = reward.predict(logs["hcp_id"], logs["content_id"], logs["channel"])
    assert ((predicted > 0) & (predicted < 1)).all()
    for column in ("value", "ci_low", "ci_high"):
        assert np.isfinite(table[column]).all()
    assert (table["ci_low"] <= table["value"] + 1e-12).all() and (table["value"] <= table["ci_high"] + 1e-12).all()


def test_the_reward_model_reads_ids_as_strings_or_categoricals_and_each_row_on_its_own():
    logs, _, _ = bandit(3)
    hcps = pd.DataFrame({"hcp_id": [f"h{h:03d}" for h in range(H)], "segment": [str(h % 3) for h in range(H)]})
    items = pd.DataFrame({"content_id": [f"c{c:02d}" for c in range(C)], "area": ["x", "y", "z"] * (C // 3)})
    reward = ope.RewardModel(n_folds=3, seed=0, max_iter=30).fit(
        logs, history=bandit(99)[0], hcp_attributes=hcps, item_attributes=items
    )
    # a known HCP, an HCP no fold saw, an unknown item, an unknown channel
    h = np.array(["h001", "h002", "nobody", "h001"] * 3)
    c = np.array(["c01", "c02", "c03", "c99"] * 3)
    k = np.array(["email", "webinar", "rep_visit", "fax"] * 3)
    plain = reward.predict(h, c, k)
    assert np.isfinite(plain).all() and len(np.unique(plain[:4])) == 4
    as_categoricals = reward.predict(pd.Series(pd.Categorical(h)), pd.Categorical(c), pd.Series(k, dtype="category"))
    np.testing.assert_array_equal(as_categoricals, plain)
    np.testing.assert_array_equal(reward.predict(h[5:7], c[5:7], k[5:7]), plain[5:7])


def test_reward_predictions_do_not_depend_on_threads():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    logs, _, _ = bandit(3)
    hcps = pd.DataFrame({"hcp_id": [f"h{h:03d}" for h in range(H)], "segment": [str(h % 3) for h in range(H)]})
    reward = ope.RewardModel(n_folds=3, seed=0, max_iter=30).fit(logs, history=bandit(99)[0], hcp_attributes=hcps)
    x = reward._features(*(ope._Keys.of(logs[c]) for c in ("hcp_id", "content_id", "channel"))).frame()
    model = reward.models_[0]
    expected = model.predict_proba(x)[:, 1]  # the library's own call, on its default threads
    for threads in (1, 2, 3, 10_000_000):
        predicted = ope._predict_proba(model, x, threads)
        assert predicted.shape == (len(x),)
        np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_array_equal(ope._predict_proba(model, x.iloc[:1], 2), expected[:1])
    # the folds' models are fitted on one OpenMP thread: the same trees as on the default threads
    y = logs["engaged"].to_numpy(bool)
    options = dict(max_iter=30, categorical_features="from_dtype", random_state=0)
    default = HistGradientBoostingClassifier(**options).fit(x, y)
    with threadpool_limits(limits=1, user_api="openmp"):
        single = HistGradientBoostingClassifier(**options).fit(x, y)
    np.testing.assert_array_equal(single.predict_proba(x), default.predict_proba(x))


def test_a_prior_by_pairs_reads_as_a_reindex_by_pairs():
    table = pd.Series([0.1, 0.2, 0.3], index=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y"), ("b", "x")]))
    first = ope._Keys.of(np.array(["a", "b", "b", "c", "a"]))
    second = ope._Keys(np.array([0, 1, -1, 0, 1]), np.array(["x", "y"], dtype=object))  # -1: no value
    default = np.array([9.0, 8.0])  # one per value of ``second``; a missing one takes the last's
    per_row = default[second.codes]
    expected = table.reindex(pd.MultiIndex.from_arrays([["a", "b", "b", "c", "a"], ["x", "y", None, "x", "y"]]))
    assert ope._PairTable.of(table).lookup(first, second, default).tolist() == [0.1, 8.0, 8.0, 9.0, 0.2]
    assert expected.fillna(pd.Series(per_row, index=expected.index)).tolist() == [0.1, 8.0, 8.0, 9.0, 0.2]
    assert ope._PairTable.of(table).lookup(first, second, 0.5).tolist() == [0.1, 0.5, 0.5, 0.5, 0.2]
    assert ope._PairTable.of(pd.Series(dtype=float)).lookup(first, second, 0.5).tolist() == [0.5] * 5
    assert ope._PairTable.of(pd.Series(dtype=float)).lookup(first, second, default).tolist() == per_row.tolist()


def test_a_policy_outside_the_logging_support_is_invisible_to_ips():
    logging = np.zeros((H, C, 3))
    logging[:, : C // 2, :] = 1.0 / (C // 2 * 3)  # the logging policy never sends the second half of the items
    logs, rewards, _ = bandit(2, logging=logging)
    unsupported = best_policy(rewards).assign(content_id=f"c{C - 1:02d}")
    table = ope.estimate_policy_values(logs, {"unsupported": unsupported}, n_days=DAYS, n_bootstrap=50)
    ips = table.set_index("estimator").loc["ips"]
    assert ips["value"] == 0 and ips["matched"] == 0 and ips["ess"] == 0
    assert np.isnan(table.set_index("estimator").loc["snips", "value"])


def test_replayed_logged_actions_are_valued_on_policy():
    logs, _, _ = bandit(4)
    first = logs.drop_duplicates("hcp_id")
    replay = first[["hcp_id", "content_id", "channel"]].assign(
        logged_outcome=first["engaged"].astype(float), true_probability=0.2
    )
    table = ope.estimate_policy_values(logs, {"bau": replay}, n_days=DAYS, n_bootstrap=50)
    assert table["estimator"].tolist() == ["observed"]
    assert table["value"].iloc[0] == pytest.approx(first["engaged"].mean())


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda f: f.drop(columns="propensity"),
            r"my export: missing column 'propensity'; a logged table needs the columns",
        ),
        (
            lambda f: f.assign(propensity=np.where(np.arange(len(f)) == 3, np.nan, f["propensity"])),
            r"my export: column 'propensity' is missing or not a number in 1 rows \(first at row 3",
        ),
        (
            lambda f: f.assign(propensity=np.where(np.arange(len(f)) == 5, 0.0, f["propensity"])),
            r"my export: column 'propensity' must be in \(0, 1\]; 1 rows are not \(first at row 5: 0\.0\)",
        ),
        (lambda f: f.assign(propensity=-f["propensity"]), r"must be in \(0, 1\]"),
        (
            lambda f: f.assign(engaged="maybe"),
            r"my export: column 'engaged' must be true/false or 0/1; row 0 holds 'maybe'",
        ),
        (lambda f: f.assign(hcp_id=None), r"my export: column 'hcp_id' is missing in"),
    ],
)
def test_bad_logged_tables_are_refused_naming_the_column_and_row(change, message):
    logs, rewards, _ = bandit(5)
    with pytest.raises(ope.OPEError, match=message):
        ope.estimate_policy_values(change(logs), {"best": best_policy(rewards)}, n_bootstrap=50, source="my export")


def test_bad_policies_and_settings_are_refused():
    logs, rewards, _ = bandit(6)
    with pytest.raises(ope.OPEError, match="policy 'p': actions lack column 'channel'"):
        ope.estimate_policy_values(logs, {"p": best_policy(rewards).drop(columns="channel")}, n_bootstrap=50)
    with pytest.raises(ope.OPEError, match="policy 'p': weights must be >= 0"):
        ope.estimate_policy_values(logs, {"p": best_policy(rewards).assign(weight=-1.0)}, n_bootstrap=50)
    with pytest.raises(ValueError, match="policy 'p'.*non-finite weight"):
        ope.estimate_policy_values(logs, {"p": best_policy(rewards).assign(weight=np.inf)}, n_bootstrap=50)
    with pytest.raises(ope.OPEError, match="no logged exposure of the given HCPs"):
        ope.estimate_policy_values(logs, {"p": best_policy(rewards)}, hcp_ids=["nobody"], n_bootstrap=50)
    with pytest.raises(ope.OPEError, match="clip quantile must be in"):
        ope.clip_level(logs["propensity"], 1.5)
    with pytest.raises(ope.OPEError, match="n_folds must be at least 2"):
        ope.RewardModel(n_folds=1).fit(logs)


def test_window_days_and_clip_level():
    logs, _, _ = bandit(7)
    assert ope.window_days(logs) == DAYS
    clip = ope.clip_level(logs["propensity"], 0.01)
    assert (1 / logs["propensity"] > clip).mean() == pytest.approx(0.01, abs=0.005)
    rewards = bandit(7)[1]
    table = ope.estimate_policy_values(logs, {"best": best_policy(rewards)}, n_bootstrap=50)
    assert table.attrs == {
        "clip": pytest.approx(clip),
        "n_days": DAYS,
        "n_logs": len(logs),
        "n_hcps": logs["hcp_id"].nunique(),
    }


@pytest.mark.slow
def test_notebook_09_estimates_every_policy_beside_its_truth(tiny_run):
    estimates = pd.read_parquet(tiny_run / "ope" / "estimates.parquet")
    summary = json.loads((tiny_run / "ope" / "summary.json").read_text())
    report = json.loads((tiny_run / "evaluation" / "metrics.json").read_text())
    policies = set(estimates["policy"])
    assert (
        set(report["metrics"]) - {m for m, d in report["models"].items() if d["family"] == "channel_baseline"}
        <= policies
    )
    assert {"uniform_random", "business_as_usual", "plan"} <= policies
    for policy, group in estimates.groupby("policy"):
        assert group["value"].notna().any() and group["truth"].notna().all(), policy
        assert group[["ci_low", "ci_high"]].dropna().shape[0] >= 1, policy
    # the truth is chapter 6's policy value (one definition): checked for every model and reference policy
    for model in ("hybrid", "tabular", "v0.1_classifier"):
        truth = estimates.loc[estimates["policy"] == model, "truth"].iloc[0]
        assert truth == pytest.approx(report["metrics"][model]["policy_value"]["value"], abs=1e-9)
    assert summary["truth_checked_against_metrics_json"] >= len(report["metrics"]) - 5
    assert summary["best_estimator"] in ope.ESTIMATORS
    assert [row["criterion"] for row in summary["selection"]][0] == "validation log-loss (logged data)"
    assert summary["selection"][-1]["criterion"] == "oracle (true value)"
    executed = nbformat.read(tiny_run / "09_off_policy_evaluation.ipynb", as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = "\n".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "comes closest" in shown and f"{summary['n_logs']:,} logged exposures" in shown
    assert ("can be trusted here" in shown) or ("intervals cover the true value for" in shown)
    assert (tiny_run / "figures" / "ope_estimates.png").stat().st_size > 10_000


def _uniform_case(seed: int = 5):
    """A small population with random candidate masks (one HCP with none), exposures on
    candidates and non-candidates, and a deterministic reward function."""
    from hcp_lib.domain import CHANNELS

    rng = np.random.default_rng(seed)
    n_h, n_c = 40, 9
    hcp_ids = np.array([f"h{h:03d}" for h in range(n_h)])
    content_ids = np.array([f"c{c:02d}" for c in range(n_c)])
    candidates = rng.random((n_h, n_c)) < 0.5
    candidates[3] = False
    oracle = rng.uniform(0.01, 0.6, (n_h, n_c, len(CHANNELS)))
    m = 500
    logs = pd.DataFrame(
        {
            "hcp_id": rng.choice(hcp_ids, m),
            "content_id": rng.choice(content_ids, m),
            "channel": rng.choice(np.asarray(CHANNELS), m),
            "exposed_at": pd.Timestamp("2025-03-03") + pd.to_timedelta(rng.integers(0, 28, m), unit="D"),
            "propensity": rng.uniform(0.01, 0.2, m),
            "engaged": rng.random(m) < 0.3,
        }
    )
    channel_code = {c: i for i, c in enumerate(CHANNELS)}

    def predict(h, c, k):
        h, c, k = (pd.Series(np.asarray(x, dtype=object)).astype(str) for x in (h, c, k))
        code = h.str[1:].astype(int) * 7 + c.str[1:].astype(int) * 3 + k.map(channel_code)
        return ((code % 10) + 1).to_numpy(np.float64) / 20

    rows, cols = np.nonzero(candidates)
    pairs = candidates.sum(axis=1) * len(CHANNELS)
    written = pd.DataFrame(
        {
            "hcp_id": np.repeat(hcp_ids[rows], len(CHANNELS)),
            "content_id": np.repeat(content_ids[cols], len(CHANNELS)),
            "channel": np.tile(np.asarray(CHANNELS, dtype=object), len(rows)),
            "weight": np.repeat(1.0 / pairs[rows], len(CHANNELS)),
            "true_probability": oracle[rows, cols, :].ravel(),
        }
    )
    truth = (oracle * candidates[:, :, None]).sum(axis=(1, 2)) / np.maximum(pairs, 1)
    mask = ope.UniformPolicy(candidates, hcp_ids, content_ids, truth=truth, batch=7)
    return logs, predict, written, mask, hcp_ids


def test_the_uniform_policy_as_a_mask_is_valued_as_its_written_out_actions():
    logs, predict, written, mask, hcp_ids = _uniform_case()
    population = hcp_ids[2:]  # two HCPs outside the evaluated population
    reward_logged = predict(logs["hcp_id"], logs["content_id"], logs["channel"])
    policy = ope.Policy(written).checked("uniform")
    reward_actions = predict(policy.actions["hcp_id"], policy.actions["content_id"], policy.actions["channel"])
    expected = ope.policy_terms(logs, policy, population, 28, 20.0, reward_logged, reward_actions)
    got = mask.checked("uniform").terms(logs, population, 28, 20.0, reward_logged, predict)
    assert set(got) == set(expected) == {"ips", "ips_clipped", "snips", "dm_reward", "dr", "truth"}
    for name in expected:
        np.testing.assert_allclose(got[name][0], expected[name][0], rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(got[name][1], expected[name][1], rtol=1e-12, atol=1e-15, err_msg=name)
        assert got[name][2] == pytest.approx(expected[name][2], rel=1e-12) and got[name][3] == expected[name][3]
    assert got["ips"][3] > 0, "some logged exposures are candidates"
    # through the estimator: the same table as the written-out policy, the HCP with no candidate left out
    both = ope.estimate_policy_values(
        logs, {"written": written, "mask": mask}, hcp_ids=population, n_days=28, reward=predict, n_bootstrap=50
    ).set_index(["estimator", "policy"])
    for column in ("value", "ci_low", "ci_high", "truth", "n_hcps", "matched"):
        values = both[column].unstack("policy")
        np.testing.assert_allclose(values["mask"], values["written"], rtol=1e-10, err_msg=column)
    assert both.loc[("ips", "mask"), "n_hcps"] == len(population) - 1
    with pytest.raises(ope.OPEError, match=r"candidates have shape \(2, 9\), expected \(40, 9\)"):
        ope.UniformPolicy(np.ones((2, 9), bool), mask.hcp_ids, mask.content_ids).checked("bad")


def test_reward_predictions_by_compiled_trees_are_scikit_learns(monkeypatch):
    logs, _, _ = bandit(3)
    hcps = pd.DataFrame({"hcp_id": [f"h{h:03d}" for h in range(H)], "segment": [str(h % 3) for h in range(H)]})
    items = pd.DataFrame({"content_id": [f"c{c:02d}" for c in range(C)], "area": ["x", "y", "z"] * (C // 3)})

    def fitted(**options):
        return ope.RewardModel(n_folds=3, seed=0, max_iter=30, **options).fit(
            logs, history=bandit(99)[0], hcp_attributes=hcps, item_attributes=items
        )

    reference, compiled = fitted(compile_trees=False), fitted()
    # known and unknown HCPs, items and channels (missing categories), every fold
    h = np.array([f"h{i % H:03d}" for i in range(300)] + ["nobody"] * 10)
    c = np.array([f"c{i % C:02d}" for i in range(300)] + ["c99"] * 10)
    k = np.array(["email", "webinar", "rep_visit", "fax", "conference_event"] * 62)
    expected = reference.predict(h, c, k)
    assert compiled.predict(h, c, k) == pytest.approx(expected, abs=0)  # under the threshold: scikit-learn
    assert all(model is None for model in compiled.compiled_)
    monkeypatch.setattr(ope, "COMPILE_MIN_ROWS", 50)
    got = compiled.predict(h, c, k)
    assert all(model is not None for model in compiled.compiled_), "every fold passed the threshold"
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # categorical features read as their categories, in the model's column order
    x = compiled._features(*(ope._Keys.of(pd.Series(v)) for v in (h, c, k)))
    matrix = x.matrix
    assert matrix.shape == (len(h), len(compiled.models_[0].feature_names_in_)) and matrix.dtype == np.float64


def _features_by_lookup(reward: ope.RewardModel, h, c, k) -> pd.DataFrame:
    """The test's oracle for RewardModel._features: every feature by a pandas lookup per row (a
    reindex by ids, or by pairs of ids), categorical features as the ranks of their names."""
    p = reward.priors_
    h, c, k = (pd.Index(np.asarray(v).astype(str)) for v in (h, c, k))

    def by(table, *keys, default):
        index = keys[0] if len(keys) == 1 else pd.MultiIndex.from_arrays(keys)
        values = table.reindex(index).to_numpy(np.float64) if len(table) else np.full(len(index), np.nan)
        return np.where(np.isnan(values), default, values)

    def ranked(values, names):
        rank = pd.Series(np.argsort(np.argsort(np.asarray(names, dtype=object), kind="stable")), index=names)
        return pd.Categorical(rank.reindex(values).to_numpy(), categories=rank.to_numpy())

    channel_default = by(p["channel"], k, default=p["mean"])
    frame = pd.DataFrame(
        {
            "channel": ranked(k, np.asarray(ope.CHANNELS)),
            "hcp_rate": by(p["hcp"], h, default=p["mean"]),
            "hcp_channel_rate": by(p["hcp_channel"], h, k, default=channel_default),
            "item_rate": by(p["item"], c, default=p["mean"]),
            "item_channel_rate": by(p["item_channel"], c, k, default=channel_default),
            "hcp_exposures": np.log1p(p["hcp_count"].reindex(h).fillna(0.0).to_numpy()),
        }
    )
    items = reward.item_attributes_
    for name, rates in p["hcp_item_attribute"].items():
        frame[f"hcp_{name}_rate"] = by(rates, h, items[name].reindex(c).astype(object), default=p["mean"])
    for table, keys in ((reward.hcp_attributes_, h), (items, c)):
        for name in table.columns:
            values = table[name].reindex(keys)
            if isinstance(table[name].dtype, pd.CategoricalDtype):
                frame[name] = ranked(values.astype(object).to_numpy(), np.asarray(table[name].cat.categories))
            else:
                frame[name] = values.to_numpy(np.float64)
    return frame


def test_reward_features_are_those_of_a_lookup_per_row():
    logs, _, _ = bandit(3)
    hcps = pd.DataFrame(
        {"hcp_id": [f"h{h:03d}" for h in range(H)], "segment": [str(h % 3) for h in range(H)], "age": np.arange(H)}
    )
    items = pd.DataFrame({"content_id": [f"c{c:02d}" for c in range(C)], "area": ["x", "y", "z"] * (C // 3)})
    reward = ope.RewardModel(n_folds=3, seed=0, max_iter=10).fit(
        logs, history=bandit(99)[0], hcp_attributes=hcps, item_attributes=items
    )
    # known and unknown HCPs, items and channels, given as strings and as categoricals (the uniform policy's)
    h = np.array([f"h{i % (H + 5):03d}" for i in range(900)])
    c = np.array([f"c{i % (C + 2):02d}" for i in range(900)])
    k = np.array(["email", "webinar", "rep_visit", "fax", "conference_event"] * 180)
    expected = _features_by_lookup(reward, h, c, k)
    for given in ((h, c, k), tuple(pd.Series(pd.Categorical(v)) for v in (h, c, k))):
        rows = reward._features(*(ope._Keys.of(v) for v in given))
        assert rows.names == reward.feature_names_ == list(expected.columns)
        pd.testing.assert_frame_equal(rows.frame(), expected, check_exact=True)
        # the matrix the compiled trees read: a categorical feature as its category (the rank), NaN when missing
        numeric = np.column_stack([expected[name].astype(np.float64).to_numpy() for name in expected.columns])
        np.testing.assert_array_equal(rows.matrix, numeric)
        pd.testing.assert_frame_equal(rows.frame(slice(10, 20)), expected.iloc[10:20].reset_index(drop=True))


def test_a_reward_model_told_to_expect_many_rows_compiles_at_its_first_call(monkeypatch):
    logs, _, _ = bandit(3)
    reward = ope.RewardModel(n_folds=3, seed=0, max_iter=10).fit(logs, history=bandit(99)[0])
    reference = ope.RewardModel(n_folds=3, seed=0, max_iter=10, compile_trees=False).fit(logs, history=bandit(99)[0])
    monkeypatch.setattr(ope, "COMPILE_MIN_ROWS", 1_000)
    h = np.repeat([f"h{i:03d}" for i in range(H)], 3)
    c = np.array([f"c{i % C:02d}" for i in range(len(h))])
    k = np.array(["email", "webinar", "rep_visit"] * H)
    reward.predict(h[:30], c[:30], k[:30])
    assert all(model is None for model in reward.compiled_), "30 rows, nothing announced: scikit-learn"
    reward.expect(np.unique(h), np.full(H, 3))  # 900 rows to come: with the 30 asked for, past 1,000 by no fold
    reward.expect(["nobody"], [3_000])  # an HCP no fold saw counts for every fold
    got = reward.predict(h[:30], c[:30], k[:30])
    assert all(model is not None for model in reward.compiled_), "every fold expects more than 1,000 rows"
    np.testing.assert_allclose(got, reference.predict(h[:30], c[:30], k[:30]), rtol=0, atol=1e-12)
