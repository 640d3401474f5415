"""One drain's predictions, gathered and then recorded in one vectorised pass.

Results of many calls are grouped by kind: plain floats become one array, class labels
one count (integer labels stay integers until only the distinct ones are turned into
text), same-width 1-D arrays and same-width probability matrices one stacked array each;
anything else is normalised call by call. The readers that stack many calls' lists,
frames, dicts, tuples and Series are in :mod:`inferwatch.core.stacked_results`, those that
join classifiers' answers in :mod:`inferwatch.core.classifier_batches`, and the request
path's, which hand each call's rows back for its outcome, in
:mod:`inferwatch.core.outcome_rows`: the bases of :class:`PredictionBatch`, in that order.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from inferwatch import faults
from inferwatch.core.call_rows import split_rows
from inferwatch.core.categorical_calls import CategoricalRows, categorical_rows
from inferwatch.core.class_probabilities import (
    names_each_column,
    probability_rows,
    recording_distributions,
)
from inferwatch.core.classifier_batches import text_cells
from inferwatch.core.column_arrays import is_text_column
from inferwatch.core.library_columns import (
    DTYPE_OF,
    is_arrow_array,
    is_pandas_frame,
    is_pandas_series,
    is_polars_frame,
    is_polars_series,
    plain_arrow_arrays,
    plain_polars_arrays,
    plain_series_arrays,
    row_list_results,
)
from inferwatch.core.object_labels import arrow_text_counts
from inferwatch.core.options import VALUE_BUCKETS
from inferwatch.core.outcome_rows import OutcomeRows, scalar_row_columns
from inferwatch.core.prediction_classes import (
    NO_CLASSES,
    admit_classes,
    class_members,
    count_text_classes,
    count_text_values,
    known_class_set,
    whole_number_classes,
)
from inferwatch.core.prediction_state import add_invalid, count_classes, finite_values, write_batch
from inferwatch.core.predictions import (
    Prediction,
    normalize,
)
from inferwatch.core.result_arrays import (
    SparseResultTooLarge,
    plain_result_arrays,
)
from inferwatch.core.stacked_results import SEQUENCES, SHAPE_OF
from inferwatch.core.state import ModelState, float_array
from inferwatch.core.whole_class_calls import calls_read_alike

if TYPE_CHECKING:
    from inferwatch.core.label_caps import LabelCap
    from inferwatch.core.options import Settings
    from inferwatch.core.output_bytes import StackedOutputs
    from inferwatch.quality.tracker import FeatureTracker

FLOAT_SCALARS = frozenset({float, np.float64, np.float32, np.float16})
_INT_SCALARS = frozenset({int, np.int64, np.int32, np.int16, np.int8, np.uint64, np.uint32,
                          np.uint16, np.uint8})
_CLASS_SCALARS = _INT_SCALARS | {bool, str, bytes, np.bool_, np.str_}
_LIST_ONLY = {list}
_ARRAY_ONLY = {np.ndarray}
_DICT_ONLY = {dict}
_TUPLE_ONLY = {tuple}
_LIST_OR_TUPLE = ({list}, {tuple})
_DICT_OR_LIST = frozenset({dict, list})
_NONE_ONLY = {type(None)}

_UNSET = object()
log = logging.getLogger("inferwatch")


class PredictionBatch(OutcomeRows):
    """Gathers the predictions of one drain, then records them in one vectorised pass."""

    def __init__(self, settings: Settings, caps: Mapping[str, LabelCap],
                 features: FeatureTracker | None,
                 class_names: Callable[[], Sequence[object] | None]) -> None:
        self.settings = settings
        self.caps = caps
        self.features = features
        self.read_class_names = class_names
        # Rows per call, in call order; the calls of a drain of scalars, or of arrays of one
        # shape, are only counted ({rows: calls}): the same histogram, without the list.
        self.batch_sizes: list[int] = []
        self.repeated_sizes: dict[int, int] = {}
        self.values: dict[str, list[np.ndarray]] = {}
        self.classes: list[np.ndarray] = []
        # The names of the one label output of dicts or DataFrames (``{"label", "score"}``)
        # whose labels `classes` holds: drift compares them with the reference's output of
        # that name.
        self.label_outputs: set[str] = set()
        self.counted_classes: dict[str, int] = {}  # text labels, counted as they came
        self.confidence: list[np.ndarray] = []
        # Prediction.sketched of every prediction gathered: see prediction_state._sketched.
        self.sketched: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.invalid: dict[str, int] = {}
        self.class_like = False  # class-kind outputs seen, labels admitted or not
        self.probability_outputs: set[str] = set()
        # Class-probability matrices as read (their column names and rows), and how many
        # chunks of each output came from one: the columns past the output cap are summed
        # per row from these.
        self.distributions: list[tuple[list[str], np.ndarray]] = []
        self.distribution_chunks: Counter[str] = Counter()
        self._read_matrices: list[tuple[list[str], np.ndarray]] = []
        self._class_names: object = _UNSET
        self._known: frozenset[str] | None = None
        self._whole_classes: object = _UNSET
        self.refused_sparse_shape: tuple[int, ...] | None = None  # logged by flush

    def add_results(self, results: Sequence[object], probabilities: bool,
                    sizes_in_order: bool = False, kinds: set[type] | None = None) -> None:
        """Record the results of many calls (`kinds`: their classes, when known already).
        With `sizes_in_order`, every call's batch size is listed in call order (the drain
        then corrects the calls it cut into slices)."""
        task = self.settings.task
        if kinds is None:
            kinds = set(map(type, results))
        # Exactly ndarray: a subclass (np.matrix, a masked array) is made plain per call.
        if len(kinds) == 1 and len(results) > 1 and next(iter(kinds)) is np.ndarray:
            rows = row_list_results(results)
            if rows is not None:
                # Object arrays of a row per cell (a Series of lists per call): read as the
                # lists of those rows, together, as normalize reads one of them.
                self.add_results(rows, probabilities, sizes_in_order, _LIST_ONLY)
                return
            if not sizes_in_order and self._add_uniform_arrays(results, probabilities):
                return
            if probabilities:
                self.add_records(results, True, split=False)
            else:
                self._add_arrays(results, task)
            return
        if not probabilities and kinds <= FLOAT_SCALARS and task != "classification":
            self._add_float_scalars(results)
            return
        if kinds == _NONE_ONLY and len(results) > 1 and not sizes_in_order and \
                self._add_nones(len(results), probabilities):
            return
        if kinds == {dict} and len(results) > 1 and not probabilities and (
                self._add_scalar_dicts(results) or self._add_array_dicts(results)):
            return
        if probabilities and kinds <= _DICT_OR_LIST and len(results) > 1 and \
                self._add_probability_maps(results) is not None:
            return  # dicts of a probability per class, or rows of them
        if kinds in _LIST_OR_TUPLE and len(results) > 1 and (
                self._add_output_matrices(results) if probabilities else
                self._add_classifier_outputs(results)) is not None:
            # A multi-output classifier's probability matrices, or an ONNX classifier's
            # [labels, probabilities], per call.
            return
        if kinds in SEQUENCES and len(results) > 1 and (
                self._add_flat_lists(results, probabilities) or (
                    kinds == _LIST_ONLY and not probabilities
                    and self._add_lists_of_one_dict(results))):
            return
        if kinds == {tuple} and len(results) > 1 and not probabilities and (
                self._add_array_tuples(results) or self._add_scalar_rows(results)):
            return
        if kinds == _LIST_ONLY and len(results) > 1 and not probabilities and results[0] and \
                results[0][0].__class__ is np.ndarray and self._add_array_tuples(results):
            # A runtime's list of outputs (ONNX Runtime's ``session.run``, TensorRT's
            # buffers), each a 1-D float array: read as the tuple of the same arrays is.
            return
        if len(kinds) == 1 and not probabilities and task != "regression" and \
                self.features is None and (
                    self._add_categoricals(results) or (
                        is_text_column(next(iter(kinds))) and self._add_arrow_text(results))):
            # Text that Arrow holds: counted by pyarrow, never made a Python string a row;
            # categoricals: counted by their codes.
            return
        if len(kinds) == 1 and len(results) > 1:
            kind = next(iter(kinds))
            arrays = plain_series_arrays(results) if is_pandas_series(kind) else \
                plain_polars_arrays(results) if is_polars_series(kind) else \
                plain_arrow_arrays(results) if is_arrow_array(kind) else \
                plain_result_arrays(results)
            if arrays is not None:
                self.add_results(arrays, probabilities, sizes_in_order, {np.ndarray})
                return
            if not probabilities and (
                    (is_pandas_series(kind) and self._add_masked_series(results)) or
                    (is_polars_series(kind) and self._add_polars_series(results))):
                return
        if len(kinds) == 1 and len(results) > 1 and probabilities and (
                is_pandas_frame(next(iter(kinds))) or is_polars_frame(next(iter(kinds)))) and \
                self._add_probability_frames(results) is not None:
            return  # predict_proba as a DataFrame with a column per class
        if len(kinds) == 1 and len(results) > 1 and not probabilities and (
                (is_pandas_frame(next(iter(kinds))) and (
                    self._add_plain_frames(results) or self._add_typed_frames(results))) or
                (is_polars_frame(next(iter(kinds))) and self._add_polars_frames(results))):
            return
        if not probabilities and kinds <= _CLASS_SCALARS and task != "regression":
            self.repeat_size(1, len(results))
            labels = None
            if kinds <= _INT_SCALARS:
                try:
                    labels = np.fromiter(results, dtype=np.int64, count=len(results))
                except OverflowError:
                    pass  # past int64: each one is judged as a Python int below
            if labels is None:
                labels = np.asarray(results, dtype=object)
            self._add_classes(labels)
            return
        if len(results) == 1 and not probabilities and task != "regression" and \
                kinds == _ARRAY_ONLY:
            labels = results[0]
            if labels.ndim == 1 and labels.shape[0] and labels.dtype.kind in "US":
                # One batch of numpy text labels (a huge batch's first slice, or another):
                # counted per distinct label, as the same rows of several calls are.
                self._add_classes(labels)
                if sizes_in_order:
                    self.batch_sizes.append(labels.shape[0])
                else:
                    self.repeat_size(labels.shape[0], 1)
                return
        for result in results:
            self.add_one(result, probabilities)

    def _add_scalar_rows(self, results: Sequence[tuple]) -> bool:
        """Many tuples of one row's outputs (``return label, score`` per call) read as one
        dict of columns (:func:`scalar_row_columns`), not one call at a time. False,
        recording nothing, for any other tuples."""
        columns = scalar_row_columns(results)
        if columns is None:
            return False
        prediction = self._normalized(columns, False)
        if prediction is None:
            return True  # as one call at a time: each would have failed the same way
        self._add(prediction, ())
        self.repeat_size(1, len(results))
        return True

    def _add_classes(self, labels: np.ndarray) -> None:
        if self._add_text_classes(labels):
            return
        self.class_like = True
        holder = Prediction()
        admitted = admit_classes(holder, labels, self._known_classes())
        if admitted is not None and admitted.size:
            self.classes.append(admitted)
        for reason, count in holder.invalid.items():
            self._invalid(reason, count)

    def _add_text_classes(self, labels: np.ndarray) -> bool:
        """Count text labels (numpy text, or Python objects that are text and missing values
        only) per distinct label; False, recording nothing, for any other labels, or with a
        reference: prediction drift reads each row's label, so rows are kept then."""
        if self.features is not None:
            return False
        holder = Prediction()
        counted = count_text_classes(holder, labels, self._known_classes())
        if counted is None:
            return False
        self._add_counted(holder, counted)
        return True

    def _add_counted(self, holder: Prediction, counted: dict[str, int]) -> None:
        """Labels counted per class (`counted`) and the rows `holder` counted invalid."""
        self.class_like = True
        for label, count in counted.items():
            self.counted_classes[label] = self.counted_classes.get(label, 0) + count
        for reason, count in holder.invalid.items():
            self._invalid(reason, count)

    def _add_arrow_text(self, columns: Sequence[object]) -> bool:
        """Columns of text that Arrow holds (pandas 3's text Series, a huge one's slice),
        one per call, counted per distinct label by pyarrow, as :meth:`_add_text_classes`
        counts the same rows made Python strings; False, recording nothing, for any other
        columns."""
        # The kind first: a drain of other columns (float Series) pays no length of each.
        found = arrow_text_counts(columns)
        if found is None:
            return False
        by_value, sizes = found
        if not all(sizes):
            return False  # an empty answer: read as the general path reads it
        holder = Prediction()
        counted = count_text_values(holder, by_value, self._known_classes())
        if counted is None:
            return False
        self._add_counted(holder, counted)
        self.batch_sizes.extend(sizes)
        return True

    def _add_categoricals(self, results: Sequence[object]) -> bool:
        """pandas categoricals of text or integer categories, one per call, read as one
        batch (:func:`~inferwatch.core.categorical_calls.categorical_rows`): text counted
        per label, class ids admitted as one array, as each call read alone records them;
        False, recording nothing, for any other results."""
        found = categorical_rows(results)
        return found is not None and self._add_categorical_rows(found)

    def _add_categorical_rows(self, found: CategoricalRows) -> bool:
        """Record :meth:`_add_categoricals`' batch; False, recording nothing, when a label
        is not what its categories said."""
        known = self._known_classes() | found.declared
        holder = Prediction()
        if found.integers:
            # Class ids, admitted as each call's are (each declared by its categories).
            labels, missing = found.labels()
            holder.count_invalid("nan", missing)
            admitted = admit_classes(holder, labels, known)
            self.class_like = True
            if admitted is not None and admitted.size:
                self.classes.append(admitted)
            for reason, count in holder.invalid.items():
                self._invalid(reason, count)
        else:
            counted = count_text_values(holder, found.label_counts(), known)
            if counted is None:
                return False
            self._add_counted(holder, counted)
        self.batch_sizes.extend(found.sizes)
        return True

    def _known_classes(self) -> frozenset[str]:
        if self._known is None:
            declared = self.settings.classes
            names = self._class_names_once()
            self._known = NO_CLASSES if names is None and declared is None else \
                known_class_set(names, declared)
        return self._known

    def repeat_size(self, rows: int, calls: int) -> None:
        """`calls` calls of `rows` rows each, for the batch-size histogram."""
        self.repeated_sizes[rows] = self.repeated_sizes.get(rows, 0) + calls

    def _add_uniform_arrays(self, results: Sequence[np.ndarray], probabilities: bool) -> bool:
        """Calls that returned arrays of one shape and dtype (a model's usual output, or one
        reused buffer copied per call): one concatenation and one repeated batch size, with
        no look at each array in Python. False, recording nothing, when they differ or are
        not a shape this path knows (the general paths take them)."""
        shapes = set(map(SHAPE_OF, results))
        if len(shapes) != 1:
            return False
        dtypes = set(map(DTYPE_OF, results))
        if len(dtypes) != 1:
            return False
        (shape,), (dtype,) = shapes, dtypes
        if dtype.kind == "O" and len(shape) == 1 and shape[0] and not probabilities and \
                self.settings.task != "regression":
            # Text labels as Python objects (pandas, polars): counted over all calls when
            # they are text and missing values only; anything else is judged call by call.
            if not self._add_text_classes(np.concatenate(results)):
                return False
            self.repeat_size(shape[0], len(results))
            return True
        if dtype.kind == "O" and len(shape) == 2 and not probabilities and \
                self.settings.task != "regression":
            # Label matrices of text as Python objects (a multi-output classifier fit on
            # text labels): stacked when every cell is text, each call's own rule then.
            stacked = np.concatenate(results)
            if not text_cells(stacked):
                return False
            self._add_label_matrices(stacked, [shape[0]] * len(results))
            return True
        if probabilities and len(shape) == 1 and shape[0] and dtype.kind == "f" and \
                self._add_probability_vectors(np.concatenate(results), shape[0], len(results)):
            return True
        if not shape and dtype.kind in "fiubUS":
            # 0-d arrays (``x.squeeze()`` of one row, a scalar tensor's numpy): each read
            # as the one row it holds, as a 1-D array of it is.
            stacked, shape = np.array(results), (1,)
        else:
            stacked = None
        if not self._stackable(shape, dtype, probabilities):
            return False
        self.add_stacked(np.concatenate(results) if stacked is None else stacked, shape,
                         len(results), probabilities)
        return True

    def _stackable(self, shape: tuple, dtype: np.dtype, probabilities: bool) -> bool:
        """Whether :meth:`add_stacked` records calls of this shape and dtype."""
        if not 1 <= len(shape) <= 2 or not shape[0]:
            return False
        task, kind = self.settings.task, dtype.kind
        if len(shape) == 2:
            # Label matrices too (a multi-output or multi-label classifier's predict): each
            # value is judged a class on its own, so the stack reads as its calls do.
            return kind == "f" or (kind in "iubUS" and not probabilities and
                                   task != "regression")
        # Text labels too: counted per distinct label over all calls (count_text_classes),
        # not normalised call by call.
        return not probabilities and ((kind == "f" and task != "classification") or
                                      (kind in "iubUS" and task != "regression"))

    def add_stacked(self, stacked: np.ndarray, shape: tuple, calls: int,
                    probabilities: bool) -> None:
        """Record `calls` calls that each returned an array of `shape`, stacked along the
        first axis as `stacked`: in one pass, or call by call for a shape or dtype that one
        pass does not take."""
        if not self._stackable(shape, stacked.dtype, probabilities):
            self.add_results(list(stacked.reshape((calls, *shape))), probabilities)
            return
        if len(shape) == 2 and shape[1] == 1 and stacked.dtype.kind == "f" and \
                not probabilities and self._whole_number_classes() is not None:
            # A column of floats, of a model whose classes are whole numbers: each call's
            # its classes or its values, judged alone, as a 1-D array's are.
            self._add_floats(stacked.reshape(-1).astype(np.float64, copy=False), shape[0],
                             calls)
            self.repeat_size(shape[0], calls)
            return
        if len(shape) == 2 and self._calls_read_apart(
                [shape[0]] * calls, stacked, probabilities) is not None:
            # Some calls' rows are probabilities and others' not, or some calls' columns
            # their classes and others' not: each read as it reads alone (those alike
            # stacked together).
            self.add_records(list(stacked.reshape((calls, *shape))), probabilities,
                             split=False)
            return
        if len(shape) == 1:
            if stacked.dtype.kind == "f":
                self._add_floats(stacked.astype(np.float64, copy=False), shape[0], calls)
            else:
                self._add_classes(stacked)
        elif stacked.dtype.kind != "f":
            self._add_label_matrices(stacked, [shape[0]] * calls)
            return
        else:
            prediction = self._normalized(stacked, probabilities)
            if prediction is None:
                return  # as the general path: each call would have failed the same way
            self._add(prediction, ())
        self.repeat_size(shape[0], calls)







    def add_stacked_outputs(self, outputs: StackedOutputs, probabilities: bool) -> None:
        """Record many calls that each returned a list or tuple of small arrays of one
        layout (ONNX Runtime's ``session.run``), their outputs joined per output: as
        :meth:`add_results` reads those calls' containers, by columns where it reads them
        so (1-D float arrays of one length a call), else from each call's container."""
        columns = None if probabilities or outputs.calls < 2 else outputs.float_columns()
        if columns is not None:
            self._add_array_columns(*columns)
            return
        self.add_results(outputs.thawed(), probabilities)

    def _add_arrays(self, results: Sequence[np.ndarray], task: str) -> None:
        """Many calls that each returned a 1-D array: one concatenation, not one pass each."""
        dtypes = {r.dtype.kind for r in results}
        if all(r.ndim == 1 for r in results):
            if dtypes <= {"f"} and task != "classification":
                sizes = [r.shape[0] for r in results]
                self.batch_sizes.extend(sizes)
                self._add_floats(np.concatenate(results).astype(np.float64, copy=False),
                                 sizes, len(results))
                return
            if dtypes <= {"i", "u"} and task != "regression":
                self.batch_sizes.extend(r.shape[0] for r in results)
                if len(dtypes) == 1:
                    self._add_classes(np.concatenate(results))
                    return
                # numpy joins int64 and uint64 as float64, which no class label survives:
                # signed and unsigned labels are joined apart.
                for kind in dtypes:
                    self._add_classes(np.concatenate(
                        [r for r in results if r.dtype.kind == kind]))
                return
            if len(dtypes) == 1 and dtypes <= {"U", "S", "b"} and task != "regression":
                # Bools, or numpy text of any widths (joined at the widest, each label whole).
                self.batch_sizes.extend(r.shape[0] for r in results)
                self._add_classes(np.concatenate(results))
                return
        if len(dtypes) == 1 and dtypes <= {"i", "u", "b", "U", "S", "O"} and \
                task != "regression" and all(r.ndim == 2 for r in results) and \
                len({r.shape[1] for r in results}) == 1:
            # Label matrices of one width (a multi-output or multi-label classifier's predict
            # on batches of several sizes): each value a class on its own, read as one stack.
            stacked = np.concatenate(results)
            if text_cells(stacked):
                self._add_label_matrices(stacked, [r.shape[0] for r in results])
                return
        # Many 2-D float results of one width (a function returning a probability or output
        # matrix per call): normalised as one stacked matrix, not one call at a time.
        self.add_records(results, False, split=False)



    def _add_nones(self, calls: int, probabilities: bool | None) -> bool:
        """`calls` calls that returned None (a handler with nothing to give back): each is
        read as the first is, a call of no values and no classes whose one row counts as
        a missing prediction, recorded once for all of them. False, recording nothing,
        should None ever read as more than counts."""
        prediction = self._normalized(None, probabilities)
        if prediction is None:
            return True  # as one call at a time: each would have failed the same way
        if prediction.values or prediction.classes is not None or prediction.class_like or \
                prediction.confidence is not None or prediction.probability_outputs:
            return False
        self.repeat_size(prediction.rows, calls)
        for reason, count in prediction.invalid.items():
            self._invalid(reason, count * calls)
        return True

    def _calls_read_apart(self, sizes: Sequence[int], stacked: np.ndarray,
                          probabilities: bool | None) -> list[bool] | None:
        """Which calls to stack (:meth:`_probability_calls`, else
        :func:`~inferwatch.core.whole_class_calls.calls_read_alike`) where some calls read
        otherwise than the rest; None when every call reads alike."""
        found = self._probability_calls(sizes, stacked, probabilities)
        if found is None:
            found = calls_read_alike(stacked, sizes, self.settings.task,
                                     self._class_names_once(), probabilities)
        return found

    def _probability_calls(self, sizes: Sequence[int], stacked: np.ndarray,
                           probabilities: bool | None) -> list[bool] | None:
        """Whether each call's rows (`sizes` of them each, one after another in `stacked`)
        are class probabilities, where some calls' are and others' are not: each call's
        rows are judged on their own (task auto, a model whose classes name each column,
        or a result handed over with no method), so a drain of them stacked, judged once,
        would read them all alike (one NaN row of a Keras classifier's ``predict`` made
        its whole drain values). None when every call is read alike."""
        task = self.settings.task
        if probabilities or task != "auto" or stacked.ndim != 2 or stacked.shape[1] < 2 or \
                stacked.dtype.kind != "f" or (probabilities is not None and not
                                              names_each_column(self._class_names_once(),
                                                                stacked.shape[1])):
            return None
        rows = probability_rows(stacked)
        if rows.all() or not rows.any():
            return None
        bounds = np.cumsum([0, *sizes])
        calls = [bool(rows[start:end].all()) for start, end in zip(bounds[:-1], bounds[1:])]
        return None if all(calls) or not any(calls) else calls

    def _class_names_once(self) -> Sequence[object] | None:
        if self._class_names is _UNSET:
            self._class_names = self.read_class_names()
        return self._class_names

    def _normalized(self, value: object, probabilities: bool | None) -> Prediction | None:
        """`value` normalised with this model's task and classes; None, counted as an
        internal error, when it cannot be."""
        read: list[tuple[list[str], np.ndarray]] = []
        previous = recording_distributions(read)
        try:
            prediction = normalize(value, probabilities=probabilities,
                                   task=self.settings.task,
                                   class_names=self._class_names_once(),
                                   known_classes=self._known_classes(),
                                   # Prediction drift reads every output column by name.
                                   output_cap=None if self.features is not None else
                                   self.caps.get("inferwatch_prediction"))
        except SparseResultTooLarge as refused:
            # The model's answer, not a fault of inferwatch's: its rows count as bad_shape.
            self.refused_sparse_shape = refused.shape
            prediction = Prediction(rows=refused.rows)
            prediction.count_invalid("bad_shape", refused.rows)
            read = []
        except Exception as exc:
            faults.record("prediction", exc)
            return None
        finally:
            recording_distributions(previous)
        self._read_matrices = read  # for _add, which records this prediction next
        return prediction

    def joinable_rows(self, result: object, probabilities: bool | None
                      ) -> tuple[tuple | None, tuple | None] | None:
        """The (classes, values) an outcome joins one call's `result` by, as
        :meth:`add_records` gives them, without recording it (a huge batch recorded slice by
        slice joins by its first rows)."""
        read = self._read_matrices
        try:
            prediction = self._normalized(result, probabilities)
        finally:
            self._read_matrices = read  # what the next _add records is its own call's
        return None if prediction is None else \
            split_rows(prediction, [prediction.rows], result)[0]

    def read_one(self, result: object, probabilities: bool | None) -> Prediction | None:
        """One call's `result` normalised, not yet recorded (:meth:`add_read` records it
        next): a huge result is read with the monitor's lock let go."""
        return self._normalized(result, probabilities)

    def count_classes_apart(self, prediction: Prediction) -> None:
        """Count the class labels of `prediction` (read by :meth:`read_one`) now, where no
        reference compares them: a count of two million text labels is 140 ms, which the
        monitor's lock would otherwise be held for when :meth:`flush` counts them."""
        if prediction.classes is None or self.features is not None:
            return
        counted = self.counted_classes
        for label, count in count_classes([prediction.classes]).items():
            counted[label] = counted.get(label, 0) + count
        prediction.classes = None

    def joinable_row(self, prediction: Prediction, result: object
                     ) -> tuple[tuple | None, tuple | None] | None:
        """The (classes, values) an outcome joins `result` by, read from `prediction`
        (:meth:`read_one`'s), as :meth:`add_records` gives them."""
        return split_rows(prediction, [prediction.rows], result)[0]

    def add_read(self, prediction: Prediction) -> None:
        """Record what :meth:`read_one` read last."""
        self._add(prediction)

    def add_one(self, result: object, probabilities: bool | None) -> Prediction | None:
        """Record one call's result; returns its normalised form (None if it could not be)."""
        prediction = self._normalized(result, probabilities)
        if prediction is None:
            return None
        self._add(prediction)
        return prediction

    def _add_float_scalars(self, results: Sequence[object]) -> None:
        self.repeat_size(1, len(results))
        self._add_floats(float_array(results), 1, len(results))

    def _add_floats(self, values: np.ndarray, sizes: int | Sequence[int], calls: int) -> None:
        """Float outputs of `calls` calls of `sizes` rows each (or each call's own): values,
        or, for a model whose classes are whole numbers, the calls whose every value is one
        of its classes (or NaN: a row without a class) as class labels, as
        :func:`normalize` reads each call."""
        classes = self._whole_number_classes()
        if classes is None:  # no classes_ (a regressor), or a declared task: values, as ever
            self._add_values(values)
            return
        member = class_members(values, classes)
        if member.all():
            self._add_labels(values.astype(np.int64), True)
            return
        missing = np.isnan(values)
        fits = member | missing
        # One value that is no class makes its call's values values (a wrapper's predict
        # returning scores), and only its call's: the other calls stay labels.
        if isinstance(sizes, int):
            whole_calls = fits.reshape(calls, sizes).all(axis=1)
            rows = np.repeat(whole_calls, sizes)
        else:
            counts = np.asarray(sizes, dtype=np.int64)
            strays = np.concatenate(([0], np.cumsum(~fits)))
            ends = np.cumsum(counts)
            whole_calls = strays[ends] == strays[ends - counts]
            rows = np.repeat(whole_calls, counts)
        # A labelled call's NaN is its row without a class, never cast to one.
        self._invalid("nan", int((rows & missing).sum()))
        self._add_labels(values[rows & member].astype(np.int64), bool(whole_calls.any()))
        if not rows.all():  # NaN alone leaves every call labels: no output of values
            self._add_values(values[~rows])

    def _add_labels(self, labels: np.ndarray, called: bool) -> None:
        """Class labels read from float outputs (`called`: some call's output was read so,
        if of no rows)."""
        if called:
            self.class_like = True
        if labels.size:
            self.classes.append(labels)

    def _whole_number_classes(self) -> np.ndarray | None:
        """The model's classes when each is a whole number and the task is left to tell
        (``task="auto"``); None otherwise (read once per drain)."""
        if self._whole_classes is _UNSET:
            self._whole_classes = None if self.settings.task != "auto" else \
                whole_number_classes(self._class_names_once())
        return self._whole_classes

    def rows(self) -> int:
        """Rows of every call gathered so far."""
        return sum(self.batch_sizes) + sum(
            rows * calls for rows, calls in self.repeated_sizes.items())

    def _add_values(self, values: np.ndarray) -> None:
        """Values of the default output; nan and inf are counted, never recorded."""
        self.values.setdefault("value", []).append(finite_values(values, self.invalid))

    def _add(self, prediction: Prediction, sizes: Sequence[int] | None = None) -> None:
        if sizes is None:
            self.batch_sizes.append(prediction.rows)
        else:
            self.batch_sizes.extend(sizes)
        read, self._read_matrices = self._read_matrices, []
        if read:
            self._add_distributions(prediction, read)
        for name, values in prediction.values.items():
            self.values.setdefault(name, []).append(values)
        if prediction.classes is not None:
            self.classes.append(prediction.classes)
            if prediction.label_output is not None:
                self.label_outputs.add(prediction.label_output)
        if prediction.class_like:
            self.class_like = True
        if prediction.probability_outputs:
            self.probability_outputs.update(prediction.probability_outputs)
        if prediction.confidence is not None:
            self.confidence.append(prediction.confidence)
        if prediction.sketched:
            self.sketched.update(prediction.sketched)
        for reason, count in prediction.invalid.items():
            self._invalid(reason, count)

    def _add_distributions(self, prediction: Prediction,
                           read: list[tuple[list[str], np.ndarray]]) -> None:
        """Keep the probability matrices `prediction` was read from, when each of its
        outputs is exactly one matrix's column; otherwise (outputs of other kinds among
        them, or two columns of one name) its columns are folded one by one."""
        columns = sum(len(names) for names, _ in read)
        if len(prediction.values) != columns:
            return
        names = [name for matrix_names, _ in read for name in matrix_names]
        if len(set(names)) != columns:
            return
        self.distributions.extend(read)
        self.distribution_chunks.update(names)

    def value_bounds(self, output: str) -> tuple[float, ...]:
        """The prediction histogram's bounds: those instrument(value_buckets=...) names, else
        ones fitted to the scale the reference profiles the output on, else the defaults."""
        if self.settings.value_buckets is not None:
            return self.settings.value_buckets
        fitted = self.features.value_buckets(output) if self.features is not None else None
        return fitted or VALUE_BUCKETS

    def _invalid(self, reason: str, count: int) -> None:
        add_invalid(reason, count, self.invalid)

    def flush(self, state: ModelState, now: float) -> None:
        """Write what this drain gathered into `state`
        (:func:`~inferwatch.core.prediction_state.write_batch`)."""
        write_batch(self, state, now)
