"""docs/integrations.md followed as a user would on the first day: its snippets run as written
under real uvicorn and gunicorn servers, and the middleware records what the frameworks route."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from flask import Flask, abort
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from conftest import ROOT, free_port
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from inferwatch.serving.routes import compile_template
from processes import serving_app

DOCS = (ROOT / "docs" / "integrations.md").read_text()
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", DOCS, flags=re.M | re.S)
# What the snippets leave to the user: their trained classifier.
CLASSIFIER = textwrap.dedent('''
    class Classifier:
        classes_ = ("legit", "fraud")

        def predict_proba(self, rows):
            return [[0.25, 0.75] for _ in rows]

    clf = Classifier()
''')


class Classifier:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows):
        return [[0.25, 0.75] for _ in rows]


def block_with(marker: str) -> str:
    found = [block for block in PYTHON_BLOCKS if marker in block]
    assert len(found) == 1, marker
    return found[0]


# --- real servers ------------------------------------------------------------------------------

def serving(args: list[str], tmp_path: Path, port: int, env: dict | None = None
            ) -> contextlib.AbstractContextManager[str]:
    """A server of the README's app written to `tmp_path`, ready once /metrics/ answers."""
    return serving_app(args, port, app_dir=tmp_path, log_dir=tmp_path,
                       ready_path="/metrics/", env=env)


def http(url: str, *, method: str = "GET", body: dict | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    return sum(s.value for s in samples(text)
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def scrape_as_prometheus(url: str, path: str = "/metrics") -> str:
    """/metrics as Prometheus asks for it (gzip), following a redirect as Prometheus does."""
    status, headers, body = http(url + path, headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers.get("content-encoding") == "gzip"  # as Prometheus asks
    body = gzip.decompress(body)
    return body.decode()


def exercise_score_route(url: str) -> None:
    for i in range(3):
        status, _, body = http(f"{url}/score/{i}", method="POST", body={"features": [1.0, 2.0]},
                               headers={"X-Request-ID": f"req-{i}"})
        assert status == 200, body
        assert json.loads(body) == {"fraud": 0.75}
    assert http(f"{url}/score/7", method="OPTIONS")[0] in (200, 405)  # a CORS preflight
    assert http(f"{url}/score/me", method="POST", body={"features": [1.0]})[0] in (404, 422)


def check_recorded(url: str, path: str = "/metrics") -> None:
    text = scrape_as_prometheus(url, path)
    labels = {"model": "fraud", "model_version": "1.4.2"}
    # Three model requests: the preflight is none, /metrics is left out; a rejected path
    # parameter (FastAPI's 422, Flask's 404) is a request with no prediction, or none at all.
    assert value(text, "inferwatch_requests_total", outcome="ok", **labels) in (3, 4)
    assert value(text, "inferwatch_requests_total", outcome="error", **labels) == 0
    assert value(text, "inferwatch_predicted_class_total", **{"class": "fraud"}, **labels) == 3
    assert value(text, "inferwatch_stage_duration_seconds_count", stage="inference",
                 **labels) == 3


@pytest.mark.integration
def test_the_fastapi_snippet_runs_as_written_under_uvicorn(tmp_path):
    (tmp_path / "app.py").write_text(CLASSIFIER + block_with("FastAPI()"))
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port",
            str(port), "--log-level", "warning"]
    with serving(args, tmp_path, port) as url:
        exercise_score_route(url)
        check_recorded(url)
        # A malformed input is rejected (422): the service working, a request without a
        # prediction, no error.
        assert http(f"{url}/score/1", method="POST", body={"values": [1.0]})[0] == 422
        text = scrape_as_prometheus(url)
        assert value(text, "inferwatch_requests_total", outcome="ok") == 5
        assert value(text, "inferwatch_predicted_class_total") == 3


@pytest.mark.integration
def test_the_flask_snippet_runs_as_written_under_gunicorn(tmp_path):
    (tmp_path / "app.py").write_text(CLASSIFIER + block_with("Flask("))
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--log-level", "warning", "app:app"]
    with serving(args, tmp_path, port) as url:
        exercise_score_route(url)
        check_recorded(url)
        # The endpoint's KeyError, which Flask answers with a 500 itself, counts by its class
        # through the DispatcherMiddleware of the snippet.
        assert http(f"{url}/score/1", method="POST", body={"values": [1.0]})[0] == 500
        text = scrape_as_prometheus(url)
        assert value(text, "inferwatch_errors_total", error_type="KeyError") == 1
        assert value(text, "inferwatch_requests_total", outcome="error") == 1


# --- a middleware added twice --------------------------------------------------------------------

def requests_total(scraper) -> float:
    return scraper.total("inferwatch_requests_total")


def test_fastapi_with_the_middleware_added_twice_records_each_request_once(scraper):
    model = inferwatch.instrument(Classifier(), name="fraud", version="1",
                                  registry=scraper.registry)
    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.post("/score/{user_id}")
    def score(user_id: int) -> dict:
        return {"fraud": model.predict_proba([[user_id]])[0][1]}

    app.include_router(router)
    sub = FastAPI()

    @sub.post("/score/{user_id}")
    def sub_score(user_id: int) -> dict:
        return {"fraud": model.predict_proba([[user_id]])[0][1]}

    # On the mounted sub-app as well as on the app: the sub-app sees its own paths.
    sub.add_middleware(InstrumentMiddleware, routes={"/score/{user_id}": "fraud"},
                       registry=scraper.registry)
    app.mount("/v1", sub)
    for _ in range(2):  # a factory or module run twice adds it again
        app.add_middleware(InstrumentMiddleware, routes={"/api/score/{user_id}": "fraud"},
                           registry=scraper.registry)
    client = TestClient(app)
    for i in range(3):
        assert client.post(f"/api/score/{i}").json() == {"fraud": 0.75}
    assert client.post("/v1/score/1").json() == {"fraud": 0.75}
    assert requests_total(scraper) == 4
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 4
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_flask_with_the_middleware_added_twice_records_each_request_once(scraper):
    model = inferwatch.instrument(Classifier(), name="fraud", version="1",
                                  registry=scraper.registry)
    app = Flask(__name__)

    @app.post("/score/<int:user_id>")
    def score(user_id: int) -> dict:
        if user_id == 0:
            abort(404)
        if user_id == 9:
            raise KeyError("no such user")
        return {"fraud": model.predict_proba([[user_id]])[0][1]}

    for _ in range(2):
        app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app,
                                                routes={"/score/<int:user_id>": "fraud"},
                                                registry=scraper.registry)
    client = app.test_client()
    for path, status in (("/score/1", 200), ("/score/0", 404), ("/score/9", 500)):
        response = client.post(path)
        response.get_data()
        response.close()
        assert response.status_code == status
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_errors_total", error_type="KeyError") == 1
    assert requests_total(scraper) == 3


# --- templates match the paths the framework routes ---------------------------------------------

SEGMENT = st.one_of(
    st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["cat", "dog", "cow", "", "me", "0x1f", "1e3",
                     "123e4567-e89b-12d3-a456-426614174000",
                     "123E4567E89B12D3A456426614174000", "٣"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"),
            max_size=6),
)
WERKZEUG_RULES = ["/s/<int:v>", "/s/<int(signed=True):v>", "/s/<float:v>",
                  "/s/<float(signed=True):v>", "/s/<uuid:v>", "/s/<any(cat, dog):v>",
                  "/s/<v>", "/s/<string(length=3):v>", "/s/<path:v>"]
STARLETTE_RULES = ["/s/{v:int}", "/s/{v:float}", "/s/{v:uuid}", "/s/{v}", "/s/{v:path}"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.sampled_from(WERKZEUG_RULES), segments=st.lists(SEGMENT, min_size=1,
                                                               max_size=2))
def test_a_werkzeug_template_matches_the_paths_flask_routes_to_the_endpoint(rule, segments):
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Map, Rule

    path = "/s/" + "/".join(segments)
    adapter = Map([Rule(rule, endpoint="score")]).bind("localhost")
    try:
        adapter.match(path)
        routed = True
    except HTTPException:  # 404, or a redirect to another path
        routed = False
    except Exception:  # a converter's own value check (length=3): no route either
        routed = False
    matched = bool(compile_template(rule).fullmatch(path))
    # Every routed path is recorded (none lost); only a converter's arguments that bound the
    # value (length=3) may leave a matched path unrouted: a 404 counted, nothing lost.
    assert matched or not routed, (rule, path)
    if "length" not in rule:
        assert matched == routed, (rule, path)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.sampled_from(STARLETTE_RULES), segments=st.lists(SEGMENT, min_size=1,
                                                                max_size=2))
# Starlette's route regex ends with $, which matches before a final newline too.
@example(rule="/s/{v:path}", segments=["0", "\n"])
@example(rule="/s/{v:int}", segments=["12\n"])
@example(rule="/s/{v:uuid}", segments=["6f1c7b3e-08a4-4c1e-9d2b-3f1a2b3c4d5e\n"])
def test_a_starlette_template_matches_the_paths_starlette_routes_to_the_endpoint(rule,
                                                                                  segments):
    from starlette.routing import Match, Route

    path = "/s/" + "/".join(segments)
    route = Route(rule, endpoint=lambda request: None)
    match, _ = route.matches({"type": "http", "path": path, "method": "GET", "root_path": ""})
    assert bool(compile_template(rule).fullmatch(path)) == (match != Match.NONE), (rule, path)


def test_a_negative_id_on_a_signed_flask_route_is_recorded(scraper):
    inferwatch.instrument(Classifier(), name="fraud", version="1", registry=scraper.registry)
    app = Flask(__name__)

    @app.get("/offset/<int(signed=True):delta>")
    def offset(delta: int) -> dict:
        return {"delta": delta}

    app.wsgi_app = WSGIInstrumentMiddleware(
        app.wsgi_app, routes={"/offset/<int(signed=True):delta>": "fraud"},
        registry=scraper.registry)
    client = app.test_client()
    for path in ("/offset/-3", "/offset/4"):
        response = client.get(path)
        assert response.get_json() == {"delta": int(path.rsplit("/", 1)[1])}
        response.close()
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2


# --- behind a proxy, and several workers ---------------------------------------------------

@pytest.mark.integration
def test_the_fastapi_snippet_behind_a_proxy_that_strips_a_prefix(tmp_path):
    # uvicorn --root-path /api: the proxy strips /api, uvicorn puts it back in the path.
    (tmp_path / "app.py").write_text(CLASSIFIER + block_with("FastAPI()"))
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port",
            str(port), "--log-level", "warning", "--root-path", "/api"]
    with serving(args, tmp_path, port) as url:
        exercise_score_route(url)
        # Scraped straight, not through the proxy: the redirect of /metrics names /api/metrics/.
        check_recorded(url, "/metrics/")


@pytest.mark.integration
def test_the_flask_snippet_under_two_gunicorn_workers_serves_the_merged_view(tmp_path):
    (tmp_path / "app.py").write_text(CLASSIFIER + block_with("Flask("))
    directory = tmp_path / "multiproc"
    directory.mkdir()
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--log-level", "warning", "app:app"]
    with serving(args, tmp_path, port, {"INFERWATCH_MULTIPROC_DIR": str(directory)}) as url:
        exercise_score_route(url)
        # Each worker publishes at most once a second: wait for the sum, whoever answers.
        deadline = time.monotonic() + 60
        while True:
            text = scrape_as_prometheus(url)
            found = value(text, "inferwatch_predicted_class_total", **{"class": "fraud"})
            if found == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found == 3
        check_recorded(url)


# --- options --------------------------------------------------------------------------------

def constant_app() -> FastAPI:
    """No model call in the endpoint: only the middleware can record its requests."""
    app = FastAPI()

    @app.get("/score/{user_id}")
    def score(user_id: int) -> dict:
        return {"fraud": 0.75}

    return app


@pytest.mark.parametrize("options", [
    {"model": "fraud", "version": 2},
    {"routes": {"/score/{user_id}": ("fraud", 2)}},
    {"routes": lambda scope: ("fraud", 2)},
])
def test_a_numeric_version_is_the_one_instrument_recorded(scraper, options):
    # instrument(version=2) records model_version="2": the same 2 given here finds it.
    inferwatch.instrument(Classifier(), name="fraud", version=2, registry=scraper.registry)
    inferwatch.instrument(Classifier(), name="fraud", version="3", registry=scraper.registry)
    app = constant_app()
    app.add_middleware(InstrumentMiddleware, registry=scraper.registry, **options)
    assert TestClient(app).get("/score/1").json() == {"fraud": 0.75}
    assert scraper.value("inferwatch_requests_total", model_version="2", outcome="ok") == 1
    assert scraper.total("inferwatch_requests_total", model_version="3") == 0


def test_a_numeric_version_under_wsgi_is_the_one_instrument_recorded(scraper):
    inferwatch.instrument(Classifier(), name="fraud", version=1.5, registry=scraper.registry)
    app = Flask(__name__)

    @app.get("/score")
    def score() -> dict:
        return {"fraud": 0.75}  # no model call: only the middleware records this request

    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, model="fraud", version=1.5,
                                            registry=scraper.registry)
    response = app.test_client().get("/score")
    assert response.get_json() == {"fraud": 0.75}
    response.close()
    assert scraper.value("inferwatch_requests_total", model_version="1.5", outcome="ok") == 1


@pytest.mark.parametrize("middleware", [InstrumentMiddleware, WSGIInstrumentMiddleware])
@pytest.mark.parametrize(("options", "error", "named"), [
    ({"routes": {"score/{user_id}": "fraud"}}, ValueError, r"routes\['score/\{user_id\}'\]"),
    ({"model": "fraud", "request_id_header": None}, ValueError, "request_id_header"),
    ({"model": "fraud", "request_id_header": ""}, ValueError, "request_id_header"),
    ({"model": "fraud", "request_id_header": "X Request ID"}, ValueError, "request_id_header"),
    ({"model": "fraud", "version": True}, TypeError, "version"),
    ({"model": "fraud", "version": ""}, TypeError, "version"),
    ({"model": "fraud", "version": object()}, TypeError, "version"),
])
def test_options_that_would_record_nothing_are_refused_naming_the_option(middleware, options,
                                                                        error, named):
    with pytest.raises(error, match=named):
        middleware(lambda *args: [], **options)
