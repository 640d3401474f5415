"""What ONNX Runtime classifiers and Hugging Face pipelines and models return, recorded as
what it is: an ONNX classifier's labels and probabilities (ZipMap or matrix), a
token-classification pipeline's entities, a generation pipeline's text, a causal LM's
forward output without its cache, and ``generate``'s token ids (docs/shapes.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.prediction_classes import class_labels
from inferwatch.core.predictions import normalize


def _classes(scraper) -> dict[str, float]:
    return {s.labels["class"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_predicted_class_total"}


def _outputs(scraper) -> dict[str, float]:
    return {s.labels["output"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_prediction_count"}


def _invalid(scraper) -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_invalid_predictions_total" and s.value}


def _counts(labels) -> dict[str, float]:
    values, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    return dict(zip(values.tolist(), map(float, counts.tolist())))


# --- ONNX Runtime classifiers --------------------------------------------------------------


def _iris_session(zipmap: bool = True, text_labels: bool = False):
    """A scikit-learn classifier exported by skl2onnx (ZipMap on by default) and its rows."""
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    import onnxruntime
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    if text_labels:
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=500).fit(x, y)
    options = None if zipmap else {id(model): {"zipmap": False}}
    onx = skl2onnx.convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 4]))],
                                   options=options)
    session = onnxruntime.InferenceSession(onx.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session, x[::30][:5]


@pytest.mark.parametrize("options", [{}, {"task": "classification", "classes": [0, 1, 2]}])
def test_an_onnx_classifier_with_zipmap_records_its_labels_and_probabilities(scraper, options):
    """``run(None, feed)`` answers ``[labels (n,), [{class: probability}] * n]``: n rows,
    the labels as classes, each class's probability and the confidence, nothing invalid."""
    session, batch = _iris_session()
    run = inferwatch.instrument(session.run, name="iris", version="1",
                                registry=scraper.registry, **options)
    labels, probabilities = run(None, {"X": batch})
    assert scraper.value("inferwatch_batch_size_sum") == 5
    assert _classes(scraper) == _counts(labels)
    assert _invalid(scraper) == {}
    assert _outputs(scraper) == {"0": 5, "1": 5, "2": 5}
    assert scraper.value("inferwatch_prediction_confidence_count") == 5
    top = [max(row.values()) for row in probabilities]
    assert scraper.value("inferwatch_prediction_confidence_sum") == pytest.approx(sum(top))


def test_an_onnx_classifiers_probabilities_alone_are_class_probabilities(scraper):
    """``run(["output_probability"], feed)`` answers ``[[{class: probability}] * n]``:
    n rows, each row's most probable class, its confidence."""
    session, batch = _iris_session()
    run = inferwatch.instrument(session.run, name="iris", version="1",
                                registry=scraper.registry)
    (probabilities,) = run(["output_probability"], {"X": batch})
    assert scraper.value("inferwatch_batch_size_sum") == 5
    assert _classes(scraper) == _counts([max(row, key=row.get) for row in probabilities])
    assert _invalid(scraper) == {}
    assert _outputs(scraper) == {"0": 5, "1": 5, "2": 5}
    assert scraper.value("inferwatch_prediction_confidence_count") == 5


def test_an_onnx_classifier_without_zipmap_records_its_probability_matrix_per_class(scraper):
    """With ``zipmap=False`` it answers ``[labels (n,), probabilities (n, k)]``: the matrix
    is k class columns of n rows each, never n * k values of one output."""
    session, batch = _iris_session(zipmap=False)
    run = inferwatch.instrument(session.run, name="iris", version="1",
                                registry=scraper.registry)
    labels, matrix = run(None, {"X": batch})
    assert matrix.shape == (5, 3)
    assert scraper.value("inferwatch_batch_size_sum") == 5
    assert _classes(scraper) == _counts(labels)
    assert _outputs(scraper) == {"0": 5, "1": 5, "2": 5}
    assert _invalid(scraper) == {}
    assert scraper.value("inferwatch_prediction_confidence_count") == 5


def test_an_onnx_classifier_of_text_labels_counts_the_classes_its_zipmap_names(scraper):
    """Text labels are classes when the model names them: its ZipMap's keys do."""
    session, batch = _iris_session(text_labels=True)
    run = inferwatch.instrument(session.run, name="iris", version="1",
                                registry=scraper.registry)
    for _ in range(3):
        labels, _ = run(None, {"X": batch})
    assert _classes(scraper) == {k: 3 * v for k, v in _counts(labels).items()}
    assert set(_outputs(scraper)) == {"setosa", "versicolor", "virginica"}
    assert _invalid(scraper) == {}
    assert scraper.value("inferwatch_batch_size_sum") == 15


@st.composite
def _classifier_answers(draw):
    """An ONNX classifier's answer: labels and a ZipMap of probability rows, or a matrix."""
    k = draw(st.integers(2, 6))
    n = draw(st.integers(1, 12))
    classes = draw(st.one_of(
        st.just(list(range(k))),
        # numpy's fixed-width strings drop trailing NULs ("a\x00" reads "a"): a label array
        # cannot hold such a class, whatever reads it.
        st.lists(st.text(min_size=1, max_size=8).filter(lambda t: not t.endswith("\x00")),
                 min_size=k, max_size=k, unique=True)))
    weights = np.array(draw(st.lists(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k),
                                     min_size=n, max_size=n)))
    matrix = weights / weights.sum(axis=1, keepdims=True)
    labels = np.array([classes[j] for j in draw(st.lists(st.integers(0, k - 1),
                                                         min_size=n, max_size=n))])
    as_map = draw(st.booleans()) or not isinstance(classes[0], int)
    probabilities = [dict(zip(classes, row)) for row in matrix.tolist()] if as_map else \
        matrix.astype(np.float32)
    return labels, probabilities, matrix, classes, as_map


@given(_classifier_answers())
def test_a_classifiers_labels_and_probabilities_read_as_rows_classes_and_confidence(answer):
    labels, probabilities, matrix, classes, as_map = answer
    prediction = normalize([labels, probabilities], task="auto")
    assert prediction.rows == len(labels)
    assert prediction.invalid == {}
    assert class_labels(prediction.classes) == [str(label) for label in labels.tolist()]
    assert prediction.confidence == pytest.approx(matrix.max(axis=1), abs=1e-6)
    names = [str(c) for c in classes] if as_map else [str(j) for j in range(len(classes))]
    assert sorted(prediction.values) == sorted(names)
    for j, name in enumerate(names):
        assert prediction.values[name] == pytest.approx(matrix[:, j], abs=1e-6)


def test_an_output_list_of_other_matrices_stays_outputs_as_before():
    """A regressor's ``[(n, 1)]`` and a list of labels with scores that are no
    probabilities keep their outputs ``0``, ``1``."""
    assert normalize([np.array([[1.5], [2.5]])]).values["0"].tolist() == [1.5, 2.5]
    scores = np.array([[2.0, -1.0], [0.5, 3.0]])
    prediction = normalize([np.array([0, 1]), scores])
    assert prediction.values["1"].tolist() == scores.reshape(-1).tolist()
    assert prediction.confidence is None


# --- Hugging Face ----------------------------------------------------------------------------

_VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "good": 4, "bad": 5, "movie": 6,
          "film": 7, "john": 8, "paris": 9, "in": 10, "lives": 11}


def _tokenizer():
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(_VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]")


def _ner_pipeline():
    """A token-classification pipeline of a one-layer BERT whose biases find entities."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    labels = ["O", "B-PER", "I-PER", "B-LOC"]
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(_VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)})
    model = transformers.BertForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.bias[:] = torch.tensor([0.0, 3.0, 0.0, 2.9])
    return transformers.pipeline("token-classification", model=model, tokenizer=_tokenizer(),
                                 device="cpu")


def _gpt2():
    """A one-layer GPT-2 that says "good" after anything, and never stops."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(_VOCAB), n_embd=16, n_layer=1, n_head=2,
                                     n_positions=64, bos_token_id=2, eos_token_id=3,
                                     pad_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    bias = torch.zeros(len(_VOCAB))
    bias[_VOCAB["good"]] = 5.0
    model.lm_head.register_forward_hook(lambda module, args, output: output + bias)
    return model


@pytest.mark.torch
@pytest.mark.parametrize("options", [{}, {"aggregation_strategy": "simple"}])
def test_a_token_classification_pipeline_records_a_row_per_text_and_its_entities(
        scraper, options):
    """A batch of texts: one row per text, each entity's label a class (the BIO tag, or the
    entity group the pipeline aggregates tags into), its score a confidence; words and
    offsets are never labels, and nothing is invalid."""
    ner = _ner_pipeline()
    tagged = inferwatch.instrument(ner, name="ner", version="1", registry=scraper.registry)
    texts = ["john lives in paris", "good movie", "paris"]
    answer = tagged(texts, **options)
    assert answer == ner(texts, **options)
    entities = [entity for text in answer for entity in text]
    assert entities, "the model must find entities for this test to say anything"
    key = "entity_group" if options else "entity"
    assert scraper.value("inferwatch_batch_size_sum") == 3
    assert _invalid(scraper) == {}
    assert _classes(scraper) == _counts([entity[key] for entity in entities])
    assert scraper.value("inferwatch_prediction_confidence_count") == len(entities)
    assert scraper.value("inferwatch_prediction_confidence_sum") == pytest.approx(
        sum(float(entity["score"]) for entity in entities), rel=1e-5)
    assert _outputs(scraper) == {}


@pytest.mark.torch
def test_a_token_classification_pipeline_on_one_text_is_one_row(scraper):
    ner = _ner_pipeline()
    tagged = inferwatch.instrument(ner, name="ner", version="1", registry=scraper.registry)
    answer = tagged("john lives in paris")
    assert len(answer) > 1
    assert scraper.value("inferwatch_batch_size_sum") == 1
    assert _invalid(scraper) == {}
    assert _classes(scraper) == _counts([entity["entity"] for entity in answer])


_ENTITY = st.fixed_dictionaries({
    "entity": st.sampled_from(["B-PER", "I-PER", "B-LOC", "O"]),
    "score": st.floats(0.0, 1.0, width=32).map(np.float32),
    "index": st.integers(0, 10**6), "word": st.text(max_size=12),
    "start": st.integers(0, 10**6), "end": st.integers(0, 10**6)})


@given(st.lists(st.lists(_ENTITY, max_size=5), min_size=1, max_size=6))
def test_any_batch_of_entities_is_a_row_per_text_with_its_labels(texts):
    known = frozenset({"B-PER", "I-PER", "B-LOC", "O"})
    prediction = normalize(texts, known_classes=known)
    entities = [entity for text in texts for entity in text]
    assert prediction.invalid == {}
    if not entities:
        return  # no entity in any text: rows of nothing, read as ever
    assert prediction.rows == len(texts)
    assert class_labels(prediction.classes) == [entity["entity"] for entity in entities]
    assert prediction.confidence.tolist() == pytest.approx(
        [float(entity["score"]) for entity in entities])
    assert not prediction.values


@pytest.mark.torch
def test_a_text_generation_pipeline_is_recorded_as_text(scraper):
    """Its ``[{"generated_text": ...}]`` per prompt is text: its characters (all of a
    call's texts together) and, with ``count_tokens=``, its tokens, never an invalid
    prediction."""
    transformers = pytest.importorskip("transformers")
    pipe = transformers.pipeline("text-generation", model=_gpt2(), tokenizer=_tokenizer(),
                                 device="cpu")
    generate = inferwatch.instrument(pipe, name="tg", version="1", registry=scraper.registry)
    answer = generate(["good movie", "bad film"], max_new_tokens=6, do_sample=False,
                      return_full_text=False)
    texts = [row["generated_text"] for rows in answer for row in rows]
    assert _invalid(scraper) == {}
    assert scraper.value("inferwatch_output_characters_count") == 1
    assert scraper.value("inferwatch_output_characters_sum") == sum(map(len, texts))
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


@pytest.mark.torch
def test_a_text_generation_pipeline_counts_its_output_tokens(scraper):
    transformers = pytest.importorskip("transformers")
    tokenizer = _tokenizer()
    pipe = transformers.pipeline("text-generation", model=_gpt2(), tokenizer=tokenizer,
                                 device="cpu")
    words = inferwatch.instrument(pipe, name="tg", version="1", registry=scraper.registry,
                                  count_tokens=lambda text: len(text.split()))
    answer = words("good movie", max_new_tokens=6, do_sample=False, return_full_text=False)
    assert answer[0]["generated_text"].split() == ["good"] * 6
    words(["good movie", "bad film john"], max_new_tokens=2, do_sample=False,
          return_full_text=False)
    assert scraper.value("inferwatch_tokens_total", kind="output") == 6 + 2 * 2
    assert scraper.value("inferwatch_tokens_total", kind="input") == 2 + 2 + 3
    assert _invalid(scraper) == {}


def test_generated_texts_reaching_the_drain_count_nothing_invalid():
    """Handed over as a prediction (``r.prediction(answer)``), a generation pipeline's
    answer is its rows, nothing invalid."""
    prediction = normalize([[{"generated_text": "a"}], [{"generated_text": "b"}]])
    assert (prediction.rows, prediction.invalid, prediction.classes) == (2, {}, None)


@pytest.mark.torch
def test_a_causal_lms_forward_records_its_logits_not_its_cache(scraper):
    torch = pytest.importorskip("torch")
    model = _gpt2()
    lm = inferwatch.instrument(model, name="lm", version="1", registry=scraper.registry)
    encoded = _tokenizer()(["good movie", "bad film"], return_tensors="pt")
    with torch.no_grad():
        output = lm(**encoded, output_hidden_states=True, output_attentions=True)
    assert {"logits", "hidden_states"} <= set(output.keys())
    assert _invalid(scraper) == {}
    assert scraper.value("inferwatch_batch_size_sum") == 2
    assert _outputs(scraper) == {"logits": output.logits.numel()}


@pytest.mark.torch
def test_generate_token_ids_are_lengths_not_classes(scraper):
    """``generate``'s (n, seq) token ids are sequences: each row's length is recorded, no
    position or token id becomes a class."""
    torch = pytest.importorskip("torch")
    model = _gpt2()
    generate = inferwatch.instrument(model.generate, name="gen", version="1",
                                     registry=scraper.registry)
    encoded = _tokenizer()(["good movie", "bad film"], return_tensors="pt")
    with torch.no_grad():
        ids = generate(**encoded, max_new_tokens=20, do_sample=False)
        generate(**encoded, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    assert tuple(ids.shape) == (2, 24)
    assert _classes(scraper) == {}
    assert _invalid(scraper) == {}
    assert scraper.value("inferwatch_batch_size_sum") == 4
    assert scraper.value("inferwatch_prediction_count", output="length") == 4
    assert scraper.value("inferwatch_prediction_sum", output="length") == 2 * 24 + 2 * 7


def test_a_numpy_integer_matrix_wider_than_a_class_output_is_one_sequence_per_row():
    ids = np.arange(2 * 30).reshape(2, 30)
    prediction = normalize(ids)
    assert (prediction.rows, prediction.classes) == (2, None)
    assert prediction.values["length"].tolist() == [30.0, 30.0]
    few = normalize(np.array([[0, 1], [1, 1]]))  # a multi-output classifier's labels
    assert class_labels(few.classes) == ["0:0", "0:1", "1:1", "1:1"]
