"""Reference profiles: what the training data looked like, binned for drift and quality checks.

A :class:`Reference` holds one :class:`Profile` per input feature and per prediction output.
Numeric profiles keep quantile bin edges, the fraction of rows in each bin, the range and the
missing rate; categorical profiles keep the most frequent categories (the rest fold into
``__other__``). Profiles are built once, offline, and saved as versioned JSON.

>>> import numpy as np
>>> ref = Reference.from_data({"age": np.arange(100.0), "colour": ["red", "blue"] * 50},
...                           predictions=np.linspace(0, 1, 100), bins=4)
>>> ref.feature_names
['age', 'colour']
>>> ref.features["age"].edges
(25.0, 50.0, 75.0)
>>> ref.features["colour"].categories
('blue', 'red', '__other__')
>>> ref.outputs["value"].kind
'numeric'
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import itertools
import json
import math
import numbers
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferwatch.catalogue import OTHER
from inferwatch.quality.sparse_rows import is_sparse
from inferwatch.quality.validation import Validation, ValidationError, score

FORMAT = "inferwatch.reference"
VERSION = 1
NUMERIC = "numeric"
CATEGORICAL = "categorical"
# Fractions must sum to one; JSON round-trips floats exactly, so this only absorbs
# hand-edited files and the rounding of the sum itself.
_SUM_TOLERANCE = 1e-6


# Lone surrogates cannot be encoded as UTF-8; a high one before a low one reads back from
# JSON as the single character the pair encodes.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


class ReferenceError(ValueError):
    """A reference that cannot be used: wrong file, wrong version, or mismatched features."""


@dataclass(frozen=True)
class Profile:
    """The reference distribution of one feature or prediction output.

    Numeric: ``edges`` are the inner cut points; bin ``i`` holds values ``v`` with
    ``edges[i-1] <= v < edges[i]`` and the outer bins are open-ended, so ``len(edges) + 1``
    bins cover every value. Categorical: ``categories`` name the bins, the last one always
    ``__other__``. ``fractions`` are shares of the non-missing values, one per bin.

    >>> p = Profile("x", NUMERIC, fractions=(0.5, 0.5), edges=(1.0,), min=0.0, max=2.0)
    >>> p.n_bins, p.bin_index(1.0)
    (2, 1)
    """

    name: str
    kind: str
    fractions: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    missing_rate: float = 0.0
    count: int = 0

    @property
    def n_bins(self) -> int:
        return len(self.fractions)

    @property
    def is_numeric(self) -> bool:
        return self.kind == NUMERIC

    def bin_index(self, value: Any) -> int:
        """The bin a single value falls in (for reading profiles; batches use checks.py)."""
        if self.is_numeric:
            return int(np.searchsorted(np.asarray(self.edges), float(value), side="right"))
        key = category_key(value)
        return self.categories.index(key) if key in self.categories[:-1] else self.n_bins - 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.is_numeric:
            out["edges"] = list(self.edges)
            out["min"] = self.min
            out["max"] = self.max
        else:
            out["categories"] = list(self.categories)
        out["fractions"] = list(self.fractions)
        out["missing_rate"] = self.missing_rate
        out["count"] = self.count
        return out


class Reference:
    """Profiles of the features and prediction outputs of a model's training data."""

    def __init__(self, features: Mapping[str, Profile],
                 outputs: Mapping[str, Profile] | None = None, *, rows: int = 0,
                 validation: Validation | None = None) -> None:
        self.features: dict[str, Profile] = dict(features)
        self.outputs: dict[str, Profile] = dict(outputs or {})
        self.rows = rows
        self.validation = validation

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    @property
    def output_names(self) -> list[str]:
        return list(self.outputs)

    @property
    def predictions(self) -> dict[str, Profile]:
        """The prediction output profiles (the same mapping as ``outputs``)."""
        return self.outputs

    def __repr__(self) -> str:
        scored = "" if self.validation is None else (
            f", validation {self.validation.metric} {self.validation.value:.4g}")
        return (f"Reference({len(self.features)} features, {len(self.outputs)} outputs,"
                f" {self.rows} rows{scored})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # --- building -----------------------------------------------------------------------

    @classmethod
    def from_data(cls, X: Any, predictions: Any = None, *,
                  feature_names: Sequence[str] | None = None,
                  categorical: Iterable[str] | None = None, bins: int = 10,
                  max_categories: int = 50,
                  prediction_names: Sequence[str] | None = None,
                  y_true: Any = None) -> Reference:
        """Profile training (or validation) data.

        `X` is a 2-D array (columns are features; 1-D means one feature), a scipy.sparse
        matrix (its implicit entries are zeros), a pandas DataFrame, a dict of columns or a
        list of row dicts (columns by key, a key absent from a row a missing value). Column
        names are text (``str()``), as live inputs are matched; names that are one text
        (``0`` and ``"0"``) or empty, and columns of dates or times, are refused.
        `predictions` is a 1-D array (one output named ``value``), a 2-D probability matrix
        (outputs named by `prediction_names` or column index) or a dict of named outputs.
        Columns of text, bool or object dtype, and features or outputs named in
        `categorical`, are profiled as categories; the rest get `bins` quantile bins.
        With `y_true`, the labels of these rows, the predictions are scored too
        (:mod:`inferwatch.quality.validation`: accuracy, or mean absolute error for a
        regressor), and the model exports the score for the accuracy alert to judge by.

        >>> Reference.from_data([[1], [2], [3], [4]], predictions=[1, 0, 1, 1],
        ...                     y_true=[1, 0, 0, 1]).validation.value
        0.75
        >>> ref = Reference.from_data([[1, "a"], [2, "b"], [3, "a"]], bins=2,
        ...                           feature_names=["n", "c"], categorical=["c"])
        >>> ref.features["c"].fractions
        (0.6666666666666666, 0.3333333333333333, 0.0)
        """
        bins = _positive_int(bins, "bins")
        max_categories = _positive_int(max_categories, "max_categories")
        feature_names, prediction_names, categorical = (
            _name_list(v) for v in (feature_names, prediction_names, categorical))
        columns = _columns(X, feature_names, default_prefix="x", what="X")
        out_cols: dict[str, np.ndarray] = {}
        if predictions is not None:
            out_cols = _columns(predictions, prediction_names, default_prefix="",
                                what="predictions", one_d_name="value")
        if not columns and not out_cols:
            # A reference of nothing checks nothing, while the model looks monitored (the
            # CLI refuses this too).
            raise ReferenceError("X has no columns and no predictions were given: nothing to"
                                 " profile (pass the features, predictions=, or both)")
        for what, group in (("X", columns), ("predictions", out_cols)):
            for name, col in group.items():
                refuse_nested(name, col, what)
        lengths = {len(c) for c in (*columns.values(), *out_cols.values())}
        if len(lengths) > 1:
            raise ReferenceError(f"predictions have {len(next(iter(out_cols.values())))} rows"
                                 f" but X has {len(next(iter(columns.values())))}")
        # As text, as the columns are named: a DataFrame's default column 3 is feature "3".
        forced = {str(name) for name in categorical or ()}
        unknown = forced - set(columns) - set(out_cols)
        if unknown:
            raise ReferenceError(f"categorical names unknown columns: {sorted(unknown)}"
                                 f" (features: {list(columns)}, outputs: {list(out_cols)})")
        features, outputs = (
            {name: profile_column(name, col, bins=bins, max_categories=max_categories,
                                  categorical=name in forced)
             for name, col in group.items()}
            for group in (columns, out_cols))
        # The predictions' rows, when the reference profiles only the outputs.
        rows = lengths.pop() if lengths else 0
        if rows == 0 and (columns or out_cols):
            # An empty frame (a filter that kept nothing): every profile would be empty,
            # and the reference would check nothing while the model looked monitored.
            raise ReferenceError("X has no rows: nothing to profile (an empty frame, or a"
                                 " filter that kept no row?)")
        validation = None
        if y_true is not None:
            if not out_cols:
                raise ReferenceError("y_true needs the predictions of the same rows, to score "
                                     "them: pass predictions= as well")
            try:
                validation = score(out_cols, y_true)
            except ValidationError as exc:
                raise ReferenceError(f"y_true: {exc}") from None
        return cls(features, outputs, rows=rows, validation=validation)

    # --- checking -----------------------------------------------------------------------

    def check_features(self, names: Iterable[str], *, ordered: bool = False) -> None:
        """Raise :class:`ReferenceError` unless `names` are this reference's features.

        >>> ref = Reference.from_data({"a": [1.0], "b": [2.0]})
        >>> ref.check_features(["b", "a"])
        >>> try:
        ...     ref.check_features(["a", "c"])
        ... except ReferenceError as exc:
        ...     print(exc)
        features do not match the reference: missing ['b']; not in the reference ['c']
        """
        given = [str(n) for n in names]
        missing = [n for n in self.features if n not in set(given)]
        extra = [n for n in given if n not in self.features]
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if extra:
            problems.append(f"not in the reference {extra}")
        if not problems and ordered and given != self.feature_names:
            problems.append(f"order differs: expected {self.feature_names}, got {given}")
        if problems:
            raise ReferenceError("features do not match the reference: " + "; ".join(problems))

    # --- reports ------------------------------------------------------------------------

    def compare(self, data: Any, predictions: Any = None, *, range_tolerance: float = 0.0,
                title: str | None = None) -> Any:
        """A drift report of `data` (DataFrame, column dict, row dicts or 2-D array) against
        this reference: features ranked by PSI with their distributions, quality counts and,
        given `predictions`, prediction drift. In Jupyter it renders itself; ``.save_html(path)``
        writes a self-contained HTML file (:mod:`inferwatch.report`, loaded only here).

        >>> ref = Reference.from_data({"amount": np.arange(500.0)})
        >>> report = ref.compare({"amount": np.arange(500.0) * 2})
        >>> report.features[0].name, "<svg" in report._repr_html_()
        ('amount', True)
        """
        from inferwatch.report.model import from_data

        return from_data(self, data, predictions, range_tolerance=range_tolerance, title=title)

    # --- files --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "rows": self.rows,
            "features": [p.to_dict() for p in self.features.values()],
            "outputs": [p.to_dict() for p in self.outputs.values()],
        }
        if self.validation is not None:  # absent, not null: older files stay byte-identical
            data["validation"] = self.validation.to_dict()
        return data

    def to_json(self) -> str:
        """The text :meth:`save` writes: JSON, one newline at the end, deterministic.

        Text holding lone surrogates (bytes that were not UTF-8, read with
        ``errors="surrogateescape"``) is written with those escaped as ``\\udXXX``, so the
        file is UTF-8 and loads back the same text.

        >>> Reference.from_data({"a": [1.0, 2.0]}).to_json().endswith("}\\n")
        True
        >>> Reference.from_data({"a\\udcff": [1.0]}).to_json().count("a\\\\udcff")
        1
        """
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False, ensure_ascii=False) + "\n"
        if _SURROGATE.search(text) is None:
            return text
        for group in (self.features, self.outputs):
            for profile in group.values():
                for value in (profile.name, *profile.categories):
                    if _SURROGATE_PAIR.search(value):
                        # JSON reads an escaped pair back as the one character it encodes.
                        raise ReferenceError(
                            f"profile {profile.name!r}: the text {value!r} holds the two halves"
                            " of one character apart; JSON cannot keep them apart (decode"
                            " the data as UTF-8 first)")
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the reference as JSON (deterministic: the same data gives the same bytes).

        >>> import tempfile, os
        >>> ref = Reference.from_data({"a": [1.0, 2.0]})
        >>> path = os.path.join(tempfile.mkdtemp(), "reference.json")
        >>> ref.save(path); Reference.load(path) == ref
        True
        """
        text = self.to_json()
        path = os.fspath(path)
        if os.path.islink(path):
            # Written through, as editors do: a link into a shared or versioned store keeps
            # pointing there, and the replace stays atomic in the target's own directory.
            path = os.path.realpath(path)
        try:
            # The file replaced keeps its permissions: one made readable by a group only
            # (its categories may name customers) must not turn world-readable on a re-save.
            mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = None
        # A name of this call's own, created afresh ("x"): two saves of one path at once
        # (parallel training jobs) would otherwise write one temporary file, and the second
        # replace find it gone; nor is a file of the user's named "<path>.tmp" overwritten.
        tmp = f"{path}.{secrets.token_hex(6)}.tmp"
        f = open(tmp, "x", encoding="utf-8")  # noqa: SIM115  (closed before the replace)
        try:
            with f:
                f.write(text)
                # On disk before the rename: after a crash some file systems keep the rename
                # and lose the data, leaving an empty reference where a whole one was.
                f.flush()
                os.fsync(f.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            # Only a file this call created is removed (a failed write, or a path naming a
            # directory): nothing is left beside the target.
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reference:
        """Read a reference written by :meth:`save`; any problem is a :class:`ReferenceError`."""
        where = os.fspath(path)
        try:
            # utf-8-sig: an editor that saves UTF-8 with a byte-order mark (Windows
            # Notepad) leaves a file that is otherwise exactly what save() wrote.
            with open(where, encoding="utf-8-sig") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ReferenceError(f"{where}: reference file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ReferenceError(f"{where}: cannot read reference file: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ReferenceError(f"{where}: not valid JSON (line {exc.lineno}: {exc.msg})"
                                 ) from None
        except ValueError as exc:
            # Python refuses to parse an integer of more than 4,300 digits: no reference
            # holds one, and the message must still name the file.
            raise ReferenceError(f"{where}: not a reference file ({exc})") from None
        except RecursionError:
            raise ReferenceError(f"{where}: not a reference file (JSON nested too deeply)"
                                 ) from None
        return cls.from_dict(data, source=where)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "reference") -> Reference:
        """Build from the dict :meth:`to_dict` returns, validating every key."""
        if not isinstance(data, dict):
            raise ReferenceError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ReferenceError(f"{source}: key 'format' is {data.get('format')!r},"
                                 f" expected {FORMAT!r}")
        version = data.get("version")
        # True == 1 and 1.0 == 1 in Python: a hand-edited `true` or `1.0` is no version.
        if type(version) is not int or version != VERSION:
            raise ReferenceError(f"{source}: key 'version' is {data.get('version')!r}; this"
                                 f" inferwatch reads version {VERSION}"
                                 " (re-run `inferwatch profile`)")
        rows = data.get("rows", 0)
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise ReferenceError(f"{source}: key 'rows' must be a non-negative integer")
        if "features" not in data:
            # Without it every feature would go unchecked, and nothing would say so.
            raise ReferenceError(f"{source}: key 'features' is missing (expected a list of"
                                 " feature profiles; re-run `inferwatch profile`)")
        groups = {}
        for key in ("features", "outputs"):
            items = data.get(key, [])
            if not isinstance(items, list):
                raise ReferenceError(f"{source}: key {key!r} must be a list")
            profiles: dict[str, Profile] = {}
            for i, item in enumerate(items):
                profile = _profile_from_dict(item, f"{source}: {key}[{i}]")
                if profile.name in profiles:
                    raise ReferenceError(f"{source}: {key}[{i}]: duplicate name {profile.name!r}")
                profiles[profile.name] = profile
            groups[key] = profiles
        validation = None
        if "validation" in data:
            try:
                validation = Validation.from_dict(data["validation"], f"{source}: validation")
            except ValidationError as exc:
                raise ReferenceError(str(exc)) from None
        return cls(groups["features"], groups["outputs"], rows=rows, validation=validation)


# --- profiling one column -------------------------------------------------------------------

def profile_column(name: str, values: Any, *, bins: int = 10, max_categories: int = 50,
                   categorical: bool = False) -> Profile:
    """Profile one column: quantile bins when numeric, category frequencies otherwise.

    >>> profile_column("n", [0, 0, 1, 1, None]).fractions
    (0.5, 0.5)
    >>> profile_column("n", [0, 0, 1, 1, None]).missing_rate
    0.2
    """
    if not isinstance(values, np.ndarray) and is_category_typed(values):
        # As from_data reads it: its type says categories, even when they are numbers.
        values = category_values(values)
    col = values if isinstance(values, np.ndarray) else np.asarray(values)
    if col.ndim == 2 and col.shape[1] == 1:
        col = col[:, 0]
    if col.ndim != 1:
        raise ReferenceError(f"feature {name!r}: expected a 1-D column, got shape {col.shape}")
    if categorical:
        return _profile_categorical(name, col, max_categories)
    if isinstance(col, CategoryColumn):
        # Its type says categories, even with no value to show it: an all-missing one
        # profiled as numbers would count every live category as a wrong type.
        return _profile_categorical(name, col, max_categories)
    try:
        numeric = numeric_column(col)
    except OverflowError as exc:
        raise ReferenceError(f"feature {name!r}: holds {exc} too large for a 64-bit float;"
                             " leave the column out, or name it categorical") from None
    if numeric is None:
        _refuse_times(name, col)
        return _profile_categorical(name, col, max_categories)
    return _profile_numeric(name, numeric, bins, precision=col.dtype)


def refuse_nested(name: str, col: np.ndarray, what: str) -> None:
    """Refuse a column of lists, arrays or structs (a polars ``List``, ``Array`` or
    ``Struct`` column, a Parquet ``list<...>``, pandas cells holding lists or dicts): it is
    not one value a row. Profiled, a struct of one field would pass for that field's
    numbers and a list column for categories of numpy's text of each list, which no live
    value matches.

    >>> try:
    ...     refuse_nested("emb", np.array([[0.5], None], dtype=object), "X")
    ... except ReferenceError as exc:
    ...     "leave it out" in str(exc)
    True
    """
    where = ""
    if col.ndim != 1:
        kind = "structs or arrays"
    elif col.dtype.kind == "O":
        row = first_nested(col)
        if row is None:
            return
        kind = "structs" if isinstance(col[row], Mapping) else "lists"
        where = f" (row {row} is {type(col[row]).__name__})"
    else:
        return
    raise ReferenceError(f"{what}: column {name!r} holds {kind}, not one value a row{where};"
                         " flatten it into one column a field (a feature each), or leave"
                         " it out")


def first_nested(col: np.ndarray) -> int | None:
    """The index of the first list, tuple, mapping or array in an object column, else None.

    Every value is looked at, not the first present one: a column of text or numbers whose
    later rows hold lists is no more one value a row.

    >>> first_nested(np.array(["a", None, ["b"]], dtype=object))
    2
    """
    if len(col) == 0:
        return None
    nested = np.flatnonzero(_NESTED(col).astype(bool))
    return int(nested[0]) if len(nested) else None


def _is_nested(value: Any) -> bool:
    return isinstance(value, (list, tuple, Mapping)) or getattr(value, "ndim", 0) > 0


_NESTED = np.frompyfunc(_is_nested, 1, 1)


# Dates and times make no profile worth checking against: every live timestamp is later than
# the training ones, so a numeric profile is always out of range and drifted, and a
# categorical one (a category per timestamp) never sees a live value.
_TIMES = (datetime.date, datetime.time, datetime.timedelta, np.datetime64, np.timedelta64)


def _refuse_times(name: str, col: np.ndarray) -> None:
    if col.dtype.kind in "mM" or (
            col.dtype.kind == "O" and any(isinstance(v, _TIMES) for v in col)):
        raise ReferenceError(
            f"feature {name!r}: holds dates or times ({col.dtype}); convert it to the number"
            " the model uses (epoch seconds, hour of day, age in days), leave it out, or"
            " name it categorical")


def numeric_column(col: np.ndarray) -> np.ndarray | None:
    """`col` as float64 (missing as NaN) when every value is a number, else None.

    Raises OverflowError, naming what, for a finite number past the range of a float64
    (``10**400``, ``Decimal("1e400")``, a float128 1e400): read as an infinity it would be
    counted missing, and the profile would say nothing of it.

    >>> numeric_column(np.array([1, decimal.Decimal("2.5"), None], dtype=object)).tolist()
    [1.0, 2.5, nan]
    """
    if col.dtype.kind in "iu" or (col.dtype.kind == "f" and col.dtype.itemsize <= 8):
        return col.astype(np.float64, copy=False)
    if col.dtype.kind == "f":  # longdouble: wider than a float64
        with np.errstate(over="ignore"):
            out = col.astype(np.float64)
        past = np.isinf(out) & np.isfinite(col)
        if past.any():
            raise OverflowError(f"the number {col[past][0]}")
        return out
    if col.dtype.kind != "O":
        return None
    out = np.empty(len(col), dtype=np.float64)
    for i, v in enumerate(col):
        if is_missing(v):
            out[i] = np.nan
        elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
            try:
                out[i] = float(v)
            except OverflowError:
                raise OverflowError("an integer" if isinstance(v, numbers.Integral)
                                    else f"the number {v}") from None
            if math.isinf(out[i]) and isinstance(v, np.floating) and np.isfinite(v):
                raise OverflowError(f"the number {v}")
        elif isinstance(v, decimal.Decimal):
            # A database's NUMERIC column (and Parquet's decimal) arrives as Decimal: an
            # amount, not a category per value. Its NaN (quiet or signalling) is missing.
            out[i] = np.nan if v.is_nan() else float(v)
            if math.isinf(out[i]) and v.is_finite():
                raise OverflowError(f"the number {v}")
        else:
            return None
    return out


def _profile_numeric(name: str, values: np.ndarray, bins: int,
                     precision: np.dtype | None = None) -> Profile:
    n = len(values)
    finite = values[np.isfinite(values)]
    missing_rate = (n - len(finite)) / n if n else 0.0
    if len(finite) == 0:
        return Profile(name, NUMERIC, fractions=(0.0,), missing_rate=missing_rate, count=n)
    lo, hi = float(finite.min()), float(finite.max())
    narrow = _narrow_float(precision)
    constant = lo == hi
    if constant:
        # A constant: one bin for the value itself, open bins either side catch any change.
        # Above the largest float there is no value to open a bin at (and JSON holds no
        # infinity), so that constant gets the bin below and its own.
        lo, hi = _as_written(lo, narrow, min), _as_written(hi, narrow, max)
        with np.errstate(over="ignore"):
            above = np.nextafter(hi, np.inf)
        edges = np.array([lo, above] if np.isfinite(above) else [lo])
    else:
        # "higher" takes edges from the data itself: discrete data then gets one bin per
        # value instead of empty bins between values; its repeats are removed, and an
        # edge at the minimum would leave bin 0 empty. With as many bins as values every
        # value but the minimum is already an edge, so more bins add none: capping them
        # keeps an absurd `bins` from allocating an array per bin.
        bins = min(bins, len(finite))
        cuts = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="higher")
        edges = np.unique(cuts)
        edges = edges[edges > lo]
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    fractions = counts / len(finite)
    if narrow is not None and not constant:
        # Moving an edge down to its decimal text moves no training value across it (the
        # next narrower value below is a whole step away), so the counts stay as binned.
        edges = np.array([_as_written(e, narrow, min) for e in edges.tolist()])
        lo, hi = _as_written(lo, narrow, min), _as_written(hi, narrow, max)
    return Profile(name, NUMERIC, fractions=_floats(fractions), edges=_floats(edges),
                   min=lo, max=hi, missing_rate=missing_rate, count=n)


def _narrow_float(dtype: np.dtype | None) -> type | None:
    """The numpy type of a float column narrower than float64 (float32, float16), else None."""
    if dtype is None or dtype.kind != "f" or dtype.itemsize >= 8:
        return None
    return dtype.type


def _as_written(value: float, narrow: type | None, pick: Any) -> float:
    """`value` of a float32 (or float16) column, or the decimal it is written as, whichever
    `pick` (min or max) chooses.

    A float32 0.7 is 0.699999988 as a float64: a live float64 0.7 (the same number, as a
    float64 model server or a JSON request carries it) would be out of a range ending there,
    and binned above an edge there, where the training value was not. Taking the lower of
    the two for a minimum or an edge and the higher for a maximum keeps both in.

    >>> _as_written(float(np.float32(0.7)), np.float32, max)
    0.7
    >>> _as_written(float(np.float32(0.7)), np.float32, min)
    0.699999988079071
    """
    if narrow is None:
        return value
    text = float(str(narrow(value)))
    return float(pick(value, text)) if math.isfinite(text) else value


def _profile_categorical(name: str, col: np.ndarray, max_categories: int) -> Profile:
    keys, present = category_keys(col)
    n = len(col)
    n_present = int(present.sum())
    missing_rate = (n - n_present) / n if n else 0.0
    uniques, counts = np.unique(keys[present], return_counts=True)
    if OTHER in uniques:
        # Folded into the overflow bin (a category list holds that name once), the value
        # would count as an unseen category on every live row, though training held it.
        raise ReferenceError(
            f"feature {name!r}: holds the value {OTHER!r}, the name of the bin that collects"
            " categories past max_categories (and ones never seen); rename that value in"
            " the data, before profiling and in live inputs alike")
    # Most frequent first; ties by name, so the same data always gives the same file.
    order = np.lexsort((uniques, -counts))
    kept = order[:max_categories].tolist()
    categories = (*(str(uniques[i]) for i in kept), OTHER)
    kept_counts = counts[kept].astype(np.float64)
    other = n_present - kept_counts.sum()
    fractions = np.append(kept_counts, other) / n_present if n_present else np.zeros(len(kept) + 1)
    return Profile(name, CATEGORICAL, fractions=_floats(fractions), categories=categories,
                   missing_rate=missing_rate, count=n)


def is_missing(v: Any) -> bool:
    """None, a float or Decimal NaN, a pandas NA / NaT or a numpy NaT."""
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return v != v
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    if isinstance(v, decimal.Decimal):  # a database NUMERIC's NaN, quiet or signalling
        return v.is_nan()
    return type(v).__name__ in ("NAType", "NaTType")


def category_keys(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category keys (text) of a column and the mask of non-missing values.

    The same conversion (:func:`category_key`) serves the reference and the checks, so a
    value matches its category whichever container it arrives in.

    >>> keys, present = category_keys(np.array(["a", None, 1], dtype=object))
    >>> keys.tolist(), present.tolist()
    (['a', '', '1'], [True, False, True])
    """
    kind = col.dtype.kind
    if kind == "U":
        return col, np.ones(len(col), dtype=bool)
    if kind == "S":  # bytes: decoded as UTF-8 (astype(str) raises on anything past ASCII)
        return np.array([raw.decode("utf-8", "replace") for raw in col.tolist()],
                        dtype=object), np.ones(len(col), dtype=bool)
    if kind == "f":
        present = ~np.isnan(col)
        return np.array([category_key(v) for v in col.tolist()], dtype=object), present
    if kind in "iub":
        return np.array([str(v) for v in col.tolist()], dtype=object), \
            np.ones(len(col), dtype=bool)
    present = np.fromiter((not is_missing(v) for v in col), dtype=bool, count=len(col))
    keys = np.array(["" if not ok else category_key(v) for v, ok in zip(col, present)],
                    dtype=object)
    return keys, present


def category_key(value: Any) -> str:
    """The category a value stands for: its text, with whole floats written as integers.

    A code read as 10115.0 from one source and 10115 from another is the same category.

    >>> category_key(10115.0), category_key(10115), category_key(0.5), category_key(True)
    ('10115', '10115', '0.5', 'True')
    >>> category_key(b"red"), category_key(np.float16(3))
    ('red', '3')
    """
    if isinstance(value, (float, np.floating)):
        # As a Python float: comparing a float16 with 2**53 overflows it, with a warning.
        number = float(value)
        if number.is_integer() and abs(number) < 2**53:
            return str(int(number))
    elif isinstance(value, (bytes, bytearray)):
        # Decoded as a numpy bytes column is: b"red" in a row dict is the category "red",
        # not "b'red'".
        return bytes(value).decode("utf-8", "replace")
    elif isinstance(value, (datetime.date, datetime.timedelta, np.datetime64, np.timedelta64)):
        try:
            return _time_key(value)
        except (ValueError, TypeError, OverflowError):  # NaT, a subclass numpy cannot read
            return str(value)
    return str(value)


def _time_key(value: Any) -> str:
    """One text per instant or duration, whatever carries it: numpy's text depends on the
    column's unit (``2024-01-01T10:30:00.000000`` in a pandas ``us`` column, nine digits in
    an ``ns`` one) and a Timestamp, a datetime and a numpy value each write their own, so a
    timestamp profiled as a category would be unseen in live data of another container.

    >>> _time_key(np.datetime64("2024-01-01T10:30", "ns")), _time_key(
    ...     datetime.datetime(2024, 1, 1, 10, 30)), _time_key(np.datetime64("2024-01-01", "us"))
    ('2024-01-01 10:30:00', '2024-01-01 10:30:00', '2024-01-01')
    >>> _time_key(np.timedelta64(90, "s")), _time_key(datetime.timedelta(seconds=90))
    ('0:01:30', '0:01:30')
    """
    if isinstance(value, datetime.timedelta) and hasattr(value, "to_timedelta64"):
        value = value.to_timedelta64()  # a pandas Timedelta, nanoseconds and all
    if isinstance(value, np.timedelta64):
        if np.isnat(value):
            return "NaT"
        micro = value.astype("timedelta64[us]")
        if micro != value or not isinstance(micro.item(), datetime.timedelta):
            return str(value)  # finer than a microsecond, or months and years
        value = micro.item()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return str(value)  # aware: pandas and datetime write the same ISO text and offset
    if hasattr(value, "to_datetime64"):
        value = value.to_datetime64()  # a pandas Timestamp, nanoseconds and all
    elif not isinstance(value, np.datetime64):
        value = np.datetime64(value)
    if np.isnat(value):
        return "NaT"
    if np.datetime_data(value.dtype)[0] in ("h", "m"):
        value = value.astype("datetime64[s]")  # "10:30" is "10:30:00" in a column of seconds
    text = str(np.datetime_as_string(value))
    if "T" not in text:
        return text  # a date (or a month, a year)
    day, time = text.split("T")
    if "." in time:
        time = time.rstrip("0").rstrip(".")
    return day if time in ("00:00", "00:00:00") else f"{day} {time}"


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


# --- input containers -----------------------------------------------------------------------

def is_dataframe(obj: Any) -> bool:
    """True for a pandas or polars DataFrame or an Arrow table or record batch, checked
    without importing any of them: their columns are read by name, never by position."""
    module = type(obj).__module__
    if module.startswith("pandas"):
        return hasattr(obj, "columns") and hasattr(obj, "iloc") and getattr(obj, "ndim", 0) == 2
    return (module.startswith("polars") and hasattr(obj, "columns") and hasattr(obj, "height")
            ) or _is_arrow(obj)


def _is_arrow(obj: Any) -> bool:
    """An Arrow Table or RecordBatch (what ``pyarrow.parquet.read_table`` returns): its
    ``columns`` are the column arrays, its names are ``column_names``."""
    return type(obj).__module__.startswith("pyarrow") and hasattr(obj, "column_names") \
        and hasattr(obj, "num_rows")


def frame_names(frame: Any) -> list[Any]:
    """The column keys of a frame (:func:`is_dataframe`), in the frame's order."""
    return list(frame.column_names) if _is_arrow(frame) else list(frame.columns)


def frame_column(frame: Any, key: Any) -> Any:
    """The column `key` of a frame: a pandas or polars Series, or for Arrow a numpy array
    (nulls as NaN in numbers, None elsewhere, as ``to_pandas()`` gives them)."""
    if _is_arrow(frame):
        return arrow_numpy(frame.column(key))
    return frame[key]


def arrow_numpy(column: Any) -> np.ndarray:
    """An Arrow array or chunked array as numpy (nulls as NaN in numbers, None elsewhere).

    A dictionary-encoded column (what a pandas category column written to Parquet reads
    back as) is decoded first: a chunked one's ``to_numpy`` gives each null the value of
    some other row, so a missing category would count as a present one.
    """
    kind = getattr(column, "type", None)
    if hasattr(kind, "value_type") and hasattr(kind, "index_type"):
        column = column.cast(kind.value_type)
    return column.to_numpy(zero_copy_only=False)


def is_category_typed(column: Any) -> bool:
    """A column whose type says its values are categories, whatever they hold: a pandas
    ``category`` Series or an Arrow dictionary array (what one reads back as from Parquet).
    Numeric categories (zip codes, store ids) are labels: their order and range mean
    nothing, and their share of rows is what drifts."""
    kind = getattr(column, "dtype", None)
    if type(kind).__name__ == "CategoricalDtype":
        return True
    if type(kind).__module__.startswith("polars") and type(kind).__name__ in (
            "Categorical", "Enum"):
        return True
    kind = getattr(column, "type", None)
    return hasattr(kind, "value_type") and hasattr(kind, "index_type")


def _is_category_typed(frame: Any, key: Any) -> bool:
    return is_category_typed(frame.column(key) if _is_arrow(frame) else frame[key])


class CategoryColumn(np.ndarray):
    """An object array of a category-typed column's values (:func:`category_values`): it
    is profiled as categories whatever it holds, even when every value is missing."""


def category_values(column: Any) -> np.ndarray:
    """A category-typed column (:func:`is_category_typed`) as an object array of its
    categories' text (None where missing), so it is profiled as categories even when they
    are numbers; live values of either type meet the same text (:func:`category_key`).

    >>> import pandas as pd
    >>> category_values(pd.Series(pd.Categorical([10115, None, 7]))).tolist()
    ['10115', None, '7']
    """
    if type(column).__module__.startswith("pyarrow"):
        values = arrow_numpy(column)
    elif type(column).__module__.startswith("polars"):
        values = np.array(column.to_list(), dtype=object)
    else:
        values = np.asarray(column.astype(object) if hasattr(column, "astype") else column,
                            dtype=object)
    return np.array([None if is_missing(v) else category_key(v) for v in values.tolist()],
                    dtype=object).view(CategoryColumn)


def _to_numpy(column: Any) -> np.ndarray:
    return column if isinstance(column, np.ndarray) else column.to_numpy()


def frame_rows(frame: Any, start: int, stop: int) -> Any:
    """Rows `start` to `stop` of a pandas (``iloc``), polars (slicing) or Arrow frame."""
    if hasattr(frame, "iloc"):
        return frame.iloc[start:stop]
    if _is_arrow(frame):
        return frame.slice(start, stop - start)
    return frame[start:stop]


# Densifying a sparse matrix to profile it costs 8 bytes a cell: past this many cells
# (400 MB) the profile asks for fewer rows or columns rather than exhaust memory.
MAX_SPARSE_CELLS = 50_000_000


def _columns(data: Any, names: Sequence[str] | None, *, default_prefix: str, what: str,
             one_d_name: str | None = None) -> dict[str, np.ndarray]:
    if is_sparse(data):
        rows, width = data.shape
        if rows * width > MAX_SPARSE_CELLS:
            raise ReferenceError(
                f"{what}: a sparse matrix of {rows} x {width} is {rows * width:,} cells once "
                f"dense, more than {MAX_SPARSE_CELLS:,}: profile a sample of the rows, or the "
                "columns a model's inputs are checked on")
        data = data.toarray()  # implicit entries are zeros, stored NaN stays missing
    if _is_row_list(data):
        data = _rows_as_columns(data, what)
    if isinstance(data, np.ndarray) and data.dtype.names is not None:
        data = record_columns(data, what)
    if is_dataframe(data):
        keys = frame_names(data)
        cols = {name: category_values(data[c]) if _is_category_typed(data, c)
                else _to_numpy(frame_column(data, c))
                for name, c in zip(_text_names(keys, what), keys)}
        return _select(cols, names, what)
    if isinstance(data, Mapping):
        for name, v in zip(_text_names(list(data), what), data.values()):
            _refuse_non_sequence(v, f"{what}: column {name!r}")
        cols = {name: v if isinstance(v, np.ndarray) else
                category_values(v) if is_category_typed(v) else
                arrow_numpy(v) if type(v).__module__.startswith("pyarrow") else _as_array(v)
                for name, v in zip(_text_names(list(data), what), data.values())}
        for k, v in cols.items():
            if v.ndim != 1:
                raise ReferenceError(f"{what}: column {k!r} is not 1-D (shape {v.shape});"
                                     " a column of lists or arrays is not one value a row:"
                                     " flatten it into one column a field, or leave it out")
        if len({len(v) for v in cols.values()}) > 1:
            lengths = {k: len(v) for k, v in cols.items()}
            raise ReferenceError(f"{what}: columns have different lengths {lengths}")
        return _select(cols, names, what)
    if is_category_typed(data):
        data = category_values(data)
    _refuse_non_sequence(data, what)
    try:
        # asanyarray: a category column stays one (CategoryColumn), and categorical.
        arr = np.asanyarray(data) if isinstance(data, CategoryColumn) else np.asarray(data)
    except ValueError as exc:
        raise ReferenceError(f"{what}: cannot read as an array ({exc})") from None
    if arr.dtype.kind == "U" and isinstance(data, (list, tuple)):
        # numpy makes text of every cell of rows that mix numbers and text ([[1.5, "a"]]):
        # as objects the numbers stay numbers, as they do in columns or beside a None.
        arr = np.array(data, dtype=object)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
        if names is None and one_d_name is not None:
            names = [one_d_name]
    if arr.ndim != 2:
        raise ReferenceError(f"{what}: expected 1-D or 2-D data, got shape {arr.shape}")
    if names is None:
        names = [f"{default_prefix}{i}" for i in range(arr.shape[1])]
    names = [str(n) for n in names]
    if len(names) != arr.shape[1]:
        raise ReferenceError(f"{what}: {len(names)} names for {arr.shape[1]} columns")
    if len(set(names)) != len(names):
        raise ReferenceError(f"{what}: duplicate names in {names}")
    _refuse_unnamed(names, what)
    return {name: arr[:, i] for i, name in enumerate(names)}


def _refuse_non_sequence(values: Any, what: str) -> None:
    """Refuse what numpy would read as one value (shape ``()``), not a column of them: a
    "not 1-D" error would send the user looking for nested cells that are not there.

    >>> try:
    ...     _refuse_non_sequence({"a", "b"}, "X: column 'c'")
    ... except ReferenceError as exc:
    ...     print(exc)
    X: column 'c' is a set, not a sequence of values: a set has no row order; pass a list \
of the values, one a row
    """
    if isinstance(values, np.ndarray) or hasattr(values, "__array__") or is_dataframe(values):
        return
    if isinstance(values, (str, bytes, bytearray)):
        hint = ("it is one text, and is not split into a value a row; pass a list of the"
                " values, one a row ([\"a\", \"b\"], not \"ab\")")
    elif isinstance(values, (set, frozenset)):
        hint = "a set has no row order; pass a list of the values, one a row"
    elif isinstance(values, Mapping):
        hint = "pass a list of the values, one a row"
    elif isinstance(values, Iterator):
        hint = ("it can be read only once, and its length is unknown; pass a list of the"
                " values (list(...))")
    elif not isinstance(values, Sequence) and not hasattr(values, "__len__"):
        hint = "pass a list of the values, one a row"
    else:
        return
    kind = type(values).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    raise ReferenceError(f"{what} is {article} {kind}, not a sequence of values: {hint}")


def _positive_int(value: Any, what: str) -> int:
    """`value` as an int when it is a whole number of 1 or more: a numpy integer
    (``np.int64(20)``, what arithmetic on array sizes gives) is one, a bool or 2.5 is not."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) \
            or value < 1:
        raise ReferenceError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _as_array(values: Any) -> np.ndarray:
    """A column as numpy; cells numpy cannot stack (lists of different lengths) stay
    objects, for :func:`refuse_nested` to name, not numpy's ValueError."""
    try:
        return np.asarray(values)
    except ValueError:
        if not hasattr(values, "__len__") or isinstance(values, (str, bytes)):
            raise ReferenceError("a column is not a sequence of values") from None
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            out[i] = v
        return out


def record_columns(records: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """A numpy structured array (``np.genfromtxt(..., names=True)``, a recarray) as its
    columns by field name: each record is one row, never one value of a single column.

    >>> record_columns(np.array([(1, 2.5)], dtype=[("n", "i4"), ("x", "f8")]), "X")
    {'n': array([1], dtype=int32), 'x': array([2.5])}
    """
    if records.ndim != 1:
        raise ReferenceError(f"{what}: a structured array of shape {records.shape}; expected"
                             " one record per row (1-D)")
    return {name: np.asarray(records[name]) for name in records.dtype.names or ()}


def _name_list(names: Any) -> Any:
    """One name given as text is that name: ``categorical="country"`` must not name the
    columns ``c``, ``o``, ``u``, ... (nor profile columns ``a`` and ``b`` for ``"ab"``)."""
    return [names] if isinstance(names, str) else names


def _select(cols: dict[str, np.ndarray], names: Sequence[str] | None,
            what: str) -> dict[str, np.ndarray]:
    if names is None:
        _refuse_unnamed(list(cols), what)
        return cols
    missing = [str(n) for n in names if str(n) not in cols]
    if missing:
        raise ReferenceError(f"{what}: no column named {missing} (columns: {list(cols)})")
    if "" in {str(n) for n in names}:
        _refuse_unnamed(list(cols), what)
    return {str(n): cols[str(n)] for n in names}


def _refuse_unnamed(names: list[str], what: str) -> None:
    """A profile is found by its name, and a reference file holds no empty one."""
    if "" in names:
        raise ReferenceError(f"{what}: column {names.index('') + 1} of {len(names)} has no"
                             " name (an empty string): name it, or leave it out")


def _text_names(keys: list[Any], what: str) -> list[str]:
    """Column names as text, as live inputs are matched; two keys with one text (0 and "0")
    would make one profile of two columns."""
    names = [str(k) for k in keys]
    if len(set(names)) != len(names):
        first: dict[str, Any] = {}
        for key, name in zip(keys, names):
            if name in first:
                if repr(first[name]) == repr(key):
                    raise ReferenceError(f"{what}: duplicate column name {name!r}")
                raise ReferenceError(f"{what}: columns {first[name]!r} and {key!r} are both"
                                     f" named {name!r} as text; rename one")
            first[name] = key
    return names


def _is_row_list(data: Any) -> bool:
    return isinstance(data, (list, tuple)) and any(isinstance(row, Mapping) for row in data)


def _rows_as_columns(rows: Sequence[Any], what: str) -> dict[str, np.ndarray]:
    """Row dicts as columns by key (text, as live rows are read); a key absent from a row is
    a missing value of that row."""
    keyed = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ReferenceError(f"{what}: row {i} is a {type(row).__name__} in a list of"
                                 " row dicts")
        keyed.append(dict(zip(_text_names(list(row), f"{what}: row {i}"), row.values())))
    names = dict.fromkeys(name for row in keyed for name in row)
    return {name: np.fromiter((row.get(name) for row in keyed), dtype=object, count=len(keyed))
            for name in names}


# --- reading files --------------------------------------------------------------------------

def _profile_from_dict(item: Any, where: str) -> Profile:
    if not isinstance(item, dict):
        raise ReferenceError(f"{where}: expected an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ReferenceError(f"{where}: key 'name' must be a non-empty string")
    where = f"{where} ({name!r})"
    kind = item.get("kind")
    if kind not in (NUMERIC, CATEGORICAL):
        raise ReferenceError(f"{where}: key 'kind' is {kind!r}, expected 'numeric' or"
                             " 'categorical'")
    fractions = _number_list(item, "fractions", where)
    if any(f < 0 for f in fractions) or not fractions:
        raise ReferenceError(f"{where}: key 'fractions' must be non-negative and non-empty")
    total = sum(fractions)
    if total != 0 and abs(total - 1.0) > _SUM_TOLERANCE:
        raise ReferenceError(f"{where}: key 'fractions' sums to {total}, expected 1")
    missing_rate = item.get("missing_rate", 0.0)
    if not _is_number(missing_rate) or not 0.0 <= missing_rate <= 1.0:
        raise ReferenceError(f"{where}: key 'missing_rate' must be a number in [0, 1]")
    count = item.get("count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ReferenceError(f"{where}: key 'count' must be a non-negative integer")
    if kind == NUMERIC:
        edges = _number_list(item, "edges", where)
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ReferenceError(f"{where}: key 'edges' must be strictly increasing")
        if len(fractions) != len(edges) + 1:
            raise ReferenceError(f"{where}: key 'fractions' has {len(fractions)} entries,"
                                 f" expected {len(edges) + 1} (one more than 'edges')")
        lo, hi = item.get("min"), item.get("max")
        for key, v in (("min", lo), ("max", hi)):
            if v is not None and not _is_number(v):
                raise ReferenceError(f"{where}: key {key!r} must be a number or null")
        # Live values are out of range below 'min' or above 'max': an inverted or half-open
        # range would count every one of them, and page on a typo.
        if (lo is None) != (hi is None):
            raise ReferenceError(f"{where}: keys 'min' and 'max' must both be numbers, or"
                                 " both null (a feature with no value in training)")
        if lo is not None and float(lo) > float(hi):
            raise ReferenceError(f"{where}: key 'min' ({lo}) is greater than 'max' ({hi})")
        return Profile(name, NUMERIC, fractions=tuple(fractions), edges=tuple(edges),
                       min=None if lo is None else float(lo), max=None if hi is None else float(hi),
                       missing_rate=float(missing_rate), count=count)
    categories = item.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ReferenceError(f"{where}: key 'categories' must be a list of strings")
    if not categories or categories[-1] != OTHER or len(set(categories)) != len(categories):
        raise ReferenceError(f"{where}: key 'categories' must be distinct and end with {OTHER!r}")
    if len(fractions) != len(categories):
        raise ReferenceError(f"{where}: key 'fractions' has {len(fractions)} entries,"
                             f" expected {len(categories)} (one per category)")
    return Profile(name, CATEGORICAL, fractions=tuple(fractions), categories=tuple(categories),
                   missing_rate=float(missing_rate), count=count)


def _is_number(v: Any) -> bool:
    """A finite JSON number that a float64 holds (an integer like 10**400 is refused, not
    an OverflowError)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _number_list(item: dict[str, Any], key: str, where: str) -> list[float]:
    values = item.get(key)
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise ReferenceError(f"{where}: key {key!r} must be a list of finite numbers")
    return [float(v) for v in values]
