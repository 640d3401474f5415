"""Shadows of text and LLM models, and of champions instrumented from a function.

A challenger is a model in its own right, with its champion's options: a text result
records its length, and with ``count_tokens=`` or ``usage=`` its tokens, as the
champion's do, and never an invalid prediction. Two texts (or two responses) have no
agreement or difference to count: the sampled call is dropped as ``incomparable``. A
text that is a class label (``task="classification"``) is still compared.

A champion instrumented from a plain or ``async def`` function is shadowed as a model's
``__call__`` is: its sampled calls go to the challenger, and closing the shadow leaves the
function as it was.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core.request import _current as open_request

MODES = ("thread", "process")


def words(text: str) -> int:
    return len(text.split())


class TextV1:
    def __call__(self, prompt):
        return "hello there"


class TextV2:
    def __call__(self, prompt):
        return "hi there my friend"


class ApiV1:
    """An OpenAI-style client answer: the text, and what it counted itself."""

    def __call__(self, prompt):
        return SimpleNamespace(text="hello there",
                               usage=SimpleNamespace(prompt_tokens=5, completion_tokens=2))


class ApiV2:
    def __call__(self, prompt):
        return SimpleNamespace(text="hi there my friend",
                               usage=SimpleNamespace(prompt_tokens=5, completion_tokens=4))


class Echo:
    """Answers its prompt with `suffix` added."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __call__(self, prompt):
        return prompt + self.suffix


class Labeller:
    def __init__(self, label_for_x: str) -> None:
        self.label_for_x = label_for_x

    def __call__(self, text):
        return self.label_for_x if "x" in text else "spam"


def rank_v1(rows):
    return [1, 0, 1]


def rank_v2(rows):
    return [1, 0, 0]


async def arank_v1(rows):
    return [1, 0, 1]


async def arank_v2(rows):
    return [1, 1, 1]


def score_v1(rows):
    return [float(row[0]) for row in rows]


def score_v2(rows):
    return [2.0 * float(row[0]) for row in rows]


@pytest.fixture
def scraper():
    scraper = Scraper()
    yield scraper
    scraper.registry.close()


def _shadowed(scraper, champion_model, challenger, *, mode="thread", **options):
    champion = inferwatch.instrument(champion_model, name="llm", version="1",
                                     registry=scraper.registry, **options)
    handle = inferwatch.shadow(champion, challenger, version="2", mode=mode, timeout=120.0,
                               registry=scraper.registry)
    return champion, handle


def _comparison(scraper, champion_version="1", version="2"):
    """(sampled, compared, incomparable, agree, disagree) of the challenger `version`."""
    def one(name, **labels):
        return scraper.value(name, model_version=version, champion_version=champion_version,
                             **labels)

    return (one("inferwatch_shadow_sampled_total"), one("inferwatch_shadow_compared_total"),
            one("inferwatch_shadow_dropped_total", reason="incomparable"),
            one("inferwatch_shadow_agreement_total", result="agree"),
            one("inferwatch_shadow_agreement_total", result="disagree"))


def _no_invalid_predictions(scraper, version):
    assert scraper.total("inferwatch_invalid_predictions_total", model_version=version,
                         reason="unsupported_type") == 0


# --- a text or LLM challenger ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_text_challenger_counts_its_own_tokens_and_characters(scraper, mode):
    champion, handle = _shadowed(scraper, TextV1(), TextV2(), mode=mode, count_tokens=words)
    try:
        assert champion("a b c") == "hello there"
        assert handle.flush(120)
        scraper.registry.drain()
        for version, output_tokens, characters in (("1", 2, 11), ("2", 4, 18)):
            assert scraper.value("inferwatch_tokens_total", model_version=version,
                                 kind="input") == 3
            assert scraper.value("inferwatch_tokens_total", model_version=version,
                                 kind="output") == output_tokens
            assert scraper.value("inferwatch_output_characters_sum",
                                 model_version=version) == characters
            assert scraper.value("inferwatch_output_characters_count",
                                 model_version=version) == 1
            assert scraper.value("inferwatch_requests_total", model_version=version,
                                 outcome="ok") == 1
            _no_invalid_predictions(scraper, version)
        assert _comparison(scraper) == (1, 0, 1, 0, 0)
        assert scraper.value("inferwatch_requests_in_flight", model_version="2") == 0
    finally:
        handle.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_challenger_response_is_read_for_its_usage(scraper, mode):
    champion, handle = _shadowed(scraper, ApiV1(), ApiV2(), mode=mode, usage=True)
    try:
        champion("a b c")
        assert handle.flush(120)
        scraper.registry.drain()
        for version, output_tokens in (("1", 2), ("2", 4)):
            assert scraper.value("inferwatch_tokens_total", model_version=version,
                                 kind="input") == 5
            assert scraper.value("inferwatch_tokens_total", model_version=version,
                                 kind="output") == output_tokens
            assert scraper.value("inferwatch_requests_total", model_version=version,
                                 outcome="ok") == 1
            _no_invalid_predictions(scraper, version)
        # A response is never a prediction, so there is nothing to compare.
        assert _comparison(scraper) == (1, 0, 1, 0, 0)
    finally:
        handle.close()


def test_a_text_challenger_with_no_options_records_its_length_only(scraper):
    champion, handle = _shadowed(scraper, TextV1(), TextV2())
    try:
        champion("a b c")
        champion("d")
        assert handle.flush(120)
        scraper.registry.drain()
        assert scraper.value("inferwatch_output_characters_sum", model_version="2") == 36
        assert scraper.value("inferwatch_output_characters_count", model_version="2") == 2
        assert scraper.series("inferwatch_tokens_total") == []
        _no_invalid_predictions(scraper, "2")
        assert scraper.value("inferwatch_requests_total", model_version="2",
                             outcome="ok") == 2
        assert _comparison(scraper) == (2, 0, 2, 0, 0)
    finally:
        handle.close()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompts=st.lists(st.text(max_size=40), min_size=1, max_size=5),
       suffix=st.text(max_size=10))
def test_any_texts_a_challenger_answers_count_as_the_champions_would(prompts, suffix):
    scraper = Scraper()
    try:
        champion, handle = _shadowed(scraper, Echo(""), Echo(suffix), count_tokens=words)
        for prompt in prompts:
            assert champion(prompt) == prompt
        assert handle.flush(120)
        handle.close()
        scraper.registry.drain()
        answers = [prompt + suffix for prompt in prompts]
        assert scraper.value("inferwatch_output_characters_sum", model_version="2") == \
            sum(map(len, answers))
        assert scraper.total("inferwatch_tokens_total", model_version="2",
                             kind="input") == sum(map(words, prompts))
        assert scraper.total("inferwatch_tokens_total", model_version="2",
                             kind="output") == sum(map(words, answers))
        _no_invalid_predictions(scraper, "2")
        # Even the very same text is not compared: it is no prediction.
        assert _comparison(scraper) == (len(prompts), 0, len(prompts), 0, 0)
    finally:
        scraper.registry.close()


def test_a_text_that_is_a_class_label_is_still_compared(scraper):
    champion, handle = _shadowed(scraper, Labeller("spam"), Labeller("ham"),
                                 task="classification", classes=["spam", "ham"])
    try:
        champion("a")
        champion("x")
        assert handle.flush(120)
        scraper.registry.drain()
        assert _comparison(scraper) == (2, 2, 0, 1, 1)
        assert scraper.value("inferwatch_shadow_confusion_total", model_version="2",
                             champion_class="spam", shadow_class="ham") == 1
        assert scraper.series("inferwatch_output_characters_count") == []
    finally:
        handle.close()


# --- a champion instrumented from a function ---------------------------------------------------

def _function_champion(scraper, function, challenger, mode="thread", **options):
    champion = inferwatch.instrument(function, name="ranker", version="7",
                                     registry=scraper.registry, **options)
    handle = inferwatch.shadow(champion, challenger, version="8", mode=mode, timeout=120.0,
                               registry=scraper.registry)
    return champion, handle


@pytest.mark.parametrize("mode", MODES)
def test_a_function_champion_is_shadowed(scraper, mode):
    champion, handle = _function_champion(scraper, rank_v1, rank_v2, mode=mode)
    try:
        for _ in range(3):
            assert champion([[1], [2], [3]]) == [1, 0, 1]
        assert handle.flush(120)
        scraper.registry.drain()
        assert _comparison(scraper, "7", "8") == (3, 3, 0, 6, 3)
        for version in ("7", "8"):
            assert scraper.value("inferwatch_requests_total", model_version=version,
                                 outcome="ok") == 3
    finally:
        handle.close()
    # Off the champion: its calls are its own again, recorded and not sampled.
    assert champion([[1], [2], [3]]) == [1, 0, 1]
    scraper.registry.drain()
    assert scraper.value("inferwatch_requests_total", model_version="7", outcome="ok") == 4
    assert scraper.value("inferwatch_shadow_sampled_total", model_version="8") == 3
    assert scraper.value("inferwatch_requests_total", model_version="8", outcome="ok") == 3


def test_an_async_function_champion_is_shadowed(scraper):
    champion, handle = _function_champion(scraper, arank_v1, arank_v2)
    try:
        async def serve():
            return [await champion([[1], [2], [3]]) for _ in range(2)]

        assert asyncio.run(serve()) == [[1, 0, 1]] * 2
        assert handle.flush(120)
        scraper.registry.drain()
        assert _comparison(scraper, "7", "8") == (2, 2, 0, 4, 2)
        assert scraper.value("inferwatch_requests_total", model_version="7", outcome="ok") == 2
    finally:
        handle.close()
    asyncio.run(champion([[1]]))
    scraper.registry.drain()
    assert scraper.value("inferwatch_requests_total", model_version="7", outcome="ok") == 3
    assert scraper.value("inferwatch_shadow_sampled_total", model_version="8") == 2


def test_a_function_champions_slow_calls_and_request_ids_reach_the_challenger(scraper):
    """Keywords, a request-id function and a call inside the model's own request: each
    takes the wrapper's slow branch, and each sampled call is scored on its outcome."""
    ids = iter(["r-1", "r-2"])
    champion, handle = _function_champion(scraper, score_v1, score_v2,
                                          request_id=lambda rows: next(ids))
    monitor = scraper.registry.monitor("ranker", "7")
    try:
        assert champion(rows=[[1.0]]) == [1.0]
        with monitor.request(request_id="r-3"):
            assert champion([[3.0]]) == [3.0]
        assert champion([[2.0]]) == [2.0]
        assert handle.flush(120)
        scraper.registry.drain()
        for request_id, truth in (("r-1", 1.0), ("r-2", 2.0), ("r-3", 3.0)):
            monitor.record_outcome(request_id, truth)
        scraper.registry.drain()
        assert _comparison(scraper, "7", "8")[:3] == (3, 3, 0)
        for side in ("champion", "shadow"):
            assert scraper.value("inferwatch_shadow_outcome_error_count", model_version="8",
                                 side=side) == 3
        # The champion was right each time, its challenger off by the truth itself.
        assert scraper.value("inferwatch_shadow_outcome_error_sum", model_version="8",
                             side="shadow") == 6.0
    finally:
        handle.close()


def test_two_shadows_on_one_function_champion_close_in_any_order(scraper):
    champion = inferwatch.instrument(rank_v1, name="ranker", version="7",
                                     registry=scraper.registry)
    first = inferwatch.shadow(champion, rank_v2, version="8", registry=scraper.registry)
    second = inferwatch.shadow(champion, rank_v1, version="9", registry=scraper.registry)
    champion([[1], [2], [3]])
    first.close()  # the lower layer first: the other still sees every call
    champion([[1], [2], [3]])
    assert second.flush(120)
    second.close()
    champion([[1], [2], [3]])
    scraper.registry.drain()
    assert scraper.value("inferwatch_shadow_sampled_total", model_version="8") == 1
    assert scraper.value("inferwatch_shadow_sampled_total", model_version="9") == 2
    assert scraper.value("inferwatch_requests_total", model_version="7", outcome="ok") == 3
    # No layer is left: the wrapper looks up open requests as it did before any shadow.
    cells = dict(zip(champion.__code__.co_freevars, champion.__closure__))
    assert cells["in_request"].cell_contents == open_request.get


def test_shadows_started_at_once_on_one_function_champion_all_watch_it(scraper):
    champion = inferwatch.instrument(rank_v1, name="ranker", version="7",
                                     registry=scraper.registry)
    handles, ready = [], threading.Barrier(4)

    def start(version):
        ready.wait()
        handles.append(inferwatch.shadow(champion, rank_v2, version=version,
                                         registry=scraper.registry))

    threads = [threading.Thread(target=start, args=(str(v),)) for v in range(10, 14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert len(handles) == 4
        champion([[1], [2], [3]])
        for handle in handles:
            assert handle.flush(120)
        scraper.registry.drain()
        for version in range(10, 14):
            assert scraper.value("inferwatch_shadow_compared_total",
                                 model_version=str(version)) == 1
    finally:
        for handle in handles:
            handle.close()


def test_a_challenger_a_function_champion_cannot_call_is_refused_by_name(scraper):
    champion = inferwatch.instrument(rank_v1, name="ranker", version="7",
                                     registry=scraper.registry)
    with pytest.raises(TypeError, match=r"'ranker' version '7' .*\(__call__\)"):
        inferwatch.shadow(champion, object(), version="8", registry=scraper.registry)
    assert champion([[1]]) == [1, 0, 1]
    scraper.registry.drain()
    assert scraper.value("inferwatch_requests_total", model_version="7", outcome="ok") == 1
