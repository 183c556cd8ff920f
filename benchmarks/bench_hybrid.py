"""Benchmark: fitting and scoring the engagement models (the hybrid LSTM and the tabular challenger).

    .venv/bin/python benchmarks/bench_hybrid.py --run outputs/report --scale small

Needs a run folder where notebooks 01-04 have run (world/, topics/, cf/). For each model, on
everything before the test window with the scale's default parameters and a fixed number of
epochs / rounds (``--epochs``, ``--rounds``; no early stopping, so the figure is the cost of
one fit), on ``HCP_TF_THREADS`` TensorFlow threads (default 2), it prints:

* ``fit``: wall seconds of ``fit`` and training examples per second;
* ``probabilities``: seconds to compute every (HCP, item, channel) probability at the cut-off
  (``score_channels`` for every HCP of the master), and cells per second. The hybrid adds three
  tower outputs with a broadcast; the trees of the challenger score one row per cell (the
  cells no list may hold are skipped);
* ``exposures``: seconds to score every logged test exposure at its own instant.

``--sweep 4096:0.006:learning_rate_factor=1 4096:0.015 4096:0.01:learning_rate_factor=0.2`` instead
fits the hybrid (the LSTM) once per batch size and learning rate (and any further ``NAME=VALUE`` of
:class:`hcp_lib.models.hybrid.HybridSettings`; the others are the scale's defaults), as notebook 05
does on the validation window (early stopping on it, the rate lowered on plateaus), and prints each
fit's validation log-loss, best epoch, epochs run and seconds: the evidence for the default batch
size, learning rate and factor.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hcp_lib import config
from hcp_lib.models import hybrid, tabular
from hcp_lib.models.base import exclusion_mask  # noqa: E402
from hcp_lib.stages import engagement as es


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder with world/, topics/ and cf/")
    parser.add_argument("--scale", default="small", choices=config.SCALES, help="parameter preset (default small)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=10, help="hybrid epochs (default 10)")
    parser.add_argument("--rounds", type=int, default=150, help="boosting rounds of the challenger (default 150)")
    parser.add_argument(
        "--sweep",
        nargs="+",
        metavar="BATCH:RATE[:NAME=VALUE]",
        help="fit with early stopping at each batch size:learning rate (and further settings)",
    )
    parser.add_argument("--curves", action="store_true", help="with --sweep, print each fit's training curve")
    args = parser.parse_args()
    params = config.resolve_parameters(scale=args.scale, seed=args.seed)
    inputs = es.read_inputs(args.run, params)
    if args.sweep:
        sweep(inputs, params, args.sweep, args.seed, args.curves)
        return
    stage = inputs.stage
    hcp_ids = stage.train_valid.hcp_ids.astype(str).to_numpy(dtype=object)
    exclude = exclusion_mask(
        hcp_ids,
        stage.train_valid.content_ids.astype(object),
        stage.train_valid,
        released_by=stage.split.test_end,
        catalogue=stage.catalogue,
    )
    models = {
        "hybrid": hybrid.HybridRecommender(
            inputs.data,
            es.cf_factory(inputs, args.seed)(),
            replace(hybrid.HybridSettings.from_parameters(params), epochs=args.epochs),
        ),
        "tabular": tabular.TabularEngagement(
            inputs.data,
            es.cf_factory(inputs, args.seed)(),
            tabular.TabularSettings(max_iter=args.rounds, seed=args.seed),
        ),
    }
    print(f"run: {args.run}; scale {args.scale}; {len(hcp_ids):,} HCPs x {len(stage.catalogue):,} items x 5 channels")
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(stage.train_valid)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        probability = model.score_channels(hcp_ids, exclude)
        scored = time.perf_counter() - started
        started = time.perf_counter()
        model.exposure_probabilities(inputs.test_rows, inputs.interactions)
        exposures = time.perf_counter() - started
        cells = probability.size
        print(
            f"{name:8s} fit {fit:7.1f} s ({model.n_train_examples_ / fit:,.0f} examples/s) | probabilities "
            f"{scored:6.1f} s ({cells / scored:,.0f} cells/s) | {len(inputs.test_rows):,} exposures {exposures:5.1f} s"
        )


def sweep(inputs: es.StageInputs, params: dict, points: list[str], seed: int, curves: bool = False) -> None:
    """One validation-window fit of the LSTM hybrid per ``batch:rate[:NAME=VALUE...]`` point."""
    base = replace(hybrid.HybridSettings.from_parameters(params), sequence_encoder="lstm")
    print(
        f"{'batch:rate[:setting=value]':>28s} {'validation log-loss':>20s} {'best epoch':>10s} {'epochs run':>10s} {'seconds':>8s}"
    )
    for point in points:
        batch, rate, *more = point.split(":")
        changes = dict(batch_size=int(batch), learning_rate=float(rate))
        for item in more:  # further settings as NAME=VALUE, e.g. sequence_length=8
            name, value = item.split("=")
            changes[name] = type(getattr(base, name))(value)
        job = es.ModelJob(replace(base, **changes), validate=True)
        fit = es.fit_models(inputs, {point: job}, seed, keep_models=False)[point]
        print(
            f"{point:>28s} {fit.validation_loss:20.5f} {fit.best_epoch:10d} "
            f"{len(fit.training_history):10d} {fit.fit_seconds:8.1f}",
            flush=True,
        )
        if curves:  # each epoch's validation loss (with the weight penalty) and learning rate
            print(fit.training_history[["epoch", "val_loss", "learning_rate"]].to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
