"""``task="auto"``: the task is the one the model's first predictions showed, whatever order
its requests come in. A response body streamed in chunks (an SSE endpoint sending a
classifier's scores) is no sign of a generative model; a model that returns a generator or
text is, through the web middleware too."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import inferwatch
from inferwatch.serving.middleware import InstrumentMiddleware


class Classifier:
    classes_ = ["legit", "fraud"]

    def predict_proba(self, rows):
        return [[0.3, 0.7] for _ in rows]


def get(app, path: str) -> bytes:
    sent: list[dict] = []
    requested = []

    async def receive() -> dict:
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays: a disconnect would end the request

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "headers": [],
             "server": ("test", 80), "client": ("client", 1)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def scoring_app(registry):
    model = inferwatch.instrument(Classifier(), name="fraud", version="1", registry=registry)

    def score_batch(request):
        def events():
            for _ in range(3):
                yield f"data: {model.predict_proba([[1.0], [2.0]])[0][1]}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    def score(request):
        return JSONResponse({"p": model.predict_proba([[1.0]])[0][1]})

    def stream_only(request):  # a body in chunks with no prediction in it
        return StreamingResponse(iter([b"a", b"b", b"c"]))

    app = Starlette(routes=[Route("/score-batch", score_batch), Route("/score", score),
                            Route("/stream-only", stream_only)])
    return InstrumentMiddleware(app, model="fraud", registry=registry)


def task_of(registry, model: str = "fraud") -> str:
    registry.drain()
    return registry.monitor(model, "1").state.info["task"]


@pytest.mark.parametrize("first", ["/score-batch", "/score"])
def test_a_classifier_is_classification_whichever_request_comes_first(registry, first):
    app = scoring_app(registry)
    assert get(app, first)
    assert task_of(registry) == "classification"
    for _ in range(2):
        assert get(app, "/score")
        assert get(app, "/score-batch").count(b"data:") == 3
    assert task_of(registry) == "classification"
    histogram = registry.monitor("fraud", "1").state.histograms["inferwatch_stream_items"][()]
    # The streamed bodies are still recorded as streams, of three chunks each.
    assert histogram.sum == 3 * (2 + (first == "/score-batch"))


def test_a_streamed_body_without_predictions_leaves_the_task_to_them(registry):
    app = scoring_app(registry)
    assert get(app, "/stream-only") == b"abc"
    assert task_of(registry) == "auto"
    assert get(app, "/score")
    assert task_of(registry) == "classification"


def test_a_model_returning_a_generator_or_text_is_generation_through_the_middleware(registry):
    tokens = inferwatch.instrument(lambda prompt: (w + " " for w in prompt.split()),
                                   name="chat", version="1", registry=registry)
    answer = inferwatch.instrument(lambda prompt: prompt.upper(), name="echo", version="1",
                                   registry=registry)

    def chat(request):
        return StreamingResponse(tokens("hello there you"))

    def echo(request):
        return JSONResponse({"text": answer("hi")})

    app = InstrumentMiddleware(Starlette(routes=[Route("/chat", chat), Route("/echo", echo)]),
                               routes={"/chat": "chat", "/echo": "echo"}, registry=registry)
    assert get(app, "/chat") == b"hello there you "
    assert get(app, "/echo") == b'{"text":"HI"}'
    assert task_of(registry, "chat") == "generation"
    assert task_of(registry, "echo") == "generation"


def test_a_classifiers_predictions_decide_over_a_stream_in_the_same_drain(registry):
    """A model whose first drain holds both predictions and a stream of its own (a
    ``predict_proba`` and a ``__call__`` that streams an explanation): its predictions tell."""

    class Hybrid(Classifier):
        def __call__(self, rows):
            yield from ("because", "of", "rows")

    model = inferwatch.instrument(Hybrid(), name="hybrid", version="1", registry=registry)
    assert list(model([[1.0]])) == ["because", "of", "rows"]
    model.predict_proba([[1.0]])
    assert task_of(registry, "hybrid") == "classification"
