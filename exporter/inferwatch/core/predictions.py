"""Turning what a model returns into numbers to record.

Models return Python and numpy scalars, 1-D score arrays, 2-D probability matrices,
lists, tuples and dicts of named outputs, pandas objects and tensors. `normalize` reduces
each to a :class:`Prediction`: values per output, predicted classes, top-class confidence
and the number of rows. It runs when pending calls are drained, never on the request path.

Which values become ``class`` labels (they are label values, so they must be plausible
classes, never user data): bools, integers with ``|v| < 65,536``, strings listed in the
model's ``classes_`` or the declared ``classes=``, and integer-valued floats: with
``task="classification"``, and with ``task="auto"`` a call's float output whose every value
is one of the model's whole-number ``classes_`` (a classifier fit on a float target). Anything
else in a class position is counted as ``invalid_predictions_total{reason="unsupported_type"}``
and never becomes a label.

>>> p = normalize([[0.2, 0.8], [0.9, 0.1]], probabilities=True)
>>> p.rows, class_labels(p.classes), p.confidence.round(2).tolist()
(2, ['1', '0'], [0.8, 0.9])
"""

from __future__ import annotations

import decimal
import fractions
import functools
import itertools
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core.records import label_score_matrix, records_as_columns

DEFAULT_OUTPUT = "value"
# Rows of a probability matrix may drift from 1 by float error; more than this is a fault.
PROBABILITY_SUM_TOLERANCE = 1e-3
# A softmax or a calibrator may land a hair outside [0, 1] by float error (1.0000000002,
# -1e-12): that is no fault (probability_out_of_range feeds a critical alert), and is read
# as the bound it missed. Anything further out is a real out-of-range probability.
PROBABILITY_RANGE_TOLERANCE = 1e-6
# Integer class ids are plausible below this magnitude; larger ones look like ids or amounts.
SMALL_INTEGER_LIMIT = 65_536
NO_CLASSES: frozenset[str] = frozenset()


@dataclass
class Prediction:
    """One call's predictions, flattened per output.

    `classes` is an integer or bool array (kept numeric so that counting stays cheap) or an
    object array of ``str`` labels; :func:`class_labels` gives the labels as text.
    """

    rows: int = 0
    values: dict[str, np.ndarray] = field(default_factory=dict)
    classes: np.ndarray | None = None
    confidence: np.ndarray | None = None
    invalid: dict[str, int] = field(default_factory=dict)
    # Outputs of a class kind (ints, bools, strings) were seen, labels admitted or not:
    # model_info then shows the task as classification.
    class_like: bool = False
    # Outputs that hold class probabilities: their quantiles are sketched to 0.001 absolute.
    probability_outputs: set[str] = field(default_factory=set)
    # How many outputs hold labels (admitted as classes or not): with more than one, which
    # labels in `classes` are whose row cannot be told from `classes` alone.
    class_outputs: int = 0

    def count_invalid(self, reason: str, n: int) -> None:
        if n:
            self.invalid[reason] = self.invalid.get(reason, 0) + int(n)

    def add_classes(self, labels: np.ndarray) -> None:
        if self.classes is None:
            self.classes = labels
        elif self.classes.dtype.kind == labels.dtype.kind == "i":
            self.classes = np.concatenate([self.classes, labels])
        else:
            self.classes = np.concatenate([_as_text(self.classes), _as_text(labels)])


def class_labels(classes: np.ndarray) -> list[str]:
    """Class labels as text, whatever array kind holds them.

    >>> class_labels(np.array([1, 0])), class_labels(np.array([True]))
    (['1', '0'], ['True'])
    """
    return _as_text(classes).tolist()


def _as_text(classes: np.ndarray) -> np.ndarray:
    if classes.dtype == object:
        return classes
    if classes.size > _FEW_LABELS and classes.dtype.kind in "biu":
        # Integer or bool labels of a large batch hold few distinct classes: each one's text
        # is made once, not once per row.
        distinct, inverse = np.unique(classes.reshape(-1), return_inverse=True)
        return np.array([str(v) for v in distinct.tolist()], dtype=object)[inverse.reshape(-1)]
    return np.array([str(v) for v in classes.tolist()], dtype=object)


# Up to this many labels are written one by one: a sort costs more than they do.
_FEW_LABELS = 64


# A categorical column with more categories than this is taken for ids, not classes.
MAX_DECLARED_CATEGORIES = 1000


def _has(obj: object, name: str) -> bool:
    """Whether `obj`'s class has `name`: the tensor, frame and sparse methods looked for
    here are all defined on their classes. Asked of a pandas object itself, a missing name
    goes through its ``__getattr__`` (a column lookup), some microseconds a call.

    >>> import pandas as pd
    >>> _has(pd.Series([1.0]), "to_numpy"), _has(pd.Series([1.0]), "detach")
    (True, False)
    """
    return hasattr(type(obj), name)


def to_array(obj: object) -> np.ndarray:
    """A numpy view of arrays, lists, pandas objects and (CPU or GPU) tensors.

    >>> to_array(np.ma.masked_array([1.0, 2.0], mask=[False, True])).tolist()
    [1.0, nan]
    """
    if isinstance(obj, np.ndarray):
        if obj.__class__ is np.ndarray:
            return obj
        # Loaded when first needed: instrumenting a model loads the hot path only.
        from inferwatch.quality.plain_arrays import plain_array

        return plain_array(obj)
    if _has(obj, "detach") and _has(obj, "cpu"):  # torch tensors: a GPU's, bfloat16
        from inferwatch.quality.plain_arrays import tensor_array

        return tensor_array(obj)
    to_numpy = getattr(obj, "to_numpy", None)
    if to_numpy is not None:  # pandas Series / DataFrame, pyarrow arrays
        try:
            return np.asarray(to_numpy())
        except ValueError:
            # A pyarrow Array with nulls refuses its default zero-copy conversion.
            return np.asarray(to_numpy(zero_copy_only=False))
    numpy_method = getattr(obj, "numpy", None)
    if numpy_method is not None and not isinstance(obj, (list, tuple)):  # tf / jax tensors
        return np.asarray(numpy_method())
    if _has(obj, "toarray") and _has(obj, "nnz"):
        # A scipy.sparse matrix (a multi-label classifier's predict): np.asarray would make
        # it one object, not its rows.
        return np.asarray(obj.toarray())
    try:
        array = np.asarray(obj)
    except ValueError:
        if not isinstance(obj, (list, tuple)):
            raise
        # Ragged rows (lists of different lengths): one object per row, each counted as
        # what it is (not a plausible class or value) rather than failing the drain.
        array = np.empty(len(obj), dtype=object)
        array[:] = [*obj]
        return array
    if array.dtype.kind == "U" and isinstance(obj, (str, list, tuple)):
        # numpy's fixed-width str dtype drops trailing NULs, merging "a\x00" into "a".
        return np.array(obj, dtype=object)
    return array


def _with_categories(column: object, known_classes: Collection[str]) -> Collection[str]:
    """`known_classes` and the categories a pandas categorical (or polars Enum) column
    declares: its labels are classes by declaration, as a model's ``classes_`` are.

    >>> import pandas as pd
    >>> sorted(_with_categories(pd.Series(["b"], dtype="category"), {"a"}))
    ['a', 'b']
    """
    categories = getattr(getattr(column, "dtype", None), "categories", None)
    if categories is None or isinstance(categories, (str, bytes)):
        return known_classes
    try:
        # Only as many as may be classes, and one past: ``list()`` of a column of ids'
        # categories would cost a Python object per category on every drain.
        declared = [str(c) for c in itertools.islice(categories, MAX_DECLARED_CATEGORIES + 1)]
    except Exception:
        return known_classes
    if not declared or len(declared) > MAX_DECLARED_CATEGORIES:
        return known_classes  # past any class label cap: not a list of classes
    return frozenset(known_classes) | frozenset(declared)


def _is_tensor(obj: object) -> bool:
    return _has(obj, "detach") and _has(obj, "cpu") and _has(obj, "ndim")


def _without_missing(obj: object) -> tuple[object, int]:
    """A pandas nullable column (``Int64``, ``boolean``, ...) without its ``pd.NA`` rows,
    in its numpy type, and how many were missing; a polars Series or pyarrow array without
    its nulls likewise; anything else as it is."""
    nulls = _arrow_nulls(obj)
    if nulls:
        # Converted with its nulls, an integer column would come out as floats with NaN and
        # a classifier's labels would be recorded as regression values.
        drop = getattr(obj, "drop_nulls", None) or obj.drop_null
        return drop(), nulls
    categorical = _pandas_categorical(obj)
    if categorical is not None:
        return categorical
    dtype = getattr(obj, "dtype", None)
    if getattr(dtype, "na_value", None) is None or not hasattr(obj, "isna"):
        return obj, 0
    missing = np.asarray(obj.isna(), dtype=bool)
    kept = obj[~missing] if missing.any() else obj
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    try:
        array = kept.to_numpy(dtype=numpy_dtype) if numpy_dtype is not None else kept.to_numpy()
    except (TypeError, ValueError):
        array = kept.to_numpy()
    return array, int(missing.sum())


def _pandas_categorical(obj: object) -> tuple[np.ndarray, int] | None:
    """A pandas ``category`` Series or a ``Categorical`` as the array of its labels less
    the missing ones, and how many were missing; None for anything else.

    The labels are its categories taken by its codes: each category becomes a Python object
    once, not once per row (pandas' own conversion of a column of text categories makes a
    string per row), so a million rows cost about what a numpy array of them does.

    >>> import pandas as pd
    >>> labels, missing = _pandas_categorical(pd.Series(["b", None, "a", "b"],
    ...                                                 dtype="category"))
    >>> labels.tolist(), missing
    (['b', 'a', 'b'], 1)
    """
    if not type(obj).__module__.startswith("pandas"):
        return None
    categories = getattr(getattr(obj, "dtype", None), "categories", None)
    if categories is None:
        return None
    codes = getattr(obj, "codes", None)  # a Categorical's own; a Series' through .cat
    if codes is None:
        codes = getattr(getattr(obj, "cat", None), "codes", None)
    if codes is None:
        return None
    codes = np.asarray(codes)
    if codes.ndim != 1 or codes.dtype.kind not in "iu":
        return None
    values = to_array(categories)
    if values.ndim != 1:
        return None
    present = codes >= 0  # -1 marks a missing value
    missing = int(codes.size - np.count_nonzero(present))
    return values[codes[present] if missing else codes], missing


def _arrow_nulls(obj: object) -> int:
    """How many nulls a polars Series or a pyarrow array holds (0 for anything else)."""
    module = type(obj).__module__
    if not module.startswith(("polars", "pyarrow")) or not (
            _has(obj, "drop_nulls") or _has(obj, "drop_null")):
        return 0
    try:
        return int(obj.null_count() if callable(obj.null_count) else obj.null_count)
    except Exception:  # not a column (a polars DataFrame's null_count is a frame)
        return 0


def _is_dataframe(obj: object) -> bool:
    """A pandas or polars DataFrame or a pyarrow Table (outputs named by its columns), told
    without any of them."""
    if _is_arrow_table(obj):
        return True
    return _has(obj, "columns") and _has(obj, "to_numpy") and (
        _has(obj, "items") or type(obj).__module__.startswith("polars"))


def _is_arrow_table(obj: object) -> bool:
    return type(obj).__module__.startswith("pyarrow") and _has(obj, "column_names") and \
        _has(obj, "columns")


def _frame_columns(frame: object) -> list[tuple[object, object]]:
    """(name, column) of a pandas or polars DataFrame or a pyarrow Table, in column order.
    A Table's ``columns`` are its column arrays, not their names."""
    if _is_arrow_table(frame):
        return list(zip(frame.column_names, frame.columns))
    if hasattr(frame, "items"):
        return list(frame.items())
    return [(name, frame[name]) for name in frame.columns]  # a polars DataFrame


def _distinct_names(names: Sequence[object]) -> list[str]:
    """Output names as text, each repeat renamed ``a.1``, ``a.2`` as pandas names a file's
    repeated columns on read. A DataFrame or Table may repeat a column name, and keys
    ``1`` and ``"1"`` write the same: under one name the two outputs' values would be
    mixed in one series.

    >>> _distinct_names(["a", "b", "a", 1, "1", "a.1"])
    ['a', 'b', 'a.2', '1', '1.1', 'a.1']
    """
    text = [str(name) for name in names]
    if len(set(text)) == len(text):
        return text
    # A name given as such keeps it; a repeat takes the first free suffix.
    taken = set(text)
    seen: set[str] = set()
    distinct = []
    for name in text:
        if name in seen:
            k = 1
            while f"{name}.{k}" in taken:
                k += 1
            renamed = f"{name}.{k}"
            taken.add(renamed)
            distinct.append(renamed)
        else:
            seen.add(name)
            distinct.append(name)
    return distinct


def _structured_fields(obj: object) -> dict[str, np.ndarray] | None:
    """The fields of a numpy structured (or record) array, as a dict of named outputs; None
    for anything else. Read as one value per row they would be objects, each counted as
    unsupported, and the model's outputs lost."""
    names = getattr(getattr(obj, "dtype", None), "names", None)
    if not names or not isinstance(obj, np.ndarray):
        return None
    plain = obj.view(np.ndarray)
    return {name: plain[name] for name in names}


def _is_output_list(result: object) -> bool:
    """A tuple or list of arrays / tensors: several outputs, not a matrix of rows."""
    return isinstance(result, (tuple, list)) and bool(result) and all(
        getattr(part, "ndim", 0) >= 1 for part in result)


def normalize(
    result: object,
    *,
    probabilities: bool | None = False,
    class_names: Sequence[object] | None = None,
    task: str = "auto",
    known_classes: Collection[str] = NO_CLASSES,
) -> Prediction:
    """Reduce a model's return value to a :class:`Prediction`.

    `probabilities` says the value came from ``predict_proba`` (2-D rows are class
    probabilities); None means "tell by its shape" (a matrix handed to ``r.prediction()``).
    `class_names` is the model's ``classes_``; `task` is ``auto``, ``classification`` or
    ``regression``; `known_classes` are the strings that may become class labels.

    >>> normalize(0.7).values["value"].tolist()
    [0.7]
    >>> normalize({"price": [1.0, 2.0]}).values["price"].tolist()
    [1.0, 2.0]
    >>> class_labels(normalize(np.array([1, 0, 1]), task="auto").classes)
    ['1', '0', '1']
    >>> normalize("alice@example.com").invalid
    {'unsupported_type': 1}
    """
    prediction = Prediction()
    scored = label_score_matrix(result, class_names)
    if scored is not None:
        matrix, labels = scored
        if _looks_like_probabilities(matrix, task, labels, by_shape=True):
            _add_probabilities(prediction, matrix, labels)
        else:  # independent scores (a multi-label model's sigmoid): one output per label
            for j, label in enumerate(labels):
                _add_named(prediction, label, matrix[:, j], task, known_classes)
        return prediction
    records = records_as_columns(result)
    if records is not None:
        result = records
    fields = _structured_fields(result)
    if fields is not None:
        result = fields
    if probabilities and _is_dataframe(result):
        # predict_proba as a DataFrame with a column per class (AutoGluon, H2O): the columns
        # name the classes.
        _add_probabilities(prediction, to_array(result),
                           _distinct_names([name for name, _ in _frame_columns(result)]))
        return prediction
    if isinstance(result, Mapping) or _is_dataframe(result):
        columns = list(result.items()) if isinstance(result, Mapping) else \
            _frame_columns(result)
        names = _distinct_names([name for name, _ in columns])
        for name, (_, column) in zip(names, columns):
            _add_named(prediction, name, column, task, known_classes)
        return prediction
    if _is_output_list(result):
        if probabilities:
            # One probability matrix per output (scikit-learn's MultiOutputClassifier).
            names = _per_output(class_names, len(result))
            for j, part in enumerate(result):
                _add_probabilities(prediction, to_array(part), names[j], prefix=f"{j}:")
        else:
            for j, part in enumerate(result):
                _add_named(prediction, str(j), part, task, known_classes)
        return prediction
    tensor = _is_tensor(result)
    known_classes = _with_categories(result, known_classes)
    column, missing = _without_missing(result)
    array = to_array(column)
    prediction.count_invalid("nan", missing)
    if tensor and array.ndim == 1 and array.dtype.kind not in "iub":
        # A 1-D float tensor is one unbatched sample, not n rows; integer or bool labels
        # are a batch's classes (``logits.argmax(dim=1)``, ``scores > 0.5``).
        array = array.reshape(1, -1)
    if probabilities or _looks_like_probabilities(array, task, class_names,
                                                  by_shape=probabilities is None):
        _add_probabilities(prediction, array, class_names)
    elif array.ndim == 2 and array.shape[1] > 1:
        # Several outputs per row: one output (or class column) per column.
        prediction.rows = array.shape[0]
        for j in range(array.shape[1]):
            _add_output(prediction, str(j), array[:, j], task, known_classes, count_rows=False,
                        prefix=f"{j}:")
    elif not _whole_class_labels(prediction, array, task, class_names):
        _add_output(prediction, DEFAULT_OUTPUT, array, task, known_classes)
    prediction.rows += missing  # a pd.NA row is a row the model returned
    return prediction


def class_names_of(model: Any) -> Sequence[object] | None:
    """The classes a model names: scikit-learn's ``classes_``, or the ``id2label`` of a
    Hugging Face model's config (of a pipeline's model), in label-id order; None when it
    names none.

    >>> class Config: id2label = {1: "POSITIVE", 0: "NEGATIVE"}
    >>> class Pipe: model = type("Model", (), {"config": Config})()
    >>> class_names_of(Pipe())
    ['NEGATIVE', 'POSITIVE']
    """
    classes = getattr(model, "classes_", None)
    if classes is not None:
        return classes
    try:
        config = getattr(getattr(model, "model", model), "config", None)
        labels = getattr(config, "id2label", None)
        if isinstance(labels, Mapping) and labels and all(
                isinstance(key, int) for key in labels):
            return [str(labels[key]) for key in sorted(labels)]
    except Exception as exc:  # a property of the model's own that raised
        faults.record("instrument", exc)
    return None


def _per_output(class_names: Sequence[object] | None, outputs: int) -> list:
    if class_names is not None and len(class_names) == outputs and all(
            np.ndim(names) == 1 for names in class_names):
        return list(class_names)
    return [None] * outputs


def _add_named(prediction: Prediction, name: str, column: object, task: str,
               known_classes: Collection[str]) -> None:
    """One named output of a dict, DataFrame or tuple: its rows are its first dimension."""
    known_classes = _with_categories(column, known_classes)
    column, missing = _without_missing(column)
    array = to_array(column)
    prediction.count_invalid("nan", missing)
    rows = (array.shape[0] if array.ndim else 1) + missing
    prediction.rows = max(prediction.rows, rows)
    _add_output(prediction, name, array, task, known_classes, count_rows=False)


def _looks_like_probabilities(array: np.ndarray, task: str,
                              class_names: Sequence[object] | None, by_shape: bool) -> bool:
    """2-D float rows in [0, 1] that sum to 1 are class probabilities when the task says
    classification, or (task auto) when the model's ``classes_`` has one class per column
    or the matrix was handed over as a prediction with no method to go by. A multi-output
    regressor whose outputs happen to sum to 1 is therefore not taken for a classifier."""
    if task == "regression" or array.ndim != 2 or array.shape[1] < 2 or array.dtype.kind != "f":
        return False
    if task == "classification":
        return True
    if not by_shape and (class_names is None or len(class_names) != array.shape[1]
                         or np.ndim(class_names[0]) != 0):
        return False
    # Rows near the float maximum overflow the sum: they are no probabilities, not a warning.
    with np.errstate(invalid="ignore", over="ignore"):
        in_unit = bool(((array >= -PROBABILITY_RANGE_TOLERANCE) &
                        (array <= 1 + PROBABILITY_RANGE_TOLERANCE)).all())
        sums_to_one = bool((np.abs(array.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE).all())
    return in_unit and sums_to_one


def _add_output(prediction: Prediction, name: str, array: np.ndarray, task: str,
                known_classes: Collection[str], count_rows: bool = True,
                prefix: str = "") -> None:
    flat = array.reshape(-1) if array.ndim != 1 else array
    if count_rows:
        # The first dimension: a (n, seq, k) output is n rows, not n * seq * k.
        prediction.rows = max(prediction.rows, array.shape[0] if array.ndim else 1)
    kind = flat.dtype.kind
    if kind == "O":
        numbers = _object_floats(flat)
        if numbers is not None:
            flat, kind = numbers, "f"
    if task == "classification" and kind == "f" and name == DEFAULT_OUTPUT and array.ndim <= 2:
        # The declared task wins: a classifier's predict may return 0.0 / 1.0. An output of
        # three or more dimensions (n, seq, k) is values whatever the task (docs/shapes.md):
        # a token classifier's logits are not labels.
        labels = _float_classes(prediction, flat)
        if prefix:
            labels = _prefixed(labels, prefix)
        prediction.class_like = True
        prediction.class_outputs += 1
    elif kind == "f" or (kind in "iu" and task == "regression"):
        values = flat.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        if not finite.all():
            prediction.count_invalid("nan", int(np.isnan(values).sum()))
            prediction.count_invalid("inf", int(np.isinf(values).sum()))
            values = values[finite]
        _extend(prediction.values, name, values)
        return
    else:
        labels = admit_classes(prediction, flat, known_classes, prefix)
        prediction.class_like = True
        prediction.class_outputs += 1
    if labels is not None and labels.size:
        prediction.add_classes(labels)


def _whole_class_labels(prediction: Prediction, array: np.ndarray, task: str,
                        class_names: Sequence[object] | None) -> bool:
    """Whether `array`, a float ``predict`` output of a model whose ``classes_`` are whole
    numbers, was recorded as its class labels (task auto): scikit-learn fit on a float
    target predicts 0.0 / 1.0, which as values would show one model as a regressor and
    lose its class mix. Only when every value is among the classes: anything else (a
    wrapper whose predict returns scores) stays values, as it was."""
    if task != "auto" or array.dtype.kind != "f" or array.ndim > 2 or class_names is None:
        return False
    classes = whole_number_classes(class_names)
    if classes is None:
        return False
    flat = array.reshape(-1).astype(np.float64, copy=False)
    if not class_members(flat, classes).all():
        return False
    prediction.rows = max(prediction.rows, array.shape[0] if array.ndim else 1)
    prediction.class_like = True
    prediction.class_outputs += 1
    if flat.size:
        prediction.add_classes(flat.astype(np.int64))
    return True


def whole_number_classes(class_names: Sequence[object] | None) -> np.ndarray | None:
    """A model's classes, sorted as float64, when each is a whole number (an int, or a float
    such as scikit-learn's ``classes_`` of a classifier fit on a float target) that is a
    plausible class; None when any is not, or it names none.

    >>> whole_number_classes(np.array([1.0, 0.0])).tolist(), whole_number_classes([0, 1.5])
    ([0.0, 1.0], None)
    """
    if class_names is None:
        return None
    try:
        numbers = []
        for name in class_names:
            if isinstance(name, (bool, np.bool_)) or not isinstance(
                    name, (int, float, np.integer, np.floating)):
                return None  # text, bools, a multi-output model's arrays of classes
            number = _float(name)
            if not (number.is_integer() and abs(number) < SMALL_INTEGER_LIMIT):
                return None
            numbers.append(number)
    except TypeError:  # not a sequence of classes
        return None
    return np.unique(np.array(numbers, dtype=np.float64)) if numbers else None


def class_members(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Which float `values` are among `classes` (sorted, as from
    :func:`whole_number_classes`); NaN never is.

    >>> class_members(np.array([1.0, 0.5, np.nan, -0.0]), np.array([0.0, 1.0])).tolist()
    [True, False, False, True]
    """
    at = np.searchsorted(classes, values)
    np.minimum(at, classes.size - 1, out=at)
    return classes[at] == values


# Python's exact numbers (a price computed in Decimal, a Fraction) are values, read as floats.
_EXACT_NUMBERS = (decimal.Decimal, fractions.Fraction)
_NUMBERS = (int, float, np.integer, np.floating, *_EXACT_NUMBERS)
_FRACTIONAL = (float, np.floating, *_EXACT_NUMBERS)


def _object_floats(flat: np.ndarray) -> np.ndarray | None:
    """An array of Python objects that holds floats (JSON's numbers with ``null``, a list of
    floats with None) as float64 with NaN for each missing value; None when it holds
    anything else, or only integers (class ids), which stay classes.

    >>> _object_floats(np.array([1.0, None, 2], dtype=object)).tolist()
    [1.0, nan, 2.0]
    >>> _object_floats(np.array([1, None], dtype=object)) is None
    True
    """
    if flat.size and isinstance(flat.flat[0], (str, bytes)):
        return None  # text labels: not a list of a million Python objects to find that out
    has_float = False
    for value in flat.tolist():
        if value is None or _is_missing(value):
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMBERS):
            return None
        if isinstance(value, _FRACTIONAL):
            has_float = True
    if not has_float:
        return None
    return np.array([np.nan if v is None or _is_missing(v) else _float(v)
                     for v in flat.tolist()], dtype=np.float64)


def _missing_as_nan(array: np.ndarray) -> np.ndarray | None:
    """An array of Python numbers with missing values among them (pd.NA, None) as float64
    with NaN for each missing one; None when it holds anything but numbers.

    >>> _missing_as_nan(np.array([[0.5, None]], dtype=object)).tolist()
    [[0.5, nan]]
    """
    flat = []
    for value in array.reshape(-1).tolist():
        if value is None or _is_missing(value):
            flat.append(math.nan)
        elif isinstance(value, _NUMBERS) and not isinstance(value, (bool, np.bool_)):
            flat.append(_float(value))
        else:
            return None
    return np.array(flat, dtype=np.float64).reshape(array.shape)


def _float(value: int | float) -> float:
    """`value` as a float; an integer past the float range as an infinity of its sign (it
    counts as ``inf``, as any infinite value does); a signalling Decimal NaN as NaN.

    >>> _float(10**400), _float(decimal.Decimal("12.50")), _float(decimal.Decimal("sNaN"))
    (inf, 12.5, nan)
    """
    try:
        return float(value)
    except ValueError:  # Decimal("sNaN") refuses float()
        return math.nan
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def bytes_text(raw: bytes | bytearray) -> str:
    """A bytes label's text, as ``faults.text_of`` reads bytes: UTF-8, with each byte
    that is not UTF-8 written as its escape (a lone surrogate would break every UTF-8
    write).

    >>> bytes_text(b"cat"), bytes_text(b"r-\\xff") == "r-" + chr(92) + "xff"
    ('cat', True)
    """
    return bytes(raw).decode("utf-8", "backslashreplace")


def _is_missing(value: object) -> bool:
    """pandas' NA and NaT, and a float or Decimal NaN: a missing value in an array of
    objects."""
    if isinstance(value, (float, np.floating)):
        return bool(value != value)
    if isinstance(value, decimal.Decimal):
        return value.is_nan()  # a signalling NaN raises in a comparison
    return type(value).__name__ in ("NAType", "NaTType")


def _prefixed(labels: np.ndarray, prefix: str) -> np.ndarray:
    """``<prefix><label>`` for each label, as text.

    A multi-output classifier's batch holds few distinct classes in many rows: the text is
    built once per distinct label, so a million rows cost a sort, not a million strings.

    >>> _prefixed(np.array([1, 0, 1]), "2:").tolist()
    ['2:1', '2:0', '2:1']
    """
    if labels.dtype == object:
        # Text already (one str per row): sorting Python objects costs more than this.
        return np.array([prefix + label for label in labels.tolist()], dtype=object)
    distinct, inverse = np.unique(labels.reshape(-1), return_inverse=True)
    text = np.array([prefix + label for label in class_labels(distinct)], dtype=object)
    return text[inverse.reshape(-1)]


def _float_classes(prediction: Prediction, flat: np.ndarray) -> np.ndarray:
    """Float labels of a declared classifier (``predict`` returning 0.0 / 1.0)."""
    values = flat.astype(np.float64, copy=False)
    nan = np.isnan(values)
    prediction.count_invalid("nan", int(nan.sum()))
    with np.errstate(invalid="ignore"):
        whole = ~nan & (np.abs(values) < SMALL_INTEGER_LIMIT) & (np.floor(values) == values)
    prediction.count_invalid("unsupported_type", int((~nan & ~whole).sum()))
    return values[whole].astype(np.int64)


def admit_classes(prediction: Prediction, labels: np.ndarray,
                  known_classes: Collection[str], prefix: str = "") -> np.ndarray | None:
    """The labels that are plausible classes; the rest are counted as unsupported_type.
    With a `prefix` (a multi-output classifier's ``j:``), the admitted labels as text, each
    after it.

    >>> p = Prediction()
    >>> admit_classes(p, np.array([3, 10**9]), NO_CLASSES).tolist(), p.invalid
    ([3], {'unsupported_type': 1})
    >>> class_labels(admit_classes(p, np.array(["cat", "x@y.z"]), {"cat"}))
    ['cat']
    """
    kind = labels.dtype.kind
    if kind == "b":
        return _prefixed(labels, prefix) if prefix else labels
    if kind in "iu":
        small = labels < SMALL_INTEGER_LIMIT
        if kind == "i":
            small &= labels > -SMALL_INTEGER_LIMIT
        if not small.all():
            prediction.count_invalid("unsupported_type", int((~small).sum()))
            labels = labels[small]
        labels = labels.astype(np.int64, copy=False)
        return _prefixed(labels, prefix) if prefix else labels
    if kind in "US":
        # Judged once per distinct label, not per row: a batch of a million rows holds a
        # handful of classes (or, if not classes, ids the sort handles in C).
        distinct, inverse = np.unique(labels.reshape(-1), return_inverse=True)
        text = distinct.tolist()
        if kind == "S":
            text = list(map(bytes_text, text))
        admitted = np.array([label in known_classes for label in text], dtype=bool)
        inverse = inverse.reshape(-1)
        keep = admitted[inverse]
        prediction.count_invalid("unsupported_type", int(keep.size - keep.sum()))
        return np.array([prefix + label for label in text], dtype=object)[inverse[keep]]
    if kind == "O":
        text = _object_text_classes(prediction, labels, known_classes, prefix)
        if text is not None:
            return text
        kept = []
        for value in labels.tolist():
            if value is None or _is_missing(value):  # polars' null, pandas' NA
                prediction.count_invalid("nan", 1)
                continue
            label = _object_class(value, known_classes)
            if label is None:
                prediction.count_invalid("unsupported_type", 1)
            else:
                # A declared class named "nan" is that class, as in a numpy str array.
                kept.append(prefix + label)
        return np.asarray(kept, dtype=object)
    prediction.count_invalid("unsupported_type", labels.shape[0])
    return None


def _object_text_classes(prediction: Prediction, labels: np.ndarray,
                         known_classes: Collection[str], prefix: str) -> np.ndarray | None:
    """Labels of an array of Python objects that holds text and missing values only (a
    pandas ``str`` or ``category`` column, text labels in an object array), each distinct
    value judged once, the rows then kept by a set lookup in C: a million rows cost about
    what the same labels in a numpy str array do, not a Python call each. None, counting
    nothing, for any other content (numbers, bools, unhashable values): those are judged
    one by one.

    >>> p = Prediction()
    >>> _object_text_classes(p, np.array(["a", None, "x", "a"], dtype=object), {"a"},
    ...                      "").tolist(), p.invalid
    (['a', 'a'], {'nan': 1, 'unsupported_type': 1})
    >>> _object_text_classes(p, np.array(["a", 1], dtype=object), {"a"}, "") is None
    True
    """
    labels = labels.reshape(-1)
    values = labels.tolist()
    try:
        distinct = set(values)
    except TypeError:  # unhashable values (a list per row)
        return None
    admitted: set[str] = set()
    missing = subclassed = False
    for value in distinct:
        if isinstance(value, str):
            if value in known_classes:
                admitted.add(value)
                subclassed = subclassed or type(value) is not str
        elif value is None or _is_missing(value):
            missing = True
        else:
            # 1, 1.0 and True are one key of a set: numbers are judged row by row.
            return None
    n = len(values)
    if not admitted:  # ids, not classes (or none declared): no row to look up
        keep = np.zeros(n, dtype=bool)
    else:
        try:
            keep = np.fromiter(map(admitted.__contains__, values), dtype=bool, count=n)
        except TypeError:  # a missing value whose comparison with a label raised
            return None
    kept = int(np.count_nonzero(keep))
    nan = n - int(np.fromiter(map(isinstance, values, itertools.repeat(str)), dtype=bool,
                              count=n).sum()) if missing else 0
    prediction.count_invalid("nan", nan)
    prediction.count_invalid("unsupported_type", n - kept - nan)
    chosen = labels[keep] if kept < n else labels.copy()
    if prefix or subclassed:
        # Plain str, each after its prefix, as the row-by-row path writes them.
        text = np.empty(kept, dtype=object)
        text[:] = list(map(prefix.__add__, chosen.tolist()))
        return text
    return chosen


def count_text_classes(prediction: Prediction, labels: np.ndarray,
                       known_classes: Collection[str]) -> dict[str, int] | None:
    """Counts by class of a batch of text labels (a numpy str or bytes array, or Python
    objects that are text and missing values only), judged as :func:`admit_classes`
    judges them but counted per distinct label, with no array of the rows' labels built:
    a drain of text labels costs a sort (numpy text) or a hash per row (objects), not a
    Python string and a count per row. None, counting nothing, for any other labels.

    >>> p = Prediction()
    >>> count_text_classes(p, np.array(["a", "b", "a", "x"]), {"a", "b"}), p.invalid
    ({'a': 2, 'b': 1}, {'unsupported_type': 1})
    >>> count_text_classes(p, np.array(["a", None, 2], dtype=object), {"a"}) is None
    True
    """
    kind = labels.dtype.kind
    if kind in "US":
        distinct, first, inverse = np.unique(labels.reshape(-1), return_index=True,
                                             return_inverse=True)
        per_label = np.bincount(inverse.reshape(-1), minlength=distinct.size)
        # In the order the rows first name them, as a count row by row meets them: past
        # max_classes, the classes seen first keep series of their own.
        order = np.argsort(first, kind="stable")
        text = distinct[order].tolist()
        if kind == "S":
            text = list(map(bytes_text, text))
        counts: dict[str, int] = {}
        unsupported = 0
        for label, count in zip(text, per_label[order].tolist()):
            if label in known_classes:
                counts[label] = counts.get(label, 0) + count
            else:
                unsupported += count
        prediction.count_invalid("unsupported_type", unsupported)
        return counts
    if kind != "O":
        return None
    try:
        by_value = Counter(labels.reshape(-1).tolist())
    except TypeError:  # unhashable values (a list per row)
        return None
    counts = {}
    unsupported = missing = 0
    for value, count in by_value.items():
        if isinstance(value, str):
            if value in known_classes:
                label = str.__str__(value)  # a str subclass by its characters
                counts[label] = counts.get(label, 0) + count
            else:
                unsupported += count
        elif value is None or _is_missing(value):
            missing += count
        else:
            # 1, 1.0 and True are one key of a Counter: numbers are judged row by row.
            return None
    prediction.count_invalid("nan", missing)
    prediction.count_invalid("unsupported_type", unsupported)
    return counts


def _object_class(value: object, known_classes: Collection[str]) -> str | None:
    """The label of one Python value, or None when it is not a plausible class."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value)) if abs(int(value)) < SMALL_INTEGER_LIMIT else None
    if isinstance(value, str):
        return value if value in known_classes else None
    return None


def _add_probabilities(prediction: Prediction, array: np.ndarray,
                       class_names: Sequence[object] | None, prefix: str = "") -> None:
    if array.ndim == 1 and array.dtype.kind == "O" and array.size and \
            isinstance(array[0], (list, tuple, np.ndarray)):
        # One probability row per element (a pandas Series of lists, rows of different
        # lengths): as many rows as elements, never one row of objects.
        array = _object_rows(array)
    # A binary classifier's positive-class probabilities alone, one per row (shape (n,), as
    # hand-written classifiers and some SDKs return): read as the (n, 1) column below. As
    # one row of n columns it would be one call's row of n classes, every batch of three or
    # more counted as probability_sum and its predicted classes named by column numbers.
    positive_column = array.ndim == 1 and _two_classes(class_names) and \
        not _one_binary_row(array)
    rows = array.shape[0] if array.ndim == 2 or positive_column else 1
    # Rows the model returned, even when none of them can be read as probabilities: the
    # batch size counts them as it counts any other call's.
    prediction.rows = max(prediction.rows, rows)
    if array.dtype.kind in "cmMUSV":
        # Casting would drop the imaginary part, and numpy would warn about it on the
        # application's stderr from the drain thread: such output is not probabilities;
        # nor are times (cast, nanoseconds since 1970 would read as out-of-range ones), nor
        # text, which numpy would parse ("0.2" is no probability a model returned).
        prediction.count_invalid("unsupported_type", rows)
        return
    if array.dtype.kind == "O":
        # Numbers with pd.NA among them (a nullable Float64 DataFrame): each NA is a
        # missing probability, its row counted as nan, and the other rows still recorded.
        # Anything else (text, which float() would parse) is no probabilities.
        numbers = _missing_as_nan(array)
        if numbers is None:
            prediction.count_invalid("unsupported_type", rows)
            return
        matrix = numbers
    else:
        matrix = array.astype(np.float64, copy=False)
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1) if positive_column else matrix.reshape(1, -1)
    elif matrix.ndim != 2:
        prediction.rows = max(prediction.rows, matrix.shape[0] if matrix.ndim else 1)
        prediction.count_invalid("bad_shape", 1)
        return
    if matrix.shape[1] == 1 and _two_classes(class_names):
        # A binary classifier's predict_proba giving the positive class's column alone (old
        # Keras wrappers, some SDKs): read as argmax of a single column it would predict the
        # first class for every row, with p as its confidence and every row counted as
        # probability_sum.
        matrix = np.concatenate([1.0 - matrix, matrix], axis=1)
    rows, width = matrix.shape
    prediction.rows = max(prediction.rows, rows)
    if rows == 0 or width == 0:
        return
    # Reductions along a row of a few columns cost numpy a loop per row: whole-matrix
    # checks first, and per row only when one finds something.
    finite = np.isfinite(matrix)
    if not finite.all():
        finite_rows = finite.all(axis=1)
        nan_rows = np.isnan(matrix).any(axis=1)
        prediction.count_invalid("nan", int(nan_rows.sum()))
        prediction.count_invalid("inf", int((~finite_rows & ~nan_rows).sum()))
        matrix = matrix[finite_rows]
    if matrix.shape[0] == 0:
        return
    if matrix.min() < 0 or matrix.max() > 1:
        low, high = -PROBABILITY_RANGE_TOLERANCE, 1 + PROBABILITY_RANGE_TOLERANCE
        out_of_unit = ((matrix < low) | (matrix > high)).any(axis=1)
        prediction.count_invalid("probability_out_of_range", int(out_of_unit.sum()))
        near = ((matrix < 0) & (matrix >= low)) | ((matrix > 1) & (matrix <= high))
        if near.any():
            # A new array: `matrix` may be the caller's own.
            matrix = np.where(near, np.clip(matrix, 0.0, 1.0), matrix)
        # Huge values can overflow a row's sum: counted below, never warned about on the
        # application's stderr (values in [0, 1] cannot, and skip this context's cost).
        with np.errstate(over="ignore", invalid="ignore"):
            sums = _row_sums(matrix)
    else:
        sums = _row_sums(matrix)
    bad_sum = np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE
    prediction.count_invalid("probability_sum", int(bad_sum.sum()))
    names = [prefix + name for name in _column_names(width, class_names)]
    if width == 2:  # a binary classifier: the first column wins a tie, as argmax says
        top = (matrix[:, 1] > matrix[:, 0]).view(np.int8)
        confidence = np.maximum(matrix[:, 0], matrix[:, 1])
    else:
        top = matrix.argmax(axis=1)
        confidence = matrix[np.arange(matrix.shape[0]), top]
    codes = _integer_labels(tuple(names))
    prediction.class_outputs += 1
    # Integer class names (sklearn's 0 and 1, or column numbers) stay numbers, which a drain
    # counts in one pass; any other name is text.
    prediction.add_classes(codes[top] if codes is not None else
                           np.asarray(names, dtype=object)[top])
    prediction.confidence = confidence if prediction.confidence is None else np.concatenate(
        [prediction.confidence, confidence])
    for j, name in enumerate(names):
        _extend(prediction.values, name, matrix[:, j])
    prediction.probability_outputs.update(names)


def _one_binary_row(array: np.ndarray) -> bool:
    """Whether a 1-D array of a binary classifier is one row `[p0, p1]`: two numbers summing
    to 1, as a handler hands over one request's row (``r.prediction(proba[0],
    probabilities=True)``). Two positive-class probabilities sum to 1 only by chance.

    >>> _one_binary_row(np.array([0.3, 0.7])), _one_binary_row(np.array([0.3, 0.9]))
    (True, False)
    """
    if array.shape[0] != 2 or array.dtype.kind not in "fiu":
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(abs(float(array[0]) + float(array[1]) - 1.0) <= PROBABILITY_SUM_TOLERANCE)


def _two_classes(class_names: Sequence[object] | None) -> bool:
    """Whether the model names exactly two classes (a binary classifier's ``classes_``)."""
    try:
        return class_names is not None and len(class_names) == 2 and all(
            np.ndim(c) == 0 for c in class_names)
    except TypeError:  # no length: names no classes
        return False


def _object_rows(array: np.ndarray) -> np.ndarray:
    """A 1-D array of row sequences as a 2-D object matrix, or as a (n, 1) column of the
    rows themselves when they differ in length (each then counted as unsupported)."""
    try:
        matrix = np.array(array.tolist(), dtype=object)
    except ValueError:  # ragged rows
        matrix = None
    if matrix is None or matrix.ndim != 2 or matrix.shape[0] != array.shape[0]:
        return array.reshape(-1, 1)
    return matrix


def _row_sums(matrix: np.ndarray) -> np.ndarray:
    """Each row's sum, added column by column as numpy adds a row of fewer than 8 values
    (the same floats), without its loop per row; wider rows take numpy's own sum."""
    width = matrix.shape[1]
    if width >= 8:
        return matrix.sum(axis=1)
    total = matrix[:, 0].copy()
    for j in range(1, width):
        total += matrix[:, j]
    return total


@functools.lru_cache(maxsize=256)
def _integer_labels(names: tuple[str, ...]) -> np.ndarray | None:
    """`names` as an int64 array when each is exactly how Python writes an integer (so the
    label text comes back unchanged), else None. Never to be written to: it is shared.

    >>> _integer_labels(("0", "1", "-3")).tolist(), _integer_labels(("1", "01"))
    ([0, 1, -3], None)
    """
    try:
        values = [int(name) for name in names]
    except ValueError:
        return None
    if any(str(value) != name or not -SMALL_INTEGER_LIMIT < value < SMALL_INTEGER_LIMIT
           for value, name in zip(values, names)):
        return None
    codes = np.array(values, dtype=np.int64)
    codes.flags.writeable = False
    return codes


def _column_names(width: int, class_names: Sequence[object] | None) -> list[str]:
    if class_names is not None and len(class_names) == width and all(
            np.ndim(c) == 0 for c in class_names):
        # Repeated names (classes 1 and "1") would mix two columns in one series.
        return _distinct_names([_class_name(c.item() if isinstance(c, np.generic) else c)
                                for c in class_names])
    return [str(j) for j in range(width)]


def _class_name(name: object) -> object:
    """A class of ``classes_`` as its label is written: a whole-number float (scikit-learn
    fit on a float column keeps ``classes_ == [0.0, 1.0]``) as the integer it is, as
    ``predict``'s float labels of a declared classifier and an outcome's labels are read. As
    "0.0" its column would count the class apart from the "0" that ``predict`` counts.

    A bytes class (a model fit on labels read as bytes) is its text, as ``predict``'s
    bytes labels are read.

    >>> _class_name(1.0), _class_name(-2.0), _class_name(0.5), _class_name("1.0")
    (1, -2, 0.5, '1.0')
    >>> _class_name(b"cat")
    'cat'
    """
    if isinstance(name, float) and name.is_integer():
        return int(name)
    if isinstance(name, (bytes, bytearray)):
        return bytes_text(name)
    return name


def known_class_set(class_names: Sequence[object] | None,
                    declared: Sequence[object] | None) -> frozenset[str]:
    """The strings that may become class labels: ``classes_`` and the declared classes,
    flattened (a multi-output model's ``classes_`` is a list of arrays).

    >>> sorted(known_class_set([np.array(["a", "b"]), np.array(["c"])], ("d",)))
    ['a', 'b', 'c', 'd']
    """
    known: set[str] = set()
    for source in (class_names, declared):
        if source is None:
            continue
        for item in source:
            if np.ndim(item) == 0:
                known.add(_known_text(item.item() if isinstance(item, np.generic) else item))
            else:
                known.update(_known_text(v) for v in np.asarray(item).reshape(-1).tolist())
    return frozenset(known)


def _known_text(name: object) -> str:
    """A class name as the labels it matches are read: bytes as their UTF-8 text."""
    if isinstance(name, (bytes, bytearray)):
        return bytes_text(name)
    return str(name)


def _extend(values: dict[str, np.ndarray], name: str, array: np.ndarray) -> None:
    previous = values.get(name)
    values[name] = array if previous is None else np.concatenate([previous, array])
