"""Schema-checked reads and atomic writes of the run's artifacts.

Every artifact is written to a temporary file beside its destination and renamed
into place only once complete, so a failed run never leaves a half-written file.
Tables are validated with pandera; a failure becomes a :class:`DataValidationError`
that names the file, the column and an offending value. :func:`check_finite` is the one check
that scores, probabilities and metric values hold no NaN or inf (:class:`NonFiniteError`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors


class DataValidationError(ValueError):
    """A table does not match its schema; the message names file, column and value."""


class NonFiniteError(ValueError):
    """Scores, probabilities or metric inputs hold NaN or inf; the message names whose, how
    many and where the first one is (:func:`check_finite`)."""


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun
    return noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"


def check_finite(
    values: Any,
    source: str,
    what: str = "score",
    *,
    verb: str = "returned",
    scope: str = "",
    consequence: str = "it cannot be ranked — check its inputs and training",
    only: np.ndarray | None = None,
    labels: Sequence | None = None,
    label_kind: str | None = None,
    allow_nan: bool = False,
    error: type[ValueError] = NonFiniteError,
) -> np.ndarray:
    """``values`` as a float64 array; raise ``error`` (default :class:`NonFiniteError`) when any
    of them is NaN or ±inf. The one finiteness check of the project: model scores, engagement
    probabilities, metric inputs and metrics.json values all go through it.

    The message reads "<source> <verb> <count> non-finite <what>s (<n> NaN, <n> inf, <n> -inf)
    out of <total><scope>, first at <where>; <consequence>", e.g. "model 'hybrid' returned 3
    non-finite scores (2 NaN, 1 inf) out of 1,200, first at HCP 'SYN00000001', position (0, 4); it
    cannot be ranked — check its inputs and training". ``what`` is a singular noun.

    ``only``: a boolean mask of the cells to check (the others may hold anything, e.g. cells a
    caller never reads); ``labels``: names of the positions along the first axis (``label_kind``,
    e.g. "HCP", is printed before the quoted label; without it the label is printed as is);
    ``allow_nan``: NaN is allowed (it means "undefined"), only ±inf is refused.
    """
    array = np.asarray(values, dtype=np.float64)
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if only is not None:
        bad &= np.broadcast_to(np.asarray(only, dtype=bool), array.shape)
    if not bad.any():
        return array
    count = int(bad.sum())
    total = int(array.size if only is None else np.broadcast_to(np.asarray(only, dtype=bool), array.shape).sum())
    kinds = [
        (int(np.isnan(array[bad]).sum()), "NaN"),
        (int(np.isposinf(array[bad]).sum()), "inf"),
        (int(np.isneginf(array[bad]).sum()), "-inf"),
    ]
    detail = ", ".join(f"{n:,} {kind}" for n, kind in kinds if n)
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if array.ndim else ()
    position = f"position {first[0] if len(first) == 1 else first}" if first else ""
    if labels is not None and first:
        label = labels[first[0]]
        label = label.item() if isinstance(label, np.generic) else label  # 'x', not np.str_('x')
        named = f"{label_kind} {label!r}" if label_kind else str(label)
        where = named if array.ndim == 1 else f"{named}, {position}"
    else:
        where = position
    message = (
        f"{source} {verb} {count:,} non-finite {_plural(what, count)} ({detail}) out of {total:,}{scope}"
        + (f", first at {where}" if where else "")
        + (f"; {consequence}" if consequence else "")
    )
    raise error(message)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file as 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN is refused: JSON has none)."""
    return write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=_json_default) + "\n", path)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, paths and timestamps appear in metrics and manifests.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, pd.Timestamp)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found (did the stage that writes it run?)") from None
    except json.JSONDecodeError as err:
        raise DataValidationError(f"{path}: not valid JSON ({err})") from None


#: what each JSON kind is called in an error message
JSON_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    bool: "true or false",
    float: "a number",
}


def json_path(*keys) -> str:
    """A readable path into a JSON document: ``json_path("metrics", "hybrid", "auc")`` is
    ``metrics['hybrid']['auc']``."""
    return str(keys[0]) + "".join(f"[{k!r}]" for k in keys[1:])


def describe_json(value: Any) -> str:
    """A found value for an error message: containers by kind, scalars as they are."""
    if isinstance(value, (dict, list)):
        return f"{JSON_KINDS[dict if isinstance(value, dict) else list]} ({len(value)} entries)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_json_kind(value: Any, kind: type) -> bool:
    """Whether ``value`` is of JSON ``kind`` (a key of :data:`JSON_KINDS`): ``int`` accepts numpy
    integers and never true/false; ``float`` is any JSON number, integer or not, never true/false."""
    from numbers import Integral, Real

    if kind is int:
        return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))
    if kind is float:
        return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))
    return isinstance(value, kind)


def require_json_kind(
    value: Any,
    kind: type,
    path: str,
    source: str | Path,
    expected: str | None = None,
    error: type[ValueError] = DataValidationError,
) -> Any:
    """Return ``value`` if it is of JSON ``kind``, else raise ``error`` naming ``source``, the
    ``path`` inside it (:func:`json_path`), what was found and what was ``expected`` (by default
    the kind's name). The one type check of every JSON file the project reads back."""
    if not is_json_kind(value, kind):
        raise error(f"{source}: {path} is {describe_json(value)}; expected {expected or JSON_KINDS[kind]}")
    return value


def validate(df: pd.DataFrame, schema: pa.DataFrameSchema, source: str | Path) -> pd.DataFrame:
    """Validate ``df`` against ``schema``; raise :class:`DataValidationError` naming ``source``.

    Returns the validated (and, where the schema says so, coerced) frame.
    """
    try:
        return schema.validate(df, lazy=True)
    except SchemaErrors as err:
        raise DataValidationError(_describe_failures(err.failure_cases, source, schema)) from None
    except SchemaError as err:
        raise DataValidationError(_describe_failures(err.failure_cases, source, schema)) from None


def _describe_failures(cases: pd.DataFrame | None, source: str | Path, schema: pa.DataFrameSchema) -> str:
    name = schema.name or "table"
    if cases is None or len(cases) == 0:
        return f"{source}: does not match the {name} schema"
    lines = []
    for _, case in cases.head(5).iterrows():
        column = case.get("column")
        check = case.get("check")
        value = case.get("failure_case")
        index = case.get("index")
        if check == "column_in_dataframe":
            lines.append(f"missing column {value!r}")
        elif isinstance(check, str) and check.startswith("dtype("):
            lines.append(f"column {column!r} has type {value}, expected {check[6:-1]}")
        else:
            where = "" if index is None or pd.isna(index) else f" (row {index})"
            lines.append(f"column {column!r}: value {value!r} fails {check}{where}")
    more = f" (and {len(cases) - 5} more)" if len(cases) > 5 else ""
    return f"{source}: does not match the {name} schema: " + "; ".join(lines) + more


def write_parquet(df: pd.DataFrame, path: str | Path, schema: pa.DataFrameSchema | None = None) -> Path:
    """Validate ``df`` (when a schema is given) and write it as Parquet atomically."""
    if schema is not None:
        df = validate(df, schema, path)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_parquet(path: str | Path, schema: pa.DataFrameSchema | None = None) -> pd.DataFrame:
    """Read a Parquet table and validate it (when a schema is given)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (did the stage that writes it run?)")
    df = pd.read_parquet(path)
    return validate(df, schema, path) if schema is not None else df


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as UTF-8 CSV atomically (an export for users who want CSV)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)
