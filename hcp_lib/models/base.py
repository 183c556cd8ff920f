"""The recommender interface every model follows, and the helpers that turn scores into top-N lists.

A recommender is fitted on one :class:`hcp_lib.split.TrainingData` and then scores HCPs::

    model.fit(train)                      -> model (fitted state ends in ``_``)
    model.content_ids_                    -> catalogue order of the score columns
    model.hcp_ids_                        -> the HCPs it can score (the master's order)
    model.score(hcp_ids)                  -> float ndarray (n_hcp, n_content); higher = better
    model.score_channels(hcp_ids)         -> float ndarray (n_hcp, n_content, n_channel), channels in
                                             hcp_lib.domain.CHANNELS order (models that rank channels)

Scores are comparable within one HCP's row, not across models. An HCP id the model was not
fitted with raises :class:`UnknownIdError` naming it; a model that returns NaN or infinite
scores is stopped with :class:`hcp_lib.io.NonFiniteError` naming it and the count (every score
that enters :meth:`Recommender.score`, :func:`top_n` or :func:`recommend` is checked by
:func:`hcp_lib.io.check_finite`). :func:`exclusion_mask` marks content
an HCP already engaged with and content not approved for its specialty (and, optionally,
not yet released); :func:`top_n` ranks the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..domain import CHANNELS
from ..io import check_finite
from ..split import TrainingData


class UnknownIdError(KeyError):
    """An HCP or content id the fitted model does not know; the message names it.

    Raised by :func:`positions` and therefore by :meth:`Recommender.fit`,
    :meth:`Recommender.score` and :func:`exclusion_mask`. Unlike a plain ``KeyError``,
    ``str()`` gives the message without quotes.
    """

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class NotFittedError(RuntimeError):
    """A model was asked to score before ``fit``.

    Raised by :meth:`Recommender.score` until ``fit(train)`` has been called.
    """


def positions(ids: Iterable[str], index: pd.Index, kind: str) -> np.ndarray:
    """Positions of ``ids`` in ``index``; raise :class:`UnknownIdError` naming the first unknown id.

    Used to map HCP and content ids to the rows and columns of a fitted model.

    Parameters
    ----------
    ids : iterable of str, length n_ids
        The ids to look up (a list, array, ``pandas.Index`` or ``pandas.Series``).
    index : pandas.Index of str
        The known ids, in order.
    kind : str
        What the ids are (e.g. ``"HCP"`` or ``"content"``), for the error message.

    Returns
    -------
    ndarray of int64, shape (n_ids,)
        The position of each id in ``index``.

    Raises
    ------
    UnknownIdError
        If an id is not in ``index``; the message names the first unknown id, ``kind`` and how
        many ids are known.
    """
    ids = pd.Index(
        np.asarray(list(ids) if not isinstance(ids, (pd.Index, np.ndarray, pd.Series)) else ids, dtype=object)
    )
    found = index.get_indexer(ids)
    if (found < 0).any():
        unknown = ids[np.flatnonzero(found < 0)[0]]
        raise UnknownIdError(f"{kind} id {unknown!r} is unknown to the fitted model ({len(index)} {kind}s known)")
    return found


def model_name(model) -> str:
    """How error messages name ``model``: its ``name`` attribute, else its class name.

    The ``name`` attribute is used when it is a non-empty string.

    Parameters
    ----------
    model : object
        A recommender (or any object that produced scores).

    Returns
    -------
    str
        The model's ``name`` if that is a non-empty string, else its class name.
    """
    name = getattr(model, "name", None)
    return name if isinstance(name, str) and name else type(model).__name__


class Recommender:
    """Base class: id bookkeeping shared by every model; subclasses implement ``_fit`` and ``_score``.

    ``_fit(train)`` learns from the training data; ``_score(rows)`` returns the scores of the
    HCPs at positions ``rows`` of ``hcp_ids_`` for every item of ``content_ids_``. Models that
    rank channels also provide ``score_channels(hcp_ids)`` (see the module docstring).

    Attributes
    ----------
    name : str
        A short name used in tables and file names (class attribute).
    hcp_ids_ : pandas.Index of str
        The HCPs the fitted model can score, in the order of ``train.hcps`` (the master's
        order).
    content_ids_ : pandas.Index of str
        The catalogue order of the score columns (``train.catalogue``).
    channels_ : tuple of str
        The channels, in :data:`hcp_lib.domain.CHANNELS` order (the last axis of
        ``score_channels``).
    """

    #: a short name used in tables and file names
    name = "recommender"

    def fit(self, train: TrainingData) -> Recommender:
        """Fit the model on one training window.

        Records ``hcp_ids_`` (from ``train.hcps``), ``content_ids_`` (from ``train.catalogue``)
        and ``channels_``, checks that every engaged interaction names a known HCP and item, then
        calls the subclass's ``_fit(train)``; the fitted state ends in ``_``.

        Parameters
        ----------
        train : hcp_lib.split.TrainingData
            The training data: HCPs, catalogue and the interactions before the cut-off.

        Returns
        -------
        Recommender
            ``self``, fitted.

        Raises
        ------
        ValueError
            If the training window (before ``train.cutoff``) holds no interactions.
        UnknownIdError
            If an engaged interaction names an HCP or content id missing from ``train.hcps`` or
            ``train.catalogue``.
        NotImplementedError
            If the subclass does not implement ``_fit``.
        """
        if train.interactions.empty:
            raise ValueError(f"{self.name}: the training window before {train.cutoff} holds no interactions")
        self.hcp_ids_ = pd.Index(train.hcps["hcp_id"].astype(object))
        self.content_ids_ = pd.Index(train.catalogue["content_id"].astype(object))
        self.channels_ = CHANNELS
        engaged = train.engaged
        positions(engaged["hcp_id"].unique(), self.hcp_ids_, "HCP")
        positions(engaged["content_id"].unique(), self.content_ids_, "content")
        self._fit(train)
        return self

    def score(self, hcp_ids: Iterable[str]) -> np.ndarray:
        """Scores (n_hcp, n_content) for ``hcp_ids`` over ``content_ids_``.

        Higher = better; scores are comparable within one HCP's row, not across models. Every
        score is checked by :func:`hcp_lib.io.check_finite`.

        Parameters
        ----------
        hcp_ids : iterable of str, length n_hcp
            HCP ids the model was fitted with (any of ``hcp_ids_``).

        Returns
        -------
        ndarray of float64, shape (n_hcp, n_content)
            The score of every item of ``content_ids_`` for each HCP, rows in the order of
            ``hcp_ids``.

        Raises
        ------
        NotFittedError
            If the model has not been fitted.
        UnknownIdError
            If an HCP id is unknown to the fitted model; the message names it.
        hcp_lib.io.NonFiniteError
            If the model returns NaN or infinite scores; the message names the model, the count
            and the first HCP.
        """
        rows = self._rows(hcp_ids)
        return check_finite(
            self._score(rows), f"model {model_name(self)!r}", labels=self.hcp_ids_[rows], label_kind="HCP"
        )

    def _rows(self, hcp_ids: Iterable[str]) -> np.ndarray:
        if not hasattr(self, "hcp_ids_"):
            raise NotFittedError(f"{self.name}: call fit(train) before scoring")
        return positions(hcp_ids, self.hcp_ids_, "HCP")

    def engaged_matrix(self, train: TrainingData):
        """Sparse (n_hcp, n_content) count of engaged exposures per HCP and item (float32 CSR).

        Rows follow ``hcp_ids_`` and columns ``content_ids_`` of the fitted model; an (HCP, item)
        pair engaged several times counts every engaged exposure.

        Parameters
        ----------
        train : hcp_lib.split.TrainingData
            The training data whose engaged interactions are counted (the one the model was
            fitted on).

        Returns
        -------
        scipy.sparse.csr_matrix of float32, shape (n_hcp, n_content)
            The number of engaged exposures of each HCP with each item.
        """
        import scipy.sparse as sp

        engaged = train.engaged
        rows = self.hcp_ids_.get_indexer(engaged["hcp_id"])
        cols = self.content_ids_.get_indexer(engaged["content_id"])
        data = np.ones(len(rows), dtype=np.float32)
        matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(self.hcp_ids_), len(self.content_ids_)))
        matrix.sum_duplicates()
        return matrix

    def _fit(self, train: TrainingData) -> None:
        raise NotImplementedError

    def _score(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def exclusion_mask(
    hcp_ids: Iterable[str],
    content_ids: pd.Index,
    train: TrainingData,
    released_by: pd.Timestamp | None = None,
    catalogue: pd.DataFrame | None = None,
) -> np.ndarray:
    """Boolean (n_hcp, n_content): True where the item must not be recommended to the HCP.

    An item is excluded when the HCP engaged with it in ``train`` (seen), when its
    ``approved_specialties`` do not list the HCP's specialty (unapproved), and — when
    ``released_by`` is given — when its release date (from ``catalogue``, the full
    catalogue, since the training copy hides future dates) is after ``released_by`` or
    unknown. Unknown HCP ids raise :class:`UnknownIdError`.

    Parameters
    ----------
    hcp_ids : sequence of str, length n_hcp
        The HCPs (rows), each in ``train.hcps``.
    content_ids : pandas.Index of str, length n_content
        The items (columns), e.g. a fitted model's ``content_ids_``.
    train : hcp_lib.split.TrainingData
        The training data: the HCPs' specialties and their engaged interactions.
    released_by : pandas.Timestamp, optional
        When given, items released after this date, or with no release date, are excluded.
    catalogue : pandas.DataFrame, optional
        The full catalogue (``content_id``, ``approved_specialties`` as a ``"; "``-separated
        list, ``release_date``); default ``train.catalogue``.

    Returns
    -------
    ndarray of bool, shape (n_hcp, n_content)
        True where the item is seen, unapproved or (with ``released_by``) not yet released.

    Raises
    ------
    UnknownIdError
        If an HCP id is not in ``train.hcps``, or a content id is not in the catalogue.
    """
    hcp_index = pd.Index(train.hcps["hcp_id"].astype(object))
    rows = positions(hcp_ids, hcp_index, "HCP")
    specialty = train.hcps["specialty"].to_numpy(dtype=object)[rows]
    items = (catalogue if catalogue is not None else train.catalogue).set_index("content_id")
    cols = positions(content_ids, pd.Index(items.index.astype(object)), "content")
    approved = items["approved_specialties"].astype(object).to_numpy()[cols]
    specialties = sorted(set(specialty))
    approved_by_specialty = {
        s: np.array([isinstance(a, str) and s in a.split("; ") for a in approved]) for s in specialties
    }
    excluded = (
        ~np.stack([approved_by_specialty[s] for s in specialty]) if len(specialty) else np.zeros((0, len(cols)), bool)
    )
    if released_by is not None:
        release = pd.to_datetime(items["release_date"]).to_numpy()[cols]
        not_released = ~(release <= np.datetime64(pd.Timestamp(released_by)))
        excluded |= not_released[None, :]
    engaged = train.engaged
    wanted = pd.Index(np.asarray(list(hcp_ids), dtype=object))
    hcp_pos = wanted.get_indexer(engaged["hcp_id"])
    item_pos = pd.Index(content_ids).get_indexer(engaged["content_id"])
    keep = (hcp_pos >= 0) & (item_pos >= 0)
    excluded[hcp_pos[keep], item_pos[keep]] = True
    return excluded


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None, model: str | None = None) -> np.ndarray:
    """Column indices (n_hcp, n) of each row's ``n`` highest scores, best first.

    Excluded cells are never returned; a row with fewer than ``n`` eligible items is padded
    with -1. Ties are broken by catalogue order (the lower column index first), so the
    result is deterministic. A NaN or infinite score (excluded cell or not: the model emitted
    it) raises :class:`hcp_lib.io.NonFiniteError` naming ``model`` (the scores' source, for
    the message) and the count.

    Parameters
    ----------
    scores : ndarray of float, shape (n_hcp, n_content)
        Scores, higher = better.
    n : int
        List length (>= 1).
    exclude : ndarray of bool, shape (n_hcp, n_content), optional
        True where the item may not be listed (:func:`exclusion_mask`); default: none.
    model : str, optional
        The scores' source, named in the error message.

    Returns
    -------
    ndarray of int64, shape (n_hcp, n)
        Column indices of each row's best items, best first, -1 past the eligible items.

    Raises
    ------
    ValueError
        If ``n < 1``.
    hcp_lib.io.NonFiniteError
        If ``scores`` holds NaN or inf.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    source = f"model {model!r}" if model else "top_n"
    scores = check_finite(scores, source, verb="returned" if model else "was given")
    masked = np.where(exclude, -np.inf, scores) if exclude is not None else scores
    order = stable_top(masked, n)
    ranked_scores = np.take_along_axis(masked, order, axis=1)
    order = np.where(np.isneginf(ranked_scores), -1, order)
    if order.shape[1] < n:
        order = np.pad(order, ((0, 0), (0, n - order.shape[1])), constant_values=-1)
    return order


#: at most this many columns, :func:`stable_top` takes them by passes of ``argmax``
ARGMAX_PASSES = 4


def stable_top(values: np.ndarray, k: int) -> np.ndarray:
    """Column positions of each row's ``k`` highest values, best first, ties to the lower column.

    The head of ``np.argsort(-values, axis=1, kind="stable")`` wherever the values are finite;
    where a row has fewer than ``k`` finite values, the positions past them point at cells of
    -inf (any of them), which callers drop (:func:`top_n`, the plan's candidates). The one
    top-k selection of the project. NumPy has no partial stable sort, hence this; it picks by
    ``k``: up to :data:`ARGMAX_PASSES` (the plan keeps 3 items per channel), ``k`` passes of
    ``argmax`` (the first of equal maxima), each setting the cell it took to -inf; from a
    quarter of the columns, the full stable sort, as cheap; otherwise (ranked lists of 50 of
    1,019 items), a row's ``k``-th highest value (``np.partition``) bounds its top ``k``: when
    exactly ``k`` cells reach it they are the top ``k``, and a stable sort of their values,
    taken in column order, ranks them as the full sort does; rows with more cells at the bound
    (ties, or fewer than ``k`` finite values) are sorted in full. At the full scale (38,000 HCPs
    x 1,019 items) that takes about a third of the full sort's time.

    Parameters
    ----------
    values : ndarray of float, shape (n_rows, n_cols)
        Values, higher = better; -inf for cells never to be chosen; no NaN.
    k : int
        How many positions per row (at most ``n_cols`` are returned).

    Returns
    -------
    ndarray of int64, shape (n_rows, min(k, n_cols))
        Column positions, best first.
    """
    n_rows, n_cols = values.shape
    k = min(k, n_cols)
    if 0 < k <= ARGMAX_PASSES:
        work = np.array(values, dtype=np.float64 if values.dtype.kind != "f" else values.dtype)
        order = np.empty((n_rows, k), np.int64)
        every = np.arange(n_rows)
        for rank in range(k):
            order[:, rank] = work.argmax(axis=1)
            spent = np.isneginf(work[every, order[:, rank]])
            # past a row's finite values argmax may return a cell this loop took: point at one
            # of the row's own -inf cells instead (argmin finds one)
            order[spent, rank] = values[spent].argmin(axis=1)
            work[every, order[:, rank]] = -np.inf
        return order
    if k == 0 or 4 * k >= n_cols:
        return np.argsort(-values, axis=1, kind="stable")[:, :k]
    bound = -np.partition(-values, k - 1, axis=1)[:, k - 1]
    reach = values >= bound[:, None]
    simple = reach.sum(axis=1) == k
    order = np.empty((n_rows, k), np.int64)
    rows = np.flatnonzero(simple)
    cols = np.nonzero(reach[rows])[1].reshape(len(rows), k)  # each row's k columns, in column order
    ranked = np.argsort(-np.take_along_axis(values[rows], cols, axis=1), axis=1, kind="stable")
    order[rows] = np.take_along_axis(cols, ranked, axis=1)
    rest = np.flatnonzero(~simple)
    if len(rest):
        order[rest] = np.argsort(-values[rest], axis=1, kind="stable")[:, :k]
    return order


def recommend(
    model: Recommender, hcp_ids: Iterable[str], n: int, exclude: np.ndarray | None = None, batch_size: int = 2048
) -> pd.DataFrame:
    """Long table of each HCP's top-``n`` items: hcp_id, rank (1 = best), content_id, score.

    Scores are computed in batches of ``batch_size`` HCPs so memory stays bounded; ``exclude``
    is an (n_hcp, n_content) mask from :func:`exclusion_mask` (aligned with ``hcp_ids``). A
    model that returns NaN or infinite scores raises :class:`hcp_lib.io.NonFiniteError`
    naming it (:func:`model_name`), the count and the first HCP. Items are ranked by
    :func:`top_n`.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    hcp_ids : iterable of str, length n_hcp
        The HCPs to recommend to.
    n : int
        List length (>= 1).
    exclude : ndarray of bool, shape (n_hcp, n_content), optional
        True where the item may not be recommended to the HCP; default: none.
    batch_size : int, default 2048
        The number of HCPs scored at once.

    Returns
    -------
    pandas.DataFrame
        One row per recommended item, columns ``hcp_id`` (string), ``rank`` (int32, 1 =
        best), ``content_id`` (string) and ``score`` (float); an HCP with fewer than ``n``
        eligible items has fewer rows.

    Raises
    ------
    ValueError
        If ``n < 1`` (and ``hcp_ids`` is not empty).
    hcp_lib.io.NonFiniteError
        If the model returns NaN or infinite scores.
    UnknownIdError
        If an HCP id is unknown to the model (raised by its ``score``).
    NotFittedError
        If the model has not been fitted (raised by its ``score``).
    """
    hcp_ids = np.asarray(list(hcp_ids), dtype=object)
    name = model_name(model)
    frames = []
    for start in range(0, len(hcp_ids), batch_size):
        batch = hcp_ids[start : start + batch_size]
        scores = check_finite(model.score(batch), f"model {name!r}", labels=batch, label_kind="HCP")
        mask = None if exclude is None else exclude[start : start + batch_size]
        top = top_n(scores, n, mask, model=name)
        rows, ranks = np.nonzero(top >= 0)
        cols = top[rows, ranks]
        frames.append(
            pd.DataFrame(
                {
                    "hcp_id": pd.array(batch[rows], dtype="string"),
                    "rank": (ranks + 1).astype(np.int32),
                    "content_id": pd.array(model.content_ids_.to_numpy(dtype=object)[cols], dtype="string"),
                    "score": scores[rows, cols],
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            {
                "hcp_id": pd.array([], dtype="string"),
                "rank": np.array([], np.int32),
                "content_id": pd.array([], dtype="string"),
                "score": np.array([], float),
            }
        )
    return pd.concat(frames, ignore_index=True)
