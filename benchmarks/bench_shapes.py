"""instrument()'s cost per call shape against the naive prometheus_client wrapper.

One row per shape: a float function, a numpy scalar, ``predict`` on 1 and 100 rows,
``predict_proba`` on 1 and 100 rows, dict outputs, a dict of a label and a score (alone,
and in a list, as a pipeline answers), a label beside its map of class probabilities, a
tuple and a list of output arrays, a 50-feature reference, and 1, 10 and 100 models, what
an idle model costs the background pass and a scrape's drain, and
one 10-million-row batch (how long the monitor lock is held at a time), also called with
``request_id=``. For each: the hot-path overhead, the total (hot path, a drain every 1,000 calls
as the background drain does at 1,000 calls/s, and a scrape every 15,000 calls) as ratios
of the naive wrapper's, and the drain's own cost per call, so that a slow shape shows at
once; and each shape's drain cost per call with ``request_id=`` (the delayed-ground-truth
flow) beside its cost without, so that a shape the request path reads call by call shows
too, and for three one-row shapes the whole cost of that flow (hot path and drain) against
the naive wrapper. Everything is measured alternately in one process (``_rounds``); a ratio is the
median of its rounds' own ratios (a slow spell of the machine slows a round alike), the
times beside it are the medians of the rounds.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from benchmarks.bench_hot_path import (
    SCRAPE_EVERY_CALLS,
    _naive,
    _paired_overhead_ratio,
    _rounds,
    _scrape,
)
from benchmarks.common import Row, fmt_seconds

DRAIN_EVERY_CALLS = 1000
HOT_TARGET = 0.3
TOTAL_TARGET = 0.5
MANY_MODELS_TARGET = 1.0
HUGE_BATCH_ROWS = 10_000_000
HUGE_WAIT_TARGET = 0.1  # the longest wait for the monitor lock, as a share of the drain


def _series(values: list, dtype: tuple | str | None = None) -> object:
    """A pandas Series of `values`; with `dtype`, of that dtype, or a categorical of those
    categories."""
    import pandas as pd

    return pd.Series(values, dtype=pd.CategoricalDtype(dtype) if isinstance(dtype, tuple)
                     else dtype)


def _label_frame() -> object:
    import pandas as pd

    return pd.DataFrame({"label": pd.Series(["fraud"], dtype="str"), "score": [0.93]})


def _frame(values: np.ndarray) -> object:
    import pandas as pd

    return pd.DataFrame(values, columns=[f"f{i}" for i in range(values.shape[1])])


class _Model:
    """A model whose work is free: what is left is the cost of recording its result."""

    def __init__(self, result: object, proba: object = None) -> None:
        self.result = result
        self.proba = proba

    def predict(self, x: object) -> object:
        return self.result

    def predict_proba(self, x: object) -> object:
        return self.proba


def _shapes() -> dict[str, tuple[Callable[[], tuple[Callable, dict]], object]]:
    """name -> (make(): (the callable to wrap, instrument options), the call's input)."""
    rng = np.random.default_rng(0)
    one, hundred = rng.random((1, 2)), rng.random((100, 2))
    proba_one = np.array([[0.3, 0.7]])
    proba_hundred = np.column_stack([hundred[:, 0], 1 - hundred[:, 0]])
    features = rng.normal(size=(1, 50))

    def reference():
        from inferwatch.quality.reference import Reference

        return Reference.from_data(rng.normal(size=(2000, 50)))

    def frame_reference():
        from inferwatch.quality.reference import Reference

        return Reference.from_data(_frame(rng.normal(size=(2000, 5))))

    def fn_of(value):
        def fn(x):
            return value
        return fn

    return {
        "float function": (lambda: (fn_of(0.5), {}), 1),
        "numpy scalar": (lambda: (fn_of(np.float64(0.5)), {}), 1),
        "predict, 1 row": (lambda: (_Model(one[:, 0]).predict, {}), one),
        "predict, 100 rows": (lambda: (_Model(hundred[:, 0]).predict, {}), hundred),
        # A classifier fit on string labels: predict returns a numpy str array.
        "predict, 1 row, text class": (lambda: (_Model(np.array(["fraud"])).predict,
                                                {"classes": ["legit", "fraud"]}), one),
        "predict, 100 rows, text class": (
            lambda: (_Model(np.array(["legit", "fraud"])[(hundred[:, 0] > 0.8).astype(int)]
                            ).predict, {"classes": ["legit", "fraud"]}), hundred),
        "predict_proba, 1 row": (lambda: (_Model(None, proba_one).predict_proba, {}), one),
        "predict_proba, 100 rows": (
            lambda: (_Model(None, proba_hundred).predict_proba, {}), hundred),
        "dict outputs": (lambda: (fn_of({"price": 10.0, "eta": 30.0}), {}), 1),
        # A classifier served as a function: its label and its confidence.
        "dict of a label and a score": (
            lambda: (fn_of({"label": "fraud", "score": 0.93}),
                     {"classes": ["legit", "fraud"]}), 1),
        # A classifier served as a function: its label and its class probabilities.
        "dict of a label and a probability map": (
            lambda: (fn_of({"label": "fraud", "probability": {"legit": 0.07, "fraud": 0.93}}),
                     {}), 1),
        # A Hugging Face pipeline's answer to one text.
        "list of one label dict (a pipeline's)": (
            lambda: (fn_of([{"label": "POSITIVE", "score": 0.998}]),
                     {"classes": ["NEGATIVE", "POSITIVE"]}), 1),
        "list of one score": (lambda: (fn_of([0.5]), {}), 1),
        "tuple of two outputs": (lambda: (fn_of((np.array([10.0]), np.array([30.0]))), {}), 1),
        # A runtime's list of outputs (ONNX Runtime's session.run), each a 1-row array.
        "list of two output arrays": (
            lambda: (fn_of([np.array([10.0]), np.array([30.0])]), {}), 1),
        "pandas Series, 1 row": (lambda: (_Model(_series([0.5])).predict, {}), one),
        # A label column of a frame, or labels cast to the model's classes per request.
        "pandas category Series, 1 row": (
            lambda: (_Model(_series(["fraud"], dtype=("legit", "fraud"))).predict, {}), one),
        # A column of a frame that convert_dtypes() made: pandas' nullable integers.
        "pandas Int64 Series, 1 row": (
            lambda: (_Model(_series([1], dtype="Int64")).predict, {}), one),
        # An MLflow pyfunc's answer: a frame of a label and a score.
        "pandas DataFrame of a label and a score, 1 row": (
            lambda: (_Model(_label_frame()).predict, {"classes": ["legit", "fraud"]}), one),
        # pandas 3's Series.values of text: an Arrow-backed array.
        "pandas text array, 1 row": (
            lambda: (_Model(_series(["fraud"]).array).predict,
                     {"classes": ["legit", "fraud"]}), one),
        "float function, 50-feature reference": (
            lambda: (fn_of(0.5), {"reference": reference()}), features),
        # A scikit-learn pipeline's usual input: a one-row DataFrame per request.
        "float function, 1-row DataFrame, 5-feature reference": (
            lambda: (fn_of(0.5), {"reference": frame_reference()}), _frame(features[:, :5])),
    }


def _instrumented(fn: Callable, options: dict, monitors: object) -> Callable:
    """`fn` instrumented as users do: a model's method is called on the instrumented model
    (a bound method instrumented on its own would be a plain function to it, and
    predict_proba's rows would not be read as probabilities)."""
    from inferwatch.core.instrument import instrument

    if inspect.ismethod(fn):
        model = instrument(fn.__self__, name="bench", version="1", registry=monitors, **options)
        return getattr(model, fn.__name__)
    return instrument(fn, name="bench", version="1", registry=monitors, **options)


def _one_shape(name: str, make: Callable, x: object, calls: int, rounds: int) -> list[Row]:
    from inferwatch.core.registry import Registry
    from inferwatch.serving.bridge import InferwatchCollector

    fn, options = make()
    monitors = Registry(drain_interval=3600)
    prom = CollectorRegistry()
    prom.register(InferwatchCollector(monitors))
    naive_registry = CollectorRegistry()
    naive = _naive(fn, naive_registry)
    wrapped = _instrumented(fn, options, monitors)
    drain_seconds: list[float] = []

    def loop(target: Callable, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            target(x)
        return time.perf_counter() - start

    def bare() -> float:
        return loop(fn, calls) / calls

    def naive_hot() -> float:
        return loop(naive, calls) / calls

    def iw_hot() -> float:
        elapsed = loop(wrapped, calls)
        monitors.drain()
        return elapsed / calls

    def naive_total() -> float:
        start = time.perf_counter()
        for done in range(0, calls, SCRAPE_EVERY_CALLS):
            loop(naive, min(SCRAPE_EVERY_CALLS, calls - done))
            generate_latest(naive_registry)
        return (time.perf_counter() - start) / calls

    clock = [0.0]  # the background drain's monotonic clock: a pass a second

    def iw_total() -> float:
        start = time.perf_counter()
        drained = 0.0
        for done in range(0, calls, SCRAPE_EVERY_CALLS):
            chunk = min(SCRAPE_EVERY_CALLS, calls - done)
            for part in range(0, chunk, DRAIN_EVERY_CALLS):
                loop(wrapped, min(DRAIN_EVERY_CALLS, chunk - part))
                t = time.perf_counter()
                clock[0] += 1.0
                monitors.due_pass(clock[0])  # the drain thread's pass
                drained += time.perf_counter() - t
            _scrape(prom)
        drain_seconds.append(drained / calls)
        return (time.perf_counter() - start) / calls

    results = _rounds({"bare": bare, "naive_hot": naive_hot, "iw_hot": iw_hot,
                       "naive_total": naive_total, "iw_total": iw_total}, rounds)
    monitors.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    naive_overhead = medians["naive_hot"] - medians["bare"]
    hot = _paired_overhead_ratio(results, "iw_hot", "naive_hot")
    total = _paired_overhead_ratio(results, "iw_total", "naive_total")
    drain = sorted(drain_seconds)[len(drain_seconds) // 2]
    return [
        Row(f"{name}: hot path", fmt_seconds(medians["iw_hot"] - medians["bare"]),
            fmt_seconds(naive_overhead), hot, f"<= {HOT_TARGET}x", hot <= HOT_TARGET),
        Row(f"{name}: total (drain {fmt_seconds(drain)}/call)",
            fmt_seconds(medians["iw_total"] - medians["bare"]),
            fmt_seconds(medians["naive_total"] - medians["bare"]), total,
            f"<= {TOTAL_TARGET}x", total <= TOTAL_TARGET),
    ]


def _many_models(models: int, calls_per_drain: int, rounds: int,
                 probabilities: bool = False, called: int | None = None) -> Row:
    """`models` float models (or binary classifiers' ``predict_proba`` on one row), each
    called `calls_per_drain` times between two drains; with `called`, only that many of
    them (skewed traffic: the rest were called once, before the timed rounds, and every
    scrape still serves their series)."""
    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry
    from inferwatch.serving.bridge import InferwatchCollector

    if probabilities:
        model = _Model(None, np.array([[0.3, 0.7]]))
        fn = model.predict_proba
    else:
        def fn(x):
            return 0.5

    monitors = Registry(drain_interval=3600)
    prom = CollectorRegistry()
    prom.register(InferwatchCollector(monitors))
    naive_registry = CollectorRegistry()
    from prometheus_client import Counter, Histogram

    hist = Histogram("naive_latency_seconds", "latency", ["model"], registry=naive_registry)
    count = Counter("naive_requests", "requests", ["model"], registry=naive_registry)
    naive, wrapped = [], []
    for m in range(models):
        naive.append(_naive_labelled(fn, hist.labels(str(m)).observe, count.labels(str(m)).inc))
        if probabilities:  # the model instrumented, as users do: its rows are probabilities
            wrapped.append(instrument(model, name=f"m{m}", version="1",
                                      registry=monitors).predict_proba)
        else:
            wrapped.append(instrument(fn, name=f"m{m}", version="1", registry=monitors))
    busy = models if called is None else called
    for one_naive, one_wrapped in zip(naive, wrapped):  # every series exists from the start
        one_naive(0)
        one_wrapped(0)
    drains = max(1, SCRAPE_EVERY_CALLS // (busy * calls_per_drain))
    calls = drains * busy * calls_per_drain

    def run(targets: list, drain: Callable[[], None], scrape: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(drains):
            for target in targets:
                for i in range(calls_per_drain):
                    target(i)
            drain()
        scrape()
        return (time.perf_counter() - start) / calls

    bare_targets = [fn] * busy
    naive, wrapped = naive[:busy], wrapped[:busy]
    drains_seconds: list[float] = []

    clock = [0.0]

    def timed_drain() -> None:
        # The background drain's pass, once a second of its monotonic clock: it folds a
        # monitor's calls once drain_min_calls wait or they waited drain_max_wait_seconds;
        # the scrape folds the rest.
        start = time.perf_counter()
        clock[0] += 1.0
        monitors.due_pass(clock[0])  # the drain thread's pass
        drains_seconds.append(time.perf_counter() - start)

    results = _rounds({
        "bare": lambda: run(bare_targets, lambda: None, lambda: None),
        "naive": lambda: run(naive, lambda: None, lambda: generate_latest(naive_registry)),
        "iw": lambda: run(wrapped, timed_drain, lambda: _scrape(prom)),
    }, rounds)
    per_monitor = statistics.fmean(drains_seconds) / models  # deferring passes are cheap
    monitors.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    naive_overhead = medians["naive"] - medians["bare"]
    ratio = _paired_overhead_ratio(results, "iw", "naive")
    target = MANY_MODELS_TARGET if models >= 100 else TOTAL_TARGET
    shape = "predict_proba on 1 row" if probabilities else "float"
    which = "each" if called is None else f"each for {called} of them"
    return Row(f"{models} {shape} model(s), {calls_per_drain} calls {which} per drain: total "
               "(background "
               f"pass {fmt_seconds(per_monitor)}/monitor, mean)",
               fmt_seconds(medians["iw"] - medians["bare"]), fmt_seconds(naive_overhead),
               ratio, f"<= {target}x", ratio <= target)


def _idle_versions(versions: int, rounds: int) -> list[Row]:
    """What a model version with nothing waiting costs the background pass (a look a second)
    and a scrape's drain, each per version over `versions` idle ones, beside one call of
    the naive wrapper: most versions of a deployment of many are idle at any moment."""
    from prometheus_client import Counter, Histogram

    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry

    def fn(x):
        return 0.5

    monitors = Registry(drain_interval=3600)
    for m in range(versions):  # models of one version each: a model's versions are capped
        instrument(fn, name=f"m{m}", version="1", registry=monitors)(0)
    monitors.drain()
    assert len(monitors.monitors()) == versions
    registry = CollectorRegistry()
    naive = _naive_labelled(fn, Histogram("naive_latency_seconds", "latency", ["model"],
                                          registry=registry).labels("m").observe,
                            Counter("naive_requests", "requests", ["model"],
                                    registry=registry).labels("m").inc)
    clock = [0.0]

    def passes() -> float:
        start = time.perf_counter()
        for _ in range(100):
            clock[0] += 1.0
            monitors.due_pass(clock[0])  # the drain thread's pass
        return (time.perf_counter() - start) / (100 * versions)

    def drains() -> float:
        start = time.perf_counter()
        for _ in range(20):
            monitors.drain()
        return (time.perf_counter() - start) / (20 * versions)

    def naive_calls() -> float:
        start = time.perf_counter()
        for i in range(2000):
            naive(i)
        return (time.perf_counter() - start) / 2000

    results = _rounds({"pass": passes, "drain": drains, "naive": naive_calls}, rounds)
    monitors.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    return [Row(f"{versions} idle model versions: {what}, per version", fmt_seconds(medians[key]),
                f"{fmt_seconds(medians['naive'])} (one call of the naive wrapper)",
                medians[key] / medians["naive"], "(decomposition)", True)
            for key, what in (("pass", "the background pass's look"),
                              ("drain", "a scrape's drain"))]


def _naive_labelled(fn: Callable, observe: Callable, inc: Callable) -> Callable:
    """The naive wrapper of one model's series of labelled metrics."""
    def one(x):
        start = time.perf_counter()
        result = fn(x)
        observe(time.perf_counter() - start)
        inc()
        return result
    return one


def _huge_batch(kind: str, rows: int, request_id: str | None = None, amid: int = 0) -> Row:
    """One call returning `rows` labels, values or class probabilities (or given `rows` of
    input, which a reference profile checks): how long a thread taking the monitor's lock
    (a scrape, a ``record_outcome`` caller) waits at most while the drain folds it. With
    `request_id`, the call takes the slow path (its rows kept for the outcome join). With
    `amid`, that many one-row calls come first, in the same drain (a service's traffic
    around a batch job's call), and the huge call takes a millisecond, as making that many
    rows takes any model (the function returning the batch as it is takes none)."""
    import threading

    from inferwatch.core.instrument import instrument
    from inferwatch.core.pending_calls import SLICE_ROWS
    from inferwatch.core.registry import Registry

    def identity(x):
        if amid and len(x) > 1:
            time.sleep(1e-3)
        return x

    monitors = Registry(drain_interval=3600)
    if kind == "10-feature inputs, reference":  # each row checked against the profile
        from inferwatch.quality.reference import Reference

        rng = np.random.default_rng(0)
        wrapped = instrument(lambda x: x[:, 0], name="huge", version="1", registry=monitors,
                             reference=Reference.from_data(rng.normal(size=(5000, 10))))
        batch = rng.normal(size=(rows, 10))
    elif kind == "two float outputs (a dict)":  # {"price": prices, "eta": etas}
        rng = np.random.default_rng(0)
        outputs = {"price": rng.random(rows), "eta": rng.random(rows) * 100}
        wrapped = instrument(lambda x: outputs, name="huge", version="1", registry=monitors)
        batch = None
    elif kind == "two label outputs (a table)":  # a MultiOutputClassifier's predict
        wrapped = instrument(identity, name="huge", version="1", registry=monitors)
        batch = np.column_stack([np.arange(rows) % 3, np.arange(rows) % 2])
    elif kind == "rows of label dicts (a pipeline's)":  # [{"label": ..., "score": ...}]
        wrapped = instrument(identity, name="huge", version="1", registry=monitors,
                             classes=["cat", "dog", "bird"])
        names = ["cat", "dog", "bird"]
        batch = [{"label": names[i % 3], "score": 0.5} for i in range(rows)]
    elif kind == "text labels beside scores (a dict)":  # {"label": labels, "score": scores}
        wrapped = instrument(identity, name="huge", version="1", registry=monitors,
                             classes=["cat", "dog", "bird"])
        batch = {"label": np.array(["cat", "dog", "bird"])[np.arange(rows) % 3],
                 "score": np.random.default_rng(0).random(rows)}
    elif kind == "class probabilities per output":  # a MultiOutputClassifier's predict_proba
        rng = np.random.default_rng(0)
        first, second = rng.random(rows), rng.random(rows)
        model = instrument(_Model(None, [np.column_stack([first, 1 - first]),
                                         np.column_stack([second, 1 - second])]),
                           name="huge", version="1", registry=monitors)
        wrapped = model.predict_proba
        batch = None
    elif kind == "class probabilities":  # predict_proba of a binary classifier
        scores = np.random.default_rng(0).random(rows)
        model = instrument(_Model(None, np.column_stack([scores, 1 - scores])), name="huge",
                           version="1", registry=monitors)
        wrapped = model.predict_proba
        batch = None
    elif kind == "text class labels":  # a classifier fit on text labels ("cat", "dog")
        wrapped = instrument(identity, name="huge", version="1", registry=monitors)
        batch = np.array(["cat", "dog", "bird"])[np.arange(rows) % 3]
    elif kind == "text labels as Python objects":  # fit on a pandas text column
        wrapped = instrument(identity, name="huge", version="1", registry=monitors)
        batch = np.array(["cat", "dog", "bird"], dtype=object)[np.arange(rows) % 3]
    elif kind == "pandas text Series":  # pandas 3's own dtype for text: held by pyarrow
        import pandas as pd

        wrapped = instrument(identity, name="huge", version="1", registry=monitors)
        batch = pd.Series(np.array(["cat", "dog", "bird"])[np.arange(rows) % 3],
                          dtype="string[pyarrow]")
    elif kind == "categorical Series":
        import pandas as pd

        wrapped = instrument(identity, name="huge", version="1", registry=monitors)
        batch = pd.Series(pd.Categorical.from_codes(np.arange(rows) % 3,
                                                    ["cat", "dog", "bird"]))
    else:
        wrapped = instrument(identity, name="huge", version="1", registry=monitors)
        batch = np.arange(rows) % 7 if kind == "class labels" else \
            np.random.default_rng(0).random(rows)
    monitor = monitors.monitor("huge", "1")
    for number in range(amid):
        if request_id is None:
            wrapped(batch[:1])
        else:
            wrapped(batch[:1], request_id=f"{request_id}-{number}")
    if request_id is None:
        wrapped(batch)
    else:
        wrapped(batch, request_id=request_id)
    waits: list[float] = []
    done = threading.Event()

    def scrape_like() -> None:
        while not done.is_set():
            start = time.perf_counter()
            with monitor._lock:
                pass
            waits.append(time.perf_counter() - start)
            time.sleep(0.001)

    thread = threading.Thread(target=scrape_like)
    thread.start()
    start = time.perf_counter()
    monitor.drain()
    drained = time.perf_counter() - start
    done.set()
    thread.join()
    monitors.close()
    longest = max(waits, default=0.0)
    # A wait spans at most about one slice; a small batch has few slices to share it.
    target = max(HUGE_WAIT_TARGET, 2 * SLICE_ROWS / rows)
    called = ("" if request_id is None else ", request_id=") + (
        f", amid {amid} one-row calls" if amid else "")
    return Row(f"{rows:,}-row batch of {kind}{called}: longest lock wait (drain "
               f"{drained * 1e9 / rows:.0f} ns/row)", fmt_seconds(longest),
               fmt_seconds(drained) + " (whole drain)", longest / drained,
               f"<= {target:.2g}", longest / drained <= target)


def _input_shapes(calls: int) -> list[Row]:
    """What the drain costs a call for each shape of input a reference profile checks, so
    that the next slow shape shows at once (a DataFrame per call cost 190 us, a 1-D row or a
    list of rows 32 us, before they were stacked with the drain's other rows)."""
    import pandas as pd

    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry
    from inferwatch.quality.reference import Reference

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(5)]
    reference = Reference.from_data(pd.DataFrame(rng.normal(size=(2000, 5)), columns=names))
    row = rng.normal(size=5)
    shapes = {
        "2-D array of one row": row.reshape(1, -1),
        "1-D row": row,
        "row dict": dict(zip(names, row.tolist())),
        "pandas Series of a row (df.iloc[i])": pd.Series(dict(zip(names, row.tolist()))),
        "list of one row dict": [dict(zip(names, row.tolist()))],
        "list of one row": [row.tolist()],
        "one-row DataFrame": pd.DataFrame([row], columns=names),
        "one-row DataFrame that names nothing (pd.DataFrame(row))": pd.DataFrame([row]),
        "one-row DataFrame of other names (a schema break)": pd.DataFrame(
            [row], columns=[f"g{i}" for i in range(5)]),
        "dict of columns": {name: [value] for name, value in zip(names, row.tolist())},
    }
    # The usual tabular input: a text category beside numbers, against its own reference.
    mixed = pd.DataFrame({**{name: rng.normal(size=2000) for name in names[:4]},
                          "channel": rng.choice(["web", "app", "store"], 2000)})
    references = {"one-row DataFrame of four numbers and a text category": Reference.from_data(
        mixed, categorical=["channel"])}
    shapes["one-row DataFrame of four numbers and a text category"] = mixed.iloc[:1].copy()
    references["object array of a row of four numbers and a text category"] = \
        references["one-row DataFrame of four numbers and a text category"]
    shapes["object array of a row of four numbers and a text category"] = \
        mixed.iloc[:1].to_numpy(dtype=object)
    references["dict of columns of four numbers and a text category (JSON)"] = \
        references["one-row DataFrame of four numbers and a text category"]
    shapes["dict of columns of four numbers and a text category (JSON)"] = {
        name: column.tolist() for name, column in mixed.iloc[:1].items()}
    costs = {}
    for label, x in shapes.items():
        monitors = Registry(drain_interval=3600)
        wrapped = instrument(lambda _: 0.5, name="inputs", version="1", registry=monitors,
                             reference=references.get(label, reference))
        monitor = monitors.monitor("inputs", "1")
        spent = []
        for _ in range(5):
            for _ in range(calls):
                wrapped(x)
            start = time.perf_counter()
            monitor.drain()
            spent.append((time.perf_counter() - start) / calls)
        monitors.close()
        costs[label] = min(spent)
    return [Row(f"  drain per call of a 5-feature reference's input: {label}",
                fmt_seconds(cost), fmt_seconds(costs["2-D array of one row"]) + " (2-D row)",
                cost / costs["2-D array of one row"], "(decomposition)", True)
            for label, cost in costs.items()]


def _request_path_shapes() -> dict[str, tuple[Callable[[], tuple[Callable, dict]], object]]:
    """The shapes of the table above, and a few more that only the request path reads
    apart."""
    def fn_of(value):
        def fn(x):
            return value
        return fn

    return {
        **_shapes(),
        # A classifier served as a function returning ``clf.predict(x)[0]``.
        "numpy integer label": (lambda: (fn_of(np.int64(1)), {"classes": [0, 1]}), 1),
        "text label": (lambda: (fn_of("fraud"), {"classes": ["legit", "fraud"]}), 1),
        "list of one text label": (lambda: (fn_of(["fraud"]), {"classes": ["legit", "fraud"]}),
                                   1),
        "tuple of two scores": (lambda: (fn_of((0.25, 0.75)), {}), 1),
        "list of one labelled probability map": (
            lambda: (fn_of([{"label": "fraud", "probability": {"legit": 0.07, "fraud": 0.93}}]),
                     {}), 1),
        "None": (lambda: (fn_of(None), {}), 1),
    }


def _request_path_drains(calls: int, rounds: int) -> list[Row]:
    """The drain's cost per call of each shape called with ``request_id=`` (the
    delayed-ground-truth flow, whose drain also keeps each call's rows for its outcome),
    beside the same shape's without: a shape read call by call on that path shows at once.
    """
    from inferwatch.core.registry import Registry

    rows = []
    for name, (make, x) in _request_path_shapes().items():
        costs = {}
        for request_ids in (False, True):
            fn, options = make()
            monitors = Registry(drain_interval=3600)
            wrapped = _instrumented(fn, options, monitors)
            spent = []
            for round_ in range(rounds):
                for i in range(calls):
                    if request_ids:
                        wrapped(x, request_id=f"r-{round_}-{i}")
                    else:
                        wrapped(x)
                start = time.perf_counter()
                monitors.drain()
                spent.append((time.perf_counter() - start) / calls)
            monitors.close()
            costs[request_ids] = statistics.median(spent)
        rows.append(Row(f"  drain per call with request_id=: {name}", fmt_seconds(costs[True]),
                        f"{fmt_seconds(costs[False])} without", costs[True] / costs[False],
                        "(decomposition)", True))
    return rows


def _request_path_costs(calls: int, rounds: int) -> list[Row]:
    """The delayed-ground-truth flow's whole cost per call (``request_id=`` on every call:
    the request path's hot path, then its drain, which keeps each call's rows for its
    outcome) for the shapes a service serves one row at a time, against the naive
    wrapper's overhead: what the flow the README shows costs beside the fast path."""
    shapes = _shapes()
    return [_request_path_cost(name, *shapes[name], calls, rounds)
            for name in ("float function", "predict, 1 row", "predict_proba, 1 row")]


def _request_path_cost(name: str, make: Callable, x: object, calls: int, rounds: int) -> Row:
    from inferwatch.core.registry import Registry

    fn, options = make()
    monitors = Registry(drain_interval=3600)
    wrapped = _instrumented(fn, options, monitors)
    naive = _naive(fn, CollectorRegistry())
    drained: list[float] = []
    taken = [0]

    def loop(target: Callable) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            target(x)
        return (time.perf_counter() - start) / calls

    def with_ids() -> float:
        taken[0] += 1
        ids = [f"r-{taken[0]}-{i}" for i in range(calls)]  # fresh ids: no duplicates
        start = time.perf_counter()
        for request_id in ids:
            wrapped(x, request_id=request_id)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        monitors.drain()
        drained.append((time.perf_counter() - start) / calls)
        return elapsed / calls

    results = _rounds({"bare": lambda: loop(fn), "naive": lambda: loop(naive),
                       "iw": with_ids}, rounds)
    monitors.close()
    hot = _paired_overhead_ratio(results, "iw", "naive")
    medians = {key: statistics.median(values) for key, values in results.items()}
    drain = statistics.median(drained)
    overhead = medians["iw"] - medians["bare"]
    naive_overhead = medians["naive"] - medians["bare"]
    return Row(f"  request_id= on every call, hot path / drain per call: {name}",
               f"{fmt_seconds(overhead)} / {fmt_seconds(drain)}",
               fmt_seconds(naive_overhead) + " (naive wrapper)", hot,
               f"(decomposition; {(overhead + drain) / naive_overhead:.2f}x with the drain)",
               True)


def run(quick: bool = False) -> list[Row]:
    calls = 15_000 if quick else 45_000
    rounds = 3 if quick else 7
    rows: list[Row] = []
    for name, (make, x) in _shapes().items():
        rows.extend(_one_shape(name, make, x, calls, rounds))
    for probabilities in (False, True):
        for models in (1, 10, 100):
            rows.append(_many_models(models, 10, rounds, probabilities))
        # Traffic as many deployments see it: a few models busy, the rest idle and scraped.
        rows.append(_many_models(100, 10, rounds, probabilities, called=10))
    rows.extend(_idle_versions(100, rounds))
    for kind in ("class labels", "float values"):
        rows.append(_huge_batch(kind, HUGE_BATCH_ROWS // (10 if quick else 1)))
    # The delayed-ground-truth flow: the request path, which also keeps the rows its
    # outcome join can hold (made Python objects and sized in the first slice's hold).
    rows.append(_huge_batch("class labels", HUGE_BATCH_ROWS // (10 if quick else 1),
                            request_id="batch-1"))
    rows.append(_huge_batch("text class labels", HUGE_BATCH_ROWS // (10 if quick else 5),
                            request_id="batch-1"))
    for kind in ("text labels as Python objects", "pandas text Series", "categorical Series"):
        for request_id in (None, "batch-1"):
            rows.append(_huge_batch(kind, HUGE_BATCH_ROWS // (10 if quick else 5),
                                    request_id=request_id))
    rows.append(_huge_batch("class probabilities", HUGE_BATCH_ROWS // (10 if quick else 5),
                            request_id="batch-1"))
    rows.append(_huge_batch("10-feature inputs, reference",
                            HUGE_BATCH_ROWS // (10 if quick else 5)))
    for request_id in (None, "batch-1"):  # a result of several outputs, on both paths
        rows.append(_huge_batch("two float outputs (a dict)",
                                HUGE_BATCH_ROWS // (10 if quick else 5), request_id=request_id))
    # Read whole with the lock let go: no slice reads them as the whole is read.
    for kind in ("rows of label dicts (a pipeline's)", "text labels beside scores (a dict)"):
        for request_id in (None, "batch-1"):
            rows.append(_huge_batch(kind, HUGE_BATCH_ROWS // (10 if quick else 5),
                                    request_id=request_id))
    # A batch job's call amid a service's one-row calls, in one drain of more than 16 calls.
    for kind in ("rows of label dicts (a pipeline's)", "pandas text Series"):
        for request_id in (None, "batch-1"):
            rows.append(_huge_batch(kind, HUGE_BATCH_ROWS // (10 if quick else 5),
                                    request_id=request_id, amid=20))
    for request_id in (None, "batch-1"):  # sliced on the fast path, read apart with an id
        rows.append(_huge_batch("class probabilities per output",
                                HUGE_BATCH_ROWS // (10 if quick else 5), request_id=request_id))
    for request_id in (None, "batch-1"):  # a multi-output classifier's labels
        rows.append(_huge_batch("two label outputs (a table)",
                                HUGE_BATCH_ROWS // (10 if quick else 5), request_id=request_id))
    rows.extend(_input_shapes(500 if quick else 2000))
    rows.extend(_request_path_drains(DRAIN_EVERY_CALLS, 3 if quick else 5))
    rows.extend(_request_path_costs(DRAIN_EVERY_CALLS, 5 if quick else 11))
    return rows
