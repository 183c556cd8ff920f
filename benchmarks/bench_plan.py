"""Benchmark of the plan's solvers: MILP (HiGHS) against greedy on candidate sets of the size
the plan builds at each scale (n_hcps × 5 channels × candidates per channel), with the plan's
constraint families (per HCP, per HCP and channel, per HCP and item, per channel and
territory, per campaign) and capacities at the business-as-usual volume (~0.55 touches per HCP
and week, rep visits and meetings over 50 territories).

Prints, per size: candidates, constraints kept, the plan's solver (``solve_milp``: the MILP, or
greedy with its proven gap above ``--max-candidates``) with status, seconds and objective; greedy's
seconds and objective and its distance to the MILP's optimum where the MILP ran; and the linear
relaxation's bound (``lp_bound``) with its seconds, which proves how far greedy can be from the
optimum at every size. Run: ``.venv/bin/python benchmarks/bench_plan.py [--sizes 3500 38000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from hcp_lib import config
from hcp_lib.domain import CHANNELS
from hcp_lib.stages import plan

MIX = np.array([0.62, 0.12, 0.14, 0.04, 0.08])  # business-as-usual channel mix (hcp_lib.world.simulate)


def candidate_set(n_hcps: int, per_channel: int, n_items: int, seed: int):
    rng = np.random.default_rng(seed)
    n = n_hcps * len(CHANNELS) * per_channel
    hcp = np.repeat(np.arange(n_hcps), len(CHANNELS) * per_channel)
    channel = np.tile(np.repeat(np.arange(len(CHANNELS)), per_channel), n_hcps)
    item = rng.integers(0, n_items, n)
    territory = np.where(np.isin(channel, [2, 3]), rng.integers(0, 50, n_hcps)[hcp], -1)
    probability = rng.beta(1.5, 12, n) * np.array([0.6, 1.0, 2.5, 2.0, 1.2])[channel]
    volume = 0.55 * n_hcps * MIX
    table = pd.DataFrame({"hcp": hcp, "channel": channel, "item": item, "territory": territory})
    families = []
    for name, keys, capacity in (
        ("hcp", table["hcp"], lambda u: np.full(len(u), 2)),
        ("hcp_channel", table["hcp"] * 10 + table["channel"], lambda u: np.ones(len(u))),
        ("hcp_content", table["hcp"] * n_items + table["item"], lambda u: np.ones(len(u))),
        (
            "channel_capacity",
            table["channel"] * 100 + table["territory"] + 1,
            lambda u: np.array([max(1, round(volume[k // 100] / (50 if k % 100 else 1))) for k in u]),
        ),
        (
            "campaign",
            table["item"] * 10 + table["channel"],
            lambda u: np.where(u % 10 == 0, 10_000, np.maximum(1, rng.poisson(3, len(u)))),
        ),
    ):
        codes, uniques = pd.factorize(keys, sort=True)
        families.append(
            plan.ConstraintFamily(
                name, codes, np.asarray(capacity(np.asarray(uniques)), np.int64), np.asarray(uniques).astype(str)
            )
        )
    return probability, families


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 3500])
    parser.add_argument("--per-channel", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument(
        "--max-candidates",
        type=int,
        default=config.default("plan_milp_max_candidates"),
        help="the plan's plan_milp_max_candidates (default %(default)s)",
    )
    args = parser.parse_args()
    for n_hcps in args.sizes:
        probability, families = candidate_set(n_hcps, args.per_channel, n_items=max(200, n_hcps // 2), seed=0)
        solved = plan.solve_milp(probability, families, args.time_limit, 1e-4, args.max_candidates)
        greedy = plan.solve_greedy(probability, families)
        started = time.perf_counter()
        bound = plan.lp_bound(probability, families, args.time_limit)
        lp_seconds = time.perf_counter() - started
        kept = sum(int((np.bincount(f.group, minlength=len(f.capacity)) > f.capacity).sum()) for f in families)
        versus = (
            f" ({greedy.objective / solved.objective - 1:+.3%} against the MILP)" if solved.solver == "milp" else ""
        )
        proven = f"greedy within {(bound - greedy.objective) / bound:.3%} of the optimum" if bound else "no bound"
        print(
            f"n_hcps={n_hcps:>6} candidates={len(probability):>7} binding_constraints={kept:>7}\n"
            f"  plan solver: {solved.solver}, {solved.status}, {solved.seconds:.2f}s, objective={solved.objective:.2f}\n"
            f"  greedy: {greedy.seconds:.2f}s objective={greedy.objective:.2f}{versus}\n"
            f"  linear relaxation: {lp_seconds:.2f}s bound={bound if bound is None else round(bound, 2)}; {proven}"
        )


if __name__ == "__main__":
    main()
