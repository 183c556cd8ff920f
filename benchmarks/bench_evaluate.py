"""Benchmark of the evaluation stage (hcp_lib.stages.evaluate): wall time of each step on a run folder.

Usage: .venv/bin/python benchmarks/bench_evaluate.py RUN_DIR [--n-bootstrap 1000] [--seed 42]

RUN_DIR must hold notebook 04's outputs (cf/) and the world (world/); the hybrid's lists are
evaluated too when hybrid/ exists. Prints seconds per step and the total; the issue's aim is
under 60 s at scale small on 2 cores.
"""

from __future__ import annotations

import argparse
import time

from hcp_lib.stages import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    timings = {}
    started = time.perf_counter()
    step = time.perf_counter()
    setting = evaluate.load_setting(args.run_dir)
    timings["load world, split, oracle"] = time.perf_counter() - step
    step = time.perf_counter()
    outputs = {"oracle": evaluate.oracle_output(setting), **evaluate.load_models(args.run_dir, setting)}
    timings["load and check model outputs"] = time.perf_counter() - step
    step = time.perf_counter()
    v01 = evaluate.v01_classifier(args.run_dir, setting, args.seed)
    outputs["v0.1_classifier"] = v01.output
    timings["v0.1 classifier (two fits)"] = time.perf_counter() - step
    step = time.perf_counter()
    result = evaluate.evaluate(setting, outputs, n_bootstrap=args.n_bootstrap, seed=args.seed, v01=v01.random_split)
    timings[f"metrics + bootstrap ({args.n_bootstrap} resamples)"] = time.perf_counter() - step
    step = time.perf_counter()
    evaluate.recommendations_table(result)
    timings["recommendations table"] = time.perf_counter() - step
    total = time.perf_counter() - started
    print(
        f"run: {args.run_dir}; {len(setting.hcp_ids)} HCPs x {len(setting.content_ids)} items; "
        f"{len(outputs)} models; {len(setting.test_rows)} test exposures"
    )
    for name, seconds in timings.items():
        print(f"{name:45s} {seconds:7.2f} s")
    print(f"{'total':45s} {total:7.2f} s")


if __name__ == "__main__":
    main()
