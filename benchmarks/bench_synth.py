"""Benchmark of the synthetic world: generation time and peak memory per scale preset.

Run: ``.venv/bin/python benchmarks/bench_synth.py [tiny small full stress]`` (default: tiny
small full). Each preset runs in a fresh subprocess so its peak memory (max RSS) is its
own; the articles are the shipped snapshot, cleaned as notebook 01 does. Generation
covers everything :func:`hcp_lib.world.synth.generate_world` does (entities, themes,
simulation, responses); writing the Parquet files is timed separately.
"""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, tempfile, time
from hcp_lib import config
from hcp_lib.stages import pubmed
from hcp_lib.world import synth
scale = sys.argv[1]
articles, _ = pubmed.clean_articles(pubmed.load_snapshot())
values = config.resolve_parameters(scale=scale)
params = synth.synthesis_params(**{k: values[k] for k in synth.PARAM_NAMES})
started = time.perf_counter()
world = synth.generate_world(articles, params, seed=42)
generated = time.perf_counter() - started
with tempfile.TemporaryDirectory() as run_dir:
    started = time.perf_counter()
    synth.write_world(world, run_dir)
    written = time.perf_counter() - started
print(json.dumps({"scale": scale, "n_hcps": len(world.hcps), "n_exposures": len(world.interactions),
                  "generate_s": round(generated, 1), "write_s": round(written, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def main(scales: list[str]) -> None:
    print(f"{'scale':8s} {'HCPs':>8s} {'exposures':>10s} {'generate s':>11s} {'write s':>8s} {'peak MB':>8s}")
    for scale in scales:
        done = subprocess.run([sys.executable, "-c", _CHILD, scale], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{scale:8s} failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['scale']:8s} {r['n_hcps']:8d} {r['n_exposures']:10d} {r['generate_s']:11.1f} {r['write_s']:8.1f} "
            f"{r['peak_rss_mb']:8d}"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["tiny", "small", "full"])
