"""Benchmark: how each stage grows from tiny to small to full (time, peak memory, rows).

    .venv/bin/python benchmarks/bench_growth.py --run tiny=outputs/bench-tiny --run small=outputs/report \
        --full benchmarks/results/full.json

Reads what the runs already recorded, nothing is rerun: each run folder's ``manifest.json``
(per notebook: wall seconds and peak memory of the kernel) and its world's row counts
(HCPs, logged exposures, from the Parquet metadata); ``--full`` reads the committed record of
the full-scale run (``make bench-full``: the same figures under ``notebooks`` and
``population``). A result the run reused from an earlier one (``cache: "reused"``) carries the
figures of the run that computed it.

Prints one table: per stage, its seconds and peak MB at each scale, then, for each step to the
next scale, the growth of its time beside the growth of the exposure log. A step where the
time grows more than 1.5 times faster than the log is marked ``!``; the "why" column gives the
known cause of such growth.

With ``--write`` it also writes ``benchmarks/results/growth.json`` (the figures, with the commit
and date) and the book page ``book/scale_out.md``: the same table, a projection to
:data:`TARGET_HCPS` HCPs from the growth between the two largest scales, the measured stress run
(``benchmarks/results/stress.json`` from ``make bench-stress``, when it exists: section "The stress
run", rendered by :func:`bench_stress.section`) and which stage would run on which distributed
engine. Commit them; the book renders them, it reruns nothing. ``--page-only`` rewrites the page
from the recorded growth.json and stress.json alone (no run folder needed), e.g. after a new
stress run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.parquet as pq  # noqa: E402
from bench_regimes import git_commit  # noqa: E402
from bench_stress import RESULTS as STRESS  # noqa: E402
from bench_stress import section as stress_section  # noqa: E402

from hcp_lib.pipeline import RUNS_AFTER  # noqa: E402

#: a stage by the name its notebook has had (07 and 08 swapped places in the renumbering)
STAGES = {
    "ingestion": "01 ingestion",
    "synthesis": "02 synthesis",
    "topic_modeling": "03 topics",
    "collaborative_filtering": "04 CF",
    "hybrid_lstm": "05 engagement models",
    "evaluation": "06 evaluation",
    "next_best_action": "07 plan",
    "explorer": "08 explorer",
    "off_policy_evaluation": "09 off-policy",
}
#: why a stage's time is expected to grow faster than the log, where it does
WHY = {
    "06 evaluation": "bootstrap over HCPs x models, and every model's plan",
    "07 plan": "the week's MILP: HiGHS's simplex grows faster than the candidates (570,000 solved in about "
    "30 s, 1.44 million in about 210 s; benchmarks/bench_plan.py and the stress run)",
    "05 engagement models": "scores every HCP x item x channel cell; the tree model's cost is trees x cells, and at "
    "full its fits share the notebook's process (hybrid_workers=0) instead of two worker processes",
    "09 off-policy": "every policy's propensities over the logged exposures, per bootstrap resample; the uniform "
    "policy's reward-model predictions grow with HCPs x items",
    "03 topics": "fixed corpus: the same PubMed abstracts at every scale",
    "01 ingestion": "fixed corpus: the same PubMed abstracts at every scale",
}
SUPERLINEAR = 1.5
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "growth.json"
PAGE = ROOT / "book" / "scale_out.md"
#: the size the scale-out page projects to
TARGET_HCPS = 1_000_000
#: where each stage would go past one machine: an existing engine, and what it would do there
ENGINES = {
    "01 ingestion": "stays on one machine: a fixed corpus of PubMed abstracts",
    "02 synthesis": "Dask DataFrame: the world is generated per HCP, so HCP partitions are independent",
    "03 topics": "stays on one machine (fixed corpus); gensim's LdaMulticore uses its cores",
    "04 CF": "Dask for the sparse interaction matrix; implicit's ALS/BPR on a GPU",
    "05 engagement models": "tf.distribute (MultiWorkerMirroredStrategy) for training; Dask for features and "
    "scoring, partitioned by HCP (each HCP's cells depend only on its own history)",
    "06 evaluation": "Dask, partitioned by HCP: every metric is a mean over HCPs, the bootstrap resamples HCPs",
    "07 plan": "one machine while HiGHS solves the week's MILP exactly (the stress run below); past "
    "plan_milp_max_candidates the greedy plan with its linear-relaxation bound proves its gap. "
    "The global e-mail, webinar and campaign capacities couple territories, so a split by territory needs "
    "those capacities shared out first",
    "08 explorer": "a sample of HCPs (parameter explorer_hcps) keeps the page small",
    "09 off-policy": "Dask, partitioned by HCP: every estimator is a sum over HCPs",
}


def stage(notebook: str) -> str:
    name = re.sub(r"^\d\d_", "", notebook).removesuffix(".ipynb")
    return STAGES.get(name, name)


def from_run(folder: Path) -> dict:
    """Per-stage figures and row counts of one run folder."""
    manifest = json.loads((folder / "manifest.json").read_text())
    world = folder / "world"
    rows = {
        "hcps": pq.ParquetFile(world / "hcp_master.parquet").metadata.num_rows,
        "exposures": pq.ParquetFile(world / "hcp_interaction_data.parquet").metadata.num_rows,
    }
    stages = {
        stage(n["notebook"]): (n.get("wall_seconds"), n.get("peak_memory_mb"))
        for n in manifest["notebooks"]
        if n.get("status") == "ok"
    }
    return {"scale": manifest["parameters"]["scale"], "rows": rows, "stages": stages}


def from_full_record(path: Path) -> dict:
    """The same figures from the committed full-scale record (benchmarks/results/full.json)."""
    record = json.loads(path.read_text())
    population = record["population"]
    return {
        "scale": record["scale"],
        "rows": {"hcps": population["n_hcps_world"], "exposures": population["n_exposures_world"]},
        "stages": {stage(k): (v["wall_seconds"], v["peak_memory_mb"]) for k, v in record["notebooks"].items()},
        "note": f"{record['scale']} ran at commit {record['commit'][:7]} on {record['date']}"
        + "".join(f", {k}={v}" for k, v in (record.get("parameters") or {}).items()),
    }


def growth_table(runs: list[dict]) -> list[list[str]]:
    """Rows of the printed table (the first is the header): per stage, the figures at each
    scale, then for each step to the next scale the growth of its time (``x``), marked ``!``
    where it outgrows the exposure log by more than :data:`SUPERLINEAR`, and the known cause."""
    steps = list(zip(runs, runs[1:]))
    header = ["stage"] + [f"{r['scale']} s / MB" for r in runs]
    header += [
        f"time x {a['scale']}->{b['scale']} (log x{b['rows']['exposures'] / a['rows']['exposures']:,.1f})"
        for a, b in steps
    ]
    table = [header + ["why"]]
    names = [s for s in STAGES.values() if any(s in r["stages"] for r in runs)]
    for name in names:
        cells = []
        for run in runs:
            seconds, memory = run["stages"].get(name, (None, None))
            cells.append("-" if seconds is None else f"{seconds:,.0f} / {memory:,.0f}")
        flagged = False
        for a, b in steps:
            start, end = a["stages"].get(name, (None,))[0], b["stages"].get(name, (None,))[0]
            if not (start and end):
                cells.append("-")
                continue
            growth = end / start
            superlinear = growth > SUPERLINEAR * b["rows"]["exposures"] / a["rows"]["exposures"]
            flagged |= superlinear
            cells.append(f"{growth:,.1f}" + (" !" if superlinear else ""))
        fixed = name in ("01 ingestion", "03 topics")
        table.append([name] + cells + [WHY.get(name, "") if flagged or fixed else ""])
    return table


def projection(runs: list[dict], target_hcps: int = TARGET_HCPS) -> dict[str, dict]:
    """Per stage: the growth exponents of time and memory between the two largest scales
    (figure ~ HCPs ** exponent) and the figures they give at ``target_hcps``."""
    small, large = runs[-2], runs[-1]
    ratio = large["rows"]["hcps"] / small["rows"]["hcps"]
    ahead = target_hcps / large["rows"]["hcps"]
    out = {}
    for name in STAGES.values():
        if name not in small["stages"] or name not in large["stages"]:
            continue
        (t0, m0), (t1, m1) = small["stages"][name], large["stages"][name]
        time_exponent = math.log(t1 / t0) / math.log(ratio)
        memory_exponent = math.log(m1 / m0) / math.log(ratio)
        out[name] = {
            "time_exponent": time_exponent,
            "memory_exponent": memory_exponent,
            "seconds": t1 * ahead ** max(time_exponent, 0.0),
            "memory_mb": m1 * ahead ** max(memory_exponent, 0.0),
        }
    return out


def page(results: dict, stress: dict | None = None) -> str:
    """The book page (MyST) of ``results`` (the content of growth.json), with the section of the
    stress run ``stress`` (the content of stress.json) when given."""
    runs, ahead = results["runs"], results["projection"]
    scales = " → ".join(
        f"{r['scale']} ({r['rows']['hcps']:,} HCPs, {r['rows']['exposures']:,} exposures)" for r in runs
    )
    lines = [
        "# Past one machine",
        "",
        f"*Generated by `benchmarks/bench_growth.py --write` on {results['date']} from commit "
        f"`{results['commit']}`; the figures are those of `benchmarks/results/growth.json`: the manifests of runs "
        f"at {scales}.*",
        "",
        "Each notebook's wall time and peak memory, as its run recorded them, at each scale. The last columns "
        f"project them to {results['target_hcps']:,} HCPs: each figure grows as HCPs to the power measured "
        f"between the two largest scales (a power below 0 is taken as 0). Two points make a rough law: read "
        "the projection as the order of magnitude a team should plan for, not a forecast.",
        "",
        "| stage | " + " | ".join(f"{r['scale']} s / MB" for r in runs) + " | exponent (time, memory) | "
        f"{results['target_hcps']:,} HCPs s / MB | note |",
        "|---|" + "---|" * len(runs) + "---|---|---|",
    ]
    for name in STAGES.values():
        cells = []
        for run in runs:
            figures = run["stages"].get(name)
            cells.append("–" if figures is None else f"{figures[0]:,.0f} / {figures[1]:,.0f}")
        projected = ahead.get(name)
        if projected is None:
            cells += ["–", "–", ""]
        else:
            fixed = name in ("01 ingestion", "03 topics")
            cells += [
                f"{projected['time_exponent']:.2f}, {projected['memory_exponent']:.2f}",
                f"{projected['seconds']:,.0f} / {projected['memory_mb']:,.0f}",
                WHY.get(name, "") if fixed or projected["time_exponent"] > 1 else "",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = sum(p["seconds"] for p in ahead.values())
    peak = max(p["memory_mb"] for p in ahead.values())
    notes = [r["note"] for r in runs if r.get("note")]
    slowest = max(ahead, key=lambda name: ahead[name]["seconds"])
    lines += [
        "",
        f"Summed, the projected stages take {total / 3600:,.1f} hours on one machine of this kind, "
        f"{ahead[slowest]['seconds'] / 3600:,.1f} of them in {slowest}"
        + (" (see its note)" if ahead[slowest]["time_exponent"] > 1 and WHY.get(slowest) else "")
        + ", and the largest needs "
        f"{peak / 1024:,.1f} GB."
        + (f" The largest scale's record: {'; '.join(notes)}." if notes else "")
        + " A run takes less than the sum of its notebooks: "
        + ", ".join(
            f"{later[:2]} starts when {after[:2]} has finished, beside the notebooks in between"
            for later, after in RUNS_AFTER.items()
        )
        + " (`hcp_lib.pipeline.RUNS_AFTER`).",
        "",
    ]
    if stress is not None:
        lines += [stress_section(stress)]
    lines += [
        "## Where each stage would go",
        "",
        "Every stage but the plan works HCP by HCP: an HCP's features, scores, metrics and estimates depend on "
        "its own history and the shared catalogue. That is what lets an existing engine split the work by HCP "
        "with nothing written here by hand.",
        "",
        "| stage | past one machine |",
        "|---|---|",
    ]
    lines += [f"| {name} | {ENGINES[name]} |" for name in STAGES.values()]
    lines.append("")
    return "\n".join(lines)


def read_stress(path: Path = STRESS) -> dict | None:
    """The stress run's record (stress.json), or None when there is none."""
    return json.loads(path.read_text()) if path.exists() else None


def write(runs: list[dict], stress: dict | None = None) -> None:
    """Write growth.json and the book page (with the stress run's section when ``stress`` is given)."""
    results = {
        "date": dt.date.today().isoformat(),
        "commit": git_commit(),
        "target_hcps": TARGET_HCPS,
        "runs": runs,
        "projection": projection(runs),
    }
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    PAGE.write_text(page(results, stress))
    print(f"wrote {RESULTS.relative_to(ROOT)} and {PAGE.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], metavar="SCALE=DIR", help="a finished run folder")
    parser.add_argument("--full", type=Path, help="the full-scale record (benchmarks/results/full.json)")
    parser.add_argument("--write", action="store_true", help="write growth.json and book/scale_out.md")
    parser.add_argument(
        "--stress", type=Path, default=STRESS, help="the stress run's record (default benchmarks/results/stress.json)"
    )
    parser.add_argument(
        "--page-only", action="store_true", help="rewrite book/scale_out.md from growth.json and the stress record"
    )
    args = parser.parse_args()
    if args.page_only:
        PAGE.write_text(page(json.loads(RESULTS.read_text()), read_stress(args.stress)))
        print(
            f"wrote {PAGE.relative_to(ROOT)} from {RESULTS.relative_to(ROOT)}"
            + (" and the stress record" if args.stress.exists() else "")
        )
        return
    runs = []
    for item in args.run:
        _, _, folder = item.partition("=")
        if not (Path(folder) / "manifest.json").exists():
            parser.error(f"--run {item}: {folder} has no manifest.json; run the pipeline there first")
        runs.append(from_run(Path(folder)))
    if args.full is not None:
        runs.append(from_full_record(args.full))
    if len(runs) < 2:
        parser.error("give at least two scales (--run SCALE=DIR, --full FILE)")
    runs.sort(key=lambda r: r["rows"]["exposures"])
    print("growth by stage (seconds / peak MB of the notebook's kernel):")
    for run in runs:
        rows = run["rows"]
        print(
            f"  {run['scale']:6s} {rows['hcps']:>8,} HCPs {rows['exposures']:>10,} exposures  {run.get('note', '')}".rstrip()
        )
    table = growth_table(runs)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"  (!: the time grew more than {SUPERLINEAR} times as fast as the exposure log)")
    if args.write:
        write(runs, read_stress(args.stress))


if __name__ == "__main__":
    main()
