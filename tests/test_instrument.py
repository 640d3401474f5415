"""instrument(): objects, functions, async functions, decorators, and what each records."""

from __future__ import annotations

import asyncio
import pickle
import sys
import traceback

import numpy as np
import pytest

import inferwatch


class PlainModel:
    """A model with only predict, an attribute, and an unwrapped method."""

    threshold = 0.5

    def predict(self, rows):
        return np.asarray(rows, dtype=float).sum(axis=1)

    def explain(self):
        return "weights"


class TorchStyle:
    """A callable model, as torch modules are."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return np.asarray(x, dtype=float) * 2


def test_object_predict_records_latency_rows_and_values(scraper):
    model = inferwatch.instrument(PlainModel(), name="fraud", version="1.4.2",
                                  registry=scraper.registry)
    out = model.predict([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert out.tolist() == [3.0, 7.0, 11.0]
    labels = {"model": "fraud", "model_version": "1.4.2"}
    assert scraper.value("inferwatch_requests_total", outcome="ok", **labels) == 1
    assert scraper.value("inferwatch_request_duration_seconds_count", **labels) == 1
    assert scraper.value("inferwatch_batch_size_sum", **labels) == 3
    assert scraper.value("inferwatch_prediction_count", output="value", **labels) == 3
    assert scraper.value("inferwatch_prediction_sum", output="value", **labels) == 21
    assert scraper.value("inferwatch_prediction", output="value", quantile="0.5",
                         **labels) == pytest.approx(7.0, rel=0.01)
    assert scraper.value("inferwatch_model_info", framework=__name__.split(".")[0],
                         **labels) == 1
    assert scraper.value("inferwatch_model_loaded_timestamp_seconds", **labels) > 1.6e9


def test_proxy_is_transparent(scraper):
    original = PlainModel()
    model = inferwatch.instrument(original, name="m", version="1", registry=scraper.registry)
    assert isinstance(model, PlainModel)
    assert model.threshold == 0.5
    assert model.explain() == "weights"
    model.threshold = 0.9
    assert original.threshold == 0.9
    assert "explain" in dir(model)
    assert repr(model) == repr(original)
    with pytest.raises(TypeError, match="not callable"):
        model(1)
    with pytest.raises(AttributeError):
        _ = model.predict_proba


def test_pickling_keeps_model_and_instrumentation(scraper):
    model = inferwatch.instrument(PlainModel(), name="pickled", version="3")
    restored = pickle.loads(pickle.dumps(model))
    assert isinstance(restored, PlainModel)
    assert restored.predict([[1.0, 1.0]]).tolist() == [2.0]
    mon = inferwatch.monitor("pickled", "3")
    mon.drain()
    assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 1


def test_copies_record_into_the_same_registry_and_keep_their_own_model(scraper):
    """copy and deepcopy went through pickling: into the default registry, not the
    model's own."""
    import copy

    model = inferwatch.instrument(PlainModel(), name="m", version="1", registry=scraper.registry)
    deep, shallow = copy.deepcopy(model), copy.copy(model)
    assert isinstance(deep, PlainModel) and isinstance(shallow, PlainModel)
    deep.threshold = 0.1
    assert model.threshold == 0.5  # a deep copy's model is its own
    for wrapped in (model, deep, shallow):
        assert wrapped.predict([[1.0, 2.0]]).tolist() == [3.0]
    assert scraper.value("inferwatch_requests_total", model="m", outcome="ok") == 3


def test_instrumenting_a_wrapper_again_records_each_call_once(scraper):
    """A library that instruments the model it is given, and an application that
    instruments it too: each call is recorded once, under the name given last."""
    inner = inferwatch.instrument(PlainModel(), name="inner", version="1",
                                  registry=scraper.registry)
    again = inferwatch.instrument(inner, name="inner", version="1", registry=scraper.registry)
    renamed = inferwatch.instrument(inner, name="outer", version="1", registry=scraper.registry)
    again.predict([[1.0]])
    renamed.predict([[1.0]])
    inner.predict([[1.0]])
    assert scraper.value("inferwatch_requests_total", model="inner", outcome="ok") == 2
    assert scraper.value("inferwatch_requests_total", model="outer", outcome="ok") == 1

    @inferwatch.instrument(name="f", version="1", registry=scraper.registry)
    @inferwatch.instrument(name="f", version="1", registry=scraper.registry)
    def score(x):
        return 0.5

    method = inferwatch.instrument(inner.predict, name="method", version="1",
                                   registry=scraper.registry)
    assert score(1) == 0.5 and method([[2.0]]).tolist() == [2.0]
    assert scraper.value("inferwatch_requests_total", model="f", outcome="ok") == 1
    assert scraper.value("inferwatch_requests_total", model="method", outcome="ok") == 1
    assert scraper.value("inferwatch_requests_total", model="inner", outcome="ok") == 2


def test_a_pickled_model_loaded_in_its_process_keeps_writing_one_event_log(tmp_path):
    """Its spec holds the log's path: opening it again made a second writer on one file."""
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    path = tmp_path / "events.jsonl"
    try:
        model = inferwatch.instrument(PlainModel(), name="m", version="1", events=str(path),
                                      registry=registry)
        log = registry.monitor("m", "1").events
        registry.monitor("m", "1").configure(events=str(path))
        registry.monitor("m", "1").configure(events=tmp_path / "." / "events.jsonl")
        assert registry.monitor("m", "1").events is log
        model.predict([[1.0]])
    finally:
        registry.close()


def test_sklearn_classifier_predict_and_proba(scraper):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 0] > 0, "fraud", "legit")
    clf = LogisticRegression().fit(X, y)
    model = inferwatch.instrument(clf, name="clf", version="7", registry=scraper.registry)
    assert isinstance(model, LogisticRegression)
    assert model.get_params()["C"] == 1.0
    predicted = model.predict(X[:50])
    proba = model.predict_proba(X[:20])
    assert np.array_equal(predicted, clf.predict(X[:50]))
    expected_classes = {c: int((predicted == c).sum() + (clf.classes_[proba.argmax(1)] == c).sum())
                        for c in clf.classes_}
    for cls, count in expected_classes.items():
        assert scraper.value("inferwatch_predicted_class_total", model="clf",
                             **{"class": cls}) == count
    assert scraper.value("inferwatch_prediction_confidence_count", model="clf") == 20
    # predict_proba columns are named by model.classes_
    assert scraper.value("inferwatch_prediction_count", model="clf", output="fraud") == 20
    assert scraper.value("inferwatch_requests_total", model="clf", outcome="ok") == 2


def test_callable_model(scraper):
    model = inferwatch.instrument(TorchStyle(), name="net", version="1",
                                  registry=scraper.registry)
    assert model([1.0, 2.0]).tolist() == [2.0, 4.0]
    assert model.calls == 1
    assert scraper.value("inferwatch_prediction_sum", model="net", output="value") == 6.0


def test_plain_function_and_decorator(scraper):
    predict = inferwatch.instrument(lambda x: x + 1.0, name="f", version="1",
                                    registry=scraper.registry)

    @inferwatch.instrument(name="g", version="2", registry=scraper.registry)
    def score(x: float) -> float:
        """Doc kept."""
        return x * 3.0

    assert predict(1.0) == 2.0
    assert score(2.0) == 6.0
    assert score.__doc__ == "Doc kept." and score.__name__ == "score"
    assert scraper.value("inferwatch_requests_total", model="f", outcome="ok") == 1
    assert scraper.value("inferwatch_prediction_sum", model="g", output="value") == 6.0


def test_async_function(scraper):
    @inferwatch.instrument(name="a", version="1", registry=scraper.registry)
    async def predict(x: float) -> float:
        await asyncio.sleep(0.01)
        return x / 2

    @inferwatch.instrument(name="a", version="1", registry=scraper.registry)
    async def broken(x: float) -> float:
        raise TimeoutError("upstream")

    async def main():
        results = await asyncio.gather(*(predict(float(i)) for i in range(10)))
        with pytest.raises(TimeoutError):
            await broken(1.0)
        return results

    assert asyncio.run(main()) == [i / 2 for i in range(10)]
    assert scraper.value("inferwatch_requests_total", model="a", outcome="ok") == 10
    assert scraper.value("inferwatch_errors_total", model="a", error_type="TimeoutError") == 1
    # The sleep is inside the timed region: awaited time counts as latency.
    assert scraper.value("inferwatch_request_duration_seconds_sum", model="a") >= 0.1


def test_canary_versions_are_separate_series(scraper):
    stable = inferwatch.instrument(lambda x: 0.1, name="fraud", version="1.4.2",
                                   registry=scraper.registry)
    canary = inferwatch.instrument(lambda x: 0.9, name="fraud", version="1.5.0",
                                   registry=scraper.registry)
    for _ in range(9):
        stable(0)
    canary(0)
    assert scraper.total("inferwatch_requests_total", model="fraud", model_version="1.4.2") == 9
    assert scraper.total("inferwatch_requests_total", model="fraud", model_version="1.5.0") == 1
    versions = {s["model_version"] for s in scraper.series("inferwatch_model_info")}
    assert versions == {"1.4.2", "1.5.0"}


def test_trained_at_accepts_datetime_iso_and_epoch(scraper):
    import datetime as dt

    inferwatch.instrument(lambda x: x, name="a", version="1", registry=scraper.registry,
                          trained_at=dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc))
    inferwatch.instrument(lambda x: x, name="b", version="1", registry=scraper.registry,
                          trained_at="2026-01-02T00:00:00Z")
    inferwatch.instrument(lambda x: x, name="c", version="1", registry=scraper.registry,
                          trained_at=1767312000)
    for name in "abc":
        assert scraper.value("inferwatch_model_trained_timestamp_seconds",
                             model=name) == 1767312000.0
    with pytest.raises(ValueError, match="trained_at"):
        inferwatch.instrument(lambda x: x, name="d", trained_at="last tuesday",
                              registry=scraper.registry)


def test_bad_configuration_is_a_clear_error(scraper):
    with pytest.raises(TypeError, match=r"unknown option.*quantile_list"):
        inferwatch.instrument(lambda x: x, name="m", quantile_list=[0.5])
    with pytest.raises(ValueError, match="quantiles must be in"):
        inferwatch.instrument(lambda x: x, name="m", quantiles=(1.5,), registry=scraper.registry)
    with pytest.raises(ValueError, match="task must be one of"):
        inferwatch.instrument(lambda x: x, name="m", task="ranking", registry=scraper.registry)
    with pytest.raises(ValueError, match="name must be"):
        inferwatch.instrument(lambda x: x, name="")
    with pytest.raises(TypeError, match="not the class"):
        inferwatch.instrument(PlainModel, name="m")
    for not_a_model in (3, "models/fraud.pkl", {"predict": 1}):
        with pytest.raises(TypeError, match=f"not a {type(not_a_model).__name__}"):
            inferwatch.instrument(not_a_model, name="m", registry=scraper.registry)
    with pytest.raises(ValueError, match="metadata"):
        inferwatch.instrument(lambda x: x, name="m", metadata={"bad-key": 1},
                              registry=scraper.registry)


# --- reliability requirement 1: exceptions pass through untouched, counted once -----------

def test_exception_is_reraised_unchanged_and_counted_once(scraper):
    error = ValueError("model exploded")

    def predict(x):
        raise error

    wrapped = inferwatch.instrument(predict, name="boom", version="1", registry=scraper.registry)
    with pytest.raises(ValueError) as caught:
        wrapped(1)
    assert caught.value is error
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-1] == "predict"  # the model's own frame is still the origin
    assert scraper.value("inferwatch_errors_total", model="boom", error_type="ValueError") == 1
    assert scraper.value("inferwatch_requests_total", model="boom", outcome="error") == 1
    assert scraper.value("inferwatch_request_duration_seconds_count", model="boom") == 1
    assert scraper.value("inferwatch_requests_in_flight", model="boom") == 0


def test_in_flight_counts_running_calls(scraper):
    import threading

    release = threading.Event()
    entered = threading.Barrier(4)

    def slow(x):
        entered.wait()
        release.wait(60)  # a safety net: the test sets it once it has looked
        return 1.0

    wrapped = inferwatch.instrument(slow, name="slow", version="1", registry=scraper.registry)
    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    entered.wait()
    assert scraper.value("inferwatch_requests_in_flight", model="slow") == 3
    release.set()
    for t in threads:
        t.join()
    assert scraper.value("inferwatch_requests_in_flight", model="slow") == 0


def test_thread_safety_exact_counts(scraper):
    import threading

    wrapped = inferwatch.instrument(lambda x: 0.5, name="threads", version="1",
                                    registry=scraper.registry)
    scraper.registry.drain_interval = 0.001  # the drain races the callers constantly

    def work():
        for i in range(10_000):
            wrapped(i)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        scraper.registry.drain()
    for t in threads:
        t.join()
    assert scraper.value("inferwatch_requests_total", model="threads", outcome="ok") == 80_000
    assert scraper.value("inferwatch_request_duration_seconds_count", model="threads") == 80_000
    assert scraper.value("inferwatch_prediction_count", model="threads") == 80_000
    assert scraper.value("inferwatch_requests_in_flight", model="threads") == 0


def test_public_api_is_lazy_and_small():
    import subprocess

    code = (
        "import sys, inferwatch\n"
        "heavy = {'grafanalib', 'yaml', 'pynvml', 'inferwatch.standalone',"
        " 'inferwatch.serving.server', 'inferwatch.cli', 'inferwatch.generate',"
        " 'inferwatch.serving.exposition'}\n"
        "inferwatch.instrument(lambda x: x, name='m')(1)\n"
        "loaded = heavy & set(sys.modules)\n"
        "print(sorted(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    assert set(inferwatch.__all__) >= {"instrument", "serve", "monitor", "make_asgi_app",
                                       "make_wsgi_app", "Reference"}


def test_a_model_failing_inside_a_request_is_one_error_and_no_prediction(scraper):
    def predict(x):
        raise ValueError("bad row")

    model = inferwatch.instrument(predict, name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    with pytest.raises(ValueError), mon.request() as r:
        with r.stage("preprocess"):
            pass
        model([None])
    assert scraper.value("inferwatch_errors_total", error_type="ValueError") == 1
    assert scraper.value("inferwatch_requests_total", outcome="error") == 1
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 1
    assert scraper.total("inferwatch_invalid_predictions_total") == 0
    assert scraper.value("inferwatch_batch_size_count") is None


def test_a_call_inside_a_request_is_its_inference_stage_and_another_models_call_its_own(
        scraper):
    """Inside ``mon.request()`` a call of that monitor's model becomes the request's
    inference stage and prediction, as the call returned it (the buffer refilled after);
    a call of another model there is that model's own call."""
    buffer = np.zeros((1, 2))

    class Classifier:
        classes_ = np.array(["no", "yes"], dtype=object)

        def predict_proba(self, x):
            buffer[:] = [[0.25, 0.75]]
            return buffer

    def other(x):
        return 3.0

    model = inferwatch.instrument(Classifier(), name="a", version="1",
                                  registry=scraper.registry)
    second = inferwatch.instrument(other, name="b", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("a", "1", registry=scraper.registry)
    with mon.request(request_id="r-1") as r:
        assert model.predict_proba([[1.0]]) is buffer
        buffer[:] = [[0.9, 0.1]]
        assert second(1.0) == 3.0
        assert r.record.prediction.tolist() == [[0.25, 0.75]]
        assert [stage for stage, _ in r.record.stages] == ["inference"]
    assert scraper.value("inferwatch_requests_total", model="a", outcome="ok") == 1
    assert scraper.value("inferwatch_predicted_class_total", model="a", **{"class": "yes"}) == 1
    assert scraper.value("inferwatch_stage_duration_seconds_count", model="a",
                         stage="inference") == 1
    assert scraper.value("inferwatch_requests_total", model="b", outcome="ok") == 1
    assert scraper.value("inferwatch_prediction_sum", model="b", output="value") == 3.0
    assert mon.outcomes._pending["r-1"][0] == ("yes",)


@pytest.mark.parametrize("how", ["task", "thread"])
def test_a_call_after_its_request_closed_is_a_call_of_its_own(scraper, how):
    """A task or thread started inside ``mon.request()`` keeps the request in its context
    after the block closed: its model calls joined a record already handed to the drain,
    and were counted nowhere."""
    import contextvars
    import threading

    model = inferwatch.instrument(PlainModel(), name="m", version="1", registry=scraper.registry)
    failing = inferwatch.instrument(lambda x: 1 / 0, name="m", version="1",
                                    registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    later: list = []

    def rescore() -> None:
        later.append(model.predict([[2.0, 3.0]]).tolist())
        with pytest.raises(ZeroDivisionError):
            failing(1)

    async def main() -> None:
        closed = asyncio.Event()

        async def after_the_request() -> None:
            await closed.wait()
            rescore()

        async with mon.request(request_id="r-1") as r:
            r.prediction(0.3)
            task = asyncio.create_task(after_the_request())  # copies the open request
            context = contextvars.copy_context()
        if how == "task":
            closed.set()
            await task
        else:
            thread = threading.Thread(target=context.run, args=(rescore,))
            thread.start()
            thread.join()
            task.cancel()

    asyncio.run(main())
    assert later == [[5.0]]
    assert scraper.value("inferwatch_requests_total", model="m", outcome="ok") == 2
    assert scraper.value("inferwatch_requests_total", model="m", outcome="error") == 1
    assert scraper.value("inferwatch_errors_total", model="m",
                         error_type="ZeroDivisionError") == 1
    assert scraper.value("inferwatch_prediction_sum", model="m", output="value") == 5.3
    assert scraper.value("inferwatch_requests_in_flight", model="m") == 0


def test_an_async_call_whose_request_closes_while_it_runs_is_a_call_of_its_own(scraper):
    async def main() -> None:
        release = asyncio.Event()

        async def predict(x):
            await release.wait()
            return 4.0

        model = inferwatch.instrument(predict, name="m", version="1", registry=scraper.registry)
        mon = inferwatch.monitor("m", "1", registry=scraper.registry)
        async with mon.request():
            task = asyncio.create_task(model(1))
            await asyncio.sleep(0)  # the call starts inside the request
        release.set()
        assert await task == 4.0

    asyncio.run(main())
    assert scraper.value("inferwatch_requests_total", model="m", outcome="ok") == 2
    assert scraper.value("inferwatch_prediction_sum", model="m", output="value") == 4.0
    assert scraper.value("inferwatch_requests_in_flight", model="m") == 0
