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
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.parquet as pq  # noqa: E402

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
    "05 engagement models": "scores every HCP x item x channel cell; the tree model's cost is trees x cells",
    "06 evaluation": "bootstrap over HCPs x models, and every model's plan",
    "07 plan": "the plan's program grows with HCPs x candidates; above plan_milp_max_candidates it falls back to greedy",
    "09 off-policy": "every policy's propensities over the logged exposures, per bootstrap resample",
    "03 topics": "fixed corpus: the same PubMed abstracts at every scale",
    "01 ingestion": "fixed corpus: the same PubMed abstracts at every scale",
}
SUPERLINEAR = 1.5


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
        "note": f"commit {record['commit'][:7]}, {record['date']}, with {record.get('parameters') or 'defaults'}",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], metavar="SCALE=DIR", help="a finished run folder")
    parser.add_argument("--full", type=Path, help="the full-scale record (benchmarks/results/full.json)")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
