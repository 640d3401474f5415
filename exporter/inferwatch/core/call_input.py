"""What a call hands the model, as the drain will read it: which argument is the input,
and what is copied when the call runs.

A call's result and input are read by the drain, later. A runtime may refill one output
buffer on every call and a caller may reuse one input buffer, so what is small enough is
copied now and the rest read then (docs/shapes.md says what is captured when).

>>> buffer = np.zeros(2); seen = snapshot(buffer); buffer[:] = 1.0
>>> seen.tolist(), call_input((None, {"X": buffer}), 1, True) is buffer
([0.0, 0.0], True)
"""

from __future__ import annotations

import collections
import inspect
import math
import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.frame_values import PANDAS_FRAME_MODULES, captured_block

# Arrays up to this size are copied when the call returns (their bytes, or the array when it
# holds Python objects), so that a runtime refilling one output buffer (or a caller reusing
# one input buffer) is recorded as each call saw it.
# A copy of 64 KiB costs about what reading it in the drain costs; larger arrays are read
# at drain time (docs/shapes.md).
COPY_LIMIT_BYTES = 64 * 1024
_ndarray = np.ndarray
_NBYTES = operator.attrgetter("nbytes")
_SCALARS = frozenset((float, int, bool))  # numpy scalars count their nbytes, below
_SAMPLED_ITEMS = 64  # of a list, sized to stand for the rest
_NEVER_ARRAYS = frozenset({float, int, str, bool, dict, list, tuple, type(None)})


class ArrayLayout:
    """The dtype and shape of a wrapper's small numeric array results, kept in a pending
    call in place of the array while its bytes wait for the drain: the drain reads the
    bytes by these (as it reads them by an array's), and the call holds no array alive.
    One layout stands for every call of its shape, which the drain tells by identity.

    >>> layout = ArrayLayout(np.dtype(np.float64), (2, 3))
    >>> layout.shape, layout.nbytes
    ((2, 3), 48)
    """

    __slots__ = ("dtype", "nbytes", "shape")

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.dtype = dtype
        self.shape = shape
        # What a call of this layout holds (monitor sizes pending calls by it).
        # math.prod: exact, and a few hundred times quicker than np.prod on a tuple.
        self.nbytes = dtype.itemsize * math.prod(shape)


def snapshot(value: Any) -> Any:
    """What the drain will read for `value`: a copy of a small numpy array, and of a dict,
    tuple or list of outputs holding such arrays (:func:`outputs_snapshot`), else itself.

    >>> buffer = np.zeros(3); seen = snapshot(buffer); buffer[:] = 1.0
    >>> seen.tolist()
    [0.0, 0.0, 0.0]
    """
    cls = value.__class__
    if cls in _OUTPUT_CONTAINERS:
        return outputs_snapshot(value)
    # A subclass too (np.matrix, a masked array, a memmap): its copy keeps its class.
    is_array = cls is _ndarray or (cls not in _NEVER_ARRAYS and isinstance(value, _ndarray))
    return value.copy() if is_array and value.nbytes <= COPY_LIMIT_BYTES else value


_OUTPUT_CONTAINERS = frozenset((dict, tuple, list))


def outputs_snapshot(value: dict | tuple | list) -> Any:
    """A dict, tuple or list result as the call returned it: the numpy arrays directly in it
    copied, up to ``COPY_LIMIT_BYTES`` in all (a larger one, or one past that total, is read
    at drain time), in a new container of the same class; the value itself when it holds no
    array. A runtime that refills its output buffers on every call and returns them together
    (``{"logits": logits, "score": score}``, TensorRT's or ONNX Runtime's IO binding) is then
    recorded as each call saw them. A list is looked into only when its first item is an
    array (a runtime's list of outputs): a long list of numbers costs one look.

    >>> logits = np.zeros(2)
    >>> seen = outputs_snapshot({"logits": logits, "label": "cat"}); logits[:] = 1.0
    >>> seen["logits"].tolist(), seen["label"]
    ([0.0, 0.0], 'cat')
    >>> scores = [0.5, 0.25]; outputs_snapshot(scores) is scores
    True
    """
    cls = value.__class__
    budget = COPY_LIMIT_BYTES
    try:
        if cls is dict:
            for part in value.values():  # the values alone first: most dicts hold no array
                if part.__class__ is _ndarray:
                    break
            else:
                return value
            copy = value.copy()
            for key, part in value.items():
                if part.__class__ is _ndarray:
                    size = part.nbytes
                    if size <= budget:
                        budget -= size
                        copy[key] = part.copy()
            return copy
        if cls is list and (not value or value[0].__class__ is not _ndarray):
            return value
        copied = None
        for index, part in enumerate(value):
            if part.__class__ is _ndarray:
                size = part.nbytes
                if size <= budget:
                    budget -= size
                    if copied is None:
                        copied = list(value)
                    copied[index] = part.copy()
        if copied is None:
            return value
        return copied if cls is list else tuple(copied)
    except Exception as exc:  # a dict another thread changed meanwhile: read at drain time
        faults.record("request", exc)
        return value



# Keywords with which a gradient-boosting model's own predict or predict_proba returns
# something other than its predictions: raw scores (margins) in place of probabilities, SHAP
# values or leaf indices (an explanation of the rows, or features for another model). Each
# is recorded under an output of its own, never in the series of the method's predictions
# (SHAP values would pass for probabilities, leaf indices for classes); the call still counts
# as a request, with its latency and batch size. A keyword is read by its truth value, as the
# libraries read it (`output_margin=1` asks for margins). Where a call passes several, the
# first listed names the output.
MARGIN_OUTPUT = "margin"
CONTRIB_OUTPUT = "contrib"
INTERACTIONS_OUTPUT = "interactions"
LEAF_OUTPUT = "leaf"
KEPT_APART_KEYWORDS = (
    ("pred_contrib", CONTRIB_OUTPUT),  # LightGBM
    ("pred_contribs", CONTRIB_OUTPUT),  # xgboost
    ("pred_interactions", INTERACTIONS_OUTPUT),  # xgboost
    ("pred_leaf", LEAF_OUTPUT),  # both
    ("output_margin", MARGIN_OUTPUT),  # xgboost
    ("raw_score", MARGIN_OUTPUT),  # LightGBM
)
LOG_PROBABILITY_OUTPUT = "log_probability"
# Keywords naming by value what to return: xgboost's inplace_predict(predict_type="margin"),
# CatBoost's predict(prediction_type="RawFormulaVal") and its log-probabilities, which
# would otherwise land in the class columns predict_proba fills, as negative probabilities.
KEPT_APART_TYPES = (("predict_type", "margin", MARGIN_OUTPUT),
                    ("prediction_type", "RawFormulaVal", MARGIN_OUTPUT),
                    ("prediction_type", "LogProbability", LOG_PROBABILITY_OUTPUT))
_KEPT_APART_NAMES = frozenset([name for name, _ in KEPT_APART_KEYWORDS] +
                              [name for name, _, _ in KEPT_APART_TYPES])


def kept_apart_output(kwargs: dict) -> str | None:
    """The output a keyword call's result goes to when its keywords asked for margins or an
    explanation; None for the predictions its method makes.

    >>> kept_apart_output({"pred_contrib": True}), kept_apart_output({"output_margin": 1})
    ('contrib', 'margin')
    >>> kept_apart_output({"raw_score": False, "request_id": "r-1"}) is None
    True
    >>> kept_apart_output({"prediction_type": "LogProbability"})
    'log_probability'
    """
    try:
        if _KEPT_APART_NAMES.isdisjoint(kwargs):  # the usual keyword call: one look
            return None
        for name, output in KEPT_APART_KEYWORDS:
            if kwargs.get(name):
                return output
        for name, value, output in KEPT_APART_TYPES:
            if isinstance(kwargs.get(name), str) and kwargs[name] == value:
                return output
    except Exception:  # a value whose truth is undefined (an array): a plain prediction
        return None
    return None


def recorded_result(result: Any, kwargs: dict) -> Any:
    """What a keyword call records: its result, or, when its keywords asked for margins or an
    explanation, the result as the one output named for them (:func:`kept_apart_output`).

    >>> recorded_result(np.array([[3, 7]], dtype=np.int32), {"pred_leaf": True})
    {'leaf': array([[3., 7.]], dtype=float32)}
    """
    output = kept_apart_output(kwargs)
    if output is None:
        return result
    if output == LEAF_OUTPUT and result.__class__ is _ndarray and result.dtype.kind in "iu":
        # Leaf indices as floats (exact below 2**24): whole numbers in an output are read as
        # class labels, and each tree's leaf would become a class series. A fresh array, as
        # `snapshot` makes of a small one.
        return {output: result.astype(np.float32)}
    return {output: snapshot(result)}

def snapshot_input(value: Any) -> Any:
    """What the drain will check for a call's input: as :func:`snapshot`, and a torch
    tensor of at most ``COPY_LIMIT_BYTES`` on the CPU copied as well, since serving code
    often refills one staging tensor per batch. A copy costs about 1.5 us, a tenth of the
    smallest module's forward pass; a tensor on a GPU is read at drain time (copying it
    here would wait for the device), and so is a sparse COO tensor (built anew for each
    call, and without the ``nbytes`` of a dense one). A pandas DataFrame of one numeric
    block up to ``COPY_LIMIT_BYTES`` is captured as its values
    (:class:`~inferwatch.frame_values.FrameValues`), any other pandas or polars DataFrame
    or Series by :func:`frame_snapshot`.

    >>> snapshot_input([1.0, 2.0])
    [1.0, 2.0]
    """
    cls = value.__class__
    if cls is _ndarray:
        return snapshot(value)
    # A dict look-up per call in place of the module tests below (about a tenth of their
    # cost); a class seen for the first time is looked at once.
    try:
        capture = _CAPTURE_BY_CLASS[cls]
    except KeyError:
        capture = _capture_for(cls)
    return value if capture is None else capture(value)


def _capture_for(cls: type) -> Callable[[Any], Any] | None:
    """How :func:`snapshot_input` captures an input of class `cls` (None: as it is),
    remembered for the next call while fewer than ``_CLASSES_REMEMBERED`` are (a class made
    anew per call must not grow the table without bound)."""
    module = cls.__module__
    # One test for every library: a list or a dict pays no more than it did.
    if module.__class__ is not str or not module.startswith(_COPIED_MODULES):
        capture = None
    elif module in PANDAS_FRAME_MODULES and cls.__name__ == "DataFrame":
        capture = _pandas_frame_capture
    elif module.startswith(_FRAME_MODULES):
        def capture(value: Any, module: str = module) -> Any:
            return frame_snapshot(value, module)
    elif module.startswith("numpy"):
        capture = _numpy_capture
    else:
        capture = _tensor_capture
    if len(_CAPTURE_BY_CLASS) < _CLASSES_REMEMBERED:
        _CAPTURE_BY_CLASS[cls] = capture
    return capture


_CAPTURE_BY_CLASS: dict[type, Callable[[Any], Any] | None] = {}
_CLASSES_REMEMBERED = 256


def _pandas_frame_capture(value: Any) -> Any:
    captured = captured_block(value)  # one numeric block: its values, a twentieth the cost
    return frame_snapshot(value, "pandas") if captured is None else captured


def _numpy_capture(value: Any) -> Any:
    # np.matrix, a masked array, a record array: copied like a plain array, keeping their
    # class and mask, as results are.
    return snapshot(value) if isinstance(value, _ndarray) else value


def _tensor_capture(value: Any) -> Any:
    if hasattr(value, "requires_grad"):
        try:
            if value.is_cpu and not value.is_sparse and value.nbytes <= COPY_LIMIT_BYTES:
                return (value.detach() if value.requires_grad else value).clone()
        except Exception as exc:  # a tensor subclass without storage: read at drain time
            faults.record("instrument", exc)
    return value


_FRAME_MODULES = ("pandas", "polars")
_COPIED_MODULES = ("torch", "numpy", *_FRAME_MODULES)
_FRAME_CLASSES = frozenset({"DataFrame", "Series"})


def frame_snapshot(value: Any, module: str) -> Any:
    """A pandas or polars DataFrame or Series as the call saw it. A caller often writes the
    score into its request frame, or cleans it in place, once the model has answered.

    polars and pandas with copy-on-write (always from pandas 3) share the columns with the
    copy until either side writes to them, so a copy costs the same at any size: about
    1-3 us for polars' ``clone``, 9 us for pandas' shallow copy (50 float columns, 1 or 100
    rows). Without copy-on-write a shallow copy shares the blocks an in-place ``fillna``
    writes, so a frame of at most ``COPY_LIMIT_BYTES`` (8 bytes a cell) is copied whole
    (about 11 us); a larger one is shallow-copied (a column added or dropped after the call
    is not counted) and its values read at drain time. Anything else from these libraries
    (an Index, a LazyFrame) is kept as it is: a failed copy is counted, never raised.

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"amount": [10.0]})
    >>> seen = frame_snapshot(frame, "pandas")
    >>> frame.loc[0, "amount"] = 99.0  # the caller writes into its frame afterwards
    >>> float(seen.loc[0, "amount"])
    10.0
    """
    if value.__class__.__name__ not in _FRAME_CLASSES:
        return value
    try:
        if module.startswith("polars"):
            return value.clone()
        pandas = sys.modules["pandas"]
        if copies_on_write(pandas):
            return value.copy(deep=False)
        return value.copy(deep=8 * value.size <= COPY_LIMIT_BYTES)
    except Exception as exc:
        faults.record("instrument", exc)
        return value


def copies_on_write(pandas: Any) -> bool:
    """Whether `pandas` copies a frame's shared columns before writing into them: always
    from pandas 3, in pandas 2 when ``mode.copy_on_write`` is True (read on every call: it
    may be switched at run time).

    >>> import pandas as pd
    >>> copies_on_write(pd) == (int(pd.__version__.split(".")[0]) >= 3
    ...                         or bool(pd.options.mode.copy_on_write is True))
    True
    """
    reader = _COW_READERS.get(pandas.__version__)
    if reader is None:
        reader = _COW_READERS[pandas.__version__] = _copy_on_write_reader(pandas)
    return reader()


_COW_READERS: dict[str, Callable[[], bool]] = {}


def _copy_on_write_reader(pandas: Any) -> Callable[[], bool]:
    try:
        if int(pandas.__version__.split(".")[0]) >= 3:
            return lambda: True
        reader = getattr(pandas._config, "using_copy_on_write", None)  # pandas 2.0 to 2.2
    except Exception:  # a version string of another form: copied as without the option
        reader = None
    if reader is None:  # pandas 1.5: copy-on-write never was the default
        return lambda: False
    return lambda: reader() is True


_SELF_NAMES = ("self", "cls")


def input_position(fn: Callable) -> int:
    """Where a call's input is among its positional arguments: second for a function
    defined in a class body whose first parameter is ``self`` or ``cls`` (a method
    decorated with ``@instrument`` where it is defined, so called with its instance
    first), else first.

    >>> class Service:
    ...     def predict(self, x): return x
    >>> input_position(Service.predict), input_position(Service().predict)
    (1, 0)
    """
    parts = getattr(fn, "__qualname__", "").split(".")
    if is_onnx_run(fn):
        return 1  # run(output_names, input_feed)
    if len(parts) < 2 or parts[-2] == "<locals>" or not inspect.isfunction(fn):
        return 0
    try:
        first = next(iter(inspect.signature(fn).parameters.values()), None)
    except (TypeError, ValueError):
        return 0
    return 1 if first is not None and first.name in _SELF_NAMES and \
        first.kind in _POSITIONAL else 0


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def is_onnx_run(fn: Callable) -> bool:
    """An ONNX Runtime session's ``run(output_names, input_feed)``: its input is the feed,
    and a feed of one input is that input's array."""
    owner = getattr(fn, "__self__", None)
    return inspect.ismethod(fn) and fn.__name__ == "run" and \
        type(owner).__module__.startswith("onnxruntime")


def call_input(args: tuple, position: int, one_feed: bool) -> Any:
    """A call's input: its positional argument at `position` (None without one); for an
    ONNX session's run with a feed of one input, that input's array.

    >>> call_input((None, {"X": [1.0]}), 1, True), call_input(("a",), 1, False)
    ([1.0], None)
    """
    value = args[position] if len(args) > position else None
    if one_feed and value.__class__ is dict and len(value) == 1:
        return next(iter(value.values()))
    return value


def held_bytes(objects: Sequence[Any], kinds: set[type] | None = None) -> int:
    """About how many bytes `objects` (inputs and results kept until the drain) hold.

    numpy arrays count exactly; of every other class one object is sized and stands for
    the others of its class (a drain's inputs are nearly always alike), so a drain of many
    DataFrames sizes one. What cannot be sized counts nothing. `kinds`: the classes of
    `objects`, when the caller has them.

    >>> held_bytes([np.zeros(10), np.zeros(5)])
    120
    >>> held_bytes([[0.5] * 10] * 3) == 3 * held_bytes([[0.5] * 10])
    True
    """
    if not objects:  # a drain without inputs (no reference profile) sizes nothing
        return 0
    kinds = set(map(type, objects)) if kinds is None else kinds
    if len(kinds) == 1:  # the usual drain: one object sized, in C for arrays
        (cls,) = kinds
        if cls is _ndarray:
            return sum(map(_NBYTES, objects))
        if cls in _SCALARS:  # sized as they are, without the container probes below
            return len(objects) * sys.getsizeof(objects[0])
        return len(objects) * _object_bytes(objects[0])
    counts = collections.Counter(map(type, objects))  # in C, as the classes above
    total = 0
    for cls, count in counts.items():
        if cls is _ndarray:
            total += sum(map(_NBYTES, (o for o in objects if o.__class__ is _ndarray)))
        else:
            total += count * _object_bytes(next(o for o in objects if o.__class__ is cls))
    return total


def record_bytes(records: Sequence[Any]) -> int:
    """About how many bytes request records (``RequestRecord``) hold while they wait: the
    record itself and its request id, and its predictions, features, raw inputs and stage
    outputs, sized as :func:`held_bytes` sizes a drain's calls (one object per class stands
    for the others).

    >>> from inferwatch.core.request_record import RequestRecord
    >>> record = RequestRecord(0.1)
    >>> record.prediction = np.zeros(1000)
    >>> record_bytes([record, record]) == 2 * (8000 + RECORD_BYTES)
    True
    """
    # The record and its id: with only these left out, calls made with `request_id=` held
    # 1.6 times max_pending_bytes (uuid ids) to 11 times (ids of a kilobyte) while waiting.
    total = len(records) * RECORD_BYTES
    ids = [record.request_id for record in records if record.request_id is not None]
    if ids:
        total += sum(map(sys.getsizeof, ids))
    for field in (_PREDICTION, _FEATURES, _INPUTS):
        held = [value for value in map(field, records) if value is not None]
        if held:
            total += held_bytes(held)
    outputs = [value for record in records if record.stage_outputs
               for value in record.stage_outputs.values() if value is not None]
    return total + (held_bytes(outputs) if outputs else 0)


# A request record as it waits (its slots, the float of its start, its place in the list).
RECORD_BYTES = 256
_PREDICTION = operator.attrgetter("prediction")
_FEATURES = operator.attrgetter("features")
_INPUTS = operator.attrgetter("inputs")


def _object_bytes(value: Any, depth: int = 0) -> int:
    """The bytes one kept object holds, for the containers inputs and results come in."""
    try:
        if isinstance(value, _ndarray):  # a subclass
            return int(value.nbytes)
        if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor
            return int(value.element_size() * value.nelement())
        if hasattr(value, "memory_usage") and hasattr(value, "columns"):  # pandas DataFrame
            return int(value.memory_usage(index=True, deep=False).sum())
        if hasattr(value, "estimated_size"):  # polars
            return int(value.estimated_size())
        if hasattr(value, "nbytes"):  # a pandas Series, an Arrow array
            return int(value.nbytes)
        if hasattr(value, "indptr") and hasattr(value, "data"):  # scipy.sparse CSR / CSC
            return int(value.data.nbytes + value.indices.nbytes + value.indptr.nbytes)
        if isinstance(value, (list, tuple)) and depth < 2:  # rows of numbers, one level down
            sample = value[:_SAMPLED_ITEMS]
            items = sum(_object_bytes(item, depth + 1) for item in sample)
            return sys.getsizeof(value) + items * len(value) // max(1, len(sample))
        return sys.getsizeof(value)
    except Exception:  # a hostile or half-built object: it counts nothing rather than fail
        return 0
