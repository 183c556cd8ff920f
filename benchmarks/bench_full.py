"""The headline metrics at full scale (about 38,000 HCPs and a million exposures).

    .venv/bin/python benchmarks/bench_full.py [--seed 42] [--out outputs/full]

Runs the whole pipeline at ``--scale full`` (``make bench-full``; hours on two cores, so it is
not part of ``make report``) without the ablations and with the LSTM encoder only, then records
from ``evaluation/metrics.json``, for the hybrid, the tabular challenger and the v0.1
classifier, the same headline metrics as the report (policy value, plan value, graded
NDCG@10, AUC, log-loss, ECE) with their intervals, the paired comparisons, the model the
validation window chose, and each notebook's wall time and peak memory from the manifest.
Writes ``benchmarks/results/full.json`` with the git commit and date; commit it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_regimes import METRICS, MODELS, git_commit, run_pipeline  # noqa: E402

from hcp_lib import io  # noqa: E402

RUN_PARAMETERS = {"hybrid_ablations": "false", "hybrid_sequence_encoder": "lstm"}
RESULTS = ROOT / "benchmarks" / "results" / "full.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "full"))
    parser.add_argument("--scale", default="full")
    args = parser.parse_args(argv)
    out = Path(args.out)
    wall = run_pipeline(args.scale, args.seed, out, RUN_PARAMETERS, f"scale {args.scale}")
    report = io.read_json(out / "evaluation" / "metrics.json")
    manifest = io.read_json(out / "manifest.json")
    results = {
        "scale": args.scale, "seed": args.seed, "commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).date().isoformat(), "parameters": RUN_PARAMETERS,
        "population": report["population"],
        "metrics": {m: {k: report["metrics"][m][k] for k in METRICS} for m in MODELS},
        "comparisons": [c for c in report["comparisons"] if c["model"] in ("hybrid", "tabular")
                        and c["metric"] in METRICS],
        "selection": report["selection"], "plan": report["plan"]["solver"],
        "references": {p: report["policy"][p] for p in ("business_as_usual", "random")},
        "notebooks": {n["notebook"]: {"wall_seconds": n["wall_seconds"], "peak_memory_mb": n["peak_memory_mb"]}
                      for n in manifest["notebooks"]},
        "wall_seconds": wall,
    }
    io.write_json(results, RESULTS)
    for m in MODELS:
        e = results["metrics"][m]
        print(f"{m:16s} policy {e['policy_fraction_of_oracle']['value']:.3f} plan {e['plan_fraction_of_oracle']['value']:.3f}"
              f" graded NDCG@10 {e['graded_ndcg@10']['value']:.3f} AUC {e['auc']['value']:.3f} ECE {e['ece']['value']:.3f}")
    print(f"wrote {RESULTS.relative_to(ROOT)} ({results['wall_seconds'] / 60:.0f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
