"""How the book shows a table: rounded numbers, readable column names, no "<NA>", and narrow
enough for the page.

Every table a chapter displays goes through :func:`for_reading`, so one rule decides how a
number, a missing value and a column name look in the whole book. A table wider than
:data:`MAX_COLUMNS` is refused: the chapter picks the columns a reader needs and leaves the
full table to its Parquet file.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: the most columns a table of the book may have (the index aside)
MAX_COLUMNS = 8
#: how a missing or undefined value reads
MISSING = "–"


def _cell(value, digits: int) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return MISSING
        if float(value).is_integer() and abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def for_reading(
    table: pd.DataFrame | pd.Series,
    digits: int = 3,
    rename: Mapping[str, str] | None = None,
    max_columns: int = MAX_COLUMNS,
) -> pd.DataFrame:
    """A copy of ``table`` as the book shows it.

    Parameters
    ----------
    table : DataFrame or Series
        The table (a Series becomes one column).
    digits : int
        Decimals of non-whole numbers; whole numbers get thousands separators and no decimals.
    rename : mapping, optional
        Column -> the name a reader sees; other columns have their underscores turned into spaces.
    max_columns : int
        The most columns allowed (:data:`MAX_COLUMNS`).

    Returns
    -------
    DataFrame
        The same rows and index, every cell a string: numbers rounded, missing values as
        :data:`MISSING`, true/false as yes/no, dates without a midnight time.

    Raises
    ------
    ValueError
        If the table has more than ``max_columns`` columns, naming them.
    """
    frame = table.to_frame() if isinstance(table, pd.Series) else table
    if frame.shape[1] > max_columns:
        raise ValueError(
            f"a table of the book has at most {max_columns} columns; this one has {frame.shape[1]} "
            f"({', '.join(map(str, frame.columns))}): show the columns a reader needs"
        )
    names = {c: (rename or {}).get(c, str(c).replace("_", " ")) for c in frame.columns}
    shown = pd.DataFrame(
        {names[c]: [_cell(v, digits) for v in frame[c].tolist()] for c in frame.columns}, index=frame.index
    )
    return shown
