"""Every metric of the project, one function each, and the one bootstrap over HCPs.

Every chapter computes its numbers here (Microsoft Recommenders' ``python_evaluation`` is the
model): the CF stage's validation table, the engagement models' choice criterion, the
evaluation chapter's headline and every interval, the off-policy chapter's estimators and
the simulator's learnability check.

Conventions
-----------
``recommended``
    Integer array (n_hcp, >= k) of catalogue column indices, best first, -1 for "no item"
    (as returned by :func:`hcp_lib.models.base.top_n`, or :func:`top_k` of a score matrix).
``relevant``
    Boolean sparse or dense matrix (n_hcp, n_content) of the items each HCP engaged with in
    the evaluation window (:func:`relevance_matrix`).
Per-HCP values
    Ranking metrics return one value per HCP, NaN where the metric is undefined for that HCP
    (no relevant item; a list of fewer than two items for diversity), so that
    :func:`bootstrap_ratio` can resample HCPs. Their mean over the HCPs where they are defined
    is :func:`mean_over_hcps`.
Checked inputs
    A NaN or infinite item position, score, gain, popularity, topic vector, probability or
    bootstrap term raises :class:`hcp_lib.io.NonFiniteError` (through
    :func:`hcp_lib.io.check_finite`) naming the function and the count, and a probability
    outside [0, 1] raises ``ValueError``, rather than the metric coming out NaN or inf.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics import brier_score_loss, f1_score, log_loss

from .io import check_finite

# --- inputs ------------------------------------------------------------------------------------


def relevance_matrix(
    window: pd.DataFrame, hcp_ids, content_ids: pd.Index, exclude: np.ndarray | None = None
) -> sp.csr_matrix:
    """Mark the items each HCP engaged with in an evaluation window.

    Builds the boolean CSR matrix (n_hcp, n_content) that is True where the HCP engaged with
    the item in ``window``. Rows of ``window`` whose HCP or item lies outside ``hcp_ids`` /
    ``content_ids`` are ignored. Cells True in ``exclude`` (e.g. items the HCP already engaged
    with in training, which no list may contain) are dropped.

    Parameters
    ----------
    window : pandas.DataFrame
        Interaction rows with columns ``hcp_id``, ``content_id`` and ``engaged`` (bool); only
        the engaged rows count.
    hcp_ids : sequence of str, length n_hcp
        The HCPs, in the order of the matrix rows.
    content_ids : pandas.Index or array-like of str, length n_content
        The catalogue items, in the order of the matrix columns.
    exclude : ndarray of bool, shape (n_hcp, n_content), optional
        Cells that may not count as relevant (e.g. from
        :func:`hcp_lib.models.base.exclusion_mask`); default: none excluded.

    Returns
    -------
    scipy.sparse.csr_matrix of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in ``window`` and the cell is not excluded.
    """
    engaged = window[window["engaged"]]
    rows = pd.Index(np.asarray(list(hcp_ids), dtype=object)).get_indexer(engaged["hcp_id"])
    cols = pd.Index(content_ids).get_indexer(engaged["content_id"])
    keep = (rows >= 0) & (cols >= 0)
    rows, cols = rows[keep], cols[keep]
    if exclude is not None:
        allowed = ~exclude[rows, cols]
        rows, cols = rows[allowed], cols[allowed]
    shape = (len(hcp_ids), len(content_ids))
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return matrix.astype(bool)


def item_positions(recommended, source: str) -> np.ndarray:
    """Check a recommendation array and return it as int64 item positions.

    ``recommended`` (n_hcp, n) is returned as int64 item positions; an integer array is
    returned as is (cast to int64), a float array must hold whole, finite numbers.

    Parameters
    ----------
    recommended : array-like of int or float, shape (n_hcp, n)
        Item positions (catalogue column indices), best first, -1 for "no item".
    source : str
        The caller's name, used in error messages.

    Returns
    -------
    ndarray of int64, shape (n_hcp, n)
        The item positions.

    Raises
    ------
    ValueError
        If ``recommended`` is not 2-D, or a float array holds a position that is not a whole
        number.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf; the message names ``source``.
    """
    top = np.asarray(recommended)
    if top.ndim != 2:
        raise ValueError(f"{source}: recommended must be a 2-D array (HCPs, ranks), got shape {top.shape}")
    if top.dtype.kind in "iu":
        return top.astype(np.int64, copy=False)
    values = check_finite(
        top,
        source,
        "recommended item position",
        verb="was given",
        consequence="a list holds item positions, -1 for no item",
    )
    if (values != np.round(values)).any():
        raise ValueError(
            f"{source}: recommended holds item position {float(values[values != np.round(values)][0])!r}; "
            "positions are whole numbers (-1 for no item)"
        )
    return values.astype(np.int64)


def hits_at_k(recommended: np.ndarray, relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hit flags of each HCP's top-k list and its number of relevant items.

    Every ranking metric of the project counts hits through this one function.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions (catalogue column indices) of each HCP's list, best first, -1 for
        padding (e.g. from :func:`hcp_lib.models.base.top_n` or :func:`top_k`).
    relevant : scipy.sparse matrix or ndarray of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in the evaluation window
        (:func:`relevance_matrix`).
    k : int
        List length (>= 1); only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    flags : ndarray of bool, shape (n_hcp, k)
        True where the item at that rank is relevant (False for a -1 padding slot).
    n_relevant : ndarray of int64, shape (n_hcp,)
        The number of relevant items of each HCP.

    Raises
    ------
    ValueError
        If ``k < 1``, ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a
        non-whole position, or does not have as many rows as ``relevant``.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = item_positions(recommended, "hits_at_k")[:, :k]
    if top.shape[1] < k:
        raise ValueError(f"recommended has {top.shape[1]} columns; k={k} needs at least {k}")
    relevant = sp.csr_matrix(relevant, dtype=bool)
    if relevant.shape[0] != top.shape[0]:
        raise ValueError(f"recommended has {top.shape[0]} rows but relevant has {relevant.shape[0]}")
    rows = np.repeat(np.arange(top.shape[0]), k)
    cols = top.ravel()
    flags = np.zeros(rows.shape, dtype=bool)
    valid = cols >= 0
    flags[valid] = np.asarray(relevant[rows[valid], cols[valid]]).ravel()
    return flags.reshape(top.shape), np.asarray(relevant.sum(axis=1)).ravel()


def _finite(values, source: str, what: str, **kwargs) -> np.ndarray:
    # every metric input here goes through the project's one finiteness check
    return check_finite(
        values,
        source,
        what,
        verb="was given",
        consequence="the metric would be NaN or inf — check the model or table it came from",
        **kwargs,
    )


def _outcomes_and_probabilities(engaged, probability, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(engaged as bool, probability as float64) after checking shapes, finiteness and [0, 1]."""
    y = np.asarray(engaged)
    p = _finite(probability, source, "probability")
    if y.shape != p.shape:
        raise ValueError(f"{source}: engaged has shape {y.shape} but probability has {p.shape}")
    outside = (p < 0) | (p > 1)
    if outside.any():
        raise ValueError(
            f"{source}: {int(outside.sum()):,} of {p.size:,} probabilities lie outside [0, 1] "
            f"(first {float(p[outside][0])!r} at position {int(np.flatnonzero(outside.ravel())[0])}); "
            "engagement probabilities must lie in [0, 1]"
        )
    return y.astype(bool), p


def _flags(recommended: np.ndarray, relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    flags, n_relevant = hits_at_k(recommended, relevant, k)
    return flags, n_relevant.astype(np.float64)


# --- ranking metrics, one value per HCP --------------------------------------------------------


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The top-k item positions of each row of a score matrix.

    Rows are ranked by decreasing score; ``-inf`` marks an item that may not be listed, and
    a row with fewer than ``k`` listable items is padded with -1.

    Parameters
    ----------
    scores : ndarray of float, shape (n_hcp, n_content)
        Higher is better; ``-inf`` marks an item that may not be listed. NaN is refused.
    k : int
        List length (>= 1); a row with fewer than k listable items is padded with -1.

    Returns
    -------
    ndarray of int64, shape (n_hcp, k)
        Item positions, best first, -1 past the listable items; ties keep column order
        (stable sort).

    Raises
    ------
    ValueError
        If ``k < 1``.
    hcp_lib.io.NonFiniteError
        If ``scores`` holds NaN or +inf (``-inf`` is allowed: it marks an unlistable item).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores = np.asarray(scores, dtype=np.float64)
    check_finite(
        np.where(np.isneginf(scores), 0.0, scores),
        "top_k",
        "score",
        verb="was given",
        consequence="give -inf to items that may not be listed",
    )
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    listable = np.isfinite(np.take_along_axis(scores, order, axis=1))
    top = np.full((scores.shape[0], k), -1, dtype=np.int64)
    top[:, : order.shape[1]] = np.where(listable, order, -1)
    return top


def mean_over_hcps(values: np.ndarray) -> float:
    """The mean of per-HCP metric values over the HCPs where the metric is defined.

    NaN means "undefined for this HCP" and is left out of the mean; ±inf is never a metric
    value and is refused.

    Parameters
    ----------
    values : ndarray of float, shape (n_hcp,)
        Per-HCP values, NaN where undefined (e.g. :func:`ndcg_at_k` for an HCP with nothing
        relevant).

    Returns
    -------
    float
        The mean of the non-NaN values; NaN when no HCP has a defined value.

    Raises
    ------
    hcp_lib.io.NonFiniteError
        If ``values`` holds +inf or -inf.
    """
    values = check_finite(
        values,
        "mean_over_hcps",
        "per-HCP value",
        verb="was given",
        consequence="a metric value is finite or NaN (undefined)",
        allow_nan=True,
    )
    defined = ~np.isnan(values)
    return float(values[defined].mean()) if defined.any() else float("nan")


def _undefined_without_relevant(values: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return np.where(n_relevant > 0, values, np.nan)


def hit_at_k(recommended: np.ndarray, relevant, k: int) -> np.ndarray:
    """Per-HCP hit indicator of the top-k list.

    Per HCP: 1 if the top-k list holds at least one relevant item, else 0. Its mean over HCPs
    with a relevant item (:func:`mean_over_hcps`) is the hit rate HR@k. min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions (catalogue column indices) of each HCP's list, best first, -1 for
        padding (e.g. from :func:`hcp_lib.models.base.top_n` or :func:`top_k`).
    relevant : scipy.sparse matrix or ndarray of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in the evaluation window
        (:func:`relevance_matrix`).
    k : int
        List length (>= 1); only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        1.0 if the top-k list holds a relevant item, else 0.0;
        NaN for an HCP with no relevant item (the metric is undefined there).

    Raises
    ------
    ValueError
        If ``k < 1``, ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a
        non-whole position, or does not have as many rows as ``relevant``.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    flags, n_relevant = _flags(recommended, relevant, k)
    return _undefined_without_relevant(flags.any(axis=1).astype(np.float64), n_relevant)


def precision_at_k(recommended: np.ndarray, relevant, k: int) -> np.ndarray:
    """Per-HCP precision of the top-k list.

    Per HCP: relevant items in the top-k list / k. A list shorter than k is not rewarded for
    it: the divisor is always k, as in Microsoft Recommenders. min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions (catalogue column indices) of each HCP's list, best first, -1 for
        padding (e.g. from :func:`hcp_lib.models.base.top_n` or :func:`top_k`).
    relevant : scipy.sparse matrix or ndarray of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in the evaluation window
        (:func:`relevance_matrix`).
    k : int
        List length (>= 1); only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        Precision@k of each HCP, in [0, 1];
        NaN for an HCP with no relevant item (the metric is undefined there).

    Raises
    ------
    ValueError
        If ``k < 1``, ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a
        non-whole position, or does not have as many rows as ``relevant``.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    flags, n_relevant = _flags(recommended, relevant, k)
    return _undefined_without_relevant(flags.sum(axis=1) / k, n_relevant)


def recall_at_k(recommended: np.ndarray, relevant, k: int) -> np.ndarray:
    """Per-HCP recall of the top-k list.

    Per HCP: relevant items in the top-k list / all relevant items of the HCP. min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions (catalogue column indices) of each HCP's list, best first, -1 for
        padding (e.g. from :func:`hcp_lib.models.base.top_n` or :func:`top_k`).
    relevant : scipy.sparse matrix or ndarray of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in the evaluation window
        (:func:`relevance_matrix`).
    k : int
        List length (>= 1); only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        Recall@k of each HCP, in [0, 1];
        NaN for an HCP with no relevant item (the metric is undefined there).

    Raises
    ------
    ValueError
        If ``k < 1``, ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a
        non-whole position, or does not have as many rows as ``relevant``.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    flags, n_relevant = _flags(recommended, relevant, k)
    return _undefined_without_relevant(flags.sum(axis=1) / np.maximum(n_relevant, 1), n_relevant)


def ndcg_at_k(recommended: np.ndarray, relevant, k: int) -> np.ndarray:
    """Per-HCP binary-gain NDCG of the top-k list.

    Per HCP: DCG = sum_r rel_r / log2(r + 1) over ranks 1..k, divided by the DCG of
    min(k, n_relevant) hits at the top. Its mean is :func:`mean_over_hcps`. min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions (catalogue column indices) of each HCP's list, best first, -1 for
        padding (e.g. from :func:`hcp_lib.models.base.top_n` or :func:`top_k`).
    relevant : scipy.sparse matrix or ndarray of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in the evaluation window
        (:func:`relevance_matrix`).
    k : int
        List length (>= 1); only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        NDCG@k of each HCP, in [0, 1];
        NaN for an HCP with no relevant item (the metric is undefined there).

    Raises
    ------
    ValueError
        If ``k < 1``, ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a
        non-whole position, or does not have as many rows as ``relevant``.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    flags, n_relevant = _flags(recommended, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.clip(np.minimum(n_relevant, k).astype(int), 1, None) - 1]
    return _undefined_without_relevant((flags @ discounts) / ideal, n_relevant)


def reciprocal_rank_at_k(recommended: np.ndarray, relevant, k: int) -> np.ndarray:
    """Per-HCP reciprocal rank of the first relevant item in the top-k list.

    Per HCP: 1 / rank of the first relevant item in the top-k list, 0 if none (its mean is
    MRR@k). min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions (catalogue column indices) of each HCP's list, best first, -1 for
        padding (e.g. from :func:`hcp_lib.models.base.top_n` or :func:`top_k`).
    relevant : scipy.sparse matrix or ndarray of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in the evaluation window
        (:func:`relevance_matrix`).
    k : int
        List length (>= 1); only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        The reciprocal rank of each HCP, in [0, 1];
        NaN for an HCP with no relevant item (the metric is undefined there).

    Raises
    ------
    ValueError
        If ``k < 1``, ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a
        non-whole position, or does not have as many rows as ``relevant``.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    flags, n_relevant = _flags(recommended, relevant, k)
    first = np.argmax(flags, axis=1)
    return _undefined_without_relevant(np.where(flags.any(axis=1), 1.0 / (first + 1), 0.0), n_relevant)


def average_precision_at_k(recommended: np.ndarray, relevant, k: int) -> np.ndarray:
    """Per-HCP average precision of the top-k list.

    Per HCP: AP@k = sum over ranks r <= k holding a relevant item of precision@r, divided by
    min(k, n_relevant) (so a perfect list scores 1 even when the HCP has more than k relevant
    items). Its mean is MAP@k. min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions (catalogue column indices) of each HCP's list, best first, -1 for
        padding (e.g. from :func:`hcp_lib.models.base.top_n` or :func:`top_k`).
    relevant : scipy.sparse matrix or ndarray of bool, shape (n_hcp, n_content)
        True where the HCP engaged with the item in the evaluation window
        (:func:`relevance_matrix`).
    k : int
        List length (>= 1); only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        AP@k of each HCP, in [0, 1];
        NaN for an HCP with no relevant item (the metric is undefined there).

    Raises
    ------
    ValueError
        If ``k < 1``, ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a
        non-whole position, or does not have as many rows as ``relevant``.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    flags, n_relevant = _flags(recommended, relevant, k)
    precision_at_rank = np.cumsum(flags, axis=1) / np.arange(1, k + 1)
    total = (precision_at_rank * flags).sum(axis=1)
    return _undefined_without_relevant(total / np.maximum(np.minimum(n_relevant, k), 1), n_relevant)


def ideal_gains(gains: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` largest eligible gains of each HCP, best first: graded NDCG's ideal list.

    The ideal DCG of :func:`graded_ndcg_at_k` places these at the top. Computed once, it
    serves every list scored against the same gains (every model of an evaluation, at every k
    up to ``k``). The k largest are found by a partition and only they are sorted: the same
    values as sorting every row, in a fraction of the time.

    Parameters
    ----------
    gains : ndarray of float, shape (n_hcp, n_content)
        The gain of each item for each HCP.
    k : int
        How many gains to keep per HCP (>= 1; at most ``n_content`` are kept).
    eligible : ndarray of bool, shape (n_hcp, n_content), optional
        The items the ideal list may hold (the others gain 0 there); default: all.

    Returns
    -------
    ndarray of float64, shape (n_hcp, min(k, n_content))
        The largest eligible gains of each HCP in decreasing order (0 past its eligible items).

    Raises
    ------
    ValueError
        If ``k < 1``.
    hcp_lib.io.NonFiniteError
        If ``gains`` holds NaN or inf.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gains = _finite(gains, "ideal_gains", "gain")
    candidate_gains = gains if eligible is None else np.where(eligible, gains, 0.0)
    keep = min(k, candidate_gains.shape[1])
    if keep < candidate_gains.shape[1]:
        candidate_gains = -np.partition(-candidate_gains, keep - 1, axis=1)[:, :keep]
    return -np.sort(-candidate_gains, axis=1)[:, :keep]


def graded_ndcg_at_k(
    recommended: np.ndarray,
    gains: np.ndarray,
    k: int,
    eligible: np.ndarray | None = None,
    ideal: np.ndarray | None = None,
) -> np.ndarray:
    """Per-HCP NDCG@k with graded gains (e.g. the simulator's true engagement probabilities).

    DCG = sum_r gains[item_r] / log2(r + 1) over the top-k list (an empty slot gains 0); the
    ideal DCG places the k largest gains among the HCP's ``eligible`` items (default: all)
    at the top. Linear gains, as ``sklearn.metrics.ndcg_score``; NaN where the ideal DCG is 0.
    min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions of each HCP's list, best first, -1 for padding.
    gains : ndarray of float, shape (n_hcp, n_content)
        The gain of each item for each HCP.
    k : int
        List length; only the first ``k`` columns of ``recommended`` count.
    eligible : ndarray of bool, shape (n_hcp, n_content), optional
        The items the ideal list may hold; default: all.
    ideal : ndarray of float, shape (n_hcp, >= min(k, n_content)), optional
        :func:`ideal_gains` of ``gains`` and ``eligible`` (for k or more), when many lists are
        scored against the same gains; default: computed here (``eligible`` is then read).

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        Graded NDCG@k of each HCP, in [0, 1]; NaN where the ideal DCG is 0.

    Raises
    ------
    ValueError
        If ``recommended`` is not 2-D, has fewer than ``k`` columns, holds a non-whole
        position, or does not have as many rows as ``gains``; or ``ideal`` has too few
        columns or another number of rows.
    hcp_lib.io.NonFiniteError
        If ``gains`` or a float ``recommended`` holds NaN or inf.
    """
    gains = _finite(gains, "graded_ndcg_at_k", "gain")
    top = item_positions(recommended, "graded_ndcg_at_k")[:, :k]
    if top.shape[1] < k:
        raise ValueError(f"recommended has {top.shape[1]} columns; k={k} needs at least {k}")
    if gains.shape[0] != top.shape[0]:
        raise ValueError(f"recommended has {top.shape[0]} rows but gains has {gains.shape[0]}")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    listed = np.where(top >= 0, np.take_along_axis(gains, np.maximum(top, 0), axis=1), 0.0)
    if ideal is None:
        ideal = ideal_gains(gains, k, eligible)
    width = min(k, gains.shape[1])
    if ideal.shape[0] != gains.shape[0] or ideal.shape[1] < width:
        raise ValueError(f"ideal has shape {ideal.shape}; graded NDCG@{k} needs ({gains.shape[0]}, >= {width})")
    best = ideal[:, :width]
    ideal_dcg = best @ discounts[:width]
    return np.where(ideal_dcg > 0, (listed @ discounts) / np.where(ideal_dcg > 0, ideal_dcg, 1.0), np.nan)


def catalogue_coverage_at_k(recommended: np.ndarray, n_content: int, k: int) -> float:
    """The share of the catalogue that appears in at least one top-k list.

    The number of distinct items in the top-k lists of all HCPs divided by ``n_content``.
    min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions of each HCP's list, best first, -1 for padding.
    n_content : int
        The number of catalogue items.
    k : int
        List length; only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    float
        The share of the ``n_content`` catalogue items listed at least once, in [0, 1]; NaN
        when ``n_content`` is 0.

    Raises
    ------
    ValueError
        If ``recommended`` is not 2-D or holds a non-whole position.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    top = item_positions(recommended, "catalogue_coverage_at_k")[:, :k]
    return float(len(np.unique(top[top >= 0])) / n_content) if n_content else float("nan")


def list_share_at_k(recommended: np.ndarray, n_content: int, k: int) -> np.ndarray:
    """The share of the HCPs' top-k lists that hold each catalogue item.

    Per item i: the number of HCPs whose top-k list holds i, divided by the number of HCPs
    with a non-empty list. The shares sum to the mean list length. min=0, max=1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions of each HCP's list, best first, -1 for padding.
    n_content : int
        The number of catalogue items (every position is below it).
    k : int
        List length; only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_content,)
        The share of non-empty lists that hold each item, in [0, 1]; all NaN when no list
        holds an item.

    Raises
    ------
    ValueError
        If ``recommended`` is not 2-D, holds a non-whole position or a position of
        ``n_content`` or more.
    hcp_lib.io.NonFiniteError
        If a float ``recommended`` holds NaN or inf.
    """
    top = item_positions(recommended, "list_share_at_k")[:, :k]
    if (top >= n_content).any():
        raise ValueError(f"list_share_at_k: item position {int(top.max())} is not below n_content={n_content}")
    lists = int((top >= 0).any(axis=1).sum())
    if not lists:
        return np.full(n_content, np.nan)
    rows, cols = np.nonzero(top >= 0)
    # an item counts once per list, even if a list repeated it
    held = np.unique(rows.astype(np.int64) * n_content + top[rows, cols]) % n_content
    return np.bincount(held, minlength=n_content) / lists


def novelty_at_k(recommended: np.ndarray, item_popularity: np.ndarray, n_hcps: int, k: int) -> np.ndarray:
    """Per-HCP mean self-information of the items in the top-k list.

    Per HCP: the mean of -log2((n_i + 1) / (n_hcps + 1)) over the items in its top-k list,
    n_i = HCPs who engaged with item i before the cut-off (+1 so unseen items are finite).
    Higher = less popular items. min=0; NaN for an empty list.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions of each HCP's list, best first, -1 for padding.
    item_popularity : ndarray of float or int, shape (n_content,)
        The number n_i of HCPs who engaged with each item before the cut-off (>= 0).
    n_hcps : int
        The number of HCPs the popularities are counted over (>= 0).
    k : int
        List length; only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        The mean self-information of each HCP's listed items (>= 0); NaN for an empty list.

    Raises
    ------
    ValueError
        If a popularity or ``n_hcps`` is negative, or ``recommended`` is not 2-D or holds a
        non-whole position.
    hcp_lib.io.NonFiniteError
        If ``item_popularity`` or a float ``recommended`` holds NaN or inf.
    """
    top = item_positions(recommended, "novelty_at_k")[:, :k]
    popularity = _finite(item_popularity, "novelty_at_k", "item popularity")
    if (popularity < 0).any() or n_hcps < 0:
        raise ValueError(
            f"novelty_at_k: item popularities and n_hcps are counts (>= 0); got minimum popularity "
            f"{float(popularity.min())!r} and n_hcps={n_hcps!r}"
        )
    information = -np.log2((popularity + 1.0) / (n_hcps + 1.0))
    values = np.where(top >= 0, information[np.maximum(top, 0)], np.nan)
    counts = (top >= 0).sum(axis=1)
    return np.where(counts > 0, np.nansum(values, axis=1) / np.maximum(counts, 1), np.nan)


def intra_list_diversity_at_k(recommended: np.ndarray, item_vectors: np.ndarray, k: int) -> np.ndarray:
    """Per-HCP topic diversity of the top-k list.

    Per HCP: the mean over pairs of items in its top-k list of 1 - cosine(topic vectors).
    min=0 (identical topics), max=1 for non-negative vectors; NaN for lists of < 2 items.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_hcp, >= k)
        Item positions of each HCP's list, best first, -1 for padding.
    item_vectors : ndarray of float, shape (n_content, n_topic)
        The topic vector of each catalogue item.
    k : int
        List length; only the first ``k`` columns of ``recommended`` count.

    Returns
    -------
    ndarray of float64, shape (n_hcp,)
        The intra-list diversity of each HCP's list; NaN for lists of fewer than 2 items.

    Raises
    ------
    ValueError
        If ``recommended`` is not 2-D or holds a non-whole position.
    hcp_lib.io.NonFiniteError
        If ``item_vectors`` or a float ``recommended`` holds NaN or inf.
    """
    top = item_positions(recommended, "intra_list_diversity_at_k")[:, :k]
    vectors = _finite(item_vectors, "intra_list_diversity_at_k", "item vector value")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    listed = np.where((top >= 0)[:, :, None], unit[np.maximum(top, 0)], 0.0)
    cosine = listed @ listed.transpose(0, 2, 1)
    n = (top >= 0).sum(axis=1)
    pairs = n * (n - 1) / 2
    off_diagonal = (cosine.sum(axis=(1, 2)) - np.einsum("hii->h", cosine)) / 2
    return np.where(pairs > 0, 1.0 - off_diagonal / np.maximum(pairs, 1), np.nan)


# --- exposure and channel metrics -------------------------------------------------------------


def exposure_auc(engaged: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of model scores for the outcomes of logged exposures.

    The probability that an engaged exposure outscores a not-engaged one (ties count half;
    scikit-learn's ``roc_auc_score``). It asks whether a model knows which shown (HCP, item)
    pairs engage, not which items the logging policy shows, so it can choose among models
    that output scores rather than probabilities. min=0, max=1; NaN unless both outcomes
    occur.

    Parameters
    ----------
    engaged : array-like of bool, shape (n_exposure,)
        The outcome of each logged exposure.
    scores : array-like of float, shape (n_exposure,)
        The model's score of each exposure; higher = more likely to engage.

    Returns
    -------
    float
        The ROC AUC, in [0, 1]; NaN unless both outcomes occur.

    Raises
    ------
    ValueError
        If ``engaged`` and ``scores`` differ in shape.
    hcp_lib.io.NonFiniteError
        If ``scores`` holds NaN or inf.
    """
    from sklearn.metrics import roc_auc_score

    engaged = np.asarray(engaged, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if engaged.shape != scores.shape:
        raise ValueError(f"engaged has shape {engaged.shape} but scores has {scores.shape}")
    check_finite(scores, "exposure_auc", verb="was given", consequence="the AUC of such scores is undefined")
    if engaged.all() or not engaged.any():
        return float("nan")
    return float(roc_auc_score(engaged, scores))


def channel_matches(predicted, actual) -> np.ndarray:
    """Per row: 1.0 where the predicted channel equals the actual one, else 0.0.

    The per-row building block of :func:`channel_accuracy` and of the evaluation's
    bootstrapped channel accuracy.

    Parameters
    ----------
    predicted, actual : array-like of shape (n_rows,)
        Channel names (or codes) of the same rows.

    Returns
    -------
    ndarray of float64, shape (n_rows,)
        Its mean is :func:`channel_accuracy`; summed per HCP it is the evaluation's
        bootstrapped channel accuracy.

    Raises
    ------
    ValueError
        If ``predicted`` and ``actual`` differ in shape.
    """
    predicted, actual = np.asarray(predicted, dtype=object), np.asarray(actual, dtype=object)
    if predicted.shape != actual.shape:
        raise ValueError(f"predicted has shape {predicted.shape} but actual has {actual.shape}")
    return (predicted == actual).astype(np.float64)


def channel_accuracy(predicted, actual) -> float:
    """The share of rows whose predicted channel equals the actual channel.

    The mean of :func:`channel_matches`. min=0, max=1; NaN for no rows.

    Parameters
    ----------
    predicted, actual : array-like of shape (n_rows,)
        Channel names (or codes) of the same rows.

    Returns
    -------
    float
        The accuracy, in [0, 1]; NaN for no rows.

    Raises
    ------
    ValueError
        If ``predicted`` and ``actual`` differ in shape.
    """
    matches = channel_matches(predicted, actual)
    return float(matches.mean()) if len(matches) else float("nan")


def channel_macro_f1(predicted, actual, labels) -> float:
    """Macro-averaged F1 of predicted vs actual channels over ``labels``.

    The F1 is averaged over ``labels`` (every channel; a channel never predicted nor observed
    counts as F1 0 only if listed, so pass the channels observed). sklearn's ``f1_score``
    (``average="macro"``, ``zero_division=0``). min=0, max=1; NaN for no rows.

    Parameters
    ----------
    predicted, actual : array-like of shape (n_rows,)
        Channel names (or codes) of the same rows.
    labels : iterable of str
        The channels to average the F1 over.

    Returns
    -------
    float
        The macro-averaged F1, in [0, 1]; NaN for no rows.

    Raises
    ------
    ValueError
        If ``predicted`` and ``actual`` differ in length (raised by scikit-learn).
    """
    if len(actual) == 0:
        return float("nan")
    return float(
        f1_score(
            np.asarray(actual, dtype=object),
            np.asarray(predicted, dtype=object),
            labels=list(labels),
            average="macro",
            zero_division=0,
        )
    )


def log_loss_value(engaged: np.ndarray, probability: np.ndarray) -> float:
    """Mean binary cross-entropy of predicted probabilities for the observed outcomes.

    Natural log; probabilities clipped to [1e-15, 1 - 1e-15] as sklearn does (sklearn's
    ``log_loss``). min=0.

    Parameters
    ----------
    engaged : array-like of bool, shape (n_exposure,)
        The 0/1 outcome of each exposure.
    probability : array-like of float, shape (n_exposure,)
        The predicted engagement probability of each exposure, in [0, 1].

    Returns
    -------
    float
        The mean cross-entropy (>= 0).

    Raises
    ------
    ValueError
        If ``engaged`` and ``probability`` differ in shape, or a probability lies outside
        [0, 1].
    hcp_lib.io.NonFiniteError
        If ``probability`` holds NaN or inf.
    """
    y, p = _outcomes_and_probabilities(engaged, probability, "log_loss_value")
    return float(log_loss(y.astype(int), np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))


def brier_value(engaged: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between ``probability`` and the 0/1 outcome.

    The Brier score (sklearn's ``brier_score_loss``). min=0, max=1.

    Parameters
    ----------
    engaged : array-like of bool, shape (n_exposure,)
        The 0/1 outcome of each exposure.
    probability : array-like of float, shape (n_exposure,)
        The predicted engagement probability of each exposure, in [0, 1].

    Returns
    -------
    float
        The Brier score, in [0, 1].

    Raises
    ------
    ValueError
        If ``engaged`` and ``probability`` differ in shape, or a probability lies outside
        [0, 1].
    hcp_lib.io.NonFiniteError
        If ``probability`` holds NaN or inf.
    """
    y, p = _outcomes_and_probabilities(engaged, probability, "brier_value")
    return float(brier_score_loss(y.astype(int), p))


def log_loss_terms(engaged: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Per-exposure cross-entropy terms whose mean is :func:`log_loss_value`.

    Each term is -log(p) for an engaged exposure and -log(1 - p) otherwise, p clipped to
    [1e-15, 1 - 1e-15]; summed per HCP for the bootstrap.

    Parameters
    ----------
    engaged : array-like of bool, shape (n_exposure,)
        The 0/1 outcome of each exposure.
    probability : array-like of float, shape (n_exposure,)
        The predicted engagement probability of each exposure, in [0, 1].

    Returns
    -------
    ndarray of float64, shape (n_exposure,)
        The cross-entropy term of each exposure (>= 0).

    Raises
    ------
    ValueError
        If ``engaged`` and ``probability`` differ in shape, or a probability lies outside
        [0, 1].
    hcp_lib.io.NonFiniteError
        If ``probability`` holds NaN or inf.
    """
    y, p = _outcomes_and_probabilities(engaged, probability, "log_loss_terms")
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -np.where(y, np.log(p), np.log1p(-p))


def brier_terms(engaged: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Per-exposure squared errors whose mean is :func:`brier_value`.

    Each term is (probability - outcome)^2; summed per HCP for the bootstrap.

    Parameters
    ----------
    engaged : array-like of bool, shape (n_exposure,)
        The 0/1 outcome of each exposure.
    probability : array-like of float, shape (n_exposure,)
        The predicted engagement probability of each exposure, in [0, 1].

    Returns
    -------
    ndarray of float64, shape (n_exposure,)
        The squared error of each exposure, in [0, 1].

    Raises
    ------
    ValueError
        If ``engaged`` and ``probability`` differ in shape, or a probability lies outside
        [0, 1].
    hcp_lib.io.NonFiniteError
        If ``probability`` holds NaN or inf.
    """
    y, p = _outcomes_and_probabilities(engaged, probability, "brier_terms")
    return (p - y.astype(np.float64)) ** 2


def expected_calibration_error(engaged: np.ndarray, probability: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error (ECE) over equal-count probability bins.

    The exposures are sorted by predicted probability and cut into ``n_bins`` bins of
    (nearly) equal count; ECE = sum over bins of (bin size / n) * |mean predicted - observed
    rate|. Equal-count bins, because engagement probabilities crowd below 0.3 and equal-width
    bins would leave most bins nearly empty. min=0, max=1; NaN for no exposures.

    Parameters
    ----------
    engaged : array-like of bool, shape (n_exposure,)
        The 0/1 outcome of each exposure.
    probability : array-like of float, shape (n_exposure,)
        The predicted engagement probability of each exposure, in [0, 1].
    n_bins : int, default 10
        The number of bins (fewer when there are fewer exposures).

    Returns
    -------
    float
        The ECE, in [0, 1]; NaN for no exposures.

    Raises
    ------
    ValueError
        If ``engaged`` and ``probability`` differ in shape, or a probability lies outside
        [0, 1].
    hcp_lib.io.NonFiniteError
        If ``probability`` holds NaN or inf.
    """
    y, p = _outcomes_and_probabilities(engaged, probability, "expected_calibration_error")
    y = y.astype(np.float64)
    if not len(p):
        return float("nan")
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, min(n_bins, len(p)))
    return float(sum(len(b) * abs(p[b].mean() - y[b].mean()) for b in bins) / len(p))


def reliability_curve(engaged: np.ndarray, probability: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Calibration table over ``n_bins`` equal-width probability bins of [0, 1].

    Written by hand rather than ``sklearn.calibration.calibration_curve`` because the plot
    and metrics.json need each bin's count, which sklearn does not return.

    Parameters
    ----------
    engaged : array-like of bool, shape (n_exposure,)
        The 0/1 outcome of each exposure.
    probability : array-like of float, shape (n_exposure,)
        The predicted engagement probability of each exposure, in [0, 1].
    n_bins : int, default 10
        The number of equal-width bins of [0, 1].

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin (empty bins left out), with columns ``bin``, ``lower``,
        ``upper``, ``mean_predicted``, ``observed_rate`` and ``count``.

    Raises
    ------
    ValueError
        If ``engaged`` and ``probability`` differ in shape, or a probability lies outside
        [0, 1].
    hcp_lib.io.NonFiniteError
        If ``probability`` holds NaN or inf.
    """
    y, p = _outcomes_and_probabilities(engaged, probability, "reliability_curve")
    y = y.astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    keep = count > 0
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins)[keep],
            "lower": edges[:-1][keep],
            "upper": edges[1:][keep],
            "mean_predicted": np.bincount(bins, p, n_bins)[keep] / count[keep],
            "observed_rate": np.bincount(bins, y, n_bins)[keep] / count[keep],
            "count": count[keep],
        }
    )


# --- bootstrap over HCPs --------------------------------------------------------------------


def resample_weights(n_hcps: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each HCP is drawn in each bootstrap resample.

    The counts come from ONE index matrix of ``n_resamples`` x ``n_hcps`` draws with
    replacement; every metric and every model uses the same resamples, so paired differences
    are paired.

    Parameters
    ----------
    n_hcps : int
        The number of HCPs (>= 1).
    n_resamples : int
        The number of bootstrap resamples (>= 1).
    seed : int
        Seed of the random generator (``numpy.random.default_rng``).

    Returns
    -------
    ndarray of float64, shape (n_resamples, n_hcps)
        The number of times each HCP is drawn in each resample; each row sums to ``n_hcps``.

    Raises
    ------
    ValueError
        If ``n_resamples < 1`` or ``n_hcps < 1``.
    """
    if n_resamples < 1 or n_hcps < 1:
        raise ValueError(f"need n_resamples >= 1 and at least one HCP, got {n_resamples} and {n_hcps}")
    index = np.random.default_rng(seed).integers(0, n_hcps, size=(n_resamples, n_hcps))
    flat = index + (np.arange(n_resamples) * n_hcps)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n_hcps).reshape(n_resamples, n_hcps).astype(np.float64)


def bootstrap_ratio(
    numerators: np.ndarray, denominators: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point estimates and percentile bootstrap intervals of ratio statistics over HCPs.

    Statistic s is sum_h num[s, h] / sum_h den[s, h]. A per-HCP mean ignoring NaN is
    num = value (0 where NaN), den = 1 where the value is defined (:func:`mean_terms`); a
    rate over exposures is num = per-HCP sum, den = per-HCP count. NaN where the
    denominator sums to 0. The intervals are :func:`percentile_interval` of the resampled
    statistics.

    Parameters
    ----------
    numerators : ndarray of float, shape (n_stat, n_hcp) or (n_hcp,)
        Per-HCP numerators of each statistic (a 1-D array is one statistic).
    denominators : ndarray of float, shape (n_stat, n_hcp) or (n_hcp,)
        Per-HCP denominators, aligned with ``numerators``.
    weights : ndarray of float, shape (n_resamples, n_hcp)
        Resample weights from :func:`resample_weights`.
    level : float, default 0.95
        Confidence level of the intervals.

    Returns
    -------
    point : ndarray of float64, shape (n_stat,)
        The statistics on the full sample; NaN where the denominator sums to 0.
    low : ndarray of float64, shape (n_stat,)
        The lower interval bounds.
    high : ndarray of float64, shape (n_stat,)
        The upper interval bounds.
    resampled : ndarray of float64, shape (n_resamples, n_stat)
        The statistics in each resample.

    Raises
    ------
    ValueError
        If ``numerators``, ``denominators`` and ``weights`` do not align.
    hcp_lib.io.NonFiniteError
        If ``numerators`` or ``denominators`` holds NaN or inf.
    """
    num = np.atleast_2d(_finite(numerators, "bootstrap_ratio", "numerator"))
    den = np.atleast_2d(_finite(denominators, "bootstrap_ratio", "denominator"))
    if num.shape != den.shape or num.shape[1] != weights.shape[1]:
        raise ValueError(f"numerators {num.shape}, denominators {den.shape} and weights {weights.shape} do not align")
    with np.errstate(invalid="ignore", divide="ignore"):
        point = num.sum(axis=1) / den.sum(axis=1)
        resampled = (weights @ num.T) / (weights @ den.T)
    low, high = percentile_interval(resampled, level)
    return point, low, high, resampled


def percentile_interval(resampled: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval of each column of ``resampled``.

    Its (1 - level) / 2 and (1 + level) / 2 quantiles, ignoring NaN resamples; NaN bounds
    where every resample is NaN. The one interval of the project's bootstraps.

    Parameters
    ----------
    resampled : ndarray of float, shape (n_resamples, ...)
        The statistics in each resample (first axis), NaN where undefined.
    level : float, default 0.95
        Confidence level of the interval.

    Returns
    -------
    low : ndarray of float64, shape resampled.shape[1:]
        The (1 - level) / 2 quantile of each column.
    high : ndarray of float64, shape resampled.shape[1:]
        The (1 + level) / 2 quantile of each column.
    """
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():  # a statistic undefined in every resample gives NaN bounds, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(resampled, [tail, 1 - tail], axis=0)
    return low, high


def mean_terms(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator of a per-HCP mean that ignores NaN.

    The terms :func:`bootstrap_ratio` needs for :func:`mean_over_hcps`: numerator = the value
    (0 where NaN), denominator = 1 where the value is defined. NaN means "undefined for this
    HCP"; ±inf is never a metric value and is refused.

    Parameters
    ----------
    values : ndarray of float, shape (n_hcp,)
        Per-HCP metric values, NaN where undefined.

    Returns
    -------
    numerator : ndarray of float64, shape (n_hcp,)
        The values, 0 where NaN.
    denominator : ndarray of float64, shape (n_hcp,)
        1.0 where the value is defined, else 0.0.

    Raises
    ------
    hcp_lib.io.NonFiniteError
        If ``values`` holds +inf or -inf.
    """
    values = _finite(values, "mean_terms", "per-HCP value", allow_nan=True)
    defined = np.isfinite(values)
    return np.where(defined, values, 0.0), defined.astype(np.float64)
