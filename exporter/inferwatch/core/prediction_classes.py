"""Which predicted values become ``class`` labels, and how they are written.

Class labels are label values, so only plausible classes may become one: bools, small
integers, strings and larger integers the model names in ``classes_`` or declares
(``classes=``, a categorical column's categories), and whole-number floats of a declared
classifier. Here they are
admitted or counted as ``unsupported_type``, counted per distinct label, and written as
text. Both the per-call reading (:func:`~inferwatch.core.predictions.normalize`) and the
drain's batched counts (``prediction_batch``) judge labels with these functions, which is
why they stand apart from either.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from inferwatch.core.result_arrays import classes_key, is_missing, to_float

if TYPE_CHECKING:
    from inferwatch.core.predictions import Prediction

# Integer class ids are plausible below this magnitude; larger ones look like ids or amounts,
# unless the model names them as its classes.
SMALL_INTEGER_LIMIT = 65_536
NO_CLASSES: frozenset[str] = frozenset()


# A categorical column with more categories than this is taken for ids, not classes.
MAX_DECLARED_CATEGORIES = 1000


def class_labels(classes: np.ndarray) -> list[str]:
    """Class labels as text, whatever array kind holds them.

    >>> class_labels(np.array([1, 0])), class_labels(np.array([True]))
    (['1', '0'], ['True'])
    """
    return as_text(classes).tolist()


def as_text(classes: np.ndarray) -> np.ndarray:
    """`classes` as an object array of ``str`` labels (an object array is already one)."""
    if classes.dtype == object:
        return classes
    if classes.size > _FEW_LABELS and classes.dtype.kind in "biu":
        # Integer or bool labels of a large batch hold few distinct classes: each one's text
        # is made once, not once per row.
        flat = classes.reshape(-1)
        table = _range_table(flat)
        if table is not None:
            return table[0][flat.astype(np.int64, copy=False) - table[1]]
        distinct, inverse = np.unique(flat, return_inverse=True)
        return np.array([str(v) for v in distinct.tolist()], dtype=object)[inverse.reshape(-1)]
    return np.array([str(v) for v in classes.tolist()], dtype=object)


def labels_and_lengths(classes: np.ndarray) -> tuple[list[str], np.ndarray | None]:
    """:func:`class_labels` of integer labels, with the length of each label's text as
    int64, both read off one table of the range's texts (None for the lengths where the
    range is too wide for one, or the labels are of another kind).

    >>> labels, lengths = labels_and_lengths(np.array([7, -3, 12] * 30))
    >>> labels[:3], lengths[:3].tolist()
    (['7', '-3', '12'], [1, 2, 2])
    """
    flat = classes.reshape(-1)
    table = _range_table(flat) if flat.size else None
    if table is None:
        return class_labels(classes), None
    texts, low = table
    codes = flat.astype(np.int64, copy=False) - low
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    return texts[codes].tolist(), lengths[codes]


def _range_table(flat: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(the text of every integer from the lowest of `flat` to its highest, the lowest) when
    they span at most :data:`_RANGE_TABLE_SIZE` values: a label's text is then one lookup
    by its offset, with no sort (np.unique) of the batch."""
    if flat.dtype.kind not in "iu":
        return None
    low, high = int(flat.min()), int(flat.max())
    if high - low >= _RANGE_TABLE_SIZE or high > 2**63 - 1:  # compared as Python ints
        return None
    return np.array([str(v) for v in range(low, high + 1)], dtype=object), low


# Up to this many labels are written one by one: a sort costs more than they do.
_FEW_LABELS = 64
# Integer labels spanning at most this many values are written by a table of each value's
# text (a class count's range, not an id's).
_RANGE_TABLE_SIZE = 4096


def with_categories(column: object, known_classes: Collection[str]) -> Collection[str]:
    """`known_classes` and the categories a pandas categorical (or polars Enum) column
    declares: its labels are classes by declaration, as a model's ``classes_`` are.

    >>> import pandas as pd
    >>> sorted(with_categories(pd.Series(["b"], dtype="category"), {"a"}))
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


def whole_number_classes(class_names: Sequence[object] | None) -> np.ndarray | None:
    """A model's classes, sorted as float64, when each is a whole number (an int, or a float
    such as scikit-learn's ``classes_`` of a classifier fit on a float target) that a float
    holds exactly (zip codes and ids too: the model names them as its classes); None when
    any is not, or it names none.

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
            number = to_float(name)
            if not (number.is_integer() and abs(number) <= _EXACT_FLOAT_INTEGERS):
                return None
            numbers.append(number)
    except TypeError:  # not a sequence of classes
        return None
    return np.unique(np.array(numbers, dtype=np.float64)) if numbers else None


# Integers up to this magnitude are exact as floats (and fit an int64).
_EXACT_FLOAT_INTEGERS = 2.0 ** 53


def class_members(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Which float `values` are among `classes` (sorted, as from
    :func:`whole_number_classes`); NaN never is.

    >>> class_members(np.array([1.0, 0.5, np.nan, -0.0]), np.array([0.0, 1.0])).tolist()
    [True, False, False, True]
    """
    at = np.searchsorted(classes, values)
    np.minimum(at, classes.size - 1, out=at)
    return classes[at] == values


def bytes_text(raw: bytes | bytearray) -> str:
    """A bytes label's text, as ``faults.text_of`` reads bytes: UTF-8, with each byte
    that is not UTF-8 written as its escape (a lone surrogate would break every UTF-8
    write).

    >>> bytes_text(b"cat"), bytes_text(b"r-\\xff") == "r-" + chr(92) + "xff"
    ('cat', True)
    """
    return bytes(raw).decode("utf-8", "backslashreplace")


def prefixed(labels: np.ndarray, prefix: str) -> np.ndarray:
    """``<prefix><label>`` for each label, as text.

    A multi-output classifier's batch holds few distinct classes in many rows: the text is
    built once per distinct label, so a million rows cost a sort, not a million strings.

    >>> prefixed(np.array([1, 0, 1]), "2:").tolist()
    ['2:1', '2:0', '2:1']
    """
    if labels.dtype == object:
        # Text already (one str per row): sorting Python objects costs more than this.
        return np.array([prefix + label for label in labels.tolist()], dtype=object)
    flat = labels.reshape(-1)
    if flat.dtype.kind in "iu" and flat.size:
        low, high = int(flat.min()), int(flat.max())
        if high - low < SMALL_INTEGER_LIMIT and high <= _INT64_MAX:
            # A multi-output classifier's labels span a few classes: each label's index
            # among the distinct ones by a table lookup, without np.unique's sort. As
            # int64 first: int8 labels -128 and 127 are 255 apart.
            offsets = flat.astype(np.int64, copy=False) - low
            present = np.bincount(offsets) > 0
            index = np.cumsum(present) - 1
            distinct = np.flatnonzero(present) + low
            text = np.array([prefix + label for label in class_labels(distinct)], dtype=object)
            return text[index[offsets]]
    distinct, inverse = np.unique(flat, return_inverse=True)
    text = np.array([prefix + label for label in class_labels(distinct)], dtype=object)
    return text[inverse.reshape(-1)]


def float_classes(prediction: Prediction, flat: np.ndarray,
                  known_classes: Collection[str] = NO_CLASSES) -> np.ndarray:
    """Float labels of a declared classifier (``predict`` returning 0.0 / 1.0): whole
    numbers below :data:`SMALL_INTEGER_LIMIT`, or larger ones the model names as classes
    (`known_classes`), as integer labels are admitted.

    >>> from inferwatch.core.predictions import Prediction
    >>> p = Prediction()
    >>> float_classes(p, np.array([1.0, 75001.0, 99999.0, 0.5]), {"75001"}).tolist(), p.invalid
    ([1, 75001], {'unsupported_type': 2})
    """
    values = flat.astype(np.float64, copy=False)
    nan = np.isnan(values)
    prediction.count_invalid("nan", int(nan.sum()))
    with np.errstate(invalid="ignore"):
        whole = ~nan & (np.floor(values) == values)
        magnitude = np.abs(values)
        small = whole & (magnitude < SMALL_INTEGER_LIMIT)
        large = whole & ~small & (magnitude <= _EXACT_FLOAT_INTEGERS)
    if large.any():
        numbers = np.where(large, values, 0.0).astype(np.int64)
        small |= _known_integers(numbers, large, known_classes)
    prediction.count_invalid("unsupported_type", int((~nan & ~small).sum()))
    return values[small].astype(np.int64)


def admit_classes(prediction: Prediction, labels: np.ndarray,
                  known_classes: Collection[str], prefix: str = "") -> np.ndarray | None:
    """The labels that are plausible classes; the rest are counted as unsupported_type.
    With a `prefix` (a multi-output classifier's ``j:``), the admitted labels as text, each
    after it.

    >>> from inferwatch.core.predictions import Prediction
    >>> p = Prediction()
    >>> admit_classes(p, np.array([3, 10**9]), NO_CLASSES).tolist(), p.invalid
    ([3], {'unsupported_type': 1})
    >>> class_labels(admit_classes(p, np.array(["cat", "x@y.z"]), {"cat"}))
    ['cat']
    """
    kind = labels.dtype.kind
    if kind == "b":
        return prefixed(labels, prefix) if prefix else labels
    if kind in "iu":
        small = labels < SMALL_INTEGER_LIMIT
        if kind == "i":
            small &= labels > -SMALL_INTEGER_LIMIT
        if not small.all():
            admitted = small | _known_integers(labels, ~small, known_classes)
            prediction.count_invalid("unsupported_type", int((~admitted).sum()))
            labels = labels[admitted]
        labels = labels.astype(np.int64, copy=False)
        return prefixed(labels, prefix) if prefix else labels
    if kind in "US":
        # Judged once per distinct label, not per row: a batch of a million rows holds a
        # handful of classes (or, if not classes, ids the sort handles in C).
        text, inverse = text_codes_in_order(labels.reshape(-1))
        if kind == "S":
            text = list(map(bytes_text, text))
        admitted = np.array([label in known_classes for label in text], dtype=bool)
        keep = admitted[inverse]
        prediction.count_invalid("unsupported_type", int(keep.size - keep.sum()))
        return np.array([prefix + label for label in text], dtype=object)[inverse[keep]]
    if kind == "O":
        text = _object_text_classes(prediction, labels, known_classes, prefix)
        if text is not None:
            return text
        kept = []
        for value in labels.tolist():
            if value is None or is_missing(value):  # polars' null, pandas' NA
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


# The largest integer label kept as a number (an int64): the model's classes are no larger.
_INT64_MAX = np.iinfo(np.int64).max


def _known_integers(labels: np.ndarray, large: np.ndarray,
                    known_classes: Collection[str]) -> np.ndarray:
    """Which of the integer `labels` marked `large` (past :data:`SMALL_INTEGER_LIMIT`) are
    classes the model names (``classes_`` of zip codes or merchant ids, ``classes=``), as
    a text label is admitted: ``predict_proba`` names its columns by the same classes, so
    both methods count the same rows. Each distinct large label is looked up once.

    >>> _known_integers(np.array([3, 75001, 99999]), np.array([False, True, True]),
    ...                 {"75001"}).tolist()
    [False, True, False]
    """
    if not known_classes:
        return np.zeros(labels.shape, dtype=bool)
    distinct = np.unique(labels[large]).tolist()
    known = [value for value in distinct if value <= _INT64_MAX and str(value) in known_classes]
    if not known:
        return np.zeros(labels.shape, dtype=bool)
    return large & np.isin(labels, np.array(known, dtype=labels.dtype))


def _object_text_classes(prediction: Prediction, labels: np.ndarray,
                         known_classes: Collection[str], prefix: str) -> np.ndarray | None:
    """Labels of an array of Python objects that holds text and missing values only (a
    pandas ``str`` or ``category`` column, text labels in an object array), each distinct
    value judged once, the rows then kept by a set lookup in C: a million rows cost about
    what the same labels in a numpy str array do, not a Python call each. None, counting
    nothing, for any other content (numbers, bools, unhashable values): those are judged
    one by one.

    >>> from inferwatch.core.predictions import Prediction
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
    except Exception:  # unhashable values (a list per row), or a __hash__ that raises
        return None
    admitted: set[str] = set()
    missing = subclassed = False
    for value in distinct:
        if isinstance(value, str):
            if value in known_classes:
                admitted.add(value)
                subclassed = subclassed or type(value) is not str
        elif value is None or is_missing(value):
            missing = True
        elif isinstance(value, (bytes, bytearray)):
            # Text as bytes (a TensorFlow string tensor's numpy): judged as its text, as a
            # numpy bytes array's labels are.
            return _object_text_classes(prediction, _bytes_decoded(labels), known_classes,
                                        prefix)
        else:
            # 1, 1.0 and True are one key of a set: numbers are judged row by row.
            return None
    n = len(values)
    if not admitted:  # ids, not classes (or none declared): no row to look up
        keep = np.zeros(n, dtype=bool)
    elif not missing and len(admitted) == len(distinct):
        keep = None  # every distinct label is an admitted class: every row is kept
    else:
        try:
            keep = np.fromiter(map(admitted.__contains__, values), dtype=bool, count=n)
        except Exception:  # a missing value whose comparison with a label raised
            return None
    kept = n if keep is None else int(np.count_nonzero(keep))
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


# A batch of numpy text is counted by comparing its rows with one label at a time, in the
# order they first appear, up to this many labels: a classifier's few classes cost a pass
# each (5 times less than np.unique's sort of the rows for two classes). A label that
# names fewer than one row in _RARE_LABEL_SHARE says the rows hold many distinct labels
# (ids, not classes): the rows left are sorted then.
_COMPARED_LABELS = 16
_RARE_LABEL_SHARE = 64


def text_counts_in_order(labels: np.ndarray) -> tuple[list, list[int]]:
    """Each distinct label of a 1-D numpy str or bytes array, as ``tolist`` makes it, in
    the order its rows first name them, and how many rows name it.

    >>> text_counts_in_order(np.array(["b", "a", "b", "c", "a"]))
    (['b', 'a', 'c'], [2, 2, 1])
    """
    texts, counts, _ = _distinct_in_order(labels, False)
    return texts, counts


def text_codes_in_order(labels: np.ndarray) -> tuple[list, np.ndarray]:
    """:func:`text_counts_in_order`'s labels, and each row's index into them.

    >>> texts, codes = text_codes_in_order(np.array(["b", "a", "b", "c", "a"]))
    >>> texts, codes.tolist()
    (['b', 'a', 'c'], [0, 1, 0, 2, 1])
    """
    texts, _, codes = _distinct_in_order(labels, True)
    return texts, codes


def _distinct_in_order(labels: np.ndarray, with_codes: bool
                       ) -> tuple[list, list[int], np.ndarray]:
    rows = labels.shape[0]
    texts: list = []
    counts: list[int] = []
    codes = np.empty(rows if with_codes else 0, dtype=np.intp)
    start = 0
    left = None  # the rows no label compared so far names
    while rows and len(texts) < _COMPARED_LABELS:
        same = labels == labels[start]
        named = int(np.count_nonzero(same))
        if with_codes:
            codes[same] = len(texts)
        texts.append(labels[start:start + 1].tolist()[0])
        counts.append(named)
        if left is None:
            left = ~same
        else:
            left &= ~same
        step = int(left[start:].argmax())
        if not left[start + step]:
            return texts, counts, codes
        start += step
        if named * _RARE_LABEL_SHARE < rows:
            break
    rest = labels if left is None else labels[left]
    distinct, first, inverse = np.unique(rest, return_index=True, return_inverse=True)
    per_label = np.bincount(inverse.reshape(-1), minlength=distinct.size)
    # The labels left first appear after every label compared: appended in their order.
    order = np.argsort(first, kind="stable")
    if with_codes:
        rank = np.empty(order.size, dtype=np.intp)
        rank[order] = np.arange(len(texts), len(texts) + order.size)
        if left is None:
            codes[:] = rank[inverse.reshape(-1)]
        else:
            codes[left] = rank[inverse.reshape(-1)]
    return texts + distinct[order].tolist(), counts + per_label[order].tolist(), codes


def count_text_classes(prediction: Prediction, labels: np.ndarray,
                       known_classes: Collection[str]) -> dict[str, int] | None:
    """Counts by class of a batch of text labels (a numpy str or bytes array, or Python
    objects that are text and missing values only), judged as :func:`admit_classes`
    judges them but counted per distinct label, with no array of the rows' labels built:
    a drain of text labels costs a sort (numpy text) or a hash per row (objects), not a
    Python string and a count per row. None, counting nothing, for any other labels.

    >>> from inferwatch.core.predictions import Prediction
    >>> p = Prediction()
    >>> count_text_classes(p, np.array(["a", "b", "a", "x"]), {"a", "b"}), p.invalid
    ({'a': 2, 'b': 1}, {'unsupported_type': 1})
    >>> count_text_classes(p, np.array(["a", None, 2], dtype=object), {"a"}) is None
    True
    """
    kind = labels.dtype.kind
    if kind in "US":
        # In the order the rows first name them, as a count row by row meets them: past
        # max_classes, the classes seen first keep series of their own.
        text, per_label = text_counts_in_order(labels.reshape(-1))
        if kind == "S":
            text = list(map(bytes_text, text))
        counts: dict[str, int] = {}
        unsupported = 0
        for label, count in zip(text, per_label):
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
    except Exception:  # unhashable values (a list per row), or a __hash__ that raises
        return None
    return count_text_values(prediction, by_value, known_classes)


def count_text_values(prediction: Prediction, by_value: Mapping[object, int],
                      known_classes: Collection[str]) -> dict[str, int] | None:
    """:func:`count_text_classes` of labels already counted by value (`by_value`: rows per
    distinct value, in the order the rows first name them; None, NaN or ``pd.NA`` for a
    missing row): None, counting nothing, when a value is neither text nor missing.

    >>> from inferwatch.core.predictions import Prediction
    >>> p = Prediction()
    >>> count_text_values(p, {"a": 2, None: 1, "x": 1, b"a": 1}, {"a"}), p.invalid
    ({'a': 3}, {'nan': 1, 'unsupported_type': 1})
    """
    counts: dict[str, int] = {}
    unsupported = missing = 0
    for value, count in by_value.items():
        if isinstance(value, str):
            if value in known_classes:
                label = str.__str__(value)  # a str subclass by its characters
                counts[label] = counts.get(label, 0) + count
            else:
                unsupported += count
        elif isinstance(value, (bytes, bytearray)):  # read as its text, as admit_classes
            label = bytes_text(value)
            if label in known_classes:
                counts[label] = counts.get(label, 0) + count
            else:
                unsupported += count
        elif value is None or is_missing(value):
            missing += count
        else:
            # 1, 1.0 and True are one key of a Counter: numbers are judged row by row.
            return None
    prediction.count_invalid("nan", missing)
    prediction.count_invalid("unsupported_type", unsupported)
    return counts


def _bytes_decoded(labels: np.ndarray) -> np.ndarray:
    """An array of Python objects with each bytes value made its text (:func:`bytes_text`).

    >>> _bytes_decoded(np.array([b"cat", None, "dog"], dtype=object)).tolist()
    ['cat', None, 'dog']
    """
    decoded = np.empty(labels.size, dtype=object)
    decoded[:] = [bytes_text(value) if isinstance(value, (bytes, bytearray)) else value
                  for value in labels.reshape(-1).tolist()]
    return decoded


def _object_class(value: object, known_classes: Collection[str]) -> str | None:
    """The label of one Python value, or None when it is not a plausible class."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes_text(value)  # as a numpy bytes array's label is read
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        number = int(value)
        if abs(number) < SMALL_INTEGER_LIMIT:
            return str(number)
        # A large integer the model names as a class (a zip code, a merchant id); one past
        # int64 is none, and its text is never made (str() of a huge int raises).
        if abs(number) > _INT64_MAX:
            return None
        label = str(number)
        return label if label in known_classes else None
    if isinstance(value, str):
        return value if value in known_classes else None
    return None


def class_name(name: object) -> object:
    """A class of ``classes_`` as its label is written: a whole-number float (scikit-learn
    fit on a float column keeps ``classes_ == [0.0, 1.0]``) as the integer it is, as
    ``predict``'s float labels of a declared classifier and an outcome's labels are read. As
    "0.0" its column would count the class apart from the "0" that ``predict`` counts.

    A bytes class (a model fit on labels read as bytes) is its text, as ``predict``'s
    bytes labels are read.

    >>> class_name(1.0), class_name(-2.0), class_name(0.5), class_name("1.0")
    (1, -2, 0.5, '1.0')
    >>> class_name(b"cat")
    'cat'
    """
    if isinstance(name, float) and name.is_integer():
        return int(name)
    if isinstance(name, (bytes, bytearray)):
        return bytes_text(name)
    return name


# known_class_set per (classes, declared classes): a drain asks each time, and reading
# 20,000 classes costs about 0.1 s. A few models' worth are kept.
_KNOWN_CLASS_SETS: dict[tuple, frozenset[str]] = {}
_KNOWN_CLASS_SETS_MAX = 64


def known_class_set(class_names: Sequence[object] | None,
                    declared: Sequence[object] | None) -> frozenset[str]:
    """:func:`read_known_classes`, remembered per set of classes.

    >>> sorted(known_class_set(["O", "B-PER"], ("x",)))
    ['B-PER', 'O', 'PER', 'x']
    """
    names_key, declared_key = classes_key(class_names), classes_key(declared)
    if (names_key is None and class_names is not None) or \
            (declared_key is None and declared is not None):
        return read_known_classes(class_names, declared)
    key = (names_key, declared_key)
    found = _KNOWN_CLASS_SETS.get(key)
    if found is None:
        found = read_known_classes(class_names, declared)
        if len(_KNOWN_CLASS_SETS) >= _KNOWN_CLASS_SETS_MAX:
            _KNOWN_CLASS_SETS.clear()
        _KNOWN_CLASS_SETS[key] = found
    return found


def read_known_classes(class_names: Sequence[object] | None,
                       declared: Sequence[object] | None) -> frozenset[str]:
    """The strings that may become class labels: ``classes_`` and the declared classes,
    flattened (a multi-output model's ``classes_`` is a list of arrays), and the entity
    groups a token classifier's BIO tags name (``PER`` of ``B-PER`` and ``I-PER``): its
    pipeline's ``aggregation_strategy`` answers with those.

    >>> sorted(known_class_set([np.array(["a", "b"]), np.array(["c"])], ("d",)))
    ['a', 'b', 'c', 'd']
    >>> sorted(known_class_set(["O", "B-PER", "I-PER"], None))
    ['B-PER', 'I-PER', 'O', 'PER']
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
    known.update([name[2:] for name in known if name.startswith(_ENTITY_TAGS) and name[2:]])
    return frozenset(known)


# How a token classifier's tags begin and go on an entity, as Hugging Face's pipeline
# strips them when it groups tokens into entities.
_ENTITY_TAGS = ("B-", "I-")


def _known_text(name: object) -> str:
    """A class name as the labels it matches are read: bytes as their UTF-8 text."""
    if isinstance(name, (bytes, bytearray)):
        return bytes_text(name)
    return str(name)
