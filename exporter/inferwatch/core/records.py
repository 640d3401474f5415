"""Outputs made of rows of dicts: what Hugging Face pipelines and ``to_dict("records")``
return. ``predictions.normalize`` reads them as the tables they are.

>>> records_as_columns([{"label": "spam", "score": 0.9}])
{'label': ['spam'], 'score': [0.9]}
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

import numpy as np

_LABEL_SCORE = frozenset({"label", "score"})
_SCALARS = (str, int, float, np.generic, type(None))  # told without numpy's ndim
_DICT_ONLY = {dict}


def label_score_matrix(result: object, class_names: Sequence[object] | None
                       ) -> tuple[np.ndarray, list[str]] | None:
    """Every label's score per row, as a Hugging Face pipeline answers with ``top_k=None``
    (a list per input of ``{"label", "score"}`` dicts, best first), as a matrix with a
    column per label (in the model's class order when it names the same labels); None for
    anything else.

    >>> matrix, labels = label_score_matrix([[{"label": "b", "score": 0.7},
    ...                                       {"label": "a", "score": 0.3}]], None)
    >>> matrix.tolist(), labels
    ([[0.3, 0.7]], ['a', 'b'])
    """
    if _one_row_of_every_label(result, class_names):
        result = [result]
    if not isinstance(result, (list, tuple)) or not result or \
            not isinstance(result[0], (list, tuple)):
        return None
    rows = []
    for row in result:
        if not isinstance(row, (list, tuple)) or not row:
            return None
        scores = {}
        for entry in row:
            if not isinstance(entry, Mapping) or entry.keys() != _LABEL_SCORE:
                return None
            scores[str(entry["label"])] = entry["score"]
        if len(scores) != len(row):
            return None  # a label twice: not one score per label
        rows.append(scores)
    labels = rows[0].keys()
    if not all(scores.keys() == labels for scores in rows):
        return None
    named = [str(name) for name in class_names] if class_names is not None and \
        np.ndim(class_names) == 1 else []
    # A class named twice would give its label two columns: one column per label, sorted.
    order = named if len(named) == len(labels) and set(named) == set(labels) else \
        sorted(labels)
    try:
        matrix = np.array([[scores[label] for label in order] for scores in rows],
                          dtype=np.float64)
    except (TypeError, ValueError):
        return None  # scores that are not numbers: counted by the general path
    return matrix, order


# Scores of one input's labels sum to 1 within this (a softmax), as a probability row does.
_ONE_ROW_SUM_TOLERANCE = 1e-3


def _one_row_of_every_label(result: object, class_names: Sequence[object] | None) -> bool:
    """Whether `result` is a pipeline's answer for ONE input with ``top_k=None``: a flat
    list of ``{"label", "score"}`` dicts, one per class of the model, scores summing to 1.
    Read as rows it would count every class as predicted once per call. A batch of top-1
    answers that happens to name each class once has scores of at least 1/k each, so it
    sums to 1 only when every score is exactly 1/k.

    >>> _one_row_of_every_label([{"label": "a", "score": 0.3},
    ...                          {"label": "b", "score": 0.7}], ["a", "b"])
    True
    """
    if not isinstance(result, (list, tuple)) or len(result) < 2 or class_names is None \
            or not isinstance(result[0], Mapping):
        return False
    try:
        if np.ndim(class_names) != 1 or len(class_names) != len(result):
            return False
    except ValueError:
        # One array of classes per output (a MultiOutputClassifier whose outputs have
        # different numbers of classes): numpy refuses the ragged list, and every call of
        # its predict_proba failed whole.
        return False
    labels, total = set(), 0.0
    for entry in result:
        if not isinstance(entry, Mapping) or entry.keys() != _LABEL_SCORE:
            return False
        score = entry["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float, np.number)):
            return False
        labels.add(str(entry["label"]))
        total += float(score)
    return len(labels) == len(result) == len({str(c) for c in class_names}) and \
        labels == {str(c) for c in class_names} and \
        abs(total - 1.0) <= _ONE_ROW_SUM_TOLERANCE and any(
            float(entry["score"]) != 1.0 / len(result) for entry in result)


def records_as_columns(result: object, nested: bool = False) -> dict[object, list] | None:
    """A list of dicts with the same keys and scalar values, one per row (a Hugging Face
    pipeline's ``[{"label": ..., "score": ...}]``, pandas' ``to_dict("records")``), as its
    columns; None for anything else. With `nested`, a column may hold a dict in every row
    (a map of class probabilities beside each row's label), as the reader of predictions
    takes it (``nested_outputs``); the other readers want scalars only.

    >>> records_as_columns([{"label": "POSITIVE", "score": 0.9},
    ...                     {"label": "NEGATIVE", "score": 0.6}])
    {'label': ['POSITIVE', 'NEGATIVE'], 'score': [0.9, 0.6]}
    >>> rows = [{"label": "a", "p": {"a": 0.9, "b": 0.1}}]
    >>> records_as_columns(rows), records_as_columns(rows, nested=True)
    (None, {'label': ['a'], 'p': [{'a': 0.9, 'b': 0.1}]})
    """
    if not isinstance(result, (list, tuple)) or not result or \
            not isinstance(result[0], Mapping):
        return None
    keys = result[0].keys()
    if not keys or not all(isinstance(row, Mapping) and row.keys() == keys for row in result):
        return None
    columns = {key: [row[key] for row in result] for key in keys}
    for column in columns.values():
        if nested and isinstance(column[0], Mapping):
            if not all(isinstance(value, Mapping) for value in column):
                return None
        elif not all(isinstance(value, _SCALARS) or _is_scalar(value) for value in column):
            return None  # arrays per row (a detector's boxes per image): no table of scalars
    return columns


def _is_scalar(value: object) -> bool:
    if isinstance(value, (list, tuple, Mapping)):
        return False
    try:
        return np.ndim(value) == 0
    # A ragged sequence of its own kind, or an object whose array conversion raises: not
    # a table of scalars, read by the general path as bad output rather than a fault.
    except Exception:
        return False


def label_column(result: object) -> list | None:
    """The ``"label"`` of each row of a classifier's rows of dicts (a Hugging Face pipeline's
    ``[{"label": ..., "score": ...}]``), or of one such dict (a service's own answer); None
    for anything else, told by a look at the first row.

    >>> label_column([{"label": "POSITIVE", "score": 0.9}]), label_column({"label": 1})
    (['POSITIVE'], [1])
    >>> label_column([0.5]), label_column({"price": 1.0})
    (None, None)
    """
    if isinstance(result, Mapping):
        if "label" not in result:
            return None
        result = [result]
    elif not isinstance(result, (list, tuple)) or not result or \
            not isinstance(result[0], Mapping) or "label" not in result[0]:
        return None
    columns = records_as_columns(result)
    return None if columns is None else columns["label"]


def probability_map_rows(result: object) -> tuple[np.ndarray, list] | None:
    """A list of n dicts of the same keys, each mapping a class to its probability (ONNX's
    ``ZipMap`` output, which a skl2onnx classifier gives by default), as an (n, k) float
    matrix and its k classes in the dicts' key order; None for anything else. Keys are
    classes (ints or text) and every value a real number.

    >>> matrix, classes = probability_map_rows([{0: 0.9, 1: 0.1}, {0: 0.2, 1: 0.8}])
    >>> matrix.tolist(), classes
    ([[0.9, 0.1], [0.2, 0.8]], [0, 1])
    >>> probability_map_rows([{"label": "a", "score": 0.9}]) is None
    True
    """
    if not isinstance(result, list) or not result or not isinstance(result[0], Mapping):
        return None
    keys = list(result[0].keys())
    if len(keys) < 2 or not all(isinstance(key, (int, str, np.integer)) and
                                not isinstance(key, (bool, np.bool_)) for key in keys):
        return None
    # Plain dicts (a drain's many calls' maps) are told by their classes and lengths at C
    # speed; any other Mapping is looked at row by row (an abstract isinstance costs more
    # than reading the row).
    if (set(map(type, result)) != _DICT_ONLY or set(map(len, result)) != {len(keys)}) and \
            not all(isinstance(row, Mapping) and len(row) == len(keys) for row in result):
        return None
    try:
        # Each row's values in the first row's key order, a tuple per row made in C.
        matrix = np.array(list(map(operator.itemgetter(*keys), result)), dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        return None  # text among the values, or a row of other keys
    return matrix, [key.item() if isinstance(key, np.generic) else key for key in keys]


_ENTITY_LABELS = ("entity_group", "entity")  # aggregated by the pipeline, or per token


def entity_rows(result: object) -> tuple[list[str], list[object], list[int]] | None:
    """The entities a Hugging Face token-classification (NER) pipeline found: one text's
    list of entity dicts (``{"entity" or "entity_group", "score", "word", ...}``), or a
    batch's list of such lists (one per text, empty where it found none). Returns every
    entity's label and score, and how many entities each text has; None for anything else.

    >>> labels, scores, per_text = entity_rows([[{"entity": "B-PER", "score": 0.9,
    ...                                          "word": "john"}], []])
    >>> labels, scores, per_text
    (['B-PER'], [0.9], [1, 0])
    """
    if not isinstance(result, list) or not result:
        return None
    texts = [result] if isinstance(result[0], Mapping) else result
    labels: list[str] = []
    scores: list[object] = []
    per_text: list[int] = []
    for entities in texts:
        if not isinstance(entities, list):
            return None
        for entity in entities:
            label = _entity_label(entity)
            if label is None:
                return None
            labels.append(label)
            scores.append(entity["score"])
        per_text.append(len(entities))
    return (labels, scores, per_text) if labels else None


def _entity_label(entity: object) -> str | None:
    if not isinstance(entity, Mapping) or "score" not in entity or "word" not in entity:
        return None
    for key in _ENTITY_LABELS:
        label = entity.get(key)
        if isinstance(label, str):
            return label
    return None


# The text a Hugging Face generation pipeline answers with, by pipeline: text-generation
# and text2text-generation, summarization, translation.
_TEXT_KEYS = ("generated_text", "summary_text", "translation_text")


def generated_texts(result: object) -> list[str] | None:
    """The texts of a Hugging Face generation pipeline's answer: a list of
    ``{"generated_text": ...}`` dicts (one input's sequences, or a text2text batch), or a
    batch's list of such lists; a chat's answer (its messages) by its last message's
    ``content``. None for anything else, told by a look at the first dict.

    >>> generated_texts([[{"generated_text": "hi"}], [{"generated_text": "yo"}]])
    ['hi', 'yo']
    >>> generated_texts([{"label": "a", "score": 0.5}]) is None
    True
    """
    if not isinstance(result, list) or not result:
        return None
    first = result[0]
    if isinstance(first, list):
        first = first[0] if first else None
    if not isinstance(first, Mapping) or not any(key in first for key in _TEXT_KEYS):
        return None
    texts: list[str] = []
    for answer in result:
        for row in answer if isinstance(answer, list) else (answer,):
            text = _answer_text(row)
            if text is None:
                return None
            texts.append(text)
    return texts


def _answer_text(row: object) -> str | None:
    if not isinstance(row, Mapping) or len(row) != 1:
        return None
    key, text = next(iter(row.items()))
    if key not in _TEXT_KEYS:
        return None
    if isinstance(text, list) and text and isinstance(text[-1], Mapping):
        text = text[-1].get("content")  # a chat: the messages, the answer last
    return text if isinstance(text, str) else None
