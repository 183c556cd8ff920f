"""Benchmark: fit and score times of every baseline of hcp_lib.stages.cf at a given scale.

    .venv/bin/python benchmarks/bench_cf.py --scale small            # a generated log of that size
    .venv/bin/python benchmarks/bench_cf.py --run /tmp/cf-run         # a run folder's world/

Each model (default hyper-parameters) is fitted on everything before the validation
window and then scores every HCP of the master against every item, in batches of 2048
HCPs (what the notebook's test lists need). Prints one line per model: fit seconds, score
seconds, and the numbers of HCPs, items and training interactions.

Without ``--run`` the interaction log is generated here (not by the simulator, so the
benchmark works before any world exists): ``n_hcps`` and interaction counts as the scale
presets describe (small: 3,500 HCPs, about 100k exposures; full: 38,000 HCPs, about 1M),
1,000 items, tastes from 16 latent groups so the CF models face a realistic sparsity.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hcp_lib.domain import CHANNELS, SPECIALTIES  # noqa: E402
from hcp_lib.models import baselines
from hcp_lib.split import training_data, windows_from_days  # noqa: E402
from hcp_lib.stages import cf

SIZES = {"tiny": (200, 6_000), "small": (3_500, 100_000), "full": (38_000, 1_000_000), "stress": (100_000, 4_000_000)}
N_ITEMS = 1_000
HORIZON_START, HORIZON_DAYS = pd.Timestamp("2025-01-06"), 364


def generated_world(scale: str, seed: int) -> cf.WorldTables:
    """An interaction log of the scale's size with the contract's columns (see the module docstring)."""
    n_hcps, n_exposures = SIZES[scale]
    rng = np.random.default_rng(seed)
    hcp_ids = np.array([f"{i:010d}" for i in range(n_hcps)], dtype=object)
    content_ids = np.array([str(30_000_000 + i) for i in range(N_ITEMS)], dtype=object)
    specialties = np.array(list(SPECIALTIES), dtype=object)
    hcps = pd.DataFrame({"hcp_id": hcp_ids, "specialty": rng.choice(specialties, n_hcps)})
    catalogue = pd.DataFrame(
        {
            "content_id": content_ids,
            "therapeutic_area": rng.choice(["cardiovascular", "diabetes", "oncology"], N_ITEMS),
            "release_date": HORIZON_START + pd.to_timedelta(rng.integers(-60, HORIZON_DAYS, N_ITEMS), unit="D"),
            "approved_specialties": "; ".join(specialties),
        }
    )
    group = rng.integers(0, 16, n_hcps)
    item_group = rng.integers(0, 16, N_ITEMS)
    hcp = rng.integers(0, n_hcps, n_exposures)
    same_group = rng.random(n_exposures) < 0.6
    item = np.where(same_group, 0, rng.integers(0, N_ITEMS, n_exposures))
    by_group = [np.flatnonzero(item_group == g) for g in range(16)]
    for g in range(16):
        rows = np.flatnonzero(same_group & (group[hcp] == g))
        item[rows] = rng.choice(by_group[g], len(rows))
    engaged = rng.random(n_exposures) < np.where(item_group[item] == group[hcp], 0.3, 0.05)
    interactions = pd.DataFrame(
        {
            "hcp_id": hcp_ids[hcp],
            "content_id": content_ids[item],
            "channel": rng.choice(np.array(CHANNELS), n_exposures),
            "exposed_at": HORIZON_START
            + pd.to_timedelta(rng.integers(0, HORIZON_DAYS * 1440, n_exposures), unit="min"),
            "propensity": 0.5,
            "engaged": engaged,
            "engagement_score": engaged * 0.8,
        }
    )
    return cf.WorldTables(interactions, hcps, catalogue)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=tuple(SIZES), default="small")
    parser.add_argument("--run", help="a run folder whose world/ to use instead of a generated log")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--models", help="comma-separated subset of the models")
    args = parser.parse_args()

    world = cf.read_world(args.run) if args.run else generated_world(args.scale, args.seed)
    horizon_start = world.interactions["exposed_at"].min()
    horizon_end = world.interactions["exposed_at"].max()
    split = windows_from_days(horizon_start, horizon_end, 28, 28)
    train = training_data(world.interactions, world.hcps, world.catalogue, split.valid_start)
    features = baselines.area_features(world.catalogue)
    factories = {**baselines.content_factories(args.seed, features), **baselines.channel_factories()}
    wanted = args.models.split(",") if args.models else list(factories)
    hcp_ids = train.hcp_ids.astype(object).to_numpy()
    source = args.run or f"generated {args.scale} log"
    print(
        f"{source}: {len(hcp_ids)} HCPs, {len(train.content_ids)} items, {len(train.interactions)} training "
        f"interactions ({int(train.interactions['engaged'].sum())} engaged); {os.cpu_count()} CPUs"
    )
    print(f"{'model':28s} {'fit s':>8s} {'score s':>8s}")
    for name in wanted:
        started = time.perf_counter()
        model = factories[name]().fit(train)
        fitted = time.perf_counter()
        for batch in range(0, len(hcp_ids), 2048):
            if isinstance(model, baselines.ChannelRecommender):
                model.channel_scores(hcp_ids[batch : batch + 2048])
            else:
                model.score(hcp_ids[batch : batch + 2048])
        print(f"{name:28s} {fitted - started:8.2f} {time.perf_counter() - fitted:8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
