"""Readers that stack many calls' results of one kind into one array or one dict of
columns: flat lists (of floats, of text, of probability rows), pandas DataFrames of one
plain dtype, dicts of floats, tuples and dicts of 1-D float arrays, and the joined pandas
and polars Series and frames (whose layouts :mod:`inferwatch.core.library_columns` reads).
A drain then normalises them once, not call by call.

:class:`StackedResults` is the first base of
:class:`~inferwatch.core.prediction_batch.PredictionBatch`: its readers record through
that class's own steps (``_normalized``, ``_add``, ``add_stacked``, ``add_results``,
``repeat_size``, ``_add_text_classes``). Apart from the batch because which results stack,
and how, is a job of its own, with rules per kind of result; the batch picks the reader
for a drain's results and records what it reads.
"""

from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Callable, Sequence

import numpy as np

from inferwatch.core.class_probabilities import looks_like_probabilities, names_each_column
from inferwatch.core.library_columns import (
    DTYPE_OF,
    NDARRAY_ONLY,
    column_kind,
    frame_dtypes,
    frame_rows,
    label_columns,
    masked_series_arrays,
    polars_kind,
)
from inferwatch.core.nested_outputs import stackable_maps
from inferwatch.core.prediction_classes import whole_number_classes
from inferwatch.core.state import float_array
from inferwatch.frame_joins import joined_frame, same_columns

_FLOAT_ONLY = {float}
_TEXT_ONLY = {str}
# A dict output's one-row values read as a float column: numpy's float scalars too (a
# score taken off a probability array, ``proba.max()``), each a float64 in the column.
_FLOAT_SCALARS = frozenset({float, np.float64, np.float32})
_BOOL_ONLY = {bool}
_WHOLE_KINDS = ({int}, {np.int64})
_LIST_ONLY = {list}
SEQUENCES = ({list}, {tuple})  # a result's kinds read as flat lists: lists, or tuples
SEQUENCE_CLASSES = (list, tuple)
_INT_ONLY = {int}
_BOOL_ONLY = {bool}
# A flat list's first call's kinds.
_FLAT_KINDS = (_FLOAT_ONLY, _TEXT_ONLY, _INT_ONLY, _BOOL_ONLY, *SEQUENCES)
# An array's shape and dtype, read in C over many arrays (``set(map(SHAPE_OF, arrays))``).
SHAPE_OF = operator.attrgetter("shape")
_CLASS_OF = operator.attrgetter("__class__")
NDIM_OF = operator.attrgetter("ndim")
_DICT_ONLY = {dict}
_ONE_ITEM = {1}
_FIRST = operator.itemgetter(0)
_ONE_DIMENSION = {1}


def scalar_column(column: Sequence[object]) -> np.ndarray | None:
    """One output of many calls' one-row results, as the array its values are read as
    one by one: floats (numpy's float scalars too) as float64, text as Python strings
    (numpy's fixed-width text would drop trailing NULs), bools as bools, whole numbers of
    one kind (``int`` or ``np.int64``) as int64; None for anything else, or integers past
    int64.

    >>> scalar_column([0.5, np.float32(0.25)]).tolist(), scalar_column(["a", 1]) is None
    ([0.5, 0.25], True)
    """
    kinds = set(map(type, column))
    if kinds <= _FLOAT_SCALARS:
        return float_array(column)
    if kinds == _TEXT_ONLY:
        text = np.empty(len(column), dtype=object)
        text[:] = column
        return text
    if kinds == _BOOL_ONLY:
        return np.array(column, dtype=bool)
    if kinds in _WHOLE_KINDS:
        try:
            return np.array(column, dtype=np.int64)
        except OverflowError:
            return None
    return None


def float_rows(rows: list[list]) -> np.ndarray | None:
    """Lists of one length, each of Python floats only, as the (n, k) float64 matrix of
    them; None for any others.

    >>> float_rows([[0.1, 0.9], [0.4, 0.6]]).shape, float_rows([[0.1], [1]]) is None
    ((2, 2), True)
    """
    if len(set(map(len, rows))) != 1 or \
            set(map(type, itertools.chain.from_iterable(rows))) != _FLOAT_ONLY:
        return None
    return np.array(rows, dtype=np.float64)


def scalar_dict_columns(results: Sequence[dict], listed: bool = True,
                        task: str | None = None) -> dict[str, np.ndarray | list] | None:
    """Many dicts of the same named outputs, one row each, as one dict of columns (each
    :func:`scalar_column`): every output all floats but at most one all labels (text,
    bools or whole numbers of one kind); with `listed`, an output may be a list of one
    value in every dict (``{"predictions": [0.93]}``, a serving API's answer), read as
    that value, or a list of one row of floats of one length (``{"predictions": [[0.07,
    0.93]]}``), the rows read as one matrix; given the model's `task`, an output may be a
    map of classes to their probabilities in every dict (``{"label": ..., "probability":
    {"legit": 0.07, "fraud": 0.93}}``), kept as the list of those maps when each is one by
    the same rule (:func:`~inferwatch.core.nested_outputs.stackable_maps`). None for dicts
    of any other shape. (Two label outputs would admit their classes to a capped class
    label output by output, where the calls read one at a time admit them call by call.)

    >>> columns = scalar_dict_columns([{"label": "a", "score": 0.5}, {"score": 1.0,
    ...                                "label": "b"}])
    >>> {name: column.tolist() for name, column in columns.items()}
    {'label': ['a', 'b'], 'score': [0.5, 1.0]}
    >>> scalar_dict_columns([{"label": "a"}, {"label": "b", "score": 1.0}]) is None
    True
    """
    # One pass in C per output name (an item getter over the dicts), in any key order:
    # the same length everywhere and every name found means the same names everywhere.
    names = results[0]
    if len(set(map(len, results))) != 1:
        return None
    columns = {}
    label_output = False
    for name in names:
        try:
            column = list(map(operator.itemgetter(name), results))
        except KeyError:
            return None
        if listed and set(map(type, column)) == _LIST_ONLY and \
                set(map(len, column)) == _ONE_ITEM:
            column = list(map(_FIRST, column))
            if set(map(type, column)) == _LIST_ONLY:
                # A list of one row of floats (``{"predictions": [[0.07, 0.93]]}``, a
                # serving API's answer to one instance): the calls' rows as one matrix.
                matrix = float_rows(column)
                if matrix is None:
                    return None
                columns[name] = matrix
                continue
        array = scalar_column(column)
        if array is None and task is not None and stackable_maps(column, task):
            columns[name] = column
            continue
        if array is None or (array.dtype.kind != "f" and label_output):
            return None
        label_output = label_output or array.dtype.kind != "f"
        columns[name] = array
    return columns


def one_dict_rows(results: Sequence[list]) -> list[dict] | None:
    """The row dicts of many lists of one row dict each (a Hugging Face pipeline's answer
    to one text, ``[{"label": "POSITIVE", "score": 0.99}]``); None for any other lists.

    >>> one_dict_rows([[{"label": "a"}], [{"label": "b"}]])
    [{'label': 'a'}, {'label': 'b'}]
    >>> one_dict_rows([[{"label": "a"}, {"label": "b"}]]) is None
    True
    """
    if set(map(len, results)) != _ONE_ITEM:
        return None
    rows = list(map(_FIRST, results))
    return rows if set(map(type, rows)) == _DICT_ONLY else None


def array_tuple_columns(results: Sequence[Sequence]) -> tuple[dict[str, np.ndarray],
                                                               list[int]] | None:
    """Many tuples (or lists) of 1-D float numpy arrays, one count of them, as the dict of
    columns ``0``, ``1``, ... they make and each call's rows (:func:`array_output_columns`);
    None for any others.

    >>> columns, rows = array_tuple_columns([(np.array([1.0]), np.array([2.0]))] * 2)
    >>> {name: column.tolist() for name, column in columns.items()}, rows
    ({'0': [1.0, 1.0], '1': [2.0, 2.0]}, [1, 1])
    """
    width = len(results[0])
    if not width or set(map(len, results)) != {width}:  # one count in every tuple
        return None
    # A pass in C per output: zip(*results) makes an iterator per call, and those
    # thousand tracked objects set off a garbage collection in the drain.
    outputs = [list(map(operator.itemgetter(j), results)) for j in range(width)]
    return array_output_columns(tuple(map(str, range(width))), outputs)


def array_dict_columns(results: Sequence[dict]) -> tuple[dict[str, np.ndarray],
                                                         list[int]] | None:
    """Many dicts of the same named outputs (in one key order), each a 1-D float numpy
    array, as one dict of columns and each call's rows (:func:`array_output_columns`);
    None for any others."""
    names = tuple(results[0])
    if not names or set(map(tuple, results)) != {names}:  # the same keys, in one order
        return None
    arrays = list(map(operator.itemgetter(*names), results))
    return array_output_columns(names, [arrays] if len(names) == 1 else list(zip(*arrays)))


def array_output_columns(names: tuple, outputs: list[Sequence[object]]
                         ) -> tuple[dict[str, np.ndarray], list[int]] | None:
    """Every call's array of each named output (`outputs`, in the order of `names`, each in
    call order) as one dict of columns, and each call's rows, when each output's arrays
    are all exactly numpy arrays, 1-D, of one float dtype or of labels of one kind
    (integers, bools, numpy text, or text as Python objects), and a call's arrays are all
    of one length; None otherwise. An output is values or labels by its kind alone, and
    each label is judged on its own, so the columns read as each call's outputs do (labels
    of more than one output are each prefixed with their output's name, in both). Each
    test is a pass in C over an output's arrays, not a Python step per call.

    >>> columns, rows = array_output_columns(("label", "score"), [
    ...     [np.array(["cat"]), np.array(["dog", "cat"])],
    ...     [np.array([0.9]), np.array([0.2, 0.7])]])
    >>> columns["label"].tolist(), rows
    (['cat', 'dog', 'cat'], [1, 2])
    """
    rows: list[int] | None = None
    columns = {}
    for name, output in zip(names, outputs):
        # Exactly ndarray, as ``__class__`` tells (a proxy may pass for one); ``type``
        # is the cheaper read and says the same for every plain array.
        if set(map(type, output)) != NDARRAY_ONLY and \
                set(map(_CLASS_OF, output)) != NDARRAY_ONLY:
            return None
        if set(map(NDIM_OF, output)) != _ONE_DIMENSION:
            return None
        dtypes = set(map(DTYPE_OF, output))
        kinds = {dtype.kind for dtype in dtypes}
        if len(kinds) != 1 or (kinds == _FLOAT_KIND and len(dtypes) != 1) or \
                not kinds <= _COLUMN_KINDS:
            return None
        lengths = list(map(len, output))
        if rows is None:
            rows = lengths
        elif lengths != rows:
            return None
        column = np.concatenate(output)
        if kinds == _OBJECT_KIND and set(map(type, column.tolist())) - _TEXT_ONLY:
            return None  # numbers among objects are values, judged call by call
        columns[name] = column
    if rows is None:
        return None
    return columns, rows


_FLOAT_KIND = {"f"}
_OBJECT_KIND = {"O"}
# A float output is values; the others' kinds are labels, each judged on its own.
_COLUMN_KINDS = frozenset("fiubUSO")


class StackedResults:
    """The readers of :class:`~inferwatch.core.prediction_batch.PredictionBatch` that
    take many calls' results of one kind at once: each returns False, recording
    nothing, for results it does not take."""

    def _add_flat_lists(self, results: Sequence[list], probabilities: bool) -> bool:
        """Many lists (or tuples) of one length, each of plain floats, of text, or of rows
        of plain floats (a function returning ``[score]``, ``(score,)`` or ``["fraud"]``, a
        ``predict_proba`` returning ``[[p0, p1]]`` per call): one array, read as the same
        calls returning numpy arrays are (a list of text as
        Python strings, as ``to_array`` keeps it). False, recording nothing, for any other
        lists."""
        lengths = set(map(len, results))
        if len(lengths) != 1:
            return False
        (width,) = lengths
        if not width:
            return False
        kinds = set(map(type, results[0]))
        if kinds not in _FLAT_KINDS:
            return False  # (a tuple of arrays, say): no call of these is a flat list
        # Every call's values' types in one pass in C: a loop over the calls cost about
        # 0.6 us a call, most of a drain of one-score lists.
        kinds.update(map(type, itertools.chain.from_iterable(results)))
        if len(kinds) > 1:
            return False
        if kinds == _FLOAT_ONLY and not probabilities:
            stacked = np.array(results, dtype=np.float64).reshape(-1)
            self.add_stacked(stacked, (width,), len(results), False)
            return True
        if kinds in (_INT_ONLY, _BOOL_ONLY) and not probabilities:
            # ``[label]``: integers as the int64 array each list alone is (one past it is
            # uint64 or objects alone, so those are read call by call), or bools.
            try:
                stacked = np.array(results, dtype=np.int64 if kinds == _INT_ONLY else bool)
            except OverflowError:
                return False
            self.add_stacked(stacked.reshape(-1), (width,), len(results), False)
            return True
        if kinds in SEQUENCES:
            arrays = self.float_row_arrays(results, probabilities)
            if arrays is None:
                return False
            self.add_results(arrays, probabilities, kinds={np.ndarray})
            return True
        if probabilities:
            return False
        if kinds == {str}:
            stacked = np.empty(len(results) * width, dtype=object)
            stacked[:] = [label for result in results for label in result]
            if self.settings.task == "regression" or not self._add_text_classes(stacked):
                return False
            self.repeat_size(width, len(results))
            return True
        return False

    def float_row_arrays(self, results: Sequence[Sequence], probabilities: bool | None
                         ) -> list[np.ndarray] | None:
        """Many lists (or tuples) of rows of plain floats, each of the same number of rows
        of one width (a predict_proba returning ``[[p0, p1]]``, a predict returning
        ``proba.tolist()``), as the arrays numpy makes of them, as each list read alone is;
        None for any other results. A predict's rows are judged call by call
        (probabilities, classes or values, by what each call holds) and stacked ones once:
        a predict's are read so only where every call reads them alike
        (:meth:`_rows_read_alike`)."""
        if len(set(map(type, results))) != 1 or results[0].__class__ not in SEQUENCE_CLASSES:
            return None
        lengths = set(map(len, results))
        inner = {len(row) if row.__class__ in SEQUENCE_CLASSES else -1
                 for result in results for row in result}
        if len(lengths) != 1 or len(inner) != 1 or -1 in inner or 0 in inner or \
                0 in lengths or \
                not all(type(value) is float for result in results for row in result
                        for value in row):
            return None
        stacked = np.array(results, dtype=np.float64)
        return list(stacked) if self._rows_read_alike(stacked, probabilities) else None

    def _rows_read_alike(self, stacked: np.ndarray, probabilities: bool | None) -> bool:
        """Whether `stacked` (calls, rows, width) read as one matrix is read as each call's
        rows are: as probabilities (a predict_proba's; or every row's, so every call's), or
        as values that no call could read otherwise (a regressor's; task auto, no class
        one column each may name, no whole-number classes to read floats as). A drain of
        rows some calls may read as probabilities and others not, or of floats that may be
        classes, is read call by call."""
        task = self.settings.task
        if probabilities or task == "regression":
            return True
        names = self._class_names_once()
        by_shape = probabilities is None
        if looks_like_probabilities(stacked.reshape(-1, stacked.shape[-1]), task, names,
                                    by_shape=by_shape):
            return True
        return task == "auto" and not by_shape and whole_number_classes(names) is None \
            and not names_each_column(names, stacked.shape[-1])

    def _add_plain_frames(self, results: Sequence[object]) -> bool:
        """Many pandas DataFrames of the same uniquely named columns, all of one plain numpy
        dtype (a pyfunc returning a frame per call): one dict of columns, read as a frame's
        columns are. False, recording nothing, for any other frames (mixed dtypes too:
        pandas reads their columns one by one, no cheaper than a call at a time)."""
        first = results[0]
        columns = first.columns  # type: ignore[attr-defined]
        names = tuple(columns)
        if not names or len(set(names)) != len(names):
            return False
        if not same_columns(results, columns):
            return False
        dtype = None
        for frame in results:
            kinds = frame_dtypes(frame)
            if len(kinds) != 1:
                return False
            (found,) = kinds
            if dtype is None:
                # Python objects may be numbers in one call and text in another, which
                # each call reads otherwise.
                if not (isinstance(found, np.dtype) and found.kind in "fiub"):
                    return False
                if label_columns(found.kind * len(names), names, self.settings.task) > 1:
                    return False
                dtype = found
            elif found != dtype:
                return False
        rows = list(map(frame_rows, results))
        block = np.concatenate(rows)
        prediction = self._normalized({name: block[:, j] for j, name in enumerate(names)},
                                      False)
        if prediction is None:
            return True  # as one call at a time: each would have failed the same way
        self._add(prediction, [part.shape[0] for part in rows])
        return True

    def _add_masked_series(self, results: Sequence[object]) -> bool:
        """Many pandas Series of one nullable dtype (``Int64``, ``Float64``, ``boolean``:
        a column of a frame that ``convert_dtypes()`` made, one a call), which pandas reads
        at about 40 us a call: their arrays joined by pandas' own concatenation into one
        Series, read as each call reads its rows (``pd.NA`` counted as ``nan``), each
        call's rows its batch size. False, recording nothing, for any other Series, and for
        floats from a model whose classes are whole numbers (each call then decides alone
        whether its values are those classes)."""
        found = self._masked_series_join(results)
        return found is not None and self._add_joined(*found)

    def _masked_series_join(self, results: Sequence[object]
                            ) -> tuple[Callable[[], object], list[int]] | None:
        """(how to join them, each call's rows) for :meth:`_add_masked_series`, or None."""
        arrays = masked_series_arrays(results)
        if arrays is None:
            return None
        kind = arrays[0].dtype.kind
        if kind == "f" and self._whole_number_classes() is not None:
            return None
        return (lambda: type(results[0])(type(arrays[0])._concat_same_type(arrays)),
                list(map(len, arrays)))

    def _add_typed_frames(self, results: Sequence[object]) -> bool:
        """Many pandas DataFrames of the same uniquely named columns and the same dtype
        column by column, none of numpy's objects (``{"label": str, "score": float}`` per
        call, as an MLflow pyfunc answers), which pandas reads at about 80 us a call:
        joined by ``pd.concat`` and read as one frame, each call's rows its batch size.
        Every call's columns being of the same dtypes, each column is read as each call's
        is. False, recording nothing, for any other frames."""
        found = self._typed_frames_join(results)
        return found is not None and self._add_joined(*found)

    def _typed_frames_join(self, results: Sequence[object]
                           ) -> tuple[Callable[[], object], list[int]] | None:
        """(how to join them, each call's rows) for :meth:`_add_typed_frames`, or None."""
        first = results[0]
        columns = first.columns  # type: ignore[attr-defined]
        names = tuple(columns)
        if not names or len(set(names)) != len(names):
            return None
        try:
            kinds = [tuple(frame._mgr.get_dtypes()) for frame in results]  # type: ignore[attr-defined]
        except Exception:  # a pandas without the block manager's method
            return None
        # A column of Python objects may hold numbers in one call and text in another,
        # which each call reads otherwise; pandas' text dtypes hold text only.
        # Compared, not hashed: pandas' text dtype is made anew for each frame, and hashed
        # costs a frame of a row about a microsecond.
        first_kinds = kinds[0]
        if not all(kind == first_kinds for kind in kinds) or any(
                isinstance(dtype, np.dtype) and dtype.kind == "O" for dtype in first_kinds):
            return None
        if label_columns(list(map(column_kind, first_kinds)), names, self.settings.task) > 1:
            return None
        if not same_columns(results, columns):
            return None
        sizes = list(map(len, results))  # type: ignore[arg-type]
        if not all(sizes):
            return None
        return lambda: joined_frame(results), sizes

    def _add_joined(self, join: Callable[[], object], sizes: list[int]) -> bool:
        """Record many calls' results as the one result `join()` makes of them (pandas'
        or polars' own concatenation), read once, each call's rows (`sizes`) its batch
        size. False, recording nothing, when the library will not join them (other
        dtypes, a version that joins them otherwise): each call is then read alone."""
        try:
            joined = join()
        except Exception:
            return False
        prediction = self._normalized(joined, False)
        if prediction is not None:  # else as one call at a time: each would fail alike
            self._add(prediction, sizes)
        return True

    def _add_polars_series(self, results: Sequence[object]) -> bool:
        """Many polars Series of one dtype that are no plain array (an Enum, nulls among
        them), which polars reads at about 30 us a call: joined by ``pl.concat`` and read
        as one Series, each call's rows its batch size. False, recording nothing, for Series
        of several dtypes, an empty one, and floats from a model whose classes are whole
        numbers (each call then decides alone whether its values are those classes)."""
        found = self._polars_series_join(results)
        return found is not None and self._add_joined(*found)

    def _polars_series_join(self, results: Sequence[object]
                            ) -> tuple[Callable[[], object], list[int]] | None:
        """(how to join them, each call's rows) for :meth:`_add_polars_series`, or None."""
        # The first call's dtype alone (polars makes an Enum's anew at each look, about
        # 20 us): ``pl.concat`` refuses Series of another dtype, and each is read alone.
        dtype = results[0].dtype  # type: ignore[attr-defined]
        if polars_kind(dtype) == "f" and self._whole_number_classes() is not None:
            return None
        sizes = list(map(len, results))  # type: ignore[arg-type]
        if not all(sizes):
            return None
        return lambda: sys.modules["polars"].concat(results), sizes

    def _add_polars_frames(self, results: Sequence[object]) -> bool:
        """Many polars DataFrames of one schema (the same columns of the same dtypes) with
        at most one column of labels, which polars reads at about 14 us a call: joined by
        ``pl.concat`` and read as one frame, each call's rows its batch size. False,
        recording nothing, for any other frames."""
        found = self._polars_frames_join(results)
        return found is not None and self._add_joined(*found)

    def _polars_frames_join(self, results: Sequence[object]
                            ) -> tuple[Callable[[], object], list[int]] | None:
        """(how to join them, each call's rows) for :meth:`_add_polars_frames`, or None."""
        schemas = [tuple(frame.schema.items()) for frame in results]  # type: ignore[attr-defined]
        if len(set(schemas)) != 1 or not schemas[0]:
            return None
        names = [name for name, _ in schemas[0]]
        kinds = [polars_kind(dtype) for _, dtype in schemas[0]]
        if label_columns(kinds, names, self.settings.task) > 1:
            return None
        sizes = list(map(len, results))  # type: ignore[arg-type]
        if not all(sizes):
            return None
        return lambda: sys.modules["polars"].concat(results), sizes

    def _add_scalar_dicts(self, results: Sequence[dict], listed: bool = True,
                          maps: bool = True) -> bool:
        """Many dicts of the same named outputs, one row each (a value, or a list of one
        value), every output all floats (numpy's float scalars too) but at most one all
        labels, text, bools or whole numbers of one kind (``{"label": "fraud", "score":
        0.93}`` per call), and with `maps` maps of class probabilities among them:
        normalised as one dict of columns (:func:`scalar_dict_columns`). False, recording
        nothing, when they are not all of that shape."""
        columns = scalar_dict_columns(results, listed, self.settings.task if maps else None)
        if columns is None:
            return False
        prediction = self._normalized(columns, False)
        if prediction is None:
            return True  # as one call at a time: each would have failed the same way
        self._add(prediction, ())
        self.repeat_size(1, len(results))
        return True

    def _add_lists_of_one_dict(self, results: Sequence[list]) -> bool:
        """Many lists of one row dict each (:func:`one_dict_rows`): read as those dicts are
        (:meth:`_add_scalar_dicts`), which is how a list of row dicts is read, by its
        columns. False, recording nothing, for any other lists."""
        rows = one_dict_rows(results)
        # A row dict's list values are read as rows of a nested table, not as one value;
        # its maps of class probabilities as a dict's are.
        return rows is not None and self._add_scalar_dicts(rows, False)

    def _add_array_tuples(self, results: Sequence[tuple]) -> bool:
        """Many tuples of 1-D float numpy arrays, one count of them (a model returning
        ``(prices, etas)`` per call): outputs ``0``, ``1``, ... read as the dicts of the
        same arrays under those names are, which is how a call's tuple is read. False,
        recording nothing, for any other tuples."""
        found = array_tuple_columns(results)
        return found is not None and self._add_array_columns(*found)

    def _add_array_dicts(self, results: Sequence[dict]) -> bool:
        """Many dicts of the same named outputs, each a 1-D float numpy array (a model
        returning ``{"price": prices, "eta": etas}`` per call), one length within a call:
        one dict of columns, read as a call's dict is. False, recording nothing, for any
        other dicts."""
        found = array_dict_columns(results)
        return found is not None and self._add_array_columns(*found)

    def _add_array_columns(self, columns: dict[str, np.ndarray], rows: list[int]) -> bool:
        prediction = self._normalized(columns, False)
        if prediction is None:
            return True  # as one call at a time: each would have failed the same way
        self._add(prediction, rows)
        return True
