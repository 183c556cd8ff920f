"""Benchmark: the ``stress`` preset (100,000 HCPs) through synthesis, scoring and the week's plan.

    nice -n 10 .venv/bin/python benchmarks/bench_stress.py --out outputs/bench-stress --reference-hcps 10000

(``make bench-stress``). It does the work for real, in the run folder ``--out``, with the
``stress`` preset's parameters (``hcp_lib.config``; ``--n-hcps`` overrides the HCP count, for a
quick try) and these steps, each group in its own subprocess so that its peak memory is its own:

1. **world**: the shipped PubMed snapshot, cleaned (notebook 01's ``pubmed.ingest``);
   ``synth.generate_world`` and ``synth.write_world`` (as ``bench_synth.py`` times them).
2. **inputs** of the engagement stage, made the cheapest real way: one LDA with
   ``--n-topics`` topics on the (fixed) corpus instead of notebook 03's sweep, and notebook 04's
   split (``cf.prepare_split``) with the ALS model at its default hyper-parameters (what
   ``cf_tune=false`` gives) instead of notebook 04's grid search over nine baselines.
3. **engagement**: the hybrid (``HybridRecommender``, the project's model) fitted on everything
   before the test window for ``--epochs`` epochs only (default 1; notebook 05 trains up to
   ``hybrid_epochs`` with early stopping, for two variants and four ablations: the fit is not
   what this benchmark is about); then the probability of **every** HCP x item x channel at the
   test cut-off (``score_channels``, ``--score-batch`` HCPs at a time, into one float32 array,
   with notebook 05's exclusion mask), and the plan's candidates from it
   (``plan.candidate_actions``), written as notebook 05 writes them.
4. **plan**: notebook 07's steps: the context and the candidates read back (eligibility is
   re-checked), capacities and constraints, ``plan.solve_milp`` with ``prove_gap=True`` (above
   ``plan_milp_max_candidates`` it is greedy plus the linear relaxation's bound), greedy alone
   (to split the solver's seconds between greedy and the bound) and ``plan.make_plan`` (actions,
   schedule, reasons).

Per step it records wall seconds, the peak resident memory of its process during the step
(sampled every 50 ms) and its rows. ``--reference-hcps N`` first runs the same steps at N HCPs
(in ``<out>-N``), so each step's growth to the full size is measured on the same code. It prints
one table and writes ``--results`` (default ``benchmarks/results/stress.json``: date, commit,
settings, rows and figures); ``benchmarks/bench_growth.py --write`` renders that file into the
book page ``book/scale_out.md``. Run it with ``nice``: it keeps both cores busy for about 20 minutes, and
its scoring step peaks at about 15 GB of memory (see the page for why).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "stress.json"
GROUPS = ("world", "inputs", "engagement", "plan")
#: every step, in order: key -> label (the book page and the printed table use the labels)
STEPS = {
    "ingest": "articles: shipped snapshot, cleaned",
    "generate": "synthesis: generate the world",
    "write_world": "synthesis: write the world (Parquet)",
    "topics": "topics: one LDA (fixed corpus)",
    "split": "split: notebook 04's windows",
    "read_inputs": "engagement: read the run's inputs",
    "fit": "engagement: fit the hybrid",
    "score": "scoring: every HCP x item x channel",
    "candidates": "plan candidates (candidate_actions)",
    "write_candidates": "plan candidates: write",
    "plan_read": "plan: context and candidates read back",
    "constraints": "plan: capacities and constraints",
    "solve": "plan: solve_milp (prove_gap)",
    "greedy": "plan: greedy alone",
    "make_plan": "plan: actions, schedule, reasons",
}
#: the steps the book page shows (the others are set-up, in stress.json)
HEADLINE = ("generate", "write_world", "fit", "score", "candidates", "plan_read", "constraints", "solve", "make_plan")


# --- measuring ------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Recorder:
    """Times steps and samples the process's resident memory every ``interval`` seconds; each
    step's ``peak_mb`` is the highest resident memory seen while it ran (what the process holds
    from earlier steps included)."""

    def __init__(self, interval: float = 0.05):
        self.steps: list[dict] = []
        self._peak = _rss_mb()
        self._stop = threading.Event()
        self._interval = interval
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, _rss_mb())

    @contextmanager
    def step(self, key: str, **rows):
        """Time the block as step ``key``; the block may add rows to the yielded dict."""
        print(f"  {STEPS[key]} ...", flush=True)
        self._peak = _rss_mb()
        record = {"step": key, "rows": dict(rows)}
        started = time.perf_counter()
        yield record["rows"]
        record["seconds"] = round(time.perf_counter() - started, 2)
        record["peak_mb"] = round(max(self._peak, _rss_mb()))
        self.steps.append(record)
        print(f"  {STEPS[key]}: {record['seconds']:,.1f} s, peak {record['peak_mb']:,} MB {record['rows']}", flush=True)

    def close(self) -> dict:
        self._stop.set()
        return {"steps": self.steps, "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _parameters(args) -> dict:
    from hcp_lib import config

    return config.resolve_parameters(
        scale="stress", seed=args.seed, overrides={"n_hcps": args.n_hcps}, run_dir=args.out
    )


# --- the steps, one group per subprocess ----------------------------------------------------------------


def world_group(args, rec: Recorder) -> dict:
    from hcp_lib.stages import pubmed
    from hcp_lib.world import synth

    params = _parameters(args)
    with rec.step("ingest") as rows:
        articles, _ = pubmed.ingest(args.out)
        rows["articles"] = len(articles)
    values = synth.synthesis_params(**{k: params[k] for k in synth.PARAM_NAMES})
    with rec.step("generate") as rows:
        world = synth.generate_world(articles, values, seed=args.seed, source=pubmed.articles_path(args.out))
        rows.update(hcps=len(world.hcps), exposures=len(world.interactions), items=len(world.content))
    with rec.step("write_world") as rows:
        synth.write_world(world, args.out)
        size = sum(p.stat().st_size for p in (Path(args.out) / "world").rglob("*") if p.is_file())
        rows["files_mb"] = round(size / 2**20)
    return {
        "hcps": len(world.hcps),
        "exposures": len(world.interactions),
        "items": len(world.content),
        "patients": len(world.patients),
        "articles": len(articles),
    }


def inputs_group(args, rec: Recorder) -> dict:
    import pandas as pd

    from hcp_lib import io
    from hcp_lib.config import RunDir
    from hcp_lib.stages import cf, pubmed, topics

    params = _parameters(args)
    run = RunDir(Path(args.out))
    with rec.step("topics", n_topics=args.n_topics) as rows:
        articles = pubmed.read_articles(args.out)
        texts = topics.article_texts(articles).tolist()
        model, tokens = topics.fit_topic_model(
            texts,
            args.n_topics,
            args.seed,
            topics.PreprocessSettings.from_parameters(params),
            topics.LdaSettings.from_parameters(params),
        )
        doc_topics = model.topic_matrix(model.bow(tokens))
        io.write_parquet(
            topics.doc_topic_table(articles["pmid"], doc_topics),
            run.topics / "doc_topics.parquet",
            topics.doc_topic_schema(model.n_topics),
        )
        io.write_parquet(
            pd.DataFrame({"topic": range(model.n_topics), "label": model.labels}), run.topics / "topics.parquet"
        )
        rows["documents"] = len(articles)
    with rec.step("split") as rows:
        world = cf.read_world(args.out)
        start = pd.Timestamp(params["world_start"])
        stage = cf.prepare_split(
            world, start, start + pd.Timedelta(days=params["horizon_days"]), 7 * params["world_holdout_weeks"]
        )
        io.write_json(stage.split.to_dict(), run.cf / "split.json")
        # notebook 04 without tuning (cf_tune=false): every baseline at its default values
        io.write_json(
            {"split": stage.split.to_dict(), "chosen_hyper_parameters": {"als": {}}, "note": "bench_stress.py"},
            run.metrics / "cf.json",
        )
        rows.update(
            train_valid_exposures=len(stage.train_valid.interactions), test_hcps_evaluated=len(stage.test.hcp_ids)
        )
    return {}


def sampled_hybrid(base: type, share: float, seed: int) -> type:
    """``base`` (the hybrid's class) whose network trains on a uniform ``share`` of the logged
    exposures before the cut-off. Everything else is built from all of them, as in notebook 05:
    the feature space, the CF factors, the HCPs' histories (which the scores read) and the HCPs
    themselves. Needed at stress scale: the training inputs are dense arrays of about 4 kB an
    exposure (the sequence of the last ``max_seq_len`` exposures included), so the 3.9 million
    exposures of the stress world would take about 16 GB."""

    class Sampled(base):
        def _split_validation(self, queries):
            train, validation = super()._split_validation(queries)
            self.n_exposures_ = len(train)
            if share < 1.0:
                rng = np.random.default_rng(seed)
                keep = np.zeros(len(train), bool)
                keep[rng.choice(len(train), int(round(share * len(train))), replace=False)] = True
                train = train.subset(keep)
            return train, validation

    return Sampled


def engagement_group(args, rec: Recorder) -> dict:
    from dataclasses import asdict, replace

    from hcp_lib.domain import CHANNELS, HYBRID_NAME
    from hcp_lib.io import check_finite
    from hcp_lib.models import hybrid
    from hcp_lib.models.base import exclusion_mask
    from hcp_lib.stages import engagement as es
    from hcp_lib.stages import plan

    params = _parameters(args)
    with rec.step("read_inputs") as rows:
        inputs = es.read_inputs(args.out, params)
        stage = inputs.stage
        rows["exposures"] = len(inputs.interactions)
    settings = replace(hybrid.HybridSettings.from_parameters(params), epochs=args.epochs)
    with rec.step("fit", epochs=settings.epochs, batch_size=settings.batch_size, train_share=args.train_share) as rows:
        model = sampled_hybrid(hybrid.HybridRecommender, args.train_share, args.seed)(
            inputs.data, es.cf_factory(inputs, args.seed)(), settings
        )
        model.fit(stage.train_valid)
        rows.update(
            exposures=int(model.n_exposures_),
            examples=int(model.n_train_examples_),
            network_seconds=round(model.fit_seconds_, 1),
            parameters=int(model.model_.count_params()),
        )
    hcp_ids = stage.train_valid.hcp_ids.astype(str).to_numpy(dtype=object)
    n_hcp, n_item = len(hcp_ids), len(model.content_ids_)
    with rec.step("score", hcps=n_hcp, items=n_item, channels=len(CHANNELS)) as rows:
        probability = np.empty((n_hcp, n_item, len(CHANNELS)), np.float32)
        usable = 0
        for first in range(0, n_hcp, args.score_batch):
            ids = hcp_ids[first : first + args.score_batch]
            exclude = exclusion_mask(
                ids, model.content_ids_, stage.train_valid, released_by=stage.split.test_end, catalogue=stage.catalogue
            )
            probability[first : first + len(ids)] = model.score_channels(ids, exclude)
            usable += int((~exclude).sum()) * len(CHANNELS)
        check_finite(probability, f"model {HYBRID_NAME!r}", what="probability")
        rows.update(cells=int(probability.size), cells_not_excluded=usable, array_mb=round(probability.nbytes / 2**20))
    with rec.step("candidates") as rows:
        candidates = plan.candidate_actions(
            inputs.plan_context,
            plan.matrix_scorer(probability, hcp_ids),
            model.content_ids_,
            inputs.plan_settings,
            model=HYBRID_NAME,
        )
        rows.update(eligible=int(candidates.n_eligible), candidates=len(candidates.table))
    with rec.step("write_candidates") as rows:
        path = plan.write_candidates(
            candidates,
            plan.candidates_path(args.out, HYBRID_NAME),
            inputs.plan_settings,
            inputs.plan_context.plan_start,
        )
        rows["file_mb"] = round(path.stat().st_size / 2**20, 1)
    return {
        "train_examples": int(model.n_train_examples_),
        "cells": int(probability.size),
        "eligible": int(candidates.n_eligible),
        "candidates": len(candidates.table),
        "hybrid_settings": asdict(settings),
    }


def plan_group(args, rec: Recorder) -> dict:

    from hcp_lib.domain import HYBRID_NAME
    from hcp_lib.stages import cf, plan

    params = _parameters(args)
    settings = plan.settings_from_parameters(params)
    with rec.step("plan_read") as rows:
        split = cf.read_split(args.out)
        context = plan.read_context(args.out, split.test_start, settings)
        candidates = plan.usable(plan.read_candidates(plan.candidates_path(args.out, HYBRID_NAME), context, settings))
        rows.update(hcps=len(context.hcps), candidates=len(candidates.table))
    with rec.step("constraints") as rows:
        capacities = plan.capacity_table(context, settings)
        families = plan.constraint_families(candidates.table, settings, capacities, candidates.slots)
        rows.update(
            groups=int(sum(len(f.capacity) for f in families)),
            binding_rows=int(
                sum((np.bincount(f.group, minlength=len(f.capacity)) > f.capacity).sum() for f in families)
            ),
        )
    probability = candidates.table["probability"].to_numpy()
    with rec.step("solve") as rows:
        solved = plan.solve_milp(
            probability, families, settings.time_limit_s, settings.mip_rel_gap, settings.milp_max_candidates, True
        )
        rows.update(solver=solved.solver, actions=int(solved.chosen.sum()))
    with rec.step("greedy") as rows:
        greedy = plan.solve_greedy(probability, families)
        rows.update(actions=int(greedy.chosen.sum()))
    with rec.step("make_plan") as rows:
        result = plan.make_plan(context, candidates, solved, families, capacities, settings, HYBRID_NAME)
        rows.update(actions=len(result.actions), reasons=len(result.reasons), unplanned=len(result.unplanned))
    return {
        "plan": {
            "candidates": len(probability),
            "solver": solved.solver,
            "status": solved.status,
            "objective": solved.objective,
            "bound": solved.bound,
            "gap": solved.gap,
            "seconds": solved.seconds,
            "greedy_seconds": greedy.seconds,
            "greedy_objective": greedy.objective,
            "actions": len(result.actions),
            "hcps_planned": int(result.actions["hcp_id"].nunique()),
            "hcps_unplanned": len(result.unplanned),
            "settings": {
                "time_limit_s": settings.time_limit_s,
                "mip_rel_gap": settings.mip_rel_gap,
                "milp_max_candidates": settings.milp_max_candidates,
                "candidates_per_channel": settings.candidates_per_channel,
                "max_actions_per_hcp": settings.max_actions_per_hcp,
                "period_days": settings.period_days,
            },
        }
    }


GROUP_FUNCTIONS = {"world": world_group, "inputs": inputs_group, "engagement": engagement_group, "plan": plan_group}


def child(args) -> None:
    """Run one group of steps (``--child``) and write its figures to ``<out>/bench/<group>.json``."""
    rec = Recorder()
    load_before = os.getloadavg()[0]
    extra = GROUP_FUNCTIONS[args.child](args, rec)
    # the machine may be shared: the 1-minute load average (2 = both cores busy) at both ends
    figures = {**rec.close(), "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], **extra}
    target = Path(args.out) / "bench" / f"{args.child}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(figures, indent=1, default=str) + "\n")


# --- the parent: the groups in order, the table, the record ---------------------------------------------


def run_size(args, n_hcps: int, out: Path) -> dict:
    """Every group at ``n_hcps`` HCPs in ``out``; the merged figures."""
    merged: dict = {"n_hcps": n_hcps, "out": str(out), "steps": [], "groups": {}}
    for group in GROUPS:
        print(f"[{n_hcps:,} HCPs] {group}", flush=True)
        command = [
            sys.executable,
            __file__,
            "--child",
            group,
            "--out",
            str(out),
            "--n-hcps",
            str(n_hcps),
            "--seed",
            str(args.seed),
            "--epochs",
            str(args.epochs),
            "--n-topics",
            str(args.n_topics),
            "--score-batch",
            str(args.score_batch),
            "--train-share",
            str(args.train_share),
        ]
        started = time.perf_counter()
        done = subprocess.run(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if done.returncode != 0:
            raise SystemExit(f"bench_stress: group {group!r} at {n_hcps:,} HCPs failed (exit {done.returncode})")
        figures = json.loads((out / "bench" / f"{group}.json").read_text())
        merged["steps"] += figures.pop("steps")
        merged["groups"][group] = {"wall_seconds": round(time.perf_counter() - started, 1), **figures}
    return merged


def growth(reference: dict | None, run: dict) -> dict[str, float]:
    """Per step: how many times its time grew from the reference run, per time the HCPs grew
    (1 = linear in HCPs; 2 = the time grew twice as fast as the HCPs)."""
    if not reference:
        return {}
    ratio = run["n_hcps"] / reference["n_hcps"]
    before = {s["step"]: s["seconds"] for s in reference["steps"]}
    return {
        s["step"]: round(s["seconds"] / before[s["step"]] / ratio, 2)
        for s in run["steps"]
        if before.get(s["step"]) and before[s["step"]] >= 0.05
    }


def table(results: dict) -> list[list[str]]:
    """Rows of the printed table (the first is the header)."""
    run, reference = results["run"], results.get("reference")
    header = ["step", f"{run['n_hcps']:,} HCPs s", "peak MB"]
    if reference:
        header += [f"{reference['n_hcps']:,} HCPs s", "time growth / HCP growth"]
    rows = [header + ["rows"]]
    before = {s["step"]: s for s in reference["steps"]} if reference else {}
    grew = results.get("growth", {})
    for s in run["steps"]:
        cells = [STEPS[s["step"]], f"{s['seconds']:,.1f}", f"{s['peak_mb']:,}"]
        if reference:
            cells += [f"{before[s['step']]['seconds']:,.1f}" if s["step"] in before else "-"]
            cells += [f"{grew[s['step']]:.2f}" if s["step"] in grew else "-"]
        rows.append(
            cells + [", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in s["rows"].items())]
        )
    return rows


def collect(args, reference: dict | None, run: dict) -> dict:
    from bench_regimes import git_commit

    from hcp_lib import config

    params = _parameters(args)
    world, engagement, plan_figures = (run["groups"][g] for g in ("world", "engagement", "plan"))
    return {
        "date": dt.date.today().isoformat(),
        "commit": git_commit(),
        "scale": "stress",
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "tf_threads": int(os.environ.get("HCP_TF_THREADS", 2))},
        "settings": {
            "n_hcps": run["n_hcps"],
            "touches_per_hcp_week": params["touches_per_hcp_week"],
            "hybrid_epochs": args.epochs,
            "hybrid_train_share": args.train_share,
            "hybrid_epochs_notebook": config.PARAMS["hybrid_epochs"].default_for("stress"),
            "hybrid": engagement["hybrid_settings"],
            "als": "default hyper-parameters (cf_tune=false)",
            "n_topics": args.n_topics,
            "score_batch_hcps": args.score_batch,
            "plan": plan_figures["plan"]["settings"],
        },
        "rows": {
            "hcps": world["hcps"],
            "exposures": world["exposures"],
            "items": world["items"],
            "train_examples": engagement["train_examples"],
            "cells": engagement["cells"],
            "eligible_actions": engagement["eligible"],
            "candidates": engagement["candidates"],
            "actions": plan_figures["plan"]["actions"],
        },
        "plan": {k: v for k, v in plan_figures["plan"].items() if k != "settings"},
        "run": {"n_hcps": run["n_hcps"], "steps": run["steps"], "groups": _group_summary(run)},
        "reference": (
            {"n_hcps": reference["n_hcps"], "steps": reference["steps"], "groups": _group_summary(reference)}
            if reference
            else None
        ),
        "growth": growth(reference, run),
    }


def _group_summary(run: dict) -> dict:
    keys = ("wall_seconds", "max_rss_mb", "load_1min")
    return {g: {k: v[k] for k in keys if k in v} for g, v in run["groups"].items()}


def print_table(results: dict) -> None:
    rows = table(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print(
            "  "
            + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            + "  "
            + r[-1]
        )
    p = results["plan"]
    gap = "no bound" if p["gap"] is None else f"proven gap {p['gap']:.3%}"
    print(
        f"  plan: {p['candidates']:,} candidates, {p['solver']} in {p['seconds']:,.1f} s (greedy alone "
        f"{p['greedy_seconds']:,.1f} s), objective {p['objective']:,.1f}, bound {p['bound']}, {gap}; "
        f"{p['actions']:,} actions for {p['hcps_planned']:,} HCPs"
    )


# --- the book page's section (bench_growth.py --write calls it) -----------------------------------------


def _rows_text(rows: dict) -> str:
    return ", ".join(
        f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}" for k, v in rows.items()
    )


def section(results: dict) -> str:
    """The section "The stress run" of the book page ``book/scale_out.md``: the measured table and
    what it says, every figure from ``results`` (the content of stress.json)."""
    run, reference, grew = results["run"], results.get("reference"), results.get("growth") or {}
    rows, plan_figures, settings = results["rows"], results["plan"], results["settings"]
    steps = {s["step"]: s for s in run["steps"]}
    before = {s["step"]: s for s in reference["steps"]} if reference else {}
    lines = [
        f"## The stress run: {rows['hcps']:,} HCPs",
        "",
        f"*Measured by `benchmarks/bench_stress.py` (`make bench-stress`) on {results['date']} from commit "
        f"`{results['commit']}` on {results['machine']['cpus']} cores{_load_text(run)}; the figures are those of "
        "`benchmarks/results/stress.json`.*",
        "",
        f"The `stress` preset's world ({rows['hcps']:,} HCPs, {rows['exposures']:,} logged exposures, "
        f"{rows['items']:,} content items) through synthesis, the engagement model's scores and the week's plan. "
        "Each step's wall seconds and the peak resident memory of its process while it ran"
        + (
            f"; the growth column divides the growth of its time from a run of {reference['n_hcps']:,} HCPs "
            f"by the growth of the HCPs ({rows['hcps'] / reference['n_hcps']:,.0f}x): 1 is linear in the HCPs."
            if reference
            else "."
        ),
        "",
        "| step | seconds | peak MB | "
        + (f"{reference['n_hcps']:,} HCPs s | growth / HCP growth | " if reference else "")
        + "rows |",
        "|---|---|---|" + ("---|---|" if reference else "") + "---|",
    ]
    for key in HEADLINE:
        if key not in steps:
            continue
        s = steps[key]
        cells = [STEPS[key], f"{s['seconds']:,.1f}", f"{s['peak_mb']:,}"]
        if reference:
            cells += [
                f"{before[key]['seconds']:,.1f}" if key in before else "–",
                f"{grew[key]:.2f}" if key in grew else "–",
            ]
        lines.append("| " + " | ".join(cells + [_rows_text(s["rows"])]) + " |")
    fit, score, candidates, solve = steps["fit"], steps["score"], steps["candidates"], steps["solve"]
    epochs = settings["hybrid_epochs"]
    lines += [
        "",
        f"**Scoring** computed {rows['cells']:,} probabilities ({rows['hcps']:,} HCPs x {rows['items']:,} "
        f"items x 5 channels) in {score['seconds']:,.0f} s ({rows['cells'] / score['seconds']:,.0f} a second), "
        f"held in one float32 array of {score['rows']['array_mb']:,} MB; pruning them to the plan's "
        f"{rows['candidates']:,} candidates (of {rows['eligible_actions']:,} eligible actions) took "
        f"{candidates['seconds']:,.1f} s. The step's peak memory ({score['peak_mb']:,} MB) is not the array's: the "
        "first call of `score_channels` builds the history's running sums of each exposure's CF vector (float64, "
        "with temporary copies, kept for later calls), so it grows with the exposure log whatever the batch of HCPs "
        "scored.",
        "",
        f"**The fit** is not what is measured here, and it had to be cut: the network trained "
        f"{epochs} epoch{'s' if epochs != 1 else ''} on a uniform {settings['hybrid_train_share']:.0%} of the "
        f"{fit['rows']['exposures']:,} exposures before the test window ({fit['rows']['examples']:,} examples, "
        f"{fit['rows']['network_seconds']:,.0f} s of training), where notebook 05 trains up to "
        f"{settings['hybrid_epochs_notebook']} epochs with early stopping, for two variants and four ablations. "
        "The cut is for memory: the training inputs are dense arrays held whole, "
        + _input_memory(steps, before)
        + " Scores and features are still those of every HCP and its whole history.",
        "",
        "**The plan** " + _plan_text(plan_figures, settings, solve),
    ]
    if reference:
        lines += ["", _growth_text(steps, before, rows["hcps"] / reference["n_hcps"], reference["n_hcps"])]
    lines.append("")
    return "\n".join(lines)


def _load_text(run: dict) -> str:
    loads = [x for g in run.get("groups", {}).values() for x in g.get("load_1min", [])]
    if not loads:
        return ""
    return (
        f" (1-minute load average {min(loads):.1f} to {max(loads):.1f} at the steps' starts and ends; above "
        "the cores' number, other work shared them)"
    )


def _growth_text(steps: dict, before: dict, ratio: float, reference_hcps: int) -> str:
    """The steps whose time outgrew the HCPs by more than half, largest first, with their
    exponents (time ~ HCPs ** exponent); then what the plan's solve spent its time on: the MILP
    when it solved both sizes, else the bound (its solve less the greedy pass)."""
    import math

    def exponent(now: float, then: float) -> float:
        return math.log(now / then) / math.log(ratio)

    fast = [
        k
        for k in steps
        if k in before and before[k]["seconds"] >= 0.05 and steps[k]["seconds"] / before[k]["seconds"] > 1.5 * ratio
    ]
    if not fast:
        return "**Growth.** No step's time grew more than 1.5 times as fast as the HCPs."
    fast.sort(key=lambda k: -steps[k]["seconds"])
    text = "**Growth.** Faster than the HCPs grew: " + "; ".join(
        f"{STEPS[k]} ({before[k]['seconds']:,.1f} -> {steps[k]['seconds']:,.1f} s, time ~ HCPs^"
        f"{exponent(steps[k]['seconds'], before[k]['seconds']):.1f})"
        for k in fast
    )
    text += "."
    if "solve" in fast and steps["solve"]["rows"].get("solver") == before["solve"]["rows"].get("solver") == "milp":
        now, then = steps["solve"]["seconds"], before["solve"]["seconds"]
        text += (
            f" Most of it is the MILP itself, solved to optimality at both sizes: {then:,.1f} s at {reference_hcps:,} "
            f"HCPs and {now:,.0f} s here (HCPs^{exponent(now, then):.1f}), HiGHS's simplex on a program that grows "
            "with the HCPs"
            + (f"; greedy alone took {steps['greedy']['seconds']:,.1f} s" if "greedy" in steps else "")
            + ". The others are seconds."
        )
    elif "solve" in fast and "greedy" in steps and "greedy" in before:
        bound_now = steps["solve"]["seconds"] - steps["greedy"]["seconds"]
        bound_then = before["solve"]["seconds"] - before["greedy"]["seconds"]
        if bound_now > 0 and bound_then > 0:
            same = before["solve"]["rows"].get("solver") == steps["solve"]["rows"].get("solver")
            text += (
                f" Most of it is the plan's proof of quality: the linear relaxation's bound took {bound_then:,.1f} s at "
                f"{reference_hcps:,} HCPs and {bound_now:,.0f} s here (HCPs^{exponent(bound_now, bound_then):.1f}), "
                + (
                    "with the same solver at both sizes, so it is HiGHS's LP on a program that grows with the HCPs, "
                    "not a switch of method; "
                    if same
                    else f"and the solver changed on the way ({before['solve']['rows']['solver']} at {reference_hcps:,} "
                    f"HCPs, {steps['solve']['rows']['solver']} here); "
                )
                + f"the greedy pass itself took {steps['greedy']['seconds']:,.1f} s. The others are seconds."
            )
    return text


def _input_memory(steps: dict, before: dict) -> str:
    """What the fit's memory says: how its peak grew per training example from the reference run
    (HCP-sized structures included, so an upper estimate), and what every exposure would take."""
    fit = steps["fit"]
    if "fit" not in before or fit["rows"]["examples"] <= before["fit"]["rows"]["examples"]:
        return f"and the fit's peak was {fit['peak_mb']:,} MB."
    per = (
        (fit["peak_mb"] - before["fit"]["peak_mb"])
        * 2**20
        / (fit["rows"]["examples"] - before["fit"]["rows"]["examples"])
    )
    whole = (fit["peak_mb"] * 2**20 + per * (fit["rows"]["exposures"] - fit["rows"]["examples"])) / 2**30
    return (
        f"and the fit's peak ({fit['peak_mb']:,} MB) grew by {per / 1024:,.1f} kB a training example from the smaller "
        f"run (the HCP-sized structures that grew with it included, so an upper estimate): training on every exposure "
        f"would need up to about {whole:,.0f} GB."
    )


def _plan_text(p: dict, settings: dict, solve: dict) -> str:
    if p["solver"] == "greedy":
        how = (
            f"has {p['candidates']:,} candidates, above `plan_milp_max_candidates` = "
            f"{settings['plan']['milp_max_candidates']:,}, so `solve_milp` returns the greedy plan and proves its "
            f"gap with the linear relaxation: {p['seconds']:,.0f} s, of which {p['greedy_seconds']:,.0f} s are the "
            "greedy pass and the rest the bound."
        )
    else:
        how = (
            f"was solved by HiGHS as a MILP on {p['candidates']:,} candidates in {p['seconds']:,.0f} s ({p['status']})."
        )
    gap = (
        f" The plan expects {p['objective']:,.1f} engagements; no plan can expect more than {p['bound']:,.1f}, so it is "
        f"within {p['gap']:.2%} of the optimum."
        if p["gap"] is not None and p["bound"]
        else f" The plan expects {p['objective']:,.1f} engagements; no bound was proven within the time limit."
    )
    return (
        how + gap + f" It holds {p['actions']:,} actions for {p['hcps_planned']:,} HCPs (at most "
        f"{settings['plan']['max_actions_per_hcp']} each, at the business-as-usual capacities); "
        f"{p['hcps_unplanned']:,} HCPs got none, each with its reason."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench-stress", help="run folder")
    parser.add_argument("--n-hcps", type=int, default=None, help="HCPs (default: the stress preset's)")
    parser.add_argument("--reference-hcps", type=int, default=None, help="also run at this size first, for growth")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=1, help="hybrid training epochs (default 1)")
    parser.add_argument(
        "--train-share",
        type=float,
        default=0.25,
        help="share of the exposures the hybrid's network trains on (default 0.25; memory, see sampled_hybrid)",
    )
    parser.add_argument("--n-topics", type=int, default=12, help="LDA topics, fixed instead of the sweep")
    parser.add_argument("--score-batch", type=int, default=4096, help="HCPs scored per call of score_channels")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the record")
    parser.add_argument("--child", choices=GROUPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n_hcps is None:
        from hcp_lib import config

        args.n_hcps = config.PARAMS["n_hcps"].default_for("stress")
    args.out = Path(args.out).resolve()
    if args.child:
        child(args)
        return
    reference = None
    if args.reference_hcps:
        reference = run_size(args, args.reference_hcps, args.out.with_name(f"{args.out.name}-{args.reference_hcps}"))
    run = run_size(args, args.n_hcps, args.out)
    results = collect(args, reference, run)
    print_table(results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
