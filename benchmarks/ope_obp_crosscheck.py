"""Cross-check of hcp_lib.stages.ope's estimators against Open Bandit Pipeline (obp), in two steps.

    .venv/bin/python benchmarks/ope_obp_crosscheck.py export /tmp/ope_obp.npz
    /tmp/obpenv/bin/python benchmarks/ope_obp_crosscheck.py compare /tmp/ope_obp.npz

``export`` (the project's venv; imports hcp_lib, never obp) builds a small synthetic
contextual bandit like ``tests/test_ope.py``'s ``bandit()``: ``H`` HCPs x ``D`` days; each
HCP-day the logging policy touches with probability ``TOUCH`` and then draws one
(content, channel) with known probabilities ``p(h, a)``; the outcome is Bernoulli with a known
``r(h, a)``. It values three target policies with :func:`hcp_lib.stages.ope.estimate_policy_values`
(``best``: the truly best action of each HCP, deterministic; ``uniform``: every action with
weight 1/n_actions; ``softmax``: a stochastic policy, softmax of r_hat / 0.05 per HCP), with
a deterministic reward callable ``r_hat(h, c, k)`` = the true r plus fixed noise (so the
direct method and doubly robust are compared without any model fitting), and writes the same
data in obp's shape to an ``.npz`` (``np.savez``, no pickled objects):

- one round per HCP-day (``H * D`` rounds): a day without a touch is a round with action 0
  ("none"), reward 0 and pscore ``1 - TOUCH``; a touch is action ``1 + index of (content,
  channel)`` with pscore ``TOUCH * p(h, a)`` (the project's ``propensity`` column);
- ``action_dist__<policy>`` (n_rounds, n_actions, 1): the policy's weights, pi(none) = 0;
- ``estimated_rewards_by_reg_model`` (n_rounds, n_actions, 1): r_hat (0 for "none");
- the project's point estimates (``project_values``, policies x estimators).

``compare`` (obp's venv; imports obp, never hcp_lib) loads the file with
``allow_pickle=False``, runs obp's InverseProbabilityWeighting (also with ``lambda_`` = the
export's clip level, the inverse of the median logged propensity so that it bites),
SelfNormalizedInverseProbabilityWeighting, DirectMethod and DoublyRobust, prints project vs
obp vs relative difference, and exits 1 if any checked pair differs by more than
``TOLERANCE`` (relative), 0 otherwise. Clipped IPS is checked for the deterministic policy
only and printed, unchecked, for the others (see below).

Why the two agree exactly. With one round per HCP-day and pi(none) = 0:

- project ``ips`` = (1/H) sum_h (1/D) sum_{touches of h} w(h, a) r / p
  = (1/(H D)) sum_{rounds} pi(a_i) r_i / pscore_i = obp IPW (the mean over all rounds;
  rounds without a touch add 0);
- project ``snips`` = W * sum w r / p / sum w / p, with W the policy's mean total weight per
  HCP (1 for a proper distribution) = obp SNIPW, sum iw r / sum iw;
- project ``dm_reward`` = mean over HCPs of sum_a w(h, a) r_hat(h, a) = obp DM, the mean over
  rounds of sum_a pi(a | x_i) q_hat(x_i, a) (r_hat does not depend on the day, and every HCP
  has D rounds);
- project ``dr`` = dm_reward + the IPS of the residuals r - r_hat = obp DR;
- project ``ips_clipped`` caps the inverse propensity, w * min(1 / p, clip), while obp's IPW
  with ``lambda_`` caps the importance weight, min(w / p, lambda_): the two agree only where
  w is 0 or 1, so they are compared for the deterministic policy alone.

The population is passed explicitly (``hcp_ids`` = all H HCPs, ``n_days`` = D), so an HCP
without any logged touch still counts, as its D rounds do in obp.

Why obp is not a project dependency. obp >= 0.5 declares ``Requires-Python <3.11`` (and
pins numpy 1.23, pandas 1.5, scikit-learn 1.1, torch 1.12), while the project runs on
Python 3.11 with numpy 2 and pandas 3; obp 0.4.1 installs on 3.11 but imports torch at
``import obp`` (obp/utils.py), a large dependency the project neither needs nor pins. Hence
a throwaway venv, used only for this check:

    python3.11 -m venv /tmp/obpenv
    /tmp/obpenv/bin/pip install obp==0.4.1          # pulls torch (CPU wheels suffice)
    # or obp 0.5.7, forced past its Python bound, with its imports installed by hand:
    #   /tmp/obpenv/bin/pip install --no-deps --ignore-requires-python obp==0.5.7
    #   /tmp/obpenv/bin/pip install numpy pandas scipy scikit-learn matplotlib seaborn \\
    #       tqdm pyyaml mypy-extensions torch

Both obp versions give the same numbers here (the estimators' formulas did not change), except
that obp 0.4.1's IPW has no ``lambda_``, so clipped IPS is skipped there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

H, C, D, TOUCH = 200, 8, 28, 0.3
CHANNELS3 = ("email", "webinar", "rep_visit")
K = len(CHANNELS3)
N_ACTIONS = 1 + C * K  # action 0: no touch that day
SEED = 7
TOLERANCE = 1e-9
#: the quantile of the logged propensities whose inverse is the clipped IPS cap (high, so it bites)
CLIP_QUANTILE = 0.5
#: (project estimator, obp estimator, policies it is compared on: None = all)
PAIRS = (
    ("ips", "IPW", None),
    ("ips_clipped", "IPW(lambda_=clip)", ("best",)),
    ("snips", "SNIPW", None),
    ("dm_reward", "DM", None),
    ("dr", "DR", None),
)
ESTIMATORS = tuple(p[0] for p in PAIRS)


# --- step 1: the project's side (no obp) ----------------------------------------------------------


def world(seed: int = SEED):
    """The bandit's truth: rewards r (H, C, K), logging probabilities p (H, C, K) given a touch,
    the reward model r_hat (H, C, K) = r plus fixed noise, and the target policies' weights
    {name: (H, C, K)}, each a distribution over the C*K actions of an HCP."""
    g = np.random.default_rng(seed)
    rewards = g.uniform(0.02, 0.5, size=(H, C, K))
    logging = g.dirichlet(np.ones(C * K), size=H).reshape(H, C, K)
    r_hat = np.clip(rewards + g.normal(0.0, 0.05, size=rewards.shape), 0.001, 0.999)
    flat = rewards.reshape(H, -1)
    best = np.zeros((H, C * K))
    best[np.arange(H), flat.argmax(axis=1)] = 1.0
    z = r_hat.reshape(H, -1) / 0.05
    soft = np.exp(z - z.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    policies = {
        "best": best.reshape(H, C, K),
        "uniform": np.full((H, C, K), 1.0 / (C * K)),
        "softmax": soft.reshape(H, C, K),
    }
    return rewards, logging, r_hat, policies


def simulate(rewards, logging, seed: int = SEED + 1):
    """One round per HCP-day (day-major): hcp, day, action (0 = none, else 1 + c*K + k), reward,
    pscore (the logging policy's probability of that round's action, 'none' included)."""
    g = np.random.default_rng(seed)
    flat = logging.reshape(H, -1)
    hcp = np.tile(np.arange(H), D)
    day = np.repeat(np.arange(D), H)
    action = np.zeros(H * D, dtype=np.int64)
    reward = np.zeros(H * D)
    pscore = np.full(H * D, 1.0 - TOUCH)
    touched = g.random(H * D) < TOUCH
    for i in np.flatnonzero(touched):
        a = int(g.choice(C * K, p=flat[hcp[i]]))
        action[i] = 1 + a
        pscore[i] = TOUCH * flat[hcp[i], a]
        reward[i] = float(g.random() < rewards.reshape(H, -1)[hcp[i], a])
    return hcp, day, action, reward, pscore


def export(path: str) -> int:
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from hcp_lib.stages import ope

    rewards, logging, r_hat, policies = world()
    hcp, day, action, reward, pscore = simulate(rewards, logging)
    hcp_ids = np.array([f"h{h:03d}" for h in range(H)])
    content_ids = np.array([f"c{c:02d}" for c in range(C)])
    touch = action > 0
    c_idx, k_idx = np.divmod(action[touch] - 1, K)
    logs = pd.DataFrame(
        {
            "hcp_id": hcp_ids[hcp[touch]],
            "content_id": content_ids[c_idx],
            "channel": np.asarray(CHANNELS3)[k_idx],
            "exposed_at": pd.Timestamp("2025-03-03") + pd.to_timedelta(day[touch], unit="D"),
            "propensity": pscore[touch],
            "engaged": reward[touch] == 1.0,
        }
    )

    def reward_model(h_ids, c_ids, channels):
        """r_hat(h, c, k), deterministic: the project calls it on logged rows and on policy actions."""
        h = pd.Index(hcp_ids).get_indexer(np.asarray(h_ids, dtype=str))
        c = pd.Index(content_ids).get_indexer(np.asarray(c_ids, dtype=str))
        k = pd.Index(CHANNELS3).get_indexer(np.asarray(channels, dtype=str))
        if (h < 0).any() or (c < 0).any() or (k < 0).any():
            raise ValueError("reward_model: unknown HCP, content or channel")
        return r_hat[h, c, k]

    hh, cc, kk = np.meshgrid(np.arange(H), np.arange(C), np.arange(K), indexing="ij")
    tables = {}
    for name, weights in policies.items():
        keep = weights.ravel() > 0
        tables[name] = pd.DataFrame(
            {
                "hcp_id": hcp_ids[hh.ravel()[keep]],
                "content_id": content_ids[cc.ravel()[keep]],
                "channel": np.asarray(CHANNELS3)[kk.ravel()[keep]],
                "weight": weights.ravel()[keep],
                "true_probability": rewards.ravel()[keep],
            }
        )
    # a cap that bites (the median logged propensity's inverse, not the project's 1% default), so
    # that clipped IPS is tested on clipped weights
    clip = ope.clip_level(logs["propensity"], quantile=CLIP_QUANTILE)
    table = ope.estimate_policy_values(
        logs, tables, hcp_ids=hcp_ids, n_days=D, reward=reward_model, clip=clip, n_bootstrap=20, seed=0
    )
    values = table.set_index(["policy", "estimator"])["value"]
    names = list(policies)
    project = np.array([[values.get((p, e), np.nan) for e in ESTIMATORS] for p in names], dtype=np.float64)
    truth = np.array([float(table.loc[table["policy"] == p, "truth"].iloc[0]) for p in names])

    q_hat = np.zeros((H * D, N_ACTIONS, 1))
    q_hat[:, 1:, 0] = r_hat.reshape(H, -1)[hcp]
    arrays = {
        "reward": reward,
        "action": action,
        "pscore": pscore,
        "hcp": hcp,
        "day": day,
        "estimated_rewards_by_reg_model": q_hat,
        "policy_names": np.array(names),
        "estimators": np.array(ESTIMATORS),
        "project_values": project,
        "truth": truth,
        "clip": np.float64(clip),
        "shape": np.array([H, C, K, D]),
        "touch": np.float64(TOUCH),
    }
    for name, weights in policies.items():
        dist = np.zeros((H * D, N_ACTIONS, 1))
        dist[:, 1:, 0] = weights.reshape(H, -1)[hcp]
        arrays[f"action_dist__{name}"] = dist
    np.savez(path, **arrays)
    best_p = policies["best"].reshape(H, -1)[hcp[touch], action[touch] - 1] > 0
    print(
        f"wrote {path}: {H * D:,} rounds ({int(touch.sum()):,} touches) of {H} HCPs x {D} days, "
        f"{N_ACTIONS} actions (0 = none), policies {', '.join(names)}; clip {clip:.4g} caps "
        f"{int((best_p & (1 / pscore[touch] > clip)).sum())} of the {int(best_p.sum())} touches 'best' matches"
    )
    for i, name in enumerate(names):
        print(
            f"  {name:8s} truth {truth[i]:.6f}  "
            + "  ".join(f"{e} {project[i, j]:.6f}" for j, e in enumerate(ESTIMATORS))
        )
    return 0


# --- step 2: obp's side (no hcp_lib) -------------------------------------------------------------


def compare(path: str) -> int:
    import dataclasses

    import obp
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
    )

    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    reward, action, pscore = arrays["reward"], arrays["action"].astype(int), arrays["pscore"]
    q_hat = arrays["estimated_rewards_by_reg_model"]
    position = np.zeros(len(action), dtype=int)
    names = [str(n) for n in arrays["policy_names"]]
    estimators = [str(e) for e in arrays["estimators"]]
    project = arrays["project_values"]
    clip = float(arrays["clip"])
    logged = dict(reward=reward, action=action, pscore=pscore, position=position)
    # obp 0.4.1's IPW has no weight clipping (0.5.7's has ``lambda_``): clipped IPS is then skipped
    can_clip = "lambda_" in {f.name for f in dataclasses.fields(InverseProbabilityWeighting)}

    def obp_value(estimator: str, dist: np.ndarray) -> float:
        if estimator == "ips":
            return InverseProbabilityWeighting().estimate_policy_value(action_dist=dist, **logged)
        if estimator == "ips_clipped":
            return InverseProbabilityWeighting(lambda_=clip).estimate_policy_value(action_dist=dist, **logged)
        if estimator == "snips":
            return SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(action_dist=dist, **logged)
        if estimator == "dm_reward":
            return DirectMethod().estimate_policy_value(
                action_dist=dist, estimated_rewards_by_reg_model=q_hat, position=position
            )
        if estimator == "dr":
            return DoublyRobust().estimate_policy_value(
                action_dist=dist, estimated_rewards_by_reg_model=q_hat, **logged
            )
        raise ValueError(estimator)

    print(
        f"obp {obp.__version__}, {len(action):,} rounds ({int((action > 0).sum()):,} touches), "
        f"{q_hat.shape[1]} actions, clip {clip:.4g}, tolerance {TOLERANCE:g} relative"
    )
    header = f"{'policy':8s} {'project':12s} {'obp':19s} {'project value':>15s} {'obp value':>15s} {'rel. diff':>10s}"
    print(header)
    print("-" * len(header))
    worst, failures = 0.0, []
    labels = {p[0]: p[1] for p in PAIRS}
    for i, name in enumerate(names):
        dist = arrays[f"action_dist__{name}"]
        for j, estimator in enumerate(estimators):
            only = next(p[2] for p in PAIRS if p[0] == estimator)
            if estimator == "ips_clipped" and not can_clip:
                if name == names[0]:
                    print(f"{'':8s} {estimator:12s} skipped: obp {obp.__version__}'s IPW has no lambda_ (clipping)")
                continue
            checked = only is None or name in only
            mine = float(project[i, j])
            theirs = float(obp_value(estimator, dist))
            rel = abs(mine - theirs) / max(abs(theirs), 1e-300)
            if not checked:
                flag = "  (not checked: w * min(1/p, clip) vs min(w/p, clip))"
            else:
                worst = max(worst, rel)
                flag = "" if rel <= TOLERANCE else "  <-- differs"
                if flag:
                    failures.append((name, estimator))
            print(f"{name:8s} {estimator:12s} {labels[estimator]:19s} {mine:15.10f} {theirs:15.10f} {rel:10.2e}{flag}")
    print(
        f"largest relative difference {worst:.2e}; "
        + ("all agree" if not failures else f"{len(failures)} differ: {failures}")
    )
    return 0 if not failures else 1


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("export", "compare"):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    return export(argv[1]) if argv[0] == "export" else compare(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
