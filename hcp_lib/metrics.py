"""Ranking and channel metrics on top-N lists, one function per metric.

Inputs are arrays aligned by HCP: ``recommended`` is an integer array (n_hcp, >= k) of
column indices into the catalogue, best first, -1 for "no item" (as returned by
:func:`hcp_lib.recommender.top_n`); ``relevant`` is a boolean sparse or dense matrix
(n_hcp, n_content) marking the items each HCP engaged with in the evaluation window
(:func:`relevance_matrix`). HCPs with no relevant item are left out of the means, since no
list can hit for them; the result is NaN when no HCP has a relevant item. Non-finite inputs
(a NaN item index, a NaN or infinite score) raise :class:`hcp_lib.io.NonFiniteError` naming
the function and the count, rather than turning into a NaN or inf result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .io import check_finite


def relevance_matrix(window: pd.DataFrame, hcp_ids, content_ids: pd.Index,
                     exclude: np.ndarray | None = None) -> sp.csr_matrix:
    """Boolean CSR (n_hcp, n_content): True where the HCP engaged with the item in ``window``.

    ``window`` holds interaction rows (hcp_id, content_id, engaged); rows of HCPs or items
    outside ``hcp_ids`` / ``content_ids`` are ignored. Cells True in ``exclude`` (e.g. items
    the HCP already engaged with in training, which no list may contain) are dropped.
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


def hits_at_k(recommended: np.ndarray, relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hit flags of each HCP's top-k list and its number of relevant items.

    ``recommended`` holds item positions (n_hcp, >= k), -1 for padding; ``relevant`` is a
    boolean (sparse) matrix (n_hcp, n_content). Returns ``flags`` (n_hcp, k), True where the
    item at that rank is relevant, and ``n_relevant`` (n_hcp,). Every ranking metric of the
    project counts hits through this one function.
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


def item_positions(recommended, source: str) -> np.ndarray:
    """``recommended`` (n_hcp, n) as int64 item positions; a float array must hold whole,
    finite numbers (a NaN or inf raises :class:`hcp_lib.io.NonFiniteError` naming ``source``)."""
    top = np.asarray(recommended)
    if top.ndim != 2:
        raise ValueError(f"{source}: recommended must be a 2-D array (HCPs, ranks), got shape {top.shape}")
    if top.dtype.kind in "iu":
        return top.astype(np.int64, copy=False)
    values = check_finite(top, source, "recommended item position", verb="was given",
                          consequence="a list holds item positions, -1 for no item")
    if (values != np.round(values)).any():
        raise ValueError(f"{source}: recommended holds item position {float(values[values != np.round(values)][0])!r}; "
                         "positions are whole numbers (-1 for no item)")
    return values.astype(np.int64)


def hit_rate_at_k(recommended: np.ndarray, relevant, k: int = 10) -> float:
    """HR@k: the share of HCPs (with at least one relevant item) whose top-k list holds at
    least one relevant item. min=0, max=1."""
    flags, n_relevant = hits_at_k(recommended, relevant, k)
    evaluated = n_relevant > 0
    return float(flags[evaluated].any(axis=1).mean()) if evaluated.any() else float("nan")


def ndcg_at_k(recommended: np.ndarray, relevant, k: int = 10) -> float:
    """NDCG@k with binary gains, averaged over HCPs with at least one relevant item.

    DCG = sum over ranks r = 1..k of rel_r / log2(r + 1); the ideal DCG places
    min(k, number of relevant items) hits at the top. min=0, max=1 (the convention of
    Järvelin & Kekäläinen with the log2(r + 1) discount, as in Microsoft Recommenders).
    """
    flags, n_relevant = hits_at_k(recommended, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = flags @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    evaluated = n_relevant > 0
    return float((dcg[evaluated] / ideal[evaluated]).mean()) if evaluated.any() else float("nan")


def channel_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    """The share of rows whose predicted channel equals the actual channel. min=0, max=1;
    NaN for no rows."""
    predicted, actual = np.asarray(predicted, dtype=object), np.asarray(actual, dtype=object)
    if predicted.shape != actual.shape:
        raise ValueError(f"predicted has shape {predicted.shape} but actual has {actual.shape}")
    return float((predicted == actual).mean()) if len(actual) else float("nan")


def exposure_auc(engaged: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the outcomes ``engaged`` of logged exposures: the probability
    that an engaged exposure outscores a not-engaged one (ties count half; scikit-learn's
    ``roc_auc_score``). It asks whether a model knows which shown (HCP, item) pairs engage,
    not which items the logging policy shows, so it can choose among models that output
    scores rather than probabilities. min=0, max=1; NaN unless both outcomes occur."""
    from sklearn.metrics import roc_auc_score

    engaged = np.asarray(engaged, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if engaged.shape != scores.shape:
        raise ValueError(f"engaged has shape {engaged.shape} but scores has {scores.shape}")
    check_finite(scores, "exposure_auc", verb="was given", consequence="the AUC of such scores is undefined")
    if engaged.all() or not engaged.any():
        return float("nan")
    return float(roc_auc_score(engaged, scores))
