"""A model that names its classes (``classes_``, ``id2label``) and returns one as a `str`.

Under task auto a `str` result is generated text, recorded as its length. A model that
names its own classes is a classifier, though, and its lone label (a hand-written
``predict`` returning ``self.classes_[i]``, a service's ``clf.predict(x)[0]``) is one of
them: counted as that class, on every path, while any other string stays text.
"""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch

_NAMES = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4, unique=True)


class _Classifier:
    """Answers each call with the text it is given: a class or not, as the test draws."""

    def __init__(self, classes: list[str], dtype: object = None) -> None:
        # A str dtype (scikit-learn fit on a list of labels) drops trailing NULs; an object
        # one (fit on a pandas column) keeps them.
        self.classes_ = np.array(classes, dtype=dtype)

    def predict(self, answer: str) -> str:
        return answer


class _AsyncClassifier(_Classifier):
    async def predict(self, answer: str) -> str:  # type: ignore[override]
        return answer


def _counts(scraper, model: str) -> tuple[dict[str, float], float, float]:
    samples = scraper.samples()
    classes = {s.labels["class"]: s.value for s in samples
               if s.name == "inferwatch_predicted_class_total" and s.labels["model"] == model}
    chars = [(s.name, s.value) for s in samples if s.labels.get("model") == model
             and s.name in ("inferwatch_output_characters_sum",
                            "inferwatch_output_characters_count")]
    found = dict(chars)
    return ({k: v for k, v in classes.items() if v},
            found.get("inferwatch_output_characters_count", 0.0),
            found.get("inferwatch_output_characters_sum", 0.0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=_NAMES, dtype=st.sampled_from([None, object]), data=st.data())
def test_a_named_class_returned_as_text_is_counted_as_that_class(names, dtype, data):
    from conftest import Scraper

    classifier = _Classifier(names, dtype)
    names = [str(name) for name in classifier.classes_]  # what the model names
    others = st.text(max_size=30).filter(lambda text: text not in names)
    answers = data.draw(st.lists(st.one_of(st.sampled_from(names), others, _NAMES.map(
                                     lambda drawn: drawn[0])),
                                 min_size=1, max_size=12))
    scraper = Scraper()
    try:
        model = inferwatch.instrument(classifier, name="m", version="1",
                                      registry=scraper.registry)
        mon = inferwatch.monitor("m", "1", registry=scraper.registry)
        for i, answer in enumerate(answers):
            path = i % 3
            if path == 0:
                returned = model.predict(answer)
            elif path == 1:
                returned = model.predict(answer, request_id=f"r-{i}")
            else:
                with mon.request():
                    returned = model.predict(answer)
            assert returned is answer
        classes, text_count, text_chars = _counts(scraper, "m")
        texts = [answer for answer in answers if answer not in names]
        expected = {name: float(answers.count(name)) for name in names if name in answers}
        assert classes == expected
        assert text_count == len(texts)
        assert text_chars == sum(map(len, texts))
    finally:
        scraper.registry.close()


def test_a_numpy_text_scalar_is_a_label_as_a_str_is(scraper):
    model = inferwatch.instrument(_Classifier(["cat", "dog"]), name="np", version="1",
                                  registry=scraper.registry)
    answer = np.array(["dog"])[0]  # what clf.predict(x)[0] returns: a np.str_
    assert model.predict(answer) is answer
    assert model.predict("dog") == "dog"
    assert _counts(scraper, "np") == ({"dog": 2.0}, 0.0, 0.0)


def test_an_async_model_and_a_refit_read_the_classes_named_at_the_call(scraper):
    model = _AsyncClassifier(["cat", "dog"])
    wrapped = inferwatch.instrument(model, name="pets", version="1", registry=scraper.registry)
    assert asyncio.run(wrapped.predict("dog")) == "dog"
    assert _counts(scraper, "pets")[0] == {"dog": 1.0}  # drained under the classes it had
    model.classes_ = np.array(["bird", "cat"])  # refit: a class that was text is now a label
    assert asyncio.run(wrapped.predict("bird")) == "bird"
    assert asyncio.run(wrapped.predict("a sentence")) == "a sentence"
    classes, text_count, text_chars = _counts(scraper, "pets")
    assert classes == {"dog": 1.0, "bird": 1.0}
    assert (text_count, text_chars) == (1.0, len("a sentence"))


def test_an_id2label_model_and_its_outcomes_join_as_labels(scraper):
    config = type("Config", (), {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}})()

    class Sentiment:
        def __init__(self) -> None:
            self.config = config

        def __call__(self, text: str) -> str:
            return "POSITIVE" if "good" in text else "NEGATIVE"

    model = inferwatch.instrument(Sentiment(), name="sent", version="1",
                                  registry=scraper.registry)
    assert model("good film", request_id="r-1") == "POSITIVE"
    assert model("dull film", request_id="r-2") == "NEGATIVE"
    mon = inferwatch.monitor("sent", "1", registry=scraper.registry)
    mon.record_outcome("r-1", "POSITIVE")
    mon.record_outcome("r-2", "POSITIVE")
    classes, text_count, _ = _counts(scraper, "sent")
    assert classes == {"NEGATIVE": 1.0, "POSITIVE": 1.0}
    assert text_count == 0
    assert scraper.value("inferwatch_outcomes_total", model="sent", result="correct") == 1
    assert scraper.value("inferwatch_outcomes_total", model="sent", result="incorrect") == 1


def test_text_stays_text_where_the_model_names_no_text_classes_or_counts_tokens(scraper):
    class Tagger:  # a multi-output classifier's classes_: one array per output
        classes_ = [np.array(["a", "b"]), np.array(["c", "d"])]

        def predict(self, answer: str) -> str:
            return answer

    class Numbered(Tagger):
        classes_ = np.array([0, 1])

    tagger = inferwatch.instrument(Tagger(), name="tags", version="1",
                                   registry=scraper.registry)
    numbered = inferwatch.instrument(Numbered(), name="num", version="1",
                                     registry=scraper.registry)
    # Token counting asks for every text's tokens: a generative model's answer, class or not.
    counted = inferwatch.instrument(_Classifier(["yes", "no"]), name="gen", version="1",
                                    count_tokens=lambda text: len(text.split()),
                                    registry=scraper.registry)
    assert tagger.predict("a") == "a"
    assert numbered.predict("1") == "1"
    assert counted.predict("yes") == "yes"
    for name, answer in (("tags", "a"), ("num", "1"), ("gen", "yes")):
        assert _counts(scraper, name) == ({}, 1.0, len(answer)), name
    assert scraper.value("inferwatch_tokens_total", model="gen", kind="output") == 1
