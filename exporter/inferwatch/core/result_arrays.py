"""Reading what a model returns as numpy arrays.

A result may be a numpy array (a masked or record one too), a list, a tensor of any
framework, a pandas, polars or pyarrow column or frame, or a tuple of outputs: here each is
told apart without importing any of those libraries, read as numpy, its missing values
(``pd.NA``, nulls, None, NaN among objects) taken out or made NaN, and its named columns or
fields listed. What the numbers mean (values, classes, probabilities) is decided elsewhere;
this module knows only the containers, which is why it stands apart.
"""

from __future__ import annotations

import decimal
import fractions
import math
import sys
from collections.abc import Sequence

import numpy as np


def _has(obj: object, name: str) -> bool:
    """Whether `obj`'s class has `name`: the tensor, frame and sparse methods looked for
    here are all defined on their classes. Asked of a pandas object itself, a missing name
    goes through its ``__getattr__`` (a column lookup), some microseconds a call.

    >>> import pandas as pd
    >>> _has(pd.Series([1.0]), "to_numpy"), _has(pd.Series([1.0]), "detach")
    (True, False)
    """
    return hasattr(type(obj), name)


# A scipy.sparse result is read as the dense rows it holds; past either bound that dense
# copy is refused unread (SparseResultTooLarge). A few kilobytes of non-zeros may stand for
# gigabytes of zeros (an extreme multi-label tagger's million labels), and every column
# read is an output: a drain of 200,000 such columns took seconds under the monitor's lock,
# and all but ``max_outputs`` of them fold into ``__other__`` anyway. 4,096 columns (a
# row read in about 30 ms) and 4,194,304 cells (32 MiB of float64: 131,072 rows, one drain
# slice of a numpy result, 32 columns wide).
MAX_SPARSE_RESULT_COLUMNS = 4096
MAX_SPARSE_RESULT_CELLS = 1 << 22


class SparseResultTooLarge(Exception):
    """A scipy.sparse result whose dense form is past MAX_SPARSE_RESULT_COLUMNS or
    MAX_SPARSE_RESULT_CELLS: its rows are counted as ``bad_shape``, none of it read."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.rows = shape[0] if shape else 1
        super().__init__(f"a scipy.sparse result of shape {shape} holds {math.prod(shape):,} "
                         "values as dense rows")


def is_sparse_kind(kind: type) -> bool:
    """Whether `kind` is a scipy.sparse matrix or array class (told without importing
    scipy).

    >>> import scipy.sparse as sp
    >>> is_sparse_kind(sp.csr_matrix), is_sparse_kind(sp.csr_array), is_sparse_kind(np.ndarray)
    (True, True, False)
    """
    return kind.__module__.startswith("scipy.sparse") and hasattr(kind, "toarray") and \
        hasattr(kind, "nnz")


def plain_result_arrays(results: Sequence[object]) -> list[np.ndarray] | None:
    """The arrays :func:`to_array` makes of many calls' scipy.sparse results (a multi-label
    classifier's ``predict``, one sparse row a call) or ndarray subclasses (``np.matrix``,
    what ``.todense()`` gives; a masked array, its masked entries NaN, or None among
    objects), so that a drain reads them as it reads the same arrays. None for any other
    results, for a sparse one past the dense bounds (refused call by call), and for 2-D
    sparse results whose dense rows together would pass ``MAX_SPARSE_RESULT_CELLS`` (a
    drain's joined copy stays as small as one call's may be).

    >>> import scipy.sparse as sp
    >>> [a.tolist() for a in plain_result_arrays([sp.csr_matrix([[0, 1]]),
    ...                                          np.ma.masked_array([1.0, 2.0], mask=[0, 1])])]
    [[[0, 1]], [1.0, nan]]
    """
    cells = 0
    for kind in set(map(type, results)):
        if kind is np.ndarray or not (issubclass(kind, np.ndarray) or is_sparse_kind(kind)):
            return None
    for result in results:
        if is_sparse_kind(result.__class__):
            shape = result.shape  # type: ignore[attr-defined]
            if len(shape) != 2:
                return None
            cells += shape[0] * shape[1]
    if cells > MAX_SPARSE_RESULT_CELLS:
        return None
    try:
        return [to_array(result) for result in results]
    except Exception:  # past the dense bounds, or one scipy will not densify: call by call
        return None


def plain_result(result: object) -> object:
    """A scipy.sparse result, or an ndarray subclass (``np.matrix``, a masked array), as the
    plain array the drain reads it as (:func:`to_array`), so that what is read off a
    call's own result (its labels, the rows a read dropped) is read off that array; any
    other result, and a sparse one past the dense bounds, as it is.

    >>> import scipy.sparse as sp
    >>> plain_result(sp.csr_matrix([[0, 1]])).tolist(), plain_result([1])
    ([[0, 1]], [1])
    """
    cls = result.__class__
    if cls is np.ndarray or not (is_sparse_kind(cls) or isinstance(result, np.ndarray)):
        return result
    try:
        return to_array(result)
    except SparseResultTooLarge:
        return result


def sequence_cells(array: np.ndarray) -> bool:
    """Whether every cell of the 1-D object array `array` (one at least) is a list, a tuple
    or a 1-D array: a row each.

    >>> cells = np.empty(2, dtype=object); cells[:] = [[0.2, 0.8], (0.6, 0.4)]
    >>> sequence_cells(cells), sequence_cells(np.array(["a", [1]], dtype=object))
    (True, False)
    """
    if not array.size or not _is_row(array[0]):  # labels or numbers: told at once
        return False
    return all(map(_is_row, array.tolist()))


def _is_row(cell: object) -> bool:
    return cell.__class__ is list or cell.__class__ is tuple or (
        cell.__class__ is np.ndarray and cell.ndim == 1)


def sequence_rows(array: np.ndarray) -> np.ndarray:
    """`array`, or where it is a 1-D object array whose every cell is a row (a list, a
    tuple or a 1-D array: a Series as ``df.apply(..., axis=1)`` or
    ``pd.Series(list(proba))`` makes) the array the list of those rows makes: read as
    that list is.

    >>> cells = np.empty(2, dtype=object); cells[:] = [[0.2, 0.8], [0.6, 0.4]]
    >>> sequence_rows(cells).shape, sequence_rows(np.array([0.5])).shape
    ((2, 2), (1,))
    """
    if array.dtype.kind == "O" and array.ndim == 1 and sequence_cells(array):
        return to_array(row_lists(array))
    return array


def row_lists(cells: np.ndarray) -> list[list]:
    """The rows of an array of :func:`sequence_cells`, each as a list (an array's as its
    Python values): the list of lists a model returning them as lists gives.

    >>> cells = np.empty(2, dtype=object); cells[:] = [np.array([1.5]), (2.5,)]
    >>> row_lists(cells)
    [[1.5], [2.5]]
    """
    return [cell.tolist() if cell.__class__ is np.ndarray else list(cell)
            for cell in cells.tolist()]


def to_array(obj: object) -> np.ndarray:
    """A numpy view of arrays, lists, pandas objects and (CPU or GPU) tensors. Raises
    SparseResultTooLarge for a scipy.sparse matrix too large to read as dense rows.

    >>> to_array(np.ma.masked_array([1.0, 2.0], mask=[False, True])).tolist()
    [1.0, nan]
    """
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "V":
            obj = _extension_floats_widened(obj)
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
            return _extension_floats_widened(np.asarray(to_numpy()))
        except ValueError:
            # A pyarrow Array with nulls refuses its default zero-copy conversion.
            return _extension_floats_widened(np.asarray(to_numpy(zero_copy_only=False)))
    numpy_method = getattr(obj, "numpy", None)
    if numpy_method is not None and not isinstance(obj, (list, tuple)):  # tf / jax tensors
        return _extension_floats_widened(np.asarray(numpy_method()))
    if _has(obj, "toarray") and _has(obj, "nnz"):
        # A scipy.sparse matrix (a multi-label classifier's predict): np.asarray would make
        # it one object, not its rows.
        shape = tuple(int(n) for n in obj.shape)  # type: ignore[attr-defined]
        if math.prod(shape) > MAX_SPARSE_RESULT_CELLS or (
                len(shape) > 1 and shape[-1] > MAX_SPARSE_RESULT_COLUMNS):
            raise SparseResultTooLarge(shape)
        return np.asarray(obj.toarray())
    try:
        array = _extension_floats_widened(np.asarray(obj))
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


def _extension_floats_widened(array: np.ndarray) -> np.ndarray:
    """An array of a float dtype numpy lacks (ml_dtypes' bfloat16 and float8 types, what
    a JAX array or an ONNX helper gives) as float32, which holds each such value exactly;
    any other array as it is. Their dtype's kind is ``V`` (as a structured array's or raw
    bytes'), so a reader going by the kind would count every value ``unsupported_type``.

    >>> _extension_floats_widened(np.zeros(2, dtype="V1")).dtype.kind
    'V'
    """
    dtype = array.dtype
    if dtype.kind != "V" or dtype.names is not None or not _is_extension_float(dtype):
        return array  # raw bytes, ml_dtypes' int4 and the like
    return array.astype(np.float32)


def _is_extension_float(dtype: np.dtype) -> bool:
    """Whether `dtype` is a float type numpy lacks: numpy 2's ``finfo`` knows ml_dtypes'
    floats, numpy 1's refuses them, and then the ``finfo`` of the module that made the
    type answers (ml_dtypes has one). Never raises.

    >>> _is_extension_float(np.dtype("V2")), _is_extension_float(np.dtype(np.int16))
    (False, False)
    """
    try:
        np.finfo(dtype)
        return True
    except (TypeError, ValueError):
        pass
    module = sys.modules.get(getattr(dtype.type, "__module__", None) or "")
    own_finfo = getattr(module, "finfo", None)
    if module is np or not callable(own_finfo):
        return False
    try:
        own_finfo(dtype)
    except Exception:
        return False
    return True


def is_tensor(obj: object) -> bool:
    """Whether `obj` is a tensor (``detach``, ``cpu`` and ``ndim`` on its class, as torch's
    have), told without importing any framework."""
    return _has(obj, "detach") and _has(obj, "cpu") and _has(obj, "ndim")


def without_missing(obj: object) -> tuple[object, int]:
    """A pandas nullable column (``Int64``, ``boolean``, ...) without its ``pd.NA`` rows,
    in its numpy type, and how many were missing; a polars Series or pyarrow array without
    its nulls likewise; anything else as it is."""
    nulls = arrow_nulls(obj)
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
    if type(obj).__name__ == "Series" and type(obj).__module__.startswith("pandas"):
        # Its array: a Series' isna, mask and to_numpy each build a Series (about 15 us a
        # call), its array's read the same rows without one.
        obj = obj.array
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
    found = categorical_codes(obj)
    if found is None:
        return None
    codes, values = found
    present = codes >= 0  # -1 marks a missing value
    missing = int(codes.size - np.count_nonzero(present))
    return values[codes[present] if missing else codes], missing


def categorical_codes(obj: object) -> tuple[np.ndarray, np.ndarray] | None:
    """A pandas ``category`` Series' (or ``Categorical``'s) codes (-1 for a missing row)
    and its categories, as arrays; None for anything else.

    >>> import pandas as pd
    >>> codes, categories = categorical_codes(pd.Series(["b", None, "a"], dtype="category"))
    >>> codes.tolist(), categories.tolist()
    ([1, -1, 0], ['a', 'b'])
    """
    if not type(obj).__module__.startswith("pandas"):
        return None
    categories = getattr(getattr(obj, "dtype", None), "categories", None)
    if categories is None:
        return None
    # A Series' Categorical (its ``array``), or the Categorical itself: the codes are read
    # off it, not asked of the Series (a missing attribute is a column lookup there) nor
    # through ``.cat``, which builds a Series of them (about 40 us a call together).
    codes = getattr(getattr(obj, "array", obj), "codes", None)
    if codes is None:
        codes = getattr(getattr(obj, "cat", None), "codes", None)
    if codes is None:
        return None
    codes = np.asarray(codes)
    if codes.ndim != 1 or codes.dtype.kind not in "iu":
        return None
    values = to_array(categories)
    return None if values.ndim != 1 else (codes, values)


def arrow_nulls(obj: object) -> int:
    """How many nulls a polars Series or a pyarrow array holds (0 for anything else)."""
    module = type(obj).__module__
    if not module.startswith(("polars", "pyarrow")) or not (
            _has(obj, "drop_nulls") or _has(obj, "drop_null")):
        return 0
    try:
        return int(obj.null_count() if callable(obj.null_count) else obj.null_count)
    except Exception:  # not a column (a polars DataFrame's null_count is a frame)
        return 0


def is_dataframe(obj: object) -> bool:
    """A pandas or polars DataFrame or a pyarrow Table (outputs named by its columns), told
    without any of them."""
    if _is_arrow_table(obj):
        return True
    return _has(obj, "columns") and _has(obj, "to_numpy") and (
        _has(obj, "items") or type(obj).__module__.startswith("polars"))


def _is_arrow_table(obj: object) -> bool:
    return type(obj).__module__.startswith("pyarrow") and _has(obj, "column_names") and \
        _has(obj, "columns")


def frame_columns(frame: object) -> list[tuple[object, object]]:
    """(name, column) of a pandas or polars DataFrame or a pyarrow Table, in column order.
    A Table's ``columns`` are its column arrays, not their names."""
    if _is_arrow_table(frame):
        return list(zip(frame.column_names, frame.columns))
    if hasattr(frame, "items"):
        try:
            # A pandas frame's columns as their arrays, read off its block manager: its
            # items() builds a Series per column, about 7 us each.
            values = frame._mgr.iget_values  # type: ignore[attr-defined]
            return [(name, values(j)) for j, name in enumerate(frame.columns)]
        except Exception:  # a pandas without that method, or another library's frame
            return list(frame.items())
    return [(name, frame[name]) for name in frame.columns]  # a polars DataFrame


def number_columns(columns: object) -> np.ndarray | None:
    """The float matrix of a dict whose every value is a number, or a 1-D list or array of
    numbers, all of one length (a column each, in key order; numbers alone are one row);
    None for any other dict.

    >>> number_columns({"no": [0.2, 0.6], "yes": [0.8, 0.4]}).tolist()
    [[0.2, 0.8], [0.6, 0.4]]
    >>> number_columns({"no": 0.2, "yes": 0.8}).shape, number_columns({"label": ["a"]})
    ((1, 2), None)
    """
    if not columns:
        return None
    arrays = []
    for value in columns.values():  # type: ignore[attr-defined]
        if isinstance(value, (bool, np.bool_)):
            return None
        if isinstance(value, (int, float, np.integer, np.floating)):
            try:
                arrays.append(np.array([float(value)]))
            except OverflowError:  # an integer past the float range: no probability
                return None
            continue
        if not isinstance(value, (list, tuple, np.ndarray)):
            return None
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            return None
        if array.ndim != 1 or array.dtype.kind not in "iuf":
            return None
        arrays.append(array.astype(np.float64))
    if len({array.shape[0] for array in arrays}) != 1:
        return None
    return np.column_stack(arrays)


# Numbers number_columns takes, told by class in one lookup (bool is none of them).
_NUMBER_CLASSES = frozenset({float, int, np.float64, np.float32, np.float16, np.int64,
                             np.int32, np.int16, np.int8, np.uint64, np.uint32, np.uint16,
                             np.uint8})


def number_map_rows(results: Sequence[object]) -> tuple[tuple, np.ndarray, list[int]] | None:
    """(the keys, the float matrix of every result's rows, each result's rows) of many
    results that are each a dict of a number per key, a dict of 1-D columns of numbers
    (:func:`number_columns`), or a list of dicts of a number per key, all with the same keys
    in the same order: ``predict_proba``'s probability per class, call after call. None for
    any other results.

    >>> keys, matrix, sizes = number_map_rows([{"no": 0.2, "yes": 0.8},
    ...                                        [{"no": 0.6, "yes": 0.4}, {"no": 1, "yes": 0}]])
    >>> keys, matrix.tolist(), sizes
    (('no', 'yes'), [[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]], [1, 2])
    """
    first = results[0]
    if first.__class__ is list:
        first = first[0] if first else None
    if first.__class__ is not dict or not first:
        return None
    keys = tuple(first)  # type: ignore[arg-type]
    rows: list[list] = []
    sizes = []
    for result in results:
        before = len(rows)
        for row in (result if result.__class__ is list else (result,)):  # type: ignore[union-attr]
            if row.__class__ is not dict or tuple(row) != keys:
                return None
            values = list(row.values())  # type: ignore[union-attr]
            if all(value.__class__ in _NUMBER_CLASSES for value in values):
                rows.append(values)
            elif result.__class__ is dict:  # a column per key
                matrix = number_columns(row)
                if matrix is None:
                    return None
                rows.extend(matrix.tolist())
            else:
                return None
        if len(rows) == before:
            return None
        sizes.append(len(rows) - before)
    try:
        return keys, np.array(rows, dtype=np.float64), sizes
    except OverflowError:  # an integer past the float range: each call read alone
        return None


def distinct_names(names: Sequence[object]) -> list[str]:
    """Output names as text, each repeat renamed ``a.1``, ``a.2`` as pandas names a file's
    repeated columns on read. A DataFrame or Table may repeat a column name, and keys
    ``1`` and ``"1"`` write the same: under one name the two outputs' values would be
    mixed in one series.

    >>> distinct_names(["a", "b", "a", 1, "1", "a.1"])
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


def structured_fields(obj: object) -> dict[str, np.ndarray] | None:
    """The fields of a numpy structured (or record) array, as a dict of named outputs; None
    for anything else. Read as one value per row they would be objects, each counted as
    unsupported, and the model's outputs lost."""
    if not isinstance(obj, np.ndarray):  # asked first: a DataFrame has no dtype to ask
        return None
    names = obj.dtype.names
    if not names:
        return None
    plain = obj.view(np.ndarray)
    return {name: plain[name] for name in names}


# Fields of a Hugging Face ModelOutput that are no prediction: the model's internals
# (hidden states, attentions, the key/value cache a next step reuses) and a loss against
# labels the caller passed. Read as outputs they would count the cache as unsupported on
# every call and record every hidden activation as a value.
_INTERNAL_FIELDS = frozenset({"cache", "past_key_values", "mems", "loss",
                              "encoder_last_hidden_state", "rope_deltas"})
_INTERNAL_SUFFIXES = ("hidden_states", "attentions", "_loss", "router_logits", "router_probs")


def model_output_fields(result: object) -> dict[str, object] | None:
    """The prediction fields of a Hugging Face ``ModelOutput`` (a dict of the fields the
    model set): ``logits`` (``start_logits``, ``last_hidden_state`` of a base model, ...)
    without the model's internals; of ``generate``'s output with
    ``return_dict_in_generate=True``, its ``sequences`` alone (its token ids). None for
    anything else, told by the class's package, as transformers is never imported here.

    >>> model_output_fields({"logits": 1}) is None
    True
    """
    module = type(result).__module__
    if not module.startswith("transformers.") or not hasattr(result, "keys") or \
            not hasattr(result, "to_tuple"):
        return None
    fields = dict(result.items())  # type: ignore[attr-defined]
    if "sequences" in fields:
        return {"sequences": fields["sequences"]}
    return {name: value for name, value in fields.items()
            if name not in _INTERNAL_FIELDS and not name.endswith(_INTERNAL_SUFFIXES)}


def is_output_list(result: object) -> bool:
    """A tuple or list of arrays / tensors: several outputs, not a matrix of rows."""
    return isinstance(result, (tuple, list)) and bool(result) and all(
        getattr(part, "ndim", 0) >= 1 for part in result)


# Python's exact numbers (a price computed in Decimal, a Fraction) are values, read as floats.
_EXACT_NUMBERS = (decimal.Decimal, fractions.Fraction)
_NUMBERS = (int, float, np.integer, np.floating, *_EXACT_NUMBERS)
_FRACTIONAL = (float, np.floating, *_EXACT_NUMBERS)


def object_floats(flat: np.ndarray) -> np.ndarray | None:
    """An array of Python objects that holds floats (JSON's numbers with ``null``, a list of
    floats with None) as float64 with NaN for each missing value; None when it holds
    anything else, or only integers (class ids), which stay classes.

    >>> object_floats(np.array([1.0, None, 2], dtype=object)).tolist()
    [1.0, nan, 2.0]
    >>> object_floats(np.array([1, None], dtype=object)) is None
    True
    """
    if flat.size and isinstance(flat.flat[0], (str, bytes)):
        return None  # text labels: not a list of a million Python objects to find that out
    has_float = False
    for value in flat.tolist():
        if value is None or is_missing(value):
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMBERS):
            return None
        if isinstance(value, _FRACTIONAL):
            has_float = True
    if not has_float:
        return None
    return np.array([np.nan if v is None or is_missing(v) else to_float(v)
                     for v in flat.tolist()], dtype=np.float64)


def missing_as_nan(array: np.ndarray) -> np.ndarray | None:
    """An array of Python numbers with missing values among them (pd.NA, None) as float64
    with NaN for each missing one; None when it holds anything but numbers.

    >>> missing_as_nan(np.array([[0.5, None]], dtype=object)).tolist()
    [[0.5, nan]]
    """
    flat = []
    for value in array.reshape(-1).tolist():
        if value is None or is_missing(value):
            flat.append(math.nan)
        elif isinstance(value, _NUMBERS) and not isinstance(value, (bool, np.bool_)):
            flat.append(to_float(value))
        else:
            return None
    return np.array(flat, dtype=np.float64).reshape(array.shape)


def to_float(value: int | float) -> float:
    """`value` as a float; an integer past the float range as an infinity of its sign (it
    counts as ``inf``, as any infinite value does); a signalling Decimal NaN as NaN.

    >>> to_float(10**400), to_float(decimal.Decimal("12.50")), to_float(decimal.Decimal("sNaN"))
    (inf, 12.5, nan)
    """
    try:
        return float(value)
    except ValueError:  # Decimal("sNaN") refuses float()
        return math.nan
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def is_missing(value: object) -> bool:
    """pandas' NA and NaT, and a float or Decimal NaN: a missing value in an array of
    objects."""
    if isinstance(value, (float, np.floating)):
        return bool(value != value)
    if isinstance(value, decimal.Decimal):
        return value.is_nan()  # a signalling NaN raises in a comparison
    return type(value).__name__ in ("NAType", "NaTType")


def extend(values: dict[str, np.ndarray], name: str, array: np.ndarray) -> None:
    """`array` appended to the values of output `name` in `values` (its first ones when it
    has none)."""
    previous = values.get(name)
    values[name] = array if previous is None else np.concatenate([previous, array])


def classes_key(classes: Sequence[object] | None) -> tuple | None:
    """A model's `classes` as a dict key, for what is worked out once per set of classes
    (a drain is handed a new list of them each time): each class with its type, as True
    and 1 are equal but name different labels. None for no classes, or an unhashable one
    (a multi-output model's arrays of classes).

    >>> classes_key(["a", "b"]) == classes_key(np.array(["a", "b"]).tolist())
    True
    >>> classes_key([True]) == classes_key([1]), classes_key([np.array([0, 1])])
    (False, None)
    """
    if classes is None:
        return None
    try:
        key = (tuple(classes), tuple(map(type, classes)))
        hash(key)
    except TypeError:
        return None
    return key
