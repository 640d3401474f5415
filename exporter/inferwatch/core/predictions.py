"""Turning what a model returns into numbers to record.

Models return Python and numpy scalars, 1-D score arrays, 2-D probability matrices,
lists, tuples and dicts of named outputs, pandas objects and tensors. `normalize` reduces
each to a :class:`Prediction`: values per output, predicted classes, top-class confidence
and the number of rows. It runs when pending calls are drained, never on the request path.

Which values become ``class`` labels (they are label values, so they must be plausible
classes, never user data): bools, integers with ``|v| < 65,536`` (larger ones when the
model's ``classes_`` or the declared ``classes=`` name them), strings listed in the
model's ``classes_`` or the declared ``classes=``, and integer-valued floats: with
``task="classification"``, and with ``task="auto"`` a call's float output whose every value
is one of the model's whole-number ``classes_`` (a classifier fit on a float target), or NaN
(a row without a class, counted as ``reason="nan"``). Anything
else in a class position is counted as ``invalid_predictions_total{reason="unsupported_type"}``
and never becomes a label. The labels of several label outputs (a dict's, a DataFrame's, a
tuple's or a matrix's columns) are written ``<output>:<label>``, each output's apart.

>>> from inferwatch.core.prediction_classes import class_labels
>>> p = normalize([[0.2, 0.8], [0.9, 0.1]], probabilities=True)
>>> p.rows, class_labels(p.classes), p.confidence.round(2).tolist()
(2, ['1', '0'], [0.8, 0.9])
"""

from __future__ import annotations

import decimal
import fractions
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from inferwatch import faults
from inferwatch.core.class_probabilities import (
    add_label_probabilities,
    add_probabilities,
    label_outputs,
    looks_like_probabilities,
    two_classes,
)
from inferwatch.core.nested_outputs import NestedOutputs, has_nested, split_nested
from inferwatch.core.prediction_classes import (
    NO_CLASSES,
    admit_classes,
    as_text,
    bytes_text,
    class_members,
    float_classes,
    prefixed,
    whole_number_classes,
    with_categories,
)
from inferwatch.core.records import (
    entity_rows,
    generated_texts,
    label_score_matrix,
    probability_map_rows,
    records_as_columns,
)
from inferwatch.core.result_arrays import (
    distinct_names,
    extend,
    frame_columns,
    is_dataframe,
    is_output_list,
    is_tensor,
    missing_as_nan,
    model_output_fields,
    number_columns,
    object_floats,
    sequence_rows,
    structured_fields,
    to_array,
    without_missing,
)
from inferwatch.frame_names import unnamed_frame_matrix

if TYPE_CHECKING:
    from inferwatch.core.label_caps import LabelCap

DEFAULT_OUTPUT = "value"
# An integer matrix wider than this (numpy's) is one sequence per row, token ids as
# ``generate`` returns them, not as many class outputs: a multi-output classifier of more
# outputs would overflow the class cap with its ``j:<class>`` labels anyway.
MAX_LABEL_COLUMNS = 20
# The output a sequence's length per row is recorded as (token ids are no values).
SEQUENCE_LENGTH_OUTPUT = "length"
# Wrappers looked through for the model they wrap (a Pipeline in a search in a Pipeline).
_MAX_WRAPPERS = 4


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
    # The name of the one label output of a dict, DataFrame, structured array or list of
    # records (``{"label": ..., "score": ...}``), whose labels `classes` holds unprefixed:
    # a reference that profiled the same dict compares its labels with that output.
    label_output: str | None = None
    # id of an array of `values` or of `confidence` -> (that array, its sketch's values), made
    # while reading a probability matrix in one pass (unit_sketch.sketched_columns): the
    # drain's sketch of an output gathered as that one array need not transform it again.
    sketched: dict[int, tuple[np.ndarray, np.ndarray]] | None = None

    def count_invalid(self, reason: str, n: int) -> None:
        if n:
            self.invalid[reason] = self.invalid.get(reason, 0) + int(n)

    def add_classes(self, labels: np.ndarray) -> None:
        if self.classes is None:
            self.classes = labels
        elif self.classes.dtype.kind == labels.dtype.kind == "i":
            self.classes = np.concatenate([self.classes, labels])
        else:
            self.classes = np.concatenate([as_text(self.classes), as_text(labels)])


def normalize(
    result: object,
    *,
    probabilities: bool | None = False,
    class_names: Sequence[object] | None = None,
    task: str = "auto",
    known_classes: Collection[str] = NO_CLASSES,
    output_cap: LabelCap | None = None,
) -> Prediction:
    """Reduce a model's return value to a :class:`Prediction`.

    `probabilities` says the value came from ``predict_proba`` (2-D rows are class
    probabilities); None means "tell by its shape" (a matrix handed to ``r.prediction()``).
    `class_names` is the model's ``classes_``; `task` is ``auto``, ``classification`` or
    ``regression``; `known_classes` are the strings that may become class labels.
    `output_cap`, the cap the outputs will be folded by: the value columns of a matrix
    past it are then read in one pass as the one output FOLDED_COLUMNS (see
    :func:`_add_folded_columns`).

    >>> normalize(0.7).values["value"].tolist()
    [0.7]
    >>> normalize({"price": [1.0, 2.0]}).values["price"].tolist()
    [1.0, 2.0]
    >>> from inferwatch.core.prediction_classes import class_labels
    >>> class_labels(normalize(np.array([1, 0, 1]), task="auto").classes)
    ['1', '0', '1']
    >>> normalize("alice@example.com").invalid
    {'unsupported_type': 1}
    """
    prediction = Prediction()
    if result is None:
        # A handler with nothing to give back: a missing prediction of no kind. Read as a
        # label, it made model_info's task "classification" for good, whatever the model
        # returned after it.
        prediction.rows = 1
        prediction.count_invalid("nan", 1)
        return prediction
    fields = model_output_fields(result)
    if fields is not None:
        result = fields["sequences"] if list(fields) == ["sequences"] else fields
    unnamed = unnamed_frame_matrix(result)
    if unnamed is not None:
        # pd.DataFrame(proba) names nothing: read as the array it holds, its probability
        # columns named by the classes, not called 0 and 1 (or column_0) as classes.
        result = unnamed
    scored = label_score_matrix(result, class_names)
    if scored is not None:
        matrix, labels = scored
        if looks_like_probabilities(matrix, task, labels, by_shape=True):
            add_probabilities(prediction, matrix, labels)
        elif _unit_scores(matrix):
            # Independent scores in [0, 1] (a multi-label model's sigmoid): each label's
            # probability, one output per label, kept to a probability's accuracy.
            add_label_probabilities(prediction, matrix, len(labels), names=labels)
        else:  # scores of another scale (logits): one output of values per label
            for j, label in enumerate(labels):
                _add_named(prediction, label, matrix[:, j], task, known_classes)
        return prediction
    entities = entity_rows(result)
    if entities is not None:
        _add_entities(prediction, *entities, known_classes)
        return prediction
    texts = generated_texts(result)
    if texts is not None:
        # A generation pipeline's answer is text: the call path records its length and
        # tokens (core/follower.py), as it does a str; handed over here, it is its rows.
        prediction.rows = len(result)  # type: ignore[arg-type]
        return prediction
    records = records_as_columns(result, nested=True)
    if records is not None:
        result = records
    fields = structured_fields(result)
    if fields is not None:
        result = fields
    if probabilities and is_dataframe(result):
        # predict_proba as a DataFrame with a column per class (AutoGluon, H2O): the columns
        # name the classes.
        add_probabilities(prediction, to_array(result),
                          distinct_names([name for name, _ in frame_columns(result)]))
        return prediction
    matrix = number_columns(result) if probabilities and isinstance(result, Mapping) else None
    if matrix is not None:
        # The same as a dict of a column per class (``dict(zip(classes_, p))`` per row, or
        # its columns): read as that DataFrame is.
        add_probabilities(prediction, matrix, distinct_names(list(result)))  # type: ignore[arg-type]
        return prediction
    if isinstance(result, Mapping) or is_dataframe(result):
        columns = list(result.items()) if isinstance(result, Mapping) else \
            frame_columns(result)
        nested = split_nested(columns, task) if isinstance(result, Mapping) and \
            has_nested(columns) else None
        if nested is not None:
            columns = nested.columns
            for _, classes in nested.maps:  # the maps name the model's classes
                known_classes = frozenset(known_classes) | {str(c) for c in classes}
        names = distinct_names([name for name, _ in columns])
        labelled = _add_columns(prediction, [(name, column) for name, (_, column)
                                             in zip(names, columns)], task, known_classes)
        if len(labelled) == 1:
            prediction.label_output = labelled[0]
        if nested is not None:
            _add_nested(prediction, nested, bool(labelled))
        return prediction
    if _outputs_of_no_rows(result):
        return prediction
    if not probabilities and scalar_output_row(result):
        # ``return label, score``: one row of outputs ``0``, ``1``, ... as a dict of them is.
        _add_columns(prediction, [(str(j), part) for j, part in enumerate(result)],  # type: ignore[arg-type]
                     task, known_classes)
        return prediction
    if not probabilities and _add_classifier_outputs(prediction, result, task, class_names,
                                                     known_classes):
        return prediction
    if is_output_list(result):
        if probabilities:
            # One probability matrix per output (scikit-learn's MultiOutputClassifier).
            names = _per_output(class_names, len(result))
            for j, part in enumerate(result):
                add_probabilities(prediction, to_array(part), names[j], prefix=f"{j}:")
        else:
            _add_columns(prediction, [(str(j), part) for j, part in enumerate(result)],
                         task, known_classes)
        return prediction
    tensor = is_tensor(result)
    known_classes = with_categories(result, known_classes)
    column, missing = without_missing(result)
    array = sequence_rows(to_array(column))
    prediction.count_invalid("nan", missing)
    if tensor and array.ndim == 1 and array.dtype.kind not in "iub" and not (
            probabilities and two_classes(class_names)):
        # A 1-D float tensor is one unbatched sample, not n rows; integer or bool labels
        # are a batch's classes (``logits.argmax(dim=1)``, ``scores > 0.5``). From a binary
        # classifier's predict_proba it is read as a 1-D array is (a column of positive-class
        # probabilities, ``torch.sigmoid(logits).squeeze()``, or one row [p0, p1]).
        array = array.reshape(1, -1)
    if probabilities or looks_like_probabilities(array, task, class_names,
                                                 by_shape=probabilities is None):
        labels = label_outputs(class_names)
        if labels is None or not add_label_probabilities(prediction, array, labels):
            add_probabilities(prediction, array, class_names)
    elif _token_sequences(array, tensor, task):
        # Token ids (``generate``'s (n, seq) tensor): each row's length, never its ids as
        # classes per position.
        prediction.rows = array.shape[0]
        extend(prediction.values, SEQUENCE_LENGTH_OUTPUT,
               np.full(array.shape[0], float(array.shape[1])))
    elif array.ndim == 2 and array.shape[1] > 1:
        # Several outputs per row: one output (or class column) per column.
        prediction.rows = array.shape[0]
        per_output = _per_output(class_names, array.shape[1])
        columns: Sequence[int] = range(array.shape[1])
        folding = output_cap is not None and array.shape[1] > output_cap.limit and \
            per_output[0] is None and _value_kind(array, task)
        if folding:
            columns = output_cap.fold_columns(array.shape[1])  # type: ignore[union-attr]
        for j in columns:
            if not _whole_output_labels(prediction, array[:, j], task, per_output[j], f"{j}:"):
                _add_output(prediction, str(j), array[:, j], task, known_classes,
                            count_rows=False, prefix=f"{j}:")
        if folding:
            _add_folded_columns(prediction, array, columns)
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
        labels = _multilabel_count(model, classes)
        # A multi-label classifier's classes_ number its labels, which are no exclusive
        # classes: each is a binary output, named as scikit-learn's multi-output classifiers
        # name theirs, so its predict_proba is read one label at a time.
        return classes if labels is None else [np.array([0, 1])] * labels
    try:
        config = getattr(getattr(model, "model", model), "config", None)
        labels = getattr(config, "id2label", None)
        if isinstance(labels, Mapping) and labels and all(
                isinstance(key, int) for key in labels):
            return [str(labels[key]) for key in sorted(labels)]
    except Exception as exc:  # a property of the model's own that raised
        faults.record("instrument", exc)
    return None


def _unit_scores(matrix: np.ndarray) -> bool:
    """Whether every finite score of `matrix` lies in [0, 1] (and one does): probabilities.

    >>> _unit_scores(np.array([[0.9, 0.7]])), _unit_scores(np.array([[2.3, -1.1]]))
    (True, False)
    """
    if matrix.dtype.kind != "f":
        return False
    finite = matrix[np.isfinite(matrix)]
    return bool(finite.size) and bool(finite.min() >= 0.0) and bool(finite.max() <= 1.0)


def _multilabel_count(model: Any, classes: Any) -> int | None:
    """How many labels a scikit-learn classifier fit on a label-indicator matrix has (one
    per ``classes_``), also as the last step of a Pipeline or the best of a search; None for
    any other model. ``OneVsRestClassifier`` says so in ``multilabel_``, ``MLPClassifier``
    in its label binarizer's ``y_type_``.

    >>> from types import SimpleNamespace as Fitted
    >>> tagger = Fitted(multilabel_=True)
    >>> _multilabel_count(Fitted(_final_estimator=tagger), [0, 1, 2])
    3
    >>> _multilabel_count(Fitted(multilabel_=False), [0, 1, 2]) is None
    True
    """
    try:
        estimator = model
        for _ in range(_MAX_WRAPPERS):
            inner = getattr(estimator, "_final_estimator", None)
            if inner is None:
                inner = getattr(estimator, "best_estimator_", None)
            if inner is None or inner is estimator:
                break
            estimator = inner
        multilabel = getattr(estimator, "multilabel_", None)
        if multilabel is None:
            binarizer = getattr(estimator, "_label_binarizer", None)
            multilabel = getattr(binarizer, "y_type_", None) == "multilabel-indicator"
        if not isinstance(multilabel, (bool, np.bool_)) or not multilabel or \
                np.ndim(classes) != 1:
            return None
        return len(classes) or None
    except Exception as exc:  # a property of the model's own that raised
        faults.record("instrument", exc)
        return None


def _per_output(class_names: Sequence[object] | None, outputs: int) -> list:
    if class_names is not None and len(class_names) == outputs and all(
            np.ndim(names) == 1 for names in class_names):
        return list(class_names)
    return [None] * outputs


def _add_columns(prediction: Prediction, columns: list[tuple[str, object]], task: str,
                 known_classes: Collection[str]) -> list[str]:
    """Named outputs (a dict's, a DataFrame's, a tuple's), each by :func:`_add_named`. With
    more than one output of labels (a multi-output classifier's), each label is written
    ``<name>:<label>``, as a 2-D label array's are ``<j>:<label>``: under one ``class``
    series the outputs' labels would mix, and ``0`` of one output count as ``0`` of
    another. A single label output (``{"label", "score"}``) keeps its labels as they are.
    Returns the names of the outputs that held labels (admitted as classes or not)."""
    label_names: list[str] = []
    labelled: list[tuple[str, np.ndarray]] = []
    for name, column in columns:
        # Each output's labels apart, so that they can still be prefixed once all are seen.
        held, prediction.classes = prediction.classes, None
        before = prediction.class_outputs
        _add_named(prediction, name, column, task, known_classes)
        if prediction.class_outputs > before:
            label_names.append(name)
        if prediction.classes is not None:
            labelled.append((name, prediction.classes))
        prediction.classes = held
    several = len(label_names) > 1
    for name, labels in labelled:
        prediction.add_classes(prefixed(labels, f"{name}:") if several else labels)
    return label_names


def scalar_output_row(result: object) -> bool:
    """Whether `result` is a tuple of scalars of more than one kind (text, integer or bool
    labels, numbers): ``return label, score`` for one input, a row of outputs. A tuple of
    one kind (``(0.2, 0.8)``, ``("cat", "dog")``) is read as the list it equals.

    >>> scalar_output_row(("spam", 0.93)), scalar_output_row((1, 0.5))
    (True, True)
    >>> scalar_output_row((0.2, 0.8)), scalar_output_row(["spam", 0.93])
    (False, False)
    """
    if result.__class__ is not tuple or len(result) < 2:  # type: ignore[arg-type]
        return False
    kinds = set()
    for part in result:  # type: ignore[union-attr]
        kind = SCALAR_OUTPUT_KINDS.get(part.__class__)
        if kind is None:
            return False
        kinds.add(kind)
    return len(kinds) > 1


# The scalars a tuple of one row's outputs holds, by the kind of output each makes.
SCALAR_OUTPUT_KINDS: dict[type, str] = {
    **dict.fromkeys((str, bytes, np.str_, np.bytes_), "text"),
    **dict.fromkeys((bool, np.bool_, int, np.int8, np.int16, np.int32, np.int64, np.uint8,
                     np.uint16, np.uint32, np.uint64), "label"),
    **dict.fromkeys((float, np.float16, np.float32, np.float64, decimal.Decimal,
                     fractions.Fraction), "number"),
}


def _add_named(prediction: Prediction, name: str, column: object, task: str,
               known_classes: Collection[str]) -> None:
    """One named output of a dict, DataFrame or tuple: its rows are its first dimension."""
    known_classes = with_categories(column, known_classes)
    column, missing = without_missing(column)
    array = sequence_rows(to_array(column))
    prediction.count_invalid("nan", missing)
    rows = (array.shape[0] if array.ndim else 1) + missing
    prediction.rows = max(prediction.rows, rows)
    _add_output(prediction, name, array, task, known_classes, count_rows=False)


def _add_output(prediction: Prediction, name: str, array: np.ndarray, task: str,
                known_classes: Collection[str], count_rows: bool = True,
                prefix: str = "") -> None:
    flat = array.reshape(-1) if array.ndim != 1 else array
    if count_rows:
        # The first dimension: a (n, seq, k) output is n rows, not n * seq * k.
        prediction.rows = max(prediction.rows, array.shape[0] if array.ndim else 1)
    kind = flat.dtype.kind
    if kind == "O":
        numbers = object_floats(flat)
        if numbers is not None:
            flat, kind = numbers, "f"
    if task == "classification" and kind == "f" and name == DEFAULT_OUTPUT and array.ndim <= 2:
        # The declared task wins: a classifier's predict may return 0.0 / 1.0. An output of
        # three or more dimensions (n, seq, k) is values whatever the task (docs/shapes.md):
        # a token classifier's logits are not labels.
        labels = float_classes(prediction, flat, known_classes)
        if prefix:
            labels = prefixed(labels, prefix)
        prediction.class_like = True
        prediction.class_outputs += 1
    elif kind == "f" or (kind in "iu" and task == "regression"):
        values = flat.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        if not finite.all():
            prediction.count_invalid("nan", int(np.isnan(values).sum()))
            prediction.count_invalid("inf", int(np.isinf(values).sum()))
            values = values[finite]
        extend(prediction.values, name, values)
        return
    else:
        labels = admit_classes(prediction, flat, known_classes, prefix)
        prediction.class_like = True
        prediction.class_outputs += 1
    if labels is not None and labels.size:
        prediction.add_classes(labels)


def _value_kind(array: np.ndarray, task: str) -> bool:
    """Whether every column of `array` is read as values by :func:`_add_output` (a column
    of another kind may be class labels, or numbers in objects).

    >>> _value_kind(np.zeros((1, 2)), "auto"), _value_kind(np.zeros((1, 2), int), "auto")
    (True, False)
    """
    kind = array.dtype.kind
    return kind == "f" or (kind in "iu" and task == "regression")


def _add_folded_columns(prediction: Prediction, array: np.ndarray,
                        kept: Sequence[int]) -> None:
    """The value columns of `array` other than `kept`, which all fold into ``__other__``,
    as the one output FOLDED_COLUMNS: their values column after column, as the drain
    would have joined them from an output per column, so that ``__other__`` records the
    same count, sum, quantiles and buckets. One pass over the matrix, however wide (an
    LM's logits over its vocabulary), instead of an output, a fold and a chunk per column.

    >>> from inferwatch.core.label_caps import FOLDED_COLUMNS
    >>> prediction = Prediction()
    >>> _add_folded_columns(prediction, np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]]), [0])
    >>> prediction.values[FOLDED_COLUMNS].tolist(), prediction.invalid
    ([2.0, 3.0, 6.0], {'nan': 1})
    """
    from inferwatch.core.label_caps import FOLDED_COLUMNS

    first = len(kept)
    while first and kept[first - 1] != first - 1:
        first -= 1  # the kept columns past the first ones: admitted outputs of their own
    block = array[:, first:]
    later = np.asarray(kept[first:], dtype=np.intp) - first
    if later.size:
        block = np.delete(block, later, axis=1)
    if not block.shape[1]:
        return  # every column kept (a cap lowered below the outputs it admitted)
    # Column-major, as float64: one copy, in the order the per-column chunks were joined.
    values = block.astype(np.float64, order="F", copy=False).ravel(order="F")
    finite = np.isfinite(values)
    if not finite.all():
        prediction.count_invalid("nan", int(np.isnan(values).sum()))
        prediction.count_invalid("inf", int(np.isinf(values).sum()))
        values = values[finite]
    extend(prediction.values, FOLDED_COLUMNS, values)


def _whole_output_labels(prediction: Prediction, column: np.ndarray, task: str,
                         classes: Sequence[object] | None, prefix: str) -> bool:
    """Whether one float column of a multi-output classifier's ``predict`` (scikit-learn's
    ``ClassifierChain`` returns 0.0 / 1.0 per label), whose own classes are whole numbers,
    was recorded as that output's class labels (``"0:1"``, as ``MultiOutputClassifier``'s
    integer labels are). Only when every value is one of its classes (task not regression):
    a column of scores stays values.

    >>> prediction = Prediction()
    >>> _whole_output_labels(prediction, np.array([1.0, 0.0]), "auto", [0, 1], "0:")
    True
    >>> _whole_output_labels(prediction, np.array([0.5]), "auto", [0, 1], "1:")
    False
    """
    if task == "regression" or column.dtype.kind != "f":
        return False
    whole = whole_number_classes(classes)
    if whole is None:
        return False
    values = column.astype(np.float64, copy=False)
    if not class_members(values, whole).all():
        return False
    prediction.class_like = True
    prediction.class_outputs += 1
    if values.size:
        prediction.add_classes(prefixed(values.astype(np.int64), prefix))
    return True


def _whole_class_labels(prediction: Prediction, array: np.ndarray, task: str,
                        class_names: Sequence[object] | None) -> bool:
    """Whether `array`, a float ``predict`` output of a model whose ``classes_`` are whole
    numbers, was recorded as its class labels (task auto): scikit-learn fit on a float
    target predicts 0.0 / 1.0, which as values would show one model as a regressor and
    lose its class mix. Only when every value is among the classes or NaN (a row the
    model had no class for, counted as ``nan``): anything else (a wrapper whose predict
    returns scores) stays values, as it was.

    >>> prediction = Prediction()
    >>> _whole_class_labels(prediction, np.array([1.0, np.nan, 0.0]), "auto", [0.0, 1.0])
    True
    >>> prediction.rows, prediction.classes.tolist(), prediction.invalid
    (3, [1, 0], {'nan': 1})
    """
    if task != "auto" or array.dtype.kind != "f" or array.ndim > 2 or class_names is None:
        return False
    classes = whole_number_classes(class_names)
    if classes is None:
        return False
    flat = array.reshape(-1).astype(np.float64, copy=False)
    member = class_members(flat, classes)
    if not member.all():
        missing = np.isnan(flat)
        if not (member | missing).all():
            return False
        prediction.count_invalid("nan", int(missing.sum()))
        flat = flat[member]  # NaN cast to int64 would become a class
    prediction.rows = max(prediction.rows, array.shape[0] if array.ndim else 1)
    prediction.class_like = True
    prediction.class_outputs += 1
    if flat.size:
        prediction.add_classes(flat.astype(np.int64))
    return True


def _token_sequences(array: np.ndarray, tensor: bool, task: str) -> bool:
    """Whether `array` holds one sequence of token ids per row: a 2-D integer tensor
    (``generate``'s output, a token classifier's ``argmax(-1)``), or a numpy integer matrix
    wider than :data:`MAX_LABEL_COLUMNS`.

    >>> _token_sequences(np.zeros((2, 24), dtype=np.int64), False, "auto")
    True
    >>> _token_sequences(np.zeros((2, 3), dtype=np.int64), False, "auto")
    False
    """
    return array.ndim == 2 and array.dtype.kind in "iu" and task != "regression" and (
        tensor or array.shape[1] > MAX_LABEL_COLUMNS)


def _add_entities(prediction: Prediction, labels: list[str], scores: list[object],
                  per_text: list[int], known_classes: Collection[str]) -> None:
    """A token-classification pipeline's entities: one row per text, each entity's label
    (``entity``, or ``entity_group`` when aggregated) a class, each entity's score (the
    probability of its label) a confidence. Words, offsets and token indices are the
    user's text and positions in it: never labels."""
    prediction.rows = len(per_text)
    prediction.class_like = True
    # A text holds any number of entities: as many label columns as the most a text has,
    # so that a row's labels are never told from the column alone.
    prediction.class_outputs += max(per_text)
    admitted = admit_classes(prediction, np.array(labels, dtype=object), known_classes)
    if admitted is not None and admitted.size:
        prediction.add_classes(admitted)
    values = missing_as_nan(np.array(scores, dtype=object))
    if values is None:  # scores that are no numbers
        prediction.count_invalid("unsupported_type", len(scores))
        return
    finite = np.isfinite(values)
    prediction.count_invalid("nan", int(np.isnan(values).sum()))
    prediction.count_invalid("inf", int(np.isinf(values).sum()))
    values = values[finite]
    in_unit = (values >= 0.0) & (values <= 1.0)
    prediction.count_invalid("probability_out_of_range", int(in_unit.size - in_unit.sum()))
    prediction.confidence = values[in_unit]


def _probability_part(part: object, task: str) -> tuple[np.ndarray, list | None] | None:
    """The class probabilities among a classifier's outputs: ONNX's ``ZipMap`` (a list of
    ``{class: probability}`` per row, with its classes), or a 2-D float matrix whose rows
    are probabilities (classes unnamed); None for anything else."""
    mapped = probability_map_rows(part)
    if mapped is not None:
        return mapped
    if getattr(part, "ndim", 0) != 2:
        return None
    matrix = to_array(part)
    if matrix.dtype.kind != "f" or not looks_like_probabilities(matrix, task, None,
                                                                by_shape=True):
        return None
    return matrix, None


def _add_classifier_outputs(prediction: Prediction, result: object, task: str,
                            class_names: Sequence[object] | None,
                            known_classes: Collection[str]) -> bool:
    """Whether `result` was a classifier's list of outputs, recorded: ``[labels,
    probabilities]`` (an ONNX classifier's ``session.run(None, feed)``: its labels as
    classes, its probabilities, a ``ZipMap`` or a matrix, as class probabilities with the
    confidence), or ``[ZipMap]`` alone (``run(["output_probability"], feed)``: its
    classes are then each row's most probable)."""
    if task == "regression" or not isinstance(result, (list, tuple)) or \
            len(result) not in (1, 2):
        return False
    found = _probability_part(result[-1], task)
    if found is None:
        return False
    matrix, classes = found
    if len(result) == 1:
        if classes is None:
            return False  # a lone matrix in a list: one output, as any other list's
        add_probabilities(prediction, matrix, classes)
        return True
    labels = result[0]
    if getattr(labels, "ndim", 0) != 1 or len(labels) != matrix.shape[0]:  # type: ignore[arg-type]
        return False
    if to_array(labels).dtype.kind not in "iubUSO":
        return False
    if classes is not None:
        # The ZipMap names the model's classes: its text labels are classes by that.
        known_classes = frozenset(known_classes) | {str(c) for c in classes}
    elif class_names is not None and len(class_names) == matrix.shape[1]:
        classes = list(class_names)
    else:
        known_classes = _with_matrix_label_classes(labels, matrix.shape[1], known_classes)
    _add_named(prediction, "label", labels, task, known_classes)
    scored = Prediction()  # the probabilities' classes are the labels': only theirs count
    add_probabilities(scored, matrix, classes)
    prediction.rows = max(prediction.rows, scored.rows)
    for name, values in scored.values.items():
        extend(prediction.values, name, values)
    prediction.probability_outputs |= scored.probability_outputs
    prediction.confidence = scored.confidence
    for reason, count in scored.invalid.items():
        prediction.count_invalid(reason, count)
    return True


def _add_nested(prediction: Prediction, nested: NestedOutputs, labelled: bool) -> None:
    """A dict's maps of class probabilities (:func:`split_nested`), each as ``predict_proba``
    rows named by its classes: the confidence and one output per class; the predicted
    classes are the dict's label output's where it has one (as an ONNX classifier's labels
    beside its ``ZipMap``), else each row's most probable. Each nested dict of neither
    kind counts ``unsupported_type``."""
    if nested.unreadable:
        prediction.rows = max(prediction.rows, 1)
        prediction.count_invalid("unsupported_type", nested.unreadable)
    for matrix, classes in nested.maps:
        if not labelled:
            add_probabilities(prediction, matrix, classes)
            continue
        scored = Prediction()
        add_probabilities(scored, matrix, classes)
        prediction.rows = max(prediction.rows, scored.rows)
        for name, values in scored.values.items():
            extend(prediction.values, name, values)
        prediction.probability_outputs |= scored.probability_outputs
        if scored.confidence is not None:
            prediction.confidence = scored.confidence if prediction.confidence is None else \
                np.concatenate([prediction.confidence, scored.confidence])
        for reason, count in scored.invalid.items():
            prediction.count_invalid(reason, count)


def _with_matrix_label_classes(labels: object, columns: int,
                               known_classes: Collection[str]) -> Collection[str]:
    """`known_classes` and the text or integer labels beside a probability matrix of
    `columns` classes that names none (an ONNX classifier exported without its ZipMap, no
    ``classes_``): the labels are then the model's classes, as the ZipMap's keys would have
    named them (integer ids past 65,536 too: merchant ids, zip codes). Only when they are
    no more distinct than the matrix has columns: more cannot all be classes of a k-class
    model, so they are judged as any labels are, and no call adds more than k.

    >>> sorted(_with_matrix_label_classes(np.array(["cat", "dog", "cat"]), 2, NO_CLASSES))
    ['cat', 'dog']
    >>> _with_matrix_label_classes(np.array(["a", "b", "c"]), 2, NO_CLASSES)
    frozenset()
    >>> sorted(_with_matrix_label_classes(np.array([75001, 99999, 75001]), 2, NO_CLASSES))
    ['75001', '99999']
    """
    array = to_array(labels)
    kind = array.dtype.kind
    try:
        if kind == "U":
            distinct = set(np.unique(array).tolist())
        elif kind == "S":
            distinct = set(map(bytes_text, np.unique(array).tolist()))
        elif kind == "O":
            distinct = {str.__str__(value) for value in array.tolist()
                        if isinstance(value, str)}
        elif kind in "iu":
            # Compared as their text, as a ``classes_`` of large integers is; bools and
            # small integers are classes by their value already.
            distinct = set(map(str, np.unique(array).tolist()))
        else:
            return known_classes  # bool labels are classes by their value
    except Exception:  # a str subclass whose hash or comparison raised
        return known_classes
    if not distinct or len(distinct) > columns:
        return known_classes
    return frozenset(known_classes) | distinct


def _outputs_of_no_rows(result: object) -> bool:
    """Whether `result` is a list of outputs that all hold no row, some of them empty lists:
    an ONNX classifier asked about 0 rows answers ``[labels (0,), []]`` (its ZipMap an empty
    list). Read as a matrix, its empty lists would make it a batch of as many rows of
    nothing. Empty lists alone (``[[], []]``, a pipeline's answer for two texts with no
    entities) stay a row each.

    >>> _outputs_of_no_rows([np.empty(0, dtype=np.int64), []])
    True
    >>> _outputs_of_no_rows([[], []]), _outputs_of_no_rows([np.empty(0), np.empty(0)])
    (False, False)
    """
    if not isinstance(result, (list, tuple)) or len(result) < 2:
        return False
    arrays = lists = 0
    for part in result:
        if isinstance(part, (list, tuple)):
            if part:
                return False
            lists += 1
        else:
            shape = getattr(part, "shape", ()) if getattr(part, "ndim", 0) >= 1 else ()
            if not shape or shape[0] != 0:
                return False
            arrays += 1
    return bool(arrays and lists)
