"""Benchmark: training time of the hybrid LSTM, and batched scoring against a per-item loop.

    .venv/bin/python benchmarks/bench_hybrid.py --run /tmp/hybrid-small --scale small

Needs a run folder where notebooks 02-04 have run (world/, topics/, cf/). Prints:

* ``fit``: wall seconds of ``HybridRecommender.fit`` on everything before the test window with
  the scale's default parameters and the settings of ``--variant`` (a name of
  ``hybrid_eval.ABLATIONS``, e.g. the variant notebook 05 chose; default ``hybrid``), early
  stopping on the validation window, on
  ``HCP_TF_THREADS`` TensorFlow threads (default 2), with the number of epochs run;
* ``batched``: seconds to score 50 HCPs x every item x every channel with
  ``score_channels`` (a few large predict calls);
* ``loop``: seconds per (HCP, item, channel) of one model call per triple (the v0.1 way),
  timed on 50 HCPs x ``--loop-items`` items x 5 channels and extrapolated to the whole
  catalogue (the full loop would take hours), the extrapolated speed ratio, and the largest
  difference between the two ways' probabilities (they compute the same thing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hcp_lib import cf, config, hybrid, hybrid_eval  # noqa: E402
from hcp_lib.domain import CHANNELS  # noqa: E402


def settings_for(scale: str, seed: int) -> hybrid.HybridSettings:
    p = config.resolve_parameters(scale=scale, seed=seed)
    return hybrid.HybridSettings(
        max_seq_len=p["max_seq_len"], embedding_dim=p["hybrid_embedding_dim"], sequence_units=p["hybrid_sequence_units"],
        hidden_units=p["hybrid_hidden_units"], sequence_encoder=p["hybrid_sequence_encoder"],
        n_negatives=p["hybrid_negatives"], epochs=p["hybrid_epochs"], batch_size=p["hybrid_batch_size"],
        learning_rate=p["hybrid_learning_rate"], patience=p["hybrid_patience"], seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder with world/, topics/ and cf/")
    parser.add_argument("--scale", default="small", choices=config.SCALES, help="parameter preset (default small)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hcps", type=int, default=50, help="HCPs scored both ways (default 50)")
    parser.add_argument("--variant", default="hybrid", choices=list(hybrid_eval.ABLATIONS),
                        help="variant whose settings are fitted (default hybrid, the full model)")
    parser.add_argument("--loop-items", type=int, default=10, help="items per HCP timed in the loop (default 10)")
    args = parser.parse_args()

    inputs = hybrid_eval.read_inputs(args.run)
    stage = inputs.stage
    model = hybrid.HybridRecommender(inputs.hcp_master, inputs.doc_topics,
                                     cf.ALS(random_state=args.seed, **inputs.als_params),
                                     hybrid.HybridSettings(**{**settings_for(args.scale, args.seed).__dict__,
                                                              **hybrid_eval.ABLATIONS[args.variant][0]}),
                                     validation_start=stage.split.valid_start)
    started = time.perf_counter()
    model.fit(stage.train_valid)
    fit_seconds = time.perf_counter() - started
    print(f"fit ({args.variant}): {fit_seconds:.1f} s for {model.n_train_examples_:,} training examples, {len(model.history_)} epochs "
          f"({args.scale} parameters, {len(stage.train_valid.interactions):,} exposures before the test window)")

    hcp_ids = np.asarray(model.hcp_ids_[:args.hcps], dtype=object)
    n_items = len(model.content_ids_)
    model.score_channels(hcp_ids[:1])  # build the predict functions once, as any long-lived scorer would
    started = time.perf_counter()
    batched = model.score_channels(hcp_ids)
    batched_seconds = time.perf_counter() - started
    print(f"batched: {batched_seconds:.2f} s for {len(hcp_ids)} HCPs x {n_items} items x {len(CHANNELS)} channels "
          f"({batched.size:,} probabilities)")

    items = model.content_ids_[:args.loop_items]
    largest_difference = 0.0
    started = time.perf_counter()
    for row, hcp_id in enumerate(hcp_ids):
        for column, content_id in enumerate(items):
            for k, channel in enumerate(CHANNELS):
                value = model.score_pair_loop(hcp_id, content_id, channel)
                largest_difference = max(largest_difference, abs(value - batched[row, column, k]))
    loop_seconds = time.perf_counter() - started
    n_calls = len(hcp_ids) * len(items) * len(CHANNELS)
    per_call = loop_seconds / n_calls
    extrapolated = per_call * batched.size
    print(f"loop: {per_call * 1e3:.2f} ms per triple over {n_calls:,} calls; the whole catalogue would take "
          f"{extrapolated:,.0f} s")
    print(f"speed ratio (loop / batched, extrapolated): {extrapolated / batched_seconds:,.0f}x; largest difference "
          f"between the two: {largest_difference:.2e}")


if __name__ == "__main__":
    main()
