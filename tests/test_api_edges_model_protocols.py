"""instrument() on the models users really have: the wrapper must stay the model to every
piece of Python that touches it (truth, ``with``, ``in``, item assignment), the model
must get exactly what the caller passed, and odd model objects (dict-backed proxies,
broken signatures) must be instrumentable rather than fail in ``instrument()``.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch


def _ok(scraper, model: str) -> float | None:
    return scraper.value("inferwatch_requests_total", model=model, outcome="ok")


# --- truth ------------------------------------------------------------------------------------


class Estimator:
    """An estimator as scikit-learn's are: no __len__, no __bool__."""

    classes_ = np.array([0, 1])

    def predict(self, rows):
        return np.zeros(len(rows), dtype=int)


def test_an_instrumented_model_without_a_length_is_true(scraper):
    model = inferwatch.instrument(Estimator(), name="truth", registry=scraper.registry)
    # `if model:` / `model or fallback` in serving code; an unwrapped estimator is true.
    assert bool(model) is True
    chosen = model or None
    assert chosen is model
    assert chosen.predict([[1.0]]).tolist() == [0]
    assert _ok(scraper, "truth") == 1


def test_an_instrumented_pipeline_keeps_its_length_and_truth(scraper):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.1]])
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, [0, 1, 0, 1])
    model = inferwatch.instrument(pipe, name="pipe", registry=scraper.registry)
    assert len(model) == 2 and bool(model) is True
    assert model.predict(x).shape == (4,)
    assert _ok(scraper, "pipe") == 1


class Empty:
    """A model whose own truth says False (an empty ensemble)."""

    def __len__(self):
        return 0

    def __call__(self, x):
        return 0.5


def test_the_model_decides_its_own_truth(scraper):
    assert bool(inferwatch.instrument(Empty(), name="empty", registry=scraper.registry)) is False


# --- containers -------------------------------------------------------------------------------


class Lookup:
    """A model that is a mapping of per-segment sub-models (a dict-like ensemble)."""

    def __init__(self):
        self.segments = {"eu": 0.25}

    def __contains__(self, key):
        return key in self.segments

    def __getitem__(self, key):
        return self.segments[key]

    def __setitem__(self, key, value):
        self.segments[key] = value

    def __delitem__(self, key):
        del self.segments[key]

    def predict(self, segment):
        return self.segments[segment]


def test_in_item_assignment_and_deletion_reach_the_model(scraper):
    inner = Lookup()
    model = inferwatch.instrument(inner, name="lookup", registry=scraper.registry)
    assert "eu" in model
    assert "us" not in model
    model["us"] = 0.75
    assert inner.segments["us"] == 0.75
    assert model.predict("us") == 0.75
    del model["eu"]
    assert "eu" not in inner.segments
    assert _ok(scraper, "lookup") == 1


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.floats(0, 1), max_size=5), st.text(max_size=5))
def test_membership_answers_as_the_model_does(segments, probe):
    from inferwatch.core.registry import Registry

    registry = Registry()
    try:
        inner = Lookup()
        inner.segments = dict(segments)
        model = inferwatch.instrument(inner, name="lookup", registry=registry)
        assert (probe in model) == (probe in inner)
    finally:
        registry.close()


# --- context managers -------------------------------------------------------------------------


class Session:
    """A model that must be opened and closed (a runtime session, a client)."""

    def __init__(self):
        self.open = False
        self.exits = []

    def __enter__(self):
        self.open = True
        return self

    def __exit__(self, kind, exc, tb):
        self.open = False
        self.exits.append(kind)
        return False

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, kind, exc, tb):
        return self.__exit__(kind, exc, tb)

    def predict(self, rows):
        assert self.open
        return [0.5] * len(rows)


def test_with_enters_the_model_and_calls_in_the_block_are_recorded(scraper):
    inner = Session()
    model = inferwatch.instrument(inner, name="session", registry=scraper.registry)
    with model as session:
        assert inner.open
        assert session is model  # entered as itself: still the instrumented wrapper
        assert session.predict([1, 2]) == [0.5, 0.5]
    assert not inner.open and inner.exits == [None]
    with pytest.raises(KeyError), model:
        raise KeyError("inside")
    assert inner.exits[-1] is KeyError
    assert _ok(scraper, "session") == 1


def test_async_with_enters_the_model(scraper):
    inner = Session()
    model = inferwatch.instrument(inner, name="asession", registry=scraper.registry)

    async def serve():
        async with model as session:
            assert session is model
            return session.predict([1])

    assert asyncio.run(serve()) == [0.5]
    assert inner.exits == [None]
    assert _ok(scraper, "asession") == 1


def test_with_on_a_model_that_is_no_context_manager_is_a_type_error(scraper):
    model = inferwatch.instrument(Estimator(), name="nocm", registry=scraper.registry)
    with pytest.raises(TypeError, match="Estimator"), model:
        pass


# --- what reaches the model -------------------------------------------------------------------


def test_request_id_inside_a_request_never_reaches_a_model_that_does_not_take_it(scraper):
    seen = []

    def score(x):
        seen.append(x)
        return 0.5

    model = inferwatch.instrument(score, name="rid", registry=scraper.registry)
    mon = inferwatch.monitor("rid", registry=scraper.registry)
    with mon.request(request_id="r-1"):
        assert model([1.0], request_id="r-1") == 0.5
    assert seen == [[1.0]]
    assert _ok(scraper, "rid") == 1


def test_request_id_inside_a_request_reaches_a_model_that_names_it(scraper):
    model = inferwatch.instrument(lambda x, request_id=None: request_id, name="named",
                                  registry=scraper.registry)
    mon = inferwatch.monitor("named", registry=scraper.registry)
    with mon.request(request_id="r-2"):
        assert model([1.0], request_id="r-2") == "r-2"


def test_request_id_inside_a_request_never_reaches_an_async_model(scraper):
    async def score(x):
        return 0.25

    model = inferwatch.instrument(score, name="arid", registry=scraper.registry)
    mon = inferwatch.monitor("arid", registry=scraper.registry)

    async def handle():
        with mon.request(request_id="r-3"):
            return await model([1.0], request_id="r-3")

    assert asyncio.run(handle()) == 0.25
    assert _ok(scraper, "arid") == 1


# --- odd model objects ------------------------------------------------------------------------


class DictBacked:
    """A proxy whose __getattr__ looks names up in a dict: KeyError, not AttributeError, for
    a name it lacks (a common bug in hand-written proxies; the model serves fine)."""

    def __init__(self):
        self.__dict__["_methods"] = {"predict": lambda rows: [0.5] * len(rows)}

    def __getattr__(self, name):
        return self._methods[name]


class CallableDictBacked(DictBacked):
    def __call__(self, rows):
        return [0.25] * len(rows)


def test_a_proxy_whose_getattr_raises_key_error_is_instrumented(scraper):
    model = inferwatch.instrument(DictBacked(), name="proxy", registry=scraper.registry)
    assert model.predict([1, 2]) == [0.5, 0.5]
    assert _ok(scraper, "proxy") == 1


def test_a_callable_proxy_whose_getattr_raises_key_error_is_instrumented(scraper):
    model = inferwatch.instrument(CallableDictBacked(), name="cproxy",
                                  registry=scraper.registry)
    assert model([1, 2, 3]) == [0.25] * 3
    assert model.predict([1]) == [0.5]
    assert _ok(scraper, "cproxy") == 2


class BrokenSignature:
    """A callable whose __signature__ raises (a lazily built wrapper that is not ready)."""

    @property
    def __signature__(self):
        raise RuntimeError("signature not built")

    def __call__(self, x):
        return 0.5


def test_a_callable_whose_signature_raises_is_instrumented(scraper):
    model = inferwatch.instrument(BrokenSignature(), name="sig", registry=scraper.registry)
    assert model(1.0) == 0.5
    assert model(1.0, request_id="r") == 0.5  # not named by the model: never handed over
    assert _ok(scraper, "sig") == 2


# --- clear errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("registry", ["default", 3, object()])
def test_monitor_with_something_else_than_a_registry_says_so(registry):
    with pytest.raises(TypeError, match="registry must be an inferwatch Registry"):
        inferwatch.monitor("fraud", registry=registry)


@pytest.mark.parametrize("name", ["   ", "\t", "\n"])
def test_instrument_with_a_blank_name_names_instrument(name):
    from inferwatch.core.registry import Registry

    with pytest.raises(ValueError, match=r"inferwatch\.instrument: name"):
        inferwatch.instrument(len, name=name, registry=Registry())


# --- the registry's own arguments -------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.just(0), st.just(0.0), st.floats(max_value=0), st.just(float("nan")),
                 st.just(float("inf")), st.just(1e300), st.text(max_size=3), st.none(),
                 st.just(True), st.just([1.0])))
def test_a_registry_with_a_drain_interval_that_is_no_wait_says_so(interval):
    from inferwatch.core.registry import Registry

    # 0, a negative number or NaN made the drain thread spin on a core; a string or a
    # wait too long for the platform killed it on its first wait.
    with pytest.raises(ValueError, match="drain_interval"):
        Registry(drain_interval=interval)


@pytest.mark.parametrize("option", ["max_models", "max_versions_per_model"])
@pytest.mark.parametrize("value", [0, -1, "10", 2.5, None, True])
def test_a_registry_with_a_bad_cap_names_it(option, value):
    from inferwatch.core.registry import Registry

    with pytest.raises(ValueError, match=rf"inferwatch\.Registry: {option}"):
        Registry(**{option: value})


def test_a_registry_with_good_arguments_drains_on_its_own(scraper):
    from inferwatch.core.registry import Registry

    registry = Registry(max_models=3, max_versions_per_model=np.int64(2), drain_interval=0.01)
    try:
        model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
        mon = registry.monitor("m", "1").configure(drain_max_wait_seconds=0.05)
        model(1.0)
        import time

        deadline = time.monotonic() + 10
        while mon.state.counters.get("inferwatch_requests_total", {}).get(("ok",)) != 1:
            assert time.monotonic() < deadline, "the drain thread never drained the call"
            time.sleep(0.01)
    finally:
        registry.close()


# --- a method read through the wrapper --------------------------------------------------------


class Generator:
    classes_ = ["a", "b"]

    def __call__(self, x):
        return np.array([0.1])

    def generate(self, prompt):
        return "hello " + prompt


def test_a_method_read_through_the_wrapper_is_instrumented_as_the_models_method(scraper):
    net = inferwatch.instrument(Generator(), name="net", registry=scraper.registry)
    through = inferwatch.instrument(net.generate, name="through", registry=scraper.registry)
    direct = inferwatch.instrument(Generator().generate, name="direct",
                                   registry=scraper.registry)
    assert through("you") == "hello you" == direct("you")
    # The same wrapper as for the model's own bound method: a function, framework python.
    assert type(through) is type(direct)
    info = {s.labels["model"]: s.labels["framework"] for s in scraper.samples()
            if s.name == "inferwatch_model_info"}
    assert info["through"] == info["direct"] == "python"
    assert _ok(scraper, "through") == 1
    assert _ok(scraper, "net") == 0


# --- equality and hashing ---------------------------------------------------------------------


class Keyed:
    """A model equal to any other with the same config (as a dataclass model is)."""

    def __init__(self, key):
        self.key = key

    def __eq__(self, other):
        return isinstance(other, Keyed) and other.key == self.key

    def __hash__(self):
        return hash(("Keyed", self.key))

    def predict(self, rows):
        return [0.5] * len(rows)


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=8))
def test_the_wrapper_hashes_as_it_compares(key):
    from inferwatch.core.registry import Registry

    registry = Registry()
    try:
        model = inferwatch.instrument(Keyed(key), name="keyed", registry=registry)
        assert model == Keyed(key)
        assert hash(model) == hash(Keyed(key))
        assert {Keyed(key): "found"}[model] == "found"
        assert model in {Keyed(key)}
        assert model != Keyed(key + "x")
    finally:
        registry.close()


def test_a_wrapper_is_equal_to_its_own_model_and_to_another_wrapper_of_it(scraper):
    inner = Estimator()
    one = inferwatch.instrument(inner, name="a", registry=scraper.registry)
    two = inferwatch.instrument(inner, name="b", registry=scraper.registry)
    assert one == inner and one == two
    assert (one != inner) is False
    assert len({one, two, inner}) == 1
    assert one != Estimator()
