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

>>> from inferwatch.core.prediction_classes import class_labels
>>> p = normalize([[0.2, 0.8], [0.9, 0.1]], probabilities=True)
>>> p.rows, class_labels(p.classes), p.confidence.round(2).tolist()
(2, ['1', '0'], [0.8, 0.9])
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core.class_probabilities import (
    add_label_probabilities,
    add_probabilities,
    label_outputs,
    looks_like_probabilities,
    two_classes,
)
from inferwatch.core.prediction_classes import (
    NO_CLASSES,
    admit_classes,
    as_text,
    class_members,
    float_classes,
    prefixed,
    whole_number_classes,
    with_categories,
)
from inferwatch.core.records import label_score_matrix, records_as_columns
from inferwatch.core.result_arrays import (
    distinct_names,
    extend,
    frame_columns,
    is_dataframe,
    is_output_list,
    is_tensor,
    object_floats,
    structured_fields,
    to_array,
    without_missing,
)

DEFAULT_OUTPUT = "value"
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
    >>> from inferwatch.core.prediction_classes import class_labels
    >>> class_labels(normalize(np.array([1, 0, 1]), task="auto").classes)
    ['1', '0', '1']
    >>> normalize("alice@example.com").invalid
    {'unsupported_type': 1}
    """
    prediction = Prediction()
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
    records = records_as_columns(result)
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
    if isinstance(result, Mapping) or is_dataframe(result):
        columns = list(result.items()) if isinstance(result, Mapping) else \
            frame_columns(result)
        names = distinct_names([name for name, _ in columns])
        for name, (_, column) in zip(names, columns):
            _add_named(prediction, name, column, task, known_classes)
        return prediction
    if is_output_list(result):
        if probabilities:
            # One probability matrix per output (scikit-learn's MultiOutputClassifier).
            names = _per_output(class_names, len(result))
            for j, part in enumerate(result):
                add_probabilities(prediction, to_array(part), names[j], prefix=f"{j}:")
        else:
            for j, part in enumerate(result):
                _add_named(prediction, str(j), part, task, known_classes)
        return prediction
    tensor = is_tensor(result)
    known_classes = with_categories(result, known_classes)
    column, missing = without_missing(result)
    array = to_array(column)
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
    elif array.ndim == 2 and array.shape[1] > 1:
        # Several outputs per row: one output (or class column) per column.
        prediction.rows = array.shape[0]
        per_output = _per_output(class_names, array.shape[1])
        for j in range(array.shape[1]):
            if not _whole_output_labels(prediction, array[:, j], task, per_output[j], f"{j}:"):
                _add_output(prediction, str(j), array[:, j], task, known_classes,
                            count_rows=False, prefix=f"{j}:")
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


def _add_named(prediction: Prediction, name: str, column: object, task: str,
               known_classes: Collection[str]) -> None:
    """One named output of a dict, DataFrame or tuple: its rows are its first dimension."""
    known_classes = with_categories(column, known_classes)
    column, missing = without_missing(column)
    array = to_array(column)
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
        labels = float_classes(prediction, flat)
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
