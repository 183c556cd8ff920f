"""The regimes and full-scale benchmarks' parameters, pages and figure (not their hour-long runs)."""

import sys

import numpy as np
import pytest

from hcp_lib import io
from hcp_lib.config import PROJECT_ROOT, ParameterError
from hcp_lib.stages.evaluate import format_value

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))

import bench_full  # noqa: E402
import bench_growth  # noqa: E402
import bench_regimes  # noqa: E402
import bench_stress  # noqa: E402


def test_regimes_are_valid_worlds_from_no_dynamics_to_strong_dynamics():
    static, default, dynamic = (bench_regimes.world_parameters(r) for r in ("static", "default", "dynamic"))
    assert all(static[name] == 0.0 for name in bench_regimes.EFFECTS)
    assert all(dynamic[name] > default[name] for name in bench_regimes.EFFECTS)
    assert dynamic["touches_per_hcp_week"] == pytest.approx(3 * default["touches_per_hcp_week"])
    assert list(bench_regimes.REGIMES) == ["static", "default", "dynamic"]


def test_a_bad_regime_value_is_refused(monkeypatch):
    monkeypatch.setitem(bench_regimes.REGIMES, "broken", {"fatigue_per_touch": -1.0})
    with pytest.raises(ParameterError, match="fatigue_per_touch"):
        bench_regimes.world_parameters("broken")


def _results(edges):
    def entry(v):
        return {"value": v, "ci_low": v - 0.01, "ci_high": v + 0.01, "n": 100}

    regimes = {}
    for regime, edge in zip(("static", "default", "dynamic"), edges):
        comparisons = [
            {
                "model": "hybrid",
                "baseline": b,
                "metric": m,
                "difference": edge,
                "ci_low": edge - 0.02,
                "ci_high": edge + 0.02,
                "share_better": 0.9,
            }
            for b in ("tabular", "v0.1_classifier")
            for m in ("policy_fraction_of_oracle", "plan_fraction_of_oracle")
        ]
        regimes[regime] = {
            "n_exposures": 1000,
            "n_hcps": 100,
            "metrics": {m: {k: entry(0.8) for k in bench_regimes.METRICS} for m in bench_regimes.MODELS},
            "comparisons": comparisons,
            "candidate_spread": {
                m: {"email_candidate_items": 40 + i, "top5_item_share": 0.25}
                for i, m in enumerate(("oracle", *bench_regimes.MODELS))
            },
            "plan_actions": {m: 1200 for m in ("oracle", *bench_regimes.MODELS)},
        }
    return {"scale": "small", "seed": 42, "commit": "abc", "date": "2026-11-29", "regimes": regimes}


def test_the_page_says_whether_the_edge_grows(tmp_path):
    growing = bench_regimes.page(_results([0.0, 0.02, 0.05]))
    assert "grows with the world's dynamics: static +0.000, default +0.020, dynamic +0.050" in growing
    assert "figures/regimes.png" in growing and "commit `abc`" in growing
    flat = bench_regimes.page(_results([0.03, 0.02, 0.03]))
    assert "does **not** grow with the world's dynamics: static +0.030, default +0.020, dynamic +0.030" in flat
    assert "| default | hybrid | 41 | 0.25 | 1,200 |" in growing
    figure = bench_regimes.draw(_results([0.0, 0.02, 0.05]), tmp_path / "regimes.png")
    assert figure.stat().st_size > 10_000


@pytest.mark.slow
def test_full_scale_page_reports_the_run_it_collects(tiny_run, tmp_path):
    results = bench_full.collect(tiny_run)
    manifest = io.read_json(tiny_run / "manifest.json")
    assert results["scale"] == "tiny" and results["commit"].startswith(manifest["git"]["commit"])
    assert set(results["metrics"]) == set(bench_regimes.MODELS) and results["wall_seconds"] > 0
    page = bench_full.page(results, _results([0.0, 0.02, 0.05]))
    report = io.read_json(tiny_run / "evaluation" / "metrics.json")
    hybrid = report["metrics"]["hybrid"]
    assert f"| hybrid | {format_value(hybrid['policy_fraction_of_oracle'])} | " in page
    assert f"**Chosen for the plan:** {report['selection']['chosen']}" in page
    world = io.read_json(tiny_run / "metrics" / "synthesis.json")
    assert f"# At tiny scale: {world['n_hcps']:,} HCPs" in page and "0.800 → " in page
    assert f"{report['population']['n_hcps']:,} of them evaluated" in page
    assert all(nb["notebook"] in page for nb in manifest["notebooks"])
    # the run's time from its start to its end, beside the notebooks' own times (some overlap)
    assert 0 < results["elapsed_seconds"] <= results["wall_seconds"] + 60
    assert f"The pipeline took {results['elapsed_seconds'] / 60:.1f} min from its start to its end" in page
    assert "*The machine:" not in page
    # a resumed run has no start-to-end time: the page gives the notebooks' own times, and what
    # was said of the machine
    resumed = {k: v for k, v in results.items() if k != "elapsed_seconds"}
    resumed.update(
        resumed={"from_notebook": "06", "earlier_commit": "abc", "earlier_notebooks": ["05_hybrid_lstm.ipynb"]},
        machine_note="two cores, twice as slow as the last record's.",
    )
    page = bench_full.page(resumed, None)
    assert "*The run was resumed at notebook 06: notebooks 05 ran at commit `abc`" in page
    assert "*The machine: two cores, twice as slow as the last record's.*" in page
    assert f"The notebooks took {results['wall_seconds'] / 60:.0f} min in all" in page
    assert "from its start to its end" not in page


def test_full_scale_collect_refuses_an_unfinished_run(tmp_path):
    (tmp_path / "evaluation").mkdir()
    io.write_json({"metrics": {}}, tmp_path / "evaluation" / "metrics.json")
    io.write_json({"status": "running", "finished_at": None}, tmp_path / "manifest.json")
    with pytest.raises(SystemExit, match="status is 'running', not a finished run"):
        bench_full.collect(tmp_path)


@pytest.mark.slow
def test_ope_benchmark_pools_the_worlds_and_writes_its_page(tiny_run, tmp_path):
    import shutil

    import bench_ope

    other = tmp_path / "other"
    shutil.copytree(tiny_run / "ope", other / "ope")
    shutil.copy(tiny_run / "manifest.json", other / "manifest.json")
    results = bench_ope.collect({42: tiny_run, 7: other})
    results.update(scale="tiny", date="2026-11-30")
    assert results["seeds"] == [42, 7]
    rows = {r["estimator"]: r for r in results["estimators"]}
    single = io.read_json(tiny_run / "ope" / "summary.json")["scores"]
    for score in single:  # the same world twice: pooled coverage equals the single world's
        assert rows[score["estimator"]]["coverage"] == pytest.approx(score["coverage"])
        assert rows[score["estimator"]]["pairs"] == 2 * score["n_policies"]
    # the chapter's ranking: the same world twice gives the single world's closest estimator
    assert results["estimators"][0]["estimator"] == single[0]["estimator"]
    text = bench_ope.page(results)
    assert text.startswith("# Off-policy estimates over several worlds")
    assert f"{results['estimators'][0]['label']}** comes closest" in text
    commit = io.read_json(tiny_run / "manifest.json")["git"]["commit"][:10]
    assert "| 42 | " in text and "| 7 | " in text and f"`{commit}`" in text
    json_ready = io.write_json(results, tmp_path / "ope.json")  # no NaN: JSON-valid
    assert io.read_json(json_ready)["seeds"] == [42, 7]


def test_growth_table_marks_a_stage_that_outgrows_the_log():
    def run(scale, exposures, plan_seconds):
        return {
            "scale": scale,
            "rows": {"hcps": exposures // 20, "exposures": exposures},
            "stages": {"02 synthesis": (exposures / 1000, 100.0), "07 plan": (plan_seconds, 50.0)},
        }

    table = bench_growth.growth_table([run("tiny", 1000, 1.0), run("small", 10_000, 2.0), run("full", 100_000, 400.0)])
    assert table[0][:4] == ["stage", "tiny s / MB", "small s / MB", "full s / MB"]
    assert table[0][4] == "time x tiny->small (log x10.0)"
    synthesis, plan = table[1], table[2]
    assert synthesis[0] == "02 synthesis" and synthesis[4:] == ["10.0", "10.0", ""]  # linear: no mark
    assert plan[0] == "07 plan" and plan[4:6] == ["2.0", "200.0 !"] and "simplex" in plan[6]
    assert bench_growth.stage("08_next_best_action.ipynb") == bench_growth.stage("07_next_best_action.ipynb")


def test_growth_reads_a_run_folder(tiny_run):
    figures = bench_growth.from_run(tiny_run)
    assert figures["scale"] == "tiny" and figures["rows"]["hcps"] == 200
    assert set(figures["stages"]) == set(bench_growth.STAGES.values())


def test_scale_out_page_projects_each_stage_from_the_two_largest_scales():
    def run(scale, hcps, seconds, memory):
        return {
            "scale": scale,
            "rows": {"hcps": hcps, "exposures": hcps * 28},
            "stages": {"02 synthesis": (seconds, memory), "07 plan": (seconds * 2, 100.0)},
        }

    runs = [run("tiny", 100, 1.0, 50.0), run("small", 1_000, 2.0, 100.0), run("full", 10_000, 20.0, 400.0)]
    runs[-1]["stages"]["07 plan"] = (400.0, 100.0)  # x100 for x10 HCPs
    ahead = bench_growth.projection(runs, target_hcps=100_000)
    synthesis = ahead["02 synthesis"]
    assert synthesis["time_exponent"] == pytest.approx(1.0) and synthesis["seconds"] == pytest.approx(200.0)
    assert synthesis["memory_exponent"] == pytest.approx(np.log10(4)) and synthesis["memory_mb"] == pytest.approx(1600)
    assert ahead["07 plan"]["memory_mb"] == pytest.approx(100.0)  # flat memory stays flat
    text = bench_growth.page(
        {"date": "2026-11-30", "commit": "abc", "target_hcps": 100_000, "runs": runs, "projection": ahead}
    )
    assert text.startswith("# Past one machine")
    assert "| 02 synthesis | 1 / 50 | 2 / 100 | 20 / 400 | 1.00, 0.60 | 200 / 1,600 |  |" in text
    assert "| 01 ingestion | – | – | – | – | – |  |" in text  # a stage no run recorded
    plan_row = next(line for line in text.splitlines() if line.startswith("| 07 plan"))
    assert "simplex" in plan_row  # a stage growing faster than the HCPs says why
    assert "of them in 07 plan (see its note)," in text  # the slowest stage's note is shown, so named
    runs[-1]["stages"]["07 plan"] = (4.0, 100.0)  # now 02 synthesis is the slowest, without a note
    calm = bench_growth.projection(runs, target_hcps=100_000)
    calm_text = bench_growth.page(
        {"date": "2026-11-30", "commit": "abc", "target_hcps": 100_000, "runs": runs, "projection": calm}
    )
    assert "of them in 02 synthesis, and the largest needs" in calm_text
    assert "| 05 engagement models | tf.distribute" in text
    assert all(name in text for name in bench_growth.ENGINES)


def _stress_record(n_hcps, seconds, solver="greedy"):
    """Steps of a stress run at ``n_hcps`` HCPs, every step taking ``seconds`` (a dict: step -> s)."""
    rows = {
        "generate": {"hcps": n_hcps, "exposures": 40 * n_hcps},
        "read_inputs": {"exposures": 40 * n_hcps},
        "fit": {"epochs": 1, "exposures": 36 * n_hcps, "examples": 9 * n_hcps, "network_seconds": 50.0},
        "score": {"cells": n_hcps * 1000 * 5, "array_mb": n_hcps // 50},
        "candidates": {"candidates": 14 * n_hcps},
        "solve": {"solver": solver, "actions": n_hcps},
    }
    peak = {"fit": n_hcps // 10, "read_inputs": 500}
    return {
        "n_hcps": n_hcps,
        "steps": [
            {"step": key, "seconds": seconds.get(key, 1.0), "peak_mb": peak.get(key, 400), "rows": rows.get(key, {})}
            for key in bench_stress.STEPS
        ],
    }


def test_stress_section_renders_the_record():
    reference = _stress_record(10_000, {"score": 20.0, "solve": 4.0}, solver="milp")
    run = _stress_record(100_000, {"score": 200.0, "solve": 120.0})
    results = {
        "date": "2026-11-30",
        "commit": "abc",
        "machine": {"cpus": 2},
        "settings": {
            "n_hcps": 100_000,
            "hybrid_epochs": 1,
            "hybrid_train_share": 0.25,
            "hybrid_epochs_notebook": 60,
            "plan": {"milp_max_candidates": 100_000, "max_actions_per_hcp": 2},
        },
        "rows": {
            "hcps": 100_000,
            "exposures": 4_000_000,
            "items": 1000,
            "cells": 500_000_000,
            "candidates": 1_400_000,
            "eligible_actions": 30_000_000,
            "train_examples": 900_000,
        },
        "plan": {
            "candidates": 1_400_000,
            "solver": "greedy",
            "status": "greedy: ...",
            "objective": 25_000.0,
            "bound": 27_000.0,
            "gap": 2_000 / 27_000,
            "seconds": 120.0,
            "greedy_seconds": 30.0,
            "actions": 60_000,
            "hcps_planned": 45_000,
            "hcps_unplanned": 55_000,
        },
        "run": run,
        "reference": reference,
    }
    run["groups"] = {"world": {"load_1min": [1.0, 1.5]}, "plan": {"load_1min": [2.5, 2.0]}}
    results["growth"] = bench_stress.growth(reference, run)
    assert results["growth"]["score"] == pytest.approx(1.0) and results["growth"]["solve"] == pytest.approx(3.0)
    text = bench_stress.section(results)
    assert text.startswith("## The stress run: 100,000 HCPs")
    assert "commit `abc`" in text and "`benchmarks/results/stress.json`" in text
    assert (
        "| scoring: every HCP x item x channel | 200.0 | 400 | 20.0 | 1.00 | cells 500,000,000, array mb 2,000 |"
        in text
    )
    assert "500,000,000 probabilities (100,000 HCPs x 1,000 items x 5 channels) in 200 s" in text
    assert "above `plan_milp_max_candidates` = 100,000" in text and "of which 30 s are the greedy pass" in text
    assert "within 7.41% of the optimum" in text
    assert "Faster than the HCPs grew: plan: solve_milp (prove_gap) (4.0 -> 120.0 s, time ~ HCPs^1.5)." in text
    assert "bound took 3.0 s at 10,000 HCPs and 119 s here" in text and "(milp at 10,000 HCPs, greedy here)" in text
    assert "(1-minute load average 1.0 to 2.5 at the steps' starts and ends;" in text
    assert "a uniform 25% of the 3,600,000 exposures" in text and "up to 60 epochs" in text
    printed = bench_stress.table(results)
    assert printed[0][:5] == ["step", "100,000 HCPs s", "peak MB", "10,000 HCPs s", "time growth / HCP growth"]
    # the book page carries the section when given a stress record, and not otherwise
    runs = [
        {"scale": s, "rows": {"hcps": h, "exposures": 30 * h}, "stages": {"02 synthesis": (h / 100, 100.0)}}
        for s, h in (("small", 1_000), ("full", 10_000))
    ]
    growth = {"date": "2026-11-30", "commit": "abc", "target_hcps": 100_000, "runs": runs}
    growth["projection"] = bench_growth.projection(runs)
    page = bench_growth.page(growth, results)
    assert text in page and page.index("## The stress run") < page.index("## Where each stage would go")
    assert "## The stress run" not in bench_growth.page(growth)


def test_stress_growth_text_names_the_milp_when_it_solved_both_sizes():
    # both plans solved exactly: the growth is the MILP's own, not a bound's
    reference = {s["step"]: s for s in _stress_record(10_000, {"solve": 2.0, "greedy": 0.2}, solver="milp")["steps"]}
    run = {s["step"]: s for s in _stress_record(100_000, {"solve": 200.0, "greedy": 2.0}, solver="milp")["steps"]}
    text = bench_stress._growth_text(run, reference, 10.0, 10_000)
    assert "plan: solve_milp (prove_gap) (2.0 -> 200.0 s, time ~ HCPs^2.0)" in text
    assert "Most of it is the MILP itself, solved to optimality at both sizes: 2.0 s at 10,000 HCPs and 200 s" in text
    assert "greedy alone took 2.0 s" in text and "bound" not in text
