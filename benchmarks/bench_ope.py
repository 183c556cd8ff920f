"""Off-policy estimates over several worlds: is an estimator's coverage more than one draw's luck?

Chapter 9 estimates every policy of one run from its logged test window. This benchmark does
the same in the worlds of several seeds (``make bench-ope``; a whole pipeline run per seed,
about 10–15 minutes each at small on two cores, so it is not part of ``make report``) and pools
the (policy, seed) pairs: per estimator, the share of pairs whose 95% interval covers the true
value, the median absolute relative error, the relative error on the hybrid's value in each
world, and Kendall's tau. A run folder that already holds a finished run of the seed is reused
(only notebook 09 is rerun when its outputs are missing or stale). It writes:

- ``benchmarks/results/ope.json`` — the figures, with the git commit and date they come from;
- ``book/ope_seeds.md`` — the book page that shows them.

Commit both: the book renders the committed results, it does not rerun the worlds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_regimes import run_pipeline  # noqa: E402

from hcp_lib import io
from hcp_lib.pipeline import run_state  # noqa: E402
from hcp_lib.stages import ope

RESULTS = ROOT / "benchmarks" / "results" / "ope.json"
PAGE = ROOT / "book" / "ope_seeds.md"
OPE_NOTEBOOK = "09"


def ensure_run(seed: int, scale: str, out: Path, rerun_ope: bool = False) -> str:
    """A finished run of ``seed`` in ``out``: reused, completed with notebook 09 (or, with
    ``rerun_ope``, with notebook 09 run again), or made."""
    state = run_state(out)
    if state["state"] == "ok" and not rerun_ope:
        return "reused"
    manifest = out / "manifest.json"
    if manifest.exists():
        notebooks = {n["notebook"][:2]: n["status"] for n in io.read_json(manifest).get("notebooks", [])}
        earlier_ok = all(status == "ok" for number, status in notebooks.items() if number < OPE_NOTEBOOK)
        params = io.read_json(manifest).get("parameters", {})
        if earlier_ok and params.get("seed") == seed and params.get("scale") == scale:
            run_pipeline(scale, seed, out, {}, f"seed {seed}", only=OPE_NOTEBOOK)
            return "completed with notebook 09"
    run_pipeline(scale, seed, out, {}, f"seed {seed}")
    return "run"


def collect(runs: dict[int, Path]) -> dict:
    """Pool the chapter-9 estimates of each seed's run."""
    frames = []
    per_seed = {}
    for seed, out in runs.items():
        estimates = io.read_parquet(out / "ope" / "estimates.parquet").assign(seed=seed)
        summary = io.read_json(out / "ope" / "summary.json")
        frames.append(estimates)
        manifest = io.read_json(out / "manifest.json")
        per_seed[str(seed)] = {
            "n_logs": summary["n_logs"],
            "n_hcps": summary["n_hcps"],
            "best_estimator": summary["best_estimator"],
            "selection": summary["selection"],
            "commit": (manifest.get("git") or {}).get("commit"),
            "finished_at": manifest.get("finished_at"),
        }
    table = pd.concat(frames, ignore_index=True)
    off_policy = table[table["estimator"] != "observed"]
    pooled = []
    for estimator, group in off_policy.groupby("estimator", sort=False):
        hybrid = group[group["policy"] == "hybrid"].set_index("seed")["relative_error"]
        taus = np.array(
            [
                ope.rank_agreement(g).set_index("estimator")["kendall_tau"].get(estimator, np.nan)
                for _, g in group.groupby("seed")
            ],
            dtype=float,
        )
        estimated = group["value"].notna()
        pooled.append(
            {
                "estimator": estimator,
                "label": ope.ESTIMATOR_LABELS[estimator],
                "pairs": int(len(group)),
                "estimated": int(estimated.sum()),
                "coverage": float(group["covered"].mean()),
                "median_abs_relative_error": float(group.loc[estimated, "relative_error"].abs().median())
                if estimated.any()
                else None,
                "hybrid_relative_error": {str(s): (None if pd.isna(v) else float(v)) for s, v in hybrid.items()},
                "hybrid_max_abs_relative_error": None if hybrid.isna().all() else float(hybrid.abs().max()),
                "kendall_tau_mean": float(np.nanmean(taus)) if np.isfinite(taus).any() else None,
            }
        )
    # the chapter's ranking (hcp_lib.stages.ope.estimator_scores): usable estimators by lowest median error
    pooled.sort(
        key=lambda r: (
            r["estimated"] < ope.MIN_ESTIMATED_SHARE * r["pairs"],
            r["median_abs_relative_error"] if r["median_abs_relative_error"] is not None else np.inf,
        )
    )
    return {
        "seeds": [int(s) for s in runs],
        "estimators": pooled,
        "per_seed": per_seed,
        "n_policies": int(off_policy["policy"].nunique()),
    }


def page(results: dict) -> str:
    """The book page: the pooled table, what it says, and where it comes from."""
    rows = results["estimators"]
    best, worst = rows[0], rows[-1]
    covering = max(rows, key=lambda r: r["coverage"])
    seeds = ", ".join(str(s) for s in results["seeds"])

    def pct(v):
        return "–" if v is None else f"{v:.0%}"

    lines = [
        "# Off-policy estimates over several worlds",
        "",
        f"Chapter 9 judges the off-policy estimators in one world. Here the same chapter ran in the worlds of "
        f"seeds {seeds} at scale {results['scale']}, and the {results['n_policies']} policies of each are pooled, so "
        "that an estimator's coverage is not one draw's luck. A pair is one policy in one world; an interval covers "
        "when the policy's true value (the oracle's) lies inside it, and a policy an estimator cannot estimate "
        "counts as a miss.",
        "",
        f"**{best['label']}** comes closest: a median error of {pct(best['median_abs_relative_error'])} of the true "
        f"value over its {best['pairs']} (policy, world) pairs, and at most {pct(best['hybrid_max_abs_relative_error'])} "
        f"on the hybrid's value; its intervals cover the truth for {pct(best['coverage'])} of the pairs. "
        f"The widest coverage, {pct(covering['coverage'])}, is that of {covering['label']}; **{worst['label']}** "
        f"errs by a median {pct(worst['median_abs_relative_error'])}. "
        + (
            f"No estimator's intervals cover the truth for {ope.TRUSTED_COVERAGE:.0%} of the pairs: with logs like "
            "these, an off-policy interval cannot be taken at its word, and the point estimate to use is the "
            "closest one above, whose error is the model's own bias."
            if covering["coverage"] < ope.TRUSTED_COVERAGE
            else ""
        ),
        "",
        "| estimator | pairs covered | median error / truth | error on the hybrid, per world | mean Kendall's τ |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        hybrid = ", ".join("–" if v is None else f"{v:+.0%}" for v in r["hybrid_relative_error"].values())
        tau = "–" if r["kendall_tau_mean"] is None else f"{r['kendall_tau_mean']:.2f}"
        lines.append(
            f"| {r['label']} | {pct(r['coverage'])} of {r['pairs']} | {pct(r['median_abs_relative_error'])} | "
            f"{hybrid} | {tau} |"
        )
    lines += [
        "",
        "Which engagement model each criterion would have chosen, per world (the validation log-loss is chapter 5's "
        "criterion; the oracle's is the truth):",
        "",
        "| world (seed) | "
        + " | ".join(r["criterion"] for r in results["per_seed"][str(results["seeds"][0])]["selection"])
        + " |",
        "|---|" + "---|" * len(results["per_seed"][str(results["seeds"][0])]["selection"]),
    ]
    for seed in results["seeds"]:
        choices = results["per_seed"][str(seed)]["selection"]
        lines.append(f"| {seed} | " + " | ".join(c["chooses"] for c in choices) + " |")
    commits = sorted({(v.get("commit") or "unknown")[:10] for v in results["per_seed"].values()})
    lines += [
        "",
        f"*Made by `make bench-ope` (`benchmarks/bench_ope.py`) on {results['date']}; chapter 9 ran at "
        f"commit {', '.join(f'`{c}`' for c in commits)}; results in `benchmarks/results/ope.json`.*",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument(
        "--runs-root", default=str(ROOT / "outputs" / "ope-runs"), help="run folders, one per seed: <root>/seed-<seed>"
    )
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="SEED=PATH",
        help="use this run folder for that seed (e.g. 42=outputs/report)",
    )
    parser.add_argument("--rerun-ope", action="store_true", help="run notebook 09 again in runs that have it")
    parser.add_argument("--page-only", action="store_true", help="rewrite book/ope_seeds.md from the committed results")
    args = parser.parse_args(argv)
    if args.page_only:
        io.write_text(page(io.read_json(RESULTS)), PAGE)
        print(f"wrote {PAGE.relative_to(ROOT)}")
        return 0
    given = {int(k): Path(v) for k, v in (pair.split("=", 1) for pair in args.run)}
    runs = {seed: given.get(seed, Path(args.runs_root) / f"seed-{seed}") for seed in args.seeds}
    for seed, out in runs.items():
        print(f"seed {seed}: {ensure_run(seed, args.scale, out, args.rerun_ope)} ({out})", flush=True)
    results = {"scale": args.scale, "date": dt.date.today().isoformat(), **collect(runs)}
    io.write_json(results, RESULTS)
    io.write_text(page(results), PAGE)
    for r in results["estimators"]:
        print(
            f"{r['label']:22s} coverage {r['coverage']:.2f} of {r['pairs']}  median |rel err| "
            f"{r['median_abs_relative_error']}  hybrid {r['hybrid_relative_error']}"
        )
    print(f"wrote {RESULTS.relative_to(ROOT)}, {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
