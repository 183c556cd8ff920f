"""Inputs and test-window measurements of the hybrid model (notebook 05), without TensorFlow.

:func:`read_inputs` gathers what :class:`hcp_lib.hybrid.HybridRecommender` learns from: the
split notebook 04 recorded (``cf/split.json``, rebuilt with :func:`hcp_lib.cf.prepare_split`
so the windows are the same), the HCP master, the LDA doc-topic table and the ALS
hyper-parameters notebook 04 chose. The other functions measure ranked lists on the test
window against the CF baselines and the oracle (the simulator's true engagement
probabilities at the test cut-off): per-HCP NDCG@k, bootstrap intervals over HCPs, and the
channel policy value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cf, io
from .config import RunDir
from .domain import CHANNELS
from .evaluate_metrics import ndcg_at_k
from .recommender import top_n


@dataclass(frozen=True)
class HybridInputs:
    """Everything notebook 05 reads: the split stage, the HCP master, the doc-topic table and
    the ALS hyper-parameters chosen on validation by notebook 04."""

    stage: cf.StageSplit
    hcp_master: pd.DataFrame
    doc_topics: pd.DataFrame
    als_params: dict


def read_inputs(run_dir: str | Path) -> HybridInputs:
    """Read the world, topics and CF artifacts of ``run_dir``; an error names a missing file.

    The split is rebuilt from ``cf/split.json`` and checked against it, so the hybrid model is
    fitted and judged on exactly the windows of the baselines.
    """
    run = RunDir(Path(run_dir))
    split = cf.read_split(run_dir)
    holdout = (split.test_end - split.test_start).days
    if (split.test_start - split.valid_start).days != holdout:
        raise ValueError(f"{run.cf / 'split.json'}: validation and test windows differ in length "
                         f"({(split.test_start - split.valid_start).days} and {holdout} days); notebook 04 makes them equal")
    world = cf.read_world(run_dir)
    stage = cf.prepare_split(world, split.train_start, split.test_end, holdout)
    if stage.split != split:
        raise ValueError(f"{run.cf / 'split.json'}: rebuilt windows {stage.split.to_dict()} differ from the recorded "
                         f"{split.to_dict()}")
    master = io.read_parquet(run.world / "hcp_master.parquet")
    doc_topics = io.read_parquet(run.topics / "doc_topics.parquet")
    cf_metrics = io.read_json(run.metrics / "cf.json")
    als_params = dict(cf_metrics.get("chosen_hyper_parameters", {}).get("als") or {})
    return HybridInputs(stage, master, doc_topics, als_params)


def bootstrap_interval(values: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean of ``values`` (NaN ignored) and its percentile bootstrap
    interval at ``level``, resampling HCPs with replacement ``n_resamples`` times."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(values.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def top_n_from_lists(lists: pd.DataFrame, hcp_ids: np.ndarray, content_ids: pd.Index, k: int) -> np.ndarray:
    """Column indices (n_hcp, k) of the top-``k`` of saved lists (hcp_id, rank, content_id),
    in ``hcp_ids`` order; -1 where a list is shorter (an HCP without a list gets only -1)."""
    lists = lists[lists["rank"] <= k]
    rows = pd.Index(np.asarray(hcp_ids, dtype=object)).get_indexer(lists["hcp_id"].astype(object))
    cols = content_ids.get_indexer(lists["content_id"].astype(object))
    keep = rows >= 0
    top = np.full((len(hcp_ids), k), -1, dtype=np.int64)
    top[rows[keep], lists["rank"].to_numpy()[keep] - 1] = cols[keep]
    return top


def baseline_ndcg(run_dir: str | Path, frame: cf.EvaluationWindow, content_ids: pd.Index, k: int = 10) -> dict[str, np.ndarray]:
    """Per-HCP NDCG@k on ``frame`` of every content baseline's saved test list (``cf/test_top_n``)."""
    tops = baseline_tops(run_dir, frame, content_ids, k)
    return {name: ndcg_at_k(top, frame.relevant, k) for name, top in tops.items()}


def oracle_content_scores(truth: np.ndarray) -> np.ndarray:
    """The oracle's content scores: each item's true engagement probability through its best
    channel, (n_hcp, n_content) from the truth (n_hcp, n_content, n_channel)."""
    return truth.max(axis=2)


def channel_policy_value(top: np.ndarray, chosen_channel: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(value, oracle value) of a channel choice on each HCP's recommended items.

    ``top`` (n_hcp, k) holds item columns (-1 = none); ``chosen_channel`` (n_hcp, n_content)
    the channel index chosen for each pair. The value is the mean true engagement probability
    of the chosen channel over the listed pairs; the oracle value that of the best channel.
    """
    rows, ranks = np.nonzero(top >= 0)
    cols = top[rows, ranks]
    chosen = truth[rows, cols, chosen_channel[rows, cols]]
    return float(chosen.mean()), float(truth[rows, cols].max(axis=1).mean())


def content_evaluation(scores: dict[str, np.ndarray], frame: cf.EvaluationWindow, k: int = 10) -> dict[str, np.ndarray]:
    """Per-HCP NDCG@k of each score matrix (rows = ``frame.hcp_ids``), seen/unapproved/unreleased
    items excluded as for the baselines."""
    return {name: ndcg_at_k(top_n(s, k, frame.exclude), frame.relevant, k) for name, s in scores.items()}


def interval_table(per_hcp: dict[str, np.ndarray], n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model: mean NDCG and its 95% bootstrap interval over HCPs (same resamples
    for every model), best first."""
    rows = {name: bootstrap_interval(values, n_resamples, seed) for name, values in per_hcp.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["ndcg@10", "ci_low", "ci_high"])
    return table.sort_values("ndcg@10", ascending=False, kind="stable").rename_axis("model")


def channel_index(channel_scores: np.ndarray) -> np.ndarray:
    """The chosen channel of every (HCP, content): the argmax of the channel scores
    (n_hcp, n_content, n_channel), first channel of ``CHANNELS`` on ties."""
    if channel_scores.shape[-1] != len(CHANNELS):
        raise ValueError(f"channel scores have {channel_scores.shape[-1]} channels, expected {len(CHANNELS)}")
    return np.argmax(channel_scores, axis=-1)


#: the variants of notebook 05 — the ablations and two alternative encoders: name -> settings
#: changed from the full model, and what the variant is. All are fitted before the validation
#: window and compared on it (:func:`selection_table`); the best is refitted for the test window.
ABLATIONS: dict[str, tuple[dict, str]] = {
    "hybrid": ({}, "everything: sequence, static features, topics, CF factors, id embedding"),
    "no_topics": ({"use_topics": False}, "without the LDA topic vectors of the items"),
    "no_cf": ({"use_cf": False}, "without the ALS factors of items and HCPs"),
    "static_only": ({"use_sequence": False}, "without the sequence: static HCP features (and CF) only"),
    "sequence_only": ({"use_static": False}, "without static HCP features and HCP factors: the sequence only"),
    "gru": ({"sequence_encoder": "gru"}, "alternative: a GRU instead of the LSTM, everything else equal"),
    "attention": ({"sequence_pooling": "attention"},
                  "alternative: attention pooling over the LSTM outputs instead of its last state"),
}
#: the variants compared on the validation window when the ablations are not run
SELECTION_CANDIDATES = ("hybrid", "no_cf", "attention")


def selection_validation_start(split) -> pd.Timestamp:
    """Where early stopping starts for a variant fitted on the data before the validation window:
    the last window of the validation window's length before it (``valid_start - (test_start -
    valid_start)``), so the validation window itself is only used to compare the variants."""
    return split.valid_start - (split.test_start - split.valid_start)


def selection_table(per_hcp: dict[str, np.ndarray], n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The variants' validation-window NDCG@10 with 95% bootstrap intervals over HCPs, in the
    order given, and ``chosen``: True for the variant with the highest mean (the first one on
    ties). An empty ``per_hcp`` raises ``ValueError``."""
    if not per_hcp:
        raise ValueError("selection_table needs at least one variant's per-HCP NDCG")
    rows = {name: bootstrap_interval(values, n_resamples, seed) for name, values in per_hcp.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["ndcg@10", "ci_low", "ci_high"]).rename_axis("model")
    means = table["ndcg@10"].fillna(-np.inf).to_numpy()
    table["chosen"] = np.arange(len(table)) == int(np.argmax(means))
    return table


def baseline_channels(run_dir: str | Path, hcp_ids: np.ndarray, n_content: int) -> dict[str, np.ndarray]:
    """Each channel baseline's chosen channel (``cf/test_channels``) as an (n_hcp, n_content)
    channel-index matrix (a channel baseline picks one channel per HCP for every item)."""
    folder = RunDir(Path(run_dir)).cf / "test_channels"
    result = {}
    for path in sorted(folder.glob("*.parquet")):
        table = io.read_parquet(path).set_index("hcp_id")
        chosen = pd.Index(CHANNELS).get_indexer(table["channel"].reindex(pd.Index(hcp_ids, dtype=object)).astype(object))
        if (chosen < 0).any():
            raise ValueError(f"{path}: no channel for HCP id {hcp_ids[np.flatnonzero(chosen < 0)[0]]!r}")
        result[path.stem] = np.repeat(chosen[:, None], n_content, axis=1)
    return result


def content_policy_value(top: np.ndarray, truth: np.ndarray) -> float:
    """Mean true engagement probability (through the best channel) of the listed items ``top``
    (n_hcp, k; -1 = none): what the lists would yield if every item were shown."""
    rows, ranks = np.nonzero(top >= 0)
    return float(truth.max(axis=2)[rows, top[rows, ranks]].mean())


def content_value_table(tops: dict[str, np.ndarray], truth: np.ndarray, exclude: np.ndarray, k: int = 10) -> pd.DataFrame:
    """Each model's :func:`content_policy_value` of its top-``k`` lists and its share of the
    oracle's (the top-``k`` by true probability, same exclusions), best first."""
    oracle = content_policy_value(top_n(oracle_content_scores(truth), k, exclude), truth)
    values = {name: content_policy_value(top[:, :k], truth) for name, top in tops.items()}
    table = pd.DataFrame({"policy value": values, "share of oracle": {n: v / oracle for n, v in values.items()}})
    return table.sort_values("policy value", ascending=False, kind="stable").rename_axis("model")


def baseline_tops(run_dir: str | Path, frame: cf.EvaluationWindow, content_ids: pd.Index, k: int = 10) -> dict[str, np.ndarray]:
    """The top-``k`` columns of every content baseline's saved test list, rows = ``frame.hcp_ids``."""
    folder = RunDir(Path(run_dir)).cf / "test_top_n"
    paths = sorted(folder.glob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no baseline lists (did notebook 04 run?)")
    return {p.stem: top_n_from_lists(io.read_parquet(p), frame.hcp_ids, content_ids, k) for p in paths}
